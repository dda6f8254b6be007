"""The SFT loop on packed rows: AdamW, linear warmup then cosine decay, gradient
accumulation, bf16 autocast on GPU, loss on response tokens only.

The loss of an optimiser step is the sum of token NLLs over its scored tokens
divided by their count (all micro-batches together), so gradient accumulation
gives the same update as one large batch.

Speed (benchmarks/bench_sft.py, gpu_check.sh): only the hidden states that predict a
scored token go through the LM head, so prompt and padding positions never pay for
the vocabulary projection; which positions those are is read from the labels on the
host, so the step never waits on the device. The step loss stays on the device and
is read once per optimiser step, and only when a hook wants it. Options: AdamW's
fused kernel on CUDA, `torch.compile` of the decoder body, Liger's fused linear
cross-entropy (CUDA only).
"""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from causalmix.proxy.config import ProxyConfig
from causalmix.proxy.packing import IGNORE, PackedBatch


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
    """Learning-rate multiplier of optimiser step `step` (0-based).

    transformers' `get_cosine_schedule_with_warmup` is the same curve shifted by one step
    during warmup: its step 0 has multiplier 0, a forward and backward pass that moves no
    weight. A proxy run of a few dozen steps cannot spare it, so warmup here starts at 1/warmup.
    """
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def scored_positions(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(flat indices into the (rows x length) hidden states that predict a scored token,
    those tokens). The hidden state at t predicts token t + 1."""
    rows, cols = np.nonzero(labels[:, 1:] != IGNORE)
    return rows * labels.shape[1] + cols, labels[rows, cols + 1]


def liger_loss_fn(device: str):
    """Liger's fused linear cross-entropy (summed NLL, logits never materialised), or a
    clear refusal where it cannot run."""
    if not device.startswith("cuda"):
        raise ValueError(f"liger_loss needs a CUDA device (Liger's kernels are Triton); this run "
                         f"is on {device!r}: drop liger_loss")
    try:
        from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss
    except ImportError:
        raise ValueError("liger_loss needs the liger-kernel package: "
                         "pip install 'causalmix[liger]'") from None
    return LigerFusedLinearCrossEntropyLoss(ignore_index=IGNORE, reduction="sum")


def token_nll_sum(model, batch: PackedBatch, device: str, autocast, *, body=None,
                  fused_loss=None) -> tuple:
    """(sum of NLL over scored tokens as a 0-d tensor, number of scored tokens).

    body: the decoder to run (default `model.base_model`; a compiled one in training);
    fused_loss: a Liger loss taking (head weight, hidden, targets) instead of head + CE.
    """
    import torch
    import torch.nn.functional as F

    flat, targets = scored_positions(batch.labels)
    ids = torch.from_numpy(batch.input_ids).to(device, non_blocking=True)
    pos = torch.from_numpy(batch.position_ids).to(device, non_blocking=True)
    flat = torch.from_numpy(flat).to(device, non_blocking=True)
    targets = torch.from_numpy(np.ascontiguousarray(targets)).to(device, non_blocking=True)
    head = model.get_output_embeddings()
    if _sharded(model):
        # FSDP gathers the weights in the root module's forward hooks, so the decoder and the
        # head cannot be called apart: full logits, then the scored rows
        with autocast():
            logits = model(input_ids=ids, position_ids=pos, attention_mask=None, use_cache=False).logits
            logits = logits.reshape(-1, logits.shape[-1]).index_select(0, flat)
            return F.cross_entropy(logits.float(), targets, reduction="sum"), len(targets)
    with autocast():
        decoder = model.base_model if body is None else body
        hidden = decoder(input_ids=ids, position_ids=pos, attention_mask=None,
                         use_cache=False).last_hidden_state
        hidden = hidden.reshape(-1, hidden.shape[-1]).index_select(0, flat)
        if fused_loss is not None:
            out = fused_loss(head.weight, hidden, targets)
            nll = out[0] if isinstance(out, tuple) else out
        else:
            nll = F.cross_entropy(head(hidden).float(), targets, reduction="sum")
    return nll, len(targets)


def _sharded(model) -> bool:
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:
        return False
    return isinstance(model, FSDPModule)


def autocast_for(device: str, dtype: str):
    import torch

    if device.startswith("cuda") and dtype in ("auto", "bfloat16"):
        return lambda: torch.autocast("cuda", dtype=torch.bfloat16)
    if dtype == "bfloat16":
        return lambda: torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext


def step_orders(n_rows: int, cfg: ProxyConfig, rng: np.random.Generator) -> tuple[int, list[np.ndarray]]:
    """(optimiser steps per epoch, each epoch's row order). All epochs' orders are drawn up front
    (the same draws as one per epoch, since nothing else consumes `rng` in between), so a resumed
    or distributed run knows the rows of every step from the seed alone."""
    rows_per_step = cfg.rows_per_micro_batch * cfg.grad_accum
    return math.ceil(n_rows / rows_per_step), [rng.permutation(n_rows) for _ in range(cfg.epochs)]


def step_rows(orders: list[np.ndarray], step: int, steps_per_epoch: int, cfg: ProxyConfig) -> np.ndarray:
    """Packed-row indices of global optimiser step `step` (0-based)."""
    rows_per_step = cfg.rows_per_micro_batch * cfg.grad_accum
    epoch, s = divmod(step, steps_per_epoch)
    return orders[epoch][s * rows_per_step:(s + 1) * rows_per_step]


def build_optimizer(model, cfg: ProxyConfig, total_steps: int, *, fused: bool):
    """AdamW (no decay on norms and biases) and the warmup-cosine schedule over `total_steps`."""
    import torch

    warmup = int(cfg.warmup_ratio * total_steps)
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        (no_decay if param.ndim < 2 or "norm" in name else decay).append(param)
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}],
                                  lr=cfg.learning_rate, fused=fused)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: cosine_with_warmup(s, total_steps, warmup))
    return optimizer, scheduler


def accumulate_on_device(model, micro_batches, n_scored: int, device: str, autocast, *,
                         scale: float = 1.0, body=None, fused_loss=None):
    """Forward/backward of each micro-batch with loss NLL / n_scored x `scale` (n_scored: the
    whole optimiser step's scored tokens, so accumulation equals one large batch); returns the
    unscaled loss summed over the micro-batches as a 0-d tensor on the device, so the step never
    waits for it. A micro-batch without scored tokens still runs: under FSDP every rank must
    take part in each gather."""
    import torch

    step_loss = torch.zeros((), device=device)
    for micro in micro_batches:
        nll, _ = token_nll_sum(model, micro, device, autocast, body=body, fused_loss=fused_loss)
        (nll * scale / n_scored).backward()  # scale 1.0 leaves nll bit for bit: same as nll / n_scored
        step_loss += nll.detach() / n_scored
    return step_loss


def accumulate(model, micro_batches, n_scored: int, device: str, autocast, *, scale: float = 1.0) -> float:
    """`accumulate_on_device`, the loss read back as a float."""
    return float(accumulate_on_device(model, micro_batches, n_scored, device, autocast, scale=scale))


def optimizer_step(model, optimizer, scheduler, cfg: ProxyConfig):
    """Clip, step, advance the schedule. Returns (the learning rate the step used, the gradient
    norm before clipping as a 0-d tensor, or None with clipping off)."""
    import torch

    grad_norm = None
    if cfg.max_grad_norm > 0:
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
    lr = optimizer.param_groups[0]["lr"]
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return lr, grad_norm


def train_packed(model, packed: PackedBatch, cfg: ProxyConfig, *, device: str,
                 rng: np.random.Generator,
                 on_step: Callable[[int, float, StepInfo], None] | None = None) -> TrainStats:
    """Train `model` in place for `cfg.epochs` passes over the packed rows (reshuffled per epoch).
    `on_step(step, loss, info)` runs after every optimiser step (step counts from 1); it is the
    only per-step read of the loss from the device."""
    import torch

    fused_loss = liger_loss_fn(device) if cfg.liger_loss else None
    body = torch.compile(model.base_model, dynamic=False) if cfg.compile else None

    steps_per_epoch, orders = step_orders(len(packed.input_ids), cfg, rng)
    total_steps = steps_per_epoch * cfg.epochs
    optimizer, scheduler = build_optimizer(model, cfg, total_steps, fused=device.startswith("cuda"))
    autocast = autocast_for(device, cfg.dtype)
    model.train()
    losses = []
    start = time.perf_counter()
    for step in range(total_steps):
        step_batch = packed.rows(step_rows(orders, step, steps_per_epoch, cfg))
        micro = [step_batch.rows(slice(m, m + cfg.rows_per_micro_batch))
                 for m in range(0, len(step_batch.input_ids), cfg.rows_per_micro_batch)]
        n_scored = max(1, step_batch.n_scored)
        losses.append(accumulate_on_device(model, micro, n_scored, device, autocast, body=body,
                                           fused_loss=fused_loss))
        lr, grad_norm = optimizer_step(model, optimizer, scheduler, cfg)
        if on_step is not None:
            on_step(step + 1, float(losses[-1]), StepInfo(lr=lr, grad_norm=grad_norm, tokens=step_batch.n_tokens,
                                                   scored_tokens=n_scored, total_steps=total_steps))
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    model.eval()
    return TrainStats(steps=total_steps, tokens=packed.n_tokens * cfg.epochs,
                      scored_tokens=packed.n_scored * cfg.epochs,
                      first_loss=float(losses[0]) if losses else float("nan"),
                      last_loss=float(losses[-1]) if losses else float("nan"),
                      seconds=seconds)
