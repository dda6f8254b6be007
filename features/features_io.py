"""The features directory written by `launch.py featurize` and its reader.

Layout:
  FEATURES_DIR/shards/<domain>/<shard>.parquet   one per pool shard, written atomically
  FEATURES_DIR/features.json                     manifest, written last

Each feature shard holds one row per `doc_id` of its pool shard (sorted by
doc_id) with FEATURE_COLUMNS, and records in its Parquet metadata the key it was
computed under (model id and fingerprint, feature version, context length, and
the checksum of the source shard). A rerun skips shards whose key matches, so a
killed run resumes where it stopped. The manifest exists only once every shard
of the run is present; `load_features` requires it.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable

import pandas as pd
import pyarrow.parquet as pq

from causalmix.core.atomic import atomic_write_json, atomic_write_parquet
from causalmix.core.errors import UserError
from causalmix.features.style import STYLE_COLUMNS

MANIFEST = "features.json"
FEATURE_COLUMNS = ("doc_id", "domain", "n_tokens", "truncated", "normalized_loss", "hes",
                   *STYLE_COLUMNS, "writing_style")
_META_PREFIX = "causalmix."


@dataclass(frozen=True)
class ShardKey:
    """What a feature shard was computed from; equal keys mean equal output."""

    model: str
    model_fingerprint: str
    feature_version: str
    max_length: int
    source_sha256: str

    def metadata(self) -> dict[str, str]:
        return {_META_PREFIX + k: str(v) for k, v in asdict(self).items()}

    @classmethod
    def read(cls, path: Path) -> "ShardKey | None":
        """The key stored in a feature shard; None when absent or unreadable."""
        try:
            raw = pq.read_schema(path).metadata or {}
        except (OSError, ValueError):
            return None
        meta = {k.decode(): v.decode() for k, v in raw.items()}
        try:
            values = {name: meta[_META_PREFIX + name] for name in cls.__dataclass_fields__}
            values["max_length"] = int(values["max_length"])
        except (KeyError, ValueError):
            return None
        return cls(**values)


def model_fingerprint(name_or_path: str) -> str:
    """sha256 over a local model's config, tokenizer and weight files; for a hub id,
    the id itself (hub revisions are immutable once cached)."""
    root = Path(name_or_path)
    if not root.is_dir():
        return "hub:" + name_or_path
    digest = hashlib.sha256()
    patterns = ("config.json", "tokenizer*.json", "*.safetensors", "*.bin")
    for path in sorted({p for pattern in patterns for p in root.glob(pattern)}):
        digest.update(path.name.encode())
        with open(path, "rb") as fh:
            while block := fh.read(1 << 20):
                digest.update(block)
    return digest.hexdigest()


def shard_output_path(features_dir: Path, domain: str, shard_stem: str) -> Path:
    return Path(features_dir) / "shards" / domain / f"{shard_stem}.parquet"


def write_feature_shard(path: Path, frame: pd.DataFrame, key: ShardKey) -> Path:
    missing = [c for c in FEATURE_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"feature rows for {path} lack columns {missing}")
    frame = frame.loc[:, list(FEATURE_COLUMNS)].sort_values("doc_id", kind="stable")
    return atomic_write_parquet(path, frame.reset_index(drop=True), metadata=key.metadata())


def write_manifest(features_dir: Path, record: dict) -> Path:
    return atomic_write_json(Path(features_dir) / MANIFEST, record)


def read_manifest(features_dir: str | Path) -> dict:
    features_dir = Path(features_dir)
    path = features_dir / MANIFEST
    if not path.is_file():
        raise UserError(f"{features_dir} is not a complete features directory (no {MANIFEST}); "
                        "run `launch.py featurize` (a rerun resumes an interrupted one)")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise UserError(f"{path} is not valid JSON: {exc}") from None


def load_features(features_dir: str | Path, domains: Iterable[str] | None = None) -> pd.DataFrame:
    """All per-document features of a features directory (or of `domains` only).

    `DataFrame.attrs` carries `model`, `model_fingerprint`, `feature_version`
    and `pool` from the manifest.
    """
    features_dir = Path(features_dir)
    manifest = read_manifest(features_dir)
    present = list(manifest["domains"])
    wanted = present if domains is None else list(domains)
    lacking = [d for d in wanted if d not in present]
    if lacking:
        raise UserError(f"features directory {features_dir} has no domain(s) {lacking} "
                        f"(it has {present}); featurize a pool that has them")
    frames = []
    for shard in manifest["shards"]:
        if shard["domain"] not in wanted:
            continue
        path = features_dir / shard["path"]
        key = ShardKey.read(path)
        if key is None:
            raise UserError(f"feature shard {path} listed in {features_dir / MANIFEST} is missing "
                            "or unreadable; rerun `launch.py featurize`")
        if (key.model_fingerprint, key.feature_version) != (manifest["model_fingerprint"],
                                                            manifest["feature_version"]):
            raise UserError(f"feature shard {path} was computed with another model or feature "
                            f"version than {MANIFEST} records; rerun `launch.py featurize`")
        frames.append(pd.read_parquet(path))
    frame = pd.concat(frames, ignore_index=True)
    duplicated = frame["doc_id"][frame["doc_id"].duplicated()]
    if len(duplicated):
        raise UserError(f"features directory {features_dir} has duplicate doc_id(s), "
                        f"e.g. {duplicated.iloc[:3].tolist()}")
    frame.attrs.update({k: manifest[k] for k in ("model", "model_fingerprint", "feature_version",
                                                 "pool")})
    return frame


def read_features(path: str | Path, what: str = "features") -> pd.DataFrame:
    """Per-document features from a directory written by `launch.py featurize` (checked as
    `load_features` does), or from one Parquet file with the same columns (doc_id, domain,
    feature columns...)."""
    path = Path(path)
    if path.is_dir():
        return load_features(path)
    if path.suffix.lower() != ".parquet":
        raise UserError(f"{what} {path}: expected the directory `launch.py featurize` wrote, "
                        "or a .parquet file")
    if not path.is_file():
        raise UserError(f"{what} not found: {path} (give the directory `launch.py featurize` "
                        "wrote, or a .parquet file)")
    try:
        return pd.read_parquet(path)
    except Exception as exc:  # noqa: BLE001 - any reader failure means a bad file
        raise UserError(f"{what} file {path} could not be read: {exc}") from None
