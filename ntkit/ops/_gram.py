"""The kernel primitive: Gram blocks and kernel-matrix products.

Everything in ntkit that touches data goes through :func:`gram`,
:func:`kernel_matvec` (and :class:`~ntkit.ops.KernelOperator` built on it) or
:func:`batched_gram`.

Backends
--------
``backend="auto"`` is the deterministic rule:

1. jax arrays in → ``"jax"`` (the result stays on the jax side);
2. otherwise, if :mod:`ntkit_native` is built and implements the kernel → ``"native"``;
3. otherwise → ``"numpy"``.

``backend="native"`` with jax arrays calls the same engine through XLA FFI custom calls
(:mod:`ntkit_native._jax_ffi`): on the arrays' own buffers, on their device (CPU, or the GPU on
XLA's stream), eagerly and under ``jax.jit``; it is not differentiable. ``"auto"`` keeps jax
arrays on XLA (differentiable, and measured as fast or faster for the block sizes ntkit plans).

``ntkit.config_context(backend=...)`` replaces ``"auto"`` for a ``with`` block.
Whatever the backend, numpy in gives numpy out, jax in gives jax out, and the
output dtype is the common dtype of the inputs (float32 only when all are float32).
"""

from __future__ import annotations

from typing import Any, Iterator, Literal, NamedTuple

import numpy as np

from .._config import _config, available_memory, resolve_budget
from .._device import device_budget
from .._validation import InvalidParameterError, check_data, is_jax_array
from ..kernels._base import Kernel, _is_tracer, register_gram
from ._backends import _jax as jax_backend
from ._backends import _native as native_backend
from ._backends import _native_jax as native_jax_backend
from ._backends import _numpy as numpy_backend
from ._blocks import plan_blocks

__all__ = ["gram", "kernel_matvec", "iter_gram_blocks", "resolve_backend"]

Backend = Literal["auto", "numpy", "jax", "native"]
_BACKENDS = ("auto", "numpy", "jax", "native")


class _Problem(NamedTuple):
    kernel: Kernel
    params: dict
    X: Any
    Z: Any  # None for the symmetric case K(X, X)
    n_features: int
    backend: str
    jax_in: bool
    dtype: np.dtype  # of the result
    compute: np.dtype = None  # of the arithmetic: float64 for float32 data outside float32's safe range

    @property
    def work(self):
        return self.dtype if self.compute is None else self.compute


def resolve_backend(backend: str, kernel: Kernel, *, jax_in: bool, params: dict | None = None) -> str:
    """Apply the documented ``"auto"`` rule; check an explicit choice can run."""
    if backend not in _BACKENDS:
        raise InvalidParameterError(f"The 'backend' parameter must be one of {_BACKENDS}. Got {backend!r} instead.")
    if backend == "auto":
        backend = _config.get()["backend"]
    params = kernel._validated() if params is None else params
    if backend == "auto":
        if jax_in:
            return "jax"
        if kernel._native_spec(params) is not None and native_backend.available():
            return "native"
        return "numpy"
    if backend == "native":
        if not native_backend.available():
            raise RuntimeError(
                "backend='native' was requested but ntkit_native is not built in this installation; "
                "reinstall ntkit with a C++17 compiler (see ntkit.show_backends()) or use backend='numpy'."
            )
        if kernel._native_spec(params) is None:
            raise ValueError(
                f"backend='native' does not implement {type(kernel).__name__}; use backend='numpy' or 'jax'."
            )
    return backend


def c_aligned(a, dtype):
    """C-contiguous, aligned, native-endian ``dtype`` array (a copy only when needed). Buffers
    unpickled from another process (Dask workers) can be contiguous yet unaligned."""
    return np.require(np.asarray(a, dtype=np.dtype(dtype).newbyteorder("=")), requirements=["C", "A"])


def _check_kernel(kernel) -> Kernel:
    if not isinstance(kernel, Kernel):
        raise TypeError(
            f"kernel must be an ntkit.kernels.Kernel instance such as RBF(1.0); got {type(kernel).__name__}."
        )
    return kernel


#: float32 data whose prepared (lengthscale-scaled) squared norms may exceed this, or, for
#: dot-product kernels, whose nonzero squared norms fall below its inverse, are computed in
#: float64 and the result cast back (float32's range ends at 3.4e38, and squared norms and
#: their products are formed on the way: |x/ℓ| ≈ 1e19 already overflows an RBF's |x|²).
F32_SAFE_SQNORM = 1e15


