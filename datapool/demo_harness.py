"""The demo's lm-evaluation-harness task: its arithmetic dev problems as a local log-likelihood
multiple-choice task (`arith_choice`), so the demo runs a dev task through the harness end to end
(proxy runs and validation alike) without any download.

Each problem's choices are four final statements, "The answer is N.", with the right N and three
near misses (N + 1, N - 1, N + 10, kept non-negative and distinct); the model scores each as the
assistant turn after the problem (`apply_chat_template`), and `acc` is the share of problems
whose right statement it finds most likely. Written next to the pool's sources by
`datapool.demo.write_demo_pool`.
"""
from __future__ import annotations

import json
import random
from pathlib import Path

from causalmix.proxy.answers import AnswerPattern

TASK = "arith_choice"
TASK_YAML = f"""\
task: {TASK}
dataset_path: json
dataset_kwargs:
  data_files: {{test: {TASK}.jsonl}}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{question}}}}"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: "{{{{label}}}}"
target_delimiter: ""
metric_list:
  - {{metric: acc, aggregation: mean, higher_is_better: true}}
"""
HARNESS_ENTRY = {"lm_eval": {"tasks": [f"sources/harness/{TASK}.yaml"], "limit": 16, "num_fewshot": 0,
                             "batch_size": 16, "apply_chat_template": True}}
"""The manifest's `dev` entry (paths relative to the demo pool's folder)."""


def choice_rows(dev_rows: list[dict], seed: int) -> list[dict]:
    rng = random.Random(f"{seed}-{TASK}")
    pattern = AnswerPattern("the_answer_is")
    rows = []
    for row in dev_rows:
        right = int(pattern.extract(row["response"]))
        options = [right]
        for near in (right + 1, right - 1, right + 10, right + 2, right + 20):
            if near >= 0 and near not in options and len(options) < 4:
                options.append(near)
        rng.shuffle(options)
        rows.append({"question": row["prompt"], "choices": [f"The answer is {n}." for n in options],
                     "label": options.index(right)})
    return rows


def write_harness_task(folder: Path, dev_rows: list[dict], seed: int) -> None:
    """`folder/arith_choice.yaml` and `folder/arith_choice.jsonl` from the arithmetic dev rows."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"{TASK}.jsonl", "w", encoding="utf-8") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in choice_rows(dev_rows, seed))
    (folder / f"{TASK}.yaml").write_text(TASK_YAML, encoding="utf-8")
