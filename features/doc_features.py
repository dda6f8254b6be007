"""Per-document model features: Normalized_Loss and HES (High-Entropy Sum).

Both are computed over a document's *scored* tokens, the response tokens of
`lm.formatting.encode_document` (the prompt is context only; plain-text rows
are scored from their second token on):

- `normalized_loss` = mean over scored tokens of the NLL (nats) of the token
  under the reference model, divided by ln(V), where V is the size of the
  model's output distribution (the logits dimension, `config.vocab_size`).
  ln(V) is the NLL of the uniform distribution, so the value is comparable
  across pools and models.
- `hes` = sum of the predictive entropies (nats) of the k highest-entropy
  scored tokens, k = ceil(n / 200) = ceil(0.005 n) computed in integers, so
  k = 1 for 1..200 tokens and 2 for 201..400. The entropy at a position is
  that of the model's distribution over the token to be predicted there.

Documents are batched by a token budget (`batch_tokens`) in length-sorted order and
right-padded; a document longer than the budget (long chain-of-thought, 16K+ tokens) runs
alone in chunks of `batch_tokens` with a KV cache, so memory is one chunk's activations and
logits plus the cache, and its values are those of one pass (HES still sums the top 0.5 % of
all its tokens' entropies);
with right padding the causal mask alone keeps padding out of every real
position, so each document's values equal those of scoring it alone (up to
float rounding of the differently shaped matrix products, ~1e-6).
This module imports torch but no Ray; `actors/featurize/featurizer.py` is its Ray shell.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

# Deferred on purpose, so that importing this module does not load torch and transformers: the
# function-local imports (of these libraries or of this project's modules that import them).

FEATURE_VERSION = "causalmix-doc-features-v1"
"""Bump whenever a definition here or in `features/style.py` changes: featurized
shards carry it, and a rerun recomputes shards made under another version."""

HES_TOKENS_PER_PICK = 200
"""One high-entropy token is summed per started 200 scored tokens (0.5 %)."""

LOGIT_CHUNK_BYTES = 256 * 1024**2
"""Float32 logits materialised at once on a GPU: bounds memory for 150K-token vocabularies."""
CPU_LOGIT_CHUNK_BYTES = 4 * 1024**2
"""The same on CPU, where the log-softmax, exp and sum passes over a chunk run from cache
when it is this small (40 % less CPU time than 256 MB chunks on the demo's proxy; each
row's math does not depend on the chunk, so the values stay the same up to rounding)."""


def hes_k(n_tokens: int) -> int:
    """Number of tokens HES sums over: ceil(0.005 * n), at least 1."""
    if n_tokens < 1:
        raise ValueError(f"a document has at least one scored token, got {n_tokens}")
    return math.ceil(n_tokens / HES_TOKENS_PER_PICK)


def hes_from_entropies(entropies) -> float:
    """High-Entropy Sum of one document from its per-token entropies (nats)."""
    values = np.asarray(entropies, dtype=np.float64)
    k = hes_k(values.size)
    return float(np.sort(values)[::-1][:k].sum())


@dataclass(frozen=True)
class ScoredDoc:
    """Token ids of one document and the index of its first scored token."""

    input_ids: Sequence[int]
    response_start: int

    def __post_init__(self):
        if not 1 <= self.response_start < len(self.input_ids):
            raise ValueError(f"response_start must lie in [1, {len(self.input_ids) - 1}], "
                             f"got {self.response_start} for {len(self.input_ids)} tokens")


@dataclass(frozen=True)
class DocFeatures:
    n_tokens: np.ndarray
    """Scored (response) tokens per document."""
    normalized_loss: np.ndarray
    hes: np.ndarray


def token_budget_batches(lengths: Sequence[int], batch_tokens: int) -> list[list[int]]:
    """Indices grouped longest first so that each batch's padded size
    (longest length x documents) stays within `batch_tokens`; a document longer
    than the budget forms a batch of its own. Ties keep input order, so the
    grouping is a function of the lengths alone."""
    if batch_tokens < 1:
        raise ValueError(f"batch_tokens must be >= 1, got {batch_tokens}")
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches: list[list[int]] = []
    for i in order:
        if batches and lengths[batches[-1][0]] * (len(batches[-1]) + 1) <= batch_tokens:
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


def _check_supported(model) -> None:
    config = model.config
    if getattr(config, "final_logit_softcapping", None):
        raise ValueError(f"{config.model_type}: logit soft-capping is not supported by the featurizer")


def _score_batch(model, docs: Sequence[ScoredDoc], pad_id: int):
    """Per-token NLL and entropy (float32, on CPU) of every scored token, and the
    owning document of each, for one right-padded batch. The batch is laid out with
    array operations (no per-document tensor work: that was a fifth of the CPU time)."""
    import torch

    device = next(model.parameters()).device
    lengths = np.fromiter((len(d.input_ids) for d in docs), dtype=np.int64, count=len(docs))
    starts = np.fromiter((d.response_start for d in docs), dtype=np.int64, count=len(docs))
    width = int(lengths.max())
    column = np.arange(width)[None, :]
    real = column < lengths[:, None]
    ids = np.full((len(docs), width), pad_id, dtype=np.int64)
    ids[real] = np.concatenate([np.asarray(d.input_ids, dtype=np.int64) for d in docs])
    # row-major order: documents in batch order, tokens in text order
    owners, cols = np.nonzero(real & (column >= starts[:, None]))
    # hidden state at position t predicts token t + 1
    positions = torch.from_numpy(owners * width + cols - 1)
    targets = torch.from_numpy(ids[owners, cols])

    hidden = model.base_model(input_ids=torch.from_numpy(ids).to(device)).last_hidden_state
    hidden = hidden.reshape(-1, hidden.shape[-1])[positions.to(device)]
    nll, entropy, vocab = _nll_entropy(model, hidden, targets)
    return nll, entropy, torch.from_numpy(owners), vocab


def _nll_entropy(model, hidden, targets):
    """NLL of `targets` and predictive entropy at each row of `hidden` (float32, on CPU),
    the logits materialised LOGIT_CHUNK_BYTES at a time."""
    import torch

    lm_head = model.get_output_embeddings()
    vocab = lm_head.weight.shape[0]
    limit = LOGIT_CHUNK_BYTES if hidden.device.type == "cuda" else CPU_LOGIT_CHUNK_BYTES
    chunk = max(1, limit // (4 * vocab))
    nll, entropy = [], []
    for start in range(0, hidden.shape[0], chunk):
        logp = torch.log_softmax(lm_head(hidden[start:start + chunk]).float(), dim=-1)
        tgt = targets[start:start + chunk].to(hidden.device)
        nll.append(-logp.gather(-1, tgt[:, None])[:, 0].cpu())
        entropy.append(-(logp.exp() * logp).sum(-1).cpu())
    return torch.cat(nll), torch.cat(entropy), vocab


def _score_long(model, doc: ScoredDoc, chunk_tokens: int):
    """Per-token NLL and entropy of one document longer than `chunk_tokens`, run through the
    model `chunk_tokens` at a time with a KV cache: attention still sees the whole prefix, so
    the values are those of one pass, while activations and logits stay within one chunk
    (the cache grows by 2 x layers x kv width per token)."""
    import torch
    from transformers import DynamicCache

    device = next(model.parameters()).device
    ids = torch.tensor(np.asarray(doc.input_ids), dtype=torch.long)
    n = len(ids)
    cache = DynamicCache()
    nll, entropy, vocab = [], [], 0
    for start in range(0, n - 1, chunk_tokens):
        piece = ids[start:start + chunk_tokens]
        hidden = model.base_model(input_ids=piece[None].to(device), cache=cache,
                                  use_cache=True).last_hidden_state[0]
        at = torch.arange(start, start + len(piece))
        keep = (at >= doc.response_start - 1) & (at < n - 1)
        if keep.any():
            a, b, vocab = _nll_entropy(model, hidden[keep.to(device)], ids[at[keep] + 1])
            nll.append(a)
            entropy.append(b)
    return torch.cat(nll), torch.cat(entropy), vocab


def score_documents(model, docs: Sequence[ScoredDoc], *, batch_tokens: int = 8192,
                    pad_id: int = 0) -> DocFeatures:
    """normalized_loss, hes and scored-token counts of `docs`, in their order."""
    import torch

    _check_supported(model)
    n = len(docs)
    n_tokens = np.zeros(n, dtype=np.int64)
    loss = np.zeros(n, dtype=np.float64)
    hes = np.zeros(n, dtype=np.float64)
    lengths = [len(d.input_ids) for d in docs]
    long = [i for i in range(n) if lengths[i] > batch_tokens]
    short = [i for i in range(n) if lengths[i] <= batch_tokens]
    with torch.inference_mode():
        for i in long:
            nll, entropy, vocab = _score_long(model, docs[i], batch_tokens)
            n_tokens[i] = len(nll)
            loss[i] = float(nll.double().sum()) / n_tokens[i] / math.log(vocab)
            hes[i] = hes_from_entropies(entropy.numpy())
        for group in token_budget_batches([lengths[i] for i in short], batch_tokens):
            batch = [short[j] for j in group]
            nll, entropy, owners, vocab = _score_batch(model, [docs[i] for i in batch], pad_id)
            counts = torch.bincount(owners, minlength=len(batch))
            nll_sum = torch.zeros(len(batch), dtype=torch.float64).index_add_(0, owners, nll.double())
            bounds = np.concatenate([[0], np.cumsum(counts.numpy())])
            for row, i in enumerate(batch):
                n_tokens[i] = int(counts[row])
                loss[i] = float(nll_sum[row]) / n_tokens[i] / math.log(vocab)
                hes[i] = hes_from_entropies(entropy[bounds[row]:bounds[row + 1]].numpy())
    return DocFeatures(n_tokens, loss, hes)
