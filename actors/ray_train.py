"""One target-model run on Ray Train: a `TorchTrainer` with N workers (one GPU each on a GPU
cluster, gloo processes on CPU), each running proxy/fsdp_train.py's rank loop. Checkpoints
go through `ray.train.report`, so a lost worker restarts the group (FailureConfig) from the
last checkpoint instead of from step 0. Rank 0 evaluates the dev suite on the gathered
weights and reports the runs-table row.
"""
from __future__ import annotations

import json
import tempfile
import uuid
from pathlib import Path

from proxy.config import ProxyConfig
from proxy.distributed import TargetTrainConfig


def _train_loop_per_worker(config: dict) -> None:
    import math
    import time

    import ray
    import ray.train
    import torch

    from proxy.fsdp_train import full_state_dict, shard_model, train_rank
    from proxy.run import load_for_training, prepare_run, result_row

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
    model = shard_model(load_for_training(cfg, device, place="cpu"), cfg, tcfg, device, world)

    def save(step: int, losses: list, write) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            write(Path(tmp))
            ray.train.report({"step": step, "loss": losses[-1], "losses": losses},
                             checkpoint=ray.train.Checkpoint.from_directory(tmp))

    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        stats, losses = train_rank(model, packed, cfg, tcfg, device=device, rng=rng, rank=rank,
                                   world=world, resume=None, save=save, drill=config["drill"])
    else:
        with checkpoint.as_directory() as resume:
            stats, losses = train_rank(model, packed, cfg, tcfg, device=device, rng=rng, rank=rank,
                                       world=world, resume=resume, save=save, drill=config["drill"])
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
        if rank == 0:
            (Path(tmp) / "row.json").write_text(json.dumps(row, default=float))
        ray.train.report({"row": json.dumps(row, default=float)},
                         checkpoint=ray.train.Checkpoint.from_directory(tmp) if rank == 0 else None)


def train_distributed(cfg: ProxyConfig, tcfg: TargetTrainConfig, spec, *, shard_refs: dict,
                      dev_sets_ref, features_ref, feature_names, storage_path: str | None = None,
                      use_gpu: bool | None = None, drill=None) -> dict:
    """Train one (mixture, seed) run with `tcfg.workers` Ray Train workers; the runs-table row.

    shard_refs: {shard name: ObjectRef of its frame}; dev_sets_ref/features_ref: ObjectRefs.
    storage_path: where Ray Train keeps checkpoints (shared storage on a multi-node cluster;
    None: ~/ray_results). use_gpu None: when the cluster has GPUs."""
    import ray
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    if use_gpu is None:
        use_gpu = ray.cluster_resources().get("GPU", 0) > 0
    trainer = TorchTrainer(
        _train_loop_per_worker,
        train_loop_config={"proxy": cfg, "target": tcfg, "spec": spec, "shard_refs": shard_refs,
                           "dev_sets": dev_sets_ref, "features": features_ref,
                           "feature_names": tuple(feature_names), "use_gpu": use_gpu, "drill": drill},
        scaling_config=ScalingConfig(num_workers=tcfg.workers, use_gpu=use_gpu,
                                     resources_per_worker={"CPU": tcfg.cpus_per_worker,
                                                           **({"GPU": 1} if use_gpu else {})}),
        run_config=RunConfig(name=f"causalmix-{spec.run_id}-{uuid.uuid4().hex[:8]}",
                             storage_path=storage_path,
                             failure_config=FailureConfig(max_failures=tcfg.max_failures),
                             checkpoint_config=CheckpointConfig(num_to_keep=2)))
    result = trainer.fit()
    if result.error is not None:
        raise result.error
    return json.loads(result.metrics["row"])


def train_candidate_distributed(proxy: ProxyConfig, name: str, mixture: dict, seed: int, state: dict,
                                shard_refs: dict, dev_sets, features, feature_names, *,
                                train: TargetTrainConfig) -> dict:
    """actors/validation.py's per-run task when train.workers > 1: the same arguments (Ray has
    resolved `dev_sets` and `features`), one Ray Train run instead of local training."""
    import ray

    from proxy.run import RunSpec

    spec = RunSpec(run_id=f"{name}-seed{seed}", mixture=mixture, state=state, seed=seed,
                   sampler="validation")
    row = train_distributed(proxy, train, spec, shard_refs=shard_refs, dev_sets_ref=ray.put(dev_sets),
                            features_ref=ray.put(features), feature_names=feature_names,
                            storage_path=train.storage_path)
    row["candidate"] = name
    return row


def check_memory_plan(proxy: ProxyConfig, train: TargetTrainConfig, cluster_resources: dict, out=None):
    """Print the run's memory plan to stderr and refuse (UserError) one that does not fit,
    before any worker starts. The GPU type is `train.gpu_type`, else the cluster's."""
    import sys

    from proxy.memory_plan import ModelShape, check_plan, detect_gpu_type, plan_for_run, read_model_config

    on_gpu = cluster_resources.get("GPU", 0) > 0
    gpu_type = train.gpu_type or (detect_gpu_type(cluster_resources) if on_gpu else None)
    plan = plan_for_run(ModelShape.from_config(read_model_config(proxy.model)), proxy, train.workers,
                        gpu_type=gpu_type, on_gpu=on_gpu or train.gpu_type is not None,
                        activation_checkpointing=train.activation_checkpointing)
    print("\n".join(plan.lines()), file=out or sys.stderr)
    check_plan(plan)
    return plan
