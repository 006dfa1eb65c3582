"""Small reference networks written in plain ``jax.numpy``: an MLP and a CNN.

They exist so that tests, benchmarks and docs use the same models as the pinned
neural-tangents environment that produces the golden values. This module imports only
``jax`` (it runs unchanged on jax 0.4.25 and on modern jax) and can be loaded by file
path without importing the rest of ntkit.

Parameterisation follows neural-tangents' ``stax``: with ``parameterization="ntk"``
a dense layer computes ``(W_std / sqrt(fan_in)) * (x @ W) + b_std * b`` with
``W, b ~ N(0, 1)``; with ``"standard"`` it computes ``x @ W + b`` with
``W ~ N(0, W_std^2 / fan_in)`` and ``b ~ N(0, b_std^2)``.

>>> import jax
>>> from ntkit.ntk.models import mlp
>>> init, apply = mlp((3, 8, 2))
>>> params = init(jax.random.PRNGKey(0))
>>> apply(params, jax.numpy.ones((5, 3))).shape
(5, 2)
"""

import math

import jax
import jax.numpy as jnp

__all__ = ["mlp", "cnn", "activation_fn", "train_classifier"]

_ACTIVATIONS = ("relu", "tanh", "erf", "identity")


def activation_fn(name):
    """The activation called ``name`` (one of ``relu``, ``tanh``, ``erf``, ``identity``)."""
    if name == "relu":
        return lambda z: jnp.maximum(z, 0)
    if name == "tanh":
        return jnp.tanh
    if name == "erf":
        return jax.scipy.special.erf
    if name == "identity":
        return lambda z: z
    raise ValueError(f"activation must be one of {_ACTIVATIONS}; got {name!r}.")


def _check_param(parameterization):
    if parameterization not in ("ntk", "standard"):
        raise ValueError(f"parameterization must be 'ntk' or 'standard'; got {parameterization!r}.")


def mlp(widths, activation="relu", *, parameterization="ntk", W_std=1.0, b_std=0.1, dtype=jnp.float32):
    """A fully connected network ``widths[0] -> widths[1] -> ... -> widths[-1]``.

    Returns ``(init_fn, apply_fn)``: ``init_fn(key)`` gives a list of ``{"W", "b"}``
    dicts and ``apply_fn(params, x)`` maps ``(n, widths[0])`` to ``(n, widths[-1])``.
    The activation is applied between layers, not after the last one. ``b_std=0``
    still creates (and differentiates) the bias leaves, scaled by zero.
    """
    _check_param(parameterization)
    act = activation_fn(activation)
    widths = tuple(int(w) for w in widths)
    if len(widths) < 2:
        raise ValueError(f"widths needs at least an input and an output width; got {widths}.")

    def init_fn(key):
        params = []
        for fan_in, fan_out in zip(widths[:-1], widths[1:]):
            key, kw, kb = jax.random.split(key, 3)
            W = jax.random.normal(kw, (fan_in, fan_out), dtype)
            b = jax.random.normal(kb, (fan_out,), dtype)
            if parameterization == "standard":
                W = W * (W_std / math.sqrt(fan_in))
                b = b * b_std
            params.append({"W": W, "b": b})
        return params

    def apply_fn(params, x):
        h = x
        for i, layer in enumerate(params):
            if i:
                h = act(h)
            if parameterization == "ntk":
                h = (W_std / math.sqrt(layer["W"].shape[0])) * (h @ layer["W"]) + b_std * layer["b"]
            else:
                h = h @ layer["W"] + layer["b"]
        return h

    return init_fn, apply_fn


def cnn(in_shape=(8, 8, 1), channels=(4, 4), out_dim=3, activation="relu", *, kernel_size=3, W_std=1.0, b_std=0.1,
        dtype=jnp.float32):
    """A small convolutional network in NTK parameterisation (NHWC inputs).

    ``len(channels)`` convolutions (``kernel_size`` square, stride 1, SAME padding), each
    followed by the activation, then flatten and a dense readout to ``out_dim``. Returns
    ``(init_fn, apply_fn)``; ``apply_fn(params, x)`` maps ``(n, *in_shape)`` to ``(n, out_dim)``.
    """
    act = activation_fn(activation)
    H, W_, C = (int(s) for s in in_shape)
    k = int(kernel_size)

    def init_fn(key):
        params = []
        c_in = C
        for c_out in channels:
            key, kw, kb = jax.random.split(key, 3)
            params.append({"W": jax.random.normal(kw, (k, k, c_in, c_out), dtype),
                           "b": jax.random.normal(kb, (c_out,), dtype)})
            c_in = c_out
        key, kw, kb = jax.random.split(key, 3)
        params.append({"W": jax.random.normal(kw, (H * W_ * c_in, out_dim), dtype),
                       "b": jax.random.normal(kb, (out_dim,), dtype)})
        return params

    def apply_fn(params, x):
        h = x
        for layer in params[:-1]:
            fan_in = layer["W"].shape[0] * layer["W"].shape[1] * layer["W"].shape[2]
            h = jax.lax.conv_general_dilated(h, layer["W"], (1, 1), "SAME",
                                             dimension_numbers=("NHWC", "HWIO", "NHWC"))
            h = act((W_std / math.sqrt(fan_in)) * h + b_std * layer["b"])
        h = h.reshape(h.shape[0], -1)
        last = params[-1]
        return (W_std / math.sqrt(last["W"].shape[0])) * (h @ last["W"]) + b_std * last["b"]

    return init_fn, apply_fn


def train_classifier(apply_fn, params, X, y, *, epochs=30, batch_size=64, learning_rate=1e-2, seed=0):
    """Train ``apply_fn`` with softmax cross-entropy and Adam (plain jax, no optimiser library).

    Small helper for examples, tests and the tour: returns the trained parameters.
    ``y`` holds integer labels in ``[0, O)``.
    """
    import numpy as np

    X = jnp.asarray(X)
    y = jnp.asarray(y)
    n = X.shape[0]

    def loss(p, xb, yb):
        logits = apply_fn(p, xb)
        logp = jax.nn.log_softmax(logits)
        return -jnp.mean(jnp.take_along_axis(logp, yb[:, None], axis=1))

    @jax.jit
    def step(p, m, v, t, xb, yb):
        g = jax.grad(loss)(p, xb, yb)
        m = jax.tree_util.tree_map(lambda a, b: 0.9 * a + 0.1 * b, m, g)
        v = jax.tree_util.tree_map(lambda a, b: 0.999 * a + 0.001 * b * b, v, g)
        mh = jax.tree_util.tree_map(lambda a: a / (1 - 0.9**t), m)
        vh = jax.tree_util.tree_map(lambda a: a / (1 - 0.999**t), v)
        p = jax.tree_util.tree_map(lambda a, b, c: a - learning_rate * b / (jnp.sqrt(c) + 1e-8), p, mh, vh)
        return p, m, v

    m = jax.tree_util.tree_map(jnp.zeros_like, params)
    v = jax.tree_util.tree_map(jnp.zeros_like, params)
    rng = np.random.default_rng(seed)
    t = 0
    for _ in range(epochs):
        order = rng.permutation(n)
        for i in range(0, n - batch_size + 1, batch_size):
            t += 1
            idx = order[i:i + batch_size]
            params, m, v = step(params, m, v, t, X[idx], y[idx])
    return params
