"""`import-regmix`: map RegMix's released mixture + loss CSVs into the runs table (y = -loss)."""
from __future__ import annotations

import json

from causalmix.core.atomic import atomic_write_parquet, check_output_file
from causalmix.core.provenance import provenance, sha256_file


def add_arguments(parser) -> None:
    parser.add_argument("--mixtures", required=True, help="RegMix *_mixture_*.csv")
    parser.add_argument("--losses", required=True, help="RegMix *_loss_*.csv")
    parser.add_argument("--target", required=True,
                        help="loss column giving y = -loss (e.g. pile_cc), or 'mean' of all loss columns")
    parser.add_argument("--out", required=True, help="runs table to write (.parquet)")


def run(args) -> int:
    from causalmix.causal.runs_table import MIX, import_regmix  # deferred: heavy import (pandas)

    check_output_file(args.out, kind="runs table", suffix=".parquet", inputs=[args.mixtures, args.losses])
    frame = import_regmix(args.mixtures, args.losses, target=args.target)
    meta = provenance({"mixtures": args.mixtures, "losses": args.losses, "target": args.target},
                      inputs_sha256={args.mixtures: sha256_file(args.mixtures),
                                     args.losses: sha256_file(args.losses)})
    atomic_write_parquet(args.out, frame, metadata={"causalmix": json.dumps(meta, default=str)})
    domains = [c[len(MIX):] for c in frame.columns if c.startswith(MIX)]
    print(json.dumps({"out": args.out, "n_runs": len(frame), "domains": domains, "target": args.target}))
    return 0
