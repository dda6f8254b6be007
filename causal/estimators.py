"""Estimators of mixture returns: y = g(X) + theta(X) . phi(T) with T the mixture minus a
reference domain (so theta_j is the return of moving mass from the reference domain to j).

All share one interface (keyword-only init, fitted state ends in `_`, `fit` returns self):
  fit(mixtures (n,K), covariates (n,C), y (n,))
  predict(mixtures, covariates) -> (n,)  predicted outcome
  gain_interval(x (C,), T0 (m,K), T1 (m,K), alpha) -> (point, lo, hi)  effect of T0 -> T1 at x
  marginal_returns(x (C,), at (K,)) -> (K,)  d y / d w_j along "move mass from the reference"

`causal-forest` (default): econml CausalForestDML, honest forest, cross-fitted nuisances chosen
by CV among linear, polynomial and random-forest candidates; `linear-dml`:
econml LinearDML (theta linear in X); `regression`: the same linear-in-X final form fit by one plain
regression, no orthogonalisation (the ablation). The RegMix baseline lives in causal/regmix.py.
"""
from __future__ import annotations

import threading
import warnings
from collections import OrderedDict
from statistics import NormalDist

import numpy as np
from sklearn.base import BaseEstimator

from causalmix.causal.featurizers import (AUTO_CANDIDATES, EPS_CANDIDATES, MixtureFeaturizer, n_treatment_features,
                                          select_featurizer)
from causalmix.causal.forest_inference import grf_point_and_cov, grf_projection_var
from causalmix.core.errors import UserError

_CACHE_SIZE = 1024
# Nuisance models: "auto" lets econml choose by cross-validated score among a lasso, a
# degree-2 polynomial ridge and a random forest. The polynomial matters: E[phi(T)|X] of
# Dirichlet-drawn mixtures is smooth in X, and a forest's error there attenuates the DML
# estimate (measured: docs/causal.md). econml's own "poly" (degrees 1-3, lasso) is ~10x slower
# with 15 covariates.
NUISANCE_MODELS = ("auto", "linear", "poly", "forest")


def nuisance_forest():
    """The random forest every nuisance choice weighs (econml's and sieve-dml's). econml's own
    "forest", a grid search of 100 fully grown trees, was about half of a causal forest's fit
    (benchmarks/bench_fit.py, 512 runs: 13.7 -> 7.2 s; linear-dml 10.5 -> 4.4 s)."""
    from sklearn.ensemble import RandomForestRegressor

    return RandomForestRegressor(n_estimators=60, min_samples_leaf=5, max_features=0.5, random_state=0, n_jobs=1)


def poly_ridge():
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import PolynomialFeatures, StandardScaler

    return make_pipeline(PolynomialFeatures(2, include_bias=False), StandardScaler(),
                         RidgeCV(alphas=np.logspace(-2, 4, 7)))


def _selector(name: str, n_covariates: int):
    """The econml model spec for nuisance `name`. Without covariates every nuisance is a
    constant, so selection would only cost time."""
    if name not in NUISANCE_MODELS:
        raise UserError(f"unknown nuisance model {name!r}; choose from {NUISANCE_MODELS}")
    if n_covariates == 0:
        return "linear"
    if name == "auto":
        return ["linear", poly_ridge(), nuisance_forest()]
    if name == "poly":
        return poly_ridge()
    return nuisance_forest() if name == "forest" else name


def _cross(phi: np.ndarray, x1: np.ndarray) -> np.ndarray:
    """Columns phi_t * x1_f at index t * d_x1 + f (econml's cross_product order)."""
    return (phi[:, :, None] * x1[:, None, :]).reshape(len(phi), -1)


def _with_intercept(X: np.ndarray) -> np.ndarray:
    return np.hstack([np.ones((len(X), 1)), X])


