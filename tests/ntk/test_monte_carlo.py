"""``monte_carlo_kernel_fn`` against neural-tangents 0.6.5 and against its definition.

Golden values: ``tests/golden/finite_nt.npz`` (``make_golden_finite.py``). jax 0.4.25 and modern jax
draw different parameters from the same key, so the golden file stores neural-tangents' own draws
(checked there to reproduce its Monte Carlo estimate to 1e-12) and the tests hand them to ntkit's
``monte_carlo_kernel_fn`` in order through ``init_fn``: what is compared is everything after the
draw (the empirical kernels, ``trace_axes`` / ``diagonal_axes``, the average, the ``get`` and
generator rules), in float64 to 1e-10 relative to max|K|. The draws themselves are checked
separately: ntkit's key sequence is neural-tangents' (re-derived on this jax).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntkit import InvalidParameterError, monte_carlo_kernel_fn
from ntkit.ntk import empirical_nngp, empirical_ntk
from ntkit.ntk.models import mlp
from tests.conftest import assert_close

from ._finite_golden import case, names


def _replay(draws):
    """An init_fn(key, input_shape) handing out the stored draws in order (neural-tangents' signature)."""
    it = iter(draws)
    return lambda key, shape: (None, next(it))


def _axes(c, tag):
    return {k: tuple(v) for k, v in c.meta["axes"][tag].items()}


@pytest.mark.parametrize("name", names())
def test_matches_neural_tangents(name):
    c = case(name)
    S = c.meta["n_samples"]
    # (outputs (n, 2, 3): kept, traced and diagonal axes; the CNN: the eNTK "trace" path only)
    tags = {"cnn": ["mean"], "mlp_relu_std": ["mean"], "mlp_2x3": ["full", "d1t2"]}.get(name, ["mean", "full"])
    for tag in tags:
        for pair, x2 in (("12", c.x2), ("11", None)):
            if pair == "11" and tag not in ("mean", "d1t2"):
                continue
            kfn = monte_carlo_kernel_fn(_replay(c.draws), c.apply, jax.random.PRNGKey(0), S, **_axes(c, tag))
            k = kfn(c.x1, x2, get=("nngp", "ntk"))
            assert_close(k.nngp, c.g[f"mc_nngp_{tag}_{pair}"], np.float64)
            assert_close(k.ntk, c.g[f"mc_ntk_{tag}_{pair}"], np.float64)


def test_generator_matches_neural_tangents():
    c = case("mlp_tanh")
    S = c.meta["n_samples"]
    gen = monte_carlo_kernel_fn(_replay(c.draws), c.apply, jax.random.PRNGKey(0), [S, 1])(c.x1, c.x2)
    for n, k in zip([1, S], gen):
        assert k._fields == ("nngp", "ntk")
        assert_close(k.nngp, c.g[f"mcgen{n}_nngp_mean_12"], np.float64)
        assert_close(k.ntk, c.g[f"mcgen{n}_ntk_mean_12"], np.float64)


@pytest.fixture(scope="module")
def net():
    init, apply = mlp((3, 8, 2), activation="erf", dtype=jnp.float64)
    x1 = np.random.default_rng(0).normal(size=(4, 3))
    x2 = np.random.default_rng(1).normal(size=(3, 3))
    return init, apply, x1, x2


def test_key_sequence_and_average(net):
    """The k-th draw initialises with the first half of split(split(key)^k[1]) (neural-tangents' sequence);
    the estimate is the mean of the empirical kernels at those draws (NT's mean over traced logits)."""
    init, apply, x1, x2 = net
    key = jax.random.PRNGKey(3)
    draws, k = [], key
    for _ in range(2):
        k, split = jax.random.split(k)
        draws.append(init(jax.random.split(split)[0]))
    # (init_fn(key) -> params works too; store_on_device=False: numpy out)
    est = monte_carlo_kernel_fn(init, apply, key, 2, trace_axes=(), store_on_device=False)(x1, x2)
    assert isinstance(est.ntk, np.ndarray)
    nngp = np.mean([empirical_nngp(apply, p, x1, x2) for p in draws], axis=0)
    ntk = np.mean([empirical_ntk(apply, p, x1, x2) for p in draws], axis=0)
    assert_close(est.nngp, nngp, np.float64)
    assert_close(est.ntk, ntk, np.float64)


def test_get_and_options(net):
    init, apply, x1, _ = net
    kfn = monte_carlo_kernel_fn(init, apply, 0, 2, implementation=1, batch_size=3)  # NT's JACOBIAN_CONTRACTION
    assert isinstance(kfn(x1, get="nngp"), jax.Array)
    assert kfn(x1, get=("ntk",))._fields == ("ntk",)
    ref = monte_carlo_kernel_fn(init, apply, 0, 2, implementation="structured")(x1, get="ntk")
    assert_close(kfn(x1, get="ntk"), ref, np.float64)


def test_bad_input(net):
    init, apply, x1, _ = net
    with pytest.raises(InvalidParameterError, match="'n_samples'"):
        monte_carlo_kernel_fn(init, apply, 0, 0)
    with pytest.raises(InvalidParameterError, match="'n_samples'"):
        monte_carlo_kernel_fn(init, apply, 0, [])
    with pytest.raises(InvalidParameterError, match="'implementation'"):
        monte_carlo_kernel_fn(init, apply, 0, 1, implementation="fast")
    with pytest.raises(InvalidParameterError, match="'vmap_axes'"):
        monte_carlo_kernel_fn(init, apply, 0, 1, vmap_axes=1)
    with pytest.raises(InvalidParameterError, match="'batch_size'"):
        monte_carlo_kernel_fn(init, apply, 0, 1, batch_size=-1)
    with pytest.raises(TypeError, match="key must be a jax PRNG key"):
        monte_carlo_kernel_fn(init, apply, "seed", 1)
    with pytest.raises(ValueError, match="both traced and diagonal"):
        monte_carlo_kernel_fn(init, apply, 0, 1, trace_axes=(-1,), diagonal_axes=(-1,))(x1)
    with pytest.raises(InvalidParameterError, match="'get' parameter"):
        monte_carlo_kernel_fn(init, apply, 0, 1)(x1, get=("ntk", "ntk"))
