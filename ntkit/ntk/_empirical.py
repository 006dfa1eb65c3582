"""The empirical NTK family: full, trace, sum-of-logits, projected and diagonal kernels."""

from __future__ import annotations

import collections

import numpy as np

from .._config import _config, available_memory, resolve_budget
from .._validation import InvalidParameterError, is_jax_array
from ._checks import _check_params, _check_x, _compute_dtype, _jax, _key_data, _resolve_apply_fn, _select_params, _x64
from ._engine import _DIAGONAL_OF, _PROJECTED_KINDS, _PROJECTIONS, IMPLEMENTATIONS, KINDS, _engine

__all__ = ["empirical_ntk", "empirical_ntk_fn"]

# ----------------------------------------------------------------------------- public API


def empirical_ntk_fn(apply_fn, *, kind="full", normalize=None, n_projections=None, projection="gaussian",
                     projected_kind="trace", diagonal_of="full", batch_size=None, memory_budget=None,
                     implementation="auto", key=None, verbose=None, checkpoint=None):
    """A reusable empirical-NTK function ``ntk_fn(params, x1, x2=None)``.

    Takes the same keyword arguments as :func:`empirical_ntk`; the compiled pieces are
    cached per parameter structure and input shape, so repeated calls (new parameters
    during training, new inputs of the same shape) do not recompile.

    Examples
    --------
    >>> import jax
    >>> from ntkit.ntk import empirical_ntk_fn
    >>> from ntkit.ntk.models import mlp
    >>> init, apply = mlp((4, 16, 3))
    >>> params = init(jax.random.PRNGKey(0))
    >>> ntk_fn = empirical_ntk_fn(apply, kind="trace")
    >>> x = jax.random.normal(jax.random.PRNGKey(1), (5, 4))
    >>> ntk_fn(params, x).shape
    (5, 5)
    """
    apply_fn = _resolve_apply_fn(apply_fn)
    kind = _option(kind, "kind", KINDS)
    implementation = _option(implementation, "implementation", IMPLEMENTATIONS)
    projection = _option(projection, "projection", _PROJECTIONS)
    projected_kind = _option(projected_kind, "projected_kind", _PROJECTED_KINDS)
    diagonal_of = _option(diagonal_of, "diagonal_of", _DIAGONAL_OF)
    if normalize not in (None, "cosine"):
        raise InvalidParameterError(f"The 'normalize' parameter must be None or 'cosine'. Got {normalize!r} instead.")
    if normalize == "cosine" and kind in ("full", "diagonal"):
        raise InvalidParameterError(
            f"normalize='cosine' applies to scalar kernels (kind='trace', 'sum_logits' or 'projected'); got "
            f"kind={kind!r}.")
    if kind == "projected":
        if n_projections is None or isinstance(n_projections, bool) or not isinstance(n_projections, (int, np.integer)) \
                or n_projections < 1:
            raise InvalidParameterError(
                f"kind='projected' needs n_projections, a positive int (the sketch dimension); got {n_projections!r}.")
        if implementation == "ntk_vp":
            raise InvalidParameterError("kind='projected' sketches per-example gradients; use implementation="
                                        "'structured', 'jacobian' or 'auto', not 'ntk_vp'.")
    elif n_projections is not None:
        raise InvalidParameterError(f"n_projections is only used with kind='projected'; got kind={kind!r}.")
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer))
                                   or batch_size < 1):
        raise InvalidParameterError(f"batch_size must be a positive int or None; got {batch_size!r}.")
    key_data = _key_data(key) if kind == "projected" else None
    if kind == "sum_logits" or (kind == "projected" and projected_kind == "sum_logits") or \
            (kind == "diagonal" and diagonal_of == "sum_logits"):
        deriv = "sum"
    else:
        deriv = "eye"
    impl = "structured" if implementation == "auto" else implementation
    pair_kind = "full" if (kind == "full" or (kind == "diagonal" and diagonal_of == "full")) else "trace"
    kind_hint = "projected" if kind == "projected" else pair_kind

    def ntk_fn(params, x1, x2=None):
        fn, params = _select_params(apply_fn, params)
        paths, leaves, treedef = _check_params(params)
        x1 = _check_x(x1, "x1")
        if x2 is not None:
            if kind == "diagonal":
                raise ValueError("kind='diagonal' computes Θ(x, x) for x1 only; pass x2=None.")
            x2 = _check_x(x2, "x2", x1.shape[1:])
        dtype = _compute_dtype(leaves, [x for x in (x1, x2) if x is not None])
        with _x64(dtype):
            out = _compute(fn, treedef, leaves, x1, x2, dtype, deriv, impl, kind, kind_hint, pair_kind,
                           normalize, n_projections, projection, key_data, batch_size, memory_budget, verbose,
                           checkpoint)
            if is_jax_array(x1):  # jax in → jax out, on x1's device (tiles are assembled in host memory)
                jax, _ = _jax()
                from .._device import _array_device

                out = jax.device_put(np.asarray(out), _array_device(x1))
            return out

    ntk_fn.__doc__ = f"Empirical NTK (kind={kind!r}, implementation={implementation!r}) of apply_fn."
    return ntk_fn


