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

from proxy.config import ProxyConfig
from proxy.packing import IGNORE, PackedBatch


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


def autocast_for(device: str, dtype: str):
    import torch

    if device.startswith("cuda") and dtype in ("auto", "bfloat16"):
        return lambda: torch.autocast("cuda", dtype=torch.bfloat16)
    if dtype == "bfloat16":
        return lambda: torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext


def make_optimizer(model, cfg: ProxyConfig, device: str):
    """AdamW without decay on norms and biases; the fused kernel on CUDA."""
    import torch

    decay, no_decay = [], []
    for name, param in model.named_parameters():
        (no_decay if param.ndim < 2 or "norm" in name else decay).append(param)
    return torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}],
                             lr=cfg.learning_rate, fused=device.startswith("cuda"))


def train_packed(model, packed: PackedBatch, cfg: ProxyConfig, *, device: str,
                 rng: np.random.Generator,
                 on_step: Callable[[int, float], None] | None = None) -> TrainStats:
    """Train `model` in place for `cfg.epochs` passes over the packed rows (reshuffled per epoch).

    on_step(step, loss) is called after every optimiser step (1-based step, the step's mean
    token NLL); it is the only per-step read of the loss from the device."""
    import torch

    fused_loss = liger_loss_fn(device) if cfg.liger_loss else None
    body = torch.compile(model.base_model, dynamic=False) if cfg.compile else None
    rows_per_step = cfg.rows_per_micro_batch * cfg.grad_accum
    steps_per_epoch = math.ceil(len(packed.input_ids) / rows_per_step)
    total_steps = steps_per_epoch * cfg.epochs
    warmup = int(cfg.warmup_ratio * total_steps)
    optimizer = make_optimizer(model, cfg, device)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: cosine_with_warmup(s, total_steps, warmup))
    autocast = autocast_for(device, cfg.dtype)
    model.train()
    losses = []
    start = time.perf_counter()
    for _ in range(cfg.epochs):
        order = rng.permutation(len(packed.input_ids))
        for s in range(steps_per_epoch):
            step_batch = packed.rows(order[s * rows_per_step:(s + 1) * rows_per_step])
            n_scored = max(1, step_batch.n_scored)
            optimizer.zero_grad(set_to_none=True)
            step_loss = torch.zeros((), device=device)
            for m in range(0, len(step_batch.input_ids), cfg.rows_per_micro_batch):
                micro = step_batch.rows(slice(m, m + cfg.rows_per_micro_batch))
                if micro.n_scored == 0:
                    continue
                nll, _ = token_nll_sum(model, micro, device, autocast, body=body,
                                       fused_loss=fused_loss)
                (nll / n_scored).backward()
                step_loss += nll.detach() / n_scored
            if cfg.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            optimizer.step()
            scheduler.step()
            losses.append(step_loss)
            if on_step is not None:
                on_step(len(losses), float(step_loss))
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    model.eval()
    first, last = (float(losses[0]), float(losses[-1])) if losses else (float("nan"),) * 2
    return TrainStats(steps=len(losses), tokens=packed.n_tokens * cfg.epochs,
                      scored_tokens=packed.n_scored * cfg.epochs, first_loss=first,
                      last_loss=last, seconds=seconds)
