"""Fault-tolerance scenarios on a loopback multi-node Ray cluster (run by tests/test_multinode.py).

Each scenario runs in its own process, with its own cluster (`testing.local_cluster.LocalCluster`:
a head with no CPUs, worker nodes of one CPU each), so no Ray state leaks into or out of
pytest. It prints one JSON report on its last stdout line and writes it to --report.

    python tests/multinode_scenarios.py sweep --pool P --features F --model M --runs 12 --workdir W
    python tests/multinode_scenarios.py featurize --pool P --model M --workdir W

sweep: the sweep (actors.sweep.run_sweep, the code behind `launch.py sweep`) starts on one
worker node; two nodes join mid-sweep (trials must start on them, runs/min must rise); a
node is killed mid-trial (its trial must be retried elsewhere); the driver is SIGKILLed and
the sweep resumed. The runs table must end with exactly `runs` unique run_ids.
Every trial sleeps --pace seconds before its proxy run: the stand-in for the GPU-bound time
of a real run, which on a cloud node does not compete for this machine's two CPU cores.

featurize: `launch.py featurize` (one domain, one actor) on three worker nodes; the node with
the actor is killed after the first shard is written, and a fresh node joins. The output must
equal, bit for bit, the featurizer's own code run in this process with no Ray.

fit-actor: the sweep's fit actor on a cluster whose head runs no work; its node is killed;
it must still answer with the runs it had been given.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from testing.local_cluster import LocalCluster  # noqa: E402
from causalmix.core.ray_setup import repo_pythonpath  # noqa: E402

RUNS_FILE = "runs.parquet"


# ------------------------------------------------------------------ sweep driver (in the cluster)

def paced_proxy_trial(config, *, pace_s: float = 0.0, **trial_kwargs):
    """The sweep's real trial after `pace_s` of waiting (see module docstring)."""
    import time as _time

    from causalmix.actors.sweep.trainer import proxy_trial

    _time.sleep(pace_s)
    proxy_trial(config, **trial_kwargs)


def run_driver(argv: list[str]) -> int:
    """`launch.py sweep` with the paced trainable; RAY_ADDRESS names the cluster."""
    from causalmix.actors.sweep.driver import run_sweep
    from causalmix.commands import sweep as sweep_command

    parser = argparse.ArgumentParser()
    sweep_command.add_arguments(parser)
    parser.add_argument("--pace", type=float, default=0.0)
    args = parser.parse_args(argv)
    pace = args.pace
    del args.pace
    summary = run_sweep(sweep_command.config_from_args(args), trainable=paced_proxy_trial,
                        trainable_kwargs={"pace_s": pace})
    print(json.dumps({k: summary[k] for k in ("status", "runs_done", "runs_total")}), flush=True)
    return 0 if summary["status"] == "ok" else 1


# ------------------------------------------------------------------ helpers

def subprocess_env(address: str) -> dict:
    env = dict(os.environ, RAY_ADDRESS=address, PYTHONPATH=repo_pythonpath())
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    return env


def read_run_ids(path: Path) -> list[str]:
    import pandas as pd

    if not path.is_file():
        return []
    try:
        return [str(r) for r in pd.read_parquet(path, columns=["run_id"])["run_id"]]
    except (OSError, ValueError):
        return []  # replaced between our stat and read: the next poll sees it


class CompletionWatch:
    """Polls runs.parquet; remembers when each run_id first appeared there."""

    def __init__(self, path: Path):
        self.path = path
        self.first_seen: dict[str, float] = {}

    def poll(self) -> int:
        now = time.monotonic()
        for run_id in read_run_ids(self.path):
            self.first_seen.setdefault(run_id, now)
        return len(self.first_seen)

    def times(self) -> list[float]:
        return sorted(self.first_seen.values())


def wait_for(predicate, timeout: float, what: str, proc: subprocess.Popen | None = None,
             poll: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"driver exited with {proc.returncode} while waiting for {what}")
        time.sleep(poll)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


def runs_per_min(times: list[float], start: int, k: int) -> float:
    """Completions per minute over the k intervals after completion `start`."""
    return 60.0 * k / (times[start + k] - times[start])


