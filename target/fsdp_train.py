"""One rank of a data-parallel target-model run: FSDP2 (`fully_shard`) over the decoder
layers, bf16 compute with fp32 master weights on GPU, optional activation checkpointing,
the single-device step of proxy/train.py on this rank's rows, and sharded checkpoints
(torch.distributed.checkpoint) that a restarted worker group resumes from.

Runs in any torch.distributed process group (gloo on CPU, NCCL on GPU): FSDP2 runs on CPU
with gloo in torch 2.13, so the CPU tests exercise the same path as a GPU node. Ray-free:
`actors/target/ray_train.py` creates the process group through Ray Train and supplies `save`.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from causalmix.proxy.config import ProxyConfig
from causalmix.proxy.packing import PackedBatch
from causalmix.proxy.train import (StepInfo, TrainStats, accumulate, autocast_for, build_optimizer,
                                   optimizer_step, step_orders, step_rows)
from causalmix.target.distributed import (ResumePoint, TargetTrainConfig, loss_scale, rank_micro_batches,
                                          should_checkpoint)

POSITION_FILE = "position.json"
"""Rank 0's part of a checkpoint: optimiser steps applied, the loss curve, the LR schedule."""


@dataclass(frozen=True)
class FaultDrill:
    """A deliberate worker failure (tests, drills): the last rank raises right after the
    checkpoint of step `step`, once, remembered by a marker file."""

    step: int
    """Applied optimiser steps after which to fail (a checkpoint step)."""
    marker: str
    """File created at the failure; its presence means the failure already happened."""
    trace_dir: str | None = None
    """Folder where each rank appends {step, rows} per step it trains (rank<r>.jsonl)."""


def shard_model(model, cfg: ProxyConfig, tcfg: TargetTrainConfig, device: str, world: int):
    """fully_shard each decoder layer, then the root (embeddings, head, final norm)."""
    import torch
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    if tcfg.activation_checkpointing:
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    bf16 = cfg.dtype == "bfloat16" or (cfg.dtype == "auto" and device.startswith("cuda"))
    policy = (MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
              if bf16 else MixedPrecisionPolicy())
    mesh = init_device_mesh("cuda" if device.startswith("cuda") else "cpu", (world,))
    for layer in model.get_decoder().layers:
        fully_shard(layer, mesh=mesh, mp_policy=policy)
    fully_shard(model, mesh=mesh, mp_policy=policy)
    return model


def load_sharded(cfg: ProxyConfig, tcfg: TargetTrainConfig, device: str, rank: int, world: int):
    """The sharded model with the pretrained weights, holding one full copy in host memory on
    the whole group: rank 0 loads the weights on the host; every rank builds the model on
    the meta device (no memory), shards it, allocates only its shards on `device` and gets
    their values by broadcast from rank 0 (`set_model_state_dict(full_state_dict=True,
    broadcast_from_rank0=True)`, as torchtitan and torchtune load). The same on CPU (gloo) and
    GPU (NCCL): the broadcast goes over the process group's default device.

    Non-persistent buffers (the rotary tables) are in no state dict and `to_empty` leaves
    them uninitialised, so rank 0 broadcasts its loaded values of every buffer too."""
    import torch
    import torch.distributed as dist
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    from causalmix.proxy.run import build_for_training, load_for_training

    full = load_for_training(cfg, device, place="cpu") if rank == 0 else None
    with torch.device("meta"):
        model = build_for_training(cfg, device)
    shard_model(model, cfg, tcfg, device, world)
    model.to_empty(device=device)
    set_model_state_dict(model, full.state_dict() if full is not None else {},
                         options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=True))
    loaded = dict(full.named_buffers()) if full is not None else {}
    with torch.no_grad():
        for name, buffer in model.named_buffers():
            if full is not None:
                buffer.copy_(loaded[name])
            dist.broadcast(buffer, src=0)
    del full, loaded
    return model


def _state(model, optimizer):
    from torch.distributed.checkpoint.state_dict import get_state_dict

    model_sd, optim_sd = get_state_dict(model, optimizer)
    return {"model": model_sd, "optim": optim_sd}


def save_checkpoint(directory: str | Path, model, optimizer, scheduler, step: int, losses: list,
                    rank: int) -> None:
    """This rank's shards into `directory` (a rank-local folder; Ray Train merges the ranks')."""
    import torch.distributed.checkpoint as dcp

    dcp.save(_state(model, optimizer), checkpoint_id=str(directory))
    if rank == 0:
        (Path(directory) / POSITION_FILE).write_text(json.dumps(
            {"step": step, "losses": losses, "scheduler": scheduler.state_dict()}))


def load_checkpoint(directory: str | Path, model, optimizer, scheduler) -> tuple[int, list]:
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import set_state_dict

    state = _state(model, optimizer)
    dcp.load(state, checkpoint_id=str(directory))
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"])
    position = json.loads((Path(directory) / POSITION_FILE).read_text())
    scheduler.load_state_dict(position["scheduler"])
    return int(position["step"]), list(position["losses"])


