"""`report`: figures (PNG) and a markdown summary of a run directory and its validation."""
from __future__ import annotations

import json

from causalmix.causal.fitting import FitConfig
from causalmix.core.cli_config import ConfigFlags

FLAGS = ConfigFlags(FitConfig, ("jobs",))


def add_arguments(parser) -> None:
    parser.add_argument("--run-dir", dest="run_dir", required=True, help="sweep output folder")
    parser.add_argument("--validation", action="append", default=None,
                        help="a `validate` output folder; repeat it for several target pools "
                        "(one section and verdict each)")
    parser.add_argument("--model", default=None,
                        help="fitted model directory for the return curves and held-out predictions "
                        "(default: RUN_DIR/model when the sweep wrote one)")
    parser.add_argument("--folds", type=int, default=4,
                        help="cross-fitting folds for predicted-vs-actual y (more when a split is too small; "
                        "default %(default)s)")
    parser.add_argument("--out", default=None, help="report folder (default: RUN_DIR/report)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace --out even when it exists and is not a report folder")
    FLAGS.add_to(parser)


def run(args) -> int:
    from causalmix.reporting.report import write_report  # deferred: heavy import (pandas, matplotlib)

    summary = write_report(args.run_dir, args.out, validation_dir=args.validation, model_dir=args.model,
                           cv_folds=args.folds, overwrite=args.overwrite, jobs=FLAGS.load({"jobs": args.jobs}).jobs)
    print(json.dumps(summary))
    return 0
