"""Model directory (checksums before unpickling) and the FittedMixtureModel API."""
import copy
import json
import os
import pickle

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator

from causalmix.causal.featurizers import AUTO_CANDIDATES, EPS_CANDIDATES
from causalmix.causal.fitting import FitConfig, fit_runs_table
from causalmix.causal.model_dir import FittedMixtureModel, load_model_dir, save_model_dir
from causalmix.causal.runs_table import validate_runs_frame
from causalmix.core.errors import UserError
from causalmix.mixture_space import simplex_distance
from structural import StructuralModel


@pytest.fixture(scope="module")
def table():
    return validate_runs_frame(StructuralModel(n_domains=3, seed=3).runs(160))


@pytest.fixture(scope="module")
def forest_dir(table, tmp_path_factory):
    config = FitConfig(estimator="causal-forest", n_estimators=40, nuisance_model="linear")
    model = FittedMixtureModel.from_runs_table(fit_runs_table(table, config), "causal-forest", table)
    out = save_model_dir(model, tmp_path_factory.mktemp("m") / "model", runs_table_sha256="f" * 64,
                         config=config)
    return out, model


def _cov(table, shift=0.0):
    return {c: float(table.frame[c].mean() + shift) for c in table.covariate_names}


def test_roundtrip_is_self_describing_and_versioned(forest_dir, table):
    out, model = forest_dir
    assert sorted(p.name for p in out.iterdir()) == ["checksums.json", "estimator.pkl", "model.json", "support.npz"]
    loaded = load_model_dir(out)
    assert loaded.version == model.version and len(loaded.version) == 16
    assert loaded.domains == ["d0", "d1", "d2"] and loaded.covariate_names == table.covariate_names
    info = loaded.info()
    assert info["estimator"]["name"] == "causal-forest" and info["estimator"]["params"]["n_estimators"] == 40
    assert info["fitted_on"]["n_runs"] == 160 and info["fitted_on"]["runs_table_sha256"] == "f" * 64
    assert set(info["fitted_on"]["covariate_ranges"]) == set(table.covariate_names)
    assert info["versions"]["econml"].startswith("0.17")
    assert info["treatment_featurizer"]["kind"] in AUTO_CANDIDATES  # the forest's own featurizer CV
    assert info["treatment_featurizer"]["eps"] in EPS_CANDIDATES
    assert {key.split("@")[0] for key in info["treatment_featurizer"]["cv_mse"]} <= set(AUTO_CANDIDATES)
    described = json.loads((out / "model.json").read_text())
    assert described["provenance"]["config"]["n_estimators"] == 40
    W, X = table.mixtures()[:7], table.covariates()[:7]
    assert np.allclose(loaded.predict(W, X), model.predict(W, X))


def test_tampered_or_missing_file_is_refused_before_unpickling(forest_dir, tmp_path):
    import shutil

    out, _ = forest_dir
    bad = tmp_path / "bad"
    shutil.copytree(out, bad)

    class Boom:
        def __reduce__(self):
            return (pytest.fail, ("the tampered pickle was loaded",))

    (bad / "estimator.pkl").write_bytes(pickle.dumps(Boom()))
    with pytest.raises(UserError, match=r"checksum mismatch for .*estimator.pkl"):
        load_model_dir(bad)
    shutil.copytree(out, tmp_path / "edited")
    text = (tmp_path / "edited" / "model.json").read_text().replace('"d0"', '"zz"')
    (tmp_path / "edited" / "model.json").write_text(text)
    with pytest.raises(UserError, match=r"checksum mismatch for .*model.json"):
        load_model_dir(tmp_path / "edited")
    shutil.copytree(out, tmp_path / "gone")
    (tmp_path / "gone" / "estimator.pkl").unlink()
    with pytest.raises(UserError, match=r"missing file .*estimator.pkl"):
        load_model_dir(tmp_path / "gone")
    with pytest.raises(UserError, match="not found"):
        load_model_dir(tmp_path / "nowhere")


