"""Runs table validation, RegMix import, pool covariates."""
import warnings
import numpy as np
import pandas as pd
import pytest

from causalmix.causal.covariates import pool_covariates
from causalmix.causal.runs_table import import_regmix, read_runs_table, validate_runs_frame
from causalmix.core.errors import UserError
from regmix_data import regmix_dir



def _frame(n=4):
    return pd.DataFrame({"run_id": [f"r{i}" for i in range(n)], "mix.a": [0.5, 0.2, 1.0, 0.0][:n],
                         "mix.b": [0.5, 0.8, 0.0, 1.0][:n], "x.a.q": np.arange(n, dtype=float),
                         "y": np.linspace(0, 1, n), "status": "ok", "notes": "kept"})


def test_valid_table_keeps_unknown_columns_and_names_parts():
    t = validate_runs_frame(_frame())
    assert t.domains == ["a", "b"] and t.covariate_names == ["x.a.q"]
    assert "notes" in t.frame.columns and t.mixtures().shape == (4, 2)
    assert t.covariate_ranges() == {"x.a.q": [0.0, 3.0]}


def test_nonfinite_outcome_rows_are_named():
    f = _frame()
    f.loc[2, "y"] = np.nan
    f.loc[3, "y"] = np.inf
    with pytest.raises(UserError, match=r"non-finite outcome in column 'y', rows r2, r3"):
        validate_runs_frame(f)


def test_mixture_sums_renormalised_with_warning_or_rejected():
    f = _frame()
    f.loc[0, "mix.a"] = 0.504
    with pytest.warns(UserWarning, match="renormalised 1 mixture rows"):
        t = validate_runs_frame(f)
    assert np.allclose(t.mixtures().sum(axis=1), 1)
    f.loc[0, "mix.a"] = 0.52
    with pytest.raises(UserError, match="rows r0 sum to 1.02"):
        validate_runs_frame(f)


@pytest.mark.parametrize("mutate, message", [
    (lambda f: f.drop(columns="run_id"), "missing column 'run_id'"),
    (lambda f: f.drop(columns="mix.b"), "at least 2 'mix.<domain>'"),
    (lambda f: f.drop(columns="y"), "missing column 'y'"),
    (lambda f: f.assign(run_id="same"), "duplicate run_id"),
    (lambda f: f.assign(**{"x.a.q": ["1", "2", "oops", "4"]}), "'x.a.q' is not numeric in rows r2"),
])
def test_bad_tables_are_rejected_with_names(mutate, message):
    with pytest.raises(UserError, match=message):
        validate_runs_frame(mutate(_frame()))


def test_read_csv_and_parquet_and_bad_paths(tmp_path):
    _frame().to_csv(tmp_path / "r.csv", index=False)
    _frame().to_parquet(tmp_path / "r.parquet")
    a, b = read_runs_table(tmp_path / "r.csv"), read_runs_table(tmp_path / "r.parquet")
    assert a.n_runs == b.n_runs == 4 and len(a.sha256) == 64
    with pytest.raises(UserError, match="not found"):
        read_runs_table(tmp_path / "missing.parquet")
    (tmp_path / "r.txt").write_text("x")
    with pytest.raises(UserError, match="expected a .parquet or .csv"):
        read_runs_table(tmp_path / "r.txt")


def test_import_regmix_real_data():
    REGMIX = regmix_dir()
    frame = import_regmix(REGMIX / "train_mixture_1m.csv", REGMIX / "train_pile_loss_1m.csv", target="pile_cc")
    assert len(frame) == 512
    mix = [c for c in frame.columns if c.startswith("mix.")]
    assert len(mix) == 17 and "mix.pile_cc" in mix and "mix.github" in mix
    raw = pd.read_csv(REGMIX / "train_pile_loss_1m.csv")
    assert np.allclose(frame["y"], -raw["metric/the_pile_pile_cc_val_loss"])
    assert np.allclose(frame[mix].sum(axis=1), 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # already renormalised: no warning on re-validation
        validate_runs_frame(frame)
    mean = import_regmix(REGMIX / "test_mixture_1m.csv", REGMIX / "test_pile_loss_1m.csv", target="mean")
    metrics = [c for c in mean.columns if c.startswith("metric.")]
    assert len(mean) == 256 and len(metrics) == 13
    assert np.allclose(mean["y"], -mean[metrics].mean(axis=1))
    full = import_regmix(REGMIX / "test_mixture_1m.csv", REGMIX / "test_pile_loss_1m.csv",
                         target="metric/the_pile_github_val_loss")
    assert np.allclose(full["y"], -full["metric.github_val_loss"])
    with pytest.raises(UserError, match="not one of the loss columns"):
        import_regmix(REGMIX / "test_mixture_1m.csv", REGMIX / "test_pile_loss_1m.csv", target="nope")


def test_pool_covariates_are_per_domain_means():
    features = pd.DataFrame({"doc_id": range(5), "domain": ["a", "a", "b", "b", "b"],
                             "normalized_loss": [0.1, 0.3, 0.5, 0.7, 0.9], "hes": [1, 2, 3, 4, 5],
                             "writing_style": 0.0, "style.ttr": [0.2, 0.4, 0.6, 0.6, 0.6]})
    cov = pool_covariates(features, ["a", "b"], ["normalized_loss", "hes", "writing_style", "style.ttr"])
    assert cov["x.a.normalized_loss"] == pytest.approx(0.2)
    assert cov["x.b.hes"] == pytest.approx(4.0)
    assert cov["x.a.style.ttr"] == pytest.approx(0.3)
    assert len(cov) == 2 * 4
    assert set(pool_covariates(features, ["a", "b"], ["hes"])) == {"x.a.hes", "x.b.hes"}
    with pytest.raises(UserError, match="nope"):
        pool_covariates(features, ["a"], ["nope"])



def test_a_domain_unused_by_every_run_is_dropped_only_from_a_table_to_fit():
    """Issue 29, case 6: a fit drops it (with a warning); a table to predict on, an import and a
    sweep's growing log keep it; with one domain left the table is refused."""
    from causalmix.causal.runs_table import runs_from_rows

    f = _frame().assign(**{"mix.c": 0.0})
    assert validate_runs_frame(f).domains == ["a", "b"]
    assert validate_runs_frame(f, require_y=False).domains == ["a", "b", "c"]
    assert runs_from_rows(f.to_dict("records")).domains == ["a", "b", "c"]
    with pytest.raises(UserError, match="fewer than 2 domains have weight in any run"):
        validate_runs_frame(f.assign(**{"mix.a": 1.0, "mix.b": 0.0}))


def test_values_past_the_range_are_named():
    f = _frame()
    f.loc[1, "x.a.q"] = 1e300
    with pytest.raises(UserError, match=r"value 1e\+300 in column 'x.a.q' is beyond \+-1e\+15 \(rows r1\)"):
        validate_runs_frame(f)
