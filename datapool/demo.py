"""The three deterministic demo pools: `demo-small` (the proxy pool) and two target pools,
`demo-large` and `demo-large-flip` (each about 8x larger, with opposite quality profiles).

The data state is what decides a domain's marginal return here. Each shard of each domain
gets its own damage rate: that share of its samples is damaged by the domain's fixed wrong
rule (datapool/demo_damage.py: arithmetic solved by adding every number, code with its
decisions inverted, documentation negated, instructions carried out the wrong way), damage
that teaches the wrong thing for the very skill the domain's dev set measures, so that
training on a mostly damaged shard *raises* the domain's dev NLL while a clean shard lowers it
(measured: `benchmarks/bench_damage.py`, docs/validate.md). The damage changes the proxy
model's loss on the document, so the `normalized_loss` covariate sees it.

demo-small's shard rates span 0..`max_noise` evenly, so proxy runs drawing different shards
see every data state from clean to mostly damaged. The target pools' rates cluster around a
per-domain centre: demo-large has arithmetic and dialog mostly clean and code and docs_qa
mostly damaged; demo-large-flip has each domain at `max_noise` minus that centre, so what is
clean in one is damaged in the other. Both lie inside the range the sweep's states cover. A
state-agnostic fit of demo-small sees each domain at its average state (rate ~`max_noise`/2)
and recommends one mixture for both, which cannot suit both; a state-aware fit can move weight
to demo-large's arithmetic and dialog and to demo-large-flip's code and docs_qa.
The true rate of every shard is written to `demo_profile.json` beside the manifest.
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from causalmix.core.atomic import atomic_directory, atomic_write_json, atomic_write_text
from causalmix.datapool.build import build_pool
from causalmix.datapool.demo_damage import damaged
from causalmix.datapool.demo_harness import HARNESS_ENTRY, write_harness_task
from causalmix.datapool.demo_sources import DOMAINS, clean_sample
from causalmix.datapool.pool import Pool

SMALL = "demo-small"
TARGET_POOLS = ("demo-large", "demo-large-flip")
"""The target pools, each validated on: opposite states of every domain."""

@dataclass(frozen=True)
class DemoPoolSpec:
    """Sizes and quality profile of the demo pools."""

    seed: int = 0
    """Seed of every random choice; same seed -> same documents and doc_ids."""
    small_shards: int = 8
    """Shards per domain in demo-small."""
    small_docs_per_shard: int = 100
    """Documents per shard in demo-small."""
    large_shards: int = 16
    """Shards per domain in demo-large."""
    large_docs_per_shard: int = 400
    """Documents per shard in demo-large (16 x 400 = 8 x (8 x 100))."""
    dev_docs: int = 64
    """Held-out dev documents per domain (clean, from held-out material)."""
    max_noise: float = 1.0
    """Highest damage rate of any shard."""
    large_noise_centre: dict = field(default_factory=lambda: {
        "arithmetic": 0.05, "code": 0.95, "docs_qa": 0.95, "dialog": 0.05})
    """demo-large: mean damage rate per domain (its shards spread +-`large_noise_spread`
    around it); demo-large-flip's is max_noise minus it. Near clean and near fully damaged:
    a domain's return reverses only when almost all of it is damaged (at 75 % damage the
    proxy sweep still measured two thirds of the clean return for arithmetic, docs/validate.md),
    and demo-small's shards span 0..max_noise, so both target pools lie inside its range."""
    large_noise_spread: float = 0.05
    """Half-width of the uniform spread of the target pools' shard rates around the centre."""

    def __post_init__(self):
        for name in ("small_shards", "small_docs_per_shard", "large_shards", "large_docs_per_shard", "dev_docs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.max_noise <= 1.0:
            raise ValueError(f"max_noise must lie in [0, 1], got {self.max_noise}")
        if not 0.0 <= self.large_noise_spread <= 0.5:
            raise ValueError(f"large_noise_spread must lie in [0, 0.5], got {self.large_noise_spread}")
        missing = set(DOMAINS) - set(self.large_noise_centre)
        if missing:
            raise ValueError(f"large_noise_centre lacks domains {sorted(missing)}")
        outside = {d: c for d, c in self.large_noise_centre.items() if not 0.0 <= c <= self.max_noise}
        if outside:
            raise ValueError(f"large_noise_centre {outside} must lie in [0, max_noise={self.max_noise}] "
                             "(demo-large-flip's centre is max_noise minus it)")


def shard_samples(domain: str, n_docs: int, noise_rate: float, rng: random.Random) -> list[dict]:
    samples: list[dict] = []
    for _ in range(n_docs):
        sample = clean_sample(domain, rng)
        if rng.random() < noise_rate:
            sample = damaged(domain, sample, rng)
        samples.append(sample)
    return samples


def noise_profile(spec: DemoPoolSpec, pool: str, domain: str) -> list[float]:
    """Damage rate of each shard of `domain` in `pool`."""
    rng = np.random.default_rng([spec.seed, DOMAINS.index(domain), ([SMALL, *TARGET_POOLS]).index(pool)])
    if pool == SMALL:
        rates = np.linspace(0.0, spec.max_noise, spec.small_shards)
        return [float(r) for r in rng.permutation(rates)]
    centre = spec.large_noise_centre[domain]
    if pool == TARGET_POOLS[1]:
        centre = spec.max_noise - centre
    spread = spec.large_noise_spread
    rates = np.clip(centre + rng.uniform(-spread, spread, spec.large_shards), 0.0, spec.max_noise)
    return [round(float(r), 4) for r in rates]


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def _dev_rows(domain: str, spec: DemoPoolSpec) -> list[dict]:
    rng = random.Random(f"{spec.seed}-dev-{domain}")
    return [clean_sample(domain, rng, split="dev") for _ in range(spec.dev_docs)]


def write_demo_pool(pools_dir: str | Path, pool: str, spec: DemoPoolSpec) -> Path:
    """Write sources, manifest and shards of `pool` under `pools_dir/pool` atomically."""
    if pool not in (SMALL, *TARGET_POOLS):
        raise ValueError(f"unknown demo pool {pool!r}; demo pools are {[SMALL, *TARGET_POOLS]}")
    shards, per_shard = ((spec.small_shards, spec.small_docs_per_shard) if pool == SMALL
                         else (spec.large_shards, spec.large_docs_per_shard))
    target = Path(pools_dir) / pool
    with atomic_directory(target, kind="demo pool", markers=("demo_profile.json",)) as tmp:
        profile = {}
        for domain in DOMAINS:
            rates = noise_profile(spec, pool, domain)
            profile[domain] = rates
            for k, rate in enumerate(rates):
                rng = random.Random(f"{spec.seed}-{pool}-{domain}-{k}")
                _write_jsonl(tmp / "sources" / domain / f"part-{k:04d}.jsonl",
                             shard_samples(domain, per_shard, rate, rng))
            _write_jsonl(tmp / "sources" / "dev" / f"{domain}.jsonl", _dev_rows(domain, spec))
        # One dev task through lm-evaluation-harness, so the demo exercises that path end to end:
        # on demo-large only, i.e. in one target pool's validation runs. In every proxy run and
        # both pools' validation runs its fixed cost per call (about 2 s on the tiny model) would
        # push the demo past its 15 minutes; the other runs keep the four native NLL dev sets.
        harness = pool == TARGET_POOLS[0]
        if harness:
            write_harness_task(tmp / "sources" / "harness", _dev_rows("arithmetic", spec), spec.seed)
        manifest = {
            "name": pool,
            "shard_size": per_shard,
            "domains": [{
                "name": d,
                "sources": [{"path": f"sources/{d}/*.jsonl", "columns": {"prompt": "prompt", "response": "response"}}],
                # NLL for every domain: the tiny target model never gets an exact-match answer
                # right (arithmetic_em was 0.000 in every run), so that metric carried only noise
                "dev": {"path": f"sources/dev/{d}.jsonl", "metric": "nll"},
            } for d in DOMAINS],
            **({"dev": [HARNESS_ENTRY]} if harness else {}),
        }
        atomic_write_text(tmp / "manifest.yaml", yaml.safe_dump(manifest, sort_keys=False))
        atomic_write_json(tmp / "demo_profile.json", {"pool": pool, "noise_rate_per_shard": profile,
                                                      "spec": spec.__dict__})
        build_pool(tmp / "manifest.yaml")
    return target


def demo_texts_for_tokenizer(pool_dir: str | Path) -> list[str]:
    """Every prompt and response of a built demo pool (tokenizer training material)."""
    frame = Pool.open(pool_dir).read()
    return [t for pair in zip(frame["prompt"], frame["response"]) for t in pair]