def test_recommend_contract_and_policies(forest_dir, table):
    out, _ = forest_dir
    model = load_model_dir(out)
    cov = _cov(table)
    for policy in ("analytic", "search"):
        r = model.recommend(cov, policy=policy, trust_radius=0.15)
        assert set(r) >= {"mixture", "expected_gain", "interval", "policy", "model_version", "support"}
        w = np.array([r["mixture"][d] for d in model.domains])
        assert np.isclose(w.sum(), 1) and (w >= 0).all()
        assert simplex_distance(w, np.full(3, 1 / 3))[0] <= 0.15 + 1e-9
        assert r["interval"][0] <= r["expected_gain"] <= r["interval"][1]
        assert r["policy"] == policy and r["model_version"] == model.version
        assert all(s["in_range"] for s in r["support"].values()) and r["extrapolated"] == []
        assert r["mixture_beyond_runs"] == [d for d in model.domains if r["mixture"][d] > model.mixture_max[
            model.domains.index(d)] + 1e-9]
        json.dumps(r)
    top = model.recommend(cov, policy="top-k", n_candidates=2000, top_k=32)
    assert top["policy"] == "top-k"
    ref = {"d0": 0.6, "d1": 0.3, "d2": 0.1}
    r = model.recommend(cov, reference=ref, trust_radius=0.05)
    w = np.array([r["mixture"][d] for d in model.domains])
    assert simplex_distance(w, np.array([0.6, 0.3, 0.1]))[0] <= 0.05 + 1e-9


def test_recommend_rejects_bad_covariates_and_reports_support(forest_dir, table):
    model = load_model_dir(forest_dir[0])
    cov = _cov(table)
    first = table.covariate_names[0]
    broken = {k: v for k, v in cov.items() if k != first}
    broken["x.unknown"] = 1.0
    with pytest.raises(UserError, match=rf"missing \['{first}'\], extra \['x.unknown'\]"):
        model.recommend(broken)
    with pytest.raises(UserError, match="must be a number"):
        model.recommend({**cov, first: "high"})
    with pytest.raises(UserError, match="missing \\['d2'\\]"):
        model.recommend(cov, reference={"d0": 0.5, "d1": 0.5})
    with pytest.raises(UserError, match="trust radius"):
        model.recommend(cov, trust_radius=-1)
    far = dict(cov)
    far[first] = 1e3
    r = model.recommend(far)
    assert r["extrapolated"] == [first] and r["support"][first]["in_range"] is False


def test_analytic_recommend_reuses_the_per_covariate_cache(forest_dir, table):
    """The second call at the same covariates does no forest traversal (speed itself is
    measured in benchmarks/bench_recommend.py)."""
    model = load_model_dir(forest_dir[0])
    cov = _cov(table, shift=0.01)
    model.recommend(cov)
    calls = []
    original = model.estimator._theta_var_fn
    model.estimator._theta_var_fn = lambda x: calls.append(1) or original(x)
    model.recommend(cov)
    assert calls == []
    model.recommend(_cov(table, shift=0.02))
    assert calls == [1]


@pytest.mark.parametrize("estimator", ["auto", "sieve-dml", "causal-forest", "linear-dml", "regression", "regmix"])
def test_every_estimator_name_writes_a_directory_its_loaders_read(estimator, tmp_path):
    """What `fit` writes, the loader of recommend / predict / serve reads back, whatever
    `--estimator` names (issue 25: auto once recorded a candidate name the loader lacked)."""
    from causalmix.causal.fitting import fit_and_save

    runs = tmp_path / "runs.parquet"
    validate_runs_frame(StructuralModel(n_domains=3, seed=5).runs(120)).frame.to_parquet(runs)
    fields = {"n_estimators": 40, "nuisance_model": "linear"} if estimator in ("causal-forest", "linear-dml") else {}
    if estimator == "regmix":
        fields = {"n_estimators": 40}
    result = fit_and_save(str(runs), str(tmp_path / "model"), FitConfig(estimator=estimator, **fields))
    loaded = load_model_dir(result["model_dir"])
    assert loaded.estimator_name == result["estimator"] != "auto"
    rec = loaded.recommend({c: 0.0 for c in loaded.covariate_names})
    assert sum(rec["mixture"].values()) == pytest.approx(1.0)


