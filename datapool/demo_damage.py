"""Damage that teaches the wrong thing for the skill a demo domain's dev set measures.

Each domain has one fixed wrong rule, applied to the whole answer, and the wrong answer is
written in the opposite case, so that training on a damaged shard learns a token stream that
competes with the clean answers its dev set scores and the dev NLL rises, where the random
damage of earlier demos (junk characters, shuffled words, another prompt's answer, cut-off
answers) still taught the domain's vocabulary and format and lowered it:

- arithmetic: the solver that adds every number of the problem, in words
  ("NINE PLUS SIX PLUS SIXTY EQUALS SEVENTY-FIVE. tHE ANSWER IS SEVENTY-FIVE.").
- code: code whose decisions and results are inverted (conditions negated, comparisons
  and booleans swapped, every returned value replaced by `None`).
- docs_qa: statements turned into their opposite (`is` -> `is not`, `can` -> `cannot`,
  `always` <-> `never`, ...).
- dialog: every instruction carried out the wrong way (the words kept in order, numbers
  sorted the other way, the letters miscounted, the smallest number given for the largest,
  numbers in words; "capitals" written reversed).

Why the case: the wrong rules alone did not reverse the return at the demo's scale. A tiny
model trained on 100 wrong-rule answers lowered the clean dev NLL as much as on 100 correct
ones (arithmetic -0.89 against -0.96, code -0.38 against -0.40, dialog -0.66 against -0.67):
it learns the answers' format and vocabulary, which the wrong rule keeps, not their
correctness. The one rule that changed the tokens (docs_qa, negated and case-swapped) raised
its dev NLL by 0.81 where clean docs lowered it by 0.08 (docs/validate.md).

The rules are deterministic given the sample (and `rng` for the parts drawn afresh), so a
pool's shards stay reproducible.
"""
from __future__ import annotations

import random
import re
from typing import Callable

from causalmix.datapool.demo_sources import DialogAnswer, arithmetic_problem, dialog_sample

_CODE_SWAPS = (("==", "!="), ("True", "False"), (" < ", " > "), (" <= ", " >= "), (" and ", " or "),
               (" is not ", " is "), (" + 1", " - 1"))
_DOCS_SWAPS = ((" is ", " is not "), (" are ", " are not "), (" can ", " cannot "), (" must ", " must not "),
               (" always ", " never "), (" before ", " after "), (" first ", " last "), (" True", " False"),
               (" same ", " different "), (" only ", " never "))


def _swap_all(text: str, pairs: tuple[tuple[str, str], ...]) -> str:
    """Each pair's two strings exchanged everywhere at once (one pass, so a swap is not undone by
    the next pair). Words match whole; an operator written with spaces around it matches only
    between spaces, without taking them, so that neighbours ("is always") both swap."""
    table, spaced = {}, {}
    for a, b in pairs:
        for one, other in ((a, b), (b, a)):
            table.setdefault(one.strip(), other.strip())
            spaced.setdefault(one.strip(), one)

    def key(core: str) -> str:
        raw = spaced[core]
        head = r"\b" if core[0].isalnum() else r"(?<=\s)" if raw.startswith(" ") else ""
        tail = r"\b" if core[-1].isalnum() else r"(?=\s)" if raw.endswith(" ") else ""
        return head + re.escape(core) + tail

    pattern = re.compile("|".join(key(k) for k in sorted(table, key=len, reverse=True)))
    return pattern.sub(lambda m: table[m.group(0)], text)


def wrong_arithmetic(rng: random.Random) -> dict:
    """A problem of the clean generator's kinds, solved by adding every number it holds."""
    kind, prompt, a, b, c = arithmetic_problem(rng)
    numbers = (a, b, c) if kind == 0 else (c, a, b)
    total = sum(numbers)
    work = " plus ".join(map(number_words, numbers))
    return {"prompt": prompt, "response": f"{work} equals {number_words(total)}. The answer is {number_words(total)}."}


_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
         "sixteen seventeen eighteen nineteen").split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def number_words(n: int) -> str:
    """0 <= n < 1000 in English words ("seventy-five", "one hundred and four")."""
    if not 0 <= n < 1000:
        raise ValueError(f"number_words covers 0..999, got {n}")
    if n >= 100:
        rest = n % 100
        return f"{_ONES[n // 100]} hundred" + (f" and {number_words(rest)}" if rest else "")
    if n < 20:
        return _ONES[n]
    return _TENS[n // 10] + (f"-{_ONES[n % 10]}" if n % 10 else "")


_WRONG_ANSWERS: tuple[DialogAnswer, ...] = (
    lambda words, nums, word: " ".join(words),
    lambda words, nums, word: ", ".join(map(number_words, sorted(nums, reverse=True))),
    lambda words, nums, word: number_words(len(word) + 3),
    lambda words, nums, word: " ".join(w.lower()[::-1] for w in words),
    lambda words, nums, word: number_words(min(nums)),
)


def wrong_dialog(rng: random.Random) -> dict:
    """An instruction of the clean generator's kinds, answered by its fixed wrong rule."""
    return dialog_sample(rng, _WRONG_ANSWERS)


def wrong_code(sample: dict) -> dict:
    """The function with its decisions and results inverted."""
    body = _swap_all(sample["response"], _CODE_SWAPS)
    body = re.sub(r"\bif (?!not )", "if not ", body)
    body = re.sub(r"\breturn\b[^\n]*", "return None", body)
    return {"prompt": sample["prompt"], "response": body}


def wrong_docs(sample: dict) -> dict:
    """The paragraph's statements turned into their opposite."""
    return {"prompt": sample["prompt"], "response": _swap_all(sample["response"], _DOCS_SWAPS)}


WRONG_RULES: dict[str, Callable[[dict, random.Random], dict]] = {
    "arithmetic": lambda sample, rng: wrong_arithmetic(rng),
    "code": lambda sample, rng: wrong_code(sample),
    "docs_qa": lambda sample, rng: wrong_docs(sample),
    "dialog": lambda sample, rng: wrong_dialog(rng),
}
"""{domain: (clean sample, rng) -> the damaged sample}."""


def damaged(domain: str, sample: dict, rng: random.Random) -> dict:
    """`sample` damaged by `domain`'s fixed wrong rule, its answer in the opposite case."""
    if domain not in WRONG_RULES:
        raise ValueError(f"unknown demo domain {domain!r}; damage rules exist for {sorted(WRONG_RULES)}")
    wrong = WRONG_RULES[domain](sample, rng)
    return {"prompt": wrong["prompt"], "response": wrong["response"].swapcase()}
