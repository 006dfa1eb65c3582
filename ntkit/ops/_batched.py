"""``batched_gram``: per-slice Gram products, the building block of the empirical NTK."""

from __future__ import annotations

import numpy as np

from .._config import _config
from .._validation import InvalidParameterError, check_data, is_jax_array
from ._backends import _jax as jax_backend
from ._backends import _native as native_backend
from ._backends import _numpy as numpy_backend

__all__ = ["batched_gram"]


def batched_gram(A, B=None, *, reduce="none", backend="auto"):
    """Stacked or summed Gram products ``A_b B_b^T``.

    Parameters
    ----------
    A : array of shape (b, n, p)
    B : array of shape (b, m, p), optional
        Defaults to A (then only one triangle is computed by the native engine).
    reduce : {"none", "sum"}, default="none"
        ``"none"`` returns the stack ``(b, n, m)``; ``"sum"`` returns
        ``sum_b A_b B_b^T`` of shape ``(n, m)``.
    backend : {"auto", "numpy", "jax", "native"}, default="auto"
        ``"auto"``: jax arrays → jax, otherwise numpy. Plain products are BLAS-bound and
        numpy's BLAS already runs at the roof on CPU (``benchmarks/RESULTS.md``: the native
        CPU engine measures 0.85-1.4x of numpy here), so the native engine is used only
        when asked for (and for its CUDA path).

    Returns
    -------
    array of shape (b, n, m) or (n, m)

    Examples
    --------
    >>> import numpy as np
    >>> from ntkit.ops import batched_gram
    >>> A = np.ones((3, 2, 4))
    >>> batched_gram(A, reduce="sum")
    array([[12., 12.],
           [12., 12.]])
    """
    if reduce not in ("none", "sum"):
        raise InvalidParameterError(
            f"The 'reduce' parameter of batched_gram must be one of {{'none', 'sum'}}. Got {reduce!r} instead."
        )
    A = check_data(A, "A", ndim=3)
    if B is not None:
        B = check_data(B, "B", ndim=3)
        if B.shape[0] != A.shape[0]:
            raise ValueError(f"A and B must have the same batch size; got A {tuple(A.shape)} and B {tuple(B.shape)}.")
        if B.shape[2] != A.shape[2]:
            raise ValueError(
                f"A and B must have the same last dimension p; got A {tuple(A.shape)} and B {tuple(B.shape)}."
            )
    arrays = [a for a in (A, B) if a is not None]
    jax_in = any(is_jax_array(a) for a in arrays)
    dtype = np.result_type(*[np.dtype(a.dtype) for a in arrays])
    if backend not in ("auto", "numpy", "jax", "native"):
        raise InvalidParameterError(
            f"The 'backend' parameter of batched_gram must be one of ('auto', 'numpy', 'jax', 'native'). Got {backend!r} instead."
        )
    if backend == "auto":
        backend = _config.get()["backend"]
    if backend == "auto":
        backend = "jax" if jax_in else "numpy"
    if backend == "native" and not native_backend.available():
        raise RuntimeError("backend='native' was requested but ntkit_native is not built; use backend='numpy'.")
    if backend == "jax":
        import jax.numpy as jnp

        with jax_backend.x64_scope(dtype):
            out = jax_backend.batched_gram(
                jnp.asarray(A, dtype=dtype), None if B is None else jnp.asarray(B, dtype=dtype), reduce
            )
            return out if jax_in else np.asarray(out)
    from ._gram import c_aligned

    An = c_aligned(A, dtype)
    Bn = None if B is None else c_aligned(B, dtype)
    if backend == "native":
        out = native_backend.batched_gram(An, Bn, reduce)
    else:
        out = numpy_backend.batched_gram(An, Bn, reduce)
    if jax_in:
        import jax.numpy as jnp

        with jax_backend.x64_scope(dtype):
            return jnp.asarray(out, dtype=dtype)
    return np.asarray(out, dtype=dtype)
