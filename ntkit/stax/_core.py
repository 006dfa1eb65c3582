"""How layers are built and composed: the public ``kernel_fn``, requirements, combinators.

Every layer is a triple ``(init_fn, apply_fn, kernel_fn)``. ``init_fn`` and ``apply_fn`` are
the finite network (jax), ``kernel_fn`` its infinite-width limit. A layer is described once by
a :class:`_Layer`: the state-to-state kernel map (on ntkit's natural-order arrays), the shape
map of the activations, and its *requirements* on the input state:

* ``batch_axis`` / ``channel_axis``: where the layer expects them in its input activations
  (the first layer's requirement decides how raw inputs are read);
* ``diagonal_spatial``: a :class:`_Diagonal` saying whether the layer can work from
  same-position covariances only, and whether everything after it could. Folding the layers'
  values decides, once per network, the cheapest layout that gives exact outputs (the same
  decision as neural-tangents', so outputs have the same shape);
* ``diagonal_batch``: a boolean when a layer needs full within-batch covariances.

The public ``kernel_fn`` (:class:`KernelFn`) accepts inputs or a :class:`KernelState`, builds
the input state from the folded requirements, runs the map and returns what ``get`` asks for.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
from collections.abc import Callable

import numpy as np

from ._state import KernelState, ensure_pytree, flip_state, inputs_to_state

__all__ = ["FanInConcat", "FanInProd", "FanInSum", "FanOut", "Identity", "parallel", "repeat", "serial"]

NO, MAYBE, YES = 0, 1, 2


@dataclasses.dataclass(frozen=True)
class _Diagonal:
    """Trinary allowance for storing same-position covariances only (see the module docstring).

    ``input``: may this layer's input hold only the diagonal (YES), only if its off-diagonal
    entries are zero (MAYBE), or never (NO). ``output``: may everything from here on (YES), may
    the output right after this layer (MAYBE), or may it never (NO).
    """

    input: int = YES
    output: int = NO

    def then(self, nxt: _Diagonal) -> _Diagonal:
        """Serial composition: ``self`` followed by ``nxt``."""
        if self.output == YES:  # nothing after this point needs more than the diagonal
            return self
        if self.output > NO and nxt.input > NO:
            inp = self.input
        elif self.output == NO and nxt.input < YES:
            inp = NO
        else:
            inp = min(self.input, nxt.input)
        return _Diagonal(inp, nxt.output)

    def both(self, other: _Diagonal) -> _Diagonal:
        """Parallel branches: the stricter of the two."""
        return _Diagonal(min(self.input, other.input), min(self.output, other.output))

    def __bool__(self):
        return self.input == YES and self.output > NO


_DEFAULT_REQS = {"diagonal_batch": True, "diagonal_spatial": False, "batch_axis": 0, "channel_axis": -1}


@dataclasses.dataclass(frozen=True)
class _Layer:
    name: str
    kfn: Callable  # (state tree, ctx dict) -> state tree, natural spatial order
    reqs: dict
    shape_fn: Callable  # activation shape (tree) -> shape (tree)


def _fold(reqs_list, combine):
    out: dict = {}
    for reqs in reqs_list:
        for key, v in reqs.items():
            if key in ("batch_axis", "channel_axis"):
                out.setdefault(key, v)
            elif key == "use_dropout":
                out[key] = v
            elif key == "diagonal_batch":
                out[key] = v if key not in out else (out[key] and v)
            else:  # diagonal_spatial
                out[key] = v if key not in out else combine(out[key], v)
    return out


def _is_array(x) -> bool:
    import sys

    if isinstance(x, np.ndarray):
        return True
    jax = sys.modules.get("jax")
    return jax is not None and isinstance(x, jax.Array)


def _map_tree(fn, tree):
    if isinstance(tree, (list, tuple)) and not isinstance(tree, KernelState):
        return type(tree)(_map_tree(fn, t) for t in tree)
    return fn(tree)


def _leaves(tree):
    if isinstance(tree, (list, tuple)):
        return [leaf for t in tree for leaf in _leaves(t)]
    return [tree]


def _canonical_get(get):
    if get is None:
        return None, False
    if isinstance(get, str):
        return (get.lower(),), True
    try:
        get = tuple(get)
    except TypeError:
        raise TypeError(f"get must be None, a string or a tuple of strings; got {type(get).__name__}.") from None
    if not get or not all(isinstance(g, str) for g in get):
        raise ValueError(f"get must be None, a string or a non-empty tuple of strings; got {get!r}.")
    get = tuple(g.lower() for g in get)
    if len(set(get)) < len(get):
        raise ValueError(f"the entries of get must be unique; got {get!r}.")
    return get, False


_FIELDS = tuple(f.name for f in dataclasses.fields(KernelState))


@functools.cache
def _result_type(fields):
    return collections.namedtuple("AnalyticKernel", fields)


def _select(state, get, single):
    d = state.asdict()
    for g in get:
        if g not in d:
            raise ValueError(f"get={g!r} is not a kernel field; choose from {_FIELDS}.")
    if single:
        return d[get[0]]
    return _result_type(get)(*(d[g] for g in get))


class KernelFn:
    """The infinite-width kernel function of a layer or network (``kernel_fn`` of a triple).

    Call it as ``kernel_fn(x1, x2=None, get=None, *, diagonal_batch=None,
    diagonal_spatial=None)``:

    * ``x1``: array of shape ``(n1, ...)`` (NHWC images, or ``(n1, n_features)``), a list of
      arrays for networks that start with parallel branches, or a :class:`KernelState`;
    * ``x2``: array ``(n2, ...)`` or None (then ``x2 = x1``; ``cov2`` is None);
    * ``get``: None returns the whole :class:`KernelState`; a string (``"nngp"``, ``"ntk"``,
      ``"cov1"``, ...) returns that array; a tuple returns a namedtuple ``AnalyticKernel``
      with those fields in that order;
    * ``diagonal_batch`` / ``diagonal_spatial``: override the layout of the covariances kept
      between layers (by default the cheapest one that gives exact outputs).

    Examples
    --------
    >>> import numpy as np
    >>> from ntkit import stax
    >>> _, _, kernel_fn = stax.serial(stax.Dense(16), stax.Relu(), stax.Dense(1))
    >>> x = np.eye(3)
    >>> kernel_fn(x, None, "ntk").shape
    (3, 3)
    >>> sorted(kernel_fn(x, x, ("ntk", "nngp"))._fields)
    ['nngp', 'ntk']
    """

    def __init__(self, layer: _Layer):
        self._layer = layer
        self.__name__ = layer.name

    def __repr__(self):
        return f"<kernel_fn of {self._layer.name}>"

    def __call__(self, x1_or_kernel, x2=None, get=None, *, diagonal_batch=None, diagonal_spatial=None,
                 **kwargs):
        ensure_pytree()
        get_t, single = _canonical_get(get)
        leaves = _leaves(x1_or_kernel)
        from_state = bool(leaves) and all(isinstance(k, KernelState) for k in leaves) and x2 is None
        if not from_state:
            for name, x in (("x1", x1_or_kernel), ("x2", x2)):
                if x is None and name == "x2":
                    continue
                for leaf in _leaves(x):
                    if not _is_array(leaf):
                        raise TypeError(f"{name} must be a numpy or jax array (or a list of them for parallel "
                                        f"inputs), or x1 a KernelState; got {type(leaf).__name__}.")
        return self._evaluate(x1_or_kernel, x2, get_t, single, diagonal_batch, diagonal_spatial, from_state, kwargs)

    def _evaluate(self, x1_or_kernel, x2, get_t, single, diagonal_batch, diagonal_spatial, from_state, kwargs):
        layer = self._layer
        if from_state:
            # public states are in neural-tangents' axis order: back to natural order, flag kept
            state = _map_tree(lambda k: flip_state(k) if k.is_reversed else k, x1_or_kernel)
        else:
            reqs = dict(layer.reqs)
            for key, user in (("diagonal_batch", diagonal_batch), ("diagonal_spatial", diagonal_spatial)):
                if user is None:
                    continue
                have = reqs.get(key)
                if user and (have is False or (isinstance(have, _Diagonal) and have.input == NO)):
                    raise ValueError(f"{key}=True was asked for, but this network needs the full covariances "
                                     f"({key}=False): a layer in it reads off-diagonal entries.")
                reqs[key] = bool(user)
            for key, v in _DEFAULT_REQS.items():
                reqs.setdefault(key, v)
            compute_ntk = get_t is None or "ntk" in get_t

            def make(a, b):
                return inputs_to_state(a, b, compute_ntk=compute_ntk, diagonal_batch=bool(reqs["diagonal_batch"]),
                                       diagonal_spatial=bool(reqs["diagonal_spatial"]),
                                       batch_axis=reqs["batch_axis"], channel_axis=reqs["channel_axis"])

            if isinstance(x1_or_kernel, (list, tuple)):
                x2s = [None] * len(x1_or_kernel) if x2 is None else x2
                if len(x2s) != len(x1_or_kernel):
                    raise ValueError(f"x1 and x2 must hold the same number of arrays; found {len(x1_or_kernel)} "
                                     f"and {len(x2s)}.")
                state = type(x1_or_kernel)(make(a, b) for a, b in zip(x1_or_kernel, x2s))
            else:
                state = make(x1_or_kernel, x2)
        out = layer.kfn(state, dict(kwargs))

        def public(k):
            k = flip_state(k) if k.is_reversed else k
            return k if get_t is None else _select(k, get_t, single)

        return _map_tree(public, out)


#: Compiled kernel maps shared by layers with the same parameters (``key``), so rebuilding a
#: network (or building another with the same layers) does not compile again.
_SHARED: dict = {}


def make_layer(name, init_fn, apply_fn, kernel, shape_fn, reqs=None, key=None):
    """Wrap a primitive layer: shapes set on the output state, axis and layout checks on its input.

    ``key`` (hashable, all the parameters the kernel map depends on) lets layers with equal
    parameters share their compiled kernel maps.
    """
    reqs = dict(reqs or {})
    try:
        hash(key)
    except TypeError:
        key = None
    compiled = {} if key is None else _SHARED.setdefault((name, key), {})

    def kfn(k, ctx):
        if isinstance(k, KernelState):
            _check_input(name, k, reqs)
        out = _run_compiled(kernel, k, ctx, compiled)
        shapes1 = _map_tree(lambda s: s.shape1, k) if not isinstance(k, KernelState) else k.shape1
        shapes2 = _map_tree(lambda s: s.shape2, k) if not isinstance(k, KernelState) else k.shape2
        return out.replace(shape1=shape_fn(shapes1), shape2=shape_fn(shapes2))

    layer = _Layer(name, kfn, reqs, shape_fn)
    init_fn.__name__ = apply_fn.__name__ = name
    return init_fn, apply_fn, KernelFn(layer)


def _run_compiled(kernel, k, ctx, cache):
    """Run a layer's kernel map as one compiled function (``jax.jit``, cached per layer parameters).

    A layer's map is dozens of small array operations; run eagerly, jax would compile each of
    them on its own for every new array shape. One compiled function per layer (and per input
    structure, which jax caches) is several times faster. Under an outer ``jax.jit`` this is
    inlined.
    """
    try:
        key = tuple(sorted(ctx.items()))
        hash(key)
    except TypeError:  # unhashable keyword arguments: run eagerly
        return kernel(k, **ctx)
    fn = cache.get(key)
    if fn is None:
        import jax

        fn = cache[key] = jax.jit(lambda state: kernel(state, **ctx))
    return fn(k)


def _check_input(name, k: KernelState, reqs):
    ndim = len(k.shape1)
    for key in ("batch_axis", "channel_axis"):
        v = reqs.get(key)
        if v is None:
            continue
        if v % ndim != getattr(k, key):
            raise ValueError(f"{name} expects {key}={v} but its input has {key}={getattr(k, key)} "
                             f"(activations of shape {k.shape1}); the infinite-width limit is taken along the "
                             "channel axis, so the axes must agree along the network.")
    diag = reqs.get("diagonal_spatial")
    if isinstance(diag, _Diagonal) and diag.input == NO and k.diagonal_spatial:
        raise ValueError(f"{name} needs full spatial covariances but its input state has diagonal_spatial=True; "
                         "recompute it with diagonal_spatial=False.")


def layer_of(triple, arg="layer") -> _Layer:
    """The :class:`_Layer` behind an ``(init_fn, apply_fn, kernel_fn)`` triple."""
    try:
        _, _, kernel_fn = triple[:3]
    except (TypeError, ValueError):
        raise TypeError(f"{arg} must be an (init_fn, apply_fn, kernel_fn) triple from ntkit.stax; "
                        f"got {type(triple).__name__}.") from None
    if not isinstance(kernel_fn, KernelFn):
        raise TypeError(f"{arg} must be a layer from ntkit.stax (its kernel_fn is not an ntkit.stax kernel_fn; "
                        f"got {type(kernel_fn).__name__}); neural-tangents layers cannot be mixed in.")
    return kernel_fn._layer


def _wrap(name, init_fn, apply_fn, kfn, reqs, shape_fn):
    layer = _Layer(name, kfn, reqs, shape_fn)
    init_fn.__name__ = apply_fn.__name__ = name
    return init_fn, apply_fn, KernelFn(layer)


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

