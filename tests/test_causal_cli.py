"""CLI contracts: import-regmix, fit, recommend (--covariates / --pool-features), predict."""
import json

import numpy as np
import pandas as pd
import pytest

from causalmix import launch
from regmix_data import regmix_dir
from structural import StructuralModel


def _last_json(capsys):
    out = capsys.readouterr()
    return json.loads(out.out.strip().splitlines()[-1]), out.err


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """A runs table whose covariates are pool features' per-domain means, fitted with linear-dml."""
    root = tmp_path_factory.mktemp("cli")
    frame = StructuralModel(n_domains=3, seed=5).runs(150)
    frame = frame.rename(columns={f"x.d{j}.quality": f"x.d{j}.normalized_loss" for j in range(3)})
    frame.to_parquet(root / "runs.parquet")
    (root / "fit.yaml").write_text("nuisance_model: poly\ncv: 2\n")
    code = launch.main(["fit", "--runs", str(root / "runs.parquet"), "--out", str(root / "model"),
                        "--estimator", "linear-dml", "--seed", "1", "--config", str(root / "fit.yaml")])
    assert code == 0
    return root, frame


def test_fit_writes_model_and_prints_json(fitted, capsys):
    root, frame = fitted
    code = launch.main(["fit", "--runs", str(root / "runs.parquet"), "--out", str(root / "model2"),
                        "--estimator", "regression"])
    result, _ = _last_json(capsys)
    assert code == 0 and result["estimator"] == "regression" and result["n_runs"] == 150
    assert (root / "model2" / "checksums.json").is_file()


def test_recommend_with_covariates_file(fitted, capsys):
    root, frame = fitted
    cov = {c: float(frame[c].mean()) for c in frame.columns if c.startswith("x.")}
    (root / "cov.json").write_text(json.dumps(cov))
    capsys.readouterr()
    for policy in ("analytic", "search"):
        code = launch.main(["recommend", "--model", str(root / "model"), "--covariates", str(root / "cov.json"),
                            "--policy", policy, "--trust-radius", "0.1"])
        result, _ = _last_json(capsys)
        assert code == 0 and result["policy"] == policy
        assert set(result["mixture"]) == {"d0", "d1", "d2"}
        assert np.isclose(sum(result["mixture"].values()), 1)
        lo, hi = result["interval"]
        assert lo <= result["expected_gain"] <= hi and result["model_version"]


def test_recommend_auto_radius_by_default_and_bounded_radius(fitted, capsys):
    root, frame = fitted
    cov = {c: float(frame[c].mean()) for c in frame.columns if c.startswith("x.")}
    (root / "cov_auto.json").write_text(json.dumps(cov))
    capsys.readouterr()
    code = launch.main(["recommend", "--model", str(root / "model"), "--covariates", str(root / "cov_auto.json")])
    result, _ = _last_json(capsys)
    assert code == 0 and result["radius_choice"]["mode"] == "auto"
    assert result["trust_radius"] == result["radius_choice"]["radius"]
    assert result["expected_gain"] >= 0 and result["interval"][0] >= 0
    with pytest.raises(SystemExit) as exit_info:
        launch.main(["recommend", "--model", str(root / "model"), "--covariates", str(root / "cov_auto.json"),
                     "--trust-radius", "5"])
    assert exit_info.value.code == 2 and "exceeds the simplex's L2 diameter" in capsys.readouterr().err


def test_recommend_with_pool_features_warns_outside_support(fitted, capsys):
    root, frame = fitted
    rng = np.random.default_rng(0)
    features = pd.DataFrame({"doc_id": range(60), "domain": np.repeat(["d0", "d1", "d2"], 20),
                             "normalized_loss": rng.normal(size=60), "hes": rng.random(60)})
    features.loc[features.domain == "d2", "normalized_loss"] += 50.0
    features.to_parquet(root / "features.parquet")
    (root / "ref.json").write_text(json.dumps({"d0": 0.5, "d1": 0.25, "d2": 0.25}))
    code = launch.main(["recommend", "--model", str(root / "model"), "--pool-features",
                        str(root / "features.parquet"), "--reference", str(root / "ref.json")])
    result, err = _last_json(capsys)
    assert code == 0
    assert result["support"]["x.d2.normalized_loss"]["in_range"] is False
    assert result["support"]["x.d0.normalized_loss"]["in_range"] is True
    assert "x.d2.normalized_loss" in err and "extrapolation" in err
    assert result["reference"] == {"d0": 0.5, "d1": 0.25, "d2": 0.25}


