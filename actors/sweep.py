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
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import yaml

from actors.sweep_inputs import SweepInputs, load_sweep_inputs
from actors.sweep_progress import RunsTableWriter, SweepProgress
from actors.sweep_searcher import ActorRoundSnapshots, MixtureSearcher
from actors.trainer import ROW_KEY, SweepData, proxy_trial
from actors.tune_train import train_kwargs, trial_placement
from causal.covariates import DEFAULT_FEATURES, pool_covariates
from core.atomic import atomic_write_json, atomic_write_text
from core.errors import UserError
from core.provenance import provenance
from core.tracking import parse_tracking, read_snapshots
from mixture_space.dirichlet import DirichletMixtureSampler
from mixture_space.state import DataStateSampler, StateSamplerConfig, coverage
from proxy.config import ProxyConfig

TUNE_DIR = "tune"
RUNS_FILE = "runs.parquet"
CONFIG_FILE = "sweep_config.yaml"
SUMMARY_FILE = "sweep.json"
TRACKING_FILE = "tracking.json"
FIT_ACTOR_NAME = "causalmix-fit"
MODEL_DIR = "model"
FIT_ACTOR_START_TIMEOUT_S = 120


@dataclass(frozen=True)
class SweepConfig:
    """Settings of `launch.py sweep`."""

    pool: str = ""
    """Pool directory (or its manifest) the proxy runs draw from."""
    features: str = ""
    """Per-document features of that pool (`launch.py featurize` output dir, or a .parquet)."""
    out: str = ""
    """RUN_DIR: runs.parquet, the Tune experiment and the sweep's records."""
    runs: int = 24
    """Proxy runs to attempt (paper: 512)."""
    seed: int = 0
    """Seed of the mixtures, data states and per-run training seeds."""
    proxy: ProxyConfig = field(default_factory=ProxyConfig)
    """Per-run SFT settings; `model` is the proxy base model (`--model`)."""
    state: StateSamplerConfig = field(default_factory=StateSamplerConfig)
    """Data-state sampler settings (its seed is replaced by the sweep seed)."""
    feature_names: tuple[str, ...] = DEFAULT_FEATURES
    """Document features averaged into the runs' covariates x.<domain>.<feature>."""
    prior: dict | None = None
    """Dirichlet prior {domain: weight}; None: the pool's token shares ** prior_temperature."""
    prior_temperature: float = 0.5
    """Exponent on the token shares (RegMix: 0.5)."""
    max_ratio: float = 15.0
    """Reject mixtures giving a domain more than max_ratio x its token share (RegMix: 15)."""
    adaptive: float = 0.0
    """Share of runs drawn around the fit actor's current recommendation (0: none)."""
    adaptive_radius: float = 0.2
    """L2 trust radius of adaptive draws around the recommendation."""
    adaptive_round: int = 8
    """Runs per adaptive round: an adaptive run of round r = index // adaptive_round draws
    around the snapshot fitted on exactly the runs of rounds < r (reproducible whatever the
    concurrency and finish order); round 0 is all prior draws."""
    adaptive_refit_every: int = 4
    """Without adaptive mode: the fit actor refits (policy.jsonl) after this many new runs.
    In adaptive mode it fits once per round instead."""
    final_model: bool = True
    """Write the fit actor's model on every run to RUN_DIR/model at the end (the demo turns it
    off: its `fit` stage is the one fit every later stage uses)."""
    stream_fit: bool = True
    """Run the fit actor during the sweep (refits as runs land, policy snapshots in
    policy.jsonl, the final model in RUN_DIR/model); adaptive mode needs it."""
    adaptive_fit: dict = field(default_factory=dict)
    """FitConfig fields of the fit actor (causal/fitting.py), e.g. {estimator: linear-dml};
    empty: its defaults (the causal forest, which needs a few dozen runs before a first fit)."""
    cover: tuple[str, ...] = ()
    """Features of pools the fitted model will be asked about; sweep.json reports whether the
    runs' covariates span their pool covariates."""
    cpus_per_trial: float = 1.0
    """CPUs per trial (torch threads follow)."""
    gpus_per_trial: float | None = None
    """GPUs per trial; None: 1 / trials_per_gpu when the cluster has GPUs, else 0."""
    gpus_per_run: int = 1
    """Ray Train workers per proxy run (one GPU each on a GPU cluster, a CPU process of
    `cpus_per_trial` CPUs each on CPU); > 1 trains each trial's run through Ray Train with FSDP
    (actors/tune_train.py), the trial only driving it. 1: the run trains in the trial."""
    trials_per_gpu: int = 1
    """Proxy trials sharing one GPU (each asks Tune for 1/k of a GPU); refused when
    the memory plan (proxy/memory.py) says k trials of the proxy model do not fit the GPU's memory
    (known from CAUSALMIX_GPU_MEMORY_GB or a GPU visible to the driver)."""
    max_concurrent: int = 0
    """Cap on trials at once (0: as many as the cluster fits, growing with the autoscaler)."""
    max_pending: int = 0
    """Trials Tune may have waiting for resources (0: max(16, 2 x the slots the cluster has now)).
    Pending trials are what an autoscaler sees; Tune's default for a custom Searcher is 1,
    which would start one trial at a time."""
    max_failures: int = 2
    """Retries of a trial whose actor, node or code failed."""
    address: str | None = None
    """Ray address (None: RAY_ADDRESS or a local Ray)."""
    resume: bool = False
    """Restore the interrupted sweep in `out` and run only what is missing."""
    progress: bool = True
    """Progress bar on stderr."""
    tracking: str = ""
    """Experiment tracker of the runs: "mlflow" (a local store in RUN_DIR/mlruns), "mlflow=URI",
    "wandb" (offline under RUN_DIR/wandb unless WANDB_API_KEY is set), "wandb=PROJECT";
    empty: none. One tracked run per proxy run with its learning curve."""

    def __post_init__(self):
        if self.runs < 1:
            raise ValueError(f"runs must be >= 1, got {self.runs}")
        if not 0.0 <= self.adaptive <= 1.0:
            raise ValueError(f"adaptive must lie in [0, 1], got {self.adaptive}")
        if self.cpus_per_trial <= 0 or (self.gpus_per_trial is not None and self.gpus_per_trial < 0):
            raise ValueError("cpus_per_trial must be > 0 and gpus_per_trial >= 0")
        if self.trials_per_gpu < 1:
            raise ValueError(f"trials_per_gpu must be >= 1, got {self.trials_per_gpu}")
        if self.trials_per_gpu > 1 and self.gpus_per_trial is not None:
            raise ValueError("give trials_per_gpu or gpus_per_trial, not both")
        if self.gpus_per_run < 1:
            raise ValueError(f"gpus_per_run must be >= 1, got {self.gpus_per_run}")
        if self.gpus_per_run > 1 and (self.trials_per_gpu > 1 or self.gpus_per_trial is not None):
            raise ValueError("gpus_per_run > 1 gives each worker of a run one GPU: drop "
                             "trials_per_gpu and gpus_per_trial")
        if self.adaptive_round < 1:
            raise ValueError(f"adaptive_round must be >= 1, got {self.adaptive_round}")
        if self.adaptive_refit_every < 1:
            raise ValueError(f"adaptive_refit_every must be >= 1, got {self.adaptive_refit_every}")
        if self.max_concurrent < 0 or self.max_failures < 0 or self.max_pending < 0:
            raise ValueError("max_concurrent, max_pending and max_failures must be >= 0")
        if not self.feature_names:
            raise ValueError("feature_names must name at least one feature")
        object.__setattr__(self, "feature_names", tuple(self.feature_names))
        object.__setattr__(self, "cover", tuple(self.cover))
        parse_tracking(self.tracking, self.out or ".")

    # Fields that define the sweep: a resume must not change them.
    IDENTITY = ("pool", "features", "runs", "seed", "proxy", "state", "feature_names", "prior",
                "prior_temperature", "max_ratio", "adaptive", "adaptive_radius",
                "adaptive_round", "adaptive_refit_every", "adaptive_fit")


