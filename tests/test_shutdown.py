"""A killed driver leaves no local Ray process behind (issue 18, case 5). SIGTERM to `serve`
is tested end to end in test_serve_cli.py."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from causalmix.core.reaper import alive, descendants

pytestmark = [pytest.mark.ray]

REPO = Path(__file__).resolve().parent.parent

DRIVER = """
import sys, time
from causalmix.core.ray_setup import init_ray
init_ray(num_cpus=1, object_store_memory=128 * 1024**2)
print("up", flush=True)
time.sleep(600)
"""


def wait_gone(pids: dict[int, int], timeout_s: float) -> list[int]:
    """The pids (with their start times) still alive when they are all gone or `timeout_s` passed."""
    deadline = time.monotonic() + timeout_s
    while True:
        left = [p for p, start in pids.items() if alive(p, start)]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.2)


def test_a_sigkilled_driver_leaves_no_ray_process(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", DRIVER], cwd=REPO, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert proc.stdout.readline().strip() == "up"
        ray_procs = descendants(proc.pid)
        names = {Path(f"/proc/{p}/cmdline").read_bytes().split(b"\0")[0] for p in ray_procs}
        assert any(b"DashboardAgent" in n or b"RuntimeEnvAgent" in n for n in names), names
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    left = wait_gone(ray_procs, timeout_s=120)  # a condition, not a timing: room for a loaded machine
    assert left == [], [Path(f"/proc/{p}/cmdline").read_bytes()[:80] for p in left]
