"""The CLI spine: every sub-command has --help; unbuilt ones say so and exit non-zero."""
from __future__ import annotations

import json

import pytest

import launch
from commands import demo as demo_cmd
from core.errors import NotBuiltError


@pytest.mark.parametrize("name", sorted(launch.COMMANDS))
def test_every_subcommand_has_help(name, capsys):
    with pytest.raises(SystemExit) as exc:
        launch.main([name, "--help"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip()


def test_design_subcommands_exist():
    for name in ("demo", "featurize", "sweep", "fit", "recommend", "predict", "validate", "serve",
                 "report", "import-regmix"):
        assert name in launch.COMMANDS


def test_every_subcommand_is_built():
    unbuilt = [name for name, module in launch.COMMANDS.items()
               if "NotBuiltError(" in open(module.__file__, encoding="utf-8").read()]
    assert unbuilt == []


def test_not_built_error_exits_2_with_its_message(monkeypatch, capsys):
    def not_yet(args):
        raise NotBuiltError("'report' is not built yet (issue #5); nothing was done")

    monkeypatch.setattr(launch.COMMANDS["report"], "run", not_yet)
    assert launch.main(["report", "--run-dir", "x", "--out", "y"]) == 2
    assert "not built yet" in capsys.readouterr().err

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
