"""EigenPro 3 with the training rows sharded on Dask workers (synchronous data parallelism).

The driver holds the model (p centers, weights, preconditioner); the workers hold the data.
Each step sends the weights to the workers that own rows of the batch; each returns
``K(Z, X_Bj) (K(X_Bj, Z) W − y_Bj)`` for its rows, and the driver sums the parts and applies
the preconditioned, projected update of :func:`ntkit.solvers.eigenpro`. Only O(p·c) numbers
travel per step and the data never leave the workers (apart from the Nyström subsample and the
rows that report the training loss, gathered once).
"""

from __future__ import annotations

import numpy as np

from .._blas import matmul
from .._config import resolve_budget
from .._validation import check_data
from ._ops import _check_client

__all__ = ["eigenpro"]

#: Weights larger than this are scattered once per step instead of riding along with each task.
_SCATTER_BYTES = 1 << 22


def _describe(Xb):
    Xb = np.asarray(Xb)
    finite = bool(np.isfinite(Xb).all()) if Xb.dtype.kind in "fc" else True
    return Xb.shape, Xb.dtype.str, finite


def _take(Xb, rows):
    return np.asarray(Xb)[rows]


def _shard_grad(kernel, Xb, yb, Z, W, rows, with_y, dtype, budget, block):
    """``K(Z, X_r) (K(X_r, Z) W − y_r)`` over the shard's rows ``rows`` (all rows, in blocks, if None)."""
    from ntkit.solvers._access import KernelAccess

    acc = KernelAccess(kernel, Z, memory_budget=budget, dtype=dtype)
    Xb = np.asarray(Xb)
    W = np.asarray(W)
    chunks = [rows] if rows is not None else [np.arange(i, min(len(Xb), i + block)) for i in range(0, len(Xb), block)]
    G = np.zeros(W.shape, np.float64)
    for r in chunks:
        Kbz = acc.block(np.asarray(Xb[r], dtype=dtype), Z)
        res = matmul(Kbz, W) - yb[r] if with_y else matmul(Kbz, W)
        G += matmul(Kbz.T, res)
    return G


