"""The estimators by the names `fit --estimator NAME` takes and a model directory records: what
the fit stage (fitting.py) makes and what loading a model directory (model_dir.py) accepts."""
from __future__ import annotations

from causalmix.causal.estimators import CausalForestEstimator, LinearDMLEstimator, RegressionEstimator
from causalmix.causal.regmix import RegMixEstimator
from causalmix.causal.sieve_dml import SieveDMLEstimator

ESTIMATORS = {
    "auto": None,
    "causal-forest": CausalForestEstimator,
    "linear-dml": LinearDMLEstimator,
    "regression": RegressionEstimator,
    "sieve-dml": SieveDMLEstimator,
    "regmix": RegMixEstimator,
}
"""{name: estimator class}; auto (None) is the selection among them (causal/selection.py)."""

_NAMES = {cls: name for name, cls in ESTIMATORS.items() if cls is not None}


def estimator_name(estimator) -> str:
    """The registry name of a fitted estimator (what `auto` resolved to)."""
    return _NAMES[type(estimator)]
