"""Estimator and policy quality on known-truth worlds (benchmarks/truth_worlds.py): five
outcome families, confounded assignment, at 512 runs and at 64 noisy runs, 5 shifted target
pools per seed, 3 seeds by default; the worlds run in parallel, one process per core.

For every method (the default `fit` + `recommend`, each named estimator with the auto
radius, RegMix with its top-k policy, and the no-covariates ablation) it prints per family:
  regret    normalized regret at each target (0 = the optimum, 1 = the equal mixture), mean / worst;
  covers    of the targets where the method moved, how many 90 % intervals held the true gain;
  own-dir   the best regret reachable along the method's own estimated returns at the
            reference (a straight step of the best length): estimator error, apart from the
            policy's choice of where to stop;
  path-cov  of the points along that direction inside the runs' support, the share whose 90 %
            interval holds the true gain (calibration at every radius the policy weighs).

    python benchmarks/bench_truth.py [--seeds 3] [--first-seed 0] [--families log,flip] [--methods default,regression]
                                     [--sizes 512,64-noisy,2048]

Seeds 0-2 (the default) are the worlds the method's choices were measured on; `--first-seed 3`
draws worlds it never saw (their shapes, logs and targets all follow the seed).

By default the methods are the default, RegMix (the baseline a user would pick instead) and
the no-covariates ablation (the paper's premise); `--methods all` adds every named estimator
(an hour or more here: the causal forest alone takes 30 to 90 s a fit).

Ends with `RESULT truth ...`: the default's mean and worst regret per family and size, its
coverage, the best other method's mean regret beside it, every method's mean regret over all
targets and the default's ratio to RegMix's (below 1: the default is better).
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

from causalmix.causal.fitting import FitConfig, estimator_label, fit_runs_table  # noqa: E402
from causalmix.causal.model_dir import FittedMixtureModel  # noqa: E402
from causalmix.causal.runs_table import validate_runs_frame  # noqa: E402
from causalmix.mixture_space import farthest_reach, steps_along  # noqa: E402
from truth_worlds import FAMILIES, WORLDS  # noqa: E402

SIZES = {"512": dict(n=512, noise=0.2), "64-noisy": dict(n=64, noise=1.0),
         # four times the log, at its noise: which misses shrink with more runs (the
         # estimate's variance) and which stay; not run by default (5 min a family)
         "2048": dict(n=2048, noise=0.2)}
DEFAULT_SIZES = ("512", "64-noisy")
# label -> (FitConfig fields, recommend options, drop covariates)
METHODS = {
    "default": ({}, {}, False),
    "sieve-dml": ({"estimator": "sieve-dml"}, {}, False),
    "causal-forest": ({"estimator": "causal-forest"}, {}, False),
    "linear-dml": ({"estimator": "linear-dml"}, {}, False),
    "regression": ({"estimator": "regression"}, {}, False),
    "regmix": ({"estimator": "regmix"}, {"policy": "top-k"}, False),
    "no-covariates": ({}, {}, True),
}
DEFAULT_METHODS = ("default", "regmix", "no-covariates")
N_TARGETS = 5


class Target:
    """One shifted target pool of a world, its optimum computed once."""

    def __init__(self, world, state):
        self.world, self.state = world, state
        self.best = world.best(state)[1]
        self.equal = float(world.outcome(np.full(world.k, 1 / world.k), state)[0])

    def value(self, mixtures):
        return self.world.outcome(np.atleast_2d(mixtures), self.state)

    def regret(self, mixtures):
        return (self.best - self.value(mixtures)) / (self.best - self.equal)


def fit_method(table, method, seed) -> FittedMixtureModel:
    """`method` (a METHODS label) fitted on the runs table, as `fit` would."""
    fit_fields, _, drop = METHODS[method]
    if drop:
        table = validate_runs_frame(table.frame.drop(columns=[c for c in table.frame if c.startswith("x.")]))
    config = FitConfig(seed=seed, **fit_fields)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        estimator = fit_runs_table(table, config)
    return FittedMixtureModel.from_runs_table(estimator, estimator_label(estimator, config), table)


def evaluate(world, table, method, targets, seed):
    _, options, drop = METHODS[method]
    model = fit_method(table, method, seed)
    equal = np.full(world.k, 1 / world.k)
    rows = []
    for target in targets:
        covariates = {} if drop else world.covariates(target.state)
        rec = model.recommend(covariates, seed=seed, **options)
        mixture = np.array([rec["mixture"][d] for d in world.domains])
        true_gain = float(target.value(mixture)[0] - target.value(equal)[0])
        moved = bool(np.abs(mixture - equal).max() > 1e-9)
        lo, hi = rec["interval"]
        x = model.covariate_vector(covariates)
        direction = model.estimator.marginal_returns(x, equal)
        path = steps_along(equal, direction, farthest_reach(equal) * np.arange(1, 97) / 96)
        rows.append({"regret": float(target.regret(mixture)[0]), "moved": moved,
                     "covered": lo - 1e-9 <= true_gain <= hi + 1e-9,
                     "own_direction": float(target.regret(path).min()),
                     **path_coverage(model, x, equal, path, target)})
    return rows, model.estimator_name


def path_coverage(model, x, equal, path, target) -> dict:
    """Of the points along the method's own direction that lie inside the runs' support (where
    the auto radius may stop), how many 90 % intervals hold the true gain: the calibration the
    policy leans on at every radius, not only at the one it chose."""
    inside = model.run_support.supported(path, x) if model.run_support is not None else np.ones(len(path), bool)
    _, lo, hi = model.estimator.gain_interval(x, np.repeat(equal[None, :], len(path), axis=0), path, alpha=0.1)
    true = target.value(path) - target.value(equal)[0]
    held = (lo - 1e-9 <= true) & (true <= hi + 1e-9)
    return {"path_points": int(inside.sum()), "path_covered": int(held[inside].sum())}


def draw_world(kind, size, seed):
    """(world, its log of runs as a validated runs table) for a world class at a size of SIZES."""
    world = kind(seed=seed, noise=SIZES[size]["noise"])
    return world, validate_runs_frame(world.runs(SIZES[size]["n"]))


def run_world(job):
    """Every method on one world: (family, size, seed, {method: (rows, chosen name, seconds)})."""
    family, size, seed, methods = job
    # every method's libraries at one thread, as `fit` runs them (FitConfig.threads): LightGBM's
    # and BLAS's thread pools spin against each other and against the other worlds' processes
    with threadpool_limits(limits=1), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        world, table = draw_world(WORLDS[family], size, seed)
        targets = [Target(world, s) for s in world.targets(N_TARGETS)]
        out = {}
        for method in methods:
            t0 = time.perf_counter()
            try:
                rows, name = evaluate(world, table, method, targets, seed)
            except Exception as exc:  # a failed fit is a result: the default must never fail
                rows, name = None, f"failed: {type(exc).__name__}: {str(exc)[:80]}"
            out[method] = (rows, name, time.perf_counter() - t0)
    return family, size, seed, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0, help="seeds run from this one; 3 and up: held-out worlds")
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--methods", default=",".join(DEFAULT_METHODS), help="comma-separated, or 'all'")
    parser.add_argument("--sizes", default=",".join(DEFAULT_SIZES), help=f"comma-separated, of {','.join(SIZES)}")
    args = parser.parse_args()
    families, sizes = args.families.split(","), args.sizes.split(",")
    methods = list(METHODS) if args.methods == "all" else args.methods.split(",")
    unknown = sorted(set(methods) - set(METHODS)) + sorted(set(families) - set(FAMILIES)) + sorted(set(sizes) - set(SIZES))
    if unknown:
        parser.error(f"unknown method, family or size {unknown}; methods {list(METHODS)}, families {list(FAMILIES)}, "
                     f"sizes {list(SIZES)}")
    worlds = [(family, size, seed, tuple(methods)) for family in families for size in sizes
              for seed in range(args.first_seed, args.first_seed + args.seeds)]
    results: dict = {}
    start = time.perf_counter()
    # one world per process, as many processes as cores, each at one library thread
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        for done, (family, size, seed, rows_by_method) in enumerate(pool.map(run_world, worlds), start=1):
            for method, (rows, name, seconds) in rows_by_method.items():
                results.setdefault((family, size, method), []).append((rows, name, seconds))
                shown = " ".join(f"{r['regret']:.2f}" for r in rows) if rows else name
                print(f"  {family} {size} seed {seed} {method} ({name}): regret {shown}", file=sys.stderr, flush=True)
            eta = (time.perf_counter() - start) / done * (len(worlds) - done)
            print(f"[{done}/{len(worlds)}] {family} {size} seed {seed}  ETA {eta:.0f} s", file=sys.stderr, flush=True)
    summary = report(results, families, sizes, methods)
    print("RESULT truth " + " ".join(f"{k}={v}" for k, v in summary.items()))


def report(results, families, sizes, methods) -> dict:
    summary = {}
    all_covered = all_moved = 0
    for size in sizes:
        print(f"\n== {size} ==")
        print(f"{'family':11s} {'method':14s} {'regret mean/worst':>18s} {'own-dir':>8s} {'covers':>7s} "
              f"{'path-cov':>8s}  fit s  chose")
        for family in families:
            for method in methods:
                runs = results[(family, size, method)]
                failed = [name for rows, name, _ in runs if rows is None]
                rows = [r for rs, _, _ in runs if rs for r in rs]
                if not rows:
                    print(f"{family:11s} {method:14s} {failed[0][:70]}")
                    continue
                regret = np.array([r["regret"] for r in rows])
                moved = [r for r in rows if r["moved"]]
                covered = sum(r["covered"] for r in moved)
                names = sorted({name for rs, name, _ in runs if rs})
                fit_s = np.mean([t for _, _, t in runs])
                points = sum(r["path_points"] for r in rows)
                path_share = sum(r["path_covered"] for r in rows) / max(points, 1)
                print(f"{family:11s} {method:14s} {regret.mean():8.2f} / {regret.max():5.2f}  "
                      f"{np.mean([r['own_direction'] for r in rows]):7.2f} {covered:3d}/{len(moved):<3d} "
                      f"{path_share:8.2f} {fit_s:6.1f}  {','.join(names)}{' FAILED x' + str(len(failed)) if failed else ''}")
                if method == "default":
                    summary[f"{family}.{size}.mean"] = round(float(regret.mean()), 3)
                    summary[f"{family}.{size}.worst"] = round(float(regret.max()), 3)
                    summary[f"{family}.{size}.failed"] = len(failed)
                    summary[f"{family}.{size}.path_coverage"] = round(path_share, 3)
                    all_covered += covered
                    all_moved += len(moved)
            others = [np.mean([r["regret"] for rs, _, _ in results[(family, size, m)] if rs for r in rs])
                      for m in methods if m != "default"
                      and any(rs for rs, _, _ in results[(family, size, m)])]
            if others:
                summary[f"{family}.{size}.best_other_mean"] = round(float(min(others)), 3)
    summary["default_coverage"] = f"{all_covered}/{all_moved}"
    overall = {m: [r["regret"] for (f, z, mm), runs in results.items() if mm == m for rs, _, _ in runs if rs for r in rs]
               for m in methods}
    for m, regrets in overall.items():
        if regrets:
            summary[f"mean_regret.{m}"] = round(float(np.mean(regrets)), 3)
    if overall.get("default") and overall.get("regmix"):
        # below 1: the default's regret is that share of RegMix's, over every target of the run
        summary["regret_ratio_vs_regmix"] = round(float(np.mean(overall["default"]) / np.mean(overall["regmix"])), 3)
    return summary


if __name__ == "__main__":
    main()
