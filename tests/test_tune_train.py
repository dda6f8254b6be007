"""How a sweep places Ray Train trials (actors/sweep/tune_train.py), without Ray."""
import pytest

from causalmix.design.sweep_config import SweepConfig
from causalmix.design.sweep_plan import DRIVER_MEMORY, train_kwargs, trial_placement, trial_resources


def test_one_process_trials_keep_their_request():
    placement = trial_placement(1, 2.0, 0.5, {"CPU": 16, "GPU": 4})
    assert placement.request == {"CPU": 2.0, "GPU": 0.5}
    assert placement.run_needs == {"CPU": 2.0, "GPU": 0.5}
    assert placement.slots == 8 and placement.max_concurrent is None
    assert trial_resources(SweepConfig(cpus_per_trial=2.0), 0.5) == {"CPU": 2.0, "GPU": 0.5}
    assert train_kwargs(1, 1.0) == {}


def test_ray_train_trial_reserves_only_its_driver_and_caps_concurrency():
    gpu = trial_placement(4, 2.0, 1.0, {"CPU": 64, "GPU": 8})
    assert gpu.request == {"CPU": 0, "GPU": 0, "memory": DRIVER_MEMORY}
    assert gpu.run_needs == {"CPU": 8.0, "GPU": 4.0}
    assert gpu.slots == 2 and gpu.max_concurrent == 2  # 8 GPUs / 4 per run
    cpu = trial_placement(2, 1.0, 0.0, {"CPU": 5})
    assert cpu.run_needs == {"CPU": 2.0} and cpu.max_concurrent == 2
    # a cluster too small for one run still gets a cap of 1 (check_resources refuses it first)
    assert trial_placement(2, 1.0, 0.0, {"CPU": 1}).max_concurrent == 1
    train = train_kwargs(2, 1.5)["train"]
    assert train.workers == 2 and train.cpus_per_worker == 1.5


def test_gpus_per_run_config_checks():
    with pytest.raises(ValueError, match="gpus_per_run must be >= 1"):
        SweepConfig(gpus_per_run=0)
    with pytest.raises(ValueError, match="drop trials_per_gpu"):
        SweepConfig(gpus_per_run=2, trials_per_gpu=2)
    with pytest.raises(ValueError, match="drop trials_per_gpu"):
        SweepConfig(gpus_per_run=2, gpus_per_trial=1)
