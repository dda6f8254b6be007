"""From estimated returns to a mixture: trust-region policies and RegMix's top-k policy.

Each policy returns a `PolicyResult`: the mixture, the expected gain over the reference
mixture at the pool's covariates, and its (1 - alpha) interval.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from core.errors import UserError
from mixture_space import DirichletMixtureSampler, step_to_radius, trust_region_candidates

POLICIES = ("analytic", "search", "top-k")


@dataclasses.dataclass
class PolicyResult:
    mixture: np.ndarray
    expected_gain: float
    interval: tuple[float, float]
    policy: str


def _result(estimator, x, reference, mixture, alpha, policy) -> PolicyResult:
    g, lo, hi = estimator.gain_interval(x, reference[None, :], mixture[None, :], alpha=alpha)
    return PolicyResult(mixture=mixture, expected_gain=float(g[0]), interval=(float(lo[0]), float(hi[0])),
                        policy=policy)


def analytic_policy(estimator, x, reference, *, trust_radius: float, alpha: float = 0.1) -> PolicyResult:
    """CausalMix-A: step from the reference along the centred marginal-return vector to the
    trust radius (L2), then project exactly onto the simplex."""
    returns = estimator.marginal_returns(x, reference)
    mixture = step_to_radius(reference, returns, trust_radius)
    return _result(estimator, x, reference, mixture, alpha, "analytic")


def search_policy(estimator, x, reference, *, trust_radius: float, alpha: float = 0.1,
                  n_candidates: int = 2000, top_k: int = 1, seed: int = 0) -> PolicyResult:
    """CausalMix-S: score candidates inside the trust region by the lower confidence bound of
    their gain; return the best (top_k=1) or the mean of the top k (still inside the region,
    which is convex)."""
    if top_k < 1:
        raise UserError(f"top_k must be >= 1, got {top_k}")
    cands = trust_region_candidates(reference, trust_radius, n_candidates, seed=seed)
    _, lower, _ = estimator.gain_interval(x, np.repeat(reference[None, :], len(cands), axis=0), cands,
                                          alpha=alpha)
    best = np.argsort(-lower)[:top_k]
    mixture = cands[best].mean(axis=0)
    return _result(estimator, x, reference, mixture, alpha, "search")


def top_k_policy(estimator, x, reference, *, prior, alpha: float = 0.1, n_candidates: int = 100_000,
                 top_k: int = 128, seed: int = 0) -> PolicyResult:
    """RegMix's policy: sample candidates from the Dirichlet prior (the runs' mean mixture, no
    usage bound), predict y, average the top k. No trust region."""
    sampler = DirichletMixtureSampler(prior=prior, max_ratio=None, seed=seed)
    cands = sampler.sample(n_candidates)
    X = np.broadcast_to(np.asarray(x, dtype=float).reshape(1, -1), (len(cands), np.size(x)))
    pred = estimator.predict(cands, X)
    mixture = cands[np.argsort(-pred)[:top_k]].mean(axis=0)
    return _result(estimator, x, reference, mixture, alpha, "top-k")
