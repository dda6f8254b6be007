"""The fit actor: a thin Ray shell over causal.streaming.PolicyTracker.

A threaded actor (max_concurrency > 1): the sweep's Searcher calls `latest_snapshot` while a
refit runs in the tracker's background thread, and never waits for it.
"""
from __future__ import annotations

import ray

from causal.fitting import FitConfig
from causal.model_dir import DEFAULT_TRUST_RADIUS
from causal.streaming import PolicyTracker


@ray.remote(num_cpus=1, max_concurrency=4)
class FitActor:
    def __init__(self, *, config: FitConfig | dict | None = None, run_dir: str | None = None,
                 target_covariates: dict | None = None, refit_every: int = 16,
                 trust_radius: float | str = DEFAULT_TRUST_RADIUS, reference="equal"):
        if isinstance(config, dict):
            config = FitConfig(**config)
        self._tracker = PolicyTracker(config=config, run_dir=run_dir,
                                      target_covariates=target_covariates, refit_every=refit_every,
                                      trust_radius=trust_radius, reference=reference)

    def add_runs(self, rows: list[dict]) -> int:
        """Add finished runs; refits in the background every `refit_every` new rows."""
        return self._tracker.add_runs(rows)

    def refit(self) -> dict | None:
        """Refit now on every row received; returns the new snapshot."""
        return self._tracker.refit(wait=True)

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
