"""How layers are built: the public ``kernel_fn``, requirements, ``make_layer`` (combinators: ``_combinators.py``).

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

__all__: list = []  # the combinators built on this machinery are in _combinators.py

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
    inlined. Keyword arguments that are arrays (or tuples of arrays, e.g. ``Aggregate``'s
    ``pattern``) are traced arguments of the compiled function; the hashable ones are part of
    its cache key; anything else runs eagerly.
    """
    static, dynamic = {}, {}
    for name, v in ctx.items():
        try:
            hash(v)
            static[name] = v
        except TypeError:
            dynamic[name] = v
    if dynamic and not all(_is_array(leaf) or leaf is None for leaf in _leaves(list(dynamic.values()))):
        return kernel(k, **ctx)
    key = (tuple(sorted(static.items())), tuple(sorted(dynamic)))
    fn = cache.get(key)
    if fn is None:
        import jax

        ensure_pytree()  # the state crosses into jit here, whichever entry point built it
        fn = cache[key] = jax.jit(lambda state, dyn: kernel(state, **static, **dyn))
    return fn(k, dynamic)


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