def trial_name(trial) -> str:
    return str(trial.config.get("run_id", trial.trial_id))


def config_yaml(cfg: SweepConfig) -> str:
    data = dataclasses.asdict(cfg)
    data["feature_names"], data["cover"] = list(cfg.feature_names), list(cfg.cover)
    return yaml.safe_dump(data, sort_keys=False)


def build_searcher(cfg: SweepConfig, inputs: SweepInputs) -> MixtureSearcher:
    domains = inputs.pool.domains
    if cfg.prior is not None:
        if set(cfg.prior) != set(domains):
            raise UserError(f"prior names domains {sorted(cfg.prior)}, the pool has {sorted(domains)}")
        prior = np.array([float(cfg.prior[d]) for d in domains])
        sampler = DirichletMixtureSampler(prior=prior, max_ratio=cfg.max_ratio, domains=domains,
                                          seed=cfg.seed)
    else:
        sampler = DirichletMixtureSampler.from_token_counts(
            {d: inputs.domain_tokens[d] for d in domains}, temperature=cfg.prior_temperature,
            max_ratio=cfg.max_ratio, seed=cfg.seed)
    states = DataStateSampler(inputs.shard_names, config=dataclasses.replace(cfg.state, seed=cfg.seed),
                              shard_means=inputs.shard_means)
    snapshots = ActorRoundSnapshots(FIT_ACTOR_NAME) if cfg.adaptive > 0 else None
    return MixtureSearcher(domains=domains, mixture_sampler=sampler, state_sampler=states,
                           n_runs=cfg.runs, seed=cfg.seed, adaptive_fraction=cfg.adaptive,
                           adaptive_radius=cfg.adaptive_radius, round_size=cfg.adaptive_round,
                           snapshots=snapshots)


