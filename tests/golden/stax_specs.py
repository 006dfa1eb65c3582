"""Architectures shared by the neural-tangents golden script and ntkit's stax tests.

Pure Python: ``build(stax, name)`` takes the ``stax`` module as an argument (``neural_tangents.stax``
in the pinned interop environment, ``ntkit.stax`` in the test suite) and returns the
``(init_fn, apply_fn, kernel_fn)`` triple, so both sides build exactly the same network.
``SPECS[name] = (inputs, kernel_kwargs, closed_form)``: ``inputs`` is "vec" (rows of 6 features),
"img" (NHWC 4x3 images with 2 channels), "seq" (5 tokens of 3 channels) or "graph" (4 vertices of
3 features), ``kernel_kwargs`` are passed to ``kernel_fn`` (``{"pattern": "dense"}`` /
``{"pattern": "sparse"}`` stand for the graphs of the inputs: see :func:`kernel_kwargs`), and
``closed_form`` is False where quadrature is involved. ``APPLY`` lists the architectures whose
finite network (``apply_fn`` on fixed parameters) is compared as well.
"""

import math


def _relu_dual(c, q1, q2):
    import jax.numpy as jnp

    s = jnp.sqrt(q1 * q2)
    det = jnp.maximum(q1 * q2 - c * c, 0.0)
    theta = jnp.arctan2(jnp.sqrt(det), c)
    return (jnp.sqrt(det) + (math.pi - theta) * c) / (2 * math.pi) + 0 * s


def _relu_dual_derivative(c, q1, q2):
    import jax.numpy as jnp

    det = jnp.maximum(q1 * q2 - c * c, 0.0)
    return (math.pi - jnp.arctan2(jnp.sqrt(det), c)) / (2 * math.pi)


def _mlp(stax, act, depth=2, W=1.4, b=0.2, param="ntk", width=64, s=(1, 1)):
    layers = []
    for _ in range(depth):
        layers += [stax.Dense(width, W_std=W, b_std=b, parameterization=param, s=s), act()]
    layers += [stax.Dense(1, W_std=W, b_std=b, parameterization=param, s=s)]
    return stax.serial(*layers)


