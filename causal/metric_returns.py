"""What each domain does to each benchmark: a domain x metric table of estimated returns.

One fit per metric on the same runs (the objective `Objective.target(metric)`: the metric alone,
signed so that higher is better), then each domain's marginal return at the target pool's
covariates (`causal.streaming.domain_returns`: gain per unit of weight moved to the domain from
the equal mixture). Nothing is rerun; each fit takes seconds with the runs in hand. A positive
cell means more of that domain is estimated to improve that metric.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from causalmix.causal.objective import Objective, default_metrics
from causalmix.causal.runs_table import validate_runs_frame
from causalmix.core.figure import subplots

# Deferred on purpose, so that importing this module does not load scikit-learn and scipy: the
# function-local imports (of these libraries or of this project's modules that import them).


def metric_returns(runs: pd.DataFrame, target: Mapping[str, float], *, metrics: Sequence[str] | None = None,
                   config=None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(estimates, interval half-widths): frames indexed by domain, one column per metric (its
    `metric.` prefix dropped). `config`: a causal.fitting.FitConfig (default: its defaults);
    `target`: covariates of the target pool (those of the fitted model's covariate names)."""
    from causalmix.causal.fitting import FitConfig, fit_runs_table
    from causalmix.causal.model_dir import FittedMixtureModel
    from causalmix.causal.streaming import domain_returns

    config = config or FitConfig()
    names = list(metrics) if metrics is not None else default_metrics(runs.columns)
    estimates, widths = {}, {}
    for name in names:
        y, _ = Objective.target(name).apply(runs, where=f"runs (metric {name})")
        table = validate_runs_frame(runs.assign(y=y), where=f"runs (metric {name})")
        model = FittedMixtureModel.from_runs_table(fit_runs_table(table, config), config.estimator, table)
        covariates = {c: float(target[c]) for c in model.covariate_names}
        returns = domain_returns(model, covariates, "equal")
        label = name.removeprefix("metric.")
        estimates[label] = {d: r["estimate"] for d, r in returns.items()}
        widths[label] = {d: (r["interval"][1] - r["interval"][0]) / 2 for d, r in returns.items()}
    est, half = pd.DataFrame(estimates), pd.DataFrame(widths)
    order = domain_ordered(list(est.columns), list(est.index))
    est, half = est[order], half[order]
    est.index.name = half.index.name = "domain"
    return est, half


def domain_ordered(metrics: Sequence[str], domains: Sequence[str]) -> list[str]:
    """The metrics with those of a domain's dev set (`arithmetic_nll`) in the domains' order, so
    that the heatmap's diagonal is each domain on its own dev set; the others (harness tasks)
    after them, in name order."""
    def key(metric: str):
        owner = next((i for i, d in enumerate(domains) if metric == d or metric.startswith(f"{d}_")), len(domains))
        return owner, metric

    return sorted(metrics, key=key)


def plot_metric_returns(estimates: pd.DataFrame, path: Path) -> "matplotlib.figure.Figure":
    """Heatmap of the domain x metric returns, each column scaled by its largest |value| (metrics
    have different units), the estimate printed in each cell."""
    values = estimates.to_numpy(dtype=float)
    scale = np.abs(values).max(axis=0, keepdims=True)
    scaled = values / np.where(scale > 0, scale, 1.0)
    rows, cols = values.shape
    # cells shrink past ~24 rows or columns, so 64 domains x 64 metrics stays about 2000 px square
    fig, ax = subplots(figsize=(min(1.3 * cols + 2.5, 18.0), min(0.5 * rows + 1.8, 16.0)))
    image = ax.imshow(scaled, cmap="RdYlGn", vmin=-1, vmax=1, aspect="auto")
    small = max(rows, cols) > 24
    ax.set_xticks(range(cols), estimates.columns, rotation=90 if small else 30, ha="center" if small else "right",
                  fontsize=5 if small else 8)
    ax.set_yticks(range(rows), estimates.index, fontsize=5 if small else 8)
    if not small:  # a number per cell is legible only while cells are large
        for i in range(rows):
            for j in range(cols):
                ax.text(j, i, f"{values[i, j]:.3g}", ha="center", va="center", fontsize=7)
    fig.colorbar(image, ax=ax, label="return / largest |return| of the metric")
    ax.set_title("Estimated return of each domain on each metric (higher is better)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return fig
