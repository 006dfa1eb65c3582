"""Matrix products whose bits do not depend on the number of BLAS threads.

OpenBLAS splits a GEMM (and a GEMV, a dot product) between its threads by cutting the output into
tiles whose shape depends on the thread count, and edge tiles run other micro-kernels (fused or
separate multiply-add, another order of the k-sum), so ``A @ B`` on 1 thread and on 2 threads can
differ in the last bits (measured here, OpenBLAS 0.3.31 Haswell: ``(300, 20) @ (20, 256)`` differs
by 5e-15, ``(2000, 500) @ (500, 1500)`` by 9e-14; GEMV ``(5000, 300)ᵀ @ u`` differs as well).
Solvers and eigensolvers then carry those last bits into their results.

:func:`matmul` computes ``A @ B`` on a grid of output tiles whose size is a function of the shapes
only; each tile is one single-threaded BLAS call, and the tiles run on a thread pool as wide as
the BLAS thread count the caller had. The same tile always gets the same single-threaded call, so
the result is bit-identical at any thread count, and about as fast as threaded BLAS (the k-sum is
never split, so the arithmetic is that of a one-thread ``A @ B`` tile by tile).

:func:`one_blas_thread` is the process-wide, reference-counted "BLAS on one thread" section used
around it and around every LAPACK call (see :mod:`ntkit._linalg`): safe from several Python threads
at once (the first to enter saves the thread counts, the last to leave restores them), and cheap
(a cached :class:`threadpoolctl.ThreadpoolController`, a few microseconds per entry).
"""

from __future__ import annotations

import os
import threading
from contextlib import contextmanager

import numpy as np

__all__ = ["one_blas_thread", "blas_threads", "matmul", "TILE_ROWS", "TILE_COLS", "TILE_WORK", "MIN_K_PIECE",
           "MAX_PIECES", "K_SPLIT_BYTES", "TINY"]

#: Output rows per tile (at least; taller for thin products, see :data:`TILE_WORK`).
TILE_ROWS = 256
#: Output columns per tile (at least).
TILE_COLS = 2048
#: Multiply-adds a tile is grown to before the grid is cut finer (thin products and GEMVs would
#: otherwise be hundreds of tiny calls); below it a product is one single-threaded call.
TILE_WORK = 1 << 22
#: Products with a small output and a long inner dimension (``Φᵀ Φ`` of a tall feature matrix) are
#: also cut along k, in pieces of at least this length, into at most :data:`MAX_PIECES` work items;
#: the partial products are added in a fixed order (so still independent of the thread count).
MIN_K_PIECE = 4096
MAX_PIECES = 16
#: Partial products of a k-split may use at most this many bytes.
K_SPLIT_BYTES = 64 * 2**20
#: Products of at most this many multiply-adds are ``A @ B`` as they are: OpenBLAS never threads them
#: (its thresholds: GEMM below 65536·4 multiply-adds, GEMV below 9216 matrix entries, dot products
#: below 10000 entries), and a section's bookkeeping would cost 15× the product.
TINY = 4096

_lock = threading.Lock()
_depth = 0
_saved: list = []
_controller = None
_pool = None
_local = threading.local()  # per-thread state for OpenMP-layered BLAS, whose limits are per thread


def _blas_libs():
    global _controller
    if _controller is None:
        from threadpoolctl import ThreadpoolController

        _controller = ThreadpoolController()
    return [lib for lib in _controller.lib_controllers if lib.user_api == "blas"]


def _set(lib, n):
    # threadpoolctl (>= 3.6) lets only one "controlling" Python thread change OpenBLAS's
    # process-wide pthreads pool and silently ignores the others (measured: a limit set from a
    # worker thread had no effect); this section is reference-counted process-wide, so it sets
    # the library's limit directly, from whichever thread opens or closes it
    real = getattr(lib, "_real_set_num_threads", None)
    (real or lib.set_num_threads)(n)


def _per_thread(lib):
    return getattr(lib, "threading_layer", None) == "openmp"


def _after_fork():
    """A forked child has only the thread that forked: its own open sections are all that remain."""
    global _lock, _depth, _saved, _pool
    _lock = threading.Lock()
    _pool = None
    mine = getattr(_local, "depth", 0)
    if _depth and not mine:  # the sections belonged to threads the child does not have
        for lib, n in _saved:
            _set(lib, n)
        _saved = []
    _depth = mine


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


