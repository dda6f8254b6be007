"""A local lm-evaluation-harness task folder for the tests: one log-likelihood multiple-choice
task and one `generate_until` task with exact match, both over one small JSONL (no download)."""
from __future__ import annotations

import json
from pathlib import Path

# both tasks read the same documents (arith.jsonl beside the YAML)
ARITH_DATA = """\
dataset_path: json
dataset_kwargs:
  data_files: {test: arith.jsonl}
test_split: test
"""

MC_YAML = "task: arith_mc\n" + ARITH_DATA + """\
output_type: multiple_choice
doc_to_text: "{{question}}"
doc_to_choice: "{{choices}}"
doc_to_target: "{{label}}"
metric_list:
  - {metric: acc, aggregation: mean, higher_is_better: true}
"""

GEN_YAML = "task: arith_gen\n" + ARITH_DATA + """\
output_type: generate_until
doc_to_text: "{{question}}"
doc_to_target: "{{answer}}"
generation_kwargs: {until: ["\\n"], max_gen_toks: 8, do_sample: false}
metric_list:
  - {metric: exact_match, aggregation: mean, higher_is_better: true, ignore_case: true}
"""


def arithmetic_rows(n: int = 12) -> list[dict]:
    rows = []
    for i in range(n):
        a, b = 2 + i % 7, 3 + (i * 5) % 11
        right = a + b
        choices = [str(right), str(right + 1 + i % 3), str(max(0, right - 2))]
        label = i % 3
        choices[0], choices[label] = choices[label], choices[0]
        rows.append({"question": f"What is {a} plus {b}? The answer is", "choices": choices,
                     "label": label, "answer": f" {right}"})
    return rows


def write_harness_tasks(folder: Path, n: int = 12) -> Path:
    """`folder/arith.jsonl`, `folder/arith_mc.yaml`, `folder/arith_gen.yaml`; returns folder."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "arith.jsonl", "w", encoding="utf-8") as fh:
        for row in arithmetic_rows(n):
            fh.write(json.dumps(row) + "\n")
    (folder / "arith_mc.yaml").write_text(MC_YAML, encoding="utf-8")
    (folder / "arith_gen.yaml").write_text(GEN_YAML, encoding="utf-8")
    return folder
