"""The sweep's Tune callback, the one writer of RUN_DIR/runs.parquet: it lands each finished run
exactly once, shows progress (runs done/total, ETA, best y), feeds the fit actor and, after
`Tuner.fit`, lands the rows of results it did not see (`land_results`)."""
from __future__ import annotations

import json
import sys

from ray.tune import Callback
from tqdm.auto import tqdm

from causalmix.causal.runs_table import RunsTableWriter
from causalmix.design.trial_protocol import ROW_KEY


def trial_name(trial) -> str:
    """A trial's name and directory: its run_id (Tune's trial id before the Searcher set one)."""
    return str(trial.config.get("run_id", trial.trial_id))


class SweepProgress(Callback):
    """Picklable (Tune saves it with the experiment): live state is rebuilt in `setup`.
    `fit`: the sweep's FitActorGroup (actors/sweep/fit_actor.py), fed every row that lands."""

    # A landing rewrites runs.parquet only while rewriting takes under this share of the time;
    # rows landed in between are written at the next rewrite, at the experiment's end, or by
    # `land_results` from Tune's results on a resume.
    WRITE_SHARE = 0.1

    def __init__(self, runs_path: str, total: int, fit=None, show: bool = True):
        self.runs_path = runs_path
        self.total = total
        self.fit = fit
        self.show = show
        self._writer = None
        self._bar = None
        self.failures: dict[str, int] = {}

    def __getstate__(self):
        state = dict(self.__dict__)
        state.update(_writer=None, _bar=None)
        return state

    def setup(self, **info) -> None:
        self._writer = RunsTableWriter(self.runs_path, max_write_share=self.WRITE_SHARE)
        self._bar = tqdm(total=self.total, initial=len(self._writer.rows), desc="sweep", unit="run",
                         file=sys.stderr, disable=not self.show, dynamic_ncols=True)
        self._refresh()

    @property
    def writer(self) -> RunsTableWriter:
        if self._writer is None:
            self._writer = RunsTableWriter(self.runs_path, max_write_share=self.WRITE_SHARE)
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
        if self.fit is not None:
            self.fit.feed([row])

    def on_trial_recover(self, iteration, trials, trial, **info) -> None:
        run_id = trial_name(trial)
        self.failures[run_id] = self.failures.get(run_id, 0) + 1
        self._refresh()

    def on_experiment_end(self, trials, **info) -> None:
        self.writer.flush()
        if self._bar is not None:
            self._bar.close()

    def land_results(self, results) -> list[dict]:
        """After `Tuner.fit`: land the row of every result whose run is not in the table yet (a
        trial finished in an earlier session whose row never landed, or one whose result came as
        the experiment stopped) and feed it to the fit actor; returns the errored runs as
        {run_id, error}."""
        errors, added = [], []
        for result in results:
            row_json = (result.metrics or {}).get(ROW_KEY)
            if row_json:
                row = json.loads(row_json)
                if row["run_id"] not in self.writer.rows:
                    self.writer.rows[row["run_id"]] = row
                    added.append(row)
            elif result.error is not None:
                errors.append({"run_id": (result.config or {}).get("run_id"), "error": str(result.error)[:500]})
        if added or self.writer.pending:
            self.writer.write()
        if self.fit is not None:
            # a row Tune reported but whose callback never ran (the experiment stopped first):
            # the fit actor counts every landed run, so the sweep's final model holds it too
            self.fit.feed(added)
        return errors
