"""ntkit_native: optional compiled kernels for ntkit (CPU with OpenMP + BLAS, optional CUDA).

Importing this package is cheap: it imports only ``numpy`` lazily and never
compiles, prints or warns. The extension module ``ntkit_native._C`` is loaded
on first use and cached; :func:`is_available` tells whether it can be imported.

Operations
----------
``gram(X, Z=None, kernel_id="rbf", params=None, *, device=None)``
    Kernel matrix ``K[i, j] = k(X[i], Z[j])``. ``Z=None`` means ``Z is X``: only
    the upper block triangle is computed and mirrored, and the diagonal uses the
    exact ``x == z`` formula, so the result is exactly symmetric.
``kernel_matvec(X, Z, v, kernel_id="rbf", params=None, *, block_rows=None, block_cols=None, device=None)``
    ``K(X, Z) @ v`` without materialising ``K`` (tiles of
    ``block_rows x block_cols`` per thread are computed, transformed and
    multiplied while hot).
``hadamard_blocks(X, signs)``
    Structured random projections for random features: for each block b of
    ``signs`` (shape ``(n_blocks, 3, dp)``, dp a power of two >= n_features),
    ``H D3 H D2 H D1 [x, 0]`` with the normalised Walsh-Hadamard matrix H and
    ``D_k = diag(signs[b, k])``; output ``(n, n_blocks * dp)``. CPU only.
``grf_features(indptr, indices, weights, starts, n_walks, p_halt, modulation, seed, mode=0)``
    Graph random features: for each start node, ``n_walks`` random walks on the CSR
    graph (uniform neighbour, halting with probability ``p_halt``, cut at length
    ``len(modulation) - 1``); node u of a walk prefix of length l gets
    ``modulation[l] * prod(weights) / prefix probability / n_walks``. ``mode`` bit 0:
    antithetic termination (even ``n_walks``), bit 1: repelling walks. Counter-based
    randomness: the result does not depend on threads or on how starts are split.
    Returns ``(row_ptr, cols, vals, n_steps)`` (CSR rows in the order of ``starts``). CPU only.
``batched_gram(A, B=None, reduce="none", *, device=None)``
    ``A_i @ B_i.T`` for each batch entry (``(b, n, m)``) or their sum
    (``reduce="sum"``, ``(n, m)``). ``B=None`` means ``B is A``.

Devices
-------
``device=None`` (default) computes where the data lives: numpy (and other CPU
arrays) on the CPU, CUDA tensors (torch, cupy, jax, ... through DLPack) on their
GPU. ``device="cuda"`` sends numpy inputs through the GPU; ``device="cpu"`` with
CUDA tensors is an error.

CUDA, numpy in and out (``device="cuda"``): each call uploads its inputs, runs
the kernels and downloads the result. Copies of 8 MiB or more go through two
pinned 32 MiB staging buffers allocated once per process, so the DMA overlaps a
multi-threaded host copy. The non-symmetric ``gram`` streams its output through
a 256 MiB device buffer in row slabs, so it is not limited by GPU memory. The
private ``_C._cuda_last_profile()`` returns the upload, kernel and download
times (CUDA events) and the device bytes of the last such call.

CUDA tensors in (any object with ``__dlpack__`` / ``__dlpack_device__`` on a
CUDA device): the inputs are read in place (``__dlpack__(stream=1)``, i.e. made
ready on the legacy default stream; C-contiguous, float32/float64, one device),
the result is a new device array on the same GPU, returned as the input's
framework type (``torch.Tensor``, ``cupy.ndarray``, ``jax.Array``) or, for other
producers, as a :class:`DeviceArray` that any DLPack consumer accepts. No host
copies; the call waits for the GPU before returning (the inputs can be freed
right after). NaN / Inf in the inputs are detected on the device. CPU tensors
with ``__dlpack__`` (torch CPU tensors, ...) are viewed as numpy arrays and take
the numpy path (numpy out).

Kernels: the inner products of ``gram`` and ``batched_gram`` go through cuBLAS
when the extension was built with it (``info()["cublas"]``; default math mode,
never TF32), then one pass applies the kernel transform; otherwise the
extension's own tiled GEMM with the transform fused. ``kernel_matvec`` is one
fused, register-tiled kernel that never writes K. jax arrays are better served
by :mod:`ntkit_native._jax_ffi` (XLA FFI custom calls on XLA's own stream).

Input policy
------------
* ``numpy.ndarray`` inputs, or DLPack tensors as above (``TypeError`` naming the
  argument otherwise).
* dtype float32 or float64, one dtype for all arrays (never cast).
* Non-contiguous arrays are **copied** to C order by these wrappers
  (``np.ascontiguousarray``); the raw ``_C`` functions reject them.
* NaN / Inf raise ``ValueError`` naming the argument.
* The output dtype equals the input dtype.

Kernel ids and parameters (defaults used for omitted keys)
----------------------------------------------------------
linear: -; rbf, laplace, matern12, matern32, matern52: lengthscale=1.0;
polynomial: degree=3, gamma=1.0, coef0=1.0; arccos0/1/2: -;
relu_nngp, relu_ntk: depth=1, weight_std=1.0, bias_std=0.0.
"""

