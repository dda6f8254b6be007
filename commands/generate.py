"""`generate`: a sweep's runs as a plan to train elsewhere (docs/bring-your-own-trainer.md).

    launch.py generate --pool POOL --features FEATURES --model MODEL --runs N --out PLAN [--export]
    launch.py generate --out PLAN --resume          # adaptive runs the collected runs now allow

Flags override the YAML of `--config` (GenerateConfig fields: the same as `sweep`'s for the
runs; `proxy:` and `state:` nest). The last stdout line is a JSON summary.
"""
from __future__ import annotations

import json

from causalmix.core.cli_config import ConfigFlags
from causalmix.design.swarm_plan import CONFIG_FILE, GenerateConfig, generate
from causalmix.design.swarm_runs import export_runs


FLAGS = ConfigFlags(
    GenerateConfig, ("pool", "features", "out", "runs", "seed", "adaptive", "adaptive_round", "cover",
                     "export", "resume", "runs_table"),
    nested={"proxy": ("model", "budget", "budget_unit", "learning_rate")},
    options={"adaptive": {"metavar": "FRACTION"}, "adaptive_round": {"metavar": "N"},
             "cover": {"metavar": "FEATURES"}, "runs_table": {"metavar": "RUNS"}})


def add_arguments(parser) -> None:
    FLAGS.add_config_argument(parser)
    FLAGS.add_to(parser)


def run(args) -> int:
    config = FLAGS.load_resumable(args, CONFIG_FILE)
    record = generate(config, export_runs=export_runs if config.export else None)
    print(f"plan {config.out}: {record['runs_planned']} of {record['runs_total']} runs"
          + (f" ({len(record['added'])} added)" if config.resume else "")
          + (f"; {len(record['waiting'])} adaptive runs wait for their round's fit" if record["waiting"] else ""))
    print(json.dumps({k: record[k] for k in ("runs_planned", "runs_total", "added", "waiting")}
                     | {"plan": config.out}))
    return 0