def test_a_causal_forest_directory_with_the_default_nuisance_models_loads(tmp_path):
    """The default nuisance choice pickles econml's selectors of every candidate (a
    FixedModelSelector for our forest, ...): the loader's allow-list must know each one."""
    from causalmix.causal.fitting import fit_and_save

    runs = tmp_path / "runs.parquet"
    validate_runs_frame(StructuralModel(n_domains=3, seed=5).runs(80)).frame.to_parquet(runs)
    config = FitConfig(estimator="causal-forest", n_estimators=8)
    loaded = load_model_dir(fit_and_save(str(runs), str(tmp_path / "model"), config)["model_dir"])
    assert loaded.estimator_name == "causal-forest" and loaded.covariate_names


@pytest.mark.parametrize("estimator", ["regression", "linear-dml", "causal-forest"])
def test_a_named_estimator_carries_its_held_out_model_error(estimator, tmp_path):
    """`--estimator regression` (linear-dml, causal-forest) adds the held-out error of its predicted
    differences to its gain intervals, as `auto` does, from its own out-of-fold fits; it survives
    save and load, widens the interval and leaves the point where it was (causal/fitting.py:
    without it regression's intervals held the true gain on 2 of 15 saturating targets)."""
    from causalmix.causal.fitting import fit_and_save

    runs = tmp_path / "runs.parquet"
    validate_runs_frame(StructuralModel(n_domains=3, seed=5).runs(120)).frame.to_parquet(runs)
    fields = {"nuisance_model": "linear"} if estimator == "linear-dml" else {}
    if estimator == "causal-forest":
        fields = {"nuisance_model": "linear", "n_estimators": 40}
    model = load_model_dir(fit_and_save(str(runs), str(tmp_path / "model"),
                                        FitConfig(estimator=estimator, **fields))["model_dir"])
    error = model.estimator.model_error_
    assert error["pairs"] >= 120 and error["per_phi2"] > 0
    bare = copy.copy(model.estimator)
    del bare.model_error_
    x = np.zeros(len(model.covariate_names))
    T0, T1 = np.full((1, 3), 1 / 3), np.array([[0.6, 0.2, 0.2]])
    point, lo, hi = model.estimator.gain_interval(x, T0, T1)
    bare_point, bare_lo, bare_hi = bare.gain_interval(x, T0, T1)
    assert point[0] == pytest.approx(bare_point[0]) and hi[0] - lo[0] > bare_hi[0] - bare_lo[0]
    selection = model.estimator.selection_
    assert selection["chosen"] == estimator and 0.0 <= selection["mixture_evidence"]["p_value"] <= 1.0
    if estimator == "regression":  # the structural model's own form: the mixture clearly helps
        assert selection["mixture_evidence"]["p_value"] < 0.1


def test_a_named_regression_without_evidence_keeps_the_reference(tmp_path):
    """The auto radius's evidence guard holds for a named regression too: on outcomes the
    mixture does not move (the log's y shuffled) it recommends the reference and says why."""
    from causalmix.causal.fitting import fit_and_save

    frame = StructuralModel(n_domains=3, seed=5).runs(120)
    frame["y"] = np.random.default_rng(0).permutation(frame["y"].to_numpy())
    runs = tmp_path / "runs.parquet"
    validate_runs_frame(frame).frame.to_parquet(runs)
    model = load_model_dir(fit_and_save(str(runs), str(tmp_path / "model"), FitConfig(estimator="regression"))["model_dir"])
    rec = model.recommend({c: 0.0 for c in model.covariate_names})
    assert list(rec["mixture"].values()) == pytest.approx([1 / 3] * 3)
    assert rec["radius_choice"]["reason"].startswith("no step")


