"""What a sweep trial's data costs it, per run, against the size of the pool: the CPU seconds of
fetching its data state from the object store, drawing its documents and averaging its covariates.

Two paths on the same runs, interleaved run by run in one Ray worker (as a trial runs):
  now       `actors.sweep.trainer.trial_inputs`: the shards its draw falls in, fetched at once
            (`proxy.data.LazyShards`) as Arrow tables (`actors.sweep.driver.put_documents`), the
            covariates read by (shard, row) from each domain's numeric features
            (`proxy.run.DomainFeatures`, mapped by Ray without a copy);
  baseline  the path before it: every shard of the run's state (pandas frames) and the features
            of each (doc_id, domain, feature columns) fetched up front, the features filtered to
            the drawn doc_ids (Arrow `is_in`), the covariates looked up by doc_id.
Both must draw the same documents and give the same covariates, to the bit (`equal`).

The pool: benchmarks/paper_scale_pool.py's generated text at `--scale` x 800K documents in shards
of 4000 (the sweep of bench_paper_scale.py), features in the featurizer's schema (synthetic
values, every feature column of the paper-scale sweep), the data states of a sweep's first `--runs`
runs as its state sampler draws them (a domain's state: 1 to all of its shards), Dirichlet
mixtures, the default budget (400 samples). The trial's CPU is the worker's process CPU (Ray's
threads that read the object store included).

    python benchmarks/bench_trial_data.py --scale 0.125
    python benchmarks/bench_trial_data.py --scale 1          # 800K documents, 200 shards

Ends with `RESULT trial_data scale=... state_shards=... fetched_shards=... baseline_cpu_ms=...
cpu_ms=... speedup=... equal=...` (means per run over the runs after the first two).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

WARMUP = 2  # runs left out of the means: the tokenizer's and the imports' first calls


def baseline_covariates(data, frames: dict, shard_features: dict, spec, proxy, tokenizer):
    """The trial's data path before `trial_inputs`: the whole state and its features fetched."""
    import pandas as pd
    import ray

    from causalmix.causal.covariates import _isin
    from causalmix.proxy.run import draw_run, run_covariates

    names = sorted({n for shard_names in spec.state.values() for n in shard_names})
    shards = dict(zip(names, ray.get([frames[n] for n in names])))
    sample, _ = draw_run(proxy, spec, shards, tokenizer)
    features = dict(zip(names, ray.get([shard_features[n] for n in names])))
    drawn = pd.Index(sample.doc_ids)
    whole = {n for d, k in sample.counts.items() if k == 0 for n in spec.state.get(d, ())}
    parts = [f if n in whole else f[_isin(f["doc_id"], drawn)] for n, f in features.items()]
    covariates = run_covariates(spec, sample, shards=shards, features=pd.concat(parts, ignore_index=True),
                                feature_names=data.feature_names)
    return sample, covariates, len(names)


def covariates_now(data, spec, proxy, tokenizer):
    from causalmix.actors.sweep.trainer import trial_inputs
    from causalmix.proxy.run import draw_run, run_covariates

    shards, features = trial_inputs(data, spec)
    sample, _ = draw_run(proxy, spec, shards, tokenizer)
    covariates = run_covariates(spec, sample, shards=shards, features=features, feature_names=data.feature_names)
    return sample, covariates, len(shards.fetched())


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(a[k] == b[k] or (a[k] != a[k] and b[k] != b[k]) for k in a)


def measure(configs: list[dict], data, frames: dict, shard_features: dict, proxy) -> list[dict]:
    """Per run: CPU seconds of both paths, in alternating order, and whether they agree."""
    from causalmix.design.trial_protocol import spec_from_config
    from causalmix.lm.loading import load_tokenizer

    tokenizer = load_tokenizer(proxy.model)
    out = []
    for i, config in enumerate(configs):
        spec = spec_from_config(config)
        got = {}
        for path in (("baseline", "now") if i % 2 else ("now", "baseline")):
            start = time.process_time()
            if path == "now":
                got[path] = covariates_now(data, spec, proxy, tokenizer)
            else:
                got[path] = baseline_covariates(data, frames, shard_features, spec, proxy, tokenizer)
            got[f"{path}_cpu_s"] = time.process_time() - start
        (old_sample, old_cov, state_shards), (sample, cov, fetched) = got["baseline"], got["now"]
        out.append({"baseline_cpu_s": got["baseline_cpu_s"], "cpu_s": got["now_cpu_s"],
                    "state_shards": state_shards, "fetched_shards": fetched,
                    "equal": old_sample.doc_ids == sample.doc_ids and same(old_cov, cov)})
    return out


