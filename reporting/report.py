"""`report`: the figures and tables of a run directory, for people to look at.

Reads what the other stages wrote: RUN_DIR/runs.parquet (the sweep), RUN_DIR/policy.jsonl
(the fit actor's snapshots), a fitted model directory (default RUN_DIR/model), and
optionally a validation folder. Writes PNG figures and a `report.md` that links them.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from causalmix.causal.covariates import covariate_name
from causalmix.causal.metric_returns import metric_returns, plot_metric_returns
from causalmix.causal.objective import default_metrics
from causalmix.causal.runs_table import COV, MIX, validate_runs_frame
from causalmix.core.atomic import atomic_directory, atomic_write_text
from causalmix.core.errors import UserError
from causalmix.reporting import figures
from causalmix.validation.comparison import (plot_validation, power_sentences, seeds_outlook, table_markdown,
                                             validation_table, verdict_sentences)

# Deferred on purpose, so that importing this module does not load scikit-learn and scipy: the
# function-local imports (of these libraries or of this project's modules that import them).

RETURN_CURVE_POINTS = 15


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


def return_curves(model, target: dict[str, float], runs: pd.DataFrame,
                  feature: str = "normalized_loss", points: int = RETURN_CURVE_POINTS) -> dict[str, pd.DataFrame]:
    """Per domain: its marginal return (from equal, with interval) as its `feature` covariate
    sweeps the runs' range, every other covariate at `target`. Domains without that
    covariate use their first one."""
    from causalmix.causal.streaming import domain_returns

    curves = {}
    for domain in model.domains:
        own = [c for c in model.covariate_names if c.startswith(f"{COV}{domain}.")]
        if not own:
            continue
        name = covariate_name(domain, feature) if covariate_name(domain, feature) in own else own[0]
        lo, hi = model.covariate_ranges[name]
        rows = []
        for value in np.linspace(lo, hi, points):
            ret = domain_returns(model, {**target, name: float(value)}, "equal")[domain]
            rows.append({"value": value, "estimate": ret["estimate"], "lower": ret["interval"][0],
                         "upper": ret["interval"][1]})
        curve = pd.DataFrame(rows)
        curve.attrs.update(covariate=name, runs=runs[name].to_numpy(dtype=float) if name in runs else [])
        curves[domain] = curve
    return curves


def band_excludes_flat(curve: pd.DataFrame) -> bool:
    """Whether a return curve's interval band excludes every flat line: no constant lies under
    all its upper bounds and above all its lower bounds, i.e. max(lower) > min(upper)."""
    return bool(curve["lower"].max() > curve["upper"].min())


def _markdown_table(frame: pd.DataFrame) -> str:
    cols = [str(c) for c in frame.columns]
    lines = ["| " + " | ".join([frame.index.name or ""] + cols) + " |", "|" + "---|" * (len(cols) + 1)]
    for idx, row in frame.iterrows():
        cells = [f"{v:.4g}" if isinstance(v, (float, np.floating)) else str(v) for v in row]
        lines.append("| " + " | ".join([str(idx)] + cells) + " |")
    return "\n".join(lines)


def _runs_section(runs: pd.DataFrame, domains: list[str], run_dir: Path) -> list[str]:
    tokens = runs["tokens"] if "tokens" in runs else None
    samplers = runs["sampler"].value_counts().to_dict() if "sampler" in runs else {}
    # titled by what it holds: the folder is often just "runs"
    lines = [f"# CausalMix report: {len(runs)} proxy runs, {len(domains)} domains", "",
             f"- Run directory: `{run_dir.resolve()}`.",
             f"- **{len(runs)} proxy runs** over {len(domains)} domains ({', '.join(domains)})"
             + (f"; samplers: {', '.join(f'{k} {v}' for k, v in samplers.items())}" if samplers else "") + "."]
    if tokens is not None:
        lines.append(f"- Tokens per run: mean {tokens.mean():,.0f} (min {tokens.min():,.0f}, "
                     f"max {tokens.max():,.0f}); {tokens.sum():,.0f} in all.")
    lines += [f"- Outcome y: best {runs['y'].max():.4g} (run {runs.loc[runs['y'].idxmax(), 'run_id']}), "
              f"median {runs['y'].median():.4g}, std over runs {runs['y'].std():.3g}.", ""]
    return lines


def _model_section(model, runs: pd.DataFrame, target, tmp: Path, cv_folds: int, summary: dict,
                   jobs: int) -> list[str]:
    from causalmix.causal.selection import cross_fitted_predictions

    lines = [f"## Fitted model ({model.estimator_name}, {model.n_runs} runs)", ""]
    target = target or dict(zip(model.covariate_names, runs[model.covariate_names].mean().tolist()))
    curves = return_curves(model, target, runs)
    if curves:
        lines += _return_curves_section(curves, model, target, tmp, summary)
    else:
        lines += ["No return curves: the model has no covariates (e.g. an imported swarm without data-state "
                  "features), so each domain's return is one number, not a curve.", ""]
    lines += _selection_and_radius_section(model, target, tmp, summary)
    lines += _metric_returns_section(model, runs, target, tmp, summary, jobs)
    table = validate_runs_frame(runs[["run_id", *(f"{MIX}{d}" for d in model.domains),
                                      *model.covariate_names, "y"]], where="runs for cross-fitting")
    try:
        predicted, folds = cross_fitted_predictions(table, model.estimator, folds=cv_folds, jobs=jobs)
    except UserError as exc:
        return lines + [f"Held-out prediction skipped: {exc}", ""]
    samplers = runs["sampler"] if "sampler" in runs else ["runs"] * len(runs)
    summary["cross_fit"] = figures.plot_predicted_vs_actual(table.y, predicted, samplers, folds,
                                                            tmp / "predicted_vs_actual.png")
    summary["figures"].append("predicted_vs_actual.png")
    cv = summary["cross_fit"]
    return lines + [f"Held-out runs ({folds}-fold cross-fitting with the model's estimator settings): "
                    f"Spearman {cv['spearman']:.2f}, R² {cv['r2']:.2f}.", "",
                    "![predicted vs actual](predicted_vs_actual.png)", ""]


def _return_curves_section(curves: dict, model, target, tmp: Path, summary: dict) -> list[str]:
    figures.plot_return_curves(curves, target, tmp / "return_curves.png")
    lines = ["Marginal return of each domain (gain per unit of weight moved to it from equal) as its "
             "covariate varies over the runs' range, the other covariates at the target pool's; dashed "
             "line: the target pool.", "", "![return curves](return_curves.png)", ""]
    flat = [d for d, c in curves.items() if np.ptp(c["estimate"]) <= 1e-9 * (1 + np.abs(c["estimate"]).max())]
    excludes = {d: band_excludes_flat(c) for d, c in curves.items()}
    summary["return_curve_excludes_flat"] = excludes
    moving = [d for d, e in excludes.items() if e]
    lines += [(f"The 90 % band of {', '.join(moving)} excludes a flat line: the estimated return of "
               "that domain depends on its data state." if moving else
               "No domain's 90 % band excludes a flat line: at this number of runs the estimated "
               "returns are not shown to depend on the data state."), ""]
    if flat:
        lines += [f"The estimated return of {', '.join(flat)} does not change along its covariate: at "
                  f"{model.n_runs} runs the estimator finds no covariate dependence there (a forest with "
                  "too few runs per leaf makes no split), so the recommendation rests on the average "
                  "returns, not on the target pool's data state.", ""]
    summary["figures"].append("return_curves.png")
    return lines


def _selection_and_radius_section(model, target, tmp: Path, summary: dict) -> list[str]:
    """Which estimator `fit --estimator auto` chose and why, and how the trust radius of the
    recommendation for the target pool was set (the lower-bound-by-radius curve)."""
    lines = []
    selection = model.info().get("selection")
    if selection:
        rows = pd.DataFrame([{"candidate": name, "out-of-fold MSE": s["oof_mse"], "out-of-fold R²": s["oof_r2"],
                              "Spearman": s["oof_spearman"], "chosen": "yes" if name == selection["chosen"] else ""}
                             for name, s in selection["scores"].items()])
        lines += [f"Estimator: **{selection['chosen']}**, scored by "
                  f"{selection['criterion']}.", "", _markdown_table(rows), ""]
        lines += [f"Skipped: {name}: {why}." for name, why in selection["skipped"].items()] + [""]
        evidence = selection.get("mixture_evidence")
        if evidence:
            lines += [f"Does the mixture matter beyond the covariates? Out-of-fold MSE {evidence['model_oof_mse']:.4g} "
                      f"with it, {evidence['covariates_only_oof_mse']:.4g} for the covariates alone "
                      f"({evidence['covariates_only']}); {evidence['test']}: t = {evidence['t']:.2f}, "
                      f"p = {evidence['p_value']:.3g}. At p >= alpha (0.1 by default) the auto radius does not "
                      "move the mixture.", ""]
        summary["selection"] = selection
    rec = model.recommend(target)
    choice = rec["radius_choice"]
    figures.plot_radius_choice(choice, tmp / "radius_choice.png")
    summary["figures"].append("radius_choice.png")
    summary["radius_choice"] = {k: choice[k] for k in ("mode", "radius", "support_radius", "reason")}
    return lines + [f"Trust radius of CausalMix-A for the target pool: {choice['radius']:.3f} ({choice['reason']}).",
                    "", "![trust radius](radius_choice.png)", ""]


def _metric_returns_section(model, runs: pd.DataFrame, target, tmp: Path, summary: dict, jobs: int) -> list[str]:
    """Domain x metric returns at the target pool: one fit per metric (causal/metric_returns.py)."""
    from causalmix.causal.fitting import FitConfig

    if not default_metrics(runs.columns):
        return []
    try:
        estimates, half = metric_returns(runs, target, config=FitConfig(estimator=model.estimator_name, jobs=jobs))
    except UserError as exc:
        return [f"Per-metric returns skipped: {exc}", ""]
    plot_metric_returns(estimates, tmp / "metric_returns.png")
    summary["figures"].append("metric_returns.png")
    summary["metric_returns"] = {m: estimates[m].to_dict() for m in estimates.columns}
    shown = estimates.map(lambda v: f"{v:+.3g}") + half.map(lambda v: f" ± {v:.2g}")
    return ["### What each domain does to each metric", "",
            f"Estimated return of each domain on each dev metric at the target pool (one "
            f"{model.estimator_name} fit per metric on the same runs, signed so that higher is better; "
            "± half the 90 % interval).", "", "![metric returns](metric_returns.png)", "",
            _markdown_table(shown), ""]


def _validation_section(vdir: Path, tmp: Path, summary: dict, pool: str | None = None) -> list[str]:
    """The validation folder's table, verdict, caps and power; `pool`: the target pool's name
    when the report has several (its figure is then validation-POOL.png)."""
    if not (vdir / "validation.parquet").is_file():
        raise UserError(f"validation folder {vdir} has no validation.parquet (run `launch.py validate`)")
    results = pd.read_parquet(vdir / "validation.parquet")
    table = validation_table(results)
    vsummary = json.loads((vdir / "summary.json").read_text(encoding="utf-8"))
    mixtures = {n: c["mixture"] for n, c in vsummary["candidates"].items()}
    if pool is None:
        summary["validated_mixtures"] = mixtures
    else:
        summary.setdefault("validated_mixtures", {})[pool] = mixtures
    figure = "validation.png" if pool is None else f"validation-{pool}.png"
    plot_validation(results, tmp / figure)
    summary["figures"].append(figure)
    summary["validation_best"] = str(table.index[0])
    seeds = int(table["n_seeds"].max())
    spread = table["avgdev_std"]
    lines = [f"## Validation on the target model{f': {pool}' if pool else ''}", "",
             f"- Target pool trained on each mixture with {seeds} seed(s) (seed s shared by every "
             f"mixture: same initial weights and document order per domain), "
             f"{results['tokens'].mean():,.0f} tokens per run on average.",
             f"- Spread: seed-to-seed std of AvgDev per method {spread.min():.4f}–{spread.max():.4f}; "
             + ("standard error of the paired difference to equal "
                f"{table['gain_vs_equal_se'].drop('equal', errors='ignore').min():.4f}–"
                f"{table['gain_vs_equal_se'].drop('equal', errors='ignore').max():.4f}."
                if "gain_vs_equal_se" in table else "no equal baseline to pair with."), "",
             f"![validation]({figure})", "", table_markdown(table), "",
             "The mixtures validated (from the fitted model directories; these, not the sweep's "
             "round snapshots above, are what the target model trained on):", "",
             _markdown_table(pd.DataFrame(mixtures).rename_axis("domain")), "",
             *vsummary.get("caps", []), ""]
    verdict = verdict_sentences(table)
    summary["verdict"] = verdict
    if pool is not None:
        summary.setdefault("verdict_per_pool", {})[pool] = verdict[-1]
    lines += ["**" + verdict[-1] + "**", "", *(f"- {s}" for s in verdict[:-1]), ""]
    power = power_sentences(table)
    if power:
        lines += ["Power of the verdict (one-sided paired t-test at 5 %, at the per-seed spread measured here):",
                  "", *(f"- {s}" for s in power), ""]
    outlook = seeds_outlook(table)
    if outlook:
        lines += ["What would separate them: more seeds for a gain this size (below), more proxy runs "
                  "(narrower return intervals, covariate dependence the forest can resolve), or a wider "
                  "trust radius (the CausalMix policies move at most that far from equal, which bounds "
                  "the gain over equal).", "", *(f"- {s}" for s in outlook), ""]
    return lines


def write_report(run_dir: str | Path, out: str | Path | None = None, *,
                 validation_dir: str | Path | Sequence[str | Path] | None = None,
                 model_dir: str | Path | None = None, cv_folds: int = 4, overwrite: bool = False,
                 jobs: int = 1) -> dict:
    """`validation_dir`: one validation folder, or several (one per target pool, each with its
    own section and verdict, named after the folder; the return curves use the first's pool).
    `jobs`: processes for the out-of-fold fits (the held-out predictions, and each per-metric
    fit's held-out error), as causal.fitting.FitConfig.jobs; the report is the same whatever it is."""
    from causalmix.causal.model_dir import load_model_dir

    run_dir = Path(run_dir)
    out = Path(out) if out is not None else run_dir / "report"
    runs_path = run_dir / "runs.parquet"
    if not runs_path.is_file():
        raise UserError(f"{run_dir} has no runs.parquet (run `launch.py sweep --out {run_dir}` first)")
    runs = pd.read_parquet(runs_path)
    if runs.empty or "y" not in runs:
        raise UserError(f"{runs_path} holds no finished runs with an outcome column 'y'")
    vdirs = ([] if validation_dir is None else [Path(validation_dir)] if isinstance(validation_dir, (str, Path))
             else [Path(v) for v in validation_dir])
    for vdir in vdirs:
        if not (vdir / "summary.json").is_file():
            raise UserError(f"validation folder {vdir} has no summary.json (run `launch.py validate`)")
    domains = [c[len(MIX):] for c in runs.columns if c.startswith(MIX)]
    snapshots = read_policy_snapshots(run_dir / "policy.jsonl")
    latest = snapshots[-1] if snapshots else None
    if model_dir is None and (run_dir / "model" / "model.json").is_file():
        model_dir = run_dir / "model"
    model = load_model_dir(model_dir) if model_dir is not None else None
    target = latest.get("target_covariates") if latest else None
    if vdirs:
        # the target pool the (first) validated mixtures were recommended for
        pool_cov = json.loads((vdirs[0] / "summary.json").read_text()).get("pool_covariates")
        target = pool_cov or target
    sections = _runs_section(runs, domains, run_dir)
    summary = {"n_runs": int(len(runs)), "best_y": float(runs["y"].max()), "figures": [], "out": str(out)}
    with atomic_directory(out, kind="report folder", markers=("report.md",), overwrite=overwrite,
                          inputs=[runs_path, run_dir / "policy.jsonl", *vdirs, model_dir]) as tmp:
        figures.plot_sampled_mixtures(runs, domains, tmp / "sampled_mixtures.png")
        figures.plot_outcome_by_domain(runs, domains, tmp / "outcome_by_domain.png")
        sections += ["## Proxy runs", "", "![sampled mixtures](sampled_mixtures.png)", "",
                     "![outcome by domain](outcome_by_domain.png)", ""]
        summary["figures"] += ["sampled_mixtures.png", "outcome_by_domain.png"]
        if any(c.startswith(COV) for c in runs.columns):
            figures.plot_covariate_coverage(runs, target, tmp / "covariate_coverage.png")
            sections += ["![covariate coverage](covariate_coverage.png)", ""]
            summary["figures"].append("covariate_coverage.png")
        if model is not None:
            sections += _model_section(model, runs, target, tmp, cv_folds, summary, jobs)
        if latest:
            figures.plot_policy_trace(snapshots, tmp / "policy_trace.png")
            figures.plot_returns(latest["returns"], tmp / "returns.png")
            rec = pd.DataFrame({p: latest["policies"][p]["mixture"] for p in latest["policies"]})
            rec.index.name = "domain"
            rounds = "round" in latest
            sections += [f"## The sweep's {'adaptive rounds' if rounds else 'policy snapshots'} "
                         f"(last: {'round' if rounds else 'snapshot'} {latest['version']}, fitted on "
                         f"{latest['n_runs']} runs, {latest['estimator']})", "",
                         "What the fit actor recommended during the sweep (adaptive runs were drawn "
                         "around it); the validated mixtures below come from the one final fit.", "",
                         "![policy trace](policy_trace.png)", "",
                         "![returns](returns.png)", "", _markdown_table(rec), ""]
            summary["figures"] += ["policy_trace.png", "returns.png"]
            summary["sweep_snapshot"] = {p: latest["policies"][p]["mixture"] for p in latest["policies"]}
        for vdir in vdirs:
            sections += _validation_section(vdir, tmp, summary, vdir.name if len(vdirs) > 1 else None)
        if len(vdirs) > 1:
            sections += ["## Verdict per target pool", "",
                         *(f"- **{pool}**: {v}" for pool, v in summary["verdict_per_pool"].items()), ""]
        atomic_write_text(tmp / "report.md", "\n".join(sections))
    return summary
