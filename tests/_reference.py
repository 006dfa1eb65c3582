"""Slow, obviously-correct oracles.

Everything here is written for clarity, not speed: pairwise differences
``x - z`` instead of the ``|x|^2 + |z|^2 - 2<x,z>`` expansion, explicit loops
over the layers of a network, float64 (or wider) arithmetic throughout. The
fast paths of ntkit are tested against these.
"""

from __future__ import annotations

import math

import numpy as np


def _pairwise_dist(X, Z):
    X = np.asarray(X, dtype=np.longdouble)
    Z = np.asarray(Z, dtype=np.longdouble)
    diff = X[:, None, :] - Z[None, :, :]
    return np.sqrt(np.sum(diff * diff, axis=-1))


def _lengthscaled(X, Z, lengthscale):
    ls = np.asarray(lengthscale, dtype=np.float64)
    return np.asarray(X, np.float64) / ls, np.asarray(Z, np.float64) / ls


def rbf(X, Z, lengthscale=1.0):
    X, Z = _lengthscaled(X, Z, lengthscale)
    r = _pairwise_dist(X, Z)
    return np.exp(-0.5 * r * r).astype(np.float64)


def laplace(X, Z, lengthscale=1.0):
    X, Z = _lengthscaled(X, Z, lengthscale)
    return np.exp(-_pairwise_dist(X, Z)).astype(np.float64)


def matern(X, Z, lengthscale=1.0, nu=1.5):
    X, Z = _lengthscaled(X, Z, lengthscale)
    r = _pairwise_dist(X, Z)
    if nu == 0.5:
        k = np.exp(-r)
    elif nu == 1.5:
        a = np.sqrt(np.longdouble(3)) * r
        k = (1 + a) * np.exp(-a)
    elif nu == 2.5:
        a = np.sqrt(np.longdouble(5)) * r
        k = (1 + a + a * a / 3) * np.exp(-a)
    else:
        raise ValueError(nu)
    return k.astype(np.float64)


def linear(X, Z):
    return np.asarray(X, np.longdouble) @ np.asarray(Z, np.longdouble).T


def polynomial(X, Z, degree=2, gamma=1.0, coef0=1.0):
    return ((gamma * linear(X, Z) + coef0) ** degree).astype(np.float64)


def arccos(X, Z, order=1):
    """Cho & Saul's k_n by its definition, one pair at a time."""
    X = np.asarray(X, np.float64)
    Z = np.asarray(Z, np.float64)
    out = np.empty((X.shape[0], Z.shape[0]))
    for i, x in enumerate(X):
        for j, z in enumerate(Z):
            nx, nz = math.sqrt(x @ x), math.sqrt(z @ z)
            # sqrt of the product (not the product of square roots) gives c = 1 exactly for x = z.
            s = math.sqrt((x @ x) * (z @ z))
            c = 0.0 if s == 0 else max(-1.0, min(1.0, (x @ z) / s))
            t = math.acos(c)
            if order == 0:
                J = math.pi - t
            elif order == 1:
                J = math.sin(t) + (math.pi - t) * math.cos(t)
            else:
                J = 3 * math.sin(t) * math.cos(t) + (math.pi - t) * (1 + 2 * math.cos(t) ** 2)
            out[i, j] = (nx * nz) ** order * J / math.pi
    return out


def relu_network(X, Z, depth, weight_std=1.0, bias_std=0.0):
    """(NNGP, NTK) of [Dense, Relu]*depth + Dense, one pair at a time, from the 2x2 covariance.

    Tracks the full 2x2 covariance [[k(x,x), k(x,z)], [k(z,x), k(z,z)]] of the
    pre-activations and maps it through the ReLU expectation
    E[relu(u) relu(v)] = sqrt(kxx kzz) (sin t + (pi - t) cos t) / (2 pi) and
    E[relu'(u) relu'(v)] = (pi - t) / (2 pi), written out from scratch.
    """
    X = np.asarray(X, np.float64)
    Z = np.asarray(Z, np.float64)
    d = X.shape[1]
    w2, b2 = weight_std**2, bias_std**2
    nngp = np.empty((X.shape[0], Z.shape[0]))
    ntk = np.empty_like(nngp)
    for i, x in enumerate(X):
        for j, z in enumerate(Z):
            cov = np.array([[x @ x, x @ z], [z @ x, z @ z]]) * w2 / d + b2
            th = cov[0, 1]
            same = np.array_equal(x, z)  # identical inputs stay perfectly correlated in every layer
            for _ in range(depth):
                kxx, kzz, kxz = cov[0, 0], cov[1, 1], cov[0, 1]
                if same:
                    c = 1.0
                else:
                    c = max(-1.0, min(1.0, kxz / math.sqrt(kxx * kzz))) if kxx * kzz > 0 else 0.0
                t = math.acos(c)
                e_relu = math.sqrt(kxx * kzz) * (math.sin(t) + (math.pi - t) * c) / (2 * math.pi)
                e_drelu = (math.pi - t) / (2 * math.pi)
                post = np.array([[kxx / 2, e_relu], [e_relu, kzz / 2]])
                cov = w2 * post + b2
                th = cov[0, 1] + w2 * e_drelu * th
            nngp[i, j] = cov[0, 1]
            ntk[i, j] = th
    return nngp, ntk


ORACLES = {
    "RBF": lambda X, Z, p: rbf(X, Z, p["lengthscale"]),
    "Laplace": lambda X, Z, p: laplace(X, Z, p["lengthscale"]),
    "Matern": lambda X, Z, p: matern(X, Z, p["lengthscale"], p["nu"]),
    "Linear": lambda X, Z, p: linear(X, Z).astype(np.float64),
    "Polynomial": lambda X, Z, p: polynomial(X, Z, p["degree"], p["gamma"], p["coef0"]),
    "ArcCosine": lambda X, Z, p: arccos(X, Z, p["order"]),
    "ReluNNGP": lambda X, Z, p: relu_network(X, Z, p["depth"], p["weight_std"], p["bias_std"])[0],
    "ReluNTK": lambda X, Z, p: relu_network(X, Z, p["depth"], p["weight_std"], p["bias_std"])[1],
}


def oracle_gram(kernel, X, Z=None):
    """Gram matrix of an ntkit kernel by its oracle (float64)."""
    Z = X if Z is None else Z
    return ORACLES[type(kernel).__name__](X, Z, kernel.get_params())


def batched_gram(A, B=None, reduce="none"):
    B = A if B is None else B
    A = np.asarray(A, np.float64)
    B = np.asarray(B, np.float64)
    out = np.stack([A[i] @ B[i].T for i in range(A.shape[0])]) if A.shape[0] else np.zeros((0, A.shape[1], B.shape[1]))
    return out.sum(axis=0) if reduce == "sum" else out
