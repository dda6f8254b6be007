"""Validation of recommended mixtures: which mixtures compete, and how their outcomes compare.

The miniature of the paper's target experiment: train the target model on the target pool
with each competing mixture (CausalMix-A, CausalMix-S, the ablations no-dml and no-covariates,
RegMix, equal, the pool's natural token share, the best proxy run's mixture, a grid over the
simplex, or mixtures from files) over a few seeds, evaluate the same dev suite, and compare.

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

import json
import math
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from core.errors import UserError

CAUSALMIX = {"causalmix-a": ("causalmix-A", "analytic"), "causalmix-s": ("causalmix-S", "search")}
ABLATIONS = {"no-dml": "no_dml_model", "no-covariates": "no_covariates_model"}
"""Ablations: the same analytic policy on another fit (the `regression` estimator: no
orthogonalisation; the forest on the runs without covariates: state-agnostic)."""
BUILTIN = (*CAUSALMIX, *ABLATIONS, "regmix", "equal", "natural", "best-run", "grid")
DEFAULT_MIXTURES = ("causalmix-a", "causalmix-s", "regmix", "equal", "natural")
NEEDS = {"regmix": "--regmix-model DIR (fitted with `launch.py fit --estimator regmix`)",
         "no-dml": "--no-dml-model DIR (fitted with `launch.py fit --estimator regression`)",
         "no-covariates": "--no-covariates-model DIR (the forest fitted on the runs table without "
                          "its x.* columns)",
         "best-run": "--runs FILE (the sweep's runs.parquet)",
         "grid": "--grid N (N >= 1 mixtures spread over the simplex)"}
BASELINES = ("equal", "regmix", "no-covariates")
SCORE = "avgdev"
SPREAD_ALPHA = 0.05
WEIGHT_SUM_TOL = 1e-3


def natural_mixture(domain_tokens: Mapping[str, float]) -> dict[str, float]:
    total = float(sum(domain_tokens.values()))
    return {d: float(t) / total for d, t in domain_tokens.items()}


def parse_mixture_list(spec: str | Sequence[str] | None, *, have_regmix: bool,
                       have: Sequence[str] = ()) -> tuple[str, ...]:
    """Entries of `--mixtures` (names lower-cased, files kept as given). None: the default set,
    without regmix when no RegMix model is given. `have`: which of no-dml, no-covariates,
    best-run, grid have what they need (NEEDS); naming one that does not is an error."""
    available = {*have, *(("regmix",) if have_regmix else ())}
    if spec is None:
        return tuple(n for n in DEFAULT_MIXTURES if n not in NEEDS or n in available)
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    entries = []
    for raw in items:
        item = str(raw).strip()
        if not item:
            raise UserError(f"--mixtures {spec!r}: empty entry")
        is_file = item.lower().endswith(".json")
        entry = item if is_file else item.lower()
        if not is_file and entry not in BUILTIN:
            raise UserError(f"--mixtures: unknown mixture {item!r}; choose from {', '.join(BUILTIN)} "
                            "or give a FILE.json")
        if entry in NEEDS and entry not in available:
            raise UserError(f"--mixtures names {entry}, which needs {NEEDS[entry]}")
        if entry in entries:
            raise UserError(f"--mixtures names {item!r} twice")
        entries.append(entry)
    return tuple(entries)


def grid_mixtures(domains: Sequence[str], n: int, resolution: int = 12) -> list[dict[str, float]]:
    """The Grid baseline: `n` mixtures spread over the simplex, deterministically. Candidates
    are the lattice {k / resolution}; the first pick is the centre-most point, each next one the
    lattice point farthest (L2) from those picked (greedy max-min spread), ties to the first in
    lattice order. So the grid covers corners, edges and the interior evenly for any n."""
    if n < 1:
        raise UserError(f"--grid must be >= 1, got {n}")
    k = len(domains)
    import itertools

    lattice = np.array([c for c in itertools.product(range(resolution + 1), repeat=k)
                        if sum(c) == resolution], dtype=float) / resolution
    if n > len(lattice):
        raise UserError(f"--grid {n}: at most {len(lattice)} distinct mixtures at lattice step "
                        f"1/{resolution}")
    centre = np.full(k, 1.0 / k)
    picked = [int(np.argmin(((lattice - centre) ** 2).sum(axis=1)))]
    dist = ((lattice - lattice[picked[0]]) ** 2).sum(axis=1)
    while len(picked) < n:
        nxt = int(np.argmax(dist))
        picked.append(nxt)
        dist = np.minimum(dist, ((lattice - lattice[nxt]) ** 2).sum(axis=1))
    return [{d: float(w) for d, w in zip(domains, lattice[i])} for i in picked]


def best_run_mixture(runs: pd.DataFrame, domains: Sequence[str]) -> tuple[dict[str, float], str]:
    """The mixture of the proxy run with the highest y (and its run_id)."""
    missing = [d for d in domains if f"mix.{d}" not in runs]
    if missing or "y" not in runs or runs.empty:
        raise UserError(f"runs table for best-run lacks rows or columns y / mix.{missing}")
    best = runs.loc[runs["y"].astype(float).idxmax()]
    return {d: float(best[f"mix.{d}"]) for d in domains}, str(best.get("run_id", best.name))


def read_mixture_file(path: str | Path, domains: Sequence[str]) -> dict[str, float]:
    """A mixture {domain: weight} from JSON: the object itself, or a `recommend` output
    (its "mixture"). The domains must be the model's, the weights >= 0 and sum to 1."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"--mixtures: mixture file {path} not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"mixture file {path} is not valid JSON: {exc}") from None
    if isinstance(data, dict) and isinstance(data.get("mixture"), dict):
        data = data["mixture"]
    if not isinstance(data, dict):
        raise UserError(f"mixture file {path}: expected {{domain: weight}} or a recommend output")
    missing, extra = [d for d in domains if d not in data], sorted(set(data) - set(domains))
    if missing or extra:
        raise UserError(f"mixture file {path}: domains do not match the pool's {list(domains)}: "
                        f"missing {missing}, extra {extra}")
    weights = {}
    for d in domains:
        w = data[d]
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0:
            raise UserError(f"mixture file {path}: weight of {d!r} must be a finite number >= 0, got {w!r}")
        weights[d] = float(w)
    total = sum(weights.values())
    if abs(total - 1.0) > WEIGHT_SUM_TOL:
        raise UserError(f"mixture file {path}: weights sum to {total:.6g}, not 1 "
                        f"(tolerance {WEIGHT_SUM_TOL})")
    return {d: w / total for d, w in weights.items()}


