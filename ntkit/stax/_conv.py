"""Convolutions: Conv (shared weights), ConvLocal (unshared), ConvTranspose; the window geometry.

A convolution with i.i.d. Gaussian weights averages the input covariance over the filter
window, the *same* offset on both positions of each pair (the weight at that offset is shared);
a locally connected layer keeps same-position covariances only. The NTK follows the rule of
``_linear.py``.
"""

from __future__ import annotations

import string

import numpy as np

from .._validation import check_int
from ._core import MAYBE, NO, _Diagonal, make_layer
from ._linear import _param, _s_pair, _stds

__all__ = ["Conv", "ConvLocal", "ConvTranspose"]

_PADDINGS = ("VALID", "SAME", "CIRCULAR")


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


def _regular_window(idx, valid, size):
    """``(stride, lo)`` when a window table is a plain strided window over a zero-padded input.

    That is: every valid ``(a, o)`` reads position ``stride * o + a - lo`` and every invalid one
    would read a position outside ``[0, size)`` (zero padding). ``None`` for any other table
    (circular padding, transposed convolutions), which then takes the general gather.
    """
    window, out = idx.shape
    va = np.argwhere(valid)
    if len(va) == 0:
        return None
    a0, o0 = va[0]
    stride = 1
    if out > 1:
        other = va[(va[:, 0] == a0) & (va[:, 1] != o0)]
        if len(other) == 0:
            return None
        o1 = other[0][1]
        step, rem = divmod(int(idx[a0, o1]) - int(idx[a0, o0]), int(o1 - o0))
        if rem or step < 1:
            return None
        stride = step
    lo = stride * int(o0) + int(a0) - int(idx[a0, o0])
    pos = stride * np.arange(out)[None, :] + np.arange(window)[:, None] - lo
    inside = (pos >= 0) & (pos < size)
    if not np.array_equal(inside, valid) or not np.array_equal(idx[valid], pos[valid]):
        return None
    return stride, lo


def _shared_window_sum(mat, batch_ndim, diagonal_spatial, tables, scale):
    """``sum_a mat[.., s i + a, s i' + a, ..] * scale`` per spatial axis (a shared filter).

    On a full (non-diagonal) spatial covariance with a plain strided window, the sum is taken over
    shifted strided slices of the zero-padded matrix — both position axes shifted by the same
    offset — which XLA fuses into one loop (no gathered (window, out, out) temporary, no
    transposes: 2-3x faster per CNN-GAP block). Other tables take the general gather.
    """
    import jax.numpy as jnp

    if mat is None or mat.ndim == 0:
        return mat
    step = 1 if diagonal_spatial else 2
    for d, (idx, valid, out) in enumerate(tables):
        ax = batch_ndim + step * d
        regular = None if diagonal_spatial else _regular_window(idx, valid, mat.shape[ax])
        if regular is not None and mat.shape[ax] == mat.shape[ax + 1]:
            stride, lo = regular
            window = idx.shape[0]
            hi = max(stride * (out - 1) + window - lo - mat.shape[ax], 0)
            pads = [(0, 0)] * mat.ndim
            pads[ax] = pads[ax + 1] = (max(lo, 0), hi)
            padded = jnp.pad(mat, pads)
            start = max(lo, 0) - lo  # > 0 only when the window starts inside the input (lo < 0)
            acc = None
            for a in range(window):
                sl = [slice(None)] * mat.ndim
                sl[ax] = sl[ax + 1] = slice(start + a, start + a + stride * (out - 1) + 1, stride)
                term = padded[tuple(sl)]
                acc = term if acc is None else acc + term
            mat = acc * jnp.asarray(scale[d], mat.dtype)
        elif diagonal_spatial:
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



