"""The mixtures a validation compares on the target pool: CausalMix's two policies
(CausalMix-A, analytic; CausalMix-S, search), the ablations no-dml and no-covariates, RegMix,
equal, the pool's natural token share, the best proxy run's mixture, a grid over the simplex,
or mixtures from files. `validation/comparison.py` compares their outcomes.
"""
from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from causalmix.causal.runs_table import MIX
from causalmix.core.config import read_json_file
from causalmix.core.errors import UserError

CAUSALMIX = {"causalmix-a": ("causalmix-A", "analytic"), "causalmix-s": ("causalmix-S", "search")}
ABLATIONS = {"no-dml": "no_dml_model", "no-covariates": "no_covariates_model"}
"""Ablations: the same analytic policy on another fit (the `regression` estimator: no
orthogonalisation; the forest on the runs without covariates: state-agnostic)."""
BUILTIN = (*CAUSALMIX, *ABLATIONS, "regmix", "equal", "natural", "best-run", "grid")
DEFAULT_MIXTURES = ("causalmix-a", "causalmix-s", "regmix", "equal", "natural")
NEEDS = {"regmix": "--regmix-model DIR (fitted with `launch.py fit --estimator regmix`)",
         "no-dml": "--no-dml-model DIR (fitted with `launch.py fit --estimator regression`)",
         "no-covariates": "--no-covariates-model DIR (the forest fitted on the runs table without "
                          "its x.* columns)",
         "best-run": "--runs FILE (the sweep's runs.parquet)",
         "grid": "--grid N (N >= 1 mixtures spread over the simplex)"}
WEIGHT_SUM_TOL = 1e-3


def natural_mixture(domain_tokens: Mapping[str, float]) -> dict[str, float]:
    total = float(sum(domain_tokens.values()))
    return {d: float(t) / total for d, t in domain_tokens.items()}


def parse_mixture_list(spec: str | Sequence[str] | None, *, have_regmix: bool,
                       have: Sequence[str] = ()) -> tuple[str, ...]:
    """Entries of `--mixtures` (names lower-cased, files kept as given). None: the default set,
    without regmix when no RegMix model is given. `have`: which of no-dml, no-covariates,
    best-run, grid have what they need (NEEDS); naming one that does not is an error."""
    available = {*have, *(("regmix",) if have_regmix else ())}
    if spec is None:
        return tuple(n for n in DEFAULT_MIXTURES if n not in NEEDS or n in available)
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    entries = []
    for raw in items:
        item = str(raw).strip()
        if not item:
            raise UserError(f"--mixtures {spec!r}: empty entry")
        is_file = item.lower().endswith(".json")
        entry = item if is_file else item.lower()
        if not is_file and entry not in BUILTIN:
            raise UserError(f"--mixtures: unknown mixture {item!r}; choose from {', '.join(BUILTIN)} "
                            "or give a FILE.json")
        if entry in NEEDS and entry not in available:
            raise UserError(f"--mixtures names {entry}, which needs {NEEDS[entry]}")
        if entry in entries:
            raise UserError(f"--mixtures names {item!r} twice")
        entries.append(entry)
    return tuple(entries)


def grid_mixtures(domains: Sequence[str], n: int, resolution: int = 12) -> list[dict[str, float]]:
    """The Grid baseline: `n` mixtures spread over the simplex, deterministically. Candidates
    are the lattice {k / resolution}; the first pick is the centre-most point, each next one the
    lattice point farthest (L2) from those picked (greedy max-min spread), ties to the first in
    lattice order. So the grid covers corners, edges and the interior evenly for any n."""
    if n < 1:
        raise UserError(f"--grid must be >= 1, got {n}")
    k = len(domains)
    lattice = np.array([c for c in itertools.product(range(resolution + 1), repeat=k)
                        if sum(c) == resolution], dtype=float) / resolution
    if n > len(lattice):
        raise UserError(f"--grid {n}: at most {len(lattice)} distinct mixtures at lattice step "
                        f"1/{resolution}")
    centre = np.full(k, 1.0 / k)
    picked = [int(np.argmin(((lattice - centre) ** 2).sum(axis=1)))]
    dist = ((lattice - lattice[picked[0]]) ** 2).sum(axis=1)
    while len(picked) < n:
        nxt = int(np.argmax(dist))
        picked.append(nxt)
        dist = np.minimum(dist, ((lattice - lattice[nxt]) ** 2).sum(axis=1))
    return [{d: float(w) for d, w in zip(domains, lattice[i])} for i in picked]


def best_run_mixture(runs: pd.DataFrame, domains: Sequence[str]) -> tuple[dict[str, float], str]:
    """The mixture of the proxy run with the highest y (and its run_id)."""
    missing = [d for d in domains if f"{MIX}{d}" not in runs]
    if missing or "y" not in runs or runs.empty:
        raise UserError(f"runs table for best-run lacks rows or columns y / mix.{missing}")
    best = runs.loc[runs["y"].astype(float).idxmax()]
    return {d: float(best[f"{MIX}{d}"]) for d in domains}, str(best.get("run_id", best.name))


