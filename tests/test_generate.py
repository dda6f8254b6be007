"""`generate` and `collect` (bring your own trainer) on the tiny pool, without training: the plan
is the sweep Searcher's proposals, its per-run export the documents a trial draws, `collect`
joins results by run_id and names what is missing, `--resume` adds the adaptive rounds the
sweep would. The end-to-end check against a trained sweep is in tests/test_sweep.py."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from causalmix import launch
from causalmix.design.run_proposer import LocalRoundSnapshots, RunProposer
from causalmix.design.sweep_design import proposer_settings
from causalmix.design import swarm_plan
from causalmix.design.swarm_plan import GenerateConfig, generate, read_plan
from causalmix.design.swarm_runs import RunDraws, export_runs, plan_domains, run_spec
from causalmix.datapool.sweep_inputs import load_sweep_inputs
from causalmix.proxy.evaluate import outcome
from causalmix.proxy.run import state_fallback
from sweep_helpers import synthetic_features, tiny_proxy_config


@pytest.fixture(scope="module")
def features(tiny_env, tmp_path_factory):
    return synthetic_features(tiny_env.pool_small, tmp_path_factory.mktemp("features") / "f.parquet")


def plan_config(tiny_env, features, out, **overrides) -> GenerateConfig:
    values = dict(pool=str(tiny_env.pool_small), features=str(features), out=str(out), runs=6, seed=3,
                  proxy=tiny_proxy_config(tiny_env.proxy_model, budget=8))
    values.update(overrides)
    return GenerateConfig(**values)


def test_plan_holds_the_searchers_runs_and_their_state_covariates(tiny_env, features, tmp_path):
    from causalmix.actors.sweep.searcher import MixtureSearcher

    cfg = plan_config(tiny_env, features, tmp_path / "plan", export=True)
    generate(cfg, export_runs=export_runs)
    _, plan = read_plan(cfg.out)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "plan" / "plan.csv"), plan, check_dtype=False)
    inputs = load_sweep_inputs(cfg.pool, cfg.features, cfg.feature_names)
    searcher = MixtureSearcher(**proposer_settings(cfg, inputs))
    domains = plan_domains(plan)
    for row in plan.to_dict("records"):
        proposed = searcher.suggest(f"t{row['index']}")
        spec = run_spec(row, domains)
        assert (spec.run_id, spec.seed, spec.sampler) == (proposed["run_id"], proposed["seed"], "dirichlet")
        assert spec.mixture == proposed["mixture"]
        assert {d: list(s) for d, s in spec.state.items()} == proposed["state"]
        expected = state_fallback(inputs.features, inputs.shards, spec.state, domains, cfg.feature_names)
        assert {k: row[k] for k in expected} == pytest.approx(expected, rel=1e-12)
    # the export holds the documents a trial of run 1 draws, in draw order
    spec = run_spec(plan.iloc[1].to_dict(), domains)
    drawn = RunDraws(cfg, inputs).draw(spec)
    exported = pd.read_parquet(tmp_path / "plan" / "data" / spec.run_id / "data")
    assert exported["doc_id"].tolist() == drawn.doc_ids and exported["domain"].tolist() == drawn.domains
    counts = json.loads((tmp_path / "plan" / "data" / spec.run_id / "counts.json").read_text())
    assert counts["documents"] == len(drawn.doc_ids) == 8
    # a second plan into the same folder is refused, and so are unreadable inputs; nothing is written
    argv = ["generate", "--pool", cfg.pool, "--features", cfg.features, "--model", cfg.proxy.model]
    assert launch.main([*argv, "--out", cfg.out]) == 2
    assert launch.main([*argv[:3], "--features", str(tmp_path / "none.parquet"), *argv[5:],
                        "--out", str(tmp_path / "p2")]) == 2
    assert not (tmp_path / "p2").exists()


def test_collect_joins_by_run_id_and_names_missing_and_extra_runs(tiny_env, features, tmp_path, capsys):
    plan = tmp_path / "plan"
    generate(plan_config(tiny_env, features, plan, runs=4))
    results = tmp_path / "results.csv"
    pd.DataFrame({"run_id": ["run-00002", "run-00000"], "metric.a.nll": [1.5, 1.0],
                  "wall_s": [3.0, 4.0]}).to_csv(results, index=False)
    assert launch.main(["collect", str(plan), "--results", str(results)]) == 0
    captured = capsys.readouterr()
    assert "run-00001, run-00003" in captured.err
    summary = json.loads(captured.out.strip().splitlines()[-1])
    assert summary["missing"] == ["run-00001", "run-00003"] and summary["runs"] == 2
    runs = pd.read_parquet(plan / "runs.parquet")
    assert runs["run_id"].tolist() == ["run-00000", "run-00002"]
    assert runs["y"].tolist() == [outcome({"metric.a.nll": 1.0}), outcome({"metric.a.nll": 1.5})]
    assert runs["wall_s"].tolist() == [4.0, 3.0]
    assert len([c for c in runs if c.startswith("x.")]) == 12 and runs.filter(like="x.").notna().all().all()

    pd.DataFrame({"run_id": ["run-00000", "run-00009"], "y": [1.0, 2.0]}).to_csv(results, index=False)
    assert launch.main(["collect", str(plan), "--results", str(results), "--out", str(tmp_path / "r.parquet")]) == 2
    assert "run-00009" in capsys.readouterr().err and not (tmp_path / "r.parquet").exists()


def fake_round_fit(rows, round_index):
    """A round's 'fit': a recommendation that depends on the rows it was given."""
    best = max(rows, key=lambda r: r["y"])
    return {"n_runs": len(rows), "mixture": {k[4:]: v for k, v in best.items() if k.startswith("mix.")}}


