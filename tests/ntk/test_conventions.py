"""The empirical NTK's input conventions: jax in → jax out on the same device; flax-style variables
differentiate their "params" collection only."""

from __future__ import annotations

import numpy as np

import jax
import jax.numpy as jnp

from ntkit.ntk import empirical_ntk, empirical_ntk_fn
from ntkit.ntk.models import mlp


def test_jax_in_jax_out_numpy_in_numpy_out():
    init, apply = mlp((3, 16, 2), "relu")
    params = init(jax.random.PRNGKey(0))
    X = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    Kj = empirical_ntk(apply, params, jax.device_put(X, jax.devices("cpu")[0]), kind="trace")
    Kn = empirical_ntk(apply, params, X, kind="trace")
    assert isinstance(Kj, jax.Array) and Kj.devices() == {jax.devices("cpu")[0]} and Kj.dtype == jnp.float32
    assert isinstance(Kn, np.ndarray)
    np.testing.assert_array_equal(np.asarray(Kj), Kn)  # the same computation: the same bits


def test_flax_style_variables_hold_batch_stats_fixed():
    def apply_fn(v, x):
        h = (x @ v["params"]["W1"] - v["batch_stats"]["mean"]) / v["batch_stats"]["std"]
        return jnp.tanh(h) @ v["params"]["W2"]

    k = jax.random.split(jax.random.PRNGKey(1), 3)
    v = {"params": {"W1": jax.random.normal(k[0], (3, 8)), "W2": jax.random.normal(k[1], (8, 2))},
         "batch_stats": {"mean": jax.random.normal(k[2], (8,)), "std": jnp.full((8,), 1.5)}}
    X = np.random.default_rng(0).normal(size=(6, 3)).astype(np.float32)
    K = empirical_ntk(apply_fn, v, X, kind="trace")
    # reference: the NTK with respect to the parameters alone, statistics closed over
    ref = empirical_ntk(lambda p, x: apply_fn({**v, "params": p}, x), v["params"], X, kind="trace")
    np.testing.assert_array_equal(np.asarray(K), np.asarray(ref))
    # differentiating the statistics too (the same dict inside a list is not detected) gives another kernel
    everything = empirical_ntk(lambda w, x: apply_fn(w[0], x), [v], X, kind="trace")
    assert np.abs(np.asarray(everything) - np.asarray(K)).max() > 1e-3 * np.abs(np.asarray(K)).max()
    fn = empirical_ntk_fn(apply_fn, kind="trace")
    np.testing.assert_array_equal(np.asarray(fn(v, X)), np.asarray(K))  # cached wrapper, same result
