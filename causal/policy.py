"""From estimated returns to a mixture: trust-region policies and RegMix's top-k policy.

Each policy returns a `PolicyResult`: the mixture, the expected gain over the reference
mixture at the pool's covariates, its (1 - alpha) interval, and how the trust radius was set.

The trust radius is `"auto"` by default: the policy walks the path a step along the marginal
returns traces as the region grows (`mixture_space.steps_along`), stops where that path leaves
the runs' support (`mixture_space.RunSupport`), and takes the radius whose gain has the highest
lower confidence bound. Where the bound is nowhere above zero the reference itself is returned:
the evidence does not say any move helps. docs/causal.md ("Trust radius") has the measurements.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from causalmix.causal.evidence import no_evidence_reason
from causalmix.core.errors import UserError
from causalmix.mixture_space import (MAX_TRUST_RADIUS, DirichletMixtureSampler, farthest_reach, project_to_simplex,
                           simplex_distance, steps_along, trust_region_candidates)

POLICIES = ("analytic", "search", "top-k")
AUTO = "auto"
# Radii tried along the path; the analytic answer stays cheap (docs/causal.md: timings).
RADIUS_STEPS = 48


@dataclasses.dataclass
class RadiusChoice:
    """How the trust radius was set, with the lower-bound-by-radius curve it was read from."""

    mode: str
    radius: float
    support_radius: float | None
    reason: str
    curve: dict

    def to_json(self) -> dict:
        # not dataclasses.asdict: it deep-copies the curve's lists, a third of a cold recommend
        return {"mode": self.mode, "radius": self.radius, "support_radius": self.support_radius,
                "reason": self.reason, "curve": self.curve}


@dataclasses.dataclass
class PolicyResult:
    mixture: np.ndarray
    expected_gain: float
    interval: tuple[float, float]
    policy: str
    radius: RadiusChoice | None = None
    fallback: str | None = None


def check_trust_radius(value) -> float | str:
    """'auto' or a radius in (0, MAX_TRUST_RADIUS]; anything else is refused by name."""
    if isinstance(value, str):
        if value == AUTO:
            return AUTO
        try:
            value = float(value)
        except ValueError:
            raise UserError(f"trust radius must be 'auto' or a number, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) or value <= 0:
        raise UserError(f"trust radius must be 'auto' or a positive number, got {value!r}")
    if value > MAX_TRUST_RADIUS + 1e-12:
        raise UserError(f"trust radius {value} exceeds the simplex's L2 diameter {MAX_TRUST_RADIUS:.4f}")
    return float(value)


def _result(estimator, x, reference, mixture, alpha, policy, radius=None, fallback=None) -> PolicyResult:
    g, lo, hi = estimator.gain_interval(x, reference[None, :], mixture[None, :], alpha=alpha)
    return PolicyResult(mixture=mixture, expected_gain=float(g[0]), interval=(float(lo[0]), float(hi[0])),
                        policy=policy, radius=radius, fallback=fallback)


def _gain_path(estimator, x, reference, max_radius, alpha, support, bounds=None):
    """Radii, the path's mixtures, their gain (point, lower, upper) and support flags."""
    radii = max_radius * np.arange(1, RADIUS_STEPS + 1) / RADIUS_STEPS
    path = steps_along(reference, estimator.marginal_returns(x, reference), radii, bounds)
    g, lo, hi = estimator.gain_interval(x, np.repeat(reference[None, :], len(path), axis=0), path, alpha=alpha)
    ok = support.supported(path, x) if support is not None else np.ones(len(path), dtype=bool)
    return radii, path, g, lo, hi, ok


def _curve(radii, g, lo, hi, ok) -> dict:
    return {"radius": radii.round(6).tolist(), "gain": g.tolist(), "lower": lo.tolist(), "upper": hi.tolist(),
            "supported": ok.tolist()}


