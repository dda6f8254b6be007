"""The recommender as a Ray Serve deployment, and how it is deployed and reloaded.

The deployment is a thin shell over `service.app`: it builds the FastAPI app
over a `ModelSlot`, takes the model directory (and expected version) from its
`user_config`, and reports unhealthy when the model cannot answer.

`launch.py serve` deploys it with the public `serve.start` + `serve.run` and swaps a new
model in with `reload`: a handle's `broadcast` calls `reconfigure_and_report` on every
replica, in place (a second `serve.run` would give the app a new code version and restart
the replicas). `serve_config` is the same application as a Serve config file
(configs/serve.yaml) for `serve deploy` / a RayService, where a new `user_config` reaches the
replicas through `reconfigure`.

The ASGI app is built per replica by `__serve_build_asgi_app__`, which `serve.ingress()`
documents for a class decorated with no app (tests/test_serve_app.py checks that it still does).
"""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from ray import serve

from causalmix.core.errors import UserError
from causalmix.core.ports import free_port
from causalmix.service.app import DEFAULT_MAX_BODY_BYTES, ModelSlot, build_app

APP_NAME = "causalmix"
DEPLOYMENT_NAME = "Recommender"
IMPORT_PATH = "causalmix.actors.serve.deployment:app_builder"

logger = logging.getLogger("ray.serve")


# Ray Serve's high-throughput mode (Ray >= 2.55): HAProxy takes the HTTP port and forwards
# to each replica's own HTTP server, instead of the Python proxy actor relaying every request
# and calling back for its body. Read when Ray starts, so they belong in the environment of
# `ray start` (or of the process that starts a local Ray). Each replica's server listens on
# the host given to `serve.start` (`http_options`), like the proxy: 127.0.0.1 unless the
# user exposes the service; on a cluster that host has to be reachable from other nodes.
HIGH_THROUGHPUT_ENV = {"RAY_SERVE_ENABLE_HA_PROXY": "1", "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1"}
# A local Ray: HAProxy on the same machine hears of a stopping replica at once, so the
# replica need not wait Ray's default 30 s drain (meant for HAProxy on other nodes) to stop.
# The throughput-optimized mode also runs a handle's router on the caller's event loop, so a
# driver that imports Serve with it set fails `apply`/`reload` ("No event loop running": they
# call handles from sync code); our replicas hold no handles, so the separate loop costs nothing.
LOCAL_HIGH_THROUGHPUT_ENV = {**HIGH_THROUGHPUT_ENV, "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "1",
                             "RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP": "1"}
INGRESS_MODES = ("haproxy", "proxy")
# HAProxy's admin socket is created mode 666 at level admin (it can repoint backends and hand
# out the listening sockets); in Serve's default /tmp/haproxy-serve any local user reaches it.
_HAPROXY_FILES = {"RAY_SERVE_HAPROXY_SOCKET_PATH": "admin.sock",
                  "RAY_SERVE_HAPROXY_METRICS_SOCKET_PATH": "metrics.sock",
                  "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": "haproxy.cfg",
                  "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": "server-state"}
# Fixed by default (8404, 9101, 8500): a second HAProxy-mode Ray on the machine would fail to
# bind them. The stats page and the metrics exporter listen on all interfaces whatever the
# HTTP host (Serve's HAProxy template binds them to `*`); both are read-only.
_HAPROXY_PORTS = ("RAY_SERVE_HAPROXY_STATS_PORT", "RAY_SERVE_HAPROXY_METRICS_PORT",
                  "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT")
# Drawn above Ray's worker ports (10002-19999) and below the replicas' (30000-31000).
_HAPROXY_PORT_RANGE = (20000, 30000)
# A Unix socket path is at most 107 bytes. Serve puts the files in a folder named after the
# node id (56 hex digits), and HAProxy binds its admin socket as `<path>.<pid>.tmp` first.
_MAX_HAPROXY_DIR_CHARS = 107 - len("/" + 56 * "f" + "/admin.sock.4194304.tmp")


