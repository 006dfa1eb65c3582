#!/usr/bin/env bash
# Run the native tests of ntkit_native under sanitizers (`make sanitize`, `make sanitize-cuda`).
#
#   tools/sanitize.sh [asan] [pytest args...]   ASan + UBSan build in build/sanitize/, native tests
#                                               (args replace the default test selection)
#   tools/sanitize.sh cuda  [cuda_smoke args]   compute-sanitizer memcheck + racecheck + initcheck on
#                                               tests/native/cuda_smoke.py (skips without a GPU);
#                                               SANITIZE_FFI=1 adds memcheck of the XLA FFI CUDA handlers
#
# asan: builds ntkit_native._C with NTKIT_SANITIZE=1 (setup.py: -O1 -g -fno-omit-frame-pointer
# -fno-wrapv -fsanitize=address,undefined,float-cast-overflow -fno-sanitize-recover=all, CPU only,
# with $CXX, default g++) into
# build/sanitize/ntkit_native/ next to a copy of the package's Python files, so the editable
# install in .venv is never touched. The tests then import that copy: PYTHONPATH puts it first,
# PYTHONSAFEPATH=1 keeps `python -c` subprocesses (the bad-input tests) from importing the
# source tree through the current directory, and the pytest plugin written below imports it
# before pytest's test collection prepends the repository root to sys.path (and asserts that it
# did). The script checks that a plain `python -c` subprocess imports the sanitized build too.
# python itself is not instrumented, so libasan is LD_PRELOADed (it must be the first library).
#
# ASAN_OPTIONS:
#   detect_leaks=0         CPython (interned objects, module state never freed at exit), numpy,
#                          OpenBLAS and jaxlib keep allocations alive until exit by design;
#                          LeakSanitizer would report thousands of those and hide ours. Our
#                          code owns no raw allocations (std::vector / numpy arrays only).
#   halt_on_error=1        first error stops the process (with -fno-sanitize-recover=all).
#   allocator_may_return_null=1  numpy / jax may probe huge allocations and expect MemoryError.
#   log_path=...           ASan reports go to files, not only to stderr: tests capture the
#                          stderr of their subprocesses and show its tail at most. Any report
#                          file makes this script fail.
# UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1. libubsan ignores log_path next to libasan
# (GCC 12), so UBSan reports go to stderr: pytest runs with --capture=sys (Python-level capture
# only), and fd 2 of the pytest process stays on the terminal, where a report of a process that
# halts is not lost in pytest's capture file. Subprocess reports fail their test (exit code 1)
# and appear in its assertion message.
#
# The test selection and the one deselected test are described at the pytest call below.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PYTHON_BIN:-$ROOT/.venv/bin/python}
MODE=asan
if [[ $# -gt 0 && ( $1 == asan || $1 == cuda ) ]]; then MODE=$1; shift; fi

if [[ ! -x $PY ]]; then
    echo "sanitize: $PY not found; run 'make install' first" >&2
    exit 2
fi

# ---------------------------------------------------------------------------------------- cuda
if [[ $MODE == cuda ]]; then
    if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L 2>/dev/null | grep -q '^GPU'; then
        echo "sanitize-cuda: skipped (nvidia-smi finds no GPU)"
        exit 0
    fi
    CS=$(command -v compute-sanitizer || true)
    for c in "${CUDA_HOME:-}" /usr/local/cuda; do
        [[ -z $CS && -n $c && -x $c/bin/compute-sanitizer ]] && CS=$c/bin/compute-sanitizer
    done
    if [[ -z $CS ]]; then
        echo "sanitize-cuda: compute-sanitizer not found (PATH, \$CUDA_HOME/bin, /usr/local/cuda/bin)" >&2
        exit 2
    fi
    OUT=build/sanitize-cuda
    SO=$(ls "$OUT"/ntkit_native/_C*.so 2>/dev/null | head -1 || true)
    if [[ -z $SO || -n $(find ntkit_native/csrc setup.py -newer "$SO" -print -quit) ]]; then
        echo "sanitize-cuda: building ntkit_native (CUDA, -lineinfo) into $OUT"
        rm -rf "$OUT"
        NTKIT_SANITIZE=cuda NTKIT_CUDA=1 "$PY" setup.py -q build_ext --force \
            --build-lib "$OUT" --build-temp "$OUT/temp"
    fi
    cp ntkit_native/*.py "$OUT/ntkit_native/"
    export PYTHONPATH=$ROOT/$OUT${PYTHONPATH:+:$PYTHONPATH} PYTHONSAFEPATH=1
    "$PY" -c "
import ntkit_native as nn, sys
f = nn._require().__file__
print('sanitize-cuda: ntkit_native._C from', f)
assert f.startswith('$ROOT/$OUT/'), 'not the build in $OUT'
assert nn.has_cuda(), 'CUDA build without a usable device'"
    status=0
    run() { echo "+ $*"; "$@" || status=1; }
    run "$CS" --tool memcheck --leak-check full --error-exitcode 99 "$PY" tests/native/cuda_smoke.py "$@"
    run "$CS" --tool memcheck --error-exitcode 99 "$PY" tests/native/cuda_smoke.py --zchunks "$@"
    run "$CS" --tool racecheck --error-exitcode 99 "$PY" tests/native/cuda_smoke.py --small "$@"
    run "$CS" --tool initcheck --error-exitcode 99 "$PY" tests/native/cuda_smoke.py --small "$@"
    # Opt-in: the XLA FFI CUDA handlers on XLA's stream (needs jax with a GPU; XLA itself runs under
    # the sanitizer too, which is slow): SANITIZE_FFI=1 make sanitize-cuda
    if [[ ${SANITIZE_FFI:-0} == 1 ]]; then
        run env XLA_PYTHON_CLIENT_PREALLOCATE=false "$CS" --tool memcheck --error-exitcode 99 \
            "$PY" tests/native/cuda_smoke.py --small --ffi "$@"
    fi
    [[ $status == 0 ]] && echo "sanitize-cuda: memcheck, racecheck and initcheck clean" || echo "sanitize-cuda: FAILED" >&2
    exit $status
fi

# ---------------------------------------------------------------------------------------- asan
CXX=${CXX:-g++}
LIBASAN=$("$CXX" -print-file-name=libasan.so)
if [[ $LIBASAN != /* || ! -e $LIBASAN ]]; then
    echo "sanitize: $CXX has no libasan.so (got '$LIBASAN'); install libasan / gcc" >&2
    exit 2
fi
LIBASAN=$(realpath "$LIBASAN")
# python does not link libstdc++: without it preloaded too, libasan cannot resolve the real
# __cxa_throw at startup and its interceptor aborts on the first C++ exception
# ("CHECK failed: asan_interceptors.cpp ... real___cxa_throw").
LIBSTDCXX=$(realpath "$("$CXX" -print-file-name=libstdc++.so)")

OUT=build/sanitize
SO=$(ls "$OUT"/ntkit_native/_C*.so 2>/dev/null | head -1 || true)
if [[ -z $SO || -n $(find ntkit_native/csrc setup.py -newer "$SO" -print -quit) ]]; then
    echo "sanitize: building ntkit_native with ASan + UBSan into $OUT ($CXX)"
    rm -rf "$OUT"
    # CC=$CXX: distutils compiles and links with CC; libasan must come from the same compiler.
    CC=$CXX CXX=$CXX NTKIT_SANITIZE=1 NTKIT_CUDA=0 "$PY" setup.py -q build_ext --force \
        --build-lib "$OUT" --build-temp "$OUT/temp"
fi
SO=$(ls "$OUT"/ntkit_native/_C*.so | head -1)
cp ntkit_native/*.py "$OUT/ntkit_native/"
if ! ldd "$SO" | grep -q libasan; then
    echo "sanitize: $SO is not linked against libasan" >&2
    exit 1
fi

# pytest plugin (-p): imports the sanitized package and asserts it. pytest has already put the
# repository root (ini `pythonpath`) in front of PYTHONPATH when it loads -p plugins, so the
# plugin moves its own directory back to the front first; once ntkit_native is in sys.modules
# the later sys.path insertions of pytest's test collection no longer matter.
cat > "$OUT/ntkit_sanitize_check.py" <<EOF
import sys

assert "ntkit_native" not in sys.modules, "ntkit_native was imported before the sanitize plugin"
sys.path.insert(0, "$ROOT/$OUT")
import ntkit_native  # noqa: E402

_C = ntkit_native._require()
assert ntkit_native.__file__.startswith("$ROOT/$OUT/"), ntkit_native.__file__
assert _C.__file__.startswith("$ROOT/$OUT/"), _C.__file__
assert "libasan" in open("/proc/self/maps").read(), "libasan is not loaded"
sys.path.remove("$ROOT/$OUT")


def pytest_report_header(config):
    return f"sanitize: ntkit_native._C from {_C.__file__}"
EOF

LOGDIR=$ROOT/$OUT/logs
rm -rf "$LOGDIR"
mkdir -p "$LOGDIR"
# PYTHONSAFEPATH=1: no '' (the current directory, i.e. the source tree) in front of sys.path of
# `python -c` subprocesses; the repository root comes after the sanitized build instead (tests
# that run `from tests.ops... import` in a subprocess need it).
export PYTHONPATH=$ROOT/$OUT:$ROOT${PYTHONPATH:+:$PYTHONPATH}
export PYTHONSAFEPATH=1
export LD_PRELOAD=$LIBASAN:$LIBSTDCXX${LD_PRELOAD:+:$LD_PRELOAD}
export ASAN_OPTIONS=detect_leaks=0:halt_on_error=1:allocator_may_return_null=1:log_path=$LOGDIR/asan
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export NTKIT_CUDA=0

# The same environment reaches the subprocesses of the tests: check what they import.
(cd /tmp && "$PY" -c "
import ntkit_native as nn
f = nn._require().__file__
print('sanitize: ntkit_native._C from', f)
assert f.startswith('$ROOT/$OUT/'), 'subprocesses would not import the sanitized build'
assert 'libasan' in open('/proc/self/maps').read()
assert not nn.has_cuda()")

# Default selection: every test that reaches ntkit_native. All of tests/native (gram,
# kernel_matvec, batched_gram, hadamard_blocks' checks, info, the private _C hooks, the bad-input
# and non-contiguous subprocess tests); tests/ops (native backend forced and via "auto", incl.
# its bad-input subprocess test), tests/graphs (grf_features through GraphRandomFeatures) and
# tests/features (hadamard_blocks, gram via Nystroem) whole; the neural-tangents golden values
# of tests/kernels (the rest of that file runs every backend, jax included, in each test).
# -k "not jax": the jax-backend parametrizations of tests/ops run no native code.
# Deselected: tests/features/test_features.py::test_nystroem_with_all_points_is_exact checks
# K K^+ K == K to 1e-9 * max|K|, but the ReluNTK cross Gram K(X, X.copy()) takes its diagonal
# through acos(rho ~ 1), which carries a ~1e-8 relative rounding error (3e-9 in the -O3 build,
# 8.6e-9 at -O1 where the dot products are summed in another order): a tolerance failure of
# the unoptimised build, not a sanitizer report.
# Arguments given to the script replace this selection (e.g. tools/sanitize.sh tests/graphs -x).
if [[ $# -eq 0 ]]; then
    set -- tests/native/test_native.py tests/ops/test_ops.py tests/graphs/test_graphs.py \
        tests/features/test_features.py \
        --deselect tests/features/test_features.py::test_nystroem_with_all_points_is_exact \
        tests/kernels/test_kernels.py::test_relu_kernels_match_neural_tangents \
        -k "not jax"
fi
start=$SECONDS
status=0
"$PY" -m pytest -p ntkit_sanitize_check --capture=sys -rs "$@" || status=$?
reports=$(ls "$LOGDIR" 2>/dev/null || true)
if [[ -n $reports ]]; then
    echo "sanitize: sanitizer reports:" >&2
    for f in "$LOGDIR"/*; do echo "==== $f" >&2; cat "$f" >&2; done
    status=1
fi
echo "sanitize: $((SECONDS - start)) s of tests"
if [[ $status != 0 ]]; then
    echo "sanitize: FAILED" >&2
    exit $status
fi
echo "sanitize: ASan + UBSan clean"
