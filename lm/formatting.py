"""How a prompt/response document becomes tokens, shared by the featurizer and proxy SFT.

With a chat template (Qwen2.5 and the tiny models have one) the prompt is the
user turn and the response the assistant turn, ended by the template's end of
turn. Without one, the documented fallback is
`"### Prompt:\\n{prompt}\\n\\n### Response:\\n{response}{eos}"`.
Plain-text rows (`is_text`) are the text alone, scored on every token after
the first. Prompt and response are tokenized apart so the boundary between
context and scored tokens is exact.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

FALLBACK_PROMPT = "### Prompt:\n{prompt}\n\n### Response:\n"


@dataclass(frozen=True)
class EncodedDoc:
    input_ids: list[int]
    response_start: int
    """Index of the first scored token; tokens before it are context only."""
    truncated: bool
    """True when the document was cut to fit the model's context."""

    @property
    def n_response_tokens(self) -> int:
        return len(self.input_ids) - self.response_start


def _end_of_turn(tokenizer) -> str:
    # one token lookup, not get_vocab(): that builds the whole vocabulary dict per call
    if tokenizer.chat_template and tokenizer.convert_tokens_to_ids("<|im_end|>") not in (
            None, tokenizer.unk_token_id):
        return "<|im_end|>"
    return tokenizer.eos_token or ""


def prompt_text(tokenizer, prompt: str) -> str:
    if tokenizer.chat_template:
        return tokenizer.apply_chat_template([{"role": "user", "content": prompt}],
                                             tokenize=False, add_generation_prompt=True)
    return FALLBACK_PROMPT.format(prompt=prompt)


def encode_document(tokenizer, prompt: str, response: str, *, is_text: bool = False,
                    max_length: int) -> EncodedDoc:
    """Tokens of one document, cut to `max_length` (prompt cut from the left, at most
    half the window, then the response from the right); at least one scored token."""
    return encode_documents(tokenizer, [prompt], [response], [is_text], max_length=max_length)[0]


def encode_documents(tokenizer, prompts: Sequence[str], responses: Sequence[str],
                     is_text: Sequence[bool], *, max_length: int) -> list[EncodedDoc]:
    """`encode_document` of many documents, with one tokenizer call for all the prompts and one
    for all the responses (a fast tokenizer's per-call overhead was a third of tokenizing a
    featurizer shard); the same tokens as one call per document."""
    if max_length < 2:
        raise ValueError(f"max_length must be >= 2, got {max_length}")
    chat = [i for i, text in enumerate(is_text) if not text]
    end = _end_of_turn(tokenizer) if chat else ""
    texts = [response if text else response + end for response, text in zip(responses, is_text)]
    r_all = _token_ids(tokenizer, texts)
    p_all = _token_ids(tokenizer, [prompt_text(tokenizer, prompts[i]) for i in chat])
    p_of = dict(zip(chat, p_all))
    return [_cut_chat(tokenizer, p_of[i], r_ids, max_length) if i in p_of
            else _cut_text(tokenizer, r_ids, max_length) for i, r_ids in enumerate(r_all)]


def _token_ids(tokenizer, texts: list[str]) -> list[list[int]]:
    return tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []


def _cut_text(tokenizer, ids: list[int], max_length: int) -> EncodedDoc:
    if not ids:
        ids = [tokenizer.eos_token_id]
    if len(ids) == 1:
        ids = [tokenizer.eos_token_id, *ids]
    return EncodedDoc(ids[:max_length], 1, len(ids) > max_length)


def _cut_chat(tokenizer, p_ids: list[int], r_ids: list[int], max_length: int) -> EncodedDoc:
    if not r_ids:
        r_ids = [tokenizer.eos_token_id]
    truncated = False
    if len(p_ids) + len(r_ids) > max_length:
        truncated = True
        keep_prompt = min(len(p_ids), max(1, max_length // 2), max_length - 1)
        p_ids = p_ids[len(p_ids) - keep_prompt:]
        r_ids = r_ids[: max_length - len(p_ids)]
    if not p_ids:
        p_ids = [tokenizer.eos_token_id]
        r_ids = r_ids[: max_length - 1]
    return EncodedDoc(p_ids + r_ids, len(p_ids), truncated)
