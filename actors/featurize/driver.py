"""The featurize stage: per-document features (normalized_loss, hes, style.*, writing_style)
of a pool, computed by the featurizer actor pool (actors/featurize/featurizer.py).

Writes FEATURES_DIR/shards/<domain>/<shard>.parquet (one per pool shard) and
FEATURES_DIR/features.json last; see features/features_io.py and docs/featurize.md.
A rerun skips the shards already featurized with the same model and feature
version, so an interrupted run resumes. `launch.py featurize` and the Python API
call `featurize`; the demo calls `featurize_pools` (its three pools, one actor pool).
"""
from __future__ import annotations

import time
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import pyarrow.parquet as pq

from causalmix.actors.featurize.featurizer import FeaturizerPool, ShardJob
from causalmix.core.atomic import check_not_input
from causalmix.core.errors import UserError
from causalmix.core.logs import get_logger
from causalmix.core.provenance import provenance, sha256_file
from causalmix.core.ray_setup import init_ray
from causalmix.datapool.build import pool_parts
from causalmix.datapool.pool import Pool
from causalmix.features.doc_features import FEATURE_VERSION
from causalmix.features.features_io import (MANIFEST, ShardKey, model_fingerprint, read_manifest,
                                            shard_output_path, write_feature_shard, write_manifest)
from causalmix.lm.loading import load_tokenizer, max_context

log = get_logger(__name__)


@dataclass(frozen=True)
class FeaturizeConfig:
    """Settings of `launch.py featurize`."""

    pool: str = ""
    """Pool directory or manifest YAML (a manifest is built first when needed)."""
    model: str = ""
    """Reference model: a local save_pretrained directory or a Hugging Face id (the proxy's base model)."""
    out: str = ""
    """Features directory to write (created; a rerun resumes it)."""
    domains: tuple | None = None
    """Featurize only these domains (default: every domain of the pool)."""
    concurrency: int | None = None
    """Featurizer actors (default: one per GPU; on CPU-only clusters, all CPUs but one)."""
    batch_tokens: int = 8192
    """Padded tokens per forward pass (longest document x documents in the batch)."""
    cpus_per_actor: float = 1.0
    """CPUs reserved by each actor (its torch threads on CPU)."""
    device: str = "auto"
    """'auto' (GPU actors when the cluster has GPUs), 'cpu' or 'cuda'."""
    max_length: int | None = None
    """Context length documents are truncated to (default: the model's)."""
    address: str | None = None
    """Ray cluster address (default: RAY_ADDRESS, else a local Ray)."""
    actor_start_timeout_s: float = 600.0
    """Fail, naming the resources needed, when no featurizer actor has started by then."""

    def __post_init__(self):
        for name in ("pool", "model", "out"):
            if not getattr(self, name):
                raise ValueError(f"{name} is required")
        if self.concurrency is not None and self.concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {self.concurrency}")
        if self.batch_tokens < 1:
            raise ValueError(f"batch_tokens must be >= 1, got {self.batch_tokens}")
        if self.cpus_per_actor <= 0:
            raise ValueError(f"cpus_per_actor must be > 0, got {self.cpus_per_actor}")
        if self.device not in ("auto", "cpu") and not self.device.startswith("cuda"):
            raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {self.device!r}")
        if self.actor_start_timeout_s <= 0:
            raise ValueError(f"actor_start_timeout_s must be > 0, got {self.actor_start_timeout_s}")
        if self.max_length is not None and self.max_length < 2:
            raise ValueError(f"max_length must be >= 2, got {self.max_length}")
        if self.domains is not None:
            object.__setattr__(self, "domains", tuple(self.domains))


def _reference_model(cfg: FeaturizeConfig) -> tuple[str, int]:
    """The model id as recorded, and the context length; fails early on a model that does not load."""
    from transformers import AutoConfig

    local = Path(cfg.model)
    model = str(local.resolve()) if local.exists() else cfg.model
    if not local.exists() and cfg.model.startswith(("/", ".", "~")):
        raise UserError(f"model directory {cfg.model} does not exist")
    if local.exists() and not (local / "config.json").is_file():
        raise UserError(f"model directory {local} has no config.json (not a saved model)")
    try:
        model_config = AutoConfig.from_pretrained(model)
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot load model config from {cfg.model!r}: {exc}") from None
    tokenizer = load_tokenizer(model)
    limit = max_context(types.SimpleNamespace(config=model_config), tokenizer)
    if cfg.max_length is not None:
        limit = min(limit, cfg.max_length)
    return model, limit


def _plan(cfg: FeaturizeConfig, pool, model: str, fingerprint: str, max_length: int):
    """(every shard with its output path and key, the jobs still to run)."""
    domains = list(cfg.domains) if cfg.domains else pool.domains
    lacking = [d for d in domains if d not in pool.domains]
    if lacking:
        raise UserError(f"pool {pool.name!r} ({pool.root}) has no domain(s) {lacking}; "
                        f"it has {pool.domains}")
    shards, jobs = [], []
    for shard in pool.shards():
        if shard.domain not in domains:
            continue
        if not shard.path.is_file():
            raise UserError(f"shard {shard.path} listed in pool {pool.name!r} is missing")
        n_docs = pq.read_metadata(shard.path).num_rows
        if n_docs == 0:
            raise UserError(f"shard {shard.path} of domain {shard.domain!r} is empty; rebuild the "
                            "pool or drop the shard")
        key = ShardKey(model, fingerprint, FEATURE_VERSION, max_length, sha256_file(shard.path))
        out = shard_output_path(Path(cfg.out), shard.domain, shard.path.stem)
        shards.append((shard, out, key, n_docs))
        if ShardKey.read(out) != key:
            jobs.append(ShardJob(shard.path, n_docs, shard.name))
    return shards, jobs


