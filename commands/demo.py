"""`demo`: the whole CausalMix pipeline on the embedded default (local Ray, tiny models, demo pools).

Everything lands under `--workdir` (default ./causalmix-demo):
  pools/demo-small/, pools/demo-large/, pools/demo-large-flip/   manifest.yaml beside its shards
                                         (the two target pools' states point opposite ways)
  models/proxy/, models/target/          tiny Qwen2 models (save_pretrained format)
  features/POOL/                         per-document features of each pool (reference: proxy)
  runs/                                  the sweep on demo-small (runs.parquet, policy.jsonl)
  model/                                 CausalMix's model (the one fit every later stage uses)
  model-regmix/, model-no-dml/, model-no-covariates/   RegMix and the two ablations
  recommendation.json                    mixtures for each target pool from its features alone
  validation/POOL/                       the target model trained on each target pool per mixture
                                         (table.md: the paper-style table with paired gains)
  report/                                report.md and its figures
  stages/                                each stage's input fingerprints (commands/demo_stages.py)
A stage is reused when its output is complete and its inputs (the files of the stages it reads,
and the settings it uses) have the fingerprints recorded when it ran; an interrupted one
resumes; one whose inputs changed (e.g. fit after a new sweep) runs again from scratch.
`--until STAGE` stops after that stage. `--quick` runs the same stages at toy size (tiny
pools and models, 24 proxy runs, 2 validation seeds) in a
separate default workdir: a smoke test of the whole pipeline in a couple of minutes, whose
numbers mean nothing.
"""
from __future__ import annotations

import dataclasses
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd

from causalmix.actors.featurize.driver import FeaturizeConfig, featurize_pools
from causalmix.causal.runs_table import COV
from causalmix.commands import demo_targets
from causalmix.commands.demo_stages import Stage, run_stages
from causalmix.core.atomic import atomic_write_json, atomic_write_parquet
from causalmix.core.cli_config import ConfigFlags
from causalmix.core.errors import UserError
from causalmix.core.ray_setup import init_ray
from causalmix.datapool.demo import SMALL, TARGET_POOLS, DemoPoolSpec, demo_texts_for_tokenizer, write_demo_pool
from causalmix.datapool.demo_sources import pretraining_corpus
from causalmix.datapool.pool import Pool
from causalmix.design.sweep_config import CONFIG_FILE, SweepConfig
from causalmix.features.features_io import MANIFEST, model_fingerprint
from causalmix.lm.tiny import TinyModelSpec, build_model_family
from causalmix.mixture_space.state import StateSamplerConfig
from causalmix.proxy.config import ProxyConfig

# Deferred on purpose, so that importing this module does not load ray, transformers, scikit-learn
# and scipy: the function-local imports (of these libraries or of this project's modules that import
# them).

POOLS = (SMALL, *TARGET_POOLS)
FEATURES = ("normalized_loss",)
"""The sweep's covariates: one per domain, the one that sees the damage. With the paper's three
per domain (12 covariates) 56 runs left the forest few runs per split and it found no state
dependence (docs/validate.md); one per domain gives it four times as many per split."""


