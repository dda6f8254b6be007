"""Paper scale on one machine: every stage at `--scale` x (800K documents, 512 runs), measured.

Stages (one local Ray of `--cpus` CPUs for all but serve):
  pool       6 domains of generated text (log-normal lengths, benchmarks/paper_scale_pool.py)
             written as JSONL sources and built by `build_pool` into shards of `--shard-size`
             (800K / 4000 = 200 shards at full scale);
  featurize  the featurizer actor pool with the tiny local proxy model (`--features model`), or
             features in the featurizer's schema written without it (`--features synthetic`, for
             scales whose featurize would not fit the time: featurize is linear in documents, its
             docs/s at a smaller scale extrapolates);
  sweep      `run_sweep` (driver, Tune, MixtureSearcher, fit actor, runs-table writer, progress
             bar) with `--trial synthetic` (actors/sweep/synthetic_trial.py: each run's data drawn
             exactly as a proxy run draws it, scored by a known function, `--trial-s` seconds per
             trial) over every feature column (normalized_loss, hes, writing_style, style.*);
  fit        `fit_and_save` with the default FitConfig (estimator auto) on the sweep's runs, then
             the same with one BLAS/OpenMP thread (threadpoolctl) beside it;
  recommend  the analytic and search policies of that model at the pool's covariates;
  serve      benchmarks/bench_serve.py (Serve against bare uvicorn) on that model.

Per stage: wall time, CPU seconds of every process of the run, throughput, peak resident memory of the driver and of the largest Ray
worker, the object store's peak (benchmarks/scale_monitor.py). For the sweep also: scheduling
overhead per trial = (slots x first start to last end - the trials' own seconds) / runs, the
idle slot time around each trial; and the fit actor's lag: `refits_behind_max`, the most refits
that began after a run landed before a snapshot included it (1 = it waited only for the next
refit), `snapshot_lag_runs_max` (landed runs not yet in the newest snapshot) and the refit times
(wall, and CPU: `refit_cpu_s_sum`); the sweep's CPU seconds by process (`sweep_cpu_trials_s`,
`sweep_cpu_fit_actor_s`, `sweep_cpu_driver_s`) and the trials' draw seconds, wall and CPU, by
quarter of the sweep (in the JSON), which tell work that grows from contention for the cores.
Baseline, same run: one run's draw from a domain's whole state (all its shards) row by row, as
`draw_sample` now does, against the way it drew before (the state concatenated and turned into
Python lists), `draw_s` / `draw_whole_state_s`.

    python benchmarks/bench_paper_scale.py --scale 0.125 [--features synthetic] [--json out.json]
Ends with `RESULT paper_scale ...`.
"""
from __future__ import annotations

import argparse
import json
import math
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

FULL_DOCS, FULL_RUNS = 800_000, 512
# A finished trial's row reaches the fit actor through the driver's Tune loop; a refit that took its
# rows less than this after the trial ended is not counted as having missed it.
DELIVERY_S = 0.5
MIN_RUNS = 32  # the default estimator needs 20 runs at 6 domains x 72 covariates; a few refits after that


def stage_pool(root: Path, docs: int, shard_size: int) -> dict:
    from causalmix.datapool.build import build_pool
    from paper_scale_pool import write_manifest, write_sources

    chars = write_sources(root, docs)
    pool_dir = build_pool(write_manifest(root, shard_size))
    from causalmix.datapool.pool import Pool

    pool = Pool.open(pool_dir)
    return {"pool_dir": pool_dir, "docs": pool.n_docs(), "shards": len(pool.shards()),
            "mean_chars": sum(chars.values()) / max(1, pool.n_docs())}


def stage_features(root: Path, pool_dir: Path, model: Path, mode: str, feature_names) -> Path:
    from paper_scale_pool import write_synthetic_features

    if mode == "synthetic":
        return write_synthetic_features(pool_dir, root / "features.parquet", feature_names)
    from causalmix.actors.featurize.driver import FeaturizeConfig, featurize

    featurize(FeaturizeConfig(pool=str(pool_dir), model=str(model), out=str(root / "features")))
    return root / "features"


