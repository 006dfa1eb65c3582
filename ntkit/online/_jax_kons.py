"""Device core of KONS and Sketched-KONS: the dictionary of points kept by ridge-leverage sampling and
the second-order step of each round as a jit-compiled scan (the common design is in
:mod:`ntkit.online._jax`).
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import numpy as np

from ._common import uniforms
from ._jax import (CHUNK, _Cfg, _KK, _SLACK, _bound, _capacity, _chunks, _curvature, _gather_preds, _grow_rows,
                   _grow_square, _kernel_fns, _on, _out, _put, _reduce, _select, _x64)


class KONSDeviceState(NamedTuple):
    """KONS / Sketched-KONS on a device. ``points`` (capacity, d) and ``beta`` hold every point seen
    (``t`` of them) and the iterate's coefficients; the curvature sketch is ``sk_*`` (atoms, weights,
    lower factor of ``S K S + ridge·I`` — the identity beyond ``sk_size`` — and the atoms' indices
    into ``points``); for KONS the sketch is every point and ``sk_atoms`` is None (``points`` is
    used). ``kr_*`` is Sketched-KONS's KORS dictionary (None for KONS)."""

    n_features: int
    points: Any
    beta: Any
    sk_atoms: Any
    sk_weights: Any
    sk_chol: Any
    sk_index: Any
    sk_size: Any
    kr_atoms: Any
    kr_weights: Any
    kr_chol: Any
    kr_index: Any
    kr_size: Any
    seed: int
    t: int
    cumulative_loss: Any
    y_scale: Any
    k_scale: Any

    def __reduce__(self):
        return _reduce(self)

    def dictionary_size(self):
        return self.t if self.sk_atoms is None else int(self.sk_size)


def _dict_add(atoms, weights, chol, index, size, x, w, a, kxx, ridge, g, on):
    """Append (x, weight w, global index g) to a weighted dictionary when ``on`` (the row of the
    factor is ``(w·a, sqrt(ridge + w²(k(x, x) − ‖a‖²)))``, as :meth:`OnlineRLSDictionary.add`).
    Also returns whether ``on`` met a full buffer (the caller reruns the chunk with a larger one)."""
    import jax.numpy as jnp

    overflow = on & (size >= weights.shape[0])
    on = on & (size < weights.shape[0])
    piv = jnp.sqrt(jnp.maximum(ridge + w * w * (kxx - jnp.dot(a, a)), 1e-300))
    row = (w * a).at[size].set(piv)
    chol1 = jnp.where(on, chol.at[size].set(row), chol)
    weights1 = jnp.where(on, weights.at[size].set(w), weights)
    atoms1 = None if atoms is None else jnp.where(on, atoms.at[size].set(x), atoms)
    index1 = None if index is None else jnp.where(on, index.at[size].set(g), index)
    return atoms1, weights1, chol1, index1, size + on.astype(size.dtype), overflow


@functools.lru_cache(maxsize=64)
def _kons_scan(kk, cfg):
    import jax
    import jax.numpy as jnp
    from jax.scipy.linalg import solve_triangular

    krow, kdiag = _kernel_fns(kk)
    exact = cfg["exact"]
    ridge = cfg["ridge"]

    def body(carry, row):
        (P, b, skA, skW, skL, skI, skm, krA, krW, krL, krI, krm, g, loss, ys, ks, ovf) = carry
        x, y, valid, u = row
        cap = P.shape[0]
        kr = jnp.where(jnp.arange(cap) < g, krow(x[None, :], P)[0], 0.0)
        kappa = kdiag(x[None, :])[0]
        z = jnp.dot(b, kr)
        if exact:
            ks_r = kr
        else:
            ks_r = jnp.where(jnp.arange(skA.shape[0]) < skm, krow(x[None, :], skA)[0], 0.0)
        a = solve_triangular(skL, skW * ks_r, lower=True)
        bvec = solve_triangular(skL, a, lower=True, trans="T")
        q = (kappa - jnp.dot(a, a)) / ridge
        Ct = _bound(cfg["C"], ys)
        h = jnp.sign(z) * jnp.maximum(jnp.abs(z) - Ct, 0.0)
        yhat = z - h
        res = yhat - y
        c = 2.0 * res
        ys1 = jnp.maximum(ys, jnp.abs(y))
        eta_t = _curvature(cfg["eta"], Ct, ys1)
        e = eta_t * c * c
        if exact:
            include, in_kors, p, aK = jnp.asarray(True), jnp.asarray(False), 1.0, None
        else:
            gamma, beta_over = cfg["gamma"], cfg["beta"]
            kk_r = jnp.where(jnp.arange(krA.shape[0]) < krm, krow(x[None, :], krA)[0], 0.0)
            aK = solve_triangular(krL, krW * kk_r, lower=True)
            tau = e * jnp.maximum(kappa - jnp.dot(aK, aK), 0.0) / ridge
            p = jnp.minimum(beta_over * tau / (1.0 + tau), 1.0)
            include = (e > 0.0) & (u < jnp.maximum(p, gamma))
            in_kors = (e > 0.0) & (u < p)
        coef = jnp.where(q > 0.0, h / jnp.where(q > 0.0, q, 1.0), 0.0) + c / (1.0 + jnp.where(include, e * q, 0.0))
        move = coef != 0.0
        step = (coef / ridge) * (skW * bvec)
        if exact:
            b1 = b + jnp.where(move, step, 0.0)
        else:
            live = jnp.arange(skW.shape[0]) < skm
            b1 = b.at[skI].add(jnp.where(move & live, step, 0.0))
        b1 = jnp.where(move, b1.at[g].set(-coef / ridge), b1)
        P1 = P.at[g].set(x)
        skA1, skW1, skL1, skI1, skm1, over = _dict_add(skA, skW, skL, skI, skm, x, jnp.sqrt(eta_t) * c, a, kappa,
                                                       ridge, g, include)
        if exact:
            krA1, krW1, krL1, krI1, krm1 = krA, krW, krL, krI, krm
        else:
            wk = jnp.sqrt(e / jnp.where(in_kors, p, 1.0))
            krA1, krW1, krL1, krI1, krm1, over_k = _dict_add(krA, krW, krL, krI, krm, x, wk, aK, kappa, ridge, g,
                                                             in_kors)
            over = over | over_k
        new = (P1, b1, skA1, skW1, skL1, skI1, skm1, krA1, krW1, krL1, krI1, krm1, g + 1, loss + res * res, ys1,
               jnp.maximum(ks, kappa), ovf | over)
        return _select(valid, new, carry), yhat

    def run(carry, X, y, valid, u):
        return jax.lax.scan(body, carry, (X, y, valid, u))

    return jax.jit(run)


