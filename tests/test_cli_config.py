"""Flags from the config dataclasses (core/cli_config.py): every command's --help shows each
setting's dataclass default, every command with settings takes --config, and the layers
(dataclass default < --config YAML < flag) hold, nested fields included."""
from __future__ import annotations

import dataclasses
import re
import typing

import pytest
import yaml

from causalmix import launch
from causalmix.design.sweep_config import SweepConfig
from causalmix.actors.validate.driver import ValidateConfig
from causalmix.commands import demo, export, featurize, fit, recommend, serve, sweep, validate
from causalmix.core.cli_config import ConfigFlags, field_default, field_docs, format_default
from causalmix.core.errors import UserError
from causalmix.proxy.config import ProxyConfig, TargetRunConfig

NO_SETTINGS = {"pool", "predict", "report", "import-regmix", "import-swarm"}
"""Commands with inputs and outputs only (README.md, Sub-commands): no --config."""


def _flags(name: str) -> ConfigFlags:
    module = launch.COMMANDS[name]
    return module._flags() if module is serve else module.FLAGS


def _help(name: str, capsys) -> str:
    with pytest.raises(SystemExit) as exc:
        launch.main([name, "--help"])
    assert exc.value.code == 0
    return re.sub(r"\s+", "", capsys.readouterr().out)  # argparse wraps lines anywhere


@pytest.mark.parametrize("name", sorted(set(launch.COMMANDS) - NO_SETTINGS))
def test_every_setting_flag_shows_its_dataclass_default(name, capsys):
    text = _help(name, capsys)
    assert "--configFILE" in text
    flags = _flags(name)
    assert flags.flags
    for flag in flags.flags:
        owner = flags.cls
        for part in flag.path[:-1]:
            owner = typing.get_type_hints(owner)[part]
        field = {f.name: f for f in dataclasses.fields(owner)}[flag.path[-1]]
        shown = format_default(field_default(field))
        option = "--" + ("no-" if field_default(field) is True else "") + flag.dest.replace("_", "-")
        assert option in text, (name, option)
        if shown is not None:
            assert re.sub(r"\s+", "", f"(default {shown})") in text, (name, flag.dest, shown)


def test_commands_without_settings_are_the_declared_ones(capsys):
    without = {name for name in launch.COMMANDS if "--configFILE" not in _help(name, capsys)}
    assert without == NO_SETTINGS


def test_field_docstrings_are_read_and_a_subclass_overrides_its_base():
    docs = field_docs(TargetRunConfig)
    assert docs["budget"].startswith("Training budget per target run")
    assert docs["learning_rate"] == field_docs(ProxyConfig)["learning_rate"]
    assert "\n" not in field_docs(SweepConfig)["adaptive_round"]


def test_a_flag_needs_a_documented_field():
    @dataclasses.dataclass
    class Bare:
        count: int = 3

    with pytest.raises(ValueError, match="no docstring"):
        ConfigFlags(Bare, ("count",)).add_to(launch.argparse.ArgumentParser())
    with pytest.raises(ValueError, match="more than one flag"):
        ConfigFlags(SweepConfig, ("seed",), nested={"proxy": (("budget", "seed"),)})


def _parse(argv):
    return launch.build_parser().parse_args(argv)


def test_sweep_layers_default_yaml_flag_and_merges_proxy(tmp_path):
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump({"runs": 7, "seed": 3, "proxy": {"max_length": 64, "budget": 9}}))
    cfg = sweep.config_from_args(_parse(["sweep", "--config", str(path), "--seed", "5", "--budget", "50",
                                     "--no-progress", "--cover", "a", "--cover", "b"]))
    assert (cfg.runs, cfg.seed, cfg.progress, cfg.cover) == (7, 5, False, ("a", "b"))
    assert (cfg.proxy.budget, cfg.proxy.max_length, cfg.proxy.learning_rate) == (50, 64, 1e-3)
    plain = sweep.config_from_args(_parse(["sweep"]))
    assert plain == SweepConfig()
    with pytest.raises(UserError, match=r"proxy: budget must be >= 1, got 0"):
        sweep.config_from_args(_parse(["sweep", "--budget", "0"]))


def _validate_args(*extra):
    return ["validate", "--model", "m", "--pool", "p", "--features", "f", "--target-model", "t", "--out", "o",
            *extra]