from __future__ import annotations

import numbers
import threading

__all__ = [
    "is_available",
    "has_cuda",
    "info",
    "gram",
    "kernel_matvec",
    "batched_gram",
    "hadamard_blocks",
    "grf_features",
    "KERNEL_IDS",
    "KERNEL_PARAMS",
    "DEFAULT_PARAMS",
    "DeviceArray",
]

__version__ = "0.1.0"

KERNEL_IDS = (
    "linear", "rbf", "laplace", "matern12", "matern32", "matern52", "polynomial",
    "arccos0", "arccos1", "arccos2", "relu_nngp", "relu_ntk",
)

KERNEL_PARAMS = {
    "linear": (),
    "rbf": ("lengthscale",),
    "laplace": ("lengthscale",),
    "matern12": ("lengthscale",),
    "matern32": ("lengthscale",),
    "matern52": ("lengthscale",),
    "polynomial": ("degree", "gamma", "coef0"),
    "arccos0": (),
    "arccos1": (),
    "arccos2": (),
    "relu_nngp": ("depth", "weight_std", "bias_std"),
    "relu_ntk": ("depth", "weight_std", "bias_std"),
}

DEFAULT_PARAMS = {
    "lengthscale": 1.0, "degree": 3, "gamma": 1.0, "coef0": 1.0,
    "depth": 1, "weight_std": 1.0, "bias_std": 0.0,
}

_INT_PARAMS = {"degree": 1, "depth": 0}  # name -> minimum

_lock = threading.Lock()
_C_module = None
_C_error: BaseException | None = None
_C_tried = False


def _load():
    """Import and cache the extension; returns the module or None."""
    global _C_module, _C_error, _C_tried
    if _C_tried:
        return _C_module
    with _lock:
        if not _C_tried:
            try:
                import os  # noqa: PLC0415

                # The CPU path alternates OpenBLAS threads (GEMM tiles) and OpenMP
                # threads (kernel transform) on the same cores; spinning idle OpenMP
                # workers would steal CPU from BLAS. Prefer sleeping workers unless
                # the user configured libgomp explicitly (read once, at libgomp load).
                if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
                    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
                from . import _C as mod  # noqa: PLC0415

                # The extension fetches scipy's BLAS on its first compute call, inside a
                # std::call_once entered with the GIL held. A second thread arriving then
                # would wait in call_once holding the GIL while the first needs the GIL to
                # finish importing scipy: a deadlock (4 threads' first calls hung every time).
                # Run that step here, once, under this lock (waiting on a Python lock
                # releases the GIL); ``_use_builtin_blas(False)`` does only that step.
                warm = getattr(mod, "_use_builtin_blas", None)
                if warm is not None:
                    warm(False)
                _C_module = mod
            except ImportError as exc:  # not built / broken build
                _C_error = exc
            _C_tried = True
    return _C_module


def _require():
    mod = _load()
    if mod is None:
        raise RuntimeError(
            f"ntkit_native extension is not available ({_C_error}); "
            "reinstall ntkit with a working C++ compiler")
    return mod


def is_available() -> bool:
    """True iff the compiled extension ``ntkit_native._C`` can be imported."""
    return _load() is not None


def has_cuda() -> bool:
    """True iff compiled with CUDA and at least one CUDA device is present. Never raises."""
    try:
        mod = _load()
        if mod is None or not bool(getattr(mod, "cuda_compiled", False)):
            return False
        return int(mod.cuda_device_count()) > 0
    except Exception:  # noqa: BLE001
        return False


def info() -> dict:
    """Build / runtime information about the extension."""
    mod = _load()
    if mod is None:
        return {
            "available": False, "version": __version__, "cuda_compiled": False,
            "cuda_devices": 0, "openmp": False, "omp_max_threads": 0, "blas": None,
            "kernels": list(KERNEL_IDS), "error": str(_C_error),
            "ffi": False, "ffi_platforms": [], "cublas": False,
        }
    d = dict(mod.info())
    d["available"] = True
    return d


