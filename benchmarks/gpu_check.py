"""One prepared GPU check of the proxy trainer and the featurizer (run by gpu_check.sh).

Only PyTorch, transformers, numpy and the repository's pure modules (proxy/, causal/,
lm/); no Ray, no econml, nothing fetched: the model is Qwen2.5-0.5B's architecture
built from its config (configs/qwen2.5-0.5b.json) with random weights, which trains at
the speed of the real ones; documents are random token ids with SFT-like lengths.

Measures, each section on its own so that one failure still leaves the others:
- peak: bf16 dense FLOP/s of a large matmul on this GPU (the MFU denominator);
- sft_packed / sft_unpacked: proxy SFT (proxy.train.train_packed, bf16 autocast, fused
  AdamW) tokens/s and MFU = 6 x params x tokens/s / peak, with packed rows and with one
  document per row padded to the row length (on half the documents);
- sft_k: k proxies at once in separate processes on the same GPU (k from proxy/memory.py's
  estimate, at most --k), their total tokens/s against one;
- featurize: features.doc_features.score_documents in bf16, documents/s and achieved
  FLOP/s (2 x params x tokens / s).
Ends with one line `RESULT gpu key=value ...`; also writes the figures as JSON (--json).
`--smoke`: a tiny config on CPU in well under a minute (CI runs it).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
CONFIGS = Path(__file__).resolve().parent / "configs"


def settings(smoke: bool) -> dict:
    if smoke:
        return {"config": CONFIGS / "tiny-smoke.json", "row": 256, "rows": 2, "accum": 2,
                "docs": 96, "mean_len": 60, "feat_docs": 64, "matmul": 512, "k": 2, "threads": 1}
    return {"config": CONFIGS / "qwen2.5-0.5b.json", "row": 2048, "rows": 4, "accum": 2,
            "docs": 3000, "mean_len": 600, "feat_docs": 4000, "matmul": 8192, "k": 4, "threads": 0}


def build_model(config_path: Path, device: str, dtype: str = "float32"):
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    config = Qwen2Config(**json.loads(config_path.read_text()), attn_implementation="sdpa")
    model = Qwen2ForCausalLM(config).to(device=device, dtype=getattr(torch, dtype))
    return model, config


def random_docs(n: int, mean_len: int, max_len: int, vocab: int, seed: int):
    """SFT-like documents: lognormal lengths, about a third prompt (not scored)."""
    import numpy as np

    from causalmix.lm.formatting import EncodedDoc

    rng = np.random.default_rng(seed)
    lengths = np.clip(rng.lognormal(np.log(mean_len) - 0.32, 0.8, n).astype(int), 8, max_len)
    docs = []
    for length in lengths:
        start = int(np.clip(rng.uniform(0.1, 0.5) * length, 1, length - 1))
        docs.append(EncodedDoc(rng.integers(1, vocab, int(length)).tolist(), start, False))
    return docs


def peak_flops(device: str, n: int) -> float:
    import torch

    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    reps = 20 if device.startswith("cuda") else 3
    sync(device)
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - start)


def sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def sft_once(s: dict, device: str, packed: bool, seed: int = 0) -> dict:
    """Train the model on random documents; tokens/s of the timed pass (after a warm-up)."""
    import numpy as np

    from causalmix.proxy.config import ProxyConfig
    from causalmix.proxy.packing import pack_documents
    from causalmix.proxy.train import train_packed

    model, config = build_model(s["config"], device)
    cfg = ProxyConfig(model="random", max_length=s["row"], rows_per_micro_batch=s["rows"],
                      grad_accum=s["accum"], learning_rate=1e-5, device=device)
    docs = random_docs(s["docs"], s["mean_len"], s["row"], config.vocab_size, seed)
    if packed:
        batch = pack_documents(docs, s["row"], 0, rng=np.random.default_rng(seed))
    else:
        # one document per row, padded to the row length: what a fixed-shape loader does
        parts = [pack_documents([d], s["row"], 0) for d in docs[:len(docs) // 2]]
        batch = type(parts[0])(*(np.concatenate([getattr(p, f) for p in parts]) for f in
                                 ("input_ids", "labels", "position_ids", "doc_index")))
    warm = batch.rows(slice(0, 2 * s["rows"] * s["accum"]))
    train_packed(model, warm, cfg, device=device, rng=np.random.default_rng(seed))
    stats = train_packed(model, batch, cfg, device=device, rng=np.random.default_rng(seed))
    n_params = sum(p.numel() for p in model.parameters())
    memory = torch_peak_memory(device)
    return {"tokens": stats.tokens, "seconds": stats.seconds, "tokens_per_s": stats.tokens_per_s,
            "params": n_params, "rows": int(len(batch.input_ids)), "steps": stats.steps,
            "padding": round(1 - batch.n_tokens / batch.input_ids.size, 4),
            "peak_memory_gib": memory, "last_loss": stats.last_loss}


def torch_peak_memory(device: str):
    import torch

    if device.startswith("cuda"):
        return round(torch.cuda.max_memory_allocated() / 1024**3, 2)
    return None


def featurize_once(s: dict, device: str) -> dict:
    import torch

    from causalmix.features.doc_features import ScoredDoc, score_documents

    dtype = "bfloat16" if device.startswith("cuda") else "float32"
    model, config = build_model(s["config"], device, dtype)
    model.eval()
    docs = [ScoredDoc(d.input_ids, d.response_start) for d in
            random_docs(s["feat_docs"], s["mean_len"], s["row"], config.vocab_size, 1)]
    batch_tokens = 16 * s["row"]
    score_documents(model, docs[:32], batch_tokens=batch_tokens)
    sync(device)
    start = time.perf_counter()
    score_documents(model, docs, batch_tokens=batch_tokens)
    sync(device)
    seconds = time.perf_counter() - start
    tokens = sum(len(d.input_ids) for d in docs)
    n_params = sum(p.numel() for p in model.parameters())
    del torch
    return {"docs_per_s": len(docs) / seconds, "tokens_per_s": tokens / seconds,
            "flops_per_s": 2 * n_params * tokens / seconds, "seconds": seconds}


def choose_k(s: dict, device: str, k_max: int) -> tuple[int, str]:
    from transformers import Qwen2Config

    from causalmix.proxy.memory import ModelShape, max_trials_per_gpu, trial_memory_bytes

    if not device.startswith("cuda"):
        return k_max, "cpu: k as given"
    import torch

    shape = ModelShape.from_config(Qwen2Config(**json.loads(s["config"].read_text())))
    per_trial = trial_memory_bytes(shape, seq_len=s["row"], micro_batch=s["rows"])
    fits = max_trials_per_gpu(torch.cuda.get_device_properties(0).total_memory, per_trial)
    return max(1, min(k_max, fits)), f"memory plan: {per_trial / 1024**3:.1f} GiB per trial, {fits} fit"


def concurrent(s: dict, args, k: int, timeout_s: float) -> dict:
    """k worker processes training at once; total tokens over the span they all ran.
    Each worker builds its model and warms up, says `ready` and waits for `go`, so the
    timed passes start together whatever the import and start-up times."""
    import threading

    cmd = [sys.executable, __file__, "--worker"] + (["--smoke"] if args.smoke else [])
    procs = [subprocess.Popen(cmd + ["--seed", str(i)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, cwd=str(REPO)) for i in range(k)]
    killer = threading.Timer(timeout_s, lambda: [p.kill() for p in procs])
    killer.start()
    try:
        for p in procs:
            line = "-"
            while line and line.strip() != "ready":  # anything a library prints first is skipped
                line = p.stdout.readline()
            if not line:
                raise RuntimeError(f"a worker died before its timed pass: {p.stderr.read().strip()[-300:]}")
        for p in procs:
            p.stdin.write("go\n")
            p.stdin.flush()
        results = []
        for p in procs:
            out, err = p.communicate()
            lines = [line for line in out.splitlines() if line.startswith("{")]
            if p.returncode or not lines:
                raise RuntimeError(f"a worker failed (rc {p.returncode}): {err.strip()[-300:]}")
            results.append(json.loads(lines[-1]))
    finally:
        killer.cancel()
        for p in procs:
            if p.poll() is None:
                p.kill()
    span = max(r["end"] for r in results) - min(r["begin"] for r in results)
    skew = max(r["begin"] for r in results) - min(r["begin"] for r in results)
    return {"k": k, "total_tokens_per_s": sum(r["tokens"] for r in results) / span,
            "span_s": span, "start_skew_s": skew,
            "per_worker_tokens_per_s": [r["tokens"] / (r["end"] - r["begin"]) for r in results]}


def worker(args) -> int:
    import numpy as np
    import torch

    from causalmix.proxy.config import ProxyConfig
    from causalmix.proxy.packing import pack_documents
    from causalmix.proxy.train import train_packed

    s = settings(args.smoke)
    device = "cuda" if torch.cuda.is_available() and not args.smoke else "cpu"
    if device == "cpu":
        torch.set_num_threads(max(1, s["threads"]))
    model, config = build_model(s["config"], device)
    cfg = ProxyConfig(model="random", max_length=s["row"], rows_per_micro_batch=s["rows"],
                      grad_accum=s["accum"], learning_rate=1e-5, device=device)
    docs = random_docs(s["docs"], s["mean_len"], s["row"], config.vocab_size, args.seed)
    batch = pack_documents(docs, s["row"], 0, rng=np.random.default_rng(args.seed))
    train_packed(model, batch.rows(slice(0, 2 * s["rows"] * s["accum"])), cfg, device=device,
                 rng=np.random.default_rng(0))
    print("ready", flush=True)
    sys.stdin.readline()
    begin = time.time()
    stats = train_packed(model, batch, cfg, device=device, rng=np.random.default_rng(args.seed))
    print(json.dumps({"tokens": stats.tokens, "begin": begin, "end": time.time()}), flush=True)
    return 0


def section(results: dict, name: str, fn, json_path: str | None = None):
    """Run one measurement; its figures or its error go into `results` (and the JSON file
    at once, so a run stopped by the time limit keeps what it measured)."""
    start = time.perf_counter()
    try:
        results[name] = fn()
        print(f"[gpu_check] {name}: {json.dumps(results[name], default=str)} "
              f"({time.perf_counter() - start:.1f} s)", file=sys.stderr, flush=True)
    except Exception as exc:  # one failed section must not cost the others their figures
        traceback.print_exc()
        results[name] = {"error": f"{type(exc).__name__}: {exc}"[:200]}
    if json_path:
        Path(json_path).write_text(json.dumps(results, indent=2, default=str))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny config on CPU (CI)")
    parser.add_argument("--k", type=int, default=None, help="most concurrent proxies (default 4; smoke 2)")
    parser.add_argument("--json", default=None, help="also write the figures to this JSON file")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)

    import torch

    s = settings(args.smoke)
    device = "cuda" if torch.cuda.is_available() and not args.smoke else "cpu"
    if not args.smoke and device == "cpu":
        print("gpu_check: no CUDA device visible; use --smoke for the CPU check", file=sys.stderr)
        return 2
    if device == "cpu":
        torch.set_num_threads(max(1, s["threads"]))
    results: dict = {"device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu",
                     "torch": torch.__version__}
    section(results, "peak", lambda: {"flops_per_s": peak_flops(device, s["matmul"])}, args.json)
    peak = results["peak"].get("flops_per_s")
    section(results, "sft_packed", lambda: sft_once(s, device, packed=True), args.json)
    section(results, "sft_unpacked", lambda: sft_once(s, device, packed=False), args.json)
    if device == "cuda":
        torch.cuda.empty_cache()
    k, why = choose_k(s, device, args.k or s["k"])
    print(f"[gpu_check] k = {k} ({why})", file=sys.stderr)
    section(results, "sft_k", lambda: concurrent(s, args, k, timeout_s=60 if args.smoke else 240), args.json)
    section(results, "featurize", lambda: featurize_once(s, device), args.json)

    def fig(name, key, scale=1.0, fmt="{:.0f}"):
        value = results.get(name, {}).get(key)
        return "error" if value is None else fmt.format(value * scale)

    one = results["sft_packed"].get("tokens_per_s")
    unpacked = results["sft_unpacked"].get("tokens_per_s")
    params = results["sft_packed"].get("params")
    for name in ("sft_packed", "sft_unpacked"):
        tps = results[name].get("tokens_per_s")
        results[name]["mfu"] = 6 * params * tps / peak if (tps and params and peak) else None
    k_tps = results["sft_k"].get("total_tokens_per_s")
    packing_ratio = one / unpacked if (one and unpacked) else float("nan")
    k_ratio = k_tps / one if (k_tps and one) else float("nan")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))
    ok = all("error" not in v for v in results.values() if isinstance(v, dict))
    print(f"RESULT gpu device={results['device'].replace(' ', '_')} ok={int(ok)} params={params} "
          f"peak_tflops={fig('peak', 'flops_per_s', 1e-12, '{:.1f}')} "
          f"packed_tokens_per_s={fig('sft_packed', 'tokens_per_s')} "
          f"packed_mfu={fig('sft_packed', 'mfu', 1, '{:.3f}')} "
          f"unpacked_tokens_per_s={fig('sft_unpacked', 'tokens_per_s')} "
          f"unpacked_mfu={fig('sft_unpacked', 'mfu', 1, '{:.3f}')} packing_ratio={packing_ratio:.2f} "
          f"k={k} k_total_tokens_per_s={fig('sft_k', 'total_tokens_per_s')} k_ratio={k_ratio:.2f} "
          f"featurize_docs_per_s={fig('featurize', 'docs_per_s', 1, '{:.1f}')} "
          f"featurize_tflops={fig('featurize', 'flops_per_s', 1e-12, '{:.2f}')}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
