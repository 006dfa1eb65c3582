#!/usr/bin/env bash
# The prepared device session for a lent GPU (see /work/.library/device/README.md): one call per phase,
# run from the repository root on the GPU machine, writing logs and tables under $OUT.
#
#   tools/gpu_check.sh build     build ntkit with CUDA (sm_90 only when NTKIT_CUDA_ARCHS=90), show backends
#   tools/gpu_check.sh test      GPU tests (-m gpu in every package) and the CUDA smoke script with the custom calls
#   tools/gpu_check.sh sanitize  compute-sanitizer memcheck / racecheck / initcheck on tests/native/cuda_smoke.py
#   tools/gpu_check.sh native    benchmarks/bench_gpu.py --section ffi_gram,ffi_matvec (NATIVE_SECTIONS) -> RESULTS_GPU_native.md
#   tools/gpu_check.sh solvers   benchmarks/bench_gpu_solvers.py (EigenPro 2/3, Nyström PCG vs official EP3, host)
#
# Phases can be chained in one call: tools/gpu_check.sh build test native. The machine keeps the build while
# it stays warm, so a later call can run the remaining phases. Each phase has its own time cap.
set -uo pipefail
OUT=${OUT:-/tmp/ntkit-gpu-out}   # what comes back: summary.txt, RESULTS_GPU*.md and logs.tgz (all logs)
LOG=/tmp/ntkit-gpu-logs
mkdir -p "$OUT" "$LOG"
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false KEOPS_CACHE_FOLDER=/tmp/keops-cache
T0=$(date +%s)
log() { echo "[gpu_check +$(( $(date +%s) - T0 ))s] $*" | tee -a "$LOG/summary.txt"; cp "$LOG/summary.txt" "$OUT/"; }

if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        && export PYTHONPATH=/tmp/site
fi

for phase in "$@"; do
case "$phase" in
build)
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv | tee "$LOG/gpu.txt"
    log "build"
    NTKIT_CUDA=1 NTKIT_BUILD_JOBS=16 timeout 300 python3 -m pip install --no-deps --no-build-isolation -e . \
        > "$LOG/build.log" 2>&1 || { tail -60 "$LOG/build.log"; log "BUILD FAILED"; exit 1; }
    grep -E "ptxas|registers|spill" "$LOG/build.log" | tail -40 > "$LOG/ptxas.txt"
    python3 -c "import ntkit; ntkit.show_backends()" 2>&1 | tee -a "$LOG/summary.txt"
    log "built"
    ;;
test)
    log "gpu tests"
    timeout "${TEST_TIMEOUT:-200}" python3 -m pytest -p no:cacheprovider -rs --timeout 120 --continue-on-collection-errors -m gpu -k "${TEST_SELECT:-}" tests/native \
        tests/solvers tests/ops tests/features tests/theory tests/explain tests/online > "$LOG/tests_gpu.log" 2>&1
    log "gpu tests rc=$? ($(tail -1 "$LOG/tests_gpu.log"))"
    timeout "${SMOKE_TIMEOUT:-60}" python3 tests/native/cuda_smoke.py --ffi > "$LOG/smoke_ffi.log" 2>&1
    log "cuda_smoke --ffi rc=$? ($(tail -1 "$LOG/smoke_ffi.log"))"
    ;;
sanitize)
    if command -v compute-sanitizer >/dev/null; then
        for tool in ${SAN_TOOLS:-memcheck racecheck initcheck}; do
            timeout "${SAN_TIMEOUT:-60}" compute-sanitizer --tool "$tool" --error-exitcode 3 python3 tests/native/cuda_smoke.py ${SAN_ARGS:-} \
                > "$LOG/sanitize_$tool.log" 2>&1
            log "compute-sanitizer $tool rc=$? ($(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$LOG/sanitize_$tool.log" | tail -1))"
        done
    else
        log "compute-sanitizer not found"
    fi
    ;;
native)
    log "bench_gpu.py (custom-call sections)"
    timeout "${NATIVE_TIMEOUT:-240}" python3 benchmarks/bench_gpu.py --section "${NATIVE_SECTIONS:-ffi_gram,ffi_matvec}" \
        --out "$LOG/RESULTS_GPU_native.md" > "$LOG/bench_gpu.log" 2>&1
    log "bench_gpu rc=$?"
    cp "$LOG/RESULTS_GPU_native.md" "$OUT/" 2>/dev/null
    ;;
solvers)
    log "bench_gpu_solvers.py"
    timeout $(( ${SOLVERS_DEADLINE:-300} + 40 )) python3 benchmarks/bench_gpu_solvers.py --deadline "${SOLVERS_DEADLINE:-300}" \
        > "$LOG/bench_solvers.log" 2>&1
    log "bench_gpu_solvers rc=$?"
    cp benchmarks/RESULTS_GPU.md "$OUT/RESULTS_GPU.md" 2>/dev/null
    ;;
*)
    echo "unknown phase $phase"; exit 2 ;;
esac
done
log "done"
tar czf "$OUT/logs.tgz" -C "$LOG" . 2>/dev/null
cp "$LOG/summary.txt" "$OUT/"
tail -40 "$LOG/summary.txt"
