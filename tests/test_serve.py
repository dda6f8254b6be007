"""The recommender through Ray Serve: real HTTP on loopback, real model directories.

One Serve application for the module (deployed from a Serve config, as `launch.py serve`
does), on a free port; Serve is shut down at the end so that Ray is clean for others.
Two model directories are fitted with `launch.py fit` on a synthetic runs table.
"""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from causalmix import launch
from causalmix.service.client import recommend_via_endpoint
from causalmix.actors.serve.deployment import APP_NAME, ServeSettings, apply, reload
from causalmix.causal.model_dir import load_model_dir
from causalmix.core.errors import UserError
from tests.ports import free_port
from tests.serve_model import DOMAINS, fit_synthetic_model_dir

pytestmark = [pytest.mark.ray, pytest.mark.serve]

COVS = [f"x.{d}.normalized_loss" for d in DOMAINS]
POOL = {c: 0.4 + 0.05 * i for i, c in enumerate(COVS)}


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve_models")
    # The default estimator to serve, and a fast one (another seed's runs) to reload to.
    return (fit_synthetic_model_dir(root / "forest", estimator="causal-forest", seed=0),
            fit_synthetic_model_dir(root / "regression", estimator="regression", seed=1))


@pytest.fixture(scope="module")
def service(ray_local, model_dirs):
    from ray import serve

    settings = ServeSettings(model=str(model_dirs[0]), port=free_port(), replica_cpus=0.25,
                             version=load_model_dir(model_dirs[0]).version)
    apply(settings)  # returns once every replica reports this version
    client = httpx.Client(base_url=f"http://127.0.0.1:{settings.port}", timeout=30)
    try:
        yield client, settings
    finally:
        client.close()
        serve.shutdown()


def test_model_endpoint_describes_the_fitted_model(service, model_dirs):
    client, _ = service
    local = load_model_dir(model_dirs[0])
    body = client.get("/v1/model").json()
    assert body["domains"] == list(DOMAINS) and body["covariate_names"] == COVS
    assert body["version"] == local.version and body["model_dir"] == str(model_dirs[0].resolve())
    assert body["estimator"]["name"] == "causal-forest"
    assert body["fitted_on"]["n_runs"] == 160
    assert client.get("/healthz").json() == {"status": "ok", "model_version": local.version}


def test_recommend_matches_the_model_loaded_locally(service, model_dirs):
    client, _ = service
    local = load_model_dir(model_dirs[0])
    expected = local.recommend(POOL, policy="analytic", trust_radius=0.2, reference="equal")
    body = client.post("/v1/recommend", json={"covariates": POOL, "trust_radius": 0.2}).json()
    assert body["mixture"] == pytest.approx(expected["mixture"])
    assert body["expected_gain"] == pytest.approx(expected["expected_gain"])
    assert body["interval"] == pytest.approx(list(expected["interval"]))
    assert body["model_version"] == local.version and body["policy"] == expected["policy"]
    assert sum(body["mixture"].values()) == pytest.approx(1.0)
    features = {d: {"normalized_loss": POOL[f"x.{d}.normalized_loss"]} for d in DOMAINS}
    via_features = client.post("/v1/recommend", json={"pool_features": features, "trust_radius": 0.2})
    assert via_features.json()["mixture"] == pytest.approx(body["mixture"])
    reference = {"chat": 0.4, "code": 0.2, "math": 0.2, "web": 0.2}
    searched = client.post("/v1/recommend", json={"covariates": POOL, "policy": "search", "alpha": 0.2,
                                                  "reference": reference, "top_k": 4, "seed": 3})
    assert searched.status_code == 200, searched.text
    assert searched.json() == local.recommend(POOL, policy="search", alpha=0.2, reference=reference,
                                              top_k=4, seed=3)


def test_predict_matches_the_model_loaded_locally(service, model_dirs):
    client, _ = service
    local = load_model_dir(model_dirs[0])
    mixtures = [[0.25, 0.25, 0.25, 0.25], [0.7, 0.1, 0.1, 0.1]]
    expected = local.predict(np.array(mixtures), np.array([[POOL[c] for c in COVS]] * 2))
    rows = client.post("/v1/predict", json={"mixtures": mixtures,
                                            "covariates": [[POOL[c] for c in COVS]] * 2}).json()
    assert rows["y"] == pytest.approx(expected.tolist()) and rows["model_version"] == local.version
    mapped = client.post("/v1/predict", json={
        "mixtures": [dict(zip(DOMAINS, m)) for m in mixtures], "covariates": POOL}).json()
    assert mapped["y"] == pytest.approx(expected.tolist())


