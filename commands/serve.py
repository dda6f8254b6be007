"""`serve`: serve the recommender over HTTP from a Ray Serve deployment.

The model directory is checked here first (it loads and answers a probe), so a
bad directory fails before Ray starts. With `--watch S`, the directory is looked
at every S seconds; when a refit has replaced it, the new version is checked and
then handed to the running replicas through the deployment's `reconfigure`
(requests in flight finish on the old model). See docs/serve.md.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import stat
import sys
import time
from pathlib import Path

from causalmix.core import reaper
from causalmix.core.cli_config import ConfigFlags
from causalmix.core.errors import ClusterLost, UserError
from causalmix.core.logs import get_logger
from causalmix.core.ports import check_port_free
from causalmix.core.ray_setup import check_resources, init_ray, is_local, shutdown_ray

log = get_logger(__name__)


def _min_max(text: str) -> tuple[int, int]:
    try:
        low, high = (int(part) for part in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected MIN:MAX (two integers), got {text!r}") from None
    return low, high


def _flags() -> ConfigFlags:
    # actors.serve imports Ray Serve: only when the serve command is built or run
    from causalmix.actors.serve.deployment import INGRESS_MODES, ServeSettings

    return ConfigFlags(ServeSettings, ("model", "host", "port", "replicas", "autoscale", "replica_cpus",
                                       "max_ongoing_requests", "max_body_bytes", "access_log", "ingress"),
                       options={"autoscale": {"type": _min_max, "action": "store", "metavar": "MIN:MAX"},
                                "ingress": {"choices": INGRESS_MODES}})


def add_arguments(parser) -> None:
    flags = _flags()
    flags.add_config_argument(parser)
    grouped = ("replicas", "autoscale", "ingress")
    flags.add_to(parser, only=[f.dest for f in flags.flags if f.dest not in grouped])
    flags.add_to(parser.add_mutually_exclusive_group(), only=("replicas", "autoscale"))
    ingress = parser.add_mutually_exclusive_group()
    flags.add_to(ingress, only=("ingress",))
    ingress.add_argument("--high-throughput", dest="ingress", action="store_const", const="haproxy",
                         help="the same as --ingress haproxy (the default)")
    parser.add_argument("--watch", type=float, default=10.0, metavar="SECONDS",
                        help="look for a new model version in --model this often (0: never; "
                             "default %(default)g)")
    parser.add_argument("--address", default=None,
                        help="Ray cluster to deploy on ('auto': the one `ray start` began here; "
                             "default: RAY_ADDRESS, else a new local Ray)")
    parser.add_argument("--detach", action="store_true",
                        help="with --address: deploy, print the URL and exit, leaving it running")
    parser.add_argument("--duration", type=float, default=None, metavar="SECONDS",
                        help="stop serving after this long (default: until Ctrl-C)")


def _dir_stamp(path: Path) -> tuple[int, int] | None:
    """Changes when the directory is replaced or written into (what a refit does)."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_ino, stat.st_mtime_ns


def writable_by_others(model_dir: Path) -> str | None:
    """Why someone other than this user could put a model into `model_dir`, or None.

    The watcher loads whatever replaces the directory, and a model directory is code
    (causal/model_dir.py), so the directory, its files and the folder it sits in (where a
    refit renames the new directory into place) must be writable only by this user (or
    root). A parent with the sticky bit (like /tmp) lets others add entries but not rename
    or delete ours, so it passes.
    """
    me = os.getuid()
    checks = [(model_dir.parent, True), (model_dir, False)]
    checks += [(p, False) for p in sorted(model_dir.iterdir())] if model_dir.is_dir() else []
    for path, sticky_ok in checks:
        try:
            st = path.lstat()
        except OSError:
            continue
        if st.st_uid not in (me, 0):
            return f"{path} belongs to user id {st.st_uid}, not to this user ({me})"
        if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not (sticky_ok and st.st_mode & stat.S_ISVTX):
            return f"{path} is writable by other users (mode {stat.S_IMODE(st.st_mode):o})"
    return None


def run(args) -> int:
    from causalmix.service.app import ModelSlot

    settings = _flags().load(args)
    local = is_local(args.address)
    if local:
        check_port_free(settings.host, settings.port)
    if args.detach and local:
        raise UserError("--detach needs a Ray cluster (--address or RAY_ADDRESS): a local Ray "
                        "ends with this process")
    if args.watch < 0:
        raise UserError(f"--watch must be >= 0 seconds, got {args.watch}")
    model_dir = Path(settings.model).resolve()
    if args.watch:
        why = writable_by_others(model_dir)
        if why:
            raise UserError(f"serve --watch: {why}; whatever replaced {model_dir} would be loaded and "
                            "run (a model directory is code). Make it writable only by you "
                            "(chmod go-w), or serve a fixed copy with --watch 0")
    stamp = _dir_stamp(model_dir)
    loaded = ModelSlot().load(str(model_dir))
    settings.model, settings.version = str(model_dir), loaded.version

    from causalmix.actors.serve.deployment import HIGH_THROUGHPUT_ENV, local_ray_environment

    if args.ingress is not None and not local:
        log.warning("--ingress %s: a running cluster keeps the mode its `ray start` had (HAProxy: set "
                    "%s there; cluster/*.yaml do)", args.ingress,
                    " ".join(f"{k}={v}" for k, v in HIGH_THROUGHPUT_ENV.items()))
    with local_ray_environment(settings.ingress if local else "proxy") as env:
        try:
            return _serve(settings, args, local=local, address=args.address, model_dir=model_dir, stamp=stamp)
        finally:
            if local:
                _end_local_ray(env)