def test_validate_proxy_and_train_are_typed_and_layered(tmp_path):
    path = tmp_path / "v.yaml"
    path.write_text(yaml.safe_dump({"validate": {"proxy": {"max_length": 128}, "train": {"checkpoint_every": 5},
                                                 "mixtures": "equal,natural"}}))
    cfg = validate.FLAGS.load(_parse(_validate_args("--config", str(path), "--gpus-per-run", "2")))
    assert isinstance(cfg.proxy, TargetRunConfig)
    assert (cfg.proxy.budget, cfg.proxy.max_length) == (1200, 128)  # the target's budget stays
    assert (cfg.train.workers, cfg.train.checkpoint_every) == (2, 5)
    assert cfg.mixtures == ("equal", "natural")
    run = cfg.proxy_config()
    assert type(run) is ProxyConfig and run.model == "t" and run.budget == 1200
    default = validate.FLAGS.load(_parse(_validate_args()))
    assert default.proxy == TargetRunConfig() and default.train.workers == 1
    # the Python form (a mapping) is what the demo and the API pass
    assert ValidateConfig(model="m", pool="p", features="f", target_model="t", out="o",
                          proxy={"budget": 12}).proxy_config().budget == 12
    path.write_text(yaml.safe_dump({"validate": {"proxy": {"budgett": 3}}}))
    with pytest.raises(UserError, match=r"v\.yaml \(validate\)\.proxy: unknown key\(s\) \['budgett'\]"):
        validate.FLAGS.load(_parse(_validate_args("--config", str(path))))


def test_each_command_reads_its_config_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"policy": "search", "alpha": 0.2, "top_k": 3}))
    cfg = recommend.FLAGS.load(_parse(["recommend", "--model", "m", "--covariates", "c", "--config", str(path),
                                       "--seed", "4"]))
    assert (cfg.policy, cfg.alpha, cfg.top_k, cfg.seed, cfg.trust_radius) == ("search", 0.2, 3, 4, "auto")
    path.write_text(yaml.safe_dump({"estimator": "regression", "cv": 4}))
    cfg = fit.FLAGS.load(_parse(["fit", "--runs", "r", "--out", "o", "--config", str(path), "--seed", "2"]))
    assert (cfg.estimator, cfg.cv, cfg.seed) == ("regression", 4, 2)
    path.write_text(yaml.safe_dump({"featurize": {"model": "m", "batch_tokens": 64}}))
    cfg = featurize.FLAGS.load(_parse(["featurize", "--config", str(path), "--pool", "p", "--out", "o",
                                       "--domains", "a", "b"]))
    assert (cfg.model, cfg.batch_tokens, cfg.domains) == ("m", 64, ("a", "b"))
    path.write_text(yaml.safe_dump({"quick": True, "sweep_runs": 30}))
    cfg = demo.FLAGS.load(_parse(["demo", "--config", str(path)]))
    assert cfg.quick and cfg.sweep_runs == 30 and cfg.validate_seeds == 2  # quick's own default
    path.write_text(yaml.safe_dump({"model": "m", "port": 8100, "autoscale": [1, 3]}))
    cfg = serve._flags().load(_parse(["serve", "--config", str(path), "--no-access-log"]))
    assert (cfg.model, cfg.port, tuple(cfg.autoscale), cfg.access_log, cfg.host) == ("m", 8100, (1, 3), False,
                                                                                     "127.0.0.1")
    path.write_text(yaml.safe_dump({"pool": "p", "mixture": "m.json", "out": "o"}))
    with pytest.raises(UserError, match=r"missing required key\(s\) \['tokens'\]"):
        export.FLAGS.load(_parse(["export", "--config", str(path)]))
    cfg = export.FLAGS.load(_parse(["export", "--config", str(path), "--tokens", "2M", "--seed", "1"]))
    assert (cfg.pool, cfg.tokens, cfg.seed, cfg.shard_rows) == ("p", "2M", 1, 50_000)


def test_bad_values_name_the_flag_or_key(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        _parse(["sweep", "--budget-unit", "bytes"])
    assert exc.value.code == 2 and "--budget-unit" in capsys.readouterr().err
    path = tmp_path / "d.yaml"
    path.write_text("sweep_adaptive: 2\n")
    assert launch.main(["demo", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "sweep_adaptive must lie in [0, 1], got 2" in err


def test_flag_names_and_dests_stay_what_docs_and_scripts_use():
    args = _parse(["sweep", "--adaptive-round", "4", "--trials-per-gpu", "2", "--learning-rate", "0.1",
                   "--resume"])
    assert (args.adaptive_round, args.trials_per_gpu, args.learning_rate, args.resume) == (4, 2, 0.1, True)
    assert _parse(["sweep"]).progress is None and _parse(["sweep"]).resume is None
    args = _parse(["validate", "--gpus-per-run", "4", "--activation-checkpointing", "--gpu-type", "A100-40"])
    assert (args.gpus_per_run, args.activation_checkpointing, args.gpu_type) == (4, True, "A100-40")
    args = _parse(["serve", "--model", "m", "--autoscale", "1:4", "--high-throughput"])
    assert args.autoscale == (1, 4) and args.ingress == "haproxy" and args.access_log is None