def _vec(stax, name):
    import jax.numpy as jnp

    table = {
        "mlp_relu": lambda: _mlp(stax, stax.Relu, depth=3),
        "mlp_relu_standard": lambda: _mlp(stax, stax.Relu, depth=2, param="standard"),
        "mlp_relu_standard_s": lambda: _mlp(stax, stax.Relu, depth=2, param="standard", s=(2, 3), width=8),
        "mlp_relu_nobias": lambda: _mlp(stax, stax.Relu, depth=2, b=None),
        "mlp_relu_stabilized": lambda: _mlp(stax, lambda: stax.Relu(do_stabilize=True), depth=4),
        "mlp_abrelu": lambda: _mlp(stax, lambda: stax.ABRelu(-0.3, 1.2)),
        "mlp_leakyrelu": lambda: _mlp(stax, lambda: stax.LeakyRelu(0.1)),
        "mlp_abs": lambda: _mlp(stax, stax.Abs),
        "mlp_erf": lambda: _mlp(stax, stax.Erf, depth=3),
        "mlp_erf_abc_standard": lambda: _mlp(stax, lambda: stax.Erf(1.3, 0.7, 0.2), param="standard"),
        "mlp_sigmoid_like": lambda: _mlp(stax, stax.Sigmoid_like),
        "mlp_gelu": lambda: _mlp(stax, stax.Gelu),
        "mlp_sin": lambda: _mlp(stax, lambda: stax.Sin(1.2, 0.8, 0.3)),
        "mlp_cos": lambda: _mlp(stax, lambda: stax.Cos(0.9, 1.1, -0.2)),
        "mlp_rbf": lambda: _mlp(stax, lambda: stax.Rbf(0.7)),
        "mlp_sign": lambda: _mlp(stax, stax.Sign, depth=1),
        "mlp_exp": lambda: _mlp(stax, lambda: stax.Exp(0.8, 0.5), depth=1, W=1.0),
        "mlp_gaussian": lambda: _mlp(stax, lambda: stax.Gaussian(1.1, -0.6)),
        "mlp_expnormalized": lambda: _mlp(stax, lambda: stax.ExpNormalized(1.2, -1.0)),
        "mlp_hermite": lambda: stax.serial(stax.Dense(64, W_std=1.3, b_std=0.1), stax.LayerNorm(),
                                           stax.Hermite(3), stax.Dense(64), stax.LayerNorm(), stax.Hermite(2),
                                           stax.Dense(1)),
        "mlp_monomial": lambda: stax.serial(stax.Dense(64, W_std=0.9, b_std=0.2), stax.Monomial(3),
                                            stax.Dense(64, W_std=0.9, b_std=0.2), stax.Monomial(2), stax.Dense(1)),
        # a single rectified monomial: neural-tangents' form is NaN at theta = 0 (identical inputs, and the
        # variances it would pass on), so only the pairs of distinct inputs are comparable
        "mlp_rectified_monomial": lambda: stax.serial(stax.Dense(64, W_std=1.1, b_std=0.2),
                                                      stax.RectifiedMonomial(2), stax.Dense(1, b_std=0.1)),
        "mlp_rectified_monomial_3": lambda: stax.serial(stax.Dense(64, W_std=0.9),
                                                        stax.RectifiedMonomial(3), stax.Dense(1)),
        "mlp_polynomial": lambda: _mlp(stax, lambda: stax.Polynomial([0.5, -1.0, 0.3, 0.2])),
        "mlp_numerical_tanh": lambda: _mlp(stax, lambda: stax.ElementwiseNumerical(jnp.tanh, deg=25)),
        "mlp_elementwise_relu": lambda: _mlp(stax, lambda: stax.Elementwise(
            fn=lambda x: jnp.maximum(x, 0.0), nngp_fn=_relu_dual, d_nngp_fn=_relu_dual_derivative)),
        "mlp_resnet_layernorm": lambda: stax.serial(
            stax.Dense(64, W_std=1.2, b_std=0.1),
            stax.repeat(stax.serial(stax.FanOut(2),
                                    stax.parallel(stax.Identity(),
                                                  stax.serial(stax.Relu(), stax.Dense(64, W_std=1.1, b_std=0.2))),
                                    stax.FanInSum(), stax.LayerNorm()), 2),
            stax.Relu(), stax.Dense(1)),
        "mlp_dropout": lambda: stax.serial(stax.Dense(64, b_std=0.1), stax.Relu(), stax.Dense(64), stax.Dropout(0.8),
                                           stax.Dense(1)),
        "mlp_fanin_concat": lambda: stax.serial(
            stax.Dense(64, b_std=0.3), stax.Relu(), stax.FanOut(2),
            stax.parallel(stax.Dense(64, W_std=2.0), stax.Dense(32, W_std=0.5, b_std=0.4)),
            stax.FanInConcat(), stax.Dense(1)),
        "mlp_fanin_prod": lambda: stax.serial(
            stax.FanOut(2), stax.parallel(stax.serial(stax.Dense(64), stax.Erf(), stax.Dense(64, b_std=0.5)),
                                          stax.Dense(64, W_std=0.7, b_std=0.2)),
            stax.FanInProd(), stax.Dense(1)),
        "mlp_repeat": lambda: stax.serial(stax.Dense(64, b_std=0.1),
                                          stax.repeat(stax.serial(stax.Relu(), stax.Dense(64, W_std=1.3, b_std=0.2)),
                                                      3), stax.Relu(), stax.Dense(1)),
        "mlp_diagonal_batch_false": lambda: _mlp(stax, stax.Erf),
    }
    return table[name]()


