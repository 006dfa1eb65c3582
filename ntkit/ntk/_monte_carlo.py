"""Monte Carlo estimates of the NNGP and NTK: empirical kernels averaged over random initialisations.

A drop-in for ``neural_tangents.monte_carlo_kernel_fn``: the same arguments, the same sequence of
random keys (so the same draws on the same jax version), the same ``trace_axes`` /
``diagonal_axes`` conventions (a *mean* over traced axes), the same ``get`` and ``n_samples``
rules. Each draw's kernels come from :func:`ntkit.ntk.empirical_nngp` and
:func:`ntkit.ntk.empirical_ntk` (tiled over the examples, through :func:`ntkit.ops.batched_gram`).
"""

from __future__ import annotations

import inspect
import string

import numpy as np

from .._validation import InvalidParameterError, is_jax_array
from ._checks import _check_x, _compute_dtype, _jax, _x64
from ._nngp import _as_result, _canonical_get, _float_leaves

__all__ = ["monte_carlo_kernel_fn"]

#: neural-tangents' ``NtkImplementation`` values (an ``IntEnum``) and ntkit's names for them.
_NT_IMPLEMENTATIONS = {0: "auto", 1: "jacobian", 2: "ntk_vp", 3: "structured"}
_IMPLEMENTATIONS = ("auto", "structured", "jacobian", "ntk_vp")

def _implementation(value):
    if isinstance(value, str) and value in _IMPLEMENTATIONS:
        return value
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool) and int(value) in _NT_IMPLEMENTATIONS:
        return _NT_IMPLEMENTATIONS[int(value)]  # (an nt.NtkImplementation member is an int)
    raise InvalidParameterError(
        f"The 'implementation' parameter of monte_carlo_kernel_fn must be one of {_IMPLEMENTATIONS} or a "
        f"neural-tangents NtkImplementation (0-3). Got {value!r} instead.")


def _axes(value, name):
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return (int(value),)
    try:
        out = tuple(value)
    except TypeError:
        out = None
    if out is None or not all(isinstance(a, (int, np.integer)) and not isinstance(a, bool) for a in out):
        raise InvalidParameterError(
            f"The '{name}' parameter of monte_carlo_kernel_fn must be an int or a tuple of ints (axes of the "
            f"network's output). Got {value!r} instead.")
    return tuple(int(a) for a in out)


def _canonical_n_samples(n_samples):
    """``(sorted sample counts, generator?)`` (neural-tangents: an int, or an iterable of ints → a generator)."""
    if isinstance(n_samples, (int, np.integer)) and not isinstance(n_samples, bool):
        counts, generator = [int(n_samples)], False
    else:
        try:
            counts = list(n_samples)
        except TypeError:
            raise InvalidParameterError(
                f"The 'n_samples' parameter of monte_carlo_kernel_fn must be a positive int or an iterable of "
                f"positive ints. Got {n_samples!r} instead.") from None
        if not counts or not all(isinstance(n, (int, np.integer)) and not isinstance(n, bool) for n in counts):
            raise InvalidParameterError(
                f"The 'n_samples' parameter of monte_carlo_kernel_fn must be a positive int or a non-empty iterable "
                f"of positive ints. Got {n_samples!r} instead.")
        counts, generator = [int(n) for n in counts], True
    if any(n < 1 for n in counts):
        raise InvalidParameterError(
            f"The 'n_samples' parameter of monte_carlo_kernel_fn must hold positive ints. Got {n_samples!r} instead.")
    return sorted(set(counts)), generator


def _check_vmap_axes(vmap_axes):
    ok = vmap_axes is None or (isinstance(vmap_axes, (int, np.integer)) and not isinstance(vmap_axes, bool)
                               and int(vmap_axes) == 0)
    if isinstance(vmap_axes, tuple) and len(vmap_axes) == 3:
        ok = vmap_axes[0] == 0 and vmap_axes[1] == 0 and not vmap_axes[2]
    if not ok:
        raise InvalidParameterError(
            "The 'vmap_axes' parameter of monte_carlo_kernel_fn must be None, 0 or (0, 0, {}): ntkit computes the "
            f"empirical kernels example by example (batch axis 0 of inputs and outputs). Got {vmap_axes!r} instead.")


