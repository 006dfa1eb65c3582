"""The kernel primitive on Dask: rows of X sharded across workers, Z (and v) broadcast."""

from __future__ import annotations

import numpy as np

__all__ = ["gram", "kernel_matvec"]


def _blocks(client, X, n_partitions):
    """Futures of the row blocks of X (a numpy array is split and scattered; a Dask array's chunks
    are computed where they live)."""
    try:
        import dask.array as da
    except ImportError:  # pragma: no cover - dask is required to reach here
        da = None
    if da is not None and isinstance(X, da.Array):
        if X.ndim != 2:
            raise ValueError(f"X must be a 2-D array; got a {X.ndim}-D Dask array.")
        X = X.rechunk({1: -1})
        parts = X.to_delayed().ravel().tolist()
        return client.compute(parts)
    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"X must be a 2-D array; got shape {X.shape}.")
    workers = len(client.scheduler_info().get("workers", {})) or 1
    k = max(1, min(len(X), int(n_partitions) if n_partitions is not None else 2 * workers))
    pieces = [b for b in np.array_split(X, k) if len(b)]
    return client.scatter(pieces, hash=False)


def _check_client(client):
    if client is None or not hasattr(client, "submit"):
        raise TypeError(f"client must be a dask.distributed.Client; got {type(client).__name__}. Pass client=None "
                        "to run locally.")


def _gram_block(kernel, Xb, Z, backend, memory_budget):
    from ntkit.ops import gram as _g

    return np.asarray(_g(kernel, Xb, Z, backend=backend, memory_budget=memory_budget))


def _matvec_block(kernel, Xb, Z, v, backend, memory_budget):
    from ntkit.ops import kernel_matvec as _kmv

    return np.asarray(_kmv(kernel, Xb, Z, v, backend=backend, memory_budget=memory_budget))


def gram(kernel, X, Z=None, *, client=None, n_partitions=None, backend="auto", memory_budget=None):
    """``K(X, Z)`` with the rows of X computed on Dask workers (Z broadcast); numpy out.

    ``X`` is a numpy array (split into ``n_partitions`` blocks, default 2 per worker, and
    scattered) or a Dask array (each chunk of rows is used where it lives). ``Z=None`` means
    ``Z = X`` (gathered and broadcast). With ``client=None`` this is :func:`ntkit.ops.gram`.
    Each block is :func:`ntkit.ops.gram` of its rows against Z, so the result equals the local one.
    """
    from ..ops import gram as local_gram

    if client is None:
        return np.asarray(local_gram(kernel, np.asarray(X), None if Z is None else np.asarray(Z), backend=backend,
                                     memory_budget=memory_budget))
    _check_client(client)
    Zl = np.asarray(X.compute() if hasattr(X, "compute") else X) if Z is None else np.asarray(Z)
    futures = _blocks(client, X, n_partitions)
    [Zf] = client.scatter([Zl], broadcast=True, hash=False)
    parts = client.gather([client.submit(_gram_block, kernel, f, Zf, backend, memory_budget, pure=False)
                           for f in futures])
    return np.vstack(parts)


def kernel_matvec(kernel, X, Z, v, *, client=None, n_partitions=None, backend="auto", memory_budget=None):
    """``K(X, Z) @ v`` with the rows of X on Dask workers (Z and v broadcast); numpy out.

    Peak memory per worker is that of :func:`ntkit.ops.kernel_matvec` on its block (within
    ``memory_budget``); only the (n, t) result travels back. ``X``: numpy or Dask array, as in
    :func:`gram`. With ``client=None`` this is :func:`ntkit.ops.kernel_matvec`.

    Examples
    --------
    Point the same code at a real cluster with ``Client("tcp://scheduler:8786")``::

        from dask.distributed import Client, LocalCluster
        from ntkit.distributed import kernel_matvec
        with LocalCluster(n_workers=2, processes=True) as cluster, Client(cluster) as client:
            Kv = kernel_matvec(RBF(1.0), X, Z, v, client=client)
    """
    from ..ops import kernel_matvec as local_kmv

    if client is None:
        return np.asarray(local_kmv(kernel, np.asarray(X), None if Z is None else np.asarray(Z), np.asarray(v),
                                    backend=backend, memory_budget=memory_budget))
    _check_client(client)
    Z = np.asarray(Z)
    v = np.asarray(v)
    if v.shape[0] != Z.shape[0]:
        raise ValueError(f"v has {v.shape[0]} rows but Z has {Z.shape[0]}; K(X, Z) @ v needs one row of v per row "
                         "of Z.")
    futures = _blocks(client, X, n_partitions)
    [Zf] = client.scatter([Z], broadcast=True, hash=False)
    [vf] = client.scatter([v], broadcast=True, hash=False)
    parts = client.gather([client.submit(_matvec_block, kernel, f, Zf, vf, backend, memory_budget, pure=False)
                           for f in futures])
    return np.concatenate(parts, axis=0)
