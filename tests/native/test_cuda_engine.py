"""The CUDA engine of ntkit_native (all tests marked ``gpu``; skipped without a CUDA build and device).

* the fused, register-tiled ``kernel_matvec`` against a float64 reference (odd sizes,
  t = 1 and t > 1, symmetric with the exact diagonal, near-duplicates, one and many
  column chunks), deterministic;
* ``gram`` / ``batched_gram`` through cuBLAS and through the own tiled GEMM (both back
  ends, SYRK and GEMM for the symmetric product) against the CPU path;
* the XLA FFI custom calls on jax GPU arrays (eager, jit, vmap; no host transfers);
* DLPack inputs (cupy, torch) computed in place on their GPU.

Tolerances from the suite's table (same maths, different summation order): float64
1e-10, float32 1e-4, relative to the magnitude of the compared quantity.
"""

import numpy as np
import pytest

import ntkit_native as nn

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not nn.has_cuda(), reason="no CUDA device / not built with CUDA")]

STATIONARY = ("rbf", "laplace", "matern12", "matern32", "matern52")
RTOL = {np.dtype(np.float64): 1e-10, np.dtype(np.float32): 1e-4}
DTYPES = [pytest.param(np.float64, id="f64"), pytest.param(np.float32, id="f32")]


def _params(kernel, d):
    if kernel in STATIONARY:
        return {"lengthscale": float(np.sqrt(max(d, 1)))}
    if kernel == "polynomial":
        return {"degree": 3, "gamma": 1.0 / max(d, 1), "coef0": 0.5}
    if kernel in ("relu_nngp", "relu_ntk"):
        return {"depth": 2, "weight_std": 1.3, "bias_std": 0.4}
    return None


def ref_gram(kernel, p, X, Z):
    """float64 reference: direct differences for the stationary kernels, else the CPU path in float64."""
    X64, Z64 = np.asarray(X, np.float64), np.asarray(Z, np.float64)
    if kernel not in STATIONARY:
        return nn.gram(X64, Z64, kernel, p)
    out = np.empty((X64.shape[0], Z64.shape[0]))
    for i in range(0, X64.shape[0], 256):
        d2 = ((X64[i:i + 256, None, :] - Z64[None, :, :]) ** 2).sum(-1)
        r = np.sqrt(d2) / p["lengthscale"]
        if kernel == "rbf":
            k = np.exp(-0.5 * r * r)
        elif kernel in ("laplace", "matern12"):
            k = np.exp(-r)
        elif kernel == "matern32":
            k = (1 + np.sqrt(3) * r) * np.exp(-np.sqrt(3) * r)
        else:
            k = (1 + np.sqrt(5) * r + 5 * r * r / 3) * np.exp(-np.sqrt(5) * r)
        out[i:i + 256] = k
    return out


def assert_matvec_close(out, K, v, dtype):
    """|out - K v| <= 10 rtol (|K| |v|) elementwise (sums of m products)."""
    v64 = np.asarray(v, np.float64)
    ref = K @ v64
    mag = np.abs(K) @ np.abs(v64)
    out = np.asarray(out, np.float64)
    assert out.shape == ref.shape
    bad = np.abs(out - ref) > 10 * RTOL[np.dtype(dtype)] * mag + 1e-300
    assert not bad.any(), f"{bad.sum()} entries off; worst {np.max(np.abs(out - ref) / (mag + 1e-300)):.2e}"


@pytest.fixture
def tuning():
    from ntkit_native import _C

    old = _C._cuda_get_tuning()
    yield _C
    _C._cuda_set_tuning(*old)


