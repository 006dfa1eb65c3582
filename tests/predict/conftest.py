"""The predict tests run in float64 where they say so: x64 is switched on per test (fixture
``x64``), not globally, so the rest of the suite (and the doctests) keep jax's default float32."""

import jax
import pytest


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield
