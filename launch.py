"""CausalMix command line: `causalmix SUBCOMMAND --help` (the console script `pip install` puts
on PATH) or `python launch.py SUBCOMMAND --help` from a checkout.

Works the same locally and on a Ray cluster
(`ray job submit --working-dir . -- python launch.py SUBCOMMAND ...`).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from commands import (collect, demo, export, featurize, fit, generate, import_regmix, import_swarm, pool, predict,
                      recommend, report, serve, sweep, validate)
from core.exit_codes import failure
from core.logs import common_options, configure, get_logger
from core.ray_setup import handle_sigterm_like_sigint, shutdown_ray, terminated
from core.warn import warnings_to_stderr

log = get_logger("launch")

COMMANDS = {
    "demo": demo,
    "pool": pool,
    "featurize": featurize,
    "sweep": sweep,
    "fit": fit,
    "recommend": recommend,
    "predict": predict,
    "validate": validate,
    "serve": serve,
    "report": report,
    "import-regmix": import_regmix,
    "import-swarm": import_swarm,
    "export": export,
    "generate": generate,
    "collect": collect,
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The CLI; with `only`, the flags of that sub-command alone (the others keep their name
    and help), which spares every call the imports some commands' flags need (serve's come
    from ServeSettings, whose module imports Ray Serve)."""
    parser = argparse.ArgumentParser(prog=Path(sys.argv[0]).name or "launch.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="SUBCOMMAND", required=True)
    for name, module in COMMANDS.items():
        # Each flag's help states its own default (core/cli_config.py takes it from the config
        # dataclass): argparse's ArgumentDefaultsHelpFormatter would add "(default: None)" to
        # every config flag, whose argparse default is None so that --config can set it.
        cmd = sub.add_parser(name, help=module.HELP, description=module.HELP, parents=[common_options()])
        if only is None or name == only:
            module.add_arguments(cmd)
        cmd.set_defaults(handler=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(only=argv[0] if argv and argv[0] in COMMANDS else None).parse_args(argv)
    configure(args.log_level or "info")
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
