"""`launch.py serve` end to end, as a user runs it: its own local Ray in Serve's
high-throughput mode (HAProxy ingress), answers over loopback, a refit written into
the watched model directory is picked up without a restart, and SIGTERM (what a supervisor
sends) stops it with every process it started (issue 18, case 5)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from causal.model_dir import load_model_dir
from core.reaper import alive, descendants
from tests.ports import free_port
from tests.serve_model import DOMAINS, fit_synthetic_model_dir
from tests.test_shutdown import wait_gone

pytestmark = [pytest.mark.ray, pytest.mark.serve]

REPO = Path(__file__).resolve().parent.parent
POOL = {f"x.{d}.normalized_loss": 0.5 for d in DOMAINS}


def _first_json_line(proc: subprocess.Popen, timeout_s: float) -> dict:
    """The JSON line `serve` prints once the deployment answers (read off a thread, so a
    hung start fails the test instead of blocking it)."""
    found: list[dict] = []

    def read():
        for line in proc.stdout:
            if line.startswith("{"):
                found.append(json.loads(line))
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout_s)
    if not found:
        proc.kill()
        raise AssertionError(f"`launch.py serve` printed no URL within {timeout_s:.0f} s "
                             f"(exit code {proc.poll()})")
    return found[0]


def _haproxy_running() -> bool:
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if b"haproxy" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return True
        except OSError:
            continue
    return False


def test_serve_command_answers_and_reloads_a_refit_in_high_throughput_mode(tmp_path):
    model = fit_synthetic_model_dir(tmp_path / "model", estimator="regression", seed=0)
    first = load_model_dir(model).version
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "launch.py", "serve", "--model", str(model), "--port", str(port),
         "--high-throughput", "--watch", "1", "--replica-cpus", "0.25", "--no-access-log"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        started = _first_json_line(proc, timeout_s=180)
        assert started == {"url": f"http://127.0.0.1:{port}", "model_version": first,
                           "model_dir": str(model.resolve())}
        assert _haproxy_running()
        started_procs = descendants(proc.pid)
        with httpx.Client(base_url=started["url"], timeout=30) as client:
            assert client.get("/healthz").json()["model_version"] == first
            answer = client.post("/v1/recommend", json={"covariates": POOL}).json()
            assert answer["model_version"] == first and set(answer["mixture"]) == set(DOMAINS)
            bad = client.post("/v1/recommend", json={"covariates": {**POOL, "x.nope": 1.0}})
            assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "covariates"]

            fit_synthetic_model_dir(model, estimator="regression", seed=1)
            second = load_model_dir(model).version
            deadline = time.monotonic() + 90
            while client.get("/v1/model").json()["version"] != second:
                assert time.monotonic() < deadline, "the refit was not served within 90 s"
                time.sleep(0.5)
            assert client.post("/v1/recommend", json={"covariates": POOL}).json()["model_version"] == second
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(90)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
    # Ray's own processes (GCS, raylet, agents, HAProxy, replicas) and anything they started.
    assert len(started_procs) >= 4
    assert wait_gone(started_procs, timeout_s=60) == []
