"""The dev suite of a pool: one metric per dev set, and the outcome `y`.

- metric 'nll'         -> `metric.<domain>_nll`: response-token NLL (nats per token, summed over
                          the dev set's scored tokens / their count), lower is better.
- metric 'exact_match' -> `metric.<domain>_em`: share of dev prompts whose greedy generation's
                          final answer equals the reference's (0..1), the answer found by the dev
                          set's pattern (proxy/answers.py) and normalised; a generation without an
                          answer is wrong, and a reference without one is an error.
- kind 'lm_eval'       -> `metric.<task>_<metric>` (+ `_stderr`) per task of the entry, through
                          lm-evaluation-harness on the in-memory model (proxy/harness.py).
`y` is the run's objective over these metrics (causal/objective.py; by default the mean of the
metrics, loss-type ones negated, stderr columns left out: the runs table's default, docs/architecture.md).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np
import pandas as pd

from causalmix.causal.objective import Objective
from causalmix.core.errors import UserError
from causalmix.lm.formatting import encode_document, prompt_text
from causalmix.proxy.answers import AnswerPattern
from causalmix.proxy.config import ProxyConfig
from causalmix.proxy.harness import HarnessSpec, harness_metrics
from causalmix.proxy.packing import pack_documents
from causalmix.proxy.train import autocast_for, token_nll_sum

# Deferred on purpose, so that importing this module does not load torch: the function-local imports
# (of these libraries or of this project's modules that import them).

LOWER_IS_BETTER = {"nll"}
METRIC_SUFFIX = {"nll": "nll", "exact_match": "em"}
KINDS = ("nll", "exact_match", "lm_eval")


@dataclass(frozen=True)
class DevTask:
    """One entry of the dev suite: a pool dev set (nll / exact_match) or an lm_eval entry."""

    kind: str
    """nll, exact_match or lm_eval."""
    frame: pd.DataFrame | None = field(default=None, compare=False)
    """The dev documents (prompt, response, is_text); None for lm_eval. Left out of == and hash
    (a frame has no truth value)."""
    answer: AnswerPattern = AnswerPattern()
    """exact_match only: how the final answer is found in reference and generation."""
    harness: HarnessSpec | None = None
    """lm_eval only: the tasks and their settings."""

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"dev task kind {self.kind!r} is not one of {KINDS}")
        if (self.kind == "lm_eval") != (self.harness is not None):
            raise ValueError("an lm_eval dev task needs `harness`, and only it")
        if self.kind != "lm_eval" and self.frame is None:
            raise ValueError(f"a {self.kind} dev task needs its frame")

    @classmethod
    def from_dev_set(cls, dev_set, frame: pd.DataFrame) -> "DevTask":
        """From a datapool.pool.DevSet (its metric and stored answer pattern) and its frame."""
        answer = AnswerPattern.parse(dev_set.answer) if dev_set.metric == "exact_match" else AnswerPattern()
        return cls(kind=dev_set.metric, frame=frame, answer=answer)

    @classmethod
    def coerce(cls, value) -> "DevTask":
        """A DevTask, or the older `(metric kind, frame)` pair (answer pattern `auto`)."""
        if isinstance(value, DevTask):
            return value
        kind, frame = value
        return cls(kind=kind, frame=frame)


def final_answer(text: str, pattern: AnswerPattern = AnswerPattern()) -> str | None:
    """The normalised final answer of `text` under `pattern` (default `auto`), else None."""
    return pattern.extract(text)


def metric_name(domain: str, kind: str) -> str:
    return f"metric.{domain}_{METRIC_SUFFIX[kind]}"


def outcome(metrics: Mapping[str, float], objective=None) -> float:
    """`y` of one run from its `metric.*` values under `objective` (causal.objective.Objective;
    None: the default, the mean with loss-type metrics negated and stderr columns left out)."""
    return (objective or Objective()).row_value(metrics)


def dev_nll(model, tokenizer, frame: pd.DataFrame, cfg: ProxyConfig, device: str) -> float:
    import torch

    docs = [encode_document(tokenizer, r.prompt, r.response, is_text=bool(getattr(r, "is_text", False)),
                            max_length=cfg.max_length) for r in frame.itertuples()]
    packed = pack_documents(docs, cfg.max_length, tokenizer.pad_token_id)
    autocast = autocast_for(device, cfg.dtype)
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(packed.input_ids), cfg.eval_batch_rows):
            nll, n = token_nll_sum(model, packed.rows(slice(start, start + cfg.eval_batch_rows)),
                                   device, autocast)
            total += float(nll)
            count += n
    return total / max(count, 1)


def generate_greedy(model, tokenizer, prompts: list[str], cfg: ProxyConfig, device: str) -> list[str]:
    import torch

    stop = [t for t in {tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|im_end|>")}
            if isinstance(t, int) and t >= 0 and t != tokenizer.unk_token_id]
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    outputs: list[str] = []
    autocast = autocast_for(device, cfg.dtype)
    try:
        for start in range(0, len(prompts), cfg.em_batch_size):
            texts = [prompt_text(tokenizer, p) for p in prompts[start:start + cfg.em_batch_size]]
            enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False,
                            truncation=True, max_length=max(8, cfg.max_length - cfg.em_max_new_tokens))
            enc = {k: v.to(device) for k, v in enc.items()}
            with torch.no_grad(), autocast():
                out = model.generate(**enc, do_sample=False, max_new_tokens=cfg.em_max_new_tokens,
                                     eos_token_id=stop, pad_token_id=tokenizer.pad_token_id)
            new = out[:, enc["input_ids"].shape[1]:]
            outputs += tokenizer.batch_decode(new, skip_special_tokens=True)
    finally:
        tokenizer.padding_side = side
    return outputs


def exact_match_score(generations: list[str], references: list[str], pattern: AnswerPattern,
                      where: str = "exact-match dev set") -> float:
    """Share of generations whose answer equals their reference's. A reference without an answer
    is refused (before the fix it made any answer-less generation count as correct)."""
    refs = [pattern.extract(r) for r in references]
    missing = [i for i, ref in enumerate(refs) if ref is None]
    if missing:
        raise UserError(f"{where}: references of rows {missing[:5]} have no answer for pattern "
                        f"{pattern.to_json()!r}; rebuild the pool (`pool build` checks this)")
    hits = [pattern.extract(g) == ref for g, ref in zip(generations, refs)]
    return float(np.mean(hits)) if hits else float("nan")


def dev_exact_match(model, tokenizer, frame: pd.DataFrame, cfg: ProxyConfig, device: str,
                    pattern: AnswerPattern = AnswerPattern(), where: str = "exact-match dev set") -> float:
    references = frame["response"].tolist()
    # references checked before any generation is paid for
    exact_match_score([""] * len(references), references, pattern, where)
    answers = generate_greedy(model, tokenizer, frame["prompt"].tolist(), cfg, device)
    return exact_match_score(answers, references, pattern, where)


def dev_suite(model, tokenizer, dev_sets: Mapping[str, object], cfg: ProxyConfig,
              device: str, *, seed: int = 0) -> dict[str, float]:
    """{`metric.<name>`: value} for dev tasks given as {name: DevTask or (metric kind, frame)}."""
    metrics = {}
    for name, task in sorted(dev_sets.items()):
        task = DevTask.coerce(task)
        if task.kind == "lm_eval":
            found = harness_metrics(model, tokenizer, task.harness, seed=seed)
            clash = sorted(set(found) & set(metrics))
            if clash:
                raise UserError(f"dev entry {name}: metric(s) {clash} already come from another dev entry")
            metrics.update(found)
            continue
        frame = task.frame.iloc[: cfg.dev_limit] if cfg.dev_limit else task.frame
        if task.kind == "nll":
            metrics[metric_name(name, task.kind)] = dev_nll(model, tokenizer, frame, cfg, device)
        else:
            metrics[metric_name(name, task.kind)] = dev_exact_match(
                model, tokenizer, frame, cfg, device, task.answer, where=f"dev set {name!r}")
    return metrics
