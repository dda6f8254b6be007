"""Stops what a local Ray left running when its driver is killed (SIGKILL, OOM killer).

Ray's own fate sharing (PR_SET_PDEATHSIG) stops the raylet and GCS with their driver, but
the raylet's agents (ray::DashboardAgent, ray::RuntimeEnvAgent, listening on all interfaces)
outlive them: measured here, both were still running a minute after the driver was killed.

`init_ray` starts this as `python -m core.reaper DRIVER_PID` with a pipe on its stdin, after
starting a local Ray. When asked (a byte on the pipe, answered with a byte on its stdout, so
that `init_ray` knows the processes Ray just started are noted) and every POLL_S, it notes the
driver's descendants (pid and start time, so
that a reused pid is never mistaken for one of them); when the pipe closes it exits if the
driver is still alive (a clean shutdown) and otherwise terminates, then kills, the last
descendants it saw. Linux only (/proc); elsewhere `init_ray` does not start it.
"""
from __future__ import annotations

import os
import select
import signal
import sys
import time

POLL_S = 2.0
GRACE_S = 5.0


def _stat(pid: int) -> tuple[int, str, int] | None:
    """(parent pid, state, start time) of `pid` from /proc, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
    except OSError:
        return None
    return int(fields[1]), fields[0].decode(), int(fields[19])


def alive(pid: int, start: int | None = None) -> bool:
    info = _stat(pid)
    return info is not None and info[1] != "Z" and (start is None or info[2] == start)


def descendants(root: int) -> dict[int, int]:
    """{pid: start time} of every live descendant of `root`."""
    children: dict[int, list[int]] = {}
    starts: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            info = _stat(int(name))
            if info is not None and info[1] != "Z":
                children.setdefault(info[0], []).append(int(name))
                starts[int(name)] = info[2]
    found, todo = {}, [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found[child] = starts[child]
            todo.append(child)
    return found


def main(driver: int) -> int:
    me = os.getpid()
    seen: dict[int, int] = {}
    while True:
        ready, _, _ = select.select([sys.stdin], [], [], POLL_S)
        asked = ready and os.read(sys.stdin.fileno(), 4096)
        if ready and not asked:
            break  # the pipe closed: the driver shut Ray down, or died
        if not alive(driver):
            break
        seen = {pid: start for pid, start in descendants(driver).items() if pid != me}
        if asked:
            os.write(sys.stdout.fileno(), b"k")
    if alive(driver):
        return 0
    terminate(seen)
    return 0


def terminate(processes: dict[int, int]) -> None:
    """SIGTERM each live process of {pid: start time}, then SIGKILL what is left after GRACE_S."""
    left = {pid: start for pid, start in processes.items() if alive(pid, start)}
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in left:
            try:
                os.kill(pid, sig)
            except OSError:
                pass
        deadline = time.monotonic() + GRACE_S
        while any(alive(p, s) for p, s in left.items()) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = {p: s for p, s in left.items() if alive(p, s)}
        if not left:
            break


def with_environment(name: str, value: str) -> dict[int, int]:
    """{pid: start time} of this user's live processes (not this one) whose environment holds
    `name=value`: with a value unique to one command (serve's private HAProxy folder), every
    process its local Ray started, wherever it was reparented after a crash."""
    marker = f"{name}={value}".encode()
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as fh:
                environ = fh.read()
        except OSError:  # gone, or another user's
            continue
        info = _stat(int(entry))
        if info is not None and info[1] != "Z" and marker in environ.split(b"\0"):
            found[int(entry)] = info[2]
    return found


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1])))
