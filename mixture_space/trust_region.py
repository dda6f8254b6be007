"""Trust regions on the simplex around a reference mixture.

Distances are Euclidean (L2) by default; `norm="l1"` measures total variation x 2
instead. The region is {w on the simplex : ||w - reference|| <= radius}.
"""
from __future__ import annotations

import numpy as np

from causalmix.core.errors import UserError
from causalmix.mixture_space.simplex import project_to_simplex


def simplex_distance(w: np.ndarray, reference: np.ndarray, norm: str = "l2") -> np.ndarray:
    d = np.atleast_2d(w) - np.asarray(reference)[None, :]
    if norm == "l2":
        return np.sqrt((d ** 2).sum(axis=1))
    if norm == "l1":
        return np.abs(d).sum(axis=1)
    raise UserError(f"unknown norm {norm!r}; use 'l2' or 'l1'")


def _check(reference: np.ndarray, radius: float) -> np.ndarray:
    ref = np.asarray(reference, dtype=float)
    if ref.ndim != 1 or ref.size < 2 or abs(ref.sum() - 1) > 1e-6 or (ref < 0).any():
        raise UserError(f"reference mixture must be a point of the simplex, got {ref.tolist()}")
    if not radius > 0 or not np.isfinite(radius):
        raise UserError(f"trust radius must be a positive number, got {radius}")
    return ref


# The L2 diameter of the simplex (two vertices): no trust radius needs to be larger.
MAX_TRUST_RADIUS = float(np.sqrt(2.0))


def farthest_reach(reference: np.ndarray) -> float:
    """L2 distance from `reference` to the farthest vertex of the simplex."""
    ref = np.asarray(reference, dtype=float)
    return float(np.sqrt(((np.eye(ref.size) - ref[None, :]) ** 2).sum(axis=1)).max())


def steps_along(reference: np.ndarray, direction: np.ndarray, radii: np.ndarray, bounds=None) -> np.ndarray:
    """`step_to_radius` for every radius of `radii` at once, shape (len(radii), K): the path a
    step along `direction` traces as the trust region grows; with `bounds` (a
    `MixtureBounds`), projected onto the bounded region instead of the simplex."""
    ref = np.asarray(reference, dtype=float)
    d = np.asarray(direction, dtype=float) - np.mean(direction)
    norm = np.linalg.norm(d)
    radii = np.asarray(radii, dtype=float)
    if norm < 1e-15:
        return np.repeat(ref[None, :], len(radii), axis=0)
    project = project_to_simplex if bounds is None else bounds.project
    return project(ref[None, :] + radii[:, None] * (d / norm)[None, :])


def step_to_radius(reference: np.ndarray, direction: np.ndarray, radius: float) -> np.ndarray:
    """From `reference`, move distance `radius` (L2) along `direction` centred to sum zero,
    then project exactly onto the simplex (non-expansive, so the result stays within radius).

    A zero direction returns the reference.
    """
    ref = _check(reference, radius)
    d = np.asarray(direction, dtype=float) - np.mean(direction)
    norm = np.linalg.norm(d)
    if norm < 1e-15:
        return ref.copy()
    return project_to_simplex(ref + radius * d / norm)


def trust_region_candidates(reference: np.ndarray, radius: float, n: int, *, norm: str = "l2",
                            seed: int = 0, bounds=None) -> np.ndarray:
    """`n` mixtures inside the trust region, shape (n, K); row 0 is the reference itself.

    Directions are uniform in the sum-zero plane; half the candidates lie on the
    radius (where a linear gain peaks) and half uniformly inside the ball. Points
    that leave the simplex are projected back onto it (distance only shrinks under
    L2); for L1 each point is scaled back onto the ball afterwards.
    """
    ref = _check(reference, radius)
    if n < 1:
        raise UserError(f"need at least 1 candidate, got {n}")
    k = ref.size
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n - 1, k))
    z -= z.mean(axis=1, keepdims=True)
    scale = np.linalg.norm(z, axis=1, keepdims=True) if norm == "l2" else np.abs(z).sum(axis=1, keepdims=True)
    if norm not in ("l1", "l2"):
        raise UserError(f"unknown norm {norm!r}; use 'l2' or 'l1'")
    r = np.full((n - 1, 1), radius)
    inner = rng.random(n - 1) < 0.5
    r[inner, 0] = radius * rng.random(inner.sum()) ** (1.0 / max(k - 1, 1))
    project = project_to_simplex if bounds is None else bounds.project
    pts = project(ref[None, :] + r * z / np.maximum(scale, 1e-15))
    if norm == "l1":
        dist = simplex_distance(pts, ref, "l1")
        shrink = np.minimum(1.0, radius / np.maximum(dist, 1e-15))
        pts = ref[None, :] + shrink[:, None] * (pts - ref[None, :])
    return np.vstack([ref[None, :], pts])
