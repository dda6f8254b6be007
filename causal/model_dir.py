"""Self-describing, checksummed model directories and the `FittedMixtureModel` API.

Layout of a model directory:
  model.json       what the model is: domains, covariate names, estimator + parameters,
                   fitted_on (n_runs, runs table sha256, covariate ranges), config, versions
  estimator.pkl    the fitted estimator (pickle)
  support.npz      the runs' mixtures and covariates (where the auto trust radius finds evidence)
  checksums.json   sha256 of every other file; its own sha256 is the model version
  signature.json   HMAC-SHA256 of checksums.json under CAUSALMIX_MODEL_KEY (when `fit` had one)

A model directory is code: `estimator.pkl` is a pickle, and unpickling can run whatever its
writer put there. `load_model_dir` narrows that, but only a key makes it safe:
- every checksum is verified before anything is unpickled (catches corruption and accidental
  edits, not a forger who rewrites checksums.json too);
- when CAUSALMIX_MODEL_KEY is set, the directory must carry a matching signature, checked
  first: only a holder of the key can make a directory that loads;
- the pickle is read by an unpickler that resolves only the exact classes (by fully-qualified
  name) the estimators are made of (causal/safe_pickle.py), so a payload naming os.system,
  eval or a class that acts when constructed (scipy.io.FortranFile, numpy.memmap) fails to
  load before anything is called; the object must then be the estimator class that
  model.json names. Without a key, a forger can still hand over a wrong (but inert) estimator,
  so load only directories you trust.
"""
from __future__ import annotations

import dataclasses
import hashlib
import hmac
import io
import json
import os
import pickle
from pathlib import Path
from typing import Mapping

import numpy as np

from causalmix.causal.policy import AUTO, POLICIES, analytic_policy, check_trust_radius, search_policy, top_k_policy
from causalmix.causal.registry import ESTIMATORS
from causalmix.causal.safe_pickle import load_estimator_pickle
from causalmix.core.atomic import atomic_directory
from causalmix.core.errors import UserError
from causalmix.core.provenance import provenance
from causalmix.mixture_space import MixtureBounds, RunSupport, equal_mixture, validate_mixtures

FORMAT = "causalmix-model/1"
MODEL_JSON, ESTIMATOR_PKL, CHECKSUMS = "model.json", "estimator.pkl", "checksums.json"
SIGNATURE = "signature.json"
KEY_ENV = "CAUSALMIX_MODEL_KEY"
SUPPORT_NPZ = "support.npz"
DEFAULT_TRUST_RADIUS = AUTO


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def model_key() -> bytes | None:
    """The signing key from CAUSALMIX_MODEL_KEY (None when unset or empty)."""
    key = os.environ.get(KEY_ENV, "")
    return key.encode("utf-8") if key else None


def _hmac(key: bytes, checksums: bytes) -> str:
    return hmac.new(key, checksums, hashlib.sha256).hexdigest()


def _verify_signature(path: Path, checksums: bytes, key: bytes) -> None:
    sig_path = path / SIGNATURE
    if not sig_path.is_file():
        raise UserError(f"model directory {path}: {KEY_ENV} is set but the directory is not signed "
                        f"(no {SIGNATURE}); refusing to load it. Refit it with the key set, or unset "
                        f"{KEY_ENV} to load unsigned directories you trust")
    try:
        signature = json.loads(sig_path.read_bytes())
        algorithm, digest = signature["algorithm"], signature["hmac"]
    except (ValueError, KeyError, TypeError):
        raise UserError(f"model directory {path}: {sig_path} is not a valid signature file") from None
    if algorithm != "hmac-sha256" or not isinstance(digest, str) or \
            not hmac.compare_digest(digest, _hmac(key, checksums)):
        raise UserError(f"model directory {path}: its signature does not match {KEY_ENV} (signed with "
                        "another key, or forged); refusing to load it")


def _unpickle_estimator(path: Path, data: bytes, estimator_name: str):
    expected = ESTIMATORS.get(estimator_name)
    if expected is None:
        raise UserError(f"{path / MODEL_JSON}: unknown estimator {estimator_name!r}; "
                        f"known: {sorted(ESTIMATORS)}")
    try:
        estimator = load_estimator_pickle(data)
    except Exception as exc:  # any failure of a pickle we did not write: refuse, say why
        raise UserError(f"model directory {path}: {ESTIMATOR_PKL} cannot be loaded as an estimator "
                        f"({type(exc).__name__}: {exc}); refusing it") from None
    if not isinstance(estimator, expected):
        raise UserError(f"model directory {path}: {ESTIMATOR_PKL} holds a {type(estimator).__module__}."
                        f"{type(estimator).__qualname__}, not the {expected.__name__} that "
                        f"{MODEL_JSON} names; refusing it")
    return estimator


