"""Write-then-rename helpers so that no reader ever sees a half-written artifact."""
from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator

from causalmix.core.errors import UserError

if TYPE_CHECKING:
    import pyarrow as pa


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_sibling(path)
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, default=str) + "\n")


def atomic_write_parquet(path: str | os.PathLike, table: "pa.Table | pandas.DataFrame",
                         metadata: dict[str, str] | None = None) -> Path:
    """Write a Parquet file atomically; `metadata` lands in the schema's key/value metadata."""
    import pyarrow as pa  # deferred: heavy import (the light commands write no Parquet)
    import pyarrow.parquet as pq

    if not isinstance(table, pa.Table):
        table = pa.Table.from_pandas(table, preserve_index=False)
    if metadata:
        merged = dict(table.schema.metadata or {})
        merged.update({k.encode(): v.encode() for k, v in metadata.items()})
        table = table.replace_schema_metadata(merged)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_sibling(path, ".parquet")
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


# Temporary names carry the writer's host and pid, so that a later writer can tell the leftovers
# of a killed write (same host, pid gone) from a write still in progress, and remove them.
_HOST = socket.gethostname().replace(".", "_")
# Leftovers from another host (a shared file system) are removed only once this old.
STALE_FOREIGN_S = 24 * 3600


def _tmp_sibling(path: Path, suffix: str = "") -> Path:
    return _new_sibling(path, f".tmp{suffix}")


