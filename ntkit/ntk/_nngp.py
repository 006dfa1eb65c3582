"""The empirical NNGP kernel ``f(x) f(x')^T`` beside the empirical NTK, and both at once.

The empirical NNGP of a network at parameters θ is the outer product of its outputs,
``K_{oo'}(x, x') = f_o(x; θ) f_{o'}(x'; θ)``: one draw of the covariance whose average over
initialisations converges to the infinite-width NNGP (:func:`ntkit.monte_carlo_kernel_fn` takes
that average). It needs forward passes only; the outputs are formed in tiles over the examples
and their products go through :func:`ntkit.ops.batched_gram`, as the eNTK's do. The kinds, the
``normalize`` option and the in/out conventions are those of :func:`ntkit.ntk.empirical_ntk`.
"""

from __future__ import annotations

import collections

import numpy as np

from .._validation import InvalidParameterError, is_jax_array
from ._checks import _check_x, _compute_dtype, _jax, _resolve_apply_fn, _x64

__all__ = ["empirical_nngp", "empirical_nngp_fn", "empirical_kernel_fn"]

NNGP_KINDS = ("full", "trace", "sum_logits", "diagonal")
_DIAGONAL_OF = ("full", "trace", "sum_logits")


_NAMED: dict = {}


def named_result(name, fields):
    """A namedtuple type per (name, fields), cached: neural-tangents returns the requested fields only,
    in the order requested."""
    key = (name, tuple(fields))
    if key not in _NAMED:
        _NAMED[key] = collections.namedtuple(name, fields)
    return _NAMED[key]


def _option(value, name, options, owner):
    if isinstance(value, str) and value in options:
        return value
    raise InvalidParameterError(f"The '{name}' parameter of {owner} must be one of {options}. Got {value!r} instead.")


def _float_leaves(params):
    """The array leaves of params that carry a float dtype (they decide the computation dtype)."""
    jax, _ = _jax()
    out = []
    for leaf in jax.tree_util.tree_leaves(params):
        if hasattr(leaf, "dtype") and np.dtype(leaf.dtype).kind == "f":
            out.append(leaf)
        elif isinstance(leaf, float):
            out.append(np.float32(leaf))
    return out


def _outputs(apply_fn, params, x, dtype, batch_size):
    """f(x) as a (n, O) array of ``dtype`` (jax), evaluated in tiles of ``batch_size`` rows."""
    jax, jnp = _jax()
    fn = jax.jit(apply_fn)
    xcast = (lambda a: jnp.asarray(a, dtype=dtype)) if np.dtype(x.dtype).kind == "f" else jnp.asarray
    n = x.shape[0]
    b = n if batch_size is None else int(min(batch_size, n))
    parts = []
    for s in range(0, n, b):
        try:
            out = fn(params, xcast(x[s:s + b]))
        except Exception as exc:  # noqa: BLE001 - the examples do not fit the network: the caller's input
            raise ValueError(
                f"apply_fn(params, x) failed on inputs of shape {tuple(x[s:s + b].shape)}: {exc}. Check that params "
                "belong to apply_fn and that the examples have the network's input shape.") from None
        if getattr(out, "ndim", None) != 2 or out.shape[0] != min(b, n - s):
            raise ValueError(
                f"apply_fn(params, x) must return an array of shape (n, O) (one row of logits per example); for "
                f"{min(b, n - s)} examples it returned shape {tuple(getattr(out, 'shape', ()))}. Reshape scalar "
                "outputs to (n, 1).")
        parts.append(jnp.asarray(out, dtype=dtype))
    return parts[0] if len(parts) == 1 else jnp.concatenate(parts, axis=0)


