"""`import-swarm`: Olmix ratios.csv + metrics.csv, or one table by column patterns, into runs."""
import json

import numpy as np
import pandas as pd
import pytest

from causalmix import launch
from causalmix.causal.runs_table import read_runs_table
from causalmix.causal.swarm_import import import_olmix, import_table
from causalmix.core.errors import UserError

DOMAINS = ["dclm", "code", "math", "wiki"]


def _olmix(tmp_path, n=60, seed=0, csv_format=False):
    """An Olmix-format swarm: bits-per-byte falls with code and math (lower is better).

    Default: Olmix's in-memory frames (run, name, index, data columns); `csv_format`: the files
    its `load_from_csv` reads (run_id, name, data columns)."""
    rng = np.random.default_rng(seed)
    w = np.round(rng.dirichlet(np.ones(len(DOMAINS)), size=n), 4)
    w[:, 0] = 1 - w[:, 1:].sum(axis=1)  # rounded like a CSV would be, still summing to 1
    runs = [f"swarm-{i:03d}" for i in range(n)]
    ratios = pd.DataFrame({"run": runs, "name": [f"mix-{i}" for i in range(n)], "index": range(n)})
    for j, d in enumerate(DOMAINS):
        ratios[d] = w[:, j]
    bpb = 1.2 - 0.3 * w[:, 1] - 0.2 * w[:, 2] + rng.normal(0, 0.01, n)
    metrics = pd.DataFrame({"run": runs[::-1], "name": [f"mix-{i}" for i in range(n)][::-1],
                            "index": list(range(n))[::-1], "eval/bpb": bpb[::-1],
                            "eval/acc": (0.4 + 0.2 * w[:, 2])[::-1]})
    if csv_format:
        ratios = ratios.drop(columns="index").rename(columns={"run": "run_id"})
        metrics = metrics.drop(columns="index").rename(columns={"run": "run_id"})
    ratios.to_csv(tmp_path / "ratios.csv", index=False)
    metrics.to_csv(tmp_path / "metrics.csv", index=False)
    return tmp_path / "ratios.csv", tmp_path / "metrics.csv", ratios, metrics, bpb


def test_olmix_import_joins_on_run_and_negates_loss(tmp_path):
    r, m, ratios, _, bpb = _olmix(tmp_path)
    frame = import_olmix(r, m, target="eval/bpb")
    assert [c for c in frame.columns if c.startswith("mix.")] == [f"mix.{d}" for d in DOMAINS]
    assert "metric.eval/acc" in frame.columns and "mix.name" not in frame.columns
    # metrics.csv is in reverse order: the join is by run id, not by position
    assert np.allclose(frame["y"], -bpb)
    assert frame["run_id"].tolist() == ratios["run"].tolist()


