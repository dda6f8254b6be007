"""Estimators: recovery on a known model, zero covariates, input checks, featurizers, inference."""
import numpy as np
import pytest

from causalmix.causal.estimators import CausalForestEstimator, LinearDMLEstimator, RegressionEstimator
from causalmix.causal.featurizers import (TREATMENT_FEATURIZERS, MixtureFeaturizer, n_treatment_features,
                                          select_featurizer)
from causalmix.causal.forest_inference import FlatForest, grf_point_and_cov
from causalmix.causal.regmix import RegMixEstimator
from causalmix.core.errors import UserError


def _data(n=300, k=3, c=2, seed=0, noise=0.02):
    """y = x0 + sum_j (b_j + x1 * [j == 1]) log(w_j + 0.01) + noise (no confounding)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, c))
    W = rng.dirichlet(np.full(k, 0.7), n)
    theta = np.tile(np.linspace(1.0, 0.3, k), (n, 1))
    theta[:, 1] += 0.5 * X[:, 1]
    y = X[:, 0] + (theta * np.log(W + 0.01)).sum(axis=1) + noise * rng.normal(size=n)
    return W, X, y


def _true_gain(x, w0, w1, k=3):
    theta = np.linspace(1.0, 0.3, k)
    theta[1] += 0.5 * x[1]
    return float((theta * (np.log(w1 + 0.01) - np.log(w0 + 0.01))).sum())


@pytest.mark.parametrize("make", [
    lambda: CausalForestEstimator(n_estimators=80, treatment_featurizer="log-only", random_state=1,
                                  model_y="poly", model_t="poly"),
    lambda: LinearDMLEstimator(treatment_featurizer="log-only", random_state=1, model_y="poly", model_t="poly"),
    lambda: RegressionEstimator(treatment_featurizer="log-only"),
])
def test_dml_estimators_recover_gain_with_interval(make):
    W, X, y = _data()
    est = make().fit(W, X, y)
    assert est.fit(W, X, y) is est and est.n_runs_ == 300
    x = np.array([0.0, 1.0])
    w0, w1 = np.full(3, 1 / 3), np.array([0.2, 0.6, 0.2])
    g, lo, hi = est.gain_interval(x, w0[None], w1[None], alpha=0.1)
    truth = _true_gain(x, w0, w1)
    assert lo[0] <= g[0] <= hi[0]
    assert abs(g[0] - truth) < 0.35 * abs(truth) + 0.05, (g, truth)
    r = est.marginal_returns(x, w0)
    assert r[est.reference_index_] == 0 and np.argmax(r) == 1
    pred = est.predict(W[:50], X[:50])
    assert np.corrcoef(pred, y[:50])[0, 1] > 0.9


def test_forest_gain_interval_matches_econml_effect_interval():
    W, X, y = _data(n=200)
    est = CausalForestEstimator(n_estimators=40, treatment_featurizer="log", random_state=0,
                                model_y="linear", model_t="linear").fit(W, X, y)
    x = X[:1]
    T0, T1 = np.array([[0.5, 0.3, 0.2]]), np.array([[0.2, 0.5, 0.3]])
    point, lo, hi = est.gain_interval(x[0], T0, T1, alpha=0.1)
    coords = lambda w: np.delete(w, est.reference_index_, axis=1)  # noqa: E731
    ref_point = est.dml_.effect(x, T0=coords(T0), T1=coords(T1))
    ref_lo, ref_hi = est.dml_.effect_interval(x, T0=coords(T0), T1=coords(T1), alpha=0.1)
    assert np.allclose([point[0], lo[0], hi[0]], [ref_point[0], ref_lo[0], ref_hi[0]], atol=1e-8)
    theta, cov = grf_point_and_cov(est.dml_.model_final_.estimators_[0], x)
    ref_theta, ref_var = est.dml_.model_final_.predict_and_var(x)
    assert np.allclose(theta, ref_theta.ravel()) and np.allclose(cov, ref_var.reshape(cov.shape))


def test_flat_forest_walks_every_tree_as_econml_does():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(400, 3))
    W = rng.dirichlet(np.ones(3), size=400)
    y = (X[:, 0] > 0) * 2 * W[:, 1] + X[:, 1] * W[:, 2] + rng.normal(0, 0.1, 400)
    est = CausalForestEstimator(n_estimators=40, model_y="linear", model_t="linear",
                                min_samples_leaf=5).fit(W, X, y)
    forest = est.dml_.model_final_.estimators_[0]
    flat = FlatForest.of(forest)
    assert flat.depth > 2 and FlatForest.of(forest) is flat
    queries = [*rng.normal(size=(30, 3)), *X[:10]]
    for tree in forest.estimators_[:10]:  # points exactly on a split threshold go left
        split = np.flatnonzero(tree.tree_.children_left >= 0)[0]
        q = X[0].copy()
        q[tree.tree_.feature[split]] = tree.tree_.threshold[split]
        queries.append(q)
    for q in queries:
        expected = [tree.tree_.apply(q[None])[0] for tree in forest.estimators_]
        assert np.array_equal(flat.leaves(q), expected)
        theta, cov = grf_point_and_cov(forest, q[None])
        ref_theta, ref_var = forest.predict_and_var(q[None])
        assert np.allclose(theta, ref_theta.ravel(), atol=1e-10)
        assert np.allclose(cov, ref_var.reshape(cov.shape), atol=1e-10)


@pytest.mark.parametrize("make", [lambda: CausalForestEstimator(n_estimators=40),
                                  LinearDMLEstimator, RegressionEstimator, lambda: RegMixEstimator(n_estimators=50)])
def test_zero_covariates_work(make):
    W, _, y = _data(n=200)
    X0 = np.zeros((200, 0))
    est = make().fit(W, X0, y)
    assert est.predict(W[:5], X0[:5]).shape == (5,)
    g, lo, hi = est.gain_interval(np.zeros(0), W[:3], W[3:6])
    assert g.shape == (3,) and np.all(lo <= hi)


def test_too_few_runs_rejected_with_numbers():
    W, X, y = _data(n=20, k=4, c=3)
    with pytest.raises(UserError, match=r"needs at least \d+ runs for 4 domains .* the runs table has 20"):
        CausalForestEstimator(treatment_featurizer="log").fit(W, X, y)


def test_mismatched_inputs_rejected():
    W, X, y = _data(n=100)
    with pytest.raises(UserError, match="100 mixtures but 99 outcomes"):
        RegressionEstimator().fit(W, X, y[:99])
    est = RegressionEstimator().fit(W, X, y)
    with pytest.raises(UserError, match="expects 3 mixture columns and 2 covariates"):
        est.predict(W[:, :2], X[:, :1])


@pytest.mark.parametrize("kind", TREATMENT_FEATURIZERS)
def test_featurizer_jacobian_matches_finite_differences(kind):
    f = MixtureFeaturizer(kind=kind).fit(np.zeros((1, 3)))
    T = np.array([[0.2, 0.3, 0.1], [0.05, 0.5, 0.25]])
    jac = f.jac(T)
    h = 1e-6
    for i in range(3):
        step = np.zeros(3)
        step[i] = h
        numeric = (f.transform(T + step) - f.transform(T - step)) / (2 * h)
        assert np.allclose(jac[:, i, :], numeric, atol=1e-4)


@pytest.mark.parametrize("kind", TREATMENT_FEATURIZERS)
@pytest.mark.parametrize("k", [2, 5, 17])
def test_the_counted_treatment_features_are_the_ones_built(kind, k):
    """The estimators size their final stages (and refuse small tables) by the count, never by
    building phi: it must match what transform returns for every kind."""
    T = np.random.default_rng(k).dirichlet(np.ones(k), 4)[:, 1:]
    assert n_treatment_features(kind, k) == MixtureFeaturizer(kind=kind).fit(T).transform(T).shape[1]


def test_an_unknown_treatment_featurizer_is_named():
    with pytest.raises(ValueError, match="unknown treatment featurizer 'cubic'"):
        n_treatment_features("cubic", 4)


def test_featurizer_selection_prefers_the_true_form():
    rng = np.random.default_rng(0)
    W = rng.dirichlet(np.full(3, 0.5), 400)
    T = W[:, 1:]
    X = np.zeros((400, 0))
    y_log = np.log(W + 0.01) @ np.array([1.0, 0.5, -0.2]) + 0.01 * rng.normal(size=400)
    y_curvy = y_log + 3.0 * W[:, 1]
    assert select_featurizer(T, X, y_log)[0] == "log-only"
    assert select_featurizer(T, X, y_curvy)[0] == "log"
    # one domain's return depends on another's weight: only the degree-2 log terms can bend so
    y_pairs = y_curvy + 0.3 * np.log(W[:, 0] + 0.01) * np.log(W[:, 2] + 0.01)
    assert select_featurizer(T, X, y_pairs)[0] == "log-pairs"


def test_featurizer_eps_is_chosen_by_cv_when_auto():
    rng = np.random.default_rng(1)
    W = rng.dirichlet(np.full(3, 0.3), 400)
    y = np.log(W + 0.003) @ np.array([1.0, 0.5, -0.2]) + 0.01 * rng.normal(size=400)
    kind, eps, scores = select_featurizer(W[:, 1:], np.zeros((400, 0)), y, candidates=("log-only",),
                                          eps_grid=(0.003, 0.01, 0.03))
    assert (kind, eps) == ("log-only", 0.003) and set(scores) == {"log-only@0.003", "log-only@0.01",
                                                                    "log-only@0.03"}


def test_sieve_dml_finds_the_covariate_that_moves_the_returns():
    """sieve-dml keeps the covariate that modifies the returns among five, and its gain at two
    shifted states has the truth's sign; its held-out evidence and model error are recorded."""
    from causalmix.causal.sieve_dml import SieveDMLEstimator

    rng = np.random.default_rng(0)
    n = 300
    W, X = rng.dirichlet(np.ones(3), n), rng.normal(size=(n, 5))
    # domain 1's return grows with covariate 2; domains 0 and 2 compete
    y = (X[:, 0] + (1.0 + X[:, 2]) * W[:, 1] * (2.0 - W[:, 1]) - 3.0 * W[:, 0] * W[:, 2]
         + 0.05 * rng.normal(size=n))
    model = SieveDMLEstimator().fit(W, X, y)
    assert 2 in model.covariates_used_
    equal, more_of_1 = np.full(3, 1 / 3), np.array([0.2, 0.6, 0.2])
    for state, sign in ((1.5, 1), (-1.8, -1)):
        x = np.array([0.0, 0.0, state, 0.0, 0.0])
        point, lo, hi = model.gain_interval(x, equal[None], more_of_1[None])
        assert np.sign(point[0]) == sign and lo[0] <= point[0] <= hi[0]
    assert model.selection_["mixture_evidence"]["p_value"] < 1e-3 and model.model_error_["pair_mse"] > 0


