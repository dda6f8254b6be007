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

TREATMENT_FEATURIZERS = ("linear", "log", "log-only", "sqrt", "log-pairs", "log-quad", "sat-quad")
# the kinds that append the pairwise products of a per-domain factor after their curves
PAIRWISE = ("log-pairs", "log-quad", "sat-quad")
# sat-quad's saturation scales: a domain's return 1 - exp(-w / tau) saturates near w = 3 tau, so
# these span a return that is spent by a few percent of the mixture to one still rising at w = 1
SATURATION_SCALES = (0.03, 0.1, 0.3, 1.0)
# "auto" (the default) picks among AUTO_CANDIDATES by cross-validation: select_featurizer
AUTO_CANDIDATES = ("log", "log-only", "log-pairs")
# featurizer_eps="auto" picks among these by the same CV (RegMix's Pile-CC: 0.003 with log-pairs)
EPS_CANDIDATES = (0.003, 0.01, 0.03)


class MixtureFeaturizer(TransformerMixin, BaseEstimator):
    """phi(T) for T the mixture without its reference domain (column 0 of the full mixture
    is rebuilt as 1 - sum T).

    kind="linear": T.  kind="log": [T, log(w + eps) for all K domains].
    kind="log-only": log(w + eps) for all K domains (K features: no linear part).
    kind="sqrt": [T, sqrt(w + eps) for all K domains].
    kind="log-pairs": "log" plus the products log(w_i + eps) log(w_j + eps), i < j: a
    degree-2 expansion of the log terms, so the return of one domain can depend on the weight
    of another (the interactions a tree model like RegMix's LightGBM picks up). The per-domain
    returns stay identified: d y / d w_j is the jacobian below applied to theta.
    kind="log-quad": "log" plus the products w_i w_j, i < j: with the linear part, every
    quadratic in the mixture (w_j^2 = w_j - sum_i w_i w_j on the simplex), so saturating
    returns, synergy and competition between domains and exponential mixing laws are
    approximated without their form being assumed (docs/causal.md, "Beyond the log form").
    kind="sat-quad": "log-quad" plus 1 - exp(-w_j / tau) for every domain at each scale of
    SATURATION_SCALES: returns that level off at a weight of their own (a quadratic and a log
    keep rising or turn down), mixed by the final stage's coefficients of either sign.
    """

    def __init__(self, *, kind: str = "log", eps: float = 0.01):
        self.kind = kind
        self.eps = eps

    def fit(self, T, y=None):
        if self.kind not in TREATMENT_FEATURIZERS:
            raise ValueError(f"unknown treatment featurizer {self.kind!r}; choose from {TREATMENT_FEATURIZERS}")
        self.n_features_in_ = np.asarray(T).shape[1]
        return self

    @property
    def curve_blocks(self) -> int:
        """How many K-column blocks of per-domain curves follow the K - 1 linear columns."""
        return 1 + len(SATURATION_SCALES) if self.kind == "sat-quad" else 1

    def transform(self, T):
        T = np.atleast_2d(np.asarray(T, dtype=float))
        if self.kind == "linear":
            return T
        w = full_mixture(T)
        curve = np.sqrt(w + self.eps) if self.kind == "sqrt" else np.log(w + self.eps)
        if self.kind == "sat-quad":
            curve = np.hstack([curve, saturation_curves(w)])
        if self.kind in PAIRWISE:
            i, j = np.triu_indices(w.shape[1], k=1)
            factor = np.log(w + self.eps) if self.kind == "log-pairs" else w
            return np.hstack([T, curve, factor[:, i] * factor[:, j]])
        return curve if self.kind == "log-only" else np.hstack([T, curve])

    def jac(self, T, epsilon=None):
        """d phi / d T, shape (n, d_t, d_phi) as econml expects."""
        T = np.atleast_2d(np.asarray(T, dtype=float))
        n, d = T.shape
        eye = np.broadcast_to(np.eye(d), (n, d, d))
        if self.kind == "linear":
            return eye.copy()
        w = full_mixture(T)
        slope = 0.5 / np.sqrt(w + self.eps) if self.kind == "sqrt" else 1.0 / (w + self.eps)
        curve = _per_domain_jac(slope)
        if self.kind == "sat-quad":
            curve = np.concatenate([curve] + [_per_domain_jac(np.exp(-w / tau) / tau) for tau in SATURATION_SCALES],
                                   axis=2)
        if self.kind in PAIRWISE:
            if self.kind == "log-pairs":
                c, dc = np.log(w + self.eps), curve
            else:
                c, dc = w, _per_domain_jac(np.ones_like(w))
            i, j = np.triu_indices(d + 1, k=1)
            # d(c_i c_j)/dT = c_j dc_i/dT + c_i dc_j/dT
            pairs = dc[:, :, i] * c[:, None, j] + c[:, None, i] * dc[:, :, j]
            return np.concatenate([eye, curve, pairs], axis=2)
        return curve if self.kind == "log-only" else np.concatenate([eye, curve], axis=2)