def _img(stax, name):
    table = {
        "cnn_gap": lambda: stax.serial(stax.Conv(8, (3, 3), padding="SAME", W_std=1.3, b_std=0.2), stax.Relu(),
                                       stax.Conv(8, (3, 3), padding="SAME", W_std=1.3, b_std=0.2), stax.Relu(),
                                       stax.GlobalAvgPool(), stax.Dense(1)),
        "cnn_flatten_valid": lambda: stax.serial(stax.Conv(8, (2, 2), W_std=1.2, b_std=0.1), stax.Erf(),
                                                 stax.Conv(8, (2, 1)), stax.Relu(), stax.Flatten(), stax.Dense(1)),
        "cnn_circular_avgpool": lambda: stax.serial(stax.Conv(8, (3, 2), padding="CIRCULAR", b_std=0.3), stax.Relu(),
                                                    stax.AvgPool((2, 2), strides=(2, 1)), stax.Flatten(),
                                                    stax.Dense(1)),
        "cnn_sumpool_same_gsp": lambda: stax.serial(stax.Conv(8, (2, 2), padding="SAME"), stax.Abs(),
                                                    stax.SumPool((3, 2), padding="SAME"), stax.GlobalSumPool(),
                                                    stax.Dense(1)),
        "cnn_avgpool_normalize_edges": lambda: stax.serial(
            stax.Conv(8, (3, 3), padding="SAME", b_std=0.1), stax.Gelu(),
            stax.AvgPool((3, 3), padding="SAME", normalize_edges=True), stax.Conv(8, (2, 2)),
            stax.GlobalAvgPool(), stax.Dense(1)),
        "cnn_avgpool_circular_pool": lambda: stax.serial(
            stax.Conv(8, (2, 2), padding="SAME"), stax.Relu(), stax.AvgPool((2, 3), padding="CIRCULAR"),
            stax.GlobalAvgPool(), stax.Dense(1)),
        "cnn_standard": lambda: stax.serial(
            stax.Conv(8, (3, 3), padding="SAME", W_std=1.5, b_std=0.3, parameterization="standard"), stax.Gelu(),
            stax.Conv(8, (2, 2), W_std=1.2, parameterization="standard"), stax.Relu(), stax.GlobalAvgPool(),
            stax.Dense(1, W_std=1.1, b_std=0.2, parameterization="standard")),
        "cnn_stride": lambda: stax.serial(stax.Conv(8, (3, 3), strides=(2, 2), padding="SAME", b_std=0.1),
                                          stax.Relu(), stax.Conv(8, (2, 2), strides=(1, 2), padding="SAME"),
                                          stax.Sin(), stax.Flatten(), stax.Dense(1)),
        "cnn_convlocal": lambda: stax.serial(stax.ConvLocal(8, (2, 2), b_std=0.2), stax.Relu(),
                                             stax.ConvLocal(8, (2, 2), padding="SAME", W_std=1.3), stax.Erf(),
                                             stax.Flatten(), stax.Dense(1)),
        "cnn_convlocal_pool": lambda: stax.serial(stax.ConvLocal(8, (2, 2), b_std=0.2), stax.Relu(),
                                                  stax.AvgPool((2, 2)), stax.Flatten(), stax.Dense(1)),
        "cnn_resnet_layernorm": lambda: stax.serial(
            stax.Conv(8, (3, 3), padding="SAME", b_std=0.1),
            stax.FanOut(2),
            stax.parallel(stax.Identity(), stax.serial(stax.Relu(), stax.Conv(8, (3, 3), padding="SAME", W_std=1.2))),
            stax.FanInSum(), stax.LayerNorm(axis=(1, 2, 3)), stax.Relu(), stax.GlobalAvgPool(), stax.Dense(1)),
        "cnn_dense_on_channels": lambda: stax.serial(stax.Conv(8, (2, 2), padding="SAME"), stax.Relu(),
                                                     stax.Dense(8, W_std=1.4, b_std=0.3), stax.Erf(),
                                                     stax.GlobalAvgPool(), stax.Dense(1)),
        "cnn_fanin_concat": lambda: stax.serial(
            stax.Conv(8, (2, 2), padding="SAME"), stax.Relu(), stax.FanOut(2),
            stax.parallel(stax.Conv(8, (1, 1)), stax.Conv(4, (3, 3), padding="SAME", b_std=0.2)),
            stax.FanInConcat(), stax.GlobalAvgPool(), stax.Dense(1)),
        "cnn_output_one_conv": lambda: stax.serial(stax.Conv(8, (3, 2), padding="SAME", b_std=0.1)),
        "cnn_output_two_convs": lambda: stax.serial(stax.Conv(8, (2, 2), padding="SAME"), stax.Relu(),
                                                    stax.Conv(8, (3, 3), padding="SAME", b_std=0.1)),
        "cnn_output_diag_spatial": lambda: stax.serial(stax.Conv(8, (2, 2), padding="SAME"), stax.Relu(),
                                                       stax.Conv(8, (3, 3), padding="CIRCULAR")),
        "cnn_output_avgpool": lambda: stax.serial(stax.Conv(8, (2, 2)), stax.Relu(), stax.AvgPool((2, 2))),
        "img_flatten_first": lambda: stax.serial(stax.Flatten(), stax.Dense(64, b_std=0.1), stax.Relu(),
                                                 stax.Dense(1)),
        "img_dropout_test_mode": lambda: stax.serial(stax.Conv(8, (2, 2)), stax.Relu(), stax.Dropout(0.7, mode="test"),
                                                     stax.Flatten(), stax.Dense(1)),
        "cnn_conv_transpose_valid": lambda: stax.serial(
            stax.ConvTranspose(8, (3, 2), strides=(2, 1), W_std=1.3, b_std=0.2), stax.Relu(),
            stax.ConvTranspose(8, (2, 2), padding="SAME"), stax.Relu(), stax.GlobalAvgPool(), stax.Dense(1)),
        "cnn_conv_transpose_same_standard": lambda: stax.serial(
            stax.ConvTranspose(8, (3, 2), strides=(2, 3), padding="SAME", W_std=1.2, b_std=0.1,
                               parameterization="standard"), stax.Relu(), stax.Flatten(),
            stax.Dense(1, parameterization="standard")),
        "cnn_conv_transpose_circular": lambda: stax.serial(
            stax.Conv(8, (2, 2), padding="SAME"), stax.Erf(),
            stax.ConvTranspose(8, (3, 2), strides=(2, 1), padding="CIRCULAR", b_std=0.1)),
        "img_attention": lambda: stax.serial(stax.Conv(8, (2, 2), padding="SAME"),
                                             stax.GlobalSelfAttention(8, 4, 4, 2, b_std=0.1), stax.Relu(),
                                             stax.GlobalAvgPool(), stax.Dense(1)),
    }
    return table[name]()


