"""Sequence packing without attention across samples.

Documents are placed into rows of `row_length` tokens by best-fit decreasing
(little padding). Position ids restart at 0 for every document; with
`attention_mask=None` and no cache, transformers (masking_utils
`find_packed_sequence_indices`) turns the restarts into a block-diagonal causal
mask for SDPA/eager attention, and flash_attention_2 uses them as varlen
boundaries (cu_seqlens). A test perturbs one document and checks that the
logits of its row neighbours do not move.

Labels are the input ids on scored (response) tokens and -100 elsewhere. The
model shifts labels by one, so the first token of each document is never a
target of the previous one: `encode_document` guarantees `response_start >= 1`.
Padding tail: its own position run, label -100.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from causalmix.lm.formatting import EncodedDoc

IGNORE = -100


@dataclass
class PackedBatch:
    input_ids: np.ndarray
    """(rows, row_length) int64."""
    labels: np.ndarray
    """(rows, row_length) int64; IGNORE on context and padding."""
    position_ids: np.ndarray
    """(rows, row_length) int64; restarts at every document."""
    doc_index: np.ndarray
    """(rows, row_length) int64; which input document a token belongs to (-1: padding)."""

    @property
    def n_tokens(self) -> int:
        return int((self.doc_index >= 0).sum())

    @property
    def n_scored(self) -> int:
        return int((self.labels != IGNORE).sum())

    def rows(self, index) -> "PackedBatch":
        return PackedBatch(self.input_ids[index], self.labels[index], self.position_ids[index],
                           self.doc_index[index])


def best_fit_decreasing(lengths: Sequence[int], row_length: int) -> list[list[int]]:
    """Bins of document indices whose lengths sum to at most `row_length` each: longest
    document first, into the open row with the least room that still fits it
    (O(n log n) search; within a few % of the fewest rows for SFT length mixes)."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    bins: list[list[int]] = []
    open_rows: list[tuple[int, int]] = []  # (free room, bin id), sorted
    for i in order:
        need = lengths[i]
        if need > row_length:
            raise ValueError(f"document {i} has {need} tokens, more than a row ({row_length})")
        at = bisect.bisect_left(open_rows, (need, -1))
        if at < len(open_rows):
            room, b = open_rows.pop(at)
        else:
            room, b = row_length, len(bins)
            bins.append([])
        bins[b].append(i)
        if room - need > 0:
            bisect.insort(open_rows, (room - need, b))
    return bins


def pack_documents(docs: Sequence[EncodedDoc], row_length: int, pad_id: int, *,
                   rng: np.random.Generator | None = None) -> PackedBatch:
    """Pack `docs` into rows; rows are shuffled by `rng` (kept in bin order without one)."""
    bins = best_fit_decreasing([len(d.input_ids) for d in docs], row_length)
    if rng is not None:
        bins = [bins[i] for i in rng.permutation(len(bins))]
    shape = (len(bins), row_length)
    input_ids = np.full(shape, pad_id, dtype=np.int64)
    labels = np.full(shape, IGNORE, dtype=np.int64)
    position_ids = np.zeros(shape, dtype=np.int64)
    doc_index = np.full(shape, -1, dtype=np.int64)
    for r, members in enumerate(bins):
        at = 0
        for i in members:
            ids = np.asarray(docs[i].input_ids, dtype=np.int64)
            end = at + len(ids)
            input_ids[r, at:end] = ids
            labels[r, at + docs[i].response_start:end] = ids[docs[i].response_start:]
            position_ids[r, at:end] = np.arange(len(ids))
            doc_index[r, at:end] = i
            at = end
        position_ids[r, at:] = np.arange(row_length - at)
    return PackedBatch(input_ids, labels, position_ids, doc_index)
