"""Tiny offline models load through from_pretrained and tokenise documents as documented."""
from __future__ import annotations

import pytest
import torch

from causalmix.core.errors import UserError
from causalmix.lm.formatting import encode_document
from causalmix.lm.loading import load_causal_lm, load_tokenizer


def test_round_trip_same_logits(tiny_env, tmp_path):
    model = load_causal_lm(str(tiny_env.proxy_model), device="cpu")
    assert type(model).__name__ == "Qwen2ForCausalLM"
    assert model.config.hidden_size <= 128
    ids = torch.tensor([[5, 17, 42, 99, 3]])
    with torch.no_grad():
        before = model(input_ids=ids).logits
    model.save_pretrained(tmp_path / "again")
    again = load_causal_lm(str(tmp_path / "again"), device="cpu")
    with torch.no_grad():
        after = again(input_ids=ids).logits
    torch.testing.assert_close(before, after)


def test_target_is_larger_than_proxy(tiny_env):
    proxy = load_causal_lm(str(tiny_env.proxy_model), device="cpu")
    target = load_causal_lm(str(tiny_env.target_model), device="cpu")
    assert target.num_parameters() > proxy.num_parameters()
    assert load_tokenizer(str(tiny_env.proxy_model)).get_vocab() == load_tokenizer(str(tiny_env.target_model)).get_vocab()


def test_encode_document_separates_prompt_and_response(tiny_env):
    tok = load_tokenizer(str(tiny_env.proxy_model))
    assert tok.chat_template
    doc = encode_document(tok, "What is 2+2?", "It is 4.", max_length=128)
    text = tok.decode(doc.input_ids[doc.response_start:])
    assert text == "It is 4.<|im_end|>"
    assert "What is 2+2?" in tok.decode(doc.input_ids[: doc.response_start])
    assert not doc.truncated


def test_encode_document_edge_cases(tiny_env):
    tok = load_tokenizer(str(tiny_env.proxy_model))
    empty = encode_document(tok, "Q", "", max_length=64)
    assert empty.n_response_tokens >= 1
    long = encode_document(tok, "p " * 200, "r " * 500, max_length=64)
    assert long.truncated and len(long.input_ids) == 64 and long.response_start <= 32
    text = encode_document(tok, "", "plain text here", is_text=True, max_length=64)
    assert text.response_start == 1 and text.n_response_tokens == len(text.input_ids) - 1
    one = encode_document(tok, "", "", is_text=True, max_length=64)
    assert one.n_response_tokens == 1


def test_bad_model_path_is_a_user_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no config.json"):
        load_causal_lm(str(tmp_path / "empty"), device="cpu")
