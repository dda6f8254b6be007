"""The report's PNG figures: each function takes tables, writes one file and returns its
`matplotlib.figure.Figure` (to show in a notebook)."""
from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np
import pandas as pd

from causalmix.causal.runs_table import COV, MIX
from causalmix.core.figure import subplots

# Deferred on purpose, so that importing this module does not load scipy and matplotlib: the
# function-local imports (of these libraries or of this project's modules that import them).

if TYPE_CHECKING:
    from matplotlib.figure import Figure

SAMPLER_COLOURS = {"dirichlet": "tab:blue", "adaptive": "tab:orange"}
# Per-domain panels wrap into rows of at most this many, so 64 domains make an 8 x 8 grid.
MAX_PANEL_COLUMNS = 8
# Legends and tick labels name at most this many domains (the heaviest); the rest are drawn
# unlabelled, with a "+N more" note.
MAX_LABELLED = 12


def panel_grid(n: int, *, width: float, height: float):
    """(Figure, n axes) in rows of at most MAX_PANEL_COLUMNS panels; panels shrink to 3/4 of
    `width` x `height` past one row, so the figure stays about 2000 px wide at most. Axes are
    not shared (sharing 64 axes made each scatter update all of them: 13 s for one figure);
    give them a common range with `same_ylim`."""
    cols = min(max(n, 1), MAX_PANEL_COLUMNS)
    rows = math.ceil(max(n, 1) / cols)
    scale = 1.0 if rows == 1 else 0.75
    fig, axes = subplots(rows, cols, figsize=(width * scale * cols, height * scale * rows + 0.4), squeeze=False)
    axes = axes.ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def finish_grid(fig, n: int) -> None:
    """Lay out a panel grid: tight_layout for one row; fixed margins for more, where tight_layout
    measured every tick label of every panel (6 s for 64 panels)."""
    if n <= MAX_PANEL_COLUMNS:
        fig.tight_layout()
    else:
        width, height = fig.get_size_inches()
        # margins in inches (axis label, ticks, suptitle), as fractions of this figure's size
        fig.subplots_adjust(left=0.7 / width, right=1 - 0.15 / width, bottom=0.6 / height,
                            top=1 - 0.5 / height, wspace=0.35, hspace=0.55)


def same_ylim(axes) -> None:
    low = min(ax.get_ylim()[0] for ax in axes)
    high = max(ax.get_ylim()[1] for ax in axes)
    for ax in axes:
        ax.set_ylim(low, high)


def labelled_domains(domains: Sequence[str], weight: Mapping[str, float] | None = None,
                     limit: int = MAX_LABELLED) -> set[str]:
    """The domains to name in a legend: all when they fit, else the `limit` heaviest (by
    `weight`, e.g. mean mixture weight; else the first ones)."""
    if len(domains) <= limit:
        return set(domains)
    order = sorted(domains, key=lambda d: -(weight or {}).get(d, 0.0)) if weight else list(domains)
    return set(order[:limit])


def _legend_note(ax, n_unlabelled: int, **kwargs) -> None:
    """A legend of the labelled artists, saying how many domains are drawn without a name."""
    handles, labels = ax.get_legend_handles_labels()
    if n_unlabelled:
        from matplotlib.lines import Line2D

        handles.append(Line2D([], [], ls="none"))
        labels.append(f"+{n_unlabelled} more (unlabelled)")
    ax.legend(handles, labels, **kwargs)


def plot_outcome_by_domain(runs: pd.DataFrame, domains: list[str], path: Path) -> "Figure":
    fig, axes = panel_grid(len(domains), width=3.2, height=3.0)
    groups = runs.groupby(runs["sampler"]) if "sampler" in runs else [("runs", runs)]
    for i, (ax, domain) in enumerate(zip(axes, domains)):
        for name, frame in groups:
            ax.scatter(frame[f"{MIX}{domain}"], frame["y"], s=14, alpha=0.7, label=str(name),
                       color=_sampler_colour(name))
        ax.set_xlabel(f"weight of {domain}", fontsize=9 if len(domains) <= MAX_PANEL_COLUMNS else 7)
        if i % MAX_PANEL_COLUMNS == 0:
            ax.set_ylabel("proxy dev outcome y")
    same_ylim(axes)
    axes[-1].legend(fontsize=7)
    fig.suptitle(f"{len(runs)} proxy runs: outcome against each domain's weight")
    finish_grid(fig, len(domains))
    fig.savefig(path, dpi=110)
    return fig


