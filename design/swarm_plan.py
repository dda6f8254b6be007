"""`generate`: a sweep's runs as a plan for an outside trainer (docs/bring-your-own-trainer.md).

The plan is what `sweep` would propose with the same settings, made by the same code: the
sweep's inputs (datapool/sweep_inputs.py), its samplers and its proposer (design/sweep_design.py,
design/run_proposer.py). Run i of a plan is run i of the sweep: its mixture, data state and seed.

PLAN/ holds plan.parquet and its twin plan.csv (one row per run: run_id, index, round, seed,
sampler, mix.<domain>, state.<domain> = the shards it draws from, x.<domain>.<feature> = the
means of those shards' documents, budget, budget_unit), plan.json (config, versions, prior,
state-sampler settings, the runs still waiting for an adaptive round's fit) and
generate_config.yaml (what `--resume` and `collect` read). With `--export`, data/<run_id>/ holds
each run's documents (design/swarm_runs.py).

Adaptive plans, as in the sweep: the first `generate` writes every run that needs no fit; an
adaptive run of round r waits until the runs of rounds < r are in the collected runs table,
and `generate --resume` then fits that round's snapshot and adds it. No Ray.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from causalmix.design.run_proposer import LocalRoundSnapshots, RunProposer, run_id
from causalmix.design.sweep_design import SweepDesign, build_proposer, config_yaml, cover_targets
from causalmix.causal.covariates import covariate_name
from causalmix.causal.runs_table import MIX, read_frame
from causalmix.core.atomic import atomic_directory, atomic_write_json, atomic_write_parquet, atomic_write_text
from causalmix.core.config import load_config
from causalmix.core.errors import UserError
from causalmix.core.provenance import provenance
from causalmix.datapool.sweep_inputs import SweepInputs, load_sweep_inputs

PLAN_FILE, PLAN_CSV, RECORD_FILE, CONFIG_FILE = "plan.parquet", "plan.csv", "plan.json", "generate_config.yaml"
RUNS_FILE = "runs.parquet"
"""Where `collect` writes the runs table by default, and `generate --resume` reads it."""
STATE = "state."
EXTRA_COLUMNS = ("adaptive_round", "adaptive_fit_runs")
"""Columns an adaptive proposal adds (empty in the rows of prior draws)."""


@dataclass(frozen=True)
class GenerateConfig(SweepDesign):
    """Settings of `launch.py generate` (which runs: the same fields as `sweep`'s)."""

    out: str = ""
    """PLAN directory: plan.parquet, plan.csv, plan.json, generate_config.yaml (data/ with --export)."""
    export: bool = False
    """Also write each run's training documents to PLAN/data/<run_id>/, in `export`'s format."""
    resume: bool = False
    """Top up the plan in --out: add the adaptive runs that the collected runs now let be fitted."""
    runs_table: str = ""
    """With --resume: the collected runs table (empty: PLAN/runs.parquet, where `collect` writes)."""


IDENTITY = tuple(f.name for f in dataclasses.fields(SweepDesign))
"""The fields a resume must not change: every field that decides the runs."""


def read_saved_config(plan_dir: str | Path) -> GenerateConfig:
    path = Path(plan_dir) / CONFIG_FILE
    if not path.is_file():
        raise UserError(f"{plan_dir} holds no plan ({CONFIG_FILE} missing); run `generate` first")
    return load_config(GenerateConfig, path)


class StateCovariates:
    """x.<domain>.<feature> of a data state: the mean of each feature over the documents of the
    state's shards, from per-shard sums (a state is a few rows of sums, not a pass over documents)."""

    def __init__(self, inputs: SweepInputs):
        names = list(inputs.feature_names)
        self.features = names
        self.sums = {s: f[names].to_numpy(dtype=float).sum(axis=0) for s, f in inputs.shard_features.items()}
        self.counts = {s: len(f) for s, f in inputs.shard_features.items()}

    def of(self, state: dict[str, list[str]]) -> dict[str, float]:
        out = {}
        for domain, shards in state.items():
            means = sum(self.sums[s] for s in shards) / max(1, sum(self.counts[s] for s in shards))
            out.update({covariate_name(domain, f): float(v) for f, v in zip(self.features, means)})
        return out


def plan_frame(proposals: list[dict], cfg: GenerateConfig, covariates: StateCovariates) -> pd.DataFrame:
    rows = []
    for p in proposals:
        row = {"run_id": p["run_id"], "index": p["index"], "round": p["index"] // cfg.adaptive_round,
               "seed": p["seed"], "sampler": p["sampler"]}
        row.update({MIX + d: w for d, w in p["mixture"].items()})
        row.update({STATE + d: ",".join(names) for d, names in p["state"].items()})
        row.update(covariates.of(p["state"]))
        row.update(budget=cfg.proxy.budget, budget_unit=cfg.proxy.budget_unit, **p["extra"])
        rows.append(row)
    frame = pd.DataFrame(rows)
    for name in EXTRA_COLUMNS:
        if name in frame:
            frame[name] = frame[name].astype("Int64")  # empty for prior draws, whole otherwise
    return frame


def round_fit(cfg: GenerateConfig, domains: list[str]):
    """The sweep's fit of an adaptive round (the fit actor's, causal/streaming.py), in-process."""
    # deferred: the estimators import econml and scikit-learn (seconds), needed for adaptive plans only
    from causalmix.causal.fitting import FitConfig
    from causalmix.causal.streaming import PolicyTracker

    target = next(iter(cover_targets(cfg, domains).values()), None)
    tracker = PolicyTracker(config=FitConfig(**cfg.adaptive_fit), target_covariates=target)
    return tracker.round_snapshot


def new_proposer(cfg: GenerateConfig, inputs: SweepInputs) -> RunProposer:
    snapshots = LocalRoundSnapshots(round_fit(cfg, inputs.pool.domains)) if cfg.adaptive > 0 else None
    return build_proposer(cfg, inputs, snapshots)


def waiting(proposer: RunProposer) -> list[str]:
    """run_ids of the runs not in the plan yet (adaptive runs waiting for their round's fit)."""
    return [run_id(i) for i in range(proposer.n_runs) if i not in proposer.proposed]


def plan_record(cfg: GenerateConfig, proposer: RunProposer, inputs: SweepInputs, n_planned: int) -> dict:
    rounds = {str(r): (None if s is None else {k: s.get(k) for k in ("n_runs", "estimator", "policies")})
              for r, s in sorted(proposer.round_snapshots.items())}
    return provenance(cfg, runs_planned=n_planned, runs_total=cfg.runs, waiting=waiting(proposer),
                      prior=dict(zip(inputs.pool.domains, map(float, proposer.mixture_prior))),
                      state_sampler=proposer.state_sampler.settings(), round_fits=rounds,
                      model=cfg.proxy.model, files={"plan": PLAN_FILE, "csv": PLAN_CSV})


def write_plan_files(folder: Path, frame: pd.DataFrame, record: dict) -> None:
    atomic_write_text(folder / PLAN_CSV, frame.to_csv(index=False))
    atomic_write_json(folder / RECORD_FILE, record)
    atomic_write_parquet(folder / PLAN_FILE, frame)


def check_resume(cfg: GenerateConfig, out: Path) -> GenerateConfig:
    saved = read_saved_config(out)
    changed = [k for k in IDENTITY if getattr(saved, k) != getattr(cfg, k)]
    if changed:
        raise UserError(f"--resume: {', '.join(changed)} differ from the plan saved in {out / CONFIG_FILE}; "
                        "resume with the same settings or generate a new --out")
    return saved


def collected_rows(cfg: GenerateConfig, out: Path, plan: pd.DataFrame) -> dict[int, dict]:
    """{run index: row} of the plan's runs in the collected runs table."""
    path = Path(cfg.runs_table) if cfg.runs_table else out / RUNS_FILE
    table = read_frame(path, "--runs-table")
    for column in ("run_id", "y"):
        if column not in table:
            raise UserError(f"--runs-table {path}: missing column {column!r} (give `collect`'s output)")
    index = dict(zip(plan["run_id"].astype(str), plan["index"].astype(int)))
    return {index[str(r["run_id"])]: r for r in table.to_dict("records") if str(r["run_id"]) in index}


def generate(cfg: GenerateConfig, *, export_runs=None) -> dict:
    """Write (or, with `cfg.resume`, top up) the plan in `cfg.out`; returns plan.json's record.
    `export_runs(cfg, inputs, frame, out)`: writes the new rows' documents (`--export`)."""
    if not cfg.pool or not cfg.features or not cfg.out or not cfg.proxy.model:
        raise UserError("generate needs --pool, --features, --model and --out")
    out = Path(cfg.out)
    if cfg.resume:
        check_resume(cfg, out)
    elif (out / RECORD_FILE).exists():
        raise UserError(f"--out {out} already holds a plan; pass --resume to top it up or choose another --out")
    inputs = load_sweep_inputs(cfg.pool, cfg.features, cfg.feature_names)
    proposer = new_proposer(cfg, inputs)
    old = pd.read_parquet(out / PLAN_FILE) if cfg.resume else None
    if old is not None:
        proposer.proposed.update(int(i) for i in old["index"])
        proposer.rows.update(collected_rows(cfg, out, old))
        proposer.completed.update({i: float(r["y"]) for i, r in proposer.rows.items()})
    new = plan_frame(proposer.propose_ready(), cfg, StateCovariates(inputs))
    frame = new if old is None else pd.concat([old, new], ignore_index=True).sort_values("index", ignore_index=True)
    record = plan_record(cfg, proposer, inputs, len(frame))
    record["added"] = new["run_id"].tolist() if len(new) else []
    if old is not None:
        if len(new) and export_runs is not None:
            export_runs(cfg, inputs, new, out)
        write_plan_files(out, frame, record)
        return record
    with atomic_directory(out, kind="plan folder", markers=(RECORD_FILE,)) as tmp:
        atomic_write_text(tmp / CONFIG_FILE, config_yaml(cfg, drop=("out", "resume", "runs_table")))
        if export_runs is not None:
            export_runs(cfg, inputs, new, tmp)
        write_plan_files(tmp, frame, record)
    return record


def read_plan(plan_dir: str | Path) -> tuple[GenerateConfig, pd.DataFrame]:
    """The saved config and the plan's rows."""
    cfg = read_saved_config(plan_dir)
    path = Path(plan_dir) / PLAN_FILE
    if not path.is_file():
        raise UserError(f"{plan_dir}: {PLAN_FILE} missing; run `generate` first")
    frame = pd.read_parquet(path)
    return cfg, frame.assign(run_id=frame["run_id"].astype(str), seed=frame["seed"].astype(np.int64))