class _ShardedRows:
    """Row-sharded training data: looks like an (n, d) array to the solver (shape, dtype, row
    gathers for the subsample and the loss rows) and computes gradients where the rows live."""

    _ntkit_sharded = True

    def __init__(self, client, kernel, shards, sizes, d, dtype, budget):
        self.client = client
        self.kernel = kernel
        self.shards = shards
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self.shape = (int(self.offsets[-1]), int(d))
        self.ndim = 2
        self.dtype = np.dtype(dtype)
        self.budget = budget
        self._cache = (None, None)

    def __len__(self):
        return self.shape[0]

    def _split(self, rows):
        """``[(shard, local rows, positions in rows)]`` for the shards that own some of ``rows``."""
        rows = np.asarray(rows, dtype=np.int64).ravel()
        owner = np.searchsorted(self.offsets, rows, side="right") - 1
        out = []
        for j in np.unique(owner):
            pos = np.nonzero(owner == j)[0]
            out.append((int(j), rows[pos] - self.offsets[j], pos))
        return out

    def __getitem__(self, rows):
        rows = np.asarray(rows)
        if rows.dtype == bool or rows.ndim != 1:
            raise TypeError("sharded rows are read by an integer index array")
        key = rows.tobytes()
        if self._cache[0] == key:
            return self._cache[1]
        parts = self._split(rows)
        futs = [self.client.submit(_take, self.shards[j], loc, pure=False) for j, loc, _ in parts]
        got = self.client.gather(futs)
        out = np.empty((len(rows), self.shape[1]), dtype=got[0].dtype if got else self.dtype)
        for (_, _, pos), block in zip(parts, got):
            out[pos] = block
        self._cache = (key, out)
        return out

    def gradient_fns(self, y, Z, dtype):
        """The pair EigenPro 3 uses for its data pass (see ``ntkit.solvers._eigenpro_host._gradient_fns``)."""
        client = self.client
        who = client.who_has(self.shards)
        y_parts = []
        for j, f in enumerate(self.shards):
            piece = np.ascontiguousarray(y[self.offsets[j]:self.offsets[j + 1]])
            holders = list(who.get(f.key, ())) or None
            [yf] = client.scatter([piece], workers=holders, hash=False)
            y_parts.append(yf)
        [Zf] = client.scatter([np.ascontiguousarray(Z)], broadcast=True, hash=False)
        kernel, budget = self.kernel, self.budget

        def ship(W):
            if W.nbytes > _SCATTER_BYTES:
                [Wf] = client.scatter([np.ascontiguousarray(W)], broadcast=True, hash=False)
                return Wf
            return np.ascontiguousarray(W)

        def grad(W, B, with_y):
            Wx = ship(W)
            futs = [client.submit(_shard_grad, kernel, self.shards[j], y_parts[j], Zf, Wx, loc, with_y, dtype, budget,
                                  0, pure=False) for j, loc, _ in self._split(B)]
            return sum(client.gather(futs))

        def full_grad(W):
            Wx = ship(W)
            block = max(1024, int(self.budget // (8 * max(1, len(Z)) * 4)))
            futs = [client.submit(_shard_grad, kernel, f, y_parts[j], Zf, Wx, None, True, dtype, budget, block,
                                  pure=False) for j, f in enumerate(self.shards)]
            return sum(client.gather(futs))

        return grad, full_grad


def _shard(client, X, n_partitions):
    """Futures of the row blocks of X and their sizes (numpy: split and scattered; Dask: chunks
    computed where they live), checked on the workers (2-D, real numbers, finite)."""
    from ._ops import _blocks

    futures = _blocks(client, X, n_partitions)
    info = client.gather([client.submit(_describe, f, pure=False) for f in futures])
    d = {s[1] for s, _, _ in info if len(s) == 2}
    if any(len(s) != 2 for s, _, _ in info) or len(d) != 1:
        raise ValueError("X must be a 2-D array whose row blocks all have the same number of columns.")
    kinds = {np.dtype(t).kind for _, t, _ in info}
    if not kinds <= set("fiu"):
        raise TypeError(f"X must hold real numbers; got dtype(s) {sorted(np.dtype(t).name for _, t, _ in info)}.")
    if not all(ok for _, _, ok in info):
        raise ValueError("X contains NaN or infinity; remove or impute those rows before fitting.")
    keep = [(f, s[0]) for f, (s, _, _) in zip(futures, info) if s[0] > 0]
    dtype = np.result_type(*[np.dtype(t) for _, t, _ in info])
    return [f for f, _ in keep], [n for _, n in keep], d.pop(), dtype


def eigenpro(kernel, X, y, *, centers, client=None, n_partitions=None, memory_budget=None, **kwargs):
    """EigenPro 3 (:func:`ntkit.solvers.eigenpro` with ``centers``) on data sharded over Dask workers.

    The rows of ``X`` (a numpy array, split into ``n_partitions`` blocks, default two per worker,
    and scattered; or a Dask array, used where its chunks live) stay on the workers; the model
    (centers, weights, preconditioner) stays on the driver. Every step is synchronous: the
    workers that own rows of the batch return ``K(Z, X_B)(K(X_B, Z) W − y_B)`` for those rows,
    and the driver sums them and applies the same preconditioned, projected update as the local
    solver. The batches, preconditioner and step sizes are those of the local run with the same
    ``random_state``, so the weights equal the local ones up to the order of the gradient sums
    (relative differences of order machine epsilon per step). ``y`` is held by the driver (it is
    O(n·c)) and its pieces are sent once to the workers that own the matching rows.

    Parameters
    ----------
    kernel : ntkit kernel or callable ``k(A, B)``
        It is pickled to the workers.
    X : numpy array or dask array (n, d)
    y : array (n,) or (n, c)
    centers : array (p, d)
        EigenPro 3's centers (EigenPro 2, whose model has a weight per training row, is local only).
    client : dask.distributed.Client, optional
        ``None`` runs :func:`ntkit.solvers.eigenpro` locally.
    n_partitions : int, optional
        Row blocks for a numpy ``X`` (default: two per worker).
    memory_budget : int or str, optional
        Per-process budget (the driver's preconditioner and each worker's kernel blocks).
    **kwargs
        Every other keyword of :func:`ntkit.solvers.eigenpro` (``ridge``, ``n_eigen``,
        ``batch_size``, ``epochs``, ``tol``, ``X_val``, ``y_val``, ``checkpoint``,
        ``random_state``, ``verbose``, ``projection``, ``callback``, ``init``, ...).

    Returns
    -------
    EigenProResult
        As from the local solver; ``predict`` runs locally.

    Examples
    --------
    Point the same code at a real cluster with ``Client("tcp://scheduler:8786")``::

        from dask.distributed import Client, LocalCluster
        from ntkit.distributed import eigenpro
        with LocalCluster(n_workers=2, processes=True) as cluster, Client(cluster) as client:
            res = eigenpro(Laplace(3.0), X, y, centers=X[:1000], epochs=5, random_state=0, client=client)
        y_hat = res.predict(X_test)
    """
    from ..solvers import eigenpro as local_eigenpro

    if centers is None:
        raise ValueError("centers is required: sharded EigenPro is EigenPro 3 (the model lives on p centers held by "
                         "the driver). Pass centers=X[:p] or a k-means summary of the data.")
    if client is None:
        X = X.compute() if hasattr(X, "compute") else X
        return local_eigenpro(kernel, X, y, centers=centers, memory_budget=memory_budget, **kwargs)
    _check_client(client)
    if isinstance(kernel, str):
        raise ValueError("kernel='precomputed' cannot be sharded; pass a kernel function.")
    if not hasattr(X, "compute"):
        X = check_data(X, "X", ndim=2, allow_jax=False, min_rows=1)
    y = y.compute() if hasattr(y, "compute") else y
    budget = resolve_budget(memory_budget)
    shards, sizes, d, dtype = _shard(client, X, n_partitions)
    if not shards:
        raise ValueError("X has no rows; at least one training point is required.")
    rows = _ShardedRows(client, kernel, shards, sizes, d, dtype, budget)
    try:
        return local_eigenpro(kernel, rows, y, centers=centers, memory_budget=budget, **kwargs)
    finally:
        client.cancel(shards)