def _seq(stax, name):
    import jax.numpy as jnp

    A = stax.GlobalSelfAttention
    table = {
        "seq_attention_softmax": lambda: stax.serial(
            stax.Dense(8, W_std=1.2, b_std=0.1),
            A(8, 4, 4, 2, W_key_std=1.3, W_query_std=0.8, W_value_std=1.1, W_out_std=0.9, b_std=0.2), stax.Relu(),
            stax.GlobalAvgPool(), stax.Dense(1)),
        "seq_attention_block": lambda: stax.serial(
            stax.Dense(8, b_std=0.1),
            stax.FanOut(2), stax.parallel(stax.Identity(), A(8, 4, 4, 2, attention_mechanism="IDENTITY", b_std=0.1)),
            stax.FanInSum(), stax.LayerNorm(), stax.Relu(), stax.Dense(8, W_std=1.3), stax.Erf(),
            stax.GlobalAvgPool(), stax.Dense(1)),
        "seq_attention_abs_output": lambda: stax.serial(stax.Dense(8), A(8, 4, 4, 2, attention_mechanism="ABS",
                                                                           W_key_std=0.7, b_std=0.3)),
        "seq_attention_relu_concat": lambda: stax.serial(
            stax.Dense(8), A(8, 4, 4, 2, attention_mechanism="RELU", pos_emb_type="CONCAT", n_chan_pos_emb=4,
                             pos_emb_decay_fn=lambda d: jnp.exp(-0.5 * d), pos_emb_p_norm=1.5, val_pos_emb=True),
            stax.GlobalSumPool(), stax.Dense(1)),
        "seq_attention_sqrt_identity_sum": lambda: stax.serial(
            stax.Dense(8, b_std=0.2),
            A(8, 4, 4, 2, linear_scaling=False, attention_mechanism="IDENTITY", W_key_std=0.6, b_std=0.1,
              pos_emb_type="SUM", W_pos_emb_std=0.7, pos_emb_decay_fn=lambda d: 1.0 / (1.0 + d)),
            stax.GlobalAvgPool(), stax.Dense(1)),
    }
    return table[name]()


