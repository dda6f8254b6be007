"""Featurizer throughput: the Ray Data actor-pool pipeline against a naive loop.

Baseline (same run, same model, same documents): one process scores one
document at a time — encode_document, a full forward pass, torch.log_softmax
over the whole vocabulary, style statistics — the obvious implementation, with
the faster of 1 thread and all cores' torch threads (timed on the first 200
documents; on a loaded 2-core machine 2 threads can be many times slower).
The pipeline is `launch.py featurize` on a fresh output directory, start-up
included: Ray start, actor start, model loading (`pipeline_s`). Also reported:
the Ray start alone, the time to the first finished shard, and the steady-state
documents/s from the first finished shard to the last. Both compute every column;
the two are checked to agree (max |difference| of normalized_loss and hes).

    python benchmarks/bench_featurize.py --workdir /tmp/issue3-demo   # demo artifacts
(`python launch.py demo --until models --workdir DIR` makes them, ~2 min.)
Ends with `RESULT featurize ...`. On a GPU machine the pipeline runs GPU actors
(bf16 + SDPA); this benchmark does not yet report TFLOP/s against peak.
"""
from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def naive_features(model, tokenizer, frame, max_length: int):
    import torch

    from causalmix.features.doc_features import hes_from_entropies
    from causalmix.features.style import style_row
    from causalmix.lm.formatting import encode_document

    rows, tokens = [], 0
    with torch.inference_mode():
        for doc in frame.itertuples():
            enc = encode_document(tokenizer, doc.prompt, doc.response, is_text=doc.is_text,
                                  max_length=max_length)
            ids = torch.tensor([enc.input_ids])
            logits = model(input_ids=ids).logits[0].float()
            logp = torch.log_softmax(logits[enc.response_start - 1:-1], dim=-1)
            targets = ids[0, enc.response_start:]
            nll = -logp[torch.arange(len(targets)), targets]
            entropy = -(logp.exp() * logp).sum(-1)
            rows.append({"doc_id": doc.doc_id,
                         "normalized_loss": float(nll.mean()) / math.log(logits.shape[-1]),
                         "hes": hes_from_entropies(entropy.numpy()), **style_row(doc.response)})
            tokens += len(enc.input_ids)
    return rows, tokens


def _subset_pool(pool, root: Path, n: int):
    import json
    import shutil

    from causalmix.datapool.pool import Pool

    index = json.loads(json.dumps(pool.index))
    for domain, info in index["domains"].items():
        info["shards"] = info["shards"][:n]
        for shard in info["shards"]:
            (root / shard["path"]).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(pool.root / shard["path"], root / shard["path"])
    (root / "pool.json").write_text(json.dumps(index))
    return Pool.open(root)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="causalmix-demo", help="demo work directory")
    parser.add_argument("--pool", default="demo-small", help="pool under WORKDIR/pools")
    parser.add_argument("--shards-per-domain", type=int, default=None,
                        help="featurize only the first N shards of each domain (default: all)")
    parser.add_argument("--batch-tokens", type=int, default=8192)
    args = parser.parse_args()

    import os

    import pandas as pd
    import torch

    import causalmix.actors.featurize.driver as featurize_stage
    from causalmix.actors.featurize.driver import FeaturizeConfig, featurize
    from causalmix.core.ray_setup import init_ray
    from causalmix.features.features_io import load_features
    from causalmix.datapool.pool import Pool
    from causalmix.lm.loading import load_causal_lm, load_tokenizer, max_context

    work = Path(args.workdir)
    pool_dir, model_dir = work / "pools" / args.pool, work / "models" / "proxy"
    if not (pool_dir / "pool.json").is_file() or not (model_dir / "config.json").is_file():
        sys.exit(f"no demo artifacts under {work}; run `python launch.py demo --until models "
                 f"--workdir {work}` first")
    pool = Pool.open(pool_dir)
    if args.shards_per_domain:
        # a pool directory holding only the first shards of each domain
        pool_dir = Path(tempfile.mkdtemp(prefix="bench-pool-")) / args.pool
        pool = _subset_pool(pool, pool_dir, args.shards_per_domain)
    domains = pool.domains
    frame = pool.read()

    model = load_causal_lm(str(model_dir), device="cpu")
    tokenizer = load_tokenizer(str(model_dir))
    max_length = max_context(model, tokenizer)
    print(f"[bench] {len(frame)} docs of {args.pool}, {len(domains)} domains; torch threads "
          f"{torch.get_num_threads()}", file=sys.stderr)

    calibration = {}
    for threads in sorted({1, os.cpu_count() or 1}):
        torch.set_num_threads(threads)
        start = time.perf_counter()
        naive_features(model, tokenizer, frame.head(200), max_length)
        calibration[threads] = time.perf_counter() - start
    naive_threads = min(calibration, key=calibration.get)
    torch.set_num_threads(naive_threads)
    print(f"[bench] naive loop on 200 docs by torch threads: {calibration}", file=sys.stderr)
    start = time.perf_counter()
    naive_rows, tokens = naive_features(model, tokenizer, frame, max_length)
    naive_s = time.perf_counter() - start
    print(f"[bench] naive loop ({naive_threads} thread(s)): {naive_s:.1f} s", file=sys.stderr)
    del model

    arrivals = []  # (time, documents) of every shard the command writes
    write = featurize_stage.write_feature_shard

    def timed_write(path, rows, key):
        write(path, rows, key)
        arrivals.append((time.perf_counter(), len(rows)))

    featurize_stage.write_feature_shard = timed_write
    with tempfile.TemporaryDirectory(prefix="bench-featurize-") as tmp:
        start = time.perf_counter()
        init_ray(address="local", object_store_memory=512 * 1024**2, log_to_driver=False)
        ray_s = time.perf_counter() - start
        featurize(FeaturizeConfig(pool=str(pool_dir), model=str(model_dir), out=tmp,
                                  batch_tokens=args.batch_tokens))
        pipeline_s = time.perf_counter() - start
        features = load_features(tmp)
    first_s = arrivals[0][0] - start
    steady = (sum(n for _, n in arrivals[1:]) / (arrivals[-1][0] - arrivals[0][0])
              if len(arrivals) > 1 else float("nan"))
    print(f"[bench] pipeline: {pipeline_s:.1f} s (Ray start {ray_s:.1f} s, first shard written at "
          f"{first_s:.1f} s, then {steady:.1f} docs/s)", file=sys.stderr)

    merged = features.merge(pd.DataFrame(naive_rows), on="doc_id", suffixes=("", "_naive"))
    assert len(merged) == len(frame), "pipeline and naive loop disagree on the documents"
    diff = max(float((merged["normalized_loss"] - merged["normalized_loss_naive"]).abs().max()),
               float((merged["hes"] - merged["hes_naive"]).abs().max()))
    n = len(frame)
    print(f"RESULT featurize device=cpu docs={n} tokens={tokens} naive_threads={naive_threads} "
          f"pipeline_s={pipeline_s:.2f} naive_s={naive_s:.2f} ray_start_s={ray_s:.2f} "
          f"first_shard_s={first_s:.2f} steady_docs_per_s={steady:.1f} "
          f"pipeline_docs_per_s={n / pipeline_s:.1f} naive_docs_per_s={n / naive_s:.1f} "
          f"pipeline_tokens_per_s={tokens / pipeline_s:.0f} naive_tokens_per_s={tokens / naive_s:.0f} "
          f"speedup={naive_s / pipeline_s:.2f} max_abs_diff={diff:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
