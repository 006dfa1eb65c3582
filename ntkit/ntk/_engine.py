"""The empirical-NTK engine: per-layer structure read from the jaxpr, the three implementations
(structured factorisation, Jacobian contraction, NTK-vector products), a cache of compiled engines, and
:func:`structure_report`.
"""

from __future__ import annotations

import collections
import math
import threading
from typing import Any, NamedTuple

import numpy as np

from ._checks import _check_params, _check_x, _compute_dtype, _jax, _resolve_apply_fn, _x64

__all__ = ["structure_report", "StructureReport"]

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
