"""Landed validation runs and the resume check over them (validation/runs.py, no Ray)."""
import pytest

from causalmix.validation.runs import LandedRuns, settings_differences
from causalmix.core.errors import UserError

SETTINGS = {"target_model": "abc", "pool_shards": {"code/shard-0": "h1"}, "proxy": {"budget": 16}}
EQUAL = {"a": 0.5, "b": 0.5}


def test_a_resume_keeps_matching_runs_and_refuses_changed_ones(tmp_path):
    landed = LandedRuns(tmp_path)
    landed.land("equal", 0, EQUAL, SETTINGS, {"run_id": "equal-seed0", "y": 1.0})
    landed.land("equal", 2, EQUAL, SETTINGS, {"run_id": "equal-seed2", "y": 2.0})
    landed.land("odd/name", 0, {"a": 1.0, "b": 0.0}, SETTINGS, {"run_id": "x", "y": 3.0})
    # seed 2 and the candidate no longer asked for are left out, not refused
    assert landed.reusable(SETTINGS, {"equal": EQUAL}, seeds=2) == {("equal", 0): {"run_id": "equal-seed0", "y": 1.0}}
    with pytest.raises(UserError, match="equal-seed0: trained on"):
        landed.reusable(SETTINGS, {"equal": {"a": 0.6, "b": 0.4}}, seeds=1)
    other_pool = {**SETTINGS, "pool_shards": {"code/shard-0": "h2"}}
    with pytest.raises(UserError, match=r"pool_shards.code/shard-0: landed 'h1', now 'h2'"):
        landed.reusable(other_pool, {"equal": EQUAL}, seeds=1)
    (landed.dir / "broken.json").write_text("{not json")
    with pytest.raises(UserError, match="broken.json is unreadable"):
        landed.records()


def test_settings_differences_name_nested_fields():
    assert settings_differences({"proxy": {"budget": 16, "lr": 1}}, {"proxy": {"budget": 20, "lr": 1}}) == [
        "proxy.budget: landed 16, now 20"]
    assert settings_differences(SETTINGS, SETTINGS) == []
