"""CausalMix command line: `python launch.py SUBCOMMAND --help`.

Works the same locally and on a Ray cluster
(`ray job submit --working-dir . -- python launch.py SUBCOMMAND ...`).
"""
from __future__ import annotations

import argparse
import sys

from commands import (demo, export, featurize, fit, import_regmix, import_swarm, pool, predict, recommend,
                      report, serve, sweep, validate)
from core.errors import RunsFailed, UserError
from core.ray_setup import handle_sigterm_like_sigint, shutdown_ray, terminated

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
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="launch.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="SUBCOMMAND", required=True)
    for name, module in COMMANDS.items():
        cmd = sub.add_parser(name, help=module.HELP, description=module.HELP,
                             formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        module.add_arguments(cmd)
        cmd.set_defaults(handler=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handle_sigterm_like_sigint()
    terminated.clear()
    ray = sys.modules.get("ray")
    ray_was_up = ray is not None and ray.is_initialized()
    try:
        return int(args.handler(args) or 0)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except RunsFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("terminated" if terminated.is_set() else "interrupted", file=sys.stderr)
        return 143 if terminated.is_set() else 130
    finally:
        # Stop the Ray this command started (a local one with all its processes) here, not in
        # Ray's atexit hook, which a signal's exit path did not reach cleanly. A Ray that was
        # up before (a caller's, e.g. a test session's) is left alone.
        if not ray_was_up:
            shutdown_ray()


if __name__ == "__main__":
    sys.exit(main())
