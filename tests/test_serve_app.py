"""The recommender's request checks, model slot and health logic, without Ray or a socket.

The HTTP behaviour through Ray Serve is tested in test_serve.py; here the pieces that
decide it are checked in milliseconds, with a minimal object that has the model's
interface (defined here only).
"""
from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from ray.serve import Application

from causalmix.service import schemas
from causalmix.service.app import ModelSlot, build_app, probe_covariates
from causalmix.actors.serve.deployment import (DEPLOYMENT_NAME, IMPORT_PATH, AppArgs, ModelRef, ServeSettings,
                                     app_builder)
from causalmix.core.config import load_config
from causalmix.core.errors import UserError

REPO = Path(__file__).resolve().parent.parent
DOMAINS = ["code", "math", "web"]
COVS = ["x.code.normalized_loss", "x.web.hes"]


class TinyModel:
    """Same interface as causal.model_dir.FittedMixtureModel; `broken` makes it fail."""

    estimator_name = "tiny"

    def __init__(self, version="v1", broken=False):
        self.domains, self.covariate_names, self.version, self.broken = DOMAINS, COVS, version, broken

    def info(self):
        return {"domains": DOMAINS, "covariate_names": COVS, "estimator": {"name": "tiny"},
                "fitted_on": {"n_runs": 5, "covariate_ranges": {c: [1.0, 3.0] for c in COVS}}}

    def predict(self, mixtures, covariates):
        return mixtures @ np.arange(3.0) + covariates.sum(axis=1)

    def recommend(self, covariates, *, policy="analytic", trust_radius=0.1, reference="equal"):
        if self.broken:
            raise FloatingPointError("estimator state is gone")
        return {"mixture": dict(zip(DOMAINS, np.full(3, 1 / 3))), "expected_gain": np.float64(0.5),
                "interval": np.array([0.1, 0.9]), "policy": policy, "model_version": self.version,
                "support": {}, "trust_radius": trust_radius}


def _slot(**kw) -> ModelSlot:
    slot = ModelSlot(loader=lambda path: TinyModel(**kw))
    slot.install(slot.load("/models/tiny"))
    return slot


def test_probe_is_the_middle_of_the_fitted_ranges():
    assert probe_covariates(TinyModel().info(), COVS) == {c: 2.0 for c in COVS}
    assert probe_covariates({}, ["x.a.b"]) == {"x.a.b": 0.0}


def test_name_errors_list_unknown_and_missing_names():
    errors = schemas.name_errors(["x.code.normalized_loss", "x.bogus"], COVS, ("body", "covariates"),
                                 "covariates")
    assert [e["type"] for e in errors] == ["unknown_covariates", "missing_covariates"]
    assert "x.bogus" in errors[0]["msg"] and "x.web.hes" in errors[1]["msg"]


def test_predict_matrices_accept_lists_and_mappings_in_model_order():
    request = schemas.PredictRequest(mixtures=[[0.2, 0.3, 0.5], {"web": 1, "code": 0, "math": 0}],
                                     covariates={"x.web.hes": 2.0, "x.code.normalized_loss": 1.0})
    mixtures, covariates, errors = schemas.predict_matrices(request, DOMAINS, COVS)
    assert errors == []
    assert mixtures == [[0.2, 0.3, 0.5], [0.0, 0.0, 1.0]]
    assert covariates == [[1.0, 2.0], [1.0, 2.0]]


def test_loading_a_model_that_cannot_answer_fails_and_health_reports_it():
    with pytest.raises(FloatingPointError):
        ModelSlot(loader=lambda path: TinyModel(broken=True)).load("/models/broken")
    slot = _slot()
    slot.check_health()
    slot.current.model.broken = True
    with pytest.raises(FloatingPointError):
        slot.check_health()
    client = TestClient(build_app(slot))
    response = client.get("/healthz")
    assert response.status_code == 503 and "estimator state is gone" in response.json()["detail"]


def test_no_model_loaded_means_503_and_unhealthy():
    slot = ModelSlot(loader=lambda path: TinyModel())
    with pytest.raises(RuntimeError, match="no model"):
        slot.check_health()
    client = TestClient(build_app(slot))
    assert client.get("/healthz").status_code == 503
    assert client.post("/v1/recommend", json={"covariates": {}}).status_code == 503


