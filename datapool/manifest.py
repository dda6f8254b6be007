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
The schema is the pydantic models below (strict: no silent type coercion, unknown keys
refused with the allowed ones named); every error names the file, the domain, the field and the
value. An exact-match dev set's answer pattern is checked by `pool build` against every
reference (see proxy/answers.py).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import (BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator,
                      model_validator)

from causalmix.core.config import read_yaml_mapping
from causalmix.core.errors import UserError
from causalmix.proxy.answers import AnswerPattern
from causalmix.proxy.harness import HarnessSpec

DEFAULT_COLUMNS = {"prompt": "prompt", "response": "response"}


class _Entry(BaseModel):
    """A mapping of the manifest: frozen, strict, and an unknown key named with the allowed ones."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    shorthand: ClassVar[str | None] = None
    """A field a plain string stands for (`hf: openai/gsm8k` is `hf: {name: openai/gsm8k}`)."""

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        if isinstance(data, str) and cls.shorthand:
            data = {cls.shorthand: data}
        if not isinstance(data, dict):
            raise ValueError(f"expected a mapping, got {type(data).__name__}")
        unknown = sorted(set(data) - set(cls.model_fields), key=str)
        if unknown:
            raise ValueError(f"unknown key(s) {unknown}; allowed: {sorted(cls.model_fields)}")
        return data


def _non_empty(value: str) -> str:
    if not value.strip():
        raise ValueError("is missing or empty")
    return value


class HFSource(_Entry):
    """`datasets.load_dataset` arguments of a source."""

    shorthand: ClassVar[str | None] = "name"
    name: str
    """Dataset id on the hub (or a local dataset script/folder)."""
    config: str | None = None
    """Dataset configuration name."""
    split: str = "train"
    """Split to read."""
    data_files: Any = None
    """`data_files` as load_dataset takes it (a path, a list, or a mapping of splits)."""

    _name = field_validator("name")(_non_empty)


class SourceSpec(_Entry):
    """One input of a domain: a local glob or a Hugging Face dataset, and its column mapping."""

    columns: dict[str, str] | None = Field(None, validate_default=True)
    """Target field (`prompt`/`response`, or `text`) -> column name in the source (default:
    prompt and response)."""
    path: str | None = None
    """Glob relative to the manifest's folder (or absolute)."""
    hf: HFSource | None = None
    """`datasets.load_dataset` arguments: name, config, split, data_files."""
    format: Literal["parquet", "jsonl"] | None = None
    """parquet or jsonl; inferred from the file extension when absent."""

    @field_validator("columns")
    @classmethod
    def _columns(cls, value: dict[str, str] | None) -> dict[str, str]:
        if value is None:
            return dict(DEFAULT_COLUMNS)
        if set(value) not in ({"prompt", "response"}, {"text"}):
            raise ValueError(f"map either 'prompt' and 'response', or 'text' (got {sorted(value)})")
        return value

    @field_validator("path")
    @classmethod
    def _path(cls, value: str | None) -> str | None:
        return value if value is None else _non_empty(value)

    @model_validator(mode="after")
    def _one_origin(self):
        if (self.path is None) == (self.hf is None):
            raise ValueError("give exactly one of 'path' or 'hf'")
        return self

    @property
    def is_text(self) -> bool:
        return "text" in self.columns


class DevSpec(SourceSpec):
    """A domain's held-out set for the proxy's dev suite."""

    metric: Literal["nll", "exact_match"] = "nll"
    """nll, or exact_match (final answer of the response)."""
    answer: Any = Field(None, validate_default=True)
    """Exact-match sets only: how the final answer is found (proxy/answers.py; default `auto`)."""

    @field_validator("answer")
    @classmethod
    def _answer(cls, value: Any, info: ValidationInfo) -> AnswerPattern | None:
        metric = info.data.get("metric")
        if metric == "exact_match":
            return AnswerPattern.parse(value)
        if value is not None and metric is not None:
            raise ValueError(f"only an exact_match dev set has an answer pattern (metric is {metric!r})")
        return None


