"""The featurizer actor pool: Ray Data batch inference over a pool's Parquet shards.

  shard paths (from_items, one block each)  ->  map_batches(FeaturizerActor,
  ActorPoolStrategy, one shard per call): the actor reads the shard, tokenizes it
  (lm.formatting.encode_documents), computes the style columns and scores the
  documents with the reference model, loaded once per actor (one GPU each on a
  cluster, bf16 + SDPA; CPU here), in token-budget, length-sorted batches  ->  the
  driver, which writes each shard as it arrives.

Reading and tokenizing live in the actor rather than in separate read tasks: the
token ids then never cross the object store (an Arrow list column per shard, and a
pandas conversion each way), and on a CPU-only cluster the actors can take every
CPU instead of leaving one to read tasks that finish early and then idle (on 2 CPUs:
two scoring actors instead of one). The price, on GPU actors: tokenizing a shard no
longer overlaps the forward passes of the previous one.

The math lives in `features.doc_features` and `features.style`; this module only
places it. Batches are formed within one source shard, so a shard's values do
not depend on which other shards run beside it (a resumed run reproduces an
uninterrupted one).
"""
from __future__ import annotations

import os
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from causalmix.core.errors import UserError
from causalmix.core.logs import quiet_ray_data
from causalmix.core.ray_setup import check_resources
from causalmix.features.doc_features import ScoredDoc, score_documents
from causalmix.features.style import style_row
from causalmix.lm.formatting import encode_documents
from causalmix.lm.loading import load_causal_lm, load_tokenizer

# Deferred on purpose, so that importing this module does not load ray and torch: the function-local
# imports (of these libraries or of this project's modules that import them).

READ_COLUMNS = ["doc_id", "domain", "prompt", "response", "is_text"]


def _path_key(path: str) -> str:
    return str(Path(path).resolve())


def prepare_documents(frame: pd.DataFrame, *, path: str, tokenizer, max_length: int) -> pd.DataFrame:
    """Token ids, scored span, truncation flag and style columns of one shard's rows."""
    responses = [response or "" for response in frame["response"]]
    encoded = encode_documents(tokenizer, [prompt or "" for prompt in frame["prompt"]], responses,
                               [bool(t) for t in frame["is_text"]], max_length=max_length)
    style = pd.DataFrame([style_row(response) for response in responses])
    return pd.DataFrame({
        "doc_id": frame["doc_id"].to_numpy(), "domain": frame["domain"].to_numpy(), "path": path,
        "input_ids": [np.asarray(e.input_ids, dtype=np.int64) for e in encoded],
        "response_start": [e.response_start for e in encoded],
        "truncated": [e.truncated for e in encoded], **{c: style[c].to_numpy() for c in style}})


class FeaturizerActor:
    """Holds the reference model; reads, tokenizes and scores whole shards."""

    def __init__(self, model: str, device: str, batch_tokens: int, cpu_threads: int, max_length: int):
        import torch

        if device == "cpu":
            torch.set_num_threads(cpu_threads)
            if cpu_threads == 1:
                # a shard's texts go to the tokenizer in one call, which would spread over every
                # core of the node, on top of the other actors
                os.environ["TOKENIZERS_PARALLELISM"] = "false"
        self.model = load_causal_lm(model, device=device)
        self.tokenizer = load_tokenizer(model)
        self.pad_id = int(self.model.config.pad_token_id or 0)
        self.batch_tokens = batch_tokens
        self.max_length = max_length

    def featurize_shard(self, path: str) -> pd.DataFrame:
        rows = prepare_documents(pq.read_table(path, columns=READ_COLUMNS).to_pandas(), path=path,
                                 tokenizer=self.tokenizer, max_length=self.max_length)
        rows = rows.sort_values("doc_id", kind="stable", ignore_index=True)
        docs = [ScoredDoc(ids, int(start)) for ids, start in zip(rows["input_ids"], rows["response_start"])]
        features = score_documents(self.model, docs, batch_tokens=self.batch_tokens, pad_id=self.pad_id)
        return rows.drop(columns=["input_ids", "response_start"]).assign(
            n_tokens=features.n_tokens, normalized_loss=features.normalized_loss, hes=features.hes)

    def __call__(self, batch: dict) -> pd.DataFrame:
        return pd.concat([self.featurize_shard(str(path)) for path in batch["path"]], ignore_index=True)


@dataclass(frozen=True)
class ShardJob:
    path: Path
    n_docs: int
    name: str