def stage_sweep(root: Path, pool_dir: Path, features: Path, model: Path, runs: int, trial_s: float,
                feature_names, refit_every: int, progress: bool) -> dict:
    from causalmix.actors.sweep.driver import run_sweep
    from causalmix.design.sweep_config import SweepConfig
    from causalmix.actors.sweep.synthetic_trial import synthetic_trial
    from causalmix.proxy.config import ProxyConfig

    cfg = SweepConfig(pool=str(pool_dir), features=str(features), out=str(root / "sweep"), runs=runs,
                      proxy=ProxyConfig(model=str(model)), feature_names=tuple(feature_names),
                      adaptive_refit_every=refit_every, progress=progress)
    return run_sweep(cfg, trainable=synthetic_trial, trainable_kwargs={"trial_s": trial_s})


def sweep_figures(run_dir: Path, slots: int) -> dict:
    """Scheduling overhead and the fit actor's lag from runs.parquet and policy.jsonl."""
    import numpy as np
    import pandas as pd

    rows = pd.read_parquet(run_dir / "runs.parquet").sort_values("ended")
    span = rows["ended"].max() - rows["began"].min()
    figures = {"runs": len(rows), "trial_s_mean": rows["wall_s"].mean(), "draw_s_mean": rows["draw_s"].mean(),
               "overhead_per_trial_s": (slots * span - rows["wall_s"].sum()) / len(rows),
               "runs_per_min": 60 * len(rows) / span}
    # the draw's wall and CPU seconds over the sweep's quarters (in start order): wall growing while
    # CPU stays flat is contention for the CPUs, not work that grows with the runs
    quarter = rows["began"].rank(method="first").sub(1).mul(4 / len(rows)).astype(int)
    for column in ("draw_s", "draw_cpu_s"):
        if column in rows:
            figures[f"{column}_by_quarter"] = rows.groupby(quarter)[column].mean().round(3).tolist()
    path = run_dir / "policy.jsonl"
    snaps = [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []
    figures["refits"] = len(snaps)
    if not snaps:
        return figures
    created = np.array([s["created_unix"] for s in snaps])
    n_runs = np.array([s["n_runs"] for s in snaps])
    took_rows = np.array([s.get("rows_unix", s["created_unix"] - s["fit_s"]) for s in snaps])
    landed = rows["ended"].to_numpy()
    behind, lag_runs = [], []
    for i, t in enumerate(landed):
        covering = np.nonzero(n_runs >= i + 1)[0]
        if len(covering):  # refits that took their rows after run i landed, up to the first with it
            behind.append(int(((took_rows >= t + DELIVERY_S) & (np.arange(len(snaps)) <= covering[0])).sum()))
        latest = n_runs[created <= t]
        if len(latest):  # before the first snapshot the estimator had too few runs to fit
            lag_runs.append(i + 1 - latest[-1])
    figures.update(refits_behind_max=max(behind, default=0), snapshot_lag_runs_max=max(lag_runs, default=0),
                   refit_s_mean=float(np.mean([s["fit_s"] for s in snaps])),
                   refit_s_max=float(np.max([s["fit_s"] for s in snaps])),
                   last_snapshot_runs=int(n_runs.max()))
    if all("fit_cpu_s" in s for s in snaps):  # (runs fitted, CPU seconds) of every refit
        figures["refit_cpu_s"] = [(int(s["n_runs"]), s["fit_cpu_s"]) for s in snaps]
    return figures


def draw_baseline(pool_dir: Path, model: Path, budget: int) -> dict:
    """One run's draw from the largest state a domain has (all its shards) both ways, on the same
    frames: `draw_sample` (row by row) against the way it drew before issue 27 (the state's
    shards concatenated, then its columns turned into Python lists), which grew with the pool."""
    import numpy as np
    import pandas as pd

    from causalmix.datapool.pool import Pool
    from causalmix.lm.formatting import encode_document
    from causalmix.lm.loading import load_tokenizer
    from causalmix.proxy.data import draw_sample

    pool = Pool.open(pool_dir)
    domain = pool.domains[0]
    shards = {s.name: pd.read_parquet(s.path) for s in pool.shards(domain)}
    tokenizer = load_tokenizer(str(model))
    start = time.perf_counter()
    draw_sample(shards, {domain: tuple(shards)}, {domain: 1.0}, budget=budget, budget_unit="samples",
                tokenizer=tokenizer, max_length=512, rng=np.random.default_rng(0))
    rows_s = time.perf_counter() - start
    start = time.perf_counter()
    frame = pd.concat(list(shards.values()), ignore_index=True)
    prompts, responses, ids = frame["prompt"].tolist(), frame["response"].tolist(), frame["doc_id"].astype(str).tolist()
    for i in np.random.default_rng(0).permutation(len(frame))[:budget]:
        encode_document(tokenizer, prompts[i], responses[i], is_text=False, max_length=512)
        ids[i]
    whole_s = time.perf_counter() - start
    return {"state_docs": len(frame), "draw_rows_s": rows_s, "draw_whole_state_s": whole_s}


def stage_fit_recommend(root: Path, runs: Path, features: Path, feature_names) -> dict:
    from causalmix.causal.covariates import pool_covariates
    from causalmix.features.features_io import read_features
    from causalmix.causal.fitting import FitConfig, fit_and_save
    from causalmix.causal.model_dir import load_model_dir

    from threadpoolctl import threadpool_limits

    start = time.perf_counter()
    fit_and_save(str(runs), str(root / "model"), FitConfig(), overwrite=True)
    fit_s = time.perf_counter() - start
    # the same fit with one BLAS/OpenMP thread: on a 2-core machine under load, a thread pool per
    # core oversubscribes it (the fit actor, a Ray worker with no CPU reserved, runs at one thread)
    start = time.perf_counter()
    with threadpool_limits(1):
        fit_and_save(str(runs), str(root / "model-1thread"), FitConfig(), overwrite=True)
    fit_1thread_s = time.perf_counter() - start
    model = load_model_dir(root / "model")
    covariates = pool_covariates(read_features(features), model.domains, feature_names)
    times = {}
    for policy in ("analytic", "search"):
        start = time.perf_counter()
        model.recommend(covariates, policy=policy)
        times[policy] = time.perf_counter() - start
    return {"fit_s": fit_s, "fit_1thread_s": fit_1thread_s, "covariates": len(model.covariate_names), "estimator": model.estimator_name,
            "analytic_s": times["analytic"], "search_s": times["search"]}


def stage_serve(model_dir: Path, requests: int) -> dict:
    """bench_serve.py in its own process (its own Ray): its RESULT figures."""
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_serve.py"), "--model", str(model_dir),
                           "--requests", str(requests)], capture_output=True, text=True, check=False)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("RESULT serve")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"bench_serve failed ({done.returncode}): {done.stderr[-2000:]}")
    return dict(re.findall(r"(\w+)=(\S+)", line))


