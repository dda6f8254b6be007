"""Show Python warnings to CLI users as `warning: ...` lines (the causalmix logger, core/logs.py)."""
from __future__ import annotations

import contextlib
import warnings
from typing import Iterator

from causalmix.core.logs import get_logger

log = get_logger(__name__)


@contextlib.contextmanager
def warnings_to_stderr() -> Iterator[None]:
    """Every UserWarning (econml's, sklearn's, ours) as a log line when it is raised, so a
    long command shows it at once; other categories go where they went before."""
    with warnings.catch_warnings():
        warnings.simplefilter("always", UserWarning)
        show = warnings.showwarning

        def log_user_warnings(message, category, filename, lineno, file=None, line=None):
            if issubclass(category, UserWarning):
                log.warning("%s", message)
            else:
                show(message, category, filename, lineno, file, line)

        warnings.showwarning = log_user_warnings
        yield