def plot_covariate_coverage(runs: pd.DataFrame, target: dict[str, float] | None, path: Path) -> "Figure":
    """Range of each covariate over the runs, with the target pool's value: a forest does not
    extrapolate, so a target outside the runs' range is a warning sign."""
    names = [c for c in runs.columns if c.startswith(COV)]
    if not names:
        return
    # one row per covariate up to ~60; past that the rows get thinner, not the figure taller
    fig, ax = subplots(figsize=(7, min(0.32 * len(names) + 1.2, 20.0)))
    values = runs[names]
    lo, hi = values.min(), values.max()
    scale = (hi - lo).replace(0, 1.0)
    for i, name in enumerate(names):
        ax.scatter((values[name] - lo[name]) / scale[name], np.full(len(values), i), s=6, color="tab:blue", alpha=0.4)
        if target and name in target:
            ax.scatter([(target[name] - lo[name]) / scale[name]], [i], marker="D", color="tab:red", s=30, zorder=3)
    ax.set_yticks(range(len(names)), names, fontsize=7 if len(names) <= 60 else max(3, 420 // len(names)))
    ax.set_xlabel("position within the runs' range (0 = min, 1 = max); red: target pool")
    ax.set_title("Covariate coverage of the proxy runs")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return fig


def plot_policy_trace(snapshots: list[dict], path: Path) -> "Figure":
    fig, (ax_mix, ax_ret) = subplots(1, 2, figsize=(10, 3.4))
    n_runs = [s["n_runs"] for s in snapshots]
    domains = list(snapshots[-1]["returns"])
    named = labelled_domains(domains, snapshots[-1]["policies"]["analytic"]["mixture"])
    for domain in domains:
        label = domain if domain in named else "_nolegend_"
        ax_mix.plot(n_runs, [s["policies"]["analytic"]["mixture"][domain] for s in snapshots], marker="o",
                    ms=3, label=label)
        est = np.array([s["returns"][domain]["estimate"] for s in snapshots])
        lo = np.array([s["returns"][domain]["interval"][0] for s in snapshots])
        hi = np.array([s["returns"][domain]["interval"][1] for s in snapshots])
        line, = ax_ret.plot(n_runs, est, marker="o", ms=3, label=label)
        ax_ret.fill_between(n_runs, lo, hi, color=line.get_color(), alpha=0.15)
    ax_mix.set_xlabel("runs fitted")
    ax_mix.set_ylabel("recommended weight (analytic)")
    _legend_note(ax_mix, len(domains) - len(named), fontsize=6, loc="center left", bbox_to_anchor=(1.0, 0.5))
    ax_ret.axhline(0, color="black", lw=0.6)
    ax_ret.set_xlabel("runs fitted")
    ax_ret.set_ylabel("estimated marginal return")
    fig.suptitle("Policy snapshots as runs land")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return fig


def plot_returns(returns: dict[str, dict], path: Path) -> "Figure":
    domains = list(returns)
    est = np.array([returns[d]["estimate"] for d in domains])
    lo = np.array([returns[d]["interval"][0] for d in domains])
    hi = np.array([returns[d]["interval"][1] for d in domains])
    fig, ax = subplots(figsize=(min(max(6.0, 0.28 * len(domains) + 2), 18.0), 3.6 if len(domains) <= 16 else 5.0))
    ax.bar(range(len(domains)), est, yerr=[est - lo, hi - est], capsize=4 if len(domains) <= 16 else 1,
           color=["tab:green" if e > 0 else "tab:red" for e in est], alpha=0.8)
    _domain_ticks(ax, domains)
    ax.axhline(0, color="black", lw=0.6)
    ax.set_ylabel("marginal return of the domain")
    ax.set_title("Estimated returns at the target pool (with interval)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return fig


def _sampler_colour(name: str) -> str:
    return SAMPLER_COLOURS.get(str(name), "tab:gray")


def _stacked_bars(ax, weights: np.ndarray, colours: list, width: float = 0.9) -> None:
    """Run i's mixture as a stacked bar at x = i, all bars one PolyCollection: one Rectangle
    artist per run and domain (8704 for RegMix's 512 runs x 17 domains) took seconds to draw."""
    from matplotlib.collections import PolyCollection

    top = np.cumsum(weights, axis=1)
    bottom = top - weights
    left = np.arange(len(weights))[:, None] - width / 2 + np.zeros_like(weights)
    boxes = np.stack([np.stack([left, bottom], -1), np.stack([left + width, bottom], -1),
                      np.stack([left + width, top], -1), np.stack([left, top], -1)], axis=2)
    ax.add_collection(PolyCollection(boxes.reshape(-1, 4, 2), facecolors=np.tile(colours, (len(weights), 1)),
                                     edgecolors="none"))
    ax.set_xlim(-0.5 - width / 2, len(weights) - 0.5 + width / 2)


def _domain_colours(n: int) -> list:
    """n distinguishable colours: the tab10/tab20 cycles while they last, then a colour map."""
    from matplotlib import colormaps

    if n <= 10:
        return [colormaps["tab10"](i) for i in range(n)]
    if n <= 20:
        return [colormaps["tab20"](i) for i in range(n)]
    return [colormaps["turbo"](i / (n - 1)) for i in range(n)]


def _domain_ticks(ax, domains: Sequence[str]) -> None:
    """One tick label per domain along x, turned and smaller as their number grows."""
    many = len(domains) > 8
    ax.set_xticks(range(len(domains)), domains, rotation=90 if many else 15,
                  fontsize=6 if len(domains) > 24 else 8, ha="center" if many else "right")


def plot_sampled_mixtures(runs: pd.DataFrame, domains: list[str], path: Path) -> "Figure":
    """Left: every run's mixture as a stacked bar, in run order (adaptive runs marked below).
    Right: each domain's weights over the runs, one dot per run, coloured by sampler."""
    ordered = runs.sort_values("run_id").reset_index(drop=True)
    samplers = ordered["sampler"].astype(str) if "sampler" in ordered else pd.Series(["runs"] * len(ordered))
    wide = len(domains) > 12
    fig, (ax_bar, ax_strip) = subplots(1, 2, figsize=(16 if wide else 12, 4.6 if wide else 3.8),
                                       gridspec_kw={"width_ratios": [3, 2]})
    mean = {d: float(ordered[f"{MIX}{d}"].mean()) for d in domains}
    named = labelled_domains(domains, mean)
    colours = _domain_colours(len(domains))
    xs = np.arange(len(ordered))
    _stacked_bars(ax_bar, ordered[[f"{MIX}{d}" for d in domains]].to_numpy(dtype=float), colours)
    for domain, colour in zip(domains, colours):
        if domain in named:  # legend entries only: the bars are one collection
            ax_bar.fill_between([], [], color=colour, label=domain)
    ax_bar.scatter(xs, np.full(len(xs), -0.05), c=[_sampler_colour(s) for s in samplers], marker="s", s=12,
                   clip_on=False)
    ax_bar.set_ylim(-0.08, 1.0)
    ax_bar.set_xlabel("run (in run order); squares below: sampler (blue dirichlet, orange adaptive)")
    ax_bar.set_ylabel("mixture weight")
    # beside the bars, not above them: a row of 17 names ran off the figure
    _legend_note(ax_bar, len(domains) - len(named), fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0),
                 title="heaviest domains" if len(named) < len(domains) else None, title_fontsize=7)
    rng = np.random.default_rng(0)
    weights = ordered[[f"{MIX}{d}" for d in domains]].to_numpy(dtype=float)
    for name in sorted(samplers.unique()):
        # one scatter per sampler over every domain: one per domain cost seconds at 64 domains
        w = weights[(samplers == name).to_numpy()]
        xs_strip = np.arange(len(domains))[None, :] + rng.uniform(-0.18, 0.18, w.shape)
        ax_strip.scatter(xs_strip.ravel(), w.ravel(), s=12 if len(domains) <= 16 else 4, alpha=0.7,
                         color=_sampler_colour(name), label=name)
    _domain_ticks(ax_strip, domains)
    ax_strip.set_ylabel("weight")
    ax_strip.legend(fontsize=7)
    fig.suptitle(f"Sampled mixtures of the {len(runs)} proxy runs")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return fig


def plot_return_curves(curves: Mapping[str, pd.DataFrame], target: Mapping[str, float], path: Path) -> "Figure":
    """Per domain: estimated marginal return (with interval) against one of that domain's
    covariates, the others held at the target pool's; dots: runs' covariate values (rug);
    dashed line: the target pool."""
    domains = list(curves)
    fig, axes = panel_grid(len(domains), width=3.3, height=3.2)
    for ax, domain in zip(axes, domains):
        curve = curves[domain]
        name = curve.attrs["covariate"]
        line, = ax.plot(curve["value"], curve["estimate"], color="tab:green")
        ax.fill_between(curve["value"], curve["lower"], curve["upper"], color=line.get_color(), alpha=0.2)
        ax.axhline(0, color="black", lw=0.6)
        if name in target:
            ax.axvline(target[name], color="tab:red", ls="--", lw=1, label="target pool")
        ax.plot(curve.attrs["runs"], np.full(len(curve.attrs["runs"]), ax.get_ylim()[0]), "|",
                color="tab:blue", alpha=0.5, ms=8)
        ax.set_xlabel(name.split(".", 1)[1])
        ax.set_title(domain, fontsize=10)
    axes[0].set_ylabel("marginal return (y per unit weight)")
    axes[0].legend(fontsize=7)
    fig.suptitle("Estimated return of each domain against its covariate (90 % interval; ticks: runs)")
    finish_grid(fig, len(domains))
    fig.savefig(path, dpi=110)
    return fig


def plot_predicted_vs_actual(actual: np.ndarray, predicted: np.ndarray, samplers, folds: int,
                             path: Path) -> dict:
    """Out-of-fold predictions against the runs' y; returns Spearman and R^2 (its numbers go into
the report's summary, so this one returns them instead of the figure)."""
    from scipy.stats import spearmanr

    actual, predicted = np.asarray(actual, dtype=float), np.asarray(predicted, dtype=float)
    rho = float(spearmanr(actual, predicted).statistic)
    r2 = float(1 - np.sum((actual - predicted) ** 2) / np.sum((actual - actual.mean()) ** 2))
    fig, ax = subplots(figsize=(4.6, 4.2))
    ax.scatter(actual, predicted, s=16, alpha=0.8, c=[_sampler_colour(s) for s in samplers])
    lo, hi = min(actual.min(), predicted.min()), max(actual.max(), predicted.max())
    ax.plot([lo, hi], [lo, hi], color="black", lw=0.7)
    ax.set_xlabel("actual y of the run")
    ax.set_ylabel(f"predicted y ({folds}-fold, held out)")
    ax.set_title(f"Held-out runs: Spearman {rho:.2f}, R² {r2:.2f}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return {"spearman": rho, "r2": r2, "folds": folds}


def plot_radius_choice(choice: Mapping, path: Path) -> "Figure":
    """The expected gain and its interval along the analytic path as the trust region grows,
    the part of the path inside the runs' support, and the radius the policy chose: why the
    recommended mixture lies where it does (`recommend`'s `radius_choice`)."""
    curve = choice["curve"]
    radius = np.asarray(curve["radius"], dtype=float)
    gain, lower, upper = (np.asarray(curve[k], dtype=float) for k in ("gain", "lower", "upper"))
    supported = np.asarray(curve["supported"], dtype=bool)
    fig, ax = subplots(figsize=(6.4, 3.6))
    ax.fill_between(radius, lower, upper, color="tab:blue", alpha=0.18, label="interval")
    ax.plot(radius, gain, color="tab:blue", label="expected gain")
    ax.plot(radius, lower, color="tab:blue", lw=0.8, ls="--", label="lower bound")
    if not supported.all():
        edge = radius[np.argmin(supported)]
        ax.axvspan(edge, radius[-1], color="0.85", zorder=0, label="outside the runs' support")
    ax.axhline(0.0, color="0.3", lw=0.7)
    ax.axvline(choice["radius"], color="tab:red", lw=1.2, label=f"chosen radius {choice['radius']:.3f}")
    ax.set_xlabel("trust radius (L2 distance from the reference)")
    ax.set_ylabel("gain over the reference")
    # wrapped, not cut: the reason is the point of the figure
    ax.set_title(textwrap.fill(f"Trust radius ({choice['mode']}): {choice['reason']}", 90), fontsize=8)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return fig
