"""Target training through Ray Train + FSDP2 on CPU (gloo): 2 workers against the
single-device path (what `validate` runs with 1 GPU per run) on the same data and seed, a
worker failure that resumes from the checkpoint, and `validate --gpus-per-run 2`."""
from __future__ import annotations

import json

import numpy as np
import pytest

from causalmix.causal.covariates import DEFAULT_FEATURES
from causalmix.proxy.config import ProxyConfig
from causalmix.target.distributed import TargetTrainConfig
from sweep_helpers import synthetic_features

pytestmark = [pytest.mark.ray, pytest.mark.slow]

LOSS_RTOL = 1e-4
"""fp32 on CPU: 2 ranks sum the same token NLLs in another order (each rank's partial
gradient, then FSDP's reduce-scatter) than one process does, about 1e-7 relative per step;
AdamW passes that on almost unchanged over a few steps (measured: at most 9e-8 relative over
10 steps, benchmarks/bench_train_scaling.py). 1e-4 is 1000x that and far below the loss's
change over the run (>1e-2 relative), so a wrong partition, a doubled or dropped row or a wrong gradient scale fails it."""


def _spec(inputs, seed=0):
    from causalmix.proxy.run import RunSpec

    domains = list(inputs.shard_names)
    state = {d: list(inputs.shard_names[d][:2]) for d in domains}
    return RunSpec(run_id=f"target-seed{seed}", mixture={d: 1.0 / len(domains) for d in domains},
                   state=state, seed=seed, sampler="validation")


@pytest.fixture(scope="module")
def runs(ray_local, tiny_env, tmp_path_factory):
    """The same run on the single-device path (proxy.run.run_proxy, in this process), and with
    2 Ray Train workers, activation checkpointing on, where the last rank fails once right
    after the checkpoint of step 2 (every rank traces the rows it trains)."""
    from causalmix.actors.target.ray_train import train_distributed
    from causalmix.datapool.sweep_inputs import load_sweep_inputs
    from causalmix.proxy.curves import LearningCurve
    from causalmix.target.fsdp_train import FaultDrill
    from causalmix.proxy.run import run_proxy

    ray = ray_local
    root = tmp_path_factory.mktemp("target")
    features = synthetic_features(tiny_env.pool_large, root / "features.parquet")
    inputs = load_sweep_inputs(tiny_env.pool_large, features, DEFAULT_FEATURES)
    cfg = ProxyConfig(model=str(tiny_env.target_model), budget=24, max_length=64,
                      rows_per_micro_batch=1, grad_accum=3, learning_rate=2e-3, dev_limit=2,
                      em_max_new_tokens=4, threads=1, device="cpu", dtype="float32", log_every=1)
    refs = {"shard_refs": {n: ray.put(f) for n, f in inputs.shards.items()},
            "dev_sets_ref": ray.put(inputs.dev_sets), "features_ref": ray.put(inputs.features),
            "feature_names": DEFAULT_FEATURES, "storage_path": str(root / "ray")}
    spec = _spec(inputs)
    losses, curve1, curve2 = [], [], []
    one = run_proxy(cfg, spec, shards=inputs.shards, dev_sets=inputs.dev_sets, features=inputs.features,
                    on_step=LearningCurve(1, curve1.append, then=lambda step, loss, info: losses.append(loss)))
    one.update(workers=1, train_losses=json.dumps(losses), curve=curve1)
    (root / "trace").mkdir()
    drill = FaultDrill(step=2, marker=str(root / "failed.marker"), trace_dir=str(root / "trace"))
    two = train_distributed(cfg, TargetTrainConfig(workers=2, checkpoint_every=2, max_failures=1,
                                                   cpus_per_worker=1, activation_checkpointing=True),
                            spec, **refs, use_gpu=False, drill=drill, curve=curve2)
    two["curve"] = curve2
    return one, two, root, cfg