def build(root: Path, scale: float):
    from bench_paper_scale import FULL_DOCS, stage_pool
    from causalmix.causal.covariates import DEFAULT_FEATURES
    from causalmix.features.style import STYLE_COLUMNS
    from paper_scale_pool import tiny_proxy_model, write_synthetic_features

    names = (*DEFAULT_FEATURES, *STYLE_COLUMNS)
    pool = stage_pool(root, round(FULL_DOCS * scale), 4000)
    features = write_synthetic_features(pool["pool_dir"], root / "features.parquet", names)
    return pool["pool_dir"], features, tiny_proxy_model(root), names


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=0.125, help="fraction of 800K documents")
    parser.add_argument("--runs", type=int, default=24, help="runs measured (data states of a sweep)")
    parser.add_argument("--json", help="also write the per-run figures here")
    args = parser.parse_args(argv)
    if not 0 < args.scale <= 1 or args.runs <= WARMUP:
        parser.error(f"--scale must be in (0, 1] and --runs above {WARMUP}")

    import numpy as np
    import ray

    from causalmix.actors.sweep.driver import put_documents, put_sweep_data
    from causalmix.core.ray_setup import init_ray, shutdown_ray
    from causalmix.datapool.sweep_inputs import load_sweep_inputs
    from causalmix.mixture_space.state import DataStateSampler, StateSamplerConfig
    from causalmix.proxy.config import ProxyConfig

    with tempfile.TemporaryDirectory(prefix="trial_data.") as tmp:
        pool_dir, features_path, model, names = build(Path(tmp), args.scale)
        init_ray("local", num_cpus=2, object_store_memory=2 * 2**30, log_to_driver=False)
        try:
            frames = []

            def keep(frame):  # the baseline's shards are frames, as the sweep put them before
                frames.append(ray.put(frame))
                return put_documents(frame)

            inputs = load_sweep_inputs(pool_dir, features_path, names, keep_shard=keep)
            frames = dict(zip(inputs.shards, frames))
            data = put_sweep_data(inputs, names)
            shard_features = {n: ray.put(f) for n, f in inputs.shard_features.items()}
            states = DataStateSampler(inputs.shard_names, config=StateSamplerConfig(seed=0),
                                      shard_means=inputs.shard_means)
            rng = np.random.default_rng(0)
            domains = list(inputs.shard_names)
            configs = [{"run_id": f"r{i}", "seed": i, "state": states.state(i),
                        "mixture": dict(zip(domains, rng.dirichlet(np.ones(len(domains))).tolist()))}
                       for i in range(args.runs)]
            trial = ray.remote(num_cpus=1)(measure)
            runs = ray.get(trial.remote(configs, data, frames, shard_features, ProxyConfig(model=str(model))))
        finally:
            shutdown_ray()
    if args.json:
        Path(args.json).write_text(json.dumps(runs, indent=1))
    kept = runs[WARMUP:]
    mean = {k: statistics.mean(r[k] for r in kept)
            for k in ("baseline_cpu_s", "cpu_s", "state_shards", "fetched_shards")}
    result = {"scale": args.scale, "docs": sum(map(len, inputs.by_position.frames.values())),
              "shards": len(inputs.shards), "runs": len(kept),
              "state_shards": f"{mean['state_shards']:.1f}", "fetched_shards": f"{mean['fetched_shards']:.1f}",
              "baseline_cpu_ms": f"{1e3 * mean['baseline_cpu_s']:.0f}", "cpu_ms": f"{1e3 * mean['cpu_s']:.0f}",
              "speedup": f"{mean['baseline_cpu_s'] / mean['cpu_s']:.2f}",
              "equal": f"{sum(r['equal'] for r in runs)}/{len(runs)}"}
    print("RESULT trial_data " + " ".join(f"{k}={v}" for k, v in result.items()))
    return 0 if all(r["equal"] for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
