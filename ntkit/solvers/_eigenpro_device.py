"""EigenPro 2 and 3 on a jax device: the same iteration as the host path, as jitted steps on device arrays.

:func:`ntkit.solvers.eigenpro` chooses this engine when the placement (:mod:`ntkit._device`) is a
jax device. Setup (subsample, preconditioner, projection factor) runs on the device from the same
random draws as the host path; each step is one jitted function of device arrays that gathers
its batch by index from the resident data, so an epoch performs no host round trip; the loop
reads back one scalar (the training loss) per epoch. When ``X`` is a host array (or a
``numpy.memmap``) too large for the device budget, EigenPro 3 streams batches of rows to the
device instead, one batch ahead of the step that uses it.
"""

from __future__ import annotations

import concurrent.futures
import functools
from typing import Any, NamedTuple

import numpy as np

from .._validation import is_jax_array
from ._device import DeviceKernel, Rows, _jax, col_block, device_cholesky, eig_top, kmv, kmv_rows, mm, tri_inv

__all__ = ["DeviceEP2", "DeviceEP3"]


def _put(a, device, dtype=None):
    jax, _ = _jax()
    if is_jax_array(a):
        a = a if dtype is None else a.astype(dtype)
        return jax.device_put(a, device)
    return jax.device_put(np.asarray(a) if dtype is None else np.asarray(a, dtype=dtype), device)


