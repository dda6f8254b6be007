"""Model-free writing-style statistics of a document's scored text (its response;
the whole text for plain-text rows), and `writing_style`, their scalar summary.

Columns (`style.` + name), all finite for any string, the empty one included:
- `chars`: characters (Unicode code points).
- `words`: whitespace-separated words.
- `mean_word_len`: letters and digits per word (the ARI's "characters").
- `mean_sentence_len`: words per sentence; a sentence ends at a run of
  `.`, `!`, `?`, `…`, `。`, `！`, `？` followed by whitespace or the end; text
  with words but no such end is one sentence.
- `type_token_ratio`: distinct case-folded words / words.
- `punct_rate`: characters of Unicode category P* that are not code symbols, / chars.
- `digit_rate`: decimal digits (category Nd) / chars.
- `code_symbol_rate`: characters of ``{}[]()<>=;_#$\\|&*+/^~`@%`` / chars.
- `newline_rate`: newlines / chars.
Rates of the empty string, and word-based means of text without words, are 0.

`writing_style` is the Automated Readability Index (Senter & Smith, 1967) of the
text: 4.71 x mean_word_len + 0.5 x mean_sentence_len - 21.43, a fixed formula
(no pool-dependent scaling) so that values compare across pools. Text without
words gets -21.43, the formula at zero.
"""
from __future__ import annotations

import re
import unicodedata
from collections import Counter

CODE_SYMBOLS = frozenset("{}[]()<>=;_#$\\|&*+/^~`@%")
STYLE_NAMES = ("chars", "words", "mean_word_len", "mean_sentence_len", "type_token_ratio",
               "punct_rate", "digit_rate", "code_symbol_rate", "newline_rate")
STYLE_COLUMNS = tuple(f"style.{name}" for name in STYLE_NAMES)
ARI_WORD, ARI_SENTENCE, ARI_OFFSET = 4.71, 0.5, -21.43

_SENTENCE_END = re.compile(r"[.!?…。！？]+(?=\s|$)")


def style_stats(text: str) -> dict[str, float]:
    """The `style.*` statistics of `text` (keys without the `style.` prefix)."""
    n_chars = len(text)
    words = text.split()
    n_words = len(words)
    alnum = punct = digits = code = 0
    # one category lookup per distinct character, not per character: a third of the CPU time
    for ch, count in Counter(text).items():
        category = unicodedata.category(ch)
        if ch in CODE_SYMBOLS:
            code += count
        elif category[0] == "P":
            punct += count
        if category == "Nd":
            digits += count
        if category[0] in "LN":
            alnum += count
    sentences = max(len(_SENTENCE_END.findall(text)), 1) if n_words else 0
    rate = (lambda count: count / n_chars) if n_chars else (lambda count: 0.0)
    return {
        "chars": float(n_chars),
        "words": float(n_words),
        "mean_word_len": alnum / n_words if n_words else 0.0,
        "mean_sentence_len": n_words / sentences if n_words else 0.0,
        "type_token_ratio": len({w.casefold() for w in words}) / n_words if n_words else 0.0,
        "punct_rate": rate(punct),
        "digit_rate": rate(digits),
        "code_symbol_rate": rate(code),
        "newline_rate": rate(text.count("\n")),
    }


def writing_style(stats: dict[str, float]) -> float:
    """The Automated Readability Index from `style_stats` output."""
    return ARI_WORD * stats["mean_word_len"] + ARI_SENTENCE * stats["mean_sentence_len"] + ARI_OFFSET


def style_row(text: str) -> dict[str, float]:
    """`style.*` columns and `writing_style` of one document."""
    stats = style_stats(text)
    row = {f"style.{k}": v for k, v in stats.items()}
    row["writing_style"] = writing_style(stats)
    return row
