"""A real swarm nobody here produced: Olmix's DCLM swarm (tests/data/olmix/, Apache-2.0), imported
through `causal.swarm_import` with the objective of Olmix's own fit config, fitted by the default
and ranked out of fold. RegMix's released runs are covered by tests/test_causal_quality.py;
benchmarks/bench_real_swarms.py prints the full comparison (5-fold, LightGBM, the mixing law)."""
import dataclasses
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import spearmanr

from causalmix.causal.fitting import FitConfig, fit_runs_table
from causalmix.causal.objective import apply_objective
from causalmix.causal.runs_table import validate_runs_frame
from causalmix.causal.swarm_import import import_olmix, olmix_family_objective
from causalmix.core.errors import UserError

OLMIX = Path(__file__).resolve().parent / "data" / "olmix"


@pytest.fixture(scope="module")
def dclm():
    frame = import_olmix(OLMIX / "dclm_ratios.csv", OLMIX / "dclm_metrics.csv", target="mean")
    metrics = [c[len("metric."):] for c in frame.columns if c.startswith("metric.")]
    families = olmix_family_objective(OLMIX / "dclm_fit_config.yaml", metrics)
    return validate_runs_frame(apply_objective(frame, families.objective())), families


def test_olmix_config_gives_each_task_an_equal_share(dclm):
    table, families = dclm
    assert table.n_runs == 127 and len(table.domains) == 24 and table.covariate_names == []
    assert families.weights == pytest.approx({"math": 7 / 52, "code": 19 / 52, "qa": 26 / 52})
    # the config's 7/19/26 are its task counts once MMLU counts as Olmix's 4 categories and the
    # dropped metrics are gone: every other task then weighs 1/52 of the objective
    terms = {t.metric[len("metric."):]: t.weight for t in families.objective().metrics}
    assert "lab_bench_dbqa" not in terms and len(terms) == 7 + 19 + 22 + 57
    assert terms["arc_easy:rc::olmes"] == pytest.approx(1 / 52)
    assert terms["mbpp:3shot::none"] == pytest.approx(1 / 52)
    assert sum(w for m, w in terms.items() if m.startswith("mmlu_")) == pytest.approx(4 / 52)
    assert np.all(table.y < 0)  # minus bits per byte


def test_default_ranks_held_out_olmix_runs(dclm):
    table, _ = dclm
    rows = np.random.default_rng(0).permutation(table.n_runs)
    test_rows, train_rows = rows[:32], rows[32:]
    part = lambda r: dataclasses.replace(table, frame=table.frame.iloc[r].reset_index(drop=True))  # noqa: E731
    train, test = part(train_rows), part(test_rows)
    model = fit_runs_table(train, FitConfig())
    rho = spearmanr(model.predict(test.mixtures(), test.covariates()), test.y).statistic
    # a weak floor (the default at eb252a0: 0.94 here, 0.954 over 5 folds in the benchmark), but
    # one that a model ignoring the mixture, or ranking it backwards, cannot pass
    assert rho >= 0.5, rho


def test_olmix_config_errors_name_the_file_and_the_field(tmp_path, dclm):
    table, _ = dclm
    metrics = [c[len("metric."):] for c in table.frame.columns if c.startswith("metric.")]
    bad = tmp_path / "fit.yaml"
    bad.write_text("eval:\n  tasks:\n    math: [not_a_metric]\n")
    with pytest.raises(UserError, match=r"fit\.yaml: eval\.tasks\.math lists metrics the swarm lacks: not_a_metric"):
        olmix_family_objective(bad, metrics)
    bad.write_text("eval:\n  tasks:\n    math: [lambada]\nfiltering:\n  obj_weights: {math: '1/0'}\n")
    with pytest.raises(UserError, match=r"obj_weights\.math: expected a number or 'a/b', got '1/0'"):
        olmix_family_objective(bad, metrics)
    bad.write_text("eval:\n  tasks:\n    math: [lambada]\nfiltering:\n  obj_weights: {code: 1}\n")
    with pytest.raises(UserError, match=r"obj_weights names families \['code'\]"):
        olmix_family_objective(bad, metrics)