@contextmanager
def one_blas_thread():
    """A section in which BLAS/LAPACK run on one thread (nests; safe from any Python thread).

    OpenBLAS's threaded LAPACK routines (``potrf``, ``syevr``, ``geqrf``, TRSM...) split their work
    by which threads are free at the moment, so their last bits change from call to call (measured:
    the same 300 × 300 ``dpotrf`` gives different factors before and after an OpenMP kernel ran).
    Single-threaded LAPACK is deterministic and thread-count independent. Do not change BLAS limits
    (``threadpool_limits``) in another thread while a section is open: the products running then
    would run multithreaded (a limit set meanwhile is kept when the last section closes).

    A pthreads-layered OpenBLAS has one process-wide limit: the first section to open saves it and
    sets 1, the last to close restores it, so while any section is open BLAS calls from other
    Python threads run on one thread too (slower, never wrong). An OpenMP-layered BLAS has a
    limit per thread: it is set and restored in the calling thread only.
    """
    global _depth, _saved
    local_depth = getattr(_local, "depth", 0)
    with _lock:
        if _depth == 0:
            _saved = [(lib, lib.num_threads) for lib in _blas_libs() if not _per_thread(lib)]
            for lib, _ in _saved:
                _set(lib, 1)
        _depth += 1
    if local_depth == 0:
        _local.saved = [(lib, lib.num_threads) for lib in _blas_libs() if _per_thread(lib)]
        for lib, _ in _local.saved:
            _set(lib, 1)
    _local.depth = local_depth + 1
    try:
        yield
    finally:
        _local.depth -= 1
        if _local.depth == 0:
            for lib, n in _local.saved:
                _set(lib, n)
            _local.saved = []
        with _lock:
            _depth -= 1
            if _depth == 0:
                for lib, n in _saved:
                    if lib.num_threads == 1:  # unless someone set another limit meanwhile: theirs stands
                        _set(lib, n)
                _saved = []


def blas_threads():
    """The BLAS thread count the caller set (inside :func:`one_blas_thread`: the count before it)."""
    with _lock:
        counts = [n for _, n in _saved] if _depth else [lib.num_threads for lib in _blas_libs()
                                                          if not _per_thread(lib)]
    counts += [n for _, n in getattr(_local, "saved", [])] if getattr(_local, "depth", 0) else \
        [lib.num_threads for lib in _blas_libs() if _per_thread(lib)]
    return max([c for c in counts if c], default=1)


def _executor():
    global _pool
    with _lock:
        if _pool is None:
            from concurrent.futures import ThreadPoolExecutor

            _pool = ThreadPoolExecutor(max(1, os.cpu_count() or 1), thread_name_prefix="ntkit-matmul")
        return _pool


