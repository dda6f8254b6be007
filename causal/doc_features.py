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

Documents are batched by a token budget in length-sorted order and right-padded;
with right padding the causal mask alone keeps padding out of every real
position, so each document's values equal those of scoring it alone (up to
float rounding of the differently shaped matrix products, ~1e-6).
This module imports torch but no Ray; `actors/featurizer.py` is its Ray shell.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

FEATURE_VERSION = "causalmix-doc-features-v1"
"""Bump whenever a definition here or in `causal/style.py` changes: featurized
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
    return -(-n_tokens // HES_TOKENS_PER_PICK)


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
    lm_head = model.get_output_embeddings()
    vocab = lm_head.weight.shape[0]
    limit = LOGIT_CHUNK_BYTES if device.type == "cuda" else CPU_LOGIT_CHUNK_BYTES
    chunk = max(1, limit // (4 * vocab))
    nll, entropy = [], []
    for start in range(0, hidden.shape[0], chunk):
        logp = torch.log_softmax(lm_head(hidden[start:start + chunk]).float(), dim=-1)
        tgt = targets[start:start + chunk].to(device)
        nll.append(-logp.gather(-1, tgt[:, None])[:, 0].cpu())
        entropy.append(-(logp.exp() * logp).sum(-1).cpu())
    return torch.cat(nll), torch.cat(entropy), torch.from_numpy(owners), vocab


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
    with torch.inference_mode():
        for batch in token_budget_batches(lengths, batch_tokens):
            nll, entropy, owners, vocab = _score_batch(model, [docs[i] for i in batch], pad_id)
            counts = torch.bincount(owners, minlength=len(batch))
            nll_sum = torch.zeros(len(batch), dtype=torch.float64).index_add_(0, owners, nll.double())
            bounds = np.concatenate([[0], np.cumsum(counts.numpy())])
            for row, i in enumerate(batch):
                n_tokens[i] = int(counts[row])
                loss[i] = float(nll_sum[row]) / n_tokens[i] / math.log(vocab)
                hes[i] = hes_from_entropies(entropy[bounds[row]:bounds[row + 1]].numpy())
    return DocFeatures(n_tokens, loss, hes)
