"""`validate` on Ray: one task per (candidate mixture, seed) trains the target model on the
target pool and evaluates the dev suite. Shards go into the object store once.

Each run lands in VAL_DIR/runs/ as it finishes (validation/runs.py); a run that fails
after its retries is reported while the others land, and `--resume` trains only what did not
land. `train_candidate` is the one function a validation run is: the scheduling around it
(retries, landing, resume) does not depend on how it trains."""
from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Mapping

import pandas as pd
from tqdm.auto import tqdm

from causalmix.actors.target.ray_train import train_distributed
from causalmix.causal.covariates import features_in, pool_covariates
from causalmix.causal.runs_table import read_frame
from causalmix.core.atomic import atomic_directory, check_output_path, atomic_write_json, atomic_write_parquet, atomic_write_text
from causalmix.core.config import build_config
from causalmix.core.errors import RunsFailed, UserError
from causalmix.core.logs import get_logger
from causalmix.core.provenance import provenance
from causalmix.core.ray_setup import check_resources, init_ray
from causalmix.core.tracking import parse_tracking, track_runs
from causalmix.datapool.build import pool_parts
from causalmix.datapool.sweep_inputs import load_sweep_inputs
from causalmix.features.features_io import model_fingerprint
from causalmix.mixture_space import DEFAULT_MAX_EPOCHS, MixtureBounds
from causalmix.proxy.config import ProxyConfig, TargetRunConfig
from causalmix.proxy.curves import curve_hook
from causalmix.proxy.run import RunSpec, run_proxy
from causalmix.target.distributed import TargetTrainConfig, check_memory_plan
from causalmix.validation.candidates import candidate_mixtures, parse_mixture_list
from causalmix.validation.comparison import (add_avgdev, caps_sentences, plot_validation, power_sentences, summarize,
                                             table_markdown, validation_table, verdict_sentences)
from causalmix.validation.runs import FAILURES_FILE, LandedRuns, SETTINGS_FILE, run_name, write_failures

# Deferred on purpose, so that importing this module does not load ray, scikit-learn and scipy: the
# function-local imports (of these libraries or of this project's modules that import them).

log = get_logger(__name__)

CURVE_KEY = "_curve"
"""Key of a training run's learning-curve points in the row a task returns (popped before the
row lands: they go to the tracker)."""


