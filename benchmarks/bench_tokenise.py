"""Tokenise once? The share of a proxy run spent tokenising, and what token ids saved with the
features would save (issue 20, item 4).

A proxy run tokenises every document it draws (`proxy.data.draw_sample` -> `encode_document`)
and every dev NLL document (`proxy.evaluate.dev_nll`), although the featurizer already
tokenised the pool's documents with the same function (`actors.featurize.featurizer.prepare_documents`).
Same process, same run: one proxy run of the demo's sweep (demo-small, the tiny proxy, the
sweep's default ProxyConfig on one CPU thread, as a one-CPU trial gets it), `--repeats` times
each way, alternating so that load from other processes hits both alike:

  now     `proxy.run.run_proxy` as a sweep trial calls it; `encode_document`'s time is summed
          per call site (training sample, dev NLL sets).
  reused  the same run with the drawn documents' encodings looked up in a table built
          beforehand: what token ids saved with the features would give a run (the lookup is
          timed too; fetching the ids through the object store is not, so the saving is an
          upper bound).

It also checks the premise of reuse: for the drawn documents, are the featurizer's token ids
(its call, at the reference model's context, which `featurize` cuts at) the SFT's ones (cut
at the proxy's `max_length`)? `--tokenizer PATH` adds the per-document encoding time of another
tokenizer (e.g. a local copy of Qwen2.5's) on the same documents, against the tiny one's.

    python benchmarks/bench_tokenise.py --workdir causalmix-demo   # a demo's pools/ and models/
    python benchmarks/bench_tokenise.py                            # builds demo-small and the proxy

Ends with `RESULT tokenise share=... ratio=...`: share = training-sample tokenising / whole run
(minimum run of each way); ratio = `now` run time / `reused` run time (above 1: reuse is faster).
"""
from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def build_demo(root: Path) -> Path:
    """demo-small and the tiny proxy as `launch.py demo` builds them (no target model)."""
    from causalmix.datapool.demo import DemoPoolSpec, demo_texts_for_tokenizer, write_demo_pool
    from causalmix.datapool.demo_sources import pretraining_corpus
    from causalmix.lm.tiny import PROXY_SPEC, build_tiny_model, train_tokenizer

    write_demo_pool(root / "pools", "demo-small", DemoPoolSpec())
    train_tokenizer(demo_texts_for_tokenizer(root / "pools" / "demo-small"), root / "models" / "tokenizer",
                    vocab_size=2048)
    build_tiny_model(root / "models" / "proxy", root / "models" / "tokenizer",
                     pretraining_corpus(random.Random(0)), PROXY_SPEC, seed=0, name="proxy")
    return root