def local_haproxy_env(private_dir: Path) -> dict[str, str]:
    """The environment that starts a local Ray in high-throughput mode (HAProxy ingress) with
    HAProxy's sockets, config and state in `private_dir` (which should be mode 700 and
    this process's own) and its side ports free ones, so that several can run on one machine.

    Serve has no public API for HAProxy's file paths or side ports: they are environment
    variables that `ray.serve._private.constants` reads in each Serve actor, which inherits the
    environment `ray.init` started the local Ray with. tests/test_serve_app.py fails when one
    of the names leaves that module, tests/test_serve_cli.py when Serve stops honouring them
    (it checks HAProxy's sockets and listening ports).
    """
    folder = str(Path(private_dir).resolve())
    if len(folder) > _MAX_HAPROXY_DIR_CHARS:
        raise UserError(f"HAProxy's sockets would go under {folder}, longer than "
                        f"{_MAX_HAPROXY_DIR_CHARS} characters (a Unix socket path is limited to 107): "
                        "set TMPDIR to a shorter folder, or serve with --ingress proxy")
    env = {**LOCAL_HIGH_THROUGHPUT_ENV, "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": folder}
    env.update({name: str(Path(folder) / file) for name, file in _HAPROXY_FILES.items()})
    ports: list[int] = []
    while len(ports) < len(_HAPROXY_PORTS):
        if (port := free_port("", *_HAPROXY_PORT_RANGE)) not in ports:
            ports.append(port)
    env.update(zip(_HAPROXY_PORTS, map(str, ports)))
    return env


@contextlib.contextmanager
def local_ray_environment(ingress: str) -> Iterator[dict[str, str]]:
    """Within: this process's environment is what a local Ray started now needs for
    `ingress` (nothing for "proxy"; `local_haproxy_env` in a new private folder for
    "haproxy"), yielded too. On leaving, the environment is restored and the folder removed
    (stop the local Ray first)."""
    if ingress not in INGRESS_MODES:
        raise ValueError(f"ingress must be one of {', '.join(INGRESS_MODES)}, got {ingress!r}")
    with contextlib.ExitStack() as stack:
        env: dict[str, str] = {}
        if ingress == "haproxy":
            # mkdtemp makes the folder mode 700, so only this user reaches the admin socket.
            env = local_haproxy_env(Path(stack.enter_context(tempfile.TemporaryDirectory(
                prefix="causalmix-", ignore_cleanup_errors=True))))
        saved = {name: os.environ.get(name) for name in env}
        os.environ.update(env)
        try:
            yield env
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


class ModelRef(BaseModel):
    """The deployment's `user_config`: which model directory to answer from.

    `version` is the version the deployer found there. Changing it makes Serve call
    `reconfigure` even when the path stays the same (a refit replaced the directory).
    A replica serves what the directory holds when it loads; if a refit replaced it
    in between, the replica says so in its log and every answer carries the version
    it came from. Point `model_dir` at a directory that is never rewritten to pin a
    version strictly.
    """

    model_config = ConfigDict(extra="forbid")
    model_dir: str
    version: str | None = None


class AppArgs(BaseModel):
    """Arguments of `app_builder` (the `args:` of an application in a Serve config)."""

    model_config = ConfigDict(extra="forbid")
    max_body_bytes: int = Field(default=DEFAULT_MAX_BODY_BYTES, gt=0)


@serve.deployment(
    name=DEPLOYMENT_NAME,
    ray_actor_options={"num_cpus": 0.5},
    max_ongoing_requests=32,
    health_check_period_s=5.0,
    health_check_timeout_s=30.0,
    graceful_shutdown_timeout_s=30.0,
)
@serve.ingress()
class Recommender:
    def __init__(self, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES):
        self._slot = ModelSlot()
        self._max_body_bytes = max_body_bytes

    def __serve_build_asgi_app__(self):
        return build_app(self._slot, max_body_bytes=self._max_body_bytes)

    async def reconfigure(self, user_config: dict) -> None:
        """Load the model named by `user_config` off the event loop, check that it answers,
        then swap it in; requests keep being served (by the old model) meanwhile."""
        ref = ModelRef.model_validate(user_config)
        loaded = await asyncio.to_thread(self._slot.load, ref.model_dir)
        if ref.version is not None and loaded.version != ref.version:
            logger.warning("model directory %s now holds version %s, not %s as deployed; "
                           "serving %s", ref.model_dir, loaded.version, ref.version, loaded.version)
        self._slot.install(loaded)

    async def reconfigure_and_report(self, user_config: dict) -> str:
        """`reconfigure`, then the version now served (what `reload` broadcasts)."""
        await self.reconfigure(user_config)
        return self._slot.require().version

    def model_version(self) -> str | None:
        loaded = self._slot.current
        return None if loaded is None else loaded.version

    async def check_health(self) -> None:
        await asyncio.to_thread(self._slot.check_health)


