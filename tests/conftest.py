"""Shared fixtures and the one tolerance table of the test suite.

| comparison                                   | float64     | float32    |
|----------------------------------------------|-------------|------------|
| same maths, different summation order        | rtol 1e-10  | rtol 1e-4  |
| fast path vs direct-difference oracle        | rtol 1e-10  | rtol 1e-4  |

Why these suffice: every fast path forms ``|x|^2 + |z|^2 - 2<x,z>`` (or the
angle from ``<x,z>/(|x||z|)``) with a BLAS product whose rounding error is at
most ``c * eps * (|x|^2 + |z|^2)`` with c a small multiple of the feature
dimension. The kernels here are Lipschitz in those quantities with constants
of order 1 on the test data (points drawn with norms of order 1 after the
lengthscale, angles away from 0 and pi), so relative errors stay below
``1e3 * eps``: 2e-13 in float64 and 1.2e-4 ... which is why float32 test data
is kept at n_features <= 16 and norms <= ~4, giving ~1e-5.
An ``atol`` of ``rtol * max|K|`` covers entries that are tiny in relative
terms (exp of a large negative argument) where only absolute error is meaningful.
"""

from __future__ import annotations

import gc

import numpy as np
import pytest

RTOL = {np.dtype(np.float64): 1e-10, np.dtype(np.float32): 1e-4}


def tol(dtype, scale=1.0):
    """Keyword arguments for ``assert_allclose`` from the tolerance table.

    ``scale`` is the magnitude of the compared values (for the absolute part).
    """
    r = RTOL[np.dtype(dtype)]
    return {"rtol": r, "atol": r * float(scale)}


def assert_close(actual, desired, dtype):
    actual = np.asarray(actual, dtype=np.float64)
    desired = np.asarray(desired, dtype=np.float64)
    scale = float(np.max(np.abs(desired))) if desired.size else 1.0
    np.testing.assert_allclose(actual, desired, **tol(dtype, scale))


def native_available() -> bool:
    try:
        import ntkit_native

        return bool(ntkit_native.is_available())
    except (ImportError, AttributeError):
        return False


BACKENDS = [
    "numpy",
    "jax",
    pytest.param("native", marks=pytest.mark.skipif(not native_available(), reason="ntkit_native not built")),
]


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """Release the compiled jax programs when each test module ends.

    XLA's CPU backend maps about three memory regions per compiled program, and the whole suite
    compiles tens of thousands of them in one process: without this the process passes Linux's
    limit of memory maps (``vm.max_map_count``, 65530 by default) and LLVM crashes inside a
    compilation (a segfault, seen at 67% of the suite). Measured: 300 small programs took 970
    maps and ``jax.clear_caches()`` gave them back. Modules share almost no compiled programs, so
    this costs little recompilation.
    """
    yield
    import sys

    if "jax" in sys.modules:
        sys.modules["jax"].clear_caches()
    gc.collect()


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: needs a CUDA device (skipped without one)")
    config.addinivalue_line("markers", "slow: longer-running tests")