def check_features_out(cfg: FeaturizeConfig) -> None:
    """The features folder is written shard by shard: it may not be a file, nor be, hold or lie
    inside the pool or a local reference model (a pool's shards would be overwritten)."""
    model = [cfg.model] if Path(cfg.model).exists() else []
    check_not_input(cfg.out, [*pool_parts(cfg.pool), *model], kind="features folder")
    if Path(cfg.out).exists() and not Path(cfg.out).is_dir():
        raise UserError(f"--out {cfg.out}: exists and is not a folder; name the features folder to write")


def featurize(cfg: FeaturizeConfig) -> dict:
    """Featurize (or finish featurizing) a pool; returns the manifest record."""
    return featurize_pools([cfg])[0]


# The settings of the actor pool itself: pools featurized together must agree on them.
SHARED_SETTINGS = ("model", "concurrency", "batch_tokens", "cpus_per_actor", "device", "max_length",
                   "address", "actor_start_timeout_s")


def featurize_pools(cfgs: Sequence[FeaturizeConfig]) -> list[dict]:
    """Featurize several pools with one actor pool; returns each pool's manifest record.

    The actors start once (on CPU here that is about 12 s of the demo's 3 pools' 65 s: worker
    processes importing torch and loading the model), and the shards of every pool share them.
    Each pool's features folder is what `featurize` alone writes; its `wall_s` is the whole run's.
    """
    if not cfgs:
        return []
    first = cfgs[0]
    for cfg in cfgs[1:]:
        differing = [n for n in SHARED_SETTINGS if getattr(cfg, n) != getattr(first, n)]
        if differing:
            raise ValueError(f"pools featurized together must share {differing}: {cfg.pool!r} differs "
                             f"from {first.pool!r}")
    outs = [Path(cfg.out).resolve() for cfg in cfgs]
    if len(set(outs)) < len(outs):
        raise UserError(f"two pools would write the same features folder: {[cfg.out for cfg in cfgs]}")
    start = time.perf_counter()
    for cfg in cfgs:
        check_features_out(cfg)
    model, max_length = _reference_model(first)
    fingerprint = model_fingerprint(model)
    plans = []
    for cfg in cfgs:
        pool = Pool.open(cfg.pool)
        shards, jobs = _plan(cfg, pool, model, fingerprint, max_length)
        out = Path(cfg.out)
        if (out / MANIFEST).is_file():
            old = read_manifest(out)
            if jobs or (old.get("model_fingerprint"), old.get("feature_version")) != (fingerprint, FEATURE_VERSION):
                (out / MANIFEST).unlink()  # the directory is incomplete until this run's manifest
        log.info("[featurize] %s: %d of %d shards already featurized, %d to run", pool.name,
                 len(shards) - len(jobs), len(shards), len(jobs))
        plans.append((cfg, pool, shards, jobs))
    jobs = [job for *_, pool_jobs in plans for job in pool_jobs]
    if jobs:
        init_ray(first.address)
        workers = FeaturizerPool(model, max_length=max_length, batch_tokens=first.batch_tokens,
                                 concurrency=first.concurrency, device=first.device,
                                 cpus_per_actor=first.cpus_per_actor,
                                 actor_start_timeout_s=first.actor_start_timeout_s)
        log.info("[featurize] %d actor(s) on %s", workers.size, workers.device)
        keys = {shard.path: (out_path, key) for _, _, shards, _ in plans for shard, out_path, key, _ in shards}
        for job, rows in workers.featurize(jobs):
            duplicated = rows["doc_id"][rows["doc_id"].duplicated()]
            if len(duplicated):
                raise UserError(f"shard {job.path} repeats doc_id(s) {duplicated.iloc[:3].tolist()}")
            out_path, key = keys[job.path]
            write_feature_shard(out_path, rows, key)
    wall_s = round(time.perf_counter() - start, 2)
    records = []
    for cfg, pool, shards, pool_jobs in plans:
        out = Path(cfg.out)
        record = provenance(cfg, pool=pool.name, pool_root=str(pool.root), model=model,
                            model_fingerprint=fingerprint, feature_version=FEATURE_VERSION,
                            max_length=max_length,
                            domains=sorted({shard.domain for shard, *_ in shards}, key=pool.domains.index),
                            n_docs=sum(n for *_, n in shards),
                            shards=[{"domain": shard.domain, "source": str(shard.path),
                                     "path": str(out_path.relative_to(out)), "n_docs": n,
                                     "source_sha256": key.source_sha256}
                                    for shard, out_path, key, n in shards],
                            shards_computed=len(pool_jobs), wall_s=wall_s)
        write_manifest(out, record)
        records.append(record)
    return records
