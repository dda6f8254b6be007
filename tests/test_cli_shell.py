"""The CLI as a Unix tool: --version, global flags on either side of the sub-command, a closed
stdout pipe, files and folders with the user's umask, nothing left by a failed pool build,
help text in the user's terms, and the stderr summaries of fit and recommend."""
from __future__ import annotations

import io
import json
import os
import stat
import sys

import pytest

from causalmix import launch
from causalmix.commands.summaries import fit_summary, recommend_summary
from causalmix.core.atomic import atomic_directory, atomic_write_json, atomic_write_parquet
from causalmix.core.errors import UserError


def test_version_and_log_level_before_or_after_the_subcommand(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        launch.main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out.startswith("causalmix ")
    missing = str(tmp_path / "none.parquet")
    for argv in (["--log-level", "error", "fit", "--runs", missing, "--out", str(tmp_path / "m")],
                 ["fit", "--runs", missing, "--out", str(tmp_path / "m"), "--log-level", "error"]):
        assert launch.main(argv) == 2
        assert capsys.readouterr().err.startswith("error: runs table not found")
    with pytest.raises(SystemExit):
        launch.main(["--log-level", "warning", "pool", "info", "--help"])
    assert "usage: causalmix pool info" in capsys.readouterr().out


def test_a_closed_stdout_pipe_ends_quietly_with_141(monkeypatch, capsys):
    read, write = os.pipe()
    os.close(read)
    closed = io.TextIOWrapper(os.fdopen(write, "wb"))
    monkeypatch.setattr(sys, "stdout", closed)
    assert launch.main(["--help"]) == 141
    monkeypatch.undo()
    assert "Traceback" not in capsys.readouterr().err


@pytest.mark.parametrize("umask, file_mode, dir_mode", [(0o022, 0o644, 0o755), (0o027, 0o640, 0o750)])
def test_outputs_follow_the_umask(tmp_path, umask, file_mode, dir_mode):
    import pandas as pd

    old = os.umask(umask)
    try:
        atomic_write_json(tmp_path / "pool.json", {"a": 1})
        atomic_write_parquet(tmp_path / "runs.parquet", pd.DataFrame({"a": [1]}))
        with atomic_directory(tmp_path / "report", markers=("report.md",)) as tmp:
            atomic_write_json(tmp / "report.md", {})
    finally:
        os.umask(old)
    for name in ("pool.json", "runs.parquet", "report/report.md"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == file_mode, name
    assert stat.S_IMODE((tmp_path / "report").stat().st_mode) == dir_mode


def test_a_failed_pool_build_leaves_no_out_folder(tmp_path):
    from causalmix.datapool.build import build_pool

    (tmp_path / "docs.jsonl").write_text(json.dumps({"question": "q", "answer": "a"}) + "\n")
    (tmp_path / "manifest.yaml").write_text(
        "name: p\ndomains:\n  - name: d\n    sources:\n      - path: docs.jsonl\n"
        "        columns: {prompt: prompt, response: answer}\n")
    with pytest.raises(UserError, match="prompt"):
        build_pool(tmp_path / "manifest.yaml", tmp_path / "out" / "pool")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", [*launch.SUBCOMMANDS, "pool build", "pool info"])
def test_help_speaks_the_users_terms(name, capsys):
    """No Python None, no source file, no `launch.py` for `causalmix` users."""
    with pytest.raises(SystemExit):
        launch.main([*name.split(), "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "None" not in text and ".py" not in text and "turn off:" not in text, name


def test_help_marks_required_settings_and_names_off_switches(capsys):
    with pytest.raises(SystemExit):
        launch.main(["export", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(required: this flag or --config)" in text and "--format {trl,raw}" in text
    with pytest.raises(SystemExit):
        launch.main(["recommend", "--help"])
    assert "(not given: 1)" in " ".join(capsys.readouterr().out.split())


def test_fit_and_recommend_summaries():
    scores = {"causal-forest": {"oof_mse": 0.02, "oof_r2": 0.5, "oof_spearman": 0.7},
              "regression": {"oof_mse": 0.01, "oof_r2": 0.7, "oof_spearman": 0.8}}
    record = {"estimator": "regression", "n_runs": 24, "domains": ["a", "b"], "covariate_names": ["x.a.hes"],
              "fit_s": 1.5, "model_dir": "model",
              "selection": {"chosen": "regression", "folds": 4, "scores": scores,
                            "skipped": {"linear-dml": "needs 42 runs"},
                            "mixture_evidence": {"covariates_only": "ridge", "covariates_only_oof_mse": 0.03,
                                                 "p_value": 0.04}}}
    text = fit_summary(record)
    assert "regression" in text.splitlines()[4] and text.splitlines()[4].endswith("<- chosen")
    assert "skipped linear-dml: needs 42 runs" in text and "p = 0.04" in text
    result = {"policy": "analytic", "mixture": {"a": 0.7, "b": 0.3}, "reference": {"a": 0.5, "b": 0.5},
              "expected_gain": 0.01, "interval": [0.002, 0.02], "alpha": 0.1, "model_version": "v1",
              "radius_choice": {"radius": 0.28, "mode": "auto", "reason": "largest lower bound"}}
    text = recommend_summary(result)
    assert text.splitlines()[3].split() == ["a", "0.700", "0.500", "+0.200"] and "90 % interval [+0.002, +0.02]" in text
    assert "trust radius 0.280 (auto): largest lower bound" in text


def test_ray_data_info_lines_stay_below_debug():
    import logging

    import ray.data  # noqa: F401 - installs Ray Data's console handler

    from causalmix.core.logs import configure, quiet_ray_data

    console = [h for h in logging.getLogger("ray.data").handlers
               if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)]
    assert console
    try:
        configure("info")
        quiet_ray_data()
        assert all(h.level == logging.WARNING for h in console)
    finally:
        for handler in console:
            handler.setLevel(logging.INFO)
        configure("info")


def test_a_flag_needing_a_missing_extra_names_it(monkeypatch):
    import importlib.util

    from causalmix.core.tracking import parse_tracking

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a))
    with pytest.raises(UserError, match=r"--tracking mlflow needs mlflow.*causalmix\[tracking\]"):
        parse_tracking("mlflow", ".")
