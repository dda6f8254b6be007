"""Show Python warnings to CLI users as plain `warning: ...` lines on stderr."""
from __future__ import annotations

import contextlib
import sys
import warnings
from typing import Iterator


@contextlib.contextmanager
def warnings_to_stderr() -> Iterator[None]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        try:
            yield
        finally:
            for w in caught:
                if issubclass(w.category, UserWarning):
                    print(f"warning: {w.message}", file=sys.stderr)
