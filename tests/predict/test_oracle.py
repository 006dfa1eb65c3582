"""ntkit.predict against dense oracles: explicit formulas with ``scipy.linalg.expm`` and ``solve`` on
small matrices, with the output axes spelled out as a Kronecker product (none of the eigenbasis or
axis-moving code of the implementation), and against gradient descent actually run.

Tolerances (float64): the oracles evaluate the same closed forms by a different route (Padé
``expm``, LU ``solve``) on kernels with condition numbers below 1e3, so the two agree to
``κ · eps ≈ 1e-13``; 1e-10 relative to the largest output leaves room without hiding a wrong term
(every term tested here is of order one). float32 input is computed in float64 internally for
numpy (documented) and compared at 1e-6; jax float32 stays float32 and is compared at 1e-4
(``κ · eps32``).
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg as sl

from ntkit.predict import (
    gp_inference,
    gradient_descent_mse,
    gradient_descent_mse_ensemble,
    max_learning_rate,
)

RTOL = 1e-10


def close(actual, desired, rtol=RTOL, scale=None):
    desired = np.asarray(desired, dtype=np.float64)
    scale = float(np.max(np.abs(desired))) if scale is None else scale
    np.testing.assert_allclose(np.asarray(actual, dtype=np.float64), desired, rtol=rtol, atol=rtol * scale)


def psd(rng, n, rank=None, scale=1.0):
    F = rng.normal(size=(n, rank or n + 3))
    return scale * F @ F.T / F.shape[1]


def joint_kernels(rng, n, m, d=4):
    """NNGP and NTK-like kernels on train + test points (ReLU-style features, so both PSD)."""
    X = rng.normal(size=(n + m, d))
    W1, W2 = rng.normal(size=(d, 60)), rng.normal(size=(d, 50))
    A, B = np.maximum(X @ W1, 0) / np.sqrt(60), np.tanh(X @ W2) / np.sqrt(50)
    nngp = A @ A.T + 0.1
    ntk = nngp + B @ B.T + X @ X.T / d
    return nngp, ntk


# ----------------------------------------------------------------------------------------------
# gradient_descent_mse: f(t) - y_ext = expm(G s) (f(0) - y_ext) with the flat generator G.


def mse_oracle(K_full, Kt_full, y, f0, ft0, s):
    """Train and test outputs (flat) at scaled time s, from the block ODE generator."""
    P, Q = K_full.shape[0], Kt_full.shape[0]
    G = np.zeros((P + Q, P + Q))
    G[:P, :P], G[P:, :P] = -K_full, -Kt_full
    z0 = np.concatenate([f0 - y, ft0])
    z = sl.expm(G * s) @ z0
    return z[:P] + y, z[P:]


def mse_limit(K_full, Kt_full, y, f0, ft0):
    return y, ft0 + Kt_full @ np.linalg.solve(K_full, y - f0)


@pytest.mark.parametrize("layout", ["plain", "traced_last", "empirical", "traced_middle"])
@pytest.mark.parametrize("diag_reg, absolute", [(0.0, False), (0.05, False), (0.02, True)])
def test_gradient_descent_mse_matches_matrix_exponential(rng, layout, diag_reg, absolute):
    n, m, k, lr = 7, 4, 3, 0.6
    if layout == "plain":  # y (n,), kernel (n, n), nothing traced
        J = psd(rng, n + m)
        K, Kt = J[:n, :n], J[n:, :n]
        y_shape, t_shape, trace_axes = (n,), (m,), ()
        K_full, Kt_full = K, Kt
    elif layout == "traced_last":  # y (n, k), kernel (n, n) ⊗ I_k
        J = psd(rng, n + m)
        K, Kt = J[:n, :n], J[n:, :n]
        y_shape, t_shape, trace_axes = (n, k), (m, k), (-1,)
        K_full, Kt_full = np.kron(K, np.eye(k)), np.kron(Kt, np.eye(k))
    elif layout == "empirical":  # y (n, k), kernel (n, n, k, k) with trace_axes=()
        Phi = rng.normal(size=(n + m, k, 25)) / 5
        J4 = np.einsum("iap,jbp->ijab", Phi, Phi)
        K, Kt = J4[:n, :n], J4[n:, :n]
        y_shape, t_shape, trace_axes = (n, k), (m, k), ()
        K_full = K.transpose(0, 2, 1, 3).reshape(n * k, n * k)
        Kt_full = Kt.transpose(0, 2, 1, 3).reshape(m * k, n * k)
    else:  # y (n, 2, k), axis 1 traced, kernel over (sample, last axis): (n, n, k, k) ⊗ I_2
        Phi = rng.normal(size=(n + m, k, 25)) / 5
        J4 = np.einsum("iap,jbp->ijab", Phi, Phi)
        K, Kt = J4[:n, :n], J4[n:, :n]
        y_shape, t_shape, trace_axes = (n, 2, k), (m, 2, k), (1,)
        K_full = np.einsum("ijab,cd->icajdb", K, np.eye(2)).reshape(n * 2 * k, n * 2 * k)
        Kt_full = np.einsum("ijab,cd->icajdb", Kt, np.eye(2)).reshape(m * 2 * k, n * 2 * k)
    y, f0, ft0 = rng.normal(size=y_shape), 0.3 * rng.normal(size=y_shape), 0.3 * rng.normal(size=t_shape)
    P = K_full.shape[0]
    Kf = K_full.copy()
    if diag_reg:
        # diag_reg is relative to the mean diagonal of the kernel as given (without traced axes).
        K2 = K if K.ndim == 2 else K.transpose(0, 2, 1, 3).reshape(K.shape[0] * K.shape[2], -1)
        Kf += (diag_reg if absolute else diag_reg * np.trace(K2) / K2.shape[0]) * np.eye(P)
    N = y.size
    predict_fn = gradient_descent_mse(K, y, learning_rate=lr, diag_reg=diag_reg, diag_reg_absolute_scale=absolute,
                                      trace_axes=trace_axes)
    times = np.array([[0.0, 0.4, 3.0], [20.0, 150.0, 4000.0]])
    fx_train, fx_test = predict_fn(times, f0, ft0, Kt)
    assert fx_train.shape == (2, 3) + y_shape and fx_test.shape == (2, 3) + t_shape
    for idx in np.ndindex(times.shape):
        tr, te = mse_oracle(Kf, Kt_full, y.ravel(), f0.ravel(), ft0.ravel(), lr * times[idx] / N)
        close(fx_train[idx], tr.reshape(y_shape))
        close(fx_test[idx], te.reshape(t_shape))
        # a scalar time gives the same as the entry of the array
        a, b = predict_fn(times[idx], f0, ft0, Kt)
        close(a, fx_train[idx], rtol=1e-13)
        close(b, fx_test[idx], rtol=1e-13)
    # infinite time: a solve with the regularised kernel for the test set, interpolation on the train set
    tr_inf, te_inf = predict_fn(None, f0, ft0, Kt)
    _, te = mse_limit(Kf, Kt_full, y.ravel(), f0.ravel(), ft0.ravel())
    close(tr_inf, y)
    close(te_inf, te.reshape(t_shape))
    # a long time reaches the limit (test set; the train set too when nothing is regularised)
    tr_big, te_big = predict_fn(1e9, f0, ft0, Kt)
    close(te_big, te_inf, rtol=1e-9)
    if not diag_reg:
        close(tr_big, y, rtol=1e-9)


def test_gradient_descent_mse_optional_outputs(rng):
    """fx_train_0=None: test only (the residual is -y); fx_test_0=None: train only; default fx_train_0=0."""
    n, m = 6, 3
    J = psd(rng, n + m)
    K, Kt = J[:n, :n], J[n:, :n]
    y, ft0 = rng.normal(size=(n, 2)), rng.normal(size=(m, 2))
    predict_fn = gradient_descent_mse(K, y)
    for t in (0.7, None, [1.0, 2.0]):
        both = predict_fn(t, 0.0, ft0, Kt)
        close(predict_fn(t, None, ft0, Kt), both[1], rtol=1e-14)
        close(predict_fn(t), both[0], rtol=1e-14)
        close(predict_fn(t, np.zeros((n, 2))), both[0], rtol=1e-14)


def test_rank_deficient_kernel_is_finite_and_exact(rng):
    """A kernel with exact zero eigenvalues (more points than features): the component of the
    residual in its null space does not move (neural-tangents divides 0 by 0 there)."""
    n, m, p = 8, 3, 4
    Phi = rng.normal(size=(n + m, p))
    J = Phi @ Phi.T
    K, Kt = J[:n, :n], J[n:, :n]
    y, f0, ft0 = rng.normal(size=(n, 1)), rng.normal(size=(n, 1)), rng.normal(size=(m, 1))
    tr, te = gradient_descent_mse(K, y)(5.0, f0, ft0, Kt)
    tr_o, te_o = mse_oracle(K, Kt, y.ravel(), f0.ravel(), ft0.ravel(), 5.0 / n)
    close(tr.ravel(), tr_o)
    close(te.ravel(), te_o, rtol=1e-9)


# ----------------------------------------------------------------------------------------------
# gradient_descent_mse against gradient descent run on a linear model in parameter space.


@pytest.mark.parametrize("empirical", [False, True])
def test_gradient_descent_mse_is_gradient_descent_on_the_linearised_model(rng, empirical):
    """f(x) = J(x) θ trained by plain gradient descent on ‖f - y‖² / (2 y.size) with a small step η:
    after k steps it is the gradient flow at t = k to first order in η. The per-step factor is
    ``1 - ηλ/N`` instead of ``e^{-ηλ/N}``, so the gap is ≈ k (ηλ/N)² / 2 per mode; here
    ηλ_max/N ≤ 2e-3 and ηλ_max k/N = 3, so the gap is below 2e-3 of the outputs' scale, and it
    halves with η (first-order convergence), which rules out an error in the closed form."""
    n, m, k, p = 6, 4, 3, 40
    if empirical:  # multi-output model, outputs coupled: kernel (n, n, k, k), trace_axes=()
        Jtr, Jte = rng.normal(size=(n, k, p)) / np.sqrt(p), rng.normal(size=(m, k, p)) / np.sqrt(p)
        K, Kt, trace_axes = np.einsum("iap,jbp->ijab", Jtr, Jtr), np.einsum("iap,jbp->ijab", Jte, Jtr), ()
        apply = lambda J, th: np.einsum("iap,p->ia", J, th)
        grad = lambda J, r: np.einsum("iap,ia->p", J, r)
        theta0 = rng.normal(size=p) * 0.3
        lam = np.linalg.eigvalsh(K.transpose(0, 2, 1, 3).reshape(n * k, n * k))[-1]
    else:  # shared features, one weight column per output: kernel (n, n) ⊗ I_k
        Jtr, Jte = rng.normal(size=(n, p)) / np.sqrt(p), rng.normal(size=(m, p)) / np.sqrt(p)
        K, Kt, trace_axes = Jtr @ Jtr.T, Jte @ Jtr.T, (-1,)
        apply = lambda J, th: J @ th
        grad = lambda J, r: J.T @ r
        theta0 = rng.normal(size=(p, k)) * 0.3
        lam = np.linalg.eigvalsh(K)[-1]
    y = rng.normal(size=(n, k))
    N = y.size

    def run(eta, steps):
        theta = theta0.copy()
        for _ in range(steps):
            theta = theta - eta * grad(Jtr, apply(Jtr, theta) - y) / N
        return apply(Jtr, theta), apply(Jte, theta)

    eta = 2e-3 * N / lam
    steps = 1500
    predict_fn = gradient_descent_mse(K, y, learning_rate=eta, trace_axes=trace_axes)
    fx_train, fx_test = predict_fn(steps, apply(Jtr, theta0), apply(Jte, theta0), Kt)
    gd_train, gd_test = run(eta, steps)
    scale = max(np.max(np.abs(fx_train)), np.max(np.abs(fx_test)))
    err = max(np.max(np.abs(fx_train - gd_train)), np.max(np.abs(fx_test - gd_test))) / scale
    assert err < 2e-3
    # half the step, twice the steps: the same time, half the discretisation gap
    predict_half = gradient_descent_mse(K, y, learning_rate=eta / 2, trace_axes=trace_axes)
    h_train, h_test = predict_half(2 * steps, apply(Jtr, theta0), apply(Jte, theta0), Kt)
    close(h_train, fx_train, rtol=1e-12, scale=scale)
    close(h_test, fx_test, rtol=1e-12, scale=scale)
    g2_train, g2_test = run(eta / 2, 2 * steps)
    err2 = max(np.max(np.abs(fx_train - g2_train)), np.max(np.abs(fx_test - g2_test))) / scale
    assert 1.8 < err / err2 < 2.2, (err, err2)


# ----------------------------------------------------------------------------------------------
# gradient_descent_mse_ensemble: moments of the linear map expm(G s) applied to N(0, K_joint).


def ensemble_oracle(nngp, ntk_like, n, y, s):
    """Mean and covariance of [f_train; f_test] at scaled time s when f(0) ~ N(0, nngp) and the
    dynamics d(f_d - y)/ds = -Θ_dd (f_d - y), df_t/ds = -Θ_td (f_d - y) (Θ = ntk_like)."""
    P = nngp.shape[0]
    G = np.zeros((P, P))
    G[:, :n] = -ntk_like[:, :n]
    M = sl.expm(G * s)
    shift = np.concatenate([y, np.zeros(P - n)])
    mean = M @ (-shift) + shift
    cov = M @ nngp @ M.T
    return mean, cov


def _kernel_fn_from(nngp, ntk, X):
    """A neural-tangents style kernel_fn over rows of the index array X (points are indices)."""
    from collections import namedtuple

    Kernel = namedtuple("Kernel", "nngp ntk")

    def kernel_fn(x1, x2=None, get=("nngp", "ntk")):
        i = np.asarray(x1, dtype=int).ravel()
        j = i if x2 is None else np.asarray(x2, dtype=int).ravel()
        ks = {"nngp": nngp[np.ix_(i, j)], "ntk": ntk[np.ix_(i, j)]}
        return ks[get] if isinstance(get, str) else Kernel(**{g: ks[g] for g in ("nngp", "ntk")})

    return kernel_fn


@pytest.mark.parametrize("lr", [1.0, 0.3])
def test_ensemble_matches_linear_map_moments(rng, lr):
    """Lee et al. (2019) eq. 15-16 (NTK) and the NNGP (readout-only) case, train and test sets,
    against the moments of the time-s linear map, at several times and at t=None (exact GP)."""
    n, m = 7, 4
    nngp, ntk = joint_kernels(rng, n, m)
    y = rng.normal(size=n)
    x_train, x_test = np.arange(n)[:, None], np.arange(n, n + m)[:, None]
    kernel_fn = _kernel_fn_from(nngp, ntk, None)
    predict_fn = gradient_descent_mse_ensemble(kernel_fn, x_train, y[:, None], learning_rate=lr)
    times = np.array([0.0, 0.5, 6.0, 80.0])
    out_test = predict_fn(times, x_test, None, compute_cov=True)
    out_train = predict_fn(times, None, None, compute_cov=True)
    for g, theta in (("nngp", nngp), ("ntk", ntk)):
        for i, t in enumerate(times):
            mean, cov = ensemble_oracle(nngp, theta, n, y, lr * t / y.size)
            sc = np.max(np.abs(nngp))
            close(getattr(out_test, g).mean[i, :, 0], mean[n:], scale=1.0)
            close(getattr(out_test, g).covariance[i], cov[n:, n:], scale=sc)
            close(getattr(out_train, g).mean[i, :, 0], mean[:n], scale=1.0)
            close(getattr(out_train, g).covariance[i], cov[:n, :n], scale=sc)
    # infinite time: the GP posteriors in their textbook forms
    inf = predict_fn(None, x_test, None, compute_cov=True)
    Kdd, Ktd, Ktt = nngp[:n, :n], nngp[n:, :n], nngp[n:, n:]
    Tdd, Ttd = ntk[:n, :n], ntk[n:, :n]
    close(inf.nngp.mean[:, 0], Ktd @ np.linalg.solve(Kdd, y), scale=1.0)
    close(inf.nngp.covariance, Ktt - Ktd @ np.linalg.solve(Kdd, Ktd.T), scale=np.max(Ktt))
    A = Ttd @ np.linalg.inv(Tdd)
    close(inf.ntk.mean[:, 0], A @ y, scale=1.0)
    close(inf.ntk.covariance, Ktt + A @ Kdd @ A.T - A @ Ktd.T - Ktd @ A.T, scale=np.max(Ktt))
    # and a long time reaches it
    late = predict_fn(1e10, x_test, None, compute_cov=True)
    for g in ("nngp", "ntk"):
        close(getattr(late, g).mean, getattr(inf, g).mean, rtol=1e-9, scale=1.0)
        close(getattr(late, g).covariance, getattr(inf, g).covariance, rtol=1e-9, scale=np.max(Ktt))
    # train set at t=None: N(y, 0)
    tr = predict_fn(None, None, "ntk", compute_cov=True)
    close(tr.mean[:, 0], y)
    assert not np.any(tr.covariance)


def test_ensemble_diag_reg_and_x_test_equal_to_x_train(rng):
    """Regularised predictions on the training inputs (x_test=x_train) are the kernel ridge fit."""
    n = 6
    nngp, ntk = joint_kernels(rng, n, 0)
    y = rng.normal(size=(n, 2))
    x = np.arange(n)[:, None]
    for absolute, reg in ((False, 0.1), (True, 0.05)):
        predict_fn = gradient_descent_mse_ensemble(_kernel_fn_from(nngp, ntk, None), x, y, diag_reg=reg,
                                                   diag_reg_absolute_scale=absolute)
        for g, K in (("nngp", nngp), ("ntk", ntk)):
            lam = reg if absolute else reg * np.trace(K) / n
            close(predict_fn(None, x, g), K @ np.linalg.solve(K + lam * np.eye(n), y))
            # finite time, train set: (I - e^{-(K + λI) s}) y
            t = 3.0
            close(predict_fn(t, None, g), (np.eye(n) - sl.expm(-(K + lam * np.eye(n)) * t / y.size)) @ y)


# ----------------------------------------------------------------------------------------------
# gp_inference and max_learning_rate.


def test_gp_inference_formulas(rng):
    n, m = 7, 4
    nngp, ntk = joint_kernels(rng, n, m)
    from collections import namedtuple

    Kernel = namedtuple("Kernel", "nngp ntk")
    kdd = Kernel(nngp[:n, :n], ntk[:n, :n])
    ktd = Kernel(nngp[n:, :n], ntk[n:, :n])
    ktt = Kernel(nngp[n:, n:], ntk[n:, n:])
    y = rng.normal(size=(n, 3))
    out = gp_inference(kdd, y)(("nngp", "ntk", "ntkgp"), ktd, ktt)
    Tinv = np.linalg.inv(kdd.ntk)
    close(out.ntkgp.mean, ktd.ntk @ Tinv @ y)
    close(out.ntkgp.covariance, ktt.ntk - ktd.ntk @ Tinv @ ktd.ntk.T, scale=np.max(ktt.ntk))
    close(out.nngp.covariance, ktt.nngp - ktd.nngp @ np.linalg.solve(kdd.nngp, ktd.nngp.T), scale=np.max(ktt.nngp))
    A = ktd.ntk @ Tinv
    close(out.ntk.covariance, ktt.nngp + A @ kdd.nngp @ A.T - A @ ktd.nngp.T - ktd.nngp @ A.T, scale=np.max(ktt.nngp))
    # the same from the ensemble at t=None
    kernel_fn = _kernel_fn_from(nngp, ntk, None)
    ens = gradient_descent_mse_ensemble(kernel_fn, np.arange(n)[:, None], y)(None, np.arange(n, n + m)[:, None],
                                                                               compute_cov=True)
    for g in ("nngp", "ntk"):
        close(getattr(ens, g).mean, getattr(out, g).mean, rtol=1e-13)
        close(getattr(ens, g).covariance, getattr(out, g).covariance, rtol=1e-13, scale=np.max(ktt.nngp))


def test_max_learning_rate_is_the_stability_edge(rng):
    """Gradient descent with a step just below max_learning_rate converges, just above diverges."""
    n = 6
    K = psd(rng, n)
    y = rng.normal(size=(n, 1))
    lr = max_learning_rate(K, y_train_size=y.size, eps=0.0)
    assert lr == pytest.approx(2 * y.size / np.linalg.eigvalsh(K)[-1], rel=1e-13)
    for factor, converges in ((0.99, True), (1.01, False)):
        f = np.zeros_like(y)
        for _ in range(5000):
            f = f - factor * lr * K @ (f - y) / y.size
        assert (np.max(np.abs(f - y)) < 1e-3) == converges
    assert max_learning_rate(K, momentum=0.5, eps=0.0) == pytest.approx(1.5 * 2 * n / np.linalg.eigvalsh(K)[-1])