def _featurizer_choice(estimator) -> dict:
    """Which phi(T) the fit used and, if chosen by CV, the CV errors of the candidates."""
    return {"kind": getattr(estimator, "featurizer_kind_", None),
            "eps": getattr(estimator, "featurizer_eps_", None),
            "cv_mse": getattr(estimator, "featurizer_cv_mse_", {})}


def _json_bytes(obj) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode()


class FittedMixtureModel:
    """A fitted estimator plus what it was fitted on; the object `fit` saves and every
    consumer (CLI, Serve, fit actor) loads."""

    def __init__(self, *, estimator, estimator_name: str, domains: list[str],
                 covariate_names: list[str], covariate_ranges: Mapping[str, list[float]],
                 n_runs: int, mixture_mean: np.ndarray, mixture_max: np.ndarray | None = None,
                 description: dict | None = None,
                 version: str | None = None, support: RunSupport | None = None):
        self.estimator = estimator
        self.estimator_name = estimator_name
        self.domains = list(domains)
        self.covariate_names = list(covariate_names)
        self.covariate_ranges = {k: [float(a), float(b)] for k, (a, b) in covariate_ranges.items()}
        self.n_runs = int(n_runs)
        self.mixture_mean = np.asarray(mixture_mean, dtype=float)
        self.mixture_max = (np.ones_like(self.mixture_mean) if mixture_max is None
                            else np.asarray(mixture_max, dtype=float))
        self.description = description or {}
        self.version = version or "unsaved-" + _sha(pickle.dumps(estimator))[:16]
        self.run_support = support

    @classmethod
    def from_runs_table(cls, estimator, estimator_name: str, table) -> "FittedMixtureModel":
        return cls(estimator=estimator, estimator_name=estimator_name, domains=table.domains,
                   covariate_names=table.covariate_names, covariate_ranges=table.covariate_ranges(),
                   n_runs=table.n_runs, mixture_mean=table.mixtures().mean(axis=0),
                   mixture_max=table.mixtures().max(axis=0),
                   support=RunSupport(table.mixtures(), table.covariates()))

    # ---- inputs
    def covariate_vector(self, covariates: Mapping[str, float], where: str = "covariates") -> np.ndarray:
        if not isinstance(covariates, Mapping):
            raise UserError(f"{where}: expected an object of {{name: number}}, got {type(covariates).__name__}")
        missing = [c for c in self.covariate_names if c not in covariates]
        extra = sorted(set(covariates) - set(self.covariate_names))
        if missing or extra:
            raise UserError(f"{where} do not match the model's: missing {missing}, extra {extra}")
        try:
            x = np.array([float(covariates[c]) for c in self.covariate_names], dtype=float)
        except (TypeError, ValueError):
            raise UserError(f"{where}: every covariate must be a number") from None
        if not np.all(np.isfinite(x)):
            bad = [c for c, v in zip(self.covariate_names, x) if not np.isfinite(v)]
            raise UserError(f"{where}: non-finite values for {bad}")
        return x

    def reference_vector(self, reference: str | Mapping[str, float]) -> np.ndarray:
        if isinstance(reference, str):
            if reference != "equal":
                raise UserError(f"reference must be 'equal' or {{domain: weight}}, got {reference!r}")
            return equal_mixture(len(self.domains))
        missing = [d for d in self.domains if d not in reference]
        extra = sorted(set(reference) - set(self.domains))
        if missing or extra:
            raise UserError(f"reference mixture does not match the model's domains: missing {missing}, "
                            f"extra {extra}")
        try:
            w = np.array([[float(reference[d]) for d in self.domains]])
        except (TypeError, ValueError):
            raise UserError("reference mixture: every weight must be a number") from None
        return validate_mixtures(w, domains=self.domains, where="reference mixture")[0]

    def support(self, x: np.ndarray) -> dict:
        out = {}
        for name, value in zip(self.covariate_names, x):
            lo, hi = self.covariate_ranges[name]
            out[name] = {"value": float(value), "min": lo, "max": hi, "in_range": bool(lo <= value <= hi)}
        return out

    # ---- API
    def describe(self, runs_table_sha256: str | None) -> dict:
        """What `model.json` says of the fit (without provenance): domains, covariates, the
        estimator and its selection, and what it was fitted on, mixture vectors per domain."""
        return {
            "format": FORMAT,
            "domains": self.domains,
            "covariate_names": self.covariate_names,
            "estimator": {"name": self.estimator_name,
                          "class": type(self.estimator).__name__,
                          "params": json.loads(_json_bytes(self.estimator.get_params()))},
            "reference_domain": self.domains[self.estimator.reference_index_],
            "treatment_featurizer": _featurizer_choice(self.estimator),
            "selection": getattr(self.estimator, "selection_", None),
            "fitted_on": {"n_runs": self.n_runs, "runs_table_sha256": runs_table_sha256,
                          "covariate_ranges": self.covariate_ranges,
                          "mixture_mean": dict(zip(self.domains, self.mixture_mean.tolist())),
                          "mixture_max": dict(zip(self.domains, self.mixture_max.tolist()))},
        }

    def info(self) -> dict:
        """`describe` plus the version and provenance: what Serve's /info and the report show."""
        provenance_ = self.description.get("provenance", {})
        return {**self.describe(self.description.get("fitted_on", {}).get("runs_table_sha256")),
                "model_version": self.version,
                "versions": provenance_.get("versions"), "created_utc": provenance_.get("created_utc")}

    def predict(self, mixtures: np.ndarray, covariates: np.ndarray | None = None) -> np.ndarray:
        """Predicted y per row; `covariates` (n, C) in `covariate_names` order (None if C = 0)."""
        W = np.asarray(mixtures, dtype=float)
        if W.ndim != 2 or W.shape[1] != len(self.domains):
            raise UserError(f"predict: mixtures must have shape (n, {len(self.domains)}), got {W.shape}")
        X = np.zeros((len(W), 0)) if covariates is None else np.asarray(covariates, dtype=float)
        if X.ndim == 1 and len(self.covariate_names) and X.size == len(self.covariate_names) * len(W):
            X = X.reshape(len(W), -1)
        if X.ndim != 2 or X.shape != (len(W), len(self.covariate_names)):
            raise UserError(f"predict: covariates must have shape ({len(W)}, {len(self.covariate_names)}), "
                            f"got {X.shape}")
        if not np.all(np.isfinite(X)):
            raise UserError("predict: non-finite covariates")
        W = validate_mixtures(W, domains=self.domains, where="predict mixtures")
        return self.estimator.predict(W, X)

    def recommend(self, covariates: Mapping[str, float], *, policy: str = "analytic",
                  trust_radius: float | str = DEFAULT_TRUST_RADIUS,
                  reference: str | Mapping[str, float] = "equal", alpha: float = 0.1,
                  n_candidates: int | None = None, top_k: int | None = None, seed: int = 0,
                  constraints: MixtureBounds | None = None) -> dict:
        """The CLI contract's JSON object for a pool with these covariates; `constraints`
        (token caps, fixed weights, lower bounds) confine every policy to the bounded region,
        the reference included (projected into it when it lies outside)."""
        if policy not in POLICIES:
            raise UserError(f"unknown policy {policy!r}; choose from {POLICIES}")
        trust_radius = check_trust_radius(trust_radius)
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < 1:
            raise UserError(f"alpha must be in (0, 1), got {alpha}")
        x = self.covariate_vector(covariates)
        given = self.reference_vector(reference)
        if constraints is not None and tuple(constraints.domains) != tuple(self.domains):
            raise UserError(f"constraints are for domains {list(constraints.domains)}, the model's are {self.domains}")
        bounds = None if constraints is None or constraints.is_trivial else constraints
        ref = given if bounds is None else bounds.project(given)
        if policy == "analytic":
            result = analytic_policy(self.estimator, x, ref, trust_radius=trust_radius, alpha=alpha,
                                     support=self.run_support, bounds=bounds)
        elif policy == "search":
            result = search_policy(self.estimator, x, ref, trust_radius=trust_radius, alpha=alpha,
                                   n_candidates=n_candidates or 2000, top_k=top_k or 1, seed=seed,
                                   support=self.run_support, bounds=bounds)
        else:
            result = top_k_policy(self.estimator, x, ref, prior=self.mixture_mean, alpha=alpha,
                                  n_candidates=n_candidates or 100_000, top_k=top_k or 128, seed=seed,
                                  bounds=bounds)
        support = self.support(x)
        return {
            "mixture": {d: float(w) for d, w in zip(self.domains, result.mixture)},
            "expected_gain": result.expected_gain,
            "interval": [result.interval[0], result.interval[1]],
            "alpha": alpha,
            "policy": result.policy,
            "trust_radius": result.radius.radius if result.radius else None,
            "radius_choice": result.radius.to_json() if result.radius else None,
            "fallback": result.fallback,
            "reference": {d: float(w) for d, w in zip(self.domains, ref)},
            "reference_projected": bool(not np.allclose(ref, given)),
            "constraints": constraints.to_json(result.mixture) if constraints is not None else None,
            "model_version": self.version,
            "support": support,
            "extrapolated": [name for name, s in support.items() if not s["in_range"]],
            # domains given more weight than any logged run had: the gain there is extrapolated too
            "mixture_beyond_runs": [d for d, w, top in zip(self.domains, result.mixture, self.mixture_max)
                                    if w > top + 1e-9],
        }