def _graph(stax, name):
    table = {
        "graph_gnn_dense": lambda: stax.serial(
            stax.Dense(8, W_std=1.3, b_std=0.1), stax.Relu(), stax.Aggregate(), stax.Dense(8, b_std=0.2), stax.Relu(),
            stax.Aggregate(), stax.GlobalSumPool(), stax.Dense(1)),
        "graph_gnn_sparse": lambda: stax.serial(
            stax.Dense(8), stax.Relu(), stax.Aggregate(implementation="SPARSE"), stax.Dense(8, W_std=1.2),
            stax.Erf(), stax.GlobalAvgPool(), stax.Dense(1)),
        "graph_aggregate_output": lambda: stax.serial(stax.Dense(8, b_std=0.1), stax.Gelu(),
                                                      stax.Aggregate(aggregate_axis=1)),
    }
    return table[name]()


#: name -> (inputs, kernel_fn keyword arguments, closed form?)
SPECS = {
    **{n: ("vec", {}, True) for n in [
        "mlp_relu", "mlp_relu_standard", "mlp_relu_standard_s", "mlp_relu_nobias", "mlp_relu_stabilized",
        "mlp_abrelu", "mlp_leakyrelu", "mlp_abs", "mlp_erf", "mlp_erf_abc_standard", "mlp_sigmoid_like", "mlp_gelu",
        "mlp_sin", "mlp_cos", "mlp_rbf", "mlp_sign", "mlp_exp", "mlp_gaussian", "mlp_expnormalized", "mlp_hermite",
        "mlp_monomial", "mlp_rectified_monomial", "mlp_rectified_monomial_3", "mlp_polynomial", "mlp_elementwise_relu", "mlp_resnet_layernorm",
        "mlp_dropout", "mlp_fanin_concat", "mlp_fanin_prod", "mlp_repeat"]},
    "mlp_numerical_tanh": ("vec", {}, False),
    "mlp_diagonal_batch_false": ("vec", {"diagonal_batch": False}, True),
    **{n: ("img", {}, True) for n in [
        "cnn_gap", "cnn_flatten_valid", "cnn_circular_avgpool", "cnn_sumpool_same_gsp", "cnn_avgpool_normalize_edges",
        "cnn_avgpool_circular_pool", "cnn_standard", "cnn_stride", "cnn_convlocal", "cnn_convlocal_pool",
        "cnn_resnet_layernorm", "cnn_dense_on_channels", "cnn_fanin_concat", "cnn_output_one_conv",
        "cnn_output_two_convs", "cnn_output_avgpool", "img_flatten_first", "img_dropout_test_mode"]},
    "cnn_output_diag_spatial": ("img", {"diagonal_spatial": True}, True),
    **{n: ("img", {}, True) for n in [
        "cnn_conv_transpose_valid", "cnn_conv_transpose_same_standard", "cnn_conv_transpose_circular",
        "img_attention"]},
    **{n: ("seq", {}, True) for n in [
        "seq_attention_softmax", "seq_attention_block", "seq_attention_abs_output", "seq_attention_relu_concat",
        "seq_attention_sqrt_identity_sum"]},
    "graph_gnn_dense": ("graph", {"pattern": "dense"}, True),
    "graph_gnn_sparse": ("graph", {"pattern": "sparse"}, True),
    "graph_aggregate_output": ("graph", {"pattern": "dense"}, True),
}