def test_recommend_bad_covariates_lists_missing_and_extra(fitted, capsys):
    root, _ = fitted
    (root / "bad.json").write_text(json.dumps({"x.d0.normalized_loss": 0.1, "x.other": 2.0}))
    code = launch.main(["recommend", "--model", str(root / "model"), "--covariates", str(root / "bad.json")])
    err = capsys.readouterr().err
    assert code == 2
    # the service's own check (service/schemas.py), with the file named
    assert f"covariates file {root / 'bad.json'}: missing covariates: ['x.d1.normalized_loss', " \
           "'x.d2.normalized_loss']" in err and "unknown covariates: ['x.other']" in err


def test_predict_writes_every_row(fitted, capsys, tmp_path):
    root, frame = fitted
    frame.drop(columns="y").to_csv(tmp_path / "new_runs.csv", index=False)
    code = launch.main(["predict", "--model", str(root / "model"), "--runs", str(tmp_path / "new_runs.csv"),
                        "--out", str(tmp_path / "pred.parquet")])
    result, _ = _last_json(capsys)
    pred = pd.read_parquet(tmp_path / "pred.parquet")
    assert code == 0 and result["n_rows"] == 150
    assert list(pred.columns) == ["run_id", "y_pred"] and pred.run_id.tolist() == frame.run_id.tolist()
    assert np.corrcoef(pred.y_pred, frame.y)[0, 1] > 0.9
    frame.drop(columns=["x.d1.normalized_loss"]).to_csv(tmp_path / "short.csv", index=False)
    code = launch.main(["predict", "--model", str(root / "model"), "--runs", str(tmp_path / "short.csv"),
                        "--out", str(tmp_path / "pred2.parquet")])
    assert code == 2 and "missing covariate columns ['x.d1.normalized_loss']" in capsys.readouterr().err
    assert not (tmp_path / "pred2.parquet").exists()


def test_fit_bad_inputs_exit_2_and_write_nothing(tmp_path, capsys):
    frame = StructuralModel(n_domains=3, seed=1).runs(10)
    frame.to_parquet(tmp_path / "few.parquet")
    code = launch.main(["fit", "--runs", str(tmp_path / "few.parquet"), "--out", str(tmp_path / "m")])
    assert code == 2 and "the runs table has 10" in capsys.readouterr().err
    frame.loc[3, "y"] = np.nan
    frame.to_csv(tmp_path / "nan.csv", index=False)
    code = launch.main(["fit", "--runs", str(tmp_path / "nan.csv"), "--out", str(tmp_path / "m")])
    assert code == 2 and "non-finite outcome in column 'y', rows r3" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


def test_import_regmix_cli(tmp_path, capsys):
    data = regmix_dir()
    code = launch.main(["import-regmix", "--mixtures", str(data / "test_mixture_1m.csv"), "--losses",
                        str(data / "test_pile_loss_1m.csv"), "--target", "pile_cc",
                        "--out", str(tmp_path / "runs.parquet")])
    result, _ = _last_json(capsys)
    runs = pd.read_parquet(tmp_path / "runs.parquet")
    assert code == 0 and result["n_runs"] == 256 == len(runs) and len(result["domains"]) == 17
    code = launch.main(["import-regmix", "--mixtures", str(data / "test_mixture_1m.csv"), "--losses",
                        str(data / "test_pile_loss_1m.csv"), "--target", "bogus",
                        "--out", str(tmp_path / "bad.parquet")])
    assert code == 2 and not (tmp_path / "bad.parquet").exists()
