"""The runs table (docs/architecture.md): one row per finished proxy run.

Columns: `run_id`, `mix.<domain>` (>= 0, sum 1), `x.<name>` covariates (zero or more),
`metric.<name>`, `y` (higher is better; computed by the objective recorded in `y_objective`,
causal/objective.py), provenance (`seed`, `model`, `tokens`, `wall_s`,
`status`). Unknown columns are kept and ignored. Parquet or CSV on input.
"""
from __future__ import annotations

import dataclasses
import math
import re
import time
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from causalmix.core.atomic import atomic_write_parquet
from causalmix.core.errors import UserError
from causalmix.core.logs import get_logger
from causalmix.core.provenance import sha256_file
from causalmix.mixture_space.simplex import validate_mixtures

MIX, COV, METRIC = "mix.", "x.", "metric."
# Outcomes, covariates and weights are losses, scores, feature means and shares: a magnitude
# past this is a unit or parsing mistake, and squares of it overflow the estimators' float64.
MAX_ABS_VALUE = 1e15

log = get_logger(__name__)


@dataclasses.dataclass
class RunsTable:
    frame: pd.DataFrame
    domains: list[str]
    covariate_names: list[str]
    source: str = "<memory>"
    sha256: str | None = None

    @property
    def n_runs(self) -> int:
        return len(self.frame)

    def mixtures(self) -> np.ndarray:
        return self.frame[[MIX + d for d in self.domains]].to_numpy(dtype=float)

    def covariates(self) -> np.ndarray:
        return self.frame[self.covariate_names].to_numpy(dtype=float).reshape(len(self.frame), -1)

    @property
    def y(self) -> np.ndarray:
        return self.frame["y"].to_numpy(dtype=float)

    def covariate_ranges(self) -> dict[str, list[float]]:
        return {c: [float(self.frame[c].min()), float(self.frame[c].max())] for c in self.covariate_names}


def _rows(frame: pd.DataFrame, mask) -> str:
    ids = frame.loc[np.asarray(mask), "run_id"].astype(str).tolist()
    return ", ".join(ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")


def validate_runs_frame(frame: pd.DataFrame, *, where: str = "runs table",
                        require_y: bool = True, drop_unused: bool | None = None) -> RunsTable:
    """Check a runs frame, renormalise mixtures within tolerance, and name its parts.

    `drop_unused` (default: `require_y`, a table to fit on): a domain whose weight is 0 in
    every run is dropped with a warning, since nothing in the table says what it does (a fit
    would extrapolate a gain for it from nothing). Importers keep it (they write the table
    as given), so do a table to predict on (its mixtures are the caller's) and a sweep's
    growing log (`runs_from_rows`)."""
    frame = frame.copy()
    if "run_id" not in frame.columns:
        raise UserError(f"{where}: missing column 'run_id'")
    frame["run_id"] = frame["run_id"].astype(str)
    dup = frame["run_id"].duplicated()
    if dup.any():
        raise UserError(f"{where}: duplicate run_id values: {sorted(set(frame.loc[dup, 'run_id']))[:5]}")
    domains = [c[len(MIX):] for c in frame.columns if c.startswith(MIX)]
    if len(domains) < 2:
        raise UserError(f"{where}: need at least 2 'mix.<domain>' columns, found {domains}")
    covariates = [c for c in frame.columns if c.startswith(COV)]
    for col in [MIX + d for d in domains] + covariates + (["y"] if require_y else []):
        if col not in frame.columns:
            raise UserError(f"{where}: missing column {col!r}")
        numeric = pd.to_numeric(frame[col], errors="coerce")
        bad = numeric.isna() & frame[col].notna()
        if bad.any():
            raise UserError(f"{where}: column {col!r} is not numeric in rows {_rows(frame, bad)}")
        frame[col] = numeric.astype(float)
        _check_range(frame, col, where)
    if len(frame) == 0:
        raise UserError(f"{where}: no runs")
    if require_y if drop_unused is None else drop_unused:
        domains = _drop_unused_domains(frame, domains, where)
        if len(domains) < 2:
            raise UserError(f"{where}: fewer than 2 domains have weight in any run ({domains}); "
                            "a mixture needs at least 2")
    mix_cols = [MIX + d for d in domains]
    frame[mix_cols] = validate_mixtures(frame[mix_cols].to_numpy(), domains=domains,
                                        row_ids=frame["run_id"].tolist(), where=where)
    return RunsTable(frame=frame.reset_index(drop=True), domains=domains, covariate_names=covariates)


def _check_range(frame: pd.DataFrame, col: str, where: str) -> None:
    values = frame[col].to_numpy()
    what = "outcome" if col == "y" else "value"
    nonfinite = ~np.isfinite(values)
    if nonfinite.any():
        raise UserError(f"{where}: non-finite {what} in column {col!r}, rows {_rows(frame, nonfinite)}")
    huge = np.abs(values) > MAX_ABS_VALUE
    if huge.any():
        raise UserError(f"{where}: {what} {values[huge][0]:.6g} in column {col!r} is beyond +-{MAX_ABS_VALUE:g} "
                        f"(rows {_rows(frame, huge)}); rescale the column or fix the rows")


def _drop_unused_domains(frame: pd.DataFrame, domains: list[str], where: str) -> list[str]:
    unused = [d for d in domains if not (frame[MIX + d] > 0).any()]
    if unused:
        log.warning("%s: domain(s) %s have weight 0 in every run, so the runs say nothing about them; "
                    "dropped (a recommendation gives them 0)", where, unused)
        frame.drop(columns=[MIX + d for d in unused], inplace=True)
    return [d for d in domains if d not in unused]


def read_frame(path: str | Path, what: str = "runs table") -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} not found: {path}")
    try:
        if path.suffix.lower() == ".parquet":
            return pd.read_parquet(path)
        if path.suffix.lower() == ".csv":
            return pd.read_csv(path)
    except Exception as exc:  # noqa: BLE001 - any reader failure is a bad file
        raise UserError(f"{what} {path} could not be read: {exc}") from None
    raise UserError(f"{what} {path}: expected a .parquet or .csv file")


