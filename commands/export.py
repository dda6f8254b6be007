"""`export`: a mixture as a training set (Parquet shards + a `datasets` folder + counts.json)."""
from __future__ import annotations

import json

from datapool.export import (DEFAULT_MAX_EPOCHS, DEFAULT_SHARD_ROWS, ExportConfig, parse_tokens,
                             write_export)

HELP = "materialise a mixture as a training set of a token budget (Parquet + datasets folder)"


def add_arguments(parser) -> None:
    parser.add_argument("--pool", required=True, help="built pool folder or its manifest")
    parser.add_argument("--mixture", required=True,
                        help="JSON {domain: weight}, or a recommend output (its \"mixture\")")
    parser.add_argument("--tokens", required=True,
                        help="token budget of the training set, e.g. 2000000 or 2M")
    parser.add_argument("--out", required=True, help="directory to write (new, empty or an earlier export)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the document draws and the shuffle")
    parser.add_argument("--max-epochs", type=float, default=DEFAULT_MAX_EPOCHS,
                        help="most passes over any one domain; a mixture needing more is refused")
    parser.add_argument("--tokenizer", default=None,
                        help="local tokenizer/model directory to count tokens (default: characters / 4)")
    parser.add_argument("--shard-rows", type=int, default=DEFAULT_SHARD_ROWS, help="rows per Parquet shard")


def run(args) -> int:
    config = ExportConfig(pool=args.pool, mixture=args.mixture, tokens=parse_tokens(args.tokens),
                          out=args.out, seed=args.seed, max_epochs=args.max_epochs,
                          tokenizer=args.tokenizer, shard_rows=args.shard_rows)
    record = write_export(config)
    probs = record["sampling_probabilities"]
    print(f"wrote {record['documents']} documents, {record['tokens']} tokens "
          f"({record['token_counter']['kind']}) to {args.out}")
    for d, c in record["domains"].items():
        print(f"  {d}: {c['tokens']} tokens ({c['tokens'] / max(record['tokens'], 1):.2%}), "
              f"{c['documents']} documents, {c['epochs']:.2f} epochs")
    # document probabilities, not token weights: interleave_datasets draws documents. Full
    # precision, since numpy refuses probabilities that sum to 1 only within rounding.
    print("to stream instead (domains in order " + ", ".join(probs) + "): "
          "datasets.interleave_datasets([one dataset per domain], "
          f"probabilities={[probs[d] for d in probs]}, seed={args.seed}, "
          f"stopping_strategy='all_exhausted').take({record['documents']})")
    print(json.dumps({"out": args.out, "tokens": record["tokens"], "documents": record["documents"],
                      "token_counter": record["token_counter"]["kind"], "sampling_probabilities": probs}))
    return 0
