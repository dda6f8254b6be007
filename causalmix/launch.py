"""CausalMix command line: `causalmix SUBCOMMAND --help` (the console script `pip install` puts
on PATH) or `python launch.py SUBCOMMAND --help` from a checkout.

Works the same locally and on a Ray cluster
(`ray job submit --working-dir . -- python launch.py SUBCOMMAND ...`).
"""
from __future__ import annotations

import argparse
import importlib
import os
import select
import signal
import sys
from collections.abc import Mapping
from pathlib import Path

from causalmix.core.exit_codes import failure
from causalmix.core.logs import common_options, configure, get_logger

log = get_logger("launch")

# name: (module, one-line help). A command's module is imported only when that command is
# parsed or run: several import Ray, scikit-learn or torch, which `causalmix --help` and the
# light commands should not wait for (benchmarks/bench_cli_start.py).
SUBCOMMANDS = {
    "demo": ("causalmix.commands.demo", "run the pipeline end to end on the embedded default (local Ray, tiny models, "
                              "demo pools)"),
    "pool": ("causalmix.commands.pool", "build a pool manifest into Parquet shards (`pool build`), or describe a built "
                              "pool (`pool info`)"),
    "featurize": ("causalmix.commands.featurize", "compute per-document features (normalized_loss, hes, style) of a pool "
                                        "with a reference model"),
    "sweep": ("causalmix.commands.sweep", "run the Dirichlet sweep of proxy SFT runs on Ray Tune (resumable)"),
    "fit": ("causalmix.commands.fit", "fit a causal model (estimator chosen by held-out error by default) on a runs table"),
    "recommend": ("causalmix.commands.recommend", "recommend a mixture for a pool from a fitted model"),
    "predict": ("causalmix.commands.predict", "predict the outcome y of each run (mixture + covariates) of a runs table"),
    "validate": ("causalmix.commands.validate", "train the target model on the recommended and baseline mixtures of a "
                                      "pool and compare them"),
    "serve": ("causalmix.commands.serve", "serve the recommender as a Ray Serve deployment (HTTP on loopback by default)"),
    "report": ("causalmix.commands.report", "write the figures and tables of a finished run directory (and of a "
                                  "validation)"),
    "import-regmix": ("causalmix.commands.import_regmix", "import RegMix's released proxy-run CSVs as a runs table"),
    "import-swarm": ("causalmix.commands.import_swarm", "import another tool's swarm (Olmix ratios.csv + metrics.csv, or "
                                              "any table) as a runs table"),
    "export": ("causalmix.commands.export", "materialise a mixture as a training set of a token budget (TRL-ready "
                                  "Parquet + datasets folder)"),
    "generate": ("causalmix.commands.generate", "write a sweep's runs as a plan (mixtures, data states, covariates) for an "
                                      "outside trainer"),
    "collect": ("causalmix.commands.collect", "join an outside trainer's results (by run_id) onto a generate plan into a "
                                    "runs table"),
}


class _Commands(Mapping):
    """{name: command module}, each imported on first access."""

    def __getitem__(self, name: str):
        return importlib.import_module(SUBCOMMANDS[name][0])

    def __iter__(self):
        return iter(SUBCOMMANDS)

    def __len__(self) -> int:
        return len(SUBCOMMANDS)


COMMANDS = _Commands()


def summary(name: str) -> str:
    """The one-line help of sub-command `name`."""
    return SUBCOMMANDS[name][1]


def version() -> str:
    from importlib.metadata import PackageNotFoundError, version as installed

    try:
        return installed("causalmix")
    except PackageNotFoundError:  # a checkout run as `python launch.py` without `pip install`
        return "unknown (not installed)"


class _Version(argparse.Action):
    """--version, with the installed version looked up only when asked for."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, nargs=0, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"{parser.prog} {version()}")
        parser.exit()


def program_name() -> str:
    """What the user typed: `launch.py` from a checkout, `causalmix` otherwise (the console
    script, a test or a notebook calling main)."""
    return "launch.py" if Path(sys.argv[0]).name == "launch.py" else "causalmix"


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The CLI; with `only`, the flags of that sub-command alone (the others keep their name
    and help; "": none), which spares every call the imports the other commands' flags need."""
    parser = argparse.ArgumentParser(prog=program_name(), description=__doc__, parents=[common_options()],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action=_Version, help="print the installed version and exit")
    sub = parser.add_subparsers(dest="command", metavar="SUBCOMMAND", required=True)
    for name in SUBCOMMANDS:
        # Each flag's help states its own default (core/cli_config.py takes it from the config
        # dataclass): argparse's ArgumentDefaultsHelpFormatter would add "(default: None)" to
        # every config flag, whose argparse default is None so that --config can set it.
        cmd = sub.add_parser(name, help=summary(name), description=summary(name), parents=[common_options()])
        if only is None or name == only:
            module = COMMANDS[name]
            module.add_arguments(cmd)
            cmd.set_defaults(handler=module.run)
    return parser


def _subcommand(argv: list[str]) -> str | None:
    """The sub-command named in argv, after any global options (`--log-level X`)."""
    i = 0
    while i < len(argv):
        if argv[i] in SUBCOMMANDS:
            return argv[i]
        i += 2 if argv[i] == "--log-level" else 1
    return None


def _stdout_closed() -> bool:
    """Whether stdout is a pipe whose reader has gone (`predict ... | head -3`)."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(event & select.POLLERR for _, event in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no poll (Windows) or no real stdout (a capture)
        return False


def _quit_on_closed_pipe() -> int:
    """What a Unix tool does when its reader goes: stop quietly with 128 + SIGPIPE. Only the
    remaining output is dropped; SIGPIPE itself stays ignored, so that a socket's closed peer
    (a Serve client, Ray's connections) is still an error to handle, not a killed process."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())  # the interpreter's last flush would raise again
    return 128 + getattr(signal, "SIGPIPE", 13)


def main(argv: list[str] | None = None) -> int:
    try:
        try:
            return _run(argv)
        finally:
            sys.stdout.flush()  # here, not at exit, so that a closed pipe is caught below
    except BrokenPipeError:
        if not _stdout_closed():
            raise
        return _quit_on_closed_pipe()


def _run(argv: list[str] | None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    # no sub-command named (`--help`, `--version`, a typo): no command module is imported
    args = build_parser(only=_subcommand(argv) or "").parse_args(argv)
    configure(getattr(args, "log_level", None) or "info")
    # deferred: Ray set-up imports only what a command needs, so it is looked up here
    from causalmix.core.ray_setup import handle_sigterm_like_sigint, shutdown_ray, terminated
    from causalmix.core.warn import warnings_to_stderr

    handle_sigterm_like_sigint()
    terminated.clear()
    ray = sys.modules.get("ray")
    ray_was_up = ray is not None and ray.is_initialized()
    try:
        with warnings_to_stderr():
            return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        log.warning("terminated" if terminated.is_set() else "interrupted")
        return 143 if terminated.is_set() else 130
    except Exception as exc:  # every failure is one line and a documented status (core/exit_codes.py)
        code, message = failure(exc)
        log.error("%s", message)
        log.debug("traceback of the error above", exc_info=exc)
        return code
    finally:
        # Stop the Ray this command started (a local one with all its processes) here, not in
        # Ray's atexit hook, which a signal's exit path did not reach cleanly. A Ray that was
        # up before (a caller's, e.g. a test session's) is left alone.
        if not ray_was_up:
            shutdown_ray()


if __name__ == "__main__":
    sys.exit(main())
