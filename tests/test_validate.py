"""`validate` end to end on the tiny models: every candidate mixture trains the target model."""
from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from causalmix import launch
from causalmix.actors.validate.driver import ValidateConfig, run_validation, train_candidate
from causalmix.causal.covariates import DEFAULT_FEATURES, covariate_names, pool_covariates
from causalmix.causal.fitting import FitConfig
from causalmix.causal.fitting import fit_and_save
from causalmix.core.errors import RunsFailed
from causalmix.datapool.pool import Pool
from sweep_helpers import synthetic_features

pytestmark = pytest.mark.ray

TINY_TRAINING = {"budget": 16, "max_length": 128, "dev_limit": 4, "em_max_new_tokens": 8, "threads": 1,
                 "device": "cpu"}


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
    config.write_text(yaml.safe_dump({"proxy": TINY_TRAINING}))
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


def counting_train(calls_dir: str, fail: tuple[str, int] | None = None):
    """train_candidate, recording each call in `calls_dir` and raising for the run `fail`."""

    def train(proxy, name, mixture, seed, *rest):
        Path(calls_dir, f"{name}-seed{seed}.{uuid.uuid4().hex}").write_text("")
        if (name, seed) == fail:
            raise RuntimeError(f"injected failure of {name} seed {seed}")
        return train_candidate(proxy, name, mixture, seed, *rest)

    return train


def test_a_failed_run_keeps_the_others_and_resume_trains_only_it(ray_local, tiny_env, fitted, tmp_path, capsys):
    """Issue 18 case 7: every run lands as it finishes; one failing run is reported while the
    others land; a fresh start refuses to drop them; a resume under other settings is refused;
    `--resume` trains only the missing run."""
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import tests/
    root, features = fitted
    out, calls = tmp_path / "validation", tmp_path / "calls"
    calls.mkdir()
    cfg = ValidateConfig(model=str(root / "model"), pool=str(tiny_env.pool_large), features=str(features),
                         target_model=str(tiny_env.target_model), out=str(out), mixtures="equal,natural",
                         seeds=2, proxy=TINY_TRAINING)
    with pytest.raises(RunsFailed, match=r"1 of 4 validation run\(s\) failed.*equal-seed1.*injected failure"):
        run_validation(cfg, train_fn=counting_train(str(calls), fail=("equal", 1)))
    landed = {p.name: p.read_bytes() for p in (out / "runs").glob("*.json")}
    assert sorted(landed) == ["equal-seed0.json", "natural-seed0.json", "natural-seed1.json"]
    assert json.loads((out / "failures.json").read_text())["failed"][0]["candidate"] == "equal"
    assert not (out / "summary.json").exists() and not (out / "table.md").exists()
    assert len(list(calls.iterdir())) == 4

    config = tmp_path / "validate.yaml"
    common = ["validate", "--model", str(root / "model"), "--pool", str(tiny_env.pool_large), "--features",
              str(features), "--target-model", str(tiny_env.target_model), "--mixtures", "equal,natural",
              "--seeds", "2", "--out", str(out), "--config", str(config)]
    config.write_text(yaml.safe_dump({"proxy": TINY_TRAINING}))
    assert launch.main(common) == 2
    assert "3 landed run(s) of an unfinished validation; pass --resume" in capsys.readouterr().err
    config.write_text(yaml.safe_dump({"proxy": {**TINY_TRAINING, "budget": 20}}))
    assert launch.main([*common, "--resume"]) == 2
    assert "proxy.budget: landed 16, now 20" in capsys.readouterr().err
    assert launch.main([*common[:-4], "--out", str(tmp_path / "none"), "--config", str(config), "--resume"]) == 2
    assert "holds no validation to resume" in capsys.readouterr().err
    assert len(list(calls.iterdir())) == 4                  # none of these trained anything

    summary = run_validation(ValidateConfig(**{**cfg.__dict__, "resume": True}),
                             train_fn=counting_train(str(calls)))
    assert summary["runs"] == {"trained": 1, "reused": 3}
    assert sorted(p.name.split(".")[0] for p in calls.iterdir()).count("equal-seed1") == 2
    assert len(list(calls.iterdir())) == 5                  # only the missing run trained again
    assert all((out / "runs" / name).read_bytes() == data for name, data in landed.items())
    results = pd.read_parquet(out / "validation.parquet")
    assert sorted(zip(results["candidate"], results["seed"])) == [("equal", 0), ("equal", 1),
                                                                  ("natural", 0), ("natural", 1)]
    assert (out / "summary.json").is_file() and not (out / "failures.json").exists()


def test_failed_runs_exit_1_with_the_message(monkeypatch, capsys):
    import causalmix.commands.validate
    from causalmix import commands

    def fail(cfg, **kwargs):
        raise RunsFailed("1 of 4 validation run(s) failed after their retries: equal-seed1 (boom)")

    monkeypatch.setattr(commands.validate, "run_validation", fail)
    argv = ["validate", "--model", "m", "--pool", "p", "--features", "f", "--target-model", "t", "--out", "o"]
    assert launch.main(argv) == 1
    assert "equal-seed1 (boom)" in capsys.readouterr().err
