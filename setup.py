"""Build script for the optional compiled extension ``ntkit_native._C``.

* The C++ sources (csrc/cpu/*.cpp, csrc/bindings/*.cpp) are compiled with
  -O3 -march=native -fopenmp -fno-math-errno (never -ffast-math: linking
  crtfastmath.o would turn on flush-to-zero for the whole Python process).
* XLA FFI custom calls (csrc/bindings/xla_ffi.cpp, -DNTKIT_WITH_FFI) are compiled
  when jaxlib's FFI headers are found at build time (``<jaxlib>/include/xla/ffi/
  api/ffi.h``, located with importlib.util.find_spec, without importing jax);
  otherwise the extension builds without them and ``ntkit_native.info()["ffi"]``
  is False. NTKIT_FFI=0 leaves them out, NTKIT_FFI=1 makes a missing jaxlib an error.
* CUDA (csrc/cuda/*.cu) is compiled with nvcc for sm_80 and sm_90:
  NTKIT_CUDA=1 forces it (an error without nvcc), NTKIT_CUDA=0 disables it, and
  with NTKIT_CUDA unset it is built only when nvcc is found (PATH, $CUDA_HOME/bin,
  /usr/local/cuda/bin) AND a GPU is visible (``nvidia-smi -L`` lists one), so a
  CPU-only machine or CI does not spend minutes compiling kernels it cannot run.
* cuBLAS (inner products of the CUDA gram / batched_gram; -DNTKIT_WITH_CUBLAS) is
  linked into the CUDA build only: cublas_v2.h + libcublas.so* under the CUDA
  root (include/, lib64/) or in the pip package ``nvidia-cublas``
  (site-packages/nvidia/cu13 or nvidia/cublas: include/ and lib/, added to the
  rpath). Not found: the CUDA build keeps its own tiled GEMM and prints a note.
  NTKIT_CUBLAS=0 skips it. The CPU-only build never touches CUDA or cuBLAS.
* The extension is optional: if the C++ compile fails, a warning is printed and
  the pure-Python packages are still installed (ntkit_native.is_available()
  then returns False).
* NTKIT_SANITIZE=1 (used by `make sanitize`, tools/sanitize.sh) builds the C++
  with AddressSanitizer + UndefinedBehaviorSanitizer (-O1 -g
  -fno-omit-frame-pointer -fno-wrapv -fsanitize=address,undefined,
  float-cast-overflow -fno-sanitize-recover=all), CPU only; a compile failure
  is then an error. The .so needs libasan preloaded into python.
  NTKIT_SANITIZE=cuda keeps the normal flags but adds -g and nvcc -lineinfo
  (source lines in compute-sanitizer reports; `make sanitize-cuda`).
* NTKIT_BUILD_JOBS: parallel C++ compile jobs (default: all cores); the .cu files
  are compiled in parallel too.
"""

import importlib.util
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from glob import glob

from pybind11.setup_helpers import ParallelCompile, Pybind11Extension
from setuptools import setup
from setuptools.command.build_ext import build_ext

VERSION = "0.1.0"
HERE = os.path.dirname(os.path.abspath(__file__))
CSRC = os.path.join("ntkit_native", "csrc")

ParallelCompile("NTKIT_BUILD_JOBS", default=0).install()


def _find_nvcc():
    cands = []
    p = shutil.which("nvcc")
    if p:
        cands.append(p)
    for root in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if root:
            cands.append(os.path.join(root, "bin", "nvcc"))
    for c in cands:
        if os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    return None


def _cuda_root(nvcc):
    """CUDA toolkit root owning this nvcc (resolves wrapper scripts via `nvcc --version` path)."""
    for root in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH")):
        if root and os.path.isdir(os.path.join(root, "lib64")):
            return root
    real = os.path.realpath(nvcc)
    root = os.path.dirname(os.path.dirname(real))
    if os.path.isdir(os.path.join(root, "lib64")):
        return root
    return "/usr/local/cuda"


