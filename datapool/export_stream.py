"""An export written a pool shard at a time: memory bounded by a shard, not by the set.

`datapool.export.draw_export` plans the rows (which document, which pass, in training order) as
arrays of numbers; `plan_rows` reads each pool shard once and hands over the rows drawn from it
with their places in training order; `write_plan` scatters them into one bucket per output
shard (small Parquet files in the temporary folder), then writes each output shard from its
bucket in training order and the `datasets` folder from those shards (memory-mapped, through a
cache beside the output). The files are the ones `write_training_set` writes for the same rows.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import shutil
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

from causalmix.core.atomic import atomic_directory, atomic_write_json, atomic_write_parquet, temporary_sibling_dir
from causalmix.datapool.pool import Pool, read_shard

# Deferred on purpose, so that importing this module does not load datasets: the function-local
# imports (of these libraries or of this project's modules that import them).

PLACE = "_place"  # a bucket row's place in training order (dropped from the output)


@dataclasses.dataclass
class ExportPlan:
    """An export's rows in training order, without their text: which document of which domain,
    in which pass, and its tokens. Arrays of the rows' length (numbers, not documents)."""

    domains: list[str]
    """The pool's domains; `domain` indexes them."""
    domain: np.ndarray
    """Each row's domain (index into `domains`)."""
    position: np.ndarray
    """Each row's position in its domain's documents (its shards in order, concatenated)."""
    epoch: np.ndarray
    """0-based pass over its domain."""
    n_tokens: np.ndarray
    """Tokens of the row's document."""


def plan_rows(pool: Pool, plan: ExportPlan) -> Iterator[tuple[np.ndarray, pd.DataFrame]]:
    """The plan's rows with their documents, a pool shard at a time: (the rows' places in
    training order, their frame: the shard's columns plus `epoch` and `n_tokens`). Each shard
    is read once, however many rows (and passes) draw from it."""
    for k, domain in enumerate(plan.domains):
        rows = np.nonzero(plan.domain == k)[0]
        if not len(rows):
            continue
        rows = rows[np.argsort(plan.position[rows], kind="stable")]
        positions = plan.position[rows]
        offset = 0
        for shard in pool.shards(domain):
            lo, hi = np.searchsorted(positions, [offset, offset + shard.n_docs])
            if hi > lo:
                part = read_shard(shard.path).iloc[positions[lo:hi] - offset].reset_index(drop=True)
                part["epoch"] = plan.epoch[rows[lo:hi]]
                part["n_tokens"] = plan.n_tokens[rows[lo:hi]]
                yield rows[lo:hi], part
            offset += shard.n_docs


def trl_columns(rows: pd.DataFrame, text_only: bool | None = None) -> pd.DataFrame:
    """The rows as a dataset TRL's SFTTrainer reads without a formatting function: standard
    prompt-completion (`prompt`, `completion`), or language modeling (`text`) when every
    document is a text document (docs/export.md cites TRL's dataset formats). `text_only`:
    whether every document of the whole set is a text document (None: of `rows`)."""
    meta = [c for c in rows.columns if c not in ("prompt", "response", "is_text")]
    if rows["is_text"].all() if text_only is None else text_only:
        return pd.concat([rows[["response"]].rename(columns={"response": "text"}), rows[meta]], axis=1)
    return pd.concat([rows[["prompt", "response"]].rename(columns={"response": "completion"}), rows[meta]],
                     axis=1)


@contextlib.contextmanager
def quiet_datasets():
    """The CLI prints its own summary; `datasets`' per-shard progress bars would only
    interleave with it."""
    import datasets

    bars_were_on = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if bars_were_on:
            datasets.enable_progress_bars()


def shard_names(n_rows: int, shard_rows: int) -> list[str]:
    n_shards = max(1, math.ceil(n_rows / shard_rows))
    return [f"data/train-{i:05d}-of-{n_shards:05d}.parquet" for i in range(n_shards)]


def write_plan(out: Path, pool: Pool, plan: ExportPlan, record: dict, shard_rows: int,
               column_format: str) -> dict:
    """Write the plan's rows as an export directory replacing `out` whole (as
    `write_training_set` writes rows held in memory); returns the counts.json record."""
    names = shard_names(len(plan.domain), shard_rows)
    with atomic_directory(out) as tmp:
        buckets = tmp / "buckets"
        text_only = _scatter(pool, plan, buckets, shard_rows)
        columns = []
        for i, name in enumerate(names):
            parts = [pd.read_parquet(p) for p in sorted((buckets / f"{i:05d}").iterdir())]
            rows = pd.concat(parts, ignore_index=True).sort_values(PLACE).drop(columns=PLACE)
            rows = rows.reset_index(drop=True)
            if column_format == "trl":
                rows = trl_columns(rows, text_only)
            columns = list(rows.columns)
            atomic_write_parquet(tmp / name, rows)
        shutil.rmtree(buckets)
        record = {**record, "columns": columns, "files": {"parquet": names, "hf_dataset": "hf"}}
        _write_hf(out, tmp, names)
        atomic_write_json(tmp / "counts.json", record)
    return record


def _scatter(pool: Pool, plan: ExportPlan, buckets: Path, shard_rows: int) -> bool:
    """Each pool shard's drawn rows into the buckets of their output shards; returns whether
    every drawn document is a text document."""
    text_only = True
    for j, (places, part) in enumerate(plan_rows(pool, plan)):
        text_only &= bool(part["is_text"].all())
        part[PLACE] = places
        shard_of = places // shard_rows
        for i in np.unique(shard_of):
            atomic_write_parquet(buckets / f"{i:05d}" / f"part-{j:06d}.parquet", part[shard_of == i])
    return text_only


def _write_hf(out: Path, tmp: Path, names: list[str]) -> None:
    """The `datasets` folder of the written shards, built memory-mapped through a cache beside
    `out` (removed after), not from the rows in memory."""
    import datasets

    cache = temporary_sibling_dir(out.with_name(out.name + "-hf-cache"))
    try:
        with quiet_datasets():
            dataset = datasets.Dataset.from_parquet([str(tmp / n) for n in names], cache_dir=str(cache))
            dataset.save_to_disk(str(tmp / "hf"))
            del dataset
    finally:
        shutil.rmtree(cache, ignore_errors=True)
