"""Diagonal evaluation shared by all kernels (kept here to avoid an import cycle)."""

from __future__ import annotations

import numpy as np

from .._validation import check_data, is_jax_array


def diag(kernel, X):
    X = check_data(X, "X")
    params = kernel._validated()
    if is_jax_array(X):
        import jax.numpy as jnp

        Xp, _ = kernel._prepare(jnp, X, None, params)
        sx = jnp.sum(Xp * Xp, axis=1)
        return kernel._diag(jnp, sx, X.shape[1], params)
    Xp, _ = kernel._prepare(np, X, None, params)
    sx = np.einsum("ij,ij->i", Xp, Xp)
    return np.asarray(kernel._diag(np, sx, X.shape[1], params), dtype=X.dtype)
