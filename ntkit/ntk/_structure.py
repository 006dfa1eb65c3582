"""Find and exploit the layer structure of a JAX model, read from its jaxpr.

For a parameter ``W`` used once, as one operand of a contraction ``out = a · W``
(``dot_general``) or as the kernel of a convolution, the Jacobian of logit ``o`` with
respect to ``W`` for one example is ``sum_s a_s ⊗ δ_{o,s}``: the layer input at position
``s`` times the cotangent of the layer output there. So its contribution to the NTK is

    Θ_W(x, x')_{oo'} = sum_{s,t} <a_s, a'_t> <δ_{o,s}, δ'_{o',t}>

and for dense layers (one position) simply ``(A Aᵀ) ∘ (Δ Δᵀ)``: two small Gram products
instead of a P-sized Jacobian. The inner product does not depend on how ``W``'s entries
are ordered, so transposes, reshapes, dtype casts and scalings of ``W`` before the
contraction are allowed (the scale goes into ``a``).

The interpreter below walks the jaxpr of the per-example function once to *analyse*
(which parameter leaves have that structure) and, when computing, adds a zero "probe"
to the output of each structured contraction: the gradient with respect to the probe is
the cotangent ``δ`` and the other operand is recorded as ``a``. Every other parameter
leaf (biases, normalisation scales, weights used twice, weights inside ``scan`` or a
custom derivative) keeps its ordinary per-example Jacobian: the rule falls back per
leaf. A bias is merged into its weight's factor only when every scale between them is a
compile-time constant.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

try:  # jax >= 0.4.30
    from jax.extend.core import Literal
except ImportError:  # pragma: no cover - old jax
    from jax.core import Literal

__all__ = ["Use", "analyze", "interpret"]

# Primitives that only relabel a parameter's entries (a bijection) or cast them.
_RELABEL = {"transpose", "reshape", "convert_element_type", "squeeze", "expand_dims", "copy", "copy_p",
            "reduce_precision"}
# Call-like primitives whose body is interpreted recursively (so weights inside jitted layers are seen).
_CALLS = {"pjit": "jaxpr", "jit": "jaxpr", "closed_call": "call_jaxpr", "core_call": "call_jaxpr"}


class Use(NamedTuple):
    """One structured use of a parameter leaf.

    ``S`` positions, ``C`` contracted entries (the layer-input side), ``F`` free entries of
    the weight (the layer-output side); the leaf has ``C*F`` entries.
    """

    uid: int
    leaf: int
    op: str  # "dot" | "conv"
    out_shape: tuple
    S: int
    C: int
    F: int
    out_perm: tuple  # brings the output to (positions..., weight outputs...)
    bias: int = -1  # leaf index of a bias merged into this use (-1: none)
    bias_ratio: float = 0.0  # its constant input column: c / s for out = s·(a·W) + c·b


def _delta_perm(use):
    return use.out_perm


class _Tag(NamedTuple):
    leaf: int
    scale: object  # python float or a traced scalar
    bcast: object = None  # (broadcast_dimensions, shape before) once broadcast: only a bias add may use it
    static: bool = True  # the scale is a compile-time constant (literals / closed-over constants only)


def _bind(eqn, invals):
    res = eqn.primitive.get_bind_params(eqn.params)
    if isinstance(res, tuple):  # older jax: (subfuns, params)
        subfuns, params = res
    else:
        subfuns, params = (), res
    ctx = getattr(eqn, "ctx", None)
    manager = getattr(ctx, "manager", None)
    if manager is not None:
        with manager:
            out = eqn.primitive.bind(*subfuns, *invals, **params)
    else:
        out = eqn.primitive.bind(*subfuns, *invals, **params)
    return list(out) if eqn.primitive.multiple_results else [out]


def _shape(v):
    return tuple(v.aval.shape)


def _is_scalar_atom(v):
    return len(_shape(v)) == 0


class _Context:
    """State of one interpretation: analysis (collect uses) or compute (probes on)."""

    def __init__(self, mode, enabled=None, probes=None):
        self.mode = mode
        self.enabled = enabled or {}
        self.probes = probes or {}
        self.uid = 0
        self.uses: list[Use] = []
        self.other: set[int] = set()
        self.count: dict[int, int] = {}
        self.records: dict[int, object] = {}
        self.merges: dict[int, list] = {}  # uid -> [(bias leaf, ratio)]
        self.layouts: dict[int, tuple] = {}  # uid -> (weight-free output dims, their sizes)

    def next_uid(self):
        self.uid += 1
        return self.uid - 1


def _dot_layout(eqn, p_side):
    """(S, C, F) and the permutations that bring ``a`` to (S, C) and ``out`` to (S, F)."""
    (lc, rc), (lb, rb) = eqn.params["dimension_numbers"]
    lhs, rhs = eqn.invars
    a_var = rhs if p_side == 0 else lhs
    p_var = lhs if p_side == 0 else rhs
    a_contract = rc if p_side == 0 else lc
    p_contract = lc if p_side == 0 else rc
    a_shape, p_shape = _shape(a_var), _shape(p_var)
    a_free = [i for i in range(len(a_shape)) if i not in a_contract]
    p_free = [i for i in range(len(p_shape)) if i not in p_contract]
    S = int(np.prod([a_shape[i] for i in a_free], dtype=np.int64))
    C = int(np.prod([a_shape[i] for i in a_contract], dtype=np.int64))
    F = int(np.prod([p_shape[i] for i in p_free], dtype=np.int64))
    a_perm = tuple(a_free) + tuple(a_contract)
    # out dims: lhs free then rhs free (no batch dims allowed on the weight).
    n_pf, n_af = len(p_free), len(a_free)
    if p_side == 1:
        out_perm = tuple(range(n_af)) + tuple(range(n_af, n_af + n_pf))
    else:
        out_perm = tuple(range(n_pf, n_pf + n_af)) + tuple(range(n_pf))
    return S, C, F, a_perm, out_perm


def _conv_layout(eqn):
    dn = eqn.params["dimension_numbers"]
    lhs_spec, rhs_spec, out_spec = dn.lhs_spec, dn.rhs_spec, dn.out_spec
    rhs_shape = _shape(eqn.invars[1])
    out_shape = _shape(eqn.outvars[0])
    C = int(np.prod(rhs_shape, dtype=np.int64) // rhs_shape[rhs_spec[0]])
    F = int(rhs_shape[rhs_spec[0]])
    S = int(np.prod(out_shape, dtype=np.int64) // out_shape[out_spec[1]])
    # bring (batch, spatial..., feature) with feature last
    out_perm = (out_spec[0],) + tuple(out_spec[2:]) + (out_spec[1],)
    return S, C, F, out_perm


def _structural(eqn, intags):
    """Which operand (0/1) is a structured weight in this equation, or None."""
    name = eqn.primitive.name
    if name == "dot_general":
        (lc, rc), (lb, rb) = eqn.params["dimension_numbers"]
        t0, t1 = intags
        if (t0 is None) == (t1 is None):
            return None
        side = 0 if t0 is not None else 1
        if (lb if side == 0 else rb):
            return None
        return side
    if name == "conv_general_dilated":
        t0, t1 = intags
        if t1 is None or t0 is not None:
            return None
        if eqn.params.get("feature_group_count", 1) != 1 or eqn.params.get("batch_group_count", 1) != 1:
            return None
        return 1
    return None


def _record_a(eqn, side, invals, scale):
    """The layer-input factor ``a`` as (S, C), scaled by the weight's scale."""
    name = eqn.primitive.name
    # integer layer inputs (raw int features in a mixed-dtype contraction) are factored in the weight's
    # float dtype: in int, a merged bias column (ratio < 1) would truncate to 0 and the factor lose it
    w = invals[side] if name == "dot_general" else invals[1]
    inp = invals[1 - side] if name == "dot_general" else invals[0]
    if not jnp.issubdtype(inp.dtype, jnp.inexact):
        inp = inp.astype(w.dtype)
    if name == "dot_general":
        S, C, F, a_perm, _ = _dot_layout(eqn, side)
        a = jnp.transpose(inp, a_perm).reshape(S, C)
    else:
        S, C, F, out_perm = _conv_layout(eqn)
        p = eqn.params
        dn = p["dimension_numbers"]
        rhs_shape = _shape(eqn.invars[1])
        filt = tuple(rhs_shape[i] for i in dn.rhs_spec[2:])
        a = jax.lax.conv_general_dilated_patches(
            inp, filt, p["window_strides"], p["padding"], lhs_dilation=p["lhs_dilation"],
            rhs_dilation=p["rhs_dilation"], dimension_numbers=dn, precision=jax.lax.Precision.HIGHEST)
        a = jnp.transpose(a, out_perm).reshape(S, C)
    if not (isinstance(scale, float) and scale == 1.0):
        a = a * scale
    return a


