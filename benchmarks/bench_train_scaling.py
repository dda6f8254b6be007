"""Target-training scaling on Ray Train: samples/s with 1 and 2 FSDP workers against the
single-device path (proxy/train.py in one process, what `validate` runs with one GPU per run),
same run, same documents, same seed, in the same invocation.

All three train one epoch of the same drawn sample with the same global batch
(rows_per_micro_batch x grad_accum packed rows per optimiser step). Throughput = documents
trained / training wall time (model loaded, process group up; worker start-up, data drawing
and the dev suite are outside it; the end-to-end wall per run is printed too). Each Ray
Train worker gets `--cpus / 2` torch threads (so 2 workers use all cores); the single-device
baseline runs with 1 and with `--cpus` threads and the faster counts (on a loaded machine more
threads can be slower). The ratio compares at most equal cores, the efficiency equal cores per
worker. Repeated `--repeats` times, median reported.
efficiency = samples/s(2 workers) / (2 x samples/s(1 worker)); ratio = samples/s(2 workers) /
samples/s(single device). Also checks the 2-worker loss curve against the single device one.

    python benchmarks/bench_train_scaling.py --workdir /tmp/train-scaling   # built there if missing
    python benchmarks/bench_train_scaling.py --smoke --workdir DIR   # 16 docs of 64 tokens, once (CI)
Ends with `RESULT train_scaling ...` (`--smoke`: the code path only, its figures mean nothing).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def inputs(workdir: Path):
    import pandas as pd

    from causalmix.datapool.pool import Pool

    if not (workdir / "models" / "target" / "config.json").is_file():
        build(workdir)
    pool = Pool.open(workdir / "pools" / "demo-small")
    shards = {}
    for s in pool.shards():
        frame = pd.read_parquet(s.path)
        shards[s.name] = frame.assign(doc_id=frame["doc_id"].astype(str),
                                      is_text=frame.get("is_text", False))
    features = pd.concat([f[["doc_id"]].assign(domain=d) for d in pool.domains
                          for f in (shards[s.name] for s in pool.shards(d))], ignore_index=True)
    state = {d: tuple(s.name for s in pool.shards(d)) for d in pool.domains}
    return pool, shards, features, state


def build(workdir: Path) -> None:
    """demo-small and the demo target's shape (lm/tiny.py TARGET_SPEC) with a few pretraining
    steps only: throughput does not depend on how well the model was pretrained."""
    import random
    from dataclasses import replace

    from causalmix.datapool.demo import DemoPoolSpec, demo_texts_for_tokenizer, write_demo_pool
    from causalmix.datapool.demo_sources import pretraining_corpus
    from causalmix.lm.tiny import PROXY_SPEC, TARGET_SPEC, build_model_family

    write_demo_pool(workdir / "pools", "demo-small", DemoPoolSpec(small_docs_per_shard=40))
    build_model_family(workdir / "models", demo_texts_for_tokenizer(workdir / "pools" / "demo-small"),
                       pretraining_corpus(random.Random(0), n_docs=200), vocab_size=2048, seed=0,
                       proxy_spec=replace(PROXY_SPEC, pretrain_steps=2),
                       target_spec=replace(TARGET_SPEC, pretrain_steps=5))


def samples_per_s(row: dict) -> float:
    docs = sum(v for k, v in row.items() if k.startswith("docs."))
    return docs / (row["tokens"] / row["train_tokens_per_s"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default="/tmp/train-scaling",
                        help="pools/demo-small and models/target (built there when missing)")
    parser.add_argument("--budget", type=int, default=256, help="documents per training run")
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--cpus", type=int, default=2, help="cores given to each configuration")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--smoke", action="store_true",
                        help="check that the benchmark runs: --budget 16 --max-length 64 --repeats 1")
    args = parser.parse_args()
    if args.smoke:
        args.budget, args.max_length, args.repeats = 16, 64, 1

    import ray
    import transformers

    from causalmix.actors.target.ray_train import train_distributed
    from causalmix.core.ray_setup import init_ray
    from causalmix.proxy.config import ProxyConfig
    from causalmix.target.distributed import TargetTrainConfig
    from causalmix.proxy.run import RunSpec, run_proxy

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    workdir = Path(args.workdir)
    pool, shards, features, state = inputs(workdir)
    spec = RunSpec(run_id="bench", mixture={d: 1.0 / len(pool.domains) for d in pool.domains},
                   state=state, seed=0)

    def cfg(threads: int) -> ProxyConfig:
        return ProxyConfig(model=str(workdir / "models" / "target"), budget=args.budget,
                           max_length=args.max_length, rows_per_micro_batch=2, grad_accum=4,
                           learning_rate=1e-3, dev_limit=1, em_max_new_tokens=2, threads=threads,
                           device="cpu", dtype="float32")

    init_ray(num_cpus=args.cpus, log_to_driver=False)
    refs = {"shard_refs": {n: ray.put(f) for n, f in shards.items()}, "dev_sets_ref": ray.put({}),
            "features_ref": ray.put(features), "feature_names": ()}
    results: dict[str, list] = {f"single{t}": [] for t in sorted({1, args.cpus})}
    results.update(ray1=[], ray2=[])
    curves = {}
    for rep in range(args.repeats):
        for threads in sorted({1, args.cpus}):
            losses = []
            start = time.perf_counter()
            row = run_proxy(cfg(threads), spec, shards=shards, dev_sets={}, features=features,
                            feature_names=(), on_step=lambda s, loss, info: losses.append(loss))
            results[f"single{threads}"].append(samples_per_s(row))
            curves["single"] = losses
            print(f"[rep {rep}] single device, {threads} thread(s): {samples_per_s(row):.1f} samples/s "
                  f"({row['steps']} steps, wall {time.perf_counter() - start:.1f} s)", file=sys.stderr)
        per_worker = max(1, args.cpus // 2)
        for n in (1, 2):
            start = time.perf_counter()
            row = train_distributed(cfg(per_worker), TargetTrainConfig(
                workers=n, checkpoint_every=10**6, cpus_per_worker=per_worker), spec, **refs,
                use_gpu=False)
            results[f"ray{n}"].append(samples_per_s(row))
            curves[f"ray{n}"] = json.loads(row["train_losses"])
            print(f"[rep {rep}] Ray Train, {n} worker(s) x {per_worker} threads: "
                  f"{samples_per_s(row):.1f} samples/s (wall incl. start-up {time.perf_counter() - start:.1f} s)",
                  file=sys.stderr)
    ray.shutdown()
    medians = {k: statistics.median(v) for k, v in results.items()}
    best_threads = max((k for k in medians if k.startswith("single")), key=medians.get)[len("single"):]
    single, one, two = medians[f"single{best_threads}"], medians["ray1"], medians["ray2"]
    assert len(curves["ray2"]) == len(curves["single"]), "the runs trained different numbers of steps"
    drift = max(abs(a - b) / abs(b) for a, b in zip(curves["ray2"], curves["single"]))
    print(f"RESULT train_scaling device=cpu cpus={args.cpus} docs={args.budget} seq={args.max_length} "
          f"single_samples_per_s={single:.1f} single_threads={best_threads} ray1_samples_per_s={one:.1f} ray2_samples_per_s={two:.1f} "
          f"efficiency={two / (2 * one):.2f} ratio={two / single:.2f} loss_max_rel_diff={drift:.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