@dataclass(frozen=True)
class ValidateConfig:
    """Settings of `launch.py validate`."""

    model: str = ""
    """Fitted CausalMix model directory (`launch.py fit --out`)."""
    pool: str = ""
    """Target pool (folder or manifest): what the target model trains on."""
    features: str = ""
    """Features of the target pool (`launch.py featurize --out`): its covariates."""
    target_model: str = ""
    """Language model to train: a local directory or a hub id (e.g. Qwen/Qwen2.5-7B)."""
    out: str = ""
    """Output folder: table.md and table.parquet (method x metric, mean ± std over seeds, paired
    gains), validation.parquet (one row per run), summary.json, validation.png."""
    regmix_model: str | None = None
    """Optional model directory fitted with `--estimator regmix`: adds the RegMix baseline."""
    no_dml_model: str | None = None
    """Optional model directory fitted with `--estimator regression` on the same runs: the
    no-DML ablation (same analytic policy)."""
    no_covariates_model: str | None = None
    """Optional model directory fitted on the same runs without their x.* covariates: the
    state-agnostic ablation (same analytic policy)."""
    runs: str | None = None
    """Optional runs table of the sweep: best-run takes its highest-y run's mixture."""
    grid: int = 0
    """Grid baseline: N mixtures spread over the simplex (`grid` in mixtures; 0: none)."""
    mixtures: tuple[str, ...] | None = None
    """Competing mixtures, a comma-separated string or a list: causalmix-a, causalmix-s, no-dml,
    no-covariates, regmix, equal, natural, best-run, grid (any case) and FILE.json
    ({domain: weight} or a `recommend` output). None: causalmix-a, causalmix-s, regmix (when
    regmix_model is given), equal, natural, plus grid when grid > 0."""
    seeds: int = 3
    """Training seeds per candidate mixture; seed s is shared by every mixture (paired runs)."""
    trust_radius: float | str | None = None
    """Trust radius of the CausalMix policies: "auto", an L2 radius, or None (the model's default,
    auto)."""
    target_tokens: float | None = None
    """Token budget the mixtures are meant for (None: the target pool's total); with max_epochs it
    caps each domain's weight (mixture_space/constraints.py)."""
    max_epochs: float = DEFAULT_MAX_EPOCHS
    """Epochs of one domain a CausalMix, ablation or RegMix mixture may use at target_tokens."""
    fix: dict = field(default_factory=dict)
    """{domain: weight} pinned in every model's mixture."""
    minimum: dict = field(default_factory=dict)
    """{domain: weight} lower bounds of every model's mixture."""
    proxy: TargetRunConfig = field(default_factory=TargetRunConfig)
    """Training settings (fields of proxy.config.ProxyConfig, budget 1200 unless given; `model`
    is `target_model`). A mapping of those fields is accepted too."""
    train: TargetTrainConfig = field(default_factory=TargetTrainConfig)
    """How one run is spread over workers (fields of target.distributed.TargetTrainConfig:
    workers, gpu_type, activation_checkpointing, max_failures, checkpoint_every, ...); workers > 1
    trains each run through Ray Train with FSDP (actors/target/ray_train.py). A mapping is accepted too."""
    address: str | None = None
    """Ray address (None: RAY_ADDRESS or a local Ray)."""
    resume: bool = False
    """Continue the validation in `out`: keep its landed runs (they must have been trained
    under these settings and mixtures) and train only the missing ones."""
    tracking: str = ""
    """Experiment tracker of the training runs (as `sweep --tracking`: mlflow[=URI], default store
    OUT/mlruns, or wandb[=PROJECT]); empty: none. `proxy.log_every` sets the curve's spacing."""

    def __post_init__(self):
        for name, kind in (("proxy", TargetRunConfig), ("train", TargetTrainConfig)):
            value = getattr(self, name)
            if isinstance(value, Mapping):  # the Python form of the YAML mapping
                try:
                    object.__setattr__(self, name, build_config(kind, value, name))
                except UserError as exc:
                    raise ValueError(str(exc)) from None
        for name in ("model", "pool", "features", "target_model", "out"):
            if not getattr(self, name):
                raise ValueError(f"{name} is required")
        parse_tracking(self.tracking, self.out)
        if self.grid < 0:
            raise ValueError(f"grid must be >= 0, got {self.grid}")
        have = [name for name, given in (("no-dml", self.no_dml_model), ("no-covariates",
                self.no_covariates_model), ("best-run", self.runs), ("grid", self.grid)) if given]
        entries = parse_mixture_list(self.mixtures, have_regmix=bool(self.regmix_model), have=have)
        if self.mixtures is None and self.grid:
            entries = (*entries, "grid")
        object.__setattr__(self, "mixtures", entries)
        if self.seeds < 1:
            raise ValueError(f"seeds must be >= 1, got {self.seeds}")
        if self.trust_radius is not None:
            from causalmix.causal.policy import check_trust_radius

            try:
                object.__setattr__(self, "trust_radius", check_trust_radius(self.trust_radius))
            except UserError as exc:
                raise ValueError(str(exc)) from None

    def train_config(self) -> TargetTrainConfig:
        return self.train

    def proxy_config(self) -> ProxyConfig:
        """The settings each run trains with (a plain ProxyConfig, as a sweep's runs have)."""
        return ProxyConfig(**{**asdict(self.proxy), "model": self.target_model})


