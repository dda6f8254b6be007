"""Olmix's regression, as a baseline: the data-mixing law loss = c + exp(t . w), Huber-fitted.

Olmix (allenai/olmix, `olmix/fit/utils.py`: `mixing_law`, `LogLinearRegressor`,
`init_params_log_linear_law`; `olmix/fit/law.py`: `ScalingLaw`, adapted there from
github.com/yegcjs/mixinglaws) fits, per metric or per task family, a lower-is-better value L
(bits per byte) of a run on mixture w as

    L(w) = exp(log_c) + exp(sum_j t_j w_j)

with a summed Huber loss (delta 0.02) minimised by L-BFGS from 300 starts (log_c on a grid of
10 values in [-2, 1.5], 30 random t each), keeping the start with the lowest loss. The law's
`b` in c + exp(b + t . w) is absorbed into t because the weights sum to 1.

Here the same law and loss are minimised with scipy's trust-region least squares
(`least_squares(loss="huber", f_scale=delta)`, analytic Jacobian) from a few starts: c at
fractions of min(L), t from the log-linear least-squares fit of log(L - c) on w, plus random
perturbations of it. Pure numpy/scipy: no torch, no Ray.
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import least_squares

# exp() argument cap: a start far from the data must not overflow the residuals
_MAX_EXPONENT = 50.0
# c starts at these fractions of min(L): the law needs c < L everywhere
_C_FRACTIONS = (1e-3, 0.5, 0.8, 0.95)


def _law(W: np.ndarray, params: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(L(W), exp(W t)) for params = [log_c, t_1..t_K]."""
    e = np.exp(np.minimum(W @ params[1:], _MAX_EXPONENT))
    return np.exp(min(params[0], _MAX_EXPONENT)) + e, e


class MixingLawRegressor:
    """The mixing law L = c + exp(t . w) fitted to a lower-is-better value L > 0 per run.

    delta: the Huber threshold in L's units (Olmix: 0.02 bits per byte); n_random_starts: random
    perturbations of each deterministic start (Olmix: 30 random starts per c); max_nfev: function
    evaluations per start. Fitted: `c_`, `t_`, `params_` ([log c, t]), `huber_cost_`."""

    def __init__(self, *, delta: float = 0.02, n_random_starts: int = 4, max_nfev: int = 300,
                 random_state: int = 0):
        self.delta = delta
        self.n_random_starts = n_random_starts
        self.max_nfev = max_nfev
        self.random_state = random_state

    def _starts(self, W: np.ndarray, L: np.ndarray, rng: np.random.Generator):
        for frac in _C_FRACTIONS:
            c = frac * L.min()
            t, *_ = np.linalg.lstsq(W, np.log(L - c), rcond=None)
            yield np.concatenate([[np.log(c)], t])
            for _ in range(self.n_random_starts):
                yield np.concatenate([[np.log(c)], t + rng.normal(0, 0.1 * (np.abs(t).mean() + 1e-3), t.size)])

    def fit(self, W, L) -> "MixingLawRegressor":
        W = np.asarray(W, dtype=float)
        L = np.asarray(L, dtype=float).ravel()
        if W.ndim != 2 or len(W) != len(L):
            raise ValueError(f"W must be (runs, domains) with one L per run; got {W.shape} and {L.shape}")
        if not (np.isfinite(W).all() and np.isfinite(L).all()):
            raise ValueError("W and L must be finite")
        if L.min() <= 0:
            raise ValueError(f"the mixing law needs L > 0 (a loss); min(L) = {L.min():.4g}")
        if not self.delta > 0:
            raise ValueError(f"delta must be > 0, got {self.delta}")

        def residuals(p):
            return _law(W, p)[0] - L

        def jacobian(p):
            pred, e = _law(W, p)
            return np.column_stack([pred - e, e[:, None] * W])

        rng = np.random.default_rng(self.random_state)
        best = None
        for start in self._starts(W, L, rng):
            res = least_squares(residuals, start, jac=jacobian, loss="huber", f_scale=self.delta,
                                max_nfev=self.max_nfev, x_scale="jac")
            if np.isfinite(res.cost) and (best is None or res.cost < best.cost):
                best = res
        self.params_ = best.x
        self.c_ = float(np.exp(best.x[0]))
        self.t_ = best.x[1:].copy()
        self.huber_cost_ = float(best.cost)
        return self

    def predict(self, W) -> np.ndarray:
        if not hasattr(self, "params_"):
            raise RuntimeError("MixingLawRegressor.predict() called before fit()")
        return _law(np.asarray(W, dtype=float), self.params_)[0]