def test_sieve_dml_pairs_a_domains_covariate_with_that_domains_weight_only():
    """With covariate names, a covariate of one domain modifies only that domain's basis
    columns: its coefficients on the other domains' columns are exactly 0, and the return it
    drives is recovered (theta of d1 moves with x.d1.q, d0's does not)."""
    from causalmix.causal.sieve_dml import SieveDMLEstimator, covariate_domains

    rng = np.random.default_rng(0)
    n = 300
    W = rng.dirichlet(np.ones(3), n)
    q = rng.normal(size=(n, 1))
    y = np.log(W[:, 0] + 0.01) + (1.0 + q[:, 0]) * np.log(W[:, 1] + 0.01) + 0.05 * rng.normal(size=n)
    domains = covariate_domains(["x.d1.q"], ["d0", "d1", "d2"])
    assert domains == (1,) and covariate_domains(["x.size"], ["d0"]) == (-1,)
    est = SieveDMLEstimator(treatment_featurizer="log-only", featurizer_eps=0.01, covariate_domains=domains,
                            reference_domain=0).fit(W, q, y)
    assert est.covariates_used_ == [0]
    B = est.coef_.reshape(-1, 2)  # rows: log terms in the featurizer's order (reference d0 first)
    assert B[0, 1] == 0.0 and B[2, 1] == 0.0 and abs(B[1, 1]) > 0.5
    with pytest.raises(ValueError, match="covariate_domains names 2 covariates; the runs have 1"):
        SieveDMLEstimator(covariate_domains=(1, 2)).fit(W, q, y)


