"""Treatment featurizers: map the K-1 mixture coordinates to phi(T), with an analytic jacobian.

The DML final stage is linear in phi(T): Y = g(X) + theta(X) . phi(T) + noise, so
phi sets how the return of a domain bends with its weight. Measured on RegMix's
released runs (target Pile-CC, 512 train / 256 held-out, zero covariates,
CausalForestDML; docs/causal.md), Spearman of predicted vs actual y:
linear 0.904, log (eps=0.01) 0.987; a ridge fit of [w, log(w+eps)] peaks near
eps=0.01 (1e-3: 0.983, 0.03: 0.984, 0.1: 0.976) and [w, sqrt w] gives 0.987.
"log" is the default: diminishing returns of a domain's weight are the typical
shape of data-mixture laws, and it stays finite (with a finite slope) at weight 0.
"""
from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

TREATMENT_FEATURIZERS = ("linear", "log", "sqrt")


class MixtureFeaturizer(TransformerMixin, BaseEstimator):
    """phi(T) for T the mixture without its reference domain (column 0 of the full mixture
    is rebuilt as 1 - sum T).

    kind="linear": T.  kind="log": [T, log(w + eps) for all K domains].
    kind="sqrt": [T, sqrt(w + eps) for all K domains].
    """

    def __init__(self, *, kind: str = "log", eps: float = 0.01):
        self.kind = kind
        self.eps = eps

    def fit(self, T, y=None):
        if self.kind not in TREATMENT_FEATURIZERS:
            raise ValueError(f"unknown treatment featurizer {self.kind!r}; choose from {TREATMENT_FEATURIZERS}")
        self.n_features_in_ = np.asarray(T).shape[1]
        return self

    def _full(self, T: np.ndarray) -> np.ndarray:
        T = np.asarray(T, dtype=float)
        return np.clip(np.hstack([1.0 - T.sum(axis=1, keepdims=True), T]), 0.0, None)

    def transform(self, T):
        T = np.atleast_2d(np.asarray(T, dtype=float))
        if self.kind == "linear":
            return T
        w = self._full(T)
        curve = np.log(w + self.eps) if self.kind == "log" else np.sqrt(w + self.eps)
        return np.hstack([T, curve])

    def jac(self, T, epsilon=None):
        """d phi / d T, shape (n, d_t, d_phi) as econml expects."""
        T = np.atleast_2d(np.asarray(T, dtype=float))
        n, d = T.shape
        eye = np.broadcast_to(np.eye(d), (n, d, d))
        if self.kind == "linear":
            return eye.copy()
        w = self._full(T)
        slope = 1.0 / (w + self.eps) if self.kind == "log" else 0.5 / np.sqrt(w + self.eps)
        # d w_0 / d T_i = -1, d w_j / d T_i = [i == j-1]
        curve = np.zeros((n, d, d + 1))
        curve[:, :, 0] = -slope[:, [0]]
        curve[:, np.arange(d), np.arange(1, d + 1)] = slope[:, 1:]
        return np.concatenate([eye, curve], axis=2)
