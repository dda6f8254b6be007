"""Materialise a pool manifest as Parquet shards with stable content-hash `doc_id`s.

Layout of a built pool directory:
  manifest.yaml                     the manifest it was built from
  shards/<domain>/shard-NNNNN.parquet   doc_id, domain, prompt, response, is_text, source
  dev/<domain>.parquet              held-out dev set (when the manifest gives one)
  pool.json                         index: shards, counts, dev metrics, provenance

Shards never mix source files, so a source file's quality stays visible in its
shards. `pool.json` is written last: a directory without it is not a pool.
"""
from __future__ import annotations

import glob as globlib
import hashlib
import json
import os
import shutil
from collections import Counter
from pathlib import Path
from typing import Iterator

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from causalmix.core.atomic import (atomic_write_json, atomic_write_parquet, atomic_write_text, check_not_input,
                         temporary_sibling_dir)
from causalmix.core.errors import UserError
from causalmix.core.provenance import provenance, sha256_file
from causalmix.datapool.layout import POOL_INDEX, POOL_PARTS
from causalmix.datapool.manifest import PoolManifest, SourceSpec, load_manifest

# Deferred on purpose, so that importing this module does not load datasets: the function-local
# imports (of these libraries or of this project's modules that import them).

DOC_COLUMNS = ["doc_id", "domain", "prompt", "response", "is_text", "source"]


def doc_id(domain: str, prompt: str, response: str, is_text: bool, occurrence: int) -> str:
    """Content hash; `occurrence` separates exact duplicates within a domain."""
    key = "\x1f".join([domain, str(int(is_text)), prompt, response, str(occurrence)])
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:24]


def _iter_jsonl(path: Path, needed: list[str], where: str, chunk: int) -> Iterator[pd.DataFrame]:
    """The file's rows in frames of `chunk` rows (the last may be shorter), read as they go."""
    rows, first = [], 0
    # Bytes decoded line by line, so that a non-UTF-8 file is reported with its line number.
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise UserError(f"{where}: {path} line {lineno} is not UTF-8 text (byte {exc.start} of "
                                f"the line is {raw[exc.start:exc.start + 1]!r}); re-encode the file "
                                "as UTF-8") from None
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UserError(f"{where}: {path} line {lineno} is not valid JSON: {exc}") from None
            if not isinstance(obj, dict):
                raise UserError(f"{where}: {path} line {lineno} is not a JSON object")
            missing = [c for c in needed if c not in obj]
            if missing:
                raise UserError(f"{where}.columns: {path} line {lineno} has no column(s) {missing}")
            _check_text(obj, needed, f"{where}: {path} line {lineno}")
            rows.append({c: obj[c] for c in needed})
            if len(rows) == chunk:
                yield pd.DataFrame(rows, columns=needed, index=pd.RangeIndex(first, first + chunk))
                rows, first = [], first + chunk
    if rows or not first:
        yield pd.DataFrame(rows, columns=needed, index=pd.RangeIndex(first, first + len(rows)))


def _check_text(row, columns: list[str], where: str) -> None:
    """Documents are text: a number, list or null in a text column is refused, not turned into
    a string ('12345.0', "['a', 'b']", '') that the pool would then hold as a document."""
    for column in columns:
        value = row[column]
        if not isinstance(value, str):
            raise UserError(f"{where}: column {column!r} holds {str(value)[:60]!r} "
                            f"({'null' if value is None else type(value).__name__}), not text; "
                            "documents must be strings")


def _check_text_columns(frame: pd.DataFrame, columns: list[str], where: str) -> None:
    for column in columns:
        bad = frame.index[~frame[column].map(lambda v: isinstance(v, str))]
        if len(bad):
            _check_text(frame.loc[bad[0]], [column], f"{where} row {int(bad[0]) + 1}")


def _iter_parquet(path: Path, needed: list[str], where: str, chunk: int) -> Iterator[pd.DataFrame]:
    """The file's rows in frames of `chunk` rows (the last may be shorter), a batch read at a time."""
    try:
        parquet = pq.ParquetFile(path)
        names = parquet.schema_arrow.names
    except Exception as exc:  # pyarrow raises several types for a broken file
        raise UserError(f"{where}: cannot read Parquet file {path}: {exc}") from None
    missing = [c for c in needed if c not in names]
    if missing:
        raise UserError(f"{where}.columns: {path} has no column(s) {missing} (it has {names})")
    batches = parquet.iter_batches(batch_size=chunk, columns=needed)
    first = 0
    for table in _rechunk(batches, chunk, f"{where}: cannot read columns {needed} of Parquet file {path}"):
        frame = table.to_pandas().set_axis(pd.RangeIndex(first, first + table.num_rows))
        _check_text_columns(frame, needed, f"{where}: {path}")
        first += table.num_rows
        yield frame
    if not first:
        yield pd.DataFrame(columns=needed)


