"""The exit status of every `launch.py` command, and the one-line message of a failure.

  0    done
  1    some runs of a long job failed (the others were kept; a rerun retries the failed ones)
  2    bad input or usage: a file, field, flag or value, named in the message
  3    the system refused: disk full, permission denied, a path that cannot be written, a
       port in use (nothing was replaced: every output is written aside, then renamed)
  4    the Ray cluster the command stood on went away (serve)
  70   an unexpected error (a bug): one line here, the traceback with --log-level debug
  130  interrupted (Ctrl-C); 143 terminated (SIGTERM)

Documented for users in docs/errors.md.
"""
from __future__ import annotations

import errno
import re

from causalmix.core.errors import ClusterLost, RunsFailed, SweepIncomplete, UserError

OK, RUNS_FAILED, BAD_INPUT, SYSTEM, CLUSTER_LOST, INTERNAL = 0, 1, 2, 3, 4, 70
INTERRUPTED, TERMINATED = 130, 143

_HINTS = {
    errno.ENOSPC: "free some space (or write elsewhere) and rerun; outputs are replaced only once whole",
    errno.EDQUOT: "free some space (or write elsewhere) and rerun; outputs are replaced only once whole",
    errno.EACCES: "check the permissions of that path or choose another",
    errno.EPERM: "check the permissions of that path or choose another",
    errno.EROFS: "that file system is read-only; choose another path",
    errno.ENOTDIR: "a part of that path is a file, not a folder; choose another path",
    errno.EISDIR: "that path is a folder where a file is expected; choose another path",
    errno.EEXIST: "something is already there; choose another path",
    errno.ENOENT: "a folder on that path does not exist (or cannot be created there)",
    errno.EADDRINUSE: "another process listens on that port; stop it or choose another --port",
}


# core/atomic.py writes `.NAME.HOST.PID.RANDOM.tmp[SUFFIX]` beside NAME, then renames it: a
# failed write names NAME, the path the user gave.
_TEMPORARY = re.compile(r"(^|/)\.(?P<name>[^/]+?)\.[^./]+\.\d+\.[^/]*\.tmp[^/]*$")


def _os_message(exc: OSError) -> str:
    where = " -> ".join(_TEMPORARY.sub(r"\1\g<name>", str(f)) for f in (exc.filename, exc.filename2)
                        if f is not None)
    what = exc.strerror or str(exc)
    hint = _HINTS.get(exc.errno)
    return "".join([what, f": {where}" if where else "", f"; {hint}" if hint else ""])


def failure(exc: BaseException) -> tuple[int, str]:
    """The exit status and the one-line message for an exception a command raised."""
    if isinstance(exc, UserError):
        return BAD_INPUT, str(exc)
    if isinstance(exc, (RunsFailed, SweepIncomplete)):
        return RUNS_FAILED, str(exc)
    if isinstance(exc, ClusterLost):
        return CLUSTER_LOST, str(exc)
    if isinstance(exc, OSError):
        return SYSTEM, _os_message(exc)
    if isinstance(exc, MemoryError):
        return SYSTEM, "out of memory; give the command less input at once, or more memory"
    if isinstance(exc, RecursionError):
        return BAD_INPUT, "an input is nested too deeply to read"
    text = " ".join(str(exc).split())[:300]
    return INTERNAL, (f"unexpected {type(exc).__name__}: {text} (a bug, please report it; rerun with "
                      "--log-level debug for the traceback)")