def test_numpy_results_become_json_and_extra_keys_pass_through():
    client = TestClient(build_app(_slot()))
    body = client.post("/v1/recommend", json={"covariates": {c: 1.5 for c in COVS},
                                              "trust_radius": 0.2}).json()
    assert body["interval"] == [0.1, 0.9] and body["expected_gain"] == 0.5
    assert body["trust_radius"] == 0.2


def test_a_failing_model_gives_500_and_the_service_keeps_answering():
    slot = _slot()
    client = TestClient(build_app(slot), raise_server_exceptions=False)
    slot.current.model.broken = True
    response = client.post("/v1/recommend", json={"covariates": {c: 1.5 for c in COVS}})
    assert response.status_code == 500 and "FloatingPointError" in response.json()["detail"]
    slot.current.model.broken = False
    assert client.post("/v1/recommend", json={"covariates": {c: 1.5 for c in COVS}}).status_code == 200


def test_streamed_body_over_the_limit_is_422():
    client = TestClient(build_app(_slot(), max_body_bytes=1000))
    chunks = (b" " * 400 for _ in range(5))  # no Content-Length: counted while read
    response = client.post("/v1/recommend", content=chunks, headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body"]


def test_serve_settings_checks_and_config_shape():
    with pytest.raises(UserError, match="autoscale"):
        load_config(ServeSettings, None, {"model": "m", "autoscale": (3, 1)})
    with pytest.raises(UserError, match="port"):
        load_config(ServeSettings, None, {"model": "m", "port": 70000})
    settings = load_config(ServeSettings, None, {"model": "m", "autoscale": (1, 4)})
    deployment = settings.serve_config()["applications"][0]["deployments"][0]
    assert deployment["autoscaling_config"]["max_replicas"] == 4 and "num_replicas" not in deployment
    assert deployment["user_config"]["model_dir"].endswith("/m")
    with pytest.raises(ValueError):
        AppArgs.model_validate({"max_body_bytes": 0})
    assert isinstance(app_builder({"max_body_bytes": 10}), Application)


def test_ingress_defaults_to_haproxy_and_names_a_bad_mode(tmp_path):
    from causalmix.launch import build_parser

    assert ServeSettings(model="m").ingress == "haproxy"
    with pytest.raises(UserError, match="ingress must be one of haproxy, proxy, got 'nginx'"):
        load_config(ServeSettings, None, {"model": "m", "ingress": "nginx"})
    parse = build_parser().parse_args
    assert parse(["serve", "--model", "m"]).ingress is None  # the settings' default then
    assert parse(["serve", "--model", "m", "--high-throughput"]).ingress == "haproxy"
    assert parse(["serve", "--model", "m", "--ingress", "proxy"]).ingress == "proxy"
    with pytest.raises(SystemExit):
        parse(["serve", "--model", "m", "--ingress", "proxy", "--high-throughput"])


def test_haproxy_environment_is_private_and_per_instance(tmp_path, monkeypatch):
    """HAProxy's files in a folder of this user's only, its side ports free and distinct
    (Serve's fixed 8404/9101/8500 would clash between two instances), and each variable one
    that Serve reads (a renamed one fails here; tests/test_serve_cli.py checks the effect)."""
    import inspect

    from ray.serve._private import constants

    from causalmix.actors.serve.deployment import HIGH_THROUGHPUT_ENV, local_haproxy_env, local_ray_environment

    with tempfile.TemporaryDirectory() as short:  # tmp_path is too long for a socket folder
        env = local_haproxy_env(Path(short))
    assert HIGH_THROUGHPUT_ENV.items() <= env.items()
    assert Path(env["RAY_SERVE_HAPROXY_SOCKET_PATH"]) == Path(short).resolve() / "admin.sock"
    ports = [int(env[name]) for name in ("RAY_SERVE_HAPROXY_STATS_PORT", "RAY_SERVE_HAPROXY_METRICS_PORT",
                                         "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT")]
    assert len(set(ports)) == 3 and all(20000 <= port < 30000 for port in ports)
    source = inspect.getsource(constants)
    assert all(f'"{name}"' in source for name in env), [n for n in env if f'"{n}"' not in source]
    with pytest.raises(UserError, match="TMPDIR"):
        local_haproxy_env(tmp_path / ("x" * 40))

    monkeypatch.delenv("RAY_SERVE_ENABLE_HA_PROXY", raising=False)
    with local_ray_environment("proxy") as proxy_env:
        assert proxy_env == {} and "RAY_SERVE_ENABLE_HA_PROXY" not in os.environ
    with local_ray_environment("haproxy") as ha_env:
        private = Path(ha_env["RAY_SERVE_HAPROXY_SERVER_STATE_BASE"])
        assert os.environ["RAY_SERVE_HAPROXY_SOCKET_PATH"] == str(private / "admin.sock")
        assert stat.S_IMODE(private.stat().st_mode) == 0o700
    assert not private.exists() and "RAY_SERVE_ENABLE_HA_PROXY" not in os.environ


def test_serve_config_file_is_a_valid_serve_deploy_config():
    import yaml
    from ray.serve.schema import ServeDeploySchema

    config = ServeDeploySchema.model_validate(yaml.safe_load((REPO / "configs" / "serve.yaml").read_text()))
    (app,) = config.applications
    # the import path resolves to a builder of the app, whose deployment the config configures
    import importlib

    from causalmix.actors.serve.deployment import Recommender

    module, attribute = app.import_path.split(":")
    built = getattr(importlib.import_module(module), attribute)(app.args)
    assert isinstance(built, Application)
    AppArgs.model_validate(app.args)
    (deployment,) = app.deployments
    assert deployment.name == Recommender.name
    ModelRef.model_validate(deployment.user_config)


def test_serve_command_rejects_bad_input_before_starting_ray(tmp_path, capsys):
    from causalmix.launch import main

    assert main(["serve", "--model", str(tmp_path / "missing")]) == 2
    assert "model directory not found" in capsys.readouterr().err
    assert main(["serve", "--model", str(tmp_path), "--detach"]) == 2
    assert "--detach needs a Ray cluster" in capsys.readouterr().err
    assert main(["serve", "--model", str(tmp_path), "--autoscale", "4:2"]) == 2
    assert "autoscale" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["serve", "--model", str(tmp_path), "--replicas", "2", "--autoscale", "1:3"])


