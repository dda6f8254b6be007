"""lm-evaluation-harness tasks as dev metrics, run on the in-memory model of a trial.

A pool manifest's top-level `dev` list may hold entries

```yaml
dev:
  - lm_eval:
      tasks: [tasks/arith_mc.yaml, tasks/private/, hellaswag]
      include_path: [tasks/shared/]   # optional: folders whose YAMLs define names used in tasks
      limit: 200                      # documents per task (a float < 1: a share); null: all
      num_fewshot: 0                  # null: each task's own default
      batch_size: 8
      apply_chat_template: false      # true: prompts through the tokenizer's chat template
      bootstrap_iters: 1000           # resamples for stderr of non-mean metrics (0: none)
```

A task is a registry name (resolved offline from the installed harness's own task folder), a
local task YAML, or a folder (every task its YAMLs define). Local paths are relative to the
manifest; inside a local YAML, relative `dataset_kwargs.data_files` are resolved against the
YAML's folder (the harness would read them relative to the working directory), so a private
task travels with the pool. Nothing is downloaded: a task whose data is not local fails, with
the harness's message.

The trial evaluates its trained model through `lm_eval.simple_evaluate` with
`HFLM(pretrained=model, tokenizer=tokenizer)`: no reload, on the device the model is on. Each
task metric becomes `metric.<task>_<metric>` (the harness's filter is appended when it is not
`none`: `metric.gsm8k_exact_match_strict-match`) and its standard error, where the harness
gives one, `metric.<task>_<metric>_stderr`.
"""
from __future__ import annotations

import copy
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from causalmix.core.errors import UserError
from causalmix.core.extras import require_extra

# Deferred on purpose, so that importing this module does not load lm-eval (an optional extra),
# torch, transformers and datasets: the function-local imports (of these libraries or of this
# project's modules that import them).

HARNESS_KEYS = {"tasks", "include_path", "limit", "num_fewshot", "batch_size", "apply_chat_template",
                "bootstrap_iters"}
STDERR_SUFFIX = "_stderr"
_UNSAFE = re.compile(r"[^A-Za-z0-9_\-]+")


def _is_local(task: str) -> bool:
    return "/" in task or os.sep in task or task.endswith((".yaml", ".yml"))