def _rechunk(batches, size: int, error: str) -> Iterator[pa.Table]:
    """Arrow record batches (which a row group's end may cut short) regrouped into tables of
    exactly `size` rows, the last one shorter."""
    held, n = [], 0
    try:
        for batch in batches:
            held.append(batch)
            n += batch.num_rows
            while n >= size:
                table = pa.Table.from_batches(held)
                yield table.slice(0, size)
                rest = table.slice(size)
                held, n = rest.to_batches(), rest.num_rows
    except (pa.ArrowException, OSError) as exc:  # e.g. a string column that is not valid UTF-8
        raise UserError(f"{error}: {exc}") from None
    if n:
        yield pa.Table.from_batches(held)


def _resolve_files(source: SourceSpec, base_dir: Path, where: str) -> list[Path]:
    pattern = source.path if os.path.isabs(source.path) else str(base_dir / source.path)
    if not globlib.has_magic(pattern):
        if not Path(pattern).is_file():
            raise UserError(f"{where}.path: file not found: {pattern}")
        return [Path(pattern)]
    files = _glob_files(pattern)
    if not files:
        raise UserError(f"{where}.path: glob matched no files: {pattern}")
    return files


def _glob_files(pattern: str) -> list[Path]:
    """The files `pattern` matches, each file once: `**` does not descend into symlinked folders
    (pathlib's rule; glob.glob's would follow a link loop 40 levels deep, or exponentially with
    two), files reached twice under other names count once, and hidden entries are matched
    only by a pattern that names them (as glob.glob)."""
    parts = Path(pattern).parts
    fixed = next((i for i, part in enumerate(parts) if globlib.has_magic(part)), len(parts))
    base, rest = Path(*parts[:fixed]), "/".join(parts[fixed:])
    hidden_ok = any(part.startswith(".") for part in parts[fixed:])
    seen, files = set(), []
    for path in sorted(base.glob(rest)):
        relative = path.relative_to(base).parts
        if (not hidden_ok and any(p.startswith(".") for p in relative)) or not path.is_file():
            continue
        real = os.path.realpath(path)
        if real not in seen:
            seen.add(real)
            files.append(path)
    return files


def _normalise(frame: pd.DataFrame, source: SourceSpec, origin: str) -> pd.DataFrame:
    def text(col: str) -> pd.Series:  # type-checked on reading (_check_text)
        return frame[source.columns[col]]

    if source.is_text:
        out = pd.DataFrame({"prompt": "", "response": text("text"), "is_text": True}, index=frame.index)
    else:
        out = pd.DataFrame({"prompt": text("prompt"), "response": text("response"),
                            "is_text": False}, index=frame.index)
    out["source"] = origin
    return out.reset_index(drop=True)


def read_source(source: SourceSpec, base_dir: Path, where: str) -> list[pd.DataFrame]:
    """One normalised frame (prompt, response, is_text, source) per source file or dataset."""
    return [pd.concat(list(chunks), ignore_index=True)
            for chunks in iter_source(source, base_dir, where, chunk=2**62)]


def iter_source(source: SourceSpec, base_dir: Path, where: str, *, chunk: int) -> Iterator[Iterator[pd.DataFrame]]:
    """Per source file or dataset, its normalised frames (prompt, response, is_text, source) of
    `chunk` rows each (the last shorter), read as they are consumed: memory bounded by a chunk."""
    needed = list(source.columns.values())
    if source.hf is not None:
        frame = _read_hf(source, needed, where)
        yield (_normalise(frame.iloc[i:i + chunk], source, f"hf:{source.hf.name}")
               for i in range(0, max(1, len(frame)), chunk))
        return
    for path in _resolve_files(source, base_dir, where):
        fmt = source.format or ("parquet" if path.suffix == ".parquet" else "jsonl")
        reader = _iter_parquet if fmt == "parquet" else _iter_jsonl
        rel = os.path.relpath(path, base_dir)
        yield (_normalise(frame, source, rel) for frame in reader(path, needed, where, chunk))