def _auto_step(estimator, x, reference, alpha, support, bounds=None):
    """(mixture, RadiusChoice) of the automatic radius along the analytic path."""
    radii, path, g, lo, hi, ok = _gain_path(estimator, x, reference, farthest_reach(reference), alpha, support,
                                            bounds)
    inside = int(np.argmin(ok)) if not ok.all() else len(ok)
    support_radius = float(radii[inside - 1]) if inside else 0.0
    curve = _curve(radii, g, lo, hi, ok)
    reason = no_evidence_reason(estimator, alpha)
    if reason:
        return reference.copy(), RadiusChoice(AUTO, 0.0, 0.0, reason, curve)
    if inside == 0:
        return reference.copy(), RadiusChoice(AUTO, 0.0, 0.0, "no step: the first step along the returns already "
                                              "leaves the runs' support", curve)
    safe = np.flatnonzero(lo[:inside] > 0)
    if not len(safe):
        return reference.copy(), RadiusChoice(
            AUTO, 0.0, support_radius, f"no step: the {1 - alpha:.0%} lower bound of the gain is not above 0 "
            f"at any radius up to the support's edge ({support_radius:.3f})", curve)
    best = int(safe[np.argmax(g[safe])])
    where = ("the support's edge" if best == inside - 1 and inside < len(ok)
             else "the end of the path" if best == len(ok) - 1 else "its maximum")
    return path[best], RadiusChoice(
        AUTO, float(radii[best]), support_radius,
        f"the expected gain peaks at radius {radii[best]:.3f} ({where}) among the radii whose {1 - alpha:.0%} "
        f"lower bound is above 0; the runs' support along the path ends at {support_radius:.3f}", curve)


def analytic_policy(estimator, x, reference, *, trust_radius=AUTO, alpha: float = 0.1,
                    support=None, bounds=None) -> PolicyResult:
    """CausalMix-A: a step from the reference along the centred marginal-return vector, then
    the exact projection onto the simplex. `trust_radius` "auto" sets the step's length by the
    evidence (module docstring); a number fixes it, and if the model expects the fixed step to
    lose, the best point of the same path within that radius (lower bound above 0) or the
    reference is returned instead, with `fallback` saying so. `bounds` (a `MixtureBounds`, with
    a reference inside them) replaces the simplex by the bounded region."""
    trust_radius = check_trust_radius(trust_radius)
    if trust_radius == AUTO:
        mixture, choice = _auto_step(estimator, x, reference, alpha, support, bounds)
        return _result(estimator, x, reference, mixture, alpha, "analytic", choice)
    radii, path, g, lo, hi, ok = _gain_path(estimator, x, reference, trust_radius, alpha, support, bounds)
    choice = RadiusChoice("fixed", trust_radius, None, "as given", _curve(radii, g, lo, hi, ok))
    if g[-1] >= 0:
        return _result(estimator, x, reference, path[-1], alpha, "analytic", choice)
    best = int(np.argmax(lo))
    if lo[best] > 0:
        choice.radius = float(radii[best])
        return _result(estimator, x, reference, path[best], alpha, "analytic", choice,
                       fallback=f"the step of {trust_radius:g} has a negative expected gain ({g[-1]:.4g}); "
                       f"returned the path's point at radius {radii[best]:.3f}, whose lower bound is highest")
    choice.radius = 0.0
    return _result(estimator, x, reference, reference.copy(), alpha, "analytic", choice,
                   fallback=f"the step of {trust_radius:g} has a negative expected gain ({g[-1]:.4g}) and no "
                   "point of the path has a lower bound above 0; returned the reference")


