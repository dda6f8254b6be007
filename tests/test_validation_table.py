"""Validation's pure logic: which mixtures compete (--mixtures), the paper-style table with
paired per-seed gains, and the verdict (no Ray, no training)."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from causalmix.core.errors import UserError
from causalmix.validation.candidates import candidate_mixtures, grid_mixtures, parse_mixture_list, read_mixture_file
from causalmix.validation.comparison import (add_avgdev, caps_sentences, detectable_gain, paired_verdict, power,
                                             power_sentences, spread_factor, table_markdown, validation_table,
                                             verdict_sentences)

DOMAINS = ["a", "b", "c"]


def test_parse_mixture_list_defaults_case_and_errors():
    assert parse_mixture_list(None, have_regmix=True) == ("causalmix-a", "causalmix-s", "regmix", "equal", "natural")
    assert "regmix" not in parse_mixture_list(None, have_regmix=False)
    assert parse_mixture_list("CausalMix-A, EQUAL,mine.json", have_regmix=False) == ("causalmix-a", "equal", "mine.json")
    assert parse_mixture_list(["equal", "natural"], have_regmix=False) == ("equal", "natural")
    with pytest.raises(UserError, match="unknown mixture 'dmo'"):
        parse_mixture_list("equal,dmo", have_regmix=True)
    with pytest.raises(UserError, match="--regmix-model"):
        parse_mixture_list("causalmix-a,regmix", have_regmix=False)
    with pytest.raises(UserError, match="twice"):
        parse_mixture_list("equal,Equal", have_regmix=False)
    with pytest.raises(UserError, match="empty entry"):
        parse_mixture_list("equal,,natural", have_regmix=False)
    every = "causalmix-a,causalmix-s,no-dml,no-covariates,regmix,equal,natural,best-run,grid"
    assert len(parse_mixture_list(every, have_regmix=True,
                                  have=("no-dml", "no-covariates", "best-run", "grid"))) == 9
    for name, flag in (("no-dml", "--no-dml-model"), ("no-covariates", "--no-covariates-model"),
                       ("best-run", "--runs"), ("grid", "--grid")):
        with pytest.raises(UserError, match=flag):
            parse_mixture_list(f"equal,{name}", have_regmix=True)


def test_read_mixture_file_accepts_mixtures_and_recommend_output(tmp_path):
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps({"a": 0.5, "b": 0.3, "c": 0.2}))
    assert read_mixture_file(plain, DOMAINS) == pytest.approx({"a": 0.5, "b": 0.3, "c": 0.2})
    rec = tmp_path / "rec.json"
    rec.write_text(json.dumps({"mixture": {"c": 0.1, "a": 0.6, "b": 0.3}, "expected_gain": 0.1}))
    assert list(read_mixture_file(rec, DOMAINS)) == DOMAINS


@pytest.mark.parametrize("content, message", [
    ({"a": 0.5, "b": 0.5}, r"missing \['c'\]"),
    ({"a": 0.5, "b": 0.3, "c": 0.1, "z": 0.1}, r"extra \['z'\]"),
    ({"a": 0.5, "b": 0.3, "c": 0.3}, "sum to 1.1"),
    ({"a": 1.2, "b": -0.2, "c": 0.0}, "weight of 'b'"),
    ({"a": "x", "b": 0.5, "c": 0.5}, "weight of 'a'"),
    ([0.3, 0.3, 0.4], "expected"),
])
def test_read_mixture_file_names_what_is_wrong(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(content))
    with pytest.raises(UserError, match=message) as exc:
        read_mixture_file(path, DOMAINS)
    assert str(path) in str(exc.value)


def test_read_mixture_file_missing_or_not_json(tmp_path):
    with pytest.raises(UserError, match="not found"):
        read_mixture_file(tmp_path / "nope.json", DOMAINS)
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(UserError, match="not valid JSON"):
        read_mixture_file(tmp_path / "broken.json", DOMAINS)


class _Model:
    """A fitted model's recommend() contract with a fixed answer (the candidates' plumbing only)."""

    domains = DOMAINS
    estimator_name = "causal-forest"
    covariate_names = ["x.a.hes"]

    def recommend(self, covariates, policy="analytic", **kw):
        return {"mixture": {"a": 0.5, "b": 0.25, "c": 0.25}, "expected_gain": 0.1, "interval": [0.0, 0.2]}


class _NoCovModel(_Model):
    covariate_names = []

    def recommend(self, covariates, policy="analytic", **kw):
        assert covariates == {}
        return super().recommend(covariates, policy, **kw)


def test_grid_spreads_deterministic_mixtures_over_the_simplex():
    grid = grid_mixtures(["a", "b", "c", "d"], 10)
    assert grid == grid_mixtures(["a", "b", "c", "d"], 10) and len(grid) == 10
    w = np.array([list(m.values()) for m in grid])
    assert np.allclose(w.sum(axis=1), 1) and (w >= 0).all()
    assert np.allclose(w[0], 0.25)                        # the centre first, then the corners
    assert sorted(map(tuple, w[1:5])) == sorted(map(tuple, np.eye(4)))
    assert len({tuple(r) for r in w}) == 10
    with pytest.raises(UserError, match="--grid"):
        grid_mixtures(["a", "b"], 0)


def test_avgdev_weighs_every_task_the_same_whatever_its_scale():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"candidate": np.repeat(["p", "q", "r"], 3), "seed": [0, 1, 2] * 3,
                          "metric.a_nll": 5 + rng.normal(size=9), "metric.b_em": rng.random(9),
                          "y": rng.normal(size=9)})
    base = add_avgdev(frame)["avgdev"]
    scaled = frame.assign(**{"metric.a_nll": 1000 * frame["metric.a_nll"] + 7,
                             "metric.b_em": 0.001 * frame["metric.b_em"]})
    assert np.allclose(add_avgdev(scaled)["avgdev"], base)   # rescaling a task changes nothing
    z = lambda v: (v - v.mean()) / v.std(ddof=0)
    assert np.allclose(base, (z(-frame["metric.a_nll"]) + z(frame["metric.b_em"])) / 2)
    flat = frame.assign(**{"metric.b_em": 0.0})               # a task that never moves counts 0
    assert np.allclose(add_avgdev(flat)["avgdev"], z(-frame["metric.a_nll"]) / 2)
    # a harness task's standard error is not a task, and a harness loss is minimised
    harness = frame.assign(**{"metric.b_em_stderr": rng.random(9), "metric.c_loss": rng.normal(size=9)})
    assert np.allclose(add_avgdev(harness)["avgdev"],
                       (z(-frame["metric.a_nll"]) + z(frame["metric.b_em"]) + z(-harness["metric.c_loss"])) / 3)
    assert "metric.b_em_stderr_mean" not in validation_table(harness.assign(**{"mix.d": 1.0}))


def test_candidates_follow_the_selection_in_order(tmp_path):
    mine = tmp_path / "mine.json"
    mine.write_text(json.dumps({"a": 0.2, "b": 0.2, "c": 0.6}))
    cands = candidate_mixtures(_Model(), {"x.a.hes": 1.0}, {"a": 10, "b": 30, "c": 60},
                               entries=("equal", "causalmix-s", str(mine), "natural"))
    assert list(cands) == ["equal", "causalmix-S", "mine", "natural"]
    assert cands["mine"]["mixture"]["c"] == pytest.approx(0.6)
    assert cands["natural"]["mixture"] == pytest.approx({"a": 0.1, "b": 0.3, "c": 0.6})
    assert cands["causalmix-S"]["source"] == "causal-forest/search"
    runs = pd.DataFrame({"run_id": ["r0", "r1"], "mix.a": [0.1, 0.7], "mix.b": [0.2, 0.2],
                         "mix.c": [0.7, 0.1], "y": [-2.0, -1.0]})
    more = candidate_mixtures(_Model(), {"x.a.hes": 1.0}, {"a": 1, "b": 1, "c": 1},
                              entries=("no-dml", "no-covariates", "best-run", "grid"),
                              no_dml_model=_Model(), no_covariates_model=_NoCovModel(), runs=runs, grid=4)
    assert list(more) == ["no-dml", "no-covariates", "best-run", "grid-01", "grid-02", "grid-03", "grid-04"]
    assert more["best-run"]["mixture"] == {"a": 0.7, "b": 0.2, "c": 0.1} and "r1" in more["best-run"]["source"]
    assert more["no-covariates"]["source"].endswith("(no covariates)")
    taken = tmp_path / "equal.json"
    taken.write_text(json.dumps({"a": 0.2, "b": 0.2, "c": 0.6}))
    with pytest.raises(UserError, match="taken"):
        candidate_mixtures(_Model(), {}, {"a": 1, "b": 1, "c": 1}, entries=("equal", str(taken)))


def _results(gains: dict[str, list[float]], seed_offsets=(0.0, -0.3, 0.25)) -> pd.DataFrame:
    """y = seed offset (shared by every method: large) + the method's per-seed gain."""
    rows = []
    for name, per_seed in gains.items():
        for seed, (offset, g) in enumerate(zip(seed_offsets, per_seed)):
            y = -3.0 + offset + g
            rows.append({"candidate": name, "seed": seed, "metric.a_nll": -y, "metric.b_em": 0.1 + g, "y": y})
    return pd.DataFrame(rows)


