"""The sweep's Tune `Searcher`: proposes (mixture, data state, seed) for each proxy run, through
`design.run_proposer.RunProposer` (which run i is, adaptive rounds included: see there).

Attempts, not successes, are counted: after `n_runs` proposals it answers FINISHED, so
errored or NaN trials never make it propose more runs than asked (Tune's FailureConfig
retries a failed trial with the same config; `--resume` restarts errored ones).
The searcher never blocks: an adaptive run whose round snapshot is not in yet is simply not
proposed; later non-adaptive runs are proposed meanwhile (Tune asks again), so trial slots
do not idle at round boundaries unless every remaining run waits for a snapshot.
"""
from __future__ import annotations

import json
import math
import pickle

import ray

from ray.tune.search import Searcher

from causalmix.design.run_proposer import PENDING, RunProposer
from causalmix.design.trial_protocol import ROW_KEY


class MixtureSearcher(RunProposer, Searcher):
    def __init__(self, *, metric: str = "y", mode: str = "max", **proposer):
        """`proposer`: RunProposer's keywords (domains, samplers, n_runs, seed, adaptive settings)."""
        Searcher.__init__(self, metric=metric, mode=mode)
        RunProposer.__init__(self, **proposer)

    # -- Tune Searcher API -----------------------------------------------------------------
    def suggest(self, trial_id: str):
        if self.attempts >= self.n_runs:
            return Searcher.FINISHED
        ready = self._next_ready()
        if ready is None:
            return None  # every remaining run waits for a round snapshot: Tune asks again
        index, snapshot = ready
        config = self.proposal(index, snapshot)
        self.live[trial_id] = index
        self.proposed.add(index)
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
            row = (result or {}).get(ROW_KEY)
            if isinstance(row, str):
                self.rows[index] = json.loads(row)
            elif isinstance(row, dict):
                self.rows[index] = dict(row)

    def get_state(self) -> dict:
        # Unanswered round requests are not kept: a restored searcher asks for them again.
        return {"proposed": set(self.proposed), "live": dict(self.live),
                "completed": dict(self.completed), "failed": set(self.failed),
                "rows": dict(self.rows), "round_snapshots": dict(self.round_snapshots),
                "n_runs": self.n_runs, "seed": self.seed}

    def set_state(self, state: dict) -> None:
        if state["n_runs"] != self.n_runs or state["seed"] != self.seed:
            raise ValueError(f"searcher state is of a sweep with n_runs={state['n_runs']}, "
                             f"seed={state['seed']}, not {self.n_runs}, {self.seed}")
        # a sweep saved before rounds existed proposed runs 0 .. attempts-1 in order
        self.proposed = set(state["proposed"]) if "proposed" in state else set(range(state["attempts"]))
        self.live = dict(state["live"])
        self.completed = dict(state["completed"])
        self.failed = set(state["failed"])
        self.rows = dict(state.get("rows", {}))
        self.round_snapshots = dict(state.get("round_snapshots", {}))
        self.requested = set(self.round_snapshots)

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as fh:
            pickle.dump(self.get_state(), fh)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as fh:
            self.set_state(pickle.load(fh))


class ActorRoundSnapshots:
    """Round snapshots from the named fit actor's `round_snapshot(rows, r)`, never waited for:
    `poll` checks the request with timeout 0. Only the actor's name is pickled (Tune saves
    the searcher); requests in flight are lost then and asked again after a restore."""

    def __init__(self, actor_name: str, namespace: str | None = None):
        self.actor_name = actor_name
        self.namespace = namespace
        self._pending: dict[int, object] = {}

    def __getstate__(self):
        return {"actor_name": self.actor_name, "namespace": self.namespace, "_pending": {}}

    def request(self, round_index: int, rows: list[dict]) -> None:
        try:
            actor = ray.get_actor(self.actor_name, namespace=self.namespace)
        except ValueError:  # no fit actor: the round's adaptive runs use the prior
            self._pending[round_index] = None
            return
        self._pending[round_index] = actor.round_snapshot.remote(rows, round_index)

    def poll(self, round_index: int):
        if round_index not in self._pending:
            return PENDING
        ref = self._pending[round_index]
        if ref is None:
            del self._pending[round_index]
            return None
        ready, _ = ray.wait([ref], timeout=0)
        if not ready:
            return PENDING
        del self._pending[round_index]
        try:
            return ray.get(ref)
        except ray.exceptions.RayError:
            return None  # the fit actor failed: this round's adaptive runs use the prior
