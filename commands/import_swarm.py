"""`import-swarm`: another tool's proxy-run swarm (Olmix CSVs, or any table) as a runs table."""
from __future__ import annotations

import json

from causalmix.core.atomic import atomic_write_parquet, check_output_file
from causalmix.core.errors import UserError
from causalmix.core.provenance import provenance, sha256_file


def add_arguments(parser) -> None:
    parser.add_argument("--ratios", default=None,
                        help="Olmix-style ratios.csv: run column + one weight column per domain")
    parser.add_argument("--metrics-file", default=None,
                        help="Olmix-style metrics.csv: run column + one column per metric (with --ratios)")
    parser.add_argument("--table", default=None,
                        help="one CSV/Parquet with weight and metric columns (instead of --ratios)")
    parser.add_argument("--weights", default=None,
                        help="glob of the weight columns, e.g. 'mix_*' ('*' names the domain); "
                             "required with --table; default with --ratios: every column but the run column")
    parser.add_argument("--metrics", default=None,
                        help="glob of the metric columns, e.g. 'eval/*'; required with --table; "
                             "default with --metrics-file: every column but the run column")
    parser.add_argument("--run-column", default=None,
                        help="column joining the runs (default: the first of run, run_id, run_name, id)")
    parser.add_argument("--target", required=True,
                        help="metric giving y (short or full column name), or 'mean'")
    parser.add_argument("--higher-is-better", action="store_true",
                        help="y = metric (accuracy); default y = -metric (loss, bits per byte, as Olmix)")
    parser.add_argument("--out", required=True, help="runs table to write (.parquet)")


def run(args) -> int:
    # deferred: heavy import (pandas)
    from causalmix.causal.runs_table import MIX
    from causalmix.causal.swarm_import import import_olmix, import_table

    check_output_file(args.out, kind="runs table", suffix=".parquet",
                      inputs=[args.table, args.ratios, args.metrics_file])
    lower = not args.higher_is_better
    if args.table is not None:
        if args.ratios or args.metrics_file:
            raise UserError("give either --table or --ratios with --metrics-file, not both")
        if not args.weights or not args.metrics:
            raise UserError("--table needs --weights and --metrics column patterns (e.g. 'mix_*', 'eval/*')")
        frame = import_table(args.table, weights=args.weights, metrics=args.metrics, target=args.target,
                             lower_is_better=lower, run_column=args.run_column)
        inputs = [args.table]
    elif args.ratios and args.metrics_file:
        frame = import_olmix(args.ratios, args.metrics_file, target=args.target, lower_is_better=lower,
                             run_column=args.run_column, weights=args.weights, metrics=args.metrics)
        inputs = [args.ratios, args.metrics_file]
    else:
        raise UserError("give --ratios and --metrics-file (Olmix), or --table with --weights and --metrics")
    config = {k: getattr(args, k) for k in ("ratios", "metrics_file", "table", "weights", "metrics",
                                            "run_column", "target", "higher_is_better")}
    meta = provenance(config, inputs_sha256={p: sha256_file(p) for p in inputs})
    atomic_write_parquet(args.out, frame, metadata={"causalmix": json.dumps(meta, default=str)})
    domains = [c[len(MIX):] for c in frame.columns if c.startswith(MIX)]
    metrics = [c[7:] for c in frame.columns if c.startswith("metric.")]
    print(json.dumps({"out": args.out, "n_runs": len(frame), "domains": domains, "metrics": metrics,
                      "target": args.target, "y": "metric" if args.higher_is_better else "-metric"}))
    return 0
