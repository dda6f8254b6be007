"""The demo's stages that work per target pool: recommend, validate, report.

The demo validates on two target pools whose data states point opposite ways
(datapool/demo.py: demo-large and demo-large-flip), so a state-agnostic mixture cannot be
best on both: each gets CausalMix's recommendation from its own features, its own
validation folder (`validation/POOL/`) and its own verdict in the report and the summary.
"""
from __future__ import annotations

import json
from pathlib import Path

from causalmix.actors.validate.driver import ValidateConfig, run_validation
from causalmix.causal.covariates import covariates_from_features
from causalmix.core.atomic import atomic_write_json
from causalmix.datapool.demo import TARGET_POOLS
from causalmix.features.features_io import read_features
from causalmix.reporting.report import write_report
from causalmix.validation.runs import SETTINGS_FILE

# Deferred on purpose, so that importing this module does not load scikit-learn and scipy: the
# function-local imports (of these libraries or of this project's modules that import them).

RECOMMENDATION = "recommendation.json"
VALIDATION = "validation"


def validation_dir(work: Path, pool: str) -> Path:
    return work / VALIDATION / pool


def recommend_done(cfg, work: Path) -> bool:
    path = work / RECOMMENDATION
    return path.is_file() and set(json.loads(path.read_text())) == set(TARGET_POOLS)


def run_recommend(cfg, work: Path) -> dict:
    """CausalMix-A and -S for each target pool, from its features alone (no proxy run on it)."""
    from causalmix.causal.model_dir import load_model_dir

    model = load_model_dir(work / "model")
    recs = {}
    for pool in TARGET_POOLS:
        covariates = covariates_from_features(str(work / "features" / pool), model.covariate_names)
        recs[pool] = {policy: model.recommend(covariates, policy=policy) for policy in ("analytic", "search")}
    atomic_write_json(work / RECOMMENDATION, recs)
    return {pool: {p: {"mixture": {d: round(w, 4) for d, w in r["mixture"].items()},
                       "expected_gain": r["expected_gain"], "interval": r["interval"]} for p, r in by_policy.items()}
            for pool, by_policy in recs.items()}


def run_tokens(features_dir: Path, budget_docs: int) -> float:
    """Tokens a validation run of `budget_docs` documents trains on at the pool's mean document
    length: the budget the validated mixtures' epoch caps are meant for."""
    tokens = read_features(features_dir)["n_tokens"]
    return float(budget_docs * tokens.mean())


def validate_done(cfg, work: Path) -> bool:
    return all((validation_dir(work, pool) / "summary.json").is_file() for pool in TARGET_POOLS)


def run_validate(cfg, work: Path, quick_proxy: dict) -> dict:
    """The target model trained on each target pool with each mixture, paired seeds."""
    out = {}
    for pool in TARGET_POOLS:
        vdir = validation_dir(work, pool)
        summary = run_validation(ValidateConfig(
            model=str(work / "model"), regmix_model=str(work / "model-regmix"),
            no_dml_model=str(work / "model-no-dml"), no_covariates_model=str(work / "model-no-covariates"),
            runs=str(work / "runs" / "runs.parquet"), grid=cfg.validate_grid,
            pool=str(work / "pools" / pool), features=str(work / "features" / pool),
            target_model=str(work / "models" / "target"), out=str(vdir),
            mixtures=cfg.validate_mixtures, seeds=cfg.validate_seeds,
            # the caps are for what a run trains on, not for the whole pool: at the pool's total
            # they bound the short domains' weights so tightly that the methods' mixtures
            # coincide there (the previous demo: arithmetic .434, dialog .221 for three methods)
            target_tokens=run_tokens(work / "features" / pool, cfg.validate_budget),
            # an interrupted validation with the same inputs (the stage's record) keeps its runs
            resume=(vdir / SETTINGS_FILE).is_file(),
            proxy={**quick_proxy, "budget": cfg.validate_budget}), overwrite=True)
        cands = summary["candidates"]
        out[pool] = {"best": summary["best"], "verdict": summary["verdict"], "caps": summary.get("caps", []),
                     "mixtures": {k: {d: round(w, 4) for d, w in v["mixture"].items()} for k, v in cands.items()},
                     "avgdev_mean": {k: round(v["avgdev_mean"], 4) for k, v in cands.items()},
                     "y_mean": {k: round(v["y_mean"], 4) for k, v in cands.items()}}
    return out


def validation_outputs(work: Path) -> list[Path]:
    return [validation_dir(work, pool) / name for pool in TARGET_POOLS
            for name in ("summary.json", "validation.parquet")]


def report_done(cfg, work: Path) -> bool:
    return (work / "report" / "report.md").is_file()


def run_report(cfg, work: Path) -> dict:
    summary = write_report(work / "runs", work / "report", model_dir=work / "model",
                           validation_dir=[validation_dir(work, pool) for pool in TARGET_POOLS], jobs=cfg.fit_jobs)
    return {"report": str(work / "report" / "report.md"), "figures": summary["figures"],
            "verdict_per_pool": summary.get("verdict_per_pool", {})}


def print_outcome(work: Path) -> None:
    for pool in TARGET_POOLS:
        table = validation_dir(work, pool) / "table.md"
        if table.is_file():
            print(f"\n## Validation on {pool} ({table})\n\n{table.read_text(encoding='utf-8')}")
    report = work / "report" / "report.md"
    if report.is_file():
        print(f"report: {report}\n")
