"""Model-free style statistics and the writing_style scalar."""
from __future__ import annotations

import math

import pytest

from causalmix.features.style import STYLE_COLUMNS, style_row, style_stats, writing_style


def test_stats_of_a_hand_counted_text():
    text = "Hello world. Hello again!\nx = f(2);"
    s = style_stats(text)
    assert s["chars"] == len(text) == 35
    assert s["words"] == 7  # Hello world. Hello again! x = f(2);
    assert s["mean_word_len"] == pytest.approx((5 + 5 + 5 + 5 + 1 + 0 + 2) / 7)
    assert s["mean_sentence_len"] == pytest.approx(7 / 2)  # "world." and "again!" end sentences
    assert s["type_token_ratio"] == pytest.approx(6 / 7)  # "Hello" twice
    assert s["punct_rate"] == pytest.approx(2 / 35)  # . and !
    assert s["code_symbol_rate"] == pytest.approx(4 / 35)  # = ( ) ;
    assert s["digit_rate"] == pytest.approx(1 / 35)
    assert s["newline_rate"] == pytest.approx(1 / 35)


def test_writing_style_is_the_automated_readability_index():
    s = style_stats("The cat sat on the mat. It was warm.")
    letters, words, sentences = 26, 9, 2
    assert writing_style(s) == pytest.approx(4.71 * letters / words + 0.5 * words / sentences - 21.43)


@pytest.mark.parametrize("text", ["", " \n\t ", "!!!", "日本語のテキスト。", "👩‍👩‍👧✨", "\u0000\u200b",
                                  "e\u0301\u0301", "١٢٣ ٤٥٦", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢"])
def test_every_text_gives_finite_columns(text):
    row = style_row(text)
    assert list(row) == [*STYLE_COLUMNS, "writing_style"]
    assert all(math.isfinite(v) for v in row.values())


def test_empty_text_has_zero_rates_and_the_ari_offset():
    row = style_row("")
    assert all(row[c] == 0.0 for c in STYLE_COLUMNS)
    assert row["writing_style"] == pytest.approx(-21.43)


def test_unicode_digits_and_punctuation_count():
    s = style_stats("١٢٣。")
    assert s["digit_rate"] == pytest.approx(3 / 4)
    assert s["punct_rate"] == pytest.approx(1 / 4)