def n_treatment_features(kind: str, n_domains: int) -> int:
    """Columns of phi(T) for `kind` over K = n_domains domains, as `MixtureFeaturizer.transform`
    returns them, without building them: the estimators size their final stages (and refuse a
    table too small for one) from this."""
    if kind not in TREATMENT_FEATURIZERS:
        raise ValueError(f"unknown treatment featurizer {kind!r}; choose from {TREATMENT_FEATURIZERS}")
    k = n_domains
    if kind in ("linear", "log-only"):
        return k - 1 if kind == "linear" else k
    width = k - 1 + MixtureFeaturizer(kind=kind).curve_blocks * k
    return width + k * (k - 1) // 2 if kind in PAIRWISE else width


def full_mixture(T: np.ndarray) -> np.ndarray:
    """The full mixtures (n, K) of coordinates T without the reference domain (column 0 is
    rebuilt as 1 - sum T), clipped at 0."""
    T = np.asarray(T, dtype=float)
    return np.clip(np.hstack([1.0 - T.sum(axis=1, keepdims=True), T]), 0.0, None)


def saturation_curves(w: np.ndarray) -> np.ndarray:
    """1 - exp(-w_j / tau) of every domain of the full mixtures w (n, K), one K-column block
    per scale of SATURATION_SCALES: sat-quad's columns after its log block."""
    return np.hstack([1.0 - np.exp(-w / tau) for tau in SATURATION_SCALES])


def _per_domain_jac(slope: np.ndarray) -> np.ndarray:
    """d f(w_j) / d T_i for a per-domain curve f with slope f'(w_j) (n, K): w_0 = 1 - sum T, so
    d w_0 / d T_i = -1, and d w_j / d T_i = [i == j - 1]."""
    n, k = slope.shape
    out = np.zeros((n, k - 1, k))
    out[:, :, 0] = -slope[:, [0]]
    out[:, np.arange(k - 1), np.arange(1, k)] = slope[:, 1:]
    return out


def _interaction_design(phi: np.ndarray, X: np.ndarray) -> np.ndarray:
    x1 = np.hstack([np.ones((len(X), 1)), X])
    return np.hstack([x1, (phi[:, :, None] * x1[:, None, :]).reshape(len(phi), -1)])


def select_featurizer(T: np.ndarray, X: np.ndarray, y: np.ndarray, *, candidates=AUTO_CANDIDATES,
                      eps_grid=(0.01,), folds: int = 5, seed: int = 0
                      ) -> tuple[str, float, dict[str, float]]:
    """Pick the treatment featurizer (kind and eps) whose final form y ~ [1, X] + phi(T) x [1, X]
    predicts held-out runs best (k-fold CV mean squared error of a lightly ridged least-squares
    fit). Returns (kind, eps, {"kind@eps": CV MSE}).

    A richer phi can fit curvature and interactions (RegMix's Pile-CC loss: "log-pairs" wins)
    but its parts are near-collinear when the logged mixtures are dense, which inflates the
    variance of every DML stage; CV on the outcome arbitrates. Candidates with more parameters
    than a training fold has runs are skipped.
    """
    # here, not at module level: every CLI command imports this module, few fit
    from sklearn.linear_model import Ridge
    from sklearn.model_selection import PredefinedSplit, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    n = len(y)
    # Fold k holds the runs at positions k, k + folds, ... of one seeded permutation.
    fold_of = np.empty(n, dtype=int)
    fold_of[np.random.default_rng(seed).permutation(n)] = np.arange(n) % folds
    ridge = make_pipeline(StandardScaler(), Ridge(alpha=1e-6 * n * (folds - 1) / folds))
    scores: dict[str, float] = {}
    best = None
    for kind in candidates:
        for eps in (eps_grid if kind != "linear" else eps_grid[:1]):
            design = _interaction_design(MixtureFeaturizer(kind=kind, eps=eps).fit(T).transform(T), X)
            if design.shape[1] >= n * (folds - 1) / folds:
                continue
            mse = -cross_val_score(ridge, design, y, cv=PredefinedSplit(fold_of),
                                   scoring="neg_mean_squared_error").mean()
            scores[f"{kind}@{eps:g}"] = float(mse)
            if best is None or mse < best[2]:
                best = (kind, float(eps), float(mse))
    if best is None:
        return candidates[-1], float(eps_grid[0]), scores
    return best[0], best[1], scores