# ------------------------------------------------------------------ sweep scenario

def sweep_scenario(args) -> dict:
    import pandas as pd

    work = Path(args.workdir)
    run_dir = work / "run"
    log = open(work / "driver.log", "w")
    # Small proxy runs: a few samples, a short context, two dev documents per task.
    sweep_yaml = work / "sweep.yaml"
    sweep_yaml.write_text(json.dumps({"proxy": {"max_length": 128, "dev_limit": 2, "em_max_new_tokens": 4,
                                                "rows_per_micro_batch": 2, "grad_accum": 1}}))
    driver_cmd = [sys.executable, __file__, "driver", "--config", str(sweep_yaml),
                  "--pool", args.pool, "--features", args.features,
                  "--model", args.model, "--runs", str(args.runs), "--out", str(run_dir),
                  "--budget", str(args.budget), "--seed", "0", "--max-failures", "3",
                  "--cpus-per-trial", "1", "--gpus-per-trial", "0", "--no-progress",
                  "--pace", str(args.pace)]
    report: dict = {"runs": args.runs, "pace_s": args.pace}
    watch = CompletionWatch(run_dir / RUNS_FILE)
    t0 = time.monotonic()
    with LocalCluster(head_cpus=0, worker_cpus=1) as cluster:
        (first,) = cluster.add_workers(1)
        env = subprocess_env(cluster.address)
        driver = subprocess.Popen(driver_cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            # 1. One worker node: two completions give the 1-node rate.
            wait_for(lambda: watch.poll() >= 2, 240, "2 runs on one node", driver)
            report["rate_1_node"] = runs_per_min(watch.times(), 0, 1)

            # 2. Two nodes join mid-sweep: trials must start on them.
            added = cluster.add_workers(2)
            added_ids = {n.node_id for n in added}
            wait_for(lambda: added_ids <= cluster.busy_node_ids(), 120,
                     "trials on both new nodes", driver)
            report["trials_started_on_new_nodes"] = True
            # Completions on three nodes come in bursts, so count three of them from the moment
            # all three nodes are busy rather than timing the gaps between two.
            busy_since = time.monotonic()
            n_before = watch.poll()
            wait_for(lambda: watch.poll() >= n_before + 3, 240, "3 more runs on three nodes", driver)
            report["rate_3_nodes"] = 60.0 * 3 / (watch.times()[n_before + 2] - busy_since)

            # 3. Kill a node in the middle of a trial; Tune must record the failure and go on.
            victim = wait_for(lambda: next((n for n in cluster.workers
                                            if n.node_id in cluster.busy_node_ids()), None),
                              60, "a busy node to kill", driver)
            cluster.remove_worker(victim)
            report["killed_node_mid_trial"] = True
            report["runs_done_at_node_kill"] = watch.poll()
            wait_for(lambda: list((run_dir / "tune").glob("*/error.txt")), 60,
                     "Tune to record the lost trial", driver)
            n_kill = watch.poll() + 1
            wait_for(lambda: watch.poll() >= n_kill, 240, "a run finished after the node loss", driver)

            # 4. SIGKILL the driver while trials run; resume.
            wait_for(lambda: cluster.busy_node_ids(), 60, "a trial in flight", driver)
            if driver.poll() is not None or watch.poll() >= args.runs:
                raise RuntimeError("the sweep finished before its driver could be killed; use more --runs")
            before_kill = set(read_run_ids(run_dir / RUNS_FILE))
            driver.send_signal(signal.SIGKILL)
            driver.wait(30)
            report["runs_done_at_driver_kill"] = len(before_kill)
        finally:
            if driver.poll() is None:
                driver.kill()
                driver.wait(30)
        resume_cmd = [sys.executable, __file__, "driver", "--out", str(run_dir), "--resume",
                      "--no-progress", "--pace", str(args.pace)]
        resumed = subprocess.run(resume_cmd, env=env, stdout=log, stderr=subprocess.STDOUT, timeout=420)
        report["resume_returncode"] = resumed.returncode
        report["alive_workers_at_end"] = len(cluster.workers)
    log.close()

    table = pd.read_parquet(run_dir / RUNS_FILE)
    ids = [str(r) for r in table["run_id"]]
    retried = sorted(p.parent.name for p in (run_dir / "tune").glob("*/error.txt"))
    report.update(
        rows=len(table), unique_run_ids=len(set(ids)), duplicated=len(ids) - len(set(ids)),
        lost=args.runs - len(set(ids)), lost_from_before_kill=len(before_kill - set(ids)),
        statuses=sorted(set(map(str, table["status"]))) if "status" in table else [],
        retried_after_failure=retried, retried_and_finished=sorted(set(retried) & set(ids)),
        wall_s=round(time.monotonic() - t0, 1))
    return report


# ------------------------------------------------------------------ featurize scenario

def featurize_in_process(pool: str, model: str, domain: str):
    """The reference: one domain's feature rows from the featurizer's own code (the class each
    actor holds, at the actor's one thread), in this process, with no Ray and no fault."""
    import types

    import pandas as pd
    from transformers import AutoConfig

    from causalmix.actors.featurize.driver import FeaturizeConfig
    from causalmix.actors.featurize.featurizer import FeaturizerActor
    from causalmix.datapool.pool import Pool
    from causalmix.features.features_io import FEATURE_COLUMNS
    from causalmix.lm.loading import load_tokenizer, max_context

    defaults = FeaturizeConfig(pool=pool, model=model, out="unused")
    limit = max_context(types.SimpleNamespace(config=AutoConfig.from_pretrained(model)), load_tokenizer(model))
    actor = FeaturizerActor(model, "cpu", defaults.batch_tokens, int(defaults.cpus_per_actor), limit)
    return pd.concat([actor.featurize_shard(str(shard.path)) for shard in Pool.open(pool).shards(domain)],
                     ignore_index=True).loc[:, list(FEATURE_COLUMNS)]


def same_values(a, b) -> bool:
    """Equal row by row, bit for bit; the written shards read back with Arrow-backed dtypes."""
    import pandas as pd

    try:
        pd.testing.assert_frame_equal(a, b, check_dtype=False, check_exact=True)
    except AssertionError:
        return False
    return True


def featurize_scenario(args) -> dict:
    import pandas as pd

    from causalmix.datapool.pool import Pool

    work = Path(args.workdir)
    out = work / "features"
    written = lambda: len(list(out.glob("shards/*/*.parquet")))  # noqa: E731
    n_shards = len(Pool.open(args.pool).shards(args.domain))
    report: dict = {}
    t0 = time.monotonic()
    with LocalCluster(head_cpus=0, worker_cpus=1) as cluster, open(work / "featurize.log", "w") as log:
        # Three one-CPU nodes: the featurizer actor (one: an actor pool that starts every actor
        # at once featurizes the four shards together, so none is left to lose a node in), a
        # spare node for its restart, one CPU for shard reads.
        cluster.add_workers(3)
        proc = subprocess.Popen([sys.executable, str(REPO / "launch.py"), "featurize", "--pool", args.pool,
                                 "--model", args.model, "--domains", args.domain, "--concurrency", "1",
                                 "--out", str(out)],
                                env=subprocess_env(cluster.address), stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for(lambda: written() >= 1, 240, "the first featurized shard", proc)
            actor_nodes = cluster.actor_node_ids("MapWorker")
            victim = next((n for n in cluster.workers if n.node_id in actor_nodes), None)
            if victim is None or written() >= n_shards or proc.poll() is not None:
                raise RuntimeError("featurize got too far before a node could be killed; give it a larger pool")
            cluster.remove_worker(victim)
            report.update(killed_node_mid_featurize=True, shards_done_at_kill=written())
            cluster.add_workers(1)
            proc.wait(timeout=300)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(30)
        report["node_killed_returncode"] = proc.returncode
    files = sorted(out.glob("shards/*/*.parquet"))
    faulty = (pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
              .sort_values("doc_id").reset_index(drop=True)) if files else pd.DataFrame()
    reference = featurize_in_process(args.pool, args.model, args.domain).sort_values("doc_id").reset_index(drop=True)
    report.update(shards_written=len(files), shards_total=n_shards, rows_reference=len(reference),
                  rows_node_killed=len(faulty),
                  duplicated=int(faulty["doc_id"].duplicated().sum()) if len(faulty) else 0,
                  equal=bool(len(reference)) and same_values(reference, faulty),
                  wall_s=round(time.monotonic() - t0, 1))
    if not report["equal"] and len(reference) == len(faulty):
        report["differing_columns"] = [c for c in reference.columns
                                       if c in faulty and not same_values(reference[[c]], faulty[[c]])]
    return report


# ------------------------------------------------------------------ fit actor scenario

def fit_actor_scenario(args) -> dict:
    """The sweep's fit actor, started as the sweep starts it, on a cluster whose head runs no
    trials; every worker node is killed. It must sit on the driver's node and still answer,
    with the runs it had been given."""
    import ray

    from causalmix.actors.sweep.fit_actor import FIT_ACTOR_NAME, FitActorGroup

    work = Path(args.workdir)
    rows = [{"run_id": f"run-{i:05d}", "mix.a": p, "mix.b": 1.0 - p, "y": -abs(p - 0.3), "status": "ok"}
            for i, p in enumerate((0.1, 0.3, 0.5, 0.7))]
    report: dict = {}
    with LocalCluster(head_cpus=0, worker_cpus=1) as cluster:
        cluster.add_workers(2)
        ray.init(address=cluster.address, configure_logging=False, log_to_driver=False)
        try:
            # As an adaptive sweep starts it (the fit actor reads neither pool nor features).
            group = FitActorGroup(config=None, run_dir=str(work / "run"), target_covariates=None,  # noqa: F841
                                  refit_every=len(rows) + 1).start()  # held so the actor is not collected
            actor = ray.get_actor(FIT_ACTOR_NAME)
            report["runs_given"] = ray.get(actor.add_runs.remote(rows), timeout=120)
            table = cluster._cluster.global_state.actor_table(None, actor_state_name="ALIVE")
            (node_id,) = {a["Address"]["NodeID"] for a in table.values() if a["Name"] == FIT_ACTOR_NAME}
            report["fit_actor_on_driver_node"] = node_id == ray.get_runtime_context().get_node_id()
            for victim in list(cluster.workers):
                cluster.remove_worker(victim)
            report["killed_worker_nodes"] = True
            try:
                status = ray.get(ray.get_actor(FIT_ACTOR_NAME).status.remote(), timeout=120)
                report.update(alive_after_node_loss=True, runs_after_node_loss=status["n_runs"])
            except (ray.exceptions.RayError, ValueError) as exc:
                report.update(alive_after_node_loss=False, error=f"{type(exc).__name__}: {str(exc)[:300]}")
        finally:
            ray.shutdown()
    return report


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "driver":
        return run_driver(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="scenario", required=True)
    sweep = sub.add_parser("sweep")
    sweep.add_argument("--pool", required=True)
    sweep.add_argument("--features", required=True)
    sweep.add_argument("--model", required=True)
    sweep.add_argument("--runs", type=int, default=10)
    sweep.add_argument("--budget", type=int, default=8, help="samples per proxy run")
    sweep.add_argument("--pace", type=float, default=5.0, help="seconds each trial waits first")
    feat = sub.add_parser("featurize")
    feat.add_argument("--pool", required=True)
    feat.add_argument("--model", required=True)
    feat.add_argument("--domain", default="arithmetic", help="the one domain featurized")
    fit = sub.add_parser("fit-actor")
    for p in (sweep, feat, fit):
        p.add_argument("--workdir", required=True)
        p.add_argument("--report", default=None)
    args = parser.parse_args(argv)
    Path(args.workdir).mkdir(parents=True, exist_ok=True)
    scenarios = {"sweep": sweep_scenario, "featurize": featurize_scenario, "fit-actor": fit_actor_scenario}
    report = scenarios[args.scenario](args)
    if args.report:
        Path(args.report).write_text(json.dumps(report, indent=1))
    print(json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
