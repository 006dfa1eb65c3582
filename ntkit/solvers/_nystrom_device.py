"""Nyström PCG (Falkon-style) on a jax device: the host algorithm of :func:`ntkit.solvers.nystrom_pcg`
with the data pass and each CG iteration as jitted functions of device arrays."""

from __future__ import annotations

import functools

import numpy as np

from ._device import DeviceKernel, _jax, col_block, device_cholesky, mm

__all__ = ["nystrom_pcg_device"]


@functools.lru_cache(maxsize=64)
def _pass_fn(kk, n_features):
    """``Σ_b K(C, X_b) (mask_b · (K(X_b, C) v))`` and ``Σ_b K(C, X_b) Y_b`` over row blocks (float64 out)."""
    jax, jnp = _jax()
    kernel, params = kk.kernel, kk.params

    def knm_t_knm(Cp, sC, Pb, sb, mb, v):
        def body(acc, blk):
            P, s, m = blk
            K = kernel._block_rows(jnp, P, Cp, mm(P, Cp.T), s, sC, n_features, params)
            u = mm(K, v) * m[:, None]
            return acc + mm(K.T, u), None

        acc0 = jnp.zeros((Cp.shape[0], v.shape[1]), v.dtype)
        return jax.lax.scan(body, acc0, (Pb, sb, mb))[0].astype(jnp.float64)

    def knm_t_y(Cp, sC, Pb, sb, mb, Yb):
        def body(acc, blk):
            P, s, m, Y = blk
            K = kernel._block_rows(jnp, P, Cp, mm(P, Cp.T), s, sC, n_features, params)
            return acc + mm(K.T, Y * m[:, None]), None

        acc0 = jnp.zeros((Cp.shape[0], Yb.shape[2]), Yb.dtype)
        return jax.lax.scan(body, acc0, (Pb, sb, mb, Yb))[0].astype(jnp.float64)

    return jax.jit(knm_t_knm), jax.jit(knm_t_y)


@functools.lru_cache(maxsize=64)
def _iteration_fn(kk, n_features):
    """One CG iteration of the preconditioned system (the host loop's body), jitted."""
    jax, jnp = _jax()
    solve = jax.scipy.linalg.solve_triangular
    knm_t_knm, _ = _pass_fn(kk, n_features)

    def op(z, T, A, Cp, sC, Pb, sb, mb, ridge, n):
        v = solve(A, z, lower=False)
        vt = solve(T, v, lower=False)
        cc = knm_t_knm(Cp, sC, Pb, sb, mb, vt.astype(Cp.dtype)) / n
        return solve(A, solve(T, cc, lower=False, trans="T") + ridge * v, lower=False, trans="T")

    def it(beta, r, z, rs, bnorm, T, A, Cp, sC, Pb, sb, mb, ridge, n):
        Az = op(z, T, A, Cp, sC, Pb, sb, mb, ridge, n)
        denom = jnp.sum(z * Az, axis=0)
        a = jnp.where(denom > 0, rs / jnp.where(denom > 0, denom, 1), 0.0)
        beta = beta + a * z
        r = r - a * Az
        rs_new = jnp.sum(r * r, axis=0)
        rel = jnp.max(jnp.sqrt(rs_new) / bnorm)
        z = r + (rs_new / jnp.where(rs > 0, rs, 1)) * z
        return beta, r, z, rs_new, rel

    return jax.jit(it)


def nystrom_pcg_device(kernel, X, y, centers, *, placement, dtype, ridge, maxiter, tol, budget, verbose):
    """Device half of :func:`ntkit.solvers.nystrom_pcg`; returns ``(weights, history, n_iter)`` (device)."""
    jax, jnp = _jax()
    solve = jax.scipy.linalg.solve_triangular
    dev = placement.device
    Cd = jax.device_put(centers if not isinstance(centers, np.ndarray) else np.asarray(centers, dtype), dev)
    Cd = Cd.astype(dtype)
    m = int(Cd.shape[0])
    n = int(X.shape[0])
    dk = DeviceKernel(kernel, Cd, dtype)
    Cr = dk.rows(Cd)
    Cp, sC = Cr.P, Cr.s
    Xd = jax.device_put(X if not isinstance(X, np.ndarray) else np.asarray(X, dtype), dev).astype(dtype)
    rb = col_block(m, n, np.dtype(dtype).itemsize, budget // 2, minimum=min(n, 1024))
    Xr = dk.rows(Xd, block=rb)
    del Xd
    Pb, sb, mb = Xr.blocked()
    Kmm = dk.kernel._block_rows(jnp, Cp, Cp, mm(Cp, Cp.T), sC, sC, dk.n_features, dk.params).astype(jnp.float64)
    eps = 1e-13 if np.dtype(dtype) == np.float64 else 1e-5
    eps_m = eps * m * max(1.0, float(jax.device_get(jnp.max(jnp.diagonal(Kmm)))))
    Kmm = Kmm + eps_m * jnp.eye(m, dtype=jnp.float64)
    L, _ = device_cholesky(Kmm, what="K(centers, centers)", stacklevel=4)
    del Kmm
    T = L.T  # TᵀT = K_mm + εm I
    M = mm(T, T.T) / m + ridge * jnp.eye(m, dtype=jnp.float64)
    LA, _ = device_cholesky(M, what="the preconditioner's T Tᵀ/m + ridge·I", stacklevel=4)
    A = LA.T
    del M
    Y = jnp.asarray(y).astype(jnp.float64).reshape(n, -1)
    Yd = jax.device_put(Y, dev).astype(dtype)
    npad = Xr.P.shape[0]
    Yd = jnp.concatenate([Yd, jnp.zeros((npad - n, Yd.shape[1]), dtype)]).reshape(Pb.shape[0], rb, -1)
    _, knm_t_y = _pass_fn(dk.key, dk.n_features)
    kty = knm_t_y(Cp, sC, Pb, sb, mb, Yd)
    b = solve(A, solve(T, kty, lower=False, trans="T"), lower=False, trans="T") / np.sqrt(n)
    beta = jnp.zeros_like(b)
    r = b
    z = r
    rs = jnp.sum(r * r, axis=0)
    bnorm = jnp.sqrt(jnp.sum(b * b, axis=0))
    bnorm = jnp.where(bnorm == 0, 1.0, bnorm)
    it_fn = _iteration_fn(dk.key, dk.n_features)
    ridge_d = jnp.asarray(ridge, jnp.float64)
    n_d = jnp.asarray(float(n), jnp.float64)
    history = []
    it = 0
    for it in range(1, maxiter + 1):
        beta, r, z, rs, rel = it_fn(beta, r, z, rs, bnorm, T, A, Cp, sC, Pb, sb, mb, ridge_d, n_d)
        rel = float(jax.device_get(rel))  # one scalar per iteration: the stopping rule
        history.append(rel)
        if verbose:
            print(f"nystrom_pcg iteration {it}: relative residual {rel:.3e}")
        if rel < tol:
            break
    alpha = solve(T, solve(A, beta, lower=False), lower=False) / np.sqrt(n)
    return alpha.astype(dtype), Cd, history, it
