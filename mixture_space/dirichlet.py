"""Dirichlet sampling of proxy-run mixtures, following RegMix's released recipe.

RegMix (sail-sg/regmix, mixture_config/synthesize_mixture.py) draws each mixture
from Dirichlet(prior * s), with the prior the domains' token shares raised to a
temperature of 0.5 and renormalised, and the concentration s picked at random
among 15 log-spaced values from 0.1 to 5 (small s: a few domains dominate;
large s: close to the prior). A draw is rejected when a domain's weight exceeds
min(15 * its token share, 1) ("no domain used more than 15 epochs"); weights
under 2e-4 are zeroed and the rest rounded to multiples of 2e-4; near-identical
mixtures are dropped (RegMix: L1 distance <= 1e-5 after a lexsort; here: equal after rounding
each weight to a 1e-5 grid, which is O(n) and so usable for 100K candidates). Those are the
defaults here.
Unlike RegMix we renormalise after rounding, so every mixture sums to 1 exactly
as the runs table requires.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from causalmix.core.errors import UserError


def _as_array(values, what: str) -> np.ndarray:
    arr = np.asarray(list(values.values()) if isinstance(values, Mapping) else values, dtype=float)
    if arr.ndim != 1 or arr.size < 2:
        raise UserError(f"{what}: need at least 2 domains, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)) or np.any(arr < 0) or arr.sum() <= 0:
        raise UserError(f"{what}: values must be finite, >= 0 and not all zero, got {arr.tolist()}")
    return arr


def prior_from_token_counts(counts, temperature: float = 0.5) -> np.ndarray:
    """Token shares (counts may be any positive scale, array or {domain: count}) ** temperature,
    renormalised; temperature < 1 flattens a skewed distribution (RegMix uses 0.5)."""
    if not temperature > 0:
        raise UserError(f"temperature must be > 0, got {temperature}")
    shares = _as_array(counts, "token counts")
    shares = shares / shares.sum()
    prior = shares ** temperature
    return prior / prior.sum()


class DirichletMixtureSampler:
    """Seeded, reproducible sampler of distinct mixtures: `.sample(n) -> (n, K)`.

    Successive calls continue the same random stream and never repeat a mixture
    already returned (so a Tune Searcher can ask for one at a time).
    """

    def __init__(self, *, prior, usage_prior=None, max_ratio: float | None = 15.0,
                 min_weight: float = 2e-4, round_to_min_weight: bool = True,
                 concentration_min: float = 0.1, concentration_max: float = 5.0,
                 n_concentrations: int = 15, dedup_tol: float = 1e-5,
                 domains: Sequence[str] | None = None, seed: int = 0,
                 max_draws: int = 2_000_000):
        """
        prior: Dirichlet base measure (K,), renormalised; e.g. `prior_from_token_counts(...)`.
        usage_prior: shares that the `max_ratio` bound refers to (RegMix: the raw token
            shares, before temperature); defaults to `prior`.
        max_ratio: reject a draw whose weight on domain j exceeds min(max_ratio * usage_prior_j, 1);
            None disables the bound.
        min_weight: weights below it are set to 0 (and, with `round_to_min_weight`, the rest
            rounded to multiples of it) before renormalising.
        concentration_min/max, n_concentrations: the log-spaced grid of concentration scales.
        dedup_tol: mixtures equal to an earlier one after rounding to this grid are dropped.
        max_draws: give up (UserError) after this many raw draws without enough mixtures.
        """
        self.prior = _as_array(prior, "prior")
        self.prior = self.prior / self.prior.sum()
        self.usage_prior = (self.prior if usage_prior is None
                            else _as_array(usage_prior, "usage_prior") / np.sum(usage_prior))
        if self.usage_prior.shape != self.prior.shape:
            raise UserError(f"usage_prior has {self.usage_prior.size} domains, prior {self.prior.size}")
        if domains is not None and len(domains) != self.prior.size:
            raise UserError(f"{len(domains)} domain names for a prior of {self.prior.size} domains")
        if max_ratio is not None and not max_ratio > 0:
            raise UserError(f"max_ratio must be > 0 or None, got {max_ratio}")
        if not 0 <= min_weight < 1.0 / self.prior.size:
            raise UserError(f"min_weight must be in [0, 1/K), got {min_weight}")
        if not 0 < concentration_min <= concentration_max:
            raise UserError(f"need 0 < concentration_min <= concentration_max, got "
                            f"{concentration_min}, {concentration_max}")
        self.domains = list(domains) if domains is not None else None
        self.max_ratio = max_ratio
        self.min_weight = float(min_weight)
        self.round_to_min_weight = round_to_min_weight
        self.concentrations = np.logspace(np.log10(concentration_min), np.log10(concentration_max),
                                          max(1, int(n_concentrations)))
        self.dedup_tol = float(dedup_tol)
        self.seed = seed
        self.max_draws = int(max_draws)
        self.upper_bound = (np.ones_like(self.prior) if max_ratio is None
                            else np.minimum(self.usage_prior * max_ratio, 1.0))
        self._rng = np.random.default_rng(seed)
        self._seen: set[bytes] = set()

    @classmethod
    def from_token_counts(cls, counts, *, temperature: float = 0.5, **kwargs):
        """RegMix's setting: tempered prior for the draws, raw shares for the usage bound."""
        if isinstance(counts, Mapping) and "domains" not in kwargs:
            kwargs["domains"] = list(counts)
        raw = _as_array(counts, "token counts")
        return cls(prior=prior_from_token_counts(raw, temperature), usage_prior=raw / raw.sum(),
                   **kwargs)

    @property
    def n_domains(self) -> int:
        return self.prior.size

    def _draw(self, m: int) -> np.ndarray:
        scale = self._rng.choice(self.concentrations, size=m)
        gam = self._rng.gamma(self.prior[None, :] * scale[:, None])
        total = gam.sum(axis=1)
        gam, total = gam[total > 0], total[total > 0]
        w = gam / total[:, None]
        w = w[(w <= self.upper_bound[None, :]).all(axis=1)]
        if self.min_weight > 0:
            w = np.where(w < self.min_weight, 0.0, w)
            w = w[w.sum(axis=1) > 0]
            w = w / w.sum(axis=1, keepdims=True)
            if self.round_to_min_weight:
                w = np.round(w / self.min_weight) * self.min_weight
                w = w[w.sum(axis=1) > 0]
                w = w / w.sum(axis=1, keepdims=True)
        return w

    def _key(self, w: np.ndarray) -> bytes:
        return np.round(w / self.dedup_tol).astype(np.int64).tobytes()

    def sample(self, n: int) -> np.ndarray:
        """`n` new distinct mixtures, shape (n, K), rows summing to 1."""
        if n < 0:
            raise UserError(f"cannot sample {n} mixtures")
        kept: list[np.ndarray] = []
        drawn = 0
        while len(kept) < n:
            batch = max(64, int(1.5 * (n - len(kept))))
            drawn += batch
            for w in self._draw(batch):
                key = self._key(w)
                if key not in self._seen:
                    self._seen.add(key)
                    kept.append(w)
                    if len(kept) == n:
                        break
            if len(kept) < n and drawn >= self.max_draws:
                raise UserError(f"Dirichlet sampler found only {len(kept)} of {n} distinct mixtures "
                                f"in {drawn} draws; loosen max_ratio ({self.max_ratio}) or dedup_tol")
        return np.array(kept).reshape(n, self.n_domains)

    def sample_dicts(self, n: int) -> list[dict[str, float]]:
        """Like `sample`, as {domain: weight} (needs `domains`)."""
        if self.domains is None:
            raise UserError("sample_dicts needs the sampler built with domain names")
        return [dict(zip(self.domains, map(float, row))) for row in self.sample(n)]