def run_stages(args, root: Path, monitor, out: dict) -> dict:
    """Runs every stage, filling `out` stage by stage (what finished is kept when a later stage fails)."""
    import ray

    from causalmix.causal.covariates import DEFAULT_FEATURES
    from causalmix.features.style import STYLE_COLUMNS
    from causalmix.core.ray_setup import init_ray, shutdown_ray
    from paper_scale_pool import tiny_proxy_model
    from causalmix.proxy.config import ProxyConfig

    names = (*DEFAULT_FEATURES, *STYLE_COLUMNS)
    docs, runs = round(FULL_DOCS * args.scale), max(MIN_RUNS, round(FULL_RUNS * args.scale))
    out.update(scale=args.scale, docs=docs, runs=runs)
    with monitor.stage("pool") as peaks:
        pool = stage_pool(root, docs, args.shard_size)
    out["pool"] = {**peaks.as_dict(), "shards": pool["shards"], "mean_chars": round(pool["mean_chars"]),
                   "docs_per_s": round(pool["docs"] / peaks.wall_s)}
    model = tiny_proxy_model(root)
    init_ray("local", num_cpus=args.cpus, object_store_memory=int(args.object_store_gib * 2**30),
             log_to_driver=False)
    try:
        with monitor.stage("featurize") as peaks:
            features = stage_features(root, pool["pool_dir"], model, args.features, names)
        out["featurize"] = {**peaks.as_dict(), "mode": args.features, "docs_per_s": round(docs / peaks.wall_s)}
        with monitor.stage("sweep") as peaks:
            summary = stage_sweep(root, pool["pool_dir"], features, model, runs, args.trial_s, names,
                                  args.refit_every, not args.no_progress)
        out["sweep"] = {**peaks.as_dict(), **sweep_figures(root / "sweep", int(ray.cluster_resources()["CPU"])),
                        "status": summary["status"], "fit_actor": summary.get("fit_actor", {})}
        out["sweep"]["draw_baseline"] = draw_baseline(pool["pool_dir"], model, ProxyConfig().budget)
    finally:
        shutdown_ray()
    with monitor.stage("fit") as peaks:
        fitted = stage_fit_recommend(root, root / "sweep" / "runs.parquet", features, names)
    out["fit"] = {**peaks.as_dict(), **fitted}
    if args.serve_requests:
        with monitor.stage("serve") as peaks:
            served = stage_serve(root / "model", args.serve_requests)
        out["serve"] = {**peaks.as_dict(), **served}
    return out


