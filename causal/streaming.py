"""Refit-as-runs-land: the pure logic behind actors/sweep/fit_actor.py (threads, no Ray).

`PolicyTracker` collects run rows, refits every `refit_every` new rows in a background
thread (or on demand), and publishes versioned policy snapshots: the estimated return of each
domain at the target pool's covariates with intervals, and the mixture recommended by both
trust-region policies. Readers get the newest snapshot without waiting for a fit in flight.
Snapshots are appended to RUN_DIR/policy.jsonl.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
import math
import os
import sys
import threading
import time
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from causalmix.causal.fitting import FitConfig, fit_runs_table
from causalmix.causal.model_dir import DEFAULT_TRUST_RADIUS, FittedMixtureModel, save_model_dir
from causalmix.causal.runs_table import RunsTable, runs_from_rows
from causalmix.core.errors import UserError

RETURN_STEP = 0.05


def frame_sha256(frame: pd.DataFrame) -> str:
    hashed = pd.util.hash_pandas_object(frame.reindex(sorted(frame.columns), axis=1), index=False)
    return hashlib.sha256(hashed.to_numpy().tobytes()).hexdigest()


def domain_returns(model: FittedMixtureModel, covariates: Mapping[str, float], reference,
                   *, step: float = RETURN_STEP, alpha: float = 0.1) -> dict:
    """Per domain: gain per unit weight of moving `step` of the mass toward that domain
    (proportionally from all others), with its interval."""
    x = model.covariate_vector(covariates)
    ref = model.reference_vector(reference)
    k = len(model.domains)
    T1 = (1 - step) * ref[None, :] + step * np.eye(k)
    g, lo, hi = model.estimator.gain_interval(x, np.repeat(ref[None, :], k, axis=0), T1, alpha=alpha)
    return {d: {"estimate": float(g[j] / step), "interval": [float(lo[j] / step), float(hi[j] / step)]}
            for j, d in enumerate(model.domains)}


class PolicyTracker:
    def __init__(self, *, config: FitConfig | None = None, run_dir: str | os.PathLike | None = None,
                 target_covariates: Mapping[str, float] | Sequence[Mapping[str, float]] | None = None,
                 refit_every: int = 16,
                 trust_radius: float = DEFAULT_TRUST_RADIUS, reference="equal", background: bool = True,
                 busy_share: float = 0.5, refit_growth: float = 0.0,
                 fit_nice: int = 0):
        """
        config: estimator settings (FitConfig). run_dir: where policy.jsonl goes (None: nowhere).
        target_covariates: the target pool's covariates, or several pools' (an adaptive sweep's
        round r recommends for pool (r - 1) mod n, so each pool's optimum gets adaptive runs in
        turn; the streaming refits for the first); None: the mean covariates of the runs.
        refit_every: refit after this many new rows. background: fit in a thread (add_runs returns
        at once) or inline. busy_share: the most of the time background refits in a row keep
        their thread busy: after a refit of f seconds with `refit_every` rows waiting, the next
        starts f x (1 / busy_share - 1) seconds later, on every row landed by then. When refits
        are slower than runs land, the cadence follows the refit's time (never a queue of stale
        refits, each snapshot one refit behind) without taking a core from the trials and the
        driver all the time; 1: back to back.
        refit_growth: a refit also waits until the rows grew by this fraction of the last fit's
        rows (0: off): with refits whose time grows with the rows, refits every `refit_every`
        rows cost O(n^2 / refit_every) in all, growth g keeps the total O(n (1 + 1/g)), linear.
        The refits' thread count is the fit's own (`FitConfig.threads`). fit_nice: niceness added to the background refit thread (Linux, where it is
        per thread), so that trials and the driver landing runs go first on a busy machine.
        """
        if refit_every < 1:
            raise UserError(f"refit_every must be >= 1, got {refit_every}")
        if not 0 < busy_share <= 1:
            raise UserError(f"busy_share must lie in (0, 1], got {busy_share}")
        if refit_growth < 0:
            raise UserError(f"refit_growth must be >= 0, got {refit_growth}")
        self.refit_growth, self.fit_nice = refit_growth, fit_nice
        self.busy_share = busy_share
        self.config = config or FitConfig()
        self.run_dir = Path(run_dir) if run_dir is not None else None
        if target_covariates is None:
            self.targets: list[dict] = []
        elif isinstance(target_covariates, Mapping):
            self.targets = [dict(target_covariates)]
        else:
            self.targets = [dict(t) for t in target_covariates]
        self.target_covariates = self.targets[0] if self.targets else None
        self.refit_every = refit_every
        self.trust_radius = trust_radius
        self.reference = reference
        self.background = background
        self._rows: list[dict] = []
        self._rows_at_fit = 0
        self._lock = threading.Lock()          # rows, snapshot, model
        self._fit_lock = threading.Lock()      # one fit at a time
        self._thread: threading.Thread | None = None
        self._snapshot: dict | None = None
        self._model: FittedMixtureModel | None = None
        self._table: RunsTable | None = None
        self.last_error: str | None = None

    # ---- writers
    def add_runs(self, rows: list[dict]) -> int:
        """Add finished runs, keyed by `run_id`: a run already added (a resumed sweep feeds the
        landed rows and its trials may report them again) is not added twice, which would make
        every later fit fail the runs table's unique-run_id check."""
        rows = [dict(r) for r in rows]
        runs_from_rows(rows, where="added run rows")  # reject bad rows before they join the log
        with self._lock:
            known = {r.get("run_id") for r in self._rows}
            new = []
            for row in rows:
                if row.get("run_id") is None or row["run_id"] not in known:
                    known.add(row.get("run_id"))
                    new.append(row)
            self._rows.extend(new)
            n, due = len(self._rows), self._due()
        if due:
            self._start_fit()
        return n

    def refit(self, *, wait: bool = True) -> dict | None:
        if wait:
            self.wait()
            self._fit_once()
            return self.latest_snapshot()
        self._start_fit()
        return None

    def wait(self, timeout: float | None = None) -> None:
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                raise TimeoutError(f"refit still running after {timeout} s")

    def _start_fit(self) -> None:
        if not self.background:
            self._fit_once()
            return
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return  # the running fit's loop picks up the new rows
            self._thread = threading.Thread(target=self._fit_loop, name="policy-refit", daemon=True)
            self._thread.start()

    def _due(self) -> bool:
        """Enough new rows for a refit (call with the lock held)."""
        needed = max(self.refit_every, math.ceil(self.refit_growth * self._rows_at_fit))
        return len(self._rows) - self._rows_at_fit >= needed

    def _fit_loop(self) -> None:
        if self.fit_nice and sys.platform.startswith("linux"):
            os.nice(self.fit_nice)  # this thread only: Linux keeps a niceness per thread
        while True:
            started = time.perf_counter()
            self._fit_once()
            with self._lock:
                if not self._due():
                    return
            time.sleep((time.perf_counter() - started) * (1 / self.busy_share - 1))

    def _fit_once(self) -> None:
        with self._fit_lock:
            with self._lock:
                # sorted, so that a fit depends on which runs landed, not on their order
                rows = sorted(self._rows, key=lambda r: str(r["run_id"]))
                rows_unix = time.time()
            try:
                table = runs_from_rows(rows, where="fit actor runs")
                table.sha256 = frame_sha256(table.frame)
                start, start_cpu = time.perf_counter(), time.thread_time()
                estimator = fit_runs_table(table, self.config)
                model = FittedMixtureModel.from_runs_table(estimator, self.config.estimator, table)
                snapshot = self._make_snapshot(model, table, time.perf_counter() - start)
                # this thread's CPU seconds (the fit runs at FitConfig.threads, one by default):
                # what the refit cost, where fit_s also counts waiting for a busy machine's cores
                snapshot.update(rows_unix=round(rows_unix, 3), fit_cpu_s=round(time.thread_time() - start_cpu, 3))
            except UserError as exc:  # e.g. too few runs yet: keep the previous snapshot
                with self._lock:
                    self._rows_at_fit = len(rows)
                    self.last_error = str(exc)
                return
            with self._lock:
                self._rows_at_fit = len(rows)
                self._model, self._table, self._snapshot = model, table, snapshot
                self.last_error = None
            self._append(snapshot)

    def _append(self, snapshot: dict) -> None:
        if self.run_dir is not None:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            with open(self.run_dir / "policy.jsonl", "a", encoding="utf-8") as fh:
                fh.write(json.dumps(snapshot) + "\n")
                fh.flush()
                os.fsync(fh.fileno())

    def round_snapshot(self, rows: list[dict], round_index: int) -> dict | None:
        """The snapshot of an adaptive sweep's round: a fit on exactly `rows` (the runs of the
        rounds before it), sorted by run_id so that it is the same whatever order they landed
        in; None when the estimator cannot fit them yet (too few runs). Published as the latest
        snapshot (version = round) and appended to policy.jsonl with its round."""
        rows = sorted((dict(r) for r in rows), key=lambda r: str(r["run_id"]))
        with self._fit_lock:
            try:
                table = runs_from_rows(rows, where=f"round {round_index} runs")
                start = time.perf_counter()
                estimator = fit_runs_table(table, self.config)
                model = FittedMixtureModel.from_runs_table(estimator, self.config.estimator, table)
                target = self.targets[(round_index - 1) % len(self.targets)] if self.targets else None
                snapshot = self._make_snapshot(model, table, time.perf_counter() - start,
                                               version=round_index, target=target)
            except UserError as exc:
                with self._lock:
                    self.last_error = str(exc)
                return None
            snapshot["round"] = round_index
            with self._lock:
                self._snapshot = snapshot
                self.last_error = None
            self._append(snapshot)
        return snapshot

    def _make_snapshot(self, model: FittedMixtureModel, table: RunsTable, fit_s: float,
                       version: int | None = None, target: Mapping[str, float] | None = None) -> dict:
        if target is not None or self.target_covariates is not None:
            covariates = target if target is not None else self.target_covariates
        else:
            covariates = dict(zip(table.covariate_names, table.covariates().mean(axis=0).tolist()))
        policies = {p: model.recommend(covariates, policy=p, trust_radius=self.trust_radius,
                                       reference=self.reference) for p in ("analytic", "search")}
        previous = self._snapshot["version"] if self._snapshot else 0
        return {
            "version": previous + 1 if version is None else version,
            "n_runs": table.n_runs,
            "estimator": model.estimator_name,
            "model_version": model.version,
            "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "created_unix": round(time.time(), 3),
            "fit_s": round(fit_s, 3),
            "target_covariates": covariates,
            "returns": domain_returns(model, covariates, self.reference),
            "policies": policies,
        }

    # ---- readers
    def latest_snapshot(self) -> dict | None:
        with self._lock:
            return self._snapshot

    def n_runs(self) -> int:
        with self._lock:
            return len(self._rows)

    def write_model_dir(self, out: str | os.PathLike) -> str:
        """Fit on every row received (if any arrived since the last fit) and save the model."""
        self.wait()
        with self._lock:
            stale = self._model is None or len(self._rows) != self._rows_at_fit
        if stale:
            self._fit_once()
        with self._lock:
            model, table = self._model, self._table
        if model is None:
            raise UserError(f"no model to write: {self.last_error or 'no runs were added'}")
        save_model_dir(model, out, runs_table_sha256=table.sha256,
                       config=dataclasses.asdict(self.config))
        return str(out)