def test_a_failed_reload_is_retried_at_the_next_poll(tmp_path, monkeypatch, capsys):
    """Issue 18, case 9: the watcher's version changes only once the replicas serve it."""
    from causalmix.actors.serve import deployment
    from causalmix.causal.model_dir import load_model_dir
    from causalmix.commands.serve import _reload_if_new
    from tests.serve_model import fit_synthetic_model_dir

    model = fit_synthetic_model_dir(tmp_path / "model", estimator="regression", n_runs=40)
    settings = ServeSettings(model=str(model), version=load_model_dir(model).version)
    first = settings.version
    fit_synthetic_model_dir(model, estimator="regression", n_runs=40, seed=1)
    second = load_model_dir(model).version
    calls = []

    def flaky_reload(target):
        calls.append(target.version)
        if len(calls) == 1:
            raise UserError("a replica failed to load it")

    monkeypatch.setattr(deployment, "reload", flaky_reload)
    assert _reload_if_new(settings, model, "stamp-1") is None  # None: differs from every stamp
    assert settings.version == first and "will retry" in capsys.readouterr().err
    assert _reload_if_new(settings, model, "stamp-2") == "stamp-2"
    assert settings.version == second and calls == [second, second]
    assert _reload_if_new(settings, model, "stamp-3") == "stamp-3" and calls == [second, second]


def test_the_deferred_ingress_hook_is_still_public():
    """`Recommender` builds its FastAPI app in `__serve_build_asgi_app__` (it needs the
    replica's model slot). Ray documents that hook in `serve.ingress`'s docstring; if a Ray
    upgrade stops documenting it, this fails and the deployment needs another way."""
    from ray import serve

    from causalmix.actors.serve.deployment import Recommender

    assert "__serve_build_asgi_app__" in (serve.ingress.__doc__ or "")
    assert "Pass nothing to defer the app to replica init time" in serve.ingress.__doc__
    assert callable(getattr(Recommender.func_or_class, "__serve_build_asgi_app__", None))
