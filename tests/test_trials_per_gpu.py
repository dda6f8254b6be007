"""k proxy trials per GPU: the memory estimate, the fractional request, the refusal (no Ray)."""
import json
from pathlib import Path

import pytest

from causalmix.design.sweep_config import SweepConfig
from causalmix.design.sweep_plan import check_trials_fit, trial_gpus, trial_resources
from causalmix.core.errors import UserError
from causalmix.proxy.config import ProxyConfig
from causalmix.proxy.memory import ModelShape, gpus_per_trial, max_trials_per_gpu, trial_memory_bytes

CONFIGS = Path(__file__).resolve().parent.parent / "benchmarks" / "configs"


def test_parameter_count_from_config_matches_the_built_model():
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(**json.loads((CONFIGS / "tiny-smoke.json").read_text()))
    built = sum(p.numel() for p in Qwen2ForCausalLM(config).parameters())
    assert ModelShape.from_config(config).params == built
    qwen = Qwen2Config(**json.loads((CONFIGS / "qwen2.5-0.5b.json").read_text()))
    assert ModelShape.from_config(qwen).params == 494_032_768  # Qwen2.5-0.5B's published size


def test_memory_estimate_decides_k():
    from transformers import Qwen2Config

    qwen = ModelShape.from_config(Qwen2Config(**json.loads((CONFIGS / "qwen2.5-0.5b.json").read_text())))
    per_trial = trial_memory_bytes(qwen, seq_len=2048, micro_batch=4)
    assert 16 * qwen.params < per_trial < 40 * 1024**3
    assert trial_memory_bytes(qwen, seq_len=2048, micro_batch=8) > per_trial
    assert max_trials_per_gpu(141 * 10**9, per_trial) == int(0.92 * 141 * 10**9 // per_trial) >= 2
    assert max_trials_per_gpu(per_trial, per_trial) == 0  # headroom: one that fills the GPU does not fit
    with pytest.raises(ValueError):
        trial_memory_bytes(qwen, seq_len=0, micro_batch=1)


def test_fractional_gpu_request_for_k_trials():
    assert gpus_per_trial(1) == 1.0 and gpus_per_trial(4) == 0.25
    cfg = SweepConfig(pool="p", features="f", out="o", trials_per_gpu=4)
    assert trial_gpus(cfg, cluster_gpus=2) == 0.25
    assert trial_resources(cfg, trial_gpus(cfg, 2)) == {"CPU": 1.0, "GPU": 0.25}
    assert trial_gpus(cfg, cluster_gpus=0) == 0.0  # CPU-only cluster: no GPU asked for
    assert trial_gpus(SweepConfig(pool="p", features="f", out="o"), cluster_gpus=1) == 1.0
    assert trial_gpus(SweepConfig(pool="p", features="f", out="o", gpus_per_trial=0.5), 1) == 0.5
    with pytest.raises(ValueError, match="not both"):
        SweepConfig(pool="p", features="f", out="o", trials_per_gpu=2, gpus_per_trial=0.5)
    with pytest.raises(ValueError, match="trials_per_gpu must be >= 1"):
        SweepConfig(pool="p", features="f", out="o", trials_per_gpu=0)


def test_trials_that_do_not_fit_are_refused(tmp_path, monkeypatch):
    model = tmp_path / "qwen"
    model.mkdir()
    (model / "config.json").write_text((CONFIGS / "qwen2.5-0.5b.json").read_text())
    proxy = ProxyConfig(model=str(model), max_length=2048, rows_per_micro_batch=4)
    monkeypatch.setenv("CAUSALMIX_GPU_MEMORY_GB", "80")
    check_trials_fit(SweepConfig(pool="p", features="f", out="o", trials_per_gpu=2, proxy=proxy))
    with pytest.raises(UserError, match=r"trials_per_gpu 16: .* at most \d fit a 80 GiB GPU"):
        check_trials_fit(SweepConfig(pool="p", features="f", out="o", trials_per_gpu=16, proxy=proxy))