def empirical_ntk(apply_fn, params, x1, x2=None, *, kind="full", normalize=None, n_projections=None,
                  projection="gaussian", projected_kind="trace", diagonal_of="full", batch_size=None,
                  memory_budget=None, implementation="auto", key=None, verbose=None, checkpoint=None):
    r"""Empirical neural tangent kernel of any JAX model.

    Parameters
    ----------
    apply_fn : callable
        ``apply_fn(params, x) -> (n, O)``: any JAX function of a parameter pytree (plain
        dicts/lists, flax ``variables["params"]``, equinox arrays after ``eqx.partition``).
        Examples must be independent (no batch statistics across the batch): the kernel is
        computed per example, like neural-tangents with ``vmap_axes=0``. A neural-tangents
        ``stax`` triple is accepted too.
    params : pytree of float arrays
        Every leaf is differentiated — except for flax-style ``variables`` (a mapping with a
        ``"params"`` collection beside others, e.g. ``"batch_stats"``): then only ``"params"`` is,
        the other collections are held fixed (they are state, not parameters).
    x1 : array (n, ...)
        numpy or jax; jax in gives a jax result on ``x1``'s device.
    x2 : array (m, ...), optional
        Defaults to ``x1``; then only the upper triangle of tiles is computed.
    kind : {"full", "trace", "sum_logits", "projected", "diagonal"}
        ``"full"`` → (n, m, O, O) with Θ_{oo'}(x, x') = ⟨∂f_o(x)/∂θ, ∂f_{o'}(x')/∂θ⟩;
        ``"trace"`` → (n, m), the **sum** Σ_o Θ_oo (neural-tangents' default is the mean);
        ``"sum_logits"`` → (n, m), the NTK of (1/√O) Σ_o f_o (the pseudo-NTK);
        ``"projected"`` → (n, m), inner products of per-example gradients sketched to
        ``n_projections`` dimensions (unbiased for the ``projected_kind`` kernel);
        ``"diagonal"`` → Θ(x, x) for x1 only: (n, O, O) or (n,) (see ``diagonal_of``).
    normalize : {None, "cosine"}
        ``"cosine"`` returns K(x, x') / sqrt(K(x, x) K(x', x')) for the scalar kinds.
    n_projections : int
        Sketch dimension k for ``kind="projected"``; the error decays like 1/√k.
    projection : {"gaussian", "rademacher"}
    projected_kind : {"trace", "sum_logits"}
        Which kernel the projected kernel estimates.
    diagonal_of : {"full", "trace", "sum_logits"}
        For ``kind="diagonal"``: (n, O, O) blocks, or the (n,) trace / pseudo-NTK diagonal.
    batch_size : int, optional
        Tile size over examples (the ragged last tile is padded, so batched and
        unbatched results agree). Default: as large as ``memory_budget`` allows.
    memory_budget : int or str, optional
        Workspace budget for factors and tiles (the output itself is not counted).
    implementation : {"auto", "structured", "jacobian", "ntk_vp"}
        ``"structured"`` factorises every weight used in a dense contraction or a
        convolution, read from the jaxpr (Θ_W = (A Aᵀ) ∘ (Δ Δᵀ)), and falls back to
        per-example Jacobians leaf by leaf where no rule applies. ``"jacobian"``
        contracts per-example Jacobians of all leaves (the reference). ``"ntk_vp"`` forms
        columns by NTK-vector products (a VJP then a JVP, one x2 example at a time), the
        least memory and the most compute. ``"auto"`` is ``"structured"``: per weight it picks
        factored or materialised by comparing S²(C + F·k) with C·F·k multiply-adds per pair of
        examples (S positions, C inputs, F outputs, k = O², O or 1 logit pairs); weights with
        more than 64 positions are always materialised.
    key : int or jax PRNG key
        Seed of the random projection (``kind="projected"``).
    verbose : bool, optional
        Progress bar over tiles.
    checkpoint : path of a directory, optional
        Every finished tile is written there atomically; a later call with the same model
        parameters, inputs and settings reads the finished tiles back and computes only the
        rest, so a run killed midway resumes where it stopped and returns the same array as
        an uninterrupted run. Fix ``batch_size`` (the tile size) to resume under another
        memory budget. Not used for ``kind="diagonal"`` (one pass over x1).

    Returns
    -------
    numpy.ndarray
        float64 when params or inputs are float64 (x64 is enabled for the computation),
        else float32.

    Examples
    --------
    >>> import jax
    >>> from ntkit.ntk import empirical_ntk
    >>> from ntkit.ntk.models import mlp
    >>> init, apply = mlp((4, 32, 2))
    >>> params = init(jax.random.PRNGKey(0))
    >>> x = jax.random.normal(jax.random.PRNGKey(1), (3, 4))
    >>> empirical_ntk(apply, params, x).shape
    (3, 3, 2, 2)
    >>> empirical_ntk(apply, params, x, kind="trace", normalize="cosine").diagonal().round(6)  # jax in, jax out
    Array([1., 1., 1.], dtype=float32)
    """
    return empirical_ntk_fn(apply_fn, kind=kind, normalize=normalize, n_projections=n_projections,
                            projection=projection, projected_kind=projected_kind, diagonal_of=diagonal_of,
                            batch_size=batch_size, memory_budget=memory_budget, implementation=implementation,
                            key=key, verbose=verbose, checkpoint=checkpoint)(params, x1, x2)


