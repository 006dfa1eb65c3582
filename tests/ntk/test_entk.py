"""Empirical NTK: every kind and implementation against an independent Jacobian oracle.

The oracle differentiates the *batched* ``apply_fn`` with ``jax.jacrev`` over the
flattened parameter vector (``ravel_pytree``) and contracts in numpy float64: it shares
no code with ntkit's per-example factorisation, probes or tiling.

Tolerances (float64): every implementation sums the same P products in a different
order; with |terms| bounded by the kernel's scale the rounding error is at most
P·eps·max|Θ| ≈ 1e3 · 2.2e-16 for P ≤ 1e3, so 1e-10 relative to max|Θ| (the
suite-wide float64 table in ``tests/conftest.py``) holds with margin.
float32 against the float64 oracle: 1e-4 relative (eps32 = 6e-8 times the same P).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import ntkit.ntk._empirical as emp
import ntkit.ntk._engine as engine
from ntkit.ntk import NTKOperator, empirical_ntk, empirical_ntk_fn, structure_report
from ntkit.ntk.models import cnn, mlp
from tests.conftest import assert_close

def oracle(apply_fn, params, x1, x2=None):
    """Full eNTK (n, m, O, O) from Jacobians of the batched network, in float64."""
    flat, unravel = ravel_pytree(params)
    x2 = x1 if x2 is None else x2

    def jac(x):
        return np.asarray(jax.jacrev(lambda v: apply_fn(unravel(v), x))(flat), dtype=np.float64)  # (n, O, P)

    J1, J2 = jac(x1), jac(x2)
    return np.einsum("nap,mbp->nmab", J1, J2)


def derived(full, kind):
    O = full.shape[-1]
    if kind == "full":
        return full
    if kind == "trace":
        return np.einsum("nmoo->nm", full)
    return full.sum(axis=(2, 3)) / O  # sum_logits: (1/sqrt O)^2 * sum_{o,o'}


def _model(name, dtype=jnp.float64):
    key = jax.random.PRNGKey(0)
    if name == "mlp_tanh":
        init, apply = mlp((5, 16, 16, 3), "tanh", dtype=dtype)
        shape = (5,)
    elif name == "mlp_relu_std":
        init, apply = mlp((4, 12, 12, 2), "relu", parameterization="standard", dtype=dtype)
        shape = (4,)
    elif name == "cnn":
        init, apply = cnn((6, 6, 2), (3, 4), 3, dtype=dtype)
        shape = (6, 6, 2)
    else:  # pragma: no cover
        raise KeyError(name)
    params = init(key)
    x1 = jax.random.normal(jax.random.PRNGKey(1), (6,) + shape, dtype)
    x2 = jax.random.normal(jax.random.PRNGKey(2), (5,) + shape, dtype)
    return apply, params, x1, x2


@pytest.fixture
def force_factored(monkeypatch):
    monkeypatch.setattr(engine, "_FORCE_FACTORED", True)
    engine._ENGINES.clear()
    yield
    engine._ENGINES.clear()


MODELS = ["mlp_tanh", "mlp_relu_std", "cnn"]


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("implementation", ["structured", "jacobian", "ntk_vp"])
@pytest.mark.parametrize("kind", ["full", "trace", "sum_logits"])
def test_kinds_and_implementations_match_oracle(model, implementation, kind):
    apply, params, x1, x2 = _model(model)
    ref = derived(oracle(apply, params, x1, x2), kind)
    got = empirical_ntk(apply, params, x1, x2, kind=kind, implementation=implementation)
    assert got.shape == ref.shape and got.dtype == np.float64
    assert_close(got, ref, np.float64)


def test_conv_factored_path_matches_oracle(force_factored):
    apply, params, x1, x2 = _model("cnn")
    rep = structure_report(apply, params, x1)
    assert {"0/W", "1/W", "2/W"} <= set(rep.factored) and rep.factored["0/W"][1] == 36
    full = oracle(apply, params, x1, x2)
    for kind in ("full", "trace", "sum_logits"):
        assert_close(empirical_ntk(apply, params, x1, x2, kind=kind), derived(full, kind), np.float64)
    d = empirical_ntk(apply, params, x1, kind="diagonal")
    assert_close(d, np.einsum("nnab->nab", oracle(apply, params, x1)), np.float64)


def test_structure_found_for_mlp_with_biases_merged():
    """out = s·(a·W) + c·b has gradient [s·a, c] ⊗ δ: the bias joins its weight's factor."""
    apply, params, x1, _ = _model("mlp_tanh")
    rep = structure_report(apply, params, x1)
    assert set(rep.factored) == {"0/W", "1/W", "2/W", "0/b", "1/b", "2/b"}
    assert rep.factored["0/W"] == ("dot", 1, 5 + 1, 16) and rep.factored["1/b"] == ("bias", "merged into 1/W")
    assert rep.materialized == {}
    assert rep.n_params == 5 * 16 + 16 + 16 * 16 + 16 + 16 * 3 + 3
    assert "factored" in str(rep)


