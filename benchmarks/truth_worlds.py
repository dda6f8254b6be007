"""Known-truth worlds for the estimator and policy benchmark (benchmarks/bench_truth.py).

Each world draws proxy-run logs the way a sweep does (a data state per run, a mixture drawn
from a Dirichlet that leans toward the domains the state favours, so assignment is
confounded) and knows its true expected outcome, so any mixture's regret at a shifted target
pool can be computed exactly. Five families, none of them the final form of any estimator
here except `log`:

  log          y = g(s) + sum_j theta_j(s) log(w_j + eps): the form of tests/structural.py.
  mixing-law   three dev losses L_m = c_m + k_m exp(-sum_j t_mj(s) w_j) (Ye et al. 2024's data
               mixing law with state-dependent t), y = -mean_m L_m.
  saturating   sum_j a_j(s) (1 - exp(-w_j / tau_j)) plus pairwise synergy and competition
               b_ij w_i w_j.
  flip         saturating returns, two domains whose return changes sign with their state
               (help when clean, hurt when noisy).
  many-cov     6 domains x 4 covariates (a quality reading, one mixed with a run-level factor,
               two nuisance readings), returns driven by three latent states only, and a
               run-level factor u that drives both the baseline (non-linearly) and the
               assignment: confounding a linear baseline cannot remove.

Two more worlds, `null` (the five-domain states) and `null-many-cov` (many-cov's covariates
and confounder), keep the assignment and drop the returns: every mixture is as good as any
other, so a method that moves claims a gain that is not there (benchmarks/bench_null.py).

Run-to-run noise grows toward the simplex's corners (sd x (1 + 2 max_j w_j)), as repeat runs
at extreme mixtures vary more in published swarms.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from causalmix.mixture_space import project_to_simplex

FAMILIES = ("log", "mixing-law", "saturating", "flip", "many-cov")


class TruthWorld:
    """Base: subclasses set `k`, `n_latent`, and implement `_mean(w, s)` (true outcome without
    the run-level baseline) and optionally `_observe`, `_lean`, `_baseline`."""

    k = 5
    n_latent = 5

    def __init__(self, *, seed: int = 0, noise: float = 0.1):
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.params = np.random.default_rng(1000 + seed)  # the world's shape: fixed per seed
        self.domains = [f"d{j}" for j in range(self.k)]
        self.noise_ratio = noise
        self._setup()
        # noise scaled to the spread the mixture causes, so "noisy" means the same in every family
        s, _, _ = self._draw_states(4096, np.random.default_rng(7))
        w = np.random.default_rng(8).dirichlet(np.ones(self.k), 4096)
        self.effect_sd = float(np.std(self._mean(w, s)))
        self.noise = noise * self.effect_sd

    def _setup(self):
        pass

    # -- states and what is observed of them
    def _draw_states(self, n, rng):
        s = rng.normal(size=(n, self.n_latent))
        u = rng.normal(size=n)
        return s, u, self._observe(s, u, rng)

    def _observe(self, s, u, rng=None):
        return s.copy()

    @property
    def covariate_names(self) -> list[str]:
        return [f"x.{d}.quality" for d in self.domains]

    def _lean(self, s, u):
        return np.exp(s[:, :self.k])

    def _baseline(self, s, u):
        return 0.3 * s.sum(axis=1)

    def _mean(self, w, s):
        raise NotImplementedError

    def outcome(self, w, s) -> np.ndarray:
        """True expected outcome of mixtures w at latent state s (no run-level factor)."""
        w = np.atleast_2d(w)
        s = np.broadcast_to(np.atleast_2d(s), (len(w), self.n_latent))
        return self._mean(w, s)

    def runs(self, n: int) -> pd.DataFrame:
        s, u, x = self._draw_states(n, self.rng)
        lean = self._lean(s, u)
        strength = self.k * self.rng.choice(np.logspace(-1, np.log10(5), 15), size=n)
        alpha = strength[:, None] * lean / lean.sum(axis=1, keepdims=True)
        gam = self.rng.gamma(alpha)
        total = gam.sum(axis=1, keepdims=True)
        w = np.where(total > 0, gam / np.maximum(total, 1e-300), 1.0 / self.k)
        sd = self.noise * (1.0 + 2.0 * w.max(axis=1))
        y = self._baseline(s, u) + self._mean(w, s) + sd * self.rng.normal(size=n)
        frame = pd.DataFrame({"run_id": [f"r{i}" for i in range(n)]})
        for j, d in enumerate(self.domains):
            frame[f"mix.{d}"] = w[:, j]
        for c, name in enumerate(self.covariate_names):
            frame[name] = x[:, c]
        frame["y"] = y
        return frame

    # -- targets
    def targets(self, n: int = 5) -> list[np.ndarray]:
        """Latent states of n shifted target pools (within the logged states' range), each
        with an optimum well away from the equal mixture (its gain over equal at least a fifth
        of the spread the mixture causes); the same targets whatever the noise."""
        rng = self.target_rng()
        out = []
        for _ in range(50 * n):
            s = self.shifted_state(rng)
            gap = self.best(s)[1] - float(self.outcome(np.full(self.k, 1 / self.k), s)[0])
            if gap > 0.2 * self.effect_sd:
                out.append(s)
            if len(out) == n:
                return out
        raise RuntimeError(f"{type(self).__name__}: fewer than {n} targets with an optimum away from equal")

    def target_rng(self) -> np.random.Generator:
        return np.random.default_rng(2000 + self.seed)

    def shifted_state(self, rng: np.random.Generator) -> np.ndarray:
        """A target pool's latent state: wider than the runs' (sd 1.2 against 1), clipped to
        their range."""
        return np.clip(rng.normal(size=self.n_latent) * 1.2, -1.8, 1.8)

    def covariates(self, s) -> dict[str, float]:
        x = self._observe(np.atleast_2d(s), np.zeros(1))[0]
        return {name: float(v) for name, v in zip(self.covariate_names, x)}

    def best(self, s, extra=()) -> tuple[np.ndarray, float]:
        """(argmax, max) of the true outcome over the simplex at state s: projected gradient
        ascent (numerical gradient) from the vertices, the centre and random starts."""
        starts = np.vstack([np.eye(self.k), np.full((1, self.k), 1 / self.k),
                            np.random.default_rng(0).dirichlet(np.ones(self.k), 48),
                            *[np.atleast_2d(e) for e in extra]])
        w = starts.copy()
        h = 1e-5
        for lr in (0.05, 0.01, 0.002):
            for _ in range(150):
                base = self.outcome(w, s)
                grad = np.empty_like(w)
                for j in range(self.k):
                    bumped = w.copy()
                    bumped[:, j] += h
                    grad[:, j] = (self.outcome(bumped, s) - base) / h
                w = project_to_simplex(w + lr * grad / max(1.0, float(np.abs(grad).max())) * 4)
        values = self.outcome(w, s)
        i = int(np.argmax(values))
        return w[i], float(values[i])

    def regret(self, mixture, s) -> float:
        """Normalized regret of `mixture` at state s: 0 at the optimum, 1 at the equal mixture."""
        best = self.best(s, [mixture])[1]
        equal = float(self.outcome(np.full(self.k, 1 / self.k), s)[0])
        return (best - float(self.outcome(mixture, s)[0])) / (best - equal)


class LogWorld(TruthWorld):
    EPS = 0.01

    def _setup(self):
        self.base = np.linspace(1.5, 0.8, self.k)

    def _mean(self, w, s):
        return ((self.base + s[:, :self.k]) * np.log(w + self.EPS)).sum(axis=1)


class MixingLawWorld(TruthWorld):
    def _setup(self):
        m = 3
        a = self.params.uniform(0.3, 1.0, size=(m, self.k))
        a[np.arange(m), np.arange(m)] += self.params.uniform(2.0, 3.5, size=m)  # domain m serves dev m most
        self.a = a
        self.c = self.params.uniform(1.5, 2.5, size=m)
        self.scale = self.params.uniform(0.8, 1.2, size=m)

    def _mean(self, w, s):
        t = self.a[None, :, :] * np.exp(0.6 * s[:, None, :self.k])          # (n, m, K)
        loss = self.c[None, :] + self.scale[None, :] * np.exp(-(t * w[:, None, :]).sum(axis=2))
        return -loss.mean(axis=1)


class SaturatingWorld(TruthWorld):
    def _setup(self):
        self.base = self.params.uniform(0.6, 1.4, size=self.k)
        self.tau = self.params.uniform(0.08, 0.35, size=self.k)
        self.pairs = np.zeros((self.k, self.k))
        i, j = np.triu_indices(self.k, 1)
        chosen = self.params.choice(len(i), size=4, replace=False)
        for c, sign in zip(chosen, (1.0, 1.0, -1.0, -1.0)):  # two synergies, two competitions
            self.pairs[i[c], j[c]] = sign * self.params.uniform(0.8, 1.6)

    def _amplitude(self, s):
        return self.base * np.exp(0.5 * s[:, :self.k])

    def _mean(self, w, s):
        sat = (self._amplitude(s) * (1.0 - np.exp(-w / self.tau))).sum(axis=1)
        return sat + np.einsum("ni,ij,nj->n", w, self.pairs, w)


class FlipWorld(SaturatingWorld):
    FLIPPED = (1, 3)

    def _amplitude(self, s):
        amp = super()._amplitude(s)
        for j in self.FLIPPED:  # helps when clean (s > 0), hurts when noisy
            amp[:, j] = 1.6 * np.tanh(1.2 * s[:, j])
        return amp


class ManyCovariateWorld(SaturatingWorld):
    k = 6
    n_latent = 6

    def _setup(self):
        super()._setup()
        self.drivers = (0, 1, 2)  # only these domains' states move their returns
        self.u_lean = np.resize([1.0, -1.0], self.k)

    @property
    def covariate_names(self) -> list[str]:
        return [f"x.{d}.{f}" for d in self.domains for f in ("normalized_loss", "hes", "style_a", "style_b")]

    def _observe(self, s, u, rng=None):
        n = len(s)
        # a target pool's covariates are means over many documents: no reading noise there
        v = rng.normal(size=n) if rng is not None else np.zeros(n)  # common factor of the style readings
        cols = []
        for j in range(self.k):
            e = 0.15 * rng.normal(size=(n, 4)) if rng is not None else np.zeros((n, 4))
            cols += [s[:, j] + e[:, 0],
                     0.6 * s[:, j] + 0.8 * u + e[:, 1],
                     0.7 * v + e[:, 2],
                     0.5 * s[:, (j + 1) % self.k] + 0.5 * v + e[:, 3]]
        return np.column_stack(cols)

    def _lean(self, s, u):
        return np.exp(0.6 * s[:, :self.k] + 0.8 * self.u_lean[None, :] * u[:, None])

    def _baseline(self, s, u):
        return 1.5 * np.sin(2.0 * u) + 0.8 * u ** 2

    def _amplitude(self, s):
        amp = np.repeat(self.base[None, :], len(s), axis=0)
        for j in self.drivers:
            amp[:, j] = self.base[j] * np.exp(0.6 * s[:, j])
        return amp


class _NoReturns:
    """The mixture does nothing: y is the run's baseline plus noise. There is no mixture effect
    to scale the noise to, so it is scaled to the baseline's spread instead."""

    def __init__(self, *, seed: int = 0, noise: float = 0.1):
        super().__init__(seed=seed, noise=noise)
        s, u, _ = self._draw_states(4096, np.random.default_rng(7))
        self.noise = noise * float(np.std(self._baseline(s, u)))

    def _mean(self, w, s):
        return np.zeros(len(w))


class NullWorld(_NoReturns, TruthWorld):
    pass


class NullManyCovariateWorld(_NoReturns, ManyCovariateWorld):
    pass


WORLDS = {"log": LogWorld, "mixing-law": MixingLawWorld, "saturating": SaturatingWorld,
          "flip": FlipWorld, "many-cov": ManyCovariateWorld}
# worlds where no mixture beats another (benchmarks/bench_null.py): a method should not move
NULL_WORLDS = {"null": NullWorld, "null-many-cov": NullManyCovariateWorld}