def app_builder(args: dict) -> serve.Application:
    """Entry point for Serve configs (`import_path: actors.serve.deployment:app_builder`)."""
    return Recommender.bind(max_body_bytes=AppArgs.model_validate(args or {}).max_body_bytes)


@dataclasses.dataclass
class ServeSettings:
    """How `launch.py serve` runs the recommender."""

    model: str
    "Model directory written by `launch.py fit` (or the fit actor)."
    host: str = "127.0.0.1"
    """Address HTTP is served on (by HAProxy or the proxy, and by each replica's own server in
    HAProxy mode); loopback unless you mean to expose the service."""
    port: int = 8000
    "HTTP port."
    replicas: int = 1
    "Fixed number of replicas (ignored with `autoscale`)."
    autoscale: tuple[int, int] | None = None
    "(min, max) replicas: Serve scales between them on ongoing requests per replica."
    replica_cpus: float = 0.5
    "CPUs reserved per replica."
    max_ongoing_requests: int = 32
    "Requests one replica works on at once; more wait in the proxy."
    target_ongoing_requests: float = 8.0
    "With `autoscale`: ongoing requests per replica that Serve scales to."
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    "Request bodies larger than this get 422."
    access_log: bool = True
    "Log every request (method, path, status, latency) in the proxy and replica logs."
    version: str | None = None
    "Version found in `model` when deploying; a new one makes the replicas reload `model`."
    ingress: str = "haproxy"
    """What takes HTTP requests when `launch.py serve` starts its own local Ray: "haproxy"
    (Serve's high-throughput mode, `local_haproxy_env`: HAProxy forwards to an HTTP server in
    each replica, which listens on `host` like HAProxy does) or "proxy" (Serve's Python proxy
    actor, about 4x slower here). A cluster keeps the mode its `ray start` had
    (cluster/*.yaml start it with "haproxy")."""

    def __post_init__(self):
        if not 0 < self.port < 65536:
            raise ValueError(f"port must be in 1..65535, got {self.port}")
        if self.replicas < 1:
            raise ValueError(f"replicas must be >= 1, got {self.replicas}")
        if self.autoscale is not None:
            low, high = self.autoscale
            if not 0 <= low <= high or high < 1:
                raise ValueError(f"autoscale MIN:MAX needs 0 <= MIN <= MAX and MAX >= 1, got {low}:{high}")
        if self.replica_cpus < 0:
            raise ValueError(f"replica_cpus must be >= 0, got {self.replica_cpus}")
        if self.max_ongoing_requests < 1 or self.target_ongoing_requests <= 0:
            raise ValueError("max_ongoing_requests must be >= 1 and target_ongoing_requests > 0")
        if self.max_body_bytes < 1:
            raise ValueError(f"max_body_bytes must be >= 1, got {self.max_body_bytes}")
        if self.ingress not in INGRESS_MODES:
            raise ValueError(f"ingress must be one of {', '.join(INGRESS_MODES)}, got {self.ingress!r}")

    def deployment_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {
            "name": DEPLOYMENT_NAME,
            "max_ongoing_requests": self.max_ongoing_requests,
            "ray_actor_options": {"num_cpus": self.replica_cpus},
            "user_config": ModelRef(model_dir=str(Path(self.model).resolve()),
                                    version=self.version).model_dump(),
        }
        if self.autoscale is None:
            options["num_replicas"] = self.replicas
        else:
            low, high = self.autoscale
            options["autoscaling_config"] = {
                "min_replicas": low, "initial_replicas": max(low, 1), "max_replicas": high,
                "target_ongoing_requests": self.target_ongoing_requests}
        return options

    def proxy_location(self) -> str:
        return "HeadOnly"

    def serve_config(self) -> dict:
        """The Serve deploy config (the schema of configs/serve.yaml) for these settings."""
        return {
            "proxy_location": self.proxy_location(),
            "http_options": {"host": self.host, "port": self.port},
            "applications": [{
                "name": APP_NAME,
                "route_prefix": "/",
                "import_path": IMPORT_PATH,
                "args": AppArgs(max_body_bytes=self.max_body_bytes).model_dump(),
                "logging_config": {"enable_access_log": self.access_log},
                "deployments": [self.deployment_options()],
            }],
        }


