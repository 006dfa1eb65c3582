"""ntkit.stax against golden values from neural-tangents 0.6.5 (``tests/golden/stax_nt.npz``).

The architectures are defined once in ``tests/golden/stax_specs.py`` and built here with
``ntkit.stax``, there with ``neural_tangents.stax`` (``make interop``). Tolerances:

* 1e-10 relative to max|K| (the float64 row of ``tests/conftest.py``, same maths in a different
  order) for every pair of distinct inputs, closed forms and quadrature alike: ``mlp_numerical_tanh``
  uses the same Gauss-Hermite nodes and weights as neural-tangents, so the quadrature error is
  identical on both sides (observed agreement 2e-15);
* 1e-7 for pairs of identical inputs (the diagonal of K(x1, x1), and the rows shared by x1 and
  x2): neural-tangents reads the variance and the covariance of an identical pair from two
  different reductions, which disagree in the last bit, so its arc-cosine angle is ~sqrt(eps)
  = 1.5e-8 instead of 0 and its NTK is off by ~1e-9 relative per ReLU layer (up to 8e-9 observed).
  ntkit's values there are checked to 1e-13 against an exact reference in ``test_exact.py``;
* where neural-tangents is NaN, ntkit must be finite: neural-tangents differentiates its rectified
  monomials' arc-cosine form in the angle, which is NaN at angle 0 and meaningless at the ~1e-8
  angle of its identical pairs, so identical pairs of those architectures are not compared (ntkit's
  closed form is checked there against quadrature in ``test_layers.py``).

Each architecture is evaluated once, on the stacked inputs ``[x1; x2]`` with ``x2=None`` (graph
networks with the stacked graphs, ``pattern=(P, P)``): the two golden blocks are its ``(x1, x1)``
and ``(x1, x2)`` blocks. The two-batch call path is checked separately on a few architectures.

The finite networks of the architectures in ``stax_specs.APPLY`` (transposed convolutions,
attention, graph aggregation) are compared too: ``apply_fn`` on the same parameters (drawn
with numpy in neural-tangents' shapes) to 1e-12 relative to max|output| (float64, the same
products summed in a different order; observed 2e-16).
"""

from __future__ import annotations

import importlib.util
import inspect
import pathlib
import re

import numpy as np
import pytest

from ntkit import stax

GOLDEN_DIR = pathlib.Path(__file__).resolve().parents[1] / "golden"
GOLDEN = GOLDEN_DIR / "stax_nt.npz"


