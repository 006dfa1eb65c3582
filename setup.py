"""Build script for the optional compiled extension ``ntkit_native._C``.

* The C++ sources (csrc/cpu/*.cpp, csrc/bindings/*.cpp) are compiled with
  -O3 -march=native -fopenmp -fno-math-errno (never -ffast-math: linking
  crtfastmath.o would turn on flush-to-zero for the whole Python process).
* CUDA (csrc/cuda/*.cu) is compiled with nvcc for sm_80 and sm_90 when
  NTKIT_CUDA != "0" and nvcc is found (PATH, $CUDA_HOME/bin, /usr/local/cuda/bin);
  NTKIT_CUDA=1 without a working nvcc is an error, NTKIT_CUDA unset without
  nvcc builds CPU only.
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
"""

import os
import shutil
import subprocess
import sys
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
        out_dir = os.path.join(self.build_temp, "ntkit_cuda")
        os.makedirs(out_dir, exist_ok=True)
        objs = []
        for src in cu_files:
            obj = os.path.join(out_dir, os.path.splitext(os.path.basename(src))[0] + ".o")
            cmd = [
                nvcc, "-O3", "-std=c++17", "-Xcompiler", "-fPIC",
                "-gencode", "arch=compute_80,code=sm_80",
                "-gencode", "arch=compute_90,code=sm_90",
                "-DNTKIT_WITH_CUDA",
            ] + (["-lineinfo"] if SANITIZE == "cuda" else []) + [
                "-I", os.path.join(CSRC, "include"),
                "-c", src, "-o", obj,
            ]
            print("ntkit: " + " ".join(cmd))
            subprocess.check_call(cmd)
            objs.append(obj)
        root = _cuda_root(nvcc)
        lib = os.path.join(root, "lib64")
        ext.extra_objects = list(ext.extra_objects or []) + objs
        ext.define_macros = list(ext.define_macros or []) + [("NTKIT_WITH_CUDA", "1")]
        ext.library_dirs = list(ext.library_dirs or []) + [lib]
        ext.libraries = list(ext.libraries or []) + ["cudart"]
        ext.extra_link_args = list(ext.extra_link_args or []) + ["-Wl,-rpath," + lib]

    def build_extension(self, ext):
        mode = self._cuda_mode()
        if mode != "off":
            nvcc = _find_nvcc()
            if nvcc is None:
                if mode == "on":
                    raise RuntimeError(
                        "NTKIT_CUDA=1 but nvcc was not found (PATH, $CUDA_HOME/bin, /usr/local/cuda/bin)")
                print("ntkit: nvcc not found; building ntkit_native CPU-only")
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

ext = Pybind11Extension(
    "ntkit_native._C",
    sorted(glob(os.path.join(CSRC, "cpu", "*.cpp")) + glob(os.path.join(CSRC, "bindings", "*.cpp"))),
    include_dirs=[os.path.join(CSRC, "include")],
    define_macros=[("NTKIT_VERSION", f'"{VERSION}"')],
    cxx_std=17,
    extra_compile_args=CXX_FLAGS,
    extra_link_args=LINK_FLAGS,
    optional=True,
)

setup(ext_modules=[ext], cmdclass={"build_ext": BuildExt})
