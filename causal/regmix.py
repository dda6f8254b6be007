"""The RegMix baseline as released (Liu et al. 2024, sail-sg/regmix): a LightGBM regressor of
the outcome on the mixture alone (covariates are accepted and ignored: RegMix has no notion of
the pool's state, which is exactly what CausalMix adds), with RegMix's released
hyper-parameters (1000 boosting rounds, learning rate 0.01). RegMix's own
policy (100K prior candidates, mean of the top 128 by predicted y) is `policy.top_k_policy`.

Gain intervals come from bootstrap refits (the spread of the bagged models' predicted gain);
RegMix itself reports none.
"""
from __future__ import annotations

from statistics import NormalDist

import numpy as np

from causalmix.causal.estimators import MixtureEstimator

# Deferred on purpose, so that importing this module does not load lightgbm: the function-local
# imports (of these libraries or of this project's modules that import them).


class RegMixEstimator(MixtureEstimator):
    def __init__(self, *, n_estimators: int = 1000, learning_rate: float = 0.01, n_bootstrap: int = 4,
                 reference_domain: int | None = None, random_state: int = 0, n_jobs: int = 1):
        super().__init__(treatment_featurizer="linear", reference_domain=reference_domain,
                         random_state=random_state)
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.n_bootstrap = n_bootstrap
        self.n_jobs = n_jobs

    def min_runs(self, n_domains, n_covariates, kind=None):
        return 10

    def _model(self, seed):
        import lightgbm as lgb

        return lgb.LGBMRegressor(objective="regression", n_estimators=self.n_estimators,
                                 learning_rate=self.learning_rate, random_state=seed,
                                 n_jobs=self.n_jobs, verbose=-1)

    def _features(self, W, X):
        return W

    def _fit(self, T, X, y):
        W = self._full(T)
        F = self._features(W, X)
        self.model_ = self._model(self.random_state).fit(F, y)
        rng = np.random.default_rng(self.random_state)
        self.bootstrap_models_ = []
        for b in range(self.n_bootstrap):
            idx = rng.integers(0, len(y), len(y))
            self.bootstrap_models_.append(self._model(self.random_state + 1 + b).fit(F[idx], y[idx]))

    def _full(self, T):
        return np.insert(T, self.reference_index_, 1.0 - T.sum(axis=1), axis=1)

    def _predict(self, T, X):
        return self.model_.predict(self._features(self._full(T), X))

    def gain_interval(self, x, T0, T1, *, alpha: float = 0.1):
        T0, T1 = np.atleast_2d(T0), np.atleast_2d(T1)
        X = np.broadcast_to(np.asarray(x, dtype=float).reshape(1, -1), (len(T0), self.n_covariates_))

        def gain(model):
            return model.predict(self._features(T1, X)) - model.predict(self._features(T0, X))

        point = gain(self.model_)
        if not self.bootstrap_models_:
            return point, point, point
        se = np.std([gain(m) for m in self.bootstrap_models_], axis=0, ddof=1) if self.n_bootstrap > 1 \
            else np.zeros_like(point)
        z = NormalDist().inv_cdf(1 - alpha / 2)
        return point, point - z * se, point + z * se

    def marginal_returns(self, x, at, step: float = 0.02):
        """Finite differences of the (piecewise-constant) regressor, moving `step` of the
        reference domain's weight to each other domain."""
        at = np.asarray(at, dtype=float)
        k = at.size
        moved = np.repeat(at[None, :], k, axis=0)
        h = min(step, at[self.reference_index_]) or step
        moved[:, self.reference_index_] -= h
        moved[np.arange(k), np.arange(k)] += h
        moved = np.clip(moved, 0, None)
        moved /= moved.sum(axis=1, keepdims=True)
        X = np.broadcast_to(np.asarray(x, dtype=float).reshape(1, -1), (k, self.n_covariates_))
        base = self.model_.predict(self._features(at[None, :], X[:1]))
        out = (self.model_.predict(self._features(moved, X)) - base) / h
        out[self.reference_index_] = 0.0
        return out
