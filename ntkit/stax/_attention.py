"""Global self-attention: the infinite-attention NNGP / NTK of Hron et al. (2020).

For inputs with ``T`` positions (tokens, or all spatial positions of an image), one head
computes ``attention_mechanism(scale * Q(x) K(x)^T) V(x)`` and the heads are concatenated and
mixed by ``W_out``. As the number of heads and the widths go to infinity:

* ``linear_scaling=True`` (scale ``1 / n_chan_key``, query weights tied to the key weights):
  the attention weights converge to the deterministic ``G = attention_mechanism(QK_std *
  Sigma)``, ``Sigma`` each input's own position-position covariance (softmax over the second
  position), and the output covariance is ``OV_std**2 * G1 K G2^T + b_std**2`` (``G1``, ``G2`` the
  weights of the two inputs); the NTK adds ``2 OV_std**2 G1 K G2^T`` (the value and output
  weights). Every ``attention_mechanism`` has this closed form.
* ``linear_scaling=False`` (scale ``1 / sqrt(n_chan_key)``): the attention logits stay Gaussian;
  only ``"IDENTITY"`` has a closed form (products of Gaussian covariances), the others need a
  Gaussian integral of the softmax with no closed form, so their ``kernel_fn`` raises
  ``NotImplementedError`` (as in neural-tangents).

Positional embeddings (``pos_emb_type="SUM"`` or ``"CONCAT"``) add ``W_pos_emb_std**2 R`` to the
covariances that the keys and queries (and, with ``val_pos_emb``, the values) see, ``R`` the
identity or ``pos_emb_decay_fn`` of the ``pos_emb_p_norm``-th power of the distance between
positions; ``"CONCAT"`` weighs the two by their widths.

References
----------
J. Hron, Y. Bahri, J. Sohl-Dickstein, R. Novak, "Infinite attention: NNGP and NTK for deep
attention networks", ICML 2020.
"""

from __future__ import annotations

import numpy as np

from .._validation import check_int, check_scalar
from ._core import NO, _Diagonal, make_layer

__all__ = ["GlobalSelfAttention"]

_MECHANISMS = ("SOFTMAX", "IDENTITY", "ABS", "RELU")
_POS_EMB = ("NONE", "SUM", "CONCAT")


def _mechanism_fn(name):
    import jax
    import jax.numpy as jnp

    return {"SOFTMAX": lambda g: jax.nn.softmax(g, axis=-1), "IDENTITY": lambda g: g, "ABS": jnp.abs,
            "RELU": lambda g: jnp.maximum(g, 0.0)}[name]


def _pos_emb_cov(sizes, p_norm, decay_fn):
    """``R`` of shape ``(T, T)`` over the ``T = prod(sizes)`` positions in C order (a jax array)."""
    import jax.numpy as jnp

    if decay_fn is None:
        return jnp.eye(int(np.prod(sizes)))
    grids = np.meshgrid(*[np.arange(n) for n in sizes], indexing="ij")
    coords = np.stack([g.ravel() for g in grids], axis=-1).astype(float)
    dist = np.sum(np.abs(coords[:, None, :] - coords[None, :, :]) ** p_norm, axis=-1)
    return jnp.asarray(decay_fn(jnp.asarray(dist)))


def _flat(mat, batch_ndim, S):
    """Zipped spatial layout ``(batch..., H, H', W, W', ...)`` -> ``(batch..., T, T')``."""
    import jax.numpy as jnp

    if mat is None or mat.ndim == 0:
        return mat
    order = list(range(batch_ndim)) + [batch_ndim + 2 * i for i in range(S)] + \
        [batch_ndim + 2 * i + 1 for i in range(S)]
    m = jnp.transpose(mat, order)
    T = int(np.prod(m.shape[batch_ndim:batch_ndim + S]))
    return m.reshape(m.shape[:batch_ndim] + (T, T))


def _unflat(mat, batch_ndim, sizes):
    """Inverse of :func:`_flat`."""
    import jax.numpy as jnp

    if mat is None or mat.ndim == 0:
        return mat
    S = len(sizes)
    m = mat.reshape(mat.shape[:batch_ndim] + tuple(sizes) * 2)
    order = list(range(batch_ndim))
    for i in range(S):
        order += [batch_ndim + i, batch_ndim + S + i]
    return jnp.transpose(m, order)


