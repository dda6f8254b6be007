"""How fast the CLI answers: wall time of `--help`, the light commands' `--help`, `pool info` on a
small built pool, and `predict` / `recommend` on a small regression model (3 domains, 1
covariate, 40 runs), for this checkout against the baseline commit eb252a0 (before command
modules were imported on demand), both run by the same Python in fresh processes.

    python benchmarks/bench_cli_start.py [--repeats 3] [--baseline eb252a0]

The baseline tree comes from `git archive` into a temporary folder. Each figure is the median of
`--repeats` runs. Ends with `RESULT cli_start ...` (seconds; speedup = baseline / now of `--help`).
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CALLS = {"help": ["--help"], "pool_info_help": ["pool", "info", "--help"], "predict_help": ["predict", "--help"],
         "recommend_help": ["recommend", "--help"], "fit_help": ["fit", "--help"], "pool_info": ["pool", "info", "POOL"],
         "predict": ["predict", "--model", "MODEL", "--runs", "RUNS"],
         "recommend": ["recommend", "--model", "MODEL", "--covariates", "COVARIATES"]}


def small_pool(root: Path) -> Path:
    """A built one-domain pool (pool info reads its pool.json)."""
    sys.path.insert(0, str(REPO))
    from causalmix.datapool.build import build_pool

    (root / "docs.jsonl").write_text("".join(json.dumps({"prompt": f"q{i}", "response": "a"}) + "\n"
                                             for i in range(10)))
    (root / "manifest.yaml").write_text("name: bench\ndomains:\n  - name: d\n    sources:\n      - path: docs.jsonl\n"
                                        "        columns: {prompt: prompt, response: response}\n")
    return build_pool(root / "manifest.yaml")


def small_model(root: Path) -> dict[str, str]:
    """A runs table, the regression model fitted on it and a covariates file."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    mix = rng.dirichlet(np.ones(3), size=40)
    state = rng.normal(size=40)
    runs = pd.DataFrame({"run_id": [f"r{i}" for i in range(40)], **{f"mix.d{j}": mix[:, j] for j in range(3)},
                         "x.d0.hes": state, "y": mix @ [0.5, -0.2, 0.1] + 0.3 * state * mix[:, 0]})
    runs.to_parquet(root / "runs.parquet")
    (root / "covariates.json").write_text(json.dumps({"x.d0.hes": 0.2}))
    subprocess.run([sys.executable, str(REPO / "launch.py"), "fit", "--runs", str(root / "runs.parquet"),
                    "--out", str(root / "model"), "--estimator", "regression", "--log-level", "error"],
                   check=True, stdout=subprocess.DEVNULL)
    return {"MODEL": str(root / "model"), "RUNS": str(root / "runs.parquet"),
            "COVARIATES": str(root / "covariates.json")}


def seconds(tree: Path, argv: list[str], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, str(tree / "launch.py"), *argv], cwd=tree, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline", default="eb252a0")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-cli-") as tmp:
        tmp = Path(tmp)
        base = tmp / "baseline"
        base.mkdir()
        archive = subprocess.run(["git", "archive", args.baseline], cwd=REPO, check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(base)], input=archive, check=True)
        (tmp / "pool").mkdir()
        values = {"POOL": str(small_pool(tmp / "pool")), **small_model(tmp)}
        rows = {}
        for name, argv in CALLS.items():
            argv = [values.get(a, a) for a in argv]
            rows[name] = (seconds(base, argv, args.repeats), seconds(REPO, argv, args.repeats))
            print(f"{name:16s} baseline {rows[name][0]:6.2f} s   now {rows[name][1]:6.2f} s")
    fields = " ".join(f"{name}_s={now:.2f} {name}_baseline_s={old:.2f}" for name, (old, now) in rows.items())
    print(f"RESULT cli_start repeats={args.repeats} baseline={args.baseline} {fields} "
          f"speedup={rows['help'][0] / rows['help'][1]:.1f}")


if __name__ == "__main__":
    main()
