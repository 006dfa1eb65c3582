"""EigenPro's host engine: the epoch loop shared by EigenPro 2 and 3 (validation, tolerance, progress,
checkpoints, callbacks), the EigenPro 2 step and the EigenPro 3 setup and gradient functions.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np
import scipy.linalg

from .. import _linalg
from .._blas import matmul
from .._validation import is_jax_array
from ._access import KernelAccess, idx
from ._eigenpro_precond import ALPHA_EP2, _Data, _parameters, _preconditioner


#: Points used to report the training loss each epoch.
EVAL_POINTS = 5000


class _HostEngine:
    """The host (numpy / native) EigenPro 2 and 3 behind the engine interface of :func:`_run`."""

    def __init__(self, kernel, X, y2, centers, dtype, s, n_eigen, max_batch, ridge, seed, batch_size, budget,
                 projection):
        self.dtype = dtype
        n = X.shape[0]
        self.n = n
        self.p = n if centers is None else len(centers)
        acc = KernelAccess(kernel, X, memory_budget=budget, dtype=dtype)
        if centers is None:
            pc, self.bs, self.lr = _preconditioner(acc, np.arange(n), n, s, n_eigen, max_batch, ALPHA_EP2, ridge,
                                                   np.random.default_rng([seed, 0]), 2, batch_size)
            self.q = pc.q
            self._step = _ep2_stepper(acc, X, y2, pc, ridge, n)
            self._predict = lambda W, rows: acc.matvec(idx(rows), idx(np.arange(n)), W)  # noqa: E731
            self._predict_val = lambda W, Xv: acc.matvec(Xv, idx(np.arange(n)), W)  # noqa: E731
        else:
            bind, self.q, self.bs, self.lr = _ep3_setup(acc, X, centers, s, n_eigen, max_batch, ridge, projection,
                                                        budget, seed, batch_size)
            self._step = bind(y2)
            p = len(centers)
            cacc = KernelAccess(kernel, centers, memory_budget=budget, dtype=dtype)
            self._predict = lambda W, rows: cacc.matvec(np.asarray(X[rows], dtype=dtype), idx(np.arange(p)), W)  # noqa
            self._predict_val = lambda W, Xv: cacc.matvec(Xv, idx(np.arange(p)), W)  # noqa: E731
        self.has_vr = hasattr(self._step, "snapshot")
        self.y2 = y2

    def zeros(self, c):
        return np.zeros((self.p, c), self.dtype)

    def from_host(self, W):
        return np.array(W, dtype=self.dtype)

    def to_host(self, W):
        return W

    def copy(self, W):
        return W.copy()

    def snapshot(self, W):
        self._step.snapshot(W)

    def epoch(self, W, order, lr, *, callback=None, bar=None, epoch=0):
        n = len(order)
        for b, i in enumerate(range(0, n, self.bs)):
            self._step(W, np.sort(order[i:i + self.bs]), lr)
            if callback is not None:
                callback(epoch, b, W)
            if bar is not None:
                bar.update(1)
        return W

    def mse_rows(self, W, rows):
        return float(np.mean(np.square(self._predict(W, rows) - self.y2[rows])))

    def mse_val(self, W, X_val, y_val):
        return float(np.mean(np.square(self._predict_val(W, X_val) - y_val)))

    def finish(self, W):
        return W

    def close(self):
        pass


def _run(engine, n, p, c, dtype, seed, epochs, tol, y2, X_val, y_val, checkpoint, verbose, callback, init, ridge,
         has_centers):
    """The epoch loop shared by every engine: history, roll-back, variance reduction, checkpoints."""
    eval_idx = np.sort(np.random.default_rng([seed, 1]).choice(n, size=min(n, EVAL_POINTS), replace=False))
    y_host = np.asarray(y2) if not is_jax_array(y2) else None
    y_scale = float(np.mean(np.square(y_host))) if y_host is not None else float(_mean_sq(y2))
    y_scale = y_scale or 1.0
    bs, lr, q = int(engine.bs), float(engine.lr), int(engine.q)
    meta = {"n": int(n), "p": int(p), "c": int(c), "dtype": dtype.str, "seed": int(seed), "batch_size": bs,
            "lr": lr, "q": q, "ridge": ridge, "centers": has_centers}
    W_host = None
    if init is not None:
        init_a = np.asarray(init, dtype=dtype)
        if init_a.size != p * c:
            raise ValueError(f"init must have {p} rows (one weight per center) and {c} outputs.")
        if not np.isfinite(init_a).all():
            raise ValueError("init contains NaN or infinity; pass finite starting weights (or None for zeros).")
        W_host = init_a.reshape(p, -1).copy()
    state = {"epoch": 0, "history": []}
    if checkpoint is not None and os.path.exists(checkpoint):
        state = _load_checkpoint(checkpoint, meta)
        W_host = state["weights"]
    W = engine.from_host(W_host) if W_host is not None else engine.zeros(c)
    history = state["history"]
    if history and tol is not None and history[-1]["train_mse"] / y_scale < tol:
        epochs = 0  # the checkpointed run had already converged: nothing more to do
    lr_now = float(state.get("lr_now", lr))
    vr_on = bool(state.get("vr_on", False))
    if history:
        prev_mse = history[-1]["train_mse"]
    else:  # the loss of the starting weights (zeros, or init for a warm start)
        prev_mse = engine.mse_rows(W, eval_idx) if W_host is not None and np.any(W_host) else y_scale
    t_start = time.perf_counter()
    for epoch in range(state["epoch"], epochs):
        order = np.random.default_rng([seed, 2, epoch]).permutation(n)
        bar = None
        if verbose:
            from tqdm.auto import tqdm

            bar = tqdm(total=-(-n // bs), desc=f"EigenPro epoch {epoch + 1}/{epochs}", leave=False)
        W_start = engine.copy(W)
        t_epoch = time.perf_counter()
        if vr_on and engine.has_vr:
            engine.snapshot(W)
        W = engine.epoch(W, order, lr_now, callback=callback, bar=bar, epoch=epoch)
        if bar is not None:
            bar.close()
        train_mse = engine.mse_rows(W, eval_idx)  # (on a device: waits for the epoch's last step)
        now = time.perf_counter()
        rec = {"epoch": epoch + 1, "train_mse": train_mse, "seconds": now - t_start,
               "epoch_seconds": now - t_epoch}
        if not np.isfinite(train_mse) or train_mse > 2 * max(prev_mse, 1e-30 * y_scale):
            # the spectrum estimate under-rated the curvature: undo this epoch, halve the step
            W = W_start
            lr_now /= 2
            if lr_now < lr * 2.0**-20:
                raise FloatingPointError(
                    f"EigenPro diverged (training MSE {train_mse:.3g}) even with the step reduced 2^20-fold; check "
                    "the kernel (positive definite? finite?) and the data scale.")
            rec.update(train_mse=prev_mse, rolled_back=True, learning_rate=lr_now)
        else:
            # plain SGD stalls at a noise floor when the model cannot interpolate (p < n):
            # once the loss stops falling, switch EigenPro 3 to variance-reduced steps
            if not vr_on and train_mse > 0.9 * prev_mse and engine.has_vr:
                vr_on = True
                rec["variance_reduction"] = True
            prev_mse = train_mse
        if X_val is not None:
            rec["val_mse"] = engine.mse_val(W, X_val, y_val)
        history.append(rec)
        if verbose:
            print(f"epoch {epoch + 1}: train mse {train_mse:.4g}" +
                  (f", val mse {rec['val_mse']:.4g}" if X_val is not None else ""))
        if checkpoint is not None:
            _save_checkpoint(checkpoint, engine.to_host(W), epoch + 1, history, meta, lr_now, vr_on)
        if tol is not None and train_mse / y_scale < tol:
            break
    return W, history, lr_now


def _mean_sq(a):
    import jax
    import jax.numpy as jnp

    return jax.device_get(jnp.mean(jnp.square(a.astype(jnp.float64) if a.dtype == jnp.float64 else a)))


def _ep2_stepper(acc, X, y, pc, ridge, n):
    allp = idx(np.arange(n))
    S = idx(pc.S)
    ED = pc.E * pc.D if pc.q > 1 else None

    def step(W, B, lr):
        g = acc.matvec(idx(B), allp, W) - y[B]
        if ridge:
            g += ridge * W[B]
        W[B] -= lr * g
        if ED is not None:
            Ksb = acc.block(S, idx(B))
            W[pc.S] += lr * matmul(ED, matmul(pc.E.T, matmul(Ksb, g)))

    return step


def _ep3_setup(acc, X, Z, s, n_eigen, max_batch, ridge, projection, budget, seed, batch_size):
    """EigenPro 3's step on centers Z: ``(step, q, batch_size, lr)``.

    With ``projection="cholesky"`` (K(Z, Z) = L Lᵀ) the preconditioner is built in the span of
    the centers: the top eigenpairs of ``L⁻¹ K(Z, X_S) K(X_S, Z) L⁻ᵀ / s`` (the data operator
    restricted to span{k(z_j, ·)}, from the Nyström subsample) via an SVD of
    ``L⁻¹ K(Z, X_S) / √s``. A step projects the batch's functional gradient onto the centers
    (θ₀ = K_ZZ⁻¹ K_ZB r) and flattens the top q − 1 directions:
    ``θ = θ₀ − V diag(1 − λ_q/λ_i) Vᵀ K_ZZ θ₀`` with K_ZZ-orthonormal ``V = L⁻ᵀ U``. The map
    from gradient to step is positive definite, so the fixed point is the exact least-squares
    solution, and λ_q bounds the preconditioned curvature, so ``batch = β/λ_q`` with step
    ``1/(2β)`` per example is stable. With ``projection="eigenpro"`` (no p×p factor) the
    paper's data preconditioner (from the subsample) is applied to the batch gradient after an
    inexact projection onto the centers (two epochs of EigenPro 2), and its correction is
    projected the same way.
    """
    dtype = acc.dtype
    p = len(Z)
    n = X.shape[0]
    cacc = KernelAccess(acc.kernel, Z, memory_budget=budget, dtype=dtype)
    if projection == "auto":
        projection = "cholesky" if p <= 15_000 and 2 * p * p * 8 <= budget else "eigenpro"
    rng = np.random.default_rng([seed, 0])
    if projection == "cholesky":
        S = np.sort(rng.choice(n, size=s, replace=False))
        Xs = np.asarray(X[S], dtype=dtype)
        beta = acc.diag_max(Xs) + ridge / n  # the ridge adds ridge/n per example in the centre coordinates
        # crash-safe at any p; jitter with a NumericalWarning when the centers make K_ZZ singular
        try:
            L, _ = _linalg.cholesky(cacc.block(Z, Z).astype(np.float64), overwrite_a=True, stacklevel=4,
                                    rebuild=lambda: cacc.block(Z, Z).astype(np.float64),
                                    what="K(centers, centers) (duplicate centers?)")
        except np.linalg.LinAlgError as e:
            raise ValueError(f"EigenPro 3 projects onto the span of the centers, but {e} (the kernel is zero or not "
                             "positive semi-definite on centers: e.g. all-zero centers with a dot-product kernel)") \
                from None
        G = cacc.block(Z, Xs).astype(np.float64)
        with _linalg.one_blas_thread():  # bit-reproducible triangular solves (see ntkit._linalg)
            G = scipy.linalg.solve_triangular(L.T, G, lower=False, trans="T", overwrite_b=True, check_finite=False)
        G /= np.sqrt(s)
        k_max = min(s, p, 401) if n_eigen == "auto" else min(s, p, int(n_eigen) + 1)
        # top eigenpairs of G Gᵀ (p × p): directly when p ≤ s, else from the s × s Gram Gᵀ G (same
        # nonzero eigenvalues) as U = G W / σ — the cheaper of the two factorisations
        M = matmul(G, G.T) if p <= s else matmul(G.T, G)
        w, Wv = _linalg.eigh(M, subset_by_index=[M.shape[0] - k_max, M.shape[0] - 1], overwrite_a=True)
        del M
        order = np.argsort(w)[::-1]
        w, Wv = np.maximum(w[order], 0.0), Wv[:, order]
        pos = w > 1e-14 * max(w[0], 1e-300)
        w, Wv = w[pos], Wv[:, pos]
        if len(w) == 0:
            raise ValueError("the kernel between the centers and the training data X (a subsample) is zero to "
                             "working precision; check the kernel's lengthscale against the scale of X and centers.")
        U = Wv if p <= s else matmul(G, Wv) / np.sqrt(w)
        del G
        lam = w + ridge / n
        k = len(lam)
        ne = n_eigen if n_eigen == "auto" else min(int(n_eigen), k)
        q, bs, lr, _ = _parameters(lam, beta, n_eigen=ne, max_batch=max_batch, variant=3, batch_size=batch_size)
        c = 1.0 - lam[q - 1] / lam[: q - 1]
        with _linalg.one_blas_thread():
            V = scipy.linalg.solve_triangular(L.T, U[:, : q - 1], lower=False, check_finite=False)
        Vc = V * c

        def bind(y):
            snap = {}
            grad, full_grad = _gradient_fns(X, y, Z, cacc, dtype, bs)

            def snapshot(W):
                """Variance reduction (SVRG): the full gradient at a snapshot of the weights, one data pass."""
                snap.update(W=W.copy(), G=full_grad(W))

            def step(W, B, lr):
                if snap:  # r(W) − r(W_snap) + mean gradient: unbiased, and zero at the optimum
                    g = grad(W - snap["W"], B, False).astype(np.float64, copy=False) + (len(B) / n) * snap["G"]
                else:
                    g = grad(W, B, True).astype(np.float64, copy=False)  # K_ZB r = K_ZZ θ₀
                if ridge:
                    g += (ridge * len(B) / n) * matmul(L, matmul(L.T, W.astype(np.float64)))
                theta = _linalg.cho_solve(L, g)
                if q > 1:
                    theta -= matmul(Vc, matmul(V.T, g))
                W -= (lr * theta).astype(dtype)

            step.snapshot = snapshot
            return step

        return bind, q, bs, lr

    pc, bs, lr = _preconditioner(acc, _Data(X), n, s, n_eigen, max_batch, 1.0, 0.0, rng, 3, batch_size)
    Xs = np.asarray(X[pc.S], dtype=dtype)
    N = matmul(cacc.block(Z, Xs), pc.E) if pc.q > 1 else None  # K(Z, X_S) E: the data preconditioner at the centers
    allz = idx(np.arange(p))
    zrng = np.random.default_rng([seed, 3])
    s_z = min(p, 2000 if p < 100_000 else 10_000)
    zpc, zbs, zlr = _preconditioner(cacc, np.arange(p), p, s_z, "auto", p, ALPHA_EP2, 0.0, zrng, 2, "auto")

    def project(H):  # K_ZZ θ = H, inexactly: two epochs of EigenPro 2 on the centers
        theta = np.zeros_like(H)
        zstep = _ep2_stepper(cacc, Z, H, zpc, 0.0, p)
        check = np.arange(min(p, 1000))
        h_scale = float(np.mean(np.square(H[check]))) or 1.0
        for ep in range(2):
            order = np.random.default_rng([seed, 4, ep]).permutation(p)
            for i in range(0, p, zbs):
                zstep(theta, np.sort(order[i:i + zbs]), zlr)
            r = cacc.matvec(idx(check), allz, theta) - H[check]
            if float(np.mean(np.square(r))) < 1e-6 * h_scale:
                break
        return theta

    # Inexact path: project the batch gradient onto the centers (inner EigenPro 2), then apply the
    # data preconditioner to that projected gradient and project its correction again.
    # The data preconditioner is built for the full RKHS; seen through the projection onto the
    # centers it flattens the spectrum less than in EigenPro 2, so the curvature it leaves is
    # measured (power iteration on the subsample's loss, θ ↦ precondition(project(H_S θ)))
    # and the batch and step come from that measured top eigenvalue.
    Ksz = cacc.block(Xs, Z)

    def precond_op(v):
        u = project(matmul(Ksz.T, matmul(Ksz, v)) / s)
        if N is not None:
            u = u - project(matmul(N, pc.D[:, None] * matmul(N.T, u)))
        return u

    v = np.random.default_rng([seed, 5]).standard_normal((p, 1)).astype(dtype)
    lam_hat = 0.0
    for _ in range(8):
        u = precond_op(v)
        lam_hat = float(np.linalg.norm(u) / max(np.linalg.norm(v), 1e-300))
        v = u / max(np.linalg.norm(u), 1e-300)
    lam_hat = max(lam_hat * 1.1, pc.lam_top)  # 10% margin over the power-iteration estimate
    beta = pc.beta
    if batch_size == "auto":
        bs = max(1, min(int(beta / lam_hat), max_batch))
    lr = 1.0 / (beta + (bs - 1) * lam_hat)

    def bind(y):
        grad, _ = _gradient_fns(X, y, Z, cacc, dtype, bs)

        def step(W, B, lr):
            theta = project(grad(W, B, True))
            if ridge:
                theta += (ridge * len(B) / n) * W
            if N is not None:
                theta -= project(matmul(N, pc.D[:, None] * matmul(N.T, theta)))
            W -= lr * theta

        return step

    return bind, pc.q, bs, lr


def _gradient_fns(X, y, Z, cacc, dtype, bs):
    """EigenPro 3's data pass: ``grad(W, B, with_y) = K(Z, X_B) (K(X_B, Z) W − [y_B])`` and
    ``full_grad(W)`` (the same over all rows, float64). Data sharded on Dask workers
    (:func:`ntkit.distributed.eigenpro`) brings its own pair, computed where the rows live."""
    if getattr(X, "_ntkit_sharded", False):
        return X.gradient_fns(y, Z, dtype)
    n = X.shape[0]

    def grad(W, B, with_y):
        Kbz = cacc.block(np.asarray(X[B], dtype=dtype), Z)
        return matmul(Kbz.T, matmul(Kbz, W) - y[B] if with_y else matmul(Kbz, W))

    def full_grad(W):
        G = np.zeros(W.shape, np.float64)
        for i in range(0, n, max(bs, 1024)):
            rows = np.arange(i, min(n, i + max(bs, 1024)))
            G += grad(W, rows, True)
        return G

    return grad, full_grad


def _save_checkpoint(path, W, epoch, history, meta, lr_now, vr_on):
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as fh:
        np.savez(fh, weights=W, epoch=epoch, history=json.dumps(history), meta=json.dumps(meta), lr_now=lr_now,
                 vr_on=vr_on)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _load_checkpoint(path, meta):
    with np.load(path) as z:
        saved = json.loads(str(z["meta"]))
        if saved != json.loads(json.dumps(meta)):
            diff = {k: (saved.get(k), meta[k]) for k in meta if saved.get(k) != meta[k]}
            raise ValueError(f"checkpoint {path} was written by a different run (differs in {diff}); delete it or "
                             "pass the same data and settings.")
        return {"weights": np.array(z["weights"]), "epoch": int(z["epoch"]), "history": json.loads(str(z["history"])),
                "lr_now": float(z["lr_now"]), "vr_on": bool(z["vr_on"])}
