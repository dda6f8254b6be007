"""`predict`: predicted outcome y for every row of a runs table (mixtures and covariates from it)."""
from __future__ import annotations

import json
import sys


def add_arguments(parser) -> None:
    parser.add_argument("--model", required=True, help="model directory written by `fit`")
    parser.add_argument("--runs", required=True, help="runs table (Parquet or CSV); y is not needed")
    parser.add_argument("--out", default=None, help="Parquet to write run_id, y_pred (default: CSV to stdout)")


def run(args) -> int:
    # deferred: heavy import (pandas, the estimator's libraries), so that --help answers at once
    from causalmix.causal.model_dir import load_model_dir
    from causalmix.causal.predict import predict_table
    from causalmix.causal.runs_table import read_runs_table
    from causalmix.core.atomic import atomic_write_parquet, check_output_file
    from causalmix.core.provenance import provenance

    if args.out:
        check_output_file(args.out, kind="predictions", inputs=[args.model, args.runs])
    model = load_model_dir(args.model)
    out = predict_table(model, read_runs_table(args.runs, require_y=False), where=f"runs {args.runs}")
    if args.out:
        meta = provenance({"model": args.model, "runs": args.runs}, model_version=model.version)
        atomic_write_parquet(args.out, out, metadata={"causalmix": json.dumps(meta, default=str)})
    else:
        out.to_csv(sys.stdout, index=False)
    print(json.dumps({"out": args.out, "n_rows": len(out), "model_version": model.version}))
    return 0
