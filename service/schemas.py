"""Request and response models of the recommender service, and the checks that need the model.

Shape checks (types, finite numbers, ranges, lengths) live in the pydantic models;
checks against the loaded model (known domains and covariates) live in
`model_errors_*`, which return FastAPI-style error dicts so that every bad request
gets the same 422 body: `{"detail": [{"loc": [...], "msg": ..., "type": ...}]}`.
No Ray here.
"""
from __future__ import annotations

import math
from typing import Annotated, Any, Literal, Mapping, Sequence, Union

import numpy as np

from pydantic import (BaseModel, ConfigDict, Discriminator, Field, FiniteFloat, Strict, StrictInt,
                      Tag, ValidationError, field_validator, model_validator)

from causalmix.causal.covariates import covariate_name
from causalmix.core.errors import UserError
from causalmix.mixture_space import MAX_TRUST_RADIUS, MixtureBounds

# Mixture weights and a reference must sum to 1 within this tolerance.
SUM_TOLERANCE = 1e-6
MAX_PREDICT_ROWS = 10_000
MAX_TOP_K = 1024

# Strict: pydantic's lax mode would take JSON `true` as 1 (and "0.5" as 0.5); a number must be
# a JSON number. Integers are still accepted where a float is expected.
Number = Annotated[FiniteFloat, Strict()]
Weights = dict[str, Number]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


Share = Annotated[FiniteFloat, Field(ge=0.0, le=1.0)]


class Constraints(_Strict):
    """Per-domain bounds of the mixture (e.g. from a token budget and an epoch cap, as
    `recommend --endpoint --domain-tokens ...` computes them); a domain left out is unbounded."""

    lower: dict[str, Share] = Field(default_factory=dict, description="{domain: lowest weight}")
    upper: dict[str, Share] = Field(default_factory=dict, description="{domain: highest weight}")


class RecommendRequest(_Strict):
    """A pool described by its covariates (or per-domain feature means), and the policy to use."""

    covariates: Weights | None = Field(
        default=None,
        description="Pool covariates by name, as in GET /v1/model `covariate_names` "
                    "(e.g. `x.code.normalized_loss`).")
    pool_features: dict[str, dict[str, Number]] | None = Field(
        default=None,
        description="Alternative to `covariates`: per-domain feature means of the pool, "
                    "`{domain: {feature: mean}}`, mapped to covariates `x.<domain>.<feature>`.")
    policy: Literal["analytic", "search", "top-k"] = Field(
        default="analytic", description="analytic (CausalMix-A), search (CausalMix-S) or top-k "
                                        "(RegMix's policy, no trust region).")
    trust_radius: float | Literal["auto"] | None = Field(
        default=None,
        description='"auto" (the default: set by the evidence, see docs/causal.md) or the largest L2 '
                    f"distance of the recommended mixture from the reference, in (0, {MAX_TRUST_RADIUS:.4f}].")
    reference: Literal["equal"] | Weights = Field(
        default="equal", description='"equal", or a mixture {domain: weight} summing to 1.')
    alpha: Number | None = Field(default=None, gt=0.0, lt=1.0,
                                      description="The interval's level is 1 - alpha (default: the model's).")
    top_k: StrictInt | None = Field(default=None, ge=1, le=MAX_TOP_K,
                              description="search/top-k: average the best k candidates.")
    seed: StrictInt | None = Field(default=None, ge=0, le=2**63 - 1, description="Seed of the candidate sampling (search, top-k).")
    constraints: Constraints | None = Field(
        default=None, description="Bounds every policy must respect (docs/causal.md); the JSON answer "
                                  "says which bind.")

    @field_validator("trust_radius", mode="before")
    @classmethod
    def _trust_radius(cls, value):
        # one check with one error location; JSON `true` is not a radius
        if value is None or value == "auto":
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError('Input should be "auto" or a number')
        if not math.isfinite(value):
            raise ValueError("Input should be a finite number")
        if value <= 0:
            raise ValueError("Input should be greater than 0")
        if value > MAX_TRUST_RADIUS:
            raise ValueError(f"Input should be less than or equal to {MAX_TRUST_RADIUS:.4f} (the simplex's "
                             "L2 diameter)")
        return float(value)

    def policy_options(self) -> dict[str, Any]:
        """The keyword arguments of `FittedMixtureModel.recommend` that the request sets."""
        options = {"trust_radius": self.trust_radius, "alpha": self.alpha, "top_k": self.top_k,
                   "seed": self.seed}
        return {k: v for k, v in options.items() if v is not None}

    @model_validator(mode="after")
    def _one_pool_description(self):
        if self.covariates is not None and self.pool_features is not None:
            raise ValueError("give either `covariates` or `pool_features`, not both")
        return self

    def covariate_values(self) -> dict[str, float]:
        if self.pool_features is not None:
            return {covariate_name(domain, feature): value
                    for domain, features in self.pool_features.items()
                    for feature, value in features.items()}
        return dict(self.covariates or {})

    def covariate_loc(self) -> tuple[str, ...]:
        return ("body", "pool_features" if self.pool_features is not None else "covariates")


