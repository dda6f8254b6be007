"""Mixtures a team can train on: per-domain bounds from token budgets, epoch caps and fixed weights.

A target token budget T and at most E epochs of each domain's d_j tokens bound its weight by
u_j = min(1, E d_j / T); a fixed weight sets l_j = u_j = w; a lower bound sets l_j. The feasible
region {l <= w <= u, sum w = 1} is non-empty iff l <= u and sum l <= 1 <= sum u; anything else
is refused with the numbers. `project_to_bounds` is the exact Euclidean projection onto it,
which every policy uses in place of the plain simplex projection.
"""
from __future__ import annotations

import dataclasses
from typing import Mapping

import numpy as np

from causalmix.core.errors import UserError

DEFAULT_MAX_EPOCHS = 4.0
"""Epochs of one domain a mixture may use by default: SFT data is usually seen 1 to 3 times, and
beyond about 4 repetitions extra epochs are worth little (Muennighoff et al. 2023); RegMix allows
15 for pre-training, Olmix's repetition_factor plays the same role."""
_TOL = 1e-12


@dataclasses.dataclass(frozen=True)
class MixtureBounds:
    """Per-domain lower and upper bounds of a mixture, with where each upper bound came from."""

    domains: tuple[str, ...]
    lower: np.ndarray
    upper: np.ndarray
    sources: Mapping[str, str]

    def __post_init__(self):
        lo, hi = np.asarray(self.lower, dtype=float), np.asarray(self.upper, dtype=float)
        bad = [f"{d}: lower {a:.4g} > upper {b:.4g}" for d, a, b in zip(self.domains, lo, hi) if a > b + _TOL]
        if bad:
            raise UserError("infeasible mixture constraints: " + "; ".join(bad))
        if lo.sum() > 1 + 1e-9:
            raise UserError(f"infeasible mixture constraints: fixed and lower weights sum to {lo.sum():.4g} > 1 "
                            f"({self._listing(lo)})")
        if hi.sum() < 1 - 1e-9:
            raise UserError(f"infeasible mixture constraints: the upper bounds sum to {hi.sum():.4g} < 1, so no "
                            f"mixture fits the token budget within the epoch cap ({self._listing(hi)})")

    def _listing(self, values) -> str:
        return ", ".join(f"{d}={v:.4g}" for d, v in zip(self.domains, values))

    @classmethod
    def build(cls, domains, *, domain_tokens: Mapping[str, float] | None = None,
              target_tokens: float | None = None, max_epochs: float = DEFAULT_MAX_EPOCHS,
              fixed: Mapping[str, float] | None = None, minimum: Mapping[str, float] | None = None
              ) -> "MixtureBounds":
        """Bounds for `domains`; `target_tokens` defaults to the pool's total."""
        domains = tuple(domains)
        fixed, minimum = dict(fixed or {}), dict(minimum or {})
        for what, given in (("--fix", fixed), ("--min", minimum)):
            unknown = sorted(set(given) - set(domains))
            if unknown:
                raise UserError(f"{what}: unknown domain(s) {unknown}; the model's domains are {list(domains)}")
            for d, w in given.items():
                if not (isinstance(w, (int, float)) and not isinstance(w, bool) and np.isfinite(w) and 0 <= w <= 1):
                    raise UserError(f"{what} {d}={w!r}: a weight must be a number in [0, 1]")
        both = sorted(set(fixed) & set(minimum))
        if both:
            raise UserError(f"domain(s) {both} are both fixed and lower-bounded; give one")
        lower = np.array([fixed.get(d, minimum.get(d, 0.0)) for d in domains], dtype=float)
        upper = np.ones(len(domains))
        sources = {}
        if domain_tokens is not None:
            missing = [d for d in domains if d not in domain_tokens]
            if missing:
                raise UserError(f"token counts lack domain(s) {missing}")
            if not (np.isfinite(max_epochs) and max_epochs > 0):
                raise UserError(f"max epochs must be a positive number, got {max_epochs!r}")
            total = float(sum(domain_tokens[d] for d in domains))
            budget = total if target_tokens is None else float(target_tokens)
            if not (np.isfinite(budget) and budget > 0):
                raise UserError(f"target tokens must be a positive number, got {target_tokens!r}")
            for j, d in enumerate(domains):
                cap = max_epochs * float(domain_tokens[d]) / budget
                if cap < 1:
                    upper[j] = cap
                    sources[d] = (f"{max_epochs:g} epochs of its {float(domain_tokens[d]):.4g} tokens in a budget "
                                  f"of {budget:.4g}")
        for d, w in fixed.items():
            j = domains.index(d)
            if w > upper[j] + _TOL:
                raise UserError(f"infeasible mixture constraints: --fix {d}={w:g} exceeds its cap {upper[j]:.4g} "
                                f"({sources.get(d, '')})")
            upper[j] = w
            sources[d] = "fixed"
        return cls(domains=domains, lower=lower, upper=upper, sources=sources)

    @property
    def is_trivial(self) -> bool:
        return bool((self.lower <= _TOL).all() and (self.upper >= 1 - _TOL).all())

    def project(self, v: np.ndarray) -> np.ndarray:
        return project_to_bounds(v, self.lower, self.upper)

    def binding(self, w: np.ndarray) -> dict[str, str]:
        """Which constraints hold with equality at mixture `w`: {domain: fixed|upper|lower}."""
        out = {}
        for d, x, lo, hi in zip(self.domains, np.asarray(w, dtype=float), self.lower, self.upper):
            if hi - lo <= _TOL:
                out[d] = "fixed"
            elif x >= hi - 1e-9 and hi < 1 - _TOL:
                out[d] = "upper"
            elif x <= lo + 1e-9 and lo > _TOL:
                out[d] = "lower"
        return out

    def to_json(self, w: np.ndarray | None = None) -> dict:
        out = {"lower": dict(zip(self.domains, self.lower.tolist())),
               "upper": dict(zip(self.domains, self.upper.tolist())), "sources": dict(self.sources)}
        if w is not None:
            out["binding"] = self.binding(w)
        return out


