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


#: The engine's cache-sized tile (rows x columns per thread) for kernel_matvec.
NATIVE_TILE_ROWS = 256
NATIVE_TILE_COLS = {4: 1024, 8: 512}


def matvec_tiles(n, m, d, t, itemsize, memory_budget):
    """Tile sizes for the engine: its cache-sized default, shrunk only when the budget demands.

    Each OpenMP thread holds one tile, so the budget is shared between the threads.
    """
    from .._blocks import plan_blocks

    threads = max(1, int(_module().info().get("omp_max_threads", 1)))
    rows, cols = NATIVE_TILE_ROWS, NATIVE_TILE_COLS.get(itemsize, 512)
    plan = plan_blocks(n, m, n_features=d, n_targets=t, itemsize=itemsize, memory_budget=memory_budget // threads)
    if plan.block_rows >= min(rows, n) and plan.block_cols >= min(cols, m):
        return None, None  # the default tile fits: let the engine use it
    return min(rows, plan.block_rows), min(cols, plan.block_cols)


def batched_gram(A, B, reduce):
    return _module().batched_gram(A, B, reduce=reduce)


def asarray(x):
    # C-contiguous, aligned and native-endian (arrays unpickled from a buffer, e.g. on a Dask
    # worker, can be contiguous but unaligned; the engine refuses those)
    x = np.asarray(x)
    return np.require(x.astype(x.dtype.newbyteorder("="), copy=False), requirements=["C", "A"])
