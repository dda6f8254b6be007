"""What keeps a sweep's cost per run flat as the pool grows (issue 27), without Ray: a run's
documents read row by row from its state's shards in their concatenation order, the runs table's
rewrites coalesced once they get slow, and the synthetic trial's known outcome."""
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from causalmix.actors.sweep.synthetic_trial import known_outcome
from causalmix.causal.runs_table import RunsTableWriter
from causalmix.core.errors import UserError
from causalmix.proxy.data import _StateDocuments


def shard(prefix: str, n: int, is_text: bool | None = None) -> pd.DataFrame:
    frame = pd.DataFrame({"doc_id": [f"{prefix}{i}" for i in range(n)], "prompt": [f"p{prefix}{i}" for i in range(n)],
                          "response": [f"r{prefix}{i}" for i in range(n)]})
    return frame if is_text is None else frame.assign(is_text=is_text)


@pytest.mark.parametrize("arrow", [False, True], ids=["frames", "arrow-tables"])
def test_state_documents_read_rows_in_the_order_of_the_concatenated_shards(arrow):
    frames = {"a": shard("a", 3, True), "b": shard("b", 0), "c": shard("c", 4)}
    shards = {n: pa.Table.from_pandas(f, preserve_index=False) for n, f in frames.items()} if arrow else frames
    documents = _StateDocuments(shards, ["c", "b", "a"], "d")
    whole = pd.concat([frames[n] for n in ("c", "b", "a")], ignore_index=True)
    assert len(documents) == len(whole) == 7
    for i in range(len(whole)):
        where, doc_id, prompt, response, is_text = documents.row(i)
        assert (doc_id, prompt, response) == tuple(whole.loc[i, ["doc_id", "prompt", "response"]])
        assert is_text == (i >= 4) and where == (("c", i) if i < 4 else ("a", i - 4))
    with pytest.raises(UserError, match="unknown shard"):
        _StateDocuments(shards, ["a", "z"], "d")
    with pytest.raises(UserError, match="holds no documents"):
        _StateDocuments(shards, ["b"], "d")


def test_runs_table_rewrites_are_coalesced_once_they_get_slow(tmp_path):
    path = tmp_path / "runs.parquet"
    every = RunsTableWriter(path)
    every.add({"run_id": "r0", "y": 1.0})
    assert len(pd.read_parquet(path)) == 1 and not every.pending
    writer = RunsTableWriter(path, max_write_share=0.1)
    assert list(writer.rows) == ["r0"]
    writer.add({"run_id": "r1", "y": 2.0})  # the first rewrite is due at once
    assert len(pd.read_parquet(path)) == 2
    writer._last_write_s = 3600.0  # a rewrite that slow waits 9 hours before the next
    writer.add({"run_id": "r2", "y": 3.0})
    assert writer.pending and len(pd.read_parquet(path)) == 2
    writer.flush()
    assert not writer.pending and pd.read_parquet(path)["run_id"].tolist() == ["r0", "r1", "r2"]
    with pytest.raises(ValueError, match="max_write_share"):
        RunsTableWriter(path, max_write_share=0)


def test_known_outcome_rewards_low_loss_domains_and_is_seeded():
    mixture = {"a": 0.5, "b": 0.5}
    covariates = {"x.a.normalized_loss": 0.2, "x.b.normalized_loss": 0.8}
    y = known_outcome(mixture, covariates, seed=3)
    assert y == known_outcome(mixture, covariates, seed=3) and abs(y - 0.5) < 0.05
    assert known_outcome({"a": 0.9, "b": 0.1}, covariates, seed=3) > known_outcome({"a": 0.1, "b": 0.9}, covariates, seed=3)
    assert np.isfinite(known_outcome({"a": 1.0, "b": 0.0}, {}, seed=0))


def test_refits_in_a_row_leave_their_thread_idle_for_the_rest_of_busy_share(monkeypatch):
    from causalmix.causal.streaming import PolicyTracker

    with pytest.raises(UserError, match="busy_share"):
        PolicyTracker(busy_share=0)
    tracker = PolicyTracker(refit_every=1, busy_share=0.25)
    clock, sleeps, fits = iter([0.0, 2.0, 10.0]), [], []

    def fit_once():  # a refit of 2 s during which one more run lands
        fits.append(len(tracker._rows))
        tracker._rows_at_fit = len(tracker._rows)
        if len(fits) == 1:
            tracker._rows.append({"run_id": "late"})

    monkeypatch.setattr(tracker, "_fit_once", fit_once)
    monkeypatch.setattr("causalmix.causal.streaming.time.perf_counter", lambda: next(clock, 10.0))
    monkeypatch.setattr("causalmix.causal.streaming.time.sleep", sleeps.append)
    tracker._rows.append({"run_id": "first"})
    tracker._fit_loop()
    assert fits == [1, 2] and sleeps == [6.0]  # busy 2 s of every 8


def test_the_private_ray_call_the_scale_monitor_reads_still_exists():
    """benchmarks/scale_monitor.py reads the object store's use through
    `ray._private.internal_api.memory_summary` (what `ray memory --stats-only` calls; Ray 2.60
    has no public call for it): this fails when a Ray upgrade moves or reshapes it."""
    import inspect

    from ray._private.internal_api import memory_summary

    params = inspect.signature(memory_summary).parameters
    assert {"address", "stats_only"} <= set(params)


def test_scale_monitor_splits_cpu_seconds_by_kind_of_process():
    """A worker counts as the actor it became (not as idle), and a title the system cut short
    counts with the whole one."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    from scale_monitor import StagePeaks, process_kind

    assert process_kind("ray::FitActor.add_runs extra", "python") == "ray::FitActor"
    assert process_kind("/usr/bin/raylet --x", "raylet") == "raylet"
    peaks = StagePeaks("sweep")
    peaks.cpu_seen = {1: (0.0, 2.0, "ray::ImplicitFunc"), 2: (1.0, 4.0, "ray::ImplicitFu"), 3: (0.0, 1.0, "driver")}
    assert peaks.cpu_by_kind() == {"ray::ImplicitFunc": 5.0, "driver": 1.0}


def test_refits_wait_for_the_runs_to_grow_by_refit_growth():
    from causalmix.causal.streaming import PolicyTracker

    with pytest.raises(UserError, match="refit_growth"):
        PolicyTracker(refit_growth=-1)
    tracker = PolicyTracker(refit_every=4, refit_growth=0.25, background=False)
    tracker._rows, tracker._rows_at_fit = [{}] * 203, 200
    assert not tracker._due()                       # 3 new rows: fewer than refit_every
    tracker._rows = [{}] * 249
    assert not tracker._due()                       # 49 new: fewer than a quarter of 200
    tracker._rows = [{}] * 250
    assert tracker._due()
    tracker._rows, tracker._rows_at_fit = [{}] * 8, 4
    assert tracker._due()                           # small tables: refit_every rules