def full_state_dict(model) -> dict:
    """The unsharded weights on CPU (a collective: every rank calls it)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def train_rank(model, packed: PackedBatch, cfg: ProxyConfig, tcfg: TargetTrainConfig, *,
               device: str, rng: np.random.Generator, rank: int, world: int,
               resume: str | Path | None,
               save: Callable[[int, list, Callable[[Path], None]], None],
               drill: FaultDrill | None = None,
               on_step: Callable[[int, float, StepInfo], None] | None = None) -> tuple[TrainStats, list]:
    """Train the sharded `model` on this rank's rows of every step, from `resume` when given.

    `save(step, losses, write)` is called on every rank at each checkpoint step; `write(dir)`
    puts this rank's checkpoint into `dir`. `on_step(step, loss, info)` (step from 1) runs on
    every rank after each optimiser step with the global step's loss, tokens and gradient norm,
    the same values on all ranks. Returns the stats and the whole run's loss curve (also the
    steps before a resume)."""
    import torch
    import torch.distributed as dist

    steps_per_epoch, orders = step_orders(len(packed.input_ids), cfg, rng)
    total_steps = steps_per_epoch * cfg.epochs
    optimizer, scheduler = build_optimizer(model, cfg, total_steps, fused=False)
    start_step, losses = 0, []
    if resume is not None:
        start_step, losses = load_checkpoint(resume, model, optimizer, scheduler)
    position = ResumePoint(start_step, total_steps)
    autocast = autocast_for(device, cfg.dtype)
    scale = loss_scale(world)
    model.train()
    start = time.perf_counter()
    for step in position.remaining():
        rows = [int(r) for r in step_rows(orders, step, steps_per_epoch, cfg)]
        mine = rank_micro_batches(rows, rank, world, cfg.rows_per_micro_batch)
        local = accumulate_padded(model, packed, mine, rows[0], max(1, packed.rows(rows).n_scored),
                                  device, autocast, scale)
        lr, grad_norm = optimizer_step(model, optimizer, scheduler, cfg)
        total = torch.tensor([local], dtype=torch.float64, device=device)  # NCCL reduces on the GPU
        dist.all_reduce(total)
        losses.append(float(total))
        if on_step is not None:
            batch = packed.rows(rows)
            on_step(step + 1, losses[-1], StepInfo(lr=lr, grad_norm=global_norm(grad_norm),
                                                   tokens=batch.n_tokens,
                                                   scored_tokens=max(1, batch.n_scored),
                                                   total_steps=total_steps))
        if drill is not None and drill.trace_dir:
            with open(Path(drill.trace_dir) / f"rank{rank}.jsonl", "a") as fh:
                fh.write(json.dumps({"step": step, "rows": [r for m in mine for r in m]}) + "\n")
        done = step + 1
        if should_checkpoint(done, total_steps, tcfg.checkpoint_every):
            save(done, list(losses), lambda d: save_checkpoint(d, model, optimizer, scheduler, done,
                                                               list(losses), rank))
            if drill is not None and done == drill.step and rank == world - 1 \
                    and not Path(drill.marker).exists():
                Path(drill.marker).write_text(f"failed after step {done}\n")
                raise RuntimeError(f"injected worker failure after step {done} (rank {rank})")
    model.eval()
    trained = total_steps - start_step
    stats = TrainStats(steps=total_steps, tokens=packed.n_tokens * cfg.epochs,
                       scored_tokens=packed.n_scored * cfg.epochs,
                       first_loss=losses[0] if losses else float("nan"),
                       last_loss=losses[-1] if losses else float("nan"),
                       seconds=(time.perf_counter() - start) * total_steps / max(1, trained))
    return stats, losses


def global_norm(grad_norm):
    """The gradient norm clip_grad_norm_ returns over FSDP's sharded (DTensor) gradients as a
    plain tensor: the norm over all ranks' shards, the same on every rank."""
    from torch.distributed.tensor import DTensor

    return grad_norm.full_tensor() if isinstance(grad_norm, DTensor) else grad_norm


def accumulate_padded(model, packed: PackedBatch, micro_rows, filler: int, n_scored: int, device: str,
                      autocast, scale: float) -> float:
    """proxy.train.accumulate over this rank's micro-batches; an empty one (a rank with fewer
    rows this step) runs row `filler` with weight 0, taking part in every FSDP gather while
    adding nothing to the gradient or the loss."""
    loss = 0.0
    for rows in micro_rows:
        weight = 1.0 if rows else 0.0
        loss += weight * accumulate(model, [packed.rows(rows or [filler])], n_scored, device,
                                    autocast, scale=scale * weight)
    return loss