class RecommendResponse(BaseModel):
    """The model's recommendation, as `launch.py recommend` prints it."""

    model_config = ConfigDict(extra="allow")
    mixture: dict[str, float]
    expected_gain: float
    interval: list[float] = Field(min_length=2, max_length=2)
    policy: str
    model_version: str
    support: dict[str, Any] = Field(default_factory=dict)


# Rows are lists (in the model's order) or {name: value}. The callable discriminator makes
# pydantic check only the form that was sent; its tags are taken out of error locations.
VALUES_TAG, BY_NAME_TAG = "<values>", "<by-name>"
UNION_TAGS = frozenset({VALUES_TAG, BY_NAME_TAG})


def _form(value) -> str:
    return BY_NAME_TAG if isinstance(value, Mapping) else VALUES_TAG


Row = Annotated[Union[Annotated[list[Number], Tag(VALUES_TAG)], Annotated[Weights, Tag(BY_NAME_TAG)]],
                Discriminator(_form)]
Rows = Annotated[Union[Annotated[list[Row], Tag(VALUES_TAG)], Annotated[Weights, Tag(BY_NAME_TAG)]],
                 Discriminator(_form)]


class PredictRequest(_Strict):
    """Mixtures (and the covariates they are evaluated at) to predict the outcome `y` for."""

    mixtures: list[Row] = Field(
        min_length=1, max_length=MAX_PREDICT_ROWS,
        description="One mixture per row: a list in the order of GET /v1/model `domains`, "
                    "or {domain: weight}; each sums to 1.")
    covariates: Rows | None = Field(
        default=None,
        description="One covariate row per mixture (list in `covariate_names` order or a "
                    "mapping), or a single mapping used for every row.")


class PredictResponse(BaseModel):
    y: list[float]
    model_version: str


class ModelInfo(BaseModel):
    """What GET /v1/model returns: the fitted model's own description (`info()`), plus where
    the service loaded it from."""

    model_config = ConfigDict(extra="allow")
    domains: list[str]
    covariate_names: list[str]
    estimator: Any = None
    version: str
    model_dir: str


class Health(BaseModel):
    status: Literal["ok"]
    model_version: str


def error(loc: Sequence, msg: str, kind: str = "value_error") -> dict:
    return {"loc": list(loc), "msg": msg, "type": kind}


def name_errors(given: Sequence[str], expected: Sequence[str], loc: Sequence, what: str) -> list[dict]:
    """Unknown and missing names, each as one error that lists them all."""
    given_set, expected_set = set(given), set(expected)
    errors = []
    unknown = [n for n in given if n not in expected_set]
    missing = [n for n in expected if n not in given_set]
    if unknown:
        errors.append(error(loc, f"unknown {what}: {unknown}; the model knows {list(expected)}",
                            f"unknown_{what.replace(' ', '_')}"))
    if missing:
        errors.append(error(loc, f"missing {what}: {missing}", f"missing_{what.replace(' ', '_')}"))
    return errors


def weight_errors(weights: Sequence[float], loc: Sequence) -> list[dict]:
    if any(w < 0 for w in weights):
        return [error(loc, f"weights must be >= 0, got {list(weights)}")]
    total = math.fsum(weights)
    if abs(total - 1.0) > SUM_TOLERANCE * max(1, len(weights)):
        return [error(loc, f"weights must sum to 1, they sum to {total!r}")]
    return []


class InvalidRequest(UserError):
    """A request (HTTP body, or the CLI's flags and files) that fails the checks: the HTTP API
    answers 422 with `errors`, the CLI exits 2 with one line per error."""

    def __init__(self, errors: list[dict], labels: Mapping[str, str] | None = None):
        self.errors = errors
        labels = labels or {}

        def where(loc) -> str:
            parts = [str(p) for p in loc if p != "body" and p not in UNION_TAGS]
            head = labels.get(parts[0], parts[0]) if parts else "request"
            return ": ".join([head, *(["/".join(parts[1:])] if parts[1:] else [])])

        super().__init__("\n".join(f"{where(e['loc'])}: {e['msg']}" for e in errors))


