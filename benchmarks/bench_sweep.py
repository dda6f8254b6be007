"""Sweep orchestration overhead: N trials of fixed synthetic work through the real sweep
driver (run_sweep: searcher, Tune scheduling, object-store inputs, the runs-table callback),
wall time against the ideal ceil(N / slots) x work.

The synthetic trial sleeps `--work` seconds (fixed work that does not compete for this
shared machine's CPUs) and reports a row computed from its mixture. Slots = the local Ray's
CPUs / 1 CPU per trial. `ratio`: the whole `run_sweep` call after Ray has started (input
loading, Tuner set-up, the first trial actor's start and teardown included) / ideal.
`steady_ratio`: first trial start to last trial end / ideal (the per-trial scheduling and
runs-table overhead without the one-time start-up, which dominates on a loaded machine).

    python benchmarks/bench_sweep.py --trials 16 --work 4
Ends with `RESULT sweep ...` (ratio = wall / ideal; target <= 1.15).
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


def synthetic_trial(config, *, data, proxy, finished=None, work_s: float = 1.0):
    import json

    from ray import tune

    began = time.time()
    time.sleep(work_s)
    mixture = config["mixture"]
    row = {"run_id": config["run_id"], **{f"mix.{d}": w for d, w in mixture.items()},
           "y": -sum((w - 1 / len(mixture)) ** 2 for w in mixture.values()), "status": "ok",
           "seed": config["seed"], "model": "synthetic", "tokens": 0, "wall_s": work_s,
           "began": began, "ended": time.time()}
    tune.report({"y": row["y"], "run_row": json.dumps(row)})


def small_pool(root: Path) -> tuple[Path, Path]:
    import numpy as np
    import pandas as pd

    from causalmix.datapool.demo import DemoPoolSpec, write_demo_pool
    from causalmix.datapool.pool import Pool

    spec = DemoPoolSpec(small_shards=4, small_docs_per_shard=10, dev_docs=2)
    pool_dir = write_demo_pool(root / "pools", "demo-small", spec)
    frames = [pd.read_parquet(s.path)[["doc_id", "domain"]] for s in Pool.open(pool_dir).shards()]
    features = pd.concat(frames, ignore_index=True)
    rng = np.random.default_rng(0)
    for name in ("normalized_loss", "writing_style", "hes"):
        features[name] = rng.random(len(features))
    features.to_parquet(root / "features.parquet")
    return pool_dir, root / "features.parquet"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--work", type=float, default=4.0, help="seconds of work per trial")
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray (= trial slots)")
    args = parser.parse_args()

    import ray

    from causalmix.actors.sweep.driver import run_sweep
    from causalmix.design.sweep_config import SweepConfig
    from causalmix.core.ray_setup import init_ray
    from causalmix.proxy.config import ProxyConfig

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        pool_dir, features = small_pool(root)
        init_ray("local", num_cpus=args.cpus, object_store_memory=256 * 1024**2, log_to_driver=False)
        try:
            cfg = SweepConfig(pool=str(pool_dir), features=str(features), out=str(root / "run"),
                              runs=args.trials, proxy=ProxyConfig(model="synthetic"), progress=False)
            start = time.time()
            summary = run_sweep(cfg, trainable=synthetic_trial, trainable_kwargs={"work_s": args.work})
            wall = time.time() - start
            import pandas as pd

            rows = pd.read_parquet(root / "run" / "runs.parquet")
        finally:
            ray.shutdown()
    assert summary["runs_done"] == args.trials, summary
    ideal = math.ceil(args.trials / args.cpus) * args.work
    startup = rows["began"].min() - start
    steady = rows["ended"].max() - rows["began"].min()
    print(f"RESULT sweep trials={args.trials} slots={args.cpus} work_s={args.work} wall_s={wall:.1f} "
          f"ideal_s={ideal:.1f} ratio={wall / ideal:.3f} startup_s={startup:.1f} "
          f"steady_ratio={steady / ideal:.3f} scheduling_overhead_per_trial_s="
          f"{(steady - ideal) * args.cpus / args.trials:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
