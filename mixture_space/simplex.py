"""The probability simplex: exact Euclidean projection and validation of mixture tables."""
from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np

from causalmix.core.errors import UserError

# Mixture sums within this distance of 1 are taken as rounding (renormalised silently).
ROUNDING_TOL = 1e-6
# Beyond ROUNDING_TOL and up to this, rows are renormalised with a warning; beyond it, rejected.
RENORMALISE_TOL = 0.01


def project_to_simplex(v: np.ndarray) -> np.ndarray:
    """Exact Euclidean projection of each row of `v` onto {w >= 0, sum w = 1}.

    Sort-based algorithm (Held et al. 1974; Duchi et al. 2008), O(K log K) per row,
    vectorised over rows. A 1-D input gives a 1-D output.
    """
    v = np.asarray(v, dtype=float)
    one_d = v.ndim == 1
    x = np.atleast_2d(v)
    if x.shape[1] == 0:
        raise ValueError("cannot project onto a simplex of dimension 0")
    if not np.all(np.isfinite(x)):
        raise ValueError("cannot project non-finite values onto the simplex")
    k = x.shape[1]
    u = -np.sort(-x, axis=1)
    css = np.cumsum(u, axis=1) - 1.0
    idx = np.arange(1, k + 1)
    cond = u - css / idx > 0
    rho = k - 1 - np.argmax(cond[:, ::-1], axis=1)
    theta = css[np.arange(x.shape[0]), rho] / (rho + 1)
    w = np.maximum(x - theta[:, None], 0.0)
    return w[0] if one_d else w


def equal_mixture(k: int) -> np.ndarray:
    return np.full(k, 1.0 / k)


def validate_mixtures(weights: np.ndarray, *, domains: Sequence[str] | None = None,
                      row_ids: Sequence | None = None, where: str = "mixtures",
                      renormalise_tol: float = RENORMALISE_TOL) -> np.ndarray:
    """Check a (n, K) mixture table and return it renormalised.

    Non-finite or negative weights are rejected; rows whose sum is off 1 by more
    than rounding are renormalised with a warning up to `renormalise_tol`, and
    rejected beyond. Errors name `where`, the domains and up to 5 offending rows.
    """
    w = np.asarray(weights, dtype=float)
    if w.ndim != 2 or w.shape[1] < 2:
        raise UserError(f"{where}: need a table of at least 2 domains, got shape {w.shape}")
    ids = list(row_ids) if row_ids is not None else list(range(len(w)))
    names = list(domains) if domains is not None else [str(j) for j in range(w.shape[1])]

    def _rows(mask: np.ndarray) -> str:
        bad = [str(ids[i]) for i in np.flatnonzero(mask)]
        return ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")

    nonfinite = ~np.isfinite(w).all(axis=1)
    if nonfinite.any():
        raise UserError(f"{where}: non-finite mixture weights in rows {_rows(nonfinite)}")
    negative = (w < 0).any(axis=1)
    if negative.any():
        cols = sorted({names[j] for j in np.flatnonzero((w < 0).any(axis=0))})
        raise UserError(f"{where}: negative mixture weights (domains {cols}) in rows {_rows(negative)}")
    off = np.abs(w.sum(axis=1) - 1.0)
    rejected = off > renormalise_tol
    if rejected.any():
        raise UserError(f"{where}: mixture weights must sum to 1 (within {renormalise_tol:.0%}); "
                        f"rows {_rows(rejected)} sum to "
                        f"{', '.join(f'{s:.4f}' for s in w.sum(axis=1)[rejected][:5])}")
    noticed = off > ROUNDING_TOL
    if noticed.any():
        warnings.warn(f"{where}: renormalised {int(noticed.sum())} mixture rows whose weights summed "
                      f"to 1 only within {off.max():.2g} (rows {_rows(noticed)})", stacklevel=2)
    return w / w.sum(axis=1, keepdims=True)
