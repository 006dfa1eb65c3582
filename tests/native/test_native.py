"""Tests of the compiled extension ntkit_native (CPU; CUDA tests marked `gpu`).

Every op is compared with a slow, obvious NumPy oracle written here: pairwise
differences x - z for distances (not the |x|^2 + |z|^2 - 2<x,z> trick used by
the extension) and elementwise products for dot products, evaluated in float64.
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import ntkit_native as nn

if not nn.is_available():
    pytest.skip("ntkit_native._C is not built", allow_module_level=True)

from ntkit_native import _C  # noqa: E402

KERNELS = list(nn.KERNEL_IDS)
RHO_KERNELS = {"arccos0", "arccos1", "arccos2", "relu_nngp", "relu_ntk"}


# ------------------------------------------------------------------ oracle
def _params(kernel, d):
    if kernel in ("rbf", "laplace", "matern12", "matern32", "matern52"):
        return {"lengthscale": float(np.sqrt(max(d, 1)))}
    if kernel == "polynomial":
        return {"degree": 3, "gamma": 1.0 / max(d, 1), "coef0": 0.5}
    if kernel in ("relu_nngp", "relu_ntk"):
        return {"depth": 2, "weight_std": 1.3, "bias_std": 0.4}
    return {}


def _from_rho(kernel, p, dot, sx, sz, d, exact_diag=False):
    """Kernels defined through rho = cos(theta); exact_diag forces rho = 1 (x == z)."""
    pi = np.pi
    if kernel.startswith("arccos"):
        order = int(kernel[-1])
        s = sx * sz
        with np.errstate(divide="ignore", invalid="ignore"):
            rho = np.where(s > 0, dot / np.sqrt(s), 0.0)
        rho = np.clip(rho, -1.0, 1.0)
        if exact_diag:
            rho = np.where(s > 0, 1.0, 0.0)
        th = np.arccos(rho)
        st = np.sqrt(np.maximum(0.0, (1 - rho) * (1 + rho)))
        J = [pi - th, st + (pi - th) * rho, 3 * st * rho + (pi - th) * (1 + 2 * rho * rho)][order]
        return s ** (order / 2) * J / pi
    W2, b2 = np.float64(p["weight_std"]) ** 2, np.float64(p["bias_std"]) ** 2  # inf, not OverflowError
    wd = W2 / d if d > 0 else 0.0
    q = wd * dot + b2
    qx = wd * sx + b2 + 0 * q
    qz = wd * sz + b2 + 0 * q
    ntk = q
    for _ in range(p["depth"]):
        s = np.sqrt(qx * qz)
        with np.errstate(divide="ignore", invalid="ignore"):
            rho = np.clip(np.where(s > 0, q / s, 0.0), -1.0, 1.0)
        if exact_diag:
            rho = np.where(s > 0, 1.0, 0.0)
        th = np.arccos(rho)
        st = np.sqrt(np.maximum(0.0, (1 - rho) * (1 + rho)))
        q_relu = s / (2 * pi) * (st + (pi - th) * rho)
        qdot = (pi - th) / (2 * pi)
        ntk = ntk * qdot
        q = W2 * q_relu + b2
        qx = W2 * qx / 2 + b2
        qz = W2 * qz / 2 + b2
        ntk = q + W2 * ntk
    return ntk if kernel == "relu_ntk" else q


def oracle_gram(X, Z, kernel, p, symmetric=False):
    # numpy scalars: an extreme parameter overflows to inf (as in the kernels) instead of raising OverflowError
    p = {k: np.float64(v) if isinstance(v, float) else v for k, v in p.items()}
    X = np.asarray(X, np.float64)
    Z = X if symmetric else np.asarray(Z, np.float64)
    d = X.shape[1]
    diff = X[:, None, :] - Z[None, :, :]
    d2 = (diff * diff).sum(-1)
    dot = (X[:, None, :] * Z[None, :, :]).sum(-1)
    sx = (X * X).sum(1)[:, None]
    sz = (Z * Z).sum(1)[None, :]
    if kernel == "linear":
        K = dot
    elif kernel == "polynomial":
        K = (p["gamma"] * dot + p["coef0"]) ** p["degree"]
    elif kernel in RHO_KERNELS:
        K = _from_rho(kernel, p, dot, sx, sz, d)
        if symmetric and len(X):
            s = np.diag(sx[:, 0].copy())
            diag = _from_rho(kernel, p, sx[:, 0], sx[:, 0], sx[:, 0], d, exact_diag=True)
            K[np.diag_indices(len(X))] = diag
            del s
    else:
        with np.errstate(over="ignore", invalid="ignore"):
            r = np.sqrt(d2) / p["lengthscale"]  # inf for a lengthscale far below the distances: k -> 0 there
            if kernel == "rbf":
                K = np.exp(-0.5 * r * r)
            elif kernel in ("laplace", "matern12"):
                K = np.exp(-r)
            elif kernel == "matern32":
                K = (1 + np.sqrt(3) * r) * np.exp(-np.sqrt(3) * r)
            else:
                K = (1 + np.sqrt(5) * r + 5 * r * r / 3) * np.exp(-np.sqrt(5) * r)
            K = np.where(np.isinf(r), 0.0, K)
    return K


def make_points(n, d, rng, offset=0.0):
    """Well-conditioned inputs: Gaussian for d >= 2; a jittered grid for d == 1 so that no
    two points are near-duplicates (distance kernels are ill-conditioned at r -> 0)."""
    if d == 1 and n > 0:
        g = np.linspace(-3, 3, n) + offset * (6.0 / max(n, 1))
        return rng.permutation(g)[:, None]
    return rng.standard_normal((n, d))


def tolerances(dtype, kernel, d, K):
    scale = float(np.abs(K).max()) if K.size else 1.0
    if dtype == np.float64:
        # rtol 1e-12: the extension forms distances/dots with a GEMM (|x|^2+|z|^2-2<x,z>),
        # whose absolute error is ~eps*(|x|^2+|z|^2); entries that are tiny relative to the
        # largest one (dot products cancelling to ~0, exp(-r) far in the tail) are only
        # accurate to that absolute level, hence atol = 1e-13 * max|K|.
        rtol, atol = 1e-12, 1e-13 * scale
        if d <= 2 and kernel.startswith("arccos"):
            # In 1-D all vectors are collinear (in 2-D many are nearly so): rho = +-1 where acos has infinite condition
            # number, so one rounding in rho moves theta by ~sqrt(eps).
            rtol, atol = 1e-6, 1e-7 * scale
    else:
        # float32 inputs, float32 accumulation in the GEMM and float32 transforms:
        # ~d * 6e-8 relative error in dots, amplified by the kernel's condition number.
        rtol, atol = 1e-4, 1e-5 * scale
        if d <= 2 and kernel.startswith("arccos"):
            rtol, atol = 1e-2, 1e-3 * scale  # same acos(+-1) conditioning, sqrt(eps32) ~ 3e-4
    return rtol, atol


SIZES = [(1, 1, 1), (7, 5, 1), (129, 7, 8), (300, 129, 33), (0, 5, 3), (6, 0, 3), (40, 300, 2)]


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("kernel", KERNELS)
def test_gram_and_matvec_vs_oracle(kernel, dtype):
    rng = np.random.default_rng(hash(kernel) % 2**32)
    for n, m, d in SIZES:
        p = _params(kernel, d)
        X = make_points(n, d, rng).astype(dtype)
        Z = make_points(m, d, rng, offset=0.5).astype(dtype)
        K = oracle_gram(X, Z, kernel, p)
        rtol, atol = tolerances(dtype, kernel, d, K)

        G = nn.gram(X, Z, kernel, p)
        assert G.dtype == dtype and G.shape == (n, m)
        np.testing.assert_allclose(G, K, rtol=rtol, atol=atol, err_msg=f"gram {n},{m},{d}")

        S = nn.gram(X, None, kernel, p)
        KS = oracle_gram(X, None, kernel, p, symmetric=True)
        assert S.shape == (n, n) and S.dtype == dtype
        np.testing.assert_array_equal(S, S.T)  # exactly symmetric
        np.testing.assert_allclose(S, KS, rtol=rtol, atol=atol, err_msg=f"sym {n},{d}")

        for vshape in [(m,), (m, 1), (m, 3)]:
            v = rng.standard_normal(vshape).astype(dtype)
            ref = K @ v.astype(np.float64)
            # matvec sums m products: compare with an atol scaled by sum |K||v|
            mag = np.abs(K) @ np.abs(v.astype(np.float64)) if m else np.zeros(ref.shape)
            tol = (rtol * 10) * (mag + (atol / max(float(np.abs(K).max()) if K.size else 1, 1e-300)))
            for blocks in [(None, None), (64, 50), (1, 7)]:
                out = nn.kernel_matvec(X, Z, v, kernel, p, block_rows=blocks[0], block_cols=blocks[1])
                assert out.dtype == dtype and out.shape == (n,) + vshape[1:]
                assert np.all(np.abs(out - ref) <= tol + 1e-300), (kernel, n, m, d, vshape, blocks)


@pytest.mark.parametrize("kernel", KERNELS)
def test_zero_features(kernel):
    X = np.zeros((4, 0))
    Z = np.zeros((3, 0))
    p = _params(kernel, 0)
    G = nn.gram(X, Z, kernel, p)
    K = oracle_gram(X, Z, kernel, p)
    np.testing.assert_allclose(G, K, rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(nn.gram(X, None, kernel, p), oracle_gram(X, None, kernel, p, True),
                               rtol=1e-14, atol=1e-15)
    v = np.ones(3)
    np.testing.assert_allclose(nn.kernel_matvec(X, Z, v, kernel, p), K @ v, rtol=1e-13, atol=1e-15)


def test_empty_shapes():
    for dt in (np.float32, np.float64):
        X = np.zeros((0, 3), dt)
        Z = np.ones((4, 3), dt)
        assert nn.gram(X, Z).shape == (0, 4)
        assert nn.gram(Z, X).shape == (4, 0)
        assert nn.gram(X).shape == (0, 0)
        assert nn.kernel_matvec(Z, X, np.zeros(0, dt)).tolist() == [0, 0, 0, 0]
        assert nn.kernel_matvec(X, Z, np.ones((4, 2), dt)).shape == (0, 2)
        assert nn.kernel_matvec(Z, Z, np.ones((4, 0), dt)).shape == (4, 0)
        r = nn.batched_gram(np.zeros((0, 3, 2), dt), np.zeros((0, 4, 2), dt), reduce="sum")
        assert r.shape == (3, 4) and not r.any() and r.dtype == dt
        assert nn.batched_gram(np.zeros((0, 3, 2), dt)).shape == (0, 3, 3)


def test_large_tiles_and_diagonal():
    # sizes crossing the BLAS tile (1024) and the symmetric block structure
    rng = np.random.default_rng(1)
    X = rng.standard_normal((2100, 5))
    p = {"lengthscale": 2.0}
    S = nn.gram(X, None, "rbf", p)
    np.testing.assert_array_equal(S, S.T)
    np.testing.assert_array_equal(np.diag(S), 1.0)
    idx = rng.integers(0, 2100, size=(200, 2))
    d2 = ((X[idx[:, 0]] - X[idx[:, 1]]) ** 2).sum(1)
    np.testing.assert_allclose(S[idx[:, 0], idx[:, 1]], np.exp(-d2 / 8), rtol=1e-12, atol=1e-14)
    G = nn.gram(X[:1500], X[1000:], "rbf", p)
    np.testing.assert_allclose(G[1000:, :500], S[1000:1500, 1000:1500], rtol=1e-12, atol=1e-14)


def test_exp_tail_underflow():
    # far-apart points: exp underflows gracefully to tiny / zero values (no NaN)
    X = np.array([[0.0], [10.0], [40.0], [1000.0]])
    G = nn.gram(X, None, "rbf", {"lengthscale": 1.0})
    ref = np.exp(-((X - X.T) ** 2) / 2)
    np.testing.assert_allclose(G, ref, rtol=1e-12, atol=1e-300)
    G32 = nn.gram(X.astype(np.float32), None, "laplace", {"lengthscale": 0.1})
    assert np.isfinite(G32).all() and G32[0, 3] == 0.0


# ------------------------------------------------------------------ batched
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("b,n,m,p", [(3, 7, 5, 4), (2, 129, 130, 17), (4, 1, 1, 1), (1, 300, 2, 3),
                                     (2, 5, 3, 0)])
def test_batched_gram(b, n, m, p, dtype):
    rng = np.random.default_rng(n * 31 + m)
    A = rng.standard_normal((b, n, p)).astype(dtype)
    B = rng.standard_normal((b, m, p)).astype(dtype)
    A64, B64 = A.astype(np.float64), B.astype(np.float64)
    cases = [(B, np.einsum("bip,bjp->bij", A64, B64)), (None, np.einsum("bip,bjp->bij", A64, A64))]
    for Bin, ref in cases:
        scale = max(float(np.abs(ref).max()) if ref.size else 1.0, 1e-300)
        # rtol/atol: float64 sums of p products (cancellation -> atol), float32 accumulation
        rtol, atol = (1e-12, 1e-13 * scale * max(p, 1)) if dtype == np.float64 else (1e-4, 1e-5 * scale * max(p, 1))
        out = nn.batched_gram(A, Bin, "none")
        assert out.dtype == dtype and out.shape == ref.shape
        np.testing.assert_allclose(out, ref, rtol=rtol, atol=atol)
        s = nn.batched_gram(A, Bin, reduce="sum")
        assert s.shape == ref.shape[1:]
        np.testing.assert_allclose(s, ref.sum(0), rtol=rtol, atol=atol * b)
        if Bin is None:
            np.testing.assert_array_equal(out, np.swapaxes(out, 1, 2))
            np.testing.assert_array_equal(s, s.T)


# ------------------------------------------------------------------ info / import
def test_info_and_flags():
    i = nn.info()
    for key in ("available", "version", "cuda_compiled", "cuda_devices", "openmp",
                "omp_max_threads", "blas", "kernels", "ffi", "ffi_platforms", "cublas"):
        assert key in i
    assert isinstance(i["ffi"], bool) and i["ffi"] == bool(i["ffi_platforms"])
    assert i["cublas"] is False or i["cuda_compiled"]
    assert i["available"] is True
    assert i["blas"] in ("scipy", "builtin")
    assert i["kernels"] == KERNELS
    assert isinstance(nn.has_cuda(), bool)


def test_import_is_lazy():
    code = ("import sys, ntkit_native\n"
            "assert 'ntkit_native._C' not in sys.modules\n"
            "assert 'numpy' not in sys.modules\n"
            "assert ntkit_native.is_available()\n"
            "assert 'ntkit_native._C' in sys.modules\n")
    r = subprocess.run([sys.executable, "-W", "error", "-c", code], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "" and r.stderr == ""


def test_builtin_gemm_matches_blas():
    code = textwrap.dedent("""
        import numpy as np, ntkit_native as nn
        from ntkit_native import _C
        rng = np.random.default_rng(0)
        X = rng.standard_normal((300, 70)); Z = rng.standard_normal((290, 70)); v = rng.standard_normal((290, 2))
        A = rng.standard_normal((3, 40, 9))
        a = [nn.gram(X, Z, 'matern52', {'lengthscale': 8.0}), nn.gram(X, None, 'arccos1'),
             nn.kernel_matvec(X, Z, v, 'rbf', {'lengthscale': 8.0}), nn.batched_gram(A, None, 'sum')]
        _C._use_builtin_blas(True)
        assert nn.info()['blas'] == 'builtin'
        b = [nn.gram(X, Z, 'matern52', {'lengthscale': 8.0}), nn.gram(X, None, 'arccos1'),
             nn.kernel_matvec(X, Z, v, 'rbf', {'lengthscale': 8.0}), nn.batched_gram(A, None, 'sum')]
        for x, y in zip(a, b):
            np.testing.assert_allclose(x, y, rtol=1e-12, atol=1e-12)
        print('OK')
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "OK" in r.stdout, r.stderr