#: Architectures whose finite network is compared too (fixed parameters, neural-tangents' apply_fn).
APPLY = ["cnn_conv_transpose_valid", "cnn_conv_transpose_same_standard", "cnn_conv_transpose_circular",
         "img_attention", "seq_attention_softmax", "seq_attention_block", "seq_attention_relu_concat",
         "seq_attention_sqrt_identity_sum", "graph_gnn_dense", "graph_gnn_sparse"]


def build(stax, name):
    """The ``(init_fn, apply_fn, kernel_fn)`` triple of architecture ``name`` from module ``stax``."""
    kind = SPECS[name][0]
    return {"vec": _vec, "img": _img, "seq": _seq, "graph": _graph}[kind](stax, name)


def kernel_kwargs(name, patterns, which):
    """``kernel_fn`` keyword arguments of ``name`` for the batch pair ``which``.

    ``patterns`` is :func:`graphs`' dict ``{"dense": (P1, P2), "sparse": (E1, E2)}``; ``which`` is
    "12" (``x1`` against ``x2``: ``pattern=(P1, P2)``), "11" (``x1`` alone: ``(P1, P1)``) or
    "stacked" (``[x1; x2]`` alone: both patterns stacked, twice).
    """
    import numpy as np

    kwargs = dict(SPECS[name][1])
    fmt = kwargs.get("pattern")
    if fmt is not None:
        p1, p2 = patterns[fmt]
        both = np.concatenate([p1, p2])
        kwargs["pattern"] = {"12": (p1, p2), "11": (p1, p1), "stacked": (both, both)}[which]
    return kwargs


def apply_kwargs(name, patterns, which):
    """``apply_fn`` keyword arguments of ``name`` on batch ``which`` ("1": ``x1``)."""
    fmt = SPECS[name][1].get("pattern")
    return {} if fmt is None else {"pattern": patterns[fmt][0]}


def inputs(rng):
    """The fixed inputs: ``{"vec": (x1, x2), "img": (x1, x2)}`` from a numpy Generator."""
    v1 = rng.normal(size=(5, 6))
    v2 = rng.normal(size=(3, 6)) * 1.3 + 0.2
    v2[0] = v1[1]  # a row shared by both batches: identical inputs across x1 and x2
    v2[1] = -2.0 * v1[2]  # an opposite, rescaled row
    i1 = rng.normal(size=(2, 4, 3, 2))
    i2 = rng.normal(size=(3, 4, 3, 2)) * 0.8 - 0.1
    i2[0] = i1[0]
    s1 = rng.normal(size=(2, 5, 3))
    s2 = rng.normal(size=(3, 5, 3)) * 0.9 + 0.1
    g1 = rng.normal(size=(2, 4, 3))
    g2 = rng.normal(size=(3, 4, 3)) * 1.1
    return {"vec": (v1, v2), "img": (i1, i2), "seq": (s1, s2), "graph": (g1, g2)}


def graphs(rng):
    """The graphs of the "graph" inputs (drawn after :func:`inputs` from the same Generator).

    ``"dense"``: weighted adjacency matrices ``(n, 4, 4)`` (about half the arcs, weights in
    [0.5, 1.5]); ``"sparse"``: 6 (tail, head) edges per graph, ``(n, 6, 1, 2)``, a few with a
    negative head (padding) or tail (neural-tangents reads a tail of -1 as the last vertex).
    """
    dense = tuple((rng.random((n, 4, 4)) < 0.5) * rng.uniform(0.5, 1.5, (n, 4, 4)) for n in (2, 3))
    sparse = tuple(rng.integers(-1, 4, size=(n, 6, 1, 2)) for n in (2, 3))
    return {"dense": dense, "sparse": sparse}