# ----------------------------------------------------------------- validation
def _np():
    import numpy as np  # noqa: PLC0415  (kept out of import time)

    return np


def _check_array(a, name, ndims, dtype=None, ref_name=None):
    np = _np()
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(a).__name__}")
    # byte order is storage, not precision: '>f8' is float64 (copied to native order below)
    dt = a.dtype.newbyteorder("=") if a.dtype.kind == "f" else a.dtype
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise TypeError(f"{name} has unsupported dtype {a.dtype}; expected float32 or float64 "
                        "(inputs are not cast)")
    if a.ndim not in ndims:
        want = " or ".join(f"{k}-D" for k in ndims)
        raise ValueError(f"{name} must be {want}, got {a.ndim}-D array of shape {a.shape}")
    if dtype is not None and dt != dtype:
        raise TypeError(f"{name} has dtype {a.dtype} but {ref_name} has dtype {dtype}; "
                        "all arrays must share one dtype")
    if a.size and not np.isfinite(a).all():
        raise ValueError(f"{name} contains NaN or Inf")
    # Documented policy: non-contiguous (or byte-swapped / unaligned) input is copied.
    # (np.ascontiguousarray alone keeps a contiguous but unaligned buffer, which _C rejects.)
    if not (a.flags.c_contiguous and a.flags.aligned and a.dtype.isnative):
        a = np.require(a, dtype=dt, requirements=["C", "A"])
    return a


def _check_kernel(kernel_id, params):
    if not isinstance(kernel_id, str) or kernel_id not in KERNEL_PARAMS:
        raise ValueError(f"unknown kernel_id {kernel_id!r}; valid ids: {', '.join(KERNEL_IDS)}")
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise TypeError(f"params must be a dict or None, got {type(params).__name__}")
    valid = KERNEL_PARAMS[kernel_id]
    out = {}
    for key, val in params.items():
        if key not in valid:
            raise ValueError(f"unknown parameter {key!r} for kernel {kernel_id!r} "
                             f"(valid: {', '.join(valid) or 'none'})")
        if val is None:
            raise ValueError(f"parameter {key!r} is missing (None)")
        if key in _INT_PARAMS:
            if isinstance(val, bool) or not isinstance(val, numbers.Integral):
                raise ValueError(f"parameter {key!r} must be an int, got {val!r}")
            if int(val) < _INT_PARAMS[key]:
                raise ValueError(f"parameter {key!r} must be an int >= {_INT_PARAMS[key]}, got {val!r}")
            out[key] = int(val)
        else:
            if isinstance(val, bool) or not isinstance(val, numbers.Real):
                raise ValueError(f"parameter {key!r} must be a real number, got {val!r}")
            f = float(val)
            if f != f or f in (float("inf"), float("-inf")):
                raise ValueError(f"parameter {key!r} must be finite, got {val!r}")
            if key in ("lengthscale", "weight_std") and f <= 0:
                raise ValueError(f"parameter {key!r} must be > 0, got {val!r}")
            if key == "bias_std" and f < 0:
                raise ValueError(f"parameter {key!r} must be >= 0, got {val!r}")
            out[key] = f
    return out


def _check_device(device):
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu', 'cuda' or None, got {device!r}")
    if device == "cuda" and not has_cuda():
        raise RuntimeError("device='cuda' requested but CUDA is not available "
                           "(ntkit_native built without CUDA or no CUDA device present)")


# ----------------------------------------------------------------- DLPack
_DL_CPU, _DL_CUDA = 1, 2


class DeviceArray:
    """A CUDA result of ntkit_native for a DLPack producer it does not know.

    Hand it to any DLPack consumer (``torch.from_dlpack``, ``cupy.from_dlpack``,
    ``jax.dlpack.from_dlpack``, ...): the device buffer is passed on without a copy.
    The data is ready when the object is created; it can be exported once.

    Attributes
    ----------
    shape : tuple of int
    dtype : str
        ``"float32"`` or ``"float64"``.
    device_id : int
        The CUDA device.
    """

    __slots__ = ("_capsule", "shape", "dtype", "device_id")

    def __init__(self, capsule, shape, dtype, device_id):
        self._capsule = capsule
        self.shape = tuple(shape)
        self.dtype = dtype
        self.device_id = int(device_id)

    def __dlpack__(self, *, stream=None, max_version=None, dl_device=None, copy=None):  # noqa: ARG002
        if copy:
            raise BufferError("DeviceArray cannot be exported with copy=True")
        if self._capsule is None:
            raise BufferError("this DeviceArray was already exported (a DLPack capsule is single-use)")
        cap, self._capsule = self._capsule, None
        return cap

    def __dlpack_device__(self):
        return (_DL_CUDA, self.device_id)

    def __repr__(self):
        return f"DeviceArray(shape={self.shape}, dtype={self.dtype}, device=cuda:{self.device_id})"


