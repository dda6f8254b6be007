"""One proxy run, end to end: a pure function of (config, mixture, data state, seed) and the
pool's data, returning one runs-table row (causal/runs_table.py)."""
from __future__ import annotations

import importlib.util
import random
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from causalmix.causal.covariates import DEFAULT_FEATURES, domain_means, sample_covariates
from causalmix.causal.runs_table import MIX
from causalmix.lm.loading import load_causal_lm, load_tokenizer, pick_device
from causalmix.mixture_space.state import DataState
from causalmix.proxy.config import ProxyConfig
from causalmix.proxy.data import draw_sample
from causalmix.proxy.evaluate import dev_suite, outcome
from causalmix.proxy.packing import pack_documents
from causalmix.proxy.train import StepInfo, train_packed


@dataclass(frozen=True)
class RunSpec:
    """What varies between the runs of a sweep."""

    run_id: str
    mixture: dict[str, float]
    state: DataState
    seed: int
    sampler: str = "dirichlet"
    """Which sampler proposed the mixture ('dirichlet', 'adaptive', ...)."""
    extra: dict = field(default_factory=dict)
    """Columns copied into the row as they are (e.g. the proposal's settings)."""


def seed_everything(seed: int) -> None:
    import torch  # deferred: torch takes seconds to import; draw_run and run_covariates do without it

    random.seed(seed)
    torch.manual_seed(seed)


def load_for_training(cfg: ProxyConfig, device: str, *, place: str | None = None):
    """fp32 weights (bf16 autocast on GPU); flash_attention_2 when asked for or, with
    'auto', when on GPU and installed (varlen packing), else SDPA with the packed mask.
    `place`: where the weights are loaded when not on `device` (rank 0 of an FSDP run loads
    them on the host, whence they are broadcast into the GPUs' shards)."""
    model = load_causal_lm(cfg.model, device=place or device, dtype=_training_dtype(cfg, device))
    return _set_attention(model, cfg, device)


def build_for_training(cfg: ProxyConfig, device: str):
    """`load_for_training`'s model from its config alone, weights not loaded (under
    `torch.device("meta")`: no memory; FSDP loading fills the shards, target/fsdp_train.py)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(cfg.model)
    model = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, _training_dtype(cfg, device)),
                                             attn_implementation="sdpa")
    return _set_attention(model, cfg, device)


def _training_dtype(cfg: ProxyConfig, device: str) -> str:
    return "bfloat16" if cfg.dtype == "bfloat16" and device == "cpu" else "float32"


def _set_attention(model, cfg: ProxyConfig, device: str):
    want = cfg.attention
    if want == "auto":
        flash = device.startswith("cuda") and importlib.util.find_spec("flash_attn") is not None
        want = "flash_attention_2" if flash else "sdpa"
    if want != "sdpa":
        model.set_attn_implementation(want)
    return model


def state_fallback(features: pd.DataFrame, shards: Mapping[str, pd.DataFrame], state: DataState,
                   domains: Sequence[str], feature_names: Sequence[str]) -> dict[str, float]:
    """Covariates of `domains` (those the run drew nothing from): the means over the
    documents of their state's shards, i.e. the data state the run would have drawn from."""
    columns = [shards[n]["doc_id"] for d in domains for n in state[d]]
    # one column, not a Python list: a state may hold most of the pool (0.5 s a domain at 400K documents)
    ids = pd.concat(columns, ignore_index=True).astype(str) if columns else pd.Series([], dtype=str)
    if ids.empty:
        return {}
    return sample_covariates(features, ids, domains, feature_names, where="features (state fallback)")


def run_proxy(cfg: ProxyConfig, spec: RunSpec, *, shards: Mapping[str, pd.DataFrame],
              dev_sets: Mapping[str, object], features: pd.DataFrame | Mapping[str, pd.DataFrame],
              feature_names: Sequence[str] = DEFAULT_FEATURES,
              on_step: Callable[[int, float, StepInfo], None] | None = None) -> dict:
    """Train `cfg.model` on the run's sample, evaluate the dev suite, return the row.

    shards: {shard name: frame with doc_id, prompt, response, is_text} (at least the state's).
    dev_sets: {name: proxy.evaluate.DevTask, or (metric kind, dev frame)} (`Pool.dev_tasks()`).
    features: per-document features (doc_id, domain, feature_names...), or {shard name: those of
        its documents} (see `run_covariates`).
    """
    start = time.perf_counter()
    device, tokenizer, sample, packed, rng = prepare_run(cfg, spec, shards)
    model = load_for_training(cfg, device)
    stats = train_packed(model, packed, cfg, device=device, rng=rng, on_step=on_step)
    return result_row(cfg, spec, model, tokenizer, sample, stats, shards=shards, dev_sets=dev_sets,
                      features=features, feature_names=feature_names, device=device, start=start)


def prepare_run(cfg: ProxyConfig, spec: RunSpec, shards: Mapping[str, pd.DataFrame], device: str | None = None):
    """Seeds, then the run's sample drawn and packed: (device, tokenizer, sample, packed rows,
    the rng whose next draws order the training rows). A pure function of (cfg, spec, shards),
    so every rank of a distributed run computes the same rows."""
    import torch

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    seed_everything(spec.seed)
    device = device or pick_device(cfg.device)
    tokenizer = load_tokenizer(cfg.model)
    sample, rng = draw_run(cfg, spec, shards, tokenizer)
    packed = pack_documents(sample.docs, cfg.max_length, tokenizer.pad_token_id, rng=rng)
    return device, tokenizer, sample, packed, rng