def test_resume_adds_the_adaptive_runs_the_sweep_would(tiny_env, features, tmp_path, monkeypatch):
    monkeypatch.setattr(swarm_plan, "round_fit", lambda cfg, domains: fake_round_fit)
    cfg = plan_config(tiny_env, features, tmp_path / "plan", runs=12, adaptive=0.6, adaptive_round=4)
    first = generate(cfg)
    _, plan = read_plan(cfg.out)
    waiting = first["waiting"]
    assert waiting and set(waiting).isdisjoint(plan["run_id"]) and len(plan) + len(waiting) == 12
    # the trainer reports round 0 (y: a function of the mixture); resume adds round 1's adaptive runs
    outcome = {r: -float(np.sum((plan.filter(like="mix.").iloc[i].to_numpy() - 0.25) ** 2))
               for i, r in enumerate(plan["run_id"])}
    pd.DataFrame({"run_id": list(outcome), "y": list(outcome.values())}).to_csv(tmp_path / "r.csv", index=False)
    assert launch.main(["collect", cfg.out, "--results", str(tmp_path / "r.csv")]) == 0
    assert launch.main(["generate", "--out", cfg.out, "--resume"]) == 0
    _, topped = read_plan(cfg.out)
    added = topped[~topped["run_id"].isin(plan["run_id"])]
    assert len(added) and (added["sampler"] == "adaptive").all() and (added["round"] == 1).all()

    # the same runs as a proposer fed the same rows in the sweep's order
    inputs = load_sweep_inputs(cfg.pool, cfg.features, cfg.feature_names)
    proposer = RunProposer(**proposer_settings(cfg, inputs), snapshots=LocalRoundSnapshots(fake_round_fit))
    runs = pd.read_parquet(tmp_path / "plan" / "runs.parquet")
    for row in runs.to_dict("records"):
        index = int(row["run_id"][4:])
        proposer.proposed.add(index)
        proposer.completed[index], proposer.rows[index] = row["y"], row
    for row in added.to_dict("records"):
        expected = proposer.proposal(row["index"], proposer._round_snapshot(1))
        assert run_spec(row, plan_domains(topped)).mixture == expected["mixture"]
        assert row["adaptive_round"] == 1 and row["adaptive_fit_runs"] == 4