def _file_label(path: str) -> str:
    return Path(path).stem


def candidate_mixtures(model, covariates: Mapping[str, float], domain_tokens: Mapping[str, float], *,
                       entries: Sequence[str] = DEFAULT_MIXTURES, trust_radius: float | None = None,
                       regmix_model=None, no_dml_model=None, no_covariates_model=None,
                       runs: pd.DataFrame | None = None, grid: int = 0, constraints=None) -> dict[str, dict]:
    """{candidate name: {"mixture": {domain: w}, "source": ...}} for the target pool, in the
    order of `entries` (parse_mixture_list); `grid` adds grid-01 .. grid-N in its place.
    `constraints` (a MixtureBounds: token caps, fixed weights) bind every model's policy."""
    kwargs = {} if trust_radius is None else {"trust_radius": trust_radius}
    bounded = {} if constraints is None else {"constraints": constraints}
    domains = list(model.domains)
    ablations = {"no-dml": no_dml_model, "no-covariates": no_covariates_model}
    candidates = {}
    for entry in entries:
        if entry in CAUSALMIX:
            name, policy = CAUSALMIX[entry]
            rec = model.recommend(covariates, policy=policy, **kwargs, **bounded)
            candidates[name] = {"mixture": rec["mixture"], "source": f"{model.estimator_name}/{policy}",
                                "expected_gain": rec["expected_gain"], "interval": rec["interval"]}
        elif entry in ablations:
            other = ablations[entry]
            if other is None:
                raise UserError(f"{entry} needs {NEEDS[entry]}")
            if list(other.domains) != domains:
                raise UserError(f"{entry} model domains {other.domains} differ from {domains}")
            missing = [n for n in other.covariate_names if n not in covariates]
            if missing:
                raise UserError(f"{entry} model needs covariates {missing} the target pool's features lack")
            rec = other.recommend({n: covariates[n] for n in other.covariate_names}, policy="analytic",
                                  **kwargs, **bounded)
            candidates[entry] = {"mixture": rec["mixture"], "source": f"{other.estimator_name}/analytic"
                                 + (" (no covariates)" if not other.covariate_names else ""),
                                 "expected_gain": rec["expected_gain"], "interval": rec["interval"]}
        elif entry == "regmix":
            if regmix_model is None:
                raise UserError("regmix needs --regmix-model")
            if list(regmix_model.domains) != domains:
                raise UserError(f"RegMix model domains {regmix_model.domains} differ from {domains}")
            rec = regmix_model.recommend({n: covariates[n] for n in regmix_model.covariate_names},
                                         policy="top-k", **bounded)
            candidates["regmix"] = {"mixture": rec["mixture"], "source": "regmix/top-k"}
        elif entry == "equal":
            candidates["equal"] = {"mixture": {d: 1.0 / len(domains) for d in domains}, "source": "equal"}
        elif entry == "natural":
            candidates["natural"] = {"mixture": natural_mixture({d: domain_tokens[d] for d in domains}),
                                     "source": "token share of the pool"}
        elif entry == "best-run":
            if runs is None:
                raise UserError(f"best-run needs {NEEDS['best-run']}")
            mixture, run_id = best_run_mixture(runs, domains)
            candidates["best-run"] = {"mixture": mixture, "source": f"proxy run {run_id} (highest y)"}
        elif entry == "grid":
            for i, mixture in enumerate(grid_mixtures(domains, grid), 1):
                candidates[f"grid-{i:02d}"] = {"mixture": mixture, "source": f"grid point {i} of {grid}"}
        else:
            name = _file_label(entry)
            if name in candidates or name.lower() in BUILTIN or name.lower().startswith("grid-"):
                raise UserError(f"--mixtures: file {entry} would be named {name!r}, which is taken; rename it")
            candidates[name] = {"mixture": read_mixture_file(entry, domains), "source": str(entry)}
    return candidates