def test_two_workers_match_one(runs):
    one, two, _, _ = runs
    l1, l2 = json.loads(one["train_losses"]), json.loads(two["train_losses"])
    assert one["workers"] == 1 and two["workers"] == 2
    assert len(l1) == len(l2) == one["steps"] >= 5
    assert abs(l1[-1] - l1[0]) > 100 * LOSS_RTOL * abs(l1[0])  # the curve moves: the check means something
    np.testing.assert_allclose(l2, l1, rtol=LOSS_RTOL)
    assert one["tokens"] == two["tokens"]
    np.testing.assert_allclose(two["y"], one["y"], rtol=1e-3)


def test_failed_worker_resumes_without_repeating_rows(runs):
    one, two, root, _ = runs
    assert (root / "failed.marker").read_text().startswith("failed after step 2")
    traces = {r: [json.loads(line) for line in (root / "trace" / f"rank{r}.jsonl").read_text().splitlines()]
              for r in (0, 1)}
    steps = [t["step"] for t in traces[0]]
    # one attempt ran steps 0-1 and failed; the restart went on from step 2, not from 0
    assert steps == list(range(one["steps"])), steps
    assert [t["step"] for t in traces[1]] == steps
    seen = [row for r in (0, 1) for t in traces[r] for row in t["rows"]]
    assert len(seen) == len(set(seen)), "a packed row was trained twice"
    assert sorted(seen) == list(range(len(seen)))
    for t0, t1 in zip(traces[0], traces[1]):
        assert not set(t0["rows"]) & set(t1["rows"])


def test_resumed_run_reports_each_curve_point_once(runs):
    """The learning curve of the 2-worker run that failed after step 2 and resumed: one point per
    step (the points up to the checkpoint come from it, none repeated), matching the
    single-device curve: loss, learning rate, and the gradient norm over all ranks' shards."""
    one, two, _, _ = runs
    assert [p["step"] for p in two["curve"]] == [p["step"] for p in one["curve"]] == list(
        range(1, one["steps"] + 1))
    for key in ("train_loss", "lr", "grad_norm", "step_tokens"):
        np.testing.assert_allclose([p[key] for p in two["curve"]], [p[key] for p in one["curve"]],
                                   rtol=LOSS_RTOL, err_msg=key)


def test_validate_gpus_per_run_trains_through_ray_train(ray_local, tiny_env, runs, tmp_path, capsys):
    """The CLI path: `validate --gpus-per-run 2` dispatches each run to Ray Train."""
    import pandas as pd
    import yaml

    from causalmix import launch
    from causalmix.causal.fitting import FitConfig
    from causalmix.causal.fitting import fit_and_save

    _, _, root, _ = runs
    domains = list(pd.read_parquet(root / "features.parquet")["domain"].unique())
    rng = np.random.default_rng(0)
    mix = rng.dirichlet(np.ones(len(domains)), size=24)
    table = pd.DataFrame({"run_id": [f"r{i}" for i in range(24)],
                          **{f"mix.{d}": mix[:, j] for j, d in enumerate(domains)},
                          "y": mix @ np.linspace(-1, 1, len(domains))})
    table.to_parquet(tmp_path / "runs.parquet")
    fit_and_save(str(tmp_path / "runs.parquet"), str(tmp_path / "model"), FitConfig(estimator="regression"))
    config = tmp_path / "validate.yaml"
    config.write_text(yaml.safe_dump({"proxy": {"budget": 12, "max_length": 64, "dev_limit": 2,
                                                "em_max_new_tokens": 4, "threads": 1, "device": "cpu"},
                                      "train": {"checkpoint_every": 100, "storage_path": str(tmp_path / "ray")}}))
    assert launch.main(["validate", "--config", str(config), "--model", str(tmp_path / "model"),
                        "--pool", str(tiny_env.pool_large), "--features", str(root / "features.parquet"),
                        "--target-model", str(tiny_env.target_model), "--mixtures", "equal",
                        "--seeds", "1", "--gpus-per-run", "2", "--out", str(tmp_path / "val")]) == 0
    assert "2 GPU(s) (FSDP)" in capsys.readouterr().err
    results = pd.read_parquet(tmp_path / "val" / "validation.parquet")
    assert results["workers"].tolist() == [2] and results["y"].notna().all()
