"""The sweep's Tune callback: writes each finished run into RUN_DIR/runs.parquet exactly once,
shows progress (runs done/total, ETA, best y) and, in adaptive mode, feeds the fit actor."""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pandas as pd
from ray.tune import Callback

from actors.trainer import ROW_KEY
from core.atomic import atomic_write_parquet


class RunsTableWriter:
    """runs.parquet as an upsert by run_id: a retried or resumed run replaces its row, never
    duplicates it. The whole table is rewritten atomically (cheap next to a proxy run)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.rows: dict[str, dict] = {}
        if self.path.is_file():
            for row in pd.read_parquet(self.path).to_dict("records"):
                self.rows[str(row["run_id"])] = row

    def add(self, row: dict) -> None:
        self.rows[str(row["run_id"])] = row
        self.write()

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(sorted(self.rows.values(), key=lambda r: r["run_id"]))

    def write(self) -> None:
        atomic_write_parquet(self.path, self.frame())

    def best_y(self) -> float:
        ys = [float(r["y"]) for r in self.rows.values() if math.isfinite(float(r.get("y", math.nan)))]
        return max(ys) if ys else math.nan


class SweepProgress(Callback):
    """Picklable (Tune saves it with the experiment): live state is rebuilt in `setup`."""

    def __init__(self, runs_path: str, total: int, fit_actor: str | None = None,
                 namespace: str | None = None, show: bool = True):
        self.runs_path = runs_path
        self.total = total
        self.fit_actor = fit_actor
        self.namespace = namespace
        self.show = show
        self._writer = None
        self._bar = None
        self.failures: dict[str, int] = {}

    def __getstate__(self):
        state = dict(self.__dict__)
        state.update(_writer=None, _bar=None)
        return state

    def setup(self, **info) -> None:
        from tqdm.auto import tqdm

        self._writer = RunsTableWriter(self.runs_path)
        self._bar = tqdm(total=self.total, initial=len(self._writer.rows), desc="sweep", unit="run",
                         file=sys.stderr, disable=not self.show, dynamic_ncols=True)
        self._refresh()

    @property
    def writer(self) -> RunsTableWriter:
        if self._writer is None:
            self._writer = RunsTableWriter(self.runs_path)
        return self._writer

    def _refresh(self) -> None:
        if self._bar is not None:
            self._bar.set_postfix(best_y=f"{self.writer.best_y():.4f}", retries=sum(self.failures.values()),
                                  refresh=True)

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        if ROW_KEY not in result:
            return
        row = json.loads(result[ROW_KEY])
        row["attempts"] = 1 + self.failures.get(row["run_id"], 0)
        new = row["run_id"] not in self.writer.rows
        self.writer.add(row)
        if self._bar is not None and new:
            self._bar.update(1)
        self._refresh()
        if self.fit_actor:
            self._feed_fit_actor(row)

    def _run_id(self, trial) -> str:
        return str(trial.config.get("run_id", trial.trial_id))

    def on_trial_recover(self, iteration, trials, trial, **info) -> None:
        run_id = self._run_id(trial)
        self.failures[run_id] = self.failures.get(run_id, 0) + 1
        self._refresh()

    def _feed_fit_actor(self, row: dict) -> None:
        import ray

        try:
            actor = ray.get_actor(self.fit_actor, namespace=self.namespace)
        except ValueError:
            return
        # Fire and forget: the fit actor refits in the background every few rows; the
        # searcher reads its snapshots without waiting.
        actor.add_runs.remote([row])

    def on_experiment_end(self, trials, **info) -> None:
        if self._bar is not None:
            self._bar.close()
