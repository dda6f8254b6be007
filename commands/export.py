"""`export`: a mixture as a training set (Parquet shards + a `datasets` folder + counts.json)."""
from __future__ import annotations

import dataclasses
import json

from causalmix.core.cli_config import ConfigFlags
from causalmix.datapool.export import ExportConfig, parse_tokens, write_export


FLAGS = ConfigFlags(ExportConfig, ("pool", "mixture", "tokens", "out", "seed", "max_epochs", "tokenizer",
                                   "shard_rows", "format"),
                    # read by parse_tokens in run, where its UserError is a clean exit 2
                    options={"tokens": {"type": str}})


def add_arguments(parser) -> None:
    FLAGS.add_config_argument(parser)
    FLAGS.add_to(parser)


def run(args) -> int:
    config = FLAGS.load(args)
    config = dataclasses.replace(config, tokens=parse_tokens(config.tokens))
    record = write_export(config)
    probs = record["sampling_probabilities"]
    print(f"wrote {record['documents']} documents, {record['tokens']} tokens "
          f"({record['token_counter']['kind']}) to {config.out}")
    for d, c in record["domains"].items():
        print(f"  {d}: {c['tokens']} tokens ({c['tokens'] / max(record['tokens'], 1):.2%}), "
              f"{c['documents']} documents, {c['epochs']:.2f} epochs")
    # document probabilities, not token weights: interleave_datasets draws documents. Full
    # precision, since numpy refuses probabilities that sum to 1 only within rounding.
    print("to stream instead (domains in order " + ", ".join(probs) + "): "
          "datasets.interleave_datasets([one dataset per domain], "
          f"probabilities={[probs[d] for d in probs]}, seed={config.seed}, "
          f"stopping_strategy='all_exhausted').take({record['documents']})")
    print(json.dumps({"out": config.out, "tokens": record["tokens"], "documents": record["documents"],
                      "token_counter": record["token_counter"]["kind"], "sampling_probabilities": probs}))
    return 0
