"""Slow, obviously-correct oracles for the online learners, written from the update equations.

No incremental inverse, no Woodbury identity, no Cholesky rows, no Sherman–Morrison: every round
re-solves its linear systems from scratch (``np.linalg.solve`` on the matrices the equations name).
Kernels come from ``tests/_reference.py`` (pairwise differences in long double).

The "auto" rules are re-implemented here from their documentation (ntkit/online/_common.py):
``Ŷ_t = max_{s≤t}|y_s|``, ``C_t = Ŷ_{t−1}``, ``η_t = 1/(4(C_t² + Ŷ_t²))``, ``U_t = 5 Ŷ_t / sqrt(max k(x,x))``,
ALD threshold ``α = 5/sqrt(T)`` or ``5/sqrt(2^⌈log₂ t⌉)``.
"""

from __future__ import annotations

import math

import numpy as np


def auto_C(ys, t):
    """C_t for 0-based round t: the largest |y| strictly before it."""
    return float(np.max(np.abs(ys[:t]))) if t > 0 else 0.0


def auto_eta(C, ys, t):
    Y = float(np.max(np.abs(ys[:t + 1])))
    den = 4 * (C * C + Y * Y)
    return 1 / den if den > 0 else 0.0


def auto_U(ys, kdiag, t):
    return 5 * float(np.max(np.abs(ys[:t + 1]))) / math.sqrt(float(np.max(kdiag[:t + 1])))


def clip_h(z, C):
    return math.copysign(max(abs(z) - C, 0.0), z)


# ------------------------------------------------------------------------------------------------
# KONS, kernel form: u = Σ β_s φ(x_s); A Φx = Φ(αx + E G x) so A⁻¹φ_t = Φx with (αI + E G) x = e_t
# ------------------------------------------------------------------------------------------------

def kons_direct(G, y, *, ridge, C=None, eta=None):
    """Predictions of KONS on a stream whose full Gram matrix is G (T, T). C/eta None = "auto"."""
    T = len(y)
    beta = np.zeros(T)
    ecoef = np.zeros(T)  # η_s c_s² (curvature weight of round s)
    preds = np.zeros(T)
    for t in range(T):
        n = t + 1
        Gt = G[:n, :n]
        z = float(beta[:t] @ G[:t, t])
        Ct = auto_C(y, t) if C is None else C
        M = ridge * np.eye(n) + np.diag(ecoef[:n]) @ Gt  # A_{t-1} acting on coefficients (ecoef[t] = 0)
        et = np.zeros(n)
        et[t] = 1.0
        x = np.linalg.solve(M, et)  # A_{t-1}^{-1} φ_t = Φ x
        q = float((Gt @ x)[t])
        h = clip_h(z, Ct)
        yhat = z - h
        preds[t] = yhat
        c = 2 * (yhat - y[t])
        e = (auto_eta(Ct, y, t) if eta is None else eta) * c * c
        w = beta[:n] - (h / q) * x
        ecoef[t] = e
        M2 = ridge * np.eye(n) + np.diag(ecoef[:n]) @ Gt  # A_t
        x2 = np.linalg.solve(M2, c * et)  # A_t^{-1} g_t
        beta[:n] = w - x2
    return preds, beta


def kons_primal(Psi, y, *, ridge, C, eta):
    """The KONS equations in an explicit finite feature space Psi (T, p): dense p×p matrices."""
    T, p = Psi.shape
    A = ridge * np.eye(p)
    u = np.zeros(p)
    preds = np.zeros(T)
    for t in range(T):
        phi = Psi[t]
        z = float(u @ phi)
        Aphi = np.linalg.solve(A, phi)
        q = float(phi @ Aphi)
        h = clip_h(z, C)
        w = u - (h / q) * Aphi
        yhat = float(w @ phi)
        preds[t] = yhat
        g = 2 * (yhat - y[t]) * phi
        A = A + eta * np.outer(g, g)
        u = w - np.linalg.solve(A, g)
    return preds, u


def poly2_features(X):
    """Explicit features of (⟨x, z⟩ + 1)² for 2-D inputs."""
    x1, x2 = X[:, 0], X[:, 1]
    r2 = math.sqrt(2)
    return np.stack([np.ones_like(x1), r2 * x1, r2 * x2, x1 * x1, x2 * x2, r2 * x1 * x2], axis=1)


# ------------------------------------------------------------------------------------------------
# NONS-ALD as in the paper: SVD Nyström features Σ^{-1/2}Uᵀk_D, the Q re-expression, explicit solves
# ------------------------------------------------------------------------------------------------

def _svd_map(KDD):
    w, U = np.linalg.eigh(KDD)
    return (U / np.sqrt(w)).T  # Σ^{-1/2} Uᵀ