# ------------------------------------------------------------------ threads
_THREAD_SCRIPT = textwrap.dedent("""
    import sys, numpy as np, ntkit_native as nn
    rng = np.random.default_rng(5)
    X = rng.standard_normal((700, 40)); Z = rng.standard_normal((650, 40))
    v = rng.standard_normal((650, 3)); A = rng.standard_normal((3, 300, 20))
    out = {
        'gram': nn.gram(X, Z, 'rbf', {'lengthscale': 6.0}),
        'sym': nn.gram(X, None, 'relu_ntk', {'depth': 2, 'weight_std': 1.0, 'bias_std': 0.1}),
        'mv': nn.kernel_matvec(X, Z, v, 'matern32', {'lengthscale': 6.0}),
        'mv32': nn.kernel_matvec(X.astype(np.float32), Z.astype(np.float32), v[:, 0].astype(np.float32),
                                 'rbf', {'lengthscale': 6.0}),
        'bsum': nn.batched_gram(A, None, 'sum'),
    }
    np.savez(sys.argv[1], **out)
""")


def test_thread_count_independence(tmp_path):
    res = {}
    for nt in ("1", "2"):
        env = dict(os.environ, OMP_NUM_THREADS=nt, OPENBLAS_NUM_THREADS=nt)
        f = tmp_path / f"t{nt}.npz"
        r = subprocess.run([sys.executable, "-c", _THREAD_SCRIPT, str(f)], env=env,
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        res[nt] = dict(np.load(f))
    for k in res["1"]:
        a, b = res["1"][k], res["2"][k]
        if a.dtype == np.float32:
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6 * np.abs(a).max(), err_msg=k)
        else:
            np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-14 * np.abs(a).max(), err_msg=k)


