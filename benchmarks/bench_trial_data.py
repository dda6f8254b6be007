"""What a sweep trial fetches of the features: the features of its data state's shards (joined
once on the driver and put once per shard, datapool/sweep_inputs.py) against the pool's whole
features table (what every trial fetched before issue 20, item 4).

Same pool, same data states: demo-small (`DemoPoolSpec()`), features in the featurizer's schema
(values synthetic: sizes do not depend on them), and the data states of a sweep's first
`--runs` runs as the sweep's state sampler draws them (default settings, seed 0). For each run it
measures the bytes a trial deserialises (pickle protocol 5, what Ray's object store does for a
pandas frame) and the time to deserialise them, both ways; then the covariates the run's
sample gets both ways are compared (they must be equal).

    python benchmarks/bench_trial_data.py [--workdir DEMO] [--runs 56]
    python benchmarks/bench_trial_data.py --docs-per-shard 5000       # a pool 50 x the demo's

Ends with `RESULT trial_data bytes_ratio=... time_ratio=...` (whole table / per-shard, means over
the runs; above 1: the per-shard features are smaller).
"""
from __future__ import annotations

import argparse
import pickle
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def fetch(blobs: list[bytes]) -> tuple[int, float]:
    """(bytes, seconds) of deserialising `blobs` as a trial's ray.get would."""
    start = time.perf_counter()
    for blob in blobs:
        pickle.loads(blob)
    return sum(map(len, blobs)), time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default=None, help="demo work directory (pools/demo-small); default: "
                        "write demo-small in a temporary folder")
    parser.add_argument("--runs", type=int, default=56, help="data states measured (the demo sweep's runs)")
    parser.add_argument("--docs-per-shard", type=int, default=None, help="documents per shard of the "
                        "written demo-small (default: DemoPoolSpec's); not with --workdir")
    args = parser.parse_args(argv)
    if args.runs < 1 or (args.docs_per_shard is not None and args.docs_per_shard < 1):
        parser.error("--runs and --docs-per-shard must be >= 1")
    if args.workdir and args.docs_per_shard:
        parser.error("--docs-per-shard writes its own pool: give it without --workdir")

    import numpy as np
    import pandas as pd

    from causalmix.datapool.sweep_inputs import load_sweep_inputs
    from causalmix.causal.covariates import DEFAULT_FEATURES, sample_covariates
    from causalmix.datapool.demo import DemoPoolSpec, write_demo_pool
    from causalmix.datapool.pool import Pool
    from causalmix.mixture_space.state import DataStateSampler, StateSamplerConfig

    tmp = tempfile.TemporaryDirectory()
    root = Path(args.workdir) if args.workdir else Path(tmp.name)
    pool_dir = root / "pools" / "demo-small"
    if not args.workdir:
        size = {"small_docs_per_shard": args.docs_per_shard} if args.docs_per_shard else {}
        write_demo_pool(root / "pools", "demo-small", DemoPoolSpec(**size))
    docs = pd.concat([pd.read_parquet(s.path) for s in Pool.open(pool_dir).shards()], ignore_index=True)
    rng = np.random.default_rng(0)
    features = docs[["doc_id", "domain"]].assign(
        n_tokens=rng.integers(20, 400, len(docs)), **{f: rng.random(len(docs)) for f in DEFAULT_FEATURES})
    features.to_parquet(Path(tmp.name) / "features.parquet")
    inputs = load_sweep_inputs(pool_dir, Path(tmp.name) / "features.parquet", DEFAULT_FEATURES)
    states = DataStateSampler(inputs.shard_names, config=StateSamplerConfig(seed=0), shard_means=inputs.shard_means)

    whole_blob = pickle.dumps(inputs.features, protocol=5)
    shard_blobs = {n: pickle.dumps(f, protocol=5) for n, f in inputs.shard_features.items()}
    whole, per_shard, equal = [], [], 0
    for i in range(args.runs):
        state = states.state(i)
        names = sorted({n for shards in state.values() for n in shards})
        whole.append(fetch([whole_blob]))
        per_shard.append(fetch([shard_blobs[n] for n in names]))
        part = pd.concat([inputs.shard_features[n] for n in names], ignore_index=True)
        drawn = [i for n in names for i in inputs.shards[n]["doc_id"][::3]]
        domains = list(inputs.shard_names)
        equal += sample_covariates(part, drawn, domains, DEFAULT_FEATURES) == sample_covariates(
            inputs.features, drawn, domains, DEFAULT_FEATURES)

    whole_bytes = statistics.mean(b for b, _ in whole)
    shard_bytes = statistics.mean(b for b, _ in per_shard)
    whole_s = statistics.mean(s for _, s in whole)
    shard_s = statistics.mean(s for _, s in per_shard)
    print(f"{len(inputs.features)} documents, {sum(map(len, inputs.shard_names.values()))} shards; per run: "
          f"whole table {whole_bytes / 1024:.0f} KiB in {whole_s * 1e3:.2f} ms, its state's shards "
          f"{shard_bytes / 1024:.0f} KiB in {shard_s * 1e3:.2f} ms; covariates equal in {equal} of {args.runs} runs")
    result = {"bytes_ratio": f"{whole_bytes / shard_bytes:.2f}", "time_ratio": f"{whole_s / shard_s:.2f}",
              "whole_kib": f"{whole_bytes / 1024:.0f}", "per_shard_kib": f"{shard_bytes / 1024:.0f}",
              "runs": args.runs, "equal": f"{equal}/{args.runs}"}
    tmp.cleanup()
    print("RESULT trial_data " + " ".join(f"{k}={v}" for k, v in result.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