def _application(settings: ServeSettings) -> serve.Application:
    return Recommender.options(**settings.deployment_options()).bind(max_body_bytes=settings.max_body_bytes)


def apply(settings: ServeSettings, *, timeout_s: float = 120.0) -> None:
    """Start Serve on the connected Ray cluster if needed and deploy the app, with public Serve
    APIs only (`serve.start`, `serve.run`, `serve.status`, a handle's `broadcast`).

    Ready means every replica answers with the model version `settings.version` (when set),
    asked through `broadcast`, not a guess at how long Serve takes. Raises UserError naming
    what Serve reported when the app does not come up within `timeout_s`.

    `serve.run` gives each call a new code version, so calling this again restarts the
    replicas (a rolling update); `reload` swaps the model in place instead.
    """
    serve.start(proxy_location=settings.proxy_location(),
                http_options={"host": settings.host, "port": settings.port})
    try:
        serve.run(_application(settings), name=APP_NAME, route_prefix="/",
                  logging_config={"enable_access_log": settings.access_log})
    except Exception as exc:  # serve.run raises RuntimeError (and others) when the deploy fails
        raise UserError(f"Serve application {APP_NAME!r} did not start: {exc} "
                        f"({_status_details()}); see the replica logs under the Ray session's "
                        "logs/serve folder") from None
    if settings.version is not None:
        wait_for_version(settings, timeout_s=timeout_s)


def reload(settings: ServeSettings, *, timeout_s: float = 120.0) -> None:
    """Make every running replica load `settings.model` and check that each now serves
    `settings.version`; requests keep being answered by the old model meanwhile.

    Replicas started later (autoscaling, a restart after a failed health check) load the
    model directory the deployment was started with, which is the watched directory itself,
    so they serve its current contents. Raises UserError when a replica fails to load it or
    answers with another version; the caller keeps its old version and tries again.
    """
    ref = ModelRef(model_dir=str(Path(settings.model).resolve()), version=settings.version)
    versions = _broadcast("reconfigure_and_report", ref.model_dump(), timeout_s=timeout_s)
    wrong = sorted({v for v in versions if v != settings.version})
    if wrong:
        raise UserError(f"reloading {settings.model}: replicas serve {wrong}, not {settings.version}")


def wait_for_version(settings: ServeSettings, *, timeout_s: float) -> None:
    """Until every replica reports `settings.version` (a replica loads its model in
    `reconfigure` before Serve marks it running, so this is normally at once)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            versions = set(_broadcast("model_version", timeout_s=max(1.0, deadline - time.monotonic())))
        except UserError:
            versions = set()
        if versions == {settings.version}:
            return
        if time.monotonic() > deadline:
            raise UserError(f"Serve application {APP_NAME!r}: replicas serve {sorted(map(str, versions))}, "
                            f"not {settings.version}, after {timeout_s:.0f} s ({_status_details()})")
        time.sleep(0.25)  # polling what the replicas report; the outcome is decided by that


def _broadcast(method: str, *args, timeout_s: float) -> list:
    handle = serve.get_deployment_handle(DEPLOYMENT_NAME, app_name=APP_NAME)
    try:
        return list(handle.broadcast(method, *args).results(timeout_s=timeout_s))
    except Exception as exc:  # a replica's exception, or a timeout, surfaces here
        raise UserError(f"Serve application {APP_NAME!r}: {method} failed on a replica: "
                        f"{type(exc).__name__}: {exc}") from None


def _status_details() -> str:
    try:
        app = serve.status().applications.get(APP_NAME)
    except Exception as exc:  # the controller itself may be what failed
        return f"serve.status() failed: {exc}"
    if app is None:
        return "no such application"
    details = {name: (d.status, d.message) for name, d in app.deployments.items()}
    return f"application {app.status}, deployments {details}"
