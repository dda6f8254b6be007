"""`demo --quick` end to end: every stage after the pools and models (tiny_env's, which the
quick demo would build identically) runs, and the report, table and figures exist; then
docs/python-api.md's worked example runs on that real output (the demo runs once)."""
from __future__ import annotations

import contextlib
import io
import json
import shutil

import pandas as pd
import pytest

from causalmix import launch
from test_python_api import DOC, doc_blocks

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.timeout(1800)]

FIGURES = ("sampled_mixtures.png", "outcome_by_domain.png", "covariate_coverage.png", "return_curves.png",
           "predicted_vs_actual.png", "policy_trace.png", "returns.png", "validation-demo-large.png",
           "validation-demo-large-flip.png")
METHODS = ("causalmix-A", "no-covariates", "regmix", "equal")


@pytest.fixture(scope="module")
def quick_demo(ray_local, tiny_env, tmp_path_factory):
    """(workdir, stdout) of one `demo --quick` run, shared by this module's tests."""
    work = tmp_path_factory.mktemp("quick") / "demo"
    shutil.copytree(tiny_env.root / "pools", work / "pools")
    shutil.copytree(tiny_env.root / "models", work / "models")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert launch.main(["demo", "--quick", "--workdir", str(work)]) == 0
    return work, out.getvalue()


def test_demo_quick_end_to_end(quick_demo, capsys):
    work, out = quick_demo
    summary = json.loads(out.strip().splitlines()[-1])
    seconds = summary["stage_seconds"]
    assert seconds["pools"] == seconds["models"] == "reused"
    assert all(isinstance(seconds[s], float) for s in ("features", "sweep", "fit", "recommend", "validate", "report"))
    report = work / "report" / "report.md"
    assert f"report: {report}" in out and "AvgDev" in out and "Verdict:" in out
    for name in FIGURES:
        assert (work / "report" / name).read_bytes()[:4] == b"\x89PNG", name
    text = report.read_text()
    assert "24 proxy runs" in text and "Tokens per run" in text and "2 seed(s)" in text
    for pool in ("demo-large", "demo-large-flip"):  # validated on both target pools, a verdict each
        table = (work / "validation" / pool / "table.md").read_text()
        assert all(f"| {method} |" in table for method in METHODS) and "Caps:" in table
        assert f"## Validation on the target model: {pool}" in text and f"- **{pool}**: Verdict:" in text
        results = pd.read_parquet(work / "validation" / pool / "validation.parquet")
        assert len(results) == 8 and set(results["seed"]) == {0, 1}
        assert set(pd.read_parquet(work / "validation" / pool / "table.parquet")["method"]) == set(METHODS)
    assert "| mixture |" in table and "The mixtures validated" in text and "Power of the verdict" in text
    assert set(summary["report"]["verdict_per_pool"]) == {"demo-large", "demo-large-flip"}
    for name in ("model", "model-regmix", "model-no-dml", "model-no-covariates"):
        assert (work / name / "model.json").is_file()
    fits = summary["fit"]  # auto cannot cross-validate 24 runs: the sweep's forest, for the ablation too
    assert "needs" in fits["model"]["fallback"]
    assert fits["model"]["estimator"] == fits["model-no-covariates"]["estimator"] == "causal-forest"
    assert not (work / "runs" / "model").exists()  # one fit: the sweep writes no model of its own
    runs = pd.read_parquet(work / "runs" / "runs.parquet")
    assert len(runs) == 24 and len([c for c in runs.columns if c.startswith("x.")]) == 4
    capsys.readouterr()
    # the workdir remembers it holds a quick demo
    assert launch.main(["demo", "--workdir", str(work), "--until", "pools"]) == 2
    assert "holds a quick demo" in capsys.readouterr().err


def test_python_api_example_on_the_quick_demo(quick_demo, tmp_path, monkeypatch, capsys):
    """The documented example on the real artifact (it once asked linear-dml for 42 runs of the
    24 that `--quick` makes)."""
    work, _ = quick_demo
    (tmp_path / "causalmix-demo-quick").symlink_to(work)
    monkeypatch.chdir(tmp_path)
    namespace = {}
    for block in doc_blocks(DOC.read_text()):
        exec(compile(block, str(DOC), "exec"), namespace)
    out = capsys.readouterr().out
    assert "24 proxy runs" in out and "refused:" in out and "Figure True" in out
    assert abs(sum(namespace["rec"]["mixture"].values()) - 1) < 1e-9 and len(namespace["pred"]) == 24