def test_biases_that_must_not_merge():
    """A bias that varies over positions, one added after a nonlinearity, one used twice."""
    k = jax.random.split(jax.random.PRNGKey(7), 5)
    S, d, h = 3, 4, 5
    params = {"W": jax.random.normal(k[0], (d, h)), "pos": jax.random.normal(k[1], (S, h)),
              "late": jax.random.normal(k[2], (h,)), "twice": jax.random.normal(k[3], (h,)),
              "V": jax.random.normal(k[4], (h, 2))}

    def apply(p, x):  # x (n, S, d): tokens
        z = x @ p["W"] + p["pos"]  # position-dependent bias: not a per-weight bias
        z = jnp.tanh(z) + p["late"]
        z = jnp.tanh(z * 0.5 + p["twice"]) + p["twice"]
        return z.mean(axis=1) @ p["V"]

    x1 = jax.random.normal(jax.random.PRNGKey(8), (4, S, d))
    x2 = jax.random.normal(jax.random.PRNGKey(9), (3, S, d))
    rep = structure_report(apply, params, x1)
    assert {"pos", "late", "twice"} <= set(rep.materialized), str(rep)
    full = oracle(apply, params, x1, x2)
    for kind in ("full", "trace"):
        assert_close(empirical_ntk(apply, params, x1, x2, kind=kind), derived(full, kind), np.float64)


def _variants():
    """Ways real code uses weights: flax/equinox layouts, scaling, sharing, jit, scan."""
    k = jax.random.split(jax.random.PRNGKey(3), 4)
    d, h, o = 4, 6, 2
    W1 = jax.random.normal(k[0], (h, d))  # equinox layout (out, in)
    W2 = jax.random.normal(k[1], (h, o))
    b = jax.random.normal(k[2], (h,))
    out = {}

    def eqx_style(p, x):  # W @ x under vmap, weight transposed relative to flax
        z = jax.vmap(lambda xi: p["W1"] @ xi + p["b"])(x)
        return jnp.tanh(z) @ p["W2"]

    out["equinox_layout"] = (eqx_style, {"W1": W1, "W2": W2, "b": b}, {"W1", "W2"})

    def scaled(p, x):  # weight scaled before the product, and a dot_general call
        z = jax.lax.dot_general(x, (0.5 * p["W1"]).T, (((1,), (0,)), ((), ())))
        return jnp.sin(z) @ (p["W2"] / 3.0)

    out["scaled_weights"] = (scaled, {"W1": W1, "W2": W2}, {"W1", "W2"})

    @jax.jit
    def layer(W, x):
        return jnp.tanh(x @ W.T)

    def jitted(p, x):  # weights inside a jitted function (a pjit equation)
        return layer(p["W1"], x) @ p["W2"]

    out["jitted_layer"] = (jitted, {"W1": W1, "W2": W2}, {"W1", "W2"})

    def shared(p, x):  # same weight used twice: falls back to its Jacobian
        z = jnp.tanh(x @ p["W1"].T)
        return (z @ p["W1"])[:, :o] + z @ p["W2"]

    out["shared_weight"] = (shared, {"W1": W1, "W2": W2}, {"W2"})

    def scanned(p, x):  # weight used inside lax.scan: Jacobian fallback
        def body(c, _):
            return jnp.tanh(c @ p["S"]), None

        c, _ = jax.lax.scan(body, x @ p["W1"].T, None, length=2)
        return c @ p["W2"]

    out["scan"] = (scanned, {"W1": W1, "W2": W2, "S": jax.random.normal(k[3], (h, h)) / 3}, {"W1", "W2"})

    def elementwise(p, x):  # a weight that multiplies elementwise (a gate) and a learned scale
        z = jnp.tanh((x @ p["W1"].T) * p["gate"]) * p["scale"]
        return z @ p["W2"]

    out["gate_and_scale"] = (elementwise, {"W1": W1, "W2": W2, "gate": b, "scale": jnp.asarray(1.3)}, {"W1", "W2"})

    def learned_gain(p, x):  # a bias after a learned (non-constant) gain must not be merged with a frozen ratio
        h = x @ p["W1"].T
        return jnp.tanh(h * jnp.exp(p["g"]) + p["b"]) @ p["W2"]

    out["learned_gain"] = (learned_gain, {"W1": W1, "W2": W2, "g": jnp.asarray(0.7), "b": b}, {"W1", "W2"})
    return out, d


