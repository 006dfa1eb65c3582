"""Linear layers: Dense, convolutions, pooling, Flatten, LayerNorm, Dropout.

A linear layer with i.i.d. Gaussian weights maps the input covariance linearly: Dense
multiplies it by ``W_std**2`` and adds ``b_std**2``; a convolution averages it over the filter
window, the *same* offset on both positions of each pair (the weight at that offset is shared);
pooling applies the pooling operator ``P`` on both sides, ``P K P^T``. The NTK of a layer with
parameters is ``ntk' = nngp' + W_std**2 * L(ntk)`` in NTK parameterisation (the new layer's
own weights contribute its output covariance; the earlier ones are carried through the same
linear map ``L``) and ``fan_in / s0 * L(nngp) + W_std**2 * L(ntk) (+ 1 with a bias)`` in
standard parameterisation.
"""

from __future__ import annotations

import string

import numpy as np

from .._validation import check_int, check_option, check_scalar
from ._core import MAYBE, NO, YES, _Diagonal, make_layer
from ._state import KernelState, expand, pair_terms, self_terms

__all__ = [
    "AvgPool",
    "Conv",
    "ConvLocal",
    "Dense",
    "Dropout",
    "Flatten",
    "GlobalAvgPool",
    "GlobalSumPool",
    "LayerNorm",
    "SumPool",
]

_PADDINGS = ("VALID", "SAME", "CIRCULAR")


def _param(parameterization, owner):
    if not isinstance(parameterization, str) or parameterization.lower() not in ("ntk", "standard"):
        raise ValueError(f"The 'parameterization' parameter of {owner} must be 'ntk' or 'standard'. "
                         f"Got {parameterization!r} instead.")
    return parameterization.lower()


def _stds(W_std, b_std, owner):
    W_std = check_scalar(W_std, "W_std", owner)
    b_std = None if b_std is None else check_scalar(b_std, "b_std", owner)
    return W_std, b_std


def _s_pair(s, owner):
    try:
        s0, s1 = s
    except (TypeError, ValueError):
        raise ValueError(f"The 's' parameter of {owner} must be a pair of positive numbers. Got {s!r} instead.") \
            from None
    return check_scalar(s0, "s[0]", owner, low=0, closed="neither"), check_int(s1, "s[1]", owner, low=1)


def _affine(mat, W_std, b_std):
    if mat is None:
        return None
    mat = mat * W_std ** 2
    return mat if b_std is None else mat + b_std ** 2


def _map_state(k: KernelState, fn, ntk_fn=None):
    """Apply a linear map ``fn(mat, batch_ndim)`` to every covariance (ntk with ``ntk_fn``)."""
    bn = 1 if k.diagonal_batch else 2
    ntk = k.ntk
    if ntk is not None and ntk.ndim > 0:
        ntk = (ntk_fn or fn)(ntk, 2)
    return k.replace(nngp=fn(k.nngp, 2), ntk=ntk, cov1=fn(k.cov1, bn),
                     cov2=None if k.cov2 is None else fn(k.cov2, bn))


# ----------------------------------------------------------------------------------------------
# Dense


