"""The inputs of bench_paper_scale.py: a generated pool of N documents over 6 domains with a
realistic length distribution, written as JSONL sources and built by `build_pool` (the `pool`
command's path) into shards; a tiny tokenizer and proxy model; and, for `--features synthetic`,
features in the featurizer's schema without running the featurizer.

Text: each domain has its own vocabulary (word lengths, punctuation, digits, code symbols), so
the style statistics differ by domain as real sources do; a document is a slice of a long
per-domain text at a random offset, its length in characters log-normal (median
`MEDIAN_CHARS`, a long right tail cut at `MAX_CHARS`), the shape of instruction-tuning data.
Generation is one domain at a time, one source file each, so memory is bounded by a domain's
source, not the pool.
"""
from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np

DOMAINS = ("arithmetic", "code", "dialog", "docs_qa", "science", "legal")
MEDIAN_CHARS = 600
SIGMA = 0.9
MAX_CHARS = 8000
DEV_DOCS = 32

_VOCAB = {
    "arithmetic": "sum of plus minus times equals 12 7 40 315 9 total each the is what".split(),
    "code": "def return if else for in range self x y = ( ) : [ ] len print import".split(),
    "dialog": "hi sure thanks ok you I we can would like please yes no maybe great !".split(),
    "docs_qa": "the section describes a configuration option which controls how value set".split(),
    "science": "energy particle measured cell protein reaction observed rate temperature data".split(),
    "legal": "pursuant hereinafter party agreement shall clause obligation liability thereof".split(),
}


def domain_text(domain: str, rng: np.random.Generator, n_chars: int = 400_000) -> str:
    """A long text in the domain's vocabulary, sentences of 5 to 30 words."""
    words = np.array(_VOCAB[domain])
    parts, size = [], 0
    while size < n_chars:
        sentence = " ".join(words[rng.integers(0, len(words), rng.integers(5, 31))]) + ". "
        parts.append(sentence)
        size += len(sentence)
    return "".join(parts)


def domain_documents(domain: str, n: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    text = domain_text(domain, rng)
    lengths = np.minimum(MAX_CHARS, np.maximum(20, rng.lognormal(np.log(MEDIAN_CHARS), SIGMA, n))).astype(int)
    offsets = rng.integers(0, len(text) - MAX_CHARS, n)
    return [{"prompt": f"{domain} task {i}", "response": text[o:o + k]}
            for i, (o, k) in enumerate(zip(offsets.tolist(), lengths.tolist()))]


def write_sources(root: Path, docs: int, seed: int = 0) -> dict[str, int]:
    """One JSONL source and one dev set per domain; returns characters written per domain."""
    (root / "sources").mkdir(parents=True, exist_ok=True)
    chars = {}
    for d, domain in enumerate(DOMAINS):
        rows = domain_documents(domain, docs // len(DOMAINS), seed + d)
        with open(root / "sources" / f"{domain}.jsonl", "w", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(row) + "\n")
        dev = domain_documents(domain, DEV_DOCS, seed + 1000 + d)
        with open(root / "sources" / f"dev-{domain}.jsonl", "w", encoding="utf-8") as fh:
            fh.writelines(json.dumps(row) + "\n" for row in dev)
        chars[domain] = sum(len(r["response"]) for r in rows)
        del rows
    return chars


def write_manifest(root: Path, shard_size: int) -> Path:
    import yaml

    manifest = {"name": "paper-scale", "shard_size": shard_size, "domains": [
        {"name": d, "sources": [{"path": f"sources/{d}.jsonl",
                                 "columns": {"prompt": "prompt", "response": "response"}}],
         "dev": {"path": f"sources/dev-{d}.jsonl", "metric": "nll"}} for d in DOMAINS]}
    path = root / "manifest.yaml"
    path.write_text(yaml.safe_dump(manifest, sort_keys=False))
    return path


def tiny_proxy_model(root: Path) -> Path:
    """A tiny tokenizer + proxy model (seconds), trained on the pool's dev text."""
    from causalmix.datapool.demo_sources import pretraining_corpus
    from causalmix.lm.tiny import TinyModelSpec, build_model_family

    texts = [r["response"] for d in DOMAINS for r in domain_documents(d, 200, 7)]
    corpus = pretraining_corpus(random.Random(0), n_docs=200)
    models = build_model_family(root / "models", texts, corpus, vocab_size=512, seed=0,
                                proxy_spec=TinyModelSpec(pretrain_steps=10, pretrain_batch=8),
                                target_spec=TinyModelSpec(pretrain_steps=1, pretrain_batch=2))
    return models["proxy"]


def write_synthetic_features(pool_dir: Path, out: Path, feature_names) -> Path:
    """Features in the featurizer's schema (doc_id, domain, n_tokens, every feature column),
    values that shift from shard to shard; one shard in memory at a time, written as one Parquet
    file through a ParquetWriter."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    from causalmix.datapool.pool import Pool

    writer = None
    try:
        for k, shard in enumerate(Pool.open(pool_dir).shards()):
            docs = pd.read_parquet(shard.path, columns=["doc_id", "domain", "response"])
            rng = np.random.default_rng(k)
            level = rng.random()
            frame = docs[["doc_id", "domain"]].assign(
                n_tokens=docs["response"].str.len() // 4,
                **{f: level + 0.1 * rng.random(len(docs)) for f in feature_names})
            table = pa.Table.from_pandas(frame, preserve_index=False)
            if writer is None:
                writer = pq.ParquetWriter(out, table.schema)
            writer.write_table(table)
    finally:
        if writer is not None:
            writer.close()
    return out