def read_mixture_file(path: str | Path, domains: Sequence[str]) -> dict[str, float]:
    """A mixture {domain: weight} from JSON: the object itself, or a `recommend` output
    (its "mixture"). The domains must be the model's, the weights >= 0 and sum to 1."""
    path = Path(path)
    data = read_json_file(path, "mixture")
    if isinstance(data, dict) and isinstance(data.get("mixture"), dict):
        data = data["mixture"]
    if not isinstance(data, dict):
        raise UserError(f"mixture file {path}: expected {{domain: weight}} or a recommend output")
    missing, extra = [d for d in domains if d not in data], sorted(set(data) - set(domains))
    if missing or extra:
        raise UserError(f"mixture file {path}: domains do not match the pool's {list(domains)}: "
                        f"missing {missing}, extra {extra}")
    weights = {}
    for d in domains:
        w = data[d]
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0:
            raise UserError(f"mixture file {path}: weight of {d!r} must be a finite number >= 0, got {w!r}")
        weights[d] = float(w)
    total = sum(weights.values())
    if abs(total - 1.0) > WEIGHT_SUM_TOL:
        raise UserError(f"mixture file {path}: weights sum to {total:.6g}, not 1 "
                        f"(tolerance {WEIGHT_SUM_TOL})")
    return {d: w / total for d, w in weights.items()}


def _file_label(path: str) -> str:
    return Path(path).stem


def candidate_mixtures(model, covariates: Mapping[str, float], domain_tokens: Mapping[str, float], *,
                       entries: Sequence[str] = DEFAULT_MIXTURES, trust_radius: float | None = None,
                       regmix_model=None, no_dml_model=None, no_covariates_model=None,
                       runs: pd.DataFrame | None = None, grid: int = 0, constraints=None) -> dict[str, dict]:
    """{candidate name: {"mixture": {domain: w}, "source": ...}} for the target pool, in the
    order of `entries` (parse_mixture_list); `grid` adds grid-01 .. grid-N in its place.
    `constraints` (a MixtureBounds: token caps, fixed weights) bind every model's policy."""
    kwargs = {} if trust_radius is None else {"trust_radius": trust_radius}
    bounded = {} if constraints is None else {"constraints": constraints}
    domains = list(model.domains)
    ablations = {"no-dml": no_dml_model, "no-covariates": no_covariates_model}
    candidates = {}
    for entry in entries:
        if entry in CAUSALMIX:
            name, policy = CAUSALMIX[entry]
            rec = model.recommend(covariates, policy=policy, **kwargs, **bounded)
            candidates[name] = {"mixture": rec["mixture"], "source": f"{model.estimator_name}/{policy}",
                                "expected_gain": rec["expected_gain"], "interval": rec["interval"]}
        elif entry in ablations:
            other = ablations[entry]
            if other is None:
                raise UserError(f"{entry} needs {NEEDS[entry]}")
            if list(other.domains) != domains:
                raise UserError(f"{entry} model domains {other.domains} differ from {domains}")
            missing = [n for n in other.covariate_names if n not in covariates]
            if missing:
                raise UserError(f"{entry} model needs covariates {missing} the target pool's features lack")
            rec = other.recommend({n: covariates[n] for n in other.covariate_names}, policy="analytic",
                                  **kwargs, **bounded)
            candidates[entry] = {"mixture": rec["mixture"], "source": f"{other.estimator_name}/analytic"
                                 + (" (no covariates)" if not other.covariate_names else ""),
                                 "expected_gain": rec["expected_gain"], "interval": rec["interval"]}
        elif entry == "regmix":
            if regmix_model is None:
                raise UserError("regmix needs --regmix-model")
            if list(regmix_model.domains) != domains:
                raise UserError(f"RegMix model domains {regmix_model.domains} differ from {domains}")
            rec = regmix_model.recommend({n: covariates[n] for n in regmix_model.covariate_names},
                                         policy="top-k", **bounded)
            candidates["regmix"] = {"mixture": rec["mixture"], "source": "regmix/top-k"}
        elif entry == "equal":
            candidates["equal"] = {"mixture": {d: 1.0 / len(domains) for d in domains}, "source": "equal"}
        elif entry == "natural":
            candidates["natural"] = {"mixture": natural_mixture({d: domain_tokens[d] for d in domains}),
                                     "source": "token share of the pool"}
        elif entry == "best-run":
            if runs is None:
                raise UserError(f"best-run needs {NEEDS['best-run']}")
            mixture, run_id = best_run_mixture(runs, domains)
            candidates["best-run"] = {"mixture": mixture, "source": f"proxy run {run_id} (highest y)"}
        elif entry == "grid":
            for i, mixture in enumerate(grid_mixtures(domains, grid), 1):
                candidates[f"grid-{i:02d}"] = {"mixture": mixture, "source": f"grid point {i} of {grid}"}
        else:
            name = _file_label(entry)
            if name in candidates or name.lower() in BUILTIN or name.lower().startswith("grid-"):
                raise UserError(f"--mixtures: file {entry} would be named {name!r}, which is taken; rename it")
            candidates[name] = {"mixture": read_mixture_file(entry, domains), "source": str(entry)}
    return candidates
