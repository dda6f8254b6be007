"""Latency of `FittedMixtureModel.recommend` (analytic policy, auto trust radius) on a causal-forest model with
5 domains x 15 covariates: cold (new covariates: forest traversal) and warm (cached), against
the baseline of computing the same gain interval with econml's own `effect_interval`.

    python benchmarks/bench_recommend.py [--queries 200]

Ends with `RESULT recommend ...`; ratio = econml effect_interval ms / our cold recommend ms.
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_fit import synthetic_runs  # noqa: E402
from causalmix.causal.fitting import FitConfig, fit_runs_table  # noqa: E402
from causalmix.causal.model_dir import FittedMixtureModel  # noqa: E402
from causalmix.causal.runs_table import validate_runs_frame  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    table = validate_runs_frame(synthetic_runs(512, 5, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        estimator = fit_runs_table(table, FitConfig(estimator="causal-forest", nuisance_model="poly"))
    model = FittedMixtureModel.from_runs_table(estimator, "causal-forest", table)
    rng = np.random.default_rng(0)
    X = table.covariates()[rng.integers(0, table.n_runs, args.queries)] + 0.01 * rng.normal(
        size=(args.queries, len(table.covariate_names)))
    queries = [dict(zip(table.covariate_names, row.tolist())) for row in X]

    def run(fn) -> np.ndarray:
        times = []
        for q in queries:
            start = time.perf_counter()
            fn(q)
            times.append((time.perf_counter() - start) * 1e3)
        return np.array(times)

    cold = run(lambda q: model.recommend(q))
    warm = run(lambda q: model.recommend(q))
    ref = np.full((1, 5), 0.2)
    coords = lambda w: np.delete(w, estimator.reference_index_, axis=1)  # noqa: E731
    target = np.array([[0.3, 0.2, 0.2, 0.15, 0.15]])

    def econml_interval(q):
        x = np.array([[q[c] for c in table.covariate_names]])
        estimator.dml_.effect_interval(x, T0=coords(ref), T1=coords(target), alpha=0.1)

    baseline = run(econml_interval)
    p = lambda a, k: float(np.percentile(a, k))  # noqa: E731
    print(f"RESULT recommend trees={estimator.n_estimators} covariates={len(table.covariate_names)} "
          f"queries={args.queries} cold_p50_ms={p(cold, 50):.2f} cold_p99_ms={p(cold, 99):.2f} "
          f"warm_p50_ms={p(warm, 50):.3f} warm_p99_ms={p(warm, 99):.3f} "
          f"econml_effect_interval_p50_ms={p(baseline, 50):.2f} "
          f"ratio_econml_over_cold_p50={p(baseline, 50) / p(cold, 50):.1f}")


if __name__ == "__main__":
    main()
