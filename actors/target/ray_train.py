"""One target-model run on Ray Train: a `TorchTrainer` with N workers (one GPU each on a GPU
cluster, gloo processes on CPU), each running target/fsdp_train.py's rank loop. Checkpoints
go through `ray.train.report`, so a lost worker restarts the group (FailureConfig) from the
last checkpoint instead of from step 0. Rank 0 evaluates the dev suite on the gathered
weights and reports the runs-table row with the run's learning curve (`proxy.log_every`).
"""
from __future__ import annotations

import json
import math
import tempfile
import time
import uuid
from pathlib import Path

from causalmix.proxy.config import ProxyConfig
from causalmix.proxy.curves import curve_hook
from causalmix.target.distributed import TargetTrainConfig
from causalmix.target.fsdp_train import full_state_dict, load_sharded, train_rank

CURVE_FILE = "curve.json"
"""Rank 0's learning-curve points so far, in each checkpoint: a resumed run keeps them."""
CURVE_POINT_KEY = "curve_point"
"""Report key of one learning-curve point (JSON), reported by every rank with `report_curve`
(rank 0's holds the point, the others' is empty: each report is a barrier of all ranks)."""


def _train_loop_per_worker(config: dict) -> None:
    import ray
    import ray.train
    import torch

    from causalmix.proxy.run import load_for_training, prepare_run, result_row

    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    cfg: ProxyConfig = config["proxy"]
    tcfg: TargetTrainConfig = config["target"]
    spec = config["spec"]
    names = sorted(config["shard_refs"])
    shards = dict(zip(names, ray.get([config["shard_refs"][n] for n in names])))
    device = str(ray.train.torch.get_device()) if config["use_gpu"] else "cpu"
    if device.startswith("cuda"):
        torch.cuda.set_device(torch.device(device))
    start = time.perf_counter()
    _, tokenizer, sample, packed, rng = prepare_run(cfg, spec, shards, device=device)
    model = load_sharded(cfg, tcfg, device, rank, world)
    checkpoint = ray.train.get_checkpoint()
    curve: list[dict] = []

    def emit(point: dict) -> None:
        curve.append(point)
        if config["report_curve"]:
            ray.train.report({CURVE_POINT_KEY: json.dumps(point)} if rank == 0 else {})

    def save(step: int, losses: list, write) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            write(Path(tmp))
            if rank == 0:
                (Path(tmp) / CURVE_FILE).write_text(json.dumps(curve))
            ray.train.report({"step": step, "loss": losses[-1], "losses": losses},
                             checkpoint=ray.train.Checkpoint.from_directory(tmp))

    def train(resume):
        return train_rank(model, packed, cfg, tcfg, device=device, rng=rng, rank=rank, world=world,
                          resume=resume, save=save, drill=config["drill"],
                          on_step=curve_hook(cfg.log_every, emit))

    if checkpoint is None:
        stats, losses = train(None)
    else:
        with checkpoint.as_directory() as resume:
            if rank == 0:
                curve.extend(json.loads((Path(resume) / CURVE_FILE).read_text()))
            stats, losses = train(resume)
    weights = full_state_dict(model)
    del model  # rank 0 evaluates a plain copy; the shards need not stay beside it
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    row = {}
    if rank == 0:
        plain = load_for_training(cfg, device)
        plain.load_state_dict(weights)
        row = result_row(cfg, spec, plain.eval(), tokenizer, sample, stats, shards=shards,
                         dev_sets=ray.get(config["dev_sets"]), features=ray.get(config["features"]),
                         feature_names=config["feature_names"], device=device, start=start)
        row.update({"workers": world, "train_losses": json.dumps(
            [x if math.isfinite(x) else None for x in losses])})
    # Ray Train keeps only metrics that come with a checkpoint, so rank 0 reports the row
    # with one (a small file); the other ranks report without, as every rank must report.
    with tempfile.TemporaryDirectory() as tmp:
        final = {}
        if rank == 0:
            (Path(tmp) / "row.json").write_text(json.dumps(row, default=float))
            final = {"row": json.dumps(row, default=float), "curve": json.dumps(curve)}
        ray.train.report(final, checkpoint=ray.train.Checkpoint.from_directory(tmp) if rank == 0 else None)


def train_distributed(cfg: ProxyConfig, tcfg: TargetTrainConfig, spec, *, shard_refs: dict,
                      dev_sets_ref, features_ref, feature_names, storage_path: str | None = None,
                      use_gpu: bool | None = None, drill=None, curve: list | None = None,
                      name: str | None = None, callbacks: list | None = None,
                      report_curve: bool = False) -> dict:
    """Train one (mixture, seed) run with `tcfg.workers` Ray Train workers; the runs-table row.

    shard_refs: {shard name: ObjectRef of its frame}; dev_sets_ref/features_ref: ObjectRefs.
    storage_path: where Ray Train keeps checkpoints (shared storage on a multi-node cluster;
    None: ~/ray_results). use_gpu None: when the cluster has GPUs. curve: a list that gets the
    run's learning-curve points. name: the Ray Train run's name (a run restarted under the same
    name and storage_path resumes from its checkpoint; default: unique). callbacks: Ray Train
    UserCallbacks; report_curve: also report each curve point through `ray.train.report` (for
    a callback that forwards it, actors/sweep/tune_train.py)."""
    import ray
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    if use_gpu is None:
        use_gpu = ray.cluster_resources().get("GPU", 0) > 0
    trainer = TorchTrainer(
        _train_loop_per_worker,
        train_loop_config={"proxy": cfg, "target": tcfg, "spec": spec, "shard_refs": shard_refs,
                           "dev_sets": dev_sets_ref, "features": features_ref,
                           "feature_names": tuple(feature_names), "use_gpu": use_gpu, "drill": drill,
                           "report_curve": report_curve},
        scaling_config=ScalingConfig(num_workers=tcfg.workers, use_gpu=use_gpu,
                                     resources_per_worker={"CPU": tcfg.cpus_per_worker,
                                                           **({"GPU": 1} if use_gpu else {})}),
        run_config=RunConfig(name=name or f"causalmix-{spec.run_id}-{uuid.uuid4().hex[:8]}",
                             storage_path=storage_path, callbacks=callbacks,
                             failure_config=FailureConfig(max_failures=tcfg.max_failures),
                             checkpoint_config=CheckpointConfig(num_to_keep=2)))
    result = trainer.fit()
    if result.error is not None:
        raise result.error
    if curve is not None:
        curve.extend(json.loads(result.metrics["curve"]))
    return json.loads(result.metrics["row"])
