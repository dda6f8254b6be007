"""`predict`: predicted outcome y for every row of a runs table (mixtures and covariates from it)."""
from __future__ import annotations

import json
import sys

import pandas as pd

from causal.model_dir import load_model_dir
from causal.runs_table import MIX, read_runs_table
from core.atomic import atomic_write_parquet
from core.errors import UserError
from core.warn import warnings_to_stderr
from core.provenance import provenance

HELP = "predict the outcome y of each run (mixture + covariates) of a runs table"


def add_arguments(parser) -> None:
    parser.add_argument("--model", required=True, help="model directory written by `fit`")
    parser.add_argument("--runs", required=True, help="runs table (Parquet or CSV); y is not needed")
    parser.add_argument("--out", default=None, help="Parquet to write run_id, y_pred (default: CSV to stdout)")


def run(args) -> int:
    with warnings_to_stderr():
        return _run(args)


def _run(args) -> int:
    model = load_model_dir(args.model)
    table = read_runs_table(args.runs, require_y=False)
    missing = [d for d in model.domains if d not in table.domains]
    extra = [d for d in table.domains if d not in model.domains]
    if missing or extra:
        raise UserError(f"runs {args.runs}: mixture domains do not match the model's: missing "
                        f"{[MIX + d for d in missing]}, extra {[MIX + d for d in extra]}")
    missing_x = [c for c in model.covariate_names if c not in table.covariate_names]
    if missing_x:
        raise UserError(f"runs {args.runs}: missing covariate columns {missing_x}")
    frame = table.frame
    y_pred = model.predict(frame[[MIX + d for d in model.domains]].to_numpy(float),
                           frame[model.covariate_names].to_numpy(float).reshape(len(frame), -1))
    out = pd.DataFrame({"run_id": frame["run_id"], "y_pred": y_pred})
    if args.out:
        meta = provenance({"model": args.model, "runs": args.runs}, model_version=model.version)
        atomic_write_parquet(args.out, out, metadata={"causalmix": json.dumps(meta, default=str)})
    else:
        out.to_csv(sys.stdout, index=False)
    print(json.dumps({"out": args.out, "n_rows": len(out), "model_version": model.version}))
    return 0
