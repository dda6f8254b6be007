"""Exact match that cannot be fooled (answer patterns, normalisation, the `pool build` check),
the objective that defines `y`, and `fit --objective/--target` refitting one runs table. No model."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from causalmix import launch
from causalmix.causal.objective import Objective, ObjectiveTerm, lower_is_better
from causalmix.core.errors import UserError
from causalmix.datapool.build import build_pool
from causalmix.datapool.pool import Pool
from causalmix.proxy.answers import AnswerPattern, normalize_answer
from causalmix.proxy.config import ProxyConfig
from causalmix.proxy.evaluate import DevTask, exact_match_score, outcome
from causalmix.proxy.harness import metric_columns
from structural import StructuralModel

AUTO, GSM8K, SENTENCE = AnswerPattern(), AnswerPattern("gsm8k"), AnswerPattern("the_answer_is")


@pytest.mark.parametrize("text,pattern,expected", [
    ("3 x 4 = 12. The answer is 12.", SENTENCE, "12"),
    ("The answer is 1,204. no, The answer is -7", SENTENCE, "-7"),
    ("Natalia sold 48/2 = 24 clips.\n#### 72", GSM8K, "72"),
    ("#### 1,204.0", GSM8K, "1204"),
    ("#### 1,204.0", SENTENCE, None),
    ("The answer is $5.50", AUTO, "5.5"),
    ("#### 3 ... The answer is 4", AUTO, "4"),            # auto: the last of either form
    ("The answer is 4 ... #### 3", AUTO, "3"),
    ("no number here", AUTO, None),
    ("Answer: (B)", AnswerPattern("regex", r"Answer: \(([A-D])\)"), "b"),
    ("final=+007.50", AnswerPattern("regex", r"final=(?P<answer>\S+)"), "7.5"),
])
def test_answer_extraction(text, pattern, expected):
    assert pattern.extract(text) == expected


def test_numbers_are_normalised_before_comparison():
    assert normalize_answer("1,204") == normalize_answer("1204.0") == normalize_answer("1204.") == "1204"
    assert normalize_answer("-0") == "0" and normalize_answer("$ 3.250") == "3.25"
    assert normalize_answer("  Paris  France ") == "paris france"


def test_exact_match_is_not_fooled_by_missing_answers():
    # The historic bug: a GSM8K reference ("#### N") had no "The answer is", so a generation
    # without one matched it (None == None). Now the reference's answer is found ...
    refs = ["She has 5 + 7 = 12 apples.\n#### 12", "#### 1,000", "#### 3"]
    gens = ["I do not know", "The answer is 1000.0", "#### 4"]
    assert exact_match_score(gens, refs, AUTO) == pytest.approx(1 / 3)
    assert exact_match_score(["no answer"] * 3, refs, GSM8K) == 0.0
    # ... and a reference without an answer under the configured pattern is an error, not a match.
    with pytest.raises(UserError, match=r"rows \[0, 1, 2\] have no answer for pattern 'the_answer_is'"):
        exact_match_score(["x"] * 3, refs, SENTENCE)


def test_answer_patterns_are_checked():
    assert AnswerPattern.parse(None) == AUTO and AnswerPattern.parse({"regex": "a(b)"}).regex == "a(b)"
    for bad, message in (("nope", "not one of"), ({"regex": "("}, "not a valid regular expression"),
                         ({"regex": ""}, "non-empty"), ({"pattern": "x"}, "expected one of")):
        with pytest.raises(ValueError, match=message):
            AnswerPattern.parse(bad)


def _write_jsonl(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def _pool(tmp_path, dev: dict, extra: dict | None = None):
    _write_jsonl(tmp_path / "raw/math.jsonl", [{"q": "1+1?", "a": "#### 2"}])
    _write_jsonl(tmp_path / "raw/dev.jsonl", [{"q": "5+5?", "a": "5+5=10\n#### 10"},
                                              {"q": "2+2?", "a": "It is four."},
                                              {"q": "3+3?", "a": "#### 6"}])
    manifest = {"name": "toy", "domains": [{"name": "math", "sources": [
        {"path": "raw/math.jsonl", "columns": {"prompt": "q", "response": "a"}}],
        "dev": {"path": "raw/dev.jsonl", "columns": {"prompt": "q", "response": "a"}, **dev}}],
        **(extra or {})}
    path = tmp_path / "manifest.yaml"
    path.write_text(yaml.safe_dump(manifest), encoding="utf-8")
    return path


def test_pool_build_refuses_exact_match_references_without_answer(tmp_path, capsys):
    manifest = _pool(tmp_path, {"metric": "exact_match", "answer": "gsm8k"})
    with pytest.raises(UserError, match=r"dev\.answer: 1 of 3 references have no answer for pattern "
                                        r"'gsm8k': row 1 \('It is four\.'\)"):
        build_pool(manifest, tmp_path / "built")
    assert not (tmp_path / "built" / "pool.json").exists()
    assert launch.main(["pool", "build", str(manifest), "--out", str(tmp_path / "b2")]) == 2
    assert "row 1" in capsys.readouterr().err


def test_pool_build_records_the_answer_pattern(tmp_path):
    (tmp_path / "raw").mkdir()
    manifest = _pool(tmp_path, {"metric": "exact_match", "answer": {"regex": r"(\d+)\s*$|four"}})
    pool = Pool.open(build_pool(manifest, tmp_path / "built"))
    task = pool.dev_tasks()["math"]
    assert task.kind == "exact_match" and task.answer == AnswerPattern("regex", r"(\d+)\s*$|four")
    assert [task.answer.extract(r) for r in task.frame["response"]] == ["10", "four", "6"]


def test_manifest_refuses_an_answer_on_an_nll_set_and_bad_patterns(tmp_path):
    with pytest.raises(UserError, match=r"domain 'math': dev\.answer: only an exact_match dev set"):
        build_pool(_pool(tmp_path, {"metric": "nll", "answer": "gsm8k"}))
    with pytest.raises(UserError, match=r"domain 'math': dev\.answer: answer 'hash' is not one of"):
        build_pool(_pool(tmp_path, {"metric": "exact_match", "answer": "hash"}))


def test_manifest_lm_eval_entries_are_checked_and_recorded(tmp_path):
    (tmp_path / "tasks").mkdir(parents=True)
    (tmp_path / "tasks" / "t.yaml").write_text("task: t\n")
    good = {"dev": [{"lm_eval": {"tasks": ["tasks/t.yaml", "hellaswag"], "limit": 5, "num_fewshot": 0,
                                 "batch_size": 2}}]}
    pool = Pool.open(build_pool(_pool(tmp_path, {"metric": "exact_match", "answer": {"regex": r"(\d+|four)"}},
                                      good), tmp_path / "built"))
    assert pool.index["harness"][0]["tasks"] == ["../tasks/t.yaml", "hellaswag"]  # relative: pools move
    (spec,) = pool.harness()
    assert spec.tasks == (str((tmp_path / "tasks" / "t.yaml").resolve()), "hellaswag") and spec.limit == 5
    assert pool.dev_tasks()["lm_eval:0"] == DevTask(kind="lm_eval", harness=spec)
    for bad, message in (
            ({"tasks": ["tasks/missing.yaml"]}, r"dev\[0\]\.lm_eval\.tasks: 'tasks/missing.yaml': no such file"),
            ({"tasks": ["x"], "limit": 0}, r"dev\[0\]\.lm_eval: limit: expected an integer >= 1"),
            ({"tasks": ["x"], "batch": 2}, r"unknown key\(s\) \['batch'\]"),
            ({"tasks": []}, "tasks: expected a non-empty list")):
        with pytest.raises(UserError, match=message):
            build_pool(_pool(tmp_path, {"metric": "nll"}, {"dev": [{"lm_eval": bad}]}))


def test_harness_results_become_metric_columns():
    results = {"results": {
        "arith_mc": {"alias": "arith_mc", "acc,none": 0.5, "acc_stderr,none": 0.1, "acc_norm,none": 0.25,
                     "acc_norm_stderr,none": "N/A"},
        "gsm8k": {"exact_match,strict-match": 0.2, "exact_match_stderr,strict-match": 0.05}}}
    assert metric_columns(results) == {
        "metric.arith_mc_acc": 0.5, "metric.arith_mc_acc_stderr": 0.1, "metric.arith_mc_acc_norm": 0.25,
        "metric.gsm8k_exact_match_strict-match": 0.2, "metric.gsm8k_exact_match_strict-match_stderr": 0.05}


# ---- the objective -------------------------------------------------------------------------

METRICS = {"metric.a_em": 0.5, "metric.b_nll": 2.0, "metric.c_nll": 4.0, "metric.t_acc": 0.7,
           "metric.t_acc_stderr": 0.1}


def test_default_objective_is_the_historic_mean_without_stderr():
    assert outcome(METRICS) == pytest.approx((0.5 - 2.0 - 4.0 + 0.7) / 4)
    assert lower_is_better("metric.pile_cc_val_loss") and lower_is_better("metric.wikitext_word_perplexity")
    assert not lower_is_better("metric.gsm8k_exact_match_strict-match")
    assert lower_is_better("metric.x_bits_per_byte") and lower_is_better("metric.t_perplexity_flexible-extract")
    assert not lower_is_better("metric.loss_notes_em")  # a domain's name does not set the direction


def test_objective_terms_directions_weights_and_fixed_scales():
    obj = Objective.from_json({"metrics": [{"metric": "t_acc", "weight": 3, "center": 0.25, "scale": 0.75},
                                           {"metric": "metric.b_nll", "direction": "min"}]})
    assert obj.row_value(METRICS) == pytest.approx((3 * (0.7 - 0.25) / 0.75 - 2.0) / 4)
    assert Objective.target("metric.b_nll").row_value(METRICS) == -2.0
    assert Objective.target("a_em").row_value(METRICS) == 0.5
    assert Objective.from_json(obj.dumps()) == obj
    with pytest.raises(UserError, match=r"objective metric\(s\) \['metric.zz'\] are not columns"):
        Objective.target("zz").row_value(METRICS)
    for bad, message in (({"metrics": [{"metric": "a", "weight": 0}]}, "weight must be > 0"),
                         ({"metrics": ["a", "a"]}, "listed more than once"),
                         ({"normalise": "rank"}, "not one of"), ({"metric": "a"}, "unknown key"),
                         ({"metrics": [{"metric": "a", "sign": 1}]}, "unknown key")):
        with pytest.raises(ValueError, match=message):
            Objective.from_json(bad)


def test_table_normalisations_weigh_each_metric_the_same():
    frame = pd.DataFrame({"run_id": ["r0", "r1", "r2"], "metric.x_acc": [0.2, 0.4, 0.6],
                          "metric.y_nll": [30.0, 20.0, 10.0]})
    y, resolved = Objective(normalise="zscore").apply(frame)
    assert y == pytest.approx([-1.0, 0.0, 1.0])  # both metrics count equally despite their units
    assert resolved.stats == {"metric.x_acc": [pytest.approx(0.4), pytest.approx(0.2)],
                              "metric.y_nll": [20.0, 10.0]}
    assert resolved.row_value({"metric.x_acc": 0.4, "metric.y_nll": 10.0}) == pytest.approx(0.5)
    y, _ = Objective(normalise="minmax").apply(frame)
    assert y == pytest.approx([-0.5, 0.0, 0.5])  # (z_acc - z_nll) / 2 with both mapped onto [0, 1]
    with pytest.raises(UserError, match="needs the statistics of a whole runs table"):
        Objective(normalise="zscore").row_value({"metric.x_acc": 0.1})
    frame.loc[1, "metric.x_acc"] = np.nan
    with pytest.raises(UserError, match=r"column 'metric.x_acc' has missing or non-finite values in runs \['r1'\]"):
        Objective().apply(frame)


def test_proxy_config_takes_a_row_wise_objective_only():
    cfg = ProxyConfig(model="m", objective={"metrics": ["a_em"]})
    assert cfg.objective_spec() == Objective(metrics=(ObjectiveTerm("a_em"),))
    with pytest.raises(ValueError, match="needs a whole runs table"):
        ProxyConfig(model="m", objective={"normalise": "zscore"})
    with pytest.raises(ValueError, match="objective: normalise 'x'"):
        ProxyConfig(model="m", objective={"normalise": "x"})


def test_fit_refits_the_same_runs_on_another_objective(tmp_path, capsys):
    frame = StructuralModel(n_domains=3, seed=2).runs(80)
    rng = np.random.default_rng(0)
    frame["metric.t_acc"] = frame["y"] + 0.01 * rng.normal(size=len(frame))
    frame["metric.d_nll"] = 3.0 - 0.5 * frame["mix.d0"] + 0.01 * rng.normal(size=len(frame))
    frame["metric.t_acc_stderr"] = 0.01
    frame.to_parquet(tmp_path / "runs.parquet")
    (tmp_path / "objective.yaml").write_text(yaml.safe_dump(
        {"metrics": [{"metric": "t_acc", "weight": 2}, "d_nll"], "normalise": "zscore"}))

    def fit(*flags):
        out = tmp_path / f"model{len(list(tmp_path.iterdir()))}"
        code = launch.main(["fit", "--runs", str(tmp_path / "runs.parquet"), "--out", str(out),
                            "--estimator", "regression", *flags])
        printed = capsys.readouterr()
        assert code == 0, printed.err
        return json.loads(printed.out.strip().splitlines()[-1]), json.loads((out / "model.json").read_text())

    plain, plain_dir = fit()
    assert plain["objective"] is None
    refit, refit_dir = fit("--objective", str(tmp_path / "objective.yaml"))
    recorded = refit_dir["provenance"]["config"]["objective"]
    assert recorded == refit["objective"] and recorded["normalise"] == "zscore"
    assert set(recorded["stats"]) == {"metric.t_acc", "metric.d_nll"}  # recorded with its statistics
    target, _ = fit("--target", "metric.d_nll")
    assert target["objective"]["metrics"][0]["metric"] == "metric.d_nll"
    every, _ = fit("--normalise", "minmax")
    assert [t["metric"] for t in every["objective"]["metrics"]] == ["metric.d_nll", "metric.t_acc"]
    assert launch.main(["fit", "--runs", str(tmp_path / "runs.parquet"), "--out", str(tmp_path / "x"),
                        "--target", "metric.nope"]) == 2
    assert "objective metric(s) ['metric.nope'] are not columns" in capsys.readouterr().err
    assert launch.main(["fit", "--runs", str(tmp_path / "runs.parquet"), "--out", str(tmp_path / "x"),
                        "--target", "d_nll", "--objective", str(tmp_path / "objective.yaml")]) == 2
    assert "not both" in capsys.readouterr().err


def test_metric_returns_show_which_domain_helps_which_metric(tmp_path):
    from causalmix.causal.fitting import FitConfig
    from causalmix.causal.metric_returns import metric_returns, plot_metric_returns

    rng = np.random.default_rng(1)
    n = 120
    mix = rng.dirichlet(np.ones(3), size=n)
    runs = pd.DataFrame({"run_id": [f"r{i}" for i in range(n)], "mix.a": mix[:, 0], "mix.b": mix[:, 1],
                         "mix.c": mix[:, 2], "x.a.hes": rng.normal(size=n)})
    runs["metric.bench_acc"] = 0.2 + 0.5 * mix[:, 0] + 0.01 * rng.normal(size=n)  # a helps the benchmark
    runs["metric.c_nll"] = 3.0 - 1.0 * mix[:, 2] + 0.01 * rng.normal(size=n)     # c lowers its own NLL
    runs["metric.bench_acc_stderr"] = 0.01
    est, half = metric_returns(runs, {"x.a.hes": 0.0}, config=FitConfig(estimator="regression"))
    # a domain's own dev metric first, in the rows' domain order; the benchmark after it
    assert list(est.columns) == ["c_nll", "bench_acc"] and list(est.index) == ["a", "b", "c"]
    assert est.loc["a", "bench_acc"] > 0 > est.loc["b", "bench_acc"]
    assert est.loc["c", "c_nll"] > 0 > est.loc["a", "c_nll"]  # signed: a lower NLL is a positive return
    assert (half >= 0).all().all()
    plot_metric_returns(est, tmp_path / "m.png")
    assert (tmp_path / "m.png").read_bytes()[:4] == b"\x89PNG"
