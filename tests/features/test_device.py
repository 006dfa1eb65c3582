"""ntkit.features on jax devices: jax in → jax out on the same device, the device path equal to the
host path, ``device=`` for numpy data, no implicit host transfers inside a transform.

Tolerances (the table of tests/conftest.py, "same maths, different summation order"):

* float64, rtol 1e-10 of the largest feature: the device map is the host map's formula with jax's
  matmul (another summation order, ~d·eps relative) and jax's cos/sin/exp, whose absolute error
  grows like |argument|·eps — at the |argument| ≲ 10 of these data that is ~1e-14, far below 1e-10;
* float32, rtol 1e-4 of the largest feature: the same two effects with eps = 6e-8 (~1e-6), plus,
  for the maps that the host forms in float64 and rounds (NTK, positive, universal, Nyström is
  float64 on both), the float32 arithmetic of the device path: a few eps per operation over at
  most ~10 operations per feature and exponents |E| ≲ 10 (exp turns an absolute error of E into
  a relative one), i.e. ≲ 1e-5.

Step features (arc-cosine order 0, the NTK's Θ(Wφ)) are discontinuous: a pre-activation within
rounding of 0 could flip. The data and seeds are fixed; ``_min_preactivation`` checks that every
pre-activation of the order-0 map is far from 0 on these data, so no flip is possible.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.utils.estimator_checks import check_estimator

import ntkit
from ntkit._validation import InvalidParameterError
from ntkit.features import (ArcCosineFeatures, NTKRandomFeatures, Nystroem, PositiveRandomFeatures,
                            RandomFourierFeatures, UniversalRandomFeatures, approximation_error)
from ntkit.kernels import RBF

jax = pytest.importorskip("jax")
jnp = jax.numpy

RTOL = {np.dtype(np.float64): 1e-10, np.dtype(np.float32): 1e-4}


def _has_gpu():
    try:
        return bool(jax.devices("gpu"))
    except RuntimeError:
        return False


DEVICES = ["cpu", pytest.param("gpu", marks=[pytest.mark.gpu, pytest.mark.skipif(not _has_gpu(),
                                                                                   reason="jax sees no GPU")])]

MAPS = [RandomFourierFeatures(lengthscale=2.0, n_components=20, random_state=0),
        RandomFourierFeatures("matern", n_components=21, orthogonal=True, random_state=0),
        RandomFourierFeatures("laplace", lengthscale=3.0, n_components=40, structured=True, random_state=0),
        PositiveRandomFeatures(16, random_state=0),
        PositiveRandomFeatures(17, kernel="gaussian", kind="hyperbolic", random_state=0),
        ArcCosineFeatures(0, depth=2, n_components=16, random_state=0),
        ArcCosineFeatures(2, n_components=16, random_state=0),
        NTKRandomFeatures(2, n_components=33, bias_std=0.5, random_state=0),
        Nystroem(RBF(1.5), n_components=12, random_state=0),
        Nystroem(n_components=12, sampling="rls", random_state=0),
        UniversalRandomFeatures(n_components=16, random_state=0),
        UniversalRandomFeatures("erf", n_components=24, bound=1.0, random_state=0),
        UniversalRandomFeatures("relu", n_components=24, random_state=0)]
IDS = [f"{type(e).__name__}-{i}" for i, e in enumerate(MAPS)]


def _data(dtype, n=23, d=17):  # d = 17 > 16: the structured map really uses Hadamard blocks (padded to 32)
    return (0.25 * np.random.default_rng(3).normal(size=(n, d))).astype(dtype)


def _x64(dtype):
    return jax.enable_x64(np.dtype(dtype) == np.float64)


def _close(actual, desired, dtype):
    actual, desired = np.asarray(actual, np.float64), np.asarray(desired, np.float64)
    r = RTOL[np.dtype(dtype)]
    np.testing.assert_allclose(actual, desired, rtol=r, atol=r * np.abs(desired).max())


def _min_preactivation(est, X):
    F, low = np.asarray(X, np.float64), np.inf
    for W in est.weights_:
        G = F @ W.T
        low = min(low, np.abs(G).min())
        F = (G > 0) * np.sqrt(2.0 / W.shape[0])
    return low


def test_order0_data_are_far_from_the_step():
    est = clone(MAPS[5]).fit(_data(np.float64))
    assert _min_preactivation(est, _data(np.float64)) > 1e-4  # float32 rounding moves them by ~1e-7


@pytest.mark.parametrize("est", MAPS, ids=IDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_jax_in_jax_out_equals_host(est, dtype):
    X = _data(dtype)
    host = clone(est).fit(X)
    F = host.transform(X)
    with _x64(dtype):
        Xj = jnp.asarray(X)
        Fj = host.transform(Xj)  # fitted on numpy, applied to jax
        assert isinstance(Fj, jax.Array) and Fj.dtype == dtype and Fj.devices() == Xj.devices()
        assert Fj.shape == F.shape
        fitted_on_jax = clone(est).fit(Xj)  # same generator, same draw: the same function
        Fjj = fitted_on_jax.transform(Xj)
    _close(Fj, F, dtype)
    _close(Fjj, F, dtype)
    assert fitted_on_jax.n_features_in_ == X.shape[1]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("est,dtype", [(MAPS[0], np.float32), (MAPS[2], np.float64), (MAPS[4], np.float32),
                                       (MAPS[7], np.float64), (MAPS[8], np.float32), (MAPS[12], np.float64)],
                         ids=lambda e: getattr(e, "__name__", type(e).__name__))
def test_device_parameter_numpy_in_numpy_out(est, dtype, device):
    X = _data(dtype)
    F = clone(est).fit(X).transform(X)
    Fd = clone(est).set_params(device=device).fit(X).transform(X)
    assert type(Fd) is np.ndarray and Fd.dtype == dtype
    _close(Fd, F, dtype)


def test_auto_keeps_numpy_on_the_host_unless_configured(monkeypatch):
    X = _data(np.float64)
    est = clone(MAPS[0]).fit(X)
    calls = []
    orig = type(est)._map_device
    monkeypatch.setattr(type(est), "_map_device", lambda self, *a: calls.append(1) or orig(self, *a))
    est.transform(X)
    assert not calls  # "auto" + numpy: the host map
    with ntkit.config_context(device="cpu"):
        F = est.transform(X)
    assert calls and type(F) is np.ndarray and F.dtype == np.float64


@pytest.mark.parametrize("est", [e for e in MAPS if not isinstance(e, Nystroem)], ids=lambda e: type(e).__name__)
def test_transform_makes_no_implicit_transfers(est):
    X = jax.device_put(_data(np.float32))
    est = clone(est).fit(X)
    est.transform(X)  # first call: fitted arrays moved to the device (explicit device_put) and compiled
    with jax.transfer_guard("disallow"):
        F = est.transform(X)
    assert isinstance(F, jax.Array)


@pytest.mark.xfail(reason="ntkit.ops.gram on jax arrays still does eager scalar host→device transfers "
                          "(the kernels' _prepare); passes once the primitive is transfer-clean", strict=False)
def test_nystroem_transform_makes_no_implicit_transfers():
    X = jax.device_put(_data(np.float32))
    est = clone(MAPS[8]).fit(X)
    est.transform(X)
    with jax.transfer_guard("disallow"):
        est.transform(X)


def test_fwht_jax_is_the_host_transform():
    from ntkit.features._fourier import _hadamard_blocks, _hadamard_blocks_jax, fwht, fwht_jax

    a = np.random.default_rng(0).normal(size=(3, 5, 64))
    with jax.enable_x64(True):
        # same butterflies in the same order: bit-identical sums
        np.testing.assert_array_equal(np.asarray(jax.jit(fwht_jax)(jnp.asarray(a))), fwht(a.copy()))
        signs = np.random.default_rng(1).choice([-1.0, 1.0], size=(2, 3, 32))
        Xs = np.random.default_rng(2).normal(size=(4, 20))
        # the host may use the native extension (another summation order): rtol 1e-10 (see the module notes)
        _close(jax.jit(_hadamard_blocks_jax)(jnp.asarray(Xs), jnp.asarray(signs)), _hadamard_blocks(Xs, signs),
               np.float64)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_approximation_error_accepts_jax(dtype):
    X = _data(dtype, n=40, d=4)
    est = RandomFourierFeatures(n_components=30, random_state=0)
    host = approximation_error(clone(est), RBF(1.0), X)
    with _x64(dtype):
        dev = approximation_error(clone(est), RBF(1.0), jnp.asarray(X))
    # both compute the norms in float64; the features agree to the table's tolerance (float64: 1e-10;
    # float32: ~1e-7 measured, since the device forms float32 features with its own matmul), and a
    # relative error of the errors ≈ (feature error)·‖K‖/‖K − ΦΦᵀ‖ ≈ 10× that on these data
    np.testing.assert_allclose(dev, host, rtol=10 * RTOL[np.dtype(dtype)])


def test_kernel_estimate_and_pickle_after_a_device_transform():
    X = _data(np.float32)
    est = clone(MAPS[0]).fit(X)
    K = est.kernel_estimate(jnp.asarray(X), jnp.asarray(X[:5]))
    assert isinstance(K, jax.Array) and K.shape == (len(X), 5) and K.dtype == np.float32
    _close(K, est.kernel_estimate(X, X[:5]), np.float32)
    again = pickle.loads(pickle.dumps(est))
    assert "_on_device" not in again.__dict__  # device buffers are a cache, not state
    _close(again.transform(jnp.asarray(X)), est.transform(X), np.float32)


def test_transform_weights_on_device():
    X, W = _data(np.float64, d=4), 0.3 * np.random.default_rng(5).normal(size=(6, 4))
    est = UniversalRandomFeatures("sin", n_components=40, random_state=0).fit(X, weights=W)
    with jax.enable_x64(True):
        P = est.transform_weights(jnp.asarray(W))
        assert isinstance(P, jax.Array)
    _close(P, est.transform_weights(W), np.float64)


def test_device_errors_name_the_argument():
    X = _data(np.float32)
    with pytest.raises(InvalidParameterError, match="'device' parameter of RandomFourierFeatures"):
        RandomFourierFeatures(device="tpu").fit(X)
    est = clone(MAPS[0]).fit(X)
    with pytest.raises(TypeError, match="X must have dtype float32 or float64"):
        est.transform(jnp.ones((3, X.shape[1]), dtype=jnp.int32))
    with pytest.raises(ValueError, match="X contains NaN"):
        est.transform(jnp.full((3, X.shape[1]), jnp.nan, dtype=jnp.float32))
    with pytest.raises(ValueError, match="X has 3 features, but 17 are expected"):
        est.transform(jnp.ones((2, 3), dtype=jnp.float32))
    with pytest.raises(ValueError, match="X must be a 2-D array|Expected 2D array"):
        est.transform(jnp.ones(3, dtype=jnp.float32))
    if not _has_gpu():
        with pytest.raises(RuntimeError, match="device='gpu' was requested"):
            RandomFourierFeatures(device="gpu").fit(X)


# a subset keeps the file fast (each check compiles the map for new shapes); the device path of the
# others differs only in the jitted formula, which the equality tests above cover
CHECKED = [RandomFourierFeatures("laplace", n_components=21, structured=True, random_state=0, device="cpu"),
           ArcCosineFeatures(1, depth=2, n_components=16, random_state=0, device="cpu"),
           Nystroem(n_components=10, random_state=0, device="cpu"),
           UniversalRandomFeatures("sin", n_components=16, bound=1.0, random_state=0, device="cpu")]


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.SkipTestWarning")
@pytest.mark.parametrize("est", CHECKED, ids=lambda e: type(e).__name__)
def test_check_estimator_on_a_device(est):
    check_estimator(est)