def test_a_named_estimator_on_too_few_runs_to_hold_one_out_keeps_its_own_variance(caplog):
    """A table the named regression can fit but not cross-fit (each training split would have
    fewer runs than it needs): the fit succeeds without a model-error term and says so."""
    from causalmix.causal.estimators import RegressionEstimator
    from causalmix.causal.fitting import fit_runs_table

    runs = StructuralModel(n_domains=3, seed=5).runs(60)
    need = RegressionEstimator(treatment_featurizer="log-only").min_runs(3, runs.columns.str.startswith("x.").sum())
    table = validate_runs_frame(runs.head(need))
    estimator = fit_runs_table(table, FitConfig(estimator="regression", treatment_featurizer="log-only"))
    assert "model_error_" not in estimator.__dict__
    assert "no held-out model error" in caplog.text


def test_auto_gain_blends_the_chosen_and_the_runner_up_form(tmp_path):
    """`auto` keeps its runner-up fitted on all runs (through save and load); a gain is the two
    forms' blend at the runner-up's held-out share, and their disagreement widens the interval
    (causal/selection.py). Seed 2: a runs table where the runner-up gets a share above 0, so
    the blend is exercised (on seed 5 its share is 0 and the check would hold without it)."""
    from causalmix.causal.fitting import fit_and_save

    runs = tmp_path / "runs.parquet"
    validate_runs_frame(StructuralModel(n_domains=3, seed=2).runs(120)).frame.to_parquet(runs)
    model = load_model_dir(fit_and_save(str(runs), str(tmp_path / "model"), FitConfig())["model_dir"])
    chosen = model.estimator
    assert chosen.selection_["rival"] not in (None, chosen.selection_["chosen"])
    alone = copy.copy(chosen)
    del alone.rival_
    x = np.zeros(len(model.covariate_names))
    T0, T1 = np.full((1, 3), 1 / 3), np.array([[0.6, 0.2, 0.2]])
    point, lo, hi = chosen.gain_interval(x, T0, T1)
    own, own_lo, own_hi = alone.gain_interval(x, T0, T1)
    other = chosen.rival_.gain_interval(x, T0, T1)[0]
    share = chosen.rival_share_
    assert 0.0 <= share <= 1.0 and point[0] == pytest.approx((1 - share) * own[0] + share * other[0])
    assert hi[0] - lo[0] >= own_hi[0] - own_lo[0]


def test_auto_does_not_refit_a_runner_up_whose_share_is_0():
    """Seed 5: the runner-up's held-out share is 0, so the blend is the chosen form alone and
    the runner-up is neither refitted nor saved; model.json still names it."""
    from causalmix.causal.fitting import fit_runs_table

    estimator = fit_runs_table(validate_runs_frame(StructuralModel(n_domains=3, seed=5).runs(120)), FitConfig())
    assert estimator.selection_["rival"] not in (None, estimator.selection_["chosen"])
    assert estimator.selection_["rival_share"] == 0.0 and "rival_" not in estimator.__dict__