def save_model_dir(model: FittedMixtureModel, out_dir, *, runs_table_sha256: str | None,
                   config, overwrite: bool = False, inputs=()) -> Path:
    """Write `model` as a model directory, atomically; sets and returns model.version too.

    An existing `out_dir` is replaced only when it is a model directory (or `overwrite`), and
    never when it holds one of `inputs` (see `core.atomic.check_output_path`)."""
    if dataclasses.is_dataclass(config):
        config = dataclasses.asdict(config)
    description = {**model.describe(runs_table_sha256), "provenance": provenance(config)}
    files = {MODEL_JSON: _json_bytes(description),
             ESTIMATOR_PKL: pickle.dumps(model.estimator, protocol=pickle.HIGHEST_PROTOCOL)}
    if model.run_support is not None:
        buffer = io.BytesIO()
        np.savez(buffer, mixtures=model.run_support.mixtures, covariates=model.run_support.covariates)
        files[SUPPORT_NPZ] = buffer.getvalue()
    checksums = _json_bytes({"algorithm": "sha256", "files": {n: _sha(b) for n, b in files.items()}})
    key = model_key()
    if key is not None:
        files_out = {**files, CHECKSUMS: checksums,
                     SIGNATURE: _json_bytes({"algorithm": "hmac-sha256", "of": CHECKSUMS,
                                             "hmac": _hmac(key, checksums)})}
    else:
        files_out = {**files, CHECKSUMS: checksums}
    with atomic_directory(out_dir, kind="model directory", markers=(MODEL_JSON, CHECKSUMS),
                          overwrite=overwrite, inputs=inputs) as tmp:
        for name, data in files_out.items():
            (tmp / name).write_bytes(data)
    model.description = description
    model.version = _sha(checksums)[:16]
    return Path(out_dir)