def test_sieve_dml_picks_log_pairs_when_one_domain_s_log_return_scales_with_another_s():
    """Returns whose log terms interact (y has log w0 * log w1, as RegMix's Pile-CC loss favours:
    benchmarks/bench_real_swarms.py): auto picks log-pairs over every other basis and its returns
    at an interior mixture are within 10 % of the truth's. Without log-pairs among the sieve's
    bases it picks sat-quad, whose leave-one-out error here is 3.4 times as large."""
    from causalmix.causal.sieve_dml import SieveDMLEstimator

    rng = np.random.default_rng(2)
    n, k, eps = 400, 4, 0.01
    W, X = rng.dirichlet(np.full(k, 0.5), n), rng.normal(size=(n, 1))
    logs, a = np.log(W + eps), np.array([1.0, 0.6, 0.4, 0.2])
    y = logs @ a + 0.15 * logs[:, 0] * logs[:, 1] + 0.5 * X[:, 0] + 0.05 * rng.normal(size=n)
    est = SieveDMLEstimator().fit(W, X, y)
    assert est.featurizer_kind_ == "log-pairs"
    at = np.array([0.4, 0.3, 0.2, 0.1])
    log_at = np.log(at + eps)
    true = a / (at + eps) + 0.15 * np.array([log_at[1] / (at[0] + eps), log_at[0] / (at[1] + eps), 0.0, 0.0])
    truth = true - true[est.reference_index_]
    assert np.allclose(est.marginal_returns(np.zeros(1), at), truth, atol=0.1 * np.abs(truth).max())