@pytest.mark.parametrize("name", ["equinox_layout", "scaled_weights", "jitted_layer", "shared_weight", "scan",
                                  "gate_and_scale", "learned_gain"])
def test_structure_rules_on_real_layouts(name):
    variants, d = _variants()
    apply, params, expect = variants[name]
    x1 = jax.random.normal(jax.random.PRNGKey(4), (5, d))
    x2 = jax.random.normal(jax.random.PRNGKey(5), (3, d))
    rep = structure_report(apply, params, x1)
    assert set(rep.factored) == expect, str(rep)
    full = oracle(apply, params, x1, x2)
    for kind in ("full", "trace", "sum_logits"):
        assert_close(empirical_ntk(apply, params, x1, x2, kind=kind), derived(full, kind), np.float64)


def test_batched_equals_unbatched_with_ragged_tiles():
    apply, params, x1, x2 = _model("mlp_tanh")
    x1 = jnp.concatenate([x1, x2[:1]])  # n = 7, tiles of 3 -> 3, 3, 1 (padded)
    whole = empirical_ntk(apply, params, x1, x2)
    tiled = empirical_ntk(apply, params, x1, x2, batch_size=3)
    # same products, different GEMM shapes: a few ulps of max|Θ| at most
    np.testing.assert_allclose(tiled, whole, rtol=0, atol=1e-13 * np.abs(whole).max())
    sym_t = empirical_ntk(apply, params, x1, batch_size=2, kind="trace")
    sym = empirical_ntk(apply, params, x1, kind="trace")
    np.testing.assert_allclose(sym_t, sym, rtol=0, atol=1e-13 * np.abs(sym).max())


def test_symmetric_call_is_exactly_symmetric_and_matches_x2():
    apply, params, x1, _ = _model("mlp_relu_std")
    s = empirical_ntk(apply, params, x1, batch_size=4)
    np.testing.assert_array_equal(s, s.transpose(1, 0, 3, 2))
    assert_close(s, empirical_ntk(apply, params, x1, x1), np.float64)


@pytest.mark.parametrize("implementation", ["structured", "jacobian", "ntk_vp"])
def test_diagonal_kinds(implementation):
    apply, params, x1, _ = _model("mlp_tanh")
    full = oracle(apply, params, x1)
    blocks = np.einsum("nnab->nab", full)
    assert_close(empirical_ntk(apply, params, x1, kind="diagonal", implementation=implementation), blocks, np.float64)
    assert_close(empirical_ntk(apply, params, x1, kind="diagonal", diagonal_of="trace",
                               implementation=implementation), np.einsum("naa->n", blocks), np.float64)
    assert_close(empirical_ntk(apply, params, x1, kind="diagonal", diagonal_of="sum_logits",
                               implementation=implementation), blocks.sum((1, 2)) / 3, np.float64)