def _f32_unsafe(xp, kernel, arrays, n_features):
    """Whether float32 arithmetic could overflow or lose the norms to underflow on these data."""
    top = 0.0
    low = np.inf
    for a in arrays:
        if a is None or a.shape[0] == 0 or a.size == 0:
            continue
        rowmax = xp.maximum(xp.max(a, axis=1), -xp.min(a, axis=1))  # |x|_inf per row, no overflow
        top = max(top, float(xp.max(rowmax)))
        nz = rowmax[rowmax > 0]
        if nz.size:
            low = min(low, float(xp.min(nz)))
    if top * top * max(n_features, 1) > F32_SAFE_SQNORM:
        return True
    return kernel.family != "stationary" and low * low < 1.0 / F32_SAFE_SQNORM


def _setup(kernel, X, Z, backend, extra=()) -> tuple[_Problem, list]:
    """Validate, choose the backend, cast to one dtype and prepare the data."""
    kernel = _check_kernel(kernel)
    params = kernel._validated()
    X = check_data(X, "X")
    if Z is not None:
        Z = check_data(Z, "Z")
        if Z.shape[1] != X.shape[1]:
            raise ValueError(
                f"X has {X.shape[1]} features but Z has {Z.shape[1]}; both must have the same number of columns."
            )
    arrays = [a for a in (X, Z, *extra) if a is not None]
    jax_in = any(is_jax_array(a) for a in arrays)
    dtype = np.result_type(*[np.dtype(a.dtype) for a in arrays])
    backend = resolve_backend(backend, kernel, jax_in=jax_in, params=params)
    work = dtype
    if backend == "native" and jax_in and not native_jax_backend.available():
        raise RuntimeError(
            "backend='native' with jax arrays needs ntkit_native's XLA FFI targets, which this build lacks "
            "(jaxlib's headers were not found when it was compiled; see ntkit.show_backends()); reinstall with "
            "jax installed, pass numpy arrays, or use backend='jax'.")
    for attempt in range(2):
        if backend == "jax" or (backend == "native" and jax_in):
            import jax.numpy as jnp

            with jax_backend.x64_scope(work):
                conv = [None if a is None else jnp.asarray(a, dtype=work) for a in (X, Z, *extra)]
                if conv[1] is None:
                    Xp, Zp = kernel._prepare(jnp, conv[0], None, params)
                else:  # Z anchors the preparation: a row's result then does not depend on the other rows of X
                    Zp, Xp = kernel._prepare(jnp, conv[1], conv[0], params)
            xp = jnp
        else:
            conv = [None if a is None else c_aligned(a, work) for a in (X, Z, *extra)]
            Xp, Zp = kernel._prepare(np, conv[0], conv[1], params)
            Xp = c_aligned(Xp, work)
            Zp = None if Zp is None else c_aligned(Zp, work)
            xp = np
        if attempt or work != np.float32 or _is_tracer(Xp) or _is_tracer(Zp) or \
                not _f32_unsafe(xp, kernel, (Xp, Zp), int(X.shape[1])):
            break  # (under jit the values are unknown: float32 stays float32)
        work = np.dtype(np.float64)  # float32 would overflow (or underflow the norms): compute in float64
    prob = _Problem(kernel, params, Xp, Zp, int(X.shape[1]), backend, jax_in, dtype,
                    None if work == dtype else np.dtype(work))
    return prob, conv[2:]


def _budget(prob: _Problem, memory_budget) -> int:
    """The workspace budget: of the arrays' device for jax work on a device with allocator limits
    (a GPU; see :func:`ntkit._device.device_budget`), else the host budget."""
    if prob.backend == "jax" and is_jax_array(prob.X) and not _is_tracer(prob.X):  # (under jit/grad: host rule)
        from .._device import _array_device

        return device_budget(_array_device(prob.X), memory_budget)
    return resolve_budget(memory_budget)


def _room_for_result(prob: _Problem):
    """Bytes free where the result will live: the jax device's pool for jax output on a device with
    allocator statistics, else host memory."""
    if prob.jax_in and prob.backend == "jax" and is_jax_array(prob.X) and not _is_tracer(prob.X):
        from .._device import _array_device

        try:
            stats = _array_device(prob.X).memory_stats()
        except Exception:  # noqa: BLE001
            stats = None
        if stats and "bytes_limit" in stats:
            return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0)), "on the device"
    return available_memory(), "in host memory"


