"""Data-state sampler: determinism, valid states, and covariate coverage of the shard range."""
import numpy as np
import pytest

from causalmix.core.errors import UserError
from causalmix.mixture_space.state import (DataStateSampler, StateSamplerConfig, coverage,
                                 quality_order)

SHARDS = {d: [f"{d}/shard-{i:05d}" for i in range(8)] for d in ("a", "b", "c")}
# Shard quality levels of a pool like demo-small: evenly spread, shuffled.
LEVELS = {d: np.random.default_rng(i).permutation(np.linspace(0.0, 1.0, 8)) for i, d in enumerate(SHARDS)}
MEANS = {d: np.c_[LEVELS[d], 2 * LEVELS[d] + 0.1] for d in SHARDS}
SHARD_COVS = {name: {f"x.{d}.f": float(LEVELS[d][i])} for d in SHARDS for i, name in enumerate(SHARDS[d])}
DOCS = {name: 100 for names in SHARDS.values() for name in names}


def expected_covariates(state, shard_means, shard_docs) -> dict[str, float]:
    """Document-weighted mean of the chosen shards' covariates, per covariate name: what a run
    drawing the whole of each chosen shard would measure."""
    out: dict[str, float] = {}
    for shards in state.values():
        weights = np.array([shard_docs[s] for s in shards], dtype=float)
        for name in shard_means[shards[0]]:
            values = np.array([shard_means[s][name] for s in shards], dtype=float)
            out[name] = float(np.average(values, weights=weights))
    return out


def test_states_are_deterministic_and_independent_of_call_order():
    cfg = StateSamplerConfig(seed=3)
    one = DataStateSampler(SHARDS, config=cfg, shard_means=MEANS)
    two = DataStateSampler(SHARDS, config=cfg, shard_means=MEANS)
    forward = [one.state(i) for i in range(20)]
    backward = [two.state(i) for i in reversed(range(20))][::-1]
    assert forward == backward
    other = DataStateSampler(SHARDS, config=StateSamplerConfig(seed=4), shard_means=MEANS)
    assert [other.state(i) for i in range(20)] != forward


def test_states_are_valid_subsets_within_the_size_bounds():
    cfg = StateSamplerConfig(min_shards=2, max_fraction=0.5)
    sampler = DataStateSampler(SHARDS, config=cfg, shard_means=MEANS)
    sizes = set()
    for i in range(200):
        for domain, names in sampler.state(i).items():
            assert set(names) <= set(SHARDS[domain]) and len(set(names)) == len(names)
            assert 2 <= len(names) <= 4
            sizes.add(len(names))
    assert sizes == {2, 3, 4}


def test_quality_order_follows_the_principal_axis():
    means = MEANS["a"]
    order = quality_order(means)
    assert np.all(np.diff(means[order, 0]) > 0)


def test_runs_span_the_shard_range_so_new_pools_are_covered():
    sampler = DataStateSampler(SHARDS, config=StateSamplerConfig(seed=0), shard_means=MEANS)
    covs = [expected_covariates(sampler.state(i), SHARD_COVS, DOCS) for i in range(48)]
    for d in SHARDS:
        values = np.array([c[f"x.{d}.f"] for c in covs])
        # Windows reach both ends of the shard range and fill the middle.
        assert values.min() <= 0.15 and values.max() >= 0.85
        assert np.histogram(values, bins=4, range=(0, 1))[0].min() >= 3
    # A pool whose covariates lie inside the shard range (e.g. demo-large) is covered;
    # one outside it is reported with the runs' range.
    report = coverage(covs, {"inside": {"x.a.f": 0.2, "x.b.f": 0.7},
                             "outside": {"x.a.f": 1.5}})
    assert report["inside"]["covered"]
    assert not report["outside"]["covered"]
    value, low, high = report["outside"]["outside"]["x.a.f"]
    assert value == 1.5 and low <= high <= 1.0


def test_windows_spread_covariates_more_than_random_subsets():
    def spread(window_prob):
        sampler = DataStateSampler(SHARDS, config=StateSamplerConfig(window_prob=window_prob),
                                   shard_means=MEANS)
        values = [expected_covariates(sampler.state(i), SHARD_COVS, DOCS)["x.a.f"] for i in range(400)]
        return float(np.std(values))
    assert spread(1.0) > 1.2 * spread(0.0)


def test_bad_settings_are_rejected_with_names():
    with pytest.raises(ValueError, match="max_fraction"):
        StateSamplerConfig(max_fraction=0.0)
    with pytest.raises(UserError, match="min_shards=9.*'a'"):
        DataStateSampler(SHARDS, config=StateSamplerConfig(min_shards=9))
    with pytest.raises(UserError, match="3 shard means.*8"):
        DataStateSampler(SHARDS, shard_means={"a": MEANS["a"][:3]})