@pytest.mark.parametrize("kind", ["trace", "sum_logits"])
def test_cosine_normalisation(kind):
    apply, params, x1, x2 = _model("mlp_tanh")
    K12 = derived(oracle(apply, params, x1, x2), kind)
    d1 = np.diag(derived(oracle(apply, params, x1), kind))
    d2 = np.diag(derived(oracle(apply, params, x2), kind))
    got = empirical_ntk(apply, params, x1, x2, kind=kind, normalize="cosine")
    assert_close(got, K12 / np.sqrt(np.outer(d1, d2)), np.float64)
    sym = empirical_ntk(apply, params, x1, kind=kind, normalize="cosine")
    np.testing.assert_array_equal(np.diag(sym), np.ones(len(x1)))
    assert np.all(np.abs(sym) <= 1 + 1e-12)


def test_float32_against_float64_oracle():
    apply, params, x1, x2 = _model("mlp_tanh", dtype=jnp.float32)
    p64 = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), params)
    ref = oracle(apply, p64, x1.astype(jnp.float64), x2.astype(jnp.float64))
    for kind in ("full", "trace"):
        got = empirical_ntk(apply, params, x1, x2, kind=kind)
        assert got.dtype == np.float32
        assert_close(got, derived(ref, kind), np.float32)


def test_float64_numpy_params_compute_in_float64_without_global_x64():
    apply, params, x1, x2 = _model("mlp_tanh")
    p_np = jax.tree_util.tree_map(np.asarray, params)
    ref = empirical_ntk(apply, params, x1, x2, kind="trace")
    with jax.enable_x64(False):
        got = empirical_ntk(apply, p_np, np.asarray(x1), np.asarray(x2), kind="trace")
    assert got.dtype == np.float64
    assert_close(got, ref, np.float64)


def _projection_variance(J1, J2, projection):
    """Exact per-entry variance of k·K̂ for k = 1, K̂ = Σ_o <R g_o, R h_o> (trace sketch).

    K̂ = rᵀ M r with M = Σ_o g_o h_oᵀ; Var = ‖M‖_F² + tr(M²) for Gaussian r and
    additionally − 2 Σ_p M_pp² for Rademacher r.
    """
    n, m = J1.shape[0], J2.shape[0]
    var = np.empty((n, m))
    for i in range(n):
        for j in range(m):
            G, H = J1[i], J2[j]  # (O, P)
            GG, HH, GH = G @ G.T, H @ H.T, G @ H.T
            v = np.sum(GG * HH) + np.sum(GH * GH.T)
            if projection == "rademacher":
                v -= 2 * np.sum(np.einsum("op,op->p", G, H) ** 2)
            var[i, j] = v
    return var


@pytest.mark.parametrize("projection", ["gaussian", "rademacher"])
def test_projected_kernel_is_unbiased_with_exact_jl_variance(projection):
    """Over 40 keys: the mean error is within 4 standard errors of 0, and the mean squared
    error divided by the exact JL variance/k is 1 within the sampling error of a
    40-sample variance estimate (relative sd sqrt(2/40) ≈ 0.22 per entry, less on the
    average over 12 entries; bounds 0.6-1.6)."""
    init, apply = mlp((3, 6, 2), "tanh", dtype=jnp.float64)
    params = init(jax.random.PRNGKey(0))
    x1 = jax.random.normal(jax.random.PRNGKey(1), (4, 3))
    x2 = jax.random.normal(jax.random.PRNGKey(2), (3, 3))
    flat, unravel = ravel_pytree(params)
    J1 = np.asarray(jax.jacrev(lambda v: apply(unravel(v), x1))(flat))
    J2 = np.asarray(jax.jacrev(lambda v: apply(unravel(v), x2))(flat))
    exact = np.einsum("nop,mop->nm", J1, J2)
    k = 32
    var = _projection_variance(J1, J2, projection) / k
    est = np.stack([empirical_ntk(apply, params, x1, x2, kind="projected", n_projections=k, key=s,
                                  projection=projection) for s in range(40)])
    err = est - exact
    se = np.sqrt(var / 40)
    assert np.all(np.abs(err.mean(0)) < 4 * se + 1e-12)
    ratio = np.mean(np.mean(err**2, axis=0) / var)
    assert 0.6 < ratio < 1.6, ratio


