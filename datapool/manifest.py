"""The pool manifest (YAML): which documents make up each data domain.

```yaml
name: my-pool
shard_size: 2000            # optional: most documents per Parquet shard
domains:
  - name: math
    sources:
      - path: raw/math/*.jsonl              # glob, relative to the manifest's folder
        columns: {prompt: question, response: answer}
      - hf: {name: openai/gsm8k, config: main, split: train}
        columns: {prompt: question, response: answer}
    dev:                                     # optional held-out set for the proxy's dev suite
      path: raw/math_dev.jsonl
      columns: {prompt: question, response: answer}
      metric: exact_match                    # or nll (the default)
      answer: gsm8k                          # exact_match only: the_answer_is, gsm8k, auto
                                             # (default: either), or {regex: PATTERN}
  - name: web
    sources:
      - path: raw/web/*.parquet
        columns: {text: content}             # plain text instead of prompt/response
dev:                                         # optional pool-wide dev entries
  - lm_eval:                                 # lm-evaluation-harness tasks (proxy/harness.py)
      tasks: [tasks/arith_mc.yaml, tasks/private/, hellaswag]   # task YAML, folder, or registry name
      limit: 200                             # documents per task (null: all)
      num_fewshot: 0                         # null: each task's own default
      batch_size: 8
```
Every error names the domain and the field. An exact-match dev set's answer pattern is checked
by `pool build` against every reference (see proxy/answers.py).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from core.config import read_yaml_mapping
from core.errors import UserError
from proxy.answers import AnswerPattern
from proxy.harness import HarnessSpec

POOL_KEYS = {"name", "domains", "shard_size", "dev"}
DOMAIN_KEYS = {"name", "sources", "dev"}
SOURCE_KEYS = {"path", "hf", "columns", "format"}
DEV_KEYS = SOURCE_KEYS | {"metric", "answer"}
POOL_DEV_KEYS = {"lm_eval"}
HF_KEYS = {"name", "config", "split", "data_files"}
METRICS = ("nll", "exact_match")
FORMATS = ("parquet", "jsonl")


@dataclass(frozen=True)
class SourceSpec:
    """One input of a domain: a local glob or a Hugging Face dataset, and its column mapping."""

    columns: dict[str, str]
    """Target field (`prompt`/`response`, or `text`) -> column name in the source."""
    path: str | None = None
    """Glob relative to the manifest's folder (or absolute)."""
    hf: dict | None = None
    """`datasets.load_dataset` arguments: name, config, split, data_files."""
    format: str | None = None
    """parquet or jsonl; inferred from the file extension when absent."""
    metric: str = "nll"
    """Dev sets only: nll, or exact_match (final answer of the response)."""
    answer: AnswerPattern | None = None
    """Exact-match dev sets only: how the final answer is found (default: `auto`)."""

    @property
    def is_text(self) -> bool:
        return "text" in self.columns


@dataclass(frozen=True)
class DomainSpec:
    name: str
    sources: list[SourceSpec]
    dev: SourceSpec | None = None


@dataclass(frozen=True)
class PoolManifest:
    name: str
    domains: list[DomainSpec]
    base_dir: Path
    """Folder that relative source globs are resolved against (the manifest's)."""
    shard_size: int = 2000
    harness: list[HarnessSpec] = field(default_factory=list)
    """Pool-wide lm-evaluation-harness dev entries (the manifest's top-level `dev` list)."""


def _check_keys(obj, allowed: set[str], where: str) -> None:
    if not isinstance(obj, dict):
        raise UserError(f"{where}: expected a mapping, got {type(obj).__name__}")
    unknown = sorted(set(obj) - allowed)
    if unknown:
        raise UserError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(allowed)}")


def _parse_columns(raw, where: str) -> dict[str, str]:
    if raw is None:
        return {"prompt": "prompt", "response": "response"}
    if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
        raise UserError(f"{where}.columns: expected a mapping of field -> column name")
    fields = set(raw)
    if fields not in ({"prompt", "response"}, {"text"}):
        raise UserError(f"{where}.columns: map either 'prompt' and 'response', or 'text' "
                        f"(got {sorted(fields)})")
    return dict(raw)


