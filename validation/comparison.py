"""Validation of recommended mixtures: how the outcomes of the competing mixtures compare.

The miniature of the paper's target experiment: train the target model on the target pool
with each competing mixture (`validation/candidates.py`) over a few seeds, evaluate the same dev
suite, and compare.

AvgDev, the score every comparison uses, weighs each dev task the same whatever its scale:
each task's metric is signed so that higher is better (NLLs negated), standardised over all
runs of the table ((v - mean) / std, pooled over methods and seeds), and the standardised
tasks are averaged. An accuracy in [0, 1] and an NLL near 5 then count alike (the paper
averages task scores that share one scale); a task that does not vary contributes 0. Because
the standardisation uses the table's runs, AvgDev compares methods within one table, not
across tables; `y` (the proxy objective, the plain mean of the signed metrics) is kept beside it.

Seeds pair the runs: seed s of every method starts from the same weights, the same torch
seed and the same document order within each domain (proxy/data.py), so the per-seed
difference to a baseline removes the seed-to-seed variation that all methods share. A method
beats a baseline *beyond the seed spread* when a one-sided paired t-test at level
`SPREAD_ALPHA` says so: mean difference > t(1 - alpha, seeds - 1) x s.e., with s.e. = std of
the differences over seeds / sqrt(seeds) (3 seeds: 2.92 s.e.; 2 seeds: 6.31 s.e.). With so few
seeds a fixed "2 s.e." would call chance differences wins.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from causalmix.causal.objective import default_metrics, lower_is_better
from causalmix.causal.runs_table import MIX
from causalmix.core.figure import subplots

# Deferred on purpose, so that importing this module does not load scipy: the function-local imports
# (of these libraries or of this project's modules that import them).

BASELINES = ("equal", "regmix", "no-covariates")
SCORE = "avgdev"
SPREAD_ALPHA = 0.05
def add_avgdev(results: pd.DataFrame) -> pd.DataFrame:
    """`results` with column `avgdev` (module docstring): per task, the signed metric (NLLs
    negated) standardised over all rows, then the mean over tasks."""
    # tasks only: a harness metric's `_stderr` column is its standard error, not a task
    metrics = default_metrics(results.columns)
    out = results.copy()
    if not metrics:
        out[SCORE] = out["y"].astype(float)
        return out
    z = []
    for col in metrics:
        v = results[col].astype(float) * (-1.0 if lower_is_better(col) else 1.0)
        sd = v.std(ddof=0)
        z.append((v - v.mean()) / sd if sd > 0 else v * 0.0)
    out[SCORE] = pd.concat(z, axis=1).mean(axis=1)
    return out


def mixture_label(mixture: Mapping[str, float], digits: int = 2) -> str:
    """A compact mixture, e.g. 'arithmetic .31 · code .12 · ...'."""
    return " · ".join(f"{d} {w:.{digits}f}".replace(" 0.", " .") for d, w in mixture.items())


def summarize(results: pd.DataFrame) -> pd.DataFrame:
    """Per candidate: mean, standard error and count of AvgDev and of y, best AvgDev first,
    with the AvgDev gain over equal."""
    results = add_avgdev(results) if SCORE not in results else results
    grouped = results.groupby("candidate")
    table = pd.DataFrame({"avgdev_mean": grouped[SCORE].mean(), "avgdev_se": grouped[SCORE].sem().fillna(0.0),
                          "y_mean": grouped["y"].mean(), "y_se": grouped["y"].sem().fillna(0.0),
                          "n_seeds": grouped["y"].count()})
    if "equal" in table.index:
        table["gain_vs_equal"] = table["avgdev_mean"] - table.at["equal", "avgdev_mean"]
    return table.sort_values("avgdev_mean", ascending=False)


def paired_differences(results: pd.DataFrame, baseline: str, value: str = SCORE) -> pd.DataFrame:
    """Per candidate and seed: value - value(baseline, same seed) (seeds the baseline lacks are
    dropped); value: AvgDev by default (computed when `results` lacks it)."""
    if value == SCORE and SCORE not in results:
        results = add_avgdev(results)
    wide = results.pivot_table(index="seed", columns="candidate", values=value)
    if baseline not in wide:
        return pd.DataFrame()
    return wide.sub(wide[baseline], axis=0).dropna(how="all")


def spread_factor(n_seeds: int, alpha: float = SPREAD_ALPHA) -> float:
    """Standard errors a paired mean difference must exceed (one-sided t-test at `alpha`)."""
    from scipy.stats import t

    return float(t.ppf(1 - alpha, n_seeds - 1)) if n_seeds > 1 else float("inf")


def paired_verdict(diffs: Sequence[float], *, alpha: float = SPREAD_ALPHA) -> dict:
    """Mean and s.e. of paired differences, and whether they clear the spread: a one-sided
    paired t-test at `alpha` each way (`p_better`, `p_worse`)."""
    from scipy.stats import ttest_1samp

    d = np.asarray([v for v in diffs if np.isfinite(v)], dtype=float)
    n = len(d)
    mean = float(d.mean()) if n else float("nan")
    se = float(d.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
    p_better = p_worse = float("nan")
    if n < 2:
        verdict = "one seed"
    else:
        if se > 0:
            p_better = float(ttest_1samp(d, 0.0, alternative="greater").pvalue)
            p_worse = float(ttest_1samp(d, 0.0, alternative="less").pvalue)
        else:  # every seed moved by the same amount: no spread to clear
            p_better, p_worse = float(mean <= 0), float(mean >= 0)
        verdict = "better" if p_better < alpha else "worse" if p_worse < alpha else "within spread"
    return {"mean": mean, "se": se, "n": n, "positive_seeds": int((d > 0).sum()), "verdict": verdict,
            "p_better": p_better, "p_worse": p_worse}


def seeds_needed(mean_gain: float, sd: float, *, alpha: float = SPREAD_ALPHA, most: int = 1000) -> int | None:
    """Seeds a paired gain of `mean_gain` with per-seed std `sd` would need to clear the rule
    (None: a gain <= 0 never does, or more than `most`)."""
    if not mean_gain > 0:
        return None
    for n in range(2, most + 1):
        if mean_gain > spread_factor(n, alpha) * sd / np.sqrt(n):
            return n
    return None


def power(gain: float, sd: float, n_seeds: int, *, alpha: float = SPREAD_ALPHA) -> float:
    """Probability that the one-sided paired t-test at `alpha` calls a true paired gain `gain`
    'better' with `n_seeds` seeds when the per-seed differences have std `sd` (noncentral t)."""
    from scipy.stats import nct

    if n_seeds < 2 or not sd > 0:
        return float("nan")
    return float(nct.sf(spread_factor(n_seeds, alpha), n_seeds - 1, gain * np.sqrt(n_seeds) / sd))


def detectable_gain(sd: float, n_seeds: int, *, target_power: float = 0.8, alpha: float = SPREAD_ALPHA) -> float:
    """The smallest true paired gain the test finds with probability `target_power` at per-seed
    std `sd` and `n_seeds` seeds (nan: fewer than 2 seeds or no spread)."""
    from scipy.optimize import brentq

    if n_seeds < 2 or not sd > 0:
        return float("nan")
    return float(brentq(lambda g: power(g, sd, n_seeds, alpha=alpha) - target_power, 0.0, 100.0 * sd))


def power_sentences(table: pd.DataFrame) -> list[str]:
    """Per CausalMix method and baseline: the measured per-seed std of the paired difference, the
    gain this many seeds detect with 80 % power at that spread, and the power for the observed gain."""
    lines = []
    for name in (n for n in table.index if str(n).startswith("causalmix")):
        for b in (b for b in BASELINES if f"vs_{b}" in table):
            n = int(table.at[name, "n_seeds"])
            mean, se = table.at[name, f"gain_vs_{b}_mean"], table.at[name, f"gain_vs_{b}_se"]
            sd = float(se * np.sqrt(n)) if n > 1 else float("nan")
            if not sd > 0:
                continue
            observed = (f"power for the observed {mean:+.3f}: {power(mean, sd, n):.0%}" if mean > 0
                        else f"the observed {mean:+.3f} is no gain")
            lines.append(f"{name} vs {b}: per-seed std of the paired difference {sd:.3f}; with {n} seeds "
                         f"the test detects a gain of {detectable_gain(sd, n):.3f} with 80 % power; {observed}.")
    return lines


def caps_sentences(candidates: Mapping[str, Mapping], bounds) -> list[str]:
    """Which method's mixture an epoch cap (or a fixed or minimum weight) holds, and where: a
    weight at its bound is where the constraint changed what the model would have recommended.
    (equal and other fixed mixtures are not bounded: a weight beyond a cap is not reported.)"""
    domains = list(bounds.domains)
    held = []
    for name, cand in candidates.items():
        w = np.array([cand["mixture"][d] for d in domains], dtype=float)
        for domain, kind in bounds.binding(w).items():
            limit = (bounds.upper if kind == "upper" else bounds.lower)[domains.index(domain)]
            if abs(w[domains.index(domain)] - limit) > 1e-6:  # beyond it: a mixture no bound applies to
                continue
            held.append(f"{name}: {domain} at its {kind} bound {limit:.3f}"
                        + (f" ({bounds.sources[domain]})" if domain in bounds.sources else ""))
    caps = ", ".join(f"{d} {u:.3g}" for d, u in zip(domains, bounds.upper))
    if not held:
        return [f"Caps: no validated mixture is at a cap or bound (upper caps: {caps})."]
    return [f"Caps: {'; '.join(held)}. These weights are the cap's, not the model's: the methods "
            f"compared there differ only on the other domains (upper caps: {caps})."]


def validation_table(results: pd.DataFrame) -> pd.DataFrame:
    """The paper's table in numbers: per method, its mixture, mean and std over seeds of every
    `metric.*` column, of AvgDev and of y, and the paired AvgDev gain against each baseline
    present (equal, regmix, no-covariates)."""
    results = add_avgdev(results)
    metrics = default_metrics(results.columns) + [SCORE, "y"]
    grouped = results.groupby("candidate", sort=False)
    table = pd.DataFrame(index=pd.Index(results["candidate"].unique(), name="method"))
    mix_cols = [c for c in results.columns if c.startswith(MIX)]
    if mix_cols:
        first = grouped[mix_cols].first()
        table["mixture"] = [mixture_label({c[len(MIX):]: first.at[n, c] for c in mix_cols})
                            for n in table.index]
    for col in metrics:
        table[f"{col}_mean"] = grouped[col].mean()
        table[f"{col}_std"] = grouped[col].std(ddof=1).fillna(0.0)
    table["n_seeds"] = grouped["y"].count()
    for base in BASELINES:
        diffs = paired_differences(results, base)
        if diffs.empty:
            continue
        for name in table.index:
            v = paired_verdict(diffs[name]) if name != base else None
            table.loc[name, f"gain_vs_{base}_mean"] = v["mean"] if v else 0.0
            table.loc[name, f"gain_vs_{base}_se"] = v["se"] if v else 0.0
            table.loc[name, f"vs_{base}"] = v["verdict"] if v else "-"
    return table.sort_values(f"{SCORE}_mean", ascending=False)


def _pm(mean: float, std: float, digits: int = 4) -> str:
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def table_markdown(table: pd.DataFrame) -> str:
    """Markdown: method x mixture x per-task metric x AvgDev and y (mean ± std over seeds) and
    the paired AvgDev gains."""
    metrics = [c[:-len("_mean")] for c in table.columns
               if c.startswith("metric.") and c.endswith("_mean")]
    has_mix = "mixture" in table
    header = ["method", *(["mixture"] if has_mix else []), *(m[len("metric."):] for m in metrics),
              "AvgDev", "y", "seeds"]
    bases = [b for b in BASELINES if f"gain_vs_{b}_mean" in table]
    header += [f"AvgDev gain vs {b} (± s.e.)" for b in bases] + [f"vs {b}" for b in bases]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, row in table.iterrows():
        cells = [str(name), *([str(row["mixture"])] if has_mix else []),
                 *(_pm(row[f"{m}_mean"], row[f"{m}_std"]) for m in metrics),
                 _pm(row[f"{SCORE}_mean"], row[f"{SCORE}_std"], 3), _pm(row["y_mean"], row["y_std"]),
                 str(int(row["n_seeds"]))]
        for b in bases:
            se = row[f"gain_vs_{b}_se"]
            cells.append("-" if name == b else f"{row[f'gain_vs_{b}_mean']:+.3f} ± {se:.3f}")
        cells += [str(row[f"vs_{b}"]) for b in bases]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Per-task metrics: mean ± std over seeds (`_nll`: lower is better; `_em`: exact match, "
              "higher is better). AvgDev: each task's metric signed so that higher is better, "
              "standardised over all runs of this table, then averaged over tasks, so every task "
              "weighs the same whatever its scale (comparable within this table only). y: the proxy "
              "objective (plain mean of the signed metrics). Paired gain: mean over seeds of "
              "AvgDev − AvgDev(baseline, same seed) ± its standard error; 'better'/'worse' "
              f"when it clears {spread_factor(int(table['n_seeds'].min())):.2f} s.e. (one-sided paired "
              f"t-test at {SPREAD_ALPHA:g})."]
    return "\n".join(lines)


VERDICT_WORDS = {"better": "beats", "worse": "is worse than", "within spread": "does not separate from",
                 "one seed": "cannot be compared (one seed) with"}


def verdict_sentences(table: pd.DataFrame) -> list[str]:
    """The comparison in plain words, one sentence per CausalMix method (and the overall call)."""
    n = int(table["n_seeds"].min())
    rule = (f"'beyond the seed spread' = one-sided paired t-test at {SPREAD_ALPHA:g}: the mean "
            f"difference over {n} seeds exceeds {spread_factor(n):.2f} standard errors of it")
    bases = [b for b in BASELINES if f"vs_{b}" in table]
    methods = [m for m in table.index if str(m).startswith("causalmix")]
    if not bases or not methods:
        return [f"No CausalMix method and baseline to compare ({rule})."]
    sentences, winners = [], []
    for name in methods:
        parts = []
        for b in bases:
            verdict = table.at[name, f"vs_{b}"]
            gain, se = table.at[name, f"gain_vs_{b}_mean"], table.at[name, f"gain_vs_{b}_se"]
            parts.append(f"{VERDICT_WORDS[verdict]} {b} (AvgDev {gain:+.3f} ± {se:.3f} s.e.)")
        sentences.append(f"{name} " + " and ".join(parts) + ".")
        if all(table.at[name, f"vs_{b}"] == "better" for b in bases):
            winners.append(name)
    grid = [n for n in table.index if str(n).startswith("grid-")]
    if grid:
        best = grid[0]  # the table is sorted by AvgDev
        sentences.append(f"Best grid point: {best} ({table.at[best, 'mixture'] if 'mixture' in table else ''}; "
                         f"AvgDev {table.at[best, f'{SCORE}_mean']:+.3f}).")
    if winners:
        sentences.append(f"Verdict: {', '.join(winners)} beat{'s' if len(winners) == 1 else ''} "
                         f"{' and '.join(bases)} beyond the seed spread ({rule}).")
    else:
        sentences.append(f"Verdict: no CausalMix mixture beats {' and '.join(bases)} beyond the seed "
                         f"spread ({rule}); the claim is not shown on this run.")
    return sentences


def seeds_outlook(table: pd.DataFrame) -> list[str]:
    """Per CausalMix method and baseline it has not beaten: how many seeds the observed paired
    gain would need at its observed per-seed spread (None when the gain is not positive)."""
    lines = []
    for name in (n for n in table.index if str(n).startswith("causalmix")):
        for b in (b for b in BASELINES if f"vs_{b}" in table):
            if table.at[name, f"vs_{b}"] == "better":
                continue
            n = int(table.at[name, "n_seeds"])
            mean, se = table.at[name, f"gain_vs_{b}_mean"], table.at[name, f"gain_vs_{b}_se"]
            need = seeds_needed(mean, se * np.sqrt(n)) if n > 1 else None
            lines.append(f"{name} vs {b}: observed AvgDev gain {mean:+.3f}; "
                         + (f"at its per-seed spread it would need about {need} seeds to clear the rule."
                            if need else "not positive (or too small for any affordable number of seeds)."))
    return lines


def plot_validation(results: pd.DataFrame, path) -> "matplotlib.figure.Figure":
    """Left: paired gain over equal per method (bars from 0 = equal; error bars: 90 % t-interval,
    so a bar whose whole bar clears 0 passes the one-sided 5 % test; dots: seeds).
    Right: each method's outcome per seed (one colour per seed: the pairing)."""
    results = add_avgdev(results)
    table = validation_table(results)
    fig, (ax_gain, ax_seed) = subplots(1, 2, figsize=(max(11.0, 1.1 * len(results['candidate'].unique())), 3.8))
    names = list(table.index)
    colours = ["tab:green" if str(n).startswith("causalmix") else "tab:gray" for n in names]
    xs = np.arange(len(names))
    if "gain_vs_equal_mean" in table:
        diffs = paired_differences(results, "equal")
        means = table["gain_vs_equal_mean"].to_numpy(dtype=float)
        se = np.nan_to_num(table["gain_vs_equal_se"].to_numpy(dtype=float))  # nan: one seed
        n_seeds = int(table["n_seeds"].min())
        errs = spread_factor(n_seeds) * se if n_seeds > 1 else np.zeros_like(se)
        ax_gain.bar(xs, means, yerr=errs, capsize=5, color=colours, alpha=0.8)
        for i, name in enumerate(names):
            ax_gain.scatter(np.full(len(diffs), i + 0.18), diffs[name], color="black", s=10, zorder=3)
        ax_gain.axhline(0, color="black", lw=0.8)
        ax_gain.set_ylabel("AvgDev − AvgDev(equal), same seed")
        ax_gain.set_title("Paired gain over equal (90 % t-interval; dots: seeds)")
    else:
        ax_gain.bar(xs, table[f"{SCORE}_mean"], yerr=table[f"{SCORE}_std"], capsize=5, color=colours)
        ax_gain.set_title("AvgDev per method (mean ± std)")
    ax_gain.set_xticks(xs, names, rotation=20)
    wide = results.pivot_table(index="seed", columns="candidate", values=SCORE)[names]
    # markers only, side by side per seed: the methods have no order for a line to follow
    offsets = np.linspace(-0.2, 0.2, len(wide)) if len(wide) > 1 else [0.0]
    for offset, (seed, row) in zip(offsets, wide.iterrows()):
        ax_seed.plot(xs + offset, row.to_numpy(), marker="o", ls="none", label=f"seed {seed}")
    ax_seed.set_xticks(xs, names, rotation=20)
    ax_seed.set_ylabel("target AvgDev (tasks standardised)")
    ax_seed.set_title("Outcome per seed (higher is better)")
    ax_seed.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return fig
