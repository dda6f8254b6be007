"""The "outside trainer" of docs/bring-your-own-trainer.md: trains the runs of a `generate` plan
with the project's proxy training (`proxy.run.run_proxy`, what a sweep trial runs) and writes
the results `collect` reads: run_id, the metric.<name> columns and a few counters.

Any trainer can take its place: what `collect` needs back is one row per run with `run_id` and
metric.<name> columns (y then follows the plan's objective) or a `y` column.

    python examples/outside_trainer.py PLAN RESULTS.csv [--runs run-00000,run-00003]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout, not installed

from causalmix.design.swarm_plan import read_plan  # noqa: E402
from causalmix.design.swarm_runs import plan_domains, run_spec  # noqa: E402
from causalmix.datapool.sweep_inputs import load_sweep_inputs  # noqa: E402
from causalmix.proxy.run import run_proxy  # noqa: E402

COUNTERS = ("tokens", "steps", "wall_s", "train_loss_first", "train_loss_last")


def train_plan(plan_dir: str | Path, only: set[str] | None = None) -> pd.DataFrame:
    """Train every run of the plan (or those in `only`); one results row per run."""
    import transformers

    transformers.utils.logging.disable_progress_bar()
    cfg, plan = read_plan(plan_dir)
    inputs = load_sweep_inputs(cfg.pool, cfg.features, cfg.feature_names)
    domains = plan_domains(plan)
    results = []
    for row in plan.to_dict("records"):
        if only and row["run_id"] not in only:
            continue
        trained = run_proxy(cfg.proxy, run_spec(row, domains), shards=inputs.shards, dev_sets=inputs.dev_sets,
                            features=inputs.features, feature_names=cfg.feature_names)
        results.append({"run_id": row["run_id"],
                        **{k: v for k, v in trained.items() if k.startswith("metric.") or k in COUNTERS}})
    return pd.DataFrame(results)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("plan", help="PLAN directory written by `generate`")
    parser.add_argument("results", help="results CSV to write")
    parser.add_argument("--runs", default="", help="comma-separated run_ids to train (default: all)")
    args = parser.parse_args(argv)
    only = {r for r in args.runs.split(",") if r} or None
    train_plan(args.plan, only).to_csv(args.results, index=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
