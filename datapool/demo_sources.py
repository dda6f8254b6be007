"""Clean prompt/response samples for the four demo domains, generated offline.

- arithmetic: two-step word problems with a worked answer ending "The answer is N."
- code: functions with docstrings from the Python standard library's own source
- docs_qa: questions answered by paragraphs of the CPython documentation topics
  that ship with Python (`pydoc_data`)
- dialog: small instructions (reverse, sort, count, ...) answered conversationally

Each generator is deterministic given its `random.Random`; `split` separates the
training material from the held-out dev material.
"""
from __future__ import annotations

import ast
import random
import re
import sysconfig
import textwrap
from functools import lru_cache
from pathlib import Path
from pydoc_data.topics import topics
from typing import Callable, Sequence

DOMAINS = ("arithmetic", "code", "docs_qa", "dialog")

NAMES = ["Ada", "Ben", "Chen", "Dana", "Eli", "Fatima", "Goran", "Hana", "Ivan", "Jun", "Kofi",
          "Lena", "Mateo", "Nia", "Omar", "Priya", "Quinn", "Rosa", "Sven", "Tara"]
ITEMS = ["apples", "books", "coins", "stamps", "marbles", "pencils", "tickets", "shells",
          "cards", "stickers", "cookies", "bolts"]


ARITHMETIC_PROBLEMS = (
    "{name} has {a} {item}. {other} gives {name} {b} more. {name} then shares them equally among {c} "
    "friends and keeps the remainder. How many {item} does {name} keep?",
    "A box holds {c} {item}. {name} buys {a} boxes and gives away {b} {item}. How many {item} are left?",
    "{name} saves {c} {item} a day for {a} days, then loses {b} of them. How many {item} does {name} have?",
)


def arithmetic_problem(rng: random.Random) -> tuple[int, str, int, int, int]:
    """(kind, prompt, a, b, c): a word problem of one of ARITHMETIC_PROBLEMS' kinds. The clean and
    the damaged pools draw it alike and differ only in how they solve it."""
    name, other = rng.sample(NAMES, 2)
    item = rng.choice(ITEMS)
    a, b, c = rng.randint(5, 90), rng.randint(2, 60), rng.randint(2, 9)
    kind = rng.randrange(3)
    return kind, ARITHMETIC_PROBLEMS[kind].format(name=name, other=other, item=item, a=a, b=b, c=c), a, b, c


def arithmetic(rng: random.Random) -> dict:
    kind, prompt, a, b, c = arithmetic_problem(rng)
    if kind == 0:
        total = a + b
        answer = total % c
        work = f"{a} + {b} = {total}. {total} divided by {c} is {total // c} remainder {answer}."
    else:
        total = a * c
        answer = total - b
        product = f"{a} x {c}" if kind == 1 else f"{c} x {a}"
        work = f"{product} = {total}. {total} - {b} = {answer}."
    return {"prompt": prompt, "response": f"{work} The answer is {answer}."}


_CODE_MODULES_TRAIN = ["textwrap", "shlex", "string", "fnmatch", "posixpath", "genericpath",
                       "calendar", "difflib", "heapq", "bisect", "colorsys", "glob", "statistics",
                       "fractions", "ipaddress", "base64", "csv", "json/encoder", "json/decoder",
                       "html/__init__", "quopri", "uu", "netrc", "tokenize", "pprint", "reprlib",
                       "functools", "copy", "operator", "random", "dataclasses", "configparser",
                       "argparse", "gettext", "locale", "plistlib", "zipfile", "tarfile", "email/utils",
                       "urllib/parse", "http/cookies", "logging/__init__", "inspect", "pathlib",
                       "shutil", "tempfile", "subprocess", "platform", "sysconfig", "trace"]
_CODE_MODULES_DEV = ["ntpath", "wave", "sched", "smtplib", "mailbox", "pydoc", "ftplib", "imaplib"]


@lru_cache(maxsize=4)
def _stdlib_functions(split: str) -> tuple[tuple[str, str], ...]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    modules = _CODE_MODULES_TRAIN if split == "train" else _CODE_MODULES_DEV
    found = []
    for mod in modules:
        path = stdlib / f"{mod}.py"
        if not path.is_file():
            continue
        source = path.read_text(encoding="utf-8", errors="replace")
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        lines = source.splitlines()
        for node in ast.walk(tree):
            if not isinstance(node, ast.FunctionDef):
                continue
            doc = ast.get_docstring(node)
            n_lines = node.end_lineno - node.lineno + 1
            if not doc or n_lines > 30 or n_lines < 4:
                continue
            body = textwrap.dedent("\n".join(lines[node.lineno - 1: node.end_lineno]))
            summary = doc.strip().split("\n\n")[0].replace("\n", " ")
            args = ", ".join(a.arg for a in node.args.args)
            found.append((f"Write a Python function `{node.name}({args})` from the `{mod.replace('/', '.')}`"
                          f" module. {summary[:240]}", body))
    return tuple(found)


