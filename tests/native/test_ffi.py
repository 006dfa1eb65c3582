"""The XLA FFI custom calls of ntkit_native (``ntkit_native._jax_ffi``) on the CPU.

The CPU handlers call the very cores behind ``ntkit_native.gram`` / ``kernel_matvec`` /
``batched_gram``, so the custom call must equal the numpy entry points bit for bit
(stronger than the suite's "same maths" tolerance), eagerly, under ``jax.jit`` and
under ``jax.vmap`` (one custom call for the batch). The numpy entry points themselves
are checked against the slow oracle in test_native.py. GPU cases live in
test_cuda_engine.py.
"""

import numpy as np
import pytest

import ntkit_native as nn

if not nn.is_available():
    pytest.skip("ntkit_native._C is not built", allow_module_level=True)
jax = pytest.importorskip("jax")
import jax.numpy as jnp  # noqa: E402

from ntkit_native import _jax_ffi as F  # noqa: E402

if not F.available():
    pytest.skip("ntkit_native was built without the XLA FFI targets", allow_module_level=True)

DTYPES = [pytest.param(np.float64, id="f64"), pytest.param(np.float32, id="f32")]


def _params(kernel):
    return {"rbf": {"lengthscale": 1.7}, "laplace": {"lengthscale": 2.0}, "matern12": {"lengthscale": 2.0},
            "matern32": {"lengthscale": 1.3}, "matern52": {"lengthscale": 2.5},
            "polynomial": {"degree": 2, "gamma": 0.3, "coef0": 0.5},
            "relu_nngp": {"depth": 2, "weight_std": 1.2, "bias_std": 0.1},
            "relu_ntk": {"depth": 3, "weight_std": 1.1, "bias_std": 0.2}}.get(kernel)


def _x64(dtype):
    return jax.enable_x64(np.dtype(dtype) == np.float64)


def _eq(a, b):
    a = np.asarray(a)
    assert a.dtype == b.dtype and a.shape == b.shape
    np.testing.assert_array_equal(a, b)  # the same core: the same bits


def test_registration_and_info():
    plats = F.register()
    assert plats == F.register() and "cpu" in plats  # idempotent
    i = nn.info()
    assert i["ffi"] is True and "cpu" in i["ffi_platforms"] and tuple(i["ffi_platforms"]) == F.platforms()
    assert set(nn._require().ffi_targets("cpu")) == set(F.TARGETS)
    allt = nn._require().ffi_targets()
    assert tuple(allt) == F.platforms() and all(set(v) == set(F.TARGETS) for v in allt.values())
    with pytest.raises(ValueError, match="platform 'tpu'"):
        nn._require().ffi_targets("tpu")


@pytest.mark.parametrize("dtype", DTYPES)
def test_gram_and_matvec_equal_the_native_path(dtype):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((37, 5)).astype(dtype)  # odd sizes, not multiples of any tile
    Z = rng.standard_normal((23, 5)).astype(dtype)
    v = rng.standard_normal((23, 3)).astype(dtype)
    u = rng.standard_normal(37).astype(dtype)
    with _x64(dtype):
        Xj, Zj, vj, uj = map(jnp.asarray, (X, Z, v, u))
        for k in nn.KERNEL_IDS:
            p = _params(k)
            _eq(F.gram(Xj, Zj, k, p), nn.gram(X, Z, k, p))
            S = np.asarray(F.gram(Xj, None, k, p))
            _eq(S, nn.gram(X, None, k, p))
            np.testing.assert_array_equal(S, S.T)
            _eq(F.kernel_matvec(Xj, Zj, vj, k, p), nn.kernel_matvec(X, Z, v, k, p))
            _eq(F.kernel_matvec(Xj, None, uj, k, p), nn.kernel_matvec(X, None, u, k, p))  # exact diagonal
        # under jit (parameters closed over: they are attributes of the custom call)
        p = _params("matern32")
        g = jax.jit(lambda a, b: F.gram(a, b, "matern32", p))
        mv = jax.jit(lambda a, w: F.kernel_matvec(a, None, w, "matern32", p))
        _eq(g(Xj, Zj), nn.gram(X, Z, "matern32", p))
        _eq(mv(Xj, uj), nn.kernel_matvec(X, None, u, "matern32", p))