@dataclass(frozen=True)
class DemoConfig:
    """Settings of `launch.py demo`."""

    workdir: str | None = None
    """Folder that keeps everything the demo makes (None: causalmix-demo, or causalmix-demo-quick)."""
    until: str | None = None
    """Stop after this stage (None: run every stage that exists)."""
    seed: int = 0
    """Seed of the pools, models and sweep."""
    quick: bool = False
    """Toy-size smoke run (tiny pools and models, few runs); its default workdir is
    causalmix-demo-quick, and a workdir remembers which kind it holds."""
    tokenizer_vocab: int | None = None
    """Vocabulary of the tiny models' byte-level BPE tokenizer (None: 2048; quick: 512)."""
    sweep_runs: int | None = None
    """Proxy runs of the demo sweep (the causal forest needs 18 for 4 domains x 1 covariate;
    the rounds after the first fit are partly adaptive). None: 56; quick: 24."""
    sweep_adaptive: float = 0.5
    """Share of the runs of each round after the first successful fit drawn around its
    recommendation."""
    sweep_round: int | None = None
    """Runs per adaptive round (reproducible: round r uses the fit on rounds < r). None: 8;
    quick: 6."""
    validate_seeds: int | None = None
    """Paired seeds per mixture and target pool (None: 6; quick: 2). Planned from the previous demo's
    per-seed spread of the paired AvgDev differences (0.28-0.58): at 0.41, six seeds detect a
    gain of 0.49 with 80 % power under the one-sided 5 % test (docs/validate.md)."""
    validate_budget: int | None = None
    """Documents per target training run in validation (None: 800; quick: 32)."""
    validate_mixtures: str = "causalmix-a,no-covariates,regmix,equal"
    """Competing mixtures of the validation (`validate --mixtures`): CausalMix-A, the
    state-agnostic ablation (no covariates), RegMix and equal: the comparisons of the verdict.
    Fewer methods buy more paired seeds; no-dml, causalmix-s, natural, best-run and grid (with
    validate_grid) can be added."""
    validate_grid: int = 0
    """Grid baseline points in validation (0: none; `validate --grid N` on the demo's artifacts)."""
    fit_jobs: int = 2
    """Processes for the out-of-fold fits of the fit and report stages (`fit --jobs`, `report
    --jobs`); the models and the report are the same whatever the number."""

    def __post_init__(self):
        # a size not given takes the quick or the full demo's; one given is kept either way
        for name, value in (QUICK_DEFAULTS if self.quick else FULL_DEFAULTS).items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, value)
        if not 0.0 <= self.sweep_adaptive <= 1.0:
            raise ValueError(f"sweep_adaptive must lie in [0, 1], got {self.sweep_adaptive}")
        if self.until is not None and self.until not in STAGE_NAMES:
            raise ValueError(f"until: unknown stage {self.until!r}; stages are {list(STAGE_NAMES)}")
        for name in ("sweep_runs", "validate_seeds", "validate_budget", "sweep_round", "fit_jobs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.tokenizer_vocab < 300:
            raise ValueError(f"tokenizer_vocab must be >= 300 (256 bytes + specials), got {self.tokenizer_vocab}")


FULL_DEFAULTS = {"tokenizer_vocab": 2048, "sweep_runs": 56, "validate_seeds": 6, "validate_budget": 800,
                 "sweep_round": 8}
QUICK_DEFAULTS = {"tokenizer_vocab": 512, "sweep_runs": 24, "validate_seeds": 2, "validate_budget": 32,
                  "sweep_round": 6}
QUICK_POOLS = DemoPoolSpec(small_shards=4, small_docs_per_shard=40, large_shards=8,
                           large_docs_per_shard=40, dev_docs=16)
QUICK_PROXY = {"budget": 24, "max_length": 128, "dev_limit": 4, "em_max_new_tokens": 8, "threads": 1,
               "device": "cpu"}


def _pools_done(cfg: DemoConfig, work: Path) -> bool:
    return all((work / "pools" / p / "pool.json").is_file() for p in POOLS)


def _run_pools(cfg: DemoConfig, work: Path) -> dict:
    spec = dataclasses.replace(QUICK_POOLS, seed=cfg.seed) if cfg.quick else DemoPoolSpec(seed=cfg.seed)
    for name in POOLS:
        write_demo_pool(work / "pools", name, spec)
    return {}


def _models_done(cfg: DemoConfig, work: Path) -> bool:
    return all((work / "models" / m / "causalmix_model.json").is_file() for m in ("proxy", "target"))


def _run_models(cfg: DemoConfig, work: Path) -> dict:
    quick = {}
    if cfg.quick:
        quick = {"proxy_spec": TinyModelSpec(pretrain_steps=20, pretrain_batch=8),
                 "target_spec": TinyModelSpec(hidden_size=96, num_layers=3, intermediate_size=256,
                                              pretrain_steps=20, pretrain_batch=8)}
    corpus = pretraining_corpus(random.Random(cfg.seed), **({"n_docs": 300} if cfg.quick else {}))
    build_model_family(work / "models", demo_texts_for_tokenizer(work / "pools" / "demo-small"),
                       corpus, vocab_size=cfg.tokenizer_vocab, seed=cfg.seed, **quick)
    return {}


def _features_done(cfg: DemoConfig, work: Path) -> bool:
    fingerprint = model_fingerprint(str((work / "models" / "proxy").resolve()))
    for name in POOLS:
        manifest = work / "features" / name / MANIFEST
        if not manifest.is_file() or json.loads(manifest.read_text())["model_fingerprint"] != fingerprint:
            return False
    return True


def _run_features(cfg: DemoConfig, work: Path) -> dict:
    records = featurize_pools([FeaturizeConfig(pool=str(work / "pools" / name), model=str(work / "models" / "proxy"),
                                               out=str(work / "features" / name)) for name in POOLS])
    return {name: {"docs": record["n_docs"], "wall_s": record["wall_s"]} for name, record in zip(POOLS, records)}


def _sweep_done(cfg: DemoConfig, work: Path) -> bool:
    summary = work / "runs" / "sweep.json"
    return summary.is_file() and json.loads(summary.read_text()).get("status") == "ok"


def _run_sweep(cfg: DemoConfig, work: Path) -> dict:
    """Dirichlet sweep of proxy SFT runs on demo-small; an interrupted one is resumed."""
    from causalmix.actors.sweep.driver import run_sweep

    out = work / "runs"
    summary = run_sweep(SweepConfig(
        pool=str(work / "pools" / SMALL), features=str(work / "features" / SMALL),
        out=str(out), runs=cfg.sweep_runs, seed=cfg.seed, adaptive=cfg.sweep_adaptive,
        adaptive_round=cfg.sweep_round, final_model=False,
        adaptive_fit={"estimator": SWEEP_FIT},
        proxy=ProxyConfig(model=str(work / "models" / "proxy"), **(QUICK_PROXY if cfg.quick else {})),
        # one or two of a domain's eight shards: a run's state is near one shard's damage rate,
        # so the runs reach the clean and the fully damaged ends where the target pools lie
        # (wider windows average the rates towards the middle, where no domain's return reverses)
        state=StateSamplerConfig(max_fraction=0.25), feature_names=FEATURES,
        cover=tuple(str(work / "features" / p) for p in TARGET_POOLS), resume=(out / CONFIG_FILE).is_file()))
    return {k: summary[k] for k in ("status", "runs_done", "best_y", "wall_s")}


FITTED = {"model": "auto", "model-regmix": "regmix", "model-no-dml": "regression",
          "model-no-covariates": None}
"""Estimator of each model directory; None: the one `auto` chose for model/, so that the
no-covariates ablation differs from CausalMix only by the covariates. `auto` picks by held-out
error; on the demo's runs it picks `regression`, whose returns follow the state, where the
forest's barely move and sieve-dml screens every covariate out (docs/validate.md)."""
SWEEP_FIT = "causal-forest"
"""Estimator of the sweep's adaptive rounds: one fit a round, fast (`auto` cross-validates
several and needs more runs per fold than the quick demo's rounds have)."""
NO_COVARIATES_RUNS = "runs-no-covariates.parquet"


def _fit_done(cfg: DemoConfig, work: Path) -> bool:
    return all((work / name / "model.json").is_file() for name in FITTED)


def _run_fit(cfg: DemoConfig, work: Path) -> dict:
    """Every model the later stages use, each fitted once on the sweep's runs table: CausalMix's
    (model/, the estimator `auto` picks: recommend, validate and report all read it), RegMix,
    and the ablations no-dml (the regression estimator) and no-covariates (model/'s estimator
    on the runs without their x.* columns, i.e. a state-agnostic fit)."""
    runs = work / "runs" / "runs.parquet"
    frame = pd.read_parquet(runs)
    atomic_write_parquet(work / "runs" / NO_COVARIATES_RUNS,
                         frame.drop(columns=[c for c in frame.columns if c.startswith(COV)]))
    out = {}
    for name, est in FITTED.items():
        source = work / "runs" / (NO_COVARIATES_RUNS if name == "model-no-covariates" else "runs.parquet")
        record = _fit_one(source, work / name, est or out["model"]["estimator"], cfg.seed, cfg.fit_jobs)
        out[name] = {k: v for k, v in record.items()
                     if k in ("estimator", "n_runs", "fit_s", "model_version", "treatment_featurizer", "fallback")}
    return out


def _fit_one(source: Path, out_dir: Path, est: str, seed: int, jobs: int) -> dict:
    from causalmix.causal.fitting import FitConfig, fit_and_save

    try:
        return fit_and_save(str(source), str(out_dir), FitConfig(estimator=est, seed=seed, jobs=jobs))
    except UserError as exc:
        if est == "auto":
            # too few runs to cross-validate the candidates (the quick demo's 24 with 4
            # covariates): the sweep's estimator, which fits on them
            record = fit_and_save(str(source), str(out_dir), FitConfig(estimator=SWEEP_FIT, seed=seed, jobs=jobs))
            return {**record, "fallback": str(exc)}
        if est != "regression":
            raise
    # One OLS with theta linear in 12 covariates needs 66 runs for the log treatment
    # features; the linear ones (K-1 per domain) fit on 53, within the demo's sweep.
    record = fit_and_save(str(source), str(out_dir),
                          FitConfig(estimator=est, seed=seed, treatment_featurizer="linear", jobs=jobs))
    return {**record, "treatment_featurizer": "linear"}


def _run_validate(cfg: DemoConfig, work: Path) -> dict:
    return demo_targets.run_validate(cfg, work, QUICK_PROXY if cfg.quick else {})


def _under(*names: str) -> Callable[[Path], list[Path]]:
    return lambda work: [work / n for n in names]


def _pool_files(work: Path) -> list[Path]:
    # not the pool's sizes.json: a cache the demo writes after every run
    return [work / "pools" / p / n for p in POOLS
            for n in ("pool.json", "manifest.yaml", "demo_profile.json", "shards", "dev")]


STAGES = (
    Stage("pools", _run_pools, _pools_done, _pool_files, settings=("seed", "quick")),
    Stage("models", _run_models, _models_done, _under("models/proxy", "models/target"), reads=("pools",),
          settings=("seed", "quick", "tokenizer_vocab")),
    Stage("features", _run_features, _features_done, _under(*(f"features/{p}" for p in POOLS)),
          reads=("pools", "models"), kept=("features",)),
    Stage("sweep", _run_sweep, _sweep_done, _under("runs/runs.parquet"), reads=("pools", "models", "features"),
          settings=("seed", "quick", "sweep_runs", "sweep_adaptive", "sweep_round"), kept=("runs",)),
    Stage("fit", _run_fit, _fit_done, _under(*FITTED), reads=("sweep",), settings=("seed",)),
    Stage("recommend", demo_targets.run_recommend, demo_targets.recommend_done,
          _under(demo_targets.RECOMMENDATION), reads=("fit", "features")),
    Stage("validate", _run_validate, demo_targets.validate_done, demo_targets.validation_outputs,
          reads=("pools", "models", "features", "sweep", "fit"),
          settings=("quick", "validate_seeds", "validate_budget", "validate_mixtures", "validate_grid"),
          kept=(demo_targets.VALIDATION,)),
    Stage("report", demo_targets.run_report, demo_targets.report_done, _under("report/report.md"),
          reads=("sweep", "fit", "validate")),
)
STAGE_NAMES = tuple(s.name for s in STAGES)


def _pool_sizes(work: Path) -> dict:
    """Documents and tokens (proxy tokenizer) per domain of each demo pool; cached per pool."""
    from transformers import AutoTokenizer

    tokenizer_dir = work / "models" / "proxy"
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir)) if tokenizer_dir.is_dir() else None
    sizes = {}
    for name in POOLS:
        pool = Pool.open(work / "pools" / name, build_if_needed=False)
        cache = pool.root / "sizes.json"
        if cache.is_file() and (tokenizer is None or "tokens" in json.loads(cache.read_text())["arithmetic"]):
            sizes[name] = json.loads(cache.read_text())
            continue
        per_domain = {}
        for domain in pool.domains:
            entry = {"docs": pool.n_docs(domain), "shards": len(pool.shards(domain))}
            if tokenizer is not None:
                frame = pool.read(domain)
                texts = (frame["prompt"] + frame["response"]).tolist()
                entry["tokens"] = sum(len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"])
            per_domain[domain] = entry
        atomic_write_json(cache, per_domain)
        sizes[name] = per_domain
    return sizes


FLAGS = ConfigFlags(DemoConfig, ("workdir", "until", "seed", "quick", "sweep_runs", "validate_seeds",
                                  "validate_mixtures", "validate_grid", "fit_jobs"),
                    options={"until": {"choices": STAGE_NAMES}, "validate_grid": {"metavar": "N"}})


def add_arguments(parser) -> None:
    FLAGS.add_config_argument(parser)
    FLAGS.add_to(parser)


RAY_STAGES = ("features", "sweep", "validate")
KIND_FILE = "demo_kind.json"


def _claim_workdir(cfg: DemoConfig) -> Path:
    """The workdir, refusing one that holds the other kind of demo (quick vs full)."""
    work = Path(cfg.workdir or ("causalmix-demo-quick" if cfg.quick else "causalmix-demo")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    marker = work / KIND_FILE
    if marker.is_file() and json.loads(marker.read_text()).get("quick") != cfg.quick:
        held = "a quick" if not cfg.quick else "a full"
        raise UserError(f"workdir {work} holds {held} demo ({marker}); use another --workdir")
    atomic_write_json(marker, {"quick": cfg.quick})
    return work


def run(args) -> int:
    import ray

    cfg = FLAGS.load(args)
    work = _claim_workdir(cfg)
    started_ray = False

    def start_ray(stage: Stage) -> None:
        nonlocal started_ray
        if stage.name in RAY_STAGES and not ray.is_initialized():
            # one small local Ray for every stage (the stages' own init_ray reuse it)
            init_ray(None)
            started_ray = True

    try:
        timings, results = run_stages(STAGES, cfg, work, until=cfg.until, before_run=start_ray)
    finally:
        if started_ray:
            ray.shutdown()
    summary = {"workdir": str(work), "quick": cfg.quick, "stage_seconds": timings,
               "pools": _pool_sizes(work), **{name: result for name, result in results.items() if result}}
    atomic_write_json(work / "demo_summary.json", summary)
    demo_targets.print_outcome(work)
    print(json.dumps(summary))
    return 0
