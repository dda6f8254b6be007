"""The objective: how the outcome `y` is computed from a run's `metric.*` columns.

Every fit and recommendation optimises `y`, so `y` is defined here, once, and recorded: each
runs-table row carries its objective as JSON in the column `y_objective`, and a model directory
fitted with `fit --objective/--target/--normalise` records the objective in its config.

```yaml
# objective.yaml (`fit --objective objective.yaml`, or `proxy: {objective: {...}}` in a sweep)
metrics:                       # omitted or null: every metric.* column except *_stderr
  - {metric: arith_mc_acc, weight: 2}            # the `metric.` prefix is optional
  - {metric: arithmetic_em}
  - {metric: python_nll, direction: min}         # auto (the default): min for loss-type names
normalise: zscore              # none (default) | zscore | minmax
```

With the signed, normalised value `s_m * z_m` of each metric (s_m = +1 for `max`, -1 for `min`):
`y = sum_m w_m s_m z_m / sum_m w_m`, a weighted mean, so every run's `y` is on one scale.

Normalisations (what makes the scales of different metrics comparable):
- `none`: `z = (v - center) / scale` with the term's `center` (default 0) and `scale` (default 1).
  With the defaults this is the paper's AvgDev-style plain mean of task scores (and the project's
  historic default `y`: the mean of the metrics, NLL negated). A known chance level makes it
  chance-corrected: `{metric: mc_acc, center: 0.25, scale: 0.75}`.
- `zscore`: `z = (v - mean) / std` over the runs of the table the objective is applied to, so each
  metric weighs the same whatever its units (an NLL in nats and an accuracy in [0, 1] alike).
- `minmax`: `z = (v - min) / (max - min)` over the runs, each metric mapped onto [0, 1].
`zscore` and `minmax` need a table: `apply(frame)` computes their statistics and returns them in
the resolved objective (`stats`), which then scores single rows (`row_value`) on the same scale;
a metric constant over the runs gets spread 1 (it adds nothing). A sweep's row-by-row `y` needs
either `none` or an objective with `stats`.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

from causalmix.core.config import read_yaml_mapping
from causalmix.core.errors import UserError

METRIC = "metric."
STDERR_SUFFIX = "_stderr"
NORMALISATIONS = ("none", "zscore", "minmax")
DIRECTIONS = ("auto", "max", "min")
LOSS_WORDS = ("nll", "loss", "perplexity", "ppl", "bpb", "bits_per_byte")
"""Endings of lower-is-better metric names (before any harness filter or `_stderr`)."""


def metric_column(name: str) -> str:
    return name if name.startswith(METRIC) else METRIC + name


def lower_is_better(column: str) -> bool:
    """Direction `auto`: names ending in a loss word (`arithmetic_nll`, `pile_cc_val_loss`,
    `wikitext_word_perplexity`, `x_bits_per_byte`) are minimised, everything else maximised.
    Only the ending counts, so a domain called `loss_notes` still has a maximised `_em`; a
    harness filter (`_strict-match`: it holds a hyphen) and `_stderr` are looked past."""
    name = column[len(METRIC):] if column.startswith(METRIC) else column
    parts = name.split("_")
    if len(parts) > 1 and parts[-1] == "stderr":
        parts = parts[:-1]
    if len(parts) > 1 and "-" in parts[-1]:
        parts = parts[:-1]
    return parts[-1] in LOSS_WORDS or "_".join(parts[-3:]) == "bits_per_byte"


def default_metrics(columns) -> list[str]:
    """The default objective's metrics: every `metric.*` column but standard errors."""
    return sorted(c for c in columns if c.startswith(METRIC) and not c.endswith(STDERR_SUFFIX))


