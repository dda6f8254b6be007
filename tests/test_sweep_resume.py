"""A resumed sweep runs with the callbacks and the progress setting of the call that resumes it,
not with those Tune pickled when the sweep started (Tuner.restore takes no RunConfig; the
driver sets the restored RunConfig's callbacks, actors/sweep/driver.py: restore_tuner). Synthetic
trials (no training) on the real driver and Tune."""
import dataclasses
import json
import re

import pytest
from ray.tune import Callback

import sweep_helpers
from causalmix.actors.sweep.driver import run_sweep
from causalmix.design.sweep_config import SweepConfig
from causalmix.design.trial_protocol import ROW_KEY
from causalmix.proxy.config import ProxyConfig
from sweep_helpers import synthetic_features, synthetic_trial
from test_sweep import InterruptOnce

pytestmark = pytest.mark.ray

BAR = re.compile(r"sweep:\s+\d+%")
"""The progress bar's line on stderr (tqdm, desc 'sweep')."""


class Landed(Callback):
    """The run_ids whose final result this callback saw."""

    def __init__(self):
        self.run_ids = []

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if ROW_KEY in result:
            self.run_ids.append(json.loads(result[ROW_KEY])["run_id"])


def test_resume_honours_this_calls_callbacks_and_no_progress(ray_local, tmp_path, capfd):
    from ray import cloudpickle

    from causalmix.datapool.demo import DemoPoolSpec, write_demo_pool

    cloudpickle.register_pickle_by_value(sweep_helpers)  # the workers cannot import tests/
    pool = write_demo_pool(tmp_path / "pools", "demo-small",
                           DemoPoolSpec(small_shards=2, small_docs_per_shard=8, dev_docs=4))
    cfg = SweepConfig(pool=str(pool), features=str(synthetic_features(pool, tmp_path / "f.parquet")),
                      out=str(tmp_path / "sweep"), runs=4, max_concurrent=1, stream_fit=False,
                      proxy=ProxyConfig(model="unused: synthetic trials train nothing"), progress=True)
    first_landed = Landed()
    first = run_sweep(cfg, trainable=synthetic_trial, trainable_kwargs={"scramble": False},
                      callbacks=[InterruptOnce(str(tmp_path / "marker"), after=1), first_landed])
    assert first["status"] == "interrupted" and 1 <= first["runs_done"] < 4
    assert BAR.search(capfd.readouterr().err)  # the first call showed its bar

    second_landed = Landed()
    second = run_sweep(dataclasses.replace(cfg, resume=True, progress=False), trainable=synthetic_trial,
                       trainable_kwargs={"scramble": False}, callbacks=[second_landed])
    assert second["status"] == "ok" and second["runs_done"] == 4
    assert not BAR.search(capfd.readouterr().err)  # --no-progress of the resume holds
    # this call's callback saw every run that landed after the resume; the first call's saw none
    assert set(first_landed.run_ids) | set(second_landed.run_ids) == {f"run-{i:05d}" for i in range(4)}
    assert len(first_landed.run_ids) == first["runs_done"]