def GlobalSelfAttention(n_chan_out, n_chan_key, n_chan_val, n_heads, linear_scaling=True, W_key_std=1.0,
                        W_value_std=1.0, W_query_std=1.0, W_out_std=1.0, b_std=None, attention_mechanism="SOFTMAX",
                        pos_emb_type="NONE", pos_emb_p_norm=2, pos_emb_decay_fn=None, n_chan_pos_emb=None,
                        W_pos_emb_std=1.0, val_pos_emb=False, batch_axis=0, channel_axis=-1):
    """Global scaled dot-product self-attention over all non-batch, non-channel positions.

    Same signature, defaults, parameters and finite network as neural-tangents'
    ``stax.GlobalSelfAttention``: ``init_fn`` returns ``(query, key, value, W_out, b, pos_emb)``
    (``query`` is None with ``linear_scaling``, the queries then use the key weights), and one
    head is ``attention_mechanism(QK_std / (n_in * n_chan_key**p) * (x Wq)(x Wk)^T) (x Wv)``
    with ``p = 1`` (linear scaling) or ``1/2``; the output is the concatenated heads times
    ``W_out`` scaled by ``OV_std / sqrt(n_chan_val * n_heads * n_in)``, plus ``b_std * b``
    (``QK_std = W_query_std * W_key_std``, ``OV_std = W_out_std * W_value_std``). The kernel
    is the limit of infinitely many heads and channels (see the module documentation).

    Parameters
    ----------
    n_chan_out, n_chan_key, n_chan_val, n_heads : int
        Widths of the finite layer (the kernel does not depend on them).
    linear_scaling : bool, default=True
        Scale the logits by ``1 / n_chan_key`` and tie queries to keys (a closed-form kernel
        for every mechanism); False scales by ``1 / sqrt(n_chan_key)`` (closed form for
        ``"IDENTITY"`` only).
    W_key_std, W_value_std, W_query_std, W_out_std : float, default=1.0
    b_std : float or None, default=None
    attention_mechanism : {"SOFTMAX", "IDENTITY", "ABS", "RELU"}, default="SOFTMAX"
        Applied to the logits; softmax normalises over the attended positions.
    pos_emb_type : {"NONE", "SUM", "CONCAT"}, default="NONE"
        Random positional embeddings added to or concatenated with the inputs.
    pos_emb_p_norm : float, default=2
    pos_emb_decay_fn : callable or None, default=None
        Covariance of the embeddings as a function of the ``p``-th power of the ``L_p``
        distance between positions; None: independent embeddings (identity covariance).
    n_chan_pos_emb : int or None, default=None
        Embedding width (None: the input width).
    W_pos_emb_std : float, default=1.0
    val_pos_emb : bool, default=False
        Whether the values see the embeddings too (else only keys and queries).
    batch_axis, channel_axis : int, default=0, -1

    Returns
    -------
    (init_fn, apply_fn, kernel_fn)

    Raises
    ------
    NotImplementedError
        From ``kernel_fn`` when ``linear_scaling=False`` and ``attention_mechanism`` is not
        ``"IDENTITY"``: the limit is a Gaussian expectation of the softmax (or abs / relu) of
        correlated logits with no closed form (neural-tangents raises there too).

    References
    ----------
    J. Hron, Y. Bahri, J. Sohl-Dickstein, R. Novak, "Infinite attention: NNGP and NTK for deep
    attention networks", ICML 2020.

    Examples
    --------
    >>> import jax, numpy as np
    >>> from ntkit import stax
    >>> init_fn, apply_fn, kernel_fn = stax.GlobalSelfAttention(16, 8, 8, n_heads=2)
    >>> x = np.random.default_rng(0).normal(size=(3, 5, 4))  # (n, tokens, channels)
    >>> _, params = init_fn(jax.random.PRNGKey(0), x.shape)
    >>> apply_fn(params, x).shape
    (3, 5, 16)
    >>> kernel_fn(x, None, "nngp").shape  # every pair of tokens
    (3, 3, 5, 5)
    """
    owner = "GlobalSelfAttention"
    n_chan_out = check_int(n_chan_out, "n_chan_out", owner, low=1)
    n_chan_key = check_int(n_chan_key, "n_chan_key", owner, low=1)
    n_chan_val = check_int(n_chan_val, "n_chan_val", owner, low=1)
    n_heads = check_int(n_heads, "n_heads", owner, low=1)
    if not isinstance(linear_scaling, (bool, np.bool_)):
        raise TypeError(f"The 'linear_scaling' parameter of {owner} must be a bool. Got {linear_scaling!r} instead.")
    linear_scaling = bool(linear_scaling)
    W_key_std, W_value_std, W_query_std, W_out_std, W_pos_emb_std = (
        check_scalar(v, n, owner) for v, n in ((W_key_std, "W_key_std"), (W_value_std, "W_value_std"),
                                               (W_query_std, "W_query_std"), (W_out_std, "W_out_std"),
                                               (W_pos_emb_std, "W_pos_emb_std")))
    b_std = None if b_std is None else check_scalar(b_std, "b_std", owner)
    mech = attention_mechanism.upper() if isinstance(attention_mechanism, str) else attention_mechanism
    if mech not in _MECHANISMS:
        raise ValueError(f"The 'attention_mechanism' parameter of {owner} must be one of {_MECHANISMS}. "
                         f"Got {attention_mechanism!r} instead.")
    pe_type = pos_emb_type.upper() if isinstance(pos_emb_type, str) else pos_emb_type
    if pe_type not in _POS_EMB:
        raise ValueError(f"The 'pos_emb_type' parameter of {owner} must be one of {_POS_EMB}. "
                         f"Got {pos_emb_type!r} instead.")
    pos_emb_p_norm = check_scalar(pos_emb_p_norm, "pos_emb_p_norm", owner, low=0, closed="neither")
    if pos_emb_decay_fn is not None and not callable(pos_emb_decay_fn):
        raise TypeError(f"The 'pos_emb_decay_fn' parameter of {owner} must be callable or None. "
                        f"Got {type(pos_emb_decay_fn).__name__}.")
    n_chan_pos_emb = None if n_chan_pos_emb is None else check_int(n_chan_pos_emb, "n_chan_pos_emb", owner, low=1)
    val_pos_emb = bool(val_pos_emb)
    batch_axis = check_int(batch_axis, "batch_axis", owner)
    channel_axis = check_int(channel_axis, "channel_axis", owner)
    QK_std = W_query_std * W_key_std
    OV_std = W_out_std * W_value_std

    def axes(ndim):
        ba, ca = batch_axis % ndim, channel_axis % ndim
        if ba == ca:
            raise ValueError(f"{owner}: batch_axis and channel_axis must differ; both are {ba}.")
        return ba, ca

    def shape_fn(shape):
        shape = tuple(shape)
        ca = channel_axis % len(shape)
        return shape[:ca] + (n_chan_out,) + shape[ca + 1:]

    def init_fn(rng, input_shape):
        import jax

        input_shape = tuple(input_shape)
        ba, ca = axes(len(input_shape))
        k_q, k_k, k_v, k_o, k_b, k_pe = jax.random.split(rng, 6)
        n_keys = n_vals = input_shape[ca]
        pos_emb = None
        if pe_type != "NONE":
            n_pe = input_shape[ca] if n_chan_pos_emb is None else n_chan_pos_emb
            pe_shape = list(input_shape)
            pe_shape[ca], pe_shape[ba] = n_pe, 1
            pos_emb = jax.random.normal(k_pe, tuple(pe_shape))
            if pe_type == "CONCAT":
                n_keys += n_pe
                n_vals += n_pe if val_pos_emb else 0
        key = jax.random.normal(k_k, (n_heads, n_keys, n_chan_key))
        val = jax.random.normal(k_v, (n_heads, n_vals, n_chan_val))
        W_out = jax.random.normal(k_o, (n_chan_val * n_heads, n_chan_out))
        b = None
        if b_std is not None:
            b_shape = [1] * len(input_shape)
            b_shape[ca] = n_chan_out
            b = jax.random.normal(k_b, tuple(b_shape))
        query = None if linear_scaling else jax.random.normal(k_q, (n_heads, n_keys, n_chan_key))
        return shape_fn(input_shape), (query, key, val, W_out, b, pos_emb)

    def apply_fn(params, inputs, **kwargs):
        import jax
        import jax.numpy as jnp

        query, key, val, W_out, b, pos_emb = params
        hi = jax.lax.Precision.HIGHEST
        ba, ca = axes(inputs.ndim)
        x = jnp.moveaxis(inputs, (ba, ca), (0, -1))  # (n, *spatial, C)
        n, sizes = x.shape[0], x.shape[1:-1]
        x = x.reshape((n, -1, x.shape[-1]))  # (n, T, C)
        x_val = x
        if pos_emb is not None:
            pe = jnp.moveaxis(pos_emb, (ba, ca), (0, -1))
            pe = pe.reshape((1, -1, pe.shape[-1]))
            if pos_emb_decay_fn is not None:
                L = jnp.linalg.cholesky(_pos_emb_cov(sizes, pos_emb_p_norm, pos_emb_decay_fn))
                pe = jnp.einsum("st,btc->bsc", jnp.asarray(L, pe.dtype), pe, precision=hi)
            pe = pe * W_pos_emb_std
            if pe_type == "SUM":
                x = x + pe
            else:
                x = jnp.concatenate([x, jnp.broadcast_to(pe, (n,) + pe.shape[1:])], axis=-1)
            if val_pos_emb:
                x_val = x
        keys = jnp.einsum("ntc,hck->hntk", x, key, precision=hi)
        queries = keys if linear_scaling else jnp.einsum("ntc,hck->hntk", x, query, precision=hi)
        values = jnp.einsum("ntc,hcv->hntv", x_val, val, precision=hi)
        logits = jnp.einsum("hnsk,hntk->hnst", queries, keys, precision=hi)
        logits = logits * (QK_std / (x.shape[-1] * n_chan_key ** (1.0 if linear_scaling else 0.5)))
        heads = jnp.einsum("hnst,hntv->nsvh", _mechanism_fn(mech)(logits), values, precision=hi)
        heads = heads.reshape(heads.shape[:2] + (-1,))
        out = jnp.einsum("nsv,vo->nso", heads, W_out, precision=hi)
        out = out * (OV_std / (n_chan_val * n_heads * x_val.shape[-1]) ** 0.5)
        out = jnp.moveaxis(out.reshape((n,) + tuple(sizes) + (n_chan_out,)), (0, -1), (ba, ca))
        return out if b is None else out + b_std * b

    def kernel(k, **ctx):
        import jax.numpy as jnp

        if not linear_scaling and mech != "IDENTITY":
            raise NotImplementedError(f"{owner} with linear_scaling=False has no closed-form kernel for "
                                      f"attention_mechanism={mech!r} (a Gaussian expectation of the mechanism of "
                                      "correlated logits); use linear_scaling=True or 'IDENTITY'.")
        S = len(k.shape1) - 2
        sizes = tuple(k.shape1[i] for i in range(len(k.shape1)) if i not in (k.batch_axis, k.channel_axis))
        bn_cov = 1 if k.diagonal_batch else 2
        flat = {name: _flat(getattr(k, name), 2 if name in ("nngp", "ntk") else bn_cov, S)
                for name in ("nngp", "ntk", "cov1", "cov2")}

        # positional-embedding mixtures: w_in * K + w_pe * R (R = None without embeddings)
        R = None
        w_in, w_pe = 1.0, W_pos_emb_std ** 2
        if pe_type != "NONE":
            R = jnp.asarray(_pos_emb_cov(sizes, pos_emb_p_norm, pos_emb_decay_fn), k.nngp.dtype)
            if pe_type == "CONCAT":
                c_in = k.shape1[k.channel_axis]
                c_pe = c_in if n_chan_pos_emb is None else n_chan_pos_emb
                w_in, w_pe = c_in / (c_in + c_pe), w_pe * c_pe / (c_in + c_pe)

        def mix(mat):
            if mat is None or R is None:
                return mat
            return w_in * mat + w_pe * R

        def affine(mat, std):
            if mat is None:
                return None
            mat = mat * std ** 2
            return mat if b_std is None else mat + b_std ** 2

        cov1_i, cov2_i = mix(flat["cov1"]), mix(flat["cov2"])
        nngp_i, ntk_i = mix(flat["nngp"]), mix(flat["ntk"])
        if ntk_i is not None and 0 < ntk_i.ndim < nngp_i.ndim:  # the inputs' NTK (0) plus the embeddings'
            ntk_i = jnp.broadcast_to(ntk_i, nngp_i.shape)

        if linear_scaling:
            fn = _mechanism_fn(mech)

            def weights(cov, diag_batch):
                if cov is None:
                    return None
                if not diag_batch:
                    cov = jnp.moveaxis(jnp.diagonal(cov, axis1=0, axis2=1), -1, 0)
                return fn(QK_std * cov)  # (n, T, T), softmax over the attended positions

            def weigh(mat, G1, G2, pair_batch):
                if mat is None or mat.ndim == 0 or G1 is None:
                    return mat
                if pair_batch:
                    return jnp.einsum("ais,abst,bjt->abij", G1, mat, G2, optimize=True)
                return jnp.einsum("ais,ast,ajt->aij", G1, mat, G1, optimize=True)

            G1 = weights(cov1_i, k.diagonal_batch)
            G2 = weights(cov2_i, k.diagonal_batch)
            val = (lambda name, interp: interp) if val_pos_emb else (lambda name, interp: flat[name])
            cov1 = affine(weigh(val("cov1", cov1_i), G1, G1, not k.diagonal_batch), OV_std)
            cov2 = affine(weigh(val("cov2", cov2_i), G2, G2, not k.diagonal_batch), OV_std)
            G2x = G1 if G2 is None else G2
            nngp_w = weigh(val("nngp", nngp_i), G1, G2x, True)
            nngp = affine(nngp_w, OV_std)
            ntk = None
            if k.ntk is not None:
                ntk = affine(weigh(val("ntk", ntk_i), G1, G2x, True), OV_std) + 2 * OV_std ** 2 * nngp_w
        else:  # IDENTITY, square-root scaling
            def dot(lhs, rhs, pair_batch):
                if lhs is None:
                    return None
                bn = 2 if pair_batch else 1
                rhs = lhs if rhs is None else jnp.broadcast_to(rhs, lhs.shape)
                return jnp.sum(lhs * rhs, axis=tuple(range(bn, lhs.ndim)), keepdims=True)

            pb = not k.diagonal_batch
            dot11 = dot(cov1_i, None if val_pos_emb else flat["cov1"], pb)
            dot12 = dot(nngp_i, None if val_pos_emb else flat["nngp"], True)
            dot22 = dot(cov2_i, None if val_pos_emb else flat["cov2"], pb)
            std = QK_std * OV_std
            nngp = affine(dot12 * nngp_i, std)
            cov1 = affine(dot11 * cov1_i, std)
            cov2 = None if dot22 is None else affine(dot22 * cov2_i, std)
            ntk = None
            if ntk_i is not None:
                ntk_b = jnp.broadcast_to(ntk_i, nngp_i.shape)
                if val_pos_emb or R is None:
                    t = 2 * dot(nngp_i, ntk_b, True)
                else:
                    t = dot(nngp_i, jnp.broadcast_to(flat["ntk"], nngp_i.shape), True) + \
                        dot(flat["nngp"], ntk_b, True)
                ntk = affine(t * nngp_i + dot12 * (ntk_b + 4 * nngp_i), std)

        def back(mat, bn):
            return _unflat(mat, bn, sizes)

        return k.replace(nngp=back(nngp, 2), ntk=None if ntk is None else back(ntk, 2), cov1=back(cov1, bn_cov),
                         cov2=back(cov2, bn_cov), is_gaussian=True, is_input=False)

    reqs = {"batch_axis": batch_axis, "channel_axis": channel_axis, "diagonal_spatial": _Diagonal(input=NO)}
    key = (n_chan_out, n_chan_key, n_chan_val, n_heads, linear_scaling, W_key_std, W_value_std, W_query_std,
           W_out_std, b_std, mech, pe_type, pos_emb_p_norm, pos_emb_decay_fn, n_chan_pos_emb, W_pos_emb_std,
           val_pos_emb, batch_axis, channel_axis)
    return make_layer(owner, init_fn, apply_fn, kernel, shape_fn, reqs, key=key)
