"""`validate` end to end on the tiny models: every candidate mixture trains the target model."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml

import launch
from causal.covariates import DEFAULT_FEATURES, covariate_names, pool_covariates
from causal.fitting import FitConfig
from commands.fit import fit_and_save
from datapool.pool import Pool
from sweep_helpers import synthetic_features

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def fitted(tiny_env, tmp_path_factory):
    """A causal forest and a RegMix model fitted on a synthetic runs table whose covariates
    span the target pool's (demo-large) covariates."""
    root = tmp_path_factory.mktemp("validate")
    features = synthetic_features(tiny_env.pool_large, root / "large.parquet")
    domains = Pool.open(tiny_env.pool_large).domains
    target = pool_covariates(pd.read_parquet(features), domains)
    rng = np.random.default_rng(0)
    n = 60
    mix = rng.dirichlet(np.ones(len(domains)), size=n)
    runs = pd.DataFrame({"run_id": [f"run-{i:05d}" for i in range(n)],
                         **{f"mix.{d}": mix[:, j] for j, d in enumerate(domains)}})
    for name in covariate_names(domains, DEFAULT_FEATURES):
        runs[name] = target[name] * rng.uniform(0.8, 1.2, size=n)
    runs["y"] = mix @ np.linspace(-1, 1, len(domains)) + 0.01 * rng.normal(size=n)
    runs.to_parquet(root / "runs.parquet")
    for name, estimator in (("model", "causal-forest"), ("regmix", "regmix")):
        fit_and_save(str(root / "runs.parquet"), str(root / name), FitConfig(estimator=estimator))
    return root, features


def test_validate_trains_every_candidate(ray_local, tiny_env, fitted, tmp_path, capsys):
    root, features = fitted
    config = tmp_path / "validate.yaml"
    config.write_text(yaml.safe_dump({"proxy": {"budget": 16, "max_length": 128, "dev_limit": 4,
                                                "em_max_new_tokens": 8, "threads": 1, "device": "cpu"}}))
    out = tmp_path / "validation"
    mine = tmp_path / "mine.json"
    domains = Pool.open(tiny_env.pool_large).domains
    mine.write_text(json.dumps({"mixture": {d: 1.0 / len(domains) for d in domains}}))
    assert launch.main(["validate", "--config", str(config), "--model", str(root / "model"),
                        "--regmix-model", str(root / "regmix"), "--pool", str(tiny_env.pool_large),
                        "--features", str(features), "--target-model", str(tiny_env.target_model),
                        "--mixtures", f"CausalMix-S,regmix,{mine}", "--seeds", "1", "--out", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    expected = {"causalmix-S", "regmix", "mine"}
    assert set(printed["y_mean"]) == set(printed["avgdev_mean"]) == expected
    results = pd.read_parquet(out / "validation.parquet")
    assert set(results["candidate"]) == expected and results["y"].notna().all()
    summary = json.loads((out / "summary.json").read_text())
    for name, cand in summary["candidates"].items():
        row = results.loc[results["candidate"] == name].iloc[0]
        assert sum(cand["mixture"].values()) == pytest.approx(1.0)
        for domain, weight in cand["mixture"].items():
            assert row[f"mix.{domain}"] == pytest.approx(weight)
    assert (out / "validation.png").read_bytes()[:4] == b"\x89PNG"
    assert "| mine |" in (out / "table.md").read_text()


def test_validate_refuses_missing_inputs(tmp_path, capsys):
    assert launch.main(["validate", "--out", str(tmp_path / "v")]) == 2
    assert "model is required" in capsys.readouterr().err


def test_validate_refuses_bad_mixture_selections(tiny_env, fitted, tmp_path, capsys):
    root, features = fitted
    common = ["validate", "--model", str(root / "model"), "--pool", str(tiny_env.pool_large), "--features",
              str(features), "--target-model", str(tiny_env.target_model), "--out", str(tmp_path / "v")]
    assert launch.main([*common, "--mixtures", "equal,regmix"]) == 2
    assert "--regmix-model" in capsys.readouterr().err
    for entry, flag in (("no-dml", "--no-dml-model"), ("no-covariates", "--no-covariates-model"),
                        ("best-run", "--runs"), ("grid", "--grid")):
        assert launch.main([*common, "--mixtures", f"equal,{entry}"]) == 2
        assert flag in capsys.readouterr().err
    assert launch.main([*common, "--mixtures", "equal,dmo"]) == 2
    assert "unknown mixture 'dmo'" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"arithmetic": 1.0}))
    assert launch.main([*common, "--mixtures", f"equal,{bad}"]) == 2
    assert f"mixture file {bad}" in capsys.readouterr().err
    assert not (tmp_path / "v").exists()
