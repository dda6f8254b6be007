"""Report figures and the validation summary, from hand-made run directories (no Ray)."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from causalmix import launch
from causalmix.core.errors import UserError
from causalmix.validation.candidates import natural_mixture
from causalmix.validation.comparison import summarize

DOMAINS = ["a", "b", "c"]


def _run_dir(tmp_path, n=12, snapshots=3):
    rng = np.random.default_rng(0)
    mix = rng.dirichlet(np.ones(3), size=n)
    runs = pd.DataFrame({"run_id": [f"run-{i:05d}" for i in range(n)],
                         **{f"mix.{d}": mix[:, j] for j, d in enumerate(DOMAINS)},
                         "x.a.hes": rng.normal(size=n), "x.b.hes": rng.normal(size=n),
                         "y": mix @ np.array([1.0, -1.0, 0.2]), "sampler": "dirichlet"})
    run_dir = tmp_path / "runs"
    run_dir.mkdir()
    runs.to_parquet(run_dir / "runs.parquet")
    with open(run_dir / "policy.jsonl", "w") as fh:
        for v in range(1, snapshots + 1):
            fh.write(json.dumps({
                "version": v, "n_runs": 4 * v, "estimator": "causal-forest",
                "target_covariates": {"x.a.hes": 0.1, "x.b.hes": 3.0},
                "returns": {d: {"estimate": e, "interval": [e - 0.5, e + 0.5]}
                            for d, e in zip(DOMAINS, [0.8, -0.9, 0.1])},
                "policies": {p: {"mixture": {"a": 0.5, "b": 0.2, "c": 0.3}} for p in ("analytic", "search")},
            }) + "\n")
    return run_dir


def test_report_writes_figures_and_markdown(tmp_path, capsys):
    run_dir = _run_dir(tmp_path)
    assert launch.main(["report", "--run-dir", str(run_dir), "--out", str(tmp_path / "rep")]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["n_runs"] == 12
    for name in ("outcome_by_domain.png", "covariate_coverage.png", "policy_trace.png", "returns.png"):
        assert (tmp_path / "rep" / name).read_bytes()[:4] == b"\x89PNG"
    text = (tmp_path / "rep" / "report.md").read_text()
    assert "snapshot 3" in text and "| a |" in text


def test_report_errors_name_the_missing_input(tmp_path, capsys):
    assert launch.main(["report", "--run-dir", str(tmp_path), "--out", str(tmp_path / "rep")]) == 2
    assert "runs.parquet" in capsys.readouterr().err
    run_dir = _run_dir(tmp_path)
    (run_dir / "policy.jsonl").write_text("{not json\n")
    assert launch.main(["report", "--run-dir", str(run_dir), "--out", str(tmp_path / "rep")]) == 2
    assert "policy.jsonl line 1" in capsys.readouterr().err
    assert not (tmp_path / "rep").exists()


def test_validation_summary_ranks_candidates():
    results = pd.DataFrame({"candidate": ["equal", "equal", "causalmix-A", "causalmix-A", "natural"],
                            "y": [-2.0, -2.2, -1.5, -1.7, -3.0]})
    table = summarize(results)
    assert list(table.index) == ["causalmix-A", "equal", "natural"]
    assert table.at["causalmix-A", "gain_vs_equal"] == pytest.approx(0.5)
    assert table.at["natural", "n_seeds"] == 1
    assert natural_mixture({"a": 30, "b": 10}) == {"a": 0.75, "b": 0.25}


def _validation_dir(tmp_path):
    rng = np.random.default_rng(1)
    rows = []
    for seed in range(3):
        offset = rng.normal(scale=0.2)
        for name, gain in (("equal", 0.0), ("regmix", -0.02), ("causalmix-A", 0.03), ("causalmix-S", 0.01)):
            y = -3.0 + offset + gain + rng.normal(scale=0.002)
            rows.append({"candidate": name, "seed": seed, "metric.a_nll": -y, "y": y, "tokens": 1000})
    vdir = tmp_path / "validation"
    vdir.mkdir()
    pd.DataFrame(rows).to_parquet(vdir / "validation.parquet")
    (vdir / "summary.json").write_text(json.dumps({"best": "causalmix-A", "candidates": {}}))
    return vdir


def test_report_with_model_and_validation_has_every_figure(tmp_path, capsys, monkeypatch):
    from causalmix.causal.fitting import FitConfig
    from causalmix.causal.fitting import fit_and_save

    run_dir = _run_dir(tmp_path, n=40)
    fit_and_save(str(run_dir / "runs.parquet"), str(run_dir / "model"), FitConfig())  # estimator auto
    vdir = _validation_dir(tmp_path)
    # --jobs 2: the held-out and per-metric fits in two processes (the same report as one; the
    # equality is test_causal_model_dir's)
    assert launch.main(["report", "--run-dir", str(run_dir), "--validation", str(vdir), "--jobs", "2"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    report = run_dir / "report"  # the default --out
    for name in ("sampled_mixtures.png", "outcome_by_domain.png", "covariate_coverage.png", "return_curves.png",
                 "predicted_vs_actual.png", "policy_trace.png", "returns.png", "validation.png",
                 "radius_choice.png"):
        assert (report / name).read_bytes()[:4] == b"\x89PNG", name
    assert out["cross_fit"]["spearman"] > 0.5  # y is a noiseless function of the mixture
    assert out["radius_choice"]["mode"] == "auto" and out["radius_choice"]["reason"]
    text = (report / "report.md").read_text()
    assert "40 proxy runs" in text and "3 seed(s)" in text and "Spread:" in text
    assert "Verdict: causalmix-A, causalmix-S beat equal and regmix" in text
    chosen = out["selection"]["chosen"]
    assert f"Estimator: **{chosen}**, scored by out-of-fold error" in text and out["selection"]["scores"]
    assert "Does the mixture matter beyond the covariates?" in text
    assert out["selection"]["mixture_evidence"]["p_value"] < 0.01  # y is the mixture's, not the covariates'


def test_cross_fitting_uses_more_folds_when_a_split_is_too_small():
    from causalmix.causal.estimators import RegressionEstimator
    from causalmix.causal.selection import cross_fitted_predictions
    from causalmix.causal.runs_table import validate_runs_frame

    rng = np.random.default_rng(0)
    mix = rng.dirichlet(np.ones(3), size=16)
    frame = pd.DataFrame({"run_id": [str(i) for i in range(16)], **{f"mix.{d}": mix[:, j] for j, d in enumerate(DOMAINS)},
                          "x.a.hes": rng.normal(size=16), "y": mix @ np.array([1.0, -1.0, 0.2])})
    table = validate_runs_frame(frame)
    estimator = RegressionEstimator()
    need = estimator.min_runs(3, 1)
    predicted, folds = cross_fitted_predictions(table, estimator, folds=2)
    assert 16 - math.ceil(16 / folds) >= need and folds > 2  # the smallest training fold
    assert np.corrcoef(predicted, table.y)[0, 1] > 0.5
    with pytest.raises(UserError, match="cross-fitting needs"):
        cross_fitted_predictions(validate_runs_frame(frame.iloc[:need]), estimator)


def test_band_excludes_flat_only_when_no_constant_fits_inside():
    from causalmix.reporting.report import band_excludes_flat

    rising = pd.DataFrame({"lower": [0.0, 0.5, 1.0], "upper": [0.4, 0.9, 1.4]})
    wide = pd.DataFrame({"lower": [0.0, 0.3, 0.6], "upper": [1.0, 1.3, 1.6]})
    assert band_excludes_flat(rising) and not band_excludes_flat(wide)
