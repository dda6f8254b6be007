"""What defines the runs a sweep proposes: the pool, the seed, the samplers' settings and the
proxy settings, shared by `sweep` (SweepConfig) and `generate` (GenerateConfig), so the same
settings give the same runs whether Tune trains them or an outside trainer does. Plain data and
the samplers built from it; no Ray."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import yaml

from causalmix.design.run_proposer import RoundSnapshots, RunProposer
from causalmix.causal.covariates import DEFAULT_FEATURES, pool_covariates
from causalmix.features.features_io import read_features
from causalmix.core.errors import UserError
from causalmix.datapool.sweep_inputs import SweepInputs
from causalmix.mixture_space.dirichlet import DirichletMixtureSampler
from causalmix.mixture_space.state import DataStateSampler, StateSamplerConfig
from causalmix.proxy.config import ProxyConfig


@dataclass(frozen=True)
class SweepDesign:
    """The settings that decide which runs are proposed and what each one trains."""

    pool: str = ""
    """Pool directory (or its manifest) the proxy runs draw from."""
    features: str = ""
    """Per-document features of that pool (`launch.py featurize` output dir, or a .parquet)."""
    runs: int = 24
    """Proxy runs to attempt (paper: 512)."""
    seed: int = 0
    """Seed of the mixtures, data states and per-run training seeds."""
    proxy: ProxyConfig = field(default_factory=ProxyConfig)
    """Per-run SFT settings; `model` is the proxy base model (`--model`)."""
    state: StateSamplerConfig = field(default_factory=StateSamplerConfig)
    """Data-state sampler settings (its seed is replaced by the sweep seed)."""
    feature_names: tuple[str, ...] = DEFAULT_FEATURES
    """Document features averaged into the runs' covariates x.<domain>.<feature>."""
    prior: dict | None = None
    """Dirichlet prior {domain: weight}; None: the pool's token shares ** prior_temperature."""
    prior_temperature: float = 0.5
    """Exponent on the token shares (RegMix: 0.5)."""
    max_ratio: float = 15.0
    """Reject mixtures giving a domain more than max_ratio x its token share (RegMix: 15)."""
    adaptive: float = 0.0
    """Share of runs drawn around the fit's current recommendation (0: none)."""
    adaptive_radius: float = 0.2
    """L2 trust radius of adaptive draws around the recommendation."""
    adaptive_round: int = 8
    """Runs per adaptive round: an adaptive run of round r = index // adaptive_round draws
    around the snapshot fitted on exactly the runs of rounds < r (reproducible whatever the
    concurrency and finish order); round 0 is all prior draws."""
    adaptive_fit: dict = field(default_factory=dict)
    """FitConfig fields of the sweep's fit actor and of the adaptive rounds' fits (causal/fitting.py),
    e.g. {estimator: linear-dml};
    empty: its defaults (the causal forest, which needs a few dozen runs before a first fit)."""
    cover: tuple[str, ...] = ()
    """Features of pools the fitted model will be asked about; the adaptive fits recommend for
    the first, and sweep.json reports whether the runs' covariates span their pool covariates."""

    def __post_init__(self):
        if self.runs < 1:
            raise ValueError(f"runs must be >= 1, got {self.runs}")
        if not 0.0 <= self.adaptive <= 1.0:
            raise ValueError(f"adaptive must lie in [0, 1], got {self.adaptive}")
        if self.adaptive_round < 1:
            raise ValueError(f"adaptive_round must be >= 1, got {self.adaptive_round}")
        if not self.feature_names:
            raise ValueError("feature_names must name at least one feature")
        object.__setattr__(self, "feature_names", tuple(self.feature_names))
        object.__setattr__(self, "cover", tuple(self.cover))


def config_yaml(cfg: SweepDesign, drop: tuple[str, ...] = ()) -> str:
    """The config as the YAML a resume reads back (`drop`: fields not to save)."""
    data = dataclasses.asdict(cfg)
    data["feature_names"], data["cover"] = list(cfg.feature_names), list(cfg.cover)
    for name in drop:
        data.pop(name)
    return yaml.safe_dump(data, sort_keys=False)


def cover_targets(design: SweepDesign, domains: list[str]) -> dict[str, dict[str, float]]:
    """{features path: that pool's covariates} of every `cover` pool; the adaptive rounds
    recommend for them in turn."""
    return {path: pool_covariates(read_features(path), domains, design.feature_names, where=f"features {path}")
            for path in design.cover}


def mixture_sampler(design: SweepDesign, inputs: SweepInputs) -> DirichletMixtureSampler:
    """The seeded Dirichlet stream: the given prior, else the pool's token shares ** temperature."""
    domains = inputs.pool.domains
    if design.prior is None:
        return DirichletMixtureSampler.from_token_counts(
            {d: inputs.domain_tokens[d] for d in domains}, temperature=design.prior_temperature,
            max_ratio=design.max_ratio, seed=design.seed)
    if set(design.prior) != set(domains):
        raise UserError(f"prior names domains {sorted(design.prior)}, the pool has {sorted(domains)}")
    prior = np.array([float(design.prior[d]) for d in domains])
    return DirichletMixtureSampler(prior=prior, max_ratio=design.max_ratio, domains=domains, seed=design.seed)


def proposer_settings(design: SweepDesign, inputs: SweepInputs) -> dict:
    """RunProposer's keywords but `snapshots` (MixtureSearcher takes the same)."""
    states = DataStateSampler(inputs.shard_names, config=dataclasses.replace(design.state, seed=design.seed),
                              shard_means=inputs.shard_means)
    return dict(domains=inputs.pool.domains, mixture_sampler=mixture_sampler(design, inputs),
                state_sampler=states, n_runs=design.runs, seed=design.seed,
                adaptive_fraction=design.adaptive, adaptive_radius=design.adaptive_radius,
                round_size=design.adaptive_round)


def build_proposer(design: SweepDesign, inputs: SweepInputs,
                   snapshots: RoundSnapshots | None = None) -> RunProposer:
    return RunProposer(**proposer_settings(design, inputs), snapshots=snapshots)
