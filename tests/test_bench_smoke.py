"""The prepared GPU memory check of target training runs on CPU (`--smoke`), so it is known to
work before a GPU is lent. (`bench_train_scaling.py --smoke` is not run here: its three training
paths are the ones tests/test_target_training.py checks, and its Ray start would add a minute.)"""
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _result(stdout: str, name: str) -> dict:
    lines = [line for line in stdout.splitlines() if line.startswith(f"RESULT {name} ")]
    assert len(lines) == 1, stdout
    return dict(item.split("=", 1) for item in lines[0].split()[2:])


@pytest.mark.slow
def test_gpu_memory_plan_check_smoke():
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_memory_plan_check.py"), "--smoke"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    fields = _result(proc.stdout, "memory_plan")
    assert fields["gpu"] == "cpu" and fields["seq"] == "128"
    assert all(float(fields[f"ckpt{c}_planned_gib"]) > 0 for c in (0, 1))
    assert fields["ckpt0_peak_gib"] == "nan"  # CPU measures no peak: nothing made up


def test_gpu_memory_plan_check_without_a_gpu_refuses_the_full_run():
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_memory_plan_check.py")],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    assert proc.returncode == 2 and "--smoke" in proc.stderr
