"""`generate` on a large pool: the plan of `--runs` runs (mixtures, data states, per-run state
covariates; plan.parquet, plan.csv, plan.json) against the sweep's own way to the same runs
(its inputs read by `load_sweep_inputs`, then its Tune Searcher's `suggest` for every run), on
one synthetic pool of `--docs` documents.

The pool: 4 domains of short synthetic prompt/response documents, built by `build_pool` into
shards of `--shard-size` documents; features in the featurizer's schema with values that shift
from shard to shard (sizes, not values, decide the time). Both paths read the same pool and
features, the page cache warmed by one untimed read first. The plan must load in pandas with
`--runs` rows whose mixtures are the Searcher's.

    python benchmarks/bench_generate.py [--docs 800000] [--runs 512] [--shard-size 4000]

Each path runs twice, in the order sweep, generate, generate, sweep (drift of a shared machine
cancels in the means). Ends with `RESULT generate generate_s=... sweep_plan_s=... ratio=...`
(means; ratio: generate / the sweep's path; the target is generate_s under 60 at 800K documents
and 512 runs).
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

DOMAINS = ("arithmetic", "code", "dialog", "docs_qa")


def write_pool(root: Path, docs: int, shard_size: int) -> Path:
    """A pool of `docs` synthetic documents split evenly over DOMAINS, with a dev set per domain."""
    import numpy as np
    import pandas as pd
    import yaml

    from causalmix.datapool.build import build_pool

    rng = np.random.default_rng(0)
    words = np.array("the a of to in is it that for on with as was by at be this from or an".split())
    for d, domain in enumerate(DOMAINS):
        n = docs // len(DOMAINS)
        lengths = rng.integers(5, 60, n)
        text = [" ".join(words[rng.integers(0, len(words), k)]) for k in lengths[:1000]]
        frame = pd.DataFrame({"prompt": [f"{domain} question {i}" for i in range(n)],
                              "response": [text[i % 1000] for i in range(n)]})
        (root / "sources").mkdir(parents=True, exist_ok=True)
        frame.to_json(root / "sources" / f"{domain}.jsonl", orient="records", lines=True)
        frame.iloc[:16].to_json(root / "sources" / f"dev-{domain}.jsonl", orient="records", lines=True)
    manifest = {"name": "bench-generate", "shard_size": shard_size, "domains": [
        {"name": d, "sources": [{"path": f"sources/{d}.jsonl", "columns": {"prompt": "prompt", "response": "response"}}],
         "dev": {"path": f"sources/dev-{d}.jsonl", "metric": "nll"}} for d in DOMAINS]}
    (root / "manifest.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))
    return build_pool(root / "manifest.yaml")


def write_features(pool_dir: Path, out: Path) -> Path:
    import numpy as np
    import pandas as pd

    from causalmix.causal.covariates import DEFAULT_FEATURES
    from causalmix.datapool.pool import Pool

    frames = []
    for k, shard in enumerate(Pool.open(pool_dir).shards()):
        docs = pd.read_parquet(shard.path, columns=["doc_id", "domain", "prompt", "response"])
        rng = np.random.default_rng(k)
        level = rng.random()
        frames.append(docs[["doc_id", "domain"]].assign(
            n_tokens=(docs["prompt"].str.len() + docs["response"].str.len()) // 4,
            **{f: level + 0.1 * rng.random(len(docs)) for f in DEFAULT_FEATURES}))
    pd.concat(frames, ignore_index=True).to_parquet(out)
    return out


def sweep_plan_path(cfg) -> list[dict]:
    """What the sweep does to decide the same runs: read its inputs, build its Searcher, ask it."""
    from causalmix.design.sweep_design import proposer_settings
    from causalmix.actors.sweep.searcher import MixtureSearcher
    from causalmix.datapool.sweep_inputs import load_sweep_inputs

    inputs = load_sweep_inputs(cfg.pool, cfg.features, cfg.feature_names)
    searcher = MixtureSearcher(**proposer_settings(cfg, inputs))
    return [searcher.suggest(f"trial-{i}") for i in range(cfg.runs)]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=800_000, help="documents in the pool")
    parser.add_argument("--runs", type=int, default=512, help="runs in the plan")
    parser.add_argument("--shard-size", type=int, default=4000, help="documents per shard")
    args = parser.parse_args(argv)
    if min(args.docs, args.runs, args.shard_size) < 1 or args.docs < 4 * args.shard_size:
        parser.error("--docs, --runs, --shard-size must be >= 1, with at least one shard per domain")

    import pandas as pd

    from causalmix.design.swarm_plan import PLAN_FILE, GenerateConfig, generate
    from causalmix.datapool.sweep_inputs import load_sweep_inputs
    from causalmix.proxy.config import ProxyConfig

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        pool = write_pool(root / "pool", args.docs, args.shard_size)
        features = write_features(pool, root / "features.parquet")
        print(f"pool of {args.docs} documents written in {time.perf_counter() - start:.0f} s", flush=True)
        cfg = GenerateConfig(pool=str(pool), features=str(features), out=str(root / "plan"), runs=args.runs,
                             proxy=ProxyConfig(model="tokenizer-not-read-without---export"))
        load_sweep_inputs(cfg.pool, cfg.features, cfg.feature_names)  # warm the page cache, untimed
        importlib.import_module("causalmix.actors.sweep.searcher")  # Ray Tune's import is not the sweep's planning

        sweep_times, generate_times = [], []
        for k, path in enumerate(("sweep", "generate", "generate", "sweep")):  # ABBA: drift cancels
            start = time.perf_counter()
            if path == "sweep":
                proposals = sweep_plan_path(cfg)
            else:
                generate(dataclasses.replace(cfg, out=str(root / f"plan-{k}")))
            (sweep_times if path == "sweep" else generate_times).append(time.perf_counter() - start)
        sweep_s, generate_s = statistics.mean(sweep_times), statistics.mean(generate_times)
        (root / "plan-1").rename(root / "plan")
        plan = pd.read_parquet(root / "plan" / PLAN_FILE)
        csv = pd.read_csv(root / "plan" / "plan.csv")
        same = all(plan.loc[i, [f"mix.{d}" for d in p["mixture"]]].tolist() == list(p["mixture"].values())
                   for i, p in enumerate(proposals))
        domains = sum(1 for c in plan.columns if c.startswith("state."))
    print(f"{args.runs} runs on {args.docs} documents: generate {generate_s:.1f} s "
          f"({', '.join(f'{t:.1f}' for t in generate_times)}); the sweep's path {sweep_s:.1f} s "
          f"({', '.join(f'{t:.1f}' for t in sweep_times)})")
    print(f"plan: {len(plan)} rows, {len(plan.columns)} columns ({domains} domains), csv {len(csv)} rows; "
          f"mixtures equal to the Searcher's: {same}")
    if len(plan) != args.runs or not same:
        print("the plan is not the sweep's runs", file=sys.stderr)
        return 1
    print(f"RESULT generate generate_s={generate_s:.2f} sweep_plan_s={sweep_s:.2f} "
          f"ratio={generate_s / sweep_s:.2f} docs={args.docs} runs={args.runs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
