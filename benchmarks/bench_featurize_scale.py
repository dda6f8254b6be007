"""The featurizer actor pool on a sample of the paper-scale pool: documents/s of this
configuration against the one before issue 27, same pool, same model, same Ray, one run.

Pool: `--docs` documents of benchmarks/paper_scale_pool.py (6 domains, log-normal lengths,
median 600 characters) in shards of `--shard-size`; model: its tiny proxy (vocabulary 512, 2
layers). Both configurations run `FeaturizerPool.featurize` over every shard, Ray Data start and
actor start included, after a one-shard warm-up:
  baseline  Ray Data's autoscaling pool from one actor (`start_all=False`, the configuration
            until issue 27);
  pool      every actor (one per CPU) started at once (`start_all=True`, the default).
The two must give the same features (max |difference| reported). Also: CPU seconds per document
of one actor scoring one shard in this process (tokenize + style, then the model), the preparation
(tokens + style columns) of the shard in one tokenizer call (`prepare_documents`) against one
document at a time (`prepare_one_by_one_ms_per_doc`, the path before `encode_documents`),
and the extrapolation of the pool's documents/s to 800K documents.

    python benchmarks/bench_featurize_scale.py [--docs 6000] [--cpus 2]
Ends with `RESULT featurize_scale ...`.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

PAPER_DOCS = 800_000


def run_pool(pool_dir: Path, model: Path, *, start_all: bool, limit: int | None = None):
    import pandas as pd

    from causalmix.actors.featurize.featurizer import FeaturizerPool, ShardJob
    from causalmix.datapool.pool import Pool

    jobs = [ShardJob(s.path, s.n_docs, s.name) for s in Pool.open(pool_dir).shards()][:limit]
    start = time.perf_counter()
    workers = FeaturizerPool(str(model), max_length=512, batch_tokens=8192, start_all=start_all)
    rows = pd.concat([r for _, r in workers.featurize(jobs)], ignore_index=True)
    return time.perf_counter() - start, rows.sort_values("doc_id", ignore_index=True), workers.size


def actor_cpu_per_doc(pool_dir: Path, model: Path) -> dict:
    """CPU seconds per document of one shard in this process, by part, and the preparation
    (tokens + style columns) one document at a time, two tokenizer calls each, as before
    `encode_documents`, against the shard's texts in one tokenizer call (`prepare_documents`)."""
    import pyarrow.parquet as pq

    from causalmix.actors.featurize.featurizer import READ_COLUMNS, FeaturizerActor, prepare_documents
    from causalmix.datapool.pool import Pool
    from causalmix.features.style import style_row
    from causalmix.lm.formatting import encode_document

    actor = FeaturizerActor(str(model), "cpu", 8192, 1, 512)
    path = str(Pool.open(pool_dir).shards()[0].path)
    frame = pq.read_table(path, columns=READ_COLUMNS).to_pandas()
    start = time.process_time()
    for row in frame.itertuples():
        encode_document(actor.tokenizer, row.prompt or "", row.response or "", is_text=bool(row.is_text),
                        max_length=512)
        style_row(row.response or "")
    one_by_one = time.process_time() - start
    start = time.process_time()
    prepare_documents(frame, path=path, tokenizer=actor.tokenizer, max_length=512)
    prepare = time.process_time() - start
    start = time.process_time()
    actor.featurize_shard(path)
    total = time.process_time() - start
    return {"prepare_ms_per_doc": 1000 * prepare / len(frame), "cpu_ms_per_doc": 1000 * total / len(frame),
            "prepare_one_by_one_ms_per_doc": 1000 * one_by_one / len(frame)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=6000)
    parser.add_argument("--shard-size", type=int, default=1000)
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray (one actor each)")
    args = parser.parse_args(argv)

    from causalmix.core.ray_setup import init_ray, shutdown_ray
    from causalmix.datapool.build import build_pool
    from paper_scale_pool import tiny_proxy_model, write_manifest, write_sources

    with tempfile.TemporaryDirectory(prefix="featurize_scale.") as tmp:
        root = Path(tmp)
        write_sources(root, args.docs)
        pool_dir = build_pool(write_manifest(root, args.shard_size))
        model = tiny_proxy_model(root)
        per_doc = actor_cpu_per_doc(pool_dir, model)
        init_ray("local", num_cpus=args.cpus, log_to_driver=False)
        try:
            run_pool(pool_dir, model, start_all=True, limit=1)  # warm-up: worker start, imports
            base_s, base_rows, _ = run_pool(pool_dir, model, start_all=False)
            pool_s, rows, actors = run_pool(pool_dir, model, start_all=True)
        finally:
            shutdown_ray()
    docs = len(rows)
    diff = max(float((rows[c] - base_rows[c]).abs().max()) for c in ("normalized_loss", "hes"))
    if diff > 1e-4 or docs != len(base_rows):
        raise SystemExit(f"the two configurations disagree: {docs} vs {len(base_rows)} rows, max diff {diff}")
    result = {"docs": docs, "shards": -(-args.docs // args.shard_size), "actors": actors,
              "baseline_s": round(base_s, 1), "pool_s": round(pool_s, 1),
              "baseline_docs_per_s": round(docs / base_s), "docs_per_s": round(docs / pool_s),
              "speedup": round(base_s / pool_s, 2),
              "cpu_ms_per_doc": round(per_doc["cpu_ms_per_doc"], 2),
              "prepare_ms_per_doc": round(per_doc["prepare_ms_per_doc"], 2),
              "prepare_one_by_one_ms_per_doc": round(per_doc["prepare_one_by_one_ms_per_doc"], 2),
              "paper_h": round(PAPER_DOCS / (docs / pool_s) / 3600, 2),
              "paper_h_baseline": round(PAPER_DOCS / (docs / base_s) / 3600, 2), "max_abs_diff": f"{diff:.1e}"}
    print("RESULT featurize_scale " + " ".join(f"{k}={v}" for k, v in result.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
