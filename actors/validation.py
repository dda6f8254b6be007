"""`validate` on Ray: one task per (candidate mixture, seed) trains the target model on the
target pool and evaluates the dev suite. Shards go into the object store once."""
from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from core.atomic import atomic_directory, check_output_path, atomic_write_json, atomic_write_parquet, atomic_write_text
from core.errors import UserError
from core.provenance import provenance
from core.tracking import parse_tracking, track_runs
from mixture_space import DEFAULT_MAX_EPOCHS, MixtureBounds
from proxy.config import ProxyConfig
from reporting.validation import parse_mixture_list

DEFAULT_TARGET_PROXY = {"budget": 1200, "learning_rate": 1e-3, "dev_limit": 0}
CURVE_KEY = "_curve"
"""Key of a training run's learning-curve points in the row a task returns (popped before the
row joins the table: they go to the tracker)."""


@dataclass(frozen=True)
class ValidateConfig:
    """Settings of `launch.py validate`."""

    model: str = ""
    """Fitted CausalMix model directory (`launch.py fit --out`)."""
    pool: str = ""
    """Target pool (folder or manifest): what the target model trains on."""
    features: str = ""
    """Features of the target pool (`launch.py featurize --out`): its covariates."""
    target_model: str = ""
    """Language model to train: a local directory or a hub id (e.g. Qwen/Qwen2.5-7B)."""
    out: str = ""
    """Output folder: table.md and table.parquet (method x metric, mean ± std over seeds, paired
    gains), validation.parquet (one row per run), summary.json, validation.png."""
    regmix_model: str | None = None
    """Optional model directory fitted with `--estimator regmix`: adds the RegMix baseline."""
    no_dml_model: str | None = None
    """Optional model directory fitted with `--estimator regression` on the same runs: the
    no-DML ablation (same analytic policy)."""
    no_covariates_model: str | None = None
    """Optional model directory fitted on the same runs without their x.* covariates: the
    state-agnostic ablation (same analytic policy)."""
    runs: str | None = None
    """Optional runs table of the sweep: best-run takes its highest-y run's mixture."""
    grid: int = 0
    """Grid baseline: N mixtures spread over the simplex (`grid` in mixtures; 0: none)."""
    mixtures: tuple[str, ...] | None = None
    """Competing mixtures, a comma-separated string or a list: causalmix-a, causalmix-s, no-dml,
    no-covariates, regmix, equal, natural, best-run, grid (any case) and FILE.json
    ({domain: weight} or a `recommend` output). None: causalmix-a, causalmix-s, regmix (when
    regmix_model is given), equal, natural, plus grid when grid > 0."""
    seeds: int = 3
    """Training seeds per candidate mixture; seed s is shared by every mixture (paired runs)."""
    trust_radius: float | str | None = None
    """Trust radius of the CausalMix policies: "auto", an L2 radius, or None (the model's default,
    auto)."""
    target_tokens: float | None = None
    """Token budget the mixtures are meant for (None: the target pool's total); with max_epochs it
    caps each domain's weight (mixture_space/constraints.py)."""
    max_epochs: float = DEFAULT_MAX_EPOCHS
    """Epochs of one domain a CausalMix, ablation or RegMix mixture may use at target_tokens."""
    fix: dict = field(default_factory=dict)
    """{domain: weight} pinned in every model's mixture."""
    minimum: dict = field(default_factory=dict)
    """{domain: weight} lower bounds of every model's mixture."""
    proxy: dict = field(default_factory=lambda: dict(DEFAULT_TARGET_PROXY))
    """Training settings (fields of proxy.config.ProxyConfig; `model` is `target_model`)."""
    address: str | None = None
    """Ray address (None: RAY_ADDRESS or a local Ray)."""
    tracking: str = ""
    """Experiment tracker of the training runs (as `sweep --tracking`: mlflow[=URI], default store
    OUT/mlruns, or wandb[=PROJECT]); empty: none. `proxy.log_every` sets the curve's spacing."""

    def __post_init__(self):
        for name in ("model", "pool", "features", "target_model", "out"):
            if not getattr(self, name):
                raise ValueError(f"{name} is required")
        parse_tracking(self.tracking, self.out)
        if self.grid < 0:
            raise ValueError(f"grid must be >= 0, got {self.grid}")
        have = [name for name, given in (("no-dml", self.no_dml_model), ("no-covariates",
                self.no_covariates_model), ("best-run", self.runs), ("grid", self.grid)) if given]
        entries = parse_mixture_list(self.mixtures, have_regmix=bool(self.regmix_model), have=have)
        if self.mixtures is None and self.grid:
            entries = (*entries, "grid")
        object.__setattr__(self, "mixtures", entries)
        if self.seeds < 1:
            raise ValueError(f"seeds must be >= 1, got {self.seeds}")
        if self.trust_radius is not None:
            from causal.policy import check_trust_radius
            from core.errors import UserError

            try:
                object.__setattr__(self, "trust_radius", check_trust_radius(self.trust_radius))
            except UserError as exc:
                raise ValueError(str(exc)) from None
        self.proxy_config()

    def proxy_config(self) -> ProxyConfig:
        unknown = set(self.proxy) - set(ProxyConfig.__dataclass_fields__)
        if unknown:
            raise ValueError(f"proxy: unknown key(s) {sorted(unknown)}")
        return ProxyConfig(**{**DEFAULT_TARGET_PROXY, **self.proxy, "model": self.target_model})