def _batches(order, bs):
    """The host path's batches (consecutive slices of the permutation, each sorted), as an (nb, bs)
    int32 array padded with -1 (a padded entry is masked out of the step)."""
    n = len(order)
    nb = -(-n // bs)
    out = np.full(nb * bs, -1, dtype=np.int32)
    out[:n] = order
    out = out.reshape(nb, bs)
    for b in range(nb):
        m = min(bs, n - b * bs)
        out[b, :m] = np.sort(out[b, :m])
    return out


@functools.lru_cache(maxsize=64)
def _block_fn(kk, n_features, out64):
    jax, jnp = _jax()
    kernel, params = kk.kernel, kk.params

    def f(A, sA, B, sB):
        K = kernel._block_rows(jnp, A, B, mm(A, B.T), sA, sB, n_features, params)
        return K.astype(jnp.float64) if out64 else K

    return jax.jit(f)


def _block(dk, A, sA, B, sB, out64=False):
    return _block_fn(dk.key, dk.n_features, out64)(A, sA, B, sB)


# ============================================================================ EigenPro 3
class EP3Ops(NamedTuple):
    """The projection and preconditioner of EigenPro 3 on the device (float64 except the centers)."""

    Zp: Any  # (p, d) prepared centers
    sZ: Any  # (p,)
    L: Any  # (p, p) lower Cholesky factor of K(Z, Z)
    Linv: Any  # (p, p) its inverse
    V: Any  # (p, q-1) K_ZZ-orthonormal top directions
    Vc: Any  # (p, q-1) V * (1 - λ_q/λ_i)


@functools.lru_cache(maxsize=64)
def _ep3_core(kk, n_features, has_q, ridge_on, snap):
    jax, jnp = _jax()
    kernel, params = kk.kernel, kk.params

    def core(W, Xb, sb, yb, valid, ops, lr, inv_n, ridge, snapW, snapG):
        Kbz = kernel._block_rows(jnp, Xb, ops.Zp, mm(Xb, ops.Zp.T), sb, ops.sZ, n_features, params)
        vm = valid.astype(W.dtype)[:, None]
        r = (mm(Kbz, W - snapW) if snap else mm(Kbz, W) - yb) * vm
        g = mm(Kbz.T, r).astype(jnp.float64)
        nb = jnp.sum(valid).astype(jnp.float64)
        if snap:
            g = g + (nb * inv_n) * snapG
        if ridge_on:
            g = g + (ridge * nb * inv_n) * mm(ops.L, mm(ops.L.T, W.astype(jnp.float64)))
        theta = mm(ops.Linv.T, mm(ops.Linv, g))  # K_ZZ⁻¹ g
        if has_q:
            theta = theta - mm(ops.Vc, mm(ops.V.T, g))
        return W - (lr * theta).astype(W.dtype)

    return core


@functools.lru_cache(maxsize=64)
def _ep3_resident_step(kk, n_features, has_q, ridge_on, snap):
    jax, jnp = _jax()
    core = _ep3_core(kk, n_features, has_q, ridge_on, snap)

    def step(W, i, batches, XP, sX, Y, ops, lr, inv_n, ridge, snapW, snapG):
        B = batches[i]
        valid = B >= 0
        Bc = jnp.where(valid, B, 0)
        return core(W, XP[Bc], sX[Bc], Y[Bc], valid, ops, lr, inv_n, ridge, snapW, snapG), i + 1

    return jax.jit(step)


@functools.lru_cache(maxsize=64)
def _ep3_stream_step(kk, n_features, has_q, ridge_on, snap):
    jax, _ = _jax()
    return jax.jit(_ep3_core(kk, n_features, has_q, ridge_on, snap))


@functools.lru_cache(maxsize=64)
def _ep3_full_grad_fn(kk, n_features):
    """Σ over row blocks of K(Z, X_b) (K(X_b, Z) W − y_b), float64 (the SVRG snapshot gradient)."""
    jax, jnp = _jax()
    kernel, params = kk.kernel, kk.params

    def f(W, Pb, sb, mb, Yb, Zp, sZ):
        def body(G, blk):
            P, s, m, Y = blk
            K = kernel._block_rows(jnp, P, Zp, mm(P, Zp.T), s, sZ, n_features, params)
            r = (mm(K, W) - Y) * m[:, None]
            return G + mm(K.T, r).astype(jnp.float64), None

        G0 = jnp.zeros(W.shape, jnp.float64)
        return jax.lax.scan(body, G0, (Pb, sb, mb, Yb))[0]

    return jax.jit(f)


class DeviceEP3:
    """EigenPro 3 on a device (Cholesky projection onto the centers)."""

    has_vr = True

    def __init__(self, kernel, X, y2, Z, *, placement, dtype, s, n_eigen, max_batch, ridge, seed, batch_size,
                 budget, parameters, stream=False):
        jax, jnp = _jax()
        self.device = placement.device
        self.dtype = np.dtype(dtype)
        self.ridge = float(ridge)
        self.n = n = int(X.shape[0])
        self.budget = budget
        Zd = _put(Z, self.device, self.dtype)
        p = int(Zd.shape[0])
        self.p = p
        dk = DeviceKernel(kernel, Zd, self.dtype)
        self.dk = dk
        Zr = dk.rows(Zd)
        itemsize = self.dtype.itemsize
        self.streaming = bool(stream)  # the rule ("auto") is eigenpro's
        self.X = X
        rb = col_block(p, n, itemsize, budget // 2, minimum=min(n, 1024))
        if self.streaming:
            self.Xr = None
        else:
            self.Xr = dk.rows(_put(X, self.device, self.dtype), block=rb)
        self.rb = rb
        self.Y = _put(y2, self.device, self.dtype)
        rng = np.random.default_rng([seed, 0])
        S = np.sort(rng.choice(n, size=s, replace=False))
        XS = self._rows_at(S)
        sS = jnp.sum(XS * XS, axis=1)
        beta = float(jax.device_get(jnp.max(dk.diag(sS)))) + ridge / n
        Kzz = _block(dk, Zr.P, Zr.s, Zr.P, Zr.s, out64=True)
        try:
            L, _ = device_cholesky(Kzz, what="K(centers, centers) (duplicate centers?)", stacklevel=5)
        except np.linalg.LinAlgError as e:
            raise ValueError(f"EigenPro 3 projects onto the span of the centers, but {e} (the kernel is zero or not "
                             "positive semi-definite on centers: e.g. all-zero centers with a dot-product kernel)") \
                from None
        del Kzz
        G = jax.scipy.linalg.solve_triangular(L, _block(dk, Zr.P, Zr.s, XS, sS, out64=True), lower=True)
        G = G / np.sqrt(s)
        k_max = min(s, p, 401) if n_eigen == "auto" else min(s, p, int(n_eigen) + 1)
        if p <= s:  # the p × p Gram G Gᵀ has the same nonzero eigenvalues as the s × s GᵀG
            w, U = eig_top(mm(G, G.T), k_max, rng, method="eigh")
            w = jnp.maximum(w, 0.0)
        else:
            w, Wv = eig_top(mm(G.T, G), k_max, rng, method="eigh")
            w = jnp.maximum(w, 0.0)
            U = None
        w_host = np.asarray(jax.device_get(w))
        pos = w_host > 1e-14 * max(w_host[0], 1e-300)
        if not pos.any():
            raise ValueError("the kernel between the centers and the training data X (a subsample) is zero to "
                             "working precision; check the kernel's lengthscale against the scale of X and centers.")
        k = int(pos.sum())  # eigenvalues are descending: the positive ones come first
        w, w_host = w[:k], w_host[:k]
        U = U[:, :k] if U is not None else mm(G, Wv[:, :k]) / jnp.sqrt(w)
        del G
        lam = w_host + ridge / n
        ne = n_eigen if n_eigen == "auto" else min(int(n_eigen), k)
        q, bs, lr, _ = parameters(lam, beta, n_eigen=ne, max_batch=max_batch, variant=3, batch_size=batch_size)
        self.q, self.bs, self.lr = int(q), int(bs), float(lr)
        c = jnp.asarray(1.0 - lam[q - 1] / lam[: q - 1])
        V = jax.scipy.linalg.solve_triangular(L.T, U[:, : q - 1], lower=False)
        self.ops = EP3Ops(Zr.P, Zr.s, L, tri_inv(L), V, V * c)
        self.inv_n = jnp.asarray(1.0 / n, jnp.float64)
        self.ridge_d = jnp.asarray(self.ridge, jnp.float64)
        self.snap = None
        key = (dk.key, dk.n_features, q > 1, self.ridge > 0)
        self._step = {sn: (_ep3_stream_step if self.streaming else _ep3_resident_step)(*key, sn)
                      for sn in (False, True)}
        self._pool = None

    # -- data access -----------------------------------------------------------------------
    def _rows_at(self, idx):
        """Prepared rows ``idx`` (sorted numpy indices) on the device."""
        if self.Xr is not None:
            return self.Xr.P[_put(idx.astype(np.int32), self.device)]
        return self.dk.prepare(_put(np.asarray(self.X[idx]), self.device, self.dtype))

    def _load(self, B):
        """Streaming: a batch's prepared rows, norms, targets and mask on the device (runs on the
        prefetch thread, which must see the solver's 64-bit jax scope: it is thread-local)."""
        jax, jnp = _jax()
        with jax.enable_x64(True):
            return self._load_rows(B)

    def _load_rows(self, B):
        _, jnp = _jax()
        valid = B >= 0
        rows = B[valid]
        Xb = np.zeros((len(B), self.X.shape[1]), self.dtype)
        Xb[: len(rows)] = self.X[rows]
        P = self.dk.prepare(_put(Xb, self.device))
        Bd = _put(np.where(valid, B, 0).astype(np.int32), self.device)
        return P, jnp.sum(P * P, axis=1), self.Y[Bd], _put(valid, self.device)

    # -- engine interface --------------------------------------------------------------------
    def zeros(self, c):
        _, jnp = _jax()
        return _put(np.zeros((self.p, c), self.dtype), self.device)

    def from_host(self, W):
        return _put(W, self.device, self.dtype)

    def to_host(self, W):
        jax, _ = _jax()
        return np.asarray(jax.device_get(W))

    def copy(self, W):
        _, jnp = _jax()
        return jnp.array(W, copy=True)

    def snapshot(self, W):
        """SVRG: the full gradient at a snapshot of the weights (one pass over the data on the device)."""
        jax, jnp = _jax()
        if self.streaming:
            G = jnp.zeros(W.shape, jnp.float64)
            fg = _ep3_full_grad_fn(self.dk.key, self.dk.n_features)
            for i in range(0, self.n, self.rb):
                B = np.arange(i, min(self.n, i + self.rb), dtype=np.int32)
                B = np.concatenate([B, np.full(self.rb - len(B), -1, np.int32)])
                P, s, yb, valid = self._load(B)
                G = G + fg(W, P[None], s[None], valid.astype(self.dtype)[None], yb[None], self.ops.Zp, self.ops.sZ)
        else:
            Pb, sb, mb = self.Xr.blocked()
            Yb = jnp.concatenate([self.Y, jnp.zeros((self.Xr.P.shape[0] - self.n, self.Y.shape[1]), self.dtype)])
            G = _ep3_full_grad_fn(self.dk.key, self.dk.n_features)(W, Pb, sb, mb, Yb.reshape(Pb.shape[0], self.rb, -1),
                                                                   self.ops.Zp, self.ops.sZ)
        self.snap = (self.copy(W), G)

    def epoch(self, W, order, lr, *, callback=None, bar=None, epoch=0):
        jax, jnp = _jax()
        batches = _batches(order, self.bs)
        lr_d = jnp.asarray(lr, jnp.float64)
        snap = self.snap is not None
        snapW, snapG = self.snap if snap else (W[:0], jnp.zeros((0,), jnp.float64))
        step = self._step[snap]
        if self.streaming:
            if self._pool is None:
                self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="ntkit-ep3-io")
            nxt = self._pool.submit(self._load, batches[0])
            for b in range(len(batches)):
                Xb, sb, yb, valid = nxt.result()
                if b + 1 < len(batches):
                    nxt = self._pool.submit(self._load, batches[b + 1])
                W = step(W, Xb, sb, yb, valid, self.ops, lr_d, self.inv_n, self.ridge_d, snapW, snapG)
                if callback is not None:
                    callback(epoch, b, W)
                if bar is not None:
                    bar.update(1)
            return W
        bd = _put(batches, self.device)
        i = _put(np.int32(0), self.device)
        for b in range(len(batches)):
            W, i = step(W, i, bd, self.Xr.P, self.Xr.s, self.Y, self.ops, lr_d, self.inv_n, self.ridge_d, snapW,
                        snapG)
            if callback is not None:
                callback(epoch, b, W)
            if bar is not None:
                bar.update(1)
        return W

    def predict_rows(self, W, rows):
        """K(X[rows], Z) W on the device (rows: sorted numpy indices)."""
        jax, jnp = _jax()
        A = self._rows_at(rows)
        Zr = Rows(self.ops.Zp, self.ops.sZ, jnp.ones((self.p,), self.dtype), self.p, self.p)
        out = []
        br = max(1, int(self.budget // (3 * self.dtype.itemsize * self.p)))
        for i in range(0, A.shape[0], br):
            Ai = A[i:i + br]
            out.append(kmv(self.dk, Ai, jnp.sum(Ai * Ai, axis=1), Zr, W))
        return out[0] if len(out) == 1 else jnp.concatenate(out)

    def mse_rows(self, W, rows):
        jax, jnp = _jax()
        f = self.predict_rows(W, rows)
        return float(jax.device_get(jnp.mean(jnp.square(f - self.Y[_put(rows.astype(np.int32), self.device)]))))

    def mse_val(self, W, X_val, y_val):
        jax, jnp = _jax()
        Zr = Rows(self.ops.Zp, self.ops.sZ, jnp.ones((self.p,), self.dtype), self.p, self.p)
        f = kmv_rows(self.dk, X_val, Zr, W, self.budget)
        return float(jax.device_get(jnp.mean(jnp.square(f - y_val))))

    def close(self):
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


# ============================================================================ EigenPro 2
class EP2Ops(NamedTuple):
    XSp: Any  # (s, d) prepared subsample
    sS: Any
    S: Any  # (s,) int32 subsample indices
    E: Any  # (s, q-1) unit eigenvectors of K_SS/s (float64)
    ED: Any  # (s, q-1) E * D (float64)


@functools.lru_cache(maxsize=64)
def _ep2_step(kk, n_features, has_q, ridge_on):
    jax, jnp = _jax()
    kernel, params = kk.kernel, kk.params

    def step(W, i, batches, Pb, sb, mb, XP, sX, Y, ops, lr, ridge):
        B = batches[i]
        valid = B >= 0
        Bc = jnp.where(valid, B, 0)
        Xb, sxb = XP[Bc], sX[Bc]
        Wb = W.reshape(Pb.shape[0], Pb.shape[1], -1)

        def body(acc, blk):
            Pj, sj, mj, Wj = blk
            K = kernel._block_rows(jnp, Xb, Pj, mm(Xb, Pj.T), sxb, sj, n_features, params)
            return acc + mm(K, Wj * mj[:, None]), None

        acc = jax.lax.scan(body, jnp.zeros((Xb.shape[0], W.shape[1]), W.dtype), (Pb, sb, mb, Wb))[0]
        g = acc - Y[Bc]
        if ridge_on:
            g = g + ridge * W[Bc]
        g = g * valid.astype(W.dtype)[:, None]
        W = W.at[Bc].add(-(lr * g).astype(W.dtype))
        if has_q:
            Ksb = kernel._block_rows(jnp, ops.XSp, Xb, mm(ops.XSp, Xb.T), ops.sS, sxb, n_features, params)
            u = mm(ops.ED, mm(ops.E.T, mm(Ksb, g).astype(jnp.float64)))
            W = W.at[ops.S].add((lr * u).astype(W.dtype))
        return W, i + 1

    return jax.jit(step)


class DeviceEP2:
    """EigenPro 2 (centers = training data) on a device."""

    has_vr = False

    def __init__(self, kernel, X, y2, *, placement, dtype, s, n_eigen, max_batch, ridge, seed, batch_size, budget,
                 alpha, parameters):
        jax, jnp = _jax()
        self.device = placement.device
        self.dtype = np.dtype(dtype)
        self.n = n = int(X.shape[0])
        self.budget = budget
        self.ridge = float(ridge)
        Xd = _put(X, self.device, self.dtype)
        dk = DeviceKernel(kernel, Xd, self.dtype)
        self.dk = dk
        rng = np.random.default_rng([seed, 0])
        S = np.sort(rng.choice(n, size=s, replace=False))
        # column blocks of the data sized for the largest batch the budget allows
        self.Xr = dk.rows(Xd, block=col_block(max(1, max_batch), n, self.dtype.itemsize, budget // 2,
                                              minimum=min(n, 256)))
        Sd = _put(S.astype(np.int32), self.device)
        XSp = self.Xr.P[Sd]
        sS = self.Xr.s[Sd]
        K = _block(dk, XSp, sS, XSp, sS, out64=True) / s
        k = min(s - 1, 400) if n_eigen == "auto" else min(int(n_eigen) + 1, s)
        k = max(k, 1)
        lam, E = eig_top(K, k, rng)
        del K
        lam_host = np.asarray(jax.device_get(lam))
        beta = float(jax.device_get(jnp.max(dk.diag(sS))))
        lam_eff = lam_host + ridge / n
        beta_eff = beta + ridge
        q, bs, lr, _ = parameters(lam_eff, beta_eff, n_eigen=n_eigen if n_eigen == "auto" else
                                  min(int(n_eigen), len(lam_host)), max_batch=max_batch, alpha=alpha,
                                  batch_size=batch_size, variant=2)
        self.q, self.bs, self.lr = int(q), int(bs), float(lr)
        lam_q = lam_eff[q - 1]
        D = (1.0 - (lam_q / lam_eff[: q - 1]) ** alpha) / (s * lam_host[: q - 1]) if q > 1 else np.zeros(0)
        Eq = E[:, : q - 1]
        self.ops = EP2Ops(XSp, sS, Sd, Eq, Eq * jnp.asarray(D))
        self.Y = _put(y2, self.device, self.dtype)
        self.ridge_d = jnp.asarray(self.ridge, self.dtype)
        self._step = _ep2_step(dk.key, dk.n_features, q > 1, self.ridge > 0)

    def zeros(self, c):
        return _put(np.zeros((self.Xr.P.shape[0], c), self.dtype), self.device)

    def from_host(self, W):
        _, jnp = _jax()
        W = _put(W, self.device, self.dtype)
        return jnp.concatenate([W, jnp.zeros((self.Xr.P.shape[0] - self.n, W.shape[1]), self.dtype)])

    def to_host(self, W):
        jax, _ = _jax()
        return np.asarray(jax.device_get(W[: self.n]))

    def copy(self, W):
        _, jnp = _jax()
        return jnp.array(W, copy=True)

    def epoch(self, W, order, lr, *, callback=None, bar=None, epoch=0):
        _, jnp = _jax()
        batches = _put(_batches(order, self.bs), self.device)
        lr_d = jnp.asarray(lr, self.dtype)
        i = _put(np.int32(0), self.device)
        Pb, sb, mb = self.Xr.blocked()
        for b in range(batches.shape[0]):
            W, i = self._step(W, i, batches, Pb, sb, mb, self.Xr.P, self.Xr.s, self.Y, self.ops, lr_d, self.ridge_d)
            if callback is not None:
                callback(epoch, b, W[: self.n])
            if bar is not None:
                bar.update(1)
        return W

    def predict_rows(self, W, rows):
        _, jnp = _jax()
        A = self.Xr.P[_put(rows.astype(np.int32), self.device)]
        out = []
        br = max(1, int(self.budget // (3 * self.dtype.itemsize * self.Xr.block)))
        for i in range(0, A.shape[0], br):
            Ai = A[i:i + br]
            out.append(kmv(self.dk, Ai, jnp.sum(Ai * Ai, axis=1), self.Xr, W))
        return out[0] if len(out) == 1 else jnp.concatenate(out)

    def mse_rows(self, W, rows):
        jax, jnp = _jax()
        f = self.predict_rows(W, rows)
        return float(jax.device_get(jnp.mean(jnp.square(f - self.Y[_put(rows.astype(np.int32), self.device)]))))

    def mse_val(self, W, X_val, y_val):
        jax, jnp = _jax()
        f = kmv_rows(self.dk, X_val, self.Xr, W, self.budget)
        return float(jax.device_get(jnp.mean(jnp.square(f - y_val))))

    def close(self):
        pass