def parse_recommend(payload: Mapping, labels: Mapping[str, str] | None = None) -> RecommendRequest:
    """The HTTP API's check of a recommendation's inputs, for the CLI too (`labels` name where
    each field came from, e.g. {"covariates": "covariates file pool.json", "top_k": "--top-k"}):
    one validator, so `true` as a covariate or `top_k: 0` is refused by both."""
    try:
        return RecommendRequest.model_validate(payload)
    except ValidationError as exc:
        errors = [error(e["loc"], e["msg"], e["type"]) for e in exc.errors(include_url=False)]
        raise InvalidRequest(errors, labels) from None


def recommend(model, request: RecommendRequest, *, bounds=None,
              labels: Mapping[str, str] | None = None) -> dict:
    """`model.recommend` for a checked request (also against the model's domains and
    covariates); `bounds` (a MixtureBounds) when the request carries no constraints."""
    errors = model_errors_recommend(request, model.domains, model.covariate_names)
    if errors:
        raise InvalidRequest(errors, labels)
    options = request.policy_options()
    try:  # infeasible constraints are a bad request too, named like any other
        if request.constraints is not None:
            lower, upper = request.constraints.lower, request.constraints.upper
            bounds = MixtureBounds(domains=tuple(model.domains),
                                   lower=np.array([lower.get(d, 0.0) for d in model.domains]),
                                   upper=np.array([upper.get(d, 1.0) for d in model.domains]), sources={})
        if bounds is not None:
            options["constraints"] = bounds
        return model.recommend(request.covariate_values(), policy=request.policy,
                               reference=request.reference, **options)
    except InvalidRequest:
        raise
    except UserError as exc:
        raise InvalidRequest([error(("body",), str(exc))], labels) from None


def model_errors_recommend(request: RecommendRequest, domains: Sequence[str],
                           covariate_names: Sequence[str]) -> list[dict]:
    errors = name_errors(list(request.covariate_values()), covariate_names,
                         request.covariate_loc(), "covariates")
    if isinstance(request.reference, dict):
        loc = ("body", "reference")
        ref_errors = name_errors(list(request.reference), domains, loc, "domains")
        errors += ref_errors or weight_errors(list(request.reference.values()), loc)
    if request.constraints is not None:
        for side in ("lower", "upper"):
            unknown = sorted(set(getattr(request.constraints, side)) - set(domains))
            if unknown:
                errors.append(error(("body", "constraints", side), f"unknown domains: {unknown}"))
    return errors


def _row_values(row: Row, names: Sequence[str], loc: tuple, what: str) -> tuple[list[float], list[dict]]:
    if isinstance(row, Mapping):
        errors = name_errors(list(row), names, loc, what)
        return ([] if errors else [float(row[n]) for n in names]), errors
    if len(row) != len(names):
        return [], [error(loc, f"expected {len(names)} {what} values (in the order {list(names)}), "
                               f"got {len(row)}", "wrong_length")]
    return [float(v) for v in row], []


def predict_matrices(request: PredictRequest, domains: Sequence[str],
                     covariate_names: Sequence[str]) -> tuple[list[list[float]], list[list[float]], list[dict]]:
    """Row-major mixture and covariate matrices in the model's column order, and any errors."""
    errors: list[dict] = []
    mixtures: list[list[float]] = []
    for i, row in enumerate(request.mixtures):
        loc = ("body", "mixtures", i)
        values, row_errors = _row_values(row, domains, loc, "domains")
        row_errors = row_errors or weight_errors(values, loc)
        errors += row_errors
        mixtures.append(values)
    n = len(request.mixtures)
    covs = request.covariates
    if covs is None:
        covs = {}
    if isinstance(covs, Mapping):
        values, cov_errors = _row_values(covs, covariate_names, ("body", "covariates"), "covariates")
        errors += cov_errors
        return mixtures, [values] * n, errors
    if len(covs) != n:
        errors.append(error(("body", "covariates"),
                            f"expected one covariate row per mixture ({n}), got {len(covs)}",
                            "wrong_length"))
        return mixtures, [], errors
    rows = []
    for i, row in enumerate(covs):
        values, row_errors = _row_values(row, covariate_names, ("body", "covariates", i), "covariates")
        errors += row_errors
        rows.append(values)
    return mixtures, rows, errors
