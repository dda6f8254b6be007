"""benchmarks/gpu_check.sh --smoke: the prepared GPU check runs end to end on CPU."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_gpu_check_smoke_runs_every_section(tmp_path):
    out = tmp_path / "gpu.json"
    proc = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_check.sh"), "--smoke", "--json", str(out)],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHON": sys.executable})
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = [line for line in proc.stdout.splitlines() if line.startswith("RESULT gpu ")]
    assert len(result) == 1, proc.stdout
    fields = dict(item.split("=", 1) for item in result[0].split()[2:])
    assert fields["ok"] == "1" and fields["device"] == "cpu" and fields["k"] == "2"
    for key in ("packed_tokens_per_s", "unpacked_tokens_per_s", "k_total_tokens_per_s",
                "featurize_docs_per_s", "packed_mfu", "peak_tflops"):
        assert float(fields[key]) >= 0, key
    figures = json.loads(out.read_text())
    assert figures["sft_packed"]["padding"] < 0.1 < figures["sft_unpacked"]["padding"]
    assert figures["sft_packed"]["tokens"] > 0 and figures["sft_k"]["k"] == 2
    assert figures["featurize"]["docs_per_s"] > 0


def test_gpu_check_without_a_gpu_refuses_the_full_run():
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_check.py")],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    assert proc.returncode == 2 and "--smoke" in proc.stderr