class MixtureEstimator(BaseEstimator):
    """Shared input checks, reference-domain coordinates and interval arithmetic."""

    def __init__(self, *, treatment_featurizer: str = "auto", featurizer_eps: float | str = "auto",
                 reference_domain: int | None = None, random_state: int = 0):
        self.treatment_featurizer = treatment_featurizer
        self.featurizer_eps = featurizer_eps
        self.reference_domain = reference_domain
        self.random_state = random_state

    # -- subclasses implement
    def _fit(self, T, X, y):
        raise NotImplementedError

    def _theta_cov(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """theta(x) (p,) and its covariance (p, p) in phi space."""
        raise NotImplementedError

    def _theta_var_fn(self, x: np.ndarray):
        """theta(x) and a function D (m, p) -> Var(D @ theta) (m,); default from the covariance."""
        theta, cov = self._theta_cov(x)
        return theta, lambda D: np.einsum("ij,jk,ik->i", D, cov, D)

    def _predict(self, T, X) -> np.ndarray:
        raise NotImplementedError

    # -- shared
    def min_runs(self, n_domains: int, n_covariates: int, kind: str | None = None) -> int:
        """Cross-fitting halves the data; each half must identify a linear final stage in phi."""
        return 2 * (self._phi(n_domains, kind) + n_covariates + 1)

    def _phi(self, n_domains: int, kind: str | None = None) -> int:
        """Treatment features for `kind` (default: the configured one; "auto": its smallest)."""
        kind = kind or self.treatment_featurizer
        return n_domains if kind == "auto" else n_treatment_features(kind, n_domains)

    def _coords(self, mixtures: np.ndarray) -> np.ndarray:
        return np.delete(np.asarray(mixtures, dtype=float), self.reference_index_, axis=1)

    def _check_inputs(self, mixtures, covariates, n=None):
        W = np.atleast_2d(np.asarray(mixtures, dtype=float))
        X = np.asarray(covariates, dtype=float).reshape(len(W), -1)
        if n is not None and (W.shape[1] != self.n_domains_ or X.shape[1] != self.n_covariates_):
            raise UserError(f"model expects {self.n_domains_} mixture columns and {self.n_covariates_} "
                            f"covariates, got {W.shape[1]} and {X.shape[1]}")
        return W, X

    def fit(self, mixtures, covariates, y):
        W, X = self._check_inputs(mixtures, covariates)
        y = np.asarray(y, dtype=float).ravel()
        if len(y) != len(W):
            raise UserError(f"{len(W)} mixtures but {len(y)} outcomes")
        need = self.min_runs(W.shape[1], X.shape[1])
        if len(y) < need:
            raise UserError(f"{type(self).__name__} needs at least {need} runs for {W.shape[1]} domains "
                            f"({self._phi(W.shape[1])} treatment features) and {X.shape[1]} covariates; "
                            f"the runs table has {len(y)}")
        self.n_domains_ = W.shape[1]
        self.n_covariates_ = X.shape[1]
        self.reference_index_ = (int(np.argmax(W.mean(axis=0))) if self.reference_domain is None
                                 else int(self.reference_domain))
        auto_eps = self.featurizer_eps == "auto"
        self.featurizer_kind_, self.featurizer_cv_mse_ = self.treatment_featurizer, {}
        self.featurizer_eps_ = EPS_CANDIDATES[1] if auto_eps else float(self.featurizer_eps)
        if self._selects_featurizer():
            self.featurizer_kind_, self.featurizer_eps_, self.featurizer_cv_mse_ = self._select_featurizer(
                self._coords(W), X, y)
        self.featurizer_ = MixtureFeaturizer(kind=self.featurizer_kind_,
                                             eps=self.featurizer_eps_).fit(self._coords(W))
        self.n_runs_ = len(y)
        self._cache = OrderedDict()
        self._fit(self._coords(W), X, y)
        return self

    def _selects_featurizer(self) -> bool:
        return self.treatment_featurizer == "auto" or self.featurizer_eps == "auto"

    def _select_featurizer(self, T, X, y) -> tuple[str, float, dict]:
        """(kind, eps, CV errors) of phi(T): the final form's outcome CV (select_featurizer)."""
        kinds = AUTO_CANDIDATES if self.treatment_featurizer == "auto" else (self.treatment_featurizer,)
        fits = [k for k in kinds if self.min_runs(T.shape[1] + 1, X.shape[1], k) <= len(y)] or kinds[:1]
        eps_grid = EPS_CANDIDATES if self.featurizer_eps == "auto" else (float(self.featurizer_eps),)
        return select_featurizer(T, X, y, candidates=fits, eps_grid=eps_grid, seed=self.random_state)

    def predict(self, mixtures, covariates) -> np.ndarray:
        W, X = self._check_inputs(mixtures, covariates, n=True)
        return self._predict(self._coords(W), X)

    def _cached_theta(self, x: np.ndarray):
        """theta(x) and its variance function, memoised per covariate vector (LRU); safe to
        call from several threads (a Serve replica)."""
        cache = self.__dict__.setdefault("_cache", OrderedDict())
        lock = self.__dict__.setdefault("_cache_lock", threading.Lock())
        key = np.asarray(x, dtype=float).tobytes()
        with lock:
            if key in cache:
                cache.move_to_end(key)
                return cache[key]
        value = self._theta_var_fn(np.asarray(x, dtype=float).reshape(1, -1))
        with lock:
            cache[key] = value
            if len(cache) > _CACHE_SIZE:
                cache.popitem(last=False)
        return value

    def gain_interval(self, x, T0, T1, *, alpha: float = 0.1):
        """Effect of moving from mixtures T0 to T1 (rows, on the simplex) at covariates x:
        point, lower and upper (1 - alpha) normal bounds, each (m,)."""
        theta, var_fn = self._cached_theta(x)
        d = (self.featurizer_.transform(self._coords(np.atleast_2d(T1)))
             - self.featurizer_.transform(self._coords(np.atleast_2d(T0))))
        point = d @ theta
        var = np.maximum(var_fn(d), 0.0)
        error = self.__dict__.get("model_error_")
        if error:  # the held-out error of predicted differences (causal.evidence.attach_model_error)
            var = var + error["per_phi2"] * (d ** 2).sum(axis=1)
        rival = self.__dict__.get("rival_")
        if rival is not None:
            # `auto`'s runner-up form (causal.selection), blended by its held-out share: the gain is
            # the blend's, and the spread of the two forms adds to the variance as for a two-model
            # mixture with those weights (docs/causal.md, "Trust radius")
            spread = rival.gain_interval(x, T0, T1, alpha=alpha)[0] - point
            point = point + self.rival_share_ * spread
            var = var + self.rival_share_ * (1.0 - self.rival_share_) * spread ** 2
        se = np.sqrt(var)
        z = NormalDist().inv_cdf(1 - alpha / 2)
        return point, point - z * se, point + z * se

    def marginal_returns(self, x, at) -> np.ndarray:
        """(K,) derivative of y along e_j - e_ref at mixture `at`; 0 for the reference domain."""
        theta, _ = self._cached_theta(x)
        jac = self.featurizer_.jac(self._coords(np.atleast_2d(at)))[0]
        returns = np.insert(jac @ theta, self.reference_index_, 0.0)
        rival = self.__dict__.get("rival_")
        if rival is not None:  # the blend's returns (gain_interval); centred, as the forms' references may differ
            other = rival.marginal_returns(x, at)
            returns = returns + self.rival_share_ * ((other - other.mean()) - (returns - returns.mean()))
            returns = returns - returns[self.reference_index_]
        return returns

    def __getstate__(self):
        state = super().__getstate__()
        state.pop("_cache", None)
        state.pop("_cache_lock", None)
        return state


class _DMLMixin:
    """Outcome predictions of a DML fit: E[Y|X] + theta(X) . (phi(T) - E[phi(T)|X]) with the
    cross-fitted nuisance models averaged over folds."""

    def _dml_X(self, X):
        return X if X.shape[1] else np.zeros((len(X), 1))

    def _predict(self, T, X):
        # candidate scoring repeats one pool's covariates many times: evaluate each X once
        Xu, inverse = np.unique(X, axis=0, return_inverse=True)
        inverse = np.ravel(inverse)
        Xd = self._dml_X(Xu)
        ey = np.mean([np.ravel(m.predict(Xd)) for m in self.dml_.models_y[0]], axis=0)
        et = np.mean([np.reshape(m.predict(Xd), (len(Xd), -1)) for m in self.dml_.models_t[0]], axis=0)
        theta = self._theta_rows(Xu)
        phi = self.featurizer_.transform(T)
        return ey[inverse] + np.einsum("ij,ij->i", theta[inverse], phi - et[inverse])


class CausalForestEstimator(_DMLMixin, MixtureEstimator):
    """econml CausalForestDML over the K-1 mixture coordinates; theta(X) is an honest forest."""

    def __init__(self, *, treatment_featurizer: str = "auto", featurizer_eps: float | str = "auto",
                 reference_domain: int | None = None, random_state: int = 0,
                 model_y: str = "auto", model_t: str = "auto", cv: int = 3, n_estimators: int = 200,
                 min_samples_leaf: int = 5, max_samples: float = 0.45, n_jobs: int = 1):
        super().__init__(treatment_featurizer=treatment_featurizer, featurizer_eps=featurizer_eps,
                         reference_domain=reference_domain, random_state=random_state)
        self.model_y = model_y
        self.model_t = model_t
        self.cv = cv
        self.n_estimators = n_estimators
        self.min_samples_leaf = min_samples_leaf
        self.max_samples = max_samples
        self.n_jobs = n_jobs

    def _fit(self, T, X, y):
        from econml.dml import CausalForestDML

        self.dml_ = CausalForestDML(
            model_y=_selector(self.model_y, X.shape[1]), model_t=_selector(self.model_t, X.shape[1]),
            treatment_featurizer=self.featurizer_,
            cv=self.cv, n_estimators=self.n_estimators, min_samples_leaf=self.min_samples_leaf,
            max_samples=self.max_samples, honest=True, inference=True, n_jobs=self.n_jobs,
            random_state=self.random_state)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=UserWarning)
            self.dml_.fit(y, T, X=self._dml_X(X))

    def _theta_rows(self, X):
        return np.reshape(self.dml_.const_marginal_effect(self._dml_X(X)), (len(X), -1))

    def _theta_cov(self, x):
        return grf_point_and_cov(self.dml_.model_final_.estimators_[0], self._dml_X(x))

    def _theta_var_fn(self, x):
        return grf_projection_var(self.dml_.model_final_.estimators_[0], self._dml_X(x))