def test_sieve_dml_picks_the_saturating_basis_for_saturating_returns():
    """Returns that level off at a few percent of the mixture (1 - exp(-w / 0.05)) and whose
    size each domain's own covariate sets: auto picks sat-quad over log-quad, keeps every
    domain's covariate, and its returns at a mixture past the bend are near the truth's, with
    a domain's covariate paired only with that domain's columns (saturation blocks included)."""
    from causalmix.causal.sieve_dml import SieveDMLEstimator, covariate_domains

    rng = np.random.default_rng(1)
    n, k, tau = 400, 3, 0.05
    W, X = rng.dirichlet(np.ones(k), n), rng.normal(size=(n, k))
    amplitude = 1.0 + 0.4 * X
    y = (amplitude * (1.0 - np.exp(-W / tau))).sum(axis=1) + 2.0 * W[:, 0] * W[:, 2] + 0.02 * rng.normal(size=n)
    domains = covariate_domains([f"x.d{j}.q" for j in range(k)], [f"d{j}" for j in range(k)])
    est = SieveDMLEstimator(covariate_domains=domains).fit(W, X, y)
    assert est.featurizer_kind_ == "sat-quad" and sorted(est.covariates_used_) == [0, 1, 2]
    x, at = np.array([1.0, -1.0, 0.5]), np.array([0.5, 0.3, 0.2])
    true = (1.0 + 0.4 * x) * np.exp(-at / tau) / tau + 2.0 * np.array([at[2], 0.0, at[0]])
    returns = est.marginal_returns(x, at)
    truth = true - true[est.reference_index_]
    assert np.allclose(returns, truth, atol=0.15 * np.abs(truth).max())
