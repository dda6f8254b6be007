"""Per-GPU memory of one target-model training run, estimated before any worker starts.

From the model's shape (a transformers config), the sequence length, the micro-batch, the
number of workers N and the GPU type, the plan adds up per GPU:

- weights, gradients and AdamW state in fp32 (4 + 4 + 8 bytes per parameter); under FSDP
  (N > 1) each rank holds 1/N of them, on one GPU (the single-device path) all of them, plus
  the bf16 copies autocast makes of the weights;
- under FSDP the bf16 working set: the root unit (embeddings, head, final norm: FSDP2 keeps
  the root gathered through forward and backward) plus two gathered decoder layers (the one
  computing and the one prefetched) and one layer's unsharded gradients before reduce-scatter;
- activations of one micro-batch (tokens T = rows x seq_len), saved tensors of a Qwen2/Qwen3
  decoder layer per token: two RMSNorms (fp32 upcast + normalised output), q/k/v and the
  attention output, the SwiGLU gate/up/product; with activation checkpointing only each
  layer's input is kept, plus one layer recomputed during backward;
- the loss path: logits in the compute dtype, their fp32 upcast and the fp32 log-softmax
  cross-entropy saves, and the fp32 gradient of the logits during backward;
- a fixed reserve for the CUDA context, NCCL buffers and allocator fragmentation.

Attention is counted as a fused kernel (flash / SDPA memory-efficient: no seq x seq term);
`eager` adds the probabilities, seq x seq per head. A test checks the activation terms
against the bytes autograd actually saves for a tiny Qwen2 model (CPU, fp32); on a GPU the
prepared script `benchmarks/gpu_memory_plan_check.py` compares the total with
`torch.cuda.max_memory_allocated`. Pure arithmetic: no torch, no Ray.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Mapping

from causalmix.core.errors import UserError

# Deferred on purpose, so that importing this module does not load transformers: the function-local
# imports (of these libraries or of this project's modules that import them).

GiB = 1024**3

GPU_MEMORY_GIB: dict[str, float] = {
    "A100-40": 40.0,
    "A100-80": 80.0,
    "H100-80": 79.6,
    "H100-94": 93.6,
    "H200-141": 140.4,
    "B200-180": 178.4,
    "L4-24": 22.5,
    "A10G-24": 22.5,
    "L40S-48": 45.0,
    "RTX4090-24": 23.6,
}
"""Total device memory as `nvidia-smi` reports it (GiB); the names `--gpu-type` accepts."""

USABLE_FRACTION = 0.92
"""Share of the device memory a plan may fill: the caching allocator fragments the rest."""

RESERVE_GIB = 1.5
"""CUDA context, cuBLAS workspaces and NCCL buffers, present whatever the model."""

BUNDLED_CONFIGS = Path(__file__).resolve().parent.parent / "configs" / "models"
"""config.json of the paper's models, bundled because nothing is downloaded here."""

BUNDLED_NAMES = {"qwen/qwen2.5-0.5b": "qwen2.5-0.5b.json", "qwen/qwen2.5-7b": "qwen2.5-7b.json",
                 "qwen/qwen3-4b-base": "qwen3-4b-base.json"}


