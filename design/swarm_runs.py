"""A plan's runs trained elsewhere: each run's documents for the outside trainer (`generate
--export`) and its results collected into the runs table (`collect`). No Ray.

Both go through the sweep's own draw (`proxy.run.draw_run`): the documents `--export` writes
are those a sweep trial of the same run trains on, and `collect` averages the covariates over
them as the sweep does (`proxy.run.run_covariates`), so a collected table has the sweep's
mixtures and covariates, and the outside trainer's outcomes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from causalmix.causal.runs_table import COV, METRIC, MIX, read_frame, validate_runs_frame
from causalmix.core.atomic import atomic_write_parquet
from causalmix.core.errors import UserError
from causalmix.datapool.export import FORMAT, write_training_set
from causalmix.datapool.sweep_inputs import SweepInputs, load_sweep_inputs
from causalmix.design.swarm_plan import EXTRA_COLUMNS, RUNS_FILE, STATE, GenerateConfig, read_plan
from causalmix.lm.loading import load_tokenizer
from causalmix.proxy.evaluate import outcome
from causalmix.proxy.run import RunSpec, draw_run, run_covariates

EXPORT_DIR = "data"
PLAN_OWNED = (MIX, COV, STATE, "docs.")
"""Column prefixes the plan and the draw decide: an outside trainer's results may not give them."""


def run_spec(row: dict, domains: list[str]) -> RunSpec:
    """A plan row as the RunSpec a sweep trial of that run gets."""
    extra = {k: int(row[k]) for k in EXTRA_COLUMNS if k in row and not pd.isna(row[k])}
    return RunSpec(run_id=str(row["run_id"]), mixture={d: float(row[MIX + d]) for d in domains},
                   state={d: tuple(str(row[STATE + d]).split(",")) for d in domains},
                   seed=int(row["seed"]), sampler=str(row["sampler"]), extra=extra)


def plan_domains(frame: pd.DataFrame) -> list[str]:
    return [c[len(MIX):] for c in frame.columns if c.startswith(MIX)]


class RunDraws:
    """Each planned run's documents, drawn as the sweep draws them, with the pool's data."""

    def __init__(self, cfg: GenerateConfig, inputs: SweepInputs | None = None):
        self.cfg = cfg
        self.inputs = inputs or load_sweep_inputs(cfg.pool, cfg.features, cfg.feature_names)
        self.tokenizer = load_tokenizer(cfg.proxy.model)

    def draw(self, spec: RunSpec):
        return draw_run(self.cfg.proxy, spec, self.inputs.shards, self.tokenizer)[0]

    def covariates(self, spec: RunSpec, sample) -> dict[str, float]:
        return run_covariates(spec, sample, shards=self.inputs.shards, features=self.inputs.features,
                              feature_names=self.cfg.feature_names)

    def documents(self, spec: RunSpec, sample) -> pd.DataFrame:
        """The drawn documents in draw order: doc_id, domain, prompt, response, is_text, `epoch`
        (0-based pass over the run's state of that domain) and `n_tokens` (after the cut to
        max_length, as the proxy trains them)."""
        shards = self.inputs.shards
        rows = []
        for domain in spec.mixture:
            picked = [i for i, d in enumerate(sample.domains) if d == domain]
            if not picked:
                continue
            docs = pd.concat([shards[n] for n in spec.state[domain]], ignore_index=True)
            by_id = docs.drop_duplicates("doc_id").set_index("doc_id")
            part = by_id.loc[[sample.doc_ids[i] for i in picked]].reset_index()
            part.insert(1, "domain", domain)
            part["epoch"] = np.arange(len(picked)) // len(docs)
            part["n_tokens"] = [len(sample.docs[i].input_ids) for i in picked]
            rows.append(part)
        return pd.concat(rows, ignore_index=True)


def export_runs(cfg: GenerateConfig, inputs: SweepInputs, plan: pd.DataFrame, out: Path) -> None:
    """Write each run of `plan` to out/data/<run_id>/ in `export`'s format (datapool/export.py)."""
    draws = RunDraws(cfg, inputs)
    domains = plan_domains(plan)
    for row in plan.to_dict("records"):
        spec = run_spec(row, domains)
        sample = draws.draw(spec)
        record = {"format": FORMAT, "pool": inputs.pool.name, "run_id": spec.run_id, "seed": spec.seed,
                  "documents": len(sample.doc_ids), "tokens": int(sum(sample.tokens.values())),
                  "token_counter": {"kind": "tokenizer", "path": cfg.proxy.model,
                                    "rule": f"token ids of the proxy's encoding, cut to {cfg.proxy.max_length}"},
                  "domains": {d: {"weight": spec.mixture[d], "documents": sample.counts[d],
                                  "tokens": sample.tokens[d], "passes": sample.passes[d],
                                  "shards": list(spec.state[d])} for d in domains}}
        write_training_set(out / EXPORT_DIR / spec.run_id, draws.documents(spec, sample), record)


