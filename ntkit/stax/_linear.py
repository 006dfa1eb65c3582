"""Dense layers and the layers that reshape or rescale: Dense, Flatten, LayerNorm, Dropout.

A linear layer with i.i.d. Gaussian weights maps the input covariance linearly: Dense
multiplies it by ``W_std**2`` and adds ``b_std**2``. The NTK of a layer with parameters is
``ntk' = nngp' + W_std**2 * L(ntk)`` in NTK parameterisation (the new layer's own weights
contribute its output covariance; the earlier ones are carried through the same linear map
``L``) and ``fan_in / s0 * L(nngp) + W_std**2 * L(ntk) (+ 1 with a bias)`` in standard
parameterisation. Convolutions are in ``_conv.py``, pooling in ``_pooling.py``; the
parameter checks and ``_map_state`` here are shared with them.
"""

from __future__ import annotations

import numpy as np

from .._validation import check_int, check_option, check_scalar
from ._core import YES, _Diagonal, make_layer
from ._state import KernelState, expand, pair_terms, self_terms

__all__ = ["Dense", "Dropout", "Flatten", "LayerNorm"]

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

