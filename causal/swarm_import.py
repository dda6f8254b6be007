"""Other tools' swarms into the runs table (causal/runs_table.py): Olmix CSVs or any table.

Two inputs:
  * Olmix-style: `ratios.csv` (one row per run: the run column, then one weight column per
    domain) and `metrics.csv` (the run column, then one column per metric), joined on the run
    column. Olmix also writes `name` and `index` bookkeeping columns; they are ignored.
  * One CSV/Parquet whose weight and metric columns are chosen by glob patterns, e.g.
    weights 'mix_*' and metrics 'eval/*'; the part matched by a single '*' names the domain or
    metric ('mix_code' -> domain 'code'), otherwise the whole column name does.

y is the chosen target metric (or the mean of all metrics), negated when lower is better (loss,
bits per byte), so that y is "higher is better" as the runs table requires.
"""
from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from causalmix.causal.objective import Objective, ObjectiveTerm
from causalmix.causal.runs_table import METRIC, MIX, read_frame, validate_runs_frame
from causalmix.core.config import read_yaml_mapping
from causalmix.core.errors import UserError

RUN_COLUMN_CANDIDATES = ("run", "run_id", "run_name", "id")
# bookkeeping columns Olmix writes beside the weights / metrics: never a domain or a metric
OLMIX_BOOKKEEPING = ("name", "index", "Unnamed: 0")


def _name_rows(ids: Sequence, limit: int = 5) -> str:
    ids = [str(i) for i in ids]
    return ", ".join(ids[:limit]) + (f" and {len(ids) - limit} more" if len(ids) > limit else "")


def find_run_column(frame: pd.DataFrame, where: str, run_column: str | None) -> str:
    if run_column is not None:
        if run_column not in frame.columns:
            raise UserError(f"{where}: no run column {run_column!r} (columns: {list(frame.columns)[:20]})")
        return run_column
    for cand in RUN_COLUMN_CANDIDATES:
        if cand in frame.columns:
            return cand
    raise UserError(f"{where}: no run column (looked for {list(RUN_COLUMN_CANDIDATES)}); "
                    "name it with --run-column")


def _check_run_ids(frame: pd.DataFrame, col: str, where: str) -> pd.Series:
    ids = frame[col]
    missing = ids.isna()
    if missing.any():
        # no run id to name them by: 1-based data rows (a CSV's line number minus its header)
        rows = (np.flatnonzero(missing) + 1).tolist()
        raise UserError(f"{where}: empty {col!r} in data rows {_name_rows(rows)}")
    ids = ids.astype(str)
    dup = ids[ids.duplicated(keep=False)]
    if len(dup):
        raise UserError(f"{where}: duplicate run ids in column {col!r}: {_name_rows(sorted(set(dup)))}")
    return ids


def select_columns(columns: Sequence[str], pattern: str | None, exclude: Sequence[str],
                   where: str, what: str) -> dict[str, str]:
    """{column: short name} of the columns matching `pattern` (all but `exclude` if None)."""
    columns = [str(c) for c in columns]
    if pattern is None:
        chosen = {c: c for c in columns if c not in exclude}
    else:
        # one '*' -> its match names the column; otherwise the full column name does
        capture = pattern.count("*") == 1 and not any(ch in pattern for ch in "?[")
        regex = (re.compile("^" + re.escape(pattern).replace(r"\*", "(.*)") + "$") if capture else None)
        chosen = {}
        for c in columns:
            if c in exclude or not fnmatch.fnmatchcase(c, pattern):
                continue
            chosen[c] = regex.match(c).group(1) if regex else c
    if not chosen:
        raise UserError(f"{where}: no {what} columns" + (f" match {pattern!r}" if pattern else "")
                        + f" (columns: {columns[:20]})")
    names = list(chosen.values())
    clash = sorted({n for n in names if names.count(n) > 1 or n == ""})
    if clash:
        raise UserError(f"{where}: {what} columns give empty or repeated names {clash}; use a pattern "
                        "whose '*' matches a distinct non-empty part")
    return chosen


def _numeric(frame: pd.DataFrame, col: str, ids: pd.Series, where: str, what: str) -> pd.Series:
    values = pd.to_numeric(frame[col], errors="coerce")
    bad = values.isna() & frame[col].notna()
    if bad.any():
        raise UserError(f"{where}: {what} column {col!r} is not numeric in runs "
                        f"{_name_rows(ids[bad].tolist())} (e.g. {frame.loc[bad, col].iloc[0]!r})")
    return values.astype(float)