class _LinearFinalMixin:
    """theta(x) = B [1, x] with B read from the flat coefficient vector at `offset`."""

    def _theta_from(self, coef, var, offset, x):
        x1 = _with_intercept(x)
        p = self.featurizer_.transform(np.zeros((1, self.n_domains_ - 1))).shape[1]
        block = coef[offset:offset + p * x1.shape[1]].reshape(p, x1.shape[1])
        theta = block @ x1[0]
        A = np.kron(np.eye(p), x1)
        cov_block = var[offset:offset + p * x1.shape[1], offset:offset + p * x1.shape[1]]
        return theta, A @ cov_block @ A.T


class LinearDMLEstimator(_LinearFinalMixin, _DMLMixin, MixtureEstimator):
    """econml LinearDML: theta linear in the covariates, cross-fitted nuisances chosen by CV."""

    def __init__(self, *, treatment_featurizer: str = "auto", featurizer_eps: float | str = "auto",
                 reference_domain: int | None = None, random_state: int = 0,
                 model_y: str = "auto", model_t: str = "auto", cv: int = 3):
        super().__init__(treatment_featurizer=treatment_featurizer, featurizer_eps=featurizer_eps,
                         reference_domain=reference_domain, random_state=random_state)
        self.model_y = model_y
        self.model_t = model_t
        self.cv = cv

    def min_runs(self, n_domains, n_covariates, kind=None):
        return 2 * (self._phi(n_domains, kind) * (n_covariates + 1) + 1)

    def _fit(self, T, X, y):
        from econml.dml import LinearDML

        self.dml_ = LinearDML(model_y=_selector(self.model_y, X.shape[1]),
                              model_t=_selector(self.model_t, X.shape[1]),
                              treatment_featurizer=self.featurizer_, cv=self.cv,
                              random_state=self.random_state)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=UserWarning)
            self.dml_.fit(y, T, X=X if X.shape[1] else None)

    def _dml_X(self, X):
        # fitted with X=None, econml trains the nuisances on a column of ones
        return X if X.shape[1] else np.ones((len(X), 1))

    def _theta_rows(self, X):
        if X.shape[1] == 0:
            theta = self.dml_.const_marginal_effect(None)
            return np.repeat(np.reshape(theta, (1, -1)), len(X), axis=0)
        return np.reshape(self.dml_.const_marginal_effect(X), (len(X), -1))

    def _theta_cov(self, x):
        final = self.dml_.model_final_
        return self._theta_from(np.ravel(final.coef_), final._param_var, 0, x)


class RegressionEstimator(_LinearFinalMixin, MixtureEstimator):
    """The no-orthogonalisation ablation: one OLS of Y on [1, X, phi(T) x [1, X]] (the
    linear-dml final form, without residualising Y and phi(T) on X first)."""

    def min_runs(self, n_domains, n_covariates, kind=None):
        return self._phi(n_domains, kind) * (n_covariates + 1) + n_covariates + 2

    def _design(self, T, X):
        return np.hstack([_with_intercept(X), _cross(self.featurizer_.transform(T), _with_intercept(X))])

    def _fit(self, T, X, y):
        from econml.sklearn_extensions.linear_model import StatsModelsLinearRegression

        self.ols_ = StatsModelsLinearRegression(fit_intercept=False).fit(self._design(T, X), y)

    def _predict(self, T, X):
        return self._design(T, X) @ np.ravel(self.ols_.coef_)

    def _theta_cov(self, x):
        return self._theta_from(np.ravel(self.ols_.coef_), self.ols_._param_var, 1 + self.n_covariates_, x)
