"""normalized_loss and HES against a direct torch.log_softmax computation on the tiny model."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from causalmix.features.doc_features import (ScoredDoc, hes_from_entropies, hes_k, score_documents,
                                             token_budget_batches)


@pytest.mark.parametrize("n, k", [(1, 1), (199, 1), (200, 1), (201, 2), (400, 2), (401, 3)])
def test_hes_counts_ceil_half_percent_at_least_one(n, k):
    assert hes_k(n) == k


@pytest.mark.parametrize("n", [1, 199, 201])
def test_hes_sums_the_highest_entropies(n):
    entropies = np.random.default_rng(n).uniform(0, 1, n)
    entropies[n // 2] = 5.0
    if n > 200:
        entropies[0] = 4.0
    expected = {1: entropies[0], 199: 5.0, 201: 9.0}[n]
    assert hes_from_entropies(entropies) == pytest.approx(expected)


def test_hes_rejects_a_document_without_scored_tokens():
    with pytest.raises(ValueError):
        hes_k(0)


def test_token_budget_batches_cover_each_document_once_within_budget():
    lengths = [5, 300, 40, 40, 41, 7, 1000, 3]
    batches = token_budget_batches(lengths, 128)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for batch in batches:
        assert len(batch) == 1 or max(lengths[i] for i in batch) * len(batch) <= 128
        assert [lengths[i] for i in batch] == sorted((lengths[i] for i in batch), reverse=True)
    assert [6] in batches and [1] in batches


def direct_features(model, doc: ScoredDoc) -> tuple[float, float, int]:
    """One document alone, full logits, torch.log_softmax: the definition, spelled out."""
    ids = torch.tensor([list(doc.input_ids)])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0].float()
    logp = torch.log_softmax(logits[doc.response_start - 1:-1], dim=-1)
    targets = ids[0, doc.response_start:]
    nll = -logp[torch.arange(len(targets)), targets]
    entropy = -(logp.exp() * logp).sum(-1)
    k = math.ceil(0.005 * len(targets))
    hes = float(torch.sort(entropy, descending=True).values[:max(k, 1)].sum())
    return float(nll.mean()) / math.log(logits.shape[-1]), hes, len(targets)


@pytest.fixture(scope="module")
def proxy(tiny_env):
    from causalmix.lm.loading import load_causal_lm, load_tokenizer

    return load_causal_lm(str(tiny_env.proxy_model), device="cpu"), load_tokenizer(str(tiny_env.proxy_model))


@pytest.fixture(scope="module")
def pool_docs(tiny_env, proxy):
    from causalmix.datapool.pool import Pool
    from causalmix.lm.formatting import encode_document

    frame = pd_concat_first_rows(Pool.open(tiny_env.pool_small), per_domain=5)
    _, tokenizer = proxy
    docs = []
    for row in frame.itertuples():
        enc = encode_document(tokenizer, row.prompt, row.response, is_text=row.is_text, max_length=512)
        docs.append(ScoredDoc(enc.input_ids, enc.response_start))
    return docs


def pd_concat_first_rows(pool, per_domain):
    import pandas as pd

    return pd.concat([pool.read(d).head(per_domain) for d in pool.domains], ignore_index=True)


def test_features_equal_direct_log_softmax(proxy, pool_docs):
    model, _ = proxy
    got = score_documents(model, pool_docs, batch_tokens=4096)
    for i, doc in enumerate(pool_docs):
        loss, hes, n = direct_features(model, doc)
        assert got.n_tokens[i] == n
        assert got.normalized_loss[i] == pytest.approx(loss, rel=1e-5, abs=1e-6)
        assert got.hes[i] == pytest.approx(hes, rel=1e-5, abs=1e-6)


def test_logit_chunks_do_not_change_the_features(proxy, pool_docs, monkeypatch):
    import causalmix.features.doc_features as doc_features

    model, _ = proxy
    whole = score_documents(model, pool_docs, batch_tokens=10**6)
    vocab = model.get_output_embeddings().weight.shape[0]
    monkeypatch.setattr(doc_features, "CPU_LOGIT_CHUNK_BYTES", 4 * vocab * 7)  # 7 rows a chunk
    chunked = score_documents(model, pool_docs, batch_tokens=10**6)
    assert whole.n_tokens.sum() > 7 * 3  # several chunk boundaries, inside documents too
    np.testing.assert_allclose(whole.normalized_loss, chunked.normalized_loss, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(whole.hes, chunked.hes, rtol=1e-6, atol=1e-7)


def test_batch_of_one_equals_batch_of_sixteen(proxy, pool_docs):
    model, _ = proxy
    docs = pool_docs[:16]
    batched = score_documents(model, docs, batch_tokens=10**6)
    # a budget of one token: each document alone, through the KV-cache path a token at a time;
    # one document of each domain (a token at a time is 0.4 s a document here)
    each = list(range(0, 16, 5))
    single = score_documents(model, [docs[i] for i in each], batch_tokens=1)
    assert (single.n_tokens == batched.n_tokens[each]).all()
    np.testing.assert_allclose(single.normalized_loss, batched.normalized_loss[each], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(single.hes, batched.hes[each], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("n_scored", [1, 199, 201])
def test_hes_edge_lengths_on_the_model(proxy, n_scored):
    model, _ = proxy
    rng = np.random.default_rng(n_scored)
    ids = rng.integers(3, model.config.vocab_size, size=5 + n_scored).tolist()
    doc = ScoredDoc(ids, 5)
    got = score_documents(model, [doc, ScoredDoc(ids[:7], 5)])
    loss, hes, n = direct_features(model, doc)
    assert got.n_tokens[0] == n_scored == n
    assert got.hes[0] == pytest.approx(hes, rel=1e-5)
    assert got.normalized_loss[0] == pytest.approx(loss, rel=1e-5)


UNICODE = ["", "plain ascii", "日本語のテキスト。句読点！", "emoji 👩‍👩‍👧 🏳️‍🌈 ✨", "مرحبا بالعالم",
           "combining e\u0301 and \u0000 NUL \u200b zero-width", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 \U0010ffff", "tab\tand\r\nCRLF"]


@pytest.mark.parametrize("is_text", [False, True])
def test_any_unicode_and_empty_responses_give_finite_features(proxy, is_text):
    from causalmix.lm.formatting import encode_document

    model, tokenizer = proxy
    docs = []
    for text in UNICODE:
        enc = encode_document(tokenizer, "prompt ✓", text, is_text=is_text, max_length=512)
        docs.append(ScoredDoc(enc.input_ids, enc.response_start))
    got = score_documents(model, docs)
    assert (got.n_tokens >= 1).all()
    assert np.isfinite(got.normalized_loss).all() and np.isfinite(got.hes).all()
    assert (got.normalized_loss > 0).all() and (got.hes >= 0).all()


def test_a_shard_prepared_in_one_tokenizer_call_equals_each_document_alone(proxy, tiny_env):
    """The featurizer tokenizes a shard's prompts and responses in one call each: the same tokens,
    cut, flags and style columns as one document at a time, chat and plain-text rows mixed."""
    import pandas as pd

    from causalmix.actors.featurize.featurizer import prepare_documents
    from causalmix.features.style import style_row
    from causalmix.datapool.pool import Pool
    from causalmix.lm.formatting import encode_document

    _, tokenizer = proxy
    frame = pd_concat_first_rows(Pool.open(tiny_env.pool_small), per_domain=3)
    edge = pd.DataFrame({"doc_id": ["e1", "e2", "e3", "e4"], "domain": "edge",
                         "prompt": ["", "", "long " * 80, "q"], "response": ["", "x", "y " * 90, ""],
                         "is_text": [True, True, False, False]})
    frame = pd.concat([frame[edge.columns], edge], ignore_index=True)
    rows = prepare_documents(frame, path="shard", tokenizer=tokenizer, max_length=64)
    assert rows["truncated"].any() and (rows["path"] == "shard").all()
    for i, doc in enumerate(frame.itertuples()):
        alone = encode_document(tokenizer, doc.prompt or "", doc.response or "", is_text=doc.is_text,
                                max_length=64)
        assert rows.loc[i, "doc_id"] == doc.doc_id
        assert list(rows.loc[i, "input_ids"]) == alone.input_ids
        assert (rows.loc[i, "response_start"], rows.loc[i, "truncated"]) == (alone.response_start, alone.truncated)
        assert rows.loc[i, list(style_row(""))].to_dict() == style_row(doc.response or "")
