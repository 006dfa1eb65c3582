"""Graph random features with start nodes partitioned across Dask workers."""

from __future__ import annotations

import time

import numpy as np
import scipy.sparse as sp

__all__ = ["graph_random_features"]


def _partition(U_parts, starts, n_walks, p_halt, f, seed, mode, backend):
    """Worker task: the feature rows of ``starts`` (the graph arrives once per worker, broadcast)."""
    from ntkit.graphs._grf import walk_features

    indptr, indices, data, shape = U_parts
    U = sp.csr_matrix((data, indices, indptr), shape=shape)
    return walk_features(U, starts, n_walks, p_halt, f, seed, mode, backend=backend)


def graph_random_features(adjacency, *, client, n_partitions=None, **params):
    """:class:`ntkit.graphs.GraphRandomFeatures` fitted with the walks computed on Dask workers.

    The normalised graph is broadcast to every worker once; start nodes are split into
    ``n_partitions`` contiguous blocks (default: 4 per worker), one task each. The random
    numbers are keyed by (seed, start node, walker, step), so ``features_`` is identical, bit
    for bit, to ``GraphRandomFeatures(**params).fit(adjacency)`` with the same ``random_state``.

    Parameters
    ----------
    adjacency : scipy.sparse, dense array or networkx graph
    client : dask.distributed.Client
    n_partitions : int, optional
    **params
        Parameters of :class:`~ntkit.graphs.GraphRandomFeatures` (``kernel``, ``sigma``,
        ``n_walks``, ``p_halt``, ``antithetic``, ``repelling``, ``random_state``, ...).

    Returns
    -------
    GraphRandomFeatures
        Fitted (``features_``, ``n_steps_``, ``fit_seconds_``).

    Examples
    --------
    Point the same code at a real cluster with ``Client("tcp://scheduler:8786")``::

        from dask.distributed import Client, LocalCluster
        from ntkit.distributed import graph_random_features
        with LocalCluster(n_workers=2, processes=True) as cluster, Client(cluster) as client:
            grf = graph_random_features(W, client=client, n_walks=32, random_state=0)
    """
    from ..graphs._grf import GraphRandomFeatures, _seed

    if client is None or not hasattr(client, "submit"):
        raise TypeError(f"client must be a dask.distributed.Client; got {type(client).__name__}.")
    grf = GraphRandomFeatures(**params)
    grf._setup(adjacency)
    grf.seed_ = _seed(grf.random_state)
    U = grf.U_
    n = U.shape[0]
    workers = len(client.scheduler_info().get("workers", {})) or 1
    k = int(n_partitions) if n_partitions is not None else 4 * workers
    if k < 1:
        raise ValueError(f"n_partitions must be >= 1; got {n_partitions}.")
    t0 = time.perf_counter()
    [graph] = client.scatter([(U.indptr.astype(np.int64), U.indices.astype(np.int64), U.data, U.shape)],
                             broadcast=True, hash=False)
    blocks = [b for b in np.array_split(np.arange(n, dtype=np.int64), min(k, max(n, 1))) if len(b)]
    futures = [client.submit(_partition, graph, b, grf._n_walks, grf._p_halt, grf.modulation_, grf.seed_, grf._mode,
                             grf.backend, pure=False) for b in blocks]
    parts = client.gather(futures)
    grf.features_ = sp.vstack([p[0] for p in parts], format="csr") if parts else sp.csr_matrix((0, n))
    grf.n_steps_ = int(sum(p[1] for p in parts))
    grf.fit_seconds_ = time.perf_counter() - t0
    grf._features_b = None
    return grf