def _pair(F1, F2, kind):
    """The NNGP block of outputs F1 (n, O) and F2 (m, O) (F2 None: F1 with itself)."""
    from ..ops import batched_gram

    jax, jnp = _jax()
    G = F1 if F2 is None else F2
    O = F1.shape[1]
    if kind == "full":
        return jnp.einsum("ia,jb->ijab", F1, G, precision=jax.lax.Precision.HIGHEST)
    if kind == "sum_logits":
        s1 = jnp.sum(F1, axis=1, keepdims=True)
        s2 = s1 if F2 is None else jnp.sum(F2, axis=1, keepdims=True)
        return batched_gram(s1[None], None if F2 is None else s2[None], reduce="sum") / O
    return batched_gram(F1[None], None if F2 is None else F2[None], reduce="sum")


def _diagonal(F, diagonal_of):
    _, jnp = _jax()
    if diagonal_of == "full":
        return F[:, :, None] * F[:, None, :]
    if diagonal_of == "sum_logits":
        return jnp.sum(F, axis=1) ** 2 / F.shape[1]
    return jnp.sum(F * F, axis=1)


def empirical_nngp_fn(apply_fn, *, kind="full", normalize=None, diagonal_of="full", batch_size=None):
    """A reusable empirical-NNGP function ``nngp_fn(params, x1, x2=None)``.

    Takes the same keyword arguments as :func:`empirical_nngp`; ``apply_fn`` is compiled once
    (``jax.jit``) and reused across calls.

    Examples
    --------
    >>> import jax
    >>> from ntkit.ntk import empirical_nngp_fn
    >>> from ntkit.ntk.models import mlp
    >>> init, apply = mlp((4, 16, 3))
    >>> nngp_fn = empirical_nngp_fn(apply, kind="trace")
    >>> x = jax.random.normal(jax.random.PRNGKey(1), (5, 4))
    >>> nngp_fn(init(jax.random.PRNGKey(0)), x).shape
    (5, 5)
    """
    owner = "empirical_nngp"
    apply_fn = _resolve_apply_fn(apply_fn)
    kind = _option(kind, "kind", NNGP_KINDS, owner)
    diagonal_of = _option(diagonal_of, "diagonal_of", _DIAGONAL_OF, owner)
    if normalize not in (None, "cosine"):
        raise InvalidParameterError(f"The 'normalize' parameter of {owner} must be None or 'cosine'. Got "
                                    f"{normalize!r} instead.")
    if normalize == "cosine" and kind in ("full", "diagonal"):
        raise InvalidParameterError(
            f"normalize='cosine' applies to scalar kernels (kind='trace' or 'sum_logits'); got kind={kind!r}.")
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer))
                                   or batch_size < 1):
        raise InvalidParameterError(f"batch_size must be a positive int or None; got {batch_size!r}.")

    def nngp_fn(params, x1, x2=None):
        x1 = _check_x(x1, "x1")
        if x2 is not None:
            if kind == "diagonal":
                raise ValueError("kind='diagonal' computes K(x, x) for x1 only; pass x2=None.")
            x2 = _check_x(x2, "x2", x1.shape[1:])
        dtype = _compute_dtype(_float_leaves(params), [x for x in (x1, x2) if x is not None])
        with _x64(dtype):
            out = _compute(apply_fn, params, x1, x2, dtype, kind, diagonal_of, normalize, batch_size)
            return _finish(out, x1)

    nngp_fn.__doc__ = f"Empirical NNGP (kind={kind!r}) of apply_fn."
    return nngp_fn


