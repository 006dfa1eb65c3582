"""A small weighted test graph shared by the reliability tests."""

from __future__ import annotations

import numpy as np


def ring_plus_random(n, seed=0):
    """Symmetric CSR graph on n nodes: a ring plus one random edge per node, weights in [0.5, 1.5]."""
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    i = np.arange(n)
    rows = np.concatenate([i, i])
    cols = np.concatenate([(i + 1) % n, rng.integers(0, n, size=n)])
    W = sp.csr_matrix((rng.uniform(0.5, 1.5, size=2 * n), (rows, cols)), shape=(n, n))
    W = (W + W.T).tocsr()
    W.sort_indices()
    return W
