"""The empirical NTK family: full, trace, sum-of-logits, projected and diagonal kernels."""

from __future__ import annotations

import collections
import contextlib
import math
import threading
from typing import Any, NamedTuple

import numpy as np

from .._config import _config, available_memory, resolve_budget
from .._validation import InvalidParameterError, is_jax_array

__all__ = ["empirical_ntk", "empirical_ntk_fn", "structure_report", "StructureReport"]

KINDS = ("full", "trace", "sum_logits", "projected", "diagonal")
IMPLEMENTATIONS = ("auto", "structured", "jacobian", "ntk_vp")
_PROJECTIONS = ("gaussian", "rademacher")
_PROJECTED_KINDS = ("trace", "sum_logits")
_DIAGONAL_OF = ("full", "trace", "sum_logits")
#: Largest number of positions for which a weight-sharing (convolution-like) use is
#: contracted in factored form; above it the per-example weight gradient is formed.
_MAX_FACTORED_POSITIONS = 64
#: Tests set this to contract every structured use in factored form (exercises the S > 1 path).
_FORCE_FACTORED = False
#: Random-projection matrices are generated in chunks of at most this many entries.
_PROJECTION_CHUNK = 1 << 22


def _jax():
    import jax
    import jax.numpy as jnp

    return jax, jnp


# ----------------------------------------------------------------------------- checks


def _leaf_paths(params):
    jax, _ = _jax()
    flat, treedef = jax.tree_util.tree_flatten_with_path(params)
    paths = ["/".join(str(getattr(k, "key", getattr(k, "idx", getattr(k, "name", k)))) for k in path) or "<root>"
             for path, _ in flat]
    return paths, [leaf for _, leaf in flat], treedef


def _check_params(params):
    """Flatten ``params``; every leaf must be a finite float array."""
    paths, leaves, treedef = _leaf_paths(params)
    if not leaves:
        raise ValueError("params has no array leaves: there is nothing to differentiate.")
    out = []
    for path, leaf in zip(paths, leaves):
        if not hasattr(leaf, "dtype"):
            if isinstance(leaf, (float, int)) and not isinstance(leaf, bool):
                leaf = np.asarray(leaf, dtype=np.float32 if isinstance(leaf, float) else np.int64)
            else:
                raise TypeError(
                    f"params leaf '{path}' is a {type(leaf).__name__}, not an array; keep only arrays in the "
                    "parameter pytree and close over everything else in apply_fn.")
        dt = np.dtype(leaf.dtype)
        if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise TypeError(
                f"params leaf '{path}' has dtype {dt}; the empirical NTK differentiates every leaf of params, so "
                "each must be float32 or float64. Close over integer buffers (or batch statistics) in apply_fn "
                "instead of passing them in params.")
        if leaf.size and not bool(np.isfinite(np.asarray(leaf)).all()):
            raise ValueError(f"params leaf '{path}' contains NaN or infinity; the NTK of such a network is undefined.")
        out.append(leaf)
    return paths, out, treedef


def _check_x(x, name, feature_shape=None):
    if x is None:
        raise ValueError(f"{name} is required; got None.")
    if not is_jax_array(x):
        if not hasattr(x, "shape") or not hasattr(x, "dtype"):
            try:
                x = np.asarray(x)
            except Exception:  # noqa: BLE001 - any conversion failure is the caller's input
                raise TypeError(f"{name} must be an array; got {type(x).__name__}.") from None
        x = np.asarray(x)
        if not x.dtype.isnative:  # byte order is storage, not type: jax rejects e.g. '>f4'
            x = x.astype(x.dtype.newbyteorder("="))
    if x.ndim < 1:
        raise ValueError(f"{name} must have a leading batch dimension (n, ...); got a scalar.")
    if x.shape[0] == 0:
        raise ValueError(f"{name} has no rows (shape {tuple(x.shape)}); pass at least one example.")
    dt = np.dtype(x.dtype)
    if dt.kind not in "fiub" or dt == np.float16:
        raise TypeError(f"{name} must be a float32/float64 (or integer) array; got dtype {dt}.")
    if dt.kind == "f" and not bool(np.isfinite(np.asarray(x)).all()):
        raise ValueError(f"{name} contains NaN or infinity; remove or impute those entries first.")
    if feature_shape is not None and tuple(x.shape[1:]) != tuple(feature_shape):
        raise ValueError(
            f"x1 and x2 must have the same per-example shape; got x1 examples of shape {tuple(feature_shape)} and "
            f"{name} examples of shape {tuple(x.shape[1:])}.")
    return x