def test_olmix_swarm_imports_and_fits(tmp_path, capsys):
    r, m, *_ = _olmix(tmp_path, csv_format=True)
    out = tmp_path / "runs.parquet"
    assert launch.main(["import-swarm", "--ratios", str(r), "--metrics-file", str(m),
                        "--target", "eval/bpb", "--out", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["n_runs"] == 60 and printed["domains"] == DOMAINS
    assert read_runs_table(out).domains == DOMAINS
    assert launch.main(["fit", "--runs", str(out), "--out", str(tmp_path / "model"),
                        "--estimator", "regression"]) == 0
    fit = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert fit["estimator"] == "regression" and fit["n_runs"] == 60
    assert (tmp_path / "model" / "checksums.json").is_file()


def test_table_by_patterns(tmp_path):
    t = pd.DataFrame({"run_id": ["a", "b", "c"], "mix_web": [0.5, 0.2, 0.9], "mix_code": [0.5, 0.8, 0.1],
                      "eval/acc": [0.3, 0.5, 0.2], "eval/f1": [0.1, 0.2, 0.3], "notes": ["x", "y", "z"]})
    t.to_parquet(tmp_path / "swarm.parquet")
    frame = import_table(tmp_path / "swarm.parquet", weights="mix_*", metrics="eval/*", target="acc",
                         lower_is_better=False)
    assert {"mix.web", "mix.code", "metric.acc", "metric.f1"} <= set(frame.columns)
    assert frame["y"].tolist() == [0.3, 0.5, 0.2]
    mean = import_table(tmp_path / "swarm.parquet", weights="mix_*", metrics="eval/*", target="mean")
    assert np.allclose(mean["y"], -(t["eval/acc"] + t["eval/f1"]) / 2)


def test_runs_missing_from_one_side_are_named(tmp_path):
    r, m, ratios, metrics, _ = _olmix(tmp_path)
    metrics[~metrics["run"].isin(["swarm-003", "swarm-007"])].to_csv(m, index=False)
    ratios[ratios["run"] != "swarm-010"].to_csv(r, index=False)
    with pytest.raises(UserError, match=r"weights but no metrics: swarm-003, swarm-007; "
                                        r"runs with metrics but no weights: swarm-010"):
        import_olmix(r, m, target="eval/bpb")


def test_weights_not_summing_to_one_are_named(tmp_path):
    r, m, ratios, _, _ = _olmix(tmp_path)
    ratios.loc[4, "code"] += 0.3
    ratios.to_csv(r, index=False)
    with pytest.raises(UserError, match=r"must sum to 1.*rows swarm-004 sum to"):
        import_olmix(r, m, target="eval/bpb")


def test_non_numeric_metric_and_weight_are_named(tmp_path):
    r, m, ratios, metrics, _ = _olmix(tmp_path)
    metrics["eval/acc"] = metrics["eval/acc"].astype(object)
    metrics.loc[metrics["run"] == "swarm-002", "eval/acc"] = "oops"
    metrics.to_csv(m, index=False)
    with pytest.raises(UserError, match=r"metric column 'eval/acc' is not numeric in runs swarm-002 "
                                        r"\(e.g. 'oops'\)"):
        import_olmix(r, m, target="eval/bpb")
    r2, m2, ratios, _, _ = _olmix(tmp_path)
    ratios["math"] = ratios["math"].astype(object)
    ratios.loc[1, "math"] = "?"
    ratios.to_csv(r2, index=False)
    with pytest.raises(UserError, match=r"weight column 'math' is not numeric in runs swarm-001"):
        import_olmix(r2, m2, target="eval/bpb")


def test_duplicate_runs_missing_target_and_bad_patterns(tmp_path):
    r, m, ratios, metrics, _ = _olmix(tmp_path)
    pd.concat([ratios, ratios.iloc[[5]]]).to_csv(r, index=False)
    with pytest.raises(UserError, match=r"ratios file .*duplicate run ids in column 'run': swarm-005"):
        import_olmix(r, m, target="eval/bpb")
    ratios.loc[[2, 3], "run"] = None
    ratios.to_csv(r, index=False)
    with pytest.raises(UserError, match=r"empty 'run' in data rows 3, 4"):
        import_olmix(r, m, target="eval/bpb")
    ratios.loc[[2, 3], "run"] = ["swarm-002", "swarm-003"]
    ratios.to_csv(r, index=False)
    metrics.loc[metrics["run"] == "swarm-009", "eval/bpb"] = np.nan
    metrics.to_csv(m, index=False)
    with pytest.raises(UserError, match=r"target 'eval/bpb' is missing or non-finite for runs swarm-009"):
        import_olmix(r, m, target="eval/bpb")
    with pytest.raises(UserError, match=r"--target 'loss' is not one of the metrics"):
        import_olmix(r, m, target="loss")
    with pytest.raises(UserError, match=r"no weight columns match 'mix_\*'"):
        import_olmix(r, m, target="eval/bpb", weights="mix_*")
    with pytest.raises(UserError, match=r"no run column 'step'"):
        import_olmix(r, m, target="eval/bpb", run_column="step")


def test_cli_usage_errors_exit_2(tmp_path):
    r, m, *_ = _olmix(tmp_path)
    assert launch.main(["import-swarm", "--ratios", str(r), "--target", "eval/bpb",
                        "--out", str(tmp_path / "o.parquet")]) == 2
    assert launch.main(["import-swarm", "--table", str(r), "--target", "eval/bpb",
                        "--out", str(tmp_path / "o.parquet")]) == 2
    assert launch.main(["import-swarm", "--ratios", str(r), "--metrics-file", str(m), "--target",
                        "eval/bpb", "--out", str(tmp_path / "o.csv")]) == 2


def test_a_wide_swarm_imports_without_pandas_warnings(tmp_path):
    """Olmix's DCLM swarm has 24 domains and 100+ metrics: one column insert each made pandas
    print a PerformanceWarning per column at the shell."""
    import warnings

    rng = np.random.default_rng(0)
    runs = [f"r{i}" for i in range(6)]
    weights = rng.dirichlet(np.ones(24), 6)
    ratios = pd.DataFrame({"run": runs, **{f"d{j}": weights[:, j] for j in range(24)}})
    metrics = pd.DataFrame({"run": runs, **{f"m{j}": rng.normal(size=6) for j in range(150)}})
    ratios.to_csv(tmp_path / "ratios.csv", index=False)
    metrics.to_csv(tmp_path / "metrics.csv", index=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        frame = import_olmix(tmp_path / "ratios.csv", tmp_path / "metrics.csv", target="mean")
    assert frame.shape[0] == 6 and sum(c.startswith("metric.") for c in frame.columns) == 150
