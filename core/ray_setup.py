"""Connecting to Ray and checking, up front, that the resources a stage needs exist."""
from __future__ import annotations

import os
from pathlib import Path

from core.errors import UserError

REPO_ROOT = Path(__file__).resolve().parent.parent


def init_ray(address: str | None = None, num_cpus: int | None = None, **kwargs):
    """Connect to the cluster at `address` (or RAY_ADDRESS), else start a local Ray.

    Workers of a local Ray inherit this process's environment, so putting the
    repository on PYTHONPATH lets them import the project without installing it.
    Under `ray job submit --working-dir .` Ray ships the code itself.
    """
    import ray

    if ray.is_initialized():
        return ray
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if str(REPO_ROOT) not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), *paths])
    address = address or os.environ.get("RAY_ADDRESS")
    kwargs.setdefault("include_dashboard", False)
    kwargs.setdefault("configure_logging", False)
    if address:
        ray.init(address=address, **kwargs)
    else:
        # "local" starts a fresh instance; without it Ray would join whatever cluster
        # another process on this machine left in /tmp/ray/ray_current_cluster.
        ray.init(address="local", num_cpus=num_cpus, **kwargs)
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