def resolve_pool_size(concurrency: int | None, device: str, cpus_per_actor: float) -> tuple[int, str]:
    """Actors to run and the device they use, from the cluster's resources unless given.

    On CPU-only clusters the actors take every CPU: they read their shards themselves,
    so no other task of the pipeline needs one.
    """
    import ray

    resources = ray.cluster_resources()
    gpus, cpus = int(resources.get("GPU", 0)), resources.get("CPU", 0)
    if device == "auto":
        device = "cuda" if gpus else "cpu"
    if device.startswith("cuda"):
        if not gpus:
            raise UserError(f"device {device!r} asked for, but the Ray cluster has no GPU")
        check_resources({"CPU": cpus_per_actor, "GPU": 1}, "a featurizer actor")
        return (concurrency or gpus), device
    check_resources({"CPU": cpus_per_actor}, "a featurizer actor")
    fits = int(cpus // cpus_per_actor)
    if concurrency is not None and concurrency > fits:
        raise UserError(f"--concurrency {concurrency} x {cpus_per_actor} CPU(s) needs more than the "
                        f"{cpus:g} CPU(s) of the Ray cluster; use at most {fits}")
    return (concurrency or fits), device


class FeaturizerPool:
    """The featurizer actors of one run: placement, fan-out and per-shard collection."""

    def __init__(self, model: str, *, max_length: int, batch_tokens: int,
                 concurrency: int | None = None, device: str = "auto", cpus_per_actor: float = 1,
                 actor_start_timeout_s: float = 600, start_all: bool = True):
        """start_all: start every actor at once (False: Ray Data's autoscaling from one actor,
        which on a small cluster scored most shards on one actor while the others' CPUs idled;
        kept as bench_featurize_scale.py's baseline)."""
        self.start_all = start_all
        self.model = model
        self.actor_start_timeout_s = actor_start_timeout_s
        self.max_length = max_length
        self.batch_tokens = batch_tokens
        self.cpus_per_actor = cpus_per_actor
        self.size, self.device = resolve_pool_size(concurrency, device, cpus_per_actor)

    def _dataset(self, jobs: Sequence[ShardJob]):
        import ray

        quiet_ray_data()
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        ctx.wait_for_min_actors_s = self.actor_start_timeout_s
        # One shard per block and per call: batches never mix or split shards.
        dataset = ray.data.from_items([{"path": _path_key(str(j.path))} for j in jobs],
                                      override_num_blocks=len(jobs))
        on_gpu = self.device.startswith("cuda")
        return dataset.map_batches(
            FeaturizerActor, batch_size=1, batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(min_size=1, max_size=self.size,
                                               initial_size=self.size if self.start_all else 1),
            fn_constructor_kwargs={"model": self.model, "device": self.device,
                                   "batch_tokens": self.batch_tokens,
                                   "cpu_threads": max(1, int(self.cpus_per_actor)),
                                   "max_length": self.max_length},
            num_cpus=self.cpus_per_actor, num_gpus=1 if on_gpu else 0)

    def _batches(self, jobs: Sequence[ShardJob]) -> Iterator[pd.DataFrame]:
        import ray

        try:
            yield from self._dataset(jobs).iter_batches(batch_size=None, batch_format="pandas")
        except ray.exceptions.GetTimeoutError:
            need = {"CPU": self.cpus_per_actor, "GPU": 1 if self.device.startswith("cuda") else 0}
            raise UserError(f"no featurizer actor ({need} each) started within "
                            f"{self.actor_start_timeout_s:g} s; the cluster lacks the resources "
                            "(see `ray status`)") from None

    def featurize(self, jobs: Sequence[ShardJob]) -> Iterator[tuple[ShardJob, pd.DataFrame]]:
        """Yield (shard, its feature rows) as each shard completes, in completion order."""
        if not jobs:
            return
        by_path = {_path_key(str(j.path)): j for j in jobs}
        pending: dict[str, list[pd.DataFrame]] = defaultdict(list)
        counts: dict[str, int] = defaultdict(int)
        total = sum(j.n_docs for j in jobs)
        with tqdm(total=total, unit="doc", desc="featurize", file=sys.stderr) as bar:
            for batch in self._batches(jobs):
                for path, rows in batch.groupby("path", sort=False):
                    job = by_path[path]
                    pending[path].append(rows.drop(columns=["path"]))
                    counts[path] += len(rows)
                    bar.update(len(rows))
                    if counts[path] > job.n_docs:
                        raise RuntimeError(f"shard {job.name}: {counts[path]} rows arrived for "
                                           f"{job.n_docs} documents")
                    if counts[path] == job.n_docs:
                        yield job, pd.concat(pending.pop(path), ignore_index=True)
        unfinished = [by_path[p].name for p in pending]
        if unfinished:
            raise RuntimeError(f"shards {unfinished} did not return all their documents")
