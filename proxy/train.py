"""The SFT loop on packed rows: AdamW, linear warmup then cosine decay, gradient
accumulation, bf16 autocast on GPU, loss on response tokens only.

The loss of an optimiser step is the sum of token NLLs over its scored tokens
divided by their count (all micro-batches together), so gradient accumulation
gives the same update as one large batch.
"""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from proxy.config import ProxyConfig
from proxy.packing import IGNORE, PackedBatch


@dataclass(frozen=True)
class StepInfo:
    """What the per-step hook gets besides the step and its loss."""

    lr: float
    """Learning rate the optimiser step used."""
    grad_norm: object
    """Gradient norm before clipping, a 0-d tensor (read it only when logging: on GPU that
    syncs), or None with clipping off."""
    tokens: int
    """Document tokens of the step (padding excluded)."""
    scored_tokens: int
    """Response tokens the step's loss is over."""
    total_steps: int
    """Optimiser steps of the whole run."""


@dataclass
class TrainStats:
    steps: int
    tokens: int
    """Tokens of the documents trained on (padding excluded), all epochs."""
    scored_tokens: int
    first_loss: float
    last_loss: float
    seconds: float

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else float("nan")


def cosine_with_warmup(step: int, total: int, warmup: int) -> float:
    """Learning-rate multiplier of optimiser step `step` (0-based)."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def token_nll_sum(model, batch: PackedBatch, device: str, autocast) -> tuple:
    """(sum of NLL over scored tokens as a 0-d tensor, number of scored tokens)."""
    import torch
    import torch.nn.functional as F

    ids = torch.from_numpy(batch.input_ids).to(device)
    pos = torch.from_numpy(batch.position_ids).to(device)
    labels = torch.from_numpy(batch.labels).to(device)
    with autocast():
        logits = model(input_ids=ids, position_ids=pos, attention_mask=None, use_cache=False).logits
    targets = labels[:, 1:]
    nll = F.cross_entropy(logits[:, :-1].float().reshape(-1, logits.shape[-1]), targets.reshape(-1),
                          ignore_index=IGNORE, reduction="sum")
    return nll, int((targets != IGNORE).sum())


def autocast_for(device: str, dtype: str):
    import torch

    if device.startswith("cuda") and dtype in ("auto", "bfloat16"):
        return lambda: torch.autocast("cuda", dtype=torch.bfloat16)
    if dtype == "bfloat16":
        return lambda: torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext


def train_packed(model, packed: PackedBatch, cfg: ProxyConfig, *, device: str,
                 rng: np.random.Generator,
                 on_step: Callable[[int, float, StepInfo], None] | None = None) -> TrainStats:
    """Train `model` in place for `cfg.epochs` passes over the packed rows (reshuffled per epoch).
    `on_step(step, loss, info)` runs after every optimiser step (step counts from 1)."""
    import torch

    rows_per_step = cfg.rows_per_micro_batch * cfg.grad_accum
    steps_per_epoch = math.ceil(len(packed.input_ids) / rows_per_step)
    total_steps = steps_per_epoch * cfg.epochs
    warmup = int(cfg.warmup_ratio * total_steps)
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        (no_decay if param.ndim < 2 or "norm" in name else decay).append(param)
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}],
                                  lr=cfg.learning_rate, fused=device.startswith("cuda"))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: cosine_with_warmup(s, total_steps, warmup))
    autocast = autocast_for(device, cfg.dtype)
    model.train()
    first = last = float("nan")
    step = 0
    start = time.perf_counter()
    for _ in range(cfg.epochs):
        order = rng.permutation(len(packed.input_ids))
        for s in range(steps_per_epoch):
            rows = order[s * rows_per_step:(s + 1) * rows_per_step]
            step_batch = packed.rows(rows)
            n_scored = max(1, step_batch.n_scored)
            optimizer.zero_grad(set_to_none=True)
            step_loss = 0.0
            for m in range(0, len(rows), cfg.rows_per_micro_batch):
                micro = step_batch.rows(slice(m, m + cfg.rows_per_micro_batch))
                if micro.n_scored == 0:
                    continue
                nll, _ = token_nll_sum(model, micro, device, autocast)
                (nll / n_scored).backward()
                step_loss += float(nll.detach()) / n_scored
            grad_norm = None
            if cfg.max_grad_norm > 0:
                grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            lr = optimizer.param_groups[0]["lr"]
            optimizer.step()
            scheduler.step()
            first = step_loss if step == 0 else first
            last = step_loss
            step += 1
            if on_step is not None:
                on_step(step, step_loss, StepInfo(lr=lr, grad_norm=grad_norm, tokens=step_batch.n_tokens,
                                                  scored_tokens=n_scored, total_steps=total_steps))
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    model.eval()
    return TrainStats(steps=step, tokens=packed.n_tokens * cfg.epochs,
                      scored_tokens=packed.n_scored * cfg.epochs, first_loss=first,
                      last_loss=last, seconds=time.perf_counter() - start)