def interpret(jaxpr, consts, args, tags, ctx, static_in=None):
    """Evaluate ``jaxpr`` on ``args``; ``tags[i]`` marks inputs that are parameter leaves.

    ``static_in[i]``: input i is a compile-time constant. Only scales built from such constants
    (literals, closed-over constants) may enter a bias merge: a scale computed from parameters
    or inputs would be frozen at its analysis value (the analysis runs on zeros).
    """
    env: dict = {}
    tenv: dict = {}
    static: set = set(jaxpr.constvars)
    for v, st in zip(jaxpr.invars, static_in or [False] * len(jaxpr.invars)):
        if st:
            static.add(v)

    def is_static(v):
        return isinstance(v, Literal) or v in static

    def read(v):
        return v.val if isinstance(v, Literal) else env[v]

    def rtag(v):
        return None if isinstance(v, Literal) else tenv.get(v)

    oenv: dict = {}  # var -> (uid, scale): a structured product's output times a constant
    consumers: dict = {}
    for eqn in jaxpr.eqns:
        for v in eqn.invars:
            if not isinstance(v, Literal):
                consumers[v] = consumers.get(v, 0) + 1
    for v in jaxpr.outvars:
        if not isinstance(v, Literal):
            consumers[v] = consumers.get(v, 0) + 2

    def single(v):
        return not isinstance(v, Literal) and consumers.get(v, 0) == 1

    def const_float(v, val):
        if not is_static(v):
            return None
        try:
            return float(val) if np.ndim(val) == 0 else None
        except (TypeError, jax.errors.ConcretizationTypeError):
            return None

    for v, c in zip(jaxpr.constvars, consts):
        env[v] = c
    for v, a, t in zip(jaxpr.invars, args, tags):
        env[v] = a
        if t is not None:
            tenv[v] = t

    for eqn in jaxpr.eqns:
        invals = [read(v) for v in eqn.invars]
        intags = [rtag(v) for v in eqn.invars]
        name = eqn.primitive.name
        outtags = [None] * len(eqn.outvars)
        tagged = [t for t in intags if t is not None]
        otag = None
        if ctx.mode == "analyze":  # follow a structured product's output through constant scalings
            o_in = [oenv.get(v) if not isinstance(v, Literal) else None for v in eqn.invars]
            if any(o is not None for o in o_in) and not tagged:
                k = 0 if o_in[0] is not None else 1
                src = eqn.invars[k]
                if single(src) and name in ("convert_element_type", "neg", "copy", "copy_p"):
                    otag = (o_in[k][0], -o_in[k][1] if name == "neg" else o_in[k][1])
                elif single(src) and name in ("mul", "div") and len(eqn.invars) == 2 and \
                        (name == "mul" or k == 0):
                    other = const_float(eqn.invars[1 - k], invals[1 - k])
                    if other is not None and other != 0.0:
                        otag = (o_in[k][0], o_in[k][1] * other if name == "mul" else o_in[k][1] / other)
            elif name == "add" and len(tagged) == 1 and tagged[0].bcast is not None or \
                    (name == "add" and len(tagged) == 1 and tagged[0].bcast is None):
                k = 0 if intags[1] is not None else 1  # k: the product side
                t = intags[1 - k]
                o = oenv.get(eqn.invars[k]) if not isinstance(eqn.invars[k], Literal) else None
                c = t.scale if isinstance(t.scale, float) and t.static else None
                if o is not None and single(eqn.invars[k]) and c is not None and o[1] != 0.0:
                    free_dims, free_sizes = ctx.layouts[o[0]]
                    bshape = t.bcast[1] if t.bcast is not None else _shape(eqn.invars[1 - k])
                    bdims = tuple(t.bcast[0]) if t.bcast is not None else tuple(range(len(bshape)))
                    mapped = dict(zip(bdims, bshape))
                    # the bias must index exactly the weight's output entries and be constant over positions
                    if all(mapped.get(d) == sz for d, sz in zip(free_dims, free_sizes)) and \
                            all(sz == 1 for d, sz in mapped.items() if d not in free_dims):
                        ctx.merges.setdefault(o[0], []).append((t.leaf, c / o[1]))
                        ctx.count[t.leaf] = ctx.count.get(t.leaf, 0) + 1
                        outs = _bind(eqn, invals)
                        for v_, o_ in zip(eqn.outvars, outs):
                            env[v_] = o_
                        continue
        if not tagged:
            outs = _bind(eqn, invals)
            if otag is not None:
                oenv[eqn.outvars[0]] = otag
        elif name in _CALLS and _CALLS[name] in eqn.params:
            closed = eqn.params[_CALLS[name]]
            sub = getattr(closed, "jaxpr", closed)
            sub_consts = getattr(closed, "consts", ())
            outs, outtags = interpret(sub, sub_consts, invals, intags, ctx,
                                      static_in=[is_static(v) for v in eqn.invars])
        elif any(t.bcast is not None for t in tagged):
            for t in tagged:  # a broadcast weight used other than as a bias
                ctx.other.add(t.leaf)
            outs = _bind(eqn, invals)
        elif name == "broadcast_in_dim" and intags[0] is not None and len(tagged) == 1 and \
                math.prod(_shape(eqn.outvars[0])) != math.prod(_shape(eqn.invars[0])):
            outs = _bind(eqn, invals)
            t = intags[0]
            outtags[0] = _Tag(t.leaf, t.scale, (tuple(eqn.params["broadcast_dimensions"]), _shape(eqn.invars[0])),
                              t.static)
        elif (name in _RELABEL or (name == "broadcast_in_dim" and
                                   math.prod(_shape(eqn.outvars[0])) == math.prod(_shape(eqn.invars[0])))) \
                and intags[0] is not None and len(tagged) == 1:
            outs = _bind(eqn, invals)
            outtags[0] = intags[0]
        elif name in ("mul", "div", "neg") and len(tagged) == 1 and \
                (name == "neg" or (intags[0] is not None and _is_scalar_atom(eqn.invars[1])) or
                 (name == "mul" and intags[1] is not None and _is_scalar_atom(eqn.invars[0]))):
            outs = _bind(eqn, invals)
            t = tagged[0]
            if name == "neg":
                scale = -1.0 * t.scale if isinstance(t.scale, float) else -t.scale
            elif name == "div":
                scale = t.scale / invals[1]
            else:
                scale = t.scale * (invals[1] if intags[0] is not None else invals[0])
            try:
                scale = float(scale) if np.ndim(scale) == 0 else scale
            except (TypeError, jax.errors.ConcretizationTypeError):
                pass  # a traced scale (e.g. a learned one): kept as a value
            operand = None if name == "neg" else (eqn.invars[1] if intags[0] is not None else eqn.invars[0])
            outtags[0] = _Tag(t.leaf, scale, None, t.static and (operand is None or is_static(operand)))
        elif (side := _structural(eqn, intags)) is not None:
            t = intags[side]
            uid = ctx.next_uid()
            outs = _bind(eqn, invals)
            if ctx.mode == "analyze":
                if name == "dot_general":
                    S, C, F, _, out_perm = _dot_layout(eqn, side)
                    op = "dot"
                else:
                    S, C, F, out_perm = _conv_layout(eqn)
                    op = "conv"
                out_shape = _shape(eqn.outvars[0])
                n_free = len(out_perm) - _n_positions(eqn, side)
                free_dims = tuple(sorted(out_perm[len(out_perm) - n_free:]))
                ctx.layouts[uid] = (tuple(out_perm[len(out_perm) - n_free:]),
                                    tuple(out_shape[d] for d in out_perm[len(out_perm) - n_free:]))
                if tuple(out_perm[len(out_perm) - n_free:]) == free_dims and isinstance(t.scale, float):
                    oenv[eqn.outvars[0]] = (uid, 1.0)
                ctx.uses.append(Use(uid, t.leaf, op, out_shape, S, C, F, out_perm))
                ctx.count[t.leaf] = ctx.count.get(t.leaf, 0) + 1
            elif uid in ctx.enabled:
                a = _record_a(eqn, side, invals, t.scale)
                u = ctx.enabled[uid]
                if u.bias >= 0:
                    a = jnp.concatenate([a, jnp.full((a.shape[0], 1), u.bias_ratio, a.dtype)], axis=1)
                ctx.records[uid] = a
                outs = [outs[0] + ctx.probes[uid].astype(outs[0].dtype)]
        else:
            for t in tagged:
                ctx.other.add(t.leaf)
            outs = _bind(eqn, invals)
        for v, o, t in zip(eqn.outvars, outs, outtags):
            env[v] = o
            if t is not None:
                tenv[v] = t
        if all(is_static(v) for v in eqn.invars):
            static.update(eqn.outvars)
    outs = [read(v) for v in jaxpr.outvars]
    otags = [rtag(v) for v in jaxpr.outvars]
    return outs, otags