@dataclass(frozen=True)
class ObjectiveTerm:
    """One metric of the objective."""

    metric: str
    """Runs-table column, `metric.<name>` (the prefix may be left out)."""
    direction: str = "auto"
    """max (higher is better), min, or auto: min for loss-type names (nll, loss, perplexity)."""
    weight: float = 1.0
    """Weight in the weighted mean (> 0)."""
    center: float = 0.0
    """normalise `none` only: subtracted before scaling (e.g. a chance level)."""
    scale: float = 1.0
    """normalise `none` only: divides the centred value (> 0)."""

    def __post_init__(self):
        if not isinstance(self.metric, str) or not self.metric.strip():
            raise ValueError(f"metric: expected a column name, got {self.metric!r}")
        object.__setattr__(self, "metric", metric_column(self.metric.strip()))
        if self.direction not in DIRECTIONS:
            raise ValueError(f"{self.metric}: direction {self.direction!r} is not one of {DIRECTIONS}")
        for name in ("weight", "center", "scale"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{self.metric}: {name} must be a finite number, got {value!r}")
            object.__setattr__(self, name, float(value))
        if not self.weight > 0:
            raise ValueError(f"{self.metric}: weight must be > 0, got {self.weight}")
        if not self.scale > 0:
            raise ValueError(f"{self.metric}: scale must be > 0, got {self.scale}")

    @property
    def sign(self) -> float:
        if self.direction == "auto":
            return -1.0 if lower_is_better(self.metric) else 1.0
        return 1.0 if self.direction == "max" else -1.0


@dataclass(frozen=True)
class Objective:
    """How `y` is computed from `metric.*` columns (see the module docstring)."""

    metrics: tuple[ObjectiveTerm, ...] | None = None
    """The terms; None: every `metric.*` column but `*_stderr`, weight 1, direction auto."""
    normalise: str = "none"
    """none, zscore or minmax (over the runs the objective is applied to)."""
    stats: dict | None = None
    """{column: [location, spread]} of a table normalisation, filled in by `apply`."""

    def __post_init__(self):
        if self.metrics is not None:
            terms = tuple(t if isinstance(t, ObjectiveTerm) else _term(t) for t in self.metrics)
            if not terms:
                raise ValueError("metrics: expected at least one metric (or null for all of them)")
            names = [t.metric for t in terms]
            dup = sorted({n for n in names if names.count(n) > 1})
            if dup:
                raise ValueError(f"metrics: listed more than once: {dup}")
            object.__setattr__(self, "metrics", terms)
        if self.normalise not in NORMALISATIONS:
            raise ValueError(f"normalise {self.normalise!r} is not one of {NORMALISATIONS}")
        if self.stats is not None:
            if self.normalise == "none":
                raise ValueError("stats: only a zscore or minmax objective has statistics")
            bad = {k: v for k, v in self.stats.items()
                   if not (isinstance(v, (list, tuple)) and len(v) == 2 and float(v[1]) > 0)}
            if bad:
                raise ValueError(f"stats: expected {{column: [location, spread > 0]}}, got {bad}")
            object.__setattr__(self, "stats", {metric_column(k): [float(v[0]), float(v[1])]
                                               for k, v in self.stats.items()})

    # ---- construction and records ------------------------------------------------------------

    @classmethod
    def target(cls, metric: str) -> "Objective":
        """`fit --target metric.NAME`: one metric, its own direction, no normalisation."""
        return cls(metrics=(ObjectiveTerm(metric),))

    @classmethod
    def from_json(cls, data) -> "Objective":
        """From a mapping (YAML/JSON form) or a JSON string; raises ValueError on a bad field."""
        if isinstance(data, Objective):
            return data
        if isinstance(data, str):
            data = json.loads(data)
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise ValueError(f"expected a mapping with 'metrics' and 'normalise', got {type(data).__name__}")
        unknown = sorted(set(data) - {"metrics", "normalise", "stats"})
        if unknown:
            raise ValueError(f"unknown key(s) {unknown}; allowed: ['metrics', 'normalise', 'stats']")
        metrics = data.get("metrics")
        if metrics is not None and not isinstance(metrics, (list, tuple)):
            raise ValueError(f"metrics: expected a list, got {metrics!r}")
        return cls(metrics=None if metrics is None else tuple(metrics),
                   normalise=data.get("normalise", "none"), stats=data.get("stats"))

    @classmethod
    def load(cls, path: str | Path) -> "Objective":
        """An objective file (YAML or JSON); errors name the file and the field."""
        path = Path(path)
        data = read_yaml_mapping(path, what="objective")  # JSON is YAML too
        try:
            return cls.from_json(data)
        except ValueError as exc:
            raise UserError(f"objective {path}: {exc}") from None

    def to_json(self) -> dict:
        out = {"metrics": None if self.metrics is None else [asdict(t) for t in self.metrics],
               "normalise": self.normalise}
        if self.stats is not None:
            out["stats"] = self.stats
        return out

    def dumps(self) -> str:
        """Compact, key-sorted JSON: the `y_objective` column value."""
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))

    @property
    def row_wise(self) -> bool:
        """True when one row's `y` needs no other rows (normalise none, or statistics known)."""
        return self.normalise == "none" or self.stats is not None

    # ---- evaluation --------------------------------------------------------------------------

    def terms_for(self, columns) -> tuple[ObjectiveTerm, ...]:
        if self.metrics is not None:
            return self.metrics
        names = default_metrics(columns)
        if not names:
            raise UserError("objective: the runs have no metric.* columns to compute y from")
        return tuple(ObjectiveTerm(n) for n in names)

    def _normalised(self, term: ObjectiveTerm, values: np.ndarray) -> np.ndarray:
        if self.normalise == "none":
            return (values - term.center) / term.scale
        loc, spread = self.stats[term.metric]
        return (values - loc) / spread

    def apply(self, frame: pd.DataFrame, *, where: str = "runs table") -> tuple[np.ndarray, "Objective"]:
        """(`y` per row, the resolved objective: its terms listed, table statistics filled in)."""
        terms = self.terms_for(frame.columns)
        missing = [t.metric for t in terms if t.metric not in frame.columns]
        if missing:
            have = default_metrics(frame.columns)
            raise UserError(f"{where}: objective metric(s) {missing} are not columns of the runs "
                            f"(metrics there: {have})")
        values = {}
        for t in terms:
            col = pd.to_numeric(frame[t.metric], errors="coerce").to_numpy(dtype=float)
            bad = ~np.isfinite(col)
            if bad.any():
                ids = frame["run_id"].astype(str).to_numpy()[bad][:5].tolist() if "run_id" in frame else \
                    np.flatnonzero(bad)[:5].tolist()
                raise UserError(f"{where}: column {t.metric!r} has missing or non-finite values in "
                                f"runs {ids}; choose other metrics for the objective")
            values[t.metric] = col
        stats = self.stats
        if self.normalise != "none" and stats is None:
            stats = {}
            for name, col in values.items():
                if self.normalise == "zscore":
                    loc, spread = float(col.mean()), float(col.std(ddof=1)) if len(col) > 1 else 0.0
                else:
                    loc, spread = float(col.min()), float(col.max() - col.min())
                stats[name] = [loc, spread if spread > 1e-12 else 1.0]
        resolved = replace(self, metrics=terms, stats=stats)
        missing_stats = [t.metric for t in terms if stats is not None and t.metric not in stats]
        if missing_stats:
            raise UserError(f"{where}: objective stats lack metric(s) {missing_stats}")
        total = sum(t.weight for t in terms)
        y = sum(t.weight * t.sign * resolved._normalised(t, values[t.metric]) for t in terms) / total
        return np.asarray(y, dtype=float), resolved

    def row_value(self, metrics: Mapping[str, float]) -> float:
        """`y` of one run from its metric values (needs a row-wise objective)."""
        if not self.row_wise:
            raise UserError(f"objective normalise {self.normalise!r} needs the statistics of a whole "
                            "runs table; score single runs with normalise 'none', or apply it with "
                            "`fit --objective` on the finished table")
        if not any(k.startswith(METRIC) for k in metrics) and self.metrics is None:
            return float("nan")
        frame = pd.DataFrame([{k: v for k, v in metrics.items()}])
        y, _ = self.apply(frame, where="run metrics")
        return float(y[0])

    def describe(self, columns=None) -> str:
        """One line for logs and reports, e.g. `zscore mean of 3 metrics: +a_acc, -b_nll, +c_em`."""
        terms = self.metrics if self.metrics is not None or columns is None else self.terms_for(columns)
        if terms is None:
            return f"{self.normalise} mean of every metric (loss-type negated)"
        body = ", ".join(("+" if t.sign > 0 else "-") + t.metric[len(METRIC):]
                         + (f" x{t.weight:g}" if t.weight != 1 else "") for t in terms)
        return f"{self.normalise} weighted mean of {len(terms)} metric(s): {body}"


def _term(raw) -> ObjectiveTerm:
    if isinstance(raw, str):
        return ObjectiveTerm(raw)
    if not isinstance(raw, Mapping):
        raise ValueError(f"metrics: each entry is a metric name or a mapping, got {raw!r}")
    unknown = sorted(set(raw) - set(ObjectiveTerm.__dataclass_fields__))
    if unknown:
        raise ValueError(f"metrics: unknown key(s) {unknown} in {dict(raw)}; allowed: "
                         f"{sorted(ObjectiveTerm.__dataclass_fields__)}")
    if "metric" not in raw:
        raise ValueError(f"metrics: entry {dict(raw)} has no 'metric'")
    return ObjectiveTerm(**raw)


def apply_objective(frame: pd.DataFrame, objective: Objective, *, where: str = "runs table") -> pd.DataFrame:
    """A copy of the runs frame with `y` recomputed under `objective` and `y_objective` set to the
    resolved objective (with its table statistics)."""
    y, resolved = objective.apply(frame, where=where)
    out = frame.copy()
    out["y"] = y
    out["y_objective"] = resolved.dumps()
    return out
