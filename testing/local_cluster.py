"""A multi-node Ray cluster on loopback, for the scaling benchmark and the fault-tolerance tests.

The same code paths as a cloud cluster (a head that runs no work, worker nodes that
join and leave while a sweep runs), but every node is a set of local processes
started by `ray.cluster_utils.Cluster`. Worker nodes get one CPU and no GPU, so
each runs one CPU trial at a time, like a one-GPU cloud node runs one proxy run.
"""
from __future__ import annotations

import os
import time

from causalmix.core.ray_setup import repo_pythonpath

MiB = 1024**2


class LocalCluster:
    """Head plus worker nodes on this machine; use as a context manager.

    Nodes inherit this process's environment when they start, so the repository is
    put on PYTHONPATH first: every worker process imports the project, as the
    working directory of `ray job submit` does on a real cluster.
    """

    def __init__(self, *, head_cpus: int = 0, worker_cpus: int = 1,
                 object_store_mb: int = 96, head_resources: dict | None = None):
        self.head_cpus = head_cpus
        self.worker_cpus = worker_cpus
        self.object_store_mb = object_store_mb
        self.head_resources = head_resources or {}
        self._cluster = None
        self.workers: list = []

    def __enter__(self) -> "LocalCluster":
        from ray.cluster_utils import Cluster

        os.environ["PYTHONPATH"] = repo_pythonpath()
        os.environ.setdefault("RAY_DEDUP_LOGS", "0")
        # A removed node must be declared dead within seconds, not the default ~30 s,
        # or the test would mostly measure the health-check timeout.
        system_config = {"health_check_period_ms": 500, "health_check_failure_threshold": 4}
        self._cluster = Cluster(initialize_head=True, head_node_args=dict(
            num_cpus=self.head_cpus, resources=self.head_resources,
            object_store_memory=max(self.object_store_mb, 96) * MiB,
            include_dashboard=False, _system_config=system_config))
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()

    @property
    def address(self) -> str:
        return self._cluster.address

    def add_workers(self, n: int = 1) -> list:
        added = [self._cluster.add_node(num_cpus=self.worker_cpus,
                                        object_store_memory=self.object_store_mb * MiB)
                 for _ in range(n)]
        self.workers.extend(added)
        return added

    def remove_worker(self, node, graceful: bool = False, timeout: float = 30.0) -> None:
        """Kill a worker node's processes (raylet, object store, its trial workers) and
        wait until the cluster has declared it dead, as it would a lost cloud node."""
        self._cluster.remove_node(node, allow_graceful=graceful)
        self.workers.remove(node)
        self.wait_until(lambda: not any(n["NodeID"] == node.node_id and n["Alive"]
                                        for n in self._cluster.global_state.node_table()),
                        timeout, f"node {node.node_id[:8]} to be declared dead")

    @staticmethod
    def node_id(node) -> str:
        return node.node_id

    def busy_node_ids(self) -> set[str]:
        """Worker nodes with at least one CPU in use: those running a trial or task."""
        available = self._cluster.global_state.available_resources_per_node()
        worker_ids = {n.node_id for n in self.workers}
        return {node_id for node_id, res in available.items()
                if node_id in worker_ids and res.get("CPU", 0.0) < self.worker_cpus}

    def actor_node_ids(self, class_name_part: str) -> set[str]:
        """Nodes hosting a live actor whose class name contains `class_name_part`."""
        table = self._cluster.global_state.actor_table(None, actor_state_name="ALIVE")
        return {a["Address"]["NodeID"] for a in table.values() if class_name_part in a["ActorClassName"]}

    def wait_until(self, predicate, timeout: float, what: str, poll: float = 0.2):
        """Poll `predicate` until truthy; TimeoutError names what was awaited."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(poll)
        raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")

    def shutdown(self) -> None:
        if self._cluster is not None:
            self._cluster.shutdown()
            self._cluster = None
            self.workers = []