def Dense(out_dim, W_std=1.0, b_std=None, batch_axis=0, channel_axis=-1, parameterization="ntk", s=(1, 1)):
    """Fully connected layer acting on the channel axis.

    ``ntk`` parameterisation: ``y = W_std / sqrt(n_in) * x @ W + b_std * b`` with standard
    normal ``W``, ``b`` (the infinite-width kernel does not depend on ``out_dim``);
    ``standard``: ``y = x @ W / sqrt(s[0]) + b`` with ``W ~ N(0, W_std**2 s[0] / n_in)``,
    ``b ~ N(0, b_std**2)`` and ``out_dim * s[1]`` outputs.

    Parameters
    ----------
    out_dim : int
        Width of the finite layer.
    W_std : float, default=1.0
    b_std : float or None, default=None
        None means no bias.
    batch_axis, channel_axis : int, default=0, -1
    parameterization : {"ntk", "standard"}, default="ntk"
    s : (float, int), default=(1, 1)
        Width multipliers of the standard parameterisation (as in neural-tangents).

    Returns
    -------
    (init_fn, apply_fn, kernel_fn)

    Examples
    --------
    >>> import numpy as np
    >>> from ntkit import stax
    >>> _, _, kernel_fn = stax.Dense(10, W_std=2.0, b_std=0.5)
    >>> x = np.array([[1.0, 0.0], [0.0, 1.0]])
    >>> kernel_fn(x, None, "nngp").tolist()  # 4 <x, x'> / 2 + 0.25
    [[2.25, 0.25], [0.25, 2.25]]
    """
    owner = "Dense"
    out_dim = check_int(out_dim, "out_dim", owner, low=1)
    W_std, b_std = _stds(W_std, b_std, owner)
    batch_axis = check_int(batch_axis, "batch_axis", owner)
    channel_axis = check_int(channel_axis, "channel_axis", owner)
    param = _param(parameterization, owner)
    s0, s1 = _s_pair(s, owner)
    width = out_dim if param == "ntk" else out_dim * s1

    def shape_fn(shape):
        ax = channel_axis % len(shape)
        return tuple(shape[:ax]) + (width,) + tuple(shape[ax + 1:])

    def init_fn(rng, input_shape):
        import jax

        ax = channel_axis % len(input_shape)
        k1, k2 = jax.random.split(rng)
        W = jax.random.normal(k1, (input_shape[ax], width))
        b = None
        if b_std is not None:
            bshape = [1] * len(input_shape)
            bshape[ax] = width
            b = jax.random.normal(k2, tuple(bshape))
        if param == "standard":
            W = W * (W_std / (input_shape[ax] / s0) ** 0.5)
            b = None if b is None else b * b_std
        return shape_fn(tuple(input_shape)), (W, b)

    def apply_fn(params, inputs, **kwargs):
        import jax
        import jax.numpy as jnp

        W, b = params
        ax = channel_axis % inputs.ndim
        prod = jnp.moveaxis(jnp.tensordot(inputs, W, (ax, 0), precision=jax.lax.Precision.HIGHEST), -1, ax)
        if param == "ntk":
            out = W_std / inputs.shape[ax] ** 0.5 * prod
            return out if b is None else out + b_std * b
        out = prod / s0 ** 0.5
        return out if b is None else out + b

    def kernel(k, **ctx):
        if param == "ntk":
            nngp = _affine(k.nngp, W_std, b_std)
            ntk = None if k.ntk is None else nngp + W_std ** 2 * k.ntk
        else:
            n_in = k.shape1[channel_axis % len(k.shape1)] / s0
            ntk = None
            if k.ntk is not None:
                ntk = n_in * k.nngp + W_std ** 2 * k.ntk
                if b_std is not None:
                    ntk = ntk + 1.0
            nngp = _affine(k.nngp, W_std, b_std)
        return k.replace(nngp=nngp, ntk=ntk, cov1=_affine(k.cov1, W_std, b_std),
                         cov2=_affine(k.cov2, W_std, b_std), is_gaussian=True, is_input=False)

    return make_layer("Dense", init_fn, apply_fn, kernel, shape_fn,
                      {"batch_axis": batch_axis, "channel_axis": channel_axis, "diagonal_spatial": _Diagonal()},
                      key=(W_std, b_std, batch_axis, channel_axis, param, s0, s1))


# ----------------------------------------------------------------------------------------------
# Window geometry shared by convolutions and pooling.


