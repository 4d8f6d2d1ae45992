#!/usr/bin/env bash
# One call on the GPU machine, under 8 minutes in all (each step has its own `timeout`):
#   1. the CUDA tests, the TensorRT backend's and the lazy masks' included  (<= 100 s)
#   2. benchmarks/gpu_kernel.py --quick: the fused kernel, the fast path and where its time goes (<= 160 s)
#   3. benchmarks/run_all.py --quick: every backend, Tables II/III, the floor (<= 210 s)
# Results go to $OUT (the device tool's folder) or benchmarks/results. Extra arguments go to
# gpu_kernel.py; RUN_ALL_ARGS (environment) to run_all.py.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
OUT=${OUT:-benchmarks/results}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,temperature.gpu,power.draw --format=csv \
    2>&1 | tee "$OUT/nvidia_smi.txt"
timeout 100 python3 -m pytest -q -p no:cacheprovider -rs tests/plugins/test_torch_op.py \
    tests/runtime/test_fastpath.py tests/runtime/test_gpu_preprocess.py tests/runtime/test_postprocess.py \
    tests/runtime/test_tensorrt_backend.py tests/runtime/test_masks.py >"$OUT/gpu_tests.log" 2>&1
echo "CUDA tests: exit $? ($(tail -n 1 "$OUT/gpu_tests.log"))"
# --compile none: in 130 s there is no room for torch.compile here (it keeps 150 s for it); the
# torch.compile comparison at 800x1344, batch 1 comes from run_all.py's first cell below.
timeout 160 python3 benchmarks/gpu_kernel.py --quick --budget-s 130 --compile none --out "$OUT/gpu_kernel.json" "$@" 2>&1 \
    | tee "$OUT/gpu_kernel.log"
echo "gpu_kernel.py: exit ${PIPESTATUS[0]}"
# --budget-s: no new stage starts after 180 s; the JSON is rewritten after every stage.
timeout 210 python3 benchmarks/run_all.py --quick --budget-s 180 --out "$OUT" ${RUN_ALL_ARGS:-} 2>&1 \
    | tee "$OUT/run_all.log"
echo "run_all.py: exit ${PIPESTATUS[0]}"