@dataclass(frozen=True)
class CollectConfig:
    """Settings of `launch.py collect`."""

    plan: str = ""
    """PLAN directory written by `generate`."""
    results: str = ""
    """The outside trainer's results (CSV or Parquet): `run_id` and metric.<name> columns and/or `y`."""
    out: str = ""
    """Runs table to write (empty: PLAN/runs.parquet, which `generate --resume` reads)."""


def read_results(path: str, plan_ids: list[str]) -> tuple[pd.DataFrame, list[str]]:
    """The results, checked against the plan; (frame, run_ids of the plan missing from it)."""
    where = f"--results {path}"
    results = read_frame(path, "--results")
    if "run_id" not in results:
        raise UserError(f"{where}: missing column 'run_id'")
    results = results.assign(run_id=results["run_id"].astype(str))
    duplicated = sorted(set(results.loc[results["run_id"].duplicated(), "run_id"]))
    if duplicated:
        raise UserError(f"{where}: run_id(s) given more than once: {duplicated[:5]}")
    extra = sorted(set(results["run_id"]) - set(plan_ids))
    if extra:
        raise UserError(f"{where}: run_id(s) not in the plan: {extra[:10]}"
                        + (f" and {len(extra) - 10} more" if len(extra) > 10 else ""))
    owned = [c for c in results.columns if c.startswith(PLAN_OWNED) or c in ("seed", "sampler")]
    if owned:
        raise UserError(f"{where}: columns {owned} are the plan's, not the trainer's; drop them")
    if "y" not in results and not any(c.startswith(METRIC) for c in results.columns):
        raise UserError(f"{where}: no outcome: give metric.<name> columns (y follows the plan's objective) "
                        "or a `y` column (higher is better)")
    missing = [r for r in plan_ids if r not in set(results["run_id"])]
    return results, missing


def outcome_of(result: dict, cfg: GenerateConfig) -> dict:
    """y and y_objective of one result: its own `y` when given, else the plan's objective of its
    metric.* values (what a sweep trial computes)."""
    objective = cfg.proxy.objective_spec()
    if "y" in result and not (isinstance(result["y"], float) and math.isnan(result["y"])):
        return {"y": float(result["y"]), "y_objective": result.get("y_objective", "given by the trainer")}
    metrics = {k: v for k, v in result.items() if k.startswith(METRIC)}
    return {"y": outcome(metrics, objective), "y_objective": objective.dumps()}


def collected_row(spec: RunSpec, result: dict, draws: RunDraws) -> dict:
    """The runs-table row of a planned run and its result, in the sweep's column layout."""
    sample = draws.draw(spec)
    row = {"run_id": spec.run_id, **{MIX + d: w for d, w in spec.mixture.items()},
           **draws.covariates(spec, sample)}
    row.update({k: v for k, v in result.items() if k.startswith(METRIC)})
    row.update(outcome_of(result, draws.cfg))
    row.update({"seed": spec.seed, "model": draws.cfg.proxy.model, "status": "ok", "sampler": spec.sampler})
    row.update({k: v for k, v in result.items() if k not in row and k != "run_id"})
    row.update({f"docs.{d}": int(n) for d, n in sample.counts.items()})
    row.update({f"{STATE}{d}": ",".join(names) for d, names in spec.state.items()})
    row.update(spec.extra)
    return row


def collect(config: CollectConfig) -> dict:
    """Join the results onto the plan into a runs table; returns what was written and missing."""
    if not config.plan or not config.results:
        raise UserError("collect needs PLAN and --results")
    cfg, plan = read_plan(config.plan)
    results, missing = read_results(config.results, plan["run_id"].tolist())
    if results.empty:
        raise UserError(f"--results {config.results}: no runs")
    draws = RunDraws(cfg)
    domains = plan_domains(plan)
    by_id = {r["run_id"]: r for r in results.to_dict("records")}
    rows = [collected_row(run_spec(row, domains), by_id[row["run_id"]], draws)
            for row in plan.to_dict("records") if row["run_id"] in by_id]
    out = Path(config.out) if config.out else Path(config.plan) / RUNS_FILE
    table = validate_runs_frame(pd.DataFrame(rows), where=f"runs collected from {config.results}")
    atomic_write_parquet(out, pd.DataFrame(rows))
    return {"out": str(out), "runs": table.n_runs, "planned": len(plan), "missing": missing}
