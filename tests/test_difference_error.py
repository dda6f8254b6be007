"""The model-error term of the gain intervals (causal/evidence.py: difference_error): the
held-out error of near pairs' predicted differences split into what does not grow with the
pair's distance in treatment features (run noise, baseline) and what does (the returns)."""
import numpy as np

from causalmix.causal.evidence import difference_error, neighbour_pairs


def _pairs_world(returns_error: float, noise: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    n, p = 400, 3
    phi = rng.normal(size=(n, p))
    truth = phi @ np.array([1.0, -0.5, 0.3])
    # a model whose returns are off by `returns_error` per unit of phi, and exact otherwise
    heldout = truth + phi @ (returns_error * np.array([1.0, 1.0, 0.0]))
    y = truth + noise * rng.normal(size=n)
    covariates = rng.normal(size=(n, 2))
    return phi, y, heldout, neighbour_pairs(covariates, k=5, seed=seed)


def test_run_noise_goes_to_the_intercept_not_to_the_returns():
    phi, y, heldout, pairs = _pairs_world(returns_error=0.0, noise=1.0)
    error = difference_error(phi, y, heldout, pairs)
    assert abs(error["intercept"] - 2.0) < 0.3  # both runs' noise variance
    assert error["slope"] < 0.05 and error["per_phi2"] < 0.15


def test_wrong_returns_go_to_the_slope_and_grow_the_term():
    phi, y, heldout, pairs = _pairs_world(returns_error=0.5, noise=1.0)
    error = difference_error(phi, y, heldout, pairs)
    # ((0.5, 0.5, 0) . dphi)^2 has mean 0.25 |dphi|^2 * 2 / 3 over isotropic dphi
    assert 0.1 < error["slope"] < 0.25 and error["per_phi2"] >= error["slope"]
    exact = difference_error(*_pairs_world(returns_error=0.0, noise=1.0))
    assert error["per_phi2"] > 3 * exact["per_phi2"]


def test_neighbour_pairs_without_covariates_are_distinct_others():
    i, j = neighbour_pairs(np.empty((10, 0)), k=3, seed=1)
    assert len(i) == 30 and not np.any(i == j)
    assert all(len(set(j[i == r])) == 3 for r in range(10))


def test_rival_share_is_the_blend_weight_that_predicts_pair_differences():
    from causalmix.causal.selection import rival_share

    rng = np.random.default_rng(3)
    truth = rng.normal(size=200)
    chosen, rival = truth + rng.normal(size=200), truth + rng.normal(size=200)
    partners = (np.arange(200) + 1) % 200
    assert 0.35 < rival_share(truth, chosen, rival, partners) < 0.65  # equally wrong: about even
    assert rival_share(truth, truth, rival, partners) == 0.0  # the chosen is exact
    assert rival_share(truth, chosen, truth, partners) == 1.0
    assert rival_share(truth, chosen, chosen, partners) == 0.0  # the same predictions: nothing to blend
