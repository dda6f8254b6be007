"""Output folders (issue 18, case 1): a write replaces only an artifact of its own kind,
never deletes its inputs, cleans what a killed write left, and refuses `--out .`."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from causalmix import launch
from causalmix.core.atomic import atomic_directory, atomic_write_text, check_output_path
from causalmix.core.errors import UserError
from tests.serve_model import synthetic_runs

REPO = Path(__file__).resolve().parent.parent


def _runs(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    synthetic_runs(40, seed=0).to_parquet(path, index=False)
    return path


def _fit(runs: Path, out, *extra: str) -> int:
    return launch.main(["fit", "--runs", str(runs), "--out", str(out), "--estimator", "regression", *extra])


def test_fit_refuses_an_out_folder_that_holds_its_input(tmp_path, capsys):
    runs = _runs(tmp_path / "proj" / "runs.parquet")
    assert _fit(runs, tmp_path / "proj") == 2
    assert "holds the input" in capsys.readouterr().err
    assert runs.is_file()
    # --overwrite never makes deleting an input acceptable
    assert _fit(runs, tmp_path / "proj", "--overwrite") == 2
    assert runs.is_file() and sorted(p.name for p in (tmp_path / "proj").iterdir()) == ["runs.parquet"]


def test_fit_replaces_a_model_directory_but_not_another_folder_unless_overwrite(tmp_path, capsys):
    runs = _runs(tmp_path / "runs.parquet")
    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    assert _fit(runs, other) == 2
    err = capsys.readouterr().err
    assert f"--out {other}" in err and "not a model directory" in err and "--overwrite" in err
    assert (other / "keep.txt").read_text() == "mine"
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    assert _fit(runs, a_file) == 2 and a_file.read_text() == "x"
    model = tmp_path / "model"
    assert _fit(runs, model) == 0 and _fit(runs, model) == 0  # a refit replaces its own kind
    assert _fit(runs, other, "--overwrite") == 0
    assert (other / "model.json").is_file() and not (other / "keep.txt").exists()


@pytest.mark.parametrize("out", [".", "..", "./"])
def test_out_dot_is_a_clear_error_and_leaves_nothing(tmp_path, monkeypatch, capsys, out):
    work = tmp_path / "work"
    runs = _runs(work / "runs.parquet")
    monkeypatch.chdir(work)
    assert _fit(runs, out) == 2
    assert "current or a parent directory" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["runs.parquet", "work"]


def test_cwd_and_its_parents_are_refused_under_any_spelling(tmp_path, monkeypatch):
    (tmp_path / "a").mkdir()
    monkeypatch.chdir(tmp_path / "a")
    for out in (tmp_path / "a", tmp_path, Path("../a")):
        with pytest.raises(UserError, match="current directory or one above"):
            check_output_path(out, kind="report folder", markers=("report.md",), overwrite=True)


def test_every_directory_writer_keeps_inputs_and_foreign_folders(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    atomic_write_text(run_dir / "runs.parquet", "input")
    with pytest.raises(UserError, match="holds the input"):
        with atomic_directory(run_dir, kind="report folder", markers=("report.md",), overwrite=True,
                              inputs=[run_dir / "runs.parquet", None]):
            pass
    with pytest.raises(UserError, match="not a report folder"):
        with atomic_directory(run_dir, kind="report folder", markers=("report.md",)):
            pass
    assert (run_dir / "runs.parquet").read_text() == "input"
    report = run_dir / "report"
    for text in ("first", "second"):
        with atomic_directory(report, kind="report folder", markers=("report.md",),
                              inputs=[run_dir / "runs.parquet"]) as tmp:
            atomic_write_text(tmp / "report.md", text)
    assert (report / "report.md").read_text() == "second"
    assert sorted(p.name for p in run_dir.iterdir()) == ["report", "runs.parquet"]


KILLED_WRITE = """
import os, signal, sys
from causalmix.core.atomic import atomic_directory
with atomic_directory(sys.argv[1], kind="model directory", markers=("model.json",)) as tmp:
    (tmp / "estimator.pkl").write_bytes(b"partial pickle")
    os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_rerun_removes_what_a_killed_write_left(tmp_path):
    runs = _runs(tmp_path / "runs.parquet")
    model = tmp_path / "model"
    killed = subprocess.run([sys.executable, "-c", KILLED_WRITE, str(model)], cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120)
    assert killed.returncode == -9
    leftovers = [p for p in tmp_path.iterdir() if p.name.startswith(".model.")]
    assert len(leftovers) == 1 and (leftovers[0] / "estimator.pkl").is_file()
    assert _fit(runs, model) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "runs.parquet"]


