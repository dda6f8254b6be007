"""Materialise a mixture as a training set: documents per domain drawn to a token budget.

Pure logic, no Ray: `launch.py export` (commands/export.py) parses and prints around it.

How documents are drawn, per domain d with weight w_d and token budget T:
  * the target is t_d = w_d * T tokens;
  * the domain's documents are visited in a seeded random order, one fresh permutation per
    epoch, and the prefix of that sequence whose token sum is closest to t_d is taken, so the
    domain lands within half a document of t_d (never more than one document off);
  * a domain whose target needs more than `max_epochs` passes over its documents is refused
    with the numbers (nothing is written), rather than silently repeating it;
  * the selected rows of all domains are then shuffled together, so a trainer that reads
    the set in order sees the domains interleaved.

Output layout (written whole, atomically; see `write_export`):
  data/train-NNNNN-of-MMMMM.parquet   the rows, in training order
  hf/                                 the same rows as `datasets.Dataset.save_to_disk`
  counts.json                         tokens, documents, epochs per domain, config, versions

Columns (`format`): "trl", the default, is what TRL's SFTTrainer takes as it is: a standard
prompt-completion dataset (`prompt`, `completion`), or a language-modeling one (`text`) when
every document is a text document; in a mixed set a text document has an empty prompt, so
the completion loss covers all of it. "raw" keeps the pool's own `prompt`, `response`,
`is_text`. Both keep doc_id, domain, source, epoch and n_tokens beside them.
"""
from __future__ import annotations

import dataclasses
import math
import re
import zlib
from pathlib import Path
from typing import Literal, Mapping

import numpy as np
import pandas as pd

from causalmix.core.atomic import atomic_directory, atomic_write_json, atomic_write_parquet, check_not_input
from causalmix.core.errors import UserError
from causalmix.core.inputs import load_json_text, read_text
from causalmix.core.provenance import provenance, sha256_file
from causalmix.datapool.build import pool_parts
from causalmix.datapool.export_stream import ExportPlan, plan_rows, quiet_datasets, shard_names, trl_columns, write_plan
from causalmix.datapool.pool import Pool, read_shard
from causalmix.mixture_space import DEFAULT_MAX_EPOCHS

# Deferred on purpose, so that importing this module does not load transformers and datasets: the
# function-local imports (of these libraries or of this project's modules that import them).

FORMAT = "causalmix-export/1"
COLUMN_FORMATS = ("trl", "raw")
DEFAULT_SHARD_ROWS = 50_000
# The usual rule of thumb for English text under a BPE vocabulary: about 4 characters a token.
CHARS_PER_TOKEN = 4
FALLBACK_COUNTER = "chars/4"
_BATCH = 1024


@dataclasses.dataclass
class ExportConfig:
    """What `export` was asked to do (saved in counts.json)."""

    pool: str
    """Pool directory (or manifest) the documents come from."""
    mixture: str
    """JSON file with the mixture: {domain: weight} or a `recommend` output (its "mixture")."""
    tokens: int
    """Token budget of the whole training set (e.g. 2000000 or 2M); domain d gets weight_d * tokens."""
    out: str
    """Directory to write (replaced whole if it holds an earlier export)."""
    seed: int = 0
    """Seed of the per-domain document order and of the final shuffle; same seed, same set."""
    max_epochs: float = DEFAULT_MAX_EPOCHS
    """Most passes over any one domain's documents; a mixture needing more is refused."""
    tokenizer: str | None = None
    """Local Hugging Face tokenizer directory for counting tokens; None: characters / 4."""
    shard_rows: int = DEFAULT_SHARD_ROWS
    """Rows per Parquet shard under data/."""
    format: Literal["trl", "raw"] = "trl"
    """Columns: trl (TRL SFTTrainer's prompt/completion, or text when every document is a text
    document) or raw (the pool's prompt/response/is_text)."""


# ---- token counting ---------------------------------------------------------------------


def load_tokenizer(path: str | Path):
    """AutoTokenizer from a local directory only (nothing is downloaded)."""
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"--tokenizer {path}: not a directory (give a local tokenizer/model directory)")
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except Exception as exc:  # noqa: BLE001 - any loader failure means a bad directory
        raise UserError(f"--tokenizer {path}: could not load a tokenizer: {exc}") from None


def document_texts(frame: pd.DataFrame) -> list[str]:
    """The text whose tokens a document costs: prompt + response (text documents have an
    empty prompt and their text in `response`, see datapool/build.py)."""
    return (frame["prompt"].fillna("").astype(str) + frame["response"].fillna("").astype(str)).tolist()


