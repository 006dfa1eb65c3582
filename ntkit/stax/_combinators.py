"""Combinators: serial, parallel, repeat, and the branching layers FanOut, FanInSum, FanInProd, FanInConcat, Identity."""

from __future__ import annotations

import functools

from ._core import _Diagonal, _fold, _wrap, layer_of, make_layer
from ._state import KernelState

__all__ = ["FanInConcat", "FanInProd", "FanInSum", "FanOut", "Identity", "parallel", "repeat", "serial"]


# ----------------------------------------------------------------------------------------------
# Combinators.


def serial(*layers):
    """Compose layers one after the other.

    Parameters
    ----------
    *layers : (init_fn, apply_fn, kernel_fn) triples

    Returns
    -------
    (init_fn, apply_fn, kernel_fn)
        ``init_fn(key, input_shape) -> (output_shape, params)`` (params: a list, one entry per
        layer), ``apply_fn(params, x, **kwargs)`` and the composed ``kernel_fn``.

    Examples
    --------
    >>> import jax, numpy as np
    >>> from ntkit import stax
    >>> init_fn, apply_fn, kernel_fn = stax.serial(stax.Dense(32), stax.Erf(), stax.Dense(1))
    >>> out_shape, params = init_fn(jax.random.PRNGKey(0), (-1, 4))
    >>> out_shape, apply_fn(params, np.ones((2, 4))).shape
    ((-1, 1), (2, 1))
    >>> kernel_fn(np.ones((2, 4)), None, "nngp").shape
    (2, 2)
    """
    inner = [layer_of(t, f"layers[{i}]") for i, t in enumerate(layers)]
    triples = [tuple(t[:3]) for t in layers]

    def init_fn(rng, input_shape):
        import jax

        params = []
        for f, _, _ in triples:
            rng, sub = jax.random.split(rng)
            input_shape, p = f(sub, input_shape)
            params.append(p)
        return input_shape, params

    def apply_fn(params, inputs, **kwargs):
        import jax

        rng = kwargs.pop("rng", None)
        if len(params) != len(triples):
            raise ValueError(f"params has {len(params)} entries but the network has {len(triples)} layers.")
        for (_, f, _), p in zip(triples, params):
            if rng is not None:
                rng, sub = jax.random.split(rng)
                inputs = f(p, inputs, rng=sub, **kwargs)
            else:
                inputs = f(p, inputs, **kwargs)
        return inputs

    def kfn(k, ctx):
        for lay in inner:
            k = lay.kfn(k, ctx)
        return k

    def shape_fn(s):
        for lay in inner:
            s = lay.shape_fn(s)
        return s

    reqs = _fold([lay.reqs for lay in inner], _Diagonal.then)
    return _wrap("serial", init_fn, apply_fn, kfn, reqs, shape_fn)


def parallel(*layers):
    """Apply layers side by side to a list of inputs (one input per layer).

    Used between :func:`FanOut` and a fan-in layer (:func:`FanInSum`, :func:`FanInConcat`,
    :func:`FanInProd`) to build residual and multi-branch networks.

    Parameters
    ----------
    *layers : (init_fn, apply_fn, kernel_fn) triples

    Returns
    -------
    (init_fn, apply_fn, kernel_fn)

    Examples
    --------
    >>> import numpy as np
    >>> from ntkit import stax
    >>> block = stax.serial(stax.FanOut(2), stax.parallel(stax.Identity(), stax.Dense(8)), stax.FanInSum())
    >>> _, _, kernel_fn = stax.serial(stax.Dense(8), block, stax.Relu(), stax.Dense(1))
    >>> kernel_fn(np.eye(2), None, "ntk").shape
    (2, 2)
    """
    inner = [layer_of(t, f"layers[{i}]") for i, t in enumerate(layers)]
    triples = [tuple(t[:3]) for t in layers]

    def _check(seq, what):
        if not isinstance(seq, (list, tuple)) or len(seq) != len(triples):
            raise ValueError(f"parallel of {len(triples)} layers needs a list of {len(triples)} {what}; "
                             f"got {type(seq).__name__}" + (f" of length {len(seq)}" if isinstance(seq, (list, tuple))
                                                            else "") + ".")

    def init_fn(rng, input_shape):
        import jax

        _check(input_shape, "input shapes")
        keys = jax.random.split(rng, len(triples))
        outs = [f(key, s) for (f, _, _), key, s in zip(triples, keys, input_shape)]
        return type(input_shape)(o[0] for o in outs), [o[1] for o in outs]

    def apply_fn(params, inputs, **kwargs):
        import jax

        _check(inputs, "inputs")
        rng = kwargs.pop("rng", None)
        keys = [None] * len(triples) if rng is None else list(jax.random.split(rng, len(triples)))
        outs = []
        for (_, f, _), p, x, key in zip(triples, params, inputs, keys):
            outs.append(f(p, x, **kwargs) if key is None else f(p, x, rng=key, **kwargs))
        return type(inputs)(outs)

    def kfn(ks, ctx):
        _check(ks, "kernels")
        return type(ks)(lay.kfn(k, ctx) for lay, k in zip(inner, ks))

    def shape_fn(s):
        return type(s)(lay.shape_fn(x) for lay, x in zip(inner, s))

    reqs = _fold([lay.reqs for lay in inner], _Diagonal.both)
    return _wrap("parallel", init_fn, apply_fn, kfn, reqs, shape_fn)