@dataclass(frozen=True)
class HarnessSpec:
    """One `lm_eval` dev entry of a pool manifest (see the module docstring)."""

    tasks: tuple[str, ...]
    """Registry names, or absolute paths of local task YAMLs / folders."""
    include_path: tuple[str, ...] = ()
    """Absolute folders whose task YAMLs the harness indexes (names usable in `tasks`)."""
    limit: int | float | None = None
    """Documents per task: an int >= 1, a share in (0, 1), or None for all."""
    num_fewshot: int | None = None
    """Few-shot examples per prompt (None: each task's default)."""
    batch_size: int = 8
    """Requests per forward pass of the harness."""
    apply_chat_template: bool = False
    """Format requests with the tokenizer's chat template (for chat-tuned models)."""
    bootstrap_iters: int = 1000
    """Bootstrap resamples for the stderr of metrics without a closed form (0: no stderr)."""

    def __post_init__(self):
        if not self.tasks or not all(isinstance(t, str) and t.strip() for t in self.tasks):
            raise ValueError("tasks: expected a non-empty list of task names or paths")
        if self.limit is not None:
            if isinstance(self.limit, bool) or not isinstance(self.limit, (int, float)) or self.limit <= 0 \
                    or (isinstance(self.limit, float) and self.limit >= 1):
                raise ValueError(f"limit: expected an integer >= 1 or a share in (0, 1), got {self.limit!r}")
        if self.num_fewshot is not None and (not isinstance(self.num_fewshot, int) or self.num_fewshot < 0):
            raise ValueError(f"num_fewshot: expected an integer >= 0 or null, got {self.num_fewshot!r}")
        if not isinstance(self.batch_size, int) or isinstance(self.batch_size, bool) or self.batch_size < 1:
            raise ValueError(f"batch_size: expected an integer >= 1, got {self.batch_size!r}")
        if not isinstance(self.apply_chat_template, bool):
            raise ValueError(f"apply_chat_template: expected true or false, got {self.apply_chat_template!r}")
        if not isinstance(self.bootstrap_iters, int) or self.bootstrap_iters < 0:
            raise ValueError(f"bootstrap_iters: expected an integer >= 0, got {self.bootstrap_iters!r}")

    @classmethod
    def parse(cls, raw, base_dir: Path, where: str) -> "HarnessSpec":
        """From a manifest entry; local paths resolved against `base_dir` and checked to exist."""
        if not isinstance(raw, dict):
            raise UserError(f"{where}: expected a mapping with 'tasks', got {type(raw).__name__}")
        unknown = sorted(set(raw) - HARNESS_KEYS)
        if unknown:
            raise UserError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(HARNESS_KEYS)}")
        values = dict(raw)
        for key in ("tasks", "include_path"):
            items = values.get(key, [])
            items = [items] if isinstance(items, str) else items
            if not isinstance(items, list) or not all(isinstance(t, str) for t in items):
                raise UserError(f"{where}.{key}: expected a list of strings, got {items!r}")
            resolved = []
            for item in items:
                if key == "include_path" or _is_local(item):
                    path = Path(item) if os.path.isabs(item) else base_dir / item
                    if not path.exists():
                        raise UserError(f"{where}.{key}: {item!r}: no such file or folder ({path})")
                    if key == "include_path" and not path.is_dir():
                        raise UserError(f"{where}.include_path: {item!r} is not a folder")
                    resolved.append(str(path.resolve()))
                else:
                    resolved.append(item)
            values[key] = tuple(resolved)
        try:
            return cls(**values)
        except (TypeError, ValueError) as exc:
            raise UserError(f"{where}: {exc}") from None

    def to_json(self, root: Path) -> dict:
        """For pool.json: local paths relative to the pool folder, so pool and sources move together."""
        def rel(p: str) -> str:
            p = os.path.relpath(p, root) if os.path.isabs(p) else p
            return p if _is_local(p) else "./" + p  # `./tasks` stays a path, not a registry name
        return {"tasks": [rel(t) if _is_local(t) else t for t in self.tasks],
                "include_path": [rel(p) for p in self.include_path], "limit": self.limit,
                "num_fewshot": self.num_fewshot, "batch_size": self.batch_size,
                "apply_chat_template": self.apply_chat_template, "bootstrap_iters": self.bootstrap_iters}

    @classmethod
    def from_json(cls, data: dict, root: Path) -> "HarnessSpec":
        def absolute(p: str) -> str:
            return p if os.path.isabs(p) else str((root / p).resolve())
        return cls(**{**data, "tasks": tuple(absolute(t) if _is_local(t) else t for t in data["tasks"]),
                      "include_path": tuple(absolute(p) for p in data.get("include_path", []))})

    @property
    def label(self) -> str:
        return ",".join(Path(t).stem if _is_local(t) else t for t in self.tasks)


def _task_config(path: Path) -> dict:
    """A local task YAML as a config dict (includes and `!function` resolved by the harness's
    loader), with relative data files made absolute against the YAML's folder."""
    from lm_eval.tasks._yaml_loader import load_yaml

    try:
        cfg = copy.deepcopy(load_yaml(path, resolve_func=True))
    except Exception as exc:  # noqa: BLE001 - YAML, include, !function and file errors alike
        raise UserError(f"lm_eval task YAML {path} could not be read: {exc}") from None
    kwargs = cfg.get("dataset_kwargs") or {}
    files = kwargs.get("data_files")

    def fix(value):
        if isinstance(value, str) and not os.path.isabs(value) and "://" not in value:
            return str((path.parent / value).resolve())
        if isinstance(value, list):
            return [fix(v) for v in value]
        if isinstance(value, dict):
            return {k: fix(v) for k, v in value.items()}
        return value

    if files is not None:
        cfg["dataset_kwargs"] = {**kwargs, "data_files": fix(files)}
    if cfg.get("dataset_path") and not os.path.isabs(cfg["dataset_path"]) \
            and (path.parent / cfg["dataset_path"]).exists():
        cfg["dataset_path"] = str((path.parent / cfg["dataset_path"]).resolve())
    return cfg