def _init_style(init_fn):
    """2: neural-tangents' ``init_fn(key, input_shape) -> (output_shape, params)``; 1: ``init_fn(key) -> params``."""
    try:
        sig = inspect.signature(init_fn)
    except (TypeError, ValueError):
        return 2
    positional = [p for p in sig.parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty]
    var = any(p.kind == p.VAR_POSITIONAL for p in sig.parameters.values())
    return 1 if len(positional) == 1 and not var else 2


def _names_rng(fn):
    """Whether ``fn`` has a parameter called ``rng`` (not merely ``**kwargs``)."""
    try:
        return "rng" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def _subscripts(ndim, trace, diag):
    """einsum letters for the pair kernel of outputs with ``ndim`` axes (axis 0 the batch):
    (axes of f(x1), axes of f(x2), output), traced axes shared and dropped, diagonal axes shared
    and kept once, the others kept as (x1, x2) pairs, in axis order (neural-tangents' layout)."""
    letters = iter(string.ascii_letters)
    left, right, out = [], [], []
    for i in range(ndim):
        a = next(letters)
        b = a if (i in trace or i in diag) else next(letters)
        left.append(a)
        right.append(b)
        if i in diag:
            out.append(a)
        elif i not in trace:
            out += [a, b]
    return "".join(left), "".join(right), "".join(out)