def repeat(layer, n):
    """Compose ``layer`` with itself ``n`` times (the same network as ``serial(*[layer] * n)``).

    The finite network's parameters are stacked along a leading axis and applied in a
    ``jax.lax.scan``, so compilation does not grow with ``n``; ``layer`` must keep the
    activation shape.

    Parameters
    ----------
    layer : (init_fn, apply_fn, kernel_fn)
    n : int >= 0

    Returns
    -------
    (init_fn, apply_fn, kernel_fn)

    Examples
    --------
    >>> import numpy as np
    >>> from ntkit import stax
    >>> block = stax.serial(stax.Dense(16), stax.Relu())
    >>> _, _, k_rep = stax.serial(stax.repeat(block, 3), stax.Dense(1))
    >>> _, _, k_ser = stax.serial(block, block, block, stax.Dense(1))
    >>> x = np.random.default_rng(0).normal(size=(3, 4))
    >>> bool(np.allclose(k_rep(x, None, "ntk"), k_ser(x, None, "ntk")))
    True
    """
    from .._validation import check_int

    n = check_int(n, "n", "repeat", low=0)
    lay = layer_of(layer, "layer")
    init1, apply1 = layer[0], layer[1]

    def init_fn(rng, input_shape):
        import jax
        import jax.numpy as jnp

        out_shape, _ = init1(rng, input_shape)
        if tuple(out_shape) != tuple(input_shape):
            raise ValueError(f"repeat needs a layer that keeps the shape; it maps {tuple(input_shape)} to "
                             f"{tuple(out_shape)}. Use serial(*[layer] * n) instead.")
        plist = []
        for _ in range(n):
            rng, sub = jax.random.split(rng)
            plist.append(init1(sub, input_shape)[1])
        if n == 0:
            return out_shape, ()
        return out_shape, jax.tree_util.tree_map(lambda *a: jnp.stack(a), *plist)

    def apply_fn(params, inputs, **kwargs):
        import jax

        if n == 0:
            return inputs

        def step(x, p):
            return apply1(p, x, **kwargs), None

        return jax.lax.scan(step, inputs, params)[0]

    def kfn(k, ctx):
        for _ in range(n):
            k = lay.kfn(k, ctx)
        return k

    def shape_fn(s):
        for _ in range(n):
            s = lay.shape_fn(s)
        return s

    return _wrap("repeat", init_fn, apply_fn, kfn, dict(lay.reqs) if n else {}, shape_fn)


def Identity():
    """The identity layer (no parameters; the kernel passes through unchanged).

    Returns
    -------
    (init_fn, apply_fn, kernel_fn)

    Examples
    --------
    >>> import numpy as np
    >>> from ntkit import stax
    >>> _, apply_fn, _ = stax.Identity()
    >>> apply_fn((), np.ones(2))
    array([1., 1.])
    """
    def init_fn(rng, input_shape):
        return input_shape, ()

    def apply_fn(params, inputs, **kwargs):
        return inputs

    return make_layer("Identity", init_fn, apply_fn, lambda k, **ctx: k, lambda s: s, key=())