def swarm_frame(weights: pd.DataFrame, metrics: pd.DataFrame, *, run_col_w: str, run_col_m: str,
                weight_cols: dict[str, str], metric_cols: dict[str, str], target: str,
                lower_is_better: bool, where_w: str, where_m: str, source: str) -> pd.DataFrame:
    """Join weights and metrics on the run ids and map them into a validated runs frame."""
    ids_w = _check_run_ids(weights, run_col_w, where_w)
    ids_m = _check_run_ids(metrics, run_col_m, where_m)
    only_w = sorted(set(ids_w) - set(ids_m))
    only_m = sorted(set(ids_m) - set(ids_w))
    if only_w or only_m:
        parts = []
        if only_w:
            parts.append(f"runs with weights but no metrics: {_name_rows(only_w)}")
        if only_m:
            parts.append(f"runs with metrics but no weights: {_name_rows(only_m)}")
        raise UserError(f"{where_w} and {where_m} do not join on the run column: " + "; ".join(parts))
    columns = {"run_id": ids_w.to_numpy()}
    for col, domain in weight_cols.items():
        columns[MIX + domain] = _numeric(weights, col, ids_w, where_w, "weight").to_numpy()
    order = pd.Series(np.arange(len(ids_m)), index=ids_m.to_numpy())[ids_w.to_numpy()].to_numpy()
    metric_values = {}
    for col, name in metric_cols.items():
        values = _numeric(metrics, col, ids_m, where_m, "metric").to_numpy()[order]
        metric_values[name] = values
        columns[METRIC + name] = values
    # built at once: a swarm has a hundred metric columns, and inserting them one by one warns
    out = pd.DataFrame(columns)
    if target == "mean":
        y = pd.DataFrame(metric_values).mean(axis=1, skipna=False).to_numpy()
    elif target in metric_values:
        y = metric_values[target]
    elif target in metric_cols:
        y = metric_values[metric_cols[target]]
    else:
        raise UserError(f"--target {target!r} is not one of the metrics {sorted(metric_values)} (or 'mean')")
    out = out.assign(y=-y if lower_is_better else y, status="ok", source=source)
    missing_y = ~np.isfinite(out["y"].to_numpy())
    if missing_y.any():
        raise UserError(f"{where_m}: target {target!r} is missing or non-finite for runs "
                        f"{_name_rows(out.loc[missing_y, 'run_id'].tolist())}")
    # weights rounded to a few decimals are renormalised with a warning; beyond 1 % it is an error
    # that names the rows (validate_mixtures)
    return validate_runs_frame(out, where=f"imported swarm ({source})", drop_unused=False).frame


def import_olmix(ratios_csv: str | Path, metrics_csv: str | Path, *, target: str,
                 lower_is_better: bool = True, run_column: str | None = None,
                 weights: str | None = None, metrics: str | None = None) -> pd.DataFrame:
    """Olmix-style `ratios.csv` + `metrics.csv`, joined on the run column."""
    where_w, where_m = f"ratios file {ratios_csv}", f"metrics file {metrics_csv}"
    w = read_frame(ratios_csv, "ratios file")
    m = read_frame(metrics_csv, "metrics file")
    rw = find_run_column(w, where_w, run_column)
    rm = find_run_column(m, where_m, run_column)
    wcols = select_columns(w.columns, weights, (rw, *OLMIX_BOOKKEEPING), where_w, "weight")
    mcols = select_columns(m.columns, metrics, (rm, *OLMIX_BOOKKEEPING), where_m, "metric")
    return swarm_frame(w, m, run_col_w=rw, run_col_m=rm, weight_cols=wcols, metric_cols=mcols,
                       target=target, lower_is_better=lower_is_better, where_w=where_w,
                       where_m=where_m, source=Path(ratios_csv).name)


def import_table(path: str | Path, *, weights: str, metrics: str, target: str,
                 lower_is_better: bool = True, run_column: str | None = None) -> pd.DataFrame:
    """One CSV/Parquet with weight and metric columns chosen by glob patterns."""
    where = f"swarm table {path}"
    frame = read_frame(path, "swarm table")
    rc = find_run_column(frame, where, run_column)
    wcols = select_columns(frame.columns, weights, (rc,), where, "weight")
    mcols = select_columns(frame.columns, metrics, (rc, *wcols), where, "metric")
    return swarm_frame(frame, frame, run_col_w=rc, run_col_m=rc, weight_cols=wcols,
                       metric_cols=mcols, target=target, lower_is_better=lower_is_better,
                       where_w=where, where_m=where, source=Path(path).name)