def _specs():
    spec = importlib.util.spec_from_file_location("stax_specs", GOLDEN_DIR / "stax_specs.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


SPECS = _specs()
_Z = np.load(GOLDEN)
NAMES = [str(n) for n in _Z["names"]]
G = {k: _Z[k] for k in _Z.files}
PATTERNS = {fmt: (G[f"pattern_{fmt}_1"], G[f"pattern_{fmt}_2"]) for fmt in ("dense", "sparse")}


def _identical(a, b):
    """(n1, n2) mask of pairs of identical input rows."""
    A = a.reshape(a.shape[0], -1)
    B = b.reshape(b.shape[0], -1)
    return np.all(A[:, None, :] == B[None, :, :], axis=-1)


def _compare(mine, gold, same, what, compare_identical=True):
    mine = np.asarray(mine)
    assert mine.shape == gold.shape, f"{what}: shape {mine.shape}, neural-tangents {gold.shape}"
    finite = np.isfinite(gold)
    assert np.all(np.isfinite(mine)), f"{what}: ntkit returned non-finite values"
    scale = np.max(np.abs(gold[finite])) if finite.any() else 1.0
    err = np.abs(mine - np.where(finite, gold, 0.0)) / scale
    same = same.reshape(same.shape + (1,) * (gold.ndim - 2))
    distinct = finite & ~same
    identical = finite & same
    assert np.all(err[distinct] <= 1e-10), f"{what}: max rel. error {err[distinct].max():.2e} on distinct pairs"
    if identical.any() and compare_identical:
        assert np.all(err[identical] <= 1e-7), f"{what}: max rel. error {err[identical].max():.2e} on identical pairs"


@pytest.mark.parametrize("name", NAMES)
def test_matches_neural_tangents(name):
    kind = SPECS.SPECS[name][0]
    x1, x2 = G[f"{kind}_x1"], G[f"{kind}_x2"]
    _, _, kernel_fn = SPECS.build(stax, name)
    n1 = x1.shape[0]
    ident = "rectified_monomial" not in name
    k = kernel_fn(np.concatenate([x1, x2]), None, ("nngp", "ntk"), **SPECS.kernel_kwargs(name, PATTERNS, "stacked"))
    for field in ("nngp", "ntk"):
        full = np.asarray(getattr(k, field))
        _compare(full[:n1, :n1], G[f"{name}/{field}_11"], _identical(x1, x1), f"{name} {field} (x1, x1)", ident)
        _compare(full[:n1, n1:], G[f"{name}/{field}_12"], _identical(x1, x2), f"{name} {field} (x1, x2)", ident)


@pytest.mark.parametrize("name", ["mlp_dropout", "cnn_output_one_conv", "mlp_fanin_concat", "graph_aggregate_output",
                                  "seq_attention_abs_output"])
def test_two_batch_calls(name):
    """kernel_fn(x1, x2) and kernel_fn(x1, None) themselves, as neural-tangents was called."""
    kind = SPECS.SPECS[name][0]
    x1, x2 = G[f"{kind}_x1"], G[f"{kind}_x2"]
    _, _, kernel_fn = SPECS.build(stax, name)
    k12 = kernel_fn(x1, x2, ("nngp", "ntk"), **SPECS.kernel_kwargs(name, PATTERNS, "12"))
    ntk11 = kernel_fn(x1, None, "ntk", **SPECS.kernel_kwargs(name, PATTERNS, "11"))
    _compare(k12.nngp, G[f"{name}/nngp_12"], _identical(x1, x2), name)
    _compare(k12.ntk, G[f"{name}/ntk_12"], _identical(x1, x2), name)
    _compare(ntk11, G[f"{name}/ntk_11"], _identical(x1, x1), name)


@pytest.mark.parametrize("name", SPECS.APPLY)
def test_apply_matches_neural_tangents(name):
    """The finite network: ntkit's init_fn gives neural-tangents' parameter shapes, apply_fn its outputs."""
    import jax

    kind = SPECS.SPECS[name][0]
    x1 = G[f"{kind}_x1"]
    init_fn, apply_fn, _ = SPECS.build(stax, name)
    params = jax.eval_shape(lambda key: init_fn(key, x1.shape)[1], jax.random.PRNGKey(0))  # shapes only
    leaves, tree = jax.tree_util.tree_flatten(params)
    gold = [G[f"{name}/param_{i}"] for i in range(len(leaves))]
    assert f"{name}/param_{len(leaves)}" not in G, f"{name}: neural-tangents has more parameter arrays"
    assert [np.shape(a) for a in leaves] == [g.shape for g in gold], f"{name}: parameter shapes differ"
    kwargs = SPECS.apply_kwargs(name, PATTERNS, "1")
    out = np.asarray(jax.jit(lambda p, x, kw: apply_fn(p, x, **kw))(jax.tree_util.tree_unflatten(tree, gold), x1,
                                                                      kwargs))
    ref = G[f"{name}/apply"]
    assert out.shape == ref.shape
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-12 * np.max(np.abs(ref)))


def test_golden_covers_every_layer():
    """At least 30 architectures, and every public layer of ntkit.stax appears in one of them."""
    assert len(NAMES) >= 30
    assert set(NAMES) == set(SPECS.SPECS)
    source = inspect.getsource(SPECS)
    not_layers = {"KernelState", "as_kernel", "StaxKernel", "batch"}
    missing = [n for n in stax.__all__ if n not in not_layers and not re.search(rf"stax\.{n}\b", source)]
    assert not missing, f"layers without a golden architecture: {missing}"
    kinds = {SPECS.SPECS[n][0] for n in NAMES}
    assert kinds == {"vec", "img", "seq", "graph"}
    # the finite networks of the layers added with attention and graphs are compared as well
    assert {"cnn_conv_transpose_valid", "seq_attention_softmax", "graph_gnn_dense", "graph_gnn_sparse"} <= set(
        SPECS.APPLY)
    assert {"ConvTranspose", "GlobalSelfAttention", "Aggregate"} <= set(stax.__all__)
    assert "standard" in source and "ntk" in source