def _start_fit_actor(cfg: SweepConfig, targets: dict[str, dict[str, float]]):
    """The named fit actor that receives runs as they land (an existing one is reused).
    It recommends for the first `cover` pool, else for the runs' mean covariates. The caller
    keeps the returned handle for the sweep's duration: Ray collects a named, non-detached
    actor once no handle to it is left.

    It lives on the driver's node (the head on a cluster), so losing a worker node never
    takes the fit state with it; it dies only with the driver, which `--resume` recovers. It
    reserves no CPU: it idles between refits, and a reserved CPU would idle a trial slot."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    try:
        return ray.get_actor(FIT_ACTOR_NAME)
    except ValueError:
        pass
    try:
        from actors.fit_actor import FitActor
    except ImportError:
        raise UserError("--adaptive needs the fit actor (actors/fit_actor.py, issue #5), "
                        "which this checkout lacks") from None
    target = next(iter((targets or {}).values()), None)
    on_driver_node = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    actor = FitActor.options(name=FIT_ACTOR_NAME, get_if_exists=True, num_cpus=0,
                             scheduling_strategy=on_driver_node).remote(
        config=dict(cfg.adaptive_fit) or None, run_dir=cfg.out, target_covariates=target,
        # adaptive: one fit per round (round_snapshot), none triggered by arrivals
        refit_every=cfg.runs + 1 if cfg.adaptive > 0 else cfg.adaptive_refit_every)
    try:
        ray.get(actor.status.remote(), timeout=FIT_ACTOR_START_TIMEOUT_S)
    except ray.exceptions.GetTimeoutError:
        raise UserError(f"the fit actor did not start on the driver's node within "
                        f"{FIT_ACTOR_START_TIMEOUT_S} s") from None
    return actor


def _stop_fit_actor(fit_actor) -> None:
    """Kill the fit actor and wait until its name is free, so that a sweep started right after
    (a resume) gets a fresh actor instead of a handle to one being torn down."""
    import ray

    ray.kill(fit_actor)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            ray.get_actor(FIT_ACTOR_NAME)
        except ValueError:
            return
        time.sleep(0.1)


def _write_final_model(fit_actor, out: Path) -> dict:
    """The fit actor's model on every run, saved as RUN_DIR/model (a `fit` model directory)."""
    import ray

    try:
        return {"model_dir": ray.get(fit_actor.write_model_dir.remote(str(out / MODEL_DIR)), timeout=600)}
    except ray.exceptions.RayTaskError as exc:
        return {"model_dir": None, "reason": str(exc).strip().splitlines()[-1][:300]}