def _parse_source(raw, where: str, *, dev: bool) -> SourceSpec:
    _check_keys(raw, DEV_KEYS if dev else SOURCE_KEYS, where)
    if ("path" in raw) == ("hf" in raw):
        raise UserError(f"{where}: give exactly one of 'path' or 'hf'")
    if "path" in raw and (not isinstance(raw["path"], str) or not raw["path"].strip()):
        raise UserError(f"{where}.path: expected a non-empty string")
    hf = raw.get("hf")
    if hf is not None:
        if isinstance(hf, str):
            hf = {"name": hf}
        _check_keys(hf, HF_KEYS, f"{where}.hf")
        if not hf.get("name"):
            raise UserError(f"{where}.hf.name: missing")
    fmt = raw.get("format")
    if fmt is not None and fmt not in FORMATS:
        raise UserError(f"{where}.format: {fmt!r} is not one of {FORMATS}")
    metric = raw.get("metric", "nll")
    if metric not in METRICS:
        raise UserError(f"{where}.metric: {metric!r} is not one of {METRICS}")
    answer = None
    if metric == "exact_match":
        try:
            answer = AnswerPattern.parse(raw.get("answer"))
        except ValueError as exc:
            raise UserError(f"{where}.answer: {exc}") from None
    elif "answer" in raw:
        raise UserError(f"{where}.answer: only an exact_match dev set has an answer pattern "
                        f"(metric is {metric!r})")
    return SourceSpec(columns=_parse_columns(raw.get("columns"), where), path=raw.get("path"),
                      hf=hf, format=fmt, metric=metric, answer=answer)


def _parse_pool_dev(raw, base_dir: Path, origin: str) -> list[HarnessSpec]:
    if raw is None:
        return []
    if not isinstance(raw, list) or not raw:
        raise UserError(f"{origin}: field 'dev' must be a non-empty list of entries like "
                        "{lm_eval: {tasks: [...]}}")
    specs = []
    for i, entry in enumerate(raw):
        where = f"{origin}: dev[{i}]"
        _check_keys(entry, POOL_DEV_KEYS, where)
        if "lm_eval" not in entry:
            raise UserError(f"{where}: expected the key 'lm_eval'")
        specs.append(HarnessSpec.parse(entry["lm_eval"], base_dir, f"{where}.lm_eval"))
    return specs


def parse_manifest(data: dict, base_dir: Path, origin: str = "manifest") -> PoolManifest:
    _check_keys(data, POOL_KEYS, origin)
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        raise UserError(f"{origin}: field 'name' is missing or empty")
    shard_size = data.get("shard_size", 2000)
    if not isinstance(shard_size, int) or isinstance(shard_size, bool) or shard_size < 1:
        raise UserError(f"{origin}: field 'shard_size' must be a positive integer, got {shard_size!r}")
    raw_domains = data.get("domains")
    if not isinstance(raw_domains, list) or not raw_domains:
        raise UserError(f"{origin}: field 'domains' must be a non-empty list")
    domains, seen = [], set()
    for i, raw in enumerate(raw_domains):
        _check_keys(raw, DOMAIN_KEYS, f"{origin}: domains[{i}]")
        dname = raw.get("name")
        if not isinstance(dname, str) or not dname.strip():
            raise UserError(f"{origin}: domains[{i}].name is missing or empty")
        if not all(c.isalnum() or c in "_-" for c in dname):
            raise UserError(f"{origin}: domain {dname!r}: name may hold only letters, digits, _ and -")
        if dname in seen:
            raise UserError(f"{origin}: domain {dname!r} is listed twice (field 'name')")
        seen.add(dname)
        where = f"{origin}: domain {dname!r}"
        sources = raw.get("sources")
        if not isinstance(sources, list) or not sources:
            raise UserError(f"{where}: field 'sources' must be a non-empty list (the domain is empty)")
        parsed = [_parse_source(s, f"{where}: sources[{j}]", dev=False) for j, s in enumerate(sources)]
        dev = _parse_source(raw["dev"], f"{where}: dev", dev=True) if "dev" in raw else None
        domains.append(DomainSpec(name=dname, sources=parsed, dev=dev))
    return PoolManifest(name=name, domains=domains, base_dir=base_dir, shard_size=shard_size,
                        harness=_parse_pool_dev(data.get("dev"), base_dir, origin))


def load_manifest(path: str | Path) -> PoolManifest:
    path = Path(path)
    data = read_yaml_mapping(path, what="pool manifest")
    return parse_manifest(data, base_dir=path.resolve().parent, origin=f"manifest {path}")
