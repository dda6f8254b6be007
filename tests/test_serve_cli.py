"""`launch.py serve` end to end, as a user runs it: its own local Ray in the default mode
(HAProxy ingress, Serve's high-throughput mode) with every port Serve answers on bound to
loopback and HAProxy's admin socket private, next to a second instance on the same machine;
it answers over loopback, a refit written into the watched model directory is picked up
without a restart, and SIGTERM (what a supervisor sends) stops it with every process it
started (issue 18, case 5; issue 19, item 6); the second instance, its raylet killed, exits 4
with nothing left behind (issue 29, case 15)."""
from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from causalmix.causal.model_dir import load_model_dir
from causalmix.core.ports import check_port_free
from causalmix.core.reaper import alive, descendants
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
        stderr = proc.stderr.read()[-3000:] if proc.stderr else "(not captured)"
        raise AssertionError(f"`launch.py serve` printed no URL within {timeout_s:.0f} s "
                             f"(exit code {proc.poll()}); its stderr ends:\n{stderr}")
    return found[0]


def _haproxy_pids(started: dict[int, int]) -> list[int]:
    return [pid for pid in started if b"haproxy" in _cmdline(pid).split(b"\0")[0]]


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _environ(pid: int) -> dict[str, str]:
    pairs = (item.split(b"=", 1) for item in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"))
    return {name.decode(): value.decode() for name, *rest in pairs for value in rest}


def _listening(pids) -> dict[int, list[tuple[str, int]]]:
    """{pid: [(ip, port) it listens on over TCP]} for `pids`, from /proc."""
    sockets: dict[str, tuple[str, int]] = {}
    for table, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A":  # TCP_LISTEN
                ip, port = (bytes.fromhex(part) for part in fields[1].split(":"))
                ip = b"".join(ip[i:i + 4][::-1] for i in range(0, len(ip), 4))  # 32-bit words, host order
                sockets[fields[9]] = (socket.inet_ntop(family, ip), int.from_bytes(port, "big"))
    found: dict[int, list[tuple[str, int]]] = {pid: [] for pid in pids}
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:  # gone
            continue
        for fd in fds:
            try:
                inode = os.readlink(f"/proc/{pid}/fd/{fd}").removeprefix("socket:[").removesuffix("]")
            except OSError:  # closed meanwhile
                continue
            if inode in sockets:
                found[pid].append(sockets[inode])
    return found


def _check_loopback_only(port: int, started: dict[int, int]) -> None:
    """What Serve listens on in HAProxy mode: HAProxy on the HTTP port, each replica's own HTTP
    server and the fallback proxy, all on 127.0.0.1 (Ray's own gRPC ports, the same in either
    mode, are not Serve's); HAProxy's read-only stats and metrics listeners on the free ports
    `local_haproxy_env` chose; the admin socket in a folder only this user can enter."""
    haproxies = _haproxy_pids(started)  # two for a moment while HAProxy reloads its config
    env = _environ(haproxies[0])
    side = {int(env["RAY_SERVE_HAPROXY_STATS_PORT"]), int(env["RAY_SERVE_HAPROXY_METRICS_PORT"])}
    assert not side & {8404, 9101}
    listens = _listening(started)
    assert {a for pid in haproxies for a in listens[pid]} == {("127.0.0.1", port)} | {("0.0.0.0", p) for p in side}
    replicas = [pid for pid in started if b"ServeReplica" in _cmdline(pid)]
    replica_ports = [(ip, p) for pid in replicas for ip, p in listens[pid] if 30000 <= p <= 31000]
    assert replicas and replica_ports and {ip for ip, _ in replica_ports} == {"127.0.0.1"}
    fallback = int(env["RAY_SERVE_FALLBACK_PROXY_HTTP_PORT"])
    assert [ip for found in listens.values() for ip, p in found if p == fallback] == ["127.0.0.1"]
    admin, private = Path(env["RAY_SERVE_HAPROXY_SOCKET_PATH"]), Path(env["RAY_SERVE_HAPROXY_SERVER_STATE_BASE"])
    assert admin.parent == private and any(stat.S_ISSOCK(p.stat().st_mode) for p in private.glob("*/admin.sock"))
    assert stat.S_IMODE(private.stat().st_mode) == 0o700 and private.stat().st_uid == os.getuid()


# The GCS declares a silent raylet dead after 2 missed 1 s health checks (Ray's default: 5 of 3 s).
FAST_NODE_DEATH = {"RAY_health_check_period_ms": "1000", "RAY_health_check_failure_threshold": "2"}


def _serve(model: Path, port: int, *extra: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "launch.py", "serve", "--model", str(model), "--port", str(port),
         "--replica-cpus", "0.25", "--no-access-log", *extra],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE if env else subprocess.DEVNULL, text=True,
        env={**os.environ, **(env or {})})


def _kill_raylet_and_expect_exit_4(proc: subprocess.Popen, port: int, started: dict[int, int]) -> None:
    """Issue 29, case 15: with its raylet killed, `serve` stops answering (never a 500), exits 4
    with one line, and ends every process its local Ray started, HAProxy included, so the port
    is free for the next `serve`."""
    raylet = [pid for pid in started if b"raylet" in _cmdline(pid).split(b"\0")[0]]
    assert len(raylet) == 1 and _haproxy_pids(started)
    os.kill(raylet[0], signal.SIGKILL)
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code in (200, 503)
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    assert proc.wait(timeout=60) == 4
    err = proc.stderr.read()
    assert "error: serve: the Ray node under" in err and "Traceback" not in err, err
    assert wait_gone(started, timeout_s=30) == []
    check_port_free("127.0.0.1", port)


def _stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(90)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.mark.slow
def test_serve_command_answers_on_loopback_and_reloads_a_refit_by_default(tmp_path):
    model = fit_synthetic_model_dir(tmp_path / "model", estimator="regression", seed=0)
    fixed = fit_synthetic_model_dir(tmp_path / "fixed", estimator="regression", seed=2)
    first = load_model_dir(model).version
    port, other_port = free_port(), free_port()
    # A second instance on the machine, started at the same time: HAProxy's side ports and
    # files are per instance, or the later HAProxy would fail to bind (Serve's are fixed).
    proc, other = (_serve(model, port, "--watch", "1"),
                   _serve(fixed, other_port, "--watch", "0", env=FAST_NODE_DEATH))
    try:
        started = _first_json_line(proc, timeout_s=180)
        assert started == {"url": f"http://127.0.0.1:{port}", "model_version": first,
                           "model_dir": str(model.resolve())}
        assert _first_json_line(other, timeout_s=180)["url"] == f"http://127.0.0.1:{other_port}"
        started_procs = descendants(proc.pid)
        _check_loopback_only(port, started_procs)
        private = Path(_environ(_haproxy_pids(started_procs)[0])["RAY_SERVE_HAPROXY_SERVER_STATE_BASE"])
        assert httpx.get(f"http://127.0.0.1:{other_port}/healthz", timeout=30).status_code == 200
        _kill_raylet_and_expect_exit_4(other, other_port, descendants(other.pid))
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
        _stop(proc)
        _stop(other)
    assert proc.returncode == 0 and other.returncode == 4
    # Ray's own processes (GCS, raylet, agents, HAProxy, replicas) and anything they started.
    assert len(started_procs) >= 4
    assert wait_gone(started_procs, timeout_s=60) == []
    assert not private.exists()
