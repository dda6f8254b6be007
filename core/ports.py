"""A port for a server to listen on.

Binding port 0 and closing the socket hands back a port from the kernel's ephemeral range
(32768-60999 here), the same range every outgoing connection takes its local port from, so
by the time the server binds it another connection may hold it. Ports below that range are
never handed out that way; one is drawn per call from a per-process random stream (so that
parallel processes draw different ones) and checked free. What is left is a clash with
another server deliberately started on the same port in that range in between.
"""
from __future__ import annotations

import errno
import os
import random
import socket

LOW, HIGH = 20000, 32000
_rng = random.Random(os.getpid())


def check_port_free(host: str, port: int) -> None:
    """Raise OSError(EADDRINUSE) naming `host:port` when a server already listens there, before
    a command starts what would fail on it later with a less clear error (HAProxy's "crashed
    during startup")."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a port in TIME_WAIT is free
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise OSError(errno.EADDRINUSE, "address already in use", f"{host}:{port}") from None
            raise


def free_port(host: str = "127.0.0.1", low: int = LOW, high: int = HIGH) -> int:
    """A port in [low, high) that nothing listens on at `host` ("": on any interface)."""
    for _ in range(200):
        port = _rng.randrange(low, high)
        with socket.socket() as sock:
            try:
                sock.bind((host, port))
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    continue
                raise
            return port
    raise RuntimeError(f"no free port in {low}-{high} on {host or 'any interface'}")
