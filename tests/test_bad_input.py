"""Bad input gives a clear message and exit status 2 (422 over HTTP), never a traceback or a
500 (issue 18, case 4): one test per case the issue lists."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from fastapi.testclient import TestClient

from causalmix import launch
from causalmix.service.app import ModelSlot, build_app
from tests.serve_model import DOMAINS, fit_synthetic_model_dir

REGMIX = Path(__file__).resolve().parent / "data" / "regmix"
POOL = {f"x.{d}.normalized_loss": 0.5 for d in DOMAINS}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return fit_synthetic_model_dir(tmp_path_factory.mktemp("bad_input") / "model", estimator="regression",
                                   n_runs=60)


def _regmix_pair(tmp_path, edit_mix=None, edit_loss=None):
    mixes = pd.read_csv(REGMIX / "train_mixture_1m.csv").head(30)
    losses = pd.read_csv(REGMIX / "train_pile_loss_1m.csv").head(30)
    mixes, losses = mixes.astype(object), losses.astype(object)
    if edit_mix:
        edit_mix(mixes)
    if edit_loss:
        edit_loss(losses)
    mixes.to_csv(tmp_path / "mix.csv", index=False)
    losses.to_csv(tmp_path / "loss.csv", index=False)
    return tmp_path / "mix.csv", tmp_path / "loss.csv"


def _import(mix, loss, tmp_path, target="pile_cc"):
    return launch.main(["import-regmix", "--mixtures", str(mix), "--losses", str(loss), "--target", target,
                        "--out", str(tmp_path / "runs.parquet")])


REGMIX_CASES = {
    "duplicate index": (lambda m: m.__setitem__("index", [1, 1] + list(m["index"][2:])), None,
                        "pile_cc", "run index 1 appears more than once"),
    "text weight": (lambda m: m.iloc.__setitem__((3, 1), "lots"), None, "pile_cc",
                    "must hold numbers; the row with index 4 has 'lots'"),
    "text loss": (None, lambda l: l.iloc.__setitem__((0, 2), "n/a?"), "pile_cc", "must hold numbers"),
    "mixed string and integer indices": (lambda m: m.__setitem__("index", ["run-a"] + list(m["index"][1:])),
                                         None, "pile_cc", "'index' must hold whole numbers"),
    "mean over missing losses": (None, lambda l: l.iloc.__setitem__((2, 3), None), "mean",
                                 "--target mean: "),
}


@pytest.mark.parametrize("case", list(REGMIX_CASES))
def test_import_regmix_bad_csv_exits_2(tmp_path, capsys, case):
    edit_mix, edit_loss, target, message = REGMIX_CASES[case]
    mix, loss = _regmix_pair(tmp_path, edit_mix, edit_loss)
    assert _import(mix, loss, tmp_path, target) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "runs.parquet").exists()


def test_import_regmix_good_csv_still_imports(tmp_path, capsys):
    mix, loss = _regmix_pair(tmp_path)
    assert _import(mix, loss, tmp_path, "mean") == 0
    assert json.loads(capsys.readouterr().out)["n_runs"] == 30


def test_pool_build_on_a_non_utf8_source_exits_2(tmp_path, capsys):
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "a.jsonl").write_bytes(b'{"q": "ok", "a": "fine"}\n{"q": "caf\xe9", "a": "x"}\n')
    manifest = tmp_path / "m.yaml"
    manifest.write_text(yaml.safe_dump({"name": "t", "domains": [
        {"name": "d", "sources": [{"path": "raw/*.jsonl", "columns": {"prompt": "q", "response": "a"}}]}]}))
    assert launch.main(["pool", "build", str(manifest), "--out", str(tmp_path / "built")]) == 2
    err = capsys.readouterr().err
    assert "a.jsonl line 2 is not UTF-8" in err and "domain 'd'" in err
    assert not (tmp_path / "built" / "pool.json").exists()


def test_recommend_negative_seed_exits_2(model_dir, tmp_path, capsys):
    cov = tmp_path / "cov.json"
    cov.write_text(json.dumps(POOL))
    with pytest.raises(SystemExit) as exc:
        launch.main(["recommend", "--model", str(model_dir), "--covariates", str(cov), "--policy", "search",
                     "--seed", "-1"])
    assert exc.value.code == 2 and "--seed: must be >= 0, got -1" in capsys.readouterr().err


@pytest.mark.parametrize("endpoint", ["notaurl", "ftp://host/x", "http://"])
def test_recommend_endpoint_that_is_not_a_url_exits_2(tmp_path, capsys, endpoint):
    cov = tmp_path / "cov.json"
    cov.write_text(json.dumps(POOL))
    assert launch.main(["recommend", "--endpoint", endpoint, "--covariates", str(cov)]) == 2
    err = capsys.readouterr().err
    assert "is not an http(s) URL" in err and "non-finite" not in err


@pytest.fixture(scope="module")
def http(model_dir):
    slot = ModelSlot()
    slot.install(slot.load(str(model_dir)))
    with TestClient(build_app(slot), raise_server_exceptions=False) as client:
        yield client


HTTP_CASES = {
    "negative seed": ("/v1/recommend", {"covariates": POOL, "policy": "search", "seed": -1}, ["body", "seed"]),
    "true as a covariate": ("/v1/recommend", {"covariates": {**POOL, "x.chat.normalized_loss": True}},
                            ["body", "covariates", "x.chat.normalized_loss"]),
    "true as the trust radius": ("/v1/recommend", {"covariates": POOL, "trust_radius": True},
                                 ["body", "trust_radius"]),
    "true as a seed": ("/v1/recommend", {"covariates": POOL, "policy": "search", "seed": True}, ["body", "seed"]),
    "true as a weight": ("/v1/predict", {"mixtures": [[True, 0, 0, 0]], "covariates": POOL},
                         ["body", "mixtures", 0, 0]),
    "string as a number": ("/v1/recommend", {"covariates": {**POOL, "x.chat.normalized_loss": "0.5"}},
                           ["body", "covariates", "x.chat.normalized_loss"]),
}


@pytest.mark.parametrize("case", list(HTTP_CASES))
def test_http_bad_values_get_422_naming_the_field(http, case):
    path, body, loc = HTTP_CASES[case]
    response = http.post(path, json=body)
    assert response.status_code == 422, response.text
    assert any(d["loc"][:len(loc)] == loc for d in response.json()["detail"]), response.json()


def test_http_good_search_with_a_seed_still_answers(http):
    response = http.post("/v1/recommend", json={"covariates": POOL, "policy": "search", "seed": 3})
    assert response.status_code == 200, response.text


def test_http_body_nested_past_the_parser_gets_422_not_400(http):
    """Issue 29, case 10: a 100,000-deep body made FastAPI answer 400; the docs promise 422."""
    deep = '{"covariates": ' + "[" * 100_000 + "]" * 100_000 + "}"
    response = http.post("/v1/recommend", content=deep, headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["body"]