def test_a_write_in_progress_is_not_taken_for_stale(tmp_path):
    target = tmp_path / "art"
    with atomic_directory(target, kind="x", markers=()) as outer:
        with atomic_directory(tmp_path / "art", kind="x", markers=()) as inner:
            atomic_write_text(inner / "f", "1")
        assert outer.is_dir()  # this process's own temporary survives another write's cleanup
        atomic_write_text(outer / "f", "2")
    assert (target / "f").read_text() == "2"


def test_pool_build_never_replaces_the_dev_sets_it_reads(tmp_path, capsys):
    import yaml

    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "a.jsonl").write_text('{"q": "1+1?", "a": "2"}\n')
    (tmp_path / "dev").mkdir()  # README's own example keeps dev sets in dev/ beside the manifest
    (tmp_path / "dev" / "math.jsonl").write_text('{"q": "2+2?", "a": "4"}\n')
    manifest = tmp_path / "pool.yaml"
    manifest.write_text(yaml.safe_dump({"name": "t", "domains": [{
        "name": "math", "sources": [{"path": "raw/*.jsonl", "columns": {"prompt": "q", "response": "a"}}],
        "dev": {"path": "dev/math.jsonl", "columns": {"prompt": "q", "response": "a"}}}]}))
    assert launch.main(["pool", "build", str(manifest)]) == 2
    assert "holds the input" in capsys.readouterr().err
    assert (tmp_path / "dev" / "math.jsonl").is_file() and not (tmp_path / "pool.json").exists()
    assert launch.main(["pool", "build", str(manifest), "--overwrite"]) == 2  # an input, whatever the flag
    assert (tmp_path / "dev" / "math.jsonl").is_file()
    # a folder with a shards/ that no build made is not replaced without --overwrite
    other = tmp_path / "other"
    (other / "shards").mkdir(parents=True)
    (other / "shards" / "mine.txt").write_text("keep")
    manifest.write_text(manifest.read_text().replace("dev/math.jsonl", "raw/a.jsonl"))
    assert launch.main(["pool", "build", str(manifest), "--out", str(other)]) == 2
    assert "not a built pool" in capsys.readouterr().err and (other / "shards" / "mine.txt").is_file()
    assert launch.main(["pool", "build", str(manifest), "--out", str(other)]) == 2
    assert launch.main(["pool", "build", str(manifest), "--out", str(other), "--overwrite"]) == 0
    assert launch.main(["pool", "build", str(manifest), "--out", str(other)]) == 0  # a rebuild is fine


KILLED_BUILD = """
import os, signal, sys
from causalmix.core.atomic import temporary_sibling_dir
tmp = temporary_sibling_dir(sys.argv[1])
(tmp / "shard-00000.parquet").write_bytes(b"partial")
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_rebuild_removes_what_a_killed_pool_build_left(tmp_path):
    import yaml

    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "a.jsonl").write_text('{"q": "1+1?", "a": "2"}\n')
    manifest = tmp_path / "pool.yaml"
    manifest.write_text(yaml.safe_dump({"name": "t", "domains": [{
        "name": "math", "sources": [{"path": "raw/*.jsonl", "columns": {"prompt": "q", "response": "a"}}]}]}))
    killed = subprocess.run([sys.executable, "-c", KILLED_BUILD, str(tmp_path / "pool-build")], cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120)
    assert killed.returncode == -9 and any(p.name.startswith(".pool-build.") for p in tmp_path.iterdir())
    assert launch.main(["pool", "build", str(manifest)]) == 0
    assert not any(p.name.startswith(".pool-build.") for p in tmp_path.iterdir())