def read_runs_table(path: str | Path, *, require_y: bool = True) -> RunsTable:
    path = Path(path)
    table = validate_runs_frame(read_frame(path), where=f"runs table {path}", require_y=require_y)
    table.source = str(path)
    table.sha256 = sha256_file(path)
    return table


def read_runs_table_with_objective(path: str | Path, objective=None):
    """(RunsTable, resolved objective or None). With `objective` (causal.objective.Objective),
    `y` is recomputed from the `metric.*` columns, so a table refits on another objective, or on
    one metric, without rerunning anything; the table's own `y` may then be absent. Without it,
    the table's `y` is used as it is."""
    if objective is None:
        return read_runs_table(path), None

    path = Path(path)
    where = f"runs table {path}"
    frame = read_frame(path)
    if "run_id" not in frame.columns:
        raise UserError(f"{where}: missing column 'run_id'")
    y, resolved = objective.apply(frame, where=where)
    frame = frame.assign(y=y, y_objective=resolved.dumps())
    table = validate_runs_frame(frame, where=where)
    table.source = str(path)
    table.sha256 = sha256_file(path)
    return table, resolved


def runs_from_rows(rows: Sequence[dict], *, where: str = "run rows") -> RunsTable:
    if not rows:
        raise UserError(f"{where}: no rows")
    # a sweep's growing log keeps every pool domain: its fits propose mixtures over all of them
    return validate_runs_frame(pd.DataFrame(list(rows)), where=where, drop_unused=False)


# ---- RegMix's released CSVs ------------------------------------------------------------

_REGMIX_MIX_PREFIX = re.compile(r"^(train_)?(the_pile_)?")
_REGMIX_METRIC = re.compile(r"^metric/(the_pile_)?")


def _short_metric(col: str) -> str:
    return _REGMIX_METRIC.sub("", col)


def _regmix_index(index: pd.Series, path) -> pd.Series:
    """RegMix's run index as integers, unique; a clear error for anything else."""
    numbers = pd.to_numeric(index, errors="coerce")
    bad = index[numbers.isna() | (numbers != numbers.round())]
    if len(bad):
        raise UserError(f"RegMix CSV {path}: column 'index' must hold whole numbers (run indices); "
                        f"row {int(bad.index[0]) + 2} has {bad.iloc[0]!r}")
    numbers = numbers.astype("int64")
    dup = numbers[numbers.duplicated()]
    if len(dup):
        raise UserError(f"RegMix CSV {path}: run index {int(dup.iloc[0])} appears more than once "
                        f"({int(numbers.duplicated(keep=False).sum())} rows share an index)")
    return numbers


def _regmix_numbers(frame: pd.DataFrame, col: str, path) -> pd.Series:
    """A weight or loss column as floats; a clear error naming the first non-number."""
    values = pd.to_numeric(frame[col], errors="coerce")
    bad = frame[col][values.isna() & frame[col].notna()]
    if len(bad):
        raise UserError(f"RegMix CSV {path}: column {col!r} must hold numbers; the row with index "
                        f"{frame['index'][bad.index[0]]} has {bad.iloc[0]!r}")
    return values.astype(float)