def _fit_actor_status() -> dict | None:
    import ray

    try:
        return ray.get(ray.get_actor(FIT_ACTOR_NAME).status.remote(), timeout=30)
    except (ValueError, ray.exceptions.RayError) as exc:
        return {"error": str(exc)[:300]}


def _check_resume(cfg: SweepConfig, out: Path) -> None:
    saved_path = out / CONFIG_FILE
    if not saved_path.is_file():
        raise UserError(f"--resume: {out} holds no sweep ({CONFIG_FILE} missing); run without --resume")
    saved = yaml.safe_load(saved_path.read_text())
    now = yaml.safe_load(config_yaml(cfg))
    for values in (saved, now):  # how often a run logs its curve does not change the sweep
        (values.get("proxy") or {}).pop("log_every", None)
    changed = [k for k in SweepConfig.IDENTITY if saved.get(k) != now.get(k)]
    if changed:
        raise UserError(f"--resume: {', '.join(changed)} differ from the sweep saved in {saved_path}; "
                        "resume with the same settings or start a new --out")
    if (saved.get("tracking") or "") != (now.get("tracking") or ""):
        # Tune restores the experiment's callbacks (the trackers among them) as they were.
        raise UserError(f"--resume: --tracking {now.get('tracking') or '(none)'} differs from the sweep's "
                        f"{saved.get('tracking') or '(none)'}; a sweep's tracking is fixed when it starts")


def trial_gpus(cfg: SweepConfig, cluster_gpus: float) -> float:
    """GPUs one trial asks for: gpus_per_trial if given, else 1 / trials_per_gpu on a
    cluster with GPUs, else 0."""
    from proxy.memory import gpus_per_trial

    if cfg.gpus_per_trial is not None:
        return float(cfg.gpus_per_trial)
    return gpus_per_trial(cfg.trials_per_gpu) if cluster_gpus > 0 else 0.0


def trial_resources(cfg: SweepConfig, gpus: float) -> dict:
    """The resource request of every Tune trial."""
    return trial_placement(cfg.gpus_per_run, cfg.cpus_per_trial, gpus, {}).request


def gpu_memory_bytes() -> int | None:
    """Memory of one GPU of the cluster, where the driver can know it."""
    if os.environ.get("CAUSALMIX_GPU_MEMORY_GB"):
        return int(float(os.environ["CAUSALMIX_GPU_MEMORY_GB"]) * 1024**3)
    try:
        import torch
    except ImportError:
        return None
    return torch.cuda.get_device_properties(0).total_memory if torch.cuda.is_available() else None


def check_trials_fit(cfg: SweepConfig) -> None:
    """Refuse `trials_per_gpu` trials per GPU when the memory estimate says they do not fit."""
    from proxy.memory import ModelShape, max_trials_per_gpu, trial_memory_bytes
    from proxy.memory_plan import read_model_config

    memory = gpu_memory_bytes()
    if memory is None:
        print(f"[sweep] trials_per_gpu {cfg.trials_per_gpu}: GPU memory unknown here (set "
              "CAUSALMIX_GPU_MEMORY_GB to check that they fit)", flush=True)
        return
    shape = ModelShape.from_config(read_model_config(cfg.proxy.model))
    per_trial = trial_memory_bytes(shape, seq_len=cfg.proxy.max_length,
                                   micro_batch=cfg.proxy.rows_per_micro_batch)
    fits = max_trials_per_gpu(memory, per_trial)
    if cfg.trials_per_gpu > fits:
        raise UserError(f"trials_per_gpu {cfg.trials_per_gpu}: one trial of {cfg.proxy.model} needs about "
                        f"{per_trial / 1024**3:.1f} GiB (proxy/memory_plan.py), so at most {fits} fit "
                        f"a {memory / 1024**3:.0f} GiB GPU")


