"""Report figures lay out for 2 to 64 domains: every figure of `report` (and those that need a
fitted model, drawn from synthetic inputs) renders for 4, 17 and 64 domains within a bounded
pixel size, panels wrapped in a grid; a model without covariates reports without error."""
from __future__ import annotations

import json
import struct

import numpy as np
import pandas as pd
import pytest

from causalmix.causal.metric_returns import domain_ordered, plot_metric_returns
from causalmix.reporting import figures
from causalmix.reporting.report import write_report

MAX_SIDE_PX = 2300  # about 21 inches at the figures' 110 dpi
MAX_ASPECT = 4.0    # 17 domains in one row of panels were 5984 x 330 px


def png_size(path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", path
    return struct.unpack(">II", head[16:24])


def check_size(path) -> None:
    width, height = png_size(path)
    assert 200 <= width <= MAX_SIDE_PX and 200 <= height <= MAX_SIDE_PX, (path.name, width, height)
    assert max(width, height) / min(width, height) <= MAX_ASPECT, (path.name, width, height)


def synthetic_run_dir(tmp_path, k: int, n: int = 24):
    rng = np.random.default_rng(k)
    domains = [f"domain_{j:02d}" for j in range(k)]
    mix = rng.dirichlet(np.ones(k), size=n)
    runs = pd.DataFrame({"run_id": [f"run-{i:05d}" for i in range(n)],
                         **{f"mix.{d}": mix[:, j] for j, d in enumerate(domains)},
                         **{f"x.{d}.hes": rng.normal(size=n) for d in domains},
                         "y": mix @ rng.normal(size=k), "sampler": ["dirichlet", "adaptive"] * (n // 2),
                         "tokens": 1000})
    run_dir = tmp_path / f"runs-{k}"
    run_dir.mkdir()
    runs.to_parquet(run_dir / "runs.parquet")
    returns = {d: {"estimate": float(e), "interval": [float(e) - 0.3, float(e) + 0.3]}
               for d, e in zip(domains, rng.normal(size=k))}
    mixture = dict(zip(domains, rng.dirichlet(np.ones(k)).tolist()))
    with open(run_dir / "policy.jsonl", "w") as fh:
        for v in (1, 2):
            fh.write(json.dumps({"version": v, "round": v, "n_runs": 8 * v, "estimator": "causal-forest",
                                 "target_covariates": {f"x.{d}.hes": 0.0 for d in domains},
                                 "returns": returns, "policies": {"analytic": {"mixture": mixture}}}) + "\n")
    return run_dir, domains


@pytest.mark.parametrize("k", [4, 17, 64])
def test_every_report_figure_fits_for_many_domains(tmp_path, k):
    run_dir, domains = synthetic_run_dir(tmp_path, k)
    summary = write_report(run_dir)
    assert set(summary["figures"]) == {"sampled_mixtures.png", "outcome_by_domain.png", "covariate_coverage.png",
                                       "policy_trace.png", "returns.png"}
    for name in summary["figures"]:
        check_size(run_dir / "report" / name)
    text = (run_dir / "report" / "report.md").read_text()
    assert text.startswith(f"# CausalMix report: 24 proxy runs, {k} domains")

    # the model's figures, from synthetic curves, radius choice and metric returns
    curves = {}
    for d in domains:
        curve = pd.DataFrame({"value": np.linspace(0, 1, 5), "estimate": 0.1, "lower": -0.1, "upper": 0.3})
        curve.attrs.update(covariate=f"x.{d}.hes", runs=np.linspace(0, 1, 7))
        curves[d] = curve
    figures.plot_return_curves(curves, {f"x.{domains[0]}.hes": 0.5}, tmp_path / "return_curves.png")
    reason = "the lower bound of the gain is largest here, inside the runs' support, " * 3
    radius = np.linspace(0, 0.5, 11)
    figures.plot_radius_choice({"mode": "auto", "radius": 0.2, "reason": reason,
                                "curve": {"radius": radius, "gain": radius, "lower": radius - 0.1,
                                          "upper": radius + 0.1, "supported": radius < 0.3}},
                               tmp_path / "radius_choice.png")
    metrics = [f"{d}_nll" for d in reversed(domains)]
    estimates = pd.DataFrame(np.random.default_rng(0).normal(size=(k, k)), index=domains, columns=metrics)
    plot_metric_returns(estimates, tmp_path / "metric_returns.png")
    for name in ("return_curves.png", "radius_choice.png", "metric_returns.png"):
        check_size(tmp_path / name)


def test_wide_figures_wrap_into_a_grid_and_label_the_heaviest_domains():
    fig, axes = figures.panel_grid(17, width=3.2, height=3.0)
    assert len(axes) == 17 and len(fig.axes) == 24  # 3 rows of 8, the last 7 hidden
    assert sum(ax.get_visible() for ax in fig.axes) == 17
    domains = [f"d{j}" for j in range(20)]
    heaviest = figures.labelled_domains(domains, {d: j for j, d in enumerate(domains)})
    assert heaviest == {f"d{j}" for j in range(8, 20)}
    assert figures.labelled_domains(domains[:5]) == set(domains[:5])


def test_metric_columns_follow_the_domain_rows():
    assert domain_ordered(["harness_acc", "code_nll", "arithmetic_nll", "dialog_nll"],
                          ["arithmetic", "code", "dialog"]) == ["arithmetic_nll", "code_nll", "dialog_nll",
                                                                "harness_acc"]


def test_report_of_a_model_without_covariates(tmp_path, capsys):
    """An imported swarm (RegMix's, Olmix's) has no covariates: its model has no return curves,
    which used to crash the report (a figure of 0 panels), and recommend needs no `{}` file.
    fit and recommend say what they did on stderr, JSON on stdout."""
    from causalmix import launch
    from structural import StructuralModel

    runs = StructuralModel(n_domains=3, seed=4).runs(30)
    runs = runs.drop(columns=[c for c in runs.columns if c.startswith("x.")])
    run_dir = tmp_path / "imported"
    run_dir.mkdir()
    runs.to_parquet(run_dir / "runs.parquet")
    assert launch.main(["fit", "--runs", str(run_dir / "runs.parquet"), "--out", str(tmp_path / "model"),
                        "--estimator", "regression"]) == 0
    captured = capsys.readouterr()
    assert "fitted regression on 30 runs x 3 domains x 0 covariates" in captured.err
    assert json.loads(captured.out)["n_runs"] == 30
    assert launch.main(["recommend", "--model", str(tmp_path / "model")]) == 0
    captured = capsys.readouterr()
    assert "analytic mixture" in captured.err and "expected gain over the reference" in captured.err
    assert set(json.loads(captured.out)["mixture"]) == {"d0", "d1", "d2"}
    summary = write_report(run_dir, model_dir=tmp_path / "model")
    assert "return_curves.png" not in summary["figures"] and "radius_choice.png" in summary["figures"]
    assert "No return curves" in (run_dir / "report" / "report.md").read_text()
    for name in summary["figures"]:
        check_size(run_dir / "report" / name)
