"""Drawing a proxy run's training sample: exact per-domain counts from the mixture,
documents from the run's data state (its shards), tokenised by `encode_document`."""
from __future__ import annotations

import itertools
import zlib
from dataclasses import dataclass, field
from typing import Callable, Iterator, Mapping

import numpy as np
import pandas as pd
import pyarrow as pa

from causalmix.core.errors import UserError
from causalmix.lm.formatting import EncodedDoc, encode_document
from causalmix.mixture_space.state import DataState


def domain_counts(mixture: Mapping[str, float], total: int) -> dict[str, int]:
    """Integer counts summing to `total` exactly, proportional to `mixture` (largest remainder;
    ties go to the earlier domain)."""
    weights = np.array(list(mixture.values()), dtype=float)
    if weights.size == 0 or not np.all(np.isfinite(weights)) or np.any(weights < 0) or weights.sum() <= 0:
        raise UserError(f"mixture must have finite weights >= 0, not all zero, got {dict(mixture)}")
    exact = weights / weights.sum() * total
    counts = np.floor(exact).astype(int)
    remainder = exact - counts
    for j in sorted(range(len(counts)), key=lambda j: (-remainder[j], j))[: total - counts.sum()]:
        counts[j] += 1
    return dict(zip(mixture, (int(c) for c in counts)))


@dataclass
class TrainingSample:
    docs: list[EncodedDoc]
    doc_ids: list[str]
    domains: list[str]
    counts: dict[str, int] = field(default_factory=dict)
    """Documents drawn per domain."""
    tokens: dict[str, int] = field(default_factory=dict)
    """Tokens drawn per domain."""
    passes: dict[str, float] = field(default_factory=dict)
    """Documents drawn / documents available per domain (> 1: the sub-pool was repeated)."""
    rows: list[tuple[str, int]] = field(default_factory=list)
    """(shard name, row within the shard) of each drawn document: where its features are
    (proxy.run.DomainFeatures) without a look-up by doc_id."""


class LazyShards(Mapping):
    """{shard name: frame} whose frames are fetched on first use and kept (`fetch(names)` returns
    their frames, e.g. one `ray.get` of their object refs), with their row counts known up front
    (`sizes`): a draw reads only the shards its documents fall in, not every shard of its state
    (a state may hold most of the pool), and fetches them at once when it knows them
    beforehand (`prefetch`)."""

    def __init__(self, sizes: Mapping[str, int], fetch: Callable[[list[str]], list[pd.DataFrame]]):
        self.sizes = dict(sizes)
        self._fetch = fetch
        self._frames: dict[str, pd.DataFrame] = {}

    def prefetch(self, names) -> None:
        """Fetch these shards (those not fetched yet) in one call."""
        missing = [n for n in dict.fromkeys(names) if n not in self._frames]
        unknown = [n for n in missing if n not in self.sizes]
        if unknown:
            raise KeyError(unknown[0])
        if missing:
            self._frames.update(zip(missing, self._fetch(missing)))

    def __getitem__(self, name: str) -> pd.DataFrame:
        self.prefetch([name])
        return self._frames[name]

    def __contains__(self, name) -> bool:  # Mapping's would fetch the frame
        return name in self.sizes

    def __iter__(self) -> Iterator[str]:
        return iter(self.sizes)

    def __len__(self) -> int:
        return len(self.sizes)

    def fetched(self) -> list[str]:
        """The shards fetched so far."""
        return list(self._frames)


