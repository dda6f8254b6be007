"""Latency and throughput of POST /v1/recommend (analytic policy) through Ray Serve, against
the same FastAPI app and model behind bare uvicorn, measured in the same run.

    python benchmarks/bench_serve.py [--model DIR] [--requests 2000] [--concurrency 16]
                                     [--replicas N] [--ingress haproxy|proxy]

Both servers get the same requests (pool covariates drawn inside the ranges the model
was fitted on), after a warm-up, from one asyncio client in this process; the bare
server runs as N uvicorn worker processes, Serve as N replicas behind HAProxy (Serve's
high-throughput mode, what `launch.py serve` starts by default) or, with --ingress proxy,
behind Serve's Python proxy. Ends with
`RESULT serve ...`; `overhead` is the bare server's requests/s over Serve's.
Without --model, a model directory is fitted first on a small synthetic runs table.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from causalmix.core.ports import free_port  # noqa: E402
from causalmix.core.ray_setup import repo_pythonpath  # noqa: E402


BARE_MODEL_ENV = "CAUSALMIX_BENCH_MODEL_DIR"


def bare_app():
    """The bare server's app; a factory, so that each uvicorn worker process builds its own."""
    from causalmix.service.app import ModelSlot, build_app

    slot = ModelSlot()
    slot.install(slot.load(os.environ[BARE_MODEL_ENV]))
    return build_app(slot)


def start_bare(model_dir: str, port: int, niceness: int, workers: int) -> subprocess.Popen:
    """uvicorn with `workers` processes serving `bare_app`, at the given niceness."""
    env = {**os.environ, BARE_MODEL_ENV: model_dir,
           "PYTHONPATH": repo_pythonpath(REPO / "benchmarks")}
    command = [sys.executable, "-m", "uvicorn", "bench_serve:bare_app", "--factory", "--workers", str(workers),
               "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", "--no-access-log"]
    return subprocess.Popen(command, env=env, preexec_fn=lambda: os.nice(niceness - os.nice(0)))


def wait_healthy(url: str, timeout_s: float = 60.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url}/healthz did not answer 200 within {timeout_s:.0f} s")


def request_bodies(info: dict, n: int, seed: int = 0) -> list[bytes]:
    import numpy as np

    rng = np.random.default_rng(seed)
    ranges = info.get("fitted_on", {}).get("covariate_ranges") or {}
    bodies = []
    for _ in range(n):
        covariates = {name: float(rng.uniform(*ranges.get(name, (0.0, 1.0))))
                      for name in info["covariate_names"]}
        bodies.append(json.dumps({"covariates": covariates, "policy": "analytic"}).encode())
    return bodies


