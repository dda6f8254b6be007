"""Mixture constraints (issue 16, part 1): bounds from a token budget and an epoch cap, fixed
weights, infeasible sets refused with the numbers, the exact projection, and every policy
confined to the bounded region (pure, no Ray; the HTTP path through the app without Ray)."""
import json

import numpy as np
import pytest
from fastapi.testclient import TestClient
from scipy.optimize import minimize

from causalmix import launch
from causalmix.causal.model_dir import save_model_dir
from causalmix.core.errors import UserError
from causalmix.mixture_space import MixtureBounds, project_to_bounds, project_to_simplex
from structural import fitted_regression_world

DOMAINS = ("d0", "d1", "d2")


def test_caps_come_from_tokens_budget_and_epochs():
    b = MixtureBounds.build(DOMAINS, domain_tokens={"d0": 100, "d1": 1000, "d2": 5000}, target_tokens=2000,
                            max_epochs=2)
    assert b.upper.tolist() == [0.1, 1.0, 1.0] and "2 epochs" in b.sources["d0"]
    default = MixtureBounds.build(DOMAINS, domain_tokens={"d0": 100, "d1": 1000, "d2": 5000})
    assert default.upper.tolist() == pytest.approx([4 * 100 / 6100, 4 * 1000 / 6100, 1.0])


@pytest.mark.parametrize("kwargs, message", [
    ({"fixed": {"d0": 0.7, "d1": 0.5}}, "sum to 1.2 > 1"),
    ({"domain_tokens": {"d0": 10, "d1": 10, "d2": 10}, "target_tokens": 1000, "max_epochs": 2},
     "upper bounds sum to 0.06 < 1"),
    ({"domain_tokens": {"d0": 10, "d1": 1e6, "d2": 1e6}, "target_tokens": 1000, "max_epochs": 2,
      "fixed": {"d0": 0.5}}, "--fix d0=0.5 exceeds its cap 0.02"),
    ({"fixed": {"tv": 0.1}}, "unknown domain"),
    ({"minimum": {"d1": 1.5}}, "a number in [0, 1]"),
])
def test_infeasible_constraints_are_refused_with_the_numbers(kwargs, message):
    with pytest.raises(UserError, match=message.replace("[", r"\[").replace("]", r"\]")):
        MixtureBounds.build(DOMAINS, **kwargs)


def test_projection_is_exact_against_a_small_qp():
    rng = np.random.default_rng(0)
    lower, upper = np.array([0.0, 0.05, 0.0, 0.1]), np.array([0.3, 0.05, 1.0, 0.5])
    V = rng.normal(size=(40, 4))
    W = project_to_bounds(V, lower, upper)
    assert np.allclose(W.sum(axis=1), 1) and (W >= lower - 1e-12).all() and (W <= upper + 1e-12).all()
    for v, w in zip(V[:15], W[:15]):
        qp = minimize(lambda z: ((z - v) ** 2).sum(), x0=np.clip(np.full(4, 0.25), lower, upper),
                      bounds=list(zip(lower, upper)), constraints=[{"type": "eq", "fun": lambda z: z.sum() - 1}],
                      method="SLSQP", options={"ftol": 1e-14, "maxiter": 500})
        assert ((w - v) ** 2).sum() <= qp.fun + 1e-9
    assert np.allclose(project_to_bounds(V, np.zeros(4), np.ones(4)), project_to_simplex(V))


@pytest.fixture(scope="module")
def model():
    world, _, fitted = fitted_regression_world()
    return world, fitted


@pytest.mark.parametrize("policy", ["analytic", "search", "top-k"])
def test_every_policy_respects_caps_and_fixed_weights(model, policy):
    world, fitted = model
    free = fitted.recommend(world.target_covariates(), policy=policy, n_candidates=3000)
    favourite = max(free["mixture"], key=free["mixture"].get)
    others = [d for d in world.domains if d != favourite]
    bounds = MixtureBounds.build(world.domains, domain_tokens={d: 1000 for d in world.domains} | {favourite: 50},
                                 target_tokens=1000, max_epochs=2, fixed={others[0]: 0.3})
    rec = fitted.recommend(world.target_covariates(), policy=policy, constraints=bounds, n_candidates=3000)
    w = rec["mixture"]
    assert w[favourite] <= 0.1 + 1e-9 and w[others[0]] == pytest.approx(0.3)
    assert sum(w.values()) == pytest.approx(1)
    assert rec["constraints"]["binding"][others[0]] == "fixed"
    assert rec["constraints"]["binding"].get(favourite) == "upper"
    assert rec["reference_projected"] is True


