"""Reading a built pool: its domains, shards and dev sets."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from causalmix.core.errors import UserError
from causalmix.core.extras import require_extra
from causalmix.core.provenance import sha256_file
from causalmix.datapool.layout import POOL_INDEX
from causalmix.proxy.harness import HarnessSpec

if TYPE_CHECKING:
    import pandas as pd

@dataclass(frozen=True)
class Shard:
    domain: str
    path: Path
    n_docs: int
    n_chars: int

    @property
    def name(self) -> str:
        return f"{self.domain}/{self.path.stem}"


@dataclass(frozen=True)
class DevSet:
    domain: str
    path: Path
    metric: str
    n_docs: int
    answer: object = None
    """The exact-match answer pattern as pool.json stores it (None: `auto`, or an nll set)."""


# What every document shard holds (datapool/build.py writes more: domain, source).
SHARD_NEEDS = ("doc_id", "prompt", "response")


def read_shard(path: Path) -> "pd.DataFrame":
    """A document shard; one that lacks doc_id/prompt/response (overwritten by something else,
    or not written by `pool build`) is refused naming the shard, not met by a KeyError later."""
    import pandas as pd  # deferred: heavy import

    try:
        frame = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for a broken file
        raise UserError(f"pool shard {path} cannot be read ({exc}); rebuild the pool with `launch.py pool build`") from None
    missing = [c for c in SHARD_NEEDS if c not in frame.columns]
    if missing:
        raise UserError(f"pool shard {path} lacks column(s) {missing} (it has {list(frame.columns)[:8]}): "
                        "not a document shard of `pool build`; rebuild the pool")
    return frame


class Pool:
    """A built pool directory (see `datapool.build`)."""

    def __init__(self, root: Path, index: dict):
        self.root = root
        self.index = index
        self.name: str = index["name"]
        self.domains: list[str] = list(index["domains"])

    @classmethod
    def open(cls, path: str | Path, *, build_if_needed: bool = True) -> "Pool":
        """Open a pool directory, or a manifest file (built first when needed or stale)."""
        path = Path(path)
        if path.is_file():
            index_path = path.parent / POOL_INDEX
            stale = (not index_path.is_file()
                     or json.loads(index_path.read_text()).get("manifest_sha256") != sha256_file(path))
            if stale:
                if not build_if_needed:
                    raise UserError(f"pool of manifest {path} is not built; run `causalmix pool build {path}`")
                from causalmix.datapool.build import build_pool  # deferred: heavy import (pandas, pyarrow)

                build_pool(path)
            path = path.parent
        index_path = path / POOL_INDEX
        if not index_path.is_file():
            raise UserError(f"{path} is not a built pool (no {POOL_INDEX}); give a manifest or run "
                            "`causalmix pool build MANIFEST`")
        return cls(path, json.loads(index_path.read_text()))

    def shards(self, domain: str | None = None) -> list[Shard]:
        domains = [domain] if domain else self.domains
        out = []
        for d in domains:
            if d not in self.index["domains"]:
                raise UserError(f"pool {self.name!r} has no domain {d!r} (it has {self.domains})")
            out += [Shard(d, self.root / s["path"], s["n_docs"], s["n_chars"])
                    for s in self.index["domains"][d]["shards"]]
        return out

    def dev_sets(self) -> dict[str, DevSet]:
        out = {}
        for d, info in self.index["domains"].items():
            if info.get("dev"):
                dev = info["dev"]
                out[d] = DevSet(d, self.root / dev["path"], dev["metric"], dev["n_docs"],
                                dev.get("answer"))
        return out

    def harness(self):
        """The pool's lm-evaluation-harness dev entries (proxy.harness.HarnessSpec)."""
        entries = self.index.get("harness", [])
        if entries:  # said before any run starts, not by the first proxy run's evaluation
            require_extra("lm_eval", f"pool {self.name!r}'s lm_eval dev task")
        return [HarnessSpec.from_json(h, self.root) for h in entries]

    def dev_tasks(self) -> dict:
        """Everything the dev suite evaluates: {name: proxy.evaluate.DevTask} for the domains'
        dev sets (read into memory) and `lm_eval:<i>` entries for the harness entries."""
        import pandas as pd  # deferred: heavy import

        from causalmix.proxy.evaluate import DevTask

        tasks = {d: DevTask.from_dev_set(ds, pd.read_parquet(ds.path)) for d, ds in self.dev_sets().items()}
        tasks.update({f"lm_eval:{i}": DevTask(kind="lm_eval", harness=spec)
                      for i, spec in enumerate(self.harness())})
        return tasks

    def n_docs(self, domain: str | None = None) -> int:
        return sum(s.n_docs for s in self.shards(domain))

    def n_chars(self, domain: str) -> int:
        return self.index["domains"][domain]["n_chars"]

    def read(self, domain: str | None = None) -> "pd.DataFrame":
        import pandas as pd  # deferred: heavy import

        return pd.concat([read_shard(s.path) for s in self.shards(domain)], ignore_index=True)