class _Connection:
    """One keep-alive HTTP/1.1 connection. The load generator shares two cores with the servers
    it measures, so it speaks the protocol over asyncio streams directly: a general client
    (httpx) spends several times more CPU per request, taken from both servers."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port

    async def __aenter__(self):
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        return self

    async def __aexit__(self, *exc):
        self.writer.close()

    async def post(self, path: str, body: bytes) -> int:
        self.writer.write(b"POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
                          b"Content-Length: %d\r\n\r\n%s" % (path.encode(), self.host.encode(), len(body), body))
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        headers = dict(line.split(b":", 1) for line in head.split(b"\r\n")[1:] if b":" in line)
        headers = {name.strip().lower(): value.strip().lower() for name, value in headers.items()}
        if b"content-length" in headers:
            await self.reader.readexactly(int(headers[b"content-length"]))
        elif headers.get(b"transfer-encoding") == b"chunked":
            while size := int((await self.reader.readuntil(b"\r\n")).strip(), 16):
                await self.reader.readexactly(size + 2)
            await self.reader.readuntil(b"\r\n")
        else:
            raise RuntimeError(f"{self.host}:{self.port} answered without a length: {head!r}")
        return status


async def _load(url: str, bodies: list[bytes], concurrency: int) -> tuple[list[float], float, int, float]:
    host, port = url.removeprefix("http://").split(":")
    latencies: list[float] = []
    failures = 0
    queue = iter(bodies)

    async def worker():
        nonlocal failures
        async with _Connection(host, int(port)) as connection:
            for body in queue:
                start = time.perf_counter()
                status = await connection.post("/v1/recommend", body)
                latencies.append(time.perf_counter() - start)
                failures += status != 200

    start, cpu_start = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    return latencies, wall, failures, cpu


def measure(name: str, url: str, bodies: list[bytes], warmup: int, concurrency: int) -> dict:
    asyncio.run(_load(url, bodies[:warmup], concurrency))
    latencies, wall, failures, client_cpu = asyncio.run(_load(url, bodies, concurrency))
    ms = sorted(x * 1000 for x in latencies)
    figures = {"p50_ms": statistics.median(ms), "p99_ms": ms[min(len(ms) - 1, int(0.99 * len(ms)))],
               "rps": len(ms) / wall, "failures": failures}
    print(f"{name:>5}: p50 {figures['p50_ms']:.2f} ms  p99 {figures['p99_ms']:.2f} ms  "
          f"{figures['rps']:.0f} req/s  failures {failures}/{len(ms)}  "
          f"(load generator used {100 * client_cpu / wall:.0f}% of a core)", file=sys.stderr)
    return figures


def fit_demo_model(out_dir: Path, estimator: str) -> Path:
    from tests.serve_model import fit_synthetic_model_dir

    return fit_synthetic_model_dir(out_dir, estimator=estimator)


def model_latency_ms(model_dir: Path, bodies: list[bytes]) -> float:
    """Median time of the model's own `recommend`, in this process: the floor under both servers."""
    from causalmix.causal.model_dir import load_model_dir

    model = load_model_dir(model_dir)
    times = []
    for body in bodies[:200]:
        covariates = json.loads(body)["covariates"]
        start = time.perf_counter()
        model.recommend(covariates, policy="analytic")
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main(argv=None) -> int:
    from causalmix.actors.serve.deployment import INGRESS_MODES, ServeSettings

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="model directory (default: fit one on synthetic runs)")
    parser.add_argument("--estimator", default="causal-forest",
                        help="estimator of the model fitted when --model is not given")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--replicas", type=int, default=1,
                        help="Serve replicas, and as many uvicorn worker processes for the bare server")
    parser.add_argument("--replica-cpus", type=float, default=1.0)
    parser.add_argument("--max-ongoing-requests", type=int, default=ServeSettings.max_ongoing_requests,
                        help="per replica, as `serve --max-ongoing-requests`")
    parser.add_argument("--niceness", type=int, default=15,
                        help="scheduling niceness of both servers: Ray starts its workers (Serve's "
                             "proxy and replicas) at RAY_worker_niceness, 15 by default, so the bare "
                             "server gets the same, or else a busy machine starves only Serve")
    parser.add_argument("--ingress", choices=INGRESS_MODES, default=ServeSettings.ingress,
                        help="what takes HTTP requests, as `launch.py serve --ingress`")
    args = parser.parse_args(argv)
    os.environ["RAY_worker_niceness"] = str(args.niceness)

    import httpx
    from ray import serve

    from causalmix.actors.serve.deployment import apply, local_ray_environment
    from causalmix.core.ray_setup import init_ray

    with tempfile.TemporaryDirectory(prefix="bench_serve.") as tmp, local_ray_environment(args.ingress):
        model_dir = Path(args.model) if args.model else fit_demo_model(Path(tmp) / "model", args.estimator)
        bare_port, serve_port = free_port(), free_port()
        bare = start_bare(str(model_dir), bare_port, args.niceness, args.replicas)
        try:
            # "local": a Ray of its own, never a cluster someone else started on this machine.
            init_ray(address="local", num_cpus=2, object_store_memory=256 * 1024**2, log_to_driver=False)
            apply(ServeSettings(model=str(model_dir), port=serve_port, access_log=False,
                                replicas=args.replicas, replica_cpus=args.replica_cpus,
                                max_ongoing_requests=args.max_ongoing_requests))
            bare_url, serve_url = f"http://127.0.0.1:{bare_port}", f"http://127.0.0.1:{serve_port}"
            wait_healthy(bare_url)
            wait_healthy(serve_url)
            info = httpx.get(serve_url + "/v1/model").json()
            bodies = request_bodies(info, args.requests)
            print(f"model {info['version']} ({info.get('estimator')}), {len(info['domains'])} domains, "
                  f"{len(info['covariate_names'])} covariates; {args.requests} requests at "
                  f"concurrency {args.concurrency}", file=sys.stderr)
            model_ms = model_latency_ms(model_dir, bodies)
            print(f"model alone: recommend p50 {model_ms:.2f} ms", file=sys.stderr)
            base = measure("bare", bare_url, bodies, args.warmup, args.concurrency)
            served = measure("serve", serve_url, bodies, args.warmup, args.concurrency)
        finally:
            serve.shutdown()
            bare.terminate()
            bare.wait(30)
    print(f"RESULT serve requests={args.requests} concurrency={args.concurrency} "
          f"estimator={info['estimator']['name']} ingress={args.ingress} "
          f"replicas={args.replicas} niceness={args.niceness} "
          f"model_p50_ms={model_ms:.2f} "
          f"serve_p50_ms={served['p50_ms']:.2f} serve_p99_ms={served['p99_ms']:.2f} "
          f"serve_rps={served['rps']:.0f} bare_p50_ms={base['p50_ms']:.2f} "
          f"bare_p99_ms={base['p99_ms']:.2f} bare_rps={base['rps']:.0f} "
          f"overhead={base['rps'] / served['rps']:.2f} "
          f"failures={served['failures'] + base['failures']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
