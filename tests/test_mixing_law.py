"""causal/mixing_law.py: Olmix's mixing law, fitted with a Huber loss, recovers a known law."""
import numpy as np
import pytest

from causalmix.causal.mixing_law import MixingLawRegressor


def _law_data(n=160, k=6, seed=0, outliers=0):
    rng = np.random.default_rng(seed)
    W = rng.dirichlet(np.full(k, 0.5), size=n)
    c, t = 0.7, rng.uniform(-1.5, 1.0, size=k)
    clean = c + np.exp(W @ t)
    L = clean + rng.normal(0, 0.003, n)
    L[:outliers] += 0.5  # a few broken runs: the Huber loss must not follow them
    return W, L, c, t


def test_recovers_a_known_law_despite_outliers():
    W, L, c, t = _law_data(outliers=6)
    law = MixingLawRegressor().fit(W, L)
    assert abs(law.c_ - c) < 0.05
    assert np.abs(law.t_ - t).max() < 0.1
    W_new = np.random.default_rng(1).dirichlet(np.full(len(t), 0.5), size=100)
    truth = c + np.exp(W_new @ t)
    assert np.abs(law.predict(W_new) - truth).max() < 0.02


def test_rejects_non_positive_losses_and_unfitted_predict():
    W, L, *_ = _law_data(n=20)
    with pytest.raises(ValueError, match="L > 0"):
        MixingLawRegressor().fit(W, -L)
    with pytest.raises(ValueError, match=r"\(runs, domains\)"):
        MixingLawRegressor().fit(W, L[:-1])
    with pytest.raises(RuntimeError, match="before fit"):
        MixingLawRegressor().predict(W)
