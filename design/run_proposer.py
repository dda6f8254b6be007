"""Which proxy runs a sweep proposes: the pure part of the sweep's Searcher (no Ray).

Run i gets `run_id = run-<i>`, the i-th mixture of the seeded Dirichlet stream, the i-th
data state and seed `seed + i`; so a sweep is reproducible and a resumed one proposes exactly
the runs it had not proposed yet.

Adaptive mode, in rounds: run i belongs to round r = i // round_size. Whether run i is
adaptive is drawn from its own stream (probability `adaptive_fraction`; never in round 0).
An adaptive run of round r draws its mixture inside a trust region around the
recommendation of the snapshot fitted on exactly the runs of rounds < r (sorted by run_id),
or from the prior when that fit fails (too few runs yet). So what run i trains on depends
only on the seed, the settings and the outcomes of runs before its round, never on how many
trials run at once or in which order they finish (docs/architecture.md: where reproducibility is defined).

The sweep's Tune Searcher (actors/sweep/searcher.py) and `generate` (design/swarm_plan.py)
both propose through `RunProposer`, so a generated plan holds the sweep's runs.
"""
from __future__ import annotations

from typing import Protocol

import numpy as np

from causalmix.mixture_space.dirichlet import DirichletMixtureSampler
from causalmix.mixture_space.state import DataStateSampler
from causalmix.mixture_space.trust_region import trust_region_candidates

PENDING = object()
"""RoundSnapshots.poll's answer while a round's fit is still running."""


def run_id(index: int) -> str:
    """The run_id of run `index` of a sweep (its runs-table key, trial name and directory)."""
    return f"run-{index:05d}"


class RoundSnapshots(Protocol):
    """Where round snapshots come from: `request(r, rows)` starts the fit of round r on `rows`
    (the finished runs of rounds < r, sorted by run_id) without waiting; `poll(r)` returns
    PENDING, the snapshot, or None when that fit failed (e.g. too few runs)."""

    def request(self, round_index: int, rows: list[dict]) -> None: ...

    def poll(self, round_index: int): ...


class LocalRoundSnapshots:
    """Round snapshots computed in-process by `fit(rows, round_index) -> snapshot | None`
    (tests, and sweeps without Ray's fit actor)."""

    def __init__(self, fit):
        self.fit = fit
        self._done: dict[int, object] = {}

    def request(self, round_index: int, rows: list[dict]) -> None:
        self._done[round_index] = self.fit(rows, round_index)

    def poll(self, round_index: int):
        return self._done.get(round_index, PENDING)


def recommended_mixture(snapshot: dict | None, domains: list[str],
                        policies: tuple[str, ...] = ("search", "analytic")) -> np.ndarray | None:
    """The recommendation of a fit-actor snapshot as weights in `domains` order, or None.

    Reads `snapshot["policies"][p]["mixture"]` for the first policy p present (the fit
    actor's snapshot, causal/streaming.py), else a top-level `mixture` (recommend's output)."""
    if not snapshot:
        return None
    found = [snapshot["policies"][p] for p in policies if p in (snapshot.get("policies") or {})]
    mixture = found[0].get("mixture") if found else snapshot.get("mixture")
    if not isinstance(mixture, dict) or set(mixture) != set(domains):
        return None
    w = np.array([float(mixture[d]) for d in domains])
    if not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        return None
    return w / w.sum()


