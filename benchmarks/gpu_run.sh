#!/usr/bin/env bash
# One call on the GPU machine: the CUDA tests, then benchmarks/gpu_kernel.py (its summary
# table is printed last). Results go to $OUT (the device tool's folder) or benchmarks/results.
# Extra arguments go to gpu_kernel.py (e.g. --quick).
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
OUT=${OUT:-benchmarks/results}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,temperature.gpu,power.draw --format=csv \
    2>&1 | tee "$OUT/nvidia_smi.txt"
timeout 150 python3 -m pytest -q -p no:cacheprovider -rs tests/plugins/test_torch_op.py \
    tests/runtime/test_fastpath.py tests/runtime/test_gpu_preprocess.py >"$OUT/gpu_tests.log" 2>&1
echo "CUDA tests: exit $? ($(tail -n 1 "$OUT/gpu_tests.log"))"
python3 benchmarks/gpu_kernel.py --out "$OUT/gpu_kernel.json" "$@" 2>&1 | tee "$OUT/gpu_kernel.log"