@dataclass(frozen=True)
class ModelShape:
    """What memory depends on in a decoder-only transformer's config."""

    hidden_size: int
    """Width h."""
    num_layers: int
    """Decoder layers L."""
    vocab_size: int
    """Rows of the embedding and of the output head."""
    num_heads: int
    """Query heads."""
    num_kv_heads: int
    """Key/value heads (grouped-query attention)."""
    intermediate_size: int
    """SwiGLU MLP width."""
    head_dim: int = 0
    """Per-head width (0: hidden_size / num_heads)."""
    tie_word_embeddings: bool = False
    """Output head shares the embedding matrix."""
    qkv_bias: bool = True
    """q/k/v projections have biases (Qwen2: yes, Qwen3: no)."""
    qk_norm: bool = False
    """Per-head RMSNorm of q and k (Qwen3)."""

    def __post_init__(self):
        for name in ("hidden_size", "num_layers", "vocab_size", "num_heads", "num_kv_heads",
                     "intermediate_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"num_heads {self.num_heads} must divide by num_kv_heads {self.num_kv_heads}")
        if not self.head_dim:
            if self.hidden_size % self.num_heads:
                raise ValueError(f"hidden_size {self.hidden_size} must divide by num_heads {self.num_heads}")
            object.__setattr__(self, "head_dim", self.hidden_size // self.num_heads)

    @property
    def q_dim(self) -> int:
        return self.num_heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.num_kv_heads * self.head_dim

    @property
    def layer_params(self) -> int:
        h = self.hidden_size
        attn = h * self.q_dim + 2 * h * self.kv_dim + self.q_dim * h
        if self.qkv_bias:
            attn += self.q_dim + 2 * self.kv_dim
        if self.qk_norm:
            attn += 2 * self.head_dim
        return attn + 3 * h * self.intermediate_size + 2 * h

    @property
    def root_params(self) -> int:
        """Embeddings, output head (unless tied) and the final norm."""
        embed = self.vocab_size * self.hidden_size
        return embed * (1 if self.tie_word_embeddings else 2) + self.hidden_size

    @property
    def params(self) -> int:
        return self.num_layers * self.layer_params + self.root_params

    @classmethod
    def from_config(cls, config: Mapping) -> "ModelShape":
        """From a transformers config (a `config.json` mapping or a PretrainedConfig)."""
        get = config.get if isinstance(config, Mapping) else (lambda k, d=None: getattr(config, k, d))
        missing = [k for k in ("hidden_size", "num_hidden_layers", "vocab_size", "num_attention_heads",
                               "intermediate_size") if get(k) is None]
        if missing:
            raise UserError(f"model config lacks {missing}: not a decoder-only transformer config")
        model_type = str(get("model_type", ""))
        bias = get("attention_bias")
        return cls(hidden_size=int(get("hidden_size")), num_layers=int(get("num_hidden_layers")),
                   vocab_size=int(get("vocab_size")), num_heads=int(get("num_attention_heads")),
                   num_kv_heads=int(get("num_key_value_heads") or get("num_attention_heads")),
                   intermediate_size=int(get("intermediate_size")), head_dim=int(get("head_dim") or 0),
                   tie_word_embeddings=bool(get("tie_word_embeddings", False)),
                   qkv_bias=bool(bias) if bias is not None else model_type == "qwen2",
                   qk_norm=model_type.startswith("qwen3"))


def read_model_config(name_or_path: str) -> dict:
    """config.json of a local model directory, a JSON file, or a bundled hub id
    (configs/models/); anything else through `AutoConfig` (the hub cache on a cluster)."""
    path = Path(name_or_path)
    if path.is_dir():
        path = path / "config.json"
    elif name_or_path.lower() in BUNDLED_NAMES:
        path = BUNDLED_CONFIGS / BUNDLED_NAMES[name_or_path.lower()]
    if path.is_file():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise UserError(f"model config {path} is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise UserError(f"model config {path} must hold a JSON object")
        return data
    try:
        from transformers import AutoConfig

        return AutoConfig.from_pretrained(name_or_path).to_dict()
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read the model config of {name_or_path!r} (a directory with "
                        f"config.json, a JSON file, or one of {sorted(BUNDLED_NAMES)}): {exc}") from None


@dataclass(frozen=True)
class PlanInputs:
    """One run's settings that memory depends on."""

    shape: ModelShape
    """The model."""
    seq_len: int
    """Tokens per packed row."""
    micro_batch: int
    """Packed rows per forward/backward pass on each rank."""
    workers: int = 1
    """GPUs per run; > 1 shards weights, gradients and optimizer state with FSDP."""
    gpu_type: str | None = None
    """A key of GPU_MEMORY_GIB; None: no device to check against (a CPU run)."""
    activation_checkpointing: bool = False
    """Keep only each layer's input and recompute the rest during backward."""
    compute_bytes: int = 2
    """Bytes per activation element: 2 under bf16 autocast, 4 in fp32."""
    attention: str = "flash"
    """'flash' (or fused SDPA): no seq x seq term; 'eager': attention probabilities saved."""

    def __post_init__(self):
        for name in ("seq_len", "micro_batch", "workers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.gpu_type is not None and self.gpu_type not in GPU_MEMORY_GIB:
            raise UserError(f"unknown GPU type {self.gpu_type!r}; known: {', '.join(GPU_MEMORY_GIB)}")
        if self.compute_bytes not in (2, 4):
            raise ValueError(f"compute_bytes must be 2 or 4, got {self.compute_bytes}")
        if self.attention not in ("flash", "eager"):
            raise ValueError(f"attention must be 'flash' or 'eager', got {self.attention!r}")

    @property
    def fsdp(self) -> bool:
        return self.workers > 1


def layer_activation_bytes_per_token(shape: ModelShape, b: int, attention: str = "flash",
                                     seq_len: int = 0) -> float:
    """Bytes autograd saves per token in one decoder layer (b: bytes of the compute dtype)."""
    h, q, kv, i = shape.hidden_size, shape.q_dim, shape.kv_dim, shape.intermediate_size
    norms = 2 * (4 * h + b * h)          # fp32 input of pow, normalised output
    attn = b * (q + 2 * kv) + 2 * b * q + 4 * shape.num_heads  # q,k,v; output + o_proj input; lse
    mlp = 4 * b * i                      # gate, up, silu(gate), product
    total = norms + attn + mlp
    if attention == "eager":
        total += shape.num_heads * seq_len * (4 + b)
    return float(total)


def loss_bytes_per_token(shape: ModelShape, b: int) -> float:
    """Logits in the compute dtype, the fp32 upcast and the log-softmax the loss saves."""
    return float(shape.vocab_size * (b + 4 + 4))


@dataclass(frozen=True)
class MemoryPlan:
    inputs: PlanInputs
    terms: dict[str, float] = field(default_factory=dict)
    """Bytes per GPU by item."""

    @property
    def total(self) -> float:
        return float(sum(self.terms.values()))

    @property
    def capacity(self) -> float | None:
        if self.inputs.gpu_type is None:
            return None
        return GPU_MEMORY_GIB[self.inputs.gpu_type] * GiB * USABLE_FRACTION

    @property
    def fits(self) -> bool:
        return self.capacity is None or self.total <= self.capacity

    def lines(self) -> list[str]:
        p = self.inputs
        head = (f"memory plan: {p.shape.params / 1e9:.2f}B parameters, seq {p.seq_len} x micro-batch "
                f"{p.micro_batch}, {p.workers} GPU(s) ({'FSDP' if p.fsdp else 'single device'}), "
                f"activation checkpointing {'on' if p.activation_checkpointing else 'off'}")
        out = [head] + [f"  {name:<28} {value / GiB:9.2f} GiB" for name, value in self.terms.items()]
        out.append(f"  {'total per GPU':<28} {self.total / GiB:9.2f} GiB")
        if self.capacity is None:
            out.append("  no GPU type: not checked against device memory")
        else:
            out.append(f"  usable on {p.gpu_type:<17} {self.capacity / GiB:9.2f} GiB "
                       f"({USABLE_FRACTION:.0%} of {GPU_MEMORY_GIB[p.gpu_type]} GiB): "
                       f"{'fits' if self.fits else 'does NOT fit'}")
        return out

    def to_json(self) -> dict:
        return {"params": self.inputs.shape.params, "workers": self.inputs.workers,
                "gpu_type": self.inputs.gpu_type, "seq_len": self.inputs.seq_len,
                "micro_batch": self.inputs.micro_batch,
                "activation_checkpointing": self.inputs.activation_checkpointing,
                "terms_gib": {k: round(v / GiB, 3) for k, v in self.terms.items()},
                "total_gib": round(self.total / GiB, 3), "fits": self.fits}


def plan_memory(p: PlanInputs) -> MemoryPlan:
    s, b, n = p.shape, p.compute_bytes, p.workers
    P = s.params
    terms: dict[str, float] = {"weights (fp32)": 4 * P / n, "gradients (fp32)": 4 * P / n,
                               "AdamW state (fp32)": 8 * P / n}
    if p.fsdp:
        terms["gathered params (bf16)"] = b * (s.root_params + 2 * s.layer_params)
        terms["unsharded layer grads"] = 4 * s.layer_params
    elif b == 2:
        terms["autocast weight copies"] = 2 * P
    tokens = p.seq_len * p.micro_batch
    layer = layer_activation_bytes_per_token(s, b, p.attention, p.seq_len) * tokens
    if p.activation_checkpointing:
        terms["activations (checkpointed)"] = s.num_layers * b * s.hidden_size * tokens + 2 * layer
    else:
        terms["activations"] = s.num_layers * layer
    terms["logits and loss"] = loss_bytes_per_token(s, b) * tokens + 4 * s.vocab_size * tokens
    terms["CUDA context, NCCL"] = RESERVE_GIB * GiB if p.gpu_type is not None else 0.0
    return MemoryPlan(p, terms)


RAY_ACCELERATOR_TYPES = {"A100-40G": "A100-40", "A100-80G": "A100-80", "H100": "H100-80",
                         "H200": "H200-141", "B200": "B200-180", "L4": "L4-24", "A10G": "A10G-24",
                         "L40S": "L40S-48"}
"""Ray's `accelerator_type:<name>` resources whose name pins one memory size ("A100" does not)."""


def detect_gpu_type(cluster_resources: Mapping[str, float]) -> str | None:
    """The GPU type of a cluster from Ray's resources; None when absent, ambiguous or mixed."""
    kinds = {RAY_ACCELERATOR_TYPES.get(k.split(":", 1)[1]) for k in cluster_resources
             if k.startswith("accelerator_type:")}
    return kinds.pop() if len(kinds) == 1 and None not in kinds else None


def plan_for_run(shape: ModelShape, cfg, workers: int, *, gpu_type: str | None, on_gpu: bool,
                 activation_checkpointing: bool) -> MemoryPlan:
    """The plan of a run with ProxyConfig `cfg` (sequence length, micro-batch, dtype, attention)."""
    bf16 = cfg.dtype == "bfloat16" or (cfg.dtype == "auto" and on_gpu)
    return plan_memory(PlanInputs(shape, seq_len=cfg.max_length, micro_batch=cfg.rows_per_micro_batch,
                                  workers=workers, gpu_type=gpu_type,
                                  activation_checkpointing=activation_checkpointing,
                                  compute_bytes=2 if bf16 else 4,
                                  attention="eager" if cfg.attention == "eager" else "flash"))


def suggestions(p: PlanInputs) -> list[str]:
    """Changes that make `p` fit, each alone: more GPUs, checkpointing, a smaller micro-batch."""
    out = []
    for n in (2, 4, 8, 16, 32, 64):
        if n > p.workers and plan_memory(replace(p, workers=n)).fits:
            out.append(f"use {n} GPUs per run (--gpus-per-run {n})")
            break
    if not p.activation_checkpointing and plan_memory(replace(p, activation_checkpointing=True)).fits:
        out.append("turn on activation checkpointing (--activation-checkpointing)")
    for mb in range(p.micro_batch - 1, 0, -1):
        if plan_memory(replace(p, micro_batch=mb)).fits:
            out.append(f"use micro-batch {mb} (proxy.rows_per_micro_batch; raise grad_accum to keep "
                       "the global batch)")
            break
    if p.gpu_type is not None:
        bigger = [g for g in GPU_MEMORY_GIB if GPU_MEMORY_GIB[g] > GPU_MEMORY_GIB[p.gpu_type]
                  and plan_memory(replace(p, gpu_type=g)).fits]
        if bigger:
            out.append(f"a larger GPU ({min(bigger, key=GPU_MEMORY_GIB.get)})")
    return out


def check_plan(plan: MemoryPlan) -> None:
    """Raise UserError saying what was needed and what to change when `plan` does not fit."""
    if plan.fits:
        return
    p = plan.inputs
    big = sorted(plan.terms.items(), key=lambda kv: -kv[1])[:3]
    todo = suggestions(p) or ["no single change fits: combine more GPUs, checkpointing and a "
                              "shorter sequence"]
    raise UserError(
        f"the training run does not fit: it needs {plan.total / GiB:.1f} GiB per GPU "
        f"({', '.join(f'{k} {v / GiB:.1f} GiB' for k, v in big)}), {p.gpu_type} has "
        f"{plan.capacity / GiB:.1f} GiB usable; to fit: " + "; or ".join(todo))
