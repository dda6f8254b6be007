"""Packing without cross-sample attention, response-only loss, and gradient accumulation."""
import numpy as np
import pytest
import torch

from causalmix.lm.formatting import EncodedDoc
from causalmix.proxy.config import ProxyConfig
from causalmix.proxy.packing import IGNORE, best_fit_decreasing, pack_documents
from causalmix.proxy.train import cosine_with_warmup, token_nll_sum, train_packed

import contextlib


@pytest.fixture(scope="module")
def model():
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    cfg = Qwen2Config(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                      attn_implementation="sdpa")
    return Qwen2ForCausalLM(cfg).eval()


def random_docs(n, seed=0, low=5, high=40):
    rng = np.random.default_rng(seed)
    docs = []
    for _ in range(n):
        length = int(rng.integers(low, high))
        docs.append(EncodedDoc(rng.integers(1, 97, length).tolist(), int(rng.integers(1, length)), False))
    return docs


def nll(model, batch):
    with torch.no_grad():
        total, count = token_nll_sum(model, batch, "cpu", contextlib.nullcontext)
    return float(total), count


def test_best_fit_decreasing_fills_rows_without_overflow():
    lengths = list(np.random.default_rng(1).integers(1, 60, 300))
    bins = best_fit_decreasing(lengths, 64)
    assert sorted(i for b in bins for i in b) == list(range(300))
    assert all(sum(lengths[i] for i in b) <= 64 for b in bins)
    assert len(bins) <= 1.1 * np.ceil(sum(lengths) / 64) + 1
    with pytest.raises(ValueError, match="more than a row"):
        best_fit_decreasing([65], 64)


def test_labels_mask_prompt_and_padding_and_positions_restart():
    docs = random_docs(12)
    packed = pack_documents(docs, 64, pad_id=0)
    for r in range(len(packed.input_ids)):
        for i in set(packed.doc_index[r]) - {-1}:
            where = np.flatnonzero(packed.doc_index[r] == i)
            doc = docs[i]
            assert packed.input_ids[r, where].tolist() == doc.input_ids
            assert packed.position_ids[r, where].tolist() == list(range(len(doc.input_ids)))
            labels = packed.labels[r, where]
            assert np.all(labels[:doc.response_start] == IGNORE)
            assert labels[doc.response_start:].tolist() == doc.input_ids[doc.response_start:]
        assert np.all(packed.labels[r, packed.doc_index[r] == -1] == IGNORE)
    assert packed.n_scored == sum(d.n_response_tokens for d in docs)


def test_loss_counts_response_tokens_only(model):
    doc = random_docs(1, seed=3, low=30, high=31)[0]
    packed = pack_documents([doc], 64, pad_id=0)
    total, count = nll(model, packed)
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([doc.input_ids])).logits[0]
    logp = torch.log_softmax(logits.float(), -1)
    targets = range(doc.response_start, len(doc.input_ids))
    manual = -sum(float(logp[t - 1, doc.input_ids[t]]) for t in targets)
    assert count == len(doc.input_ids) - doc.response_start
    assert total == pytest.approx(manual, rel=1e-5)
    # Changing the prompt changes the context but adds no loss terms: the count stays,
    # and tokens before the response never appear as targets.
    altered = EncodedDoc([5] * doc.response_start + doc.input_ids[doc.response_start:], doc.response_start, False)
    assert nll(model, pack_documents([altered], 64, pad_id=0))[1] == count


def test_packed_loss_equals_unpacked_loss(model):
    docs = random_docs(16, seed=5)
    packed = pack_documents(docs, 128, pad_id=0, rng=np.random.default_rng(0))
    assert len(packed.input_ids) < len(docs)  # several documents share rows
    packed_total, packed_count = nll(model, packed)
    single_total = single_count = 0
    for doc in docs:
        t, c = nll(model, pack_documents([doc], len(doc.input_ids), pad_id=0))
        single_total += t
        single_count += c
    assert packed_count == single_count
    assert packed_total / packed_count == pytest.approx(single_total / single_count, rel=1e-5)


