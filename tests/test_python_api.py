"""The Python API: docs/python-api.md's worked example, run block by block on a small stand-in
of a demo workdir (a runs table of tests/structural.py's world with demo domain names, its
fitted model directory, and a features folder of the shifted pool); its errors; the console
script; --log-level on every sub-command."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import causalmix
from causalmix import launch
from causalmix.features.doc_features import FEATURE_VERSION
from causalmix.features.features_io import FEATURE_COLUMNS, ShardKey, shard_output_path, write_feature_shard, write_manifest
from structural import StructuralModel

DOMAINS = ["arithmetic", "code", "dialog", "docs_qa"]
DOC = Path(__file__).resolve().parent.parent / "docs" / "python-api.md"


def demo_standin(work: Path) -> Path:
    world = StructuralModel(n_domains=4, seed=0)
    runs = world.runs(60)
    runs = runs.rename(columns={**{f"mix.d{j}": f"mix.{d}" for j, d in enumerate(DOMAINS)},
                                **{f"x.d{j}.quality": f"x.{d}.hes" for j, d in enumerate(DOMAINS)}})
    (work / "runs").mkdir(parents=True)
    runs.to_parquet(work / "runs" / "runs.parquet")
    assert launch.main(["fit", "--runs", str(work / "runs" / "runs.parquet"), "--out", str(work / "model"),
                        "--estimator", "regression"]) == 0
    features = work / "features" / "demo-large"
    rng = np.random.default_rng(1)
    key = ShardKey("stand-in", "fingerprint", FEATURE_VERSION, 128, "0" * 64)
    shards = []
    for domain, state in zip(DOMAINS, world.target_state):
        n = 20
        frame = pd.DataFrame({c: np.zeros(n) for c in FEATURE_COLUMNS})
        frame["doc_id"] = [f"{domain}-{i}" for i in range(n)]
        frame["domain"] = domain
        frame["n_tokens"], frame["truncated"] = 50, False
        frame["hes"] = state + 0.1 * rng.standard_normal(n)
        path = write_feature_shard(shard_output_path(features, domain, "s0"), frame, key)
        shards.append({"domain": domain, "path": str(path.relative_to(features))})
    write_manifest(features, {"domains": DOMAINS, "shards": shards, "model": "stand-in", "pool": "demo-large",
                              "model_fingerprint": "fingerprint",
                              "feature_version": FEATURE_VERSION})
    return work


def doc_blocks(text: str) -> list[str]:
    """The page's ```python blocks, in order, without those marked `<!-- not run -->`."""
    blocks = []
    for match in re.finditer(r"(<!-- not run -->\n)?```python\n(.*?)```", text, flags=re.S):
        if not match.group(1):
            blocks.append(match.group(2))
    return blocks


def test_the_documented_example_runs_on_demo_artifacts(tmp_path, monkeypatch, capsys):
    import matplotlib

    demo_standin(tmp_path / "causalmix-demo")
    monkeypatch.chdir(tmp_path)
    backend = matplotlib.get_backend()
    blocks = doc_blocks(DOC.read_text())
    assert len(blocks) == 5 and "causalmix.sweep(" not in "".join(blocks)
    namespace = {}
    for block in blocks:
        exec(compile(block, str(DOC), "exec"), namespace)
    assert matplotlib.get_backend() == backend  # the figure left the backend alone
    out = capsys.readouterr().out
    assert "60 proxy runs" in out and "refused:" in out and "Figure True" in out
    rec = namespace["rec"]
    assert set(rec["mixture"]) == set(DOMAINS) and rec["model_version"] == namespace["model"].fitted.version
    assert len(namespace["pred"]) == 60 and namespace["pred"]["y_pred"].notna().all()
    assert isinstance(namespace["demo_model"], causalmix.Model)


def test_api_errors_are_typed_not_exits(tmp_path):
    with pytest.raises(causalmix.UserError, match="missing.parquet"):
        causalmix.fit(tmp_path / "missing.parquet")
    with pytest.raises(causalmix.UserError, match=r"unknown setting\(s\) \['estimatr'\]"):
        causalmix.fit(pd.DataFrame({"run_id": ["a"], "mix.a": [1.0], "y": [0.0]}), estimatr="regression")
    with pytest.raises(causalmix.UserError, match=r"runs \(DataFrame\).*mix"):
        causalmix.fit(pd.DataFrame({"run_id": ["a"], "mix.a": [1.0], "y": [0.0]}))
    with pytest.raises(causalmix.UserError, match="tensorboard"):
        causalmix.sweep(tmp_path / "pool", tmp_path / "features.parquet", "model", tmp_path / "out", runs=1,
                        tracking="tensorboard")


def test_console_script_and_log_level(capsys):
    script = shutil.which("causalmix", path=os.pathsep.join([str(Path(sys.executable).parent),
                                                             os.environ.get("PATH", "")]))
    assert script, "`pip install -e .` installs the causalmix console script"
    done = subprocess.run([script, "sweep", "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "usage: causalmix sweep" in done.stdout
    assert "--tracking" in done.stdout and "--log-level" in done.stdout
    for name in [*launch.COMMANDS, "pool build", "pool info"]:
        with pytest.raises(SystemExit):
            launch.main([*name.split(), "--help"])
        assert "--log-level {debug,info,warning,error}" in capsys.readouterr().out, name


def test_log_level_filters_the_diagnostics_not_the_results(tmp_path, capsys):
    runs = StructuralModel(n_domains=3, seed=2).runs(30)
    runs.to_parquet(tmp_path / "runs.parquet")
    argv = ["fit", "--runs", str(tmp_path / "runs.parquet"), "--estimator", "regression"]
    assert launch.main([*argv, "--out", str(tmp_path / "m1")]) == 0
    captured = capsys.readouterr()
    assert "fitting regression on 30 runs" in captured.err and '"n_runs": 30' in captured.out
    assert launch.main([*argv, "--out", str(tmp_path / "m2"), "--log-level", "warning"]) == 0
    captured = capsys.readouterr()
    assert "fitting" not in captured.err and '"n_runs": 30' in captured.out.splitlines()[-1]
    assert launch.main(["fit", "--runs", str(tmp_path / "none.csv"), "--out", str(tmp_path / "m3"),
                        "--log-level", "error"]) == 2
    assert capsys.readouterr().err.startswith("error: runs table not found")
