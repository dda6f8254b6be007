"""The automatic trust radius, the search policy and the negative-gain fallback (pure, no Ray)."""
import numpy as np
import pandas as pd
import pytest

from causalmix.service.schemas import RecommendRequest
from causalmix.causal.estimators import RegressionEstimator
from causalmix.causal.model_dir import load_model_dir, save_model_dir
from causalmix.causal.policy import analytic_policy, check_trust_radius, search_policy
from causalmix.causal.runs_table import validate_runs_frame
from causalmix.causal.evidence import no_evidence_reason
from causalmix.core.errors import UserError
from causalmix.mixture_space import MAX_TRUST_RADIUS, RunSupport, equal_mixture
from structural import fitted_regression_world


@pytest.fixture(scope="module")
def world_model():
    return fitted_regression_world()


def _mixture(rec, domains):
    return np.array([rec["mixture"][d] for d in domains])


def test_trust_radius_values_are_checked():
    assert check_trust_radius("auto") == "auto" and check_trust_radius("0.2") == 0.2
    assert check_trust_radius(MAX_TRUST_RADIUS) == MAX_TRUST_RADIUS
    for bad in (0, -1, 5, float("nan"), True, "wide"):
        with pytest.raises(UserError, match="trust radius"):
            check_trust_radius(bad)


def test_support_follows_where_runs_are():
    rng = np.random.default_rng(0)
    runs = rng.dirichlet(np.full(4, 20.0), 100)          # all near the equal mixture
    support = RunSupport(runs, np.zeros((100, 0)))
    assert support.supported(np.vstack([equal_mixture(4), np.eye(4)[0]]), np.zeros(0)).tolist() == [True, False]


def test_auto_radius_moves_toward_the_optimum_and_says_why(world_model):
    world, table, model = world_model
    rec = model.recommend(world.target_covariates())
    equal = equal_mixture(world.k)
    regret = world.regret(_mixture(rec, world.domains)) / world.regret(equal)
    assert regret < 0.1
    choice = rec["radius_choice"]
    assert choice["mode"] == "auto" and rec["trust_radius"] == choice["radius"] > 0.1
    assert "lower bound" in choice["reason"] and len(choice["curve"]["lower"]) == len(choice["curve"]["radius"])
    best = int(np.argmax(np.where(choice["curve"]["supported"], choice["curve"]["lower"], -np.inf)))
    assert choice["curve"]["radius"][best] == pytest.approx(rec["trust_radius"])
    assert rec["interval"][0] > 0 and rec["fallback"] is None


def test_auto_radius_stays_at_the_reference_without_evidence():
    rng = np.random.default_rng(3)
    W = rng.dirichlet(np.ones(3), 60)
    noise = RegressionEstimator(treatment_featurizer="log-only", featurizer_eps=0.01).fit(
        W, np.zeros((60, 0)), rng.normal(size=60))
    result = analytic_policy(noise, np.zeros(0), equal_mixture(3), support=RunSupport(W, np.zeros((60, 0))))
    lower = np.array(result.radius.curve["lower"])
    if (lower <= 0).all():
        assert np.allclose(result.mixture, equal_mixture(3)) and result.radius.radius == 0.0
        assert result.radius.reason.startswith("no step")
    else:  # a chance bound above 0 must still be the best of the curve
        assert result.interval[0] == pytest.approx(lower.max())
    noise.selection_ = {"chosen": "regression", "scores": {"regression": {"oof_r2": -0.2}}}
    assert "no better than their mean" in no_evidence_reason(noise)
    blocked = analytic_policy(noise, np.zeros(0), equal_mixture(3))
    assert np.allclose(blocked.mixture, equal_mixture(3)) and "R^2 -0.200" in blocked.radius.reason


def _table(W, X, y):
    frame = pd.DataFrame({"run_id": [f"r{i}" for i in range(len(y))], "y": y})
    for j in range(W.shape[1]):
        frame[f"mix.d{j}"] = W[:, j]
    for c in range(X.shape[1]):
        frame[f"x.d{c}.quality"] = X[:, c]
    return validate_runs_frame(frame)


def test_mixture_evidence_tells_a_mixture_effect_from_covariates_alone():
    """The default (sieve-dml) tests its own held-out errors against the covariates alone:
    evidence where the mixture moves y, none where only the covariates do."""
    from causalmix.causal.sieve_dml import SieveDMLEstimator

    rng = np.random.default_rng(0)
    W, X = rng.dirichlet(np.ones(3), 80), rng.normal(size=(80, 2))
    baseline = 2.0 * X[:, 0] + 0.1 * rng.normal(size=80)
    mixture_term = np.log(W + 0.01) @ np.array([1.0, -0.5, 0.3])
    for y, helps in ((baseline + mixture_term, True), (baseline, False)):
        model = SieveDMLEstimator().fit(W, X, y)
        evidence = model.selection_["mixture_evidence"]
        assert evidence["covariates_only"].startswith("cross-fitted ")
        assert (evidence["p_value"] < 0.01) if helps else (evidence["p_value"] > 0.05), evidence
    reason = no_evidence_reason(model, alpha=0.1)
    assert reason.startswith("no step") and f"{evidence['p_value']:.3f}" in reason
    evidence["p_value"] = 0.05
    model.selection_["scores"]["sieve-dml"]["oof_r2"] = 0.5
    assert no_evidence_reason(model, alpha=0.1) is None and no_evidence_reason(model, alpha=0.01)


def test_a_fixed_step_the_model_expects_to_lose_falls_back(world_model):
    world, table, model = world_model
    x = np.array([world.target_covariates()[c] for c in model.covariate_names])
    too_far = analytic_policy(model.estimator, x, equal_mixture(world.k), trust_radius=MAX_TRUST_RADIUS)
    assert too_far.fallback and too_far.expected_gain >= 0 and too_far.interval[0] > 0
    direct = analytic_policy(model.estimator, x, equal_mixture(world.k), trust_radius=0.1)
    assert direct.fallback is None and direct.radius.radius == 0.1


def test_search_is_at_least_as_good_as_analytic_by_its_own_bound(world_model):
    world, table, model = world_model
    analytic = model.recommend(world.target_covariates(), policy="analytic")
    search = model.recommend(world.target_covariates(), policy="search", seed=3)
    assert search["interval"][0] >= analytic["interval"][0] - 1e-12
    with pytest.raises(UserError, match="seed must be a non-negative integer"):
        model.recommend(world.target_covariates(), policy="search", seed=-1)


def test_support_travels_with_the_model_directory(world_model, tmp_path):
    world, table, model = world_model
    save_model_dir(model, tmp_path / "m", runs_table_sha256=None, config={})
    loaded = load_model_dir(tmp_path / "m")
    assert np.array_equal(loaded.run_support.mixtures, table.mixtures())
    assert loaded.recommend(world.target_covariates()) == {**model.recommend(world.target_covariates()),
                                                           "model_version": loaded.version}


def test_http_request_takes_auto_and_bounds_the_radius():
    assert RecommendRequest(covariates={}, trust_radius="auto").policy_options() == {"trust_radius": "auto"}
    assert RecommendRequest(covariates={}, trust_radius=0.3).trust_radius == 0.3
    for bad in (5.0, 0.0, "wide", True):
        with pytest.raises(ValueError):
            RecommendRequest(covariates={}, trust_radius=bad)
