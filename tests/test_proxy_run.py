"""Proxy SFT as a pure function: exact per-domain counts, the row it returns, determinism."""
import math

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from causalmix.core.errors import UserError
from causalmix.datapool.pool import Pool
from causalmix.lm.loading import load_tokenizer
from causalmix.mixture_space.state import DataStateSampler
from causalmix.proxy.data import domain_counts, draw_sample
from causalmix.proxy.evaluate import final_answer, outcome
from causalmix.proxy.run import RunSpec, run_proxy
from sweep_helpers import synthetic_features, tiny_proxy_config


def test_domain_counts_are_exact_and_proportional():
    counts = domain_counts({"a": 0.5, "b": 0.3333, "c": 0.1667, "d": 0.0}, 100)
    assert sum(counts.values()) == 100 and counts["d"] == 0
    assert counts == {"a": 50, "b": 33, "c": 17, "d": 0}
    assert sum(domain_counts({"a": 1 / 3, "b": 1 / 3, "c": 1 / 3}, 7).values()) == 7
    with pytest.raises(UserError, match="mixture"):
        domain_counts({"a": -0.1, "b": 1.1}, 10)


def test_final_answer_and_outcome_formula():
    assert final_answer("3 x 4 = 12. The answer is 12.") == "12"
    assert final_answer("The answer is 1,204. no, The answer is -7") == "-7"
    assert final_answer("no number here") is None
    metrics = {"metric.a_em": 0.5, "metric.b_nll": 2.0, "metric.c_nll": 4.0}
    assert outcome(metrics) == pytest.approx((0.5 - 2.0 - 4.0) / 3)


@pytest.fixture(scope="module")
def pool_data(tiny_env, tmp_path_factory):
    pool = Pool.open(tiny_env.pool_small)
    shards = {s.name: pd.read_parquet(s.path) for s in pool.shards()}
    dev = {d: (ds.metric, pd.read_parquet(ds.path)) for d, ds in pool.dev_sets().items()}
    features = pd.read_parquet(synthetic_features(tiny_env.pool_small,
                                                  tmp_path_factory.mktemp("feat") / "f.parquet"))
    states = DataStateSampler({d: [s.name for s in pool.shards(d)] for d in pool.domains})
    return pool, shards, dev, features, states


def test_draw_sample_uses_exact_counts_and_only_the_state(tiny_env, pool_data):
    pool, shards, _, _, states = pool_data
    tokenizer = load_tokenizer(str(tiny_env.proxy_model))
    state = {d: (pool.shards(d)[0].name,) for d in pool.domains}  # 40 documents per domain
    mixture = dict(zip(pool.domains, [0.5, 0.25, 0.25, 0.0]))
    sample = draw_sample(shards, state, mixture, budget=100, budget_unit="samples",
                         tokenizer=tokenizer, max_length=128, rng=np.random.default_rng(0))
    assert sample.counts == domain_counts(mixture, 100)
    allowed = {i for d in pool.domains for i in shards[state[d][0]]["doc_id"]}
    assert set(sample.doc_ids) <= allowed
    # 50 draws from a 40-document sub-pool: every document once, then a second pass.
    first = pool.domains[0]
    drawn = pd.Series([i for i, d in zip(sample.doc_ids, sample.domains) if d == first]).value_counts()
    assert len(drawn) == 40 and drawn.max() == 2 and sample.passes[first] == pytest.approx(1.25)
    tokens = draw_sample(shards, state, mixture, budget=3000, budget_unit="tokens",
                         tokenizer=tokenizer, max_length=128, rng=np.random.default_rng(0))
    quotas = domain_counts(mixture, 3000)
    for d in pool.domains:
        assert quotas[d] <= tokens.tokens[d] < quotas[d] + 128 or quotas[d] == tokens.tokens[d] == 0


def test_same_seed_pairs_document_order_across_mixtures(tiny_env, pool_data):
    """Common random numbers: with one seed, each domain's documents come in the same order
    whatever the mixture (the smaller quota's draw is a prefix of the larger one's)."""
    pool, shards, _, _, _ = pool_data
    tokenizer = load_tokenizer(str(tiny_env.proxy_model))
    state = {d: tuple(s.name for s in pool.shards(d)) for d in pool.domains}

    def order(mixture, seed=3):
        sample = draw_sample(shards, state, mixture, budget=60, budget_unit="samples", tokenizer=tokenizer,
                             max_length=128, rng=np.random.default_rng(seed))
        return {d: [i for i, dom in zip(sample.doc_ids, sample.domains) if dom == d] for d in pool.domains}

    a = order(dict(zip(pool.domains, [0.0, 0.5, 0.25, 0.25])))
    b = order(dict(zip(pool.domains, [0.4, 0.2, 0.2, 0.2])))
    for d in pool.domains[1:]:
        short, long = sorted((a[d], b[d]), key=len)
        assert short and long[:len(short)] == short
    other_seed = order(dict(zip(pool.domains, [0.4, 0.2, 0.2, 0.2])), seed=4)
    assert other_seed[pool.domains[1]] != b[pool.domains[1]]


