"""A real model directory for the Serve tests and benchmark: a small synthetic runs table
with `x.*` covariates, fitted by `launch.py fit` (the same code users run)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

DOMAINS = ("chat", "code", "math", "web")


def synthetic_runs(n_runs: int = 160, seed: int = 0) -> pd.DataFrame:
    """Dirichlet mixtures; covariate `x.<domain>.normalized_loss` shifts each domain's
    marginal return, so the best mixture depends on the pool."""
    rng = np.random.default_rng(seed)
    mixtures = rng.dirichlet(np.ones(len(DOMAINS)), size=n_runs)
    losses = rng.uniform(0.2, 0.8, size=(n_runs, len(DOMAINS)))
    returns = np.array([0.3, 0.6, 0.2, 0.1]) + 0.8 * (losses - 0.5)
    y = (returns * np.log(mixtures + 0.01)).sum(axis=1) + rng.normal(0, 0.02, n_runs)
    frame = pd.DataFrame({"run_id": [f"r{i:03d}" for i in range(n_runs)]})
    for k, domain in enumerate(DOMAINS):
        frame[f"mix.{domain}"] = mixtures[:, k]
    for k, domain in enumerate(DOMAINS):
        frame[f"x.{domain}.normalized_loss"] = losses[:, k]
    frame["y"] = y
    return frame


def fit_synthetic_model_dir(out_dir: Path, *, estimator: str = "causal-forest", n_runs: int = 160,
                            seed: int = 0) -> Path:
    """Write the synthetic runs table beside `out_dir` and run `launch.py fit` on it (in this
    process, through the CLI's own entry point)."""
    from causalmix.launch import main

    out_dir = Path(out_dir)
    runs = out_dir.parent / f"{out_dir.name}.runs.parquet"
    runs.parent.mkdir(parents=True, exist_ok=True)
    synthetic_runs(n_runs, seed).to_parquet(runs, index=False)
    status = main(["fit", "--runs", str(runs), "--out", str(out_dir), "--estimator", estimator])
    if status != 0:
        raise RuntimeError(f"launch.py fit --runs {runs} --out {out_dir} exited with {status}")
    return out_dir