# ------------------------------------------------------------------ bad input (subprocess)
_PRELUDE = textwrap.dedent("""
    import numpy as np, ntkit_native as nn
    from ntkit_native import _C
    X = np.random.default_rng(0).standard_normal((6, 5)); Z = X[:4].copy(); v = np.ones(4)
    A = np.ones((2, 3, 4)); B = np.ones((3, 3, 4))
""")

# (name, statement, expected exception, substring of the message)
BAD_CASES = [
    ("nan_X", "X[1, 2] = np.nan; f(X, Z)", "ValueError", "X"),
    ("inf_Z", "Z[0, 0] = np.inf; f(X, Z)", "ValueError", "Z"),
    ("nan_v", "v[1] = np.nan; mv(X, Z, v)", "ValueError", "v"),
    ("nan_A", "A[0, 0, 0] = np.nan; bg(A, None)", "ValueError", "A"),
    ("feature_mismatch", "f(X, np.ones((4, 3)))", "ValueError", "X has 5 features but Z has 3"),
    ("v_rows", "mv(X, Z, np.ones(5))", "ValueError", "v has 5 rows"),
    ("int_dtype", "f(X.astype(np.int64), Z.astype(np.int64))", "TypeError", "X"),
    ("bool_dtype", "f(X > 0, Z > 0)", "TypeError", "X"),
    ("object_dtype", "f(X, Z.astype(object))", "TypeError", "Z"),
    ("complex_dtype", "f(X.astype(complex), Z.astype(complex))", "TypeError", "X"),
    ("float16_dtype", "mv(X, Z, v.astype(np.float16))", "TypeError", "v"),
    ("mixed_dtype", "f(X, Z.astype(np.float32))", "TypeError", "Z"),
    ("mixed_dtype_v", "mv(X, Z, v.astype(np.float32))", "TypeError", "v"),
    ("X_1d", "f(X[0], Z)", "ValueError", "X"),
    ("v_3d", "mv(X, Z, np.ones((4, 1, 1)))", "ValueError", "v"),
    ("A_2d", "bg(A[0], None)", "ValueError", "A"),
    ("batch_mismatch", "bg(A, B)", "ValueError", "batch size"),
    ("not_array", "f(X.tolist(), Z)", "TypeError", "X"),
    ("unknown_kernel", "f(X, Z, 'gauss')", "ValueError", "rbf"),
    ("lengthscale_zero", "f(X, Z, 'rbf', {'lengthscale': 0.0})", "ValueError", "lengthscale"),
    ("lengthscale_neg", "f(X, Z, 'matern32', {'lengthscale': -1.0})", "ValueError", "lengthscale"),
    ("lengthscale_nan", "f(X, Z, 'laplace', {'lengthscale': float('nan')})", "ValueError", "lengthscale"),
    ("lengthscale_none", "f(X, Z, 'rbf', {'lengthscale': None})", "ValueError", "lengthscale"),
    ("unknown_param", "f(X, Z, 'rbf', {'sigma': 1.0})", "ValueError", "sigma"),
    ("degree_float", "f(X, Z, 'polynomial', {'degree': 2.5})", "ValueError", "degree"),
    ("degree_zero", "f(X, Z, 'polynomial', {'degree': 0})", "ValueError", "degree"),
    ("gamma_inf", "f(X, Z, 'polynomial', {'gamma': float('inf')})", "ValueError", "gamma"),
    ("depth_neg", "f(X, Z, 'relu_ntk', {'depth': -1})", "ValueError", "depth"),
    ("weight_std_zero", "f(X, Z, 'relu_nngp', {'weight_std': 0.0})", "ValueError", "weight_std"),
    ("bias_std_neg", "f(X, Z, 'relu_nngp', {'bias_std': -0.1})", "ValueError", "bias_std"),
    ("bad_device", "f(X, Z, 'rbf', None, 'tpu')", "ValueError", "device"),
]

