"""`report`: figures (PNG) and a markdown summary of a run directory and its validation."""
from __future__ import annotations

import json

from reporting.report import write_report

HELP = "write the figures and tables of a finished run directory (and of a validation)"


def add_arguments(parser) -> None:
    parser.add_argument("--run-dir", dest="run_dir", required=True, help="sweep output folder")
    parser.add_argument("--validation", default=None, help="`launch.py validate` output folder")
    parser.add_argument("--out", required=True, help="report folder (report.md + PNG figures)")


def run(args) -> int:
    summary = write_report(args.run_dir, args.out, validation_dir=args.validation)
    print(json.dumps({"out": args.out, **summary}))
    return 0