def _compute_dtype(leaves, xs):
    dts = [np.dtype(leaf.dtype) for leaf in leaves] + [np.dtype(x.dtype) for x in xs if np.dtype(x.dtype).kind == "f"]
    return np.dtype(np.float64) if any(d == np.float64 for d in dts) else np.dtype(np.float32)


@contextlib.contextmanager
def _x64(dtype):
    jax, _ = _jax()
    if np.dtype(dtype) == np.float64 and not jax.config.jax_enable_x64:
        with jax.enable_x64(True):
            yield
    else:
        yield


# ----------------------------------------------------------------------------- the engine


class StructureReport(NamedTuple):
    """What the ``structured`` implementation found in a model (see :func:`structure_report`)."""

    n_params: int
    factored: dict  # leaf path -> (op, positions S, inputs C, outputs F), or ("bias", "merged into W")
    materialized: dict  # leaf path -> reason

    def __str__(self):
        lines = [f"{self.n_params} parameters; {len(self.factored)} leaves factored, "
                 f"{len(self.materialized)} through per-example Jacobians"]
        for k, v in self.factored.items():
            lines.append(f"  factored      {k}: " + (f"{v[0]} S={v[1]} C={v[2]} F={v[3]}" if len(v) == 4 else v[1]))
        for k, v in self.materialized.items():
            lines.append(f"  materialized  {k}: {v}")
        return "\n".join(lines)


class _Plan(NamedTuple):
    closed: Any
    uses: tuple  # structured uses (all enabled uses)
    factored: frozenset  # uids contracted in factored form
    jac_leaves: tuple  # leaf indices differentiated directly
    n_out: int
    per_example_bytes: int  # factor bytes per example (itemsize 1)
    per_pair_units: int  # pair workspace entries per (i, j)


def _per_example_fn(apply_fn, treedef):
    jax, _ = _jax()

    def g(leaves, x):
        params = jax.tree_util.tree_unflatten(treedef, leaves)
        return apply_fn(params, x[None])[0]

    return g


