"""lm-evaluation-harness dev tasks on the tiny models, offline: a local task folder (one
log-likelihood multiple-choice task, one `generate_until` task with exact match) named in the
pool manifest runs in a proxy run, in a Ray Tune sweep trial and in a validation run, and its
metrics land in the runs table; `fit --objective` then refits that table on them."""
from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
import yaml

from causalmix.actors.sweep.driver import run_sweep
from causalmix.design.sweep_config import SweepConfig
from causalmix.datapool.pool import Pool
from harness_tasks import write_harness_tasks
from causalmix.mixture_space.state import DataStateSampler
from causalmix.proxy.run import RunSpec, run_proxy
from sweep_helpers import synthetic_features, tiny_proxy_config

HARNESS_METRICS = {"metric.arith_mc_acc", "metric.arith_mc_acc_stderr", "metric.arith_gen_exact_match",
                   "metric.arith_gen_exact_match_stderr"}


def harness_pool(source, dest):
    """A copy of a built tiny pool whose manifest adds the local harness task folder."""
    shutil.copytree(source, dest)
    write_harness_tasks(dest / "tasks", n=8)
    manifest = yaml.safe_load((dest / "manifest.yaml").read_text())
    manifest["dev"] = [{"lm_eval": {"tasks": ["tasks/"], "limit": 4, "num_fewshot": 0, "batch_size": 4}}]
    (dest / "manifest.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))
    return Pool.open(dest / "manifest.yaml")  # rebuilt: the manifest changed


@pytest.fixture(scope="module")
def small(tiny_env, tmp_path_factory):
    root = tmp_path_factory.mktemp("harness")
    pool = harness_pool(tiny_env.pool_small, root / "demo-small")
    return pool, synthetic_features(pool.root, root / "features.parquet")


def test_a_proxy_run_evaluates_the_harness_tasks(tiny_env, small):
    pool, features_path = small
    dev = pool.dev_tasks()
    assert set(dev) == {*pool.domains, "lm_eval:0"}
    shards = {s.name: pd.read_parquet(s.path) for s in pool.shards()}
    states = DataStateSampler({d: [s.name for s in pool.shards(d)] for d in pool.domains})
    cfg = tiny_proxy_config(tiny_env.proxy_model, objective={"metrics": ["arith_mc_acc", "arithmetic_nll"]})
    row = run_proxy(cfg, RunSpec("h", dict(zip(pool.domains, [0.4, 0.3, 0.3, 0.0])), states.state(0), seed=1),
                    shards=shards, dev_sets=dev, features=pd.read_parquet(features_path))
    assert HARNESS_METRICS <= set(row) and "metric.arithmetic_nll" in row
    assert 0.0 <= row["metric.arith_mc_acc"] <= 1.0 and 0.0 <= row["metric.arith_gen_exact_match"] <= 1.0
    assert row["y"] == pytest.approx((row["metric.arith_mc_acc"] - row["metric.arithmetic_nll"]) / 2)  # NLL minimised
    assert json.loads(row["y_objective"])["metrics"][0]["metric"] == "metric.arith_mc_acc"


@pytest.mark.ray
@pytest.mark.slow
def test_sweep_writes_harness_metrics_and_fit_refits_on_them(ray_local, tiny_env, small, tmp_path, capsys):
    pool, features_path = small
    out = tmp_path / "sweep"
    run_sweep(SweepConfig(pool=str(pool.root), features=str(features_path), out=str(out), runs=2,
                          proxy=tiny_proxy_config(tiny_env.proxy_model), progress=False))
    runs = pd.read_parquet(out / "runs.parquet")
    assert len(runs) == 2 and HARNESS_METRICS <= set(runs.columns) and runs["y"].notna().all()
    default = [c for c in runs.columns if c.startswith("metric.") and not c.endswith("_stderr")]
    assert runs["y"].tolist() == pytest.approx(runs[default].assign(
        **{c: -runs[c] for c in default if c.endswith("_nll")}).mean(axis=1).tolist())
    (tmp_path / "objective.yaml").write_text(yaml.safe_dump({"metrics": ["arith_mc_acc", "arith_gen_exact_match"]}))
    # Two runs are too few for a forest, not for checking that y is recomputed from the table.
    from causalmix.causal.objective import Objective
    from causalmix.causal.runs_table import read_runs_table_with_objective

    table, resolved = read_runs_table_with_objective(out / "runs.parquet", Objective.load(tmp_path / "objective.yaml"))
    assert table.y.tolist() == pytest.approx(((runs["metric.arith_mc_acc"] + runs["metric.arith_gen_exact_match"]) / 2).tolist())
    assert resolved.metrics[1].metric == "metric.arith_gen_exact_match"


@pytest.mark.ray
def test_a_validation_run_evaluates_the_harness_tasks(ray_local, tiny_env, tmp_path):
    """The validation task (`actors.validate.driver.train_candidate`) on the target model."""
    import ray

    from causalmix.datapool.sweep_inputs import load_sweep_inputs
    from causalmix.actors.validate.driver import ValidateConfig, train_candidate
    from causalmix.causal.covariates import DEFAULT_FEATURES

    pool = harness_pool(tiny_env.pool_large, tmp_path / "demo-large")
    features = synthetic_features(pool.root, tmp_path / "features.parquet")
    inputs = load_sweep_inputs(pool.root, features, DEFAULT_FEATURES)
    proxy = ValidateConfig(model="m", pool="p", features="f", target_model=str(tiny_env.target_model), out="o",
                           proxy={"budget": 12, "max_length": 128, "dev_limit": 2, "em_max_new_tokens": 4,
                                  "threads": 1, "device": "cpu"}).proxy_config()
    refs = {name: ray.put(frame) for name, frame in inputs.shards.items()}
    task = ray.remote(train_candidate).options(num_cpus=1)
    mixture = {d: 1.0 / len(pool.domains) for d in pool.domains}
    row = ray.get(task.remote(proxy, "equal", mixture, 0, inputs.shard_names, refs, ray.put(inputs.dev_sets),
                              ray.put(inputs.features), tuple(DEFAULT_FEATURES)))
    assert row["candidate"] == "equal" and HARNESS_METRICS <= set(row)
    assert row["model"] == str(tiny_env.target_model)


def test_a_harness_task_without_its_data_is_a_clear_error(tiny_env, tmp_path):
    from causalmix.core.errors import UserError
    from causalmix.lm.loading import load_causal_lm, load_tokenizer
    from causalmix.proxy.harness import HarnessSpec, harness_metrics

    tasks = write_harness_tasks(tmp_path / "tasks", n=4)
    (tasks / "arith.jsonl").unlink()
    (tasks / "broken.yaml").write_text("task: [unclosed\n")
    model, tokenizer = load_causal_lm(str(tiny_env.proxy_model), device="cpu"), load_tokenizer(str(tiny_env.proxy_model))
    with pytest.raises(UserError, match=r"lm_eval task YAML .*broken.yaml could not be read"):
        harness_metrics(model, tokenizer, HarnessSpec(tasks=(str(tasks / "broken.yaml"),)))
    with pytest.raises(UserError, match=r"lm_eval dev entry arith_mc: .*arith.jsonl"):
        harness_metrics(model, tokenizer, HarnessSpec(tasks=(str(tasks / "arith_mc.yaml"),), limit=2))