def _compute(apply_fn, params, x1, x2, dtype, kind, diagonal_of, normalize, batch_size):
    jax, jnp = _jax()
    params = jax.tree_util.tree_map(lambda a: jnp.asarray(a, dtype=dtype) if hasattr(a, "dtype") and
                                    np.dtype(a.dtype).kind == "f" else a, params)
    b = None if batch_size is None else int(batch_size)
    F1 = _outputs(apply_fn, params, x1, dtype, b)
    if kind == "diagonal":
        return _diagonal(F1, diagonal_of)
    F2 = None if x2 is None else _outputs(apply_fn, params, x2, dtype, b)
    out = _pair(F1, F2, kind)
    if normalize == "cosine":
        d1 = _diagonal(F1, "sum_logits" if kind == "sum_logits" else "trace")
        d2 = d1 if F2 is None else _diagonal(F2, "sum_logits" if kind == "sum_logits" else "trace")
        if bool(jnp.any(d1 <= 0)) or bool(jnp.any(d2 <= 0)):
            raise ValueError("normalize='cosine' needs K(x, x) > 0 for every input, but the network outputs 0 for "
                             "some example; drop it or use normalize=None.")
        out = out / jnp.sqrt(d1)[:, None] / jnp.sqrt(d2)[None, :]
        if F2 is None:
            out = out.at[jnp.arange(out.shape[0]), jnp.arange(out.shape[0])].set(1.0)
    return out


def _finish(out, x1):
    """numpy out for numpy x1; jax out on x1's device for jax x1 (the eNTK's rule)."""
    if is_jax_array(x1):
        jax, _ = _jax()
        from .._device import _array_device

        return jax.device_put(out, _array_device(x1))
    return np.asarray(out)


def empirical_nngp(apply_fn, params, x1, x2=None, *, kind="full", normalize=None, diagonal_of="full",
                   batch_size=None):
    r"""Empirical NNGP kernel of any JAX model: the outer product of its outputs.

    One draw, at ``params``, of the covariance that :func:`ntkit.monte_carlo_kernel_fn` averages
    over initialisations: ``K_{oo'}(x, x') = f_o(x) f_{o'}(x')``.

    Parameters
    ----------
    apply_fn : callable
        ``apply_fn(params, x) -> (n, O)``, as for :func:`empirical_ntk` (a neural-tangents
        ``stax`` triple is accepted too). The examples are evaluated in tiles of ``batch_size``
        rows, so they must not interact (no batch statistics across the batch).
    params : pytree
        Passed to ``apply_fn`` as is (flax ``variables`` included: no leaf is differentiated).
    x1 : array (n, ...)
        numpy or jax; jax in gives a jax result on ``x1``'s device.
    x2 : array (m, ...), optional
        Defaults to ``x1``.
    kind : {"full", "trace", "sum_logits", "diagonal"}, default="full"
        ``"full"`` → (n, m, O, O) with ``K[i, j, o, o'] = f_o(x_i) f_o'(x2_j)``;
        ``"trace"`` → (n, m), the **sum** ``Σ_o f_o(x) f_o(x')`` (neural-tangents'
        ``trace_axes=(-1,)`` is the mean: divide by O);
        ``"sum_logits"`` → (n, m), the NNGP of ``(1/√O) Σ_o f_o``;
        ``"diagonal"`` → ``K(x, x)`` for x1 only: (n, O, O) or (n,) (see ``diagonal_of``).
    normalize : {None, "cosine"}, default=None
        ``"cosine"`` returns ``K(x, x') / sqrt(K(x, x) K(x', x'))`` for the scalar kinds.
    diagonal_of : {"full", "trace", "sum_logits"}, default="full"
        For ``kind="diagonal"``.
    batch_size : int, optional
        Rows per forward pass (the outputs, n x O, are small; the forward pass's activations
        are what a batch bounds). Default: the whole input at once, as neural-tangents.

    Returns
    -------
    array
        numpy for numpy ``x1`` (jax on ``x1``'s device for jax ``x1``); float64 when params or
        inputs are float64 (x64 is enabled for the computation), else float32.

    See Also
    --------
    empirical_ntk : the tangent kernel, same conventions.
    empirical_kernel_fn : both kernels from one function.

    Examples
    --------
    >>> import jax
    >>> import numpy as np
    >>> from ntkit.ntk import empirical_nngp
    >>> from ntkit.ntk.models import mlp
    >>> init, apply = mlp((4, 32, 2))
    >>> params = init(jax.random.PRNGKey(0))
    >>> x = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)
    >>> K = empirical_nngp(apply, params, x)
    >>> K.shape
    (3, 3, 2, 2)
    >>> f = np.asarray(apply(params, x))
    >>> bool(np.allclose(empirical_nngp(apply, params, x, kind="trace"), f @ f.T, rtol=1e-5))
    True
    """
    fn = empirical_nngp_fn(apply_fn, kind=kind, normalize=normalize, diagonal_of=diagonal_of, batch_size=batch_size)
    return fn(params, x1, x2)


