"""Device core of AOGD-ALD and NONS-ALD: the ALD dictionary test and the Newton / gradient steps of
each round as a jit-compiled scan (the common design is in :mod:`ntkit.online._jax`).
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import numpy as np

from ._common import RESIDUAL_FLOOR, ald_thresholds
from ._jax import (_Cfg, _KK, _SLACK, _bound, _capacity, _chunks, _curvature, _flush, _gather_preds, _grow_rows,
                   _grow_square, _kernel_fns, _on, _out, _put, _radius, _reduce, _select, _x64)


class ALDDeviceState(NamedTuple):
    """AOGD-ALD / NONS-ALD on a device: the ALD dictionary (``atoms`` (capacity, d), lower factor
    ``chol`` with ``chol chol^T = K_DD`` in its top-left ``size`` block, the identity beyond), the
    learner's vector (θ for AOGD-ALD, v for NONS-ALD) and, for NONS-ALD, ``A`` and ``A_inv`` (full
    symmetric; ``ridge·I`` and ``I/ridge`` beyond ``size``)."""

    n_features: int
    atoms: Any
    chol: Any
    size: Any
    vector: Any
    A: Any
    A_inv: Any
    grad_sq_sum: Any
    since_refactor: Any
    t: int
    cumulative_loss: Any
    y_scale: Any
    k_scale: Any

    def __reduce__(self):
        return _reduce(self)

    def dictionary_size(self):
        return int(self.size)


def _ald_round(krow, kdiag, D, L, m, x, alpha, budget):
    """The ALD test of one round against the dictionary (see ``ald_features``): the grown
    dictionary, the round's features φ (zero beyond the new size), k(x, x), and whether the point
    should have joined a full buffer (the caller then reruns the chunk with a larger one)."""
    import jax.numpy as jnp
    from jax.scipy.linalg import solve_triangular

    cap = D.shape[0]
    mask = jnp.arange(cap) < m
    kD = jnp.where(mask, krow(x[None, :], D)[0], 0.0)
    kxx = kdiag(x[None, :])[0]
    a = solve_triangular(L, kD, lower=True)
    piv2 = kxx - jnp.dot(a, a)
    delta = jnp.maximum(piv2, 0.0)
    floor = RESIDUAL_FLOOR * kxx
    thr = jnp.where(m == 0, floor, jnp.maximum(alpha * alpha * kxx, floor))
    add = (delta > thr) & (piv2 > floor)
    if budget is not None:
        add = add & (m < budget)
    overflow = add & (m >= cap)
    add = add & (m < cap)
    s = jnp.sqrt(jnp.where(add, piv2, 1.0))
    phi = jnp.where(add, a.at[m].set(s), a)
    L1 = jnp.where(add, L.at[m].set(phi), L)
    D1 = jnp.where(add, D.at[m].set(x), D)
    return D1, L1, m + add.astype(m.dtype), phi, kxx, overflow


@functools.lru_cache(maxsize=64)
def _ald_scan(kk, kind, cfg):
    import jax
    import jax.numpy as jnp
    from jax.scipy.linalg import cho_factor, cho_solve

    krow, kdiag = _kernel_fns(kk)
    budget = cfg["budget"]

    def aogd(carry, row):
        D, L, m, th, A, Ai, S, since, loss, ys, ks, ovf = carry
        x, y, valid, alpha = row
        D1, L1, m1, phi, kxx, over = _ald_round(krow, kdiag, D, L, m, x, alpha, budget)
        f = jnp.dot(th, phi)
        res = f - y
        S1 = S + 4.0 * res * res * jnp.dot(phi, phi)
        ys1 = jnp.maximum(ys, jnp.abs(y))
        ks1 = jnp.maximum(ks, kxx)
        Ur = _radius(cfg["U"], ys1, ks1)
        move = (S1 > 0.0) & (res != 0.0)
        th1 = th - jnp.where(move, Ur / jnp.sqrt(jnp.where(move, S1, 1.0)), 0.0) * 2.0 * res * phi
        nrm = jnp.sqrt(jnp.dot(th1, th1))
        proj = move & (nrm > Ur)
        th1 = jnp.where(proj, _flush(th1 * (Ur / jnp.where(proj, nrm, 1.0))), th1)
        new = (D1, L1, m1, th1, A, Ai, S1, since, loss + res * res, ys1, ks1, ovf | over)
        return _select(valid, new, carry), f

    def nons(carry, row):
        D, L, m, v, A, Ai, S, since, loss, ys, ks, ovf = carry
        x, y, valid, alpha = row
        D1, L1, m1, phi, kxx, over = _ald_round(krow, kdiag, D, L, m, x, alpha, budget)
        z = jnp.dot(v, phi)
        Aphi = Ai @ phi
        q = jnp.dot(phi, Aphi)
        Ct = _bound(cfg["C"], ys)
        h = jnp.sign(z) * jnp.maximum(jnp.abs(z) - Ct, 0.0)
        yhat = z - h
        res = yhat - y
        c = 2.0 * res
        ys1 = jnp.maximum(ys, jnp.abs(y))
        e = _curvature(cfg["eta"], Ct, ys1) * c * c
        coef = jnp.where(q > 0.0, h / jnp.where(q > 0.0, q, 1.0), 0.0) + c / (1.0 + e * q)
        live = m1 > 0
        v1 = jnp.where(live & (coef != 0.0), v - coef * Aphi, v)
        upd = live & (e > 0.0)
        Ai1 = jnp.where(upd, Ai - (e / (1.0 + e * q)) * jnp.outer(Aphi, Aphi), Ai)
        A1 = jnp.where(upd, A + e * jnp.outer(phi, phi), A)
        since1 = since + 1
        if cfg["refactor_every"] is not None:
            refac = (since1 >= cfg["refactor_every"]) & live

            def inverse(A_):
                return cho_solve(cho_factor(A_, lower=True), jnp.eye(A_.shape[0], dtype=A_.dtype))

            Ai1 = jax.lax.cond(refac, inverse, lambda _: Ai1, A1)
            since1 = jnp.where(refac, 0, since1)
        new = (D1, L1, m1, v1, A1, Ai1, S, since1, loss + res * res, ys1, jnp.maximum(ks, kxx), ovf | over)
        return _select(valid, new, carry), yhat

    body = aogd if kind == "aogd" else nons

    def run(carry, X, y, valid, alphas):
        return jax.lax.scan(body, carry, (X, y, valid, alphas))

    return jax.jit(run)


def device_ald(kernel, kind, cfg, device):
    """init / update / predict of AOGD-ALD (``kind="aogd"``) or NONS-ALD (``"nons"``) on ``device``."""
    kk = _KK(kernel)
    key = tuple(sorted(cfg.items()))
    ridge = cfg.get("ridge", 1.0)

    def init(n_features):
        cap = 64
        with _x64():
            z = lambda *s: _put(np.zeros(s), device)  # noqa: E731
            A = _put(ridge * np.eye(cap), device) if kind == "nons" else z(1, 1)
            Ai = _put(np.eye(cap) / ridge, device) if kind == "nons" else z(1, 1)
            return ALDDeviceState(int(n_features), z(cap, n_features), _put(np.eye(cap), device),
                                  _put(np.int32(0), device, None), z(cap), A, Ai, z(),
                                  _put(np.int32(0), device, None), 0, z(), z(), z())

    def update(state, X, y):

        run = _ald_scan(kk, kind, _Cfg(key))
        threshold, horizon = cfg["threshold"], cfg["horizon"]
        alphas = ald_thresholds(threshold, horizon, state.t, X.shape[0])
        preds = []
        with _x64():
            state = _on(state, device)
            no = _put(np.bool_(False), device, None)
            carry = [state.atoms, state.chol, state.size, state.vector, state.A, state.A_inv, state.grad_sq_sum,
                     state.since_refactor, state.cumulative_loss, state.y_scale, state.k_scale, no]

            def grow(carry, cap):
                carry[0] = _grow_rows(carry[0], cap)
                carry[1] = _grow_square(carry[1], cap, 1.0)
                carry[3] = _grow_rows(carry[3], cap)
                if kind == "nons":
                    carry[4] = _grow_square(carry[4], cap, ridge)
                    carry[5] = _grow_square(carry[5], cap, 1.0 / ridge)

            for i, e, Xc, yc, valid, al in _chunks(X, y, device, alphas):
                # optimistic capacity (the dictionary grows slowly): room for a few more atoms; a
                # chunk that would overflow it is rerun from its start with the buffer doubled
                m = int(carry[2])
                cap = _capacity(carry[0].shape[0], m + min(e - i, _SLACK))
                if cfg["budget"] is not None:
                    cap = min(cap, _capacity(carry[0].shape[0], cfg["budget"] + 1))
                if cap > carry[0].shape[0]:
                    grow(carry, cap)
                while True:
                    out, f = run(tuple(carry), Xc, yc, valid, al)
                    if not bool(out[-1]):
                        break
                    grow(carry, 2 * carry[0].shape[0])
                carry = list(out)
                preds.append(f)
            D, L, m, vec, A, Ai, S, since, loss, ys, ks, _ = carry
            new = ALDDeviceState(state.n_features, D, L, m, vec, A, Ai, S, since, state.t + X.shape[0], loss, ys, ks)
            return new, _gather_preds(preds, X.shape[0], X)

    def predict(state, X):
        import jax.numpy as jnp
        from jax.scipy.linalg import solve_triangular

        from ..ops import gram

        with _x64():
            state = _on(state, device)
            Xd = _put(X, device)
            m = int(state.size)
            if m == 0:
                out = jnp.zeros(Xd.shape[0])
            else:
                feats = solve_triangular(state.chol[:m, :m], gram(kernel, state.atoms[:m], Xd), lower=True)
                out = state.vector[:m] @ feats
                if kind == "nons":
                    Ct = float(state.y_scale) if cfg["C"] == "auto" else cfg["C"]
                    out = jnp.clip(out, -Ct, Ct)
            return _out(out, X)

    return init, update, predict
