"""ntkit.stax layers: the kernel_fn interface, closed forms against quadrature, finite networks, bad input."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntkit import stax

RNG = np.random.default_rng(11)
X = RNG.normal(size=(3, 4))
Z = RNG.normal(size=(2, 4)) * 1.2
IMG = RNG.normal(size=(2, 4, 3, 2))


def _mlp(act):
    return stax.serial(stax.Dense(8, W_std=1.2, b_std=0.3), act, stax.Dense(1, W_std=0.9, b_std=0.1))


# ----------------------------------------------------------------------------------------------
# kernel_fn interface


def test_get_variants_and_state():
    _, _, kernel_fn = _mlp(stax.Relu())
    state = kernel_fn(X, Z)
    assert isinstance(state, stax.KernelState)
    assert state.nngp.shape == (3, 2) and state.cov1.shape == (3,) and state.cov2.shape == (2,)
    assert kernel_fn(X, None).cov2 is None
    ntk = kernel_fn(X, Z, "ntk")
    np.testing.assert_array_equal(np.asarray(ntk), np.asarray(state.ntk))
    both = kernel_fn(X, Z, ("ntk", "nngp"))
    assert both._fields == ("ntk", "nngp")
    np.testing.assert_array_equal(np.asarray(both.nngp), np.asarray(state.nngp))
    assert kernel_fn(X, Z, "NNGP").shape == (3, 2)
    with pytest.raises(ValueError, match="not a kernel field"):
        kernel_fn(X, Z, "foo")
    with pytest.raises(ValueError, match="unique"):
        kernel_fn(X, Z, ("ntk", "ntk"))


def test_state_can_be_fed_back_and_jit():
    first = stax.serial(stax.Conv(4, (2, 2), padding="SAME", b_std=0.1), stax.Relu(), stax.Conv(4, (3, 3)))
    second = stax.serial(stax.Relu(), stax.GlobalAvgPool(), stax.Dense(1))
    whole = stax.serial(first, second)
    k = first[2](IMG, None)
    assert k.is_reversed is False  # two convolutions
    np.testing.assert_allclose(second[2](k, get="ntk"), whole[2](IMG, None, "ntk"), rtol=1e-13)
    jitted = jax.jit(whole[2], static_argnames="get")
    np.testing.assert_allclose(jitted(IMG, IMG[:1], get="ntk"), whole[2](IMG, IMG[:1], "ntk"), rtol=1e-12)


def test_output_layout_follows_neural_tangents():
    """Full spatial covariances (n1, n2, H, H, W, W); diagonal_spatial=True gives (n1, n2, H, W)."""
    _, _, kernel_fn = stax.serial(stax.Conv(4, (2, 2), padding="SAME"), stax.Relu(), stax.Conv(4, (2, 2)))
    assert kernel_fn(IMG, None, "nngp").shape == (2, 2, 3, 3, 2, 2)
    assert kernel_fn(IMG, None, "nngp", diagonal_spatial=True).shape == (2, 2, 3, 2)
    full = np.asarray(kernel_fn(IMG, None, "nngp"))
    diag = np.asarray(kernel_fn(IMG, None, "nngp", diagonal_spatial=True))
    np.testing.assert_allclose(np.einsum("abhhww->abhw", full), diag, rtol=1e-13)
    _, _, gap = stax.serial(stax.Conv(4, (2, 2)), stax.Relu(), stax.GlobalAvgPool())
    with pytest.raises(ValueError, match="diagonal_spatial"):
        gap(IMG, None, "nngp", diagonal_spatial=True)
    np.testing.assert_allclose(gap(IMG, None, "nngp", diagonal_batch=False), gap(IMG, None, "nngp"), rtol=1e-13)


def test_repeat_equals_serial_and_params_stack():
    block = stax.serial(stax.Dense(6, b_std=0.2), stax.Erf())
    init_r, apply_r, k_r = stax.serial(stax.Dense(6), stax.repeat(block, 3), stax.Dense(1))
    _, _, k_s = stax.serial(stax.Dense(6), block, block, block, stax.Dense(1))
    np.testing.assert_allclose(k_r(X, Z, "ntk"), k_s(X, Z, "ntk"), rtol=1e-13)
    shape, params = init_r(jax.random.PRNGKey(0), (-1, 4))
    assert shape == (-1, 1) and apply_r(params, X).shape == (3, 1)


# ----------------------------------------------------------------------------------------------
# closed forms against Gauss-Hermite quadrature (64 x 64 nodes): exact for polynomials, and the
# error of analytic integrands is far below 1e-9 at these variances (< 3)


@pytest.mark.parametrize("layer, fn, rtol", [
    (lambda: stax.Erf(1.3, 0.7, 0.2), lambda x: 1.3 * jax.scipy.special.erf(0.7 * x) + 0.2, 1e-9),
    (lambda: stax.Gelu(), lambda x: jax.nn.gelu(x, approximate=False), 1e-9),
    (lambda: stax.Sin(1.2, 0.8, 0.3), lambda x: 1.2 * jnp.sin(0.8 * x + 0.3), 1e-9),
    (lambda: stax.Exp(0.8, 0.5), lambda x: 0.8 * jnp.exp(0.5 * x), 1e-9),
    (lambda: stax.Gaussian(1.1, -0.6), lambda x: 1.1 * jnp.exp(-0.6 * x * x), 1e-9),
    (lambda: stax.Polynomial([0.5, -1.0, 0.3, 0.2]), lambda x: 0.5 - x + 0.3 * x ** 2 + 0.2 * x ** 3, 1e-9),
    # non-smooth: quadrature converges slowly (kink at 0); 2e-3 at 64 nodes
    (lambda: stax.RectifiedMonomial(2), lambda x: jnp.where(x >= 0, x * x, 0.0), 2e-3),
    (lambda: stax.LeakyRelu(0.1), lambda x: jnp.where(x >= 0, x, 0.1 * x), 2e-2),
], ids=["erf", "gelu", "sin", "exp", "gaussian", "polynomial", "rectmono2", "leakyrelu"])
def test_closed_form_matches_quadrature(layer, fn, rtol):
    rng = np.random.default_rng(5)
    x = rng.normal(size=(3, 4))
    z = rng.normal(size=(2, 4))
    _, _, exact = _mlp(layer())
    _, _, quad = _mlp(stax.ElementwiseNumerical(fn, deg=64))
    for get in ("nngp", "ntk"):
        e = np.asarray(exact(x, z, get))
        q = np.asarray(quad(x, z, get))
        np.testing.assert_allclose(e, q, rtol=rtol, atol=rtol * np.abs(q).max())


def test_hermite_and_elementwise():
    # Hermite: c^n on unit-variance (LayerNorm) inputs
    _, _, k = stax.serial(stax.Dense(8), stax.LayerNorm(), stax.Hermite(3))
    _, _, k0 = stax.serial(stax.Dense(8), stax.LayerNorm())
    np.testing.assert_allclose(k(X, Z, "nngp"), np.asarray(k0(X, Z, "nngp")) ** 3, rtol=1e-13)
    # Elementwise with autodiff derivative equals Erf's closed form
    def erf_dual(c, q1, q2):
        return 2 / jnp.pi * jnp.arcsin(2 * c / jnp.sqrt((1 + 2 * q1) * (1 + 2 * q2)))

    _, _, k_el = _mlp(stax.Elementwise(fn=jax.scipy.special.erf, nngp_fn=erf_dual))
    _, _, k_erf = _mlp(stax.Erf())
    np.testing.assert_allclose(k_el(X, Z, "ntk"), k_erf(X, Z, "ntk"), rtol=1e-12)


def test_dropout_kernel_and_apply():
    _, apply_fn, kernel_fn = stax.serial(stax.Dense(4), stax.Dropout(0.5))
    base = stax.Dense(4)[2](X, None, "nngp")
    k = kernel_fn(X, None, "nngp")
    np.testing.assert_allclose(np.diag(k), 2 * np.diag(base), rtol=1e-14)
    np.testing.assert_allclose(k - np.diag(np.diag(k)), base - np.diag(np.diag(base)), rtol=1e-14)
    init_fn = stax.serial(stax.Dense(4), stax.Dropout(0.5))[0]
    _, params = init_fn(jax.random.PRNGKey(0), X.shape)
    with pytest.raises(ValueError, match="rng"):
        apply_fn(params, X)
    assert apply_fn(params, X, rng=jax.random.PRNGKey(1)).shape == (3, 4)


# ----------------------------------------------------------------------------------------------
# finite networks


def test_init_apply_shapes_images():
    """init_fn's output shape and apply_fn's output agree through the image layers (both parameterisations)."""
    init_fn, apply_fn, _ = stax.serial(
        stax.Conv(5, (2, 2), padding="SAME", b_std=0.1), stax.Relu(),
        stax.ConvLocal(3, (2, 1), b_std=0.1, parameterization="standard"), stax.AvgPool((2, 1), padding="CIRCULAR"),
        stax.Conv(4, (2, 2), padding="CIRCULAR", parameterization="standard"), stax.FanOut(2), stax.parallel(stax.Identity(), stax.Dense(4)), stax.FanInSum(),
        stax.LayerNorm(axis=(1, 2, 3)), stax.GlobalAvgPool(), stax.Dense(3, parameterization="standard"))
    shape, params = init_fn(jax.random.PRNGKey(0), IMG.shape)
    out = jax.jit(apply_fn)(params, IMG)
    assert shape == out.shape == (2, 3)
    _, apply_flat, _ = stax.Flatten()
    assert apply_flat((), IMG).shape == (2, 24)


def test_pool_apply_matches_kernel_layout():
    """AvgPool(SAME, normalize_edges) applied to a constant image is constant (edge-normalised)."""
    _, apply_fn, _ = stax.AvgPool((3, 3), padding="SAME", normalize_edges=True)
    np.testing.assert_allclose(apply_fn((), np.ones((1, 4, 3, 1))), 1.0, rtol=1e-12)
    _, apply_fn, _ = stax.AvgPool((3, 3), padding="SAME")
    assert float(apply_fn((), np.ones((1, 4, 3, 1)))[0, 0, 0, 0]) == pytest.approx(4 / 9)


# ----------------------------------------------------------------------------------------------
# bad input


@pytest.mark.parametrize("make, exc, match", [
    (lambda: stax.Dense(0), ValueError, "out_dim"),
    (lambda: stax.Dense(3, W_std="x"), (ValueError, TypeError), "W_std"),
    (lambda: stax.Dense(3, parameterization="mup"), ValueError, "parameterization"),
    (lambda: stax.Conv(3, (2, 2), padding="FULL"), ValueError, "padding"),
    (lambda: stax.Conv(3, (0, 2)), ValueError, "filter_shape"),
    (lambda: stax.AvgPool((2, 2), strides=(1,)), ValueError, "strides"),
    (lambda: stax.Dropout(0.0), ValueError, "rate"),
    (lambda: stax.Dropout(0.5, mode="eval"), ValueError, "mode"),
    (lambda: stax.Monomial(6), ValueError, "degree"),
    (lambda: stax.ElementwiseNumerical(np.tanh, deg=0), ValueError, "deg"),
    (lambda: stax.ElementwiseNumerical("tanh", deg=5), TypeError, "fn"),
    (lambda: stax.Elementwise(), ValueError, "fn"),
    (lambda: stax.Polynomial([1.0, np.inf]), ValueError, "coef"),
    (lambda: stax.FanOut(0), ValueError, "num"),
    (lambda: stax.repeat(stax.Relu(), -1), ValueError, "n"),
    (lambda: stax.serial(stax.Dense(2), "relu"), TypeError, "layers"),
    (lambda: stax.as_kernel(lambda x: x), TypeError, "kernel_fn"),
    (lambda: stax.StaxKernel(stax.Dense(1)[2], get="cov1")._validated(), ValueError, "get"),
])
def test_bad_parameters(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


def test_bad_inputs():
    _, _, kernel_fn = _mlp(stax.Relu())
    with pytest.raises(TypeError, match="x1"):
        kernel_fn([[1.0, 2.0, 3.0, 4.0]], None)
    with pytest.raises(TypeError, match="x2"):
        kernel_fn(X, 3.0)
    with pytest.raises(ValueError, match="same shape"):
        kernel_fn(X, np.ones((2, 5)))
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        kernel_fn(np.ones(4), None)
    with pytest.raises(ValueError, match="Gaussian"):
        stax.Relu()[2](X, None)
    with pytest.raises(ValueError, match="spatial"):
        stax.Conv(2, (2, 2))[2](X, None)
    with pytest.raises(NotImplementedError, match="Gaussian"):
        stax.serial(stax.Dense(2), stax.Relu(), stax.FanOut(2), stax.FanInSum())[2](X, None)
