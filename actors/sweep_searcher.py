"""The sweep's Tune `Searcher`: proposes (mixture, data state, seed) for each proxy run.

Run i (0-based, in order of `suggest` calls) gets `run_id = run-<i>`, the i-th mixture of
the seeded Dirichlet stream, the i-th data state and seed `seed + i`; so a sweep is
reproducible and a resumed one proposes exactly the runs it had not proposed yet.

Attempts, not successes, are counted: after `n_runs` suggestions it answers FINISHED, so
errored or NaN trials never make it propose more runs than asked (Tune's FailureConfig
retries a failed trial with the same config; `--resume` restarts errored ones).

Adaptive mode: with probability `adaptive_fraction` (per run, from its own stream), run i
draws its mixture inside a trust region around the fit actor's current recommendation
instead of from the prior. The snapshot is read without blocking: the latest one that has
arrived is used, and until one arrives the run uses the prior. Each run records its sampler.
"""
from __future__ import annotations

import math
import pickle
from typing import Callable

import numpy as np
from ray.tune.search import Searcher

from mixture_space.dirichlet import DirichletMixtureSampler
from mixture_space.state import DataStateSampler
from mixture_space.trust_region import trust_region_candidates

SnapshotSource = Callable[[], "dict | None"]


def recommended_mixture(snapshot: dict | None, domains: list[str]) -> np.ndarray | None:
    """The recommendation of a fit-actor snapshot as weights in `domains` order, or None.

    Accepts `{"mixture": {domain: w}}` (the recommend contract) or a list of them under
    `recommendations`, taking the first."""
    if not snapshot:
        return None
    mixture = snapshot.get("mixture")
    if mixture is None and snapshot.get("recommendations"):
        first = snapshot["recommendations"][0]
        mixture = first.get("mixture", first) if isinstance(first, dict) else None
    if not isinstance(mixture, dict) or set(mixture) != set(domains):
        return None
    w = np.array([float(mixture[d]) for d in domains])
    if not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        return None
    return w / w.sum()


class MixtureSearcher(Searcher):
    def __init__(self, *, domains: list[str], mixture_sampler: DirichletMixtureSampler,
                 state_sampler: DataStateSampler, n_runs: int, seed: int = 0,
                 adaptive_fraction: float = 0.0, adaptive_radius: float = 0.2,
                 snapshot_source: SnapshotSource | None = None, metric: str = "y",
                 mode: str = "max"):
        super().__init__(metric=metric, mode=mode)
        if not 0.0 <= adaptive_fraction <= 1.0:
            raise ValueError(f"adaptive_fraction must lie in [0, 1], got {adaptive_fraction}")
        self.domains = list(domains)
        self.n_runs = int(n_runs)
        self.seed = int(seed)
        self.state_sampler = state_sampler
        self.adaptive_fraction = float(adaptive_fraction)
        self.adaptive_radius = float(adaptive_radius)
        self.snapshot_source = snapshot_source
        self.mixture_prior = mixture_sampler.prior
        self.prior_mixtures = mixture_sampler.sample(self.n_runs)
        self.attempts = 0
        self.live: dict[str, int] = {}
        self.completed: dict[int, float] = {}
        self.failed: set[int] = set()

    # -- proposals -------------------------------------------------------------------------
    def proposal(self, index: int) -> dict:
        """The trial config of run `index` (see the module docstring)."""
        rng = np.random.default_rng([self.seed, index, 7])
        weights, sampler, extra = self.prior_mixtures[index], "dirichlet", {}
        if self.adaptive_fraction > 0 and rng.random() < self.adaptive_fraction:
            snapshot = self.snapshot_source() if self.snapshot_source is not None else None
            centre = recommended_mixture(snapshot, self.domains)
            if centre is not None:
                weights = trust_region_candidates(centre, self.adaptive_radius, 2,
                                                  seed=int(rng.integers(1 << 31)))[1]
                sampler = "adaptive"
                extra = {"adaptive_snapshot": str(snapshot.get("version", snapshot.get("n_runs", "")))}
        weights = np.clip(weights, 0.0, None)
        weights = weights / weights.sum()
        state = self.state_sampler.state(index)
        return {"run_id": f"run-{index:05d}", "index": index, "seed": self.seed + index,
                "mixture": {d: float(w) for d, w in zip(self.domains, weights)},
                "state": {d: list(names) for d, names in state.items()},
                "sampler": sampler, "extra": extra}

    # -- Tune Searcher API -----------------------------------------------------------------
    def suggest(self, trial_id: str):
        if self.attempts >= self.n_runs:
            return Searcher.FINISHED
        config = self.proposal(self.attempts)
        self.live[trial_id] = self.attempts
        self.attempts += 1
        return config

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        index = self.live.pop(trial_id, None)
        if index is None:
            return
        y = (result or {}).get(self.metric)
        try:
            y = float(y)
        except (TypeError, ValueError):
            y = math.nan
        if error or not math.isfinite(y):
            self.failed.add(index)
        else:
            self.completed[index] = y
            self.failed.discard(index)

    @property
    def best(self) -> tuple[int, float] | None:
        if not self.completed:
            return None
        index = max(self.completed, key=self.completed.get)
        return index, self.completed[index]

    def get_state(self) -> dict:
        return {"attempts": self.attempts, "live": dict(self.live), "completed": dict(self.completed),
                "failed": set(self.failed), "n_runs": self.n_runs, "seed": self.seed}

    def set_state(self, state: dict) -> None:
        if state["n_runs"] != self.n_runs or state["seed"] != self.seed:
            raise ValueError(f"searcher state is of a sweep with n_runs={state['n_runs']}, "
                             f"seed={state['seed']}, not {self.n_runs}, {self.seed}")
        self.attempts = state["attempts"]
        self.live = dict(state["live"])
        self.completed = dict(state["completed"])
        self.failed = set(state["failed"])

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as fh:
            pickle.dump(self.get_state(), fh)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as fh:
            self.set_state(pickle.load(fh))


class ActorSnapshots:
    """Non-blocking reader of a named fit actor's `latest_snapshot()`.

    Each call checks (timeout 0) whether the last request has answered; if so it keeps
    the answer and sends the next request. It never waits, so a slow refit never
    stalls the sweep. Only the actor's name is pickled (Tune saves the searcher).
    """

    def __init__(self, actor_name: str, namespace: str | None = None):
        self.actor_name = actor_name
        self.namespace = namespace
        self._pending = None
        self._latest: dict | None = None

    def __getstate__(self):
        return {"actor_name": self.actor_name, "namespace": self.namespace,
                "_pending": None, "_latest": self._latest}

    def __call__(self) -> dict | None:
        import ray

        if self._pending is not None:
            ready, _ = ray.wait([self._pending], timeout=0)
            if not ready:
                return self._latest
            try:
                self._latest = ray.get(self._pending) or self._latest
            except ray.exceptions.RayError:
                pass  # the fit actor failed or is gone: keep the last good snapshot
            self._pending = None
        try:
            actor = ray.get_actor(self.actor_name, namespace=self.namespace)
        except ValueError:
            return self._latest
        self._pending = actor.latest_snapshot.remote()
        return self._latest
