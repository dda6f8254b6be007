"""On a GPU: the memory plan's estimate against `torch.cuda.max_memory_allocated` for a
Qwen2.5-0.5B-sized model (random weights from configs/models/qwen2.5-0.5b.json, nothing
downloaded), trained a few steps by the single-device step of proxy/train.py (fp32 weights,
bf16 autocast, AdamW) on packed rows of `--seq` tokens, with and without activation
checkpointing. The plan's CUDA-context reserve is left out of the comparison (the allocator
does not see it).

    python benchmarks/gpu_memory_plan_check.py [--seq 4096] [--micro-batch 1] [--steps 3]
    python benchmarks/gpu_memory_plan_check.py --smoke     # CPU, tiny config, seconds (CI)
Ends with `RESULT memory_plan ...` (ratio = measured peak / planned, per setting).
`--smoke` runs the same code on CPU with benchmarks/configs/tiny-smoke.json in fp32 for one
step: it proves the script works before a GPU is lent; CPU has no allocator peak, so its
peak and ratio read nan (nothing is measured there). Not yet run on a GPU.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


SMOKE_CONFIG = REPO / "benchmarks" / "configs" / "tiny-smoke.json"


def measure(config: dict, seq: int, micro: int, steps: int, checkpointing: bool, device: str) -> float:
    """Peak bytes allocated while training (CUDA); nan on CPU, which keeps no such count."""
    import numpy as np
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from causalmix.proxy.config import ProxyConfig
    from causalmix.proxy.packing import IGNORE, PackedBatch
    from causalmix.proxy.train import accumulate, autocast_for, build_optimizer, optimizer_step

    cuda = device == "cuda"
    dtype = "bfloat16" if cuda else "float32"
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    hf = AutoConfig.for_model(**{k: v for k, v in config.items() if not k.startswith("_")})
    model = AutoModelForCausalLM.from_config(hf, dtype=torch.float32, attn_implementation="sdpa").to(device)
    if checkpointing:
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    cfg = ProxyConfig(model="random", max_length=seq, rows_per_micro_batch=micro, grad_accum=1,
                      device=device, dtype=dtype)
    optimizer, scheduler = build_optimizer(model, cfg, steps, fused=cuda)
    rng = np.random.default_rng(0)
    for _ in range(steps):
        ids = rng.integers(0, hf.vocab_size, size=(micro, seq))
        batch = PackedBatch(ids, np.where(np.arange(seq) > seq // 4, ids, IGNORE),
                            np.tile(np.arange(seq), (micro, 1)), np.zeros_like(ids))
        accumulate(model, [batch], batch.n_scored, device, autocast_for(device, dtype))
        optimizer_step(model, optimizer, scheduler, cfg)
    if not cuda:
        return float("nan")
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated()
    del model, optimizer
    return float(peak)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seq", type=int, default=None, help="tokens per row (default 4096; smoke 128)")
    parser.add_argument("--micro-batch", type=int, default=1)
    parser.add_argument("--steps", type=int, default=None, help="optimiser steps (default 3; smoke 1)")
    parser.add_argument("--smoke", action="store_true", help="tiny config on CPU (CI)")
    args = parser.parse_args()
    seq = args.seq or (128 if args.smoke else 4096)
    steps = args.steps or (1 if args.smoke else 3)

    import json

    import torch

    from causalmix.proxy.memory_plan import GiB, ModelShape, PlanInputs, plan_memory, read_model_config

    if not args.smoke and not torch.cuda.is_available():
        print("gpu_memory_plan_check needs a CUDA GPU; use --smoke for the CPU check", file=sys.stderr)
        return 2
    device = "cpu" if args.smoke else "cuda"
    config = json.loads(SMOKE_CONFIG.read_text()) if args.smoke else read_model_config("Qwen/Qwen2.5-0.5B")
    shape = ModelShape.from_config(config)
    out = []
    for ckpt in (False, True):
        plan = plan_memory(PlanInputs(shape, seq_len=seq, micro_batch=args.micro_batch,
                                      activation_checkpointing=ckpt, compute_bytes=2 if device == "cuda" else 4))
        planned = plan.total
        peak = measure(config, seq, args.micro_batch, steps, ckpt, device)
        print("\n".join(plan.lines()), file=sys.stderr)
        print(f"checkpointing={ckpt}: planned {planned / GiB:.2f} GiB, measured peak {peak / GiB:.2f} GiB",
              file=sys.stderr)
        out.append(f"ckpt{int(ckpt)}_planned_gib={planned / GiB:.4f} ckpt{int(ckpt)}_peak_gib={peak / GiB:.4f} "
                   f"ckpt{int(ckpt)}_ratio={peak / planned:.2f}")
    name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    print(f"RESULT memory_plan gpu={name.replace(' ', '_')} seq={seq} steps={steps} "
          f"micro_batch={args.micro_batch} " + " ".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