def train_candidate(proxy: ProxyConfig, name: str, mixture: dict, seed: int, state: dict,
                    shard_refs: dict, dev_sets: dict, features, feature_names, *,
                    train: TargetTrainConfig | None = None) -> dict:
    """One validation run: the target model trained on `mixture` with `seed`, evaluated on the
    dev suite; returns its runs-table row (plus `candidate`, and its learning curve under
    CURVE_KEY). Runs as a Ray task: Ray resolves the top-level `dev_sets`/`features`
    references, while the shards stay references inside a dict until fetched here. With
    `train.workers` > 1 the task drives one Ray Train run instead of training itself."""
    import ray

    spec = RunSpec(run_id=f"{name}-seed{seed}", mixture=mixture, state=state, seed=seed,
                   sampler="validation")
    curve: list[dict] = []
    if train is not None and train.distributed:
        row = train_distributed(proxy, train, spec, shard_refs=shard_refs, dev_sets_ref=ray.put(dev_sets),
                                features_ref=ray.put(features), feature_names=feature_names,
                                storage_path=train.storage_path, curve=curve)
    else:
        names = sorted(shard_refs)
        frames = ray.get([shard_refs[n] for n in names])
        row = run_proxy(proxy, spec, shards=dict(zip(names, frames)), dev_sets=dev_sets,
                        features=features, feature_names=feature_names,
                        on_step=curve_hook(proxy.log_every, curve.append))
    row["candidate"] = name
    row[CURVE_KEY] = curve
    return row


def _validation_inputs(cfg: ValidateConfig) -> list:
    return [cfg.model, cfg.regmix_model, cfg.no_dml_model, cfg.no_covariates_model, cfg.runs,
            *(pool_parts(cfg.pool) if cfg.pool else []), cfg.features]


def _plain(value):
    return value.item() if hasattr(value, "item") else str(value)


def _run_settings(cfg: ValidateConfig, proxy: ProxyConfig, inputs) -> dict:
    """What decides a run's result besides its mixture and seed (recorded with each landed run)."""
    from causalmix.causal.streaming import frame_sha256

    return json.loads(json.dumps({
        "target_model": model_fingerprint(cfg.target_model),
        "pool": str(Path(cfg.pool).resolve()),
        "pool_shards": {name: frame_sha256(frame) for name, frame in sorted(inputs.shards.items())},
        "pool_domain_tokens": dict(inputs.domain_tokens),
        "features": str(Path(cfg.features).resolve()),
        "proxy": {k: v for k, v in asdict(proxy).items() if k != "model"}}, default=_plain))


def _check_out(cfg: ValidateConfig, overwrite: bool) -> Path:
    """Refused before hours of training: a resume needs an unfinished (or finished) validation
    folder; a fresh start may not silently discard the landed runs of an unfinished one."""
    if cfg.resume:
        if not (Path(cfg.out) / SETTINGS_FILE).is_file():
            raise UserError(f"--resume: {cfg.out} holds no validation to resume (no {SETTINGS_FILE}); "
                            "run without --resume")
        return check_output_path(cfg.out, kind="validation folder", markers=(SETTINGS_FILE,),
                                 inputs=_validation_inputs(cfg))
    out = Path(cfg.out)
    landed = LandedRuns(out).records() if out.is_dir() else []
    if landed and not (out / "summary.json").is_file() and not overwrite:
        raise UserError(f"--out {cfg.out}: holds {len(landed)} landed run(s) of an unfinished validation; "
                        "pass --resume to keep them and train only the missing ones, or --overwrite "
                        "to start again")
    return check_output_path(cfg.out, kind="validation folder", markers=("summary.json", "table.md"),
                             overwrite=overwrite, inputs=_validation_inputs(cfg))


def _check_cluster(cfg: ValidateConfig, proxy: ProxyConfig, train) -> float:
    """Start or join Ray and refuse, before anything is written, a run whose memory plan does not
    fit or whose resources the cluster lacks. Returns the GPUs of one worker (0 or 1)."""
    import ray

    init_ray(cfg.address)
    gpus = 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0
    check_memory_plan(proxy, train, ray.cluster_resources())
    check_resources({"CPU": train.cpus_per_worker * train.workers,
                     **({"GPU": gpus * train.workers} if gpus else {})}, "a validation training run")
    return gpus


@dataclass(frozen=True)
class RunSetup:
    """What every validation run of one call trains with."""

    proxy: ProxyConfig
    """The target model's training settings (`ValidateConfig.proxy_config`)."""
    train: TargetTrainConfig
    """Ray Train workers of each run (one: the run trains in its task)."""
    gpus: float
    """GPUs of one task or worker (0 or 1)."""
    settings: dict
    """What decides a run's result besides its mixture and seed (`_run_settings`)."""
    inputs: object
    """The pool's shards, dev sets and features (datapool.sweep_inputs.SweepInputs)."""
    feature_names: tuple[str, ...]


