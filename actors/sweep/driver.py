"""The sweep driver: many proxy SFT runs as Ray Tune trials, proposed by `MixtureSearcher`.

Placement: each trial asks for `gpus_per_trial` GPUs (default: 1 when the cluster has GPUs,
else 0) and `cpus_per_trial` CPUs; Tune starts as many as the cluster fits at any moment
(`max_concurrent` 0 = no cap), so nodes an autoscaler adds are used without a restart.
Failures: a trial whose actor or node dies is retried `max_failures` times with the same
run (same run_id, mixture, state, seed). Resume: the Tune experiment lives in RUN_DIR/tune;
`resume=True` restores it (searcher state included), skips finished runs, restarts
unfinished and errored ones, and proposes only the runs never proposed.
Outputs in RUN_DIR: runs.parquet (one row per finished run_id), sweep_config.yaml (for
--resume), sweep.json (provenance, state-sampler settings, prior, coverage, status).

The driver in parts (docs/sweep.md), each with one job: `SweepInputs` (what is read),
`SweepPlan` (every decision taken before the first trial, design/sweep_plan.py), `SweepData`
(what the object store holds), `FitActorGroup` (the fit actor, actors/sweep/fit_actor.py),
`SweepProgress` (the one writer of the runs table, actors/sweep/progress.py) and the Tuner.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Callable

import ray
from ray import tune

from causalmix.actors.sweep.fit_actor import FIT_ACTOR_NAME, FitActorGroup
from causalmix.actors.sweep.progress import SweepProgress, trial_name
from causalmix.actors.sweep.searcher import ActorRoundSnapshots, MixtureSearcher
from causalmix.actors.sweep.trainer import proxy_trial
from causalmix.actors.sweep.tune_train import distributed_trial
from causalmix.causal.runs_table import COV
from causalmix.core.atomic import atomic_write_json, atomic_write_text, check_not_input
from causalmix.core.errors import UserError
from causalmix.core.provenance import provenance
from causalmix.core.ray_setup import check_resources, init_ray
from causalmix.core.tracking import parse_tracking, read_snapshots
from causalmix.datapool.build import pool_parts
from causalmix.datapool.sweep_inputs import SweepInputs, load_sweep_inputs
from causalmix.design.sweep_config import (CONFIG_FILE, MODEL_DIR, RUNS_FILE, SUMMARY_FILE, TRACKING_FILE, TUNE_DIR,
                                 SweepConfig)
from causalmix.design.sweep_design import config_yaml, cover_targets, proposer_settings
from causalmix.design.sweep_plan import ResumeState, SweepPlan, check_sweep_out, plan_sweep
from causalmix.design.trial_protocol import SweepData
from causalmix.mixture_space.state import coverage
from causalmix.target.distributed import check_memory_plan


def build_searcher(cfg: SweepConfig, inputs: SweepInputs) -> MixtureSearcher:
    snapshots = ActorRoundSnapshots(FIT_ACTOR_NAME) if cfg.adaptive > 0 else None
    return MixtureSearcher(**proposer_settings(cfg, inputs), snapshots=snapshots)


def put_documents(frame):
    """A shard's documents (a frame) in the object store as an Arrow table: a trial that reads a
    few of its rows maps the table's buffers, where a frame would be rebuilt whole (5x the CPU a
    shard)."""
    import pyarrow as pa  # deferred: only a sweep that runs needs it

    return ray.put(pa.Table.from_pandas(frame, preserve_index=False))


def put_sweep_data(inputs: SweepInputs, feature_names) -> SweepData:
    """Each domain's features (numbers only, by position) and the dev sets in the object store,
    once, next to the shards `load_sweep_inputs(keep_shard=put_documents)` put there as it read them."""
    features = inputs.by_position
    return SweepData(shards=dict(inputs.shards), shard_sizes=dict(features.sizes),
                     dev_sets=ray.put(inputs.dev_sets),
                     features={domain: ray.put(frame) for domain, frame in features.frames.items()},
                     shard_start=dict(features.start), feature_names=tuple(feature_names))


def restore_tuner(tune_dir: Path, run_fn, callbacks: list):
    """The interrupted experiment, resumed with this session's callbacks.

    `Tuner.restore` takes no RunConfig: it unpickles the first session's, callbacks included, so
    a resume would keep that session's progress bar (`--no-progress` ignored) and drop the
    `callbacks=` given now (ray-project/ray#41364). Ray 2.60 has no public way to replace them;
    `Tuner._local_tuner.get_run_config()` is the RunConfig that `fit()` passes to Tune, so its
    callbacks are set there. tests/test_sweep_resume.py fails when this stops working. Through
    Ray Client (ray://) the tuner lives in a remote actor: the restored callbacks stay, said so."""
    tuner = tune.Tuner.restore(str(tune_dir), trainable=run_fn, resume_unfinished=True,
                               restart_errored=True)
    local = getattr(tuner, "_local_tuner", None)
    if local is None:
        print("[sweep] --resume through Ray Client: Tune keeps the first session's callbacks and "
              "progress setting; callbacks= and --no-progress of this call are not applied",
              file=sys.stderr, flush=True)
        return tuner
    local.get_run_config().callbacks = list(callbacks)
    return tuner


def new_tuner(cfg: SweepConfig, plan: SweepPlan, out: Path, run_fn, searcher: MixtureSearcher,
              callbacks: list):
    return tune.Tuner(
        run_fn,
        tune_config=tune.TuneConfig(search_alg=searcher, num_samples=cfg.runs,
                                    max_concurrent_trials=plan.max_concurrent,
                                    reuse_actors=True, trial_name_creator=trial_name,
                                    trial_dirname_creator=trial_name),
        run_config=tune.RunConfig(
            name=TUNE_DIR, storage_path=str(out), verbose=0,
            failure_config=tune.FailureConfig(max_failures=cfg.max_failures),
            callbacks=callbacks))


def summarize(cfg: SweepConfig, plan: SweepPlan, progress: SweepProgress, errors: list[dict],
              searcher: MixtureSearcher, inputs: SweepInputs, targets: dict, out: Path, wall_s: float) -> dict:
    """sweep.json without the fit actor's and the tracker's parts."""
    writer = progress.writer
    frame = writer.frame()
    run_covs = frame[[c for c in frame.columns if c.startswith(COV)]].to_dict("records") if len(frame) else []
    interrupted = len(writer.rows) + len(errors) < cfg.runs
    return provenance(
        cfg, status="interrupted" if interrupted else ("ok" if not errors else "finished_with_errors"),
        runs_done=len(writer.rows), runs_total=cfg.runs, errors=errors, wall_s=round(wall_s, 1),
        best_y=None if frame.empty else float(frame["y"].max()),
        best_run=None if frame.empty else str(frame.loc[frame["y"].idxmax(), "run_id"]),
        gpus_per_trial=plan.gpus_per_trial, state_sampler=searcher.state_sampler.settings(),
        prior=dict(zip(inputs.pool.domains, map(float, searcher.mixture_prior))),
        coverage=coverage(run_covs, targets) if targets and run_covs else {},
        runs_file=str(out / RUNS_FILE))


def run_sweep(cfg: SweepConfig, *, trainable: Callable | None = None, trainable_kwargs: dict | None = None,
              callbacks: list | None = None) -> dict:
    """Run (or resume) the sweep; returns the summary also written to RUN_DIR/sweep.json.
    `trainable`: the function one trial is; default: the one the plan needs (a one-process
    proxy run, or a Ray Train run when the runs have several workers)."""
    # deferred: the tracker callbacks import MLflow (about 2.7 s), which a sweep needs only here
    from causalmix.actors.sweep.tracking import start_tracking

    if not cfg.pool or not cfg.features or not cfg.out or not cfg.proxy.model:
        raise UserError("sweep needs --pool, --features, --model and --out")
    model = [cfg.proxy.model] if Path(cfg.proxy.model).exists() else []
    out = check_not_input(cfg.out, [*pool_parts(cfg.pool), cfg.features, *cfg.cover, *model], kind="sweep")
    check_sweep_out(cfg, out)
    resume = ResumeState.read(out) if cfg.resume else ResumeState()
    start = time.perf_counter()
    init_ray(cfg.address)
    inputs = load_sweep_inputs(cfg.pool, cfg.features, cfg.feature_names, keep_shard=put_documents)
    targets = cover_targets(cfg, inputs.pool.domains)
    out.mkdir(parents=True, exist_ok=True)
    if not cfg.resume:
        atomic_write_text(out / CONFIG_FILE, config_yaml(cfg))

    plan = plan_sweep(cfg, ray.cluster_resources())
    check_resources(plan.needed_on_one_node(), "a sweep trial")
    if plan.train is not None:
        # the Ray Train run's memory per worker, refused before any trial starts (as validate's)
        check_memory_plan(plan.proxy, plan.train, ray.cluster_resources())
    if trainable is None and plan.train is not None:
        trainable = distributed_trial
    run_fn = tune.with_resources(
        tune.with_parameters(trainable or proxy_trial, data=put_sweep_data(inputs, cfg.feature_names), proxy=plan.proxy,
                             finished=resume.finished, **({"train": plan.train} if plan.train else {}),
                             **(trainable_kwargs or {})),
        plan.trial_resources)
    fit = None
    if plan.stream_fit:
        # Its rounds recommend for the `cover` pools in turn, else for the runs' mean covariates.
        fit = FitActorGroup(config=cfg.adaptive_fit, run_dir=cfg.out, refit_every=plan.refit_every,
                            target_covariates=list(targets.values()) or None)
    try:
        if fit is not None:
            fit.start().feed(resume.rows())
        searcher = build_searcher(cfg, inputs)
        parent, tracker_callbacks = start_tracking(
            parse_tracking(cfg.tracking, out), "sweep",
            params={"runs": cfg.runs, "seed": cfg.seed, "pool": cfg.pool, "model": cfg.proxy.model,
                    "adaptive": cfg.adaptive},
            parent_run_id=resume.parent_run_id)
        if parent is not None:
            atomic_write_json(out / TRACKING_FILE, {"tracking": cfg.tracking, "parent_run_id": parent.run_id})
        progress = SweepProgress(str(out / RUNS_FILE), cfg.runs, fit=fit, show=cfg.progress)
        session_callbacks = [progress, *tracker_callbacks, *(callbacks or [])]
        os.environ.update(plan.tune_env(os.environ))
        tuner = (restore_tuner(out / TUNE_DIR, run_fn, session_callbacks) if cfg.resume
                 else new_tuner(cfg, plan, out, run_fn, searcher, session_callbacks))
        errors = progress.land_results(tuner.fit())
        summary = summarize(cfg, plan, progress, errors, searcher, inputs, targets, out,
                            time.perf_counter() - start)
        if fit is not None:
            summary["fit_actor"] = {**fit.status(),
                                    **(fit.write_model_dir(str(out / MODEL_DIR)) if cfg.final_model else {})}
    finally:
        if fit is not None:
            fit.stop()
    if parent is not None:
        summary["tracked_snapshots"] = parent.log_snapshots(read_snapshots(out / "policy.jsonl"))
        parent.finish({k: summary[k] for k in ("runs_done", "runs_total", "best_y", "wall_s")
                       if summary.get(k) is not None},
                      status="FINISHED" if summary["status"] == "ok" else "FAILED")
    atomic_write_json(out / SUMMARY_FILE, summary)
    return summary