def _end_local_ray(env: dict[str, str]) -> None:
    """Stop this command's local Ray, then whatever of it outlived the stop: after a raylet
    death, HAProxy is reparented to init and keeps the port (the next serve there failed)."""
    shutdown_ray()
    marker = "RAY_SERVE_HAPROXY_SERVER_STATE_BASE"
    if marker in env and sys.platform.startswith("linux"):
        left = reaper.with_environment(marker, env[marker])
        if left:
            log.warning("ending %d process(es) the local Ray left behind: %s", len(left), sorted(left))
            reaper.terminate(left)


def _serve(settings, args, *, local: bool, address: str | None, model_dir: Path, stamp) -> int:
    """Start or join Ray, deploy, and serve until told to stop (or at once with --detach)."""
    import ray
    from ray import serve

    from causalmix.actors.serve.deployment import apply

    init_ray(address)
    check_resources({"CPU": settings.replica_cpus}, "a recommender replica")
    try:
        apply(settings)
    except BaseException:
        if local:
            serve.shutdown()
        raise
    url = f"http://{settings.host}:{settings.port}"
    log.info("serving model %s from %s at %s (API docs at %s/docs)", settings.version, model_dir, url, url)
    print(json.dumps({"url": url, "model_version": settings.version, "model_dir": str(model_dir)}),
          flush=True)
    if args.detach:
        return 0
    deadline = None if args.duration is None else time.monotonic() + args.duration
    poll_s = min(args.watch or 1.0, 1.0)
    node = ray.get_runtime_context().get_node_id()
    watched = time.monotonic()
    cluster_alive = True
    try:
        while deadline is None or time.monotonic() < deadline:
            time.sleep(poll_s if deadline is None else max(0.0, min(poll_s, deadline - time.monotonic())))
            cluster_alive = _node_alive(ray, node)
            if not cluster_alive:
                raise ClusterLost(f"serve: the Ray node under {url} died (its raylet is gone); stopped "
                                  "serving. See Ray's logs (session_latest/logs/raylet.out) for why")
            if args.watch and time.monotonic() - watched >= args.watch:
                watched = time.monotonic()
                if _dir_stamp(model_dir) != stamp:
                    stamp = _reload_if_new(settings, model_dir, _dir_stamp(model_dir))
    except KeyboardInterrupt:
        log.info("stopping")
    finally:
        if cluster_alive:  # with the cluster gone, Serve's controller cannot answer a shutdown
            serve.shutdown()
    return 0


def _node_alive(ray, node_id: str) -> bool:
    """Whether the cluster still lists this driver's node as alive (the GCS marks a node whose
    raylet stopped answering dead within its health-check period, 15 s by default)."""
    try:
        return any(n.get("NodeID") == node_id and n.get("Alive") for n in ray.nodes())
    except Exception:  # the GCS itself is gone (Ray raises several types): so is the cluster
        return False


def _reload_if_new(settings, model_dir: Path, stamp):
    """Check the model now in `model_dir` and, when its version is new, have the replicas
    load it; returns the directory stamp to compare with next time. A directory that does not
    load is reported and skipped until it changes again (a refit replaces it whole). A reload
    that fails on the replicas is reported and returns None, so the next poll tries again;
    `settings.version` changes only once the replicas serve the new version. The running
    model keeps serving throughout."""
    from causalmix.actors.serve import deployment
    from causalmix.service.app import ModelSlot

    why = writable_by_others(model_dir)
    if why:  # the replacement may have come with looser permissions than the first directory
        log.warning("not reloading %s: %s", model_dir, why)
        return stamp
    try:
        loaded = ModelSlot().load(str(model_dir))
    except Exception as exc:  # a refit may be half-way or broken: keep the running model
        log.warning("not reloading %s: %s", model_dir, exc)
        return stamp
    if loaded.version != settings.version:
        target = dataclasses.replace(settings, version=loaded.version)
        try:
            deployment.reload(target)
        except UserError as exc:
            log.warning("reloading %s (version %s) failed, will retry: %s", model_dir, loaded.version, exc)
            return None  # never equal to a real stamp: the next poll tries again
        settings.version = loaded.version
        log.info("now serving model %s", loaded.version)
    return stamp