def _gpu_visible():
    """True iff `nvidia-smi -L` lists a GPU (the NTKIT_CUDA-unset rule)."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return False
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return False
    return out.returncode == 0 and any(line.startswith("GPU") for line in out.stdout.splitlines())


def _site_dirs():
    dirs = []
    for p in sys.path:
        if p and os.path.isdir(p) and p not in dirs:
            dirs.append(p)
    return dirs


def _find_cublas(cuda_root):
    """(include_dir, lib_dir, library file) of cuBLAS, or None."""
    cands = [(os.path.join(cuda_root, "include"), os.path.join(cuda_root, "lib64"))]
    for site in _site_dirs():
        for sub in ("cu13", "cu12", "cublas"):
            root = os.path.join(site, "nvidia", sub)
            cands.append((os.path.join(root, "include"), os.path.join(root, "lib")))
    for inc, lib in cands:
        if not os.path.isfile(os.path.join(inc, "cublas_v2.h")) or not os.path.isdir(lib):
            continue
        libs = sorted(f for f in os.listdir(lib) if f == "libcublas.so" or f.startswith("libcublas.so."))
        if libs:
            return inc, lib, os.path.join(lib, libs[0])  # libcublas.so sorts first when present
    return None


def _jaxlib_ffi_include():
    """jaxlib's include dir holding xla/ffi/api/ffi.h, found without importing jax/jaxlib."""
    try:
        spec = importlib.util.find_spec("jaxlib")
    except (ImportError, ValueError):
        return None
    for loc in (spec.submodule_search_locations or []) if spec is not None else []:
        inc = os.path.join(loc, "include")
        if os.path.isfile(os.path.join(inc, "xla", "ffi", "api", "ffi.h")):
            return inc
    return None


def _ffi_include():
    v = os.environ.get("NTKIT_FFI", "").strip()
    if v == "0":
        return None
    inc = _jaxlib_ffi_include()
    if inc is None and v == "1":
        raise RuntimeError("NTKIT_FFI=1 but jaxlib's FFI headers (jaxlib/include/xla/ffi/api/ffi.h) were not found")
    return inc


def _sanitize_mode():
    v = os.environ.get("NTKIT_SANITIZE", "").strip().lower()
    if v in ("", "0"):
        return None
    if v == "cuda":
        return "cuda"
    if v in ("1", "address", "asan"):
        return "address"
    raise RuntimeError(f"NTKIT_SANITIZE must be 0, 1 or cuda, got {v!r}")


SANITIZE = _sanitize_mode()
# float-cast-overflow is not part of -fsanitize=undefined in GCC; -fno-wrapv undoes
# Python's -fwrapv so that signed overflow is reported instead of defined to wrap.
ASAN_FLAGS = ["-fsanitize=address,undefined,float-cast-overflow", "-fno-sanitize-recover=all"]


