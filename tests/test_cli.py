"""The CLI spine: every sub-command has --help; every command the docs show parses; bad
input from a command exits 2 with its message."""
from __future__ import annotations

import json

import pytest

from causalmix import launch
from causalmix.commands import demo as demo_cmd
from causalmix.core.errors import UserError


@pytest.mark.parametrize("name", sorted(launch.COMMANDS))
def test_every_subcommand_has_help(name, capsys):
    with pytest.raises(SystemExit) as exc:
        launch.main([name, "--help"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip()


def test_every_command_in_the_readme_and_docs_parses():
    """What users copy from README.md and docs/*.md runs against the real parser (a renamed
    flag or sub-command fails here, not on a user's machine)."""
    import re
    from pathlib import Path

    from tests.test_cluster_configs import parse_launch_calls

    root = Path(__file__).resolve().parent.parent
    found = []
    for path in [root / "README.md", *sorted((root / "docs").glob("*.md"))]:
        # every fenced block (a yaml one too, so that its closing fence opens nothing), shell ones kept
        blocks = "\n".join(body for lang, body in re.findall(r"```(\w*)\n(.*?)```", path.read_text(encoding="utf-8"),
                                                               flags=re.S) if lang in ("", "bash", "sh", "console"))
        # synopsis lines (`[--out DIR]`, `[--format trl|raw]`, `SUBCOMMAND ...`) are not commands to
        # run; an extra (`-e ".[harness]"`) is no synopsis
        runnable = [line.split(" #")[0] for line in blocks.replace("\\\n", " ").splitlines()
                    if not re.search(r"\[(--|[A-Z])|SUBCOMMAND|\.\.\.", line)]
        found += parse_launch_calls("\n".join(runnable))
    assert {call[0] for call in found} >= {"demo", "fit", "sweep", "serve"}


def test_a_user_error_exits_2_with_its_message_and_no_traceback(monkeypatch, capsys):
    def bad_input(args):
        raise UserError("--run-dir x: no runs.parquet")

    monkeypatch.setattr(launch.COMMANDS["report"], "run", bad_input)
    assert launch.main(["report", "--run-dir", "x", "--out", "y"]) == 2
    err = capsys.readouterr().err
    assert err == "error: --run-dir x: no runs.parquet\n"

def test_demo_config_rejects_unknown_stage(tmp_path, capsys):
    assert launch.main(["demo", "--workdir", str(tmp_path), "--config", str(_yaml(tmp_path, "until: nope"))]) == 2
    assert "until" in capsys.readouterr().err


def test_demo_until_pools_then_reuse(tmp_path, capsys):
    assert launch.main(["demo", "--workdir", str(tmp_path), "--until", "pools"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["stage_seconds"]["pools"] != "reused"
    assert out["pools"]["demo-large"]["arithmetic"]["docs"] == 8 * out["pools"]["demo-small"]["arithmetic"]["docs"]
    assert (tmp_path / "pools" / "demo-small" / "manifest.yaml").is_file()
    assert launch.main(["demo", "--workdir", str(tmp_path), "--until", "pools"]) == 0
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert again["stage_seconds"]["pools"] == "reused"


def _yaml(tmp_path, text):
    path = tmp_path / "cfg.yaml"
    path.write_text(text)
    return path
