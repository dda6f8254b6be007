"""The fit actor: a thin Ray shell over causal.streaming.PolicyTracker, and `FitActorGroup`, the
driver's one owner of the sweep's fit actor (docs/sweep.md: the driver in parts).

A threaded actor (max_concurrency > 1): the sweep's Searcher calls `latest_snapshot` while a
refit runs in the tracker's background thread, and never waits for it.
"""
from __future__ import annotations

import threading
import time

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from causalmix.causal.fitting import FitConfig
from causalmix.causal.model_dir import DEFAULT_TRUST_RADIUS
from causalmix.causal.streaming import PolicyTracker
from causalmix.core.errors import UserError


# The background refits' share of a small head node: a refit also waits for the runs to grow by a
# quarter since the last (their total work stays linear in the runs, bench_paper_scale), runs at
# the fit's one BLAS/OpenMP thread (FitConfig.threads) and below the trials'
# and the driver's priority, so that a refit never delays a landing run.
REFIT_GROWTH = 0.25
FIT_NICE = 10


@ray.remote(num_cpus=1, max_concurrency=4)
class FitActor:
    def __init__(self, *, config: FitConfig | dict | None = None, run_dir: str | None = None,
                 target_covariates: dict | list[dict] | None = None, refit_every: int = 16,
                 trust_radius: float | str = DEFAULT_TRUST_RADIUS, reference="equal"):
        if isinstance(config, dict):
            config = FitConfig(**config)
        self._tracker = PolicyTracker(config=config, run_dir=run_dir,
                                      target_covariates=target_covariates, refit_every=refit_every,
                                      trust_radius=trust_radius, reference=reference,
                                      refit_growth=REFIT_GROWTH, fit_nice=FIT_NICE)

    def add_runs(self, rows: list[dict]) -> int:
        """Add finished runs; refits in the background every `refit_every` new rows."""
        return self._tracker.add_runs(rows)

    def round_snapshot(self, rows: list[dict], round_index: int) -> dict | None:
        """The adaptive sweep's snapshot of round `round_index`, fitted on exactly `rows`."""
        return self._tracker.round_snapshot(rows, round_index)

    def latest_snapshot(self) -> dict | None:
        """The newest policy snapshot (None before the first successful fit); never blocks on a fit."""
        return self._tracker.latest_snapshot()

    def status(self) -> dict:
        snap = self._tracker.latest_snapshot()
        return {"n_runs": self._tracker.n_runs(), "version": snap["version"] if snap else 0,
                "last_error": self._tracker.last_error}

    def write_model_dir(self, out: str) -> str:
        """Fit on all rows if needed and write the final model directory; returns its path."""
        return self._tracker.write_model_dir(out)


FIT_ACTOR_NAME = "causalmix-fit"
START_TIMEOUT_S = 120
STOP_TIMEOUT_S = 30
MODEL_TIMEOUT_S = 600


class FitActorGroup:
    """The sweep's one fit actor, owned by the driver from start to stop: where it runs, starting
    it (or reusing the one of that name), feeding it rows, its status, the final model directory
    and stopping it. The searcher (`ActorRoundSnapshots`) reaches it by `name` only.

    It lives on the driver's node (the head on a cluster), so losing a worker node never takes the
    fit state with it; it dies only with the driver, which `--resume` recovers. It reserves no CPU:
    it idles between refits, and a reserved CPU would idle a trial slot.

    Picklable (Tune saves the progress callback that feeds it): the live handle stays with the
    driver, a copy looks the actor up by name. The driver keeps its handle for the sweep's duration
    because Ray collects a named, non-detached actor once no handle to it is left."""

    def __init__(self, *, config: dict | None, run_dir: str, target_covariates: dict | list[dict] | None,
                 refit_every: int, name: str = FIT_ACTOR_NAME):
        self.name = name
        self.config = dict(config) if config else None
        self.run_dir = run_dir
        self.target_covariates = target_covariates
        self.refit_every = refit_every
        self._handle = None
        self._sending = threading.Lock()
        self._in_flight: list = []

    def __getstate__(self):
        return {**self.__dict__, "_handle": None, "_sending": None, "_in_flight": []}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._sending = threading.Lock()

    def start(self) -> "FitActorGroup":
        """Start the actor on the driver's node, or take the running one of this name."""
        try:
            self._handle = ray.get_actor(self.name)
            return self
        except ValueError:
            pass
        on_driver_node = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
        self._handle = FitActor.options(name=self.name, get_if_exists=True, num_cpus=0,
                                        scheduling_strategy=on_driver_node).remote(
            config=self.config, run_dir=self.run_dir, target_covariates=self.target_covariates,
            refit_every=self.refit_every)
        try:
            ray.get(self._handle.status.remote(), timeout=START_TIMEOUT_S)
        except ray.exceptions.GetTimeoutError:
            raise UserError(f"the fit actor did not start on the driver's node within "
                            f"{START_TIMEOUT_S} s") from None
        return self

    def _actor(self):
        if self._handle is None:
            self._handle = ray.get_actor(self.name)
        return self._handle

    def feed(self, rows: list[dict]) -> None:
        """Send finished runs without waiting: the actor refits in the background every
        `refit_every` rows, and the searcher reads its snapshots without waiting either."""
        if not rows:
            return
        try:
            actor = self._actor()
        except ValueError:  # stopped or never started: nothing to feed
            return
        sent = actor.add_runs.remote(rows)
        with self._sending:
            if len(self._in_flight) >= 64:  # forget the sends already done
                self._in_flight = ray.wait(self._in_flight, num_returns=len(self._in_flight), timeout=0)[1]
            self._in_flight.append(sent)

    def _settle(self) -> None:
        """Wait until every row sent so far has been added. The actor is threaded
        (max_concurrency > 1), so Ray does not run its calls in the order they were sent: a
        `status` sent after the last `add_runs` could count the runs before that add finished (CI,
        under load: 18 of 19 landed runs, test_resumed_adaptive_sweep_keeps_fitting_each_run_once)."""
        with self._sending:
            sent, self._in_flight = self._in_flight, []
        if sent:
            ray.wait(sent, num_returns=len(sent), timeout=STOP_TIMEOUT_S)

    def status(self) -> dict:
        """Runs received, snapshot version and last fit error; {"error": ...} when it cannot answer."""
        self._settle()
        try:
            return ray.get(self._actor().status.remote(), timeout=STOP_TIMEOUT_S)
        except (ValueError, ray.exceptions.RayError) as exc:
            return {"error": str(exc)[:300]}

    def write_model_dir(self, out: str) -> dict:
        """The model fitted on every run it received, saved as a `fit` model directory at `out`:
        {"model_dir": path}, or {"model_dir": None, "reason": ...} when the fit failed."""
        self._settle()
        try:
            return {"model_dir": ray.get(self._actor().write_model_dir.remote(out), timeout=MODEL_TIMEOUT_S)}
        except ray.exceptions.RayTaskError as exc:
            return {"model_dir": None, "reason": str(exc).strip().splitlines()[-1][:300]}

    def stop(self) -> None:
        """Kill the actor and wait until its name is free, so that a sweep started right after
        (a resume) gets a fresh actor instead of a handle to one being torn down."""
        try:
            ray.kill(self._actor())
        except ValueError:
            return
        self._handle = None
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                ray.get_actor(self.name)
            except ValueError:
                return
            time.sleep(0.1)