def test_paired_gain_sees_through_a_large_shared_seed_spread():
    results = _results({"equal": [0, 0, 0], "regmix": [-0.01, 0.02, -0.03],
                        "causalmix-A": [0.05, 0.052, 0.048], "causalmix-S": [0.05, -0.04, 0.01]})
    table = validation_table(results)
    assert table.at["causalmix-A", "y_std"] > 0.2  # the unpaired spread hides the gain...
    sd_y = results["y"].std(ddof=0)
    sd_em = results["metric.b_em"].std(ddof=0)
    assert table.at["causalmix-A", "gain_vs_equal_mean"] == pytest.approx(0.05 * (1 / sd_y + 1 / sd_em) / 2)
    assert table.at["causalmix-A", "vs_equal"] == "better"  # ...the paired one does not
    assert table.at["causalmix-A", "vs_regmix"] == "better"
    assert table.at["causalmix-S", "vs_equal"] == "within spread"
    assert table.at["equal", "vs_equal"] == "-"
    assert table.index[0] == "causalmix-A"
    assert table.at["causalmix-A", "metric.b_em_mean"] == pytest.approx(0.15)
    md = table_markdown(table)
    assert "| causalmix-A |" in md and "a_nll" in md and "b_em" in md and "±" in md
    words = verdict_sentences(table)
    assert words[-1].startswith("Verdict: causalmix-A beats equal and regmix")
    mixed = results.assign(**{"mix.a": 0.5, "mix.b": 0.25, "mix.c": 0.25})
    md = table_markdown(validation_table(mixed))
    assert "| mixture |" in md and "a .50 · b .25 · c .25" in md