def FanOut(num):
    """Copy the input into ``num`` branches (a list), to be followed by :func:`parallel`.

    Parameters
    ----------
    num : int >= 1

    Returns
    -------
    (init_fn, apply_fn, kernel_fn)

    Examples
    --------
    >>> import numpy as np
    >>> from ntkit import stax
    >>> _, apply_fn, _ = stax.FanOut(3)
    >>> len(apply_fn((), np.ones(2)))
    3
    """
    from .._validation import check_int

    num = check_int(num, "num", "FanOut", low=1)

    def init_fn(rng, input_shape):
        return [input_shape] * num, ()

    def apply_fn(params, inputs, **kwargs):
        return [inputs] * num

    def kfn(k, ctx):
        if not isinstance(k, KernelState):
            raise ValueError("FanOut takes a single input, not a list of branches.")
        return [k] * num

    return _wrap("FanOut", init_fn, apply_fn, kfn, {}, lambda s: [s] * num)


def _fan_in_check(ks, name):
    if not isinstance(ks, (list, tuple)) or not ks or not all(isinstance(k, KernelState) for k in ks):
        raise ValueError(f"{name} takes a list of branches (after FanOut and parallel); got "
                         f"{type(ks).__name__}.")
    k0 = ks[0]
    for k in ks[1:]:
        if (k.diagonal_batch, k.diagonal_spatial, k.batch_axis, k.channel_axis) != \
                (k0.diagonal_batch, k0.diagonal_spatial, k0.batch_axis, k0.channel_axis):
            raise ValueError(f"{name}: the branches have different covariance layouts or axes.")
    # neural-tangents keeps the reversal flag of the majority of the branches
    return sum(k.is_reversed for k in ks) > len(ks) / 2


def _sum_or_none(mats):
    return None if any(m is None for m in mats) else functools.reduce(lambda a, b: a + b, mats)


def FanInSum():
    """Sum the branches (residual connections): the covariances of independent Gaussian branches add.

    Every branch must end in a linear layer (its outputs Gaussian given the inputs), as in
    neural-tangents; a branch that is the identity of a Gaussian input also qualifies.

    Returns
    -------
    (init_fn, apply_fn, kernel_fn)

    Examples
    --------
    >>> import numpy as np
    >>> from ntkit import stax
    >>> _, _, kernel_fn = stax.serial(stax.Dense(4), stax.FanOut(2), stax.parallel(stax.Dense(4), stax.Dense(4)),
    ...                               stax.FanInSum())
    >>> float(kernel_fn(np.ones((1, 2)), None, "nngp")[0, 0])
    2.0
    """
    def init_fn(rng, input_shape):
        _same_shapes(input_shape, "FanInSum")
        return input_shape[0], ()

    def apply_fn(params, inputs, **kwargs):
        return functools.reduce(lambda a, b: a + b, inputs)

    def kernel(ks, **ctx):
        rev = _fan_in_check(ks, "FanInSum")
        _same_shapes([k.shape1 for k in ks], "FanInSum")
        if len(ks) > 1 and not all(k.is_gaussian for k in ks):
            raise NotImplementedError("FanInSum is implemented for Gaussian branches only (each branch must end "
                                      "in a Dense / Conv layer); got is_gaussian = "
                                      f"{[k.is_gaussian for k in ks]}.")
        return ks[0].replace(nngp=_sum_or_none([k.nngp for k in ks]), ntk=_sum_or_none([k.ntk for k in ks]),
                             cov1=_sum_or_none([k.cov1 for k in ks]), cov2=_sum_or_none([k.cov2 for k in ks]),
                             is_gaussian=all(k.is_gaussian for k in ks), is_reversed=rev)

    return make_layer("FanInSum", init_fn, apply_fn, kernel, lambda s: s[0], key=())


def _same_shapes(shapes, name):
    if not isinstance(shapes, (list, tuple)) or not shapes or not isinstance(shapes[0], (list, tuple)):
        raise ValueError(f"{name} takes a list of branches; got {shapes!r}.")
    if any(tuple(s) != tuple(shapes[0]) for s in shapes[1:]):
        raise ValueError(f"{name}: all branches must have the same shape; got {[tuple(s) for s in shapes]}.")