def test_projected_error_shrinks_like_inverse_sqrt_k():
    apply, params, x1, x2 = _model("mlp_tanh")
    exact = derived(oracle(apply, params, x1, x2), "trace")
    rmse = {}
    for k in (16, 256):
        errs = [empirical_ntk(apply, params, x1, x2, kind="projected", n_projections=k, key=s) - exact
                for s in range(12)]
        rmse[k] = np.sqrt(np.mean(np.square(errs)))
    # expected ratio sqrt(256/16) = 4; a 12-key RMSE has ~15% relative sd, so 2.5-6.5 is > 3 sd wide
    assert 2.5 < rmse[16] / rmse[256] < 6.5, rmse


def test_projected_sum_logits_and_determinism():
    apply, params, x1, x2 = _model("mlp_tanh")
    a = empirical_ntk(apply, params, x1, x2, kind="projected", n_projections=64, projected_kind="sum_logits", key=7)
    b = empirical_ntk(apply, params, x1, x2, kind="projected", n_projections=64, projected_kind="sum_logits",
                      key=jax.random.key(7))
    np.testing.assert_array_equal(a, b)
    c = empirical_ntk(apply, params, x1, x2, kind="projected", n_projections=64, projected_kind="sum_logits", key=8)
    assert not np.array_equal(a, c)
    exact = derived(oracle(apply, params, x1, x2), "sum_logits")
    rel = np.linalg.norm(np.mean([empirical_ntk(apply, params, x1, x2, kind="projected", n_projections=512,
                                                projected_kind="sum_logits", key=s) for s in range(4)], 0) - exact)
    assert rel / np.linalg.norm(exact) < 0.15  # 4 x 512 projections: relative error ~ sqrt(2/2048) ≈ 0.03


def test_infinite_width_limit_relu_ntk():
    """Finite-width eNTK of a ReLU MLP in NTK parameterisation → ReluNTK ⊗ I_O.

    The fluctuation of the eNTK at width w is O(1/sqrt(w)) (Jacot et al.; Hanin & Nica):
    averaged over 3 seeds the relative Frobenius gap must fall by at least 2x from
    w = 64 to w = 1024 (the expected factor is 4) and be below 0.1 at w = 1024.
    The pseudo-NTK gap ||Θ − pNTK ⊗ I||/||Θ|| must shrink with width too.
    """
    from ntkit.kernels import ReluNTK

    d, O = 5, 3
    x = np.asarray(jax.random.normal(jax.random.PRNGKey(0), (6, d)))
    limit = ReluNTK(depth=2, bias_std=0.1, weight_std=1.4)(x)
    gaps, pgaps = {}, {}
    for w in (64, 1024):
        g, pg = [], []
        for seed in range(3):
            init, apply = mlp((d, w, w, O), "relu", W_std=1.4, b_std=0.1, dtype=jnp.float64)
            params = init(jax.random.PRNGKey(seed))
            full = empirical_ntk(apply, params, x)
            target = np.einsum("nm,ab->nmab", limit, np.eye(O))
            g.append(np.linalg.norm(full - target) / np.linalg.norm(target))
            pntk = empirical_ntk(apply, params, x, kind="sum_logits")
            pg.append(np.linalg.norm(full - np.einsum("nm,ab->nmab", pntk, np.eye(O))) / np.linalg.norm(full))
        gaps[w], pgaps[w] = np.mean(g), np.mean(pg)
    assert gaps[1024] < 0.1 and gaps[64] / gaps[1024] > 2, gaps
    assert pgaps[1024] < pgaps[64], pgaps


def test_ntk_operator_matches_dense():
    apply, params, x1, _ = _model("mlp_tanh")
    full = oracle(apply, params, x1)
    n, O = full.shape[0], full.shape[2]
    rng = np.random.default_rng(0)
    V = rng.standard_normal((n * O, 2))
    op = NTKOperator(apply, params, x1, kind="full", ridge=0.5)
    dense = full.transpose(0, 2, 1, 3).reshape(n * O, n * O) + 0.5 * np.eye(n * O)
    assert_close(op @ V, dense @ V, np.float64)
    for kind in ("trace", "sum_logits"):
        op = NTKOperator(apply, params, x1, kind=kind)
        v = rng.standard_normal(n)
        assert_close(op @ v, derived(full, kind) @ v, np.float64)
        assert_close(op.T @ v, derived(full, kind) @ v, np.float64)