def _read_hf(source: SourceSpec, needed: list[str], where: str) -> pd.DataFrame:
    import datasets

    hf = source.hf
    try:
        ds = datasets.load_dataset(hf.name, hf.config, split=hf.split, data_files=hf.data_files)
    except Exception as exc:  # datasets raises many types (offline, missing config, ...)
        raise UserError(f"{where}.hf: cannot load dataset {hf.name!r}: {exc}") from None
    missing = [c for c in needed if c not in ds.column_names]
    if missing:
        raise UserError(f"{where}.columns: dataset {hf.name!r} has no column(s) {missing} "
                        f"(it has {ds.column_names})")
    frame = ds.select_columns(needed).to_pandas()
    _check_text_columns(frame, needed, f"{where}: dataset {hf.name!r}")
    return frame


def _assign_doc_ids(frame: pd.DataFrame, domain: str, seen: Counter) -> pd.Series:
    """Each document's id, counting its exact duplicates in `seen` (over the whole domain), keyed
    by a 16-byte digest of the document rather than its text, so that the count of a streamed
    build holds no documents."""
    ids = []
    for prompt, response, is_text in zip(frame["prompt"], frame["response"], frame["is_text"]):
        key = hashlib.blake2b(f"{int(is_text)}:{len(prompt)}:{prompt}{response}".encode("utf-8"),
                              digest_size=16).digest()
        ids.append(doc_id(domain, prompt, response, bool(is_text), seen[key]))
        seen[key] += 1
    return pd.Series(ids, index=frame.index)


def _shard_domain(manifest: PoolManifest, domain, tmp: Path) -> list[dict]:
    where = f"manifest: domain {domain.name!r}"
    seen: Counter = Counter()
    shards = []
    for j, source in enumerate(domain.sources):
        # a shard's worth read, written, dropped: memory bounded by a shard, not a source file
        for chunks in iter_source(source, manifest.base_dir, f"{where}: sources[{j}]", chunk=manifest.shard_size):
            for frame in chunks:
                if frame.empty:
                    continue
                frame.insert(0, "doc_id", _assign_doc_ids(frame, domain.name, seen))
                frame.insert(1, "domain", domain.name)
                rel = f"shards/{domain.name}/shard-{len(shards):05d}.parquet"
                atomic_write_parquet(tmp / rel, frame[DOC_COLUMNS])
                shards.append({"path": rel, "n_docs": len(frame), "source": frame["source"].iloc[0],
                               "n_chars": int((frame["prompt"].str.len() + frame["response"].str.len()).sum())})
    if not shards:
        raise UserError(f"{where}: sources hold no documents (the domain is empty)")
    return shards