_GET = ("nngp", "ntk")


def _canonical_get(get, owner):
    """``(names, single)`` from get = None | "nngp" | "ntk" | a tuple of those (neural-tangents' rule)."""
    if get is None:
        return _GET, False
    single = isinstance(get, str)
    try:
        names = (get,) if single else tuple(get)
    except TypeError:
        names = None
    if not names or any(not isinstance(g, str) or g.lower() not in _GET for g in names) or \
            len(set(names)) < len(names):
        raise InvalidParameterError(f"The 'get' parameter of {owner} must be 'nngp', 'ntk' or a tuple of distinct "
                                    f"ones. Got {get!r} instead.")
    return tuple(g.lower() for g in names), single


def _as_result(values, names, single, name="EmpiricalKernel"):
    if single:
        return values[names[0]]
    return named_result(name, names)(*(values[g] for g in names))


def empirical_kernel_fn(apply_fn, *, kind="full", implementation="auto", batch_size=None, memory_budget=None):
    """Both empirical kernels of a network: ``kernel_fn(params, x1, x2=None, get=None)``.

    The NNGP (:func:`empirical_nngp`) and the NTK (:func:`empirical_ntk`) of the same ``kind``
    at the same parameters. ``get`` follows neural-tangents: ``None`` for both, ``"nngp"`` or
    ``"ntk"`` for one array, a tuple for a named result.

    Parameters
    ----------
    apply_fn : callable
        ``apply_fn(params, x) -> (n, O)``.
    kind : {"full", "trace", "sum_logits"}, default="full"
        As in :func:`empirical_ntk` (``"trace"`` is the sum over logits).
    implementation : {"auto", "structured", "jacobian", "ntk_vp"}, default="auto"
        Of the NTK.
    batch_size : int, optional
        Tile size over examples (both kernels).
    memory_budget : int or str, optional
        Of the NTK (see :func:`empirical_ntk`).

    Returns
    -------
    callable
        ``kernel_fn(params, x1, x2=None, get=None)`` returning a named tuple
        ``EmpiricalKernel(nngp, ntk)`` (for a tuple ``get``: those fields, in that order) or, for a
        string ``get``, one array.

    Examples
    --------
    >>> import jax
    >>> from ntkit.ntk import empirical_kernel_fn
    >>> from ntkit.ntk.models import mlp
    >>> init, apply = mlp((4, 16, 3))
    >>> kernel_fn = empirical_kernel_fn(apply, kind="trace")
    >>> x = jax.random.normal(jax.random.PRNGKey(1), (5, 4))
    >>> k = kernel_fn(init(jax.random.PRNGKey(0)), x)
    >>> k.nngp.shape, k.ntk.shape
    ((5, 5), (5, 5))
    """
    from . import empirical_ntk_fn

    owner = "empirical_kernel_fn"
    kind = _option(kind, "kind", ("full", "trace", "sum_logits"), owner)
    fns = {"nngp": empirical_nngp_fn(apply_fn, kind=kind, batch_size=batch_size),
           "ntk": empirical_ntk_fn(apply_fn, kind=kind, implementation=implementation, batch_size=batch_size,
                                   memory_budget=memory_budget)}

    def kernel_fn(params, x1, x2=None, get=None):
        names, single = _canonical_get(get, owner)
        return _as_result({g: fns[g](params, x1, x2) for g in names}, names, single)

    kernel_fn.__doc__ = f"Empirical NNGP and NTK (kind={kind!r}) of apply_fn."
    return kernel_fn