def add_avgdev(results: pd.DataFrame) -> pd.DataFrame:
    """`results` with column `avgdev` (module docstring): per task, the signed metric (NLLs
    negated) standardised over all rows, then the mean over tasks."""
    from causal.objective import default_metrics, lower_is_better

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
    """Mean and s.e. of paired differences, and whether they clear the spread (one-sided t-test)."""
    d = np.asarray([v for v in diffs if np.isfinite(v)], dtype=float)
    n = len(d)
    mean = float(d.mean()) if n else float("nan")
    se = float(d.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
    k = spread_factor(n, alpha)
    if n < 2:
        verdict = "one seed"
    elif mean > k * se:
        verdict = "better"
    elif mean < -k * se:
        verdict = "worse"
    else:
        verdict = "within spread"
    return {"mean": mean, "se": se, "n": n, "positive_seeds": int((d > 0).sum()), "verdict": verdict}


def seeds_needed(mean_gain: float, sd: float, *, alpha: float = SPREAD_ALPHA, most: int = 1000) -> int | None:
    """Seeds a paired gain of `mean_gain` with per-seed std `sd` would need to clear the rule
    (None: a gain <= 0 never does, or more than `most`)."""
    if not mean_gain > 0:
        return None
    for n in range(2, most + 1):
        if mean_gain > spread_factor(n, alpha) * sd / np.sqrt(n):
            return n
    return None


def validation_table(results: pd.DataFrame) -> pd.DataFrame:
    """The paper's table in numbers: per method, its mixture, mean and std over seeds of every
    `metric.*` column, of AvgDev and of y, and the paired AvgDev gain against each baseline
    present (equal, regmix, no-covariates)."""
    from causal.objective import default_metrics

    results = add_avgdev(results)
    metrics = default_metrics(results.columns) + [SCORE, "y"]
    grouped = results.groupby("candidate", sort=False)
    table = pd.DataFrame(index=pd.Index(results["candidate"].unique(), name="method"))
    mix_cols = [c for c in results.columns if c.startswith("mix.")]
    if mix_cols:
        first = grouped[mix_cols].first()
        table["mixture"] = [mixture_label({c[len("mix."):]: first.at[n, c] for c in mix_cols})
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
    Right: y per seed across methods (one line per seed: the pairing)."""
    from core.figure import subplots

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
    for seed, row in wide.iterrows():
        ax_seed.plot(xs, row.to_numpy(), marker="o", label=f"seed {seed}")
    ax_seed.set_xticks(xs, names, rotation=20)
    ax_seed.set_ylabel("target AvgDev (tasks standardised)")
    ax_seed.set_title("Outcome per seed (higher is better)")
    ax_seed.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return fig