def import_regmix(mixtures_csv: str | Path, losses_csv: str | Path, *, target: str = "pile_cc") -> pd.DataFrame:
    """Map RegMix's `*_mixture_*.csv` + `*_loss_*.csv` into a runs table frame.

    `target`: a loss column (full name like `metric/the_pile_pile_cc_val_loss`, or short as
    `pile_cc_val_loss` / `pile_cc`), or `mean` for the mean of all loss columns; y = -loss.
    """
    mixes = read_frame(mixtures_csv, "RegMix mixtures CSV")
    losses = read_frame(losses_csv, "RegMix losses CSV")
    for name, frame, path in (("mixtures", mixes, mixtures_csv), ("losses", losses, losses_csv)):
        if "index" not in frame.columns:
            raise UserError(f"RegMix {name} CSV {path}: missing the 'index' column")
        frame["index"] = _regmix_index(frame["index"], path)
        for col in frame.columns.drop("index"):
            frame[col] = _regmix_numbers(frame, col, path)
    missing = sorted(set(mixes["index"]) ^ set(losses["index"]))
    if missing:
        raise UserError(f"RegMix CSVs {mixtures_csv} and {losses_csv} disagree on run indices, "
                        f"e.g. {missing[:5]}")
    merged = mixes.merge(losses, on="index", validate="one_to_one")
    out = pd.DataFrame({"run_id": [f"regmix-{i}" for i in merged["index"]]})
    for col in mixes.columns.drop("index"):
        out[MIX + _REGMIX_MIX_PREFIX.sub("", col)] = merged[col].astype(float)
    loss_cols = [c for c in losses.columns if c != "index"]
    metrics = {}
    for col in loss_cols:
        metrics[_short_metric(col)] = merged[col].astype(float)
        out[METRIC + _short_metric(col)] = metrics[_short_metric(col)]
    if target == "mean":
        frame = pd.DataFrame(metrics)
        gaps = frame.isna()
        if gaps.any().any():
            # A mean over whichever losses a run has would compare runs on different tasks.
            rows = merged["index"][gaps.any(axis=1)].tolist()
            raise UserError(f"--target mean: {losses_csv} has missing losses ({int(gaps.sum().sum())} "
                            f"cells, runs {rows[:5]}, columns {sorted(frame.columns[gaps.any()])[:5]}); "
                            "a mean over the rest would compare runs on different tasks. Fill them, "
                            "or pick one complete loss column as --target")
        out["y"] = -frame.mean(axis=1)
    else:
        matches = [s for s in metrics if target in (s, s.removesuffix("_val_loss"))
                   or target in loss_cols and _short_metric(target) == s]
        if len(matches) != 1:
            raise UserError(f"--target {target!r} is not one of the loss columns of {losses_csv}: "
                            f"{sorted(s.removesuffix('_val_loss') for s in metrics)} (or 'mean')")
        out["y"] = -metrics[matches[0]]
    out["model"] = "regmix-tinyllama-1M"
    out["status"] = "ok"
    out["source"] = Path(mixtures_csv).name
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # RegMix rounds weights to 3 decimals: renormalised here
        return validate_runs_frame(out, where=f"imported RegMix runs ({mixtures_csv})", drop_unused=False).frame


class RunsTableWriter:
    """runs.parquet as an upsert by run_id: a retried or resumed run replaces its row, never
    duplicates it. The whole table is rewritten atomically.

    `max_write_share`: None, every `add` rewrites the table. A fraction f: an `add` rewrites it
    only once (1/f - 1) x the last rewrite's seconds have passed since that rewrite ended, so that
    rewriting a growing table (68 ms at 512 runs of 6 domains on a loaded 2-core machine, on the
    sweep's scheduling loop) takes at most about f of the writer's time; the rows in between stay
    `pending` until the next rewrite or `flush`."""

    def __init__(self, path: str | Path, *, max_write_share: float | None = None):
        if max_write_share is not None and not 0 < max_write_share <= 1:
            raise ValueError(f"max_write_share must lie in (0, 1], got {max_write_share}")
        self.path = Path(path)
        self.max_write_share = max_write_share
        self.rows: dict[str, dict] = {}
        self.pending = False
        self._last_write_s = 0.0
        self._last_write_end = -math.inf
        if self.path.is_file():
            for row in pd.read_parquet(self.path).to_dict("records"):
                self.rows[str(row["run_id"])] = row

    def add(self, row: dict) -> None:
        self.rows[str(row["run_id"])] = row
        self.pending = True
        if self.max_write_share is None or (time.monotonic() - self._last_write_end
                                            >= self._last_write_s * (1 / self.max_write_share - 1)):
            self.write()

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(sorted(self.rows.values(), key=lambda r: r["run_id"]))

    def write(self) -> None:
        start = time.monotonic()
        atomic_write_parquet(self.path, self.frame())
        self._last_write_end = time.monotonic()
        self._last_write_s, self.pending = self._last_write_end - start, False

    def flush(self) -> None:
        """Write the rows added since the last rewrite, if any."""
        if self.pending:
            self.write()

    def best_y(self) -> float:
        ys = [float(r["y"]) for r in self.rows.values() if math.isfinite(float(r.get("y", math.nan)))]
        return max(ys) if ys else math.nan