def _per_domain(values, domains: list[str]) -> np.ndarray:
    """A mixture vector of model.json: a mapping per domain, or a list in domain order
    (model directories written before the mapping)."""
    if isinstance(values, Mapping):
        return np.array([values[d] for d in domains], dtype=float)
    return np.array(values, dtype=float)


def load_model_dir(path) -> FittedMixtureModel:
    """Load a model directory: its signature (when CAUSALMIX_MODEL_KEY is set) and every file's
    checksum are verified before the estimator is unpickled (see the module's docstring)."""
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"model directory not found: {path}")
    sums_path = path / CHECKSUMS
    if not sums_path.is_file():
        raise UserError(f"model directory {path}: missing {CHECKSUMS}")
    raw = sums_path.read_bytes()
    key = model_key()
    if key is not None:
        _verify_signature(path, raw, key)
    try:
        listed = json.loads(raw)["files"]
    except (ValueError, KeyError, TypeError):
        raise UserError(f"model directory {path}: {sums_path} is not a valid checksum file") from None
    for name in (MODEL_JSON, ESTIMATOR_PKL):
        if name not in listed:
            raise UserError(f"model directory {path}: {CHECKSUMS} does not list {name}")
    contents = {}
    for name, digest in listed.items():
        file = path / name
        if not file.is_file() or Path(name).name != name:
            raise UserError(f"model directory {path}: missing file {file}")
        contents[name] = file.read_bytes()
        if _sha(contents[name]) != digest:
            raise UserError(f"model directory {path}: checksum mismatch for {file} (file changed or "
                            "corrupt); refusing to load it")
    try:
        description = json.loads(contents[MODEL_JSON])
    except ValueError:
        raise UserError(f"{path / MODEL_JSON} is not valid JSON") from None
    if description.get("format") != FORMAT:
        raise UserError(f"{path / MODEL_JSON}: unsupported format {description.get('format')!r} "
                        f"(expected {FORMAT})")
    try:
        estimator_name = description["estimator"]["name"]
        fitted = description["fitted_on"]
    except (KeyError, TypeError):
        raise UserError(f"{path / MODEL_JSON}: missing estimator.name or fitted_on") from None
    estimator = _unpickle_estimator(path, contents[ESTIMATOR_PKL], estimator_name)
    support = None
    if SUPPORT_NPZ in contents:
        with np.load(io.BytesIO(contents[SUPPORT_NPZ]), allow_pickle=False) as arrays:
            support = RunSupport(arrays["mixtures"], arrays["covariates"])
    return FittedMixtureModel(estimator=estimator, estimator_name=estimator_name,
                              domains=description["domains"],
                              covariate_names=description["covariate_names"],
                              covariate_ranges=fitted["covariate_ranges"], n_runs=fitted["n_runs"],
                              mixture_mean=_per_domain(fitted["mixture_mean"], description["domains"]),
                              mixture_max=_per_domain(fitted["mixture_max"], description["domains"]),
                              description=description,
                              version=_sha(raw)[:16], support=support)