def _dlpack_device_type(a, name):
    """None for numpy / None / non-DLPack objects, else the DLPack device type (1 CPU, 2 CUDA)."""
    np = _np()
    if a is None or isinstance(a, np.ndarray) or not hasattr(a, "__dlpack__"):
        return None
    try:
        dev = a.__dlpack_device__()
        kind = int(dev[0])
    except Exception as exc:  # noqa: BLE001
        raise TypeError(f"{name} has __dlpack__ but no usable __dlpack_device__ ({exc})") from exc
    if kind not in (_DL_CPU, _DL_CUDA):
        raise TypeError(f"{name} lives on DLPack device type {kind}; only CPU (1) and CUDA (2) are supported")
    return kind


def _route(device, named):
    """True when the inputs are CUDA tensors (computed on their GPU), False for host arrays.

    Host DLPack tensors are viewed as numpy arrays (np.from_dlpack); mixing CUDA tensors
    with host arrays is an error. Returns (on_cuda, arrays).
    """
    np = _np()
    kinds = [(_dlpack_device_type(a, nm), nm) for nm, a in named]
    cuda = [nm for k, nm in kinds if k == _DL_CUDA]
    if cuda:
        host = [nm for (k, nm), (_, a) in zip(kinds, named) if a is not None and k != _DL_CUDA]
        if host:
            raise TypeError(f"{cuda[0]} is a CUDA tensor but {host[0]} is not: all arrays must live on one device")
        if device == "cpu":
            raise ValueError(f"device='cpu' but {cuda[0]} is a CUDA tensor (its data is not copied to the host)")
        if not has_cuda():
            raise RuntimeError(f"{cuda[0]} is a CUDA tensor but ntkit_native has no CUDA support "
                               "(built without CUDA or no CUDA device present)")
        return True, [a for _, a in named]
    out = []
    for (k, nm), (_, a) in zip(kinds, named):
        if k == _DL_CPU:
            try:
                a = np.from_dlpack(a)
            except Exception as exc:  # noqa: BLE001
                raise TypeError(f"{nm} could not be viewed as a numpy array through DLPack ({exc})") from exc
        out.append(a)
    return False, out


def _capsule(a):
    if a is None:
        return None
    try:
        return a.__dlpack__(stream=1)  # ready on the legacy default stream, where the extension computes
    except TypeError:
        return a.__dlpack__()


def _wrap_result(res, like):
    capsule, shape, dtype, dev = res
    arr = DeviceArray(capsule, shape, dtype, dev)
    lib = type(like).__module__.split(".")[0]
    try:
        if lib == "torch":
            import torch  # noqa: PLC0415

            return torch.from_dlpack(arr)
        if lib == "cupy":
            import cupy  # noqa: PLC0415

            return cupy.from_dlpack(arr)
        if lib in ("jax", "jaxlib"):
            import jax  # noqa: PLC0415

            return jax.dlpack.from_dlpack(arr)
    except ImportError:
        pass
    return arr


# ----------------------------------------------------------------- public ops
def _check_xz(X, Z):
    """Validate X and the optional Z (same dtype, same number of features)."""
    X = _check_array(X, "X", (2,))
    if Z is not None:
        Z = _check_array(Z, "Z", (2,), X.dtype, "X")
        if Z.shape[1] != X.shape[1]:
            raise ValueError(f"X has {X.shape[1]} features but Z has {Z.shape[1]} features")
    return X, Z


def gram(X, Z=None, kernel_id="rbf", params=None, *, device=None):
    """Kernel matrix K(X, Z) of shape (n, m); ``Z=None`` -> exactly symmetric K(X, X).

    ``device``: None = where the data lives, "cpu" or "cuda" (see the module notes).
    """
    mod = _require()
    on_cuda, (X, Z) = _route(device, (("X", X), ("Z", Z)))
    if on_cuda:
        p = _check_kernel(kernel_id, params)
        return _wrap_result(mod.gram_dlpack(_capsule(X), _capsule(Z), kernel_id, p), X)
    X, Z = _check_xz(X, Z)
    p = _check_kernel(kernel_id, params)
    device = "cpu" if device is None else device
    _check_device(device)
    return mod.gram(X, Z, kernel_id, p, device)


