"""Wide finite networks built with ntkit.stax converge to their kernel_fn (statistical test).

The empirical NTK of ``serial(Dense(w), Relu, Dense(w), Relu, Dense(1))`` at initialisation
is a sum over ~w^2 weights of products of O(1/w)-correlated terms: it equals the analytic NTK
plus a fluctuation whose standard deviation is O(1/sqrt(w)) (Jacot et al. 2018; Hanin & Nica
2020 give the 1/sqrt(w) rate, with a depth-dependent constant). The relative Frobenius error on
a 4 x 4 kernel, averaged over 3 initialisations, must therefore

* fall as the width grows 64 -> 256 -> 1024,
* fall at least like 2 / sqrt(w) relative to the narrowest network (ratio 1024 vs 64 below
  2 sqrt(64 / 1024) = 0.5; the slack of 2 absorbs the seed-to-seed spread of the error), and
* be below 0.15 at width 1024: the measured constant is err(64) * sqrt(64) = 2.2-2.4, so the
  1/sqrt(w) law predicts 0.07 at 1024; 0.15 leaves a factor 2 for the spread.

The same holds in standard parameterisation, where the kernel depends on the width through the
layer shapes and ``kernel_fn`` of the same finite network is the target (this also checks that
``init_fn`` / ``apply_fn`` implement both parameterisations as ``kernel_fn`` assumes). Fixed
seeds make the test deterministic; the Jacobian-contraction eNTK is the cheapest here.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest

from ntkit import stax
from ntkit.ntk import empirical_ntk

WIDTHS = (64, 256, 1024)


def _net(width, param):
    return stax.serial(stax.Dense(width, W_std=1.4, b_std=0.1, parameterization=param), stax.Relu(),
                       stax.Dense(width, W_std=1.4, b_std=0.1, parameterization=param), stax.Relu(),
                       stax.Dense(1, W_std=1.4, b_std=0.1, parameterization=param))


@pytest.mark.parametrize("param", ["ntk", "standard"])
def test_empirical_ntk_converges_to_kernel_fn(param):
    x = np.random.default_rng(0).normal(size=(4, 5))
    errors = []
    for width in WIDTHS:
        init_fn, apply_fn, kernel_fn = _net(width, param)
        exact = np.asarray(kernel_fn(x, None, "ntk"))
        errs = []
        for seed in range(3):
            _, params = init_fn(jax.random.PRNGKey(seed), x.shape)
            ntk = np.asarray(empirical_ntk(apply_fn, params, x, kind="trace", implementation="jacobian"))
            errs.append(np.linalg.norm(ntk - exact) / np.linalg.norm(exact))
        errors.append(float(np.mean(errs)))
    assert errors[0] > errors[1] > errors[2], errors
    assert errors[2] / errors[0] < 2 * np.sqrt(WIDTHS[0] / WIDTHS[2]), errors
    assert errors[2] < 0.15, errors