def analyze(fun, leaves, x):
    """Structured uses of ``fun(leaves, x)`` (a flat per-example function).

    Returns the list of :class:`Use` for leaves whose every use is one structured
    contraction; all other leaves are left to the Jacobian path.
    """
    closed = jax.make_jaxpr(fun)(leaves, x)
    n = len(leaves)
    ctx = _Context("analyze")
    tags = [_Tag(i, 1.0) for i in range(n)] + [None]
    outs, otags = interpret(closed.jaxpr, closed.consts, list(leaves) + [x], tags, ctx)
    for t in otags:
        if t is not None:
            ctx.other.add(t.leaf)

    def ok(leaf):
        return leaf not in ctx.other and ctx.count.get(leaf, 0) == 1

    uses = []
    for u in ctx.uses:
        if not ok(u.leaf):
            continue
        merges = [(b, r) for b, r in ctx.merges.get(u.uid, []) if ok(b)]
        if len(merges) == 1:
            b, r = merges[0]
            u = u._replace(bias=b, bias_ratio=float(r), C=u.C + 1)
        uses.append(u)
    # a bias merged into a weight that is not itself structured stays on the Jacobian path
    return uses, closed


def _n_positions(eqn, side):
    """Number of output dims that index positions (the layer-input side)."""
    if eqn.primitive.name == "dot_general":
        (lc, rc), _ = eqn.params["dimension_numbers"]
        a_var = eqn.invars[1 - side]
        a_contract = rc if side == 0 else lc
        return len(_shape(a_var)) - len(a_contract)
    return len(_shape(eqn.outvars[0])) - 1


def run_with_probes(closed, leaves, x, enabled, probes):
    """Evaluate the analysed jaxpr with zero probes added at the enabled uses.

    Returns ``(outputs, records)`` where ``records[uid]`` is the (S, C) layer input.
    """
    ctx = _Context("compute", enabled=enabled, probes=probes)
    n = len(leaves)
    tags = [_Tag(i, 1.0) for i in range(n)] + [None]
    outs, _ = interpret(closed.jaxpr, closed.consts, list(leaves) + [x], tags, ctx)
    return outs, ctx.records
