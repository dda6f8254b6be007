"""What made an artifact: its config and the library versions, saved beside it."""
from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import importlib.metadata
import platform
import subprocess
from pathlib import Path

_LIBRARIES = ("causalmix", "ray", "torch", "transformers", "tokenizers", "datasets", "econml",
              "lightgbm", "scikit-learn", "numpy", "pandas", "pyarrow")


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in _LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def git_commit(repo: Path | None = None) -> str | None:
    repo = repo or Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True,
                             text=True, timeout=5, check=True)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def provenance(config=None, **extra) -> dict:
    """A JSON-ready record: config (a dataclass or dict), versions, time, git commit."""
    if dataclasses.is_dataclass(config):
        config = dataclasses.asdict(config)
    record = {
        "config": config,
        "versions": library_versions(),
        "git_commit": git_commit(),
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    record.update(extra)
    return record


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()
