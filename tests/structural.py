"""A structural model of proxy runs with confounding and a shifted target pool (test helper).

Each run samples documents from a pool whose per-domain state s_j (think: quality) varies.
Outcome: y = gamma * sum_j s_j + sum_j theta_j(s) log(w_j + eps) + noise, with the return of a
domain theta_j(s) = base_j + slope * s_j. Confounding: the logged mixtures lean toward domains
whose state is high (RegMix-style draws w ~ Dirichlet(strength * softmax(lean * s)), strength
log-spaced in [0.1, 5] times K, as the sweep's sampler does), and high states also raise the
baseline.
The target pool has shifted states, so its best mixture differs from what the log favours.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from causalmix.mixture_space import project_to_simplex

EPS = 0.01


class StructuralModel:
    def __init__(self, *, n_domains: int = 4, gamma: float = 1.0, slope: float = 1.0, lean: float = 1.0,
                 noise: float = 0.05, seed: int = 0):
        """Defaults: 4 domains whose returns at the log's average state fall from 1.5 to 0.8,
        while at the target pool's state the third domain is worth most."""
        self.k = n_domains
        self.gamma, self.slope, self.lean, self.noise = gamma, slope, lean, noise
        self.rng = np.random.default_rng(seed)
        self.base = np.linspace(1.5, 0.8, n_domains)
        self.domains = [f"d{j}" for j in range(n_domains)]
        self.target_state = np.resize(np.array([-1.0, 0.3, 1.0, -0.3]), n_domains)

    def theta(self, s: np.ndarray) -> np.ndarray:
        return self.base + self.slope * s

    def outcome(self, w: np.ndarray, s: np.ndarray) -> np.ndarray:
        w, s = np.atleast_2d(w), np.atleast_2d(s)
        return self.gamma * s.sum(axis=1) + (self.theta(s) * np.log(w + EPS)).sum(axis=1)

    def runs(self, n: int) -> pd.DataFrame:
        s = self.rng.normal(size=(n, self.k))
        lean = np.exp(self.lean * s)
        strength = self.k * self.rng.choice(np.logspace(-1, np.log10(5), 15), size=n)
        alpha = strength[:, None] * lean / lean.sum(axis=1, keepdims=True)
        gam = self.rng.gamma(alpha)
        w = gam / np.maximum(gam.sum(axis=1, keepdims=True), 1e-300)
        w = np.where(gam.sum(axis=1, keepdims=True) > 0, w, 1.0 / self.k)
        y = self.outcome(w, s) + self.noise * self.rng.normal(size=n)
        frame = pd.DataFrame({"run_id": [f"r{i}" for i in range(n)]})
        for j, d in enumerate(self.domains):
            frame[f"mix.{d}"] = w[:, j]
        for j, d in enumerate(self.domains):
            frame[f"x.{d}.quality"] = s[:, j]
        frame["y"] = y
        return frame

    def target_covariates(self) -> dict[str, float]:
        return {f"x.{d}.quality": float(v) for d, v in zip(self.domains, self.target_state)}

    def best_outcome(self, extra: list[np.ndarray] = ()) -> float:
        """max over the simplex at the target state: projected gradient ascent from many starts."""
        s = self.target_state
        th = self.theta(s)
        starts = np.vstack([np.random.default_rng(0).dirichlet(np.ones(self.k), 256), np.eye(self.k),
                            *[np.atleast_2d(e) for e in extra]])
        w = starts.copy()
        for lr in (0.05, 0.01, 0.002):
            for _ in range(300):
                w = project_to_simplex(w + lr * th / (w + EPS))
        return float(self.outcome(w, np.repeat(s[None], len(w), 0)).max())

    def regret(self, mixture: np.ndarray) -> float:
        best = self.best_outcome([mixture])
        return best - float(self.outcome(mixture, self.target_state)[0])


def fitted_regression_world(n_domains: int = 3, n_runs: int = 200, seed: int = 0):
    """(world, runs table, FittedMixtureModel) of the fast `regression` estimator on a world's
    runs: the policy tests' model, whose returns are right by construction."""
    from causalmix.causal.estimators import RegressionEstimator
    from causalmix.causal.model_dir import FittedMixtureModel
    from causalmix.causal.runs_table import validate_runs_frame

    world = StructuralModel(n_domains=n_domains, seed=seed)
    table = validate_runs_frame(world.runs(n_runs))
    estimator = RegressionEstimator(treatment_featurizer="log-only", featurizer_eps=0.01).fit(
        table.mixtures(), table.covariates(), table.y)
    return world, table, FittedMixtureModel.from_runs_table(estimator, "regression", table)