class _Sampler:
    """One draw's NNGP / NTK in neural-tangents' axes conventions, for fixed inputs and apply kwargs."""

    def __init__(self, apply_fn, x1, x2, names, trace_axes, diagonal_axes, implementation, batch_size, kwargs):
        self.names, self.x1, self.x2 = names, x1, x2
        self.batch_size = batch_size
        self.implementation = implementation
        self.apply = apply_fn if not kwargs else (lambda p, x: apply_fn(p, x, **kwargs))
        self.trace_axes, self.diagonal_axes = trace_axes, diagonal_axes
        self._flat = None
        self._ntk_fns = {}

    def _layout(self, params, dtype):
        jax, _ = _jax()
        xa = jax.ShapeDtypeStruct((1,) + tuple(self.x1.shape[1:]),
                                  dtype if np.dtype(self.x1.dtype).kind == "f" else self.x1.dtype)
        try:
            out = jax.eval_shape(self.apply, params, xa)
        except Exception as exc:  # noqa: BLE001 - the examples do not fit the network: the caller's input
            raise ValueError(f"apply_fn(params, x) failed on examples of shape {tuple(self.x1.shape[1:])}: {exc}. "
                             "Check that init_fn and apply_fn belong together and that x1 has the network's input "
                             "shape.") from None
        shape = tuple(out.shape[1:])
        ndim = 1 + len(shape)
        trace = {a % ndim for a in self.trace_axes if -ndim <= a < ndim}
        diag = {a % ndim for a in self.diagonal_axes if -ndim <= a < ndim}
        bad = [a for a in self.trace_axes + self.diagonal_axes if not -ndim <= a < ndim]
        if bad:
            raise ValueError(f"trace_axes / diagonal_axes {bad} are out of range for the network's outputs of shape "
                             f"(n,) + {shape}.")
        if trace & diag:
            raise ValueError(f"an output axis cannot be both traced and diagonal; got trace_axes={self.trace_axes}, "
                             f"diagonal_axes={self.diagonal_axes}.")
        if (0 in trace or 0 in diag) and self.x2 is not None and self.x2.shape[0] != self.x1.shape[0]:
            raise ValueError("tracing or taking the diagonal over the batch axis 0 needs x1 and x2 with the same "
                             f"number of examples; got {self.x1.shape[0]} and {self.x2.shape[0]}.")
        return shape, ndim, trace, diag

    def __call__(self, params, dtype):
        jax, jnp = _jax()
        shape, ndim, trace, diag = self._layout(params, dtype)
        lhs, rhs, out_sub = _subscripts(ndim, trace, diag)
        size = int(np.prod([([self.x1.shape[0]] + list(shape))[i] for i in trace], dtype=np.int64))
        out = {}
        if "nngp" in self.names:
            F1 = self._forward(params, self.x1, dtype)
            F2 = F1 if self.x2 is None else self._forward(params, self.x2, dtype)
            out["nngp"] = jnp.einsum(f"{lhs},{rhs}->{out_sub}", F1, F2, precision=jax.lax.Precision.HIGHEST) / size
        if "ntk" in self.names:
            out["ntk"] = self._ntk(params, shape, ndim, trace, diag, lhs, rhs, out_sub) / size
        return out

    def _forward(self, params, x, dtype):
        jax, jnp = _jax()
        fn = jax.jit(self.apply)
        xcast = (lambda a: jnp.asarray(a, dtype=dtype)) if np.dtype(x.dtype).kind == "f" else jnp.asarray
        b = x.shape[0] if self.batch_size is None else self.batch_size
        parts = [fn(params, xcast(x[s:s + b])) for s in range(0, x.shape[0], b)]
        return (parts[0] if len(parts) == 1 else jnp.concatenate(parts, axis=0)).astype(dtype)

    def _ntk_fn(self, kind):
        if kind not in self._ntk_fns:
            from . import empirical_ntk_fn

            apply = self.apply
            if self._flat is None:
                self._flat = lambda p, x: apply(p, x).reshape(x.shape[0], -1)
            self._ntk_fns[kind] = empirical_ntk_fn(self._flat, kind=kind, implementation=self.implementation,
                                                   batch_size=self.batch_size)
        return self._ntk_fns[kind]

    def _ntk(self, params, shape, ndim, trace, diag, lhs, rhs, out_sub):
        _, jnp = _jax()
        if 0 not in trace and 0 not in diag and trace == set(range(1, ndim)):
            return jnp.asarray(self._ntk_fn("trace")(params, self.x1, self.x2))  # sum over every output axis
        full = np.asarray(self._ntk_fn("full")(params, self.x1, self.x2))  # (n, m, P, P)
        n, m = full.shape[:2]
        full = full.reshape((n, m) + shape + shape)
        k = len(shape)
        full = full.transpose((0,) + tuple(range(2, 2 + k)) + (1,) + tuple(range(2 + k, 2 + 2 * k)))
        return jnp.asarray(np.einsum(f"{lhs}{rhs}->{out_sub}", full))