def run_sweep(cfg: SweepConfig, *, trainable: Callable = proxy_trial, trainable_kwargs: dict | None = None,
              callbacks: list | None = None) -> dict:
    """Run (or resume) the sweep; returns the summary also written to RUN_DIR/sweep.json."""
    import ray
    from ray import tune

    from core.ray_setup import check_resources, init_ray

    if not cfg.pool or not cfg.features or not cfg.out or not cfg.proxy.model:
        raise UserError("sweep needs --pool, --features, --model and --out")
    out = Path(cfg.out).resolve()
    tune_dir = out / TUNE_DIR
    if cfg.resume:
        _check_resume(cfg, out)
        if not tune.Tuner.can_restore(str(tune_dir)):
            raise UserError(f"--resume: no restorable Tune experiment in {tune_dir}")
    elif (out / CONFIG_FILE).exists() or tune_dir.exists():
        raise UserError(f"{out} already holds a sweep; pass --resume to continue it or choose another --out")
    start = time.perf_counter()
    inputs = load_sweep_inputs(cfg.pool, cfg.features, cfg.feature_names)
    targets = {}
    for path in cfg.cover:
        from actors.sweep_inputs import read_features

        targets[path] = pool_covariates(read_features(path), inputs.pool.domains, cfg.feature_names,
                                        where=f"features {path}")
    out.mkdir(parents=True, exist_ok=True)
    if not cfg.resume:
        atomic_write_text(out / CONFIG_FILE, config_yaml(cfg))

    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the progress bar replaces Tune's tables
    local = (cfg.address or os.environ.get("RAY_ADDRESS") or "local") == "local"
    init_ray(cfg.address, **({"object_store_memory": 512 * 1024**2} if local else {}))
    gpus = trial_gpus(cfg, ray.cluster_resources().get("GPU", 0))
    if gpus and cfg.trials_per_gpu > 1:
        check_trials_fit(cfg)
    placement = trial_placement(cfg.gpus_per_run, cfg.cpus_per_trial, gpus, ray.cluster_resources())
    check_resources(placement.run_needs, "a sweep trial")
    slots = placement.slots
    # Pending trials are what an autoscaler sees. Adaptive rounds make proposals independent
    # of when a trial is created, so adaptive mode needs no smaller cap.
    auto_pending = max(16, int(2 * slots))
    os.environ["TUNE_MAX_PENDING_TRIALS_PG"] = str(cfg.max_pending or auto_pending)
    proxy = cfg.proxy
    if gpus == 0 and not proxy.threads:
        proxy = dataclasses.replace(proxy, threads=max(1, int(cfg.cpus_per_trial)))
    if gpus == 0 and proxy.device == "auto":
        proxy = dataclasses.replace(proxy, device="cpu")
    data = SweepData(shards={name: ray.put(frame) for name, frame in inputs.shards.items()},
                     dev_sets=ray.put(inputs.dev_sets), features=ray.put(inputs.features),
                     feature_names=cfg.feature_names)
    finished = {}
    if cfg.resume and (out / RUNS_FILE).is_file():
        finished = {run_id: json.dumps(row, default=lambda v: v.item() if hasattr(v, "item") else str(v))
                    for run_id, row in RunsTableWriter(out / RUNS_FILE).rows.items()}
    run_fn = tune.with_resources(
        tune.with_parameters(trainable, data=data, proxy=proxy, finished=finished,
                             **train_kwargs(cfg.gpus_per_run, cfg.cpus_per_trial),
                             **(trainable_kwargs or {})),
        placement.request)
    streaming = cfg.stream_fit or cfg.adaptive > 0
    fit_actor = _start_fit_actor(cfg, targets) if streaming else None
    if fit_actor is not None and finished:
        fit_actor.add_runs.remote([json.loads(row) for row in finished.values()])
    searcher = build_searcher(cfg, inputs)
    from actors.tracking import start_tracking

    record = out / TRACKING_FILE
    previous = json.loads(record.read_text())["parent_run_id"] if cfg.resume and record.is_file() else None
    parent, tracker_callbacks = start_tracking(parse_tracking(cfg.tracking, out), "sweep",
                                               params={"runs": cfg.runs, "seed": cfg.seed, "pool": cfg.pool,
                                                       "model": cfg.proxy.model, "adaptive": cfg.adaptive},
                                               parent_run_id=previous)
    if parent is not None:
        atomic_write_json(record, {"tracking": cfg.tracking, "parent_run_id": parent.run_id})
    if cfg.resume:
        tuner = tune.Tuner.restore(str(tune_dir), trainable=run_fn, resume_unfinished=True,
                                   restart_errored=True)
    else:
        progress = SweepProgress(str(out / RUNS_FILE), cfg.runs,
                                 fit_actor=FIT_ACTOR_NAME if streaming else None,
                                 show=cfg.progress)
        tuner = tune.Tuner(
            run_fn,
            tune_config=tune.TuneConfig(search_alg=searcher, num_samples=cfg.runs,
                                        max_concurrent_trials=cfg.max_concurrent or placement.max_concurrent,
                                        reuse_actors=True, trial_name_creator=trial_name,
                                        trial_dirname_creator=trial_name),
            run_config=tune.RunConfig(
                name=TUNE_DIR, storage_path=str(out), verbose=0,
                failure_config=tune.FailureConfig(max_failures=cfg.max_failures),
                callbacks=[progress, *tracker_callbacks, *(callbacks or [])]))
    results = tuner.fit()
    writer = RunsTableWriter(out / RUNS_FILE)
    errors = []
    for result in results:
        row_json = (result.metrics or {}).get(ROW_KEY)
        if row_json:
            row = json.loads(row_json)
            if row["run_id"] not in writer.rows:
                writer.rows[row["run_id"]] = row
        elif result.error is not None:
            errors.append({"run_id": (result.config or {}).get("run_id"), "error": str(result.error)[:500]})
    if writer.rows:
        writer.write()
    frame = writer.frame()
    run_covs = frame[[c for c in frame.columns if c.startswith("x.")]].to_dict("records") if len(frame) else []
    interrupted = len(writer.rows) + len(errors) < cfg.runs
    summary = provenance(
        cfg, status="interrupted" if interrupted else ("ok" if not errors else "finished_with_errors"),
        runs_done=len(writer.rows), runs_total=cfg.runs, errors=errors,
        wall_s=round(time.perf_counter() - start, 1),
        best_y=None if frame.empty else float(frame["y"].max()),
        best_run=None if frame.empty else str(frame.loc[frame["y"].idxmax(), "run_id"]),
        gpus_per_trial=gpus, state_sampler=searcher.state_sampler.settings(),
        prior=dict(zip(inputs.pool.domains, map(float, searcher.mixture_prior))),
        coverage=coverage(run_covs, targets) if targets and run_covs else {},
        runs_file=str(out / RUNS_FILE))
    if fit_actor is not None:
        summary["fit_actor"] = {**(_fit_actor_status() or {}),
                                **(_write_final_model(fit_actor, out) if cfg.final_model else {})}
        _stop_fit_actor(fit_actor)
    if parent is not None:
        summary["tracked_snapshots"] = parent.log_snapshots(read_snapshots(out / "policy.jsonl"))
        parent.finish({k: summary[k] for k in ("runs_done", "runs_total", "best_y", "wall_s")
                       if summary.get(k) is not None},
                      status="FINISHED" if summary["status"] == "ok" else "FAILED")
    atomic_write_json(out / SUMMARY_FILE, summary)
    return summary
