"""Elastic parallelism: sweep throughput (runs/min) with 1, 2 and 3 worker nodes.

One loopback cluster (`testing.local_cluster.LocalCluster`: a head that runs no trials,
worker nodes with one CPU) grows from 1 to 2 to 3 worker nodes; at each size a Ray
Tune sweep of
`trials_per_node x nodes` trials of fixed work, scheduled as the sweep schedules
proxy runs (one trial per CPU, trials spread over whatever nodes exist). The work is
a sleep, not a proxy run: this machine has 2 shared cores, and what is measured is
the scheduler's ability to keep n nodes busy, not compute. The baseline is the
1-node cluster; scaling efficiency(n) = runs/min(n) / (n x runs/min(1)).

    python benchmarks/bench_scaling.py [--trial-seconds 4] [--trials-per-node 8] [--timeline]

Ends with `RESULT scaling nodes=1,2,3 runs_per_min=... efficiency=...`.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from testing.local_cluster import LocalCluster  # noqa: E402


def fixed_work(config):
    """One synthetic proxy run: fixed wall time; reports when it ran."""
    import time as _time

    import ray
    from ray import tune

    started = _time.time()
    _time.sleep(config["seconds"])
    tune.report({"started": started, "finished": _time.time(), "node": ray.get_runtime_context().get_node_id()})


def sweep_throughput(n_nodes: int, trials_per_node: int, trial_seconds: float,
                     storage: Path, timeline: bool = False) -> dict:
    """Run one sweep on the connected cluster; runs/min end to end and in steady state.

    End to end includes Tune's start-up (a few seconds whatever the node count, which
    512 real runs amortise); steady state counts from the first trial's start to the
    last trial's end, which is what the nodes' parallelism governs.
    """
    from ray import tune

    n_trials = n_nodes * trials_per_node
    tuner = tune.Tuner(
        tune.with_resources(fixed_work, {"CPU": 1}),
        param_space={"seconds": trial_seconds, "seed": tune.grid_search(list(range(n_trials)))},
        tune_config=tune.TuneConfig(reuse_actors=True),
        run_config=tune.RunConfig(name=f"scaling-{n_nodes}", storage_path=str(storage), verbose=0))
    started = time.perf_counter()
    results = tuner.fit()
    wall = time.perf_counter() - started
    if results.errors or len(results) != n_trials:
        raise RuntimeError(f"{n_nodes} nodes: {len(results.errors)} of {n_trials} trials failed")
    frame = results.get_dataframe()
    if timeline:
        t0 = frame["started"].min()
        for _, r in frame.sort_values("started").iterrows():
            print(f"  node {r['node'][:8]}  {r['started'] - t0:6.1f} s .. {r['finished'] - t0:6.1f} s",
                  file=sys.stderr)
    span = float(frame["finished"].max() - frame["started"].min())
    return {"nodes": n_nodes, "trials": n_trials, "wall_s": wall, "span_s": span,
            "runs_per_min": 60.0 * n_trials / span, "runs_per_min_e2e": 60.0 * n_trials / wall}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, nargs="+", default=[1, 2, 3], help="worker-node counts; the first is the baseline")
    parser.add_argument("--trials-per-node", type=int, default=8, help="trials per worker node in each sweep")
    parser.add_argument("--trial-seconds", type=float, default=4.0, help="fixed wall time of one trial")
    parser.add_argument("--timeline", action="store_true", help="print each trial's node and start/end times")
    args = parser.parse_args(argv)

    import ray

    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_scaling_") as tmp, \
            LocalCluster(worker_cpus=1) as cluster:
        ray.init(address=cluster.address, configure_logging=False, log_to_driver=False)
        try:
            # Tune's first start in this driver (imports, worker pool) is not a cost of any node count.
            cluster.add_workers(1)
            sweep_throughput(1, 1, 0.1, Path(tmp) / "warmup")
            for n in args.nodes:
                cluster.add_workers(n - len(cluster.workers))
                row = sweep_throughput(n, args.trials_per_node, args.trial_seconds, Path(tmp),
                                       args.timeline)
                rows.append(row)
                print(f"{n} node(s): {row['trials']} trials, {row['span_s']:.1f} s first start to "
                      f"last end ({row['wall_s']:.1f} s end to end) = {row['runs_per_min']:.1f} "
                      f"runs/min ({row['runs_per_min_e2e']:.1f} end to end)", file=sys.stderr, flush=True)
        finally:
            ray.shutdown()
    base = rows[0]
    efficiency = [r["runs_per_min"] / (r["nodes"] / base["nodes"] * base["runs_per_min"]) for r in rows]
    ideal = 60.0 / args.trial_seconds
    efficiency_e2e = [r["runs_per_min_e2e"] / (r["nodes"] / base["nodes"] * base["runs_per_min_e2e"])
                      for r in rows]
    print("nodes  runs/min  ideal  efficiency  runs/min(e2e)  efficiency(e2e)")
    for row, eff, eff_e2e in zip(rows, efficiency, efficiency_e2e):
        print(f"{row['nodes']:>5}  {row['runs_per_min']:8.1f}  {ideal * row['nodes']:5.1f}  {eff:10.3f}"
              f"  {row['runs_per_min_e2e']:13.1f}  {eff_e2e:15.3f}")
    joined = {"nodes": ",".join(str(r["nodes"]) for r in rows),
              "runs_per_min": ",".join(f"{r['runs_per_min']:.1f}" for r in rows),
              "efficiency": ",".join(f"{e:.3f}" for e in efficiency),
              "runs_per_min_e2e": ",".join(f"{r['runs_per_min_e2e']:.1f}" for r in rows),
              "efficiency_e2e": ",".join(f"{e:.3f}" for e in efficiency_e2e)}
    print("RESULT scaling " + " ".join(f"{k}={v}" for k, v in joined.items())
          + f" min_efficiency={min(efficiency[1:] or efficiency):.3f}"
          f" trial_s={args.trial_seconds:g} trials_per_node={args.trials_per_node}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
