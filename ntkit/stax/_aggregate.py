"""Aggregate: the message-passing layer of graph neural networks (the graph NTK).

Each input ``x`` of shape ``(batch, X_1, ..., X_N, channels)`` comes with a weighted adjacency
``pattern`` over its ``K`` aggregate axes, and the layer replaces every vertex by the weighted
sum of its predecessors, ``out[j] = sum_i pattern[i, j] x[i]``. A linear map with no weights
of its own, it maps the covariances by the same map on both sides:
``K'(x1, x2) = P1^T K(x1, x2) P2`` over the aggregate axes (Du et al. 2019).

References
----------
S. S. Du, K. Hou, B. Póczos, R. Salakhutdinov, R. Wang, K. Xu, "Graph neural tangent kernel:
fusing graph neural networks with graph kernels", NeurIPS 2019.
"""

from __future__ import annotations

import numpy as np

from .._validation import check_int, check_option
from ._core import NO, _Diagonal, make_layer

__all__ = ["Aggregate"]


def _identity(p):
    return p


def Aggregate(aggregate_axis=None, batch_axis=0, channel_axis=-1, to_dense=_identity, implementation="DENSE"):
    """Aggregate every vertex's predecessors over a graph given per call (graph neural networks).

    ``apply_fn(params, x, pattern=P)`` and ``kernel_fn(x1, x2, pattern=(P1, P2))`` take the
    graph of each input sample, as in neural-tangents (``pattern=(P1, P1)`` when ``x2`` is
    None; ``pattern=None`` / ``(None, None)``: no aggregation, the identity):

    * ``implementation="DENSE"``: ``P`` of shape ``(batch, X_i1, ..., X_iK, X_i1, ..., X_iK)``,
      ``P[n, i, j] = w`` an arc of weight ``w`` from vertex ``i`` (tail) to ``j`` (head) of
      sample ``n``; ``to_dense(P)`` is applied first (e.g. to decode a sparse format);
    * ``implementation="SPARSE"``: ``P`` an integer array ``(batch, n_edges, K, 2)`` (or
      ``(batch, n_edges, 2)`` for ``K = 1``) of (tail, head) vertex coordinates, each edge of
      weight 1 (repeats add up); an edge whose head has a negative coordinate is padding and
      ignored (as in neural-tangents, a tail of ``-1`` is the last vertex).

    The output of vertex ``j`` is ``sum_i P[i, j] x[i]`` (other axes, channels included,
    unchanged) and its covariance ``P1^T K P2`` over the aggregate axes.

    Parameters
    ----------
    aggregate_axis : int or tuple of int, optional
        The axes holding the vertices; default: every axis but the batch and channel axes.
    batch_axis, channel_axis : int, default=0, -1
    to_dense : callable, default=identity
        Decoder of ``pattern`` into the dense format (``"DENSE"`` only).
    implementation : {"DENSE", "SPARSE"}, default="DENSE"
        The format of ``pattern``. ntkit computes both through the dense adjacency (the
        kernel costs ``O(V^3)`` per pair of samples for ``V`` vertices either way);
        neural-tangents' ``"SPARSE"`` path uses segment sums instead, with the same values.

    Returns
    -------
    (init_fn, apply_fn, kernel_fn)

    References
    ----------
    S. S. Du, K. Hou, B. Póczos, R. Salakhutdinov, R. Wang, K. Xu, "Graph neural tangent kernel:
    fusing graph neural networks with graph kernels", NeurIPS 2019.

    Examples
    --------
    >>> import numpy as np
    >>> from ntkit import stax
    >>> _, apply_fn, kernel_fn = stax.Aggregate()
    >>> x = np.arange(4.0).reshape(1, 4, 1)       # 1 graph, 4 vertices, 1 feature
    >>> A = np.zeros((1, 4, 4))
    >>> A[0, [0, 1, 2], [1, 2, 3]] = 1.0          # a path 0 -> 1 -> 2 -> 3
    >>> apply_fn((), x, pattern=A)[0, :, 0]       # each vertex gets its predecessor
    Array([0., 0., 1., 2.], dtype=float32)
    >>> kernel_fn(x, None, "nngp", pattern=(A, A)).shape  # every pair of vertices
    (1, 1, 4, 4)
    """
    owner = "Aggregate"
    if aggregate_axis is not None:
        agg = (aggregate_axis,) if isinstance(aggregate_axis, (int, np.integer)) else tuple(aggregate_axis)
        aggregate_axis = tuple(check_int(a, "aggregate_axis", owner) for a in agg)
    batch_axis = check_int(batch_axis, "batch_axis", owner)
    channel_axis = check_int(channel_axis, "channel_axis", owner)
    if not callable(to_dense):
        raise TypeError(f"The 'to_dense' parameter of {owner} must be callable. Got {type(to_dense).__name__}.")
    impl = implementation.upper() if isinstance(implementation, str) else implementation
    impl = check_option(impl, "implementation", owner, ("DENSE", "SPARSE"))

    def axes(ndim):
        ba, ca = batch_axis % ndim, channel_axis % ndim
        if aggregate_axis is None:
            agg = tuple(i for i in range(ndim) if i not in (ba, ca))
        else:
            agg = tuple(sorted({a % ndim for a in aggregate_axis}))
            if ba in agg or ca in agg:
                raise ValueError(f"{owner}: aggregate_axis {aggregate_axis} must not include the batch axis ({ba}) "
                                 f"or the channel axis ({ca}).")
        return ba, ca, agg

    def adjacency(pattern, batch, sizes):
        """The dense ``(batch, V, V)`` adjacency (``V = prod(sizes)``) from either format."""
        import jax.numpy as jnp

        V = int(np.prod(sizes))
        K = len(sizes)
        if impl == "DENSE":
            P = jnp.asarray(to_dense(pattern))
            want = (batch,) + tuple(sizes) * 2
            if tuple(P.shape) != want:
                raise ValueError(f"{owner}: pattern must have shape (batch, *vertex_shape, *vertex_shape) = {want}; "
                                 f"found {tuple(P.shape)}.")
            return P.reshape((batch, V, V))
        P = jnp.asarray(pattern)
        if K == 1 and P.ndim == 3:
            P = P[:, :, None, :]
        if P.ndim != 4 or P.shape[0] != batch or P.shape[2] != K or P.shape[3] != 2:
            raise ValueError(f"{owner}: a SPARSE pattern must have shape (batch, n_edges, K, 2) = ({batch}, n_edges, "
                             f"{K}, 2) (or (batch, n_edges, 2) for K = 1); found {tuple(P.shape)}.")
        if not jnp.issubdtype(P.dtype, jnp.integer):
            raise TypeError(f"{owner}: a SPARSE pattern must hold integer vertex coordinates; got dtype {P.dtype}.")

        def ravel(c):  # (batch, n_edges, K) -> flat index, -1 where a coordinate is negative
            flat = jnp.zeros(c.shape[:2], P.dtype)
            for d, n in enumerate(sizes):
                flat = flat * n + jnp.mod(c[..., d], n)
            return jnp.where(jnp.all(c >= 0, axis=-1), flat, -1)

        tails, heads = ravel(P[..., 0]), ravel(P[..., 1])
        tails = jnp.where(tails < 0, V - 1, tails)  # neural-tangents gathers x[-1] for a negative tail
        heads = jnp.where(heads < 0, V, heads)  # out of range: dropped
        rows = jnp.broadcast_to(jnp.arange(batch)[:, None], tails.shape)
        return jnp.zeros((batch, V, V)).at[rows, tails, heads].add(1.0, mode="drop")

    def init_fn(rng, input_shape):
        return input_shape, ()

    def apply_fn(params, inputs, *, pattern=None, **kwargs):
        import jax
        import jax.numpy as jnp

        if pattern is None:
            return inputs
        ba, _, agg = axes(inputs.ndim)
        src = (ba,) + agg
        dst = tuple(range(len(src)))
        x = jnp.moveaxis(inputs, src, dst)
        sizes = x.shape[1:len(src)]
        P = adjacency(pattern, x.shape[0], sizes).astype(x.dtype)
        flat = x.reshape((x.shape[0], int(np.prod(sizes)), -1))
        out = jnp.einsum("nvr,nvw->nwr", flat, P, precision=jax.lax.Precision.HIGHEST)
        return jnp.moveaxis(out.reshape(x.shape), dst, src)

    def kernel(k, *, pattern=(None, None), **ctx):
        import jax.numpy as jnp

        if pattern is None:
            return k
        if not isinstance(pattern, (tuple, list)) or len(pattern) != 2:
            raise ValueError(f"{owner}: kernel_fn takes pattern=(pattern1, pattern2), one per batch of inputs "
                             "(pattern1 twice when x2 is None); got " + type(pattern).__name__ + ".")
        p1, p2 = pattern
        if p1 is None and p2 is None:
            return k
        if p1 is None or p2 is None:
            raise NotImplementedError(f"{owner}: exactly one of pattern1 / pattern2 None is not implemented (as in "
                                      "neural-tangents); pass (pattern1, pattern1) when x2 is None.")
        nd = len(k.shape1)
        ba, ca, agg = axes(nd)
        spatial = [i for i in range(nd) if i not in (ba, ca)]
        agg_sp = [spatial.index(a) for a in agg]
        rest_sp = [i for i in range(len(spatial)) if i not in agg_sp]
        sizes = tuple(k.shape1[a] for a in agg)
        S = len(spatial)
        V = int(np.prod(sizes))
        P1 = adjacency(p1, k.shape1[ba], sizes).astype(k.nngp.dtype)
        P2 = adjacency(p2, k.shape2[ba], sizes).astype(k.nngp.dtype)

        def agg_map(mat, bn, Pa, Pb):
            """``Pa^T mat Pb`` over the aggregate axes of a zipped covariance with ``bn`` batch axes."""
            if mat is None or mat.ndim == 0:
                return mat
            first = [bn + 2 * i for i in agg_sp] + [bn + 2 * i for i in rest_sp]
            second = [bn + 2 * i + 1 for i in agg_sp] + [bn + 2 * i + 1 for i in rest_sp]
            order = list(range(bn)) + first + second
            m = jnp.transpose(mat, order)
            rest = tuple(m.shape[bn + len(agg_sp):bn + S])
            m = m.reshape(m.shape[:bn] + (V,) + rest + (V,) + rest)
            r1 = "".join("cdef"[: len(rest)])
            r2 = "".join("ghkl"[: len(rest)])
            if bn == 2:
                out = jnp.einsum(f"aiI,abi{r1}j{r2},bjJ->abI{r1}J{r2}", Pa, m, Pb, optimize=True)
            else:
                out = jnp.einsum(f"aiI,ai{r1}j{r2},ajJ->aI{r1}J{r2}", Pa, m, Pb, optimize=True)
            out = out.reshape(mat.shape[:bn] + tuple(mat.shape[i] for i in order[bn:]))
            return jnp.transpose(out, np.argsort(order))

        bn = 1 if k.diagonal_batch else 2
        return k.replace(nngp=agg_map(k.nngp, 2, P1, P2), ntk=agg_map(k.ntk, 2, P1, P2),
                         cov1=agg_map(k.cov1, bn, P1, P1),
                         cov2=agg_map(k.cov2, bn, P2, P2))

    reqs = {"batch_axis": batch_axis, "channel_axis": channel_axis, "diagonal_spatial": _Diagonal(input=NO, output=NO)}
    return make_layer(owner, init_fn, apply_fn, kernel, lambda s: s, reqs,
                      key=(aggregate_axis, batch_axis, channel_axis, to_dense, impl))
