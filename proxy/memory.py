"""A small GPU memory estimate of one proxy SFT trial, and how many trials share a GPU.

This is this module's own estimate (no memory plan of the training path exists yet):
fp32 weights + fp32 gradients + AdamW's two fp32 moments = 16 bytes per parameter;
bf16 activations kept for the backward pass at about 34 x hidden bytes per token and
layer (Korthikanti et al. 2022, without the attention-score term: SDPA does not keep
the score matrix) scaled by the MLP's width relative to 4 x hidden; fp32 logits and
their gradient for the scored tokens of a micro-batch; plus a fixed CUDA context per
process. It is meant to pick k for `--trials-per-gpu`, not to promise a fit to the byte.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

CUDA_CONTEXT_BYTES = int(1.5 * 1024**3)
"""Per process: CUDA context, cuBLAS workspaces, allocator slack."""
HEADROOM = 0.9
"""Share of a GPU's memory the trials may plan to use together."""


@dataclass(frozen=True)
class ModelShape:
    """What the estimate needs of a decoder-only model."""

    n_params: int
    """All parameters (embeddings included)."""
    hidden_size: int
    """Model width."""
    num_layers: int
    """Decoder layers."""
    intermediate_size: int
    """MLP width."""
    vocab_size: int
    """Output vocabulary."""

    def __post_init__(self):
        for name in ("n_params", "hidden_size", "num_layers", "intermediate_size", "vocab_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

    @classmethod
    def from_config(cls, config) -> "ModelShape":
        """From a transformers config (parameter count computed, not loaded)."""
        h, layers, inter, vocab = (config.hidden_size, config.num_hidden_layers,
                                   config.intermediate_size, config.vocab_size)
        heads, kv = config.num_attention_heads, getattr(config, "num_key_value_heads", None) or config.num_attention_heads
        head_dim = h // heads
        attn = h * h * 2 + 2 * h * kv * head_dim + h + 2 * kv * head_dim  # q, o, k, v (+ biases)
        per_layer = attn + 3 * h * inter + 2 * h
        embed = vocab * h * (1 if getattr(config, "tie_word_embeddings", False) else 2)
        return cls(layers * per_layer + embed + h, h, layers, inter, vocab)


def trial_memory_bytes(shape: ModelShape, *, tokens_per_micro_batch: int,
                       scored_share: float = 1.0) -> int:
    """Estimated peak GPU bytes of one trial training `shape` with micro-batches of
    `tokens_per_micro_batch` tokens, `scored_share` of them scored (LM head only there)."""
    if tokens_per_micro_batch < 1 or not 0 < scored_share <= 1:
        raise ValueError("tokens_per_micro_batch must be >= 1 and scored_share in (0, 1]")
    states = 16 * shape.n_params
    mlp_scale = (8 + 2 * shape.intermediate_size / shape.hidden_size) / 16
    activations = 34 * shape.hidden_size * mlp_scale * shape.num_layers * tokens_per_micro_batch
    logits = 3 * 4 * shape.vocab_size * math.ceil(scored_share * tokens_per_micro_batch)
    return int(states + activations + logits + CUDA_CONTEXT_BYTES)


def max_trials_per_gpu(gpu_memory_bytes: int, per_trial_bytes: int) -> int:
    """Largest k whose k trials fit in HEADROOM of the GPU (0: not even one)."""
    if gpu_memory_bytes < 1 or per_trial_bytes < 1:
        raise ValueError("gpu_memory_bytes and per_trial_bytes must be >= 1")
    return int(HEADROOM * gpu_memory_bytes // per_trial_bytes)


def gpus_per_trial(trials_per_gpu: int) -> float:
    """The fractional GPU request that makes Ray place `trials_per_gpu` trials on one GPU."""
    if trials_per_gpu < 1:
        raise ValueError(f"trials_per_gpu must be >= 1, got {trials_per_gpu}")
    return 1.0 / trials_per_gpu
