"""`collect`: an outside trainer's results on a `generate` plan, joined into a runs table.

    launch.py collect PLAN --results RESULTS.csv [--out RUNS.parquet]

Runs of the plan missing from the results are named (the table holds the others, ready for
`fit` and `generate --resume`); results for runs the plan lacks are refused.
"""
from __future__ import annotations

import json
import sys

from causalmix.core.cli_config import ConfigFlags, field_docs
from causalmix.design.swarm_runs import CollectConfig, collect


FLAGS = ConfigFlags(CollectConfig, ("results", "out"), options={"results": {"metavar": "RESULTS"}})


def add_arguments(parser) -> None:
    parser.add_argument("plan", nargs="?", default=None, metavar="PLAN", help=field_docs(CollectConfig)["plan"])
    FLAGS.add_config_argument(parser)
    FLAGS.add_to(parser)


def run(args) -> int:
    summary = collect(FLAGS.load(args))
    if summary["missing"]:
        shown = ", ".join(summary["missing"][:10]) + (" ..." if len(summary["missing"]) > 10 else "")
        print(f"{len(summary['missing'])} planned run(s) have no result yet: {shown}", file=sys.stderr)
    print(f"wrote {summary['runs']} of {summary['planned']} planned runs to {summary['out']}")
    print(json.dumps(summary))
    return 0