def test_verdict_is_an_honest_negative_when_no_method_clears_the_spread():
    results = _results({"equal": [0, 0, 0], "regmix": [0.0, 0.01, 0.0], "causalmix-A": [0.02, -0.01, 0.03]})
    words = verdict_sentences(validation_table(results))
    assert "does not separate from equal" in words[0]
    assert words[-1].startswith("Verdict: no CausalMix mixture beats equal and regmix")


def test_paired_verdict_rule():
    assert spread_factor(3) == pytest.approx(2.92, abs=0.01)
    assert paired_verdict([0.1, 0.11, 0.09])["verdict"] == "better"
    assert paired_verdict([-0.1, -0.11, -0.09])["verdict"] == "worse"
    assert paired_verdict([0.1, -0.05, 0.02])["verdict"] == "within spread"
    assert paired_verdict([0.1])["verdict"] == "one seed"
    v = paired_verdict([0.1, 0.2, 0.3, 0.4])
    assert v["mean"] == pytest.approx(0.25) and v["se"] == pytest.approx(np.std([1, 2, 3, 4], ddof=1) / 20)
    assert v["positive_seeds"] == 4


def test_seeds_needed_matches_the_rule():
    from causalmix.validation.comparison import seeds_needed

    need = seeds_needed(0.02, 0.02)
    assert need is not None
    assert 0.02 > spread_factor(need) * 0.02 / np.sqrt(need)
    assert 0.02 <= spread_factor(need - 1) * 0.02 / np.sqrt(need - 1)
    assert seeds_needed(-0.01, 0.02) is None and seeds_needed(0.0, 0.02) is None


def test_power_grows_with_seeds_and_the_detectable_gain_has_the_target_power():
    assert power(0.0, 1.0, 6) == pytest.approx(0.05)  # no gain: the test's level
    assert power(0.5, 0.4, 3) < power(0.5, 0.4, 6) < power(0.5, 0.4, 12)
    gain = detectable_gain(0.41, 6)
    assert power(gain, 0.41, 6) == pytest.approx(0.8, abs=1e-6) and 0.45 < gain < 0.55
    assert np.isnan(detectable_gain(0.4, 1)) and np.isnan(power(0.5, 0.0, 6))
    rows = [{"candidate": c, "seed": s, "metric.a_nll": 3.0 - g - 0.01 * s * (c == "equal"), "y": g}
            for s in range(4) for c, g in (("equal", 0.0), ("causalmix-A", 0.1 + 0.01 * s * s))]
    lines = power_sentences(validation_table(pd.DataFrame(rows)))
    assert len(lines) == 1 and lines[0].startswith("causalmix-A vs equal: per-seed std") and "80 % power" in lines[0]


def test_caps_sentences_name_the_method_and_domain_a_cap_holds():
    from causalmix.mixture_space.constraints import MixtureBounds

    bounds = MixtureBounds.build(DOMAINS, domain_tokens={"a": 100.0, "b": 1000.0, "c": 1000.0},
                                 target_tokens=1000.0, max_epochs=2.0)
    capped = {"equal": {"mixture": {"a": 1 / 3, "b": 1 / 3, "c": 1 / 3}},
              "causalmix-A": {"mixture": {"a": 0.2, "b": 0.5, "c": 0.3}}}
    [line] = caps_sentences(capped, bounds)
    assert line.startswith("Caps: causalmix-A: a at its upper bound 0.200 (2 epochs") and "equal:" not in line
    free = MixtureBounds.build(DOMAINS, domain_tokens={d: 1000.0 for d in DOMAINS}, target_tokens=1000.0)
    assert caps_sentences(capped, free)[0].startswith("Caps: no validated mixture is at a cap")