def _train_candidate(proxy: ProxyConfig, name: str, mixture: dict, seed: int, state: dict,
                     shard_refs: dict, dev_sets: dict, features, feature_names) -> dict:
    """One training run; Ray resolves the top-level `dev_sets`/`features` references, while
    the shards stay references inside a dict until fetched here."""
    import ray

    from proxy.curves import curve_hook
    from proxy.run import RunSpec, run_proxy

    names = sorted(shard_refs)
    frames = ray.get([shard_refs[n] for n in names])
    spec = RunSpec(run_id=f"{name}-seed{seed}", mixture=mixture, state=state, seed=seed,
                   sampler="validation")
    curve: list[dict] = []
    row = run_proxy(proxy, spec, shards=dict(zip(names, frames)), dev_sets=dev_sets,
                    features=features, feature_names=feature_names,
                    on_step=curve_hook(proxy.log_every, curve.append))
    row["candidate"] = name
    row[CURVE_KEY] = curve
    return row


def _validation_inputs(cfg: ValidateConfig) -> list:
    return [cfg.model, cfg.regmix_model, cfg.no_dml_model, cfg.no_covariates_model, cfg.runs, cfg.pool,
            cfg.features]


def run_validation(cfg: ValidateConfig, *, overwrite: bool = False) -> dict:
    import ray
    from tqdm.auto import tqdm

    from actors.sweep_inputs import load_sweep_inputs
    from causal.covariates import features_in, pool_covariates
    from causal.model_dir import load_model_dir
    from core.ray_setup import check_resources, init_ray
    from reporting.validation import (add_avgdev, candidate_mixtures, plot_validation, summarize,
                                      table_markdown, validation_table, verdict_sentences)

    # Refused before hours of training, and again when the results are written.
    check_output_path(cfg.out, kind="validation folder", markers=("summary.json", "table.md"),
                      overwrite=overwrite, inputs=_validation_inputs(cfg))
    model = load_model_dir(cfg.model)
    regmix = load_model_dir(cfg.regmix_model) if cfg.regmix_model else None
    no_dml = load_model_dir(cfg.no_dml_model) if cfg.no_dml_model else None
    no_cov = load_model_dir(cfg.no_covariates_model) if cfg.no_covariates_model else None
    runs = None
    if cfg.runs:
        from causal.runs_table import read_frame

        runs = read_frame(cfg.runs)
    feature_names = features_in(model.covariate_names)
    inputs = load_sweep_inputs(cfg.pool, cfg.features, feature_names)
    if list(inputs.pool.domains) != list(model.domains):
        raise UserError(f"pool {cfg.pool} has domains {inputs.pool.domains}, the model {model.domains}")
    covariates = pool_covariates(inputs.features, model.domains, feature_names,
                                 where=f"features {cfg.features}")
    bounds = MixtureBounds.build(model.domains, domain_tokens=inputs.domain_tokens,
                                 target_tokens=cfg.target_tokens, max_epochs=cfg.max_epochs,
                                 fixed=cfg.fix, minimum=cfg.minimum)
    candidates = candidate_mixtures(model, {n: covariates[n] for n in model.covariate_names},
                                    inputs.domain_tokens, entries=cfg.mixtures,
                                    trust_radius=cfg.trust_radius, regmix_model=regmix,
                                    no_dml_model=no_dml, no_covariates_model=no_cov, runs=runs,
                                    grid=cfg.grid, constraints=bounds)
    proxy = cfg.proxy_config()
    init_ray(cfg.address)
    gpus = 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0
    check_resources({"CPU": 1, **({"GPU": gpus} if gpus else {})}, "a validation training run")
    shard_refs = {name: ray.put(frame) for name, frame in inputs.shards.items()}
    dev_ref, features_ref = ray.put(inputs.dev_sets), ray.put(inputs.features)
    task = ray.remote(_train_candidate).options(num_cpus=1, num_gpus=gpus, max_retries=2)
    refs = [task.remote(proxy, name, cand["mixture"], seed, inputs.shard_names, shard_refs, dev_ref,
                        features_ref, tuple(feature_names))
            for seed in range(cfg.seeds) for name, cand in candidates.items()]
    rows = []
    with tqdm(total=len(refs), desc="validate", unit="run", file=sys.stderr) as bar:
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            rows.append(ray.get(done[0]))
            bar.update(1)
    curves = {row["run_id"]: row.pop(CURVE_KEY, []) for row in rows}
    results = pd.DataFrame(rows).sort_values(["candidate", "seed"]).reset_index(drop=True)
    results = add_avgdev(results)
    table = summarize(results)
    paper_table = validation_table(results)
    summary = {
        "best": str(table.index[0]),
        "candidates": {name: {**cand, **{k: float(v) for k, v in table.loc[name].items()}}
                       for name, cand in candidates.items()},
        "seeds": cfg.seeds,
        "tokens_per_run": {name: float(t) for name, t in results.groupby("candidate")["tokens"].mean().items()},
        "verdict": verdict_sentences(paper_table),
        "pool_covariates": covariates,
        "constraints": bounds.to_json(),
    }
    with atomic_directory(cfg.out, kind="validation folder", markers=("summary.json", "table.md"),
                          overwrite=overwrite, inputs=_validation_inputs(cfg)) as tmp:
        atomic_write_parquet(tmp / "validation.parquet", results)
        atomic_write_parquet(tmp / "table.parquet", paper_table.reset_index())
        atomic_write_text(tmp / "table.md", table_markdown(paper_table) + "\n\n"
                          + "\n".join(summary["verdict"]) + "\n")
        plot_validation(results, tmp / "validation.png")
        atomic_write_json(tmp / "summary.json", {**summary, "provenance": provenance(asdict(cfg))})
    tracking = parse_tracking(cfg.tracking, cfg.out)
    if tracking is not None:  # after the folder is in place: the default store lives in it
        track_runs(tracking, "validate", rows, curves, tags=("candidate", "sampler"),
                   summary={"seeds": cfg.seeds})
    return summary