def test_no_attention_across_packed_samples(model):
    docs = random_docs(6, seed=7, low=10, high=20)
    packed = pack_documents(docs, 128, pad_id=0)
    assert len(packed.input_ids) == 1
    first = np.flatnonzero(packed.doc_index[0] == packed.doc_index[0, 0])
    rest = np.flatnonzero((packed.doc_index[0] >= 0) & (packed.doc_index[0] != packed.doc_index[0, 0]))
    ids = torch.tensor(packed.input_ids)
    changed = ids.clone()
    changed[0, first] = (changed[0, first] + 11) % 97

    def logits(x, pos):
        with torch.no_grad():
            return model(input_ids=x, position_ids=pos, attention_mask=None, use_cache=False).logits[0]

    packed_pos = torch.tensor(packed.position_ids)
    base, moved = logits(ids, packed_pos), logits(changed, packed_pos)
    assert not torch.allclose(base[first], moved[first])
    torch.testing.assert_close(base[rest], moved[rest], rtol=0, atol=1e-5)
    # Control: with one running position sequence the same change leaks into later samples,
    # so the check above can fail.
    plain_pos = torch.arange(ids.shape[1])[None]
    assert not torch.allclose(logits(ids, plain_pos)[rest], logits(changed, plain_pos)[rest], atol=1e-4)


def test_gradient_accumulation_matches_one_large_batch(model):
    import copy

    docs = random_docs(24, seed=9)
    packed = pack_documents(docs, 64, pad_id=0)
    rows = packed.rows(slice(0, 4))
    updated = []
    for micro, accum in ((4, 1), (1, 4)):
        m = copy.deepcopy(model)
        cfg = ProxyConfig(model="x", rows_per_micro_batch=micro, grad_accum=accum, warmup_ratio=0.0,
                          learning_rate=1e-2)
        stats = train_packed(m, rows, cfg, device="cpu", rng=np.random.default_rng(0))
        assert stats.steps == 1
        updated.append(torch.cat([p.detach().flatten() for p in m.parameters()]))
    torch.testing.assert_close(updated[0], updated[1], rtol=1e-3, atol=2e-5)


def test_cosine_schedule_warms_up_then_decays_to_zero():
    lr = [cosine_with_warmup(s, 100, 10) for s in range(100)]
    assert lr[0] == pytest.approx(0.1) and lr[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lr[10:], lr[11:]))
    assert lr[-1] < 0.001


def test_step_loss_is_read_once_per_step_and_only_for_the_hook(model, monkeypatch):
    import copy

    packed = pack_documents(random_docs(40, seed=11), 64, pad_id=0)
    cfg = ProxyConfig(model="x", rows_per_micro_batch=1, grad_accum=3, warmup_ratio=0.0)
    reads = []
    original = torch.Tensor.__float__
    monkeypatch.setattr(torch.Tensor, "__float__", lambda t: reads.append(1) or original(t))
    stats = train_packed(copy.deepcopy(model), packed, cfg, device="cpu", rng=np.random.default_rng(0))
    assert stats.steps > 3 and len(reads) == 2  # first and last loss, after the loop
    reads.clear()
    seen = []
    stats = train_packed(copy.deepcopy(model), packed, cfg, device="cpu", rng=np.random.default_rng(0),
                         on_step=lambda step, loss, info: seen.append((step, loss)))
    assert [s for s, _ in seen] == list(range(1, stats.steps + 1))
    assert len(reads) == stats.steps + 2
    assert seen[0][1] == stats.first_loss and seen[-1][1] == stats.last_loss
    assert all(isinstance(loss, float) and loss > 0 for _, loss in seen)


def test_liger_loss_is_refused_on_cpu(model):
    with pytest.raises(ValueError, match="liger_loss needs a CUDA device"):
        ProxyConfig(model="x", device="cpu", liger_loss=True)
    cfg = ProxyConfig(model="x", liger_loss=True)  # device auto: refused when the run lands on CPU
    with pytest.raises(ValueError, match="liger_loss needs a CUDA device.*'cpu'"):
        train_packed(model, pack_documents(random_docs(4), 64, pad_id=0), cfg, device="cpu",
                     rng=np.random.default_rng(0))