def result_line(out: dict) -> str:
    sweep, fit = out["sweep"], out["fit"]
    stages = [s for s in ("pool", "featurize", "sweep", "fit", "serve") if s in out]
    peak_rss = max(max(out[s]["driver_rss_mib"], out[s]["worker_rss_mib"]) for s in stages)
    parts = {"scale": out["scale"], "docs": out["docs"], "runs": out["runs"], "features": out["featurize"]["mode"],
             **{f"{s}_s": out[s]["wall_s"] for s in stages},
             **{f"{s}_cpu_s": out[s]["cpu_s"] for s in stages},
             **{f"sweep_cpu_{name}_s": round(sum(v for k, v in sweep["cpu_by_kind"].items() if k.startswith(kind)), 1)
                for name, kind in (("trials", "ray::ImplicitFu"), ("fit_actor", "ray::FitActor"), ("driver", "driver"))},
             "refit_cpu_s_sum": round(sum(cpu for _, cpu in sweep.get("refit_cpu_s", [])), 1),
             "featurize_docs_per_s": out["featurize"]["docs_per_s"],
             "sweep_runs_per_min": round(sweep["runs_per_min"], 1),
             "overhead_per_trial_s": round(sweep["overhead_per_trial_s"], 2),
             "draw_s": round(sweep["draw_baseline"]["draw_rows_s"], 2),
             "draw_whole_state_s": round(sweep["draw_baseline"]["draw_whole_state_s"], 2),
             "refits": sweep["refits"], "refits_behind_max": sweep.get("refits_behind_max"),
             "snapshot_lag_runs_max": sweep.get("snapshot_lag_runs_max"),
             "refit_s_max": round(sweep.get("refit_s_max", math.nan), 1),
             "covariates": fit["covariates"], "fit_s": round(fit["fit_s"], 1),
             "fit_1thread_s": round(fit["fit_1thread_s"], 1),
             "analytic_ms": round(1000 * fit["analytic_s"], 1), "search_ms": round(1000 * fit["search_s"], 1),
             "serve_rps": out.get("serve", {}).get("serve_rps"), "serve_p99_ms": out.get("serve", {}).get("serve_p99_ms"),
             "peak_rss_mib": peak_rss, "store_peak_mib": max(out[s]["object_store_mib"] for s in stages)}
    return "RESULT paper_scale " + " ".join(f"{k}={v}" for k, v in parts.items())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of 800K documents and 512 runs")
    parser.add_argument("--shard-size", type=int, default=4000, help="documents per pool shard")
    parser.add_argument("--features", choices=("model", "synthetic"), default="model")
    parser.add_argument("--trial", choices=("synthetic",), default="synthetic",
                        help="what a trial does (actors/sweep/synthetic_trial.py)")
    parser.add_argument("--trial-s", type=float, default=2.0, help="wall seconds of one synthetic trial")
    parser.add_argument("--refit-every", type=int, default=4, help="the fit actor refits after this many runs")
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray (trial slots)")
    parser.add_argument("--object-store-gib", type=float, default=1.0)
    parser.add_argument("--serve-requests", type=int, default=1000, help="0: no serve stage")
    parser.add_argument("--workdir", help="keep every stage's output here (default: a temporary directory)")
    parser.add_argument("--json", help="also write the figures as JSON here")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if not 0 < args.scale <= 1:
        parser.error(f"--scale must be in (0, 1], got {args.scale}")

    from scale_monitor import ScaleMonitor

    with tempfile.TemporaryDirectory(prefix="paper_scale.") as tmp, ScaleMonitor() as monitor:
        root = Path(args.workdir or tmp)
        root.mkdir(parents=True, exist_ok=True)
        out: dict = {}
        try:
            run_stages(args, root, monitor, out)
        finally:  # the stages that finished, also when a later one failed
            for stage in ("pool", "featurize", "sweep", "fit", "serve"):
                if stage in out:
                    print(f"{stage:>9}: " + json.dumps(out[stage], default=str), file=sys.stderr)
            if args.json:
                Path(args.json).write_text(json.dumps(out, indent=1, default=str))
    print(result_line(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