def _task_list(spec: HarnessSpec) -> tuple[list, list[str], bool]:
    """(task specs for the harness, extra include paths, whether registry names are used)."""
    tasks, include, registry = [], list(spec.include_path), False
    for task in spec.tasks:
        if not _is_local(task):
            registry = True
            tasks.append(task)
            continue
        path = Path(task)
        if path.is_dir():
            yamls = sorted(p for p in path.rglob("*.y*ml") if p.suffix in (".yaml", ".yml"))
            if not yamls:
                raise UserError(f"lm_eval task folder {path} holds no task YAML")
            tasks += [_task_config(p) for p in yamls if "task" in _peek(p)]
        elif path.is_file():
            tasks.append(_task_config(path))
        else:
            raise UserError(f"lm_eval task {task}: no such file or folder")
    return tasks, include, registry


def _peek(path: Path) -> dict:
    from lm_eval.tasks._yaml_loader import load_yaml

    try:
        return load_yaml(path, resolve_func=False)
    except Exception as exc:  # noqa: BLE001 - YAML, include and file errors alike
        raise UserError(f"lm_eval task YAML {path} could not be read: {exc}") from None


def metric_columns(results: dict) -> dict[str, float]:
    """`metric.<task>_<metric>` (and `_stderr`) from `simple_evaluate`'s results."""
    out: dict[str, float] = {}
    for task, values in sorted(results.get("results", {}).items()):
        for key, value in values.items():
            if key == "alias" or "," not in key:
                continue
            metric, filt = key.split(",", 1)
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                continue  # the harness writes "N/A" where it has no stderr
            name = f"{task}_{metric}" + ("" if filt == "none" else f"_{filt}")
            if metric.endswith(STDERR_SUFFIX):
                base = metric[: -len(STDERR_SUFFIX)]
                name = f"{task}_{base}" + ("" if filt == "none" else f"_{filt}") + STDERR_SUFFIX
            out["metric." + _UNSAFE.sub("_", name)] = float(value)
    return out


def harness_metrics(model, tokenizer, spec: HarnessSpec, *, seed: int = 0) -> dict[str, float]:
    """Run `spec`'s tasks on the in-memory `model` (its own device) and return its metric columns."""
    require_extra("lm_eval", "an lm_eval dev task")
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    for name in ("lm-eval", "lm_eval"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # HFLM warns that an in-memory model ignores its loading arguments: expected here, not news
    logging.getLogger("lm_eval.models.huggingface").setLevel(logging.ERROR)
    tasks, include, registry = _task_list(spec)
    # Indexing the harness's own thousands of YAMLs takes seconds: only when a registry name is asked for.
    manager = TaskManager(include_path=include or None, include_defaults=registry)
    was_training = model.training
    side = tokenizer.padding_side
    try:
        lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=spec.batch_size)
        results = lm_eval.simple_evaluate(
            model=lm, tasks=tasks, num_fewshot=spec.num_fewshot, limit=spec.limit,
            bootstrap_iters=spec.bootstrap_iters, log_samples=False, task_manager=manager,
            apply_chat_template=spec.apply_chat_template, random_seed=seed, numpy_random_seed=seed,
            torch_random_seed=seed, fewshot_random_seed=seed)
    except KeyError as exc:
        raise UserError(f"lm_eval dev entry {spec.label}: {exc.args[0] if exc.args else exc} "
                        "(registry names must be tasks of the installed lm-eval)") from None
    except (FileNotFoundError, ValueError) as exc:  # a task's data or config, as the harness says
        raise UserError(f"lm_eval dev entry {spec.label}: {type(exc).__name__}: {exc}") from None
    finally:
        tokenizer.padding_side = side
        model.train(was_training)
    if results is None:
        raise UserError(f"lm_eval dev entry {spec.label}: the harness returned no results")
    columns = metric_columns(results)
    if not columns:
        raise UserError(f"lm_eval dev entry {spec.label}: the harness reported no numeric metric")
    return columns
