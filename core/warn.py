"""Show Python warnings to CLI users as `warning: ...` lines (the causalmix logger, core/logs.py)."""
from __future__ import annotations

import contextlib
import warnings
from typing import Iterator
from core.logs import get_logger

log = get_logger(__name__)


@contextlib.contextmanager
def warnings_to_stderr() -> Iterator[None]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        try:
            yield
        finally:
            for w in caught:
                if issubclass(w.category, UserWarning):
                    log.warning("%s", w.message)
