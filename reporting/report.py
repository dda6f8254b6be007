"""`report`: the figures and tables of a run directory, for people to look at.

Reads what the other stages wrote: RUN_DIR/runs.parquet (the sweep), RUN_DIR/policy.jsonl
(the fit actor's snapshots), optionally a fitted model directory with the target pool's
covariates, and a validation folder. Writes PNG figures and a `report.md` that links them.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from core.atomic import atomic_directory, atomic_write_text
from core.errors import UserError


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def read_policy_snapshots(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    snapshots = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                snapshots.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise UserError(f"{path} line {lineno} is not valid JSON: {exc}") from None
    return snapshots


def plot_outcome_by_domain(runs: pd.DataFrame, domains: list[str], path: Path) -> None:
    plt = _plt()
    fig, axes = plt.subplots(1, len(domains), figsize=(3.2 * len(domains), 3.0), sharey=True)
    axes = np.atleast_1d(axes)
    groups = runs.groupby(runs["sampler"]) if "sampler" in runs else [("runs", runs)]
    for ax, domain in zip(axes, domains):
        for name, frame in groups:
            ax.scatter(frame[f"mix.{domain}"], frame["y"], s=14, alpha=0.7, label=str(name))
        ax.set_xlabel(f"weight of {domain}")
    axes[0].set_ylabel("proxy dev outcome y")
    axes[-1].legend(fontsize=7)
    fig.suptitle(f"{len(runs)} proxy runs: outcome against each domain's weight")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_covariate_coverage(runs: pd.DataFrame, target: dict[str, float] | None, path: Path) -> None:
    """Range of each covariate over the runs, with the target pool's value: a forest does not
    extrapolate, so a target outside the runs' range is a warning sign."""
    names = [c for c in runs.columns if c.startswith("x.")]
    if not names:
        return
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 0.32 * len(names) + 1.2))
    values = runs[names]
    lo, hi = values.min(), values.max()
    scale = (hi - lo).replace(0, 1.0)
    for i, name in enumerate(names):
        ax.scatter((values[name] - lo[name]) / scale[name], np.full(len(values), i), s=6, color="tab:blue", alpha=0.4)
        if target and name in target:
            ax.scatter([(target[name] - lo[name]) / scale[name]], [i], marker="D", color="tab:red", s=30, zorder=3)
    ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.set_xlabel("position within the runs' range (0 = min, 1 = max); red: target pool")
    ax.set_title("Covariate coverage of the proxy runs")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_policy_trace(snapshots: list[dict], path: Path) -> None:
    plt = _plt()
    fig, (ax_mix, ax_ret) = plt.subplots(1, 2, figsize=(10, 3.4))
    n_runs = [s["n_runs"] for s in snapshots]
    domains = list(snapshots[-1]["returns"])
    for domain in domains:
        ax_mix.plot(n_runs, [s["policies"]["analytic"]["mixture"][domain] for s in snapshots], marker="o",
                    ms=3, label=domain)
        est = np.array([s["returns"][domain]["estimate"] for s in snapshots])
        lo = np.array([s["returns"][domain]["interval"][0] for s in snapshots])
        hi = np.array([s["returns"][domain]["interval"][1] for s in snapshots])
        line, = ax_ret.plot(n_runs, est, marker="o", ms=3, label=domain)
        ax_ret.fill_between(n_runs, lo, hi, color=line.get_color(), alpha=0.15)
    ax_mix.set_xlabel("runs fitted")
    ax_mix.set_ylabel("recommended weight (analytic)")
    ax_mix.legend(fontsize=7)
    ax_ret.axhline(0, color="black", lw=0.6)
    ax_ret.set_xlabel("runs fitted")
    ax_ret.set_ylabel("estimated marginal return")
    fig.suptitle("Policy snapshots as runs land")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_returns(returns: dict[str, dict], path: Path) -> None:
    plt = _plt()
    domains = list(returns)
    est = np.array([returns[d]["estimate"] for d in domains])
    lo = np.array([returns[d]["interval"][0] for d in domains])
    hi = np.array([returns[d]["interval"][1] for d in domains])
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.bar(domains, est, yerr=[est - lo, hi - est], capsize=4,
           color=["tab:green" if e > 0 else "tab:red" for e in est], alpha=0.8)
    ax.axhline(0, color="black", lw=0.6)
    ax.set_ylabel("marginal return of the domain")
    ax.set_title("Estimated returns at the target pool (with interval)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _markdown_table(frame: pd.DataFrame) -> str:
    cols = [str(c) for c in frame.columns]
    lines = ["| " + " | ".join([frame.index.name or ""] + cols) + " |", "|" + "---|" * (len(cols) + 1)]
    for idx, row in frame.iterrows():
        cells = [f"{v:.4g}" if isinstance(v, (float, np.floating)) else str(v) for v in row]
        lines.append("| " + " | ".join([str(idx)] + cells) + " |")
    return "\n".join(lines)


def write_report(run_dir: str | Path, out: str | Path, *, validation_dir: str | Path | None = None) -> dict:
    run_dir = Path(run_dir)
    runs_path = run_dir / "runs.parquet"
    if not runs_path.is_file():
        raise UserError(f"{run_dir} has no runs.parquet (run `launch.py sweep --out {run_dir}` first)")
    runs = pd.read_parquet(runs_path)
    if runs.empty or "y" not in runs:
        raise UserError(f"{runs_path} holds no finished runs with an outcome column 'y'")
    domains = [c[len("mix."):] for c in runs.columns if c.startswith("mix.")]
    snapshots = read_policy_snapshots(run_dir / "policy.jsonl")
    latest = snapshots[-1] if snapshots else None
    sections = [f"# CausalMix report: {run_dir.name}", "",
                f"{len(runs)} proxy runs over {len(domains)} domains; best y = {runs['y'].max():.4g} "
                f"(run {runs.loc[runs['y'].idxmax(), 'run_id']}), median y = {runs['y'].median():.4g}.", ""]
    summary = {"n_runs": int(len(runs)), "best_y": float(runs["y"].max()), "figures": []}
    with atomic_directory(out) as tmp:
        plot_outcome_by_domain(runs, domains, tmp / "outcome_by_domain.png")
        sections += ["![outcome by domain](outcome_by_domain.png)", ""]
        summary["figures"].append("outcome_by_domain.png")
        target = latest.get("target_covariates") if latest else None
        if any(c.startswith("x.") for c in runs.columns):
            plot_covariate_coverage(runs, target, tmp / "covariate_coverage.png")
            sections += ["![covariate coverage](covariate_coverage.png)", ""]
            summary["figures"].append("covariate_coverage.png")
        if latest:
            plot_policy_trace(snapshots, tmp / "policy_trace.png")
            plot_returns(latest["returns"], tmp / "returns.png")
            rec = pd.DataFrame({p: latest["policies"][p]["mixture"] for p in latest["policies"]})
            rec.index.name = "domain"
            sections += [f"## Policy (snapshot {latest['version']}, {latest['n_runs']} runs, "
                         f"{latest['estimator']})", "", "![policy trace](policy_trace.png)", "",
                         "![returns](returns.png)", "", _markdown_table(rec), ""]
            summary["figures"] += ["policy_trace.png", "returns.png"]
            summary["recommended"] = {p: latest["policies"][p]["mixture"] for p in latest["policies"]}
        if validation_dir is not None:
            vdir = Path(validation_dir)
            if not (vdir / "summary.json").is_file():
                raise UserError(f"validation folder {vdir} has no summary.json (run `launch.py validate`)")
            vsum = json.loads((vdir / "summary.json").read_text())
            table = pd.DataFrame({k: {c: v[c] for c in ("y_mean", "y_se", "n_seeds", "gain_vs_equal") if c in v}
                                  for k, v in vsum["candidates"].items()}).T.sort_values("y_mean", ascending=False)
            table.index.name = "mixture"
            (tmp / "validation.png").write_bytes((vdir / "validation.png").read_bytes())
            sections += ["## Validation on the target model", "", "![validation](validation.png)", "",
                         _markdown_table(table), ""]
            summary["figures"].append("validation.png")
            summary["validation_best"] = vsum["best"]
        atomic_write_text(tmp / "report.md", "\n".join(sections))
    return summary
