"""The featurize pipeline end to end on the tiny pool, on 2 CPUs: output, resume, errors."""
from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import causalmix.actors.featurize.driver as featurize_cmd
from causalmix.causal.covariates import pool_covariates
from causalmix.features.doc_features import FEATURE_VERSION, ScoredDoc, score_documents
from causalmix.features.features_io import FEATURE_COLUMNS, MANIFEST, load_features
from causalmix.actors.featurize.driver import FeaturizeConfig, featurize, featurize_pools
from causalmix.core.errors import UserError
from causalmix.datapool.pool import Pool


def config(tiny_env, out, **kw) -> FeaturizeConfig:
    return FeaturizeConfig(pool=str(tiny_env.pool_small), model=str(tiny_env.proxy_model),
                           out=str(out), batch_tokens=2048, **kw)


@pytest.fixture(scope="module")
def full_run(tiny_env, ray_local, tmp_path_factory):
    """The small pool featurized together with a second pool (its copy, one domain), as the demo
    featurizes its three pools: one actor pool for both. The killed-run test below featurizes
    alone and compares shard by shard, so the two ways are checked to agree."""
    root = tmp_path_factory.mktemp("features")
    twin = root / "twin-pool"
    shutil.copytree(tiny_env.pool_small, twin)
    out = root / "demo-small"
    record, twin_record = featurize_pools([config(tiny_env, out),
                                           FeaturizeConfig(pool=str(twin), model=str(tiny_env.proxy_model),
                                                           out=str(root / "twin"), batch_tokens=2048,
                                                           domains=("dialog",))])
    return out, record, root / "twin", twin_record


@pytest.mark.ray
def test_pipeline_end_to_end_on_two_cpus(full_run, tiny_env):
    from causalmix.lm.formatting import encode_document
    from causalmix.lm.loading import load_causal_lm, load_tokenizer

    out, record, *_ = full_run
    pool = Pool.open(tiny_env.pool_small)
    docs = pool.read()
    frame = load_features(out)
    assert list(frame.columns) == list(FEATURE_COLUMNS)
    assert sorted(frame["doc_id"]) == sorted(docs["doc_id"]) and frame["doc_id"].is_unique
    assert frame.attrs["feature_version"] == FEATURE_VERSION == record["feature_version"]
    assert frame.attrs["model"] == str(tiny_env.proxy_model.resolve())
    assert not frame.drop(columns=["doc_id", "domain"]).isna().any().any()
    assert record["shards_computed"] == len(pool.shards())

    model = load_causal_lm(str(tiny_env.proxy_model), device="cpu")
    tokenizer = load_tokenizer(str(tiny_env.proxy_model))
    sample = docs.groupby("domain").head(2).merge(frame, on=["doc_id", "domain"])
    for row in sample.itertuples():
        enc = encode_document(tokenizer, row.prompt, row.response, is_text=row.is_text, max_length=512)
        alone = score_documents(model, [ScoredDoc(enc.input_ids, enc.response_start)])
        assert row.n_tokens == alone.n_tokens[0] and row.truncated == enc.truncated
        assert row.normalized_loss == pytest.approx(alone.normalized_loss[0], rel=1e-5)
        assert row.hes == pytest.approx(alone.hes[0], rel=1e-5)

    covariates = pool_covariates(frame, pool.domains)
    assert len(covariates) == 3 * len(pool.domains) and all(np.isfinite(list(covariates.values())))