class DomainSpec(_Entry):
    """One data domain: its sources and an optional dev set."""

    name: str
    """Domain name: letters, digits, _ and -."""
    sources: list[SourceSpec]
    """Where the domain's documents come from."""
    dev: DevSpec | None = None
    """Held-out set of the domain."""

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not all(c.isalnum() or c in "_-" for c in _non_empty(value)):
            raise ValueError(f"{value!r}: a name may hold only letters, digits, _ and -")
        return value

    @field_validator("sources")
    @classmethod
    def _sources(cls, value: list[SourceSpec]) -> list[SourceSpec]:
        if not value:
            raise ValueError("must be a non-empty list (the domain is empty)")
        return value


class _PoolDev(_Entry):
    lm_eval: Any
    """lm-evaluation-harness tasks (proxy/harness.py HarnessSpec)."""


class _ManifestFile(_Entry):
    """The manifest file as written."""

    name: str
    shard_size: int = Field(2000, ge=1)
    domains: list[DomainSpec]
    dev: list[_PoolDev] | None = None

    _name = field_validator("name")(_non_empty)

    @field_validator("domains", "dev")
    @classmethod
    def _listed(cls, value: list | None, info: ValidationInfo) -> list | None:
        if value is not None and not value:
            raise ValueError("must be a non-empty list" + (" of entries like {lm_eval: {tasks: [...]}}"
                                                           if info.field_name == "dev" else ""))
        return value

    @model_validator(mode="after")
    def _distinct_domains(self):
        seen = set()
        for domain in self.domains:
            if domain.name in seen:
                raise ValueError(f"domain {domain.name!r} is listed twice (field 'name')")
            seen.add(domain.name)
        return self


@dataclass(frozen=True)
class PoolManifest:
    name: str
    domains: list[DomainSpec]
    base_dir: Path
    """Folder that relative source globs are resolved against (the manifest's)."""
    shard_size: int = 2000
    harness: list[HarnessSpec] = field(default_factory=list)
    """Pool-wide lm-evaluation-harness dev entries (the manifest's top-level `dev` list)."""


def _where(loc: tuple, data: dict) -> str:
    """A pydantic error location as the manifest reads: "domain 'math': sources[0].columns"."""
    head, rest = "", list(loc)
    if len(rest) >= 2 and rest[0] == "domains" and isinstance(rest[1], int):
        domains = data.get("domains")
        raw = domains[rest[1]] if isinstance(domains, list) and rest[1] < len(domains) else None
        name = raw.get("name") if isinstance(raw, dict) else None
        head = f"domain {name!r}" if isinstance(name, str) and name.strip() else f"domains[{rest[1]}]"
        rest = rest[2:]
    path = ""
    for part in rest:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return ": ".join(p for p in (head, path) if p)


def _message(error: dict) -> str:
    if error["type"] == "value_error":
        return str(error["ctx"]["error"])
    if error["type"] == "missing":
        return "missing"
    shown = repr(error["input"])
    return f"{error['msg'][0].lower()}{error['msg'][1:]} (got {shown[:80]})"


def parse_manifest(data: dict, base_dir: Path, origin: str = "manifest") -> PoolManifest:
    try:
        parsed = _ManifestFile.model_validate(data)
    except ValidationError as exc:
        lines = [": ".join(p for p in (origin, _where(e["loc"], data), _message(e)) if p)
                 for e in exc.errors(include_url=False)]
        raise UserError("\n".join(dict.fromkeys(lines))) from None
    harness = [HarnessSpec.parse(entry.lm_eval, base_dir, f"{origin}: dev[{i}].lm_eval")
               for i, entry in enumerate(parsed.dev or [])]
    return PoolManifest(name=parsed.name, domains=list(parsed.domains), base_dir=base_dir,
                        shard_size=parsed.shard_size, harness=harness)


def load_manifest(path: str | Path) -> PoolManifest:
    path = Path(path)
    data = read_yaml_mapping(path, what="pool manifest")
    return parse_manifest(data, base_dir=path.resolve().parent, origin=f"manifest {path}")