def test_run_proxy_returns_a_deterministic_runs_table_row(tiny_env, pool_data):
    pool, shards, dev, features, states = pool_data
    cfg = tiny_proxy_config(tiny_env.proxy_model)
    mixture = dict(zip(pool.domains, [0.4, 0.3, 0.3, 0.0]))
    spec = RunSpec("run-x", mixture, states.state(0), seed=5)
    steps = []
    row = run_proxy(cfg, spec, shards=shards, dev_sets=dev, features=features,
                    on_step=lambda s, loss, info: steps.append(loss))
    again = run_proxy(cfg, spec, shards=shards, dev_sets=dev, features=features)
    assert row["run_id"] == "run-x" and row["status"] == "ok" and row["sampler"] == "dirichlet"
    assert [row[f"mix.{d}"] for d in pool.domains] == [0.4, 0.3, 0.3, 0.0]
    metric_names = {"metric.arithmetic_nll", "metric.code_nll", "metric.dialog_nll", "metric.docs_qa_nll"}
    assert metric_names <= set(row)
    assert row["y"] == pytest.approx(outcome({k: row[k] for k in metric_names}))
    covs = [c for c in row if c.startswith("x.")]
    assert len(covs) == 4 * 3 and all(math.isfinite(row[c]) for c in covs)
    assert sum(row[f"docs.{d}"] for d in pool.domains) == cfg.budget
    assert row["tokens"] > 0 and len(steps) == row["steps"] > 0
    assert {k: v for k, v in row.items() if k not in ("wall_s", "train_tokens_per_s")} == \
           {k: v for k, v in again.items() if k not in ("wall_s", "train_tokens_per_s")}
    other = run_proxy(cfg, RunSpec("run-y", mixture, states.state(0), seed=6), shards=shards,
                      dev_sets=dev, features=features)
    assert other["train_loss_last"] != row["train_loss_last"]


def test_covariates_are_means_of_the_documents_drawn(tiny_env, pool_data):
    pool, shards, dev, features, _ = pool_data
    first = pool.domains[0]
    state = {d: (pool.shards(d)[1].name,) for d in pool.domains}
    cfg = tiny_proxy_config(tiny_env.proxy_model, budget=8, dev_limit=1, em_max_new_tokens=2)
    mixture = {d: (1.0 if d == first else 0.0) for d in pool.domains}
    row = run_proxy(cfg, RunSpec("r", mixture, state, seed=0), shards=shards, dev_sets=dev,
                    features=features)
    by_id = features.set_index("doc_id")
    for d in pool.domains[1:]:  # nothing drawn: the mean over the state's shard
        expected = by_id.loc[shards[state[d][0]]["doc_id"], "hes"].mean()
        assert row[f"x.{d}.hes"] == pytest.approx(expected)
    shard_ids = set(shards[state[first][0]]["doc_id"])
    lo, hi = by_id.loc[list(shard_ids), "hes"].agg(["min", "max"])
    assert lo <= row[f"x.{first}.hes"] <= hi


def test_a_lazy_draw_reads_only_its_shards_and_its_features_by_position(tiny_env, pool_data, tmp_path):
    """A trial's path (shards fetched on first use, features read by (shard, row)) draws the same
    documents and gives the same covariates, to the bit, as the whole state read up front and
    the features looked up by doc_id, a domain with nothing drawn included."""
    from causalmix.datapool.sweep_inputs import load_sweep_inputs
    from causalmix.proxy.data import LazyShards
    from causalmix.proxy.run import run_covariates

    pool, shards, _, features, _ = pool_data
    features.to_parquet(tmp_path / "f.parquet")
    names = ("normalized_loss", "hes")
    by_position = load_sweep_inputs(tiny_env.pool_small, tmp_path / "f.parquet", names).by_position
    tokenizer = load_tokenizer(str(tiny_env.proxy_model))
    state = {d: tuple(s.name for s in pool.shards(d)) for d in pool.domains}
    spec = RunSpec("r", dict(zip(pool.domains, [0.6, 0.3, 0.1, 0.0])), state, seed=3)

    def draw(source, budget):
        return draw_sample(source, state, spec.mixture, budget=budget, budget_unit="samples",
                           tokenizer=tokenizer, max_length=128, rng=np.random.default_rng(3))

    eager = draw(shards, 20)
    tables = {n: pa.Table.from_pandas(f, preserve_index=False) for n, f in shards.items()}  # as the sweep puts them
    calls = []
    lazy = LazyShards({n: len(f) for n, f in shards.items()},
                      lambda names: calls.append(names) or [tables[n] for n in names])
    sample = draw(lazy, 20)
    assert sample.doc_ids == eager.doc_ids and sample.rows == eager.rows
    assert [shards[n]["doc_id"].iat[r] for n, r in sample.rows] == sample.doc_ids
    assert set(lazy.fetched()) == {n for n, _ in sample.rows} and len(calls) == 1  # at once, before the draw
    by_tokens = {"budget": 600, "budget_unit": "tokens", "tokenizer": tokenizer, "max_length": 128}
    assert (draw_sample(LazyShards(lazy.sizes, lambda names: [tables[n] for n in names]), state, spec.mixture,
                        rng=np.random.default_rng(3), **by_tokens).doc_ids
            == draw_sample(shards, state, spec.mixture, rng=np.random.default_rng(3), **by_tokens).doc_ids)
    one = LazyShards(lazy.sizes, lambda names: [shards[n] for n in names])
    assert len(draw(one, 1).doc_ids) == 1 and len(one.fetched()) == 1
    got = run_covariates(spec, sample, shards=lazy, features=by_position, feature_names=names)
    assert got == run_covariates(spec, sample, shards=shards, features=features, feature_names=names)
    assert all(np.isfinite(v) for v in got.values()) and sample.counts[pool.domains[3]] == 0