class RunProposer:
    """Run i's (mixture, data state, seed), and which runs are ready to be proposed: the state
    a Searcher or a generated plan keeps of the runs proposed, finished and failed."""

    def __init__(self, *, domains: list[str], mixture_sampler: DirichletMixtureSampler,
                 state_sampler: DataStateSampler, n_runs: int, seed: int = 0,
                 adaptive_fraction: float = 0.0, adaptive_radius: float = 0.2,
                 round_size: int = 8, snapshots: RoundSnapshots | None = None):
        if not 0.0 <= adaptive_fraction <= 1.0:
            raise ValueError(f"adaptive_fraction must lie in [0, 1], got {adaptive_fraction}")
        if round_size < 1:
            raise ValueError(f"round_size must be >= 1, got {round_size}")
        self.domains = list(domains)
        self.n_runs = int(n_runs)
        self.seed = int(seed)
        self.state_sampler = state_sampler
        self.adaptive_fraction = float(adaptive_fraction) if snapshots is not None else 0.0
        self.adaptive_radius = float(adaptive_radius)
        self.round_size = int(round_size)
        self.snapshots = snapshots
        self.mixture_prior = mixture_sampler.prior
        self.prior_mixtures = mixture_sampler.sample(self.n_runs)
        self.proposed: set[int] = set()
        self.live: dict[str, int] = {}
        self.completed: dict[int, float] = {}
        self.failed: set[int] = set()
        self.rows: dict[int, dict] = {}
        """Finished rows by run index: what round snapshots are fitted on."""
        self.round_snapshots: dict[int, dict | None] = {}
        self.requested: set[int] = set()

    @property
    def attempts(self) -> int:
        return len(self.proposed)

    # -- proposals -------------------------------------------------------------------------
    def is_adaptive(self, index: int) -> bool:
        if self.adaptive_fraction <= 0 or index < self.round_size:
            return False
        return bool(np.random.default_rng([self.seed, index, 7]).random() < self.adaptive_fraction)

    def proposal(self, index: int, snapshot: dict | None = None) -> dict:
        """The trial config of run `index`; `snapshot`: its round's (adaptive runs only)."""
        rng = np.random.default_rng([self.seed, index, 7])
        weights, sampler, extra = self.prior_mixtures[index], "dirichlet", {}
        if self.is_adaptive(index):
            rng.random()  # the draw is_adaptive made, so the trust-region seed below is fixed
            centre = recommended_mixture(snapshot, self.domains)
            if centre is not None:
                weights = trust_region_candidates(centre, self.adaptive_radius, 2,
                                                  seed=int(rng.integers(1 << 31)))[1]
                sampler = "adaptive"
                extra = {"adaptive_round": index // self.round_size,
                         "adaptive_fit_runs": int(snapshot.get("n_runs", 0))}
        weights = np.clip(weights, 0.0, None)
        weights = weights / weights.sum()
        state = self.state_sampler.state(index)
        return {"run_id": run_id(index), "index": index, "seed": self.seed + index,
                "mixture": {d: float(w) for d, w in zip(self.domains, weights)},
                "state": {d: list(names) for d, names in state.items()},
                "sampler": sampler, "extra": extra}

    def propose_ready(self) -> list[dict]:
        """Propose every run that can be proposed now, in index order (the runs a Searcher
        would hand out before it has to wait for a round's fit)."""
        proposals = []
        while self.attempts < self.n_runs and (ready := self._next_ready()) is not None:
            index, snapshot = ready
            proposals.append(self.proposal(index, snapshot))
            self.proposed.add(index)
        return proposals

    def _round_snapshot(self, r: int):
        """Round r's snapshot, None (its fit failed), or PENDING (earlier rounds still running,
        or its fit not in yet). Requests the fit as soon as rounds < r are all finished."""
        if r in self.round_snapshots:
            return self.round_snapshots[r]
        first = r * self.round_size
        if any(i not in self.completed and i not in self.failed for i in range(first)):
            return PENDING
        if r not in self.requested:
            rows = [self.rows[i] for i in sorted(self.rows) if i < first]
            self.snapshots.request(r, rows)
            self.requested.add(r)
        answer = self.snapshots.poll(r)
        if answer is not PENDING:
            self.round_snapshots[r] = answer
        return answer

    def _next_ready(self) -> tuple[int, dict | None] | None:
        for index in range(self.n_runs):
            if index in self.proposed:
                continue
            if not self.is_adaptive(index):
                return index, None
            snapshot = self._round_snapshot(index // self.round_size)
            if snapshot is not PENDING:
                return index, snapshot
        return None

