"""Data-state sampler: which shards (sub-pool) each domain of a proxy run draws from.

A causal forest does not extrapolate, so the runs' covariates (per-domain means
of document features) must span the values of the pools the fitted model will
later be asked about. A pool's covariate is roughly the document-weighted mean
of its shards' means; a sub-pool of k shards therefore reaches the extremes of
the shard range when k is small and the pool-wide value when k is all shards.

Per run and domain, the sampler draws a size k uniformly between `min_shards`
and `max_fraction` x the domain's shards, then, with probability `window_prob`,
takes k *adjacent* shards in the domain's quality order (first principal axis
of the standardised shard feature means) at a uniform offset, else k shards at
random. Windows put runs at both ends of the range and everywhere between;
random subsets concentrate near the pool mean, where new pools usually sit.
The draw for run i uses its own stream `(seed, i)`: independent of the mixture,
of other runs and of the order in which runs are asked for (so a resumed sweep
redraws the same states).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Mapping, Sequence

import numpy as np

from causalmix.core.errors import UserError


@dataclass(frozen=True)
class StateSamplerConfig:
    """Settings of the data-state sampler (recorded with the sweep)."""

    min_shards: int = 1
    """Fewest shards a domain of one run draws from."""
    max_fraction: float = 1.0
    """Largest share of a domain's shards one run draws from (1.0: possibly the whole pool)."""
    window_prob: float = 0.75
    """Probability of a window of adjacent shards in quality order (else a random subset)."""
    seed: int = 0
    """Seed of the state stream (run i uses the stream (seed, i))."""

    def __post_init__(self):
        if self.min_shards < 1:
            raise ValueError(f"min_shards must be >= 1, got {self.min_shards}")
        if not 0.0 < self.max_fraction <= 1.0:
            raise ValueError(f"max_fraction must lie in (0, 1], got {self.max_fraction}")
        if not 0.0 <= self.window_prob <= 1.0:
            raise ValueError(f"window_prob must lie in [0, 1], got {self.window_prob}")


DataState = dict[str, tuple[str, ...]]
"""{domain: names of the shards the run draws that domain from}."""


def quality_order(shard_means: np.ndarray) -> np.ndarray:
    """Indices ordering shards along the first principal axis of their standardised feature
    means (rows: shards, columns: features); ties and constant features leave the input order."""
    means = np.asarray(shard_means, dtype=float)
    if means.ndim != 2 or len(means) < 2:
        return np.arange(len(means))
    std = means.std(axis=0)
    z = (means - means.mean(axis=0)) / np.where(std > 0, std, 1.0)
    if not np.any(z):
        return np.arange(len(means))
    _, _, vt = np.linalg.svd(z, full_matrices=False)
    axis = vt[0] * np.sign(vt[0][np.argmax(np.abs(vt[0]))])
    return np.argsort(z @ axis, kind="stable")


class DataStateSampler:
    """`state(i) -> {domain: shard names}` for run i; deterministic given the config."""

    def __init__(self, shards: Mapping[str, Sequence[str]], *,
                 config: StateSamplerConfig = StateSamplerConfig(),
                 shard_means: Mapping[str, np.ndarray] | None = None):
        """
        shards: {domain: shard names}, every domain with at least one shard.
        shard_means: {domain: (n_shards, n_features) feature means per shard, rows in the
            order of `shards[domain]`}; orders the windows. Without it, windows run over a
            fixed random order (equivalent to random subsets).
        """
        self.config = config
        self.shards = {d: list(names) for d, names in shards.items()}
        for domain, names in self.shards.items():
            if not names:
                raise UserError(f"domain {domain!r} has no shards to draw a data state from")
            if len(names) < config.min_shards:
                raise UserError(f"state sampler: min_shards={config.min_shards} but domain "
                                f"{domain!r} has only {len(names)} shard(s)")
        self.order = {}
        for i, (domain, names) in enumerate(self.shards.items()):
            means = None if shard_means is None else shard_means.get(domain)
            if means is not None and len(means) != len(names):
                raise UserError(f"state sampler: {len(means)} shard means for the {len(names)} "
                                f"shards of domain {domain!r}")
            self.order[domain] = (quality_order(means) if means is not None
                                  else np.random.default_rng([config.seed, 1 << 20, i]).permutation(len(names)))

    def state(self, run_index: int) -> DataState:
        cfg = self.config
        rng = np.random.default_rng([cfg.seed, run_index])
        out: DataState = {}
        for domain, names in self.shards.items():
            n = len(names)
            k_max = max(cfg.min_shards, int(np.floor(cfg.max_fraction * n)))
            k = int(rng.integers(cfg.min_shards, k_max + 1))
            if rng.random() < cfg.window_prob:
                start = int(rng.integers(0, n - k + 1))
                chosen = self.order[domain][start:start + k]
            else:
                chosen = rng.choice(n, size=k, replace=False)
            out[domain] = tuple(names[j] for j in sorted(int(c) for c in chosen))
        return out

    def settings(self) -> dict:
        """What to record beside the sweep: the config and each domain's quality order."""
        return {"config": asdict(self.config),
                "quality_order": {d: [self.shards[d][j] for j in order]
                                  for d, order in self.order.items()}}


def coverage(run_covariates: Sequence[Mapping[str, float]],
             targets: Mapping[str, Mapping[str, float]]) -> dict[str, dict]:
    """For each target pool, which of its covariates fall outside the runs' [min, max] range.

    Returns {target: {"outside": {covariate: [value, run_min, run_max]}, "covered": bool}}.
    """
    report = {}
    for target, values in targets.items():
        outside = {}
        for name, value in values.items():
            seen = [r[name] for r in run_covariates if name in r and np.isfinite(r[name])]
            if not seen:
                outside[name] = [value, None, None]
            elif not min(seen) <= value <= max(seen):
                outside[name] = [value, min(seen), max(seen)]
        report[target] = {"outside": outside, "covered": not outside}
    return report
