"""`demo`: the whole CausalMix pipeline on the embedded default (local Ray, tiny models, demo pools).

Everything lands under `--workdir` (default ./causalmix-demo):
  pools/demo-small/, pools/demo-large/   manifest.yaml beside its shards
  models/proxy/, models/target/          tiny Qwen2 models (save_pretrained format)
  features/demo-small/, features/demo-large/   per-document features (reference: proxy)
  runs/                                  the sweep on demo-small (runs.parquet, policy.jsonl)
  model/, model-regmix/                  CausalMix's model and the RegMix baseline
  recommendation.json                    mixtures for demo-large from its features alone
  validation/                            the target model trained on demo-large per mixture
  report/                                report.md and its figures
Each stage is skipped when its output is already complete, so a rerun resumes;
`--until STAGE` stops after that stage.
"""
from __future__ import annotations

import json
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from core.atomic import atomic_write_json
from core.config import load_config
from datapool.demo import DemoPoolSpec, demo_texts_for_tokenizer, write_demo_pool
from datapool.demo_sources import pretraining_corpus
from datapool.pool import Pool
from lm.tiny import build_model_family

HELP = "run the pipeline end to end on the embedded default (local Ray, tiny models, demo pools)"
POOLS = ("demo-small", "demo-large")


@dataclass(frozen=True)
class DemoConfig:
    """Settings of `launch.py demo`."""

    workdir: str = "causalmix-demo"
    """Folder that keeps everything the demo makes."""
    until: str | None = None
    """Stop after this stage (None: run every stage that exists)."""
    seed: int = 0
    """Seed of the pools, models and sweep."""
    tokenizer_vocab: int = 2048
    """Vocabulary of the tiny models' byte-level BPE tokenizer."""
    sweep_runs: int = 40
    """Proxy runs of the demo sweep (the causal forest needs 34 for 4 domains x 12 covariates)."""
    validate_seeds: int = 2
    """Seeds per mixture when the target model is trained on demo-large."""
    validate_budget: int = 800
    """Documents per target training run in validation."""

    def __post_init__(self):
        if self.until is not None and self.until not in STAGE_NAMES:
            raise ValueError(f"until: unknown stage {self.until!r}; stages are {list(STAGE_NAMES)}")
        for name in ("sweep_runs", "validate_seeds", "validate_budget"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.tokenizer_vocab < 300:
            raise ValueError(f"tokenizer_vocab must be >= 300 (256 bytes + specials), got {self.tokenizer_vocab}")


@dataclass(frozen=True)
class Stage:
    name: str
    run: Callable[[DemoConfig, Path], dict]
    done: Callable[[DemoConfig, Path], bool]


def _pools_done(cfg: DemoConfig, work: Path) -> bool:
    return all((work / "pools" / p / "pool.json").is_file() for p in POOLS)


def _run_pools(cfg: DemoConfig, work: Path) -> dict:
    spec = DemoPoolSpec(seed=cfg.seed)
    for name in POOLS:
        write_demo_pool(work / "pools", name, spec)
    return {}


def _models_done(cfg: DemoConfig, work: Path) -> bool:
    return all((work / "models" / m / "causalmix_model.json").is_file() for m in ("proxy", "target"))


def _run_models(cfg: DemoConfig, work: Path) -> dict:
    build_model_family(work / "models", demo_texts_for_tokenizer(work / "pools" / "demo-small"),
                       pretraining_corpus(random.Random(cfg.seed)), vocab_size=cfg.tokenizer_vocab,
                       seed=cfg.seed)
    return {}


def _features_done(cfg: DemoConfig, work: Path) -> bool:
    from causal.features_io import MANIFEST, model_fingerprint

    fingerprint = model_fingerprint(str((work / "models" / "proxy").resolve()))
    for name in POOLS:
        manifest = work / "features" / name / MANIFEST
        if not manifest.is_file() or json.loads(manifest.read_text())["model_fingerprint"] != fingerprint:
            return False
    return True


def _run_features(cfg: DemoConfig, work: Path) -> dict:
    from commands.featurize import FeaturizeConfig, featurize

    out = {}
    for name in POOLS:
        record = featurize(FeaturizeConfig(pool=str(work / "pools" / name),
                                           model=str(work / "models" / "proxy"),
                                           out=str(work / "features" / name)))
        out[name] = {"docs": record["n_docs"], "wall_s": record["wall_s"]}
    return out


def _sweep_done(cfg: DemoConfig, work: Path) -> bool:
    summary = work / "runs" / "sweep.json"
    return summary.is_file() and json.loads(summary.read_text()).get("status") == "ok"


def _run_sweep(cfg: DemoConfig, work: Path) -> dict:
    """Dirichlet sweep of proxy SFT runs on demo-small; an interrupted one is resumed."""
    from actors.sweep import CONFIG_FILE, SweepConfig, run_sweep
    from proxy.config import ProxyConfig

    out = work / "runs"
    summary = run_sweep(SweepConfig(
        pool=str(work / "pools" / "demo-small"), features=str(work / "features" / "demo-small"),
        out=str(out), runs=cfg.sweep_runs, seed=cfg.seed,
        proxy=ProxyConfig(model=str(work / "models" / "proxy")),
        cover=(str(work / "features" / "demo-large"),), resume=(out / CONFIG_FILE).is_file()))
    return {k: summary[k] for k in ("status", "runs_done", "best_y", "wall_s")}


FITTED = {"model": "causal-forest", "model-regmix": "regmix"}


def _fit_done(cfg: DemoConfig, work: Path) -> bool:
    return all((work / name / "model.json").is_file() for name in FITTED)


def _run_fit(cfg: DemoConfig, work: Path) -> dict:
    """The CausalMix model and the RegMix baseline, both fitted on the sweep's runs table."""
    from causal.fitting import FitConfig
    from commands.fit import fit_and_save

    return {name: {k: v for k, v in fit_and_save(str(work / "runs" / "runs.parquet"), str(work / name),
                                               FitConfig(estimator=est, seed=cfg.seed)).items()
                   if k in ("estimator", "n_runs", "fit_s", "model_version")}
            for name, est in FITTED.items()}


def _recommend_done(cfg: DemoConfig, work: Path) -> bool:
    return (work / "recommendation.json").is_file()


def _run_recommend(cfg: DemoConfig, work: Path) -> dict:
    """CausalMix-A and -S for demo-large, from its features alone (no proxy run on it)."""
    from causal.model_dir import load_model_dir
    from commands.recommend import covariates_from_features

    model = load_model_dir(work / "model")
    covariates = covariates_from_features(str(work / "features" / "demo-large"), model.covariate_names)
    recs = {policy: model.recommend(covariates, policy=policy) for policy in ("analytic", "search")}
    atomic_write_json(work / "recommendation.json", recs)
    return {p: {"mixture": {d: round(w, 4) for d, w in r["mixture"].items()},
                "expected_gain": r["expected_gain"], "interval": r["interval"]} for p, r in recs.items()}


def _validate_done(cfg: DemoConfig, work: Path) -> bool:
    return (work / "validation" / "summary.json").is_file()


def _run_validate(cfg: DemoConfig, work: Path) -> dict:
    """The target model trained on demo-large with each mixture: CausalMix vs the baselines."""
    from actors.validation import ValidateConfig, run_validation

    summary = run_validation(ValidateConfig(
        model=str(work / "model"), regmix_model=str(work / "model-regmix"),
        pool=str(work / "pools" / "demo-large"), features=str(work / "features" / "demo-large"),
        target_model=str(work / "models" / "target"), out=str(work / "validation"),
        seeds=cfg.validate_seeds, proxy={"budget": cfg.validate_budget}))
    return {"best": summary["best"], "y_mean": {k: round(v["y_mean"], 4) for k, v in summary["candidates"].items()}}


def _report_done(cfg: DemoConfig, work: Path) -> bool:
    return (work / "report" / "report.md").is_file()


def _run_report(cfg: DemoConfig, work: Path) -> dict:
    from reporting.report import write_report

    summary = write_report(work / "runs", work / "report", validation_dir=work / "validation")
    return {"report": str(work / "report" / "report.md"), "figures": summary["figures"]}


STAGES = (
    Stage("pools", _run_pools, _pools_done),
    Stage("models", _run_models, _models_done),
    Stage("features", _run_features, _features_done),
    Stage("sweep", _run_sweep, _sweep_done),
    Stage("fit", _run_fit, _fit_done),
    Stage("recommend", _run_recommend, _recommend_done),
    Stage("validate", _run_validate, _validate_done),
    Stage("report", _run_report, _report_done),
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


def add_arguments(parser) -> None:
    parser.add_argument("--config", default=None, help="YAML file with DemoConfig fields")
    parser.add_argument("--workdir", default=None, help="folder for everything the demo makes "
                        "(default: causalmix-demo)")
    parser.add_argument("--until", default=None, choices=STAGE_NAMES, help="stop after this stage")
    parser.add_argument("--seed", type=int, default=None, help="seed (default 0)")
    parser.add_argument("--sweep-runs", dest="sweep_runs", type=int, default=None,
                        help="proxy runs of the demo sweep (default 40)")


def run(args) -> int:
    cfg = load_config(DemoConfig, args.config, vars(args))
    work = Path(cfg.workdir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    timings, results = {}, {}
    for stage in STAGES:
        if stage.done(cfg, work):
            print(f"[demo] {stage.name}: already done, reusing {work}", file=sys.stderr)
            timings[stage.name] = "reused"
        else:
            print(f"[demo] {stage.name}: running", file=sys.stderr)
            start = time.perf_counter()
            results[stage.name] = stage.run(cfg, work)
            timings[stage.name] = round(time.perf_counter() - start, 1)
        if stage.name == cfg.until:
            break
    summary = {"workdir": str(work), "stage_seconds": timings, "pools": _pool_sizes(work),
               **{name: result for name, result in results.items() if result}}
    atomic_write_json(work / "demo_summary.json", summary)
    print(json.dumps(summary))
    return 0
