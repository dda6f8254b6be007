"""CausalMix command line: `python launch.py SUBCOMMAND --help`.

Works the same locally and on a Ray cluster
(`ray job submit --working-dir . -- python launch.py SUBCOMMAND ...`).
"""
from __future__ import annotations

import argparse
import sys

from commands import (demo, export, featurize, fit, import_regmix, import_swarm, pool, predict, recommend,
                      report, serve, sweep, validate)
from core.errors import UserError

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
    try:
        return int(args.handler(args) or 0)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
