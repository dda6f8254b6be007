"""Caution where the mixture does nothing: on known-truth worlds whose outcome no mixture
changes (benchmarks/truth_worlds.py, `null` and `null-many-cov`: the same confounded
assignment as bench_truth's families, the returns dropped), every move is a claim of a gain
that is not there. At 512 runs and at 64 noisy runs, 5 shifted target pools per seed, it
prints per world and method:
  moved       targets where the recommendation left the equal mixture;
  false       targets whose (1 - alpha) interval of the gain lies above 0 (a confident claim);
  gain        the mean expected gain claimed (the truth is 0), in units of the run-to-run noise sd;
  evidence p  the default's mixture-evidence p-value (causal.selection.mixture_evidence).

    python benchmarks/bench_null.py [--seeds 2] [--methods default,regmix,no-covariates]

Baseline: RegMix (LightGBM and its top-k policy), which a user would pick instead. Ends with
`RESULT null ...`: moves and confident claims per method, and the default's share of RegMix's
confident claims.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_truth import METHODS, N_TARGETS, SIZES, draw_world, fit_method  # noqa: E402
from truth_worlds import NULL_WORLDS  # noqa: E402

DEFAULT_METHODS = ("default", "regmix", "no-covariates")


def target_states(world, n: int) -> list[np.ndarray]:
    """Shifted target pools drawn as bench_truth's are (without its filter on the optimum's
    distance from equal: here there is no optimum)."""
    rng = world.target_rng()
    return [world.shifted_state(rng) for _ in range(n)]


def run_world(job):
    """Every method on one world: (world, size, seed, {method: (rows or None, chosen name, p)})."""
    name, size, seed, methods = job
    with threadpool_limits(limits=1), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        world, table = draw_world(NULL_WORLDS[name], size, seed)
        states = target_states(world, N_TARGETS)
        out = {}
        for method in methods:
            _, options, drop = METHODS[method]
            try:
                model = fit_method(table, method, seed)
                rows = []
                for state in states:
                    rec = model.recommend({} if drop else world.covariates(state), seed=seed, **options)
                    mixture = np.array([rec["mixture"][d] for d in world.domains])
                    rows.append({"moved": bool(np.abs(mixture - 1 / world.k).max() > 1e-9),
                                 "false": rec["interval"][0] > 0,
                                 "gain": rec["expected_gain"] / world.noise})
                evidence = (getattr(model.estimator, "selection_", None) or {}).get("mixture_evidence")
                out[method] = (rows, model.estimator_name, evidence["p_value"] if evidence else None)
            except Exception as exc:  # a failed fit is a result
                out[method] = (None, f"failed: {type(exc).__name__}: {str(exc)[:80]}", None)
    return name, size, seed, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=2, help="worlds per kind and size (2: about 5 min here)")
    parser.add_argument("--methods", default=",".join(DEFAULT_METHODS), help=f"comma-separated, of {','.join(METHODS)}")
    args = parser.parse_args()
    methods = args.methods.split(",")
    if unknown := sorted(set(methods) - set(METHODS)):
        parser.error(f"unknown methods {unknown}; choose from {list(METHODS)}")
    sizes = ("512", "64-noisy")
    jobs = [(name, size, seed, tuple(methods)) for name in NULL_WORLDS for size in sizes for seed in range(args.seeds)]
    results: dict = {}
    start = time.perf_counter()
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        for done, (name, size, seed, by_method) in enumerate(pool.map(run_world, jobs), start=1):
            for method, value in by_method.items():
                results.setdefault((name, size, method), []).append(value)
            eta = (time.perf_counter() - start) / done * (len(jobs) - done)
            print(f"[{done}/{len(jobs)}] {name} {size} seed {seed}  ETA {eta:.0f} s", file=sys.stderr, flush=True)
    print(f"{'world':14s} {'runs':9s} {'method':14s} {'moved':>7s} {'false':>7s} {'gain/sd':>8s}  evidence p  chose")
    totals = {m: [0, 0, 0, 0] for m in methods}  # moved, false, targets, failed fits
    for name in NULL_WORLDS:
        for size in sizes:
            for method in methods:
                runs = results[(name, size, method)]
                rows = [r for rs, _, _ in runs if rs for r in rs]
                failed = sum(rs is None for rs, _, _ in runs)
                moved, false = sum(r["moved"] for r in rows), sum(r["false"] for r in rows)
                totals[method] = [a + b for a, b in zip(totals[method], (moved, false, len(rows), failed))]
                ps = " ".join(f"{p:.2g}" for _, _, p in runs if p is not None) or "-"
                names = ",".join(sorted({n for _, n, _ in runs}))
                gain = np.mean([r["gain"] for r in rows]) if rows else float("nan")
                print(f"{name:14s} {size:9s} {method:14s} {moved:3d}/{len(rows):<3d} {false:3d}/{len(rows):<3d} "
                      f"{gain:8.2f}  {ps:10s}  {names}")
    summary = {}
    for method, (moved, false, n, failed) in totals.items():
        key = method.replace("-", "_")
        summary.update({f"{key}.moved": f"{moved}/{n}", f"{key}.false_claims": f"{false}/{n}", f"{key}.failed": failed})
    if "default" in totals and "regmix" in totals and totals["regmix"][1]:
        # below 1: the default claims a gain that is not there that share as often as RegMix
        summary["false_claim_ratio_vs_regmix"] = round(totals["default"][1] / totals["regmix"][1], 3)
    print("RESULT null " + " ".join(f"{k}={v}" for k, v in summary.items()))


if __name__ == "__main__":
    main()
