"""Proxy SFT throughput: the packed trainer (proxy/train.py) against `transformers.Trainer`
with `DataCollatorWithFlattening` (padding-free: each batch's documents concatenated in one
row, position ids restarted per document, response-only labels), and with a padding
collator as a second reference. Same run, same model, same documents, same token budget.

All train one epoch over the same drawn sample (a proxy run's documents, tokenised by
`encode_document`, prompt tokens masked) with AdamW, 10 % warmup, cosine decay, clipping at
1.0 and the same number of optimiser steps (ours: 2 rows x 512 tokens x 2 accumulation
steps; the Trainers: the same documents per step, 2 accumulation steps). Throughput =
document tokens (padding excluded) / training wall time, model already loaded, tokenisation
outside every timing. Repeated `--repeats` times, alternating, median reported; every
repeat starts from the same weights. Also tokens per CPU-second of the process (all run
with `--threads` torch threads, 1 by default, and no loader workers), which a machine
shared with other jobs disturbs far less than wall time. The per-step loss curves of our trainer and the
padding-free Trainer (its `log_history`, logging every step) are printed side by side.
`--compile` adds our trainer with `torch.compile` of the decoder (ProxyConfig.compile).

    python benchmarks/bench_sft.py --workdir /tmp/demo2    # demo artifacts (launch.py demo --until models)
Ends with `RESULT sft ...`; `ratio` = ours / padding-free Trainer in tokens/s. On a GPU it
also reports MFU = 6 x params x tokens/s / peak (--peak-tflops, default 989, H100 bf16 dense).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def build_sample(workdir: Path, model: str, budget: int, max_length: int):
    import numpy as np
    import pandas as pd

    from causalmix.datapool.pool import Pool
    from causalmix.lm.loading import load_tokenizer
    from causalmix.proxy.data import draw_sample

    pool = Pool.open(workdir / "pools" / "demo-small")
    shards = {s.name: pd.read_parquet(s.path) for s in pool.shards()}
    state = {d: tuple(s.name for s in pool.shards(d)) for d in pool.domains}
    mixture = {d: 1.0 / len(pool.domains) for d in pool.domains}
    tokenizer = load_tokenizer(model)
    sample = draw_sample(shards, state, mixture, budget=budget, budget_unit="samples",
                         tokenizer=tokenizer, max_length=max_length, rng=np.random.default_rng(0))
    return tokenizer, sample.docs


def run_ours(model_path: str, tokenizer, docs, cfg, device: str):
    import numpy as np
    import torch

    from causalmix.proxy.packing import pack_documents
    from causalmix.proxy.run import load_for_training
    from causalmix.proxy.train import train_packed

    torch.manual_seed(0)
    packed = pack_documents(docs, cfg.max_length, tokenizer.pad_token_id, rng=np.random.default_rng(0))
    model = load_for_training(cfg, device)
    curve = []
    cpu = time.process_time()
    stats = train_packed(model, packed, cfg, device=device, rng=np.random.default_rng(0),
                         on_step=lambda step, loss, info: curve.append(loss))
    cpu = time.process_time() - cpu
    return {"tokens": stats.tokens, "seconds": stats.seconds, "cpu_s": cpu, "steps": stats.steps,
            "padding": 1 - packed.n_tokens / packed.input_ids.size, "curve": curve}


def run_trainer(model_path: str, tokenizer, docs, cfg, device: str, batch_docs: int, flatten: bool):
    import torch
    from transformers import (DataCollatorForSeq2Seq, DataCollatorWithFlattening, Trainer,
                              TrainingArguments)

    from causalmix.lm.loading import load_causal_lm

    torch.manual_seed(0)
    features = [{"input_ids": d.input_ids, "labels": [-100] * d.response_start + d.input_ids[d.response_start:]}
                for d in docs]
    if flatten:
        collator = DataCollatorWithFlattening(return_position_ids=True, separator_id=-100)
    else:
        features = [{**f, "attention_mask": [1] * len(f["input_ids"])} for f in features]
        collator = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100)
    slots = 0
    for start in range(0, len(features), batch_docs):
        chunk = features[start:start + batch_docs]
        lengths = [len(f["input_ids"]) for f in chunk]
        slots += sum(lengths) if flatten else len(chunk) * max(lengths)
    model = load_causal_lm(model_path, device=device, dtype="float32").train()
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(
            output_dir=tmp, per_device_train_batch_size=batch_docs,
            gradient_accumulation_steps=cfg.grad_accum, learning_rate=cfg.learning_rate,
            lr_scheduler_type="cosine", warmup_steps=cfg.warmup_ratio, num_train_epochs=1,
            weight_decay=cfg.weight_decay, max_grad_norm=cfg.max_grad_norm,
            logging_strategy="steps", logging_steps=1, save_strategy="no", report_to=[],
            use_cpu=device == "cpu", bf16=device != "cpu", dataloader_num_workers=0,
            disable_tqdm=True, seed=0)
        trainer = Trainer(model=model, args=args, train_dataset=features, data_collator=collator)
        start, cpu = time.perf_counter(), time.process_time()
        out = trainer.train()
        if device != "cpu":
            torch.cuda.synchronize()
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    tokens = sum(len(f["input_ids"]) for f in features)
    curve = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return {"tokens": tokens, "seconds": seconds, "cpu_s": cpu, "steps": out.global_step,
            "padding": 1 - tokens / slots, "curve": curve}


def print_curves(ours: list, theirs: list) -> None:
    print("step  ours(packed)  Trainer(flattening)", file=sys.stderr)
    for step in range(max(len(ours), len(theirs))):
        a = f"{ours[step]:.4f}" if step < len(ours) else "-"
        b = f"{theirs[step]:.4f}" if step < len(theirs) else "-"
        print(f"{step + 1:4d}  {a:>12}  {b:>19}", file=sys.stderr)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default="/tmp/demo2", help="demo artifacts (pools/, models/)")
    parser.add_argument("--model", default=None, help="model (default WORKDIR/models/proxy)")
    parser.add_argument("--budget", type=int, default=400, help="documents per training run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads for all")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--compile", action="store_true", help="also time ours with torch.compile")
    parser.add_argument("--peak-tflops", type=float, default=989.0)
    args = parser.parse_args()

    import dataclasses
    import importlib.util
    import math

    import torch
    import transformers

    from causalmix.lm.loading import pick_device

    if importlib.util.find_spec("accelerate") is None:
        print("bench_sft needs `accelerate` for its baseline (transformers.Trainer requires it); "
              "pip install 'accelerate>=1.1.0'", file=sys.stderr)
        return 2
    from causalmix.proxy.config import ProxyConfig

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    torch.set_num_threads(args.threads)
    workdir = Path(args.workdir)
    model = args.model or str(workdir / "models" / "proxy")
    device = pick_device(args.device)
    cfg = ProxyConfig(model=model, budget=args.budget, max_length=512, rows_per_micro_batch=2,
                      grad_accum=2, device=device)
    tokenizer, docs = build_sample(workdir, model, args.budget, cfg.max_length)
    from causalmix.proxy.packing import pack_documents

    n_rows = len(pack_documents(docs, cfg.max_length, tokenizer.pad_token_id).input_ids)
    steps = math.ceil(n_rows / (cfg.rows_per_micro_batch * cfg.grad_accum))
    # same optimiser steps as ours, so the loss curves line up step by step
    batch_docs = math.ceil(len(docs) / (steps * cfg.grad_accum))
    runs = {"ours": lambda: run_ours(model, tokenizer, docs, cfg, device),
            "flatten": lambda: run_trainer(model, tokenizer, docs, cfg, device, batch_docs, True),
            "padding": lambda: run_trainer(model, tokenizer, docs, cfg, device, batch_docs, False)}
    if args.compile:
        compiled = dataclasses.replace(cfg, compile=True)
        runs["ours_compile"] = lambda: run_ours(model, tokenizer, docs, compiled, device)
    tps, per_cpu_s, last = {name: [] for name in runs}, {name: [] for name in runs}, {}
    for rep in range(args.repeats):
        for name, fn in runs.items():
            last[name] = r = fn()
            tps[name].append(r["tokens"] / r["seconds"])
            per_cpu_s[name].append(r["tokens"] / r["cpu_s"])
            print(f"[rep {rep}] {name}: {r['tokens']} tokens, {r['steps']} steps in {r['seconds']:.2f} s "
                  f"= {tps[name][-1]:.0f} tok/s ({per_cpu_s[name][-1]:.0f} per CPU-second), "
                  f"padding {r['padding']:.1%}, "
                  f"loss first {r['curve'][0]:.3f} last {r['curve'][-1]:.3f}", file=sys.stderr)
    print_curves(last["ours"]["curve"], last["flatten"]["curve"])
    med = {name: statistics.median(v) for name, v in tps.items()}
    med_cpu = {name: statistics.median(v) for name, v in per_cpu_s.items()}
    extra = ""
    if "ours_compile" in med:
        extra += (f" ours_compile_tokens_per_s={med['ours_compile']:.0f}"
                  f" compile_ratio={med['ours_compile'] / med['flatten']:.2f}")
    if device.startswith("cuda"):
        from causalmix.lm.loading import load_causal_lm

        n_params = sum(p.numel() for p in load_causal_lm(model, device="cpu").parameters())
        extra += f" params={n_params} mfu={6 * n_params * med['ours'] / (args.peak_tflops * 1e12):.3f}"
    print(f"RESULT sft device={device} threads={args.threads} docs={len(docs)} steps={steps} "
          f"ours_tokens_per_s={med['ours']:.0f} flatten_trainer_tokens_per_s={med['flatten']:.0f} "
          f"padding_trainer_tokens_per_s={med['padding']:.0f} ratio={med['ours'] / med['flatten']:.2f} "
          f"ratio_vs_padding={med['ours'] / med['padding']:.2f} "
          f"ratio_per_cpu_s={med_cpu['ours'] / med_cpu['flatten']:.2f} "
          f"ratio_per_cpu_s_vs_padding={med_cpu['ours'] / med_cpu['padding']:.2f} "
          f"ours_padding={last['ours']['padding']:.3f} padding_trainer_padding={last['padding']['padding']:.3f} "
          f"loss_last_ours={last['ours']['curve'][-1]:.3f} loss_last_flatten={last['flatten']['curve'][-1]:.3f}"
          f"{extra}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