def monte_carlo_kernel_fn(init_fn, apply_fn, key, n_samples, batch_size=0, device_count=-1, store_on_device=True,
                          trace_axes=(-1,), diagonal_axes=(), vmap_axes=None, implementation="auto"):
    r"""Monte Carlo estimates of a network's NNGP and NTK: empirical kernels averaged over initialisations.

    A drop-in for ``neural_tangents.monte_carlo_kernel_fn``: for each of ``n_samples`` random
    initialisations the empirical NNGP ``f(x1) f(x2)^T`` and NTK ``J(x1) J(x2)^T`` are computed
    and averaged; they converge to the infinite-width kernels as the width grows (the NNGP also
    as the number of samples does). The draws use neural-tangents' key sequence: the k-th sample
    splits ``key`` k times (``key, split = jax.random.split(key)``) and initialises with the first
    half of ``jax.random.split(split)`` (the second is passed to ``apply_fn`` as ``rng=`` when it
    names an ``rng`` parameter), so on the same jax version the draws are neural-tangents' own.

    Parameters
    ----------
    init_fn : callable
        ``init_fn(key, input_shape) -> (output_shape, params)`` (neural-tangents and ``ntkit.stax``),
        or ``init_fn(key) -> params`` (one positional argument, e.g. ``ntkit.ntk.models.mlp``).
    apply_fn : callable
        ``apply_fn(params, x, **kwargs) -> outputs`` with batch axis 0; outputs of any shape
        ``(n, ...)``.
    key : jax PRNG key or int
        The random key (an int is ``jax.random.PRNGKey(key)``).
    n_samples : int or iterable of ints
        An int gives ``kernel_fn`` returning the estimate from that many samples; an iterable
        gives ``kernel_fn`` returning a generator of the estimates at each count (increasing),
        computed in one pass (the estimate at n reuses the draws of the smaller counts).
    batch_size : int, default=0
        Tile size over examples for each draw's kernels; 0 lets ntkit plan tiles from its memory
        budget. (neural-tangents requires it to divide the number of examples; ntkit does not.)
    device_count : int, default=-1
        Accepted for compatibility and ignored: ntkit computes where the data live (jax arrays
        on their device, numpy data on the default device); use ``ntkit.config_context`` or
        place ``x1`` to choose.
    store_on_device : bool, default=True
        True returns jax arrays (on ``x1``'s device, or the default device for numpy inputs);
        False returns numpy arrays in host memory.
    trace_axes : int or tuple of ints, default=(-1,)
        Output axes averaged over (neural-tangents' convention: the **mean** over the traced
        axes, e.g. over logits; ntkit's ``kind="trace"`` is the sum).
    diagonal_axes : int or tuple of ints, default=()
        Output axes of which only the diagonal is kept.
    vmap_axes : None, 0 or (0, 0, {}), default=None
        ntkit always computes the empirical NTK example by example (neural-tangents'
        ``vmap_axes=0``), so networks whose examples interact (batch statistics) are not
        supported; other values raise.
    implementation : {"auto", "structured", "jacobian", "ntk_vp"} or int, default="auto"
        Of the empirical NTK (see :func:`ntkit.ntk.empirical_ntk`); a neural-tangents
        ``NtkImplementation`` (0 AUTO, 1 JACOBIAN_CONTRACTION, 2 NTK_VECTOR_PRODUCTS,
        3 STRUCTURED_DERIVATIVES) maps to the ntkit name.

    Returns
    -------
    callable
        ``kernel_fn(x1, x2=None, get=None, **apply_fn_kwargs)``. ``get=None`` returns a named
        tuple ``MonteCarloKernel(nngp, ntk)``, a string (``"nngp"`` or ``"ntk"``) one array, a
        tuple of strings a named tuple of those; with an iterable ``n_samples``, a generator of
        such results. ``apply_fn_kwargs`` are passed to ``apply_fn`` unchanged for x1 and x2.
        For outputs (n, O): ``trace_axes=(-1,)`` gives (n, m) kernels, ``trace_axes=()``
        (n, m, O, O), ``diagonal_axes=(-1,)`` with ``trace_axes=()`` (n, m, O).

    Notes
    -----
    Differences from neural-tangents: ``x2`` defaults to None; ``batch_size`` need not divide
    the number of examples; ``device_count`` is ignored; per-example ``apply_fn_kwargs`` (such as
    a graph ``pattern`` batched with x) are not split between x1 and x2; the per-sample ``rng``
    goes only to an ``apply_fn`` that names an ``rng`` parameter (neural-tangents passes it to
    every ``apply_fn``, through ``**kwargs`` too), is the same for x1 and x2, and makes each
    sample recompile; pass ``rng=`` yourself for a fixed key. The average is accumulated in the
    kernels' dtype (float64 when parameters or inputs are float64).

    Examples
    --------
    >>> import jax
    >>> import numpy as np
    >>> from ntkit import monte_carlo_kernel_fn
    >>> from ntkit.ntk.models import mlp
    >>> init, apply = mlp((3, 64, 1))
    >>> kernel_fn = monte_carlo_kernel_fn(init, apply, jax.random.PRNGKey(0), n_samples=4)
    >>> x = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    >>> k = kernel_fn(x, None, get=("nngp", "ntk"))
    >>> k.nngp.shape, k.ntk.shape
    ((5, 5), (5, 5))
    >>> [k.shape for k in monte_carlo_kernel_fn(init, apply, 0, n_samples=[1, 4])(x, get="ntk")]
    [(5, 5), (5, 5)]
    """
    jax, _ = _jax()
    owner = "monte_carlo_kernel_fn"
    for name, fn in (("init_fn", init_fn), ("apply_fn", apply_fn)):
        if not callable(fn):
            raise TypeError(f"{name} must be callable; got {type(fn).__name__}.")
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        key = jax.random.PRNGKey(int(key))
    elif not (is_jax_array(key) or isinstance(key, np.ndarray)):
        raise TypeError(f"key must be a jax PRNG key (jax.random.PRNGKey(seed)) or an int seed; got {key!r}.")
    counts, generator = _canonical_n_samples(n_samples)
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 0:
        raise InvalidParameterError(f"The 'batch_size' parameter of {owner} must be an int in the range [0, inf) "
                                    f"(0: planned from the memory budget). Got {batch_size!r} instead.")
    if isinstance(device_count, bool) or not isinstance(device_count, (int, np.integer)) or device_count < -1:
        raise InvalidParameterError(f"The 'device_count' parameter of {owner} must be an int >= -1 (it is accepted "
                                    f"for compatibility and ignored). Got {device_count!r} instead.")
    if not isinstance(store_on_device, (bool, np.bool_)):
        raise InvalidParameterError(f"The 'store_on_device' parameter of {owner} must be a bool. Got "
                                    f"{store_on_device!r} instead.")
    trace_axes, diagonal_axes = _axes(trace_axes, "trace_axes"), _axes(diagonal_axes, "diagonal_axes")
    _check_vmap_axes(vmap_axes)
    implementation = _implementation(implementation)
    style = _init_style(init_fn)
    wants_rng = _names_rng(apply_fn)
    tile = None if batch_size == 0 else int(batch_size)

    def draws(x1, x2, names, kwargs):
        sampler = _Sampler(apply_fn, x1, x2, names, trace_axes, diagonal_axes, implementation, tile, kwargs)
        k, total, dtype = key, None, None
        for n in range(1, counts[-1] + 1):
            k, split = jax.random.split(k)
            init_key, rng_key = jax.random.split(split)
            params = init_fn(init_key) if style == 1 else init_fn(init_key, tuple(x1.shape))[1]
            if dtype is None:
                dtype = _compute_dtype(_float_leaves(params), [x for x in (x1, x2) if x is not None])
            if wants_rng and "rng" not in kwargs:
                sampler.apply = _with_rng(apply_fn, kwargs, rng_key)
                sampler._flat, sampler._ntk_fns = None, {}
            with _x64(dtype):
                one = sampler(params, dtype)
                total = one if total is None else {g: total[g] + one[g] for g in names}
            if n in counts:
                with _x64(dtype):
                    yield n, {g: total[g] / n for g in names}

    def finish(values, names, single, x1):
        out = {}
        for g in names:
            v = values[g]
            if store_on_device:
                from .._device import _array_device

                dev = _array_device(x1) if is_jax_array(x1) else jax.devices()[0]
                with _x64(np.dtype(v.dtype)):
                    out[g] = jax.device_put(v, dev)
            else:
                out[g] = np.asarray(v)
        return _as_result(out, names, single, "MonteCarloKernel")

    def kernel_fn(x1, x2=None, get=None, **apply_fn_kwargs):
        names, single = _canonical_get(get, owner)
        x1 = _check_x(x1, "x1")
        if x2 is not None:
            x2 = _check_x(x2, "x2", x1.shape[1:])
        results = draws(x1, x2, names, apply_fn_kwargs)
        if generator:
            return (finish(v, names, single, x1) for _, v in results)
        for _, v in results:
            pass
        return finish(v, names, single, x1)

    return kernel_fn


def _with_rng(apply_fn, kwargs, rng):
    def apply(p, x):
        return apply_fn(p, x, rng=rng, **kwargs)

    return apply