class BuildExt(build_ext):
    """build_ext with optional CUDA objects and optional (non-fatal) C++ build."""

    def _cuda_mode(self):
        if SANITIZE == "address":
            return "off"  # ASan host build: CUDA paths are checked with compute-sanitizer instead
        v = os.environ.get("NTKIT_CUDA")
        if v is None or v.strip() == "":
            return "auto"
        return "off" if v.strip() == "0" else "on"

    def _compile_cuda(self, ext, nvcc):
        cu_files = sorted(glob(os.path.join(CSRC, "cuda", "*.cu")))
        if not cu_files:
            raise RuntimeError("no CUDA sources found")
        root = _cuda_root(nvcc)
        cublas = None if os.environ.get("NTKIT_CUBLAS", "").strip() == "0" else _find_cublas(root)
        if cublas is None:
            print("ntkit: note: cuBLAS not found (CUDA root lib64, pip package nvidia-cublas); the CUDA gram and "
                  "batched_gram use ntkit's own tiled GEMM")
        out_dir = os.path.join(self.build_temp, "ntkit_cuda")
        os.makedirs(out_dir, exist_ok=True)
        extra = ["-DNTKIT_WITH_CUBLAS", "-I", cublas[0]] if cublas else []

        def compile_one(src):
            obj = os.path.join(out_dir, os.path.splitext(os.path.basename(src))[0] + ".o")
            cmd = [
                nvcc, "-O3", "-std=c++17", "-Xcompiler", "-fPIC", "--threads", "2",
                "-gencode", "arch=compute_80,code=sm_80",
                "-gencode", "arch=compute_90,code=sm_90",
                "-DNTKIT_WITH_CUDA",
            ] + extra + (["-lineinfo"] if SANITIZE == "cuda" else []) + [
                "-I", os.path.join(CSRC, "include"),
                "-c", src, "-o", obj,
            ]
            print("ntkit: " + " ".join(cmd))
            res = subprocess.run(cmd, capture_output=True, text=True)
            if res.returncode != 0:
                raise RuntimeError(f"nvcc failed on {src}:\n{res.stdout}{res.stderr}")
            return obj

        jobs = max(1, min(len(cu_files), int(os.environ.get("NTKIT_BUILD_JOBS", "0") or 0) or os.cpu_count() or 1))
        with ThreadPoolExecutor(jobs) as pool:
            objs = list(pool.map(compile_one, cu_files))
        lib = os.path.join(root, "lib64")
        ext.extra_objects = list(ext.extra_objects or []) + objs
        ext.define_macros = list(ext.define_macros or []) + [("NTKIT_WITH_CUDA", "1")]
        ext.library_dirs = list(ext.library_dirs or []) + [lib]
        ext.libraries = list(ext.libraries or []) + ["cudart"]
        ext.extra_link_args = list(ext.extra_link_args or []) + ["-Wl,-rpath," + lib]
        if cublas:
            ext.define_macros.append(("NTKIT_WITH_CUBLAS", "1"))
            ext.extra_link_args += [cublas[2], "-Wl,-rpath," + cublas[1]]
            print(f"ntkit: linking cuBLAS {cublas[2]}")

    def build_extension(self, ext):
        mode = self._cuda_mode()
        if mode != "off":
            nvcc = _find_nvcc()
            if nvcc is None:
                if mode == "on":
                    raise RuntimeError(
                        "NTKIT_CUDA=1 but nvcc was not found (PATH, $CUDA_HOME/bin, /usr/local/cuda/bin)")
                print("ntkit: nvcc not found; building ntkit_native CPU-only")
            elif mode == "auto" and not _gpu_visible():
                print("ntkit: nvcc found but no GPU is visible (nvidia-smi -L); building ntkit_native CPU-only "
                      "(NTKIT_CUDA=1 forces the CUDA build)")
            else:
                try:
                    self._compile_cuda(ext, nvcc)
                except Exception as exc:  # noqa: BLE001
                    if mode == "on":
                        raise
                    sys.stderr.write(
                        f"WARNING: ntkit_native CUDA compile failed ({exc}); building CPU-only\n")
        try:
            super().build_extension(ext)
        except Exception as exc:  # noqa: BLE001  (CompileError, LinkError, ...)
            if mode == "on" or SANITIZE:
                raise
            sys.stderr.write(
                "\n" + "=" * 72 + "\n"
                f"WARNING: building the optional extension {ext.name} failed:\n  {exc}\n"
                "The pure-Python packages are installed anyway; ntkit_native.is_available()\n"
                "will return False and ntkit falls back to NumPy.\n" + "=" * 72 + "\n")


if SANITIZE == "address":
    CXX_FLAGS = ["-O1", "-g", "-fno-omit-frame-pointer", "-fno-wrapv", "-march=native", "-fopenmp",
                 "-fno-math-errno"] + ASAN_FLAGS
    LINK_FLAGS = ["-fopenmp"] + ASAN_FLAGS
elif SANITIZE == "cuda":
    CXX_FLAGS = ["-O3", "-g", "-march=native", "-fopenmp", "-fno-math-errno", "-mprefer-vector-width=512"]
    LINK_FLAGS = ["-fopenmp"]
else:
    CXX_FLAGS = ["-O3", "-march=native", "-fopenmp", "-fno-math-errno", "-mprefer-vector-width=512"]
    LINK_FLAGS = ["-fopenmp"]

FFI_INCLUDE = _ffi_include()
SOURCES = sorted(glob(os.path.join(CSRC, "cpu", "*.cpp")) + glob(os.path.join(CSRC, "bindings", "*.cpp")))
MACROS = [("NTKIT_VERSION", f'"{VERSION}"')]
if FFI_INCLUDE is None:
    SOURCES = [f for f in SOURCES if os.path.basename(f) != "xla_ffi.cpp"]
    print("ntkit: jaxlib's XLA FFI headers not found; building ntkit_native without the jax custom calls")
else:
    MACROS.append(("NTKIT_WITH_FFI", "1"))
    CXX_FLAGS = CXX_FLAGS + ["-isystem", FFI_INCLUDE]  # jaxlib's headers: their warnings are not ours

ext = Pybind11Extension(
    "ntkit_native._C",
    SOURCES,
    include_dirs=[os.path.join(CSRC, "include")],
    define_macros=MACROS,
    cxx_std=17,
    extra_compile_args=CXX_FLAGS,
    extra_link_args=LINK_FLAGS,
    optional=True,
)

setup(ext_modules=[ext], cmdclass={"build_ext": BuildExt})
