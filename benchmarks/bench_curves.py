"""Cost of learning curves and tracking: the real sweep driver (run_sweep) on trials of fixed
synthetic steps that report through the real curve hook (proxy/curves.py, actors/sweep/trainer.py),
against the strongest baseline, the same sweep reporting only its final result (log_every 0).

Each trial runs `--steps` optimiser "steps" of `--step-ms` (a sleep: fixed work that does not
compete for this shared machine's CPUs). Variants: log_every 0 (baseline), 10, 1, and 1 with
`--tracking mlflow` (Ray's MLflowLoggerCallback into a local file store). `per_report_ms`: the
extra wall time of a variant over the baseline, per curve point reported, per trial slot.

    python benchmarks/bench_curves.py --trials 4 --steps 100 --step-ms 20 --repeats 2
Ends with `RESULT curves ...` (ratio = wall of log_every 1 with MLflow / wall of the baseline).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))


def stepped_trial(config, *, data, proxy, finished=None, steps: int = 100, step_s: float = 0.02):
    from ray import tune

    from causalmix.design.trial_protocol import curve_result, final_result
    from causalmix.proxy.curves import curve_hook
    from causalmix.proxy.train import StepInfo

    hook = curve_hook(proxy.log_every, lambda point: tune.report(curve_result(point)))
    for step in range(1, steps + 1):
        time.sleep(step_s)
        if hook is not None:
            hook(step, 1.0 / step, StepInfo(lr=1e-3, grad_norm=1.0, tokens=512, scored_tokens=256,
                                            total_steps=steps))
    mixture = config["mixture"]
    row = {"run_id": config["run_id"], **{f"mix.{d}": w for d, w in mixture.items()},
           "y": -sum((w - 1 / len(mixture)) ** 2 for w in mixture.values()), "status": "ok",
           "seed": config["seed"], "model": "synthetic", "tokens": 512 * steps, "steps": steps,
           "metric.synthetic_nll": 1.0}
    tune.report(final_result(row, json.dumps(row)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--step-ms", type=float, default=20.0)
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray (= trial slots)")
    parser.add_argument("--repeats", type=int, default=2,
                        help="sweeps per variant, in rotation after one discarded warm-up; the fastest counts")
    args = parser.parse_args()

    import ray
    from tqdm.auto import tqdm

    from causalmix.actors.sweep.driver import run_sweep
    from causalmix.design.sweep_config import SweepConfig
    from bench_sweep import small_pool
    from causalmix.core.ray_setup import init_ray
    from causalmix.proxy.config import ProxyConfig

    variants = [("baseline", 0, ""), ("every10", 10, ""), ("every1", 1, ""), ("every1_mlflow", 1, "mlflow")]
    walls: dict[str, float] = {}
    order = [variants[0]] + variants * args.repeats  # the first sweep pays Tune's one-time start-up
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        pool_dir, features = small_pool(root)
        init_ray("local", num_cpus=args.cpus, object_store_memory=256 * 1024**2, log_to_driver=False)
        try:
            for i, (name, log_every, tracking) in enumerate(tqdm(order, desc="sweeps")):
                cfg = SweepConfig(pool=str(pool_dir), features=str(features), out=str(root / f"{name}-{i}"),
                                  runs=args.trials, proxy=ProxyConfig(model="synthetic", log_every=log_every),
                                  progress=False, stream_fit=False, tracking=tracking)
                start = time.perf_counter()
                summary = run_sweep(cfg, trainable=stepped_trial,
                                    trainable_kwargs={"steps": args.steps, "step_s": args.step_ms / 1000})
                assert summary["runs_done"] == args.trials, summary
                if i:
                    walls[name] = min(walls.get(name, float("inf")), time.perf_counter() - start)
        finally:
            ray.shutdown()
    reports = {"every10": math.ceil(args.steps / 10), "every1": args.steps, "every1_mlflow": args.steps}
    slots = min(args.cpus, args.trials)
    per_report = {name: 1000 * (walls[name] - walls["baseline"]) * slots / (args.trials * n)
                  for name, n in reports.items()}
    print(f"RESULT curves trials={args.trials} steps={args.steps} step_ms={args.step_ms} "
          + " ".join(f"wall_{k}_s={v:.1f}" for k, v in walls.items()) + " "
          + " ".join(f"per_report_{k}_ms={v:.1f}" for k, v in per_report.items())
          + f" ratio={walls['every1_mlflow'] / walls['baseline']:.3f}"
          f" ratio_every10={walls['every10'] / walls['baseline']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