@pytest.mark.slow
@pytest.mark.ray
def test_killed_run_resumes_to_identical_output(full_run, tiny_env, tmp_path, monkeypatch):
    full_out, *_ = full_run
    out = tmp_path / "features"
    cfg = config(tiny_env, out, domains=("dialog",))
    written = []
    real_write = featurize_cmd.write_feature_shard

    def write_then_die(path, frame, key):
        if len(written) == 2:
            raise KeyboardInterrupt("simulated kill")
        written.append(path)
        return real_write(path, frame, key)

    monkeypatch.setattr(featurize_cmd, "write_feature_shard", write_then_die)
    with pytest.raises(KeyboardInterrupt):
        featurize(cfg)
    monkeypatch.undo()
    assert not (out / MANIFEST).exists()
    assert sorted(out.glob("shards/*/*.parquet")) == sorted(written)
    with pytest.raises(UserError, match="not a complete features directory"):
        load_features(out)

    record = featurize(cfg)
    assert record["shards_computed"] == 4 - 2
    for path in out.glob("shards/*/*.parquet"):
        pd.testing.assert_frame_equal(pd.read_parquet(path),
                                      pd.read_parquet(full_out / path.relative_to(out)), check_exact=True)
    assert featurize(cfg)["shards_computed"] == 0
    frame = load_features(out)
    assert frame["doc_id"].is_unique and set(frame["domain"]) == {"dialog"}
    with pytest.raises(UserError, match="has no domain"):
        load_features(out, domains=["arithmetic"])


@pytest.mark.ray
def test_pools_featurized_together_each_get_their_own_folder(full_run):
    out, record, twin_out, twin_record = full_run
    assert twin_record["domains"] == ["dialog"] and twin_record["shards_computed"] == 4
    assert record["shards_computed"] == len(record["shards"]) > 4
    twin = load_features(twin_out)
    pd.testing.assert_frame_equal(twin, load_features(out, domains=["dialog"]), check_exact=True)


def test_pools_featurized_together_must_share_the_actor_pool_settings(tiny_env, tmp_path):
    small = config(tiny_env, tmp_path / "a")
    with pytest.raises(ValueError, match=r"must share \['batch_tokens'\]"):
        featurize_pools([small, FeaturizeConfig(pool=str(tiny_env.pool_large), model=str(tiny_env.proxy_model),
                                                out=str(tmp_path / "b"))])
    with pytest.raises(UserError, match="the same features folder"):
        featurize_pools([small, config(tiny_env, tmp_path / "a")])
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_model_that_does_not_load_is_a_user_error(tiny_env, tmp_path):
    from causalmix.launch import main

    out = tmp_path / "out"
    assert main(["featurize", "--pool", str(tiny_env.pool_small), "--model",
                 str(tmp_path / "no-such-model"), "--out", str(out)]) == 2
    (tmp_path / "empty-model").mkdir()
    with pytest.raises(UserError, match="no config.json"):
        featurize(FeaturizeConfig(pool=str(tiny_env.pool_small), model=str(tmp_path / "empty-model"),
                                  out=str(out)))
    assert not out.exists()


def test_domain_the_pool_lacks_is_a_user_error(tiny_env, tmp_path):
    with pytest.raises(UserError, match=r"has no domain\(s\) \['poetry'\]"):
        featurize(config(tiny_env, tmp_path / "out", domains=("code", "poetry")))
    assert not (tmp_path / "out").exists()


def test_empty_shard_is_a_user_error(tiny_env, tmp_path):
    pool_dir = tmp_path / "pool"
    shutil.copytree(tiny_env.pool_small, pool_dir)
    shard = Pool.open(pool_dir).shards("dialog")[1].path
    pq.write_table(pa.Table.from_pandas(pd.read_parquet(shard).head(0), preserve_index=False), shard)
    cfg = FeaturizeConfig(pool=str(pool_dir), model=str(tiny_env.proxy_model), out=str(tmp_path / "out"))
    with pytest.raises(UserError, match=f"shard {shard} of domain 'dialog' is empty"):
        featurize(cfg)
    assert not (tmp_path / "out").exists()


@pytest.mark.ray
def test_actor_pool_takes_every_cpu(ray_local):
    from causalmix.actors.featurize.featurizer import resolve_pool_size

    assert resolve_pool_size(None, "cpu", 1) == (2, "cpu")
    assert resolve_pool_size(None, "cpu", 2) == (1, "cpu")
    with pytest.raises(UserError, match="needs more than the 2 CPU"):
        resolve_pool_size(3, "cpu", 1)
    with pytest.raises(UserError, match="no GPU"):
        resolve_pool_size(None, "cuda", 1)
