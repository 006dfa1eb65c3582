"""Pooling: AvgPool, SumPool (the pooling operator ``P`` on both sides, ``P K P^T``), GlobalAvgPool, GlobalSumPool."""

from __future__ import annotations

import numpy as np

from .._validation import check_int
from ._conv import _padding, _spatial_sizes, _tuple, _window_table
from ._core import MAYBE, YES, _Diagonal, make_layer
from ._linear import _map_state
from ._state import KernelState

__all__ = ["AvgPool", "GlobalAvgPool", "GlobalSumPool", "SumPool"]


def _pool_matrices(tables, size_list, kind, normalize_edges, padding):
    """The pooling operator ``P`` (out, in) per spatial axis."""
    mats = []
    for (idx, valid, out), size in zip(tables, size_list):
        P = np.zeros((out, size))
        for a in range(idx.shape[0]):
            np.add.at(P, (np.arange(out)[valid[a]], idx[a][valid[a]]), 1.0)
        if kind == "avg":
            if normalize_edges and padding == "SAME":
                P /= valid.sum(axis=0)[:, None]
            else:
                P /= idx.shape[0]
        mats.append(P)
    return mats


def _apply_pool(mat, batch_ndim, diagonal_spatial, mats):
    """``P K P^T`` on each spatial pair (or ``sum_j P_ij^2 K_j`` on same-position covariances)."""
    import jax
    import jax.numpy as jnp

    if mat is None or mat.ndim == 0:
        return mat
    hi = jax.lax.Precision.HIGHEST
    step = 1 if diagonal_spatial else 2
    for d, P in enumerate(mats):
        ax = batch_ndim + step * d
        if diagonal_spatial:
            mat = jnp.moveaxis(jnp.tensordot(mat, jnp.asarray(P * P, mat.dtype), (ax, 1), precision=hi), -1, ax)
        else:
            Pj = jnp.asarray(P, mat.dtype)
            mat = jnp.moveaxis(jnp.tensordot(mat, Pj, (ax, 1), precision=hi), -1, ax)
            mat = jnp.moveaxis(jnp.tensordot(mat, Pj, (ax + 1, 1), precision=hi), -1, ax + 1)
    return mat



# ----------------------------------------------------------------------------------------------
# Pooling


def _pool_layer(name, kind, window_shape, strides, padding, normalize_edges, batch_axis, channel_axis):
    window_shape = _tuple(window_shape, "window_shape", name)
    S = len(window_shape)
    strides = (1,) * S if strides is None else _tuple(strides, "strides", name, S)
    padding = _padding(padding, name)
    if not isinstance(normalize_edges, (bool, np.bool_)):
        raise TypeError(f"The 'normalize_edges' parameter of {name} must be a bool. Got {normalize_edges!r} instead.")
    batch_axis = check_int(batch_axis, "batch_axis", name)
    channel_axis = check_int(channel_axis, "channel_axis", name)

    def check_layout(ndim):
        if batch_axis % ndim != 0 or channel_axis % ndim != ndim - 1:
            raise NotImplementedError(f"{name} in ntkit.stax supports batch-first, channels-last activations only "
                                      f"(batch_axis=0, channel_axis=-1); got {batch_axis}, {channel_axis}.")

    def tables_for(sizes):
        if len(sizes) != S:
            raise ValueError(f"{name} with a {S}-d window needs inputs with {S} spatial axes; got spatial sizes "
                             f"{sizes}.")
        return [_window_table(n, w, st, padding) for n, w, st in zip(sizes, window_shape, strides)]

    def shape_fn(shape):
        shape = tuple(shape)
        check_layout(len(shape))
        return (shape[0],) + tuple(t[2] for t in tables_for(shape[1:-1])) + (shape[-1],)

    def init_fn(rng, input_shape):
        return shape_fn(input_shape), ()

    def apply_fn(params, inputs, **kwargs):
        import jax.numpy as jnp

        tables = tables_for(tuple(inputs.shape[1:-1]))
        mats = _pool_matrices(tables, inputs.shape[1:-1], kind, normalize_edges, padding)
        x = jnp.asarray(inputs)  # (jax's dtype: numpy float64 without x64 becomes float32 here, silently)
        for d, P in enumerate(mats):
            x = jnp.moveaxis(jnp.tensordot(x, jnp.asarray(P, x.dtype), (1 + d, 1)), -1, 1 + d)
        return x

    def kernel(k, **ctx):
        sizes = _spatial_sizes(k.shape1)
        mats = _pool_matrices(tables_for(sizes), sizes, kind, normalize_edges, padding)
        return _map_state(k, lambda m, bn: _apply_pool(m, bn, k.diagonal_spatial, mats))

    reqs = {"batch_axis": batch_axis, "channel_axis": channel_axis, "diagonal_spatial": _Diagonal(input=MAYBE)}
    return make_layer(name, init_fn, apply_fn, kernel, shape_fn, reqs,
                      key=(window_shape, strides, padding, bool(normalize_edges), batch_axis, channel_axis))


