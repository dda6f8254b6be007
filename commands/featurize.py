"""`featurize`: per-document features (normalized_loss, hes, style.*, writing_style) of a pool;
the stage itself is actors/featurize/driver.py (see docs/featurize.md)."""
from __future__ import annotations

import json
from pathlib import Path

from causalmix.actors.featurize.driver import FeaturizeConfig, featurize
from causalmix.core.cli_config import ConfigFlags
from causalmix.core.logs import get_logger

log = get_logger(__name__)


FLAGS = ConfigFlags(FeaturizeConfig, ("pool", "model", "out", "domains", "concurrency", "batch_tokens",
                                      "cpus_per_actor", "device", "max_length", "address"),
                    options={"domains": {"action": "store", "nargs": "+"}}, section="featurize")


def add_arguments(parser) -> None:
    FLAGS.add_config_argument(parser)
    FLAGS.add_to(parser)


def run(args) -> int:
    cfg = FLAGS.load(args)
    record = featurize(cfg)
    print(json.dumps({k: record[k] for k in ("pool", "model", "feature_version", "n_docs",
                                             "shards_computed", "wall_s")}))
    log.info("features: %s", Path(cfg.out).resolve())
    return 0
