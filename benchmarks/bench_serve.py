"""Latency and throughput of POST /v1/recommend (analytic policy) through Ray Serve, against
the same FastAPI app and model behind bare uvicorn, measured in the same run.

    python benchmarks/bench_serve.py [--model DIR] [--requests 2000] [--concurrency 16]

Both servers get the same requests (pool covariates drawn inside the ranges the model
was fitted on), after a warm-up, from one asyncio client in this process; the bare
server runs in its own process, Serve in its proxy and replica actors. Ends with
`RESULT serve ...`; `overhead` is the bare server's requests/s over Serve's.
Without --model, a model directory is fitted first on a small synthetic runs table.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run_bare(model_dir: str, port: int) -> None:
    import uvicorn

    from actors.serve.app import ModelSlot, build_app

    slot = ModelSlot()
    slot.install(slot.load(model_dir))
    uvicorn.run(build_app(slot), host="127.0.0.1", port=port, log_level="warning", access_log=False)


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


async def _load(url: str, bodies: list[bytes], concurrency: int) -> tuple[list[float], float, int]:
    import httpx

    latencies: list[float] = []
    failures = 0
    queue = iter(bodies)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30.0) as client:
        async def worker():
            nonlocal failures
            for body in queue:
                start = time.perf_counter()
                response = await client.post("/v1/recommend", content=body,
                                             headers={"content-type": "application/json"})
                latencies.append(time.perf_counter() - start)
                failures += response.status_code != 200

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - start
    return latencies, wall, failures


def measure(name: str, url: str, bodies: list[bytes], warmup: int, concurrency: int) -> dict:
    asyncio.run(_load(url, bodies[:warmup], concurrency))
    latencies, wall, failures = asyncio.run(_load(url, bodies, concurrency))
    ms = sorted(x * 1000 for x in latencies)
    figures = {"p50_ms": statistics.median(ms), "p99_ms": ms[min(len(ms) - 1, int(0.99 * len(ms)))],
               "rps": len(ms) / wall, "failures": failures}
    print(f"{name:>5}: p50 {figures['p50_ms']:.2f} ms  p99 {figures['p99_ms']:.2f} ms  "
          f"{figures['rps']:.0f} req/s  failures {failures}/{len(ms)}", file=sys.stderr)
    return figures


def fit_demo_model(out_dir: Path) -> Path:
    from tests.serve_model import fit_synthetic_model_dir

    return fit_synthetic_model_dir(out_dir)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="model directory (default: fit one on synthetic runs)")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--replica-cpus", type=float, default=1.0)
    args = parser.parse_args(argv)

    import httpx
    from ray import serve

    from actors.serve.deployment import ServeSettings, apply
    from core.ray_setup import init_ray

    with tempfile.TemporaryDirectory(prefix="bench_serve.") as tmp:
        model_dir = Path(args.model) if args.model else fit_demo_model(Path(tmp) / "model")
        bare_port, serve_port = free_port(), free_port()
        bare = multiprocessing.get_context("spawn").Process(
            target=_run_bare, args=(str(model_dir), bare_port), daemon=True)
        bare.start()
        try:
            init_ray(num_cpus=2, object_store_memory=256 * 1024**2, log_to_driver=False)
            apply(ServeSettings(model=str(model_dir), port=serve_port,
                                replica_cpus=args.replica_cpus))
            bare_url, serve_url = f"http://127.0.0.1:{bare_port}", f"http://127.0.0.1:{serve_port}"
            wait_healthy(bare_url)
            wait_healthy(serve_url)
            info = httpx.get(serve_url + "/v1/model").json()
            bodies = request_bodies(info, args.requests)
            print(f"model {info['version']} ({info.get('estimator')}), {len(info['domains'])} domains, "
                  f"{len(info['covariate_names'])} covariates; {args.requests} requests at "
                  f"concurrency {args.concurrency}", file=sys.stderr)
            base = measure("bare", bare_url, bodies, args.warmup, args.concurrency)
            served = measure("serve", serve_url, bodies, args.warmup, args.concurrency)
        finally:
            serve.shutdown()
            bare.terminate()
            bare.join(10)
    print(f"RESULT serve requests={args.requests} concurrency={args.concurrency} "
          f"serve_p50_ms={served['p50_ms']:.2f} serve_p99_ms={served['p99_ms']:.2f} "
          f"serve_rps={served['rps']:.0f} bare_p50_ms={base['p50_ms']:.2f} "
          f"bare_p99_ms={base['p99_ms']:.2f} bare_rps={base['rps']:.0f} "
          f"overhead={base['rps'] / served['rps']:.2f} "
          f"failures={served['failures'] + base['failures']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
