"""Settings of one proxy SFT run (model, budget, optimiser, packing, dev suite)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# Deferred on purpose, so that importing this module does not load pandas and pyarrow: the
# function-local imports (of these libraries or of this project's modules that import them).


@dataclass(frozen=True)
class ProxyConfig:
    """One proxy SFT run; the same settings for every run of a sweep."""

    model: str = ""
    """Base model: a local `save_pretrained` directory or a hub id such as Qwen/Qwen2.5-0.5B."""
    budget: int = 400
    """Training budget per run, in `budget_unit` (paper: 100000 samples)."""
    budget_unit: Literal["samples", "tokens"] = "samples"
    """'samples' (documents drawn, exact per-domain counts) or 'tokens' (per-domain token quotas)."""
    max_length: int = 512
    """Longest document in tokens (longer ones are cut) and the length of a packed row."""
    rows_per_micro_batch: int = 2
    """Packed rows per forward/backward pass."""
    grad_accum: int = 2
    """Micro-batches per optimiser step."""
    learning_rate: float = 1e-3
    """Peak AdamW learning rate (Qwen2.5-0.5B full SFT: about 1e-5)."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    warmup_ratio: float = 0.1
    """Share of the optimiser steps with linear warmup; cosine decay to zero after it."""
    max_grad_norm: float = 1.0
    """Gradient clipping norm (0: off)."""
    epochs: int = 1
    """Passes over the drawn sample."""
    device: str = "auto"
    """'auto' (CUDA when visible), 'cpu' or 'cuda[:N]'."""
    dtype: str = "auto"
    """'auto': bf16 autocast on GPU, fp32 on CPU; or 'float32' / 'bfloat16'."""
    attention: str = "auto"
    """'auto': flash_attention_2 (varlen) on GPU when installed, else SDPA with a block-diagonal mask."""
    eval_batch_rows: int = 8
    """Packed rows per forward pass of the dev NLL."""
    em_max_new_tokens: int = 64
    """Greedy tokens generated per exact-match dev prompt."""
    em_batch_size: int = 32
    """Prompts per generation batch."""
    dev_limit: int = 0
    """Dev documents per pool dev set (0: all of them); lm_eval entries have their own `limit`."""
    threads: int = 0
    """torch CPU threads (0: leave torch's default)."""
    compile: bool = False
    """`torch.compile` the decoder body of the training step (the LM head and loss stay eager:
    their row count changes with every micro-batch); pays a compile at the start of each run."""
    liger_loss: bool = False
    """Liger's fused linear cross-entropy for the training loss (`causalmix[liger]`, CUDA only):
    the scored tokens' logits are never materialised. Refused on CPU."""
    log_every: int = 10
    """Optimiser steps between two learning-curve points (loss, lr, grad norm, tokens/s, step
    tokens) a run reports to Tune and the tracker, plus the last step (0: no curve)."""
    objective: dict | None = None
    """How each run's `y` is computed from its metrics (causal/objective.py form: metrics,
    directions, weights, normalise); None: the default mean, loss-type metrics negated. It must
    score a row alone: normalise none, or zscore/minmax with `stats` given."""

    def __post_init__(self):
        if self.budget < 1:
            raise ValueError(f"budget must be >= 1, got {self.budget}")
        if self.budget_unit not in ("samples", "tokens"):
            raise ValueError(f"budget_unit must be 'samples' or 'tokens', got {self.budget_unit!r}")
        for name in ("max_length", "rows_per_micro_batch", "grad_accum", "epochs",
                     "eval_batch_rows", "em_max_new_tokens", "em_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_length < 8:
            raise ValueError(f"max_length must be >= 8, got {self.max_length}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ValueError(f"warmup_ratio must lie in [0, 1), got {self.warmup_ratio}")
        if self.dtype not in ("auto", "float32", "bfloat16"):
            raise ValueError(f"dtype must be auto, float32 or bfloat16, got {self.dtype!r}")
        if self.attention not in ("auto", "sdpa", "flash_attention_2", "eager"):
            raise ValueError(f"attention must be auto, sdpa, flash_attention_2 or eager, got {self.attention!r}")
        if (self.dev_limit < 0 or self.threads < 0 or self.weight_decay < 0 or self.max_grad_norm < 0
                or self.log_every < 0):
            raise ValueError("dev_limit, threads, weight_decay, max_grad_norm and log_every must be >= 0")
        if self.liger_loss and self.device == "cpu":
            raise ValueError("liger_loss needs a CUDA device (Liger's kernels are Triton); "
                             "device is 'cpu'")
        if self.objective is not None:
            from causalmix.causal.objective import Objective

            try:
                objective = Objective.from_json(self.objective)
            except (ValueError, TypeError) as exc:
                raise ValueError(f"objective: {exc}") from None
            if not objective.row_wise:
                raise ValueError(f"objective: normalise {objective.normalise!r} needs a whole runs table; "
                                 "a run's y needs normalise 'none' (or zscore/minmax with stats); "
                                 "refit later with `fit --objective`")

    def objective_spec(self):
        """The run objective (causal.objective.Objective)."""
        from causalmix.causal.objective import Objective

        return Objective.from_json(self.objective)


@dataclass(frozen=True)
class TargetRunConfig(ProxyConfig):
    """A validation run's settings (`validate`'s `proxy:`): ProxyConfig with a target run's
    budget; `model` is replaced by the target model."""

    budget: int = 1200
    """Training budget per target run, in `budget_unit`."""
