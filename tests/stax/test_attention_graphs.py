"""ConvTranspose, GlobalSelfAttention and Aggregate beyond the neural-tangents goldens: the finite
layer against its kernel exactly, the cases without a closed form, and bad input."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from ntkit import stax

RNG = np.random.default_rng(3)
SEQ = RNG.normal(size=(2, 4, 3))
GRAPH = (RNG.random((2, 4, 4)) < 0.5).astype(float)


@pytest.mark.parametrize("size, filt, stride, padding", [
    (5, 3, 2, "VALID"), (4, 2, 3, "SAME"), (5, 4, 3, "CIRCULAR"), (5, 5, 2, "CIRCULAR")])
def test_conv_transpose_kernel_is_the_finite_layers_covariance(size, filt, stride, padding):
    """One ConvTranspose with one input and one output channel is linear in its weights, so its NNGP
    is exactly the sum over the weights' basis of the outputs' products (no sampling): the
    geometry of the kernel's tables (dilation holes, padding, circular folding) against the
    finite layer's ``conv_general_dilated``."""
    x = RNG.normal(size=(2, size, 1))
    init_fn, apply_fn, kernel_fn = stax.ConvTranspose(1, (filt,), strides=(stride,), padding=padding)
    (_, out_len, _), _ = init_fn(jax.random.PRNGKey(0), x.shape)
    basis = np.eye(filt).reshape((filt, filt, 1, 1))
    ys = jax.jit(jax.vmap(lambda w: apply_fn((w, None), x)))(basis)[..., 0]  # (filt, n, out_len)
    empirical = np.einsum("eap,ebq->abpq", ys, ys)
    exact = np.asarray(kernel_fn(x, None, "nngp"))
    assert exact.shape == (2, 2, out_len, out_len)
    np.testing.assert_allclose(exact, empirical, rtol=0, atol=1e-13 * np.abs(empirical).max())


def test_attention_without_closed_form_raises_but_runs_finite():
    init_fn, apply_fn, _ = stax.GlobalSelfAttention(4, 2, 2, 2, linear_scaling=False)
    shapes = jax.eval_shape(lambda key: init_fn(key, SEQ.shape)[1], jax.random.PRNGKey(0))
    assert shapes[0] is not None  # separate query weights
    params = jax.tree_util.tree_map(lambda s: RNG.normal(size=s.shape), shapes)
    assert jax.jit(apply_fn)(params, SEQ).shape == (2, 4, 4)
    net = stax.serial(stax.Dense(4), stax.GlobalSelfAttention(4, 2, 2, 2, linear_scaling=False))
    with pytest.raises(NotImplementedError, match="closed-form"):
        net[2](SEQ, None, "nngp")


def test_aggregate_identity_and_pattern_errors():
    _, _, kernel_fn = stax.serial(stax.Dense(4), stax.Aggregate())
    np.testing.assert_array_equal(stax.Aggregate()[1]((), SEQ), SEQ)  # no pattern: the identity
    plain = np.asarray(stax.Dense(4)[2](SEQ, None, "nngp"))
    np.testing.assert_allclose(kernel_fn(SEQ, None, "nngp"), plain, rtol=1e-15)
    np.testing.assert_allclose(kernel_fn(SEQ, None, "nngp", pattern=(None, None)), plain, rtol=1e-15)
    with pytest.raises(NotImplementedError, match="exactly one"):
        kernel_fn(SEQ, None, "nngp", pattern=(GRAPH, None))
    with pytest.raises(ValueError, match="pattern must have shape"):
        kernel_fn(SEQ, None, "nngp", pattern=(GRAPH[:, :3, :3], GRAPH[:, :3, :3]))
    with pytest.raises(ValueError, match=r"pattern=\(pattern1, pattern2\)"):
        kernel_fn(SEQ, None, "nngp", pattern=GRAPH)
    # stax.batch cuts the patterns into the blocks of rows
    x = np.concatenate([SEQ, SEQ[:1] + 0.5])
    P = np.concatenate([GRAPH, GRAPH[:1].transpose(0, 2, 1)])
    full = kernel_fn(x, None, "nngp", pattern=(P, P))
    np.testing.assert_allclose(stax.batch(kernel_fn, 2)(x, None, "nngp", pattern=(P, P)), full, rtol=1e-14)
    sparse = stax.Aggregate(implementation="SPARSE")[1]
    with pytest.raises(TypeError, match="integer"):
        sparse((), SEQ, pattern=np.zeros((2, 3, 2)))
    # an edge list and its dense adjacency aggregate the same way
    edges = np.array([[[0, 1], [2, 1], [3, 3], [1, -1]], [[1, 0], [1, 0], [-1, 2], [2, 3]]])
    dense = np.zeros((2, 4, 4))
    for n in range(2):
        for t, h in edges[n]:
            if h >= 0:
                dense[n, t, h] += 1
    np.testing.assert_allclose(sparse((), SEQ, pattern=edges), stax.Aggregate()[1]((), SEQ, pattern=dense),
                               rtol=1e-15)


@pytest.mark.parametrize("make, exc, match", [
    (lambda: stax.ConvTranspose(3, (2,), padding="FULL"), ValueError, "padding"),
    (lambda: stax.ConvTranspose(3, (2, 2), dimension_numbers=("NCHW", "OIHW", "NCHW")), NotImplementedError,
     "channels-last"),
    (lambda: stax.GlobalSelfAttention(4, 2, 2, 0), ValueError, "n_heads"),
    (lambda: stax.GlobalSelfAttention(4, 2, 2, 1, attention_mechanism="GELU"), ValueError, "attention_mechanism"),
    (lambda: stax.GlobalSelfAttention(4, 2, 2, 1, pos_emb_type="ROTARY"), ValueError, "pos_emb_type"),
    (lambda: stax.GlobalSelfAttention(4, 2, 2, 1, linear_scaling="yes"), TypeError, "linear_scaling"),
    (lambda: stax.Aggregate(implementation="COO"), ValueError, "implementation"),
    (lambda: stax.Aggregate(to_dense="dense"), TypeError, "to_dense"),
    (lambda: stax.Aggregate(aggregate_axis=0)[1]((), SEQ, pattern=GRAPH), ValueError, "aggregate_axis"),
])
def test_bad_parameters(make, exc, match):
    with pytest.raises(exc, match=match):
        make()
