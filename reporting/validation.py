"""Validation of recommended mixtures: which mixtures compete, and how their outcomes compare.

The miniature of the paper's target experiment: train the target model on the target pool
with each competing mixture (CausalMix-A, CausalMix-S, RegMix, equal, the pool's natural token
share, or mixtures from files) over a few seeds, evaluate the same dev suite, and compare.

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
BUILTIN = (*CAUSALMIX, "regmix", "equal", "natural")
DEFAULT_MIXTURES = ("causalmix-a", "causalmix-s", "regmix", "equal", "natural")
BASELINES = ("equal", "regmix")
SPREAD_ALPHA = 0.05
WEIGHT_SUM_TOL = 1e-3


def natural_mixture(domain_tokens: Mapping[str, float]) -> dict[str, float]:
    total = float(sum(domain_tokens.values()))
    return {d: float(t) / total for d, t in domain_tokens.items()}


def parse_mixture_list(spec: str | Sequence[str] | None, *, have_regmix: bool) -> tuple[str, ...]:
    """Entries of `--mixtures` (names lower-cased, files kept as given). None: the default set,
    without regmix when no RegMix model is given."""
    if spec is None:
        return tuple(n for n in DEFAULT_MIXTURES if have_regmix or n != "regmix")
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
        if entry == "regmix" and not have_regmix:
            raise UserError("--mixtures names regmix, but no RegMix model was given (--regmix-model DIR, "
                            "fitted with `launch.py fit --estimator regmix`)")
        if entry in entries:
            raise UserError(f"--mixtures names {item!r} twice")
        entries.append(entry)
    return tuple(entries)


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
                       regmix_model=None) -> dict[str, dict]:
    """{candidate name: {"mixture": {domain: w}, "source": ...}} for the target pool, in the
    order of `entries` (parse_mixture_list)."""
    kwargs = {} if trust_radius is None else {"trust_radius": trust_radius}
    domains = list(model.domains)
    candidates = {}
    for entry in entries:
        if entry in CAUSALMIX:
            name, policy = CAUSALMIX[entry]
            rec = model.recommend(covariates, policy=policy, **kwargs)
            candidates[name] = {"mixture": rec["mixture"], "source": f"{model.estimator_name}/{policy}",
                                "expected_gain": rec["expected_gain"], "interval": rec["interval"]}
        elif entry == "regmix":
            if regmix_model is None:
                raise UserError("regmix needs --regmix-model")
            if list(regmix_model.domains) != domains:
                raise UserError(f"RegMix model domains {regmix_model.domains} differ from {domains}")
            rec = regmix_model.recommend({n: covariates[n] for n in regmix_model.covariate_names},
                                         policy="top-k")
            candidates["regmix"] = {"mixture": rec["mixture"], "source": "regmix/top-k"}
        elif entry == "equal":
            candidates["equal"] = {"mixture": {d: 1.0 / len(domains) for d in domains}, "source": "equal"}
        elif entry == "natural":
            candidates["natural"] = {"mixture": natural_mixture({d: domain_tokens[d] for d in domains}),
                                     "source": "token share of the pool"}
        else:
            name = _file_label(entry)
            if name in candidates or name.lower() in BUILTIN:
                raise UserError(f"--mixtures: file {entry} would be named {name!r}, which is taken; rename it")
            candidates[name] = {"mixture": read_mixture_file(entry, domains), "source": str(entry)}
    return candidates


def summarize(results: pd.DataFrame) -> pd.DataFrame:
    """Mean, standard error and count of `y` per candidate, best first, with the gain over equal."""
    grouped = results.groupby("candidate")["y"]
    table = pd.DataFrame({"y_mean": grouped.mean(), "y_se": grouped.sem().fillna(0.0),
                          "n_seeds": grouped.count()})
    if "equal" in table.index:
        table["gain_vs_equal"] = table["y_mean"] - table.at["equal", "y_mean"]
    return table.sort_values("y_mean", ascending=False)


def paired_differences(results: pd.DataFrame, baseline: str) -> pd.DataFrame:
    """Per candidate and seed: y - y(baseline, same seed) (seeds the baseline lacks are dropped)."""
    wide = results.pivot_table(index="seed", columns="candidate", values="y")
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
    """The paper's table in numbers: per method, mean and std over seeds of every `metric.*`
    column and of y (AvgDev), and the paired gain against each baseline present."""
    metrics = [c for c in results.columns if c.startswith("metric.")] + ["y"]
    grouped = results.groupby("candidate", sort=False)
    table = pd.DataFrame(index=pd.Index(results["candidate"].unique(), name="method"))
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
    return table.sort_values("y_mean", ascending=False)


def _pm(mean: float, std: float, digits: int = 4) -> str:
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def table_markdown(table: pd.DataFrame) -> str:
    """Markdown: method x per-task metric x AvgDev (mean ± std over seeds) and the paired gains."""
    metrics = [c[:-len("_mean")] for c in table.columns
               if c.startswith("metric.") and c.endswith("_mean")]
    header = ["method", *(m[len("metric."):] for m in metrics), "AvgDev (y)", "seeds"]
    bases = [b for b in BASELINES if f"gain_vs_{b}_mean" in table]
    header += [f"paired gain vs {b} (± s.e.)" for b in bases] + [f"vs {b}" for b in bases]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, row in table.iterrows():
        cells = [str(name), *(_pm(row[f"{m}_mean"], row[f"{m}_std"]) for m in metrics),
                 _pm(row["y_mean"], row["y_std"]), str(int(row["n_seeds"]))]
        for b in bases:
            se = row[f"gain_vs_{b}_se"]
            cells.append("-" if name == b else f"{row[f'gain_vs_{b}_mean']:+.4f} ± {se:.4f}")
        cells += [str(row[f"vs_{b}"]) for b in bases]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Per-task metrics: mean ± std over seeds (`_nll`: lower is better; `_em`: exact match, "
              "higher is better). AvgDev = y = their mean with NLLs negated (higher is better). Paired "
              "gain: mean over seeds of y − y(baseline, same seed) ± its standard error; 'better'/'worse' "
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
            parts.append(f"{VERDICT_WORDS[verdict]} {b} ({gain:+.4f} ± {se:.4f} s.e.)")
        sentences.append(f"{name} " + " and ".join(parts) + ".")
        if all(table.at[name, f"vs_{b}"] == "better" for b in bases):
            winners.append(name)
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
            lines.append(f"{name} vs {b}: observed gain {mean:+.4f}; "
                         + (f"at its per-seed spread it would need about {need} seeds to clear the rule."
                            if need else "not positive (or too small for any affordable number of seeds)."))
    return lines


def plot_validation(results: pd.DataFrame, path) -> None:
    """Left: paired gain over equal per method (bars from 0 = equal; error bars: 90 % t-interval,
    so a bar whose whole bar clears 0 passes the one-sided 5 % test; dots: seeds).
    Right: y per seed across methods (one line per seed: the pairing)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = validation_table(results)
    fig, (ax_gain, ax_seed) = plt.subplots(1, 2, figsize=(11, 3.8))
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
        ax_gain.set_ylabel("y − y(equal), same seed")
        ax_gain.set_title("Paired gain over equal (90 % t-interval; dots: seeds)")
    else:
        ax_gain.bar(xs, table["y_mean"], yerr=table["y_std"], capsize=5, color=colours)
        ax_gain.set_title("y per method (mean ± std)")
    ax_gain.set_xticks(xs, names, rotation=20)
    wide = results.pivot_table(index="seed", columns="candidate", values="y")[names]
    for seed, row in wide.iterrows():
        ax_seed.plot(xs, row.to_numpy(), marker="o", label=f"seed {seed}")
    ax_seed.set_xticks(xs, names, rotation=20)
    ax_seed.set_ylabel("target dev outcome y (AvgDev)")
    ax_seed.set_title("Outcome per seed (higher is better)")
    ax_seed.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
