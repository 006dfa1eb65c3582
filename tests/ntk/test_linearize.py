"""``linearize`` and ``taylor_expand``: exact limits, the order of the remainder, neural-tangents' values.

Golden values: ``tests/golden/finite_nt.npz`` (``make_golden_finite.py``): neural-tangents'
``linearize`` / ``taylor_expand`` (degrees 2 and 3) of four networks around stored parameters,
evaluated at stored shifted parameters, float64, compared to 1e-10 relative to max|f|.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ntkit
from ntkit import InvalidParameterError, linearize, taylor_expand
from ntkit.ntk.models import mlp
from tests.conftest import assert_close

from ._finite_golden import case, names


def _add(p, dp, t=1.0):
    return jax.tree_util.tree_map(lambda a, b: a + t * b, p, dp)


@pytest.mark.parametrize("name", names())
def test_matches_neural_tangents(name):
    c = case(name)
    p0, dp = c.params(0), c.params("shift")
    p1 = _add(p0, dp)
    assert_close(linearize(c.apply, p0)(p1, c.x1), c.g["linearize"], np.float64)
    assert_close(taylor_expand(c.apply, p0, 2)(p1, c.x1), c.g["taylor2"], np.float64)
    if name == "mlp_2x3":  # (degree 3: 8 nested forward passes; once)
        assert_close(taylor_expand(c.apply, p0, 3)(p1, c.x1), c.g["taylor3"], np.float64)
    assert_close(c.apply(p1, c.x1), c.g["f_shifted"], np.float64)


@pytest.fixture(scope="module")
def net():
    _, apply = mlp((3, 8, 8, 2), activation="tanh", dtype=jnp.float64)
    rng = np.random.default_rng(0)
    shapes = [(3, 8), (8, 8), (8, 2)]
    with jax.enable_x64(True):  # (a module fixture runs before the per-test x64 scope)
        params = [{"W": jnp.asarray(rng.normal(size=s)), "b": jnp.asarray(rng.normal(size=s[1]))} for s in shapes]
        dp = [{"W": jnp.asarray(0.1 * rng.normal(size=s)), "b": jnp.asarray(0.1 * rng.normal(size=s[1]))}
              for s in shapes]
    return apply, params, dp, rng.normal(size=(5, 3))


def test_linearize_is_f_plus_its_jvp(net):
    apply, params, dp, x = net
    f_lin = linearize(apply, params)
    np.testing.assert_array_equal(f_lin(params, x), apply(params, x))  # exactly f at the expansion point
    _, jvp = jax.jvp(lambda p: apply(p, x), (params,), (dp,))
    np.testing.assert_allclose(f_lin(_add(params, dp), x), apply(params, x) + jvp, rtol=1e-14, atol=1e-15)
    # linear in the shift, and jit-able
    half = jax.jit(f_lin)(_add(params, dp, 0.5), x)
    np.testing.assert_allclose(half - apply(params, x), 0.5 * (f_lin(_add(params, dp), x) - apply(params, x)),
                               rtol=1e-12, atol=1e-14)


def test_taylor_orders(net):
    apply, params, dp, x = net
    p1 = _add(params, dp)
    np.testing.assert_array_equal(taylor_expand(apply, params, 0)(p1, x), apply(params, x))
    np.testing.assert_allclose(taylor_expand(apply, params, 1)(p1, x), linearize(apply, params)(p1, x),
                               rtol=1e-14, atol=1e-15)
    # The remainder of the degree-k polynomial is O(|dp|^(k+1)): halving dp divides it by ~2^(k+1).
    for degree in (1, 2):
        errs = [float(jnp.max(jnp.abs(taylor_expand(apply, params, degree)(_add(params, dp, t), x)
                                      - apply(_add(params, dp, t), x)))) for t in (1.0, 0.5, 0.25)]
        for a, b in itertools.pairwise(errs):
            assert 2 ** (degree + 1) / 1.5 < a / b < 2 ** (degree + 1) * 1.5, (degree, errs)
    # and each degree is closer than the last
    err = [float(jnp.max(jnp.abs(taylor_expand(apply, params, k)(p1, x) - apply(p1, x)))) for k in (1, 2, 3)]
    assert err[0] > err[1] > err[2]


def test_pytree_outputs_and_kwargs():
    def f(p, x, *, scale=1.0):
        return {"a": scale * jnp.sin(p["w"] * x), "b": (p["w"] ** 2 * x, p["v"])}

    params = {"w": jnp.array(0.3), "v": jnp.array([1.0, 2.0])}
    new = {"w": jnp.array(0.35), "v": jnp.array([1.5, 2.0])}
    out = linearize(f, params)(new, 2.0, scale=3.0)
    np.testing.assert_allclose(out["a"], 3 * (np.sin(0.6) + np.cos(0.6) * 2.0 * 0.05), rtol=1e-6)
    np.testing.assert_allclose(out["b"][0], 0.09 * 2 + 2 * 0.3 * 0.05 * 2, rtol=1e-6)
    np.testing.assert_allclose(out["b"][1], [1.5, 2.0])
    quad = taylor_expand(lambda p, x: p["w"] ** 2 * x, params, 2)(new, 2.0)  # a quadratic: exact at degree 2
    np.testing.assert_allclose(quad, 0.35**2 * 2.0, rtol=1e-6)


def test_bad_input(net):
    apply, params, _, x = net
    with pytest.raises(InvalidParameterError, match="'degree' parameter of taylor_expand"):
        taylor_expand(apply, params, -1)
    with pytest.raises(InvalidParameterError, match="'degree'"):
        taylor_expand(apply, params, 1.5)
    with pytest.raises(TypeError, match="f must be a callable"):
        linearize("apply", params)
    with pytest.raises(ValueError, match="structure of the expansion point"):
        linearize(apply, params)(params[:1], x)
    assert ntkit.linearize is ntkit.ntk.linearize