def project_to_bounds(v: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """Exact Euclidean projection of each row of `v` onto {lower <= w <= upper, sum w = 1}.

    The solution is w = clip(v - tau, lower, upper) for the tau where the sum is 1 (KKT); the
    sum is piecewise linear and non-increasing in tau, so tau lies between two of the 2K
    breakpoints v - upper, v - lower: sort them, find the segment, solve the linear piece.
    A 1-D input gives a 1-D output.
    """
    v = np.asarray(v, dtype=float)
    one_d = v.ndim == 1
    x = np.atleast_2d(v)
    lo, hi = np.asarray(lower, dtype=float), np.asarray(upper, dtype=float)
    if not np.all(np.isfinite(x)):
        raise ValueError("cannot project non-finite values")
    breaks = np.sort(np.hstack([x - hi[None, :], x - lo[None, :]]), axis=1)
    sums = np.clip(x[:, None, :] - breaks[:, :, None], lo, hi).sum(axis=2)   # (n, 2K), non-increasing
    # first breakpoint where the sum drops to <= 1: tau lies in [breaks[i-1], breaks[i]]
    i = np.clip(np.argmax(sums <= 1 + 1e-15, axis=1), 1, breaks.shape[1] - 1)
    rows = np.arange(len(x))
    a, b = breaks[rows, i - 1], breaks[rows, i]
    sa, sb = sums[rows, i - 1], sums[rows, i]
    tau = np.where(np.abs(sa - sb) > 1e-15, a + (sa - 1.0) * (b - a) / np.where(sa == sb, 1.0, sa - sb), b)
    w = np.clip(x - tau[:, None], lo, hi)
    return w[0] if one_d else w
