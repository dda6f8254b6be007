"""Does the demo's damage reverse a domain's return? Per domain, a tiny model trained on a clean
and on a fully damaged shard (datapool/demo_damage.py's fixed wrong rule) of that domain, and
the change of the domain's clean dev NLL.

Alone (default): the domain's documents only, against the base model. `--mixed`: the
domain's documents in a run with three times as many clean documents of the other domains,
against a run of the same budget on those alone (paired per seed): the return of moving a
quarter of the budget to the domain, after the chat format is learnt from the other domains
as it is in every sweep run. A damage the design can use moves the dev NLL the other way from
clean data: clean lowers it, damaged raises it. Each cell is the mean over `--seeds` seeds
(each seed draws its own shard and training order); `docs` documents of the domain per run,
its share at equal weights of a sweep run (400 / 4) or of a validation run (800 / 4) by default.

    python launch.py demo --until models --workdir W     # or let the bench build the models
    python benchmarks/bench_damage.py --workdir W [--mixed]
Ends with `RESULT damage ...`: per domain and model, the NLL change after clean and after
damaged training (`reversed_all=1` when every damaged change is > 0 and every clean one < 0).
"""
from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def models_dir(workdir: str | None, scratch: Path, seed: int) -> Path:
    """The demo workdir's models, or a fresh tiny family built as `demo` builds it."""
    if workdir:
        found = Path(workdir) / "models"
        if not (found / "proxy" / "causalmix_model.json").is_file():
            sys.exit(f"bench_damage: {found}/proxy is not a built tiny model "
                     f"(run `launch.py demo --until models --workdir {workdir}` first)")
        return found
    from causalmix.datapool.demo import DemoPoolSpec, demo_texts_for_tokenizer, write_demo_pool
    from causalmix.datapool.demo_sources import pretraining_corpus
    from causalmix.lm.tiny import build_model_family

    pool = write_demo_pool(scratch / "pools", "demo-small", DemoPoolSpec(seed=seed))
    build_model_family(scratch / "models", demo_texts_for_tokenizer(pool),
                       pretraining_corpus(random.Random(seed)), vocab_size=2048, seed=seed)
    return scratch / "models"


def dev_frame(domain: str, n: int, seed: int):
    import pandas as pd

    from causalmix.datapool.demo_sources import clean_sample

    rng = random.Random(f"{seed}-dev-{domain}")
    return pd.DataFrame([clean_sample(domain, rng, split="dev") for _ in range(n)])


def trained_nll(model_path: str, samples: list[dict] | None, dev, seed: int) -> float:
    """Dev NLL of the model after one epoch on `samples` (None: the base model)."""
    import numpy as np

    from causalmix.lm.formatting import encode_document
    from causalmix.lm.loading import load_tokenizer
    from causalmix.proxy.config import ProxyConfig
    from causalmix.proxy.evaluate import dev_nll
    from causalmix.proxy.packing import pack_documents
    from causalmix.proxy.run import load_for_training, seed_everything
    from causalmix.proxy.train import train_packed

    cfg = ProxyConfig(model=model_path, device="cpu", threads=1, log_every=0)
    seed_everything(seed)
    tokenizer = load_tokenizer(model_path)
    model = load_for_training(cfg, "cpu")
    if samples:
        rng = np.random.default_rng(seed)
        docs = [encode_document(tokenizer, s["prompt"], s["response"], max_length=cfg.max_length)
                for s in samples]
        train_packed(model, pack_documents(docs, cfg.max_length, tokenizer.pad_token_id, rng=rng),
                     cfg, device="cpu", rng=rng)
    model.eval()
    return dev_nll(model, tokenizer, dev, cfg, "cpu")


def others(domain: str, docs: int, seed: int) -> list[dict]:
    """`docs` clean documents of the other domains, evenly."""
    from causalmix.datapool.demo import shard_samples
    from causalmix.datapool.demo_sources import DOMAINS

    rest = [d for d in DOMAINS if d != domain]
    return [s for k, d in enumerate(rest)
            for s in shard_samples(d, docs // len(rest) + (k < docs % len(rest)), 0.0,
                                   random.Random(f"bench-other-{d}-{seed}"))]


def measure(models: Path, model: str, domain: str, docs: int, seeds: int, dev_docs: int, mixed: bool) -> dict:
    """Change of the domain's dev NLL after `docs` clean / damaged documents of it. Alone: from
    the base model. Mixed: in a run of 4 x `docs` documents whose rest are clean documents of
    the other domains, against the same budget spent on those alone (paired per seed): the
    return of moving a quarter of the budget to the domain."""
    from causalmix.datapool.demo import shard_samples

    dev = dev_frame(domain, dev_docs, 0)
    path = str(models / model)
    base = [trained_nll(path, others(domain, 4 * docs, seed) if mixed else None, dev, seed)
            for seed in range(seeds if mixed else 1)]
    change = {"clean": [], "damaged": []}
    for seed in range(seeds):
        rest = others(domain, 3 * docs, seed) if mixed else []
        for state, rate in (("clean", 0.0), ("damaged", 1.0)):
            samples = shard_samples(domain, docs, rate, random.Random(f"bench-{domain}-{seed}"))
            change[state].append(trained_nll(path, rest + samples, dev, seed) - base[seed if mixed else 0])
    return {"before": sum(base) / len(base), **{k: sum(v) / len(v) for k, v in change.items()},
            "spread": {k: max(v) - min(v) for k, v in change.items()}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", help="a demo workdir whose models/ to use (default: build them)")
    parser.add_argument("--models", default="proxy:100,target:200",
                        help="model:docs per run, comma-separated (default proxy:100,target:200)")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--dev-docs", type=int, default=64)
    parser.add_argument("--domains", default="arithmetic,code,docs_qa,dialog")
    parser.add_argument("--mixed", action="store_true",
                        help="the domain's documents in a run with 3x as many clean ones of the other "
                        "domains, against a run of the same budget without it (default: the domain alone)")
    args = parser.parse_args()
    start = time.perf_counter()
    result, reversed_all = [], True
    with tempfile.TemporaryDirectory() as scratch:
        models = models_dir(args.workdir, Path(scratch), 0)
        print(f"{'model':7} {'domain':11} {'docs':>5} {'NLL before':>10} {'clean':>8} {'damaged':>8}"
              f"  (change of the domain's dev NLL; mean of {args.seeds} seeds, range in brackets; "
              + ("mixed with the other domains" if args.mixed else "the domain alone") + ")")
        for entry in args.models.split(","):
            model, docs = entry.split(":")
            for domain in args.domains.split(","):
                m = measure(models, model, domain, int(docs), args.seeds, args.dev_docs, args.mixed)
                reversed_all &= m["clean"] < 0 < m["damaged"]
                print(f"{model:7} {domain:11} {docs:>5} {m['before']:10.3f} {m['clean']:+8.3f} "
                      f"{m['damaged']:+8.3f}  [{m['spread']['clean']:.3f}, {m['spread']['damaged']:.3f}]",
                      flush=True)
                result += [f"{model}_{domain}_clean={m['clean']:+.3f}", f"{model}_{domain}_damaged={m['damaged']:+.3f}"]
    print(f"RESULT damage {' '.join(result)} reversed_all={int(reversed_all)} "
          f"wall_s={time.perf_counter() - start:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