# Olmix collapses MMLU's 57 subjects into 4 categories (stem, humanities, social sciences, other)
# before it averages a task family, so MMLU counts as 4 tasks of its family, not 57
OLMIX_MMLU_PREFIX = "mmlu_"
OLMIX_MMLU_TASKS = 4


@dataclass(frozen=True)
class OlmixFamilies:
    """Olmix's objective from its fit config: a weighted sum of task-family mean metrics."""

    tasks: dict[str, dict[str, float]]
    """{family: {metric: its weight in the family mean (they sum to 1)}}."""
    weights: dict[str, float]
    """{family: its weight in the objective (they sum to 1)}: the config's `obj_weights`."""

    def objective(self) -> Objective:
        """y = -(sum_f weight_f * family mean_f): the config's objective, higher is better."""
        return Objective(metrics=tuple(
            ObjectiveTerm(metric, direction="min", weight=self.weights[family] * share)
            for family, members in self.tasks.items() for metric, share in members.items()))

    def family_values(self, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        """{family: its mean metric per run (lower is better)} from a runs frame's metric columns."""
        return {family: sum(share * frame[METRIC + m].to_numpy(dtype=float) for m, share in members.items())
                for family, members in self.tasks.items()}


def _fraction(value, where: str) -> float:
    """A config weight: a number or a string like '7/52.0' (how Olmix's configs write them)."""
    try:
        if isinstance(value, str) and "/" in value:
            num, den = value.split("/", 1)
            number = float(num) / float(den)
        else:
            number = float(value)
    except (TypeError, ValueError, ZeroDivisionError):
        raise UserError(f"{where}: expected a number or 'a/b', got {value!r}") from None
    if not number > 0:
        raise UserError(f"{where}: must be > 0, got {value!r}")
    return number


def olmix_family_objective(config_path: str | Path, metric_names: Sequence[str]) -> OlmixFamilies:
    """The task families (`eval.tasks`, less `filtering.drop_metrics`) and family weights
    (`filtering.obj_weights`, default 1 as in Olmix) of an Olmix fit config, checked against the
    swarm's metric names. MMLU subjects share OLMIX_MMLU_TASKS task slots of their family equally
    (Olmix weights them by question count inside each category, in code, not in the config)."""
    where = f"Olmix fit config {config_path}"
    config = read_yaml_mapping(config_path, what="Olmix fit config")
    families = (config.get("eval") or {}).get("tasks")
    if not isinstance(families, dict) or not families:
        raise UserError(f"{where}: no eval.tasks mapping of task families")
    filtering = config.get("filtering") or {}
    dropped = set(filtering.get("drop_metrics") or ())
    raw_weights = filtering.get("obj_weights") or {}
    if not isinstance(raw_weights, dict):
        raise UserError(f"{where}: filtering.obj_weights must map families to weights, got {raw_weights!r}")
    unknown = sorted(set(raw_weights) - set(families))
    if unknown:
        raise UserError(f"{where}: filtering.obj_weights names families {unknown} that eval.tasks lacks "
                        f"(families: {sorted(families)})")
    have = set(metric_names)
    tasks, weights = {}, {}
    for family, members in families.items():
        kept = [m for m in (members or ()) if m not in dropped]
        missing = [m for m in kept if m not in have]
        if missing:
            raise UserError(f"{where}: eval.tasks.{family} lists metrics the swarm lacks: {_name_rows(missing)}")
        if not kept:
            raise UserError(f"{where}: eval.tasks.{family} keeps no metric after filtering.drop_metrics")
        mmlu = [m for m in kept if m.startswith(OLMIX_MMLU_PREFIX)]
        slots = len(kept) - len(mmlu) + (OLMIX_MMLU_TASKS if mmlu else 0)
        tasks[family] = {m: (OLMIX_MMLU_TASKS / len(mmlu) if m in mmlu else 1.0) / slots for m in kept}
        weights[family] = _fraction(raw_weights.get(family, 1), f"{where}: filtering.obj_weights.{family}")
    total = sum(weights.values())
    return OlmixFamilies(tasks=tasks, weights={f: w / total for f, w in weights.items()})
