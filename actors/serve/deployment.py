"""The recommender as a Ray Serve deployment, and how it is deployed and reloaded.

The deployment is a thin shell over `actors.serve.app`: it builds the FastAPI app
over a `ModelSlot`, takes the model directory (and expected version) from its
`user_config`, and reports unhealthy when the model cannot answer.

It is always deployed from a Serve config (`serve_config` here, or
configs/serve.yaml with `serve run`/`serve deploy`), never with `serve.run(app)`:
an application deployed from a config keeps its code version across updates, so a
new `user_config` reaches the running replicas through `reconfigure`, in place,
while `serve.run` gives every call a new code version and restarts the replicas.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from ray import serve

from actors.serve.app import DEFAULT_MAX_BODY_BYTES, ModelSlot, build_app
from core.errors import UserError

APP_NAME = "causalmix"
DEPLOYMENT_NAME = "Recommender"
IMPORT_PATH = "actors.serve.deployment:app_builder"

logger = logging.getLogger("ray.serve")


# Ray Serve's high-throughput mode (Ray >= 2.55): HAProxy takes the HTTP port and forwards
# to each replica's own HTTP server, instead of the Python proxy actor relaying every request
# and calling back for its body. Read when Ray starts, so they belong in the environment of
# `ray start` (or of the process that starts a local Ray). Ray then binds replica ports
# (30000-31000) on all interfaces, so that HAProxy on other nodes reaches them.
HIGH_THROUGHPUT_ENV = {"RAY_SERVE_ENABLE_HA_PROXY": "1", "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1"}
# A local Ray: HAProxy on the same machine hears of a stopping replica at once, so the
# replica need not wait Ray's default 30 s drain (meant for HAProxy on other nodes) to stop.
LOCAL_HIGH_THROUGHPUT_ENV = {**HIGH_THROUGHPUT_ENV, "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "1"}


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
    "Address the HTTP proxy listens on; loopback unless you mean to expose the service."
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
    high_throughput: bool = False
    """Start a local Ray in Serve's high-throughput mode (HAProxy ingress, `HIGH_THROUGHPUT_ENV`):
    about 4x the requests/s here, but replica ports then listen on all interfaces. On a cluster
    the cluster's `ray start` environment decides (cluster/*.yaml turn it on)."""

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

    def serve_config(self) -> dict:
        """The Serve deploy config (the schema of configs/serve.yaml) for these settings."""
        return {
            "proxy_location": "HeadOnly",
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


def apply(settings: ServeSettings, *, timeout_s: float = 120.0) -> None:
    """Start Serve on the connected Ray cluster if needed and deploy (or update) the app.

    Applying the same settings with another model directory or version reloads the
    model in place. Waits until the application is RUNNING, or raises naming what
    Serve reported.
    """
    from ray.serve._private.api import serve_start
    from ray.serve.schema import ServeDeploySchema

    config = ServeDeploySchema.model_validate(settings.serve_config())
    # The public `serve.start` returns nothing; the client it creates is what applies a
    # config (the same call `serve run CONFIG.yaml` makes).
    client = serve_start(http_options=config.http_options.model_dump(),
                         proxy_location=config.proxy_location)
    client.deploy_apps(config, _blocking=False)
    wait_until_running(timeout_s=timeout_s)


def wait_until_running(*, timeout_s: float, settle_s: float = 0.5) -> None:
    deadline = time.monotonic() + timeout_s
    # The controller applies a config asynchronously; give it a moment to leave RUNNING.
    time.sleep(settle_s)
    while True:
        app = serve.status().applications.get(APP_NAME)
        status = getattr(app, "status", None)
        if status == "RUNNING":
            return
        if status == "DEPLOY_FAILED" or time.monotonic() > deadline:
            details = {name: (d.status, d.message) for name, d in (app.deployments.items() if app else [])}
            raise UserError(f"Serve application {APP_NAME!r} is {status} (waited up to {timeout_s:.0f} s) "
                            f"(deployments: {details}); see the replica logs under the Ray session's "
                            "logs/serve folder")
        time.sleep(0.25)
