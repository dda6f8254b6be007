"""Evaluation cost of a trial: lm-evaluation-harness against the native dev suite, same tasks.

Same run: one model (the proxy, loaded once) and the same dev documents of every dev set of a
demo pool, evaluated twice. Native: `proxy.evaluate.dev_suite` (packed-row NLL; batched greedy
generation for exact match). Harness: the same rows written as local harness tasks, an NLL set as
a `loglikelihood` task (context = the chat-formatted prompt, continuation = the response) and the
exact-match set as a `generate_until` task with the same stop token, token budget and answer regex,
run through `proxy.harness.harness_metrics` (`lm_eval.simple_evaluate` on the in-memory model).
Each side is timed after one warm-up pass, then `--repeats` times, alternating native and harness
so that load from other processes hits both alike; the minimum of each is reported (on a shared
machine the minimum is the least disturbed measurement), with the median. The harness time
includes its task building.

    python benchmarks/bench_eval.py                       # builds a small demo pool and tiny models
    python benchmarks/bench_eval.py --workdir causalmix-demo --dev-limit 64

Ends with `RESULT eval native_s=... harness_s=... ratio=...` (harness / native).
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

# what every task of this benchmark shares: its documents in {name}.jsonl beside the YAML
TASK_HEADER = """\
task: {name}
dataset_path: json
dataset_kwargs: {{data_files: {{test: {name}.jsonl}}}}
test_split: test
"""

GEN_TASK = TASK_HEADER + """\
output_type: generate_until
doc_to_text: "{{{{context}}}}"
doc_to_target: "{{{{answer}}}}"
target_delimiter: ""
generation_kwargs: {{until: ["<|im_end|>"], max_gen_toks: {max_new}, do_sample: false}}
filter_list:
  - name: answer
    filter:
      - {{function: regex, regex_pattern: "The answer is\\\\s*(-?[\\\\d,]*\\\\.?\\\\d+)"}}
      - {{function: take_first}}
metric_list:
  - {{metric: exact_match, aggregation: mean, higher_is_better: true, ignore_punctuation: true}}
"""

LL_TASK = TASK_HEADER + """\
output_type: loglikelihood
doc_to_text: "{{{{context}}}}"
doc_to_target: "{{{{response}}}}"
target_delimiter: ""
metric_list:
  # mean log-likelihood of the response per document (the harness's perplexity aggregation,
  # exp(-mean), overflows on a tiny model's documents); the cost is the same forward passes
  - {{metric: perplexity, aggregation: mean, higher_is_better: true}}