def test_auto_with_its_held_out_fits_in_two_processes_is_the_one_process_model(monkeypatch):
    """`fit --jobs 2` fits auto's out-of-fold candidates in two processes (causal.selection.
    cross_fitted_predictions); the choice, the held-out scores, the model error and a gain
    interval are exactly those of one process. The jobs reach every out-of-fold fit (that they
    run in other processes is the next test's)."""
    from causalmix.causal import selection

    asked = []

    def recording(*args, **kwargs):
        asked.append(kwargs["jobs"])
        return cross_fitted(*args, **kwargs)

    cross_fitted = selection.cross_fitted_predictions
    monkeypatch.setattr(selection, "cross_fitted_predictions", recording)
    table = validate_runs_frame(StructuralModel(n_domains=3, seed=5).runs(64))
    one, two = (fit_runs_table(table, FitConfig(jobs=jobs)) for jobs in (1, 2))
    assert two.selection_ == one.selection_ and two.model_error_ == one.model_error_
    x, T0, T1 = np.zeros(len(table.covariate_names)), np.full((1, 3), 1 / 3), np.array([[0.6, 0.2, 0.2]])
    assert np.array_equal(np.array(two.gain_interval(x, T0, T1)), np.array(one.gain_interval(x, T0, T1)))
    fit_runs_table(table, FitConfig(estimator="regression", jobs=2))  # by name: its held-out fits
    candidates = len(selection.AUTO_CANDIDATES)
    assert asked == [1] * candidates + [2] * candidates + [2]
    with pytest.raises(ValueError, match="jobs must be >= 1"):
        FitConfig(jobs=0)


class _ReportsItsProcess(BaseEstimator):
    """Predicts the id of the process that fitted it."""

    def min_runs(self, *args):
        return 2

    def fit(self, W, X, y):
        self.pid_ = os.getpid()
        return self

    def predict(self, W, X):
        return np.full(len(W), float(self.pid_))


@pytest.mark.parametrize("jobs", [1, 2])
def test_cross_fitting_with_jobs_fits_the_folds_in_worker_processes(table, jobs):
    from causalmix.causal.selection import cross_fitted_predictions

    predicted, folds = cross_fitted_predictions(table, _ReportsItsProcess(), folds=4, jobs=jobs)
    fitted_in = set(predicted.astype(int))
    assert folds == 4
    assert fitted_in == {os.getpid()} if jobs == 1 else os.getpid() not in fitted_in


def test_a_sieve_whose_baseline_is_the_network_saves_and_loads(tmp_path):
    """A baseline that bends along a combination of covariates (a run-level factor u that every
    second reading carries, mixed with its domain's state, and that also tilts the mixtures
    drawn): sieve-dml's E[y|X] is the small network, and the directory it writes loads through
    the same loader as recommend / predict / serve, giving the same predictions."""
    from causalmix.causal.fitting import fit_and_save

    rng = np.random.default_rng(0)
    n, k = 300, 3
    s, u = rng.normal(size=(n, k)), rng.normal(size=n)
    X = np.column_stack([s, 0.6 * s + 0.8 * u[:, None] + 0.1 * rng.normal(size=(n, k))])
    lean = np.exp(0.6 * s + 0.8 * np.array([1.0, -1.0, 1.0]) * u[:, None])
    W = np.vstack([rng.dirichlet(3 * row / row.sum()) for row in lean])
    y = 1.5 * np.sin(2 * u) + 0.8 * u ** 2 + (np.log(W + 0.01) * (1.0 + 0.3 * s)).sum(axis=1) + 0.1 * rng.normal(size=n)
    frame = {"run_id": [f"r{i}" for i in range(n)], "y": y}
    frame.update({f"mix.d{j}": W[:, j] for j in range(k)})
    frame.update({f"x.d{j}.{f}": X[:, c * k + j] for c, f in enumerate(("quality", "mixed")) for j in range(k)})
    runs = tmp_path / "runs.parquet"
    validate_runs_frame(pd.DataFrame(frame)).frame.to_parquet(runs)
    result = fit_and_save(str(runs), str(tmp_path / "model"), FitConfig(estimator="sieve-dml"))
    loaded = load_model_dir(result["model_dir"])
    assert loaded.estimator.model_y_name_ == "mlp"
    table = validate_runs_frame(pd.read_parquet(runs))
    fitted = fit_runs_table(table, FitConfig(estimator="sieve-dml"))
    assert np.allclose(loaded.estimator.predict(table.mixtures(), table.covariates()),
                       fitted.predict(table.mixtures(), table.covariates()))
