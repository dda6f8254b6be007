"""Validation of recommended mixtures: which mixtures compete, and how their outcomes compare.

The miniature of the paper's target experiment: train the target model on the target pool
with each competing mixture (CausalMix-A, CausalMix-S, RegMix, equal, the pool's natural token
share) over a few seeds, evaluate the same dev suite, and compare the outcomes `y`.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd


def natural_mixture(domain_tokens: Mapping[str, float]) -> dict[str, float]:
    total = float(sum(domain_tokens.values()))
    return {d: float(t) / total for d, t in domain_tokens.items()}


def candidate_mixtures(model, covariates: Mapping[str, float], domain_tokens: Mapping[str, float], *,
                       trust_radius: float | None = None, regmix_model=None) -> dict[str, dict]:
    """{candidate name: {"mixture": {domain: w}, "source": ...}} for the target pool."""
    kwargs = {} if trust_radius is None else {"trust_radius": trust_radius}
    domains = list(model.domains)
    candidates = {}
    for policy, name in (("analytic", "causalmix-A"), ("search", "causalmix-S")):
        rec = model.recommend(covariates, policy=policy, **kwargs)
        candidates[name] = {"mixture": rec["mixture"], "source": f"{model.estimator_name}/{policy}",
                            "expected_gain": rec["expected_gain"], "interval": rec["interval"]}
    if regmix_model is not None:
        if list(regmix_model.domains) != domains:
            raise ValueError(f"RegMix model domains {regmix_model.domains} differ from {domains}")
        rec = regmix_model.recommend({n: covariates[n] for n in regmix_model.covariate_names}, policy="top-k")
        candidates["regmix"] = {"mixture": rec["mixture"], "source": "regmix/top-k"}
    candidates["equal"] = {"mixture": {d: 1.0 / len(domains) for d in domains}, "source": "equal"}
    natural = natural_mixture({d: domain_tokens[d] for d in domains})
    candidates["natural"] = {"mixture": natural, "source": "token share of the pool"}
    return candidates


def summarize(results: pd.DataFrame) -> pd.DataFrame:
    """Mean, standard error and count of `y` per candidate, best first, with the gain over equal."""
    grouped = results.groupby("candidate")["y"]
    table = pd.DataFrame({"y_mean": grouped.mean(), "y_se": grouped.sem().fillna(0.0),
                          "n_seeds": grouped.count()})
    if "equal" in table.index:
        table["gain_vs_equal"] = table["y_mean"] - table.at["equal", "y_mean"]
    return table.sort_values("y_mean", ascending=False)


def plot_validation(results: pd.DataFrame, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = summarize(results)
    fig, ax = plt.subplots(figsize=(7, 3.6))
    xs = np.arange(len(table))
    colours = ["tab:green" if n.startswith("causalmix") else "tab:gray" for n in table.index]
    # Points, not bars: outcomes are negative log-likelihood-like, so bars from 0 would mislead.
    for i, (name, colour) in enumerate(zip(table.index, colours)):
        ax.errorbar([i], [table.at[name, "y_mean"]], yerr=[table.at[name, "y_se"]], fmt="D",
                    color=colour, ms=8, capsize=5)
        ys = results.loc[results["candidate"] == name, "y"]
        ax.scatter(np.full(len(ys), i + 0.12), ys, color="black", s=10, zorder=3)
    ax.set_xticks(xs, table.index, rotation=20)
    ax.set_ylabel("target dev outcome y (higher is better)")
    ax.set_title("Target model trained on each mixture (mean ± s.e.; dots: seeds)")
    lo = float(results["y"].min())
    hi = float(results["y"].max())
    pad = 0.15 * (hi - lo or 1.0)
    ax.set_ylim(lo - pad, hi + pad)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
