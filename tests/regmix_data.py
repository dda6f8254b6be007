"""Where RegMix's released CSVs are: tests/data/regmix/ (copied with their MIT licence so a fresh
clone has them), else ../shared/data/regmix/ beside the repository."""
from pathlib import Path

import pytest

_CANDIDATES = [Path(__file__).resolve().parent / "data" / "regmix",
               Path(__file__).resolve().parents[1].parent / "shared" / "data" / "regmix",
               Path("/work/shared/data/regmix")]


def regmix_dir() -> Path:
    for path in _CANDIDATES:
        if (path / "train_mixture_1m.csv").is_file():
            return path
    pytest.skip(f"RegMix's released CSVs not found in {[str(p) for p in _CANDIDATES]}")