def test_openapi_docs_are_served(service):
    client, _ = service
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/v1/recommend", "/v1/predict", "/v1/model", "/healthz"} <= set(paths)


GOOD = {"covariates": POOL}
MIX = [0.25, 0.25, 0.25, 0.25]
BAD_REQUESTS = {
    "unknown covariate": ("/v1/recommend", {"covariates": {**POOL, "x.chat.hes": 1.0}},
                          ["body", "covariates"], "unknown covariates: ['x.chat.hes']"),
    "missing covariate": ("/v1/recommend", {"covariates": {c: POOL[c] for c in COVS[1:]}},
                          ["body", "covariates"], "missing covariates: ['x.chat.normalized_loss']"),
    "missing pool feature": ("/v1/recommend", {"pool_features": {"chat": {"normalized_loss": 0.5}}},
                             ["body", "pool_features"], "missing covariates"),
    "unknown reference domain": ("/v1/recommend", {**GOOD, "reference": {"chat": 0.5, "code": 0.5, "tv": 0.0,
                                                                         "math": 0, "web": 0}},
                                 ["body", "reference"], "unknown domains: ['tv']"),
    "missing reference domain": ("/v1/recommend", {**GOOD, "reference": {"chat": 0.5, "code": 0.5}},
                                 ["body", "reference"], "missing domains: ['math', 'web']"),
    "reference not summing to 1": ("/v1/recommend", {**GOOD, "reference": dict(zip(DOMAINS, [0.5] * 4))},
                                   ["body", "reference"], "sum to 1"),
    "trust radius zero": ("/v1/recommend", {**GOOD, "trust_radius": 0}, ["body", "trust_radius"], "greater than 0"),
    "trust radius too large": ("/v1/recommend", {**GOOD, "trust_radius": 5}, ["body", "trust_radius"],
                               "less than or equal to 1.4142"),
    "unknown policy": ("/v1/recommend", {**GOOD, "policy": "greedy"}, ["body", "policy"], "analytic"),
    "alpha out of range": ("/v1/recommend", {**GOOD, "alpha": 1.5}, ["body", "alpha"], "less than 1"),
    "top_k too large": ("/v1/recommend", {**GOOD, "policy": "search", "top_k": 10**6}, ["body", "top_k"],
                        "less than or equal to 1024"),
    "unknown field": ("/v1/recommend", {**GOOD, "pol1cy": "search"}, ["body", "pol1cy"], "not permitted"),
    "string covariate": ("/v1/recommend", {"covariates": {**POOL, COVS[0]: "high"}},
                         ["body", "covariates", COVS[0]], "number"),
    "mixture row too short": ("/v1/predict", {"mixtures": [MIX, [0.5, 0.5]], "covariates": POOL},
                              ["body", "mixtures", 1], "expected 4 domains values"),
    "mixture with unknown domain": ("/v1/predict", {"mixtures": [{"chat": 1, "code": 0, "math": 0, "tv": 0}],
                                                    "covariates": POOL},
                                    ["body", "mixtures", 0], "unknown domains: ['tv']"),
    "negative weight": ("/v1/predict", {"mixtures": [[1.5, -0.5, 0, 0]], "covariates": POOL},
                        ["body", "mixtures", 0], ">= 0"),
    "covariate rows != mixtures": ("/v1/predict", {"mixtures": [MIX, MIX], "covariates": [list(POOL.values())]},
                                   ["body", "covariates"], "one covariate row per mixture (2), got 1"),
    "covariate row too long": ("/v1/predict", {"mixtures": [MIX], "covariates": [list(POOL.values()) + [1.0]]},
                               ["body", "covariates", 0], "expected 4 covariates values"),
    "mixtures not rows": ("/v1/predict", {"mixtures": [0.5, 0.5]}, ["body", "mixtures", 0], "list"),
    "covariate of wrong type": ("/v1/predict", {"mixtures": [MIX], "covariates": [[0.1, "a", 0.1, 0.1]]},
                                ["body", "covariates", 0, 1], "number"),
    "no mixtures": ("/v1/predict", {"mixtures": [], "covariates": POOL}, ["body", "mixtures"], "at least 1"),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_bad_request_gets_422_naming_the_field(service, case):
    client, _ = service
    path, body, loc, message = BAD_REQUESTS[case]
    response = client.post(path, json=body)
    assert response.status_code == 422, response.text
    details = response.json()["detail"]
    assert any(d["loc"] == loc and message in d["msg"] for d in details), details


RAW_BAD = {
    "NaN covariate": (json.dumps({"covariates": {**POOL, COVS[1]: float("nan")}}).encode(),
                      ["body", "covariates", COVS[1]], "finite"),
    "infinite trust radius": (b'{"covariates": %s, "trust_radius": Infinity}' % json.dumps(POOL).encode(),
                              ["body", "trust_radius"], "finite"),
    "infinite weight": (b'{"mixtures": [[-Infinity, 1, 0, 0]]}', ["body", "mixtures", 0, 0],
                        "finite"),
    "not JSON": (b'{"covariates": ', ["body", 15], "JSON"),
    "oversized body": (b'{"covariates": {"pad": "' + b"x" * (1 << 20) + b'"}}', ["body"], "larger than the limit"),
}


@pytest.mark.parametrize("case", list(RAW_BAD))
def test_malformed_body_gets_422_naming_the_field(service, case):
    client, _ = service
    raw, loc, message = RAW_BAD[case]
    path = "/v1/predict" if b"mixtures" in raw[:20] else "/v1/recommend"
    response = client.post(path, content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    details = response.json()["detail"]
    assert any(d["loc"] == loc and message in d["msg"] for d in details), details


def test_service_is_healthy_after_bad_input(service):
    client, _ = service
    assert client.get("/healthz").status_code == 200
    assert client.post("/v1/recommend", json=GOOD).status_code == 200


def test_endpoint_client(service):
    client, settings = service
    url = f"http://127.0.0.1:{settings.port}"
    answer = recommend_via_endpoint(url, {"covariates": POOL, "trust_radius": 0.2})
    assert answer == client.post("/v1/recommend", json={"covariates": POOL, "trust_radius": 0.2}).json()
    with pytest.raises(UserError, match=r"body\.covariates: unknown covariates"):
        recommend_via_endpoint(url, {"covariates": {**POOL, "x.nope": 1.0}})
    with pytest.raises(UserError, match="non-finite"):
        recommend_via_endpoint(url, {"covariates": {**POOL, COVS[0]: float("inf")}})
    with pytest.raises(UserError, match="cannot reach"):
        recommend_via_endpoint(f"http://127.0.0.1:{free_port()}", {"covariates": POOL})



def test_recommend_cli_as_a_client_of_the_service(service, model_dirs, tmp_path, capsys):
    _, settings = service
    url = f"http://127.0.0.1:{settings.port}"
    cov = tmp_path / "cov.json"
    cov.write_text(json.dumps(POOL))
    assert launch.main(["recommend", "--endpoint", url, "--covariates", str(cov), "--trust-radius", "0.2"]) == 0
    remote = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert launch.main(["recommend", "--model", str(model_dirs[0]), "--covariates", str(cov),
                        "--trust-radius", "0.2"]) == 0
    local = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert remote["mixture"] == pytest.approx(local["mixture"])
    assert remote["model_version"] == local["model_version"]

def _replica_actors() -> set[str]:
    import ray

    return {a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
            if "SERVE_REPLICA" in a["name"] and APP_NAME in a["name"]}


def _wait_for(condition, what: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"{what} within {timeout_s:.0f} s"
        time.sleep(0.05)


def test_reload_while_requests_run_drops_none(service, model_dirs):
    """A refit written into the served directory reaches the running replica in place (what
    the watcher does): every answer is a 200, from the old model until `reload` returns and
    from the new one after. Runs last: it leaves the served directory holding the refit."""
    client, settings = service
    served = Path(settings.model)
    old = load_model_dir(served).version
    replicas_before = _replica_actors()
    stop = threading.Event()
    answers: list[tuple[int, str | None]] = []

    def hammer():
        with httpx.Client(base_url=str(client.base_url), timeout=30) as own:
            while not stop.is_set():
                response = own.post("/v1/recommend", json=GOOD)
                answers.append((response.status_code,
                                response.json().get("model_version") if response.status_code == 200 else None))

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        _wait_for(lambda: len(answers) >= 8, "8 answers before the reload")
        fit_synthetic_model_dir(served, estimator="regression", seed=1)  # a refit, in place
        new = load_model_dir(served).version
        assert new != old
        settings.version = new
        reload(settings)  # returns once every replica serves `new`
        reloaded_at = len(answers)
        _wait_for(lambda: len(answers) >= reloaded_at + 8, "8 answers after the reload")
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    statuses = [status for status, _ in answers]
    versions = [version for _, version in answers]
    assert set(statuses) == {200}, f"{len(statuses)} answers, statuses {set(statuses)}"
    assert versions[0] == old and set(versions) == {old, new}
    # answers started after reload() returned all come from the new model (4 threads: the
    # first 4 after it may have been sent before it returned)
    assert set(versions[reloaded_at + 4:]) == {new}
    assert _replica_actors() == replicas_before, "reload restarted replicas instead of reconfiguring them"
    assert client.get("/v1/model").json()["version"] == new