def _train_missing(setup: RunSetup, train_fn, jobs: list[tuple[str, dict, int]], landed,
                   curves: dict | None = None) -> tuple[dict, list[dict]]:
    """Train every (name, candidate, seed) of `jobs` as a Ray task; land each row as it comes.
    A lost worker or node is retried (max_retries); an exception raised by the training code is
    not (it would fail again) and is returned as a failure, the other runs going on. With
    `train.workers` > 1 each task drives a Ray Train run (actors/target/ray_train.py), whose workers
    hold the resources and whose checkpoints, not the task, survive a lost worker. Each run's
    learning curve goes into `curves` ({run_id: points}) rather than into the landed row."""
    import ray

    inputs = setup.inputs
    shard_refs = {name: ray.put(frame) for name, frame in inputs.shards.items()}
    dev_ref, features_ref = ray.put(inputs.dev_sets), ray.put(inputs.features)
    task, extra = ray.remote(train_fn).options(num_cpus=1, num_gpus=setup.gpus, max_retries=2), {}
    if setup.train.distributed and train_fn is train_candidate:
        task = ray.remote(train_fn).options(num_cpus=0, max_retries=0)
        extra = {"train": setup.train}
    refs = {task.remote(setup.proxy, name, cand["mixture"], seed, inputs.shard_names, shard_refs, dev_ref,
                        features_ref, setup.feature_names, **extra): (name, cand, seed)
            for name, cand, seed in jobs}
    rows, failures = {}, []
    with tqdm(total=len(refs), desc="validate", unit="run", file=sys.stderr) as bar:
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            name, cand, seed = refs[done[0]]
            try:
                row = json.loads(json.dumps(ray.get(done[0]), default=_plain))
            except ray.exceptions.RayError as exc:
                reason = str(exc).strip().splitlines()[-1][:300]
                failures.append({"candidate": name, "seed": seed, "error": reason})
                bar.write(f"validate: {name} seed {seed} failed: {reason}")
            else:
                curve = row.pop(CURVE_KEY, [])
                if curves is not None:
                    curves[row["run_id"]] = curve
                landed.land(name, seed, cand["mixture"], setup.settings, row)
                rows[(name, seed)] = row
            bar.update(1)
    return rows, failures


def _candidates(cfg: ValidateConfig, model, covariates: dict, domain_tokens, bounds) -> dict:
    """The mixtures the validation compares (validation/candidates.py), with the baseline models and
    the runs table the config names."""
    from causalmix.causal.model_dir import load_model_dir

    def optional_model(path):
        return load_model_dir(path) if path else None

    return candidate_mixtures(model, {n: covariates[n] for n in model.covariate_names}, domain_tokens,
                              entries=cfg.mixtures, trust_radius=cfg.trust_radius,
                              regmix_model=optional_model(cfg.regmix_model),
                              no_dml_model=optional_model(cfg.no_dml_model),
                              no_covariates_model=optional_model(cfg.no_covariates_model),
                              runs=read_frame(cfg.runs) if cfg.runs else None,
                              grid=cfg.grid, constraints=bounds)


def _write_results(cfg: ValidateConfig, out: Path, results: pd.DataFrame, candidates: dict, bounds,
                   covariates: dict, runs: dict) -> dict:
    """The tables, figure and summary of the landed runs; summary.json, which marks the folder
    finished, last. Each file is replaced atomically."""
    results = add_avgdev(results.sort_values(["candidate", "seed"]).reset_index(drop=True))
    table = summarize(results)
    paper_table = validation_table(results)
    summary = {
        "best": str(table.index[0]),
        "candidates": {name: {**cand, **{k: float(v) for k, v in table.loc[name].items()}}
                       for name, cand in candidates.items()},
        "seeds": cfg.seeds,
        "runs": runs,
        "tokens_per_run": {name: float(t) for name, t in results.groupby("candidate")["tokens"].mean().items()},
        "verdict": verdict_sentences(paper_table),
        "power": power_sentences(paper_table),
        "caps": caps_sentences(candidates, bounds),
        "pool_covariates": covariates,
        "constraints": bounds.to_json(),
    }
    atomic_write_parquet(out / "validation.parquet", results)
    atomic_write_parquet(out / "table.parquet", paper_table.reset_index())
    atomic_write_text(out / "table.md", table_markdown(paper_table) + "\n\n"
                      + "\n".join([*summary["caps"], *summary["verdict"], *summary["power"]]) + "\n")
    plot_validation(results, out / "validation.png")
    (out / FAILURES_FILE).unlink(missing_ok=True)
    atomic_write_json(out / "summary.json", {**summary, "provenance": provenance(asdict(cfg))})
    return summary