def device_kons(kernel, cfg, seed, device):
    """init / update / predict of KONS (``cfg["exact"]``) or Sketched-KONS on ``device``."""
    kk = _KK(kernel)
    key = tuple(sorted(cfg.items()))
    exact = cfg["exact"]

    def init(n_features):
        cap = CHUNK
        with _x64():
            z = lambda *s: _put(np.zeros(s), device)  # noqa: E731
            i0 = _put(np.int32(0), device, None)
            idx = None if exact else _put(np.zeros(cap, dtype=np.int32), device, None)
            sk_atoms = None if exact else z(cap, n_features)
            kr = (None, None, None, None, None) if exact else (z(cap, n_features), z(cap), _put(np.eye(cap), device),
                                                                _put(np.zeros(cap, dtype=np.int32), device, None), i0)
            return KONSDeviceState(int(n_features), z(cap, n_features), z(cap), sk_atoms, z(cap),
                                   _put(np.eye(cap), device), idx, i0, *kr, 0 if seed is None else seed, 0, z(), z(),
                                   z())

    def update(state, X, y):

        run = _kons_scan(kk, _Cfg(key))
        u = None if exact else uniforms(state.seed, state.t, X.shape[0])
        preds = []
        with _x64():
            state = _on(state, device)
            no = _put(np.bool_(False), device, None)
            carry = [state.points, state.beta, state.sk_atoms, state.sk_weights, state.sk_chol, state.sk_index,
                     state.sk_size, state.kr_atoms, state.kr_weights, state.kr_chol, state.kr_index, state.kr_size,
                     _put(np.int32(state.t), device, None), state.cumulative_loss, state.y_scale, state.k_scale, no]

            def grow_sketches(carry, extra):
                for s, (A_, W_, L_, I_, m_) in ((2, carry[2:7]), (7, carry[7:12])):
                    c2 = _capacity(A_.shape[0], int(m_) + extra)
                    if c2 > A_.shape[0]:
                        carry[s:s + 4] = [_grow_rows(A_, c2), _grow_rows(W_, c2), _grow_square(L_, c2, 1.0),
                                          _grow_rows(I_, c2)]

            t = state.t
            for i, e, Xc, yc, valid, uc in _chunks(X, y, device, u if u is not None else np.zeros(X.shape[0])):
                cap = _capacity(carry[0].shape[0], t + (e - i))  # every point is kept (and in KONS's sketch)
                if cap > carry[0].shape[0]:
                    carry[0], carry[1] = _grow_rows(carry[0], cap), _grow_rows(carry[1], cap)
                    if exact:
                        carry[3] = _grow_rows(carry[3], cap)
                        carry[4] = _grow_square(carry[4], cap, 1.0)
                if not exact:  # optimistic room in the sketches; rerun the chunk when it overflows
                    grow_sketches(carry, min(e - i, _SLACK))
                while True:
                    out, f = run(tuple(carry), Xc, yc, valid, uc)
                    if not bool(out[-1]):
                        break
                    grow_sketches(carry, max(carry[3].shape[0], carry[8].shape[0]))
                carry = list(out)
                preds.append(f)
                t += e - i
            (P, b, skA, skW, skL, skI, skm, krA, krW, krL, krI, krm, _, loss, ys, ks, _) = carry
            new = KONSDeviceState(state.n_features, P, b, skA, skW, skL, skI, skm, krA, krW, krL, krI, krm,
                                  state.seed, t, loss, ys, ks)
            return new, _gather_preds(preds, X.shape[0], X)

    def predict(state, X):
        import jax.numpy as jnp

        from ..ops import kernel_matvec

        with _x64():
            state = _on(state, device)
            Xd = _put(X, device)
            if state.t == 0:
                return _out(jnp.zeros(Xd.shape[0]), X)
            Ct = float(state.y_scale) if cfg["C"] == "auto" else cfg["C"]
            f = kernel_matvec(kernel, Xd, state.points[: state.t], state.beta[: state.t])
            return _out(jnp.clip(f, -Ct, Ct), X)

    return init, update, predict