def search_policy(estimator, x, reference, *, trust_radius=AUTO, alpha: float = 0.1,
                  n_candidates: int = 2000, top_k: int = 1, seed: int = 0, support=None,
                  bounds=None) -> PolicyResult:
    """CausalMix-S: the candidate with the highest lower confidence bound of its gain (or the
    mean of the top k) among mixtures inside the trust region. Candidates: the analytic path,
    points scattered around the analytic answer, and mixtures drawn uniformly in the region
    (half on its boundary). Uniform draws alone lose to the analytic step: in K - 1 dimensions
    few of 2000 random directions come near the returns' direction, and the bound's noise
    picks among the near misses (measured: docs/causal.md). With "auto", the region is the
    runs' support along the analytic path and only supported candidates count."""
    trust_radius = check_trust_radius(trust_radius)
    if top_k < 1:
        raise UserError(f"top_k must be >= 1, got {top_k}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise UserError(f"seed must be a non-negative integer, got {seed!r}")
    if trust_radius == AUTO:
        anchor, choice = _auto_step(estimator, x, reference, alpha, support, bounds)
        region = choice.support_radius
    else:
        radii, path, g, lo, hi, ok = _gain_path(estimator, x, reference, trust_radius, alpha, None, bounds)
        anchor = path[int(np.argmax(lo))]
        region = trust_radius
        choice = RadiusChoice("fixed", trust_radius, None, "as given", _curve(radii, g, lo, hi, ok))
    if region <= 0:
        return _result(estimator, x, reference, reference.copy(), alpha, "search", choice,
                       fallback=choice.reason)
    rng = np.random.default_rng(seed)
    path = steps_along(reference, estimator.marginal_returns(x, reference),
                       region * np.arange(1, RADIUS_STEPS + 1) / RADIUS_STEPS, bounds)
    local = rng.standard_normal((n_candidates // 2, reference.size))
    local -= local.mean(axis=1, keepdims=True)
    project = project_to_simplex if bounds is None else bounds.project
    local = project(anchor[None, :] + local * (0.25 * region / np.sqrt(reference.size)))
    uniform = trust_region_candidates(reference, region, n_candidates - len(local), seed=seed, bounds=bounds)
    cands = np.vstack([anchor[None, :], path, local, uniform])
    cands = cands[simplex_distance(cands, reference) <= region + 1e-9]
    if support is not None and trust_radius == AUTO:
        cands = np.vstack([reference[None, :], cands[support.supported(cands, x)]])
    _, lower, _ = estimator.gain_interval(x, np.repeat(reference[None, :], len(cands), axis=0), cands, alpha=alpha)
    order = np.argsort(-lower, kind="stable")
    if lower[order[0]] <= 0:
        return _result(estimator, x, reference, reference.copy(), alpha, "search", choice,
                       fallback=f"no candidate within radius {region:.3f} has a {1 - alpha:.0%} lower bound of "
                       "its gain above 0; returned the reference")
    mixture = cands[order[:top_k]].mean(axis=0)
    choice.radius = float(simplex_distance(mixture, reference)[0])
    return _result(estimator, x, reference, mixture, alpha, "search", choice)


def top_k_policy(estimator, x, reference, *, prior, alpha: float = 0.1, n_candidates: int = 100_000,
                 top_k: int = 128, seed: int = 0, bounds=None) -> PolicyResult:
    """RegMix's policy: sample candidates from the Dirichlet prior (the runs' mean mixture, no
    usage bound), predict y, average the top k. No trust region; with `bounds`, the candidates
    are projected into the bounded region (so is their mean, which a convex region keeps)."""
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise UserError(f"seed must be a non-negative integer, got {seed!r}")
    sampler = DirichletMixtureSampler(prior=prior, max_ratio=None, seed=seed)
    cands = sampler.sample(n_candidates)
    if bounds is not None:
        cands = bounds.project(cands)
    X = np.broadcast_to(np.asarray(x, dtype=float).reshape(1, -1), (len(cands), np.size(x)))
    pred = estimator.predict(cands, X)
    mixture = cands[np.argsort(-pred)[:top_k]].mean(axis=0)
    return _result(estimator, x, reference, mixture, alpha, "top-k")
