"""The state that infinite-width layers pass to each other, and the array helpers they share.

A layer's ``kernel_fn`` maps a :class:`KernelState` to a :class:`KernelState`. The state
holds, for two batches of inputs ``x1`` (``n1`` rows) and ``x2`` (``n2`` rows), the
covariances of one output channel of the layer in the infinite-width limit:

* ``nngp``: ``E[f(x1) f(x2)]``, shape ``(n1, n2, *spatial)``,
* ``ntk``: the neural tangent kernel, same shape (or ``None`` when not asked for),
* ``cov1`` / ``cov2``: ``E[f(x1) f(x1)]`` / ``E[f(x2) f(x2)]``, only the diagonal over the
  batch (``(n1, *spatial)``) when ``diagonal_batch`` is true, else ``(n1, n1, *spatial)``.

``spatial`` is, for ``S`` spatial axes of sizes ``(H, W, ...)``, either ``(H, H, W, W, ...)``
(every pair of positions, the two axes of each spatial dimension side by side:
``diagonal_spatial=False``) or ``(H, W, ...)`` (same positions only: ``diagonal_spatial=True``).
This is neural-tangents' layout, so the arrays a user gets back are the same.

Inside ntkit the spatial axes are always kept in their natural order; neural-tangents
reverses them after every full-spatial convolution, so :attr:`KernelState.is_reversed`
records that parity and the public output is transposed to match (see ``_public``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

__all__ = ["KernelState"]


@dataclasses.dataclass(frozen=True)
class KernelState:
    """Covariances of an infinitely wide layer's outputs on two batches of inputs.

    What ``kernel_fn(x1, x2)`` returns for ``get=None`` (neural-tangents' ``Kernel``): the
    NNGP and NTK and everything a following layer needs. A ``KernelState`` can be passed
    back to any ``kernel_fn`` in place of inputs.

    Attributes
    ----------
    nngp : array of shape (n1, n2, *spatial)
        Covariance of one output channel between the two batches.
    ntk : array of shape (n1, n2, *spatial) or None
        Neural tangent kernel (None when it was not requested).
    cov1, cov2 : array or None
        Covariances within each batch: shape ``(n, *spatial)`` when ``diagonal_batch``,
        else ``(n, n, *spatial)``; ``cov2`` is None when ``x2`` was None.
    x1_is_x2 : bool or array
        Whether the two batches are the same inputs.
    is_gaussian : bool
        Whether the outputs are Gaussian given the inputs (true after a linear layer).
    is_reversed : bool
        neural-tangents' spatial-axis reversal flag (kept for identical outputs).
    is_input : bool
    diagonal_batch, diagonal_spatial : bool
        Which covariances are stored (see the module documentation).
    shape1, shape2 : tuple of int
        Shapes of the finite-width activations for the two batches.
    batch_axis, channel_axis : int
        Positions of the batch and channel axes in those activations.
    mask1, mask2 : None
        Input masks (not supported by ntkit; always None).

    Examples
    --------
    >>> import numpy as np
    >>> from ntkit import stax
    >>> _, _, kernel_fn = stax.serial(stax.Dense(8), stax.Relu(), stax.Dense(1))
    >>> k = kernel_fn(np.ones((3, 2)), None)
    >>> k.nngp.shape, k.is_gaussian
    ((3, 3), True)
    """

    nngp: Any
    ntk: Any
    cov1: Any
    cov2: Any
    x1_is_x2: Any
    is_gaussian: bool
    is_reversed: bool
    is_input: bool
    diagonal_batch: bool
    diagonal_spatial: bool
    shape1: tuple | None
    shape2: tuple | None
    batch_axis: int
    channel_axis: int
    mask1: Any = None
    mask2: Any = None

    def replace(self, **changes) -> KernelState:
        """A copy with some fields replaced (neural-tangents' ``Kernel.replace``).

        >>> import numpy as np
        >>> from ntkit import stax
        >>> k = stax.Dense(1)[2](np.ones((2, 3)), None)
        >>> k.replace(ntk=None).ntk is None
        True
        """
        return dataclasses.replace(self, **changes)

    def asdict(self) -> dict:
        """The fields as a dict (what ``get`` selects from).

        >>> import numpy as np
        >>> from ntkit import stax
        >>> sorted(stax.Dense(1)[2](np.ones((2, 3)), None).asdict())[:3]
        ['batch_axis', 'channel_axis', 'cov1']
        """
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


_ARRAY_FIELDS = ("nngp", "ntk", "cov1", "cov2", "x1_is_x2")
_STATIC_FIELDS = tuple(f.name for f in dataclasses.fields(KernelState) if f.name not in _ARRAY_FIELDS
                       and f.name not in ("mask1", "mask2"))
_registered = False


def ensure_pytree():
    """Register :class:`KernelState` as a jax pytree (once, on first use: nothing at import)."""
    global _registered
    if _registered:
        return
    import jax

    def flatten(k):
        return tuple(getattr(k, f) for f in _ARRAY_FIELDS), tuple(getattr(k, f) for f in _STATIC_FIELDS)

    def unflatten(aux, children):
        return KernelState(**dict(zip(_ARRAY_FIELDS, children)), **dict(zip(_STATIC_FIELDS, aux)))

    try:
        jax.tree_util.register_pytree_node(KernelState, flatten, unflatten)
    except ValueError:  # already registered (a module reload)
        pass
    _registered = True


# ----------------------------------------------------------------------------------------------
# Layout helpers. ``S`` is the number of spatial axes; ``zipped`` arrays carry each spatial axis
# twice, side by side (diagonal_spatial=False).


def n_spatial(k: KernelState) -> int:
    return max(len(k.shape1) - 2, 0)


def variances(cov, batch_ndim: int, diagonal_spatial: bool):
    """Per-sample, per-position variances ``(n, *spatial_sizes)`` from a covariance array."""
    import jax.numpy as jnp

    if cov is None:
        return None
    if batch_ndim == 2:
        cov = jnp.moveaxis(jnp.diagonal(cov, axis1=0, axis2=1), -1, 0)
    if not diagonal_spatial:
        n_sp = (cov.ndim - 1) // 2
        for _ in range(n_sp):  # each pair (1, 2) in turn; the diagonal goes last, so order is kept
            cov = jnp.diagonal(cov, axis1=1, axis2=2)
    return cov


def expand(v, where: str, diagonal_spatial: bool):
    """Variances ``(n, *sizes)`` reshaped to broadcast against a covariance array.

    ``where`` is "left" (first batch of a cross covariance: ``(n, 1, ...)``), "right"
    (``(1, n, ...)``), "self_left" / "self_right" (a diagonal-batch covariance, ``(n, ...)``).
    With full spatial layout the left factor varies along the first axis of each spatial pair
    and the right factor along the second.
    """
    n = v.shape[0]
    sizes = v.shape[1:]
    if where == "left":
        lead = (n, 1)
    elif where == "right":
        lead = (1, n)
    else:
        lead = (n,)
    if diagonal_spatial:
        return v.reshape(lead + sizes)
    first = where in ("left", "self_left")
    sp = tuple(s for d in sizes for s in ((d, 1) if first else (1, d)))
    return v.reshape(lead + sp)


def pair_terms(k: KernelState):
    """``(v1, v2, q1, q2)``: variances of both batches and their broadcast forms against ``nngp``."""
    v1 = variances(k.cov1, 1 if k.diagonal_batch else 2, k.diagonal_spatial)
    v2 = v1 if k.cov2 is None else variances(k.cov2, 1 if k.diagonal_batch else 2, k.diagonal_spatial)
    return v1, v2, expand(v1, "left", k.diagonal_spatial), expand(v2, "right", k.diagonal_spatial)


def self_terms(v, k: KernelState):
    """Broadcast forms ``(q_left, q_right)`` of variances ``v`` against ``cov1`` / ``cov2``."""
    if k.diagonal_batch:
        return expand(v, "self_left", k.diagonal_spatial), expand(v, "self_right", k.diagonal_spatial)
    return expand(v, "left", k.diagonal_spatial), expand(v, "right", k.diagonal_spatial)


def reverse_spatial(a, batch_ndim: int, diagonal_spatial: bool):
    """Reverse the order of the spatial dimensions (pairs kept together when zipped)."""
    import jax.numpy as jnp

    if a is None or a.ndim <= batch_ndim:
        return a
    step = 1 if diagonal_spatial else 2
    n_sp = (a.ndim - batch_ndim) // step
    order = list(range(batch_ndim))
    for i in reversed(range(n_sp)):
        order += [batch_ndim + step * i + j for j in range(step)]
    return jnp.transpose(a, order)


def flip_state(k: KernelState) -> KernelState:
    """The same state with the arrays' spatial axes reversed (to / from neural-tangents' order)."""
    if k.diagonal_spatial:
        return k
    bn = 1 if k.diagonal_batch else 2
    return k.replace(nngp=reverse_spatial(k.nngp, 2, False), ntk=reverse_spatial(k.ntk, 2, False),
                     cov1=reverse_spatial(k.cov1, bn, False), cov2=reverse_spatial(k.cov2, bn, False))


# ----------------------------------------------------------------------------------------------
# From inputs to the first state.


def _canonical(x, batch_axis, channel_axis):
    """Move the batch axis first and the channel axis last (spatial axes keep their order)."""
    import jax.numpy as jnp

    if channel_axis is None:  # Flatten first: every non-batch axis is a feature
        x = jnp.moveaxis(x, batch_axis, 0)
        return x.reshape((x.shape[0], -1))
    return jnp.moveaxis(x, (batch_axis, channel_axis), (0, -1))


def _cross(a, b, diagonal_spatial):
    """Uncentred covariance of canonical activations a (n1, *sp, C) and b (n2, *sp, C)."""
    import jax
    import jax.numpy as jnp

    C = a.shape[-1]
    S = a.ndim - 2
    hi = jax.lax.Precision.HIGHEST
    letters = "hijklmopqrstuvw"
    if diagonal_spatial:
        sp = letters[:S]
        out = jnp.einsum(f"a{sp}z,b{sp}z->ab{sp}", a, b, precision=hi)
    else:
        s1, s2 = letters[:S], letters[S:2 * S].upper()
        zipped = "".join(p + q for p, q in zip(s1, s2))
        out = jnp.einsum(f"a{s1}z,b{s2}z->ab{zipped}", a, b, precision=hi)
    return out / C


def _self(a, diagonal_spatial):
    """Per-sample covariance (diagonal batch) of canonical activations a (n, *sp, C)."""
    import jax
    import jax.numpy as jnp

    C = a.shape[-1]
    S = a.ndim - 2
    hi = jax.lax.Precision.HIGHEST
    letters = "hijklmopqrstuvw"
    if diagonal_spatial:
        sp = letters[:S]
        out = jnp.einsum(f"a{sp}z,a{sp}z->a{sp}", a, a, precision=hi)
    else:
        s1, s2 = letters[:S], letters[S:2 * S].upper()
        zipped = "".join(p + q for p, q in zip(s1, s2))
        out = jnp.einsum(f"a{s1}z,a{s2}z->a{zipped}", a, a, precision=hi)
    return out / C


def _batch_diagonal(m):
    """``m[i, i, ...]`` of a cross covariance ``(n, n, ...)``."""
    import jax.numpy as jnp

    return jnp.moveaxis(jnp.diagonal(m, axis1=0, axis2=1), -1, 0)


def inputs_to_state(x1, x2, *, compute_ntk, diagonal_batch, diagonal_spatial, batch_axis, channel_axis,
                    eps=1e-12) -> KernelState:
    """The state of the inputs themselves: covariances ``<x, x'> / n_channels``, NTK 0.

    One compiled function: run eagerly, each of the dozen array operations would be compiled
    on its own for every new shape.
    """
    import jax
    import jax.numpy as jnp

    dtype = jax.dtypes.canonicalize_dtype(jnp.float64)  # as neural-tangents: float64 under x64
    x1 = jnp.asarray(x1).astype(dtype)
    x2 = None if x2 is None else jnp.asarray(x2).astype(dtype)
    static = dict(compute_ntk=bool(compute_ntk), diagonal_batch=bool(diagonal_batch),
                  diagonal_spatial=bool(diagonal_spatial), batch_axis=batch_axis, channel_axis=channel_axis,
                  eps=eps)
    if not isinstance(x1, jax.core.Tracer):
        return _inputs_jit()(x1, x2, **static)
    return _inputs_to_state(x1, x2, **static)


_INPUTS_JIT = []


def _inputs_jit():
    if not _INPUTS_JIT:
        import jax

        _INPUTS_JIT.append(jax.jit(_inputs_to_state, static_argnames=(
            "compute_ntk", "diagonal_batch", "diagonal_spatial", "batch_axis", "channel_axis", "eps")))
    return _INPUTS_JIT[0]


def _inputs_to_state(x1, x2, *, compute_ntk, diagonal_batch, diagonal_spatial, batch_axis, channel_axis, eps):
    import jax.numpy as jnp

    for name, x in (("x1", x1), ("x2", x2)):
        if x is not None and x.ndim < 2:
            raise ValueError(f"{name} must have at least 2 dimensions (a batch axis and a channel axis); "
                             f"found shape {tuple(x.shape)}.")
    if x2 is not None and (x2.ndim != x1.ndim or
                           tuple(np.delete(x1.shape, batch_axis % x1.ndim)) !=
                           tuple(np.delete(x2.shape, batch_axis % x2.ndim))):
        raise ValueError(f"x1 and x2 must have the same shape apart from the batch axis; found {tuple(x1.shape)} "
                         f"and {tuple(x2.shape)}.")
    ndim = x1.ndim
    batch_axis %= ndim
    if channel_axis is not None:
        channel_axis %= ndim
        if channel_axis == batch_axis:
            raise ValueError(f"batch_axis and channel_axis must differ; both are {batch_axis}.")
    a1 = _canonical(x1, batch_axis, channel_axis)
    a2 = None if x2 is None else _canonical(x2, batch_axis, channel_axis)
    if channel_axis is None or a1.ndim == 2:
        diagonal_spatial = False
    shape1 = tuple(x1.shape) if channel_axis is not None else tuple(a1.shape)
    shape2 = shape1 if x2 is None else (tuple(x2.shape) if channel_axis is not None else tuple(a2.shape))
    nngp = _cross(a1, a1 if a2 is None else a2, diagonal_spatial)
    if a2 is None:
        # cov1 is read off nngp itself, so identical inputs have bit-identical variances and
        # covariances (their angle is exactly 0 in every arc-cosine layer).
        cov1 = nngp if not diagonal_batch else _batch_diagonal(nngp)
        cov2 = None
        x1_is_x2 = True
    else:
        cov1 = _self(a1, diagonal_spatial) if diagonal_batch else _cross(a1, a1, diagonal_spatial)
        cov2 = _self(a2, diagonal_spatial) if diagonal_batch else _cross(a2, a2, diagonal_spatial)
        x1_is_x2 = (jnp.all(jnp.abs(x1 - x2) < eps) if x1.shape == x2.shape else False)
    ntk = jnp.zeros((), nngp.dtype) if compute_ntk else None
    if channel_axis is None:
        batch_axis, channel_axis = 0, 1
    return KernelState(nngp=nngp, ntk=ntk, cov1=cov1, cov2=cov2, x1_is_x2=x1_is_x2, is_gaussian=False,
                       is_reversed=False, is_input=False, diagonal_batch=bool(diagonal_batch),
                       diagonal_spatial=bool(diagonal_spatial), shape1=shape1, shape2=shape2,
                       batch_axis=batch_axis, channel_axis=channel_axis)