# ----------------------------------------------------------------- fused kernel_matvec
MATVEC_CASES = [(1, 1, 1, 1), (129, 70, 3, 1), (300, 257, 32, 1), (257, 1031, 33, 3), (77, 5000, 3, 5),
                (2000, 300, 40, 2), (4099, 4097, 3, 1)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kernel", ["rbf", "matern32", "laplace", "polynomial", "relu_ntk", "arccos1"])
def test_fused_matvec_vs_float64_reference(kernel, dtype):
    rng = np.random.default_rng(11)
    for n, m, d, t in MATVEC_CASES:
        if kernel not in ("rbf", "matern32") and n * m > 2e6:
            continue  # the CPU float64 reference of these kernels is slow; rbf covers the large tiles
        p = _params(kernel, d)
        X = rng.standard_normal((n, d)).astype(dtype)
        Z = rng.standard_normal((m, d)).astype(dtype)
        v = rng.standard_normal((m, t) if t > 1 else (m,)).astype(dtype)
        out = nn.kernel_matvec(X, Z, v, kernel, p, device="cuda")
        assert out.dtype == dtype and out.shape == ((n, t) if t > 1 else (n,))
        assert_matvec_close(out, ref_gram(kernel, p, X, Z), v, dtype)
        # symmetric: Z = X, exact diagonal k(x, x)
        u = rng.standard_normal((n, t) if t > 1 else (n,)).astype(dtype)
        S = ref_gram(kernel, p, X, X)
        if kernel not in STATIONARY:
            S = nn.gram(X.astype(np.float64), None, kernel, p)  # exact diagonal in the reference too
        assert_matvec_close(nn.kernel_matvec(X, None, u, kernel, p, device="cuda"), S, u, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_fused_matvec_near_duplicates_and_determinism(dtype):
    # duplicated points far from the origin: |x|^2 + |z|^2 - 2<x,z> loses every digit; the guard
    # recomputes those distances from differences (the RBF epilogue and the generic one)
    rng = np.random.default_rng(12)
    X = (np.repeat(rng.standard_normal((700, 8)), 2, axis=0) * 50 + 200).astype(dtype)
    v = rng.standard_normal(1400).astype(dtype)
    for kernel in ("rbf", "matern52"):
        p = {"lengthscale": 30.0}
        K = ref_gram(kernel, p, X, X)
        a = nn.kernel_matvec(X, X, v, kernel, p, device="cuda")
        assert_matvec_close(a, K, v, dtype)
        assert_matvec_close(nn.kernel_matvec(X, None, v, kernel, p, device="cuda"), K, v, dtype)
        np.testing.assert_array_equal(a, nn.kernel_matvec(X, X, v, kernel, p, device="cuda"))  # deterministic


def test_fused_matvec_exact_diagonal_symmetric():
    # K(X, X) v with v = e_i picks column i: its diagonal entry must be k(x, x) = 1 exactly
    rng = np.random.default_rng(13)
    X = rng.standard_normal((300, 5)) * 100
    for i in (0, 129, 299):
        e = np.zeros(300)
        e[i] = 1.0
        col = nn.kernel_matvec(X, None, e, "rbf", {"lengthscale": 1.0}, device="cuda")
        assert col[i] == 1.0


# ----------------------------------------------------------------- gram / batched_gram back ends
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("backend", ["cublas", "cublas-gemm", "own"])
def test_gram_and_batched_back_ends(backend, dtype, tuning):
    info = nn.info()
    if backend.startswith("cublas") and not info["cublas"]:
        pytest.skip("built without cuBLAS")
    tuning._cuda_set_tuning(backend != "own", backend != "cublas-gemm")
    rng = np.random.default_rng(14)
    for n, m, d in [(1, 1, 1), (129, 70, 33), (300, 257, 8), (67, 1000, 300), (5, 3, 0)]:
        X = rng.standard_normal((n, d)).astype(dtype)
        Z = rng.standard_normal((m, d)).astype(dtype)
        for kernel in ("rbf", "linear", "relu_ntk", "matern52"):
            p = _params(kernel, d)
            K = ref_gram(kernel, p, X, Z)
            scale = max(float(np.abs(K).max()), 1e-300)
            r = RTOL[np.dtype(dtype)]
            G = nn.gram(X, Z, kernel, p, device="cuda")
            np.testing.assert_allclose(G, K, rtol=r, atol=r * scale * max(d, 1))
            S = nn.gram(X, None, kernel, p, device="cuda")
            np.testing.assert_array_equal(S, S.T)  # exactly symmetric
            np.testing.assert_allclose(S, nn.gram(X, None, kernel, p), rtol=r, atol=r * scale * max(d, 1))
            if kernel in STATIONARY:
                np.testing.assert_array_equal(np.diag(S), 1.0)  # exact diagonal
    for b, n, m, p in [(3, 7, 5, 4), (2, 129, 130, 17), (4, 1, 1, 1), (5, 300, 200, 3), (2, 5, 3, 0)]:
        A = rng.standard_normal((b, n, p)).astype(dtype)
        B = rng.standard_normal((b, m, p)).astype(dtype)
        for Bin in (B, None):
            ref = np.einsum("bip,bjp->bij", A.astype(np.float64), (A if Bin is None else B).astype(np.float64))
            scale = max(float(np.abs(ref).max()) if ref.size else 1.0, 1e-300)
            r = RTOL[np.dtype(dtype)]
            out = nn.batched_gram(A, Bin, "none", device="cuda")
            np.testing.assert_allclose(out, ref, rtol=r, atol=r * scale * max(p, 1))
            s = nn.batched_gram(A, Bin, "sum", device="cuda")
            np.testing.assert_allclose(s, ref.sum(0), rtol=r, atol=r * scale * max(p, 1) * b)
            if Bin is None:
                np.testing.assert_array_equal(out, np.swapaxes(out, 1, 2))
                np.testing.assert_array_equal(s, s.T)


def test_cublas_float32_is_true_float32(tuning):
    # TF32 would leave ~1e-3 relative errors in the inner products; true FP32 GEMM stays ~1e-6
    if not nn.info()["cublas"]:
        pytest.skip("built without cuBLAS")
    tuning._cuda_set_tuning(True, True)
    rng = np.random.default_rng(15)
    X = rng.standard_normal((512, 256)).astype(np.float32)
    Z = rng.standard_normal((384, 256)).astype(np.float32)
    G = nn.gram(X, Z, "linear", None, device="cuda")
    ref = X.astype(np.float64) @ Z.T.astype(np.float64)
    err = np.abs(G - ref).max() / (np.abs(X).astype(np.float64) @ np.abs(Z).T.astype(np.float64)).max()
    assert err < 3e-6, err


# ----------------------------------------------------------------- XLA FFI on a GPU
def _jax_gpu():
    jax = pytest.importorskip("jax")
    from ntkit_native import _jax_ffi

    if "CUDA" not in _jax_ffi.platforms():
        pytest.skip("ntkit_native built without the CUDA FFI targets")
    try:
        gpus = jax.devices("gpu")
    except RuntimeError:
        gpus = []
    if not gpus:
        pytest.skip("jax has no GPU backend")
    return jax, _jax_ffi, gpus[0]


@pytest.mark.parametrize("dtype", DTYPES)
def test_ffi_cuda_gram_matvec_batched(dtype):
    jax, F, gpu = _jax_gpu()
    import jax.numpy as jnp

    rng = np.random.default_rng(16)
    n, m, d = 301, 257, 33
    X = rng.standard_normal((n, d)).astype(dtype)
    Z = rng.standard_normal((m, d)).astype(dtype)
    v = rng.standard_normal((m, 3)).astype(dtype)
    A = rng.standard_normal((3, 65, 17)).astype(dtype)
    p = {"lengthscale": 5.0}
    r = RTOL[np.dtype(dtype)]
    with jax.enable_x64(np.dtype(dtype) == np.float64):
        Xg, Zg, vg, Ag = (jax.device_put(a, gpu) for a in (X, Z, v, A))
        x0 = Xg[:, 0]
        for a in (Xg, Zg, vg, Ag, x0):
            a.block_until_ready()
        gram = jax.jit(lambda a, b: F.gram(a, b, "rbf", p))
        mv = jax.jit(lambda a, b, w: F.kernel_matvec(a, b, w, "rbf", p))
        mvs = jax.jit(lambda a, w: F.kernel_matvec(a, None, w, "rbf", p))
        with jax.transfer_guard("disallow"):  # device-resident in, device-resident out: no host transfer
            G = gram(Xg, Zg)
            S = jax.jit(lambda a: F.gram(a, None, "rbf", p))(Xg)
            M = mv(Xg, Zg, vg)
            M1 = mvs(Xg, x0)
            Bn = jax.jit(lambda a: F.batched_gram(a, None, "none"))(Ag)
            Bs = jax.jit(lambda a: F.batched_gram(a, None, "sum"))(Ag)
            V = jax.jit(jax.vmap(lambda a, b, w: F.kernel_matvec(a, b, w, "rbf", p), in_axes=(None, None, 1),
                                 out_axes=1))(Xg, Zg, vg)
        assert next(iter(G.devices())) == gpu and G.dtype == dtype
    K = ref_gram("rbf", p, X, Z)
    np.testing.assert_allclose(np.asarray(G), K, rtol=r, atol=r)
    Sn = np.asarray(S)
    np.testing.assert_array_equal(Sn, Sn.T)
    np.testing.assert_array_equal(np.diag(Sn), 1.0)
    assert_matvec_close(M, K, v, dtype)
    assert_matvec_close(V, K, v, dtype)
    assert_matvec_close(M1, ref_gram("rbf", p, X, X), X[:, 0], dtype)
    ref = np.einsum("bip,bjp->bij", A.astype(np.float64), A.astype(np.float64))
    np.testing.assert_allclose(np.asarray(Bn), ref, rtol=r, atol=r * np.abs(ref).max() * 17)
    np.testing.assert_allclose(np.asarray(Bs), ref.sum(0), rtol=r, atol=r * np.abs(ref).max() * 51)
    # the GPU custom call equals the host-pointer CUDA path on the same data
    np.testing.assert_allclose(np.asarray(G), nn.gram(X, Z, "rbf", p, device="cuda"), rtol=r, atol=r)


# ----------------------------------------------------------------- DLPack
@pytest.mark.parametrize("lib", ["cupy", "torch"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_dlpack_cuda_tensors(lib, dtype):
    mod = pytest.importorskip(lib)
    rng = np.random.default_rng(17)
    X = rng.standard_normal((301, 7)).astype(dtype)
    Z = rng.standard_normal((129, 7)).astype(dtype)
    v = rng.standard_normal((129, 2)).astype(dtype)
    A = rng.standard_normal((3, 40, 5)).astype(dtype)
    if lib == "cupy":
        to_dev, to_host, typ = mod.asarray, mod.asnumpy, mod.ndarray
    else:
        if not mod.cuda.is_available():
            pytest.skip("torch has no CUDA")
        to_dev, to_host, typ = (lambda a: mod.from_numpy(a).cuda()), (lambda t: t.cpu().numpy()), mod.Tensor
    Xd, Zd, vd, Ad = (to_dev(a) for a in (X, Z, v, A))
    p = {"lengthscale": 2.0}
    r = RTOL[np.dtype(dtype)]
    G = nn.gram(Xd, Zd, "rbf", p)
    assert isinstance(G, typ)
    np.testing.assert_allclose(to_host(G), nn.gram(X, Z, "rbf", p), rtol=r, atol=r)
    S = to_host(nn.gram(Xd, None, "rbf", p))
    np.testing.assert_array_equal(S, S.T)
    np.testing.assert_allclose(to_host(nn.kernel_matvec(Xd, Zd, vd, "rbf", p)), nn.kernel_matvec(X, Z, v, "rbf", p),
                               rtol=10 * r, atol=10 * r * np.abs(v).sum(0).max())
    np.testing.assert_allclose(to_host(nn.batched_gram(Ad, None, "sum")), nn.batched_gram(A, None, "sum"),
                               rtol=r, atol=r * 100)
    with pytest.raises(TypeError, match="all arrays must live on one device"):
        nn.gram(Xd, Z)
    with pytest.raises(ValueError, match="device='cpu'"):
        nn.gram(Xd, Zd, device="cpu")
    with pytest.raises(ValueError, match="C-contiguous"):
        nn.gram(Xd[:, ::2], None)
    Xn = X.copy()
    Xn[3, 1] = np.nan
    with pytest.raises(ValueError, match="X contains NaN or Inf"):
        nn.gram(to_dev(Xn), None)