class _StateDocuments:
    """A domain's state's documents in the order of its shards, read one row at a time: a run
    draws a few hundred documents from a state that may hold most of the pool, so the state is
    neither concatenated nor converted to Python objects whole (at 800K documents that was most
    of a trial's time, growing with the pool). A shard is read when a drawn row falls in it
    (from `LazyShards`, only then fetched)."""

    def __init__(self, shards: Mapping[str, pd.DataFrame], names, domain: str):
        missing = [n for n in names if n not in shards]
        if missing:
            raise UserError(f"data state of domain {domain!r} names unknown shard(s) {missing}")
        self.shards, self.names = shards, list(names)
        sizes = shards.sizes if isinstance(shards, LazyShards) else {n: len(shards[n]) for n in names}
        self.ends = np.cumsum([sizes[n] for n in self.names])
        if not len(self.ends) or self.ends[-1] == 0:
            raise UserError(f"data state of domain {domain!r} ({list(names)}) holds no documents")
        self._columns: dict[int, tuple] = {}

    def _part_columns(self, j: int) -> tuple:
        """The shard's doc_id, prompt, response and is_text (None without it) columns: a frame's
        Series or an Arrow table's arrays (what the sweep puts in the object store: Ray reads a
        table's buffers in place, a frame it rebuilds, 5x the CPU a shard)."""
        if j not in self._columns:
            part = self.shards[self.names[j]]
            has_flag = "is_text" in (part.column_names if isinstance(part, pa.Table) else part)
            self._columns[j] = (part["doc_id"], part["prompt"], part["response"],
                                part["is_text"] if has_flag else None)
        return self._columns[j]

    def __len__(self) -> int:
        return int(self.ends[-1])

    def shard_of(self, i: int) -> str:
        return self.names[int(np.searchsorted(self.ends, i, side="right"))]

    def row(self, i: int) -> tuple[tuple[str, int], str, str, str, bool]:
        """((shard name, row in it), doc_id, prompt, response, is_text) of the state's i-th document."""
        j = int(np.searchsorted(self.ends, i, side="right"))
        local = int(i - (self.ends[j - 1] if j else 0))
        doc_id, prompt, response, is_text = (None if c is None else _cell(c, local) for c in self._part_columns(j))
        return (self.names[j], local), str(doc_id), prompt, response, bool(is_text) if is_text is not None else False


def _cell(column, i: int):
    return column[i].as_py() if isinstance(column, pa.ChunkedArray) else column.iat[i]


def _cycled_order(n: int, rng: np.random.Generator):
    """Indices of a fresh permutation per pass: without replacement until the sub-pool runs out."""
    while True:
        yield from rng.permutation(n)


def draw_sample(shards: Mapping[str, pd.DataFrame], state: DataState, mixture: Mapping[str, float],
                *, budget: int, budget_unit: str, tokenizer, max_length: int,
                rng: np.random.Generator) -> TrainingSample:
    """Documents for one run. 'samples': `domain_counts(mixture, budget)` documents per domain.
    'tokens': each domain draws documents until its token quota (weight x budget) is reached.
    A domain's documents are drawn without replacement from its state's shards, in
    fresh passes when the quota exceeds them.

    Each domain draws from its own stream, seeded from one draw of `rng` and the domain's
    name: with the same seed and state, two mixtures see the same document order within
    every domain (one is a prefix of the other), so runs that differ only in the mixture
    are paired comparisons (common random numbers) rather than independent draws."""
    unknown = set(mixture) - set(state)
    if unknown:
        raise UserError(f"mixture domains {sorted(unknown)} have no data state")
    quotas = domain_counts(mixture, budget)
    stream_seed = int(rng.integers(2**63))
    sample = TrainingSample([], [], [])
    streams = {}
    for domain, quota in quotas.items():
        sample.counts[domain] = sample.tokens[domain] = 0
        sample.passes[domain] = 0.0
        if quota == 0:
            continue
        documents = _StateDocuments(shards, state[domain], domain)
        order = _cycled_order(len(documents), np.random.default_rng([stream_seed, zlib.crc32(domain.encode())]))
        if budget_unit == "samples":  # every row is known before one is read
            order = list(itertools.islice(order, quota))
        streams[domain] = documents, order
    if budget_unit == "samples" and isinstance(shards, LazyShards):
        shards.prefetch(docs.shard_of(i) for docs, order in streams.values() for i in order)
    for domain, (documents, order) in streams.items():
        order, quota = iter(order), quotas[domain]
        while (sample.counts[domain] if budget_unit == "samples" else sample.tokens[domain]) < quota:
            where, doc_id, prompt, response, is_text = documents.row(next(order))
            doc = encode_document(tokenizer, prompt, response, is_text=is_text, max_length=max_length)
            sample.docs.append(doc)
            sample.rows.append(where)
            sample.doc_ids.append(doc_id)
            sample.domains.append(domain)
            sample.counts[domain] += 1
            sample.tokens[domain] += len(doc.input_ids)
        sample.passes[domain] = sample.counts[domain] / len(documents)
    return sample