def _window_table(size, window, stride, padding):
    """Input index and validity of every (window offset, output position) along one axis.

    Returns ``idx`` (window, out) of input positions (clipped to a valid index), ``valid``
    (window, out) booleans (False where the window reads zero padding) and ``out``.
    """
    if padding == "VALID":
        out = (size - window) // stride + 1
        lo = 0
    else:  # SAME and CIRCULAR share the output size and the SAME offsets
        out = -(-size // stride)
        total = max((out - 1) * stride + window - size, 0)
        lo = total // 2
    if out <= 0:
        raise ValueError(f"a window of {window} with stride {stride} and {padding} padding leaves no output "
                         f"positions on an axis of size {size}.")
    pos = stride * np.arange(out)[None, :] + np.arange(window)[:, None] - lo
    if padding == "CIRCULAR":
        return pos % size, np.ones_like(pos, dtype=bool), out
    valid = (pos >= 0) & (pos < size)
    return np.clip(pos, 0, size - 1), valid, out


def _shared_window_sum(mat, batch_ndim, diagonal_spatial, tables, scale):
    """``sum_a mat[.., s i + a, s i' + a, ..] * scale`` per spatial axis (a shared filter)."""
    import jax.numpy as jnp

    if mat is None or mat.ndim == 0:
        return mat
    step = 1 if diagonal_spatial else 2
    for d, (idx, valid, out) in enumerate(tables):
        ax = batch_ndim + step * d
        if diagonal_spatial:
            m = jnp.moveaxis(mat, ax, -1)[..., idx]  # (..., window, out)
            w = valid * scale[d]
            m = jnp.sum(m * jnp.asarray(w, m.dtype), axis=-2)
            mat = jnp.moveaxis(m, -1, ax)
        else:
            m = jnp.moveaxis(mat, (ax, ax + 1), (-2, -1))[..., idx[:, :, None], idx[:, None, :]]  # (.., f, o, o)
            w = (valid[:, :, None] & valid[:, None, :]) * scale[d]
            m = jnp.sum(m * jnp.asarray(w, m.dtype), axis=-3)
            mat = jnp.moveaxis(m, (-2, -1), (ax, ax + 1))
    return mat


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


def _tuple(v, name, owner, n=None):
    try:
        t = tuple(int(x) for x in v)
    except (TypeError, ValueError):
        raise ValueError(f"The {name!r} parameter of {owner} must be a tuple of positive ints. Got {v!r} instead.") \
            from None
    if not t or any(x < 1 for x in t) or (n is not None and len(t) != n):
        need = f" of length {n}" if n is not None else ""
        raise ValueError(f"The {name!r} parameter of {owner} must be a non-empty tuple{need} of positive ints. "
                         f"Got {v!r} instead.")
    return t


def _padding(padding, owner):
    if not isinstance(padding, str) or padding.upper() not in _PADDINGS:
        raise ValueError(f"The 'padding' parameter of {owner} must be one of {_PADDINGS}. Got {padding!r} instead.")
    return padding.upper()


def _spatial_sizes(shape):
    """Spatial sizes of NHWC-style activations (batch first, channel last)."""
    return tuple(shape[1:-1])


# ----------------------------------------------------------------------------------------------
# Convolutions


def _conv_layer(name, out_chan, filter_shape, strides, padding, W_std, b_std, dimension_numbers,
                parameterization, s, shared):
    out_chan = check_int(out_chan, "out_chan", name, low=1)
    filter_shape = _tuple(filter_shape, "filter_shape", name)
    S = len(filter_shape)
    strides = (1,) * S if strides is None else _tuple(strides, "strides", name, S)
    padding = _padding(padding, name)
    W_std, b_std = _stds(W_std, b_std, name)
    param = _param(parameterization, name)
    s0, s1 = _s_pair(s, name)
    spatial = "".join(c for c in string.ascii_uppercase if c not in "NCIO")[:S]
    default_dn = ("N" + spatial + "C", spatial + "IO", "N" + spatial + "C")
    if dimension_numbers is not None and tuple(dimension_numbers) != default_dn:
        raise NotImplementedError(f"{name} in ntkit.stax supports the channels-last layout only "
                                  f"(dimension_numbers=None, i.e. {default_dn}); got {dimension_numbers!r}.")
    width = out_chan if param == "ntk" else out_chan * s1
    fsize = int(np.prod(filter_shape))

    def tables_for(sizes):
        if len(sizes) != S:
            raise ValueError(f"{name} with a {S}-d filter needs inputs with {S} spatial axes (channels last); "
                             f"got spatial sizes {sizes}.")
        return [_window_table(n, f, st, padding) for n, f, st in zip(sizes, filter_shape, strides)]

    def shape_fn(shape):
        shape = tuple(shape)
        outs = tuple(t[2] for t in tables_for(_spatial_sizes(shape)))
        return (shape[0],) + outs + (width,)

    def init_fn(rng, input_shape):
        import jax

        input_shape = tuple(input_shape)
        out_shape = shape_fn(input_shape)
        c_in = input_shape[-1]
        k1, k2 = jax.random.split(rng)
        if shared:
            W = jax.random.normal(k1, filter_shape + (c_in, width))
            bshape = (1,) * (S + 1) + (width,)
        else:
            W = jax.random.normal(k1, out_shape[1:-1] + (c_in * fsize, width))
            bshape = (1,) + out_shape[1:-1] + (width,)
        b = None if b_std is None else jax.random.normal(k2, bshape)
        if param == "standard":
            W = W * (W_std / (c_in * fsize / s0) ** 0.5)
            b = None if b is None else b * b_std
        return out_shape, (W, b)

    def apply_fn(params, inputs, **kwargs):
        import jax
        import jax.numpy as jnp

        W, b = params
        fan_in = inputs.shape[-1] * fsize
        x = inputs
        pad = padding
        if padding == "CIRCULAR":
            pads = [(0, 0)]
            for n, f, st in zip(inputs.shape[1:-1], filter_shape, strides):
                out = -(-n // st)
                total = max((out - 1) * st + f - n, 0)
                pads.append((total // 2, total - total // 2))
            pads.append((0, 0))
            x = jnp.pad(x, pads, mode="wrap")
            pad = "VALID"
        dn = default_dn
        hi = jax.lax.Precision.HIGHEST
        if shared:
            y = jax.lax.conv_general_dilated(x, W, strides, pad, dimension_numbers=dn, precision=hi)
        else:
            y = jax.lax.conv_general_dilated_local(x, W, strides, pad, filter_shape, dimension_numbers=dn,
                                                   precision=hi)
        if param == "ntk":
            y = W_std / fan_in ** 0.5 * y
            return y if b is None else y + b_std * b
        y = y / s0 ** 0.5
        return y if b is None else y + b

    def kernel(k, **ctx):
        sizes = _spatial_sizes(k.shape1)
        tables = tables_for(sizes)
        scale = [1.0 / f for f in filter_shape]
        is_reversed = k.is_reversed

        if shared:
            def lin(mat, bn):
                return _shared_window_sum(mat, bn, k.diagonal_spatial, tables, scale)
            if not k.diagonal_spatial:
                is_reversed = not is_reversed  # neural-tangents' axis-order parity

            def add_bias(mat, value):
                return mat + value
        else:
            def lin(mat, bn):
                if mat is None or mat.ndim == 0:
                    return mat
                if k.diagonal_spatial:
                    return _shared_window_sum(mat, bn, True, tables, scale)
                diag = variances_any(mat, bn)
                diag = _shared_window_sum(diag, bn, True, tables, scale)
                return _embed_diagonal(diag, bn)

            def add_bias(mat, value):
                if k.diagonal_spatial:
                    return mat + value
                bn = mat.ndim - 2 * S
                return mat + value * _spatial_eye(mat.shape[bn:], mat.dtype)

        def affine(mat, bn):
            if mat is None:
                return None
            out = lin(mat, bn) * W_std ** 2
            return out if b_std is None else add_bias(out, b_std ** 2)

        bn = 1 if k.diagonal_batch else 2
        cov1, cov2 = affine(k.cov1, bn), affine(k.cov2, bn)
        ntk = None
        if param == "ntk":
            nngp = affine(k.nngp, 2)
            if k.ntk is not None:
                ntk = W_std ** 2 * lin(k.ntk, 2) + nngp if k.ntk.ndim else nngp + W_std ** 2 * k.ntk
        else:
            lin_nngp = lin(k.nngp, 2)
            if k.ntk is not None:
                fan_in = k.shape1[-1] * fsize / s0
                ntk = fan_in * lin_nngp + W_std ** 2 * (lin(k.ntk, 2) if k.ntk.ndim else k.ntk)
                if b_std is not None:
                    ntk = add_bias(ntk, 1.0)
            nngp = lin_nngp * W_std ** 2
            nngp = nngp if b_std is None else add_bias(nngp, b_std ** 2)
        return k.replace(nngp=nngp, ntk=ntk, cov1=cov1, cov2=cov2, is_gaussian=True, is_reversed=is_reversed,
                         is_input=False)

    reqs = {"batch_axis": 0, "channel_axis": S + 1,
            "diagonal_spatial": _Diagonal(output=NO if shared else MAYBE)}
    return make_layer(name, init_fn, apply_fn, kernel, shape_fn, reqs,
                      key=(filter_shape, strides, padding, W_std, b_std, param, s0, s1))


def variances_any(mat, batch_ndim):
    """Same-position entries of a full-spatial covariance: ``(batch..., *sizes)``."""
    import jax.numpy as jnp

    S = (mat.ndim - batch_ndim) // 2
    for _ in range(S):
        mat = jnp.diagonal(mat, axis1=batch_ndim, axis2=batch_ndim + 1)
    return mat


def _spatial_eye(zipped_shape, dtype):
    import jax.numpy as jnp

    out = jnp.ones((), dtype)
    for i in range(0, len(zipped_shape), 2):
        out = out[..., None, None] * jnp.eye(zipped_shape[i], dtype=dtype)
    return out


def _embed_diagonal(diag, batch_ndim):
    """Full-spatial covariance that is ``diag`` on same positions and 0 elsewhere."""
    import jax.numpy as jnp

    sizes = diag.shape[batch_ndim:]
    out = diag
    for i, n in enumerate(sizes):
        ax = batch_ndim + 2 * i
        eye_shape = [1] * (out.ndim + 1)
        eye_shape[ax], eye_shape[ax + 1] = n, n
        out = jnp.expand_dims(out, ax + 1) * jnp.eye(n, dtype=diag.dtype).reshape(eye_shape)
    return out


def Conv(out_chan, filter_shape, strides=None, padding="VALID", W_std=1.0, b_std=None, dimension_numbers=None,
         parameterization="ntk", s=(1, 1)):
    """Convolution with weights shared across positions (channels last: NHWC, filters HWIO).

    The infinite-width covariance of outputs at positions ``(p, p')`` is the mean over filter
    offsets ``a`` of the input covariance at ``(s p + a, s p' + a)`` (zero outside the image for
    ``"SAME"``, wrapped around for ``"CIRCULAR"``), times ``W_std**2``, plus ``b_std**2``.

    Parameters
    ----------
    out_chan : int
    filter_shape : tuple of int
        One entry per spatial axis, e.g. ``(3, 3)``.
    strides : tuple of int, optional
        Default: ones.
    padding : {"VALID", "SAME", "CIRCULAR"}, default="VALID"
    W_std : float, default=1.0
    b_std : float or None, default=None
    dimension_numbers : None
        Only the channels-last default is implemented.
    parameterization : {"ntk", "standard"}, default="ntk"
    s : (float, int), default=(1, 1)

    Returns
    -------
    (init_fn, apply_fn, kernel_fn)

    Examples
    --------
    >>> import numpy as np
    >>> from ntkit import stax
    >>> _, _, kernel_fn = stax.serial(stax.Conv(8, (3, 3), padding="SAME"), stax.Relu(), stax.GlobalAvgPool(),
    ...                               stax.Dense(1))
    >>> x = np.random.default_rng(0).normal(size=(2, 5, 5, 3))
    >>> kernel_fn(x, None, "ntk").shape
    (2, 2)
    """
    return _conv_layer("Conv", out_chan, filter_shape, strides, padding, W_std, b_std, dimension_numbers,
                       parameterization, s, shared=True)


def ConvLocal(out_chan, filter_shape, strides=None, padding="VALID", W_std=1.0, b_std=None, dimension_numbers=None,
              parameterization="ntk", s=(1, 1)):
    """Locally connected layer: a convolution whose weights differ at every output position.

    Outputs at different positions are independent in the infinite-width limit, so only
    same-position covariances are nonzero: the mean over the filter window of the input
    variances-covariances at the same offsets.

    Parameters
    ----------
    out_chan : int
    filter_shape : tuple of int
    strides : tuple of int, optional
    padding : {"VALID", "SAME", "CIRCULAR"}, default="VALID"
    W_std : float, default=1.0
    b_std : float or None, default=None
    dimension_numbers : None
    parameterization : {"ntk", "standard"}, default="ntk"
    s : (float, int), default=(1, 1)

    Returns
    -------
    (init_fn, apply_fn, kernel_fn)

    Examples
    --------
    >>> import numpy as np
    >>> from ntkit import stax
    >>> _, _, kernel_fn = stax.serial(stax.ConvLocal(4, (2, 2)), stax.Relu(), stax.Flatten(), stax.Dense(1))
    >>> kernel_fn(np.ones((2, 3, 3, 1)), None, "nngp").shape
    (2, 2)
    """
    return _conv_layer("ConvLocal", out_chan, filter_shape, strides, padding, W_std, b_std, dimension_numbers,
                       parameterization, s, shared=False)


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
        x = inputs
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


# ----------------------------------------------------------------------------------------------
# Flatten, LayerNorm, Dropout


def Flatten(batch_axis=0, batch_axis_out=0):
    """Flatten every non-batch axis into one feature axis.

    In the infinite-width limit the features of different positions are independent, so the
    covariance of the flattened outputs is the mean over positions of the same-position
    covariances. The outputs are no longer i.i.d. Gaussian across features
    (``is_gaussian=False``), as in neural-tangents: follow Flatten by a Dense layer.

    Parameters
    ----------
    batch_axis : int, default=0
    batch_axis_out : {0, 1}, default=0

    Returns
    -------
    (init_fn, apply_fn, kernel_fn)

    Examples
    --------
    >>> import numpy as np
    >>> from ntkit import stax
    >>> _, apply_fn, _ = stax.Flatten()
    >>> apply_fn((), np.ones((2, 3, 3, 4))).shape
    (2, 36)
    """
    batch_axis = check_int(batch_axis, "batch_axis", "Flatten")
    batch_axis_out = check_option(batch_axis_out, "batch_axis_out", "Flatten", (0, 1))

    def shape_fn(shape):
        shape = tuple(shape)
        ba = batch_axis % len(shape)
        rest = int(np.prod([d for i, d in enumerate(shape) if i != ba]))
        return (shape[ba], rest) if batch_axis_out == 0 else (rest, shape[ba])

    def init_fn(rng, input_shape):
        return shape_fn(input_shape), ()

    def apply_fn(params, inputs, **kwargs):
        import jax.numpy as jnp

        out = shape_fn(inputs.shape)
        x = jnp.moveaxis(inputs, batch_axis, 0).reshape((inputs.shape[batch_axis], -1))
        return x if batch_axis_out == 0 else x.T.reshape(out)

    def kernel(k, **ctx):
        import jax.numpy as jnp

        def flat(mat, bn):
            if mat is None or mat.ndim <= bn:
                return mat
            if k.diagonal_spatial:
                return jnp.mean(mat, axis=tuple(range(bn, mat.ndim)))
            while mat.ndim > bn:
                mat = jnp.trace(mat, axis1=-2, axis2=-1) / mat.shape[-1]
            return mat

        return _map_state(k, flat).replace(is_gaussian=False, is_reversed=False, batch_axis=batch_axis_out,
                                           channel_axis=1 - batch_axis_out, diagonal_spatial=False)

    reqs = {"batch_axis": batch_axis, "channel_axis": None, "diagonal_spatial": _Diagonal(output=YES)}
    return make_layer("Flatten", init_fn, apply_fn, kernel, shape_fn, reqs, key=(batch_axis, batch_axis_out))


def LayerNorm(axis=-1, eps=1e-12, batch_axis=0, channel_axis=-1):
    """Layer normalisation ``(x - mean) / sqrt(eps + var)`` over ``axis`` (which must include channels).

    In the infinite-width limit the empirical mean over channels is 0 and the variance is the
    covariance's diagonal, so every covariance is divided by ``sqrt((eps + v1) (eps + v2))``
    (``v`` averaged over the other normalised axes).

    Parameters
    ----------
    axis : int or tuple of int, default=-1
    eps : float, default=1e-12
    batch_axis, channel_axis : int, default=0, -1

    Returns
    -------
    (init_fn, apply_fn, kernel_fn)

    Examples
    --------
    >>> import numpy as np
    >>> from ntkit import stax
    >>> _, _, kernel_fn = stax.serial(stax.Dense(8), stax.LayerNorm())
    >>> np.round(kernel_fn(np.array([[3.0, 0.0], [0.0, 2.0]]), None, "nngp"), 6)
    Array([[1., 0.],
           [0., 1.]], dtype=float32)
    """
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    axes = tuple(check_int(a, "axis", "LayerNorm") for a in axes)
    eps = check_scalar(eps, "eps", "LayerNorm", low=0.0)
    batch_axis = check_int(batch_axis, "batch_axis", "LayerNorm")
    channel_axis = check_int(channel_axis, "channel_axis", "LayerNorm")

    def init_fn(rng, input_shape):
        return input_shape, ()

    def apply_fn(params, inputs, **kwargs):
        import jax.numpy as jnp

        ax = tuple(a % inputs.ndim for a in axes)
        mean = jnp.mean(inputs, ax, keepdims=True)
        var = jnp.var(inputs, ax, keepdims=True)
        return (inputs - mean) / jnp.sqrt(eps + var)

    def kernel(k, **ctx):
        import jax.numpy as jnp

        if not k.is_gaussian:
            raise NotImplementedError("LayerNorm is implemented for Gaussian inputs only (put it right after a "
                                      "Dense / Conv layer).")
        nd = len(k.shape1)
        ch, ba = channel_axis % nd, batch_axis % nd
        ax = sorted({a % nd for a in axes})
        if ch not in ax:
            raise ValueError(f"LayerNorm must normalise over the channel axis ({ch}) for an infinite-width limit "
                             f"to exist; got axis={axis}.")
        spatial = [i for i in range(nd) if i not in (ch, ba)]
        red = tuple(([0] if ba in ax else []) + [1 + spatial.index(i) for i in ax if i in spatial])
        v1, v2, _, _ = pair_terms(k)

        def norm(v):
            return jnp.mean(v, axis=red, keepdims=True) + eps if red else v + eps

        n1, n2 = norm(v1), norm(v2)
        d1, d2 = expand(n1, "left", k.diagonal_spatial), expand(n2, "right", k.diagonal_spatial)
        scale12 = jnp.sqrt(d1 * d2)
        nngp = k.nngp / scale12
        ntk = None if k.ntk is None else k.ntk / scale12
        a1, b1 = self_terms(n1, k)
        cov1 = k.cov1 / jnp.sqrt(a1 * b1)
        cov2 = None
        if k.cov2 is not None:
            a2, b2 = self_terms(n2, k)
            cov2 = k.cov2 / jnp.sqrt(a2 * b2)
        return k.replace(nngp=nngp, ntk=ntk, cov1=cov1, cov2=cov2)

    return make_layer("LayerNorm", init_fn, apply_fn, kernel, lambda s: s,
                      {"batch_axis": batch_axis, "channel_axis": channel_axis}, key=(axes, eps, batch_axis, channel_axis))


def Dropout(rate, mode="train"):
    """Dropout with keep probability ``rate`` (neural-tangents' convention: ``rate=1`` keeps all).

    ``apply_fn(params, x, rng=key)`` zeroes each unit with probability ``1 - rate`` and divides
    the rest by ``rate`` in ``"train"`` mode, and is the identity in ``"test"`` mode. The
    kernel in ``"train"`` mode is the expectation over masks: variances (same sample, same
    position) are multiplied by ``1 / rate``, other covariances are unchanged; in ``"test"``
    mode the kernel is unchanged.

    Parameters
    ----------
    rate : float in (0, 1]
        Keep probability.
    mode : {"train", "test"}, default="train"

    Returns
    -------
    (init_fn, apply_fn, kernel_fn)

    Examples
    --------
    >>> import numpy as np
    >>> from ntkit import stax
    >>> _, _, kernel_fn = stax.serial(stax.Dense(4), stax.Dropout(0.5))
    >>> kernel_fn(np.eye(2), None, "nngp").tolist()  # variances doubled, covariances kept
    [[1.0, 0.0], [0.0, 1.0]]
    """
    rate = check_scalar(rate, "rate", "Dropout", low=0.0, high=1.0, closed="right")
    mode = check_option(mode, "mode", "Dropout", ("train", "test"))

    def init_fn(rng, input_shape):
        return input_shape, ()

    def apply_fn(params, inputs, **kwargs):
        import jax
        import jax.numpy as jnp

        if mode == "test":
            return inputs
        rng = kwargs.get("rng")
        if rng is None:
            raise ValueError("Dropout in 'train' mode needs a random key: call apply_fn(params, x, rng=key).")
        keep = jax.random.bernoulli(rng, rate, inputs.shape)
        return jnp.where(keep, inputs / rate, 0)

    def kernel(k, **ctx):
        import jax.numpy as jnp

        if mode == "test":
            return k
        factor = 1.0 / rate

        def diag_mul(mat, f, self_batch):
            if mat is None or mat.ndim == 0:
                return mat
            if not self_batch and mat.shape[0] != mat.shape[1]:
                return mat
            bn = 1 if self_batch else 2
            mask = np.ones((mat.shape[0],), bool) if self_batch else np.eye(mat.shape[0], dtype=bool)
            rest = mat.shape[bn:]
            if k.diagonal_spatial:
                mask = mask.reshape(mask.shape + (1,) * len(rest))
            else:
                for n in rest[::2]:
                    mask = mask[..., None, None] & np.eye(n, dtype=bool)
            return jnp.where(mask, mat * f, mat)

        f12 = jnp.where(jnp.asarray(k.x1_is_x2), factor, 1.0)
        return k.replace(cov1=diag_mul(k.cov1, factor, k.diagonal_batch),
                         cov2=diag_mul(k.cov2, factor, k.diagonal_batch),
                         nngp=diag_mul(k.nngp, f12, False), ntk=diag_mul(k.ntk, f12, False), is_gaussian=False)

    reqs = {"use_dropout": True} if mode == "train" else {}
    return make_layer("Dropout", init_fn, apply_fn, kernel, lambda s: s, reqs, key=(rate, mode))