def _finish(prob: _Problem, out):
    """numpy in → numpy out, jax in → jax out; dtype preserved."""
    if prob.compute is not None:  # computed in float64 for float32 data: the values must fit float32
        out64 = np.asarray(out)
        big = float(np.max(np.abs(out64))) if out64.size else 0.0
        if not np.isfinite(big) or big > float(np.finfo(np.float32).max):
            raise ValueError(
                f"{type(prob.kernel).__name__} values on these float32 data reach {big:.3g}, beyond float32's range "
                "(3.4e38); pass float64 data or rescale X (and the kernel's lengthscale).")
    if prob.jax_in:
        import jax.numpy as jnp

        with jax_backend.x64_scope(prob.dtype):
            return jnp.asarray(out, dtype=prob.dtype)
    return np.asarray(out, dtype=prob.dtype)


def gram(kernel: Kernel, X, Z=None, *, backend: Backend = "auto", memory_budget=None):
    """Gram matrix ``K[i, j] = k(X[i], Z[j])``.

    Parameters
    ----------
    kernel : Kernel
        An :mod:`ntkit.kernels` kernel, e.g. ``RBF(1.0)``.
    X : array of shape (n_samples, n_features)
        numpy or jax, float32 or float64.
    Z : array of shape (m_samples, n_features), optional
        Defaults to X. Then only one triangle of blocks is computed, the result
        is exactly symmetric and its diagonal is the kernel's exact diagonal.
    backend : {"auto", "numpy", "jax", "native"}, default="auto"
        See the module documentation for the ``"auto"`` rule.
    memory_budget : int or str, optional
        Bound on the *workspace* (temporaries) used while forming blocks.
        The (n, m) result itself must fit in available memory; for larger
        problems use :func:`kernel_matvec` or :func:`iter_gram_blocks`.

    Returns
    -------
    K : array of shape (n_samples, m_samples)

    Examples
    --------
    >>> import numpy as np
    >>> from ntkit.kernels import RBF
    >>> from ntkit.ops import gram
    >>> X = np.random.default_rng(0).normal(size=(5, 3))
    >>> gram(RBF(1.0), X).shape
    (5, 5)
    """
    prob, _ = _setup(kernel, X, Z, backend)
    memory_budget = _budget(prob, memory_budget)
    n = prob.X.shape[0]
    m = n if prob.Z is None else prob.Z.shape[0]
    need = n * m * np.dtype(prob.dtype).itemsize
    have, where = _room_for_result(prob)
    if need > have:
        raise MemoryError(
            f"The ({n}, {m}) Gram matrix needs {need / 2**30:.1f} GiB but only "
            f"{have / 2**30:.1f} GiB are available {where}; use ntkit.ops.kernel_matvec, "
            "ntkit.ops.KernelOperator or ntkit.ops.iter_gram_blocks, which stream in blocks."
        )
    if prob.backend == "native" and prob.jax_in:  # XLA FFI custom call on the arrays' own buffers
        with jax_backend.x64_scope(prob.work):
            out = native_jax_backend.gram(prob.kernel._native_spec(prob.params), prob.X, prob.Z)
    elif prob.backend == "native":
        out = native_backend.gram(prob.kernel._native_spec(prob.params), prob.X, prob.Z)
    elif prob.backend == "jax":
        with jax_backend.x64_scope(prob.work):
            out = jax_backend.gram(prob.kernel, prob.params, prob.X, prob.Z, prob.n_features, memory_budget,
                                   to_numpy=not prob.jax_in)
    else:
        out = numpy_backend.gram(prob.kernel, prob.params, prob.X, prob.Z, prob.n_features, memory_budget)
    return _finish(prob, out)