def AvgPool(window_shape, strides=None, padding="VALID", normalize_edges=False, batch_axis=0, channel_axis=-1):
    """Average pooling over windows of the spatial axes.

    Parameters
    ----------
    window_shape : tuple of int
    strides : tuple of int, optional
        Default: ones (as neural-tangents, not the window shape).
    padding : {"VALID", "SAME", "CIRCULAR"}, default="VALID"
    normalize_edges : bool, default=False
        With ``"SAME"`` padding, divide by the number of pixels inside the image instead of the
        window size.
    batch_axis, channel_axis : int, default=0, -1

    Returns
    -------
    (init_fn, apply_fn, kernel_fn)

    Examples
    --------
    >>> import numpy as np
    >>> from ntkit import stax
    >>> _, apply_fn, _ = stax.AvgPool((2, 2), strides=(2, 2))
    >>> apply_fn((), np.arange(16.0).reshape(1, 4, 4, 1))[0, :, :, 0]
    Array([[ 2.5,  4.5],
           [10.5, 12.5]], dtype=float32)
    """
    return _pool_layer("AvgPool", "avg", window_shape, strides, padding, normalize_edges, batch_axis, channel_axis)


def SumPool(window_shape, strides=None, padding="VALID", batch_axis=0, channel_axis=-1):
    """Sum pooling over windows of the spatial axes.

    Parameters
    ----------
    window_shape : tuple of int
    strides : tuple of int, optional
    padding : {"VALID", "SAME", "CIRCULAR"}, default="VALID"
    batch_axis, channel_axis : int, default=0, -1

    Returns
    -------
    (init_fn, apply_fn, kernel_fn)

    Examples
    --------
    >>> import numpy as np
    >>> from ntkit import stax
    >>> _, _, kernel_fn = stax.serial(stax.Conv(4, (1, 1)), stax.SumPool((2, 2)), stax.Flatten())
    >>> kernel_fn(np.ones((1, 2, 2, 1)), None, "nngp").tolist()  # 2 x 2 positions on each side
    [[16.0]]
    """
    return _pool_layer("SumPool", "sum", window_shape, strides, padding, False, batch_axis, channel_axis)


def _global_pool(name, kind, batch_axis, channel_axis):
    batch_axis = check_int(batch_axis, "batch_axis", name)
    channel_axis = check_int(channel_axis, "channel_axis", name)

    def shape_fn(shape):
        nd = len(shape)
        keep = sorted((batch_axis % nd, channel_axis % nd))
        return tuple(shape[i] for i in keep)

    def init_fn(rng, input_shape):
        return shape_fn(tuple(input_shape)), ()

    def apply_fn(params, inputs, **kwargs):
        import jax.numpy as jnp

        nd = inputs.ndim
        axes = tuple(i for i in range(nd) if i not in (batch_axis % nd, channel_axis % nd))
        return jnp.mean(inputs, axes) if kind == "avg" else jnp.sum(inputs, axes)

    def kernel(k, **ctx):
        import jax.numpy as jnp

        size = float(np.prod(_spatial_sizes_any(k)))

        def pool(mat, bn):
            if mat is None or mat.ndim <= bn:
                return mat
            out = jnp.sum(mat, axis=tuple(range(bn, mat.ndim)))
            return out / size ** 2 if kind == "avg" else out

        nd = len(k.shape1)
        batch_first = batch_axis % nd < channel_axis % nd
        return _map_state(k, pool).replace(batch_axis=0 if batch_first else 1, channel_axis=1 if batch_first else 0,
                                           is_reversed=False)

    reqs = {"batch_axis": batch_axis, "channel_axis": channel_axis,
            "diagonal_spatial": _Diagonal(input=MAYBE, output=YES)}
    return make_layer(name, init_fn, apply_fn, kernel, shape_fn, reqs, key=(batch_axis, channel_axis))


def _spatial_sizes_any(k: KernelState):
    nd = len(k.shape1)
    return tuple(k.shape1[i] for i in range(nd) if i not in (k.batch_axis, k.channel_axis))


def GlobalAvgPool(batch_axis=0, channel_axis=-1):
    """Average over all spatial axes (removing them); batch and channel axes keep their order.

    Parameters
    ----------
    batch_axis, channel_axis : int, default=0, -1

    Returns
    -------
    (init_fn, apply_fn, kernel_fn)

    Examples
    --------
    >>> import numpy as np
    >>> from ntkit import stax
    >>> init_fn, _, _ = stax.GlobalAvgPool()
    >>> init_fn(None, (5, 8, 8, 3))[0]
    (5, 3)
    """
    return _global_pool("GlobalAvgPool", "avg", batch_axis, channel_axis)


def GlobalSumPool(batch_axis=0, channel_axis=-1):
    """Sum over all spatial axes (removing them); batch and channel axes keep their order.

    Parameters
    ----------
    batch_axis, channel_axis : int, default=0, -1

    Returns
    -------
    (init_fn, apply_fn, kernel_fn)

    Examples
    --------
    >>> import numpy as np
    >>> from ntkit import stax
    >>> _, apply_fn, _ = stax.GlobalSumPool()
    >>> apply_fn((), np.ones((2, 3, 3, 4))).shape
    (2, 4)
    """
    return _global_pool("GlobalSumPool", "sum", batch_axis, channel_axis)
