"""The dev suite of a pool: one metric per dev set, and the outcome `y`.

- metric 'nll'         -> `metric.<domain>_nll`: response-token NLL (nats per token, summed over
                          the dev set's scored tokens / their count), lower is better.
- metric 'exact_match' -> `metric.<domain>_em`: share of dev prompts whose greedy answer's final
                          number after "The answer is" equals the reference's (0..1).
`y = mean over dev sets of (em, or -nll)`: each metric with its sign turned so that higher
is better, then an unweighted mean over the pool's dev sets (DESIGN.md's default).
"""
from __future__ import annotations

import re
from typing import Mapping

import numpy as np
import pandas as pd

from lm.formatting import encode_document, prompt_text
from proxy.config import ProxyConfig
from proxy.packing import pack_documents
from proxy.train import autocast_for, token_nll_sum

ANSWER = re.compile(r"The answer is\s*\$?\s*(-?[\d,]*\.?\d+)")
LOWER_IS_BETTER = {"nll"}
METRIC_SUFFIX = {"nll": "nll", "exact_match": "em"}


def final_answer(text: str) -> str | None:
    """The number after the last "The answer is" (commas dropped), else None."""
    found = ANSWER.findall(text)
    return found[-1].replace(",", "") if found else None


def metric_name(domain: str, kind: str) -> str:
    return f"metric.{domain}_{METRIC_SUFFIX[kind]}"


def outcome(metrics: Mapping[str, float]) -> float:
    """`y` from `metric.*` values: loss-type metrics (suffix _nll) negated, then the mean."""
    signed = [-v if name.endswith("_nll") else v for name, v in metrics.items()]
    return float(np.mean(signed)) if signed else float("nan")


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


def dev_exact_match(model, tokenizer, frame: pd.DataFrame, cfg: ProxyConfig, device: str) -> float:
    answers = generate_greedy(model, tokenizer, frame["prompt"].tolist(), cfg, device)
    refs = [final_answer(r) for r in frame["response"]]
    hits = [a is not None and final_answer(a) == ref for a, ref in zip(answers, refs)]
    return float(np.mean(hits)) if hits else float("nan")


def dev_suite(model, tokenizer, dev_sets: Mapping[str, tuple[str, pd.DataFrame]], cfg: ProxyConfig,
              device: str) -> dict[str, float]:
    """{`metric.<domain>_<nll|em>`: value} for dev sets given as {domain: (metric kind, frame)}."""
    metrics = {}
    for domain, (kind, frame) in sorted(dev_sets.items()):
        if cfg.dev_limit:
            frame = frame.iloc[: cfg.dev_limit]
        if kind == "nll":
            metrics[metric_name(domain, kind)] = dev_nll(model, tokenizer, frame, cfg, device)
        elif kind == "exact_match":
            metrics[metric_name(domain, kind)] = dev_exact_match(model, tokenizer, frame, cfg, device)
        else:
            raise ValueError(f"dev set {domain!r}: unknown metric {kind!r} (nll or exact_match)")
    return metrics