class _Engine:
    """Compiled pieces for one (model, parameter structure, input shape, mode)."""

    def __init__(self, apply_fn, treedef, leaf_avals, x_aval, dtype, deriv, implementation, kind_hint,
                 n_projections, projection):
        self.apply_fn = apply_fn
        self.treedef = treedef
        self.leaf_avals = leaf_avals
        self.x_aval = x_aval
        self.dtype = np.dtype(dtype)
        self.deriv = deriv  # "eye" (all logits) or "sum" (pseudo-NTK)
        self.implementation = implementation
        self.kind_hint = kind_hint
        self.n_projections = n_projections
        self.projection = projection
        self.g = _per_example_fn(apply_fn, treedef)
        self._plan = None
        self._factors = None
        self._pairs = {}
        self._diags = {}
        self._vp = {}
        self.lock = threading.Lock()

    # -- analysis --------------------------------------------------------------
    def plan(self):
        if self._plan is None:
            jax, jnp = _jax()
            from ._structure import analyze

            leaves = [jax.ShapeDtypeStruct(s, d) for s, d in self.leaf_avals]
            x = jax.ShapeDtypeStruct(*self.x_aval)
            try:
                out = jax.eval_shape(self.g, leaves, x)
            except Exception as exc:  # noqa: BLE001 - the examples do not fit the network: the caller's input
                raise ValueError(
                    f"apply_fn(params, x) failed on examples of shape {tuple(self.x_aval[0])} (the rows of x, x1, "
                    f"x2): {exc}. Check that params belong to apply_fn and that the examples have the network's "
                    "input shape.") from None
            if len(out.shape) != 1:
                raise ValueError(
                    f"apply_fn(params, x) must return an array of shape (n, O) (one row of logits per example); "
                    f"for a batch of one it returned shape {(1,) + tuple(out.shape)}. Reshape scalar outputs to (n, 1), "
                    f"and check that the examples (rows of x1, x2) have the network's input shape; here they have "
                    f"shape {tuple(self.x_aval[0])}.")
            n_out = int(out.shape[0])
            if self.implementation == "structured":
                uses, closed = analyze(self.g, [jnp.zeros(s, d) for s, d in self.leaf_avals],
                                       jnp.zeros(*self.x_aval))
            else:
                uses, closed = [], None
            struct_leaves = {u.leaf for u in uses} | {u.bias for u in uses if u.bias >= 0}
            jac_leaves = tuple(i for i in range(len(self.leaf_avals)) if i not in struct_leaves)
            O = 1 if self.deriv == "sum" else n_out
            k_pair = {"full": O * O, "trace": O}.get(self.kind_hint, O)
            factored = set()
            per_ex = 0
            pair_units = 0
            mat_p = sum(int(np.prod(self.leaf_avals[i][0], dtype=np.int64)) for i in jac_leaves)
            for u in uses:
                fact_cost = u.S * u.S * (u.C + u.F * k_pair)
                mat_cost = u.C * u.F * k_pair
                if u.S == 1 or _FORCE_FACTORED or (u.S <= _MAX_FACTORED_POSITIONS and fact_cost < mat_cost):
                    factored.add(u.uid)
                    per_ex += u.S * u.C + O * u.S * u.F
                    pair_units = max(pair_units, u.S * u.S * (k_pair + 1))
                else:
                    mat_p += u.C * u.F
            if self.kind_hint == "projected":
                per_ex = O * int(self.n_projections) + O * (mat_p + sum(u.C * u.F for u in uses))
            else:
                per_ex += O * mat_p
            pair_units += 2 * k_pair
            self._plan = _Plan(closed, tuple(uses), frozenset(factored), jac_leaves, n_out, per_ex, pair_units)
        return self._plan

    # -- per-example factors ---------------------------------------------------
    def factors_fn(self):
        if self._factors is None:
            jax, jnp = _jax()
            plan = self.plan()
            g = self.g
            deriv = self.deriv
            O = plan.n_out
            enabled = {u.uid: u for u in plan.uses}
            projected = self.kind_hint == "projected"

            def cotangents(dtype):
                if deriv == "sum":
                    return jnp.full((1, O), 1.0 / math.sqrt(O), dtype)
                return jnp.eye(O, dtype=dtype)

            def per_example_struct(leaves, x):
                from ._structure import run_with_probes

                jac_idx = plan.jac_leaves

                def F(jl, probes):
                    full = list(leaves)
                    for k, i in enumerate(jac_idx):
                        full[i] = jl[k]
                    outs, rec = run_with_probes(plan.closed, full, x, enabled, probes)
                    return outs[0], rec

                probes = {u.uid: jnp.zeros(u.out_shape, self.dtype) for u in plan.uses}
                jl = [leaves[i] for i in jac_idx]
                f, vjp_fn, rec = jax.vjp(F, jl, probes, has_aux=True)
                gj, gp = jax.vmap(vjp_fn)(cotangents(f.dtype))
                Jparts = [a.reshape(a.shape[0], -1) for a in gj]
                A, D = [], []
                for u in plan.uses:
                    from ._structure import _delta_perm

                    d = gp[u.uid]  # (O', *out_shape)
                    d = jnp.transpose(d, (0,) + tuple(1 + p for p in _delta_perm(u))).reshape(d.shape[0], u.S, u.F)
                    a = rec[u.uid]
                    if u.uid in plan.factored and not projected:
                        A.append(a)
                        D.append(d)
                    else:
                        Jparts.append(jnp.einsum("sc,osf->ocf", a, d, precision=jax.lax.Precision.HIGHEST)
                                      .reshape(d.shape[0], -1))
                return A, D, Jparts

            def per_example_jac(leaves, x):
                f, vjp_fn = jax.vjp(lambda lv: g(lv, x), list(leaves))
                (gl,) = jax.vmap(vjp_fn)(cotangents(f.dtype))
                return [], [], [a.reshape(a.shape[0], -1) for a in gl]

            per_example = per_example_struct if self.implementation == "structured" else per_example_jac

            def factors(leaves, xs, key_data):
                A, D, J = jax.vmap(per_example, in_axes=(None, 0))(leaves, xs)
                J = jnp.concatenate(J, axis=-1) if J else jnp.zeros((xs.shape[0], 1 if deriv == "sum" else O, 0),
                                                                   self.dtype)
                if projected:
                    J = self._project(J, key_data)
                return {"A": A, "D": D, "J": J}

            self._factors = jax.jit(factors)
        return self._factors

    def _project(self, J, key_data):
        """Sketch per-example gradients J (b, O', P) to (b, O', k) with the JL matrix of ``key_data``."""
        jax, jnp = _jax()
        k = int(self.n_projections)
        P = J.shape[-1]
        key = jax.random.wrap_key_data(key_data)
        rows = max(1, _PROJECTION_CHUNK // k)
        out = jnp.zeros(J.shape[:-1] + (k,), J.dtype)
        for c, start in enumerate(range(0, P, rows)):
            stop = min(P, start + rows)
            kc = jax.random.fold_in(key, c)
            if self.projection == "gaussian":
                R = jax.random.normal(kc, (stop - start, k), J.dtype)
            else:
                R = jax.random.rademacher(kc, (stop - start, k), J.dtype)
            out = out + jnp.einsum("bop,pk->bok", J[..., start:stop], R, precision=jax.lax.Precision.HIGHEST)
        return out / math.sqrt(k)

    # -- pair kernels -----------------------------------------------------------
    def pair_fn(self, kind):
        """kind: 'full' (b1, b2, O, O) or 'trace' (b1, b2): trace over the derivative logits."""
        if kind not in self._pairs:
            jax, jnp = _jax()
            from ..ops._backends._jax import batched_gram

            def gram_stack(X1, X2):  # (k, n, p) (k, m, p) -> (n, m) summed
                return batched_gram(X1, X2, "sum")

            def pair(f1, f2):
                J1, J2 = f1["J"], f2["J"]
                n, m, O = J1.shape[0], J2.shape[0], J1.shape[1]
                if kind == "full":
                    out = batched_gram(J1.reshape(1, n * O, -1), J2.reshape(1, m * O, -1), "sum")
                    out = out.reshape(n, O, m, O).transpose(0, 2, 1, 3)
                else:  # Σ_o J1_o J2_oᵀ is one product over the flattened (logit, parameter) axis
                    out = batched_gram(J1.reshape(1, n, -1), J2.reshape(1, m, -1), "sum")
                for A1, A2, D1, D2 in zip(f1["A"], f2["A"], f1["D"], f2["D"]):
                    S = A1.shape[1]
                    if S == 1:
                        GA = gram_stack(A1.transpose(1, 0, 2), A2.transpose(1, 0, 2))
                        if kind == "full":
                            GD = batched_gram(D1.reshape(1, n * O, -1), D2.reshape(1, m * O, -1), "sum")
                            out = out + GA[:, :, None, None] * GD.reshape(n, O, m, O).transpose(0, 2, 1, 3)
                        else:
                            out = out + GA * batched_gram(D1.reshape(1, n, -1), D2.reshape(1, m, -1), "sum")
                    else:
                        GA = batched_gram(A1.reshape(1, n * S, -1), A2.reshape(1, m * S, -1), "sum").reshape(n, S, m, S)
                        if kind == "full":
                            GD = batched_gram(D1.reshape(1, n * O * S, -1), D2.reshape(1, m * O * S, -1), "sum")
                            GD = GD.reshape(n, O, S, m, O, S)
                            out = out + jnp.einsum("nsmt,nasmbt->nmab", GA, GD, precision=jax.lax.Precision.HIGHEST)
                        else:
                            Dt1 = D1.transpose(1, 0, 2, 3).reshape(O, n * S, -1)
                            Dt2 = D2.transpose(1, 0, 2, 3).reshape(O, m * S, -1)
                            GD = gram_stack(Dt1, Dt2).reshape(n, S, m, S)
                            out = out + jnp.einsum("nsmt,nsmt->nm", GA, GD, precision=jax.lax.Precision.HIGHEST)
                return out

            self._pairs[kind] = jax.jit(pair)
        return self._pairs[kind]

    def diag_fn(self, kind):
        """Per-example Θ(x, x): (b, O, O) for 'full', (b,) for 'trace'."""
        if kind not in self._diags:
            jax, jnp = _jax()
            hp = jax.lax.Precision.HIGHEST

            def diag(f):
                J = f["J"]
                if kind == "full":
                    out = jnp.einsum("nap,nbp->nab", J, J, precision=hp)
                else:
                    out = jnp.einsum("nap,nap->n", J, J, precision=hp)
                for A, D in zip(f["A"], f["D"]):
                    GA = jnp.einsum("nsc,ntc->nst", A, A, precision=hp)
                    if kind == "full":
                        out = out + jnp.einsum("nst,nasf,nbtf->nab", GA, D, D, precision=hp)
                    else:
                        out = out + jnp.einsum("nst,nasf,natf->n", GA, D, D, precision=hp)
                return out

            self._diags[kind] = jax.jit(diag)
        return self._diags[kind]

    # -- NTK-vector products ------------------------------------------------------
    def vp_pair_fn(self, kind):
        """Θ(x1, x2) from NTK-vector products, one x2 example at a time (no Jacobian stored)."""
        if kind not in self._vp:
            jax, jnp = _jax()
            g = self.g
            deriv = self.deriv
            n_out = self.plan().n_out

            def pair(leaves, x1, x2):
                f1 = jax.vmap(g, in_axes=(None, 0))

                def one(xj):
                    fj, vjp_fn = jax.vjp(lambda lv: g(lv, xj), list(leaves))
                    cts = jnp.full((1, n_out), 1.0 / math.sqrt(n_out), fj.dtype) if deriv == "sum" \
                        else jnp.eye(n_out, dtype=fj.dtype)
                    (vecs,) = jax.vmap(vjp_fn)(cts)  # (O', leaves...)

                    def jvp_one(v):
                        return jax.jvp(lambda lv: f1(lv, x1), (list(leaves),), (v,))[1]  # (n, O)

                    cols = jax.vmap(jvp_one)(vecs)  # (O', n, O)
                    if deriv == "sum":
                        return cols[0].sum(axis=1) / math.sqrt(n_out)  # (n,)
                    if kind == "full":
                        return cols.transpose(1, 2, 0)  # (n, O, O')
                    return jnp.einsum("ono->n", cols)

                res = jax.lax.map(one, x2)  # (m, n, ...)
                if deriv == "sum" or kind != "full":
                    return res.T
                return res.transpose(1, 0, 2, 3)

            self._vp[kind] = jax.jit(pair)
        return self._vp[kind]


def emp_force():
    return _FORCE_FACTORED


_ENGINES: collections.OrderedDict = collections.OrderedDict()
_ENGINE_LOCK = threading.Lock()
_MAX_ENGINES = 32


def _engine(apply_fn, treedef, leaves, x, dtype, deriv, implementation, kind_hint, n_projections, projection):
    leaf_avals = tuple((tuple(leaf.shape), np.dtype(dtype)) for leaf in leaves)
    x_dtype = np.dtype(dtype) if np.dtype(x.dtype).kind == "f" else np.dtype(x.dtype)
    x_aval = (tuple(x.shape[1:]), x_dtype)
    k = (apply_fn, treedef, leaf_avals, x_aval, np.dtype(dtype).str, deriv, implementation, kind_hint,
         n_projections, projection, emp_force())
    try:
        hash(k)
    except TypeError:
        return _Engine(apply_fn, treedef, leaf_avals, x_aval, dtype, deriv, implementation, kind_hint,
                       n_projections, projection)
    with _ENGINE_LOCK:
        eng = _ENGINES.get(k)
        if eng is None:
            eng = _Engine(apply_fn, treedef, leaf_avals, x_aval, dtype, deriv, implementation, kind_hint,
                          n_projections, projection)
            _ENGINES[k] = eng
            if len(_ENGINES) > _MAX_ENGINES:
                _ENGINES.popitem(last=False)
        else:
            _ENGINES.move_to_end(k)
    return eng


# ----------------------------------------------------------------------------- public API


_SELECT_CACHE: "collections.OrderedDict" = collections.OrderedDict()
_SELECT_LOCK = threading.Lock()


def _select_params(apply_fn, params):
    """Flax-style ``variables`` (a mapping with a ``"params"`` collection beside others such as
    ``"batch_stats"``): differentiate the ``"params"`` collection only, holding the others fixed,
    as the network's tangent kernel is defined. Returns ``(apply_fn, params)`` unchanged otherwise.

    The wrapper closes over the other collections; it is cached on their identity (16 entries), so
    repeated calls with the same variables reuse the compiled kernel."""
    from collections.abc import Mapping

    if not (isinstance(params, Mapping) and "params" in params and len(params) > 1):
        return apply_fn, params
    frozen = {k: v for k, v in params.items() if k != "params"}
    jax, _ = _jax()
    key = (id(apply_fn), tuple(sorted((k, id(v)) for k, v in frozen.items())))
    with _SELECT_LOCK:
        hit = _SELECT_CACHE.get(key)
        if hit is not None and hit[1] is apply_fn and all(hit[2][k] is v for k, v in frozen.items()):
            _SELECT_CACHE.move_to_end(key)
            return hit[0], params["params"]

        def params_only(p, x):
            return apply_fn({**frozen, "params": p}, x)

        _SELECT_CACHE[key] = (params_only, apply_fn, frozen)
        while len(_SELECT_CACHE) > 16:
            _SELECT_CACHE.popitem(last=False)
    return params_only, params["params"]


def _resolve_apply_fn(apply_fn):
    if isinstance(apply_fn, tuple) and len(apply_fn) == 3 and all(callable(f) for f in apply_fn):
        return apply_fn[1]  # a neural-tangents stax triple (init_fn, apply_fn, kernel_fn)
    if not callable(apply_fn):
        raise TypeError(
            f"apply_fn must be a callable apply_fn(params, x) -> (n, O) (or a neural-tangents stax triple); got "
            f"{type(apply_fn).__name__}.")
    return apply_fn


def _key_data(key):
    jax, jnp = _jax()
    if key is None:
        key = 0
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        key = jax.random.key(int(key))
    try:
        if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
            return np.asarray(jax.random.key_data(key))
        raw = np.asarray(key)
        if raw.dtype == np.uint32 and raw.shape == (2,):
            return raw
    except AttributeError:
        pass
    raise TypeError(f"key must be an int seed or a jax PRNG key; got {key!r}.")


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


def struct_uid_factored(plan, weight_path, paths, struct):
    leaf = paths.index(weight_path)
    return struct[leaf].uid in plan.factored


def structure_report(apply_fn, params, x):
    """Which parameter leaves the ``structured`` implementation factorises, and why not the others.

    Examples
    --------
    >>> import jax
    >>> from ntkit.ntk import structure_report
    >>> from ntkit.ntk.models import mlp
    >>> init, apply = mlp((4, 8, 2))
    >>> rep = structure_report(apply, init(jax.random.PRNGKey(0)), jax.numpy.ones((1, 4)))
    >>> sorted(rep.factored)
    ['0/W', '0/b', '1/W', '1/b']
    """
    apply_fn = _resolve_apply_fn(apply_fn)
    paths, leaves, treedef = _check_params(params)
    x = _check_x(x, "x")
    dtype = _compute_dtype(leaves, [x])
    with _x64(dtype):
        eng = _engine(apply_fn, treedef, leaves, x, dtype, "eye", "structured", "trace", None, "gaussian")
        plan = eng.plan()
    factored, materialized = {}, {}
    struct = {}
    for u in plan.uses:
        struct[u.leaf] = u
    merged = {u.bias: paths[u.leaf] for u in plan.uses if u.bias >= 0}
    for i, path in enumerate(paths):
        if i in merged:
            (factored if struct_uid_factored(plan, merged[i], paths, struct) else materialized)[path] = \
                ("bias", f"merged into {merged[i]}") if struct_uid_factored(plan, merged[i], paths, struct) \
                else f"bias merged into {merged[i]}"
        elif i in struct:
            u = struct[i]
            if u.uid in plan.factored:
                factored[path] = (u.op, u.S, u.C, u.F)
            else:
                materialized[path] = f"{u.op} with {u.S} positions: forming its gradient is cheaper"
        else:
            materialized[path] = "not the weight of a single dense/conv contraction (bias, scale, shared weight...)"
    n_params = int(sum(int(np.prod(leaf.shape, dtype=np.int64)) for leaf in leaves))
    return StructureReport(n_params, factored, materialized)
