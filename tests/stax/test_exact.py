"""Arc-cosine layers are exact on identical, parallel and opposite inputs (float64, 1e-13 relative).

The reference recursion below carries the covariances as exact rationals (``fractions``): its
``q1 q2 - c^2`` is exact, so identical and parallel pairs have angle exactly 0 and opposite ones
exactly pi, and each layer adds one float64 rounding of the arc-cosine formula (~1e-16). ntkit
must agree to 1e-13 at depth 8, where an ``arccos`` of a correlation rounded below 1 would be
off by ~1e-8 (the failure mode neural-tangents and ntkit's older ``ReluNTK`` show there).
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from ntkit import stax


def _ref_abrelu_pair(x, z, depth, W, b, slope_neg=0.0, slope_pos=1.0):
    """NNGP and NTK of serial([Dense(W, b), ABRelu] * depth, Dense(W, b)) for one pair (exact rationals)."""
    d = len(x)
    W2, b2 = Fraction(W) ** 2, Fraction(b) ** 2
    q1 = sum(Fraction(float(v)) ** 2 for v in x) / d
    q2 = sum(Fraction(float(v)) ** 2 for v in z) / d
    c = sum(Fraction(float(u)) * Fraction(float(v)) for u, v in zip(x, z)) / d
    f = (slope_neg - slope_pos) ** 2 / (2 * math.pi)
    m = (slope_neg ** 2 + slope_pos ** 2) / 2
    ntk = Fraction(0)
    for _ in range(depth):
        q1, q2, c = W2 * q1 + b2, W2 * q2 + b2, W2 * c + b2
        ntk = c + W2 * ntk
        det = q1 * q2 - c * c
        sd = math.sqrt(float(det)) if det > 0 else 0.0
        theta = math.atan2(sd, float(c)) if (sd or c) else math.pi / 2
        dot = m - f * theta
        c = Fraction(f * sd) + Fraction(dot) * c
        ntk = ntk * Fraction(dot)
        q1, q2 = Fraction(m) * q1, Fraction(m) * q2  # theta = 0 for each input with itself
    q1, q2, c = W2 * q1 + b2, W2 * q2 + b2, W2 * c + b2
    ntk = c + W2 * ntk
    return float(c), float(ntk)


@pytest.mark.parametrize("slopes, b", [((0.0, 1.0), 0.0), ((0.0, 1.0), 0.3), ((-1.0, 1.0), 0.0), ((0.2, 1.0), 0.3)],
                         ids=["relu", "relu-bias", "abs", "leaky-bias"])
def test_arc_cosine_exact_at_identical_parallel_opposite(slopes, b):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(3, 5))
    # identical, exactly parallel (x2) and exactly opposite rows, and one unrelated row
    z = np.concatenate([x[:1], 2.0 * x[1:2], -x[2:3], rng.normal(size=(1, 5))])
    depth, W = 8, 1.5
    _, _, kernel_fn = stax.serial(*[stax.Dense(16, W_std=W, b_std=b), stax.ABRelu(*slopes)] * depth,
                                  stax.Dense(1, W_std=W, b_std=b))
    k12 = kernel_fn(x, z, ("nngp", "ntk"))
    k11 = kernel_fn(x, None, ("nngp", "ntk"))
    for i in range(3):
        for j in range(4):
            nngp, ntk = _ref_abrelu_pair(x[i], z[j], depth, W, b, *slopes)
            np.testing.assert_allclose(float(k12.nngp[i, j]), nngp, rtol=1e-13, atol=1e-300)
            np.testing.assert_allclose(float(k12.ntk[i, j]), ntk, rtol=1e-13, atol=1e-300)
        nngp, ntk = _ref_abrelu_pair(x[i], x[i], depth, W, b, *slopes)
        np.testing.assert_allclose(float(k11.nngp[i, i]), nngp, rtol=1e-13)
        np.testing.assert_allclose(float(k11.ntk[i, i]), ntk, rtol=1e-13)


def test_sign_and_rectified_monomial_exact_at_angle_zero_and_pi():
    x = np.array([[1.0, -2.0, 0.5]])
    z = np.concatenate([x, -3.0 * x])
    _, _, sign_fn = stax.serial(stax.Dense(4), stax.Sign())
    np.testing.assert_array_equal(np.asarray(sign_fn(x, z, "nngp")), [[1.0, -1.0]])
    q = float(np.sum(x ** 2) / 3)
    for n, moment in ((1, 1 / 2), (2, 3 / 2), (3, 15 / 2)):  # E[max(u, 0)^(2n)] = (2n-1)!! q^n / 2
        _, _, fn = stax.serial(stax.Dense(4), stax.RectifiedMonomial(n))
        k = fn(x, z, ("nngp", "ntk"))
        np.testing.assert_allclose(float(k.nngp[0, 0]), moment * q ** n, rtol=1e-14)
        assert float(k.nngp[0, 1]) == 0.0 and float(k.ntk[0, 1]) == 0.0  # opposite: never both positive


def test_relu_ntk_kernels_are_special_cases():
    """ntkit.kernels.ReluNTK / ReluNNGP(depth, bias_std, weight_std) are
    serial(*[Dense(., W_std=weight_std, b_std=bias_std), Relu()] * depth, Dense(., W_std, b_std)) in NTK
    parameterisation, on distinct inputs and on the exact diagonal."""
    from ntkit.kernels import ReluNNGP, ReluNTK

    rng = np.random.default_rng(0)
    X, Z = rng.normal(size=(6, 4)), rng.normal(size=(5, 4))
    for depth, b, W in ((0, 0.0, 1.0), (3, 0.1, 1.5)):
        net = stax.serial(*[stax.Dense(8, W_std=W, b_std=b), stax.Relu()] * depth, stax.Dense(1, W_std=W, b_std=b))
        k = net[2](X, Z, ("nngp", "ntk"))
        np.testing.assert_allclose(ReluNTK(depth=depth, bias_std=b, weight_std=W)(X, Z), k.ntk, rtol=1e-12)
        np.testing.assert_allclose(ReluNNGP(depth=depth, bias_std=b, weight_std=W)(X, Z), k.nngp, rtol=1e-12)
        diag = np.diag(np.asarray(net[2](X, None, "ntk")))
        np.testing.assert_allclose(ReluNTK(depth=depth, bias_std=b, weight_std=W).diag(X), diag, rtol=1e-13)
        # the general path through ntkit.ops agrees too
        np.testing.assert_allclose(stax.as_kernel(net, "ntk")(X, Z), k.ntk, rtol=1e-13)
