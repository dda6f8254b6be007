"""Quality of fit + recommend on the structural model of issue 12 (tests/structural.py), two
regimes x 3 seeds, the defaults beside the old defaults and fixed-radius settings:

  (a) far optimum, a log that covers it: 5 domains, 256 runs, noise 0.05; the target pool's
      optimum lies ~0.36 L2 from equal.
  (b) few noisy runs: the same world, 48 runs, noise 1.0, where a long step would hurt.
  (c) twice as many noisy runs: 96 runs, noise 1.0, where the evidence should let it move.

Normalized regret: 0 = the target's optimum, 1 = no better than the equal mixture. "covers"
counts the seeds whose reported interval contains the true gain.

    python benchmarks/bench_policy.py [--seeds 3]

Ends with `RESULT policy ...`: the worst seed of the default per regime, the old default's, and
how many seeds' intervals held the true gain in (b).
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from causalmix.causal.fitting import FitConfig, estimator_label, fit_runs_table  # noqa: E402
from causalmix.causal.model_dir import FittedMixtureModel  # noqa: E402
from causalmix.causal.runs_table import validate_runs_frame  # noqa: E402
from structural import StructuralModel  # noqa: E402

REGIMES = {"a": dict(n=256, noise=0.05), "b": dict(n=48, noise=1.0), "c": dict(n=96, noise=1.0)}
# label -> (FitConfig fields, recommend options)
SETTINGS = {
    "default analytic": ({}, {"policy": "analytic"}),
    "default search": ({}, {"policy": "search"}),
    "old default (causal-forest, r=0.1)": ({"estimator": "causal-forest"}, {"trust_radius": 0.1}),
    "causal-forest, auto radius": ({"estimator": "causal-forest"}, {}),
    "causal-forest search, auto radius": ({"estimator": "causal-forest"}, {"policy": "search"}),
    "linear-dml, r=0.35": ({"estimator": "linear-dml"}, {"trust_radius": 0.35}),
    "linear-dml, auto radius": ({"estimator": "linear-dml"}, {}),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    worst, covers, fits = {}, {}, {}

    def fitted(regime, seed, fit_fields):
        """One fit per (regime, seed, estimator settings), shared by the policies that use it."""
        key = (regime, seed, tuple(sorted(fit_fields.items())))
        if key not in fits:
            spec = REGIMES[regime]
            world = StructuralModel(n_domains=5, seed=seed, noise=spec["noise"])
            table = validate_runs_frame(world.runs(spec["n"]))
            config = FitConfig(seed=seed, **fit_fields)
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    estimator = fit_runs_table(table, config)
                fits[key] = (world, FittedMixtureModel.from_runs_table(
                    estimator, estimator_label(estimator, config), table))
            except Exception as exc:  # e.g. too few runs for linear-dml in (b)
                fits[key] = (world, f"not fitted: {str(exc)[:70]}")
        return fits[key]

    for regime, spec in REGIMES.items():
        print(f"\nregime ({regime}): {spec['n']} runs, noise {spec['noise']}")
        for label, (fit_fields, options) in SETTINGS.items():
            rows, covered, chosen, start = [], 0, [], time.perf_counter()
            for seed in range(args.seeds):
                world, model = fitted(regime, seed, fit_fields)
                if isinstance(model, str):
                    rows, chosen = None, [model]
                    break
                rec = model.recommend(world.target_covariates(), seed=seed, **options)
                mixture = np.array([rec["mixture"][d] for d in world.domains])
                equal = np.full(world.k, 1 / world.k)
                rows.append(world.regret(mixture) / world.regret(equal))
                true_gain = float(world.outcome(mixture, world.target_state)[0]
                                  - world.outcome(equal, world.target_state)[0])
                covered += rec["interval"][0] - 1e-9 <= true_gain <= rec["interval"][1] + 1e-9
                chosen.append(f"{model.estimator_name}@r={rec['trust_radius']:.2f}")
            took = time.perf_counter() - start
            if rows is None:
                print(f"  {label:38s} {chosen[0]}")
                continue
            print(f"  {label:38s} regret " + " / ".join(f"{r:.2f}" for r in rows)
                  + f"  covers {covered}/{len(rows)}  [{', '.join(chosen)}]  {took:.0f} s", flush=True)
            if label in ("default analytic", "old default (causal-forest, r=0.1)", "default search"):
                worst[(regime, label)] = max(rows)
                covers[(regime, label)] = covered
    print(f"RESULT policy regime_a_default_worst_regret={worst[('a', 'default analytic')]:.3f} "
          f"regime_a_search_worst_regret={worst[('a', 'default search')]:.3f} "
          f"regime_a_old_default_worst_regret={worst[('a', 'old default (causal-forest, r=0.1)')]:.3f} "
          f"regime_b_default_worst_regret={worst[('b', 'default analytic')]:.3f} "
          f"regime_b_search_worst_regret={worst[('b', 'default search')]:.3f} "
          f"regime_b_old_default_worst_regret={worst[('b', 'old default (causal-forest, r=0.1)')]:.3f} "
          f"regime_b_default_covers={covers[('b', 'default analytic')]}/{args.seeds} "
          f"regime_c_default_worst_regret={worst[('c', 'default analytic')]:.3f} "
          f"regime_c_old_default_worst_regret={worst[('c', 'old default (causal-forest, r=0.1)')]:.3f}")


if __name__ == "__main__":
    main()