def _new_sibling(path: Path, suffix: str, *, directory: bool = False) -> Path:
    """A new, uniquely named file (or folder) beside `path`, created with the user's umask:
    mkstemp's 0600 and mkdtemp's 0700 would make every artifact renamed from it private to
    its writer, and a fixed chmod would override a umask that asks for less."""
    for _ in range(100):
        name = path.parent / f"{_tmp_prefix(path)}{secrets.token_hex(4)}{suffix}"
        try:
            if directory:
                os.mkdir(name, 0o777)
            else:
                os.close(os.open(name, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            return name
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {path}")


def _tmp_prefix(path: Path) -> str:
    return f".{path.name}.{_HOST}.{os.getpid()}."


def temporary_sibling_dir(path: str | os.PathLike) -> Path:
    """A new temporary directory beside `path`, named so that `clean_stale_temporaries(path)`
    removes it if this process is killed before it is done with it (the caller removes it
    otherwise)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temporaries(path)
    return _new_sibling(path, ".tmp", directory=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def clean_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Remove what killed writes of `path` left beside it (`.NAME.HOST.PID.*.tmp*` / `.old`
    whose writer on this host is gone, or from another host and a day old); returns them."""
    path = Path(path)
    removed = []
    if not path.parent.is_dir():
        return removed
    pattern = re.compile(r"^\." + re.escape(path.name) + r"\.(?P<host>[^.]+)\.(?P<pid>\d+)\..*\.(tmp|old)")
    for entry in path.parent.iterdir():
        m = pattern.match(entry.name)
        if not m:
            continue
        if m["host"] == _HOST:
            stale = int(m["pid"]) != os.getpid() and not _pid_alive(int(m["pid"]))
        else:
            try:
                stale = time.time() - entry.lstat().st_mtime > STALE_FOREIGN_S
            except OSError:
                continue
        if not stale:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed


def check_not_input(path: str | os.PathLike, inputs: Iterable[str | os.PathLike | None], *,
                    flag: str = "--out", kind: str = "output") -> Path:
    """The one rule for every path a command writes: it may not be, hold, or lie inside any of
    the command's `inputs` (None entries are skipped), whatever the spelling (links, `..`).
    Every command checks its outputs with this (directly, or through `check_output_path` /
    `check_output_file`) before it reads anything; returns `path` resolved."""
    resolved = Path(path).resolve()
    for item in inputs:
        if item is None:
            continue
        source = Path(item).resolve()
        if source == resolved:
            why = f"it is the input {item}, which writing the {kind} there would replace"
        elif resolved in source.parents:
            why = f"it holds the input {item}, which writing the {kind} there would delete"
        elif source in resolved.parents:
            why = f"it lies inside the input {item}, which writing the {kind} there would change"
        else:
            continue
        raise UserError(f"{flag} {path}: {why}; choose another output")
    return resolved


def check_output_file(path: str | os.PathLike, *, kind: str, inputs: Iterable[str | os.PathLike | None] = (),
                      flag: str = "--out", suffix: str | None = None) -> Path:
    """Refuse a file output that would replace an input (`check_not_input`), is a folder, sits
    under a path that is a file, or (with `suffix`) has another extension; returns it resolved."""
    text = str(path)
    if suffix is not None and not text.endswith(suffix):
        raise UserError(f"{flag} {path}: write the {kind} as {suffix}")
    resolved = check_not_input(path, inputs, flag=flag, kind=kind)
    if resolved.is_dir():
        raise UserError(f"{flag} {path}: is a folder; name the {kind} file to write (e.g. {flag} "
                        f"{Path(text) / ('out' + (suffix or ''))})")
    _check_parent_folders(resolved, path, flag)
    return resolved


def _check_parent_folders(resolved: Path, given, flag: str) -> None:
    """The nearest existing parent of an output must be a folder (not `file.txt` of `file.txt/sub`)."""
    for parent in resolved.parents:
        if os.path.lexists(parent):
            if not parent.is_dir():
                raise UserError(f"{flag} {given}: {parent} is a file, not a folder; choose another path")
            return


def check_output_path(path: str | os.PathLike, *, kind: str, markers: tuple[str, ...],
                      overwrite: bool = False, inputs: Iterable[str | os.PathLike | None] = (),
                      flag: str = "--out") -> Path:
    """Refuse an output directory whose replacement would lose data; returns it resolved.

    `markers`: the metadata file(s) an artifact of this `kind` holds; an existing `path`
    without them (another kind of folder, a file) is replaced only with `overwrite`. Whatever
    `overwrite` says, `path` may not be the current directory or one above it, nor hold
    (or be) any of `inputs`: replacing it would delete what is being read.
    """
    given = Path(path)
    if str(path) in ("", ".", "..") or given.name in ("", ".", ".."):
        raise UserError(f"{flag} {str(path)!r}: name a folder for the {kind} (e.g. {flag} ./{kind.split()[0]}); "
                        "it is replaced whole, so it cannot be the current or a parent directory")
    resolved = given.resolve()
    cwd = Path.cwd().resolve()
    if resolved == cwd or resolved in cwd.parents:
        raise UserError(f"{flag} {path}: it is the current directory or one above it; name a new "
                        f"folder for the {kind} (it is replaced whole)")
    check_not_input(path, inputs, flag=flag, kind=kind)
    _check_parent_folders(resolved, path, flag)
    if os.path.lexists(resolved) and not overwrite:
        if not resolved.is_dir() or resolved.is_symlink():
            raise UserError(f"{flag} {path}: exists and is not a folder; remove it or pass --overwrite "
                            "to replace it")
        missing = [m for m in markers if not (resolved / m).is_file()]
        if missing:
            raise UserError(f"{flag} {path}: exists and is not a {kind} (no {', '.join(missing)}); "
                            "writing there would replace everything in it. Choose another folder, "
                            "or pass --overwrite to replace it")
    return resolved


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike, *, kind: str = "output folder",
                     markers: tuple[str, ...] = (), overwrite: bool = False,
                     inputs: Iterable[str | os.PathLike | None] = (),
                     flag: str = "--out") -> Iterator[Path]:
    """Yield a temporary sibling directory; on success it replaces `path` whole.

    `path` is first checked by `check_output_path` (an existing folder must be a `kind`
    artifact holding `markers` unless `overwrite`; inputs are never inside it), and what
    killed earlier writes left beside it is removed. On an exception the temporary
    directory is removed and `path` is untouched.
    """
    path = check_output_path(path, kind=kind, markers=markers, overwrite=overwrite,
                             inputs=inputs, flag=flag)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temporaries(path)
    tmp = _new_sibling(path, ".tmp", directory=True)
    try:
        yield tmp
        if os.path.lexists(path):
            old = _new_sibling(path, ".old", directory=True)
            os.replace(path, old / "x")
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
