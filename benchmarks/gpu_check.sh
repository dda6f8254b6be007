#!/usr/bin/env bash
# The prepared GPU check (benchmarks/gpu_check.py): proxy SFT tokens/s and MFU with and
# without packing, k proxies per GPU, the featurizer's documents/s. Needs only python with
# torch, transformers, numpy and pandas; fetches nothing. Stops itself after 8 minutes.
#   bash benchmarks/gpu_check.sh [--json OUT.json]      # on one H100/H200
#   bash benchmarks/gpu_check.sh --smoke                # tiny config on CPU (CI)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
exec timeout --kill-after=10 "${GPU_CHECK_TIMEOUT_S:-480}" "$PYTHON" benchmarks/gpu_check.py "$@"