def count_tokens(texts: list[str], tokenizer=None) -> np.ndarray:
    """Tokens per text: the tokenizer's ids without special tokens, or ceil(chars / 4)."""
    if tokenizer is None:
        return np.array([-(-len(t) // CHARS_PER_TOKEN) for t in texts], dtype=np.int64)
    out = np.empty(len(texts), dtype=np.int64)
    for start in range(0, len(texts), _BATCH):
        ids = tokenizer(texts[start:start + _BATCH], add_special_tokens=False)["input_ids"]
        out[start:start + len(ids)] = [len(i) for i in ids]
    return out


def _as_tokenizer(tokenizer):
    return load_tokenizer(tokenizer) if isinstance(tokenizer, (str, Path)) else tokenizer


def domain_token_counts(pool: Pool, tokenizer=None) -> dict[str, int]:
    """Tokens per domain of `pool`, counted as `export` counts them.

    `tokenizer`: None (characters / 4 per document, rounded up), a local tokenizer directory,
    or a loaded tokenizer object.
    """
    tokenizer = _as_tokenizer(tokenizer)
    counts = {}
    for domain in pool.domains:
        total = 0
        for shard in pool.shards(domain):
            frame = read_shard(shard.path)
            total += int(count_tokens(document_texts(frame), tokenizer).sum())
        counts[domain] = total
    return counts


# ---- the mixture ------------------------------------------------------------------------


def parse_tokens(text: str | int) -> int:
    """A token budget: an integer, optionally with K/M/B (or G/T) suffix: 250000, 2.5M, 1e9."""
    if isinstance(text, int):
        value = float(text)
    else:
        m = re.fullmatch(r"\s*([0-9.eE+]+)\s*([kKmMbBgGtT]?)\s*", str(text))
        try:
            value = float(m.group(1)) if m else math.nan
        except ValueError:
            value = math.nan
        if m and m.group(2):
            value *= {"k": 1e3, "m": 1e6, "b": 1e9, "g": 1e9, "t": 1e12}[m.group(2).lower()]
    if not math.isfinite(value) or value < 1 or value != round(value):
        raise UserError(f"--tokens {text!r}: give a positive whole number of tokens (e.g. 2000000 or 2M)")
    return int(value)


def read_mixture(path: str | Path) -> dict[str, float]:
    """{domain: weight} from a JSON file: a plain mapping or a `recommend` output."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"--mixture {path}: file not found")
    obj = load_json_text(read_text(path, "--mixture"), f"--mixture {path}")
    if isinstance(obj, dict) and isinstance(obj.get("mixture"), dict):
        obj = obj["mixture"]
    if not isinstance(obj, dict) or not obj:
        raise UserError(f"--mixture {path}: expected {{domain: weight}} or a recommend output with "
                        "a \"mixture\" object")
    bad = {d: w for d, w in obj.items()
           if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0}
    if bad:
        raise UserError(f"--mixture {path}: weights must be finite numbers >= 0; bad: {bad}")
    total = sum(obj.values())
    # recommend rounds nothing, but a hand-written file may round to 2-3 decimals
    if abs(total - 1) > 1e-2:
        raise UserError(f"--mixture {path}: weights sum to {total:.6g}, not 1")
    return {d: float(w) / total for d, w in obj.items()}


def check_mixture_domains(mixture: Mapping[str, float], pool: Pool, where: str) -> dict[str, float]:
    """The mixture over the pool's domains (domains it leaves out get weight 0)."""
    unknown = sorted(set(mixture) - set(pool.domains))
    if unknown:
        raise UserError(f"{where}: domains {unknown} are not in pool {pool.name!r} "
                        f"(it has {pool.domains})")
    return {d: float(mixture.get(d, 0.0)) for d in pool.domains}


# ---- drawing ----------------------------------------------------------------------------


def _domain_rng(seed: int, domain: str) -> np.random.Generator:
    # keyed by the domain's name, not its position, so adding a domain leaves the others' draws
    return np.random.default_rng([int(seed), zlib.crc32(domain.encode("utf-8"))])


@dataclasses.dataclass
class DomainDraw:
    """The rows drawn for one domain: positions into its document table and their epoch."""

    index: np.ndarray
    """Row positions into the domain's document frame, in draw order (repeats across epochs)."""
    epoch: np.ndarray
    """0-based pass over the domain that each drawn row belongs to."""
    tokens: int
    """Tokens of the drawn rows."""


def draw_domain(doc_tokens: np.ndarray, target: float, rng: np.random.Generator) -> DomainDraw:
    """Documents whose token sum is the closest prefix sum to `target`, one permutation an epoch.

    The caller has checked that `target` fits in the epoch cap; this draws however many epochs
    the target needs.
    """
    doc_tokens = np.asarray(doc_tokens, dtype=np.int64)
    total = int(doc_tokens.sum())
    if target <= 0 or total == 0:
        return DomainDraw(np.zeros(0, np.int64), np.zeros(0, np.int64), 0)
    passes = max(1, math.ceil(target / total))
    order = np.concatenate([rng.permutation(len(doc_tokens)) for _ in range(passes)])
    epoch = np.repeat(np.arange(passes), len(doc_tokens))
    cum = np.cumsum(doc_tokens[order])
    k = int(np.searchsorted(cum, target))  # first prefix reaching the target
    k = min(k, len(cum) - 1)
    below = int(cum[k - 1]) if k > 0 else 0
    n = k + 1 if cum[k] - target <= target - below else k
    return DomainDraw(order[:n], epoch[:n], int(cum[n - 1]) if n else 0)


def epoch_cap_violations(targets: Mapping[str, float], pool_tokens: Mapping[str, int],
                         max_epochs: float) -> dict[str, float]:
    """{domain: epochs needed} for every domain whose target needs more than `max_epochs`."""
    out = {}
    for d, t in targets.items():
        if t <= 0:
            continue
        need = math.inf if pool_tokens[d] == 0 else t / pool_tokens[d]
        if need > max_epochs * (1 + 1e-12):
            out[d] = need
    return out


def _domain_doc_tokens(pool: Pool, domain: str, tokenizer) -> np.ndarray:
    """Tokens of each of the domain's documents, in shard order, a shard read at a time."""
    counts = [count_tokens(document_texts(read_shard(s.path)), tokenizer) for s in pool.shards(domain)]
    return np.concatenate(counts) if counts else np.zeros(0, np.int64)


def draw_export(pool: Pool, mixture: Mapping[str, float], tokens: int, *, seed: int = 0,
                max_epochs: float = DEFAULT_MAX_EPOCHS, tokenizer=None) -> tuple[ExportPlan, dict]:
    """The export's plan (rows shuffled across domains, no text) and the per-domain counts,
    reading the pool a shard at a time. Raises UserError (naming domains and numbers) when a
    domain would need more than `max_epochs` passes."""
    if not (isinstance(max_epochs, (int, float)) and math.isfinite(max_epochs) and max_epochs > 0):
        raise UserError(f"--max-epochs {max_epochs}: give a number > 0")
    mixture = check_mixture_domains(mixture, pool, "--mixture")
    tokenizer = _as_tokenizer(tokenizer)
    # a domain without shards counts 0 tokens and is refused by the epoch check below
    doc_tokens = {d: _domain_doc_tokens(pool, d, tokenizer) for d in pool.domains if mixture[d] > 0}
    pool_tokens = {d: int(t.sum()) for d, t in doc_tokens.items()}
    targets = {d: mixture[d] * tokens for d in doc_tokens}
    _check_epochs(pool, mixture, tokens, targets, pool_tokens, max_epochs)
    parts, counts = [], {}
    for k, d in enumerate(pool.domains):
        entry = {"weight": mixture[d], "target_tokens": mixture[d] * tokens, "tokens": 0,
                 "documents": 0, "unique_documents": 0, "epochs": 0.0,
                 "pool_tokens": pool_tokens.get(d), "pool_documents": pool.n_docs(d)}
        if d in doc_tokens:
            draw = draw_domain(doc_tokens[d], targets[d], _domain_rng(seed, d))
            parts.append((np.full(len(draw.index), k), draw.index, draw.epoch, doc_tokens[d][draw.index]))
            entry.update(tokens=draw.tokens, documents=len(draw.index),
                         unique_documents=int(len(np.unique(draw.index))),
                         epochs=draw.tokens / pool_tokens[d] if pool_tokens[d] else 0.0,
                         max_doc_tokens=int(doc_tokens[d].max()) if len(doc_tokens[d]) else 0)
        counts[d] = entry
    columns = ([np.concatenate(c).astype(np.int64) for c in zip(*parts)] if parts
               else [np.zeros(0, np.int64)] * 4)
    n_rows = len(columns[0])
    if n_rows == 0:
        raise UserError(f"--tokens {tokens}: too small to hold a single document of the mixture")
    shuffle = np.random.default_rng([int(seed), 0x5EED]).permutation(n_rows)
    plan = ExportPlan(list(pool.domains), *(c[shuffle] for c in columns))
    for d, entry in counts.items():
        # interleave_datasets samples documents, not tokens: these document probabilities give
        # the same expected token shares as this export
        entry["sampling_probability"] = entry["documents"] / n_rows
    return plan, counts


def _check_epochs(pool: Pool, mixture, tokens: int, targets, pool_tokens, max_epochs: float) -> None:
    over = epoch_cap_violations(targets, pool_tokens, max_epochs)
    empty = sorted(d for d in over if pool_tokens[d] == 0)
    if empty:
        raise UserError(f"--mixture gives weight to domains {empty}, which have no tokens in pool "
                        f"{pool.name!r}; give them weight 0")
    if over:
        # the largest budget every domain can serve within the cap, for the error message
        fit = min(max_epochs * pool_tokens[d] / mixture[d] for d in targets)
        detail = "; ".join(f"{d}: weight {mixture[d]:.4g} x {tokens} = {targets[d]:.0f} tokens "
                           f"= {need:.3g} epochs of its {pool_tokens[d]} tokens" for d, need in over.items())
        raise UserError(f"the mixture needs more than --max-epochs {max_epochs:g} of some domains "
                        f"({detail}); lower --tokens to at most {math.floor(fit)}, raise --max-epochs, "
                        "or lower those domains' weights")


def plan_export(pool: Pool, mixture: Mapping[str, float], tokens: int, *, seed: int = 0,
                max_epochs: float = DEFAULT_MAX_EPOCHS, tokenizer=None) -> tuple[pd.DataFrame, dict]:
    """`draw_export`'s rows with their documents, in memory (`write_export` streams them):
    the pool's document columns plus `epoch` (0-based pass over its domain) and `n_tokens`."""
    plan, counts = draw_export(pool, mixture, tokens, seed=seed, max_epochs=max_epochs, tokenizer=tokenizer)
    places, parts = zip(*plan_rows(pool, plan))
    rows = pd.concat(parts, ignore_index=True)
    return rows.iloc[np.argsort(np.concatenate(places))].reset_index(drop=True), counts


def sampling_probabilities(counts: Mapping[str, dict]) -> dict[str, float]:
    return {d: c["sampling_probability"] for d, c in counts.items()}


# ---- writing ----------------------------------------------------------------------------


def write_export(config: ExportConfig) -> dict:
    """Draw and write the export described by `config`; returns the counts.json record."""
    out = Path(config.out)
    check_not_input(out, [*pool_parts(config.pool), config.mixture, config.tokenizer], kind="export")
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / "counts.json").is_file())):
        # atomic_directory replaces `out` whole: only ever replace an earlier export
        raise UserError(f"--out {out}: exists and is not an earlier export (no counts.json); "
                        "give a new or empty directory")
    if config.shard_rows < 1:
        raise UserError(f"--shard-rows {config.shard_rows}: give a number >= 1")
    if config.format not in COLUMN_FORMATS:
        raise UserError(f"--format {config.format!r}: give one of {list(COLUMN_FORMATS)}")
    pool = Pool.open(config.pool)
    mixture = read_mixture(config.mixture)
    plan, counts = draw_export(pool, mixture, config.tokens, seed=config.seed,
                               max_epochs=config.max_epochs, tokenizer=config.tokenizer)
    counter = ({"kind": "tokenizer", "path": str(config.tokenizer),
                "rule": "tokens of prompt + response without special tokens"}
               if config.tokenizer else
               {"kind": FALLBACK_COUNTER, "rule": "ceil(characters of prompt + response / 4) per "
                "document: an estimate (no --tokenizer given), not the tokens of any real tokenizer"})
    record = {
        "format": FORMAT,
        "pool": pool.name,
        "tokens_target": config.tokens,
        "tokens": int(sum(c["tokens"] for c in counts.values())),
        "documents": len(plan.domain),
        "token_counter": counter,
        "seed": config.seed,
        "max_epochs": config.max_epochs,
        "domains": counts,
        "sampling_probabilities": sampling_probabilities(counts),
        "provenance": provenance(config, inputs_sha256={config.mixture: sha256_file(config.mixture)},
                                 pool_index=str(pool.root / "pool.json"),
                                 pool_index_sha256=sha256_file(pool.root / "pool.json")),
    }
    return write_plan(out, pool, plan, record, config.shard_rows, config.format)


def write_training_set(out: Path, rows: pd.DataFrame, record: dict, shard_rows: int = DEFAULT_SHARD_ROWS,
                       column_format: str = "trl") -> dict:
    """Write `rows` (in training order, held in memory: `generate --export`'s per-run sets) as
    an export directory, replacing `out` whole: the Parquet shards, the `datasets` folder and
    counts.json (`record` plus the columns and file list, returned), in `column_format`
    (COLUMN_FORMATS). `export` streams its rows instead (export_stream.write_plan)."""
    import datasets

    if column_format == "trl":
        rows = trl_columns(rows)
    names = shard_names(len(rows), shard_rows)
    record = {**record, "columns": list(rows.columns), "files": {"parquet": names, "hf_dataset": "hf"}}
    with quiet_datasets(), atomic_directory(out) as tmp:
        for i, name in enumerate(names):
            atomic_write_parquet(tmp / name, rows.iloc[i * shard_rows:(i + 1) * shard_rows])
        datasets.Dataset.from_pandas(rows, preserve_index=False).save_to_disk(str(tmp / "hf"))
        atomic_write_json(tmp / "counts.json", record)
    return record