def test_ntk_fn_reuses_compiled_engine():
    apply, params, x1, x2 = _model("mlp_tanh")
    fn = empirical_ntk_fn(apply, kind="trace")
    fn(params, x1, x2)
    n_engines = len(engine._ENGINES)
    params2 = jax.tree_util.tree_map(lambda a: a * 1.1, params)
    out = fn(params2, x1, x2)
    assert len(engine._ENGINES) == n_engines
    assert_close(out, derived(oracle(apply, params2, x1, x2), "trace"), np.float64)


def test_stax_triple_and_memory_budget_tiles():
    apply, params, x1, x2 = _model("mlp_tanh")
    triple = (lambda *a: None, apply, lambda *a: None)
    ref = empirical_ntk(apply, params, x1, x2, kind="trace")
    assert_close(empirical_ntk(triple, params, x1, x2, kind="trace"), ref, np.float64)
    plan = engine._engine(apply, jax.tree_util.tree_structure(params), jax.tree_util.tree_leaves(params), x1,
                       np.float64, "eye", "structured", "trace", None, "gaussian").plan()
    assert emp._choose_batch(plan, 10_000, 8, 64 * 2**20, None) < 10_000
    small = empirical_ntk(apply, params, x1, x2, kind="trace", memory_budget=3000)
    assert_close(small, ref, np.float64)


# ----------------------------------------------------------------------------- bad input


def test_bad_inputs_name_the_argument():
    apply, params, x1, x2 = _model("mlp_tanh")
    with pytest.raises(ValueError, match=r"shape \(n, O\)"):
        empirical_ntk(lambda p, x: apply(p, x)[:, 0], params, x1)
    with pytest.raises(ValueError, match="same per-example shape"):
        empirical_ntk(apply, params, x1, jnp.ones((3, 4)))
    bad = [dict(l) for l in params]
    bad[0]["W"] = jnp.ones((5, 16), jnp.int32)
    with pytest.raises(TypeError, match="params leaf '0/W' has dtype int32"):
        empirical_ntk(apply, bad, x1)
    nan = [dict(l) for l in params]
    nan[1]["b"] = nan[1]["b"].at[0].set(jnp.nan)
    with pytest.raises(ValueError, match="params leaf '1/b' contains NaN"):
        empirical_ntk(apply, nan, x1)
    with pytest.raises(ValueError, match="x1 contains NaN"):
        empirical_ntk(apply, params, x1.at[0, 0].set(jnp.inf))
    with pytest.raises(ValueError, match="kind"):
        empirical_ntk(apply, params, x1, kind="mean")
    with pytest.raises(ValueError, match="n_projections"):
        empirical_ntk(apply, params, x1, kind="projected")
    with pytest.raises(ValueError, match="x2=None"):
        empirical_ntk(apply, params, x1, x2, kind="diagonal")
    with pytest.raises(ValueError, match="cosine"):
        empirical_ntk(apply, params, x1, kind="full", normalize="cosine")
    with pytest.raises(TypeError, match="apply_fn must be a callable"):
        empirical_ntk("net", params, x1)
    with pytest.raises(ValueError, match="no rows"):
        empirical_ntk(apply, params, x1[:0])
    with pytest.raises(ValueError, match="batch_size"):
        empirical_ntk(apply, params, x1, batch_size=0)
    with pytest.raises(TypeError, match="x1 must be"):
        empirical_ntk(apply, params, x1.astype(jnp.complex64))


def test_single_example_and_single_output():
    init, apply = mlp((3, 8, 1), "erf", dtype=jnp.float64)
    params = init(jax.random.PRNGKey(0))
    x = jnp.ones((1, 3))
    full = empirical_ntk(apply, params, x)
    assert full.shape == (1, 1, 1, 1)
    assert_close(full, oracle(apply, params, x), np.float64)
    assert math.isclose(float(empirical_ntk(apply, params, x, kind="sum_logits")[0, 0]), float(full[0, 0, 0, 0]),
                        rel_tol=1e-12)