def FanInProd():
    """Multiply the branches elementwise (covariances multiply; the NTK follows the product rule).

    Returns
    -------
    (init_fn, apply_fn, kernel_fn)

    Examples
    --------
    >>> import numpy as np
    >>> from ntkit import stax
    >>> _, _, kernel_fn = stax.serial(stax.FanOut(2), stax.parallel(stax.Dense(4, W_std=2.0), stax.Dense(4)),
    ...                               stax.FanInProd())
    >>> float(kernel_fn(np.ones((1, 1)), None, "nngp")[0, 0])
    4.0
    """
    def init_fn(rng, input_shape):
        _same_shapes(input_shape, "FanInProd")
        return input_shape[0], ()

    def apply_fn(params, inputs, **kwargs):
        return functools.reduce(lambda a, b: a * b, inputs)

    def kernel(ks, **ctx):
        rev = _fan_in_check(ks, "FanInProd")
        _same_shapes([k.shape1 for k in ks], "FanInProd")
        nngp = ks[0].nngp
        ntk = ks[0].ntk
        for k in ks[1:]:
            ntk = None if ntk is None or k.ntk is None else ntk * k.nngp + nngp * k.ntk
            nngp = nngp * k.nngp
        cov1 = functools.reduce(lambda a, b: a * b, [k.cov1 for k in ks])
        cov2 = None if any(k.cov2 is None for k in ks) else functools.reduce(lambda a, b: a * b,
                                                                             [k.cov2 for k in ks])
        return ks[0].replace(nngp=nngp, ntk=ntk, cov1=cov1, cov2=cov2,
                             is_gaussian=len(ks) == 1 and ks[0].is_gaussian, is_reversed=rev)

    return make_layer("FanInProd", init_fn, apply_fn, kernel, lambda s: s[0], key=())


def FanInConcat(axis=-1):
    """Concatenate the branches along ``axis``.

    Along the channel axis (the default) the covariance is the width-weighted mean of the
    branches' covariances. Concatenation along a spatial or the batch axis is not implemented
    in ntkit (neural-tangents supports it; it raises ``NotImplementedError`` here).

    Parameters
    ----------
    axis : int, default=-1

    Returns
    -------
    (init_fn, apply_fn, kernel_fn)

    Examples
    --------
    >>> import numpy as np
    >>> from ntkit import stax
    >>> _, _, kernel_fn = stax.serial(stax.FanOut(2), stax.parallel(stax.Dense(4, W_std=2.0), stax.Dense(4)),
    ...                               stax.FanInConcat())
    >>> float(kernel_fn(np.ones((1, 1)), None, "nngp")[0, 0])
    2.5
    """
    from .._validation import check_int

    axis = check_int(axis, "axis", "FanInConcat")

    def out_shape(shapes):
        if not isinstance(shapes, (list, tuple)) or not shapes:
            raise ValueError(f"FanInConcat takes a list of branches; got {shapes!r}.")
        nd = len(shapes[0])
        ax = axis % nd
        rest = [tuple(s[:ax]) + tuple(s[ax + 1:]) for s in shapes]
        if any(r != rest[0] for r in rest[1:]):
            raise ValueError(f"FanInConcat: shapes must agree except along axis {axis}; got "
                             f"{[tuple(s) for s in shapes]}.")
        total = sum(s[ax] for s in shapes)
        return tuple(shapes[0][:ax]) + (total,) + tuple(shapes[0][ax + 1:])

    def init_fn(rng, input_shape):
        return out_shape(input_shape), ()

    def apply_fn(params, inputs, **kwargs):
        import jax.numpy as jnp

        return jnp.concatenate(inputs, axis)

    def kernel(ks, **ctx):
        rev = _fan_in_check(ks, "FanInConcat")
        out_shape([k.shape1 for k in ks])
        nd = len(ks[0].shape1)
        if axis % nd != ks[0].channel_axis:
            raise NotImplementedError(f"FanInConcat along a non-channel axis ({axis}) is not implemented in "
                                      "ntkit.stax; concatenate along the channel axis.")
        widths = [k.shape1[k.channel_axis] for k in ks]
        if all(w == widths[0] for w in widths):
            widths = [1] * len(ks)
        total = float(sum(widths))

        def mean(mats):
            if any(m is None for m in mats):
                return None
            return functools.reduce(lambda a, b: a + b, [m * w for m, w in zip(mats, widths)]) / total

        return ks[0].replace(nngp=mean([k.nngp for k in ks]), ntk=mean([k.ntk for k in ks]),
                             cov1=mean([k.cov1 for k in ks]), cov2=mean([k.cov2 for k in ks]),
                             is_gaussian=False, is_reversed=rev)

    return make_layer("FanInConcat", init_fn, apply_fn, kernel, out_shape, key=(axis,))

