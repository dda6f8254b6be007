"""The test suite's own safety net (issue 18, case 11): every test runs under a time limit."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_a_hanging_test_fails_at_the_per_test_limit(tmp_path):
    """Under the project's pytest settings (pyproject.toml, with pytest-timeout from the test
    extras), a test that blocks fails at the limit (lowered here to 2 s) instead of hanging."""
    (tmp_path / "test_hangs.py").write_text(textwrap.dedent("""
        import threading

        def test_hangs():
            threading.Event().wait()  # what a hung Ray start looks like from the test
    """))
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          "-c", str(REPO / "pyproject.toml"), "--rootdir", str(tmp_path), "-o", "timeout=2",
                          str(tmp_path / "test_hangs.py")], capture_output=True, text=True, timeout=120)
    assert run.returncode == 1 and "Timeout (>2.0s)" in run.stdout + run.stderr
