"""The stax tests run in float64: x64 is switched on per test, not globally, so the rest of the
suite (and the doctests) keep jax's default float32."""

import jax
import pytest


@pytest.fixture(autouse=True)
def _x64():
    with jax.enable_x64(True):
        yield