def draw_run(cfg: ProxyConfig, spec: RunSpec, shards: Mapping[str, pd.DataFrame], tokenizer):
    """The documents run `spec` trains on, and the rng whose next draws pack them: a pure
    function of (cfg, spec, shards, tokenizer), also what `generate --export` writes and what
    `collect` averages the covariates over (design/swarm_runs.py)."""
    rng = np.random.default_rng(spec.seed)
    sample = draw_sample(shards, spec.state, spec.mixture, budget=cfg.budget,
                         budget_unit=cfg.budget_unit, tokenizer=tokenizer,
                         max_length=cfg.max_length, rng=rng)
    return sample, rng


@dataclass(frozen=True)
class DomainFeatures:
    """The pool's per-document features by position, not by doc_id: what a sweep trial reads
    its covariates from (datapool/sweep_inputs.py builds it, the driver puts each domain's frame
    once). A run's covariates then cost what its drawn rows cost, not what its state holds."""

    frames: Mapping[str, pd.DataFrame]
    """{domain: its feature columns, one row per document of its shards in pool order}."""
    start: Mapping[str, int]
    """{shard name: the row of its first document in its domain's frame}."""
    sizes: Mapping[str, int]
    """{shard name: its documents}."""

    def rows(self, domain: str, positions) -> pd.DataFrame:
        """The domain's rows at `positions` (in that order), with the domain column."""
        return self.frames[domain].take(np.asarray(positions, dtype=np.int64)).assign(domain=domain)

    def state_positions(self, names) -> np.ndarray:
        """Positions of every document of these shards, shard after shard."""
        return np.concatenate([np.arange(self.start[n], self.start[n] + self.sizes[n]) for n in names]
                              or [np.empty(0, dtype=np.int64)])


def run_covariates(spec: RunSpec, sample, *, shards: Mapping[str, pd.DataFrame],
                   features: pd.DataFrame | DomainFeatures,
                   feature_names: Sequence[str]) -> dict[str, float]:
    """The run's covariates: means over the documents it drew; a domain it drew nothing from
    takes its state's means (`state_fallback`). `features`: one table keyed by doc_id, or
    `DomainFeatures` (the drawn rows read by position: the same rows, so the same values)."""
    domains = list(spec.mixture)
    if isinstance(features, DomainFeatures):
        return domain_means(positional_rows(features, spec, sample, feature_names), domains, feature_names)
    return sample_covariates(
        features, sample.doc_ids, domains, feature_names,
        fallback=state_fallback(features, shards, spec.state,
                                [d for d in domains if sample.counts[d] == 0], feature_names))


def positional_rows(features: DomainFeatures, spec: RunSpec, sample,
                    feature_names: Sequence[str]) -> pd.DataFrame:
    """The feature rows `run_covariates` averages, in draw order: the drawn documents' rows, and
    every row of a domain's state when the run drew nothing from that domain."""
    if len(sample.rows) != len(sample.doc_ids):
        raise ValueError(f"run {spec.run_id}: the sample records no shard rows for its documents "
                         "(draw it with proxy.data.draw_sample)")
    parts = []
    for domain in spec.mixture:
        if sample.counts[domain]:
            positions = [features.start[name] + row for (name, row), d in zip(sample.rows, sample.domains)
                         if d == domain]
        else:
            positions = features.state_positions(spec.state.get(domain, ()))
        if len(positions):
            parts.append(features.rows(domain, positions))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["domain", *feature_names])


def result_row(cfg: ProxyConfig, spec: RunSpec, model, tokenizer, sample, stats, *,
               shards: Mapping[str, pd.DataFrame], dev_sets: Mapping[str, object],
               features: pd.DataFrame | Mapping[str, pd.DataFrame],
               feature_names: Sequence[str], device: str, start: float) -> dict:
    """Evaluate the trained model's dev suite and build the runs-table row."""
    metrics = dev_suite(model, tokenizer, dev_sets, cfg, device, seed=spec.seed)
    covariates = run_covariates(spec, sample, shards=shards, features=features, feature_names=feature_names)
    row = {"run_id": spec.run_id}
    row.update({f"{MIX}{d}": float(w) for d, w in spec.mixture.items()})
    row.update(covariates)
    row.update(metrics)
    objective = cfg.objective_spec()
    row["y"] = outcome(metrics, objective)
    row["y_objective"] = objective.dumps()
    row.update({
        "seed": int(spec.seed), "model": cfg.model, "tokens": int(stats.tokens),
        "wall_s": round(time.perf_counter() - start, 3), "status": "ok", "sampler": spec.sampler,
        "steps": stats.steps, "train_loss_first": stats.first_loss, "train_loss_last": stats.last_loss,
        "train_tokens_per_s": round(stats.tokens_per_s, 1), "device": device,
    })
    row.update({f"docs.{d}": int(n) for d, n in sample.counts.items()})
    row.update({f"state.{d}": ",".join(names) for d, names in spec.state.items()})
    row.update(spec.extra)
    return row