def test_recommend_cli_and_http_take_the_constraints(model, tmp_path, capsys):
    from causalmix.service.app import ModelSlot, build_app

    world, fitted = model
    save_model_dir(fitted, tmp_path / "m", runs_table_sha256=None, config={})
    (tmp_path / "cov.json").write_text(json.dumps(world.target_covariates()))
    (tmp_path / "tokens.json").write_text(json.dumps({"d0": 50, "d1": 1000, "d2": 1000}))
    capsys.readouterr()
    code = launch.main(["recommend", "--model", str(tmp_path / "m"), "--covariates", str(tmp_path / "cov.json"),
                        "--domain-tokens", str(tmp_path / "tokens.json"), "--target-tokens", "1000",
                        "--max-epochs", "2", "--fix", "d1=0.25"])
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0 and out["mixture"]["d0"] <= 0.1 + 1e-9 and out["mixture"]["d1"] == pytest.approx(0.25)
    code = launch.main(["recommend", "--model", str(tmp_path / "m"), "--covariates", str(tmp_path / "cov.json"),
                        "--fix", "d1=0.8", "--fix", "d0=0.5"])
    assert code == 2 and "sum to 1.3 > 1" in capsys.readouterr().err
    slot = ModelSlot()
    slot.install(slot.load(str(tmp_path / "m")))
    client = TestClient(build_app(slot))
    body = {"covariates": world.target_covariates(), "constraints": {"upper": {"d0": 0.1}, "lower": {"d1": 0.25}}}
    answer = client.post("/v1/recommend", json=body)
    assert answer.status_code == 200, answer.text
    assert answer.json()["mixture"]["d0"] <= 0.1 + 1e-9 and answer.json()["mixture"]["d1"] >= 0.25 - 1e-9
    bad = client.post("/v1/recommend", json={**body, "constraints": {"lower": {"d0": 0.6, "d1": 0.6}}})
    assert bad.status_code == 422 and "sum to 1.2 > 1" in bad.text
    unknown = client.post("/v1/recommend", json={**body, "constraints": {"upper": {"tv": 0.1}}})
    assert unknown.status_code == 422 and "unknown domains: ['tv']" in unknown.text


def test_validation_mixtures_respect_the_constraints(model):
    from causalmix.actors.validate.driver import ValidateConfig
    from causalmix.commands.constraints import constraint_overrides
    from causalmix.core.config import load_config
    from causalmix.validation.candidates import candidate_mixtures

    world, fitted = model
    bounds = MixtureBounds.build(world.domains, domain_tokens={"d0": 10, "d1": 1000, "d2": 1000},
                                 target_tokens=1000, max_epochs=2, fixed={"d1": 0.4})
    picks = candidate_mixtures(fitted, world.target_covariates(), {"d0": 10, "d1": 1000, "d2": 1000},
                               entries=("causalmix-a", "causalmix-s", "equal"), constraints=bounds)
    for name in ("causalmix-A", "causalmix-S"):
        assert picks[name]["mixture"]["d0"] <= 0.02 + 1e-9 and picks[name]["mixture"]["d1"] == pytest.approx(0.4)
    args = launch.build_parser().parse_args(["validate", "--fix", "d1=0.4", "--max-epochs", "2"])
    cfg = load_config(ValidateConfig, None, {**vars(args), **constraint_overrides(args), "model": "m", "pool": "p",
                                             "features": "f", "target_model": "t", "out": "o"})
    assert cfg.fix == {"d1": 0.4} and cfg.max_epochs == 2 and cfg.minimum == {}
    default = load_config(ValidateConfig, None, {**constraint_overrides(launch.build_parser().parse_args(
        ["validate"])), "model": "m", "pool": "p", "features": "f", "target_model": "t", "out": "o"})
    assert default.max_epochs == 4.0 and default.target_tokens is None
