"""Plumbing: typed config loading and atomic writes."""
from __future__ import annotations

from dataclasses import dataclass

import pytest

from causalmix.core.atomic import atomic_directory, atomic_write_text
from causalmix.core.config import load_config
from causalmix.core.errors import UserError


@dataclass(frozen=True)
class _Cfg:
    rate: float = 0.5
    """A rate in [0, 1]."""
    name: str = "x"
    """A name."""

    def __post_init__(self):
        if not 0 <= self.rate <= 1:
            raise ValueError(f"rate must lie in [0, 1], got {self.rate}")


def test_yaml_then_flags(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("rate: 1\nname: y\n")
    cfg = load_config(_Cfg, path, {"name": "z", "unrelated_flag": 3, "rate": None})
    assert cfg == _Cfg(rate=1.0, name="z")


def test_unknown_key_and_bad_value_name_the_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("rat: 1\n")
    with pytest.raises(UserError, match=r"c.yaml.*unknown key.*'rat'"):
        load_config(_Cfg, path)
    path.write_text("rate: 3\n")
    with pytest.raises(UserError, match=r"c.yaml.*rate must lie"):
        load_config(_Cfg, path)


def test_atomic_directory_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "art"
    with pytest.raises(RuntimeError):
        with atomic_directory(target) as tmp:
            atomic_write_text(tmp / "half.txt", "x")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    with atomic_directory(target) as tmp:
        atomic_write_text(tmp / "whole.txt", "y")
    with atomic_directory(target) as tmp:
        atomic_write_text(tmp / "new.txt", "z")
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art"]