_CALLS = {
    # wrapper: keyword device; raw _C: positional (X, Z, kernel_id, params, device)
    "wrapper": textwrap.dedent("""
        def f(X, Z, k='rbf', p=None, device='cpu'): return nn.gram(X, Z, k, p, device=device)
        def mv(X, Z, v): return nn.kernel_matvec(X, Z, v)
        def bg(A, B): return nn.batched_gram(A, B)
    """),
    "raw": textwrap.dedent("""
        def f(X, Z, k='rbf', p=None, device='cpu'): return _C.gram(X, Z, k, p, device)
        def mv(X, Z, v): return _C.kernel_matvec(X, Z, v, 'rbf', None)
        def bg(A, B): return _C.batched_gram(A, B, 'none')
    """),
}


def _run_snippet(body):
    code = _PRELUDE + body + textwrap.dedent("""
        import json, sys
        try:
            _stmt()
        except Exception as e:
            print(json.dumps({'type': type(e).__name__, 'msg': str(e)}))
            sys.exit(0)
        print(json.dumps({'type': None, 'msg': ''}))
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, f"crashed (rc={r.returncode}): {r.stderr[-2000:]}"
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("api", ["wrapper", "raw"])
@pytest.mark.parametrize("name,stmt,exc,msg", BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_bad_input_subprocess(api, name, stmt, exc, msg):
    body = _CALLS[api] + "def _stmt():\n" + textwrap.indent(stmt.replace("; ", "\n"), "    ") + "\n"
    res = _run_snippet(body)
    assert res["type"] == exc, res
    assert msg in res["msg"], res


def test_noncontiguous_policy_subprocess():
    body = textwrap.dedent("""
        def _stmt():
            Xf = np.asfortranarray(X); Zs = np.repeat(Z, 2, axis=1)[:, ::2]
            vs = np.repeat(v[:, None], 2, axis=1)[:, 0]
            assert not Xf.flags.c_contiguous and not Zs.flags.c_contiguous and not vs.flags.c_contiguous
            ref = nn.gram(X, Z, 'rbf')
            np.testing.assert_array_equal(nn.gram(Xf, Zs, 'rbf'), ref)     # wrapper copies
            np.testing.assert_array_equal(nn.kernel_matvec(Xf, Zs, vs),
                                          nn.kernel_matvec(X, Z, v))
            np.testing.assert_array_equal(nn.batched_gram(np.ones((2, 3, 8))[:, :, ::2]),
                                          nn.batched_gram(np.ones((2, 3, 4))))
            for call in (lambda: _C.gram(Xf, None, 'rbf', None),
                         lambda: _C.gram(X, Zs, 'rbf', None),
                         lambda: _C.kernel_matvec(X, Z, vs, 'rbf', None),
                         lambda: _C.batched_gram(np.ones((2, 3, 8))[:, :, ::2], None, 'none')):
                try:
                    call()
                except ValueError as e:
                    assert 'C-contiguous' in str(e), e
                else:
                    raise AssertionError('raw _C accepted a non-contiguous array')
    """)
    res = _run_snippet(body)
    assert res["type"] is None, res


def test_cuda_request_without_cuda_subprocess():
    if nn.has_cuda():
        pytest.skip("a CUDA device is present")
    res = _run_snippet("def _stmt():\n    nn.gram(X, Z, device='cuda')\n")
    assert res["type"] == "RuntimeError" and "cuda" in res["msg"].lower(), res
    res = _run_snippet("def _stmt():\n    _C.batched_gram(A, None, 'sum', 'cuda')\n")
    assert res["type"] == "RuntimeError", res


# ------------------------------------------------------------------ GPU
gpu = pytest.mark.gpu
needs_cuda = pytest.mark.skipif(not nn.has_cuda(), reason="no CUDA device / not built with CUDA")


@gpu
@needs_cuda
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("kernel", KERNELS)
def test_cuda_gram_matvec_match_cpu(kernel, dtype):
    rng = np.random.default_rng(3)
    for n, m, d in [(1, 1, 1), (129, 70, 33), (300, 257, 8), (0, 4, 3)]:
        p = _params(kernel, d)
        X = make_points(n, d, rng).astype(dtype)
        Z = make_points(m, d, rng, offset=0.5).astype(dtype)
        K = oracle_gram(X, Z, kernel, p)
        rtol, atol = tolerances(dtype, kernel, d, K)
        np.testing.assert_allclose(nn.gram(X, Z, kernel, p, device="cuda"),
                                   nn.gram(X, Z, kernel, p), rtol=rtol, atol=atol)
        S = nn.gram(X, None, kernel, p, device="cuda")
        np.testing.assert_array_equal(S, S.T)
        np.testing.assert_allclose(S, nn.gram(X, None, kernel, p), rtol=rtol, atol=atol)
        for vshape in [(m,), (m, 3)]:
            v = rng.standard_normal(vshape).astype(dtype)
            a = nn.kernel_matvec(X, Z, v, kernel, p, device="cuda")
            b = nn.kernel_matvec(X, Z, v, kernel, p)
            mag = np.abs(K) @ np.abs(v.astype(np.float64)) if m else np.zeros(b.shape)
            assert np.all(np.abs(a - b) <= 10 * rtol * mag + atol), (kernel, n, m, d)


@gpu
@needs_cuda
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("reduce", ["none", "sum"])
def test_cuda_batched_match_cpu(reduce, dtype):
    rng = np.random.default_rng(4)
    A = rng.standard_normal((3, 130, 17)).astype(dtype)
    B = rng.standard_normal((3, 65, 17)).astype(dtype)
    rtol = 1e-12 if dtype == np.float64 else 1e-4
    for Bin in (B, None):
        a = nn.batched_gram(A, Bin, reduce, device="cuda")
        b = nn.batched_gram(A, Bin, reduce)
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * 10 * np.abs(b).max())


def test_cuda_profile_hooks_without_cuda():
    # the private benchmark hooks exist in every build; without CUDA they are inert
    prof = _C._cuda_last_profile()
    if not nn.info()["cuda_compiled"]:
        assert prof is None
        assert _C._cuda_set_slab_bytes(1 << 20) == 0
    else:
        assert set(prof) == {"op", "h2d_ms", "kernel_ms", "d2h_ms", "device_bytes", "launches"}


@gpu
@needs_cuda
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("kernel", KERNELS)
def test_cuda_symmetric_matvec_exact_diagonal(kernel, dtype):
    # Z=None: Z is X and the diagonal uses the exact k(x, x); (300, 33) and (1000, 3)
    # split the columns into several chunks (few row panels)
    rng = np.random.default_rng(5)
    for n, d in [(1, 1), (70, 5), (300, 33), (1000, 3)]:
        p = _params(kernel, d)
        X = make_points(n, d, rng).astype(dtype)
        K = oracle_gram(X, None, kernel, p, symmetric=True)
        rtol, atol = tolerances(dtype, kernel, d, K)
        for vshape in [(n,), (n, 2)]:
            v = rng.standard_normal(vshape).astype(dtype)
            a = nn.kernel_matvec(X, None, v, kernel, p, device="cuda")
            b = nn.kernel_matvec(X, None, v, kernel, p)
            assert a.dtype == dtype and a.shape == b.shape == (n,) + vshape[1:]
            ref = K @ v.astype(np.float64)
            mag = np.abs(K) @ np.abs(v.astype(np.float64))
            assert np.all(np.abs(a - ref) <= 10 * rtol * mag + atol), (kernel, n, d)
            assert np.all(np.abs(a - b) <= 10 * rtol * mag + atol), (kernel, n, d)


@gpu
@needs_cuda
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_cuda_duplicates_use_guard_and_exact_diagonal(dtype):
    # exact duplicates off the diagonal: the cancellation guard recomputes the distance
    rng = np.random.default_rng(7)
    X = rng.standard_normal((150, 9)) * 3
    X = np.vstack([X, X[:40]]).astype(dtype)
    p = {"lengthscale": 2.0}
    K = oracle_gram(X, None, "rbf", p, symmetric=True)
    S = nn.gram(X, None, "rbf", p, device="cuda")
    np.testing.assert_array_equal(S, S.T)
    np.testing.assert_array_equal(np.diag(S), 1)
    np.testing.assert_array_equal(S[150:, :40][np.arange(40), np.arange(40)], 1)
    G = nn.gram(X, X, "rbf", p, device="cuda")
    np.testing.assert_allclose(G, K, rtol=1e-12 if dtype == np.float64 else 1e-4, atol=1e-6)
    v = rng.standard_normal(len(X)).astype(dtype)
    np.testing.assert_allclose(nn.kernel_matvec(X, None, v, "rbf", p, device="cuda"), K @ v,
                               rtol=1e-10 if dtype == np.float64 else 1e-4, atol=1e-4)


@gpu
@needs_cuda
def test_cuda_empty_shapes_and_zero_features():
    for dt in (np.float32, np.float64):
        X = np.zeros((0, 3), dt)
        Z = np.ones((4, 3), dt)
        assert nn.gram(X, Z, device="cuda").shape == (0, 4)
        assert nn.gram(Z, X, device="cuda").shape == (4, 0)
        assert nn.gram(X, device="cuda").shape == (0, 0)
        assert nn.kernel_matvec(Z, X, np.zeros(0, dt), device="cuda").tolist() == [0, 0, 0, 0]
        assert nn.kernel_matvec(X, Z, np.ones((4, 2), dt), device="cuda").shape == (0, 2)
        assert nn.kernel_matvec(Z, Z, np.ones((4, 0), dt), device="cuda").shape == (4, 0)
        r = nn.batched_gram(np.zeros((0, 3, 2), dt), np.zeros((0, 4, 2), dt), reduce="sum", device="cuda")
        assert r.shape == (3, 4) and not r.any() and r.dtype == dt
        assert nn.batched_gram(np.zeros((0, 3, 2), dt), device="cuda").shape == (0, 3, 3)
        z = nn.batched_gram(np.zeros((2, 3, 0), dt), np.zeros((2, 5, 0), dt), device="cuda")
        assert z.shape == (2, 3, 5) and not z.any()
        z = nn.batched_gram(np.zeros((2, 3, 0), dt), reduce="sum", device="cuda")
        assert z.shape == (3, 3) and not z.any()
    for kernel in KERNELS:
        X, Z, v = np.zeros((4, 0)), np.zeros((3, 0)), np.ones(3)
        p = _params(kernel, 0)
        kw = {"rtol": 1e-14, "atol": 1e-15}
        np.testing.assert_allclose(nn.gram(X, Z, kernel, p, device="cuda"), nn.gram(X, Z, kernel, p), **kw)
        np.testing.assert_allclose(nn.gram(X, None, kernel, p, device="cuda"), nn.gram(X, None, kernel, p), **kw)
        np.testing.assert_allclose(nn.kernel_matvec(X, Z, v, kernel, p, device="cuda"),
                                   nn.kernel_matvec(X, Z, v, kernel, p), **kw)
        np.testing.assert_allclose(nn.kernel_matvec(X, None, np.ones(4), kernel, p, device="cuda"),
                                   nn.kernel_matvec(X, None, np.ones(4), kernel, p), **kw)


@gpu
@needs_cuda
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_cuda_gram_row_slabs(dtype):
    # a small slab buffer forces several row slabs (incl. a partial last one)
    rng = np.random.default_rng(8)
    X = rng.standard_normal((1000, 37)).astype(dtype)
    Z = rng.standard_normal((700, 37)).astype(dtype)
    p = {"lengthscale": 6.0}
    K = oracle_gram(X, Z, "matern52", p)
    rtol, atol = tolerances(dtype, "matern52", 37, K)
    old = _C._cuda_set_slab_bytes(200 * 700 * np.dtype(dtype).itemsize)
    try:
        G = nn.gram(X, Z, "matern52", p, device="cuda")
        prof = _C._cuda_last_profile()
    finally:
        _C._cuda_set_slab_bytes(old)
    assert prof["op"] == "gram" and prof["launches"] == 6  # slabs of 192 rows
    np.testing.assert_allclose(G, K, rtol=rtol, atol=atol)
    G1 = nn.gram(X, Z, "matern52", p, device="cuda")  # one slab
    if _C._cuda_get_tuning()[0]:
        # cuBLAS may pick another GEMM algorithm (summation order) for another slab height
        np.testing.assert_allclose(G, G1, rtol=1e-5 if dtype == np.float32 else 1e-13, atol=0)
    else:
        np.testing.assert_array_equal(G, G1)  # own GEMM: tiles do not depend on the slab


@gpu
@needs_cuda
def test_cuda_grid_limits_row_slabs_and_batch_chunks():
    # more than 65535 row tiles (gridDim.y) and more than 65535 batch entries (gridDim.z)
    rng = np.random.default_rng(6)
    n = 65535 * 64 + 77
    X = rng.standard_normal((n, 2)).astype(np.float32)
    Z = rng.standard_normal((3, 2)).astype(np.float32)
    G = nn.gram(X, Z, "rbf", {"lengthscale": 1.5}, device="cuda")
    assert _C._cuda_last_profile()["launches"] == 2
    np.testing.assert_allclose(G, nn.gram(X, Z, "rbf", {"lengthscale": 1.5}), rtol=1e-4, atol=1e-5)
    del G, X
    A = rng.standard_normal((70000, 3, 2))
    B = rng.standard_normal((70000, 2, 2))
    for Bin in (B, None):
        ref = np.einsum("bip,bjp->bij", A, A if Bin is None else Bin)
        out = nn.batched_gram(A, Bin, "none", device="cuda")
        assert _C._cuda_last_profile()["launches"] == 2
        np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(nn.batched_gram(A, Bin, "sum", device="cuda"), ref.sum(0), rtol=1e-10, atol=1e-9)


@gpu
@needs_cuda
def test_cuda_deterministic_profile_and_noncontiguous():
    rng = np.random.default_rng(9)
    X = rng.standard_normal((3000, 20)).astype(np.float32)
    Z = rng.standard_normal((2500, 20)).astype(np.float32)
    v = rng.standard_normal((2500, 2)).astype(np.float32)
    a = nn.kernel_matvec(X, Z, v, "rbf", {"lengthscale": 4.0}, device="cuda")
    prof = _C._cuda_last_profile()
    assert prof["op"] == "kernel_matvec" and prof["kernel_ms"] > 0 and prof["h2d_ms"] > 0
    assert prof["device_bytes"] >= (3000 + 2500) * 21 * 4
    np.testing.assert_array_equal(a, nn.kernel_matvec(X, Z, v, "rbf", {"lengthscale": 4.0}, device="cuda"))
    s = nn.kernel_matvec(X, None, v[:1, :1].repeat(3000, 0), "relu_ntk", device="cuda")
    np.testing.assert_array_equal(s, nn.kernel_matvec(X, None, v[:1, :1].repeat(3000, 0), "relu_ntk",
                                                      device="cuda"))
    G = nn.gram(X[:100], Z[:50], "rbf", device="cuda")
    prof = _C._cuda_last_profile()
    assert prof["op"] == "gram" and prof["device_bytes"] == (100 * 20 + 50 * 20 + 150 + 100 * 50) * 4
    # non-contiguous input is copied by the wrapper (documented policy), also for device="cuda"
    Xw = np.asfortranarray(X[:100, ::2])
    np.testing.assert_allclose(nn.gram(Xw, None, "laplace", device="cuda"),
                               nn.gram(np.ascontiguousarray(Xw), None, "laplace"), rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(G, nn.gram(X[:100], Z[:50], "rbf", device="cuda"))