def _transpose_pads(window, stride, padding):
    """``(lo, hi)`` zero padding of the stride-dilated input of a transposed convolution.

    A transposed convolution is a stride-1 convolution of the input dilated by ``stride``
    (``stride - 1`` zeros between entries) and padded by these amounts; they are jax's
    (``lax.conv_transpose``), so that ``"SAME"`` gives ``size * stride`` outputs and ``"VALID"``
    ``size * stride + max(window - stride, 0)``.
    """
    if padding == "SAME":
        total = window + stride - 2
        lo = window - 1 if stride > window - 1 else -(-total // 2)
    else:
        total = window + stride - 2 + max(window - stride, 0)
        lo = window - 1
    return lo, total - lo


def _transpose_table(size, window, stride, padding):
    """``(idx, valid, out)`` of a transposed convolution along one axis (as :func:`_window_table`).

    Output ``o`` reads, at filter offset ``a``, position ``p = o + a - lo`` of the dilated input:
    input ``p / stride`` when ``p`` is a multiple of the stride inside the input, zero otherwise.
    ``"CIRCULAR"`` (neural-tangents' definition) runs the ``"VALID"`` transposed convolution and
    folds its ``size * stride + max(window - stride, 0)`` outputs onto the ``size * stride``
    positions of the ``"SAME"`` output, adding outputs a multiple of ``size * stride`` apart;
    the dilated input spans fewer than ``size * stride`` positions, so every (output, offset)
    still reads at most one input.
    """
    lo, hi = _transpose_pads(window, stride, "VALID" if padding == "CIRCULAR" else padding)
    span = (size - 1) * stride + 1
    n_valid = span + lo + hi - window + 1
    if padding != "CIRCULAR":
        p = np.arange(n_valid)[None, :] + np.arange(window)[:, None] - lo
        valid = (p >= 0) & (p < span) & (p % stride == 0)
        return np.clip(p // stride, 0, size - 1), valid, n_valid
    out = size * stride
    fold = _circular_fold(n_valid, out)  # (out, n_valid) 0/1
    idx = np.zeros((window, out), dtype=int)
    valid = np.zeros((window, out), dtype=bool)
    for a in range(window):
        for o in range(out):
            for u in np.flatnonzero(fold[o]):
                p = u + a - lo
                if 0 <= p < span and p % stride == 0:
                    idx[a, o], valid[a, o] = p // stride, True
    return idx, valid, out


def _circular_fold(n_in, n_out):
    """``(n_out, n_in)`` 0/1 matrix folding ``n_in >= n_out`` positions circularly onto ``n_out``.

    Entry ``(o, u)`` is 1 when ``u = o + start - half + m * n_out`` for some ``m`` in
    ``0 .. 2 half`` (``start`` centres the ``n_out`` kept positions, ``half = ceil(n_in / n_out) // 2``):
    the sum of every copy that ``"CIRCULAR"`` padding would have put at ``o``.
    """
    half = -(-n_in // n_out) // 2
    width = 2 * half + 1
    lo = ((width - 1) * n_out) // 2
    start = (n_in - n_out) // 2
    T = np.zeros((n_out, n_in))
    for o in range(n_out):
        for m in range(width):
            u = o + start - lo + m * n_out
            if 0 <= u < n_in:
                T[o, u] = 1.0
    return T


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


def _conv_transpose(x, W, filter_shape, strides, padding, dn):
    """Transposed convolution of NHWC ``x`` with HWIO ``W`` (the finite layer of :func:`ConvTranspose`)."""
    import jax
    import jax.numpy as jnp

    pads = [_transpose_pads(f, st, "VALID" if padding == "CIRCULAR" else padding)
            for f, st in zip(filter_shape, strides)]
    y = jax.lax.conv_general_dilated(x, W, (1,) * len(strides), pads, lhs_dilation=strides, dimension_numbers=dn,
                                     precision=jax.lax.Precision.HIGHEST)
    if padding == "CIRCULAR":
        for d, (n, st) in enumerate(zip(x.shape[1:-1], strides)):
            T = jnp.asarray(_circular_fold(y.shape[1 + d], n * st), y.dtype)
            y = jnp.moveaxis(jnp.tensordot(y, T, (1 + d, 1), precision=jax.lax.Precision.HIGHEST), -1, 1 + d)
    return y


def _conv_layer(name, out_chan, filter_shape, strides, padding, W_std, b_std, dimension_numbers,
                parameterization, s, shared, transpose=False):
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
        table = _transpose_table if transpose else _window_table
        return [table(n, f, st, padding) for n, f, st in zip(sizes, filter_shape, strides)]

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
        if transpose:
            y = _conv_transpose(x, W, filter_shape, strides, padding, default_dn)
            if param == "ntk":
                y = W_std / fan_in ** 0.5 * y
                return y if b is None else y + b_std * b
            y = y / s0 ** 0.5
            return y if b is None else y + b
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
                      key=(filter_shape, strides, padding, W_std, b_std, param, s0, s1, transpose))


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


def ConvTranspose(out_chan, filter_shape, strides=None, padding="VALID", W_std=1.0, b_std=None,
                  dimension_numbers=None, parameterization="ntk", s=(1, 1)):
    """Transposed convolution (channels last: NHWC, filters HWIO), as ``jax.lax.conv_transpose``.

    The input is dilated by ``strides`` (zeros between entries) and convolved with stride 1, so
    an axis of size ``n`` becomes ``n * stride`` (``"SAME"``, ``"CIRCULAR"``) or
    ``n * stride + max(filter - stride, 0)`` (``"VALID"``) long; ``"CIRCULAR"`` folds the
    ``"VALID"`` output onto the ``"SAME"`` size, adding the entries a period apart
    (neural-tangents' definition). The weights are shared across positions, so, as for
    :func:`Conv`, the covariance of outputs at ``(p, p')`` is the mean over filter offsets ``a``
    of the input covariance at the positions that ``p`` and ``p'`` read at offset ``a`` (zero
    where one of them reads a dilation hole or the padding), times ``W_std**2``, plus ``b_std**2``.

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
        Fan-in ``in_channels * prod(filter_shape)``, as for :func:`Conv`.
    s : (float, int), default=(1, 1)

    Returns
    -------
    (init_fn, apply_fn, kernel_fn)

    Examples
    --------
    >>> import jax, numpy as np
    >>> from ntkit import stax
    >>> init_fn, apply_fn, kernel_fn = stax.ConvTranspose(4, (3,), strides=(2,), padding="SAME")
    >>> out_shape, params = init_fn(jax.random.PRNGKey(0), (1, 5, 2))
    >>> out_shape, apply_fn(params, np.ones((1, 5, 2))).shape
    ((1, 10, 4), (1, 10, 4))
    >>> kernel_fn(np.ones((2, 5, 2)), None, "nngp").shape  # (n1, n2, 10, 10)
    (2, 2, 10, 10)
    """
    return _conv_layer("ConvTranspose", out_chan, filter_shape, strides, padding, W_std, b_std, dimension_numbers,
                       parameterization, s, shared=True, transpose=True)