def run_validation(cfg: ValidateConfig, *, overwrite: bool = False,
                   train_fn: Callable = train_candidate) -> dict:
    """Train what is missing, land each run, then write the tables; raises RunsFailed (the
    others landed) when a run failed. `train_fn`: the function one run is (train_candidate's
    signature)."""
    from causalmix.causal.model_dir import load_model_dir

    out = _check_out(cfg, overwrite)
    model = load_model_dir(cfg.model)
    feature_names = features_in(model.covariate_names)
    inputs = load_sweep_inputs(cfg.pool, cfg.features, feature_names)
    if list(inputs.pool.domains) != list(model.domains):
        raise UserError(f"pool {cfg.pool} has domains {inputs.pool.domains}, the model {model.domains}")
    covariates = pool_covariates(inputs.features, model.domains, feature_names,
                                 where=f"features {cfg.features}")
    bounds = MixtureBounds.build(model.domains, domain_tokens=inputs.domain_tokens,
                                 target_tokens=cfg.target_tokens, max_epochs=cfg.max_epochs,
                                 fixed=cfg.fix, minimum=cfg.minimum)
    candidates = _candidates(cfg, model, covariates, inputs.domain_tokens, bounds)
    proxy, train = cfg.proxy_config(), cfg.train_config()
    settings = _run_settings(cfg, proxy, inputs)
    landed = LandedRuns(out)
    reused = (landed.reusable(settings, {n: c["mixture"] for n, c in candidates.items()}, cfg.seeds)
              if cfg.resume else {})
    setup = RunSetup(proxy=proxy, train=train, gpus=_check_cluster(cfg, proxy, train), settings=settings,
                     inputs=inputs, feature_names=tuple(feature_names))
    if not cfg.resume:  # a fresh folder now: the runs land in it from the first one on
        with atomic_directory(out, kind="validation folder", markers=("summary.json", "table.md"),
                              overwrite=True, inputs=_validation_inputs(cfg)) as tmp:
            atomic_write_json(tmp / SETTINGS_FILE, settings)
    jobs = [(name, cand, seed) for seed in range(cfg.seeds) for name, cand in candidates.items()
            if (name, seed) not in reused]
    if reused:
        log.info("validate: %d landed run(s) kept, %d to train", len(reused), len(jobs))
    curves: dict[str, list] = {}
    trained, failures = _train_missing(setup, train_fn, jobs, landed, curves) if jobs else ({}, [])
    if failures:
        write_failures(out, failures)
        names = ", ".join(f"{run_name(f['candidate'], f['seed'])} ({f['error']})" for f in failures[:3])
        raise RunsFailed(f"{len(failures)} of {len(jobs)} validation run(s) failed after their retries: "
                         f"{names}. The other {len(trained) + len(reused)} landed in {out / landed.dir.name}; "
                         f"`validate --resume` with the same settings trains only the missing ones")
    summary = _write_results(cfg, out, pd.DataFrame([*reused.values(), *trained.values()]), candidates,
                             bounds, covariates, {"trained": len(trained), "reused": len(reused)})
    tracking = parse_tracking(cfg.tracking, cfg.out)
    if tracking is not None:  # the runs trained now (a resume's kept runs were tracked before)
        track_runs(tracking, "validate", trained.values(), curves, tags=("candidate", "sampler"),
                   summary={"seeds": cfg.seeds})
    return summary
