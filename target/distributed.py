"""Pure arithmetic of a data-parallel run: which packed rows each rank trains at each step,
how many micro-batches it accumulates, and where a resumed run starts. No torch, no Ray.

The global batch of an optimiser step is the single-device one, `rows_per_micro_batch x
grad_accum` packed rows, whatever the number of ranks N: its rows are dealt to the ranks in
turn (row j to rank j mod N), and each rank runs its share in micro-batches of
`rows_per_micro_batch`. The step's loss is normalised by the scored tokens of the whole
global batch and each rank's loss is multiplied by N, because FSDP averages gradients over
ranks: the sum over ranks then equals the single-device gradient. Every rank runs the same
number of micro-batches (padded with empty ones) since each forward gathers weights from all
ranks.

Also the memory plan of a run, checked before any worker starts (`check_memory_plan`, over
proxy/memory_plan.py).
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import Mapping, Sequence

from causalmix.proxy.config import ProxyConfig
from causalmix.proxy.memory_plan import (GPU_MEMORY_GIB, MemoryPlan, ModelShape, check_plan, detect_gpu_type, plan_for_run,
                                         read_model_config)


@dataclass(frozen=True)
class TargetTrainConfig:
    """How one target-model run is spread over workers (`validate --gpus-per-run`)."""

    workers: int = 1
    """Ray Train workers per run (one GPU each on a GPU cluster, one process each on CPU).
    1 keeps the single-device Ray task; > 1 trains through Ray Train with FSDP."""
    gpu_type: str | None = None
    """GPU model for the memory plan (proxy/memory_plan.py GPU_MEMORY_GIB); None: the cluster's
    `accelerator_type` when Ray reports one with a single memory size, else unchecked."""
    activation_checkpointing: bool = False
    """Recompute each decoder layer's activations in backward (transformers'
    activation_checkpointing_enable): memory of one layer instead of all."""
    max_failures: int = 2
    """Worker-group restarts Ray Train allows a run; each resumes from the last checkpoint."""
    checkpoint_every: int = 50
    """Optimiser steps between checkpoints (and always after the last step)."""
    cpus_per_worker: float = 1.0
    """CPUs reserved per worker."""
    storage_path: str | None = None
    """Where Ray Train keeps checkpoints: shared storage (NFS path or s3:// URI) on a multi-node
    cluster; None: ~/ray_results, enough on one node."""

    def __post_init__(self):
        if self.workers < 1:
            raise ValueError(f"gpus_per_run must be >= 1, got {self.workers}")
        if self.max_failures < 0:
            raise ValueError(f"max_failures must be >= 0, got {self.max_failures}")
        if self.checkpoint_every < 1:
            raise ValueError(f"checkpoint_every must be >= 1, got {self.checkpoint_every}")
        if not self.cpus_per_worker > 0:
            raise ValueError(f"cpus_per_worker must be > 0, got {self.cpus_per_worker}")
        if self.gpu_type is not None and self.gpu_type not in GPU_MEMORY_GIB:
            raise ValueError(f"gpu_type {self.gpu_type!r} is not one of {', '.join(GPU_MEMORY_GIB)}")

    @property
    def distributed(self) -> bool:
        return self.workers > 1


def rank_rows(rows: Sequence[int], rank: int, world: int) -> list[int]:
    """The share of a global step's rows that rank `rank` of `world` trains."""
    if not 0 <= rank < world:
        raise ValueError(f"rank {rank} outside a world of {world}")
    return list(rows[rank::world])


def micro_batches_per_rank(rows_per_step: int, rows_per_micro_batch: int, world: int) -> int:
    """Micro-batches every rank runs per step (the busiest rank's count; others pad)."""
    return max(1, math.ceil(math.ceil(rows_per_step / world) / rows_per_micro_batch))


def rank_micro_batches(rows: Sequence[int], rank: int, world: int,
                       rows_per_micro_batch: int) -> list[list[int]]:
    """This rank's rows of one step in micro-batches, padded with empty ones to the count of
    the busiest rank so that all ranks run the same number of forward passes."""
    mine = rank_rows(rows, rank, world)
    n = micro_batches_per_rank(len(rows), rows_per_micro_batch, world)
    return [mine[m * rows_per_micro_batch:(m + 1) * rows_per_micro_batch] for m in range(n)]


def loss_scale(world: int) -> float:
    """Multiplier of each rank's loss that turns FSDP's gradient mean into the sum."""
    return float(world)


@dataclass(frozen=True)
class ResumePoint:
    """Where a run restarts: the next optimiser step and what it has consumed."""

    step: int
    """Optimiser steps already applied to the checkpointed weights."""
    total_steps: int

    def __post_init__(self):
        if not 0 <= self.step <= self.total_steps:
            raise ValueError(f"resume step {self.step} outside [0, {self.total_steps}]")

    def remaining(self) -> range:
        return range(self.step, self.total_steps)


def should_checkpoint(step_done: int, total_steps: int, every: int) -> bool:
    """After optimiser step `step_done` (1-based count of applied steps)."""
    return step_done == total_steps or step_done % every == 0


def check_memory_plan(proxy: ProxyConfig, train: TargetTrainConfig, cluster_resources: Mapping[str, float],
                      out=None) -> MemoryPlan:
    """Print the run's memory plan to stderr and refuse (UserError) one that does not fit,
    before any worker starts. The GPU type is `train.gpu_type`, else the cluster's."""
    on_gpu = cluster_resources.get("GPU", 0) > 0
    gpu_type = train.gpu_type or (detect_gpu_type(cluster_resources) if on_gpu else None)
    plan = plan_for_run(ModelShape.from_config(read_model_config(proxy.model)), proxy, train.workers,
                        gpu_type=gpu_type, on_gpu=on_gpu or train.gpu_type is not None,
                        activation_checkpointing=train.activation_checkpointing)
    print("\n".join(plan.lines()), file=out or sys.stderr)
    check_plan(plan)
    return plan