def nons_ald_paper(kfun, X, y, *, ridge, alpha, C=None, eta=None):
    """NONS-ALD with the paper's SVD features and ``A ← μI + Q(A − μI)Qᵀ, w ← Qw`` on growth.

    The projection onto ``|φ(x_t)ᵀw| ≤ C`` uses the features of the dictionary of round t (see
    ntkit/online/_ald.py for why). ``alpha`` is the ALD threshold (x joins when δ > α²·k(x, x)).
    """
    T = len(y)
    D = []
    Mmap = None
    A = np.zeros((0, 0))
    v = np.zeros(0)
    preds = np.zeros(T)
    for t in range(T):
        x = X[t:t + 1]
        kxx = float(kfun(x, x)[0, 0])
        if D:
            KDD = kfun(X[D], X[D])
            kD = kfun(X[D], x)[:, 0]
            delta = kxx - float(kD @ np.linalg.solve(KDD, kD))
            add = delta > max(alpha * alpha, 1e-10) * kxx
        else:
            add = kxx > 0
        if add:
            Dn = D + [t]
            Mn = _svd_map(kfun(X[Dn], X[Dn]))
            if D:
                Q = Mn @ kfun(X[Dn], X[D]) @ Mmap.T
                A = ridge * np.eye(len(Dn)) + Q @ (A - ridge * np.eye(len(D))) @ Q.T
                v = Q @ v
            else:
                A = ridge * np.eye(1)
                v = np.zeros(1)
            D, Mmap = Dn, Mn
        if not D:
            preds[t] = 0.0
            continue
        phi = Mmap @ kfun(X[D], x)[:, 0]
        z = float(v @ phi)
        Ct = auto_C(y, t) if C is None else C
        Aphi = np.linalg.solve(A, phi)
        q = float(phi @ Aphi)
        h = clip_h(z, Ct)
        w = v - (h / q) * Aphi
        yhat = z - h
        preds[t] = yhat
        c = 2 * (yhat - y[t])
        e = (auto_eta(Ct, y, t) if eta is None else eta) * c * c
        A = A + e * np.outer(phi, phi)
        v = w - np.linalg.solve(A, c * phi)
    return preds, len(D)


# ------------------------------------------------------------------------------------------------
# AOGD-ALD as in the R code: coefficients over D, K_DD⁻¹ grown by block inverse, ‖f‖ tracked
# ------------------------------------------------------------------------------------------------

def aogd_ald_rcode(kfun, X, y, *, alpha, U=None):
    """AOGD-ALD in the R code's coefficient form (AdaGrad accumulator started at 0, see _ald.py)."""
    T = len(y)
    kdiag = np.array([kfun(X[i:i + 1], X[i:i + 1])[0, 0] for i in range(T)])
    D, c = [], np.zeros(0)
    Kinv = np.zeros((0, 0))
    S, norm = 0.0, 0.0
    preds = np.zeros(T)
    for t in range(T):
        x = X[t:t + 1]
        kxx = kdiag[t]
        kD = kfun(X[D], x)[:, 0] if D else np.zeros(0)
        f = float(c @ kD)
        preds[t] = f
        r = f - y[t]
        Ut = auto_U(y, kdiag, t) if U is None else U
        a = Kinv @ kD
        delta = max(kxx - float(kD @ a), 0.0)
        add = (delta > max(alpha * alpha, 1e-10) * kxx) if D else kxx > 0
        if not add:
            if not D:
                continue
            KDD = kfun(X[D], X[D])
            aKa = float(a @ KDD @ a)
            S += 4 * r * r * aKa
            if S == 0:
                continue
            g = Ut / math.sqrt(S) * 2 * r
            c = c - g * a
            norm = math.sqrt(max(norm ** 2 - 2 * g * f + g * g * aKa, 0.0))
        else:
            S += 4 * r * r * kxx
            g = Ut / math.sqrt(S) * 2 * r if S > 0 else 0.0
            # block inverse of K_DD grown by one row/column (R code)
            m = len(D)
            d = np.concatenate([a, [-1.0]])
            new = np.outer(d, d) / delta
            new[:m, :m] += Kinv
            Kinv = new
            D.append(t)
            c = np.concatenate([c, [-g]])
            norm = math.sqrt(max(norm ** 2 - 2 * g * f + g * g * kxx, 0.0))
        if norm > Ut:
            c = c * Ut / norm
            norm = Ut
    return preds, c, D


# ------------------------------------------------------------------------------------------------
# KOGD: coefficient form, exact ‖f‖² = cᵀKc every round, explicit budget removal
# ------------------------------------------------------------------------------------------------

def kogd_direct(kfun, X, y, *, budget=None, U=None, lr=None):
    T = len(y)
    kdiag = np.array([kfun(X[i:i + 1], X[i:i + 1])[0, 0] for i in range(T)])
    S = 0.0
    sv, c = [], []
    preds = np.zeros(T)
    for t in range(T):
        x = X[t:t + 1]
        f = float(np.dot(c, kfun(X[sv], x)[:, 0])) if sv else 0.0
        preds[t] = f
        r = f - y[t]
        Ut = auto_U(y, kdiag, t) if U is None else U
        S += 4 * r * r * kdiag[t]
        eta = (Ut / math.sqrt(S) if S > 0 else 0.0) if lr is None else lr / math.sqrt(t + 1)
        g = eta * 2 * r
        if g == 0:
            continue
        sv.append(t)
        c.append(-g)
        if budget is not None and len(sv) > budget:  # remove the smallest support vector but the newest
            j = int(np.argmin(np.abs(c[:-1]) * np.sqrt(kdiag[sv[:-1]])))
            del sv[j], c[j]
        cc = np.array(c)
        norm = math.sqrt(max(float(cc @ kfun(X[sv], X[sv]) @ cc), 0.0))
        if norm > Ut:
            c = list(cc * Ut / norm)
    return preds, np.array(c), sv