def _option(value, name, options):
    if value not in options:
        raise InvalidParameterError(f"The '{name}' parameter must be one of {options}. Got {value!r} instead.")
    return value


def _pad(x, b):
    n = x.shape[0]
    if n == b:
        return x
    reps = np.concatenate([np.arange(n), np.zeros(b - n, dtype=np.int64)])
    return x[reps]


def _tiles(n, b):
    return [(s, min(n, s + b)) for s in range(0, n, b)]


def _choose_batch(plan, n_total, itemsize, budget, batch_size):
    if batch_size is not None:
        return int(min(batch_size, n_total))
    per_ex = max(1, plan.per_example_bytes) * itemsize
    per_pair = max(1, plan.per_pair_units) * itemsize
    # two factor tiles + pair workspace (x3 for XLA temporaries) must fit in the budget
    b = n_total
    while b > 1 and 2 * b * per_ex * 2 + 3 * b * b * per_pair > budget:
        b = (b + 1) // 2
    return max(1, b)


def _compute(apply_fn, treedef, leaves, x1, x2, dtype, deriv, impl, kind, kind_hint, pair_kind, normalize,
             n_projections, projection, key_data, batch_size, memory_budget, verbose, checkpoint=None):
    jax, jnp = _jax()
    budget = resolve_budget(memory_budget)
    if verbose is None:
        verbose = bool(_config.get()["verbose"])
    leaves = [jnp.asarray(leaf, dtype=dtype) for leaf in leaves]
    xcast = (lambda x: jnp.asarray(x, dtype=dtype)) if np.dtype(x1.dtype).kind == "f" else jnp.asarray
    eng = _engine(apply_fn, treedef, leaves, x1, dtype, deriv, impl, kind_hint, n_projections, projection)
    kd = jnp.asarray(key_data if key_data is not None else np.zeros(2, np.uint32))
    plan = eng.plan()
    O = plan.n_out
    n1 = x1.shape[0]
    symmetric = x2 is None
    n2 = n1 if symmetric else x2.shape[0]
    itemsize = np.dtype(dtype).itemsize
    out_shape = _out_shape(kind, pair_kind, deriv, n1, n2, O)
    out_bytes = int(np.prod(out_shape, dtype=np.int64)) * itemsize
    if out_bytes > available_memory():
        raise MemoryError(
            f"the {kind} eNTK of shape {out_shape} needs {out_bytes / 2**30:.1f} GiB, more than the "
            f"{available_memory() / 2**30:.1f} GiB available; use kind='trace' or 'sum_logits', or fewer inputs.")
    b = _choose_batch(plan, max(n1, n2), itemsize, budget, batch_size)
    store = None
    if checkpoint is not None and kind != "diagonal":
        from .._checkpoint import CheckpointDir, fingerprint

        store = CheckpointDir(checkpoint, {
            "what": "empirical_ntk", "params": fingerprint(*[np.asarray(leaf) for leaf in leaves], str(treedef)),
            "x1": fingerprint(np.asarray(x1)), "x2": None if x2 is None else fingerprint(np.asarray(x2)),
            "settings": repr((kind, pair_kind, deriv, impl, n_projections, projection,
                              None if key_data is None else np.asarray(key_data).tolist(), np.dtype(dtype).str)),
            "tile": int(b)})

    if impl == "ntk_vp":
        return _compute_vp(eng, leaves, x1, x2, xcast, kind, pair_kind, deriv, normalize, b, out_shape, dtype,
                           verbose, store)

    factors = eng.factors_fn()
    cache: collections.OrderedDict = collections.OrderedDict()
    per_tile = max(1, plan.per_example_bytes) * itemsize * b
    max_cached = max(2, int(budget // (2 * per_tile)))

    def tile_factors(which, s, e):
        keyc = (which, s)
        if keyc in cache:
            cache.move_to_end(keyc)
            return cache[keyc]
        src = x1 if which == 1 else x2
        xs = xcast(_pad(np.asarray(src[s:e]) if not is_jax_array(src) else src[s:e], b))
        f = factors(leaves, xs, kd)
        cache[keyc] = f
        if len(cache) > max_cached:
            cache.popitem(last=False)
        return f

    if kind == "diagonal":
        diag = eng.diag_fn(pair_kind)
        out = np.empty(out_shape, dtype)
        for s, e in _tiles(n1, b):
            out[s:e] = np.asarray(diag(tile_factors(1, s, e)))[: e - s]
        return out

    pair = eng.pair_fn(pair_kind)
    t1 = _tiles(n1, b)
    t2 = t1 if symmetric else _tiles(n2, b)

    def block(i, j):
        (s1, e1), (s2, e2) = t1[i], t2[j]
        f1 = tile_factors(1, s1, e1)
        f2 = f1 if symmetric and i == j else tile_factors(1 if symmetric else 2, s2, e2)
        return pair(f1, f2)

    out = _fill_tiles(np.empty(out_shape, dtype), t1, t2, symmetric, block, verbose, "eNTK tiles", store)
    if normalize == "cosine":
        diag = eng.diag_fn("trace")
        d1 = np.concatenate([np.asarray(diag(tile_factors(1, s, e)))[: e - s] for s, e in t1])
        d2 = d1 if symmetric else np.concatenate(
            [np.asarray(diag(tile_factors(2, s, e)))[: e - s] for s, e in t2])
        out = _cosine(out, d1, d2, symmetric)
    return out


def _cosine(out, d1, d2, symmetric):
    if np.any(d1 <= 0) or np.any(d2 <= 0):
        raise ValueError("normalize='cosine' needs K(x, x) > 0 for every input, but some example has a zero "
                         "gradient (K(x, x) = 0); drop it or use normalize=None.")
    out = out / np.sqrt(d1)[:, None] / np.sqrt(d2)[None, :]
    if symmetric:
        np.fill_diagonal(out, 1.0)
    return out


def _out_shape(kind, pair_kind, deriv, n1, n2, O):
    if kind == "diagonal":
        return (n1, O, O) if pair_kind == "full" and deriv == "eye" else (n1,)
    if kind == "full":
        return (n1, n2, O, O)
    return (n1, n2)


def _fill_tiles(out, t1, t2, symmetric, block, verbose, desc, store=None):
    """Fill ``out`` tile by tile from ``block(i, j)`` (padded tiles are cropped); with ``symmetric``
    only tiles j >= i are computed and mirrored: Θ(x_j, x_i)_{ab} = Θ(x_i, x_j)_{ba}.
    With a checkpoint ``store``, finished tiles are read back and new ones written as they finish."""
    jobs = [(i, j) for i in range(len(t1)) for j in range(len(t2)) if not symmetric or j >= i]
    done = store.keys() if store is not None else ()
    bar = _progress(len(jobs), verbose, desc)
    for i, j in jobs:
        (s1, e1), (s2, e2) = t1[i], t2[j]
        if (i, j) in done:
            blk = store.load((i, j))
        else:
            blk = np.asarray(block(i, j))[: e1 - s1, : e2 - s2]
            if store is not None:
                store.save((i, j), blk)
        out[s1:e1, s2:e2] = blk
        if symmetric and j != i:
            out[s2:e2, s1:e1] = blk.transpose((1, 0, 3, 2) if blk.ndim == 4 else (1, 0))
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return out


def _progress(total, verbose, desc):
    if not verbose or total <= 1:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc)


def _compute_vp(eng, leaves, x1, x2, xcast, kind, pair_kind, deriv, normalize, b, out_shape, dtype, verbose,
                store=None):
    symmetric = x2 is None
    src2 = x1 if symmetric else x2
    n1, n2 = x1.shape[0], src2.shape[0]
    if kind == "diagonal":
        pair = eng.vp_pair_fn(pair_kind)
        out = np.empty(out_shape, dtype)
        for i in range(n1):
            blk = np.asarray(pair(leaves, xcast(x1[i:i + 1]), xcast(x1[i:i + 1])))
            out[i] = blk[0, 0]
        return out
    pair = eng.vp_pair_fn(pair_kind)
    t1, t2 = _tiles(n1, b), _tiles(n2, b)

    def block(i, j):
        (s1, e1), (s2, e2) = t1[i], t2[j]
        return pair(leaves, xcast(_pad(np.asarray(x1[s1:e1]), b)), xcast(_pad(np.asarray(src2[s2:e2]), b)))

    out = _fill_tiles(np.empty(out_shape, dtype), t1, t2, symmetric, block, verbose, "eNTK tiles (ntk_vp)",
                      store)
    if normalize == "cosine":
        d = np.array([np.asarray(pair(leaves, xcast(x1[i:i + 1]), xcast(x1[i:i + 1])))[0, 0] for i in range(n1)])
        d2 = d if symmetric else np.array(
            [np.asarray(pair(leaves, xcast(src2[i:i + 1]), xcast(src2[i:i + 1])))[0, 0] for i in range(n2)])
        out = _cosine(out, d, d2, symmetric)
    return out