def kernel_matvec(kernel: Kernel, X, Z, v, *, backend: Backend = "auto", memory_budget=None):
    """``K(X, Z) @ v`` without forming ``K(X, Z)``.

    Blocks of K are formed, multiplied into the output and dropped, so peak
    memory is ``O((n + m)(d + t))`` plus one block sized by ``memory_budget``.

    Parameters
    ----------
    kernel : Kernel
    X : array of shape (n_samples, n_features)
    Z : array of shape (m_samples, n_features) or None
        None means ``Z = X``.
    v : array of shape (m_samples,) or (m_samples, n_targets)
    backend : {"auto", "numpy", "jax", "native"}, default="auto"
    memory_budget : int or str, optional
        Workspace bound in bytes (or ``"512MiB"``); default: a quarter of
        available memory (see :func:`ntkit.config_context`).

    Returns
    -------
    array of shape (n_samples,) or (n_samples, n_targets), like ``v``.

    Examples
    --------
    >>> import numpy as np
    >>> from ntkit.kernels import RBF
    >>> from ntkit.ops import gram, kernel_matvec
    >>> rng = np.random.default_rng(0)
    >>> X, Z, v = rng.normal(size=(6, 2)), rng.normal(size=(4, 2)), rng.normal(size=4)
    >>> bool(np.allclose(kernel_matvec(RBF(), X, Z, v), gram(RBF(), X, Z) @ v))
    True
    """
    if v is None:
        raise ValueError("v is required; got None.")
    v = check_data(v, "v", ndim=(1, 2))
    Zs = X if Z is None else Z
    m = Zs.shape[0] if hasattr(Zs, "shape") and len(getattr(Zs, "shape", ())) >= 1 else None
    if m is not None and v.shape[0] != m:
        raise ValueError(f"v must have {m} rows to match Z (or X when Z is None); found shape {tuple(v.shape)}.")
    prob, (vv,) = _setup(kernel, X, Z, backend, extra=(v,))
    memory_budget = _budget(prob, memory_budget)
    one_d = vv.ndim == 1
    v2 = vv[:, None] if one_d else vv
    if prob.backend == "native" and prob.jax_in:  # fused custom call: K is never stored
        with jax_backend.x64_scope(prob.work):
            out = native_jax_backend.matvec(prob.kernel._native_spec(prob.params), prob.X, prob.Z, v2)
    elif prob.backend == "native":
        m = prob.X.shape[0] if prob.Z is None else prob.Z.shape[0]
        br, bc = native_backend.matvec_tiles(prob.X.shape[0], m, prob.X.shape[1], v2.shape[1],
                                             np.dtype(prob.work).itemsize, memory_budget)
        out = native_backend.matvec(prob.kernel._native_spec(prob.params), prob.X, prob.Z,
                                    np.ascontiguousarray(v2), block_rows=br, block_cols=bc)
    elif prob.backend == "jax":
        with jax_backend.x64_scope(prob.work):
            out = jax_backend.matvec(prob.kernel, prob.params, prob.X, prob.Z, v2, prob.n_features, memory_budget)
    else:
        out = numpy_backend.matvec(prob.kernel, prob.params, prob.X, prob.Z, v2, prob.n_features, memory_budget)
    out = out[:, 0] if one_d else out
    return _finish(prob, out)


def iter_gram_blocks(kernel: Kernel, X, Z=None, *, backend: Backend = "auto", memory_budget=None) -> Iterator:
    """Yield ``(rows, cols, block)`` covering ``K(X, Z)`` block by block.

    ``rows`` and ``cols`` are slices; each block has shape
    ``(rows.stop - rows.start, cols.stop - cols.start)`` and its size is planned
    from ``memory_budget`` (see :func:`ntkit.ops.plan_blocks`), so a Gram
    matrix far larger than memory can be consumed piece by piece. A block is at
    most a third of the budget, so a caller that keeps one block while the next
    is formed stays within it (``tests/reliability/test_memory.py`` measures
    this at an 8 GiB Gram matrix under a 1 GiB budget).

    Examples
    --------
    >>> import numpy as np
    >>> from ntkit.kernels import Laplace
    >>> from ntkit.ops import iter_gram_blocks
    >>> X = np.random.default_rng(0).normal(size=(10, 2))
    >>> sum(b.size for _, _, b in iter_gram_blocks(Laplace(), X, memory_budget=2048))
    100
    """
    prob, _ = _setup(kernel, X, X if Z is None else Z, backend)
    memory_budget = _budget(prob, memory_budget)
    n, m = prob.X.shape[0], prob.Z.shape[0]
    plan = plan_blocks(n, m, n_features=prob.X.shape[1], itemsize=np.dtype(prob.work).itemsize,
                       memory_budget=memory_budget, entry_copies=prob.kernel._workspace_copies(prob.params))
    for i0 in range(0, n, plan.block_rows):
        rows = slice(i0, min(i0 + plan.block_rows, n))
        for j0 in range(0, m, plan.block_cols):
            cols = slice(j0, min(j0 + plan.block_cols, m))
            Xb, Zb = prob.X[rows], prob.Z[cols]
            if prob.backend == "native" and prob.jax_in:
                with jax_backend.x64_scope(prob.work):
                    blk = native_jax_backend.gram(prob.kernel._native_spec(prob.params), Xb, Zb)
            elif prob.backend == "native":
                blk = native_backend.gram(prob.kernel._native_spec(prob.params), np.ascontiguousarray(Xb),
                                          np.ascontiguousarray(Zb))
            elif prob.backend == "jax":
                with jax_backend.x64_scope(prob.work):
                    blk = jax_backend.gram(prob.kernel, prob.params, Xb, Zb, prob.n_features, memory_budget)
            else:
                blk = numpy_backend.gram(prob.kernel, prob.params, Xb, Zb, prob.n_features, memory_budget)
            yield rows, cols, _finish(prob, blk)


register_gram(gram)  # Kernel.__call__ evaluates through the primitive (kernels never import ntkit.ops)