def kernel_matvec(X, Z, v, kernel_id="rbf", params=None, *, block_rows=None, block_cols=None,
                  device=None):
    """K(X, Z) @ v for v of shape (m,) -> (n,) or (m, t) -> (n, t), without materialising K.

    ``Z=None`` means Z is X; the diagonal of K is then the exact k(x, x). ``block_rows`` /
    ``block_cols`` tune the CPU tiles (ignored on the GPU).
    """
    mod = _require()
    for nm, b in (("block_rows", block_rows), ("block_cols", block_cols)):
        if b is not None and (isinstance(b, bool) or not isinstance(b, numbers.Integral) or b < 1):
            raise ValueError(f"{nm} must be a positive int or None, got {b!r}")
    on_cuda, (X, Z, v) = _route(device, (("X", X), ("Z", Z), ("v", v)))
    if on_cuda:
        p = _check_kernel(kernel_id, params)
        return _wrap_result(mod.kernel_matvec_dlpack(_capsule(X), _capsule(Z), _capsule(v), kernel_id, p), X)
    X, Z = _check_xz(X, Z)
    v = _check_array(v, "v", (1, 2), X.dtype, "X")
    m = X.shape[0] if Z is None else Z.shape[0]
    if v.shape[0] != m:
        raise ValueError(f"v has {v.shape[0]} rows but Z has {m} rows")
    p = _check_kernel(kernel_id, params)
    device = "cpu" if device is None else device
    _check_device(device)
    return mod.kernel_matvec(X, Z, v, kernel_id, p, block_rows, block_cols, device)


def batched_gram(A, B=None, reduce="none", *, device=None):
    """Stack of A_i @ B_i.T, shape (b, n, m), or with reduce="sum" their sum (n, m)."""
    mod = _require()
    if reduce not in ("none", "sum"):
        raise ValueError(f"reduce must be 'none' or 'sum', got {reduce!r}")
    on_cuda, (A, B) = _route(device, (("A", A), ("B", B)))
    if on_cuda:
        return _wrap_result(mod.batched_gram_dlpack(_capsule(A), _capsule(B), reduce), A)
    A = _check_array(A, "A", (3,))
    if B is not None:
        B = _check_array(B, "B", (3,), A.dtype, "A")
        if B.shape[0] != A.shape[0]:
            raise ValueError(f"A has batch size {A.shape[0]} but B has batch size {B.shape[0]}")
        if B.shape[2] != A.shape[2]:
            raise ValueError(f"A has {A.shape[2]} features but B has {B.shape[2]} features")
    device = "cpu" if device is None else device
    _check_device(device)
    return mod.batched_gram(A, B, reduce, device)


def hadamard_blocks(X, signs):
    """Structured projections ``H D3 H D2 H D1 [x, 0]`` per block (see the module notes)."""
    mod = _require()
    X = _check_array(X, "X", (2,))
    signs = _check_array(signs, "signs", (3,), X.dtype, "X")
    return mod.hadamard_blocks(X, signs)


def grf_features(indptr, indices, weights, starts, n_walks, p_halt, modulation, seed, mode=0):
    """Graph random features of the ``starts`` nodes as CSR rows (see the module notes)."""
    np = _np()
    mod = _require()
    arrs = []
    for name, a, integral in (("indptr", indptr, True), ("indices", indices, True), ("weights", weights, False),
                              ("starts", starts, True), ("modulation", modulation, False)):
        a = np.asarray(a)
        kinds = "iu" if integral else "iuf"  # indices are never truncated from floats; nothing is cast from
        if a.dtype.kind not in kinds:          # complex, bool, strings, records or dates
            want = "an integer" if integral else "a real (float or integer)"
            raise TypeError(f"{name} must be {want} array; got dtype {a.dtype}")
        # np.require, not np.ascontiguousarray: a contiguous but unaligned buffer must be copied too
        arrs.append(np.require(a, dtype=np.int64 if integral else np.float64, requirements=["C", "A"]))
    for name, val in (("n_walks", n_walks), ("seed", seed), ("mode", mode)):
        if isinstance(val, bool) or not isinstance(val, numbers.Integral):
            raise TypeError(f"{name} must be an int, got {val!r}")
    if isinstance(p_halt, bool) or not isinstance(p_halt, numbers.Real):
        raise TypeError(f"p_halt must be a real number, got {p_halt!r}")
    if not -2**63 <= int(n_walks) < 2**63:
        raise ValueError(f"n_walks is out of range: {n_walks!r}")
    return mod.grf_features(arrs[0], arrs[1], arrs[2], arrs[3], int(n_walks), float(p_halt), arrs[4],
                            int(seed) & 0xFFFFFFFFFFFFFFFF, int(mode))