def _even(size, step):
    """``size`` cut into ceil(size / step) near-equal pieces (multiples of 16): the piece length."""
    pieces = max(1, -(-size // step))
    return max(16, -(-(-(-size // pieces)) // 16) * 16)


def _grid(m, k, n):
    """Tile height and width for an (m, k) @ (k, n) product: a function of the shapes only."""
    k = max(k, 1)
    tn = TILE_COLS * max(1, -(-TILE_WORK // (k * max(m, 1) * TILE_COLS)))  # wide tiles for a 1-row product
    tn = _even(n, tn)
    tm = TILE_ROWS * max(1, -(-TILE_WORK // (k * min(n, tn) * TILE_ROWS)))
    return _even(m, tm), tn


def matmul(A, B):
    """``A @ B``, bit-identical at any BLAS thread count (and about as fast; see the module doc).

    Two numpy arrays of float32/float64 (1-D or 2-D, any strides) take the tiled path (``A @ A.T``
    is exactly symmetric, as numpy's SYRK would make it); anything else (jax or sparse arrays,
    other dtypes, stacks of matrices), and products of at most :data:`TINY` multiply-adds, are
    ``A @ B`` unchanged.

    Examples
    --------
    >>> import numpy as np
    >>> from threadpoolctl import threadpool_limits
    >>> rng = np.random.default_rng(0)
    >>> A, B = rng.normal(size=(600, 40)), rng.normal(size=(40, 300))
    >>> with threadpool_limits(1, user_api="blas"):
    ...     C1 = matmul(A, B)
    >>> with threadpool_limits(2, user_api="blas"):
    ...     C2 = matmul(A, B)
    >>> bool(np.array_equal(C1, C2)), bool(np.allclose(C1, A @ B))
    (True, True)
    """
    if not (type(A) is np.ndarray and type(B) is np.ndarray) or not (1 <= A.ndim <= 2 and 1 <= B.ndim <= 2):
        return A @ B
    dt = np.result_type(A, B)
    if dt not in (np.float32, np.float64) or A.size * (B.shape[-1] if B.ndim == 2 else 1) <= TINY:
        return A @ B
    A2 = (A[None, :] if A.ndim == 1 else A).astype(dt, copy=False)
    B2 = (B[:, None] if B.ndim == 1 else B).astype(dt, copy=False)
    m, k = A2.shape
    if B2.shape[0] != k:
        return A @ B  # numpy's own error message for mismatched shapes
    n = B2.shape[1]
    out = np.empty((m, n), dt)
    # A @ A.T (a Gram matrix): numpy would call SYRK, which is exactly symmetric; here the tiles
    # meeting the lower triangle are computed and the strict upper triangle is mirrored from them
    sym = (A.ndim == 2 and m == n and A2.ctypes.data == B2.ctypes.data and A2.strides == B2.strides[::-1])
    if m and n:
        _tiled(A2, B2, out, sym)
    if A.ndim == 1 and B.ndim == 1:
        return out[0, 0]
    if A.ndim == 1:
        return out[0]
    if B.ndim == 1:
        return out[:, 0]
    return out


def _tiled(A, B, out, sym):
    m, k = A.shape
    n = B.shape[1]
    tm, tn = _grid(m, k, n)
    if sym:
        tm = tn = min(tm, 4 * TILE_ROWS)  # square tiles, so that skipping the upper ones halves the work
    tiles = [(i, j) for i in range(0, m, tm) for j in range(0, n, tn) if not sym or j < i + tm]
    # a small output with a long k: cut k too, into pieces fixed by the shapes
    pieces = 1
    if len(tiles) < MAX_PIECES and k >= 2 * MIN_K_PIECE:
        pieces = min(k // MIN_K_PIECE, MAX_PIECES // len(tiles), K_SPLIT_BYTES // max(1, m * n * out.itemsize))
        pieces = max(1, pieces)
    kc = -(-k // pieces)
    # (zeros: the symmetric path leaves the upper tiles unwritten, and garbage there could overflow the sum)
    parts = out[None] if pieces == 1 else (np.zeros if sym else np.empty)((pieces, m, n), out.dtype)
    items = [(i, j, c) for c in range(pieces) for i, j in tiles]
    queue, take, failed = iter(items), threading.Lock(), []

    def run():
        with one_blas_thread():  # per-thread limits (OpenMP-layered BLAS) hold in pool threads too
            while not failed:
                with take:  # (the GIL makes next() atomic; free-threaded Python does not)
                    item = next(queue, None)
                if item is None:
                    return
                i, j, c = item
                try:
                    np.matmul(A[i:i + tm, c * kc:(c + 1) * kc], B[c * kc:(c + 1) * kc, j:j + tn],
                              out=parts[c, i:i + tm, j:j + tn])
                except BaseException:
                    failed.append(True)  # the other workers stop at their next tile
                    raise

    workers = min(blas_threads(), len(items))
    with one_blas_thread():
        futures = []
        for _ in range(workers - 1):
            try:
                futures.append(_executor().submit(run))
            except RuntimeError:  # interpreter shutting down: no new threads; the others compute it
                break
        err = None
        try:
            run()  # the calling thread works too
        except BaseException as e:  # noqa: BLE001 - re-raised below, once the workers have stopped
            failed.append(True)
            err = e
        for f in futures:  # wait for the workers, even after a failure or an interrupt (they stop early)
            while True:
                try:
                    f.result()
                    break
                except BaseException as e:  # noqa: BLE001 - a worker's error, or an interrupt while waiting
                    failed.append(True)
                    err = e if err is None else err
                    if f.done():
                        break
        if err is not None:
            raise err
    if pieces > 1:  # the partial products, added in a fixed order
        np.copyto(out, parts[0])
        for c in range(1, pieces):
            out += parts[c]
    if sym:
        for i in range(0, m, tm):
            out[i:i + tm, i + tm:] = out[i + tm:, i:i + tm].T
            d = out[i:i + tm, i:i + tm]
            iu = np.triu_indices(d.shape[0], 1)
            d[iu] = d.T[iu]  # by index: signed zeros are mirrored too
