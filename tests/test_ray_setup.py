"""Where a stage's Ray comes from, and what a child process needs to import the project."""
import os

import pytest

from causalmix.core.ray_setup import REPO_ROOT, is_local, repo_pythonpath


@pytest.mark.parametrize("address, env, local", [
    (None, None, True), ("local", None, True), (None, "local", True),
    ("ray://head:10001", None, False), (None, "head:6379", False), ("local", "head:6379", True),
    ("head:6379", "local", False)])
def test_is_local_follows_the_address_then_ray_address(monkeypatch, address, env, local):
    if env is None:
        monkeypatch.delenv("RAY_ADDRESS", raising=False)
    else:
        monkeypatch.setenv("RAY_ADDRESS", env)
    assert is_local(address) is local


def test_repo_pythonpath_puts_the_repository_first_and_keeps_the_rest_once(monkeypatch, tmp_path):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(["/a", str(REPO_ROOT), "", "/b", str(tmp_path)]))
    assert repo_pythonpath(tmp_path).split(os.pathsep) == [str(REPO_ROOT), str(tmp_path), "/a", "/b"]
    monkeypatch.delenv("PYTHONPATH")
    assert repo_pythonpath() == str(REPO_ROOT)
