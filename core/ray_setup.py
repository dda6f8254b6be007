"""Connecting to Ray and checking, up front, that the resources a stage needs exist."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from causalmix.core.errors import UserError
from causalmix.core.logs import ray_init_kwargs

# The folder that holds the project's top package: a checkout's root (where a `--working-dir .`
# job and the cluster image have it too), or site-packages once installed. Found from the top
# package rather than from this file, whose parent would be a package folder once installed.
REPO_ROOT = Path(sys.modules[__name__.split(".")[0]].__file__).resolve().parent.parent


# Set when SIGTERM arrived, so that `launch.py` can exit 143 (128 + SIGTERM) rather than 130.
terminated = threading.Event()


def _on_sigterm(signum, frame):
    """SIGTERM (what a supervisor, `kill` or Kubernetes sends) does what Ctrl-C does: the SIGINT
    handler in place runs (Python's raises KeyboardInterrupt; Ray Tune's stops the
    experiment), so every command's interrupt path (stop, shut Ray down, exit) applies."""
    terminated.set()
    handler = signal.getsignal(signal.SIGINT)
    if callable(handler):
        handler(signal.SIGINT, frame)
    else:  # SIG_DFL / SIG_IGN / None: no Python handler to defer to
        raise KeyboardInterrupt


def handle_sigterm_like_sigint() -> None:
    """Install `_on_sigterm` (main thread only, where Python runs signal handlers). `ray.init`
    replaces the SIGTERM handler with one that calls sys.exit inside whatever runs, which
    skipped the commands' cleanup and aborted the driver (exit -6), so `init_ray` calls this
    again after it."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_sigterm)


_reaper = None


def _start_reaper() -> None:
    """See core/reaper.py: what a killed driver's local Ray leaves behind is stopped."""
    global _reaper
    if not sys.platform.startswith("linux") or (_reaper is not None and _reaper.poll() is None):
        return
    # Its own session: a Ctrl-C to the terminal's process group must not stop it first.
    _reaper = subprocess.Popen([sys.executable, "-m", "causalmix.core.reaper", str(os.getpid())],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=REPO_ROOT,
                               start_new_session=True, stderr=subprocess.DEVNULL)
    # Wait until it has noted the processes ray.init just started (a killed driver's agents).
    _reaper.stdin.write(b"r")
    _reaper.stdin.flush()
    _reaper.stdout.read(1)


def _stop_reaper() -> None:
    global _reaper
    if _reaper is not None:
        _reaper.stdin.close()  # with this process alive, the reaper just exits
        _reaper.wait()
        _reaper = None


def shutdown_ray() -> None:
    """Disconnect from Ray; a local Ray this process started is stopped with all its processes.
    Repeated SIGINT/SIGTERM are ignored meanwhile, so a supervisor's second signal does not
    cut the shutdown short and leave Ray's processes behind."""
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return
    main = threading.current_thread() is threading.main_thread()
    previous = [(s, signal.signal(s, signal.SIG_IGN)) for s in (signal.SIGINT, signal.SIGTERM)] if main else []
    try:
        ray.shutdown()
        _stop_reaper()
    finally:
        for sig, handler in previous:
            signal.signal(sig, handler)


def repo_pythonpath(*extra: str | Path) -> str:
    """PYTHONPATH with the repository (then `extra`) first and this process's entries after,
    each once: what a child process or a local Ray's workers need to import the project
    from a checkout that is not installed."""
    first = [str(REPO_ROOT), *map(str, extra)]
    rest = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p not in first]
    return os.pathsep.join([*first, *rest])


# Ray's default object store for a local Ray is 30 % of RAM, reserved in /dev/shm. On a
# workstation the shards and tables a stage puts there need far less, and the memory is
# better left to the trainer processes; Ray spills to disk past it.
LOCAL_OBJECT_STORE_BYTES = 512 * 1024**2


def is_local(address: str | None) -> bool:
    """Whether `init_ray(address)` starts a Ray of this process's own: no address, no
    RAY_ADDRESS, or "local"."""
    return (address or os.environ.get("RAY_ADDRESS") or "local") == "local"


def init_ray(address: str | None = None, num_cpus: int | None = None, **kwargs):
    """Connect to the cluster at `address` (or RAY_ADDRESS), else start a local Ray
    (object store `LOCAL_OBJECT_STORE_BYTES` unless `object_store_memory` is given).

    Workers of a local Ray inherit this process's environment, so putting the
    repository on PYTHONPATH lets them import the project without installing it.
    Under `ray job submit --working-dir .` Ray ships the code itself.
    """
    import ray

    if ray.is_initialized():
        return ray
    os.environ["PYTHONPATH"] = repo_pythonpath()

    for key, value in ray_init_kwargs().items():
        kwargs.setdefault(key, value)
    kwargs.setdefault("include_dashboard", False)
    kwargs.setdefault("configure_logging", False)
    if is_local(address):
        # "local" starts a fresh instance; without it Ray would join whatever cluster
        # another process on this machine left in /tmp/ray/ray_current_cluster.
        kwargs.setdefault("object_store_memory", LOCAL_OBJECT_STORE_BYTES)
        ray.init(address="local", num_cpus=num_cpus, **kwargs)
        _start_reaper()
    else:
        ray.init(address=address or os.environ["RAY_ADDRESS"], **kwargs)
    handle_sigterm_like_sigint()
    return ray


def check_resources(needed: dict[str, float], what: str) -> None:
    """Fail early, naming the shortfall, when the cluster can never fit one unit of work.

    Only the largest node is checked against `needed` (one actor must fit on one
    node); an autoscaling cluster may report fewer resources than it can add, so
    set CAUSALMIX_SKIP_RESOURCE_CHECK=1 there.
    """
    import ray

    if os.environ.get("CAUSALMIX_SKIP_RESOURCE_CHECK") == "1":
        return
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    for node in nodes:
        res = node.get("Resources", {})
        if all(res.get(k, 0.0) >= v for k, v in needed.items()):
            return
    have = [{k: node.get("Resources", {}).get(k, 0.0) for k in needed} for node in nodes]
    raise UserError(f"{what} needs {needed} on one node, but the cluster's nodes have {have}; "
                    "add such nodes, lower the request, or set CAUSALMIX_SKIP_RESOURCE_CHECK=1 "
                    "on an autoscaling cluster")