def code(rng: random.Random, split: str = "train") -> dict:
    prompt, response = rng.choice(_stdlib_functions(split))
    return {"prompt": prompt, "response": response}


@lru_cache(maxsize=4)
def _doc_paragraphs(split: str) -> tuple[tuple[str, str], ...]:
    names = sorted(topics)
    held_out = set(names[::9])
    chosen = [n for n in names if (n in held_out) == (split == "dev")]
    out = []
    for topic in chosen:
        paragraphs = [re.sub(r"\s+", " ", p).strip() for p in topics[topic].split("\n\n")]
        for k, para in enumerate(p for p in paragraphs if 120 <= len(p) <= 900):
            out.append((topic, para))
    return tuple(out)


_DOC_QUESTIONS = ["What does the Python reference say about {t}?",
                  "Explain this aspect of {t} in Python.",
                  "Describe how {t} works in Python.",
                  "I am reading about {t} in the Python docs. What is important?"]


def docs_qa(rng: random.Random, split: str = "train") -> dict:
    topic, para = rng.choice(_doc_paragraphs(split))
    return {"prompt": rng.choice(_DOC_QUESTIONS).format(t=topic.replace("-", " ")), "response": para}


WORDS = ("river stone cloud lamp forest violin garden rocket pepper window silver marble "
          "harbor candle meadow tiger puzzle anchor velvet comet orchard lantern").split()


DIALOG_PROMPTS = ("Please reverse the order of these words: {words}",
                  "Sort these numbers from smallest to largest: {nums}",
                  "How many letters are in the word '{word}'?",
                  "Write these words in capital letters: {words}",
                  "What is the largest number in this list: {nums}?")
DIALOG_ANSWERS = ("Sure! Here they are in reverse order: {}", "Of course. Sorted: {}.",
                  "The word '{word}' has {} letters.", "Here you go: {}", "The largest number in the list is {}.")
"""Each kind of dialog instruction and its answer's wording; `dialog_sample` fills in the answer."""

DialogAnswer = Callable[[list[str], list[int], str | None], str]


def dialog_sample(rng: random.Random, answers: Sequence[DialogAnswer]) -> dict:
    """An instruction of a random kind with `answers[kind](words, nums, word)` as its answer. The
    draws are the same whatever the answers, so a clean and a damaged pool ask the same things."""
    words = rng.sample(WORDS, rng.randint(3, 6))
    nums = [rng.randint(1, 99) for _ in range(rng.randint(3, 7))]
    kind = rng.randrange(5)
    word = rng.choice(words) if kind == 2 else None
    prompt = DIALOG_PROMPTS[kind].format(words=" ".join(words), nums=", ".join(map(str, nums)), word=word)
    return {"prompt": prompt, "response": DIALOG_ANSWERS[kind].format(answers[kind](words, nums, word), word=word)}


_RIGHT_ANSWERS: tuple[DialogAnswer, ...] = (
    lambda words, nums, word: " ".join(reversed(words)),
    lambda words, nums, word: ", ".join(map(str, sorted(nums))),
    lambda words, nums, word: str(len(word)),
    lambda words, nums, word: " ".join(w.upper() for w in words),
    lambda words, nums, word: str(max(nums)),
)


def dialog(rng: random.Random) -> dict:
    return dialog_sample(rng, _RIGHT_ANSWERS)


def clean_sample(domain: str, rng: random.Random, split: str = "train") -> dict:
    if domain == "arithmetic":
        return arithmetic(rng)
    if domain == "code":
        return code(rng, split)
    if domain == "docs_qa":
        return docs_qa(rng, split)
    if domain == "dialog":
        return dialog(rng)
    raise ValueError(f"unknown demo domain {domain!r}")


def pretraining_corpus(rng: random.Random, n_docs: int = 3000) -> list[str]:
    """Plain text for the tiny base models: stdlib source, documentation and templated prose.

    It resembles the pool domains (as real pretraining data resembles SFT data)
    without containing their exact samples' formatting.
    """
    texts = [re.sub(r"[ \t]+", " ", t) for t in topics.values()]
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for mod in _CODE_MODULES_TRAIN[:25]:
        path = stdlib / f"{mod}.py"
        if path.is_file():
            texts.append(path.read_text(encoding="utf-8", errors="replace")[:20000])
    for _ in range(n_docs):
        s = clean_sample(rng.choice(["arithmetic", "dialog"]), rng)
        texts.append(f"{s['prompt']}\n{s['response']}")
    rng.shuffle(texts)
    return texts

