"""How many proxy trials share one GPU (`sweep --trials-per-gpu k`), from the memory plan.

One trial is a single-device run of proxy/memory_plan.py's plan (fp32 weights, gradients and
AdamW state, bf16 activations, the loss's logits) plus its own CUDA context; k trials fit when
k such plans fit in the GPU's usable memory. The plan counts logits for every token, while the
proxy's step sends only scored positions through the LM head, so the estimate errs on the side
of fewer trials.
"""
from __future__ import annotations

from causalmix.proxy.memory_plan import RESERVE_GIB, USABLE_FRACTION, GiB, ModelShape, PlanInputs, plan_memory

__all__ = ["ModelShape", "trial_memory_bytes", "max_trials_per_gpu", "gpus_per_trial"]


def trial_memory_bytes(shape: ModelShape, *, seq_len: int, micro_batch: int) -> int:
    """Estimated peak GPU bytes of one trial training `shape` on micro-batches of `micro_batch`
    packed rows of `seq_len` tokens, its CUDA context included."""
    plan = plan_memory(PlanInputs(shape=shape, seq_len=seq_len, micro_batch=micro_batch, workers=1))
    return int(plan.total + RESERVE_GIB * GiB)


def max_trials_per_gpu(gpu_memory_bytes: int, per_trial_bytes: int) -> int:
    """Largest k whose k trials fit in the usable share of the GPU (0: not even one)."""
    if gpu_memory_bytes < 1 or per_trial_bytes < 1:
        raise ValueError("gpu_memory_bytes and per_trial_bytes must be >= 1")
    return int(USABLE_FRACTION * gpu_memory_bytes // per_trial_bytes)


def gpus_per_trial(trials_per_gpu: int) -> float:
    """The fractional GPU request that makes Ray place `trials_per_gpu` trials on one GPU."""
    if trials_per_gpu < 1:
        raise ValueError(f"trials_per_gpu must be >= 1, got {trials_per_gpu}")
    return 1.0 / trials_per_gpu
