"""The native backend: thin calls into :mod:`ntkit_native` on prepared numpy data."""

from __future__ import annotations

import numpy as np


def _module():
    import ntkit_native

    return ntkit_native


def available() -> bool:
    try:
        return bool(_module().is_available())
    except (ImportError, AttributeError):
        return False


def gram(spec, X, Z):
    kid, kparams = spec
    return _module().gram(X, Z, kid, kparams)


def matvec(spec, X, Z, v, block_rows=None, block_cols=None):
    """``Z=None`` means Z = X (the engine then uses the exact diagonal)."""
    kid, kparams = spec
    return _module().kernel_matvec(X, Z, v, kid, kparams, block_rows=block_rows, block_cols=block_cols)


def batched_gram(A, B, reduce):
    return _module().batched_gram(A, B, reduce=reduce)


def asarray(x):
    return np.ascontiguousarray(x)
