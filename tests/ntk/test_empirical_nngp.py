"""The empirical NNGP (and ``empirical_kernel_fn``) against neural-tangents 0.6.5 and against its definition.

Golden values: ``tests/golden/finite_nt.npz`` (``make_golden_finite.py``), float64, compared to
1e-10 relative to max|K| (the float64 row of ``tests/conftest.py``: the same products, summed in
another order). neural-tangents' ``trace_axes=(-1,)`` is the mean over logits; ntkit's
``kind="trace"`` is the sum.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntkit import InvalidParameterError
from ntkit.ntk import empirical_kernel_fn, empirical_nngp, empirical_nngp_fn, empirical_ntk
from ntkit.ntk.models import mlp
from tests.conftest import assert_close

from ._finite_golden import case, names

FLAT = [n for n in names() if case(n).meta["reshape"] is None]


@pytest.mark.parametrize("name", FLAT)
def test_matches_neural_tangents(name):
    c = case(name)
    p = c.params(0)
    O = c.meta["out_shape"][0]
    for pair, x2 in (("12", c.x2), ("11", None)):
        full = empirical_nngp(c.apply, p, c.x1, x2)
        assert_close(full, c.g[f"nngp_full_{pair}"], np.float64)
        assert_close(empirical_nngp(c.apply, p, c.x1, x2, kind="trace"), O * c.g[f"nngp_mean_{pair}"], np.float64)
        assert_close(np.einsum("nmoo->nmo", full), c.g[f"nngp_diag_{pair}"], np.float64)


@pytest.mark.parametrize("name", ["mlp_relu_std", "mlp_tanh"])
def test_kernel_fn_matches_neural_tangents(name):
    c = case(name)
    O = c.meta["out_shape"][0]
    k = empirical_kernel_fn(c.apply, kind="trace")(c.params(0), c.x1, c.x2)
    assert k._fields == ("nngp", "ntk")
    assert_close(k.nngp, O * c.g["kernel_nngp_mean_12"], np.float64)
    assert_close(k.ntk, O * c.g["kernel_ntk_mean_12"], np.float64)
    full = empirical_kernel_fn(c.apply)(c.params(0), c.x1, c.x2, get="ntk")
    assert_close(full, c.g["kernel_ntk_full_12"], np.float64)


@pytest.fixture(scope="module")
def net():
    init, apply = mlp((4, 8, 3), activation="tanh", dtype=jnp.float64)
    with jax.enable_x64(True):
        params = init(jax.random.PRNGKey(0))
    rng = np.random.default_rng(0)
    return apply, params, rng.normal(size=(7, 4)), rng.normal(size=(4, 4))


def test_kinds_follow_from_the_outputs(net):
    apply, params, x1, x2 = net
    f1, f2 = np.asarray(apply(params, x1)), np.asarray(apply(params, x2))
    np.testing.assert_allclose(empirical_nngp(apply, params, x1, x2), np.einsum("ia,jb->ijab", f1, f2), rtol=1e-14)
    np.testing.assert_allclose(empirical_nngp(apply, params, x1, x2, kind="trace"), f1 @ f2.T, rtol=1e-13)
    s1, s2 = f1.sum(1), f2.sum(1)
    np.testing.assert_allclose(empirical_nngp(apply, params, x1, x2, kind="sum_logits"), np.outer(s1, s2) / 3,
                               rtol=1e-13)
    np.testing.assert_allclose(empirical_nngp(apply, params, x1, kind="diagonal"), np.einsum("ia,ib->iab", f1, f1),
                               rtol=1e-14)
    np.testing.assert_allclose(empirical_nngp(apply, params, x1, kind="diagonal", diagonal_of="trace"),
                               (f1 * f1).sum(1), rtol=1e-13)
    cos = empirical_nngp(apply, params, x1, kind="trace", normalize="cosine")
    g = f1 @ f1.T
    np.testing.assert_allclose(cos, g / np.sqrt(np.outer(np.diag(g), np.diag(g))), rtol=1e-13)
    np.testing.assert_array_equal(np.diag(cos), 1.0)


def test_conventions_match_the_entk(net):
    """numpy in -> numpy out, jax in -> jax out; float32 stays float32; tiles do not change the result."""
    apply, params, x1, x2 = net
    k = empirical_nngp(apply, params, x1, x2, kind="trace")
    assert isinstance(k, np.ndarray) and k.dtype == np.float64
    kj = empirical_nngp(apply, params, jnp.asarray(x1), jnp.asarray(x2), kind="trace")
    assert isinstance(kj, jax.Array)
    np.testing.assert_allclose(np.asarray(kj), k, rtol=1e-14)
    np.testing.assert_allclose(empirical_nngp_fn(apply, kind="trace", batch_size=3)(params, x1, x2), k, rtol=1e-14)
    p32 = jax.tree_util.tree_map(lambda a: a.astype(jnp.float32), params)
    k32 = empirical_nngp(apply, p32, x1.astype(np.float32), kind="trace")
    assert k32.dtype == np.float32
    # same shape conventions as the eNTK
    assert empirical_nngp(apply, params, x1, x2).shape == empirical_ntk(apply, params, x1, x2).shape


def test_kernel_fn_get_follows_neural_tangents(net):
    apply, params, x1, _ = net
    kfn = empirical_kernel_fn(apply, kind="trace")
    assert kfn(params, x1, get="nngp").shape == (7, 7)
    assert kfn(params, x1, get=("ntk",))._fields == ("ntk",)
    assert kfn(params, x1, get=("ntk", "nngp"))._fields == ("ntk", "nngp")
    with pytest.raises(InvalidParameterError, match="'get' parameter"):
        kfn(params, x1, get="cov")


def test_bad_input(net):
    apply, params, x1, x2 = net
    with pytest.raises(InvalidParameterError, match="'kind' parameter of empirical_nngp"):
        empirical_nngp(apply, params, x1, kind="projected")
    with pytest.raises(InvalidParameterError, match="normalize='cosine' applies to scalar kernels"):
        empirical_nngp(apply, params, x1, normalize="cosine")
    with pytest.raises(ValueError, match="pass x2=None"):
        empirical_nngp(apply, params, x1, x2, kind="diagonal")
    with pytest.raises(ValueError, match="same per-example shape"):
        empirical_nngp(apply, params, x1, x2[:, :3])
    with pytest.raises(ValueError, match=r"must return an array of shape \(n, O\)"):
        empirical_nngp(lambda p, x: apply(p, x)[:, 0], params, x1)
    with pytest.raises(InvalidParameterError, match="batch_size"):
        empirical_nngp(apply, params, x1, batch_size=0)