"""


def _small_demo(root: Path) -> tuple[Path, Path]:
    from causalmix.datapool.demo import DemoPoolSpec, demo_texts_for_tokenizer, write_demo_pool
    from causalmix.datapool.demo_sources import pretraining_corpus
    from causalmix.lm.tiny import TinyModelSpec, build_model_family

    spec = DemoPoolSpec(small_shards=2, small_docs_per_shard=40, large_shards=2, large_docs_per_shard=40,
                        dev_docs=32)
    write_demo_pool(root / "pools", "demo-small", spec)
    build_model_family(root / "models", demo_texts_for_tokenizer(root / "pools" / "demo-small"),
                       pretraining_corpus(random.Random(0), n_docs=300), vocab_size=512, seed=0,
                       proxy_spec=TinyModelSpec(pretrain_steps=20, pretrain_batch=8),
                       target_spec=TinyModelSpec(pretrain_steps=1, pretrain_batch=2))
    return root / "pools" / "demo-small", root / "models" / "proxy"


def write_tasks(dev_tasks: dict, tokenizer, folder: Path, limit: int, max_new: int) -> None:
    """The native dev sets as harness tasks over the same rows (context formatted the same way)."""
    from causalmix.lm.formatting import encode_document, prompt_text

    folder.mkdir(parents=True, exist_ok=True)
    for name, task in dev_tasks.items():
        frame = task.frame.iloc[:limit]
        rows = []
        for r in frame.itertuples():
            if task.kind == "exact_match":
                rows.append({"context": prompt_text(tokenizer, r.prompt),
                             "answer": task.answer.extract(r.response) or ""})
            else:  # the exact scored tokens of the native NLL, decoded: context | response
                doc = encode_document(tokenizer, r.prompt, r.response, is_text=bool(r.is_text), max_length=512)
                rows.append({"context": tokenizer.decode(doc.input_ids[:doc.response_start]),
                             "response": tokenizer.decode(doc.input_ids[doc.response_start:])})
        with open(folder / f"{name}.jsonl", "w", encoding="utf-8") as fh:
            fh.writelines(json.dumps(row) + "\n" for row in rows)
        template = GEN_TASK if task.kind == "exact_match" else LL_TASK
        (folder / f"{name}.yaml").write_text(template.format(name=name, max_new=max_new), encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default=None, help="demo work directory (pools/, models/); "
                        "default: build a small one in a temporary folder")
    parser.add_argument("--pool", default="demo-small")
    parser.add_argument("--dev-limit", type=int, default=32, help="dev documents per task")
    parser.add_argument("--batch-size", type=int, default=32, help="harness batch and native generation batch")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="timed passes of each side")
    args = parser.parse_args()

    import torch
    import transformers

    from causalmix.datapool.pool import Pool
    from causalmix.lm.loading import load_causal_lm, load_tokenizer
    from causalmix.proxy.config import ProxyConfig
    from causalmix.proxy.evaluate import dev_suite
    from causalmix.proxy.harness import HarnessSpec, harness_metrics

    transformers.utils.logging.disable_progress_bar()
    torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="bench-eval-"))
    if args.workdir:
        pool_dir, model_dir = Path(args.workdir) / "pools" / args.pool, Path(args.workdir) / "models" / "proxy"
    else:
        pool_dir, model_dir = _small_demo(tmp / "demo")
    pool = Pool.open(pool_dir)
    dev = {n: t for n, t in pool.dev_tasks().items() if t.kind != "lm_eval"}
    cfg = ProxyConfig(model=str(model_dir), dev_limit=args.dev_limit, em_batch_size=args.batch_size,
                      em_max_new_tokens=32, max_length=512, device="cpu")
    tokenizer = load_tokenizer(str(model_dir))
    model = load_causal_lm(str(model_dir), device="cpu")
    model.eval()
    write_tasks(dev, tokenizer, tmp / "tasks", args.dev_limit, cfg.em_max_new_tokens)
    spec = HarnessSpec(tasks=tuple(str(p) for p in sorted((tmp / "tasks").glob("*.yaml"))),
                       batch_size=args.batch_size, num_fewshot=0, bootstrap_iters=0)

    native_fn = lambda: dev_suite(model, tokenizer, dev, cfg, "cpu")  # noqa: E731
    harness_fn = lambda: harness_metrics(model, tokenizer, spec)  # noqa: E731
    native, harness = native_fn(), harness_fn()  # warm-up: kernels, caches, the harness's dataset build
    times = {"native": [], "harness": []}
    for _ in range(args.repeats):
        for name, fn in (("native", native_fn), ("harness", harness_fn)):
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    native_s, harness_s = min(times["native"]), min(times["harness"])
    median = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
    print(f"model {model_dir}, {len(dev)} dev sets x {args.dev_limit} documents, {args.threads} threads")
    print(f"native dev suite: {native_s:.2f} s  {json.dumps({k: round(v, 4) for k, v in native.items()})}")
    print(f"harness:          {harness_s:.2f} s  "
          f"{json.dumps({k: round(v, 4) for k, v in harness.items() if not k.endswith('_stderr')})}")
    print(f"times (s): native {[round(t, 2) for t in times['native']]}, harness {[round(t, 2) for t in times['harness']]}; "
          f"median ratio {median['harness'] / median['native']:.2f}")
    print(f"RESULT eval native_s={native_s:.2f} harness_s={harness_s:.2f} ratio={harness_s / native_s:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
