"""Proxy SFT throughput: the packed trainer (proxy/train.py) against `transformers.Trainer`
with a padding collator, same run, same model, same documents, same token budget.

Both train one epoch over the same drawn sample (a proxy run's documents, tokenised by
`encode_document`, prompt tokens masked) with AdamW, 10 % warmup and cosine decay, and about
the same tokens per optimiser step (ours: 2 rows x 512 tokens x 2 accumulation steps;
Trainer: 8 documents x 2 accumulation steps, padded to the longest in the batch by
`DataCollatorForSeq2Seq`). Throughput = document tokens (padding excluded) / training wall
time, model already loaded; tokenisation is outside both timings. Repeated `--repeats`
times, alternating, median reported. Also reports the padding share of each.

    python benchmarks/bench_sft.py --workdir /tmp/demo2    # demo artifacts (launch.py demo --until models)
Ends with `RESULT sft ...`. On a GPU (not available here) it also reports MFU = 6 x params x
tokens/s / peak (--peak-tflops, default 989 for an H100 bf16 dense) for the model given.
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

    from datapool.pool import Pool
    from lm.loading import load_tokenizer
    from proxy.data import draw_sample

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

    from proxy.packing import pack_documents
    from proxy.run import load_for_training
    from proxy.train import train_packed

    torch.manual_seed(0)
    packed = pack_documents(docs, cfg.max_length, tokenizer.pad_token_id, rng=np.random.default_rng(0))
    model = load_for_training(cfg, device)
    stats = train_packed(model, packed, cfg, device=device, rng=np.random.default_rng(0))
    pad_share = 1 - packed.n_tokens / packed.input_ids.size
    return stats.tokens, stats.seconds, pad_share, stats.last_loss


def run_trainer(model_path: str, tokenizer, docs, cfg, device: str, batch_docs: int):
    import torch
    from transformers import DataCollatorForSeq2Seq, Trainer, TrainingArguments

    from lm.loading import load_causal_lm

    torch.manual_seed(0)
    features = [{"input_ids": d.input_ids, "attention_mask": [1] * len(d.input_ids),
                 "labels": [-100] * d.response_start + d.input_ids[d.response_start:]} for d in docs]
    model = load_causal_lm(model_path, device=device, dtype="float32").train()
    collator = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100)
    padded_slots = 0
    for start in range(0, len(features), batch_docs):
        chunk = features[start:start + batch_docs]
        padded_slots += len(chunk) * max(len(f["input_ids"]) for f in chunk)
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(
            output_dir=tmp, per_device_train_batch_size=batch_docs,
            gradient_accumulation_steps=cfg.grad_accum, learning_rate=cfg.learning_rate,
            lr_scheduler_type="cosine", warmup_steps=cfg.warmup_ratio, num_train_epochs=1,
            weight_decay=cfg.weight_decay, max_grad_norm=cfg.max_grad_norm, logging_strategy="no",
            save_strategy="no", report_to=[], use_cpu=device == "cpu", bf16=device != "cpu",
            dataloader_num_workers=0, disable_tqdm=True, seed=0)
        trainer = Trainer(model=model, args=args, train_dataset=features, data_collator=collator)
        start = time.perf_counter()
        out = trainer.train()
        if device != "cpu":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
    tokens = sum(len(f["input_ids"]) for f in features)
    return tokens, seconds, 1 - tokens / padded_slots, out.training_loss


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default="/tmp/demo2", help="demo artifacts (pools/, models/)")
    parser.add_argument("--model", default=None, help="model (default WORKDIR/models/proxy)")
    parser.add_argument("--budget", type=int, default=400, help="documents per training run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads for both")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--peak-tflops", type=float, default=989.0)
    args = parser.parse_args()

    import importlib.util

    import torch
    import transformers

    from lm.loading import pick_device

    if importlib.util.find_spec("accelerate") is None:
        print("bench_sft needs `accelerate` for its baseline (transformers.Trainer requires it); "
              "pip install 'accelerate>=1.1.0'", file=sys.stderr)
        return 2
    from proxy.config import ProxyConfig

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    torch.set_num_threads(args.threads)
    workdir = Path(args.workdir)
    model = args.model or str(workdir / "models" / "proxy")
    device = pick_device(args.device)
    cfg = ProxyConfig(model=model, budget=args.budget, max_length=512, rows_per_micro_batch=2,
                      grad_accum=2, device=device)
    tokenizer, docs = build_sample(workdir, model, args.budget, cfg.max_length)
    ours, theirs = [], []
    for rep in range(args.repeats):
        tokens, seconds, pad, loss = run_ours(model, tokenizer, docs, cfg, device)
        ours.append(tokens / seconds)
        print(f"[rep {rep}] packed trainer: {tokens} tokens in {seconds:.2f} s = {tokens / seconds:.0f} tok/s, "
              f"padding {pad:.1%}, last step loss {loss:.3f}", file=sys.stderr)
        tokens, seconds, tpad, tloss = run_trainer(model, tokenizer, docs, cfg, device, batch_docs=8)
        theirs.append(tokens / seconds)
        print(f"[rep {rep}] transformers.Trainer: {tokens} tokens in {seconds:.2f} s = {tokens / seconds:.0f} "
              f"tok/s, padding {tpad:.1%}, mean loss {tloss:.3f}", file=sys.stderr)
    ours_tps, theirs_tps = statistics.median(ours), statistics.median(theirs)
    extra = ""
    if device.startswith("cuda"):
        from lm.loading import load_causal_lm

        n_params = sum(p.numel() for p in load_causal_lm(model, device="cpu").parameters())
        mfu = 6 * n_params * ours_tps / (args.peak_tflops * 1e12)
        extra = f" params={n_params} mfu={mfu:.3f}"
    print(f"RESULT sft device={device} threads={args.threads} docs={len(docs)} "
          f"ours_tokens_per_s={ours_tps:.0f} trainer_tokens_per_s={theirs_tps:.0f} "
          f"ratio={ours_tps / theirs_tps:.2f} ours_padding={pad:.3f} trainer_padding={tpad:.3f}{extra}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