def check_exact_match_references(frame: pd.DataFrame, pattern, where: str) -> None:
    """Refuse an exact-match dev set with a reference whose answer the pattern cannot find: with
    no reference answer there is nothing to match, and such rows used to count as correct."""
    missing = [i for i, ref in enumerate(frame["response"]) if pattern.extract(ref) is None]
    if missing:
        shown = ", ".join(f"row {i} ({frame['response'].iloc[i][-60:]!r})" for i in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise UserError(f"{where}.answer: {len(missing)} of {len(frame)} references have no answer "
                        f"for pattern {pattern.to_json()!r}: {shown}{more}; give the matching "
                        "`answer` pattern (the_answer_is, gsm8k, auto or {regex: ...}) or fix the rows")


def _build_dev(manifest: PoolManifest, domain, tmp: Path) -> dict | None:
    if domain.dev is None:
        return None
    where = f"manifest: domain {domain.name!r}: dev"
    frames = read_source(domain.dev, manifest.base_dir, where)
    frame = pd.concat(frames, ignore_index=True)
    if frame.empty:
        raise UserError(f"{where}: the dev set is empty")
    if domain.dev.metric == "exact_match":
        check_exact_match_references(frame, domain.dev.answer, where)
    frame.insert(0, "doc_id", _assign_doc_ids(frame, domain.name, Counter()))
    frame.insert(1, "domain", domain.name)
    rel = f"dev/{domain.name}.parquet"
    atomic_write_parquet(tmp / rel, frame[DOC_COLUMNS])
    info = {"path": rel, "metric": domain.dev.metric, "n_docs": len(frame)}
    if domain.dev.answer is not None:
        info["answer"] = domain.dev.answer.to_json()
    return info


def _input_files(manifest: PoolManifest) -> list[Path]:
    sources = [(s, f"domain {d.name!r}: sources[{j}]") for d in manifest.domains
               for j, s in enumerate(d.sources)]
    sources += [(d.dev, f"domain {d.name!r}: dev") for d in manifest.domains if d.dev is not None]
    return [path.resolve() for source, where in sources if source.path is not None
            for path in _resolve_files(source, manifest.base_dir, f"manifest: {where}")]


def pool_parts(path: str | Path) -> list[Path]:
    """What a command that reads the pool at `path` (a built pool's folder, or its manifest)
    reads: the manifest and the pool's parts, not the whole folder, which may also hold a
    project's other files (features, runs) beside the pool."""
    path = Path(path)
    root = path.parent if path.is_file() else path
    return ([path] if path.is_file() else []) + [root / part for part in (*POOL_PARTS, "manifest.yaml")]


def _check_replaceable(out_dir: Path, manifest_path: Path, manifest: PoolManifest, overwrite: bool) -> None:
    """The build replaces OUT/shards, OUT/dev, OUT/pool.json (and OUT/manifest.yaml, building
    elsewhere than the manifest's folder): refuse when one is or holds an input (the manifest,
    a source or dev file), or (without `overwrite`) when OUT is not a built pool."""
    if os.path.lexists(out_dir) and not out_dir.is_dir():
        raise UserError(f"--out {out_dir}: exists and is not a folder; the pool is built into a folder")
    inputs = [manifest_path, *_input_files(manifest)]
    written = [out_dir / part for part in POOL_PARTS]
    if manifest_path.resolve().parent != out_dir.resolve():
        written.append(out_dir / "manifest.yaml")
    for target in written:
        check_not_input(target, inputs, flag="pool build --out", kind="pool")
    targets = [(out_dir / part).resolve() for part in ("shards", "dev")]
    existing = [t for t in targets if os.path.lexists(t)]
    if existing and not overwrite and not (out_dir / POOL_INDEX).is_file():
        raise UserError(f"pool build: {out_dir} is not a built pool (no {POOL_INDEX}) but has "
                        f"{[t.name for t in existing]}, which the build would replace; choose another "
                        "--out, or pass --overwrite")


def build_pool(manifest_path: str | Path, out_dir: str | Path | None = None, *,
               overwrite: bool = False) -> Path:
    """Build the pool of `manifest_path` into `out_dir` (default: the manifest's folder)."""
    manifest_path = Path(manifest_path)
    manifest = load_manifest(manifest_path)
    out_dir = Path(out_dir) if out_dir is not None else manifest_path.parent
    _check_replaceable(out_dir, manifest_path, manifest, overwrite)
    created = _missing_folders(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # Named for this process, so that the next build removes what a killed one left here.
    tmp = temporary_sibling_dir(out_dir / "pool-build")
    try:
        index = {"name": manifest.name, "shard_size": manifest.shard_size, "domains": {}}
        for domain in manifest.domains:
            shards = _shard_domain(manifest, domain, tmp)
            index["domains"][domain.name] = {
                "n_docs": sum(s["n_docs"] for s in shards),
                "n_chars": sum(s["n_chars"] for s in shards),
                "shards": shards,
                "dev": _build_dev(manifest, domain, tmp),
            }
        if manifest.harness:
            index["harness"] = [spec.to_json(out_dir.resolve()) for spec in manifest.harness]
        index["manifest_sha256"] = sha256_file(manifest_path)
        index["provenance"] = provenance(None, manifest=manifest_path.name)
        (out_dir / POOL_INDEX).unlink(missing_ok=True)
        for part in ("shards", "dev"):
            target = out_dir / part
            if target.exists():
                shutil.rmtree(target)
            if (tmp / part).exists():
                os.replace(tmp / part, target)
        if manifest_path.resolve().parent != out_dir.resolve():
            atomic_write_text(out_dir / "manifest.yaml", manifest_path.read_text(encoding="utf-8"))
        atomic_write_json(out_dir / POOL_INDEX, index)
    except BaseException:
        # a failed build leaves no folder it made (not even an empty one)
        for folder in created:
            shutil.rmtree(folder, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def _missing_folders(path: Path) -> list[Path]:
    """The outermost of `path` and its parents that does not exist yet (none when `path` does):
    what removing undoes `mkdir(parents=True)`."""
    missing = [p for p in (path.resolve(), *path.resolve().parents) if not os.path.lexists(p)]
    return missing[-1:]