def test_symmetric_exact_diagonal():
    # duplicated points: the expansion |x|^2 + |z|^2 - 2<x,z> cancels; the custom call keeps the
    # guard and the exact diagonal of the native path
    rng = np.random.default_rng(1)
    X = np.repeat(rng.standard_normal((9, 4)) * 30.0, 2, axis=0)
    v = rng.standard_normal(18)
    with jax.enable_x64(True):
        S = np.asarray(F.gram(jnp.asarray(X), None, "rbf", {"lengthscale": 3.0}))
        np.testing.assert_array_equal(np.diag(S), 1.0)
        np.testing.assert_array_equal(S[::2, 1::2].diagonal(), 1.0)  # the duplicates: exact distance 0
        ref = np.exp(-((X[:, None] - X[None]) ** 2).sum(-1) / 18.0) @ v
        np.testing.assert_allclose(np.asarray(F.kernel_matvec(jnp.asarray(X), None, jnp.asarray(v), "rbf",
                                                              {"lengthscale": 3.0})), ref, rtol=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
def test_batched_gram_equals_the_native_path(dtype):
    rng = np.random.default_rng(2)
    A = rng.standard_normal((3, 11, 7)).astype(dtype)
    B = rng.standard_normal((3, 9, 7)).astype(dtype)
    with _x64(dtype):
        Aj, Bj = jnp.asarray(A), jnp.asarray(B)
        for red in ("none", "sum"):
            _eq(F.batched_gram(Aj, Bj, red), nn.batched_gram(A, B, red))
            _eq(F.batched_gram(Aj, None, red), nn.batched_gram(A, None, red))
        _eq(jax.jit(lambda a: F.batched_gram(a, None, "sum"))(Aj), nn.batched_gram(A, None, "sum"))


@pytest.mark.parametrize("dtype", DTYPES)
def test_vmap_is_one_batched_call(dtype):
    rng = np.random.default_rng(3)
    Xs = rng.standard_normal((4, 10, 3)).astype(dtype)
    Z = rng.standard_normal((6, 3)).astype(dtype)
    vs = rng.standard_normal((4, 6, 2)).astype(dtype)
    p = {"lengthscale": 1.5}
    with _x64(dtype):
        Xj, Zj, vj = jnp.asarray(Xs), jnp.asarray(Z), jnp.asarray(vs)
        # batched X, shared Z (broadcast by the handler, no copy)
        G = jax.vmap(lambda x: F.gram(x, Zj, "rbf", p))(Xj)
        # shared X and Z, batched v (in_axes on v only), under jit
        M = jax.jit(jax.vmap(lambda w: F.kernel_matvec(Xj[0], Zj, w, "rbf", p)))(vj)
        # nested vmap: (2, 2) batch of symmetric matvecs
        S = jax.vmap(jax.vmap(lambda x: F.kernel_matvec(x, None, x[:, 0], "laplace")))(Xj.reshape(2, 2, 10, 3))
        # batched batched_gram
        Bg = jax.vmap(lambda a: F.batched_gram(a, None, "sum"))(Xj.reshape(2, 2, 10, 3))
        lowered = jax.jit(jax.vmap(lambda x: F.gram(x, Zj, "rbf", p))).lower(Xj).as_text()
        assert lowered.count("ntkit_gram") == 1  # one custom call for the whole batch
    for i in range(4):
        _eq(G[i], nn.gram(Xs[i], Z, "rbf", p))
        _eq(M[i], nn.kernel_matvec(Xs[0], Z, vs[i], "rbf", p))
        _eq(S.reshape(4, 10)[i], nn.kernel_matvec(Xs[i], None, np.ascontiguousarray(Xs[i][:, 0]), "laplace"))
    for i in range(2):
        _eq(Bg[i], nn.batched_gram(Xs[2 * i:2 * i + 2], None, "sum"))


def test_empty_and_degenerate_shapes():
    for dt in (np.float32, np.float64):
        with _x64(dt):
            X = jnp.zeros((0, 3), dt)
            Z = jnp.ones((4, 3), dt)
            assert F.gram(X, Z).shape == (0, 4) and F.gram(Z, X).shape == (4, 0) and F.gram(X).shape == (0, 0)
            assert F.gram(X).dtype == dt
            assert np.asarray(F.kernel_matvec(Z, X, jnp.zeros(0, dt))).tolist() == [0, 0, 0, 0]
            assert F.kernel_matvec(X, Z, jnp.ones((4, 2), dt)).shape == (0, 2)
            assert F.kernel_matvec(Z, Z, jnp.ones((4, 0), dt)).shape == (4, 0)
            r = F.batched_gram(jnp.zeros((0, 3, 2), dt), jnp.zeros((0, 4, 2), dt), "sum")
            assert r.shape == (3, 4) and not np.asarray(r).any() and r.dtype == dt
            assert F.batched_gram(jnp.zeros((0, 3, 2), dt)).shape == (0, 3, 3)
            assert not np.asarray(F.batched_gram(jnp.zeros((2, 3, 0), dt))).any()
            # zero features: the handler runs (k(x, z) = k(0, 0), e.g. 1 for RBF)
            X0, Z0 = np.zeros((4, 0), dt), np.zeros((3, 0), dt)
            for k in ("rbf", "relu_ntk", "polynomial"):
                _eq(F.gram(jnp.asarray(X0), jnp.asarray(Z0), k), nn.gram(X0, Z0, k))
                _eq(F.kernel_matvec(jnp.asarray(X0), None, jnp.ones(4, dt), k),
                    nn.kernel_matvec(X0, None, np.ones(4, dt), k))
            # one row
            x1 = np.ones((1, 2), dt)
            _eq(F.gram(jnp.asarray(x1), None, "rbf"), nn.gram(x1, None, "rbf"))


def test_errors_name_the_argument():
    X = jnp.ones((5, 3), jnp.float32)
    Z = jnp.ones((4, 3), jnp.float32)
    with pytest.raises(ValueError, match="X must be 2-D"):
        F.gram(jnp.ones(5, jnp.float32))
    with pytest.raises(ValueError, match="3 features but Z has 2"):
        F.gram(X, jnp.ones((4, 2), jnp.float32))
    with pytest.raises(TypeError, match="Z has unsupported dtype int32"):
        F.gram(X, jnp.ones((4, 3), jnp.int32))
    with pytest.raises(TypeError, match="must be a jax or numpy array"):
        F.gram([[1.0, 2.0]])
    with pytest.raises(ValueError, match="unknown kernel_id 'gauss'"):
        F.gram(X, Z, "gauss")
    with pytest.raises(ValueError, match="'lengthscale' must be > 0"):
        F.gram(X, Z, "rbf", {"lengthscale": -1.0})
    with pytest.raises(ValueError, match="'lengthscale' must be finite"):
        F.gram(X, Z, "rbf", {"lengthscale": float("nan")})
    with pytest.raises(ValueError, match="unknown parameter 'degree'"):
        F.gram(X, Z, "rbf", {"degree": 2})
    with pytest.raises(ValueError, match="v has 3 rows but Z has 4"):
        F.kernel_matvec(X, Z, jnp.ones(3, jnp.float32))
    with pytest.raises(ValueError, match="v must be 1-D or 2-D"):
        F.kernel_matvec(X, Z, jnp.ones((4, 1, 1), jnp.float32))
    with pytest.raises(ValueError, match="reduce must be"):
        F.batched_gram(jnp.ones((2, 3, 4)), None, "mean")
    with pytest.raises(ValueError, match="batch size 2 but B has batch size 3"):
        F.batched_gram(jnp.ones((2, 3, 4)), jnp.ones((3, 3, 4)))
    with pytest.raises(TypeError, match="'lengthscale' must be a concrete number"):
        jax.jit(lambda a, ls: F.gram(a, None, "rbf", {"lengthscale": ls}))(X, 1.0)
    with jax.enable_x64(False):
        with pytest.raises(TypeError, match="jax_enable_x64 is off"):
            F.gram(np.ones((2, 2)))
    # a concrete 0-d array parameter is accepted
    _eq(F.gram(X, Z, "rbf", {"lengthscale": jnp.asarray(2.0)}),
        nn.gram(np.ones((5, 3), np.float32), np.ones((4, 3), np.float32), "rbf", {"lengthscale": 2.0}))


def test_ops_backend_module():
    from ntkit.kernels import RBF
    from ntkit.ops._backends import _native_jax

    assert _native_jax.available() and "cpu" in _native_jax.platforms()
    rng = np.random.default_rng(4)
    X = rng.standard_normal((8, 3)).astype(np.float32)
    Z = rng.standard_normal((5, 3)).astype(np.float32)
    v2 = rng.standard_normal((5, 2)).astype(np.float32)
    spec = RBF(1.0)._native_spec({})
    _eq(_native_jax.gram(spec, jnp.asarray(X), jnp.asarray(Z)), nn.gram(X, Z, *spec))
    _eq(_native_jax.gram(spec, jnp.asarray(X), None), nn.gram(X, None, *spec))
    _eq(_native_jax.matvec(spec, jnp.asarray(X), jnp.asarray(Z), jnp.asarray(v2)), nn.kernel_matvec(X, Z, v2, *spec))
    A = rng.standard_normal((2, 4, 3)).astype(np.float32)
    _eq(_native_jax.batched_gram(jnp.asarray(A), None, "sum"), nn.batched_gram(A, None, "sum"))


def test_handler_rejects_inconsistent_operands():
    # the C++ handler validates on its own (shapes, dtypes) and returns an FFI error, never aborts
    F.register()
    call = jax.ffi.ffi_call("ntkit_gram", jax.ShapeDtypeStruct((3, 4), jnp.float32))
    attrs = dict(kernel=np.int64(1), lengthscale=np.float64(1.0), degree=np.int64(3), gamma=np.float64(1.0),
                 coef0=np.float64(1.0), depth=np.int64(1), weight_std=np.float64(1.0), bias_std=np.float64(0.0),
                 symmetric=np.bool_(False))
    with pytest.raises(Exception, match="X has 2 features but Z has 3"):
        np.asarray(call(jnp.ones((3, 2), jnp.float32), jnp.ones((4, 3), jnp.float32), **attrs))
    with pytest.raises(Exception, match="'lengthscale' must be finite and > 0"):
        np.asarray(call(jnp.ones((3, 2), jnp.float32), jnp.ones((4, 2), jnp.float32),
                        **{**attrs, "lengthscale": np.float64(0.0)}))
    with pytest.raises(Exception, match="invalid kernel id 99"):
        np.asarray(call(jnp.ones((3, 2), jnp.float32), jnp.ones((4, 2), jnp.float32),
                        **{**attrs, "kernel": np.int64(99)}))
