"""Loading a causal LM and its tokenizer: the one path for tiny local models and hub ids.

`from_pretrained` on a local directory (the tiny demo models) and on
`Qwen/Qwen2.5-0.5B` (on a cluster, from the hub cache) go through the same
calls; GPU runs use bf16 and SDPA attention.
"""
from __future__ import annotations

from pathlib import Path

from causalmix.core.errors import UserError

# Deferred on purpose, so that importing this module does not load torch and transformers: the
# function-local imports (of these libraries or of this project's modules that import them).


def pick_device(device: str = "auto") -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device {device!r} was asked for but no CUDA GPU is visible")
    return device


def load_tokenizer(name_or_path: str):
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path)
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot load tokenizer from {name_or_path!r}: {exc}") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_causal_lm(name_or_path: str, *, device: str = "auto", dtype: str = "auto"):
    """Model in eval mode on `device`; dtype 'auto' means bf16 on GPU, fp32 on CPU."""
    import torch
    from transformers import AutoModelForCausalLM

    device = pick_device(device)
    if dtype == "auto":
        torch_dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    else:
        torch_dtype = getattr(torch, dtype)
    local = Path(name_or_path)
    if local.exists() and not (local / "config.json").is_file():
        raise UserError(f"model directory {local} has no config.json (not a saved model)")
    try:
        model = AutoModelForCausalLM.from_pretrained(name_or_path, dtype=torch_dtype,
                                                     attn_implementation="sdpa")
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot load model from {name_or_path!r}: {exc}") from None
    return model.to(device).eval()


def max_context(model, tokenizer=None) -> int:
    limit = getattr(model.config, "max_position_embeddings", None) or 2048
    if tokenizer is not None and getattr(tokenizer, "model_max_length", None):
        limit = min(limit, tokenizer.model_max_length)
    return int(limit)
