"""Per-stage wall time and memory for bench_paper_scale.py: a sampling thread in the driver that
records the peak resident memory of the driver, of the largest Ray worker (any process under
this one whose title starts with "ray::": trial actors, featurizers, the fit actor, Serve
replicas) and the object store's use.

The object store's use is what `ray memory --stats-only` prints ("Plasma memory usage N MiB"),
read through the function that command calls (`ray._private.internal_api.memory_summary`; Ray
2.60 has no public call for it), every `STORE_EVERY_S` seconds since it asks every node. A
worker's resident memory includes the object-store pages it has mapped (a trial reading its
shards: a reused trial actor touches most of the store over a sweep), so it over-counts what the
worker owns; its USS (pages no other process shares) is what it owns. The driver's RSS does not
include the store.
"""
from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field

import psutil

SAMPLE_EVERY_S = 0.5
STORE_EVERY_S = 2.0
_PLASMA = re.compile(r"Plasma memory usage (\d+) MiB")


def object_store_mib() -> float | None:
    import ray

    if not ray.is_initialized():
        return None
    # private: Ray 2.60 has no public call for the store's use (module docstring);
    # tests/test_paper_scale.py fails when it moves
    from ray._private.internal_api import memory_summary

    try:
        match = _PLASMA.search(memory_summary(address=ray.get_runtime_context().gcs_address, stats_only=True))
    except Exception:  # noqa: BLE001 - a node mid-shutdown: no reading this time
        return None
    return float(match.group(1)) if match else None


@dataclass
class StagePeaks:
    name: str
    started: float = field(default_factory=time.perf_counter)
    started_unix: float = field(default_factory=time.time)
    wall_s: float = 0.0
    driver_mib: float = 0.0
    worker_mib: float = 0.0
    worker: str = ""
    worker_uss_mib: float = 0.0
    store_mib: float = 0.0
    cpu_s: float = 0.0
    # (pid, create_time) -> CPU seconds at its first and its latest sample in this stage, and the
    # process's kind (`process_kind`)
    cpu_seen: dict = field(default_factory=dict)

    def cpu_by_kind(self) -> dict[str, float]:
        """CPU seconds of the stage per kind of process (driver, ray::FitActor, raylet, ...)."""
        totals: dict[str, float] = {}
        kinds = {kind for *_, kind in self.cpu_seen.values()}
        for first, last, kind in self.cpu_seen.values():
            # a title the system cut short ("ray::ImplicitFu") counts with the whole one
            kind = next((k for k in sorted(kinds) if k != kind and k.startswith(kind)), kind)
            totals[kind] = totals.get(kind, 0.0) + last - first
        return {k: round(v, 1) for k, v in sorted(totals.items(), key=lambda kv: -kv[1])}

    def as_dict(self) -> dict:
        return {"wall_s": round(self.wall_s, 2), "cpu_s": round(self.cpu_s, 1),
                "driver_rss_mib": round(self.driver_mib),
                "worker_rss_mib": round(self.worker_mib), "largest_worker": self.worker,
                "worker_uss_mib": round(self.worker_uss_mib),
                "object_store_mib": round(self.store_mib), "cpu_by_kind": self.cpu_by_kind()}


class ScaleMonitor:
    """`with monitor.stage("sweep") as peaks:` times the block and fills `peaks`."""

    def __init__(self):
        self._me = psutil.Process()
        self._current: StagePeaks | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="scale-monitor", daemon=True)
        self._last_store = 0.0
        self.stages: list[StagePeaks] = []

    def __enter__(self) -> "ScaleMonitor":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)

    def stage(self, name: str):
        monitor = self

        class _Stage:
            def __enter__(self):
                monitor._current = StagePeaks(name)
                monitor.stages.append(monitor._current)
                monitor._sample(store=True)
                return monitor._current

            def __exit__(self, *exc):
                peaks = monitor._current
                monitor._sample(store=True)
                peaks.wall_s = time.perf_counter() - peaks.started
                peaks.cpu_s = sum(last - first for first, last, _ in peaks.cpu_seen.values())
                monitor._current = None

        return _Stage()

    def _workers(self, peaks: StagePeaks):
        for child in self._me.children(recursive=True):
            try:
                title = " ".join(child.cmdline())
                _count_cpu(peaks, child, started_before=child.create_time() < peaks.started_unix,
                           kind=process_kind(title, child.name()))
                if title.startswith("ray::"):
                    yield title.split()[0], child.memory_info().rss, child.memory_full_info().uss
            except psutil.Error:
                continue

    def _sample(self, store: bool = False) -> None:
        peaks = self._current
        if peaks is None:
            return
        peaks.driver_mib = max(peaks.driver_mib, self._me.memory_info().rss / 2**20)
        _count_cpu(peaks, self._me, started_before=True, kind="driver")
        for title, rss, uss in self._workers(peaks):
            if rss / 2**20 > peaks.worker_mib:
                peaks.worker_mib, peaks.worker = rss / 2**20, title
            peaks.worker_uss_mib = max(peaks.worker_uss_mib, uss / 2**20)
        now = time.monotonic()
        if store or now - self._last_store >= STORE_EVERY_S:
            self._last_store = now
            used = object_store_mib()
            if used is not None:
                peaks.store_mib = max(peaks.store_mib, used)

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_EVERY_S):
            try:
                self._sample()
            except Exception:  # noqa: BLE001 - a stage ended mid-sample; the next sample counts
                continue


def process_kind(title: str, name: str) -> str:
    """What a process under the driver is: a Ray worker by the actor class or task in its title
    ("ray::FitActor.add_runs" -> "ray::FitActor"; an idle worker is "ray::IDLE"), any other by its
    executable's name (raylet, gcs_server, ...)."""
    if title.startswith("ray::"):
        return title.split()[0].split(".")[0]
    return name


def _count_cpu(peaks: StagePeaks, process: psutil.Process, *, started_before: bool, kind: str) -> None:
    """Record `process`'s CPU seconds and kind; one that started during the stage counts from zero
    (a process that ends between samples loses its last half second). A worker keeps the last kind
    it showed other than idle, the actor it became."""
    times = process.cpu_times()
    used = times.user + times.system
    key = (process.pid, process.create_time())
    first, _, seen_kind = peaks.cpu_seen.get(key, (used if started_before else 0.0, used, kind))
    peaks.cpu_seen[key] = (first, used, seen_kind if kind == "ray::IDLE" else kind)