class Timed:
    """`encode_document` with its calls' time summed (installed where a run looks it up)."""

    def __init__(self, encode):
        self.encode = encode
        self.seconds = 0.0
        self.calls = 0

    def __call__(self, *args, **kwargs):
        start = time.perf_counter()
        try:
            return self.encode(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - start
            self.calls += 1


class Lookup:
    """Encodings taken from a table made beforehand, keyed by the document's text."""

    def __init__(self, table: dict):
        self.table = table
        self.seconds = 0.0

    def __call__(self, tokenizer, prompt, response, *, is_text=False, max_length):
        start = time.perf_counter()
        doc = self.table[(prompt, response, bool(is_text), max_length)]
        self.seconds += time.perf_counter() - start
        return doc


def one_run(cfg, spec, shards, dev_sets, features, feature_names, train_encode, dev_encode) -> float:
    import causalmix.proxy.data
    from causalmix import proxy
    import causalmix.proxy.evaluate
    from causalmix.proxy.run import run_proxy

    proxy.data.encode_document, proxy.evaluate.encode_document = train_encode, dev_encode
    start = time.perf_counter()
    run_proxy(cfg, spec, shards=shards, dev_sets=dev_sets, features=features, feature_names=feature_names)
    return time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default=None, help="demo work directory (pools/demo-small, "
                        "models/proxy); default: build them in a temporary folder")
    parser.add_argument("--repeats", type=int, default=3, help="runs each way, alternating")
    parser.add_argument("--budget", type=int, default=None, help="documents per run (default: ProxyConfig's)")
    parser.add_argument("--tokenizer", default=None, help="another tokenizer (local path) to time on the "
                        "same documents, e.g. Qwen2.5's")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")

    import numpy as np
    import pandas as pd
    import torch
    import transformers

    import causalmix.lm.formatting
    from causalmix import lm
    from causalmix.actors.featurize.featurizer import prepare_documents
    from causalmix.causal.covariates import DEFAULT_FEATURES
    from causalmix.datapool.pool import Pool
    from causalmix.lm.loading import load_causal_lm, load_tokenizer, max_context
    from causalmix.proxy.config import ProxyConfig
    from causalmix.proxy.data import draw_sample
    from causalmix.proxy.run import RunSpec

    torch.set_num_threads(1)
    transformers.utils.logging.disable_progress_bar()
    tmp = tempfile.TemporaryDirectory()
    work = Path(args.workdir) if args.workdir else build_demo(Path(tmp.name))
    model = str(work / "models" / "proxy")
    cfg = ProxyConfig(model=model, threads=1, device="cpu",
                      **({"budget": args.budget} if args.budget else {}))
    pool = Pool.open(work / "pools" / "demo-small")
    shards = {}
    for shard in pool.shards():
        frame = pd.read_parquet(shard.path)
        shards[shard.name] = frame.assign(doc_id=frame["doc_id"].astype(str),
                                          is_text=frame["is_text"] if "is_text" in frame else False)
    state = {d: tuple(s.name for s in pool.shards(d)) for d in pool.domains}
    spec = RunSpec(run_id="bench", mixture={d: 1.0 / len(pool.domains) for d in pool.domains}, state=state,
                   seed=0)
    dev_sets = pool.dev_tasks()
    tokenizer = load_tokenizer(model)
    encode = lm.formatting.encode_document
    all_docs = pd.concat(shards.values(), ignore_index=True)
    # The covariates' values do not change what the run costs: random ones in the features' schema.
    rng = np.random.default_rng(0)
    features = all_docs[["doc_id", "domain"]].assign(**{f: rng.random(len(all_docs)) for f in DEFAULT_FEATURES})
    table = {(p, r, bool(t), cfg.max_length): encode(tokenizer, p, r, is_text=bool(t), max_length=cfg.max_length)
             for p, r, t in zip(all_docs["prompt"], all_docs["response"], all_docs["is_text"])}

    # The premise of reuse: the featurizer's ids for the documents this run draws.
    drawn = draw_sample(shards, state, spec.mixture, budget=cfg.budget, budget_unit=cfg.budget_unit,
                        tokenizer=tokenizer, max_length=cfg.max_length, rng=np.random.default_rng(0))
    by_id = all_docs.drop_duplicates("doc_id").set_index("doc_id").loc[sorted(set(drawn.doc_ids))].reset_index()
    featurize_limit = max_context(load_causal_lm(model, device="cpu"), tokenizer)
    featurized = prepare_documents(by_id, path="bench", tokenizer=tokenizer, max_length=featurize_limit)
    sft = {i: doc for i, doc in zip(drawn.doc_ids, drawn.docs)}
    same = sum(list(ids) == sft[i].input_ids and int(start) == sft[i].response_start
               for i, ids, start in zip(featurized["doc_id"], featurized["input_ids"], featurized["response_start"]))

    times = {"now": [], "reused": []}
    tokenise = {"train": [], "dev": [], "lookup": []}
    one_run(cfg, spec, shards, dev_sets, features, DEFAULT_FEATURES, encode, encode)  # warm-up
    for _ in range(args.repeats):
        train, dev = Timed(encode), Timed(encode)
        times["now"].append(one_run(cfg, spec, shards, dev_sets, features, DEFAULT_FEATURES, train, dev))
        tokenise["train"].append(train.seconds)
        tokenise["dev"].append(dev.seconds)
        lookup = Lookup(table)
        times["reused"].append(one_run(cfg, spec, shards, dev_sets, features, DEFAULT_FEATURES, lookup,
                                       Timed(encode)))
        tokenise["lookup"].append(lookup.seconds)
        print(f"now {times['now'][-1]:.2f} s (tokenising: sample {train.seconds:.3f} s in {train.calls} calls, "
              f"dev {dev.seconds:.3f} s in {dev.calls}) | reused {times['reused'][-1]:.2f} s "
              f"(lookups {lookup.seconds:.4f} s)", flush=True)

    run_s, reused_s = min(times["now"]), min(times["reused"])
    train_s, dev_s, lookup_s = min(tokenise["train"]), min(tokenise["dev"]), min(tokenise["lookup"])
    print(f"run {run_s:.2f} s (median {statistics.median(times['now']):.2f}); reused {reused_s:.2f} s "
          f"(median {statistics.median(times['reused']):.2f}); sample tokenising {train_s:.3f} s = "
          f"{train_s / run_s:.1%}, dev NLL tokenising {dev_s:.3f} s = {dev_s / run_s:.1%}")
    print(f"featurizer ids equal the SFT's for {same} of {len(featurized)} drawn documents "
          f"(featurize cuts at {featurize_limit} tokens, the SFT at {cfg.max_length})")
    per_doc = train_s / max(1, len(drawn.docs))
    other = "qwen2.5 tokenizer: not available locally (no --tokenizer given)"
    if args.tokenizer:
        other_tok = load_tokenizer(args.tokenizer)
        start = time.perf_counter()
        for _, row in by_id.iterrows():
            encode(other_tok, row["prompt"], row["response"], is_text=bool(row["is_text"]), max_length=cfg.max_length)
        other = f"{args.tokenizer}: {(time.perf_counter() - start) / len(by_id) * 1e6:.0f} us/doc"
    print(f"tiny tokenizer {per_doc * 1e6:.0f} us/doc; {other}")
    print(f"RESULT tokenise share={train_s / run_s:.4f} dev_share={dev_s / run_s:.4f} run_s={run_s:.2f} "
          f"reused_run_s={reused_s:.2f} ratio={run_s / reused_s:.3f} saving_s={train_s - lookup_s:.3f} "
          f"docs={len(drawn.docs)} same_ids={same}/{len(featurized)}")
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
