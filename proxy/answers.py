"""Answer extraction and normalisation for exact-match dev sets (no torch: `pool build` uses it).

An exact-match dev set names how the final answer is found in a text (the reference response
and the model's generation alike), with the manifest field `answer`:

- `the_answer_is`: the number after the last "The answer is" (the demo's arithmetic domain);
- `gsm8k`: the number after the last `#### ` (GSM8K's reference format);
- `auto` (the default): whichever of the two appears last in the text;
- `{regex: PATTERN}`: the last match of PATTERN; its group `answer`, or else its first group,
  or else the whole match, is the answer (a group that took no part in the
  match is skipped).

Answers are compared after `normalize_answer`: numbers lose thousands separators, a leading `+`
or `$`, a trailing `.` and trailing zeros after the decimal point (`1,204.0` == `1204`,
`-0` == `0`); anything else is compared stripped, with runs of whitespace collapsed and case
folded. A text without an answer never matches, not even another text without one.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

NUMBER = r"[-+]?\$?\s*[-+]?[\d,]*\.?\d+"
BUILTIN_PATTERNS = {
    "the_answer_is": r"The answer is\s*(?P<answer>" + NUMBER + ")",
    "gsm8k": r"####\s*(?P<answer>" + NUMBER + ")",
}
BUILTIN_PATTERNS["auto"] = "|".join(f"(?:{p.replace('?P<answer>', '?P<answer' + str(i) + '>')})"
                                    for i, p in enumerate(BUILTIN_PATTERNS.values()))
_NUMERIC = re.compile(r"^[-+]?\$?\s*[-+]?[\d,]*\.?\d+\.?$")


@dataclass(frozen=True)
class AnswerPattern:
    """How the final answer of a text is found (see the module docstring)."""

    name: str = "auto"
    """A built-in pattern (`auto`, `the_answer_is`, `gsm8k`) or `regex` for `regex` below."""
    regex: str | None = None
    """The user's pattern when `name` is `regex`; its group `answer`, first group or whole match."""

    def __post_init__(self):
        if self.name == "regex":
            if not isinstance(self.regex, str) or not self.regex:
                raise ValueError("answer.regex: expected a non-empty pattern")
            try:
                re.compile(self.regex)
            except re.error as exc:
                raise ValueError(f"answer.regex {self.regex!r} is not a valid regular expression: {exc}") from None
        elif self.name not in BUILTIN_PATTERNS:
            raise ValueError(f"answer {self.name!r} is not one of {sorted(BUILTIN_PATTERNS)} "
                             "or a mapping {regex: PATTERN}")
        elif self.regex is not None:
            raise ValueError(f"answer {self.name!r} is built in; give regex only with name 'regex'")

    @classmethod
    def parse(cls, raw) -> "AnswerPattern":
        """From a manifest value: a built-in name, or `{regex: PATTERN}`. Raises ValueError."""
        if raw is None:
            return cls()
        if isinstance(raw, str):
            return cls(name=raw)
        if isinstance(raw, dict) and set(raw) == {"regex"}:
            return cls(name="regex", regex=raw["regex"])
        raise ValueError(f"answer: expected one of {sorted(BUILTIN_PATTERNS)} or {{regex: PATTERN}}, "
                         f"got {raw!r}")

    def to_json(self):
        return self.name if self.name != "regex" else {"regex": self.regex}

    @property
    def compiled(self) -> re.Pattern:
        return re.compile(self.regex if self.name == "regex" else BUILTIN_PATTERNS[self.name])

    def extract(self, text: str) -> str | None:
        """The normalised answer of the last match in `text`, or None when nothing matches."""
        last = None
        for last in self.compiled.finditer(text):
            pass
        if last is None:
            return None
        named = {k: v for k, v in last.groupdict().items() if k.startswith("answer") and v is not None}
        if named:
            value = next(iter(named.values()))
        else:  # the first group that took part in the match, else the whole match
            value = next((g for g in last.groups() if g is not None), last.group(0))
        value = normalize_answer(value)
        return value or None


def normalize_answer(value: str) -> str:
    """Numbers canonical (`1,204.0` -> `1204`, `$5.50` -> `5.5`), other text stripped,
    whitespace collapsed and case folded."""
    text = " ".join(str(value).split())
    if _NUMERIC.match(text):
        sign = "-" if text.count("-") % 2 else ""
        digits = re.sub(r"[^\d.]", "", text).rstrip(".")
        try:
            number = Decimal(sign + digits)
        except InvalidOperation:
            return text.casefold()
        if number == number.to_integral_value():
            return str(int(number))
        return format(number.normalize(), "f")
    return text.casefold()
