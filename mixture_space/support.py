"""Where the logged runs give evidence: the support of their mixtures near a pool's covariates.

A policy may trust its model only where runs were made: a mixture counts as supported when
its k-th nearest logged mixture (L2 on the simplex) is no farther than that distance is for
the logged runs themselves (their 90th percentile, leave-one-out), among the runs whose data
state is nearest the target pool's (the nearest half in standardised covariate distance, at
least 20 runs). Treatment support, not covariate support: `FittedMixtureModel.support`
reports covariates outside the runs' range separately.
"""
from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np

NEAR_SHARE = 0.5
MIN_NEAR_RUNS = 20
SUPPORT_QUANTILE = 0.9
_CACHE_SIZE = 256


def _kth_nearest(points: np.ndarray, runs: np.ndarray, k: int, exclude_self: bool = False) -> np.ndarray:
    # squared distances by |a|^2 + |b|^2 - 2 a.b: one matrix product instead of an (m, n, K) array
    d2 = (points ** 2).sum(axis=1)[:, None] + (runs ** 2).sum(axis=1)[None, :] - 2.0 * points @ runs.T
    if exclude_self:
        np.fill_diagonal(d2, np.inf)
    k = min(k, d2.shape[1]) - 1
    return np.sqrt(np.maximum(np.partition(d2, k, axis=1)[:, k], 0.0))


class RunSupport:
    """The logged runs' mixtures (n, K) and covariates (n, C), queried per target pool."""

    def __init__(self, mixtures: np.ndarray, covariates: np.ndarray):
        self.mixtures = np.asarray(mixtures, dtype=float)
        self.covariates = np.asarray(covariates, dtype=float).reshape(len(self.mixtures), -1)
        scale = self.covariates.std(axis=0) if len(self.covariates) else np.ones(0)
        self._scale = np.where(scale > 0, scale, 1.0)
        self._cache: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def __getstate__(self):
        return {"mixtures": self.mixtures, "covariates": self.covariates}

    def __setstate__(self, state):
        self.__init__(state["mixtures"], state["covariates"])

    @property
    def n_runs(self) -> int:
        return len(self.mixtures)

    def _near(self, x: np.ndarray) -> tuple[np.ndarray, int, float]:
        """The runs nearest x in data state, the k of the k-NN test and its threshold."""
        key = np.asarray(x, dtype=float).tobytes()
        with self._lock:
            if key in self._cache:
                return self._cache[key]
        n = self.n_runs
        m = n if self.covariates.shape[1] == 0 else min(n, max(MIN_NEAR_RUNS, int(np.ceil(NEAR_SHARE * n))))
        dist = np.sqrt((((self.covariates - np.asarray(x, dtype=float)) / self._scale) ** 2).sum(axis=1))
        near = self.mixtures[np.argsort(dist, kind="stable")[:m]]
        k = max(3, int(round(0.05 * m)))
        own = _kth_nearest(near, near, k, exclude_self=True) if m > k else np.array([np.inf])
        value = (near, k, float(np.quantile(own, SUPPORT_QUANTILE)))
        with self._lock:
            self._cache[key] = value
            if len(self._cache) > _CACHE_SIZE:
                self._cache.popitem(last=False)
        return value

    def supported(self, points: np.ndarray, x: np.ndarray) -> np.ndarray:
        """(m,) bool: is each mixture (row of `points`) inside the runs' support near x."""
        near, k, threshold = self._near(x)
        return _kth_nearest(np.atleast_2d(points), near, k) <= threshold + 1e-12
