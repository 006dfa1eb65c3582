"""The native backend on jax arrays: XLA FFI custom calls into :mod:`ntkit_native`.

The jax twin of :mod:`._native` (which takes prepared numpy data): the same engine,
reached through ``ntkit_native._jax_ffi`` so that it runs on jax arrays where they live
(CPU, or the GPU on XLA's stream without host copies), eagerly and under ``jax.jit``.
``spec`` is ``(kernel_id, params)`` as returned by a kernel's ``_native_spec(params)``
(applied, as for numpy, to the data after the kernel's ``_prepare``). Not
differentiable; nothing is imported before the first call.
"""

from __future__ import annotations


def _ffi():
    from ntkit_native import _jax_ffi  # noqa: PLC0415

    return _jax_ffi


def available() -> bool:
    """True iff ntkit_native was built with the XLA FFI targets and jax imports."""
    try:
        return bool(_ffi().available())
    except ImportError:
        return False


def platforms() -> tuple:
    """Platforms with native custom calls: ``("cpu",)`` or ``("cpu", "CUDA")``; ``()`` without FFI."""
    try:
        return tuple(_ffi().platforms())
    except ImportError:
        return ()


def gram(spec, X, Z):
    """K(X, Z) on jax arrays; ``Z=None`` means Z = X (exactly symmetric, exact diagonal)."""
    kid, kparams = spec
    return _ffi().gram(X, Z, kid, kparams)


def matvec(spec, X, Z, v2):
    """K(X, Z) @ v2 for v2 of shape (m, t) on jax arrays; ``Z=None`` means Z = X (exact diagonal)."""
    kid, kparams = spec
    return _ffi().kernel_matvec(X, Z, v2, kid, kparams)


def batched_gram(A, B, reduce):
    """Stack (b, n, m) or sum (n, m) of A_i B_i^T on jax arrays; ``B=None`` means B = A."""
    return _ffi().batched_gram(A, B, reduce)
