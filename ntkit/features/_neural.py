r"""Random features of the infinite-width network kernels: arc-cosine (Cho & Saul 2009) and the
ReLU NTK (tensor-sketched, in the spirit of Zandieh et al. 2021).

Arc-cosine of order n: ``k_n(x, z) = 2 E_w[Θ(wᵀx) Θ(wᵀz) (wᵀx)ⁿ (wᵀz)ⁿ]``, so
``φ(x) = sqrt(2/m) · max(0, W x)ⁿ`` (n = 0: the step) is unbiased; ``depth`` layers compose
the map (the kernel of the composition is the arc-cosine kernel applied ``depth`` times).

ReLU NTK with ``ntkit.kernels.ReluNTK(depth, bias_std=b, weight_std=w)`` conventions (the
recursion in :func:`ntkit.kernels._relu.relu_recursion`): with ``φ₀ = [w x / √d, b]`` (so
``φ₀ᵀφ₀' = q₀``) and ``ψ₀ = φ₀``, each hidden layer with a fresh W ~ N(0, I) of m rows maps

    φ_l = [w · m^{-1/2} relu(W φ_{l−1}), b]                       E φ_lᵀφ_l' = q_l
    σ_l = m^{-1/2} Θ(W φ_{l−1})                                   E σ_lᵀσ_l' = q̇_l
    ψ_l = [φ_l, w · TS(ψ_{l−1} ⊗ σ_l)]                            E ψ_lᵀψ_l' = q_l + w² ntk_{l−1} q̇_l

where TS is a degree-2 tensor sketch (two count sketches multiplied in the Fourier domain):
``E⟨TS(u⊗v), TS(u'⊗v')⟩ = (uᵀu')(vᵀv')`` without forming the d·m-dimensional product.
At depth 1 the features are unbiased; deeper, each layer's kernel is applied to the previous
layer's *estimate*, so the bias is O(1/m) and vanishes as m grows (tested).
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse

from .._blas import matmul
from .._validation import InvalidParameterError, check_int, check_scalar
from ._base import RandomFeatureBase, mm

__all__ = ["ArcCosineFeatures", "NTKRandomFeatures", "tensor_sketch"]


def _activate(G, order):
    if order == 0:
        return (G > 0).astype(G.dtype)
    R = np.maximum(G, 0)
    return R if order == 1 else R * R


def _activate_jax(G, order):
    import jax.numpy as jnp

    if order == 0:
        return (G > 0).astype(G.dtype)
    R = jnp.maximum(G, 0)
    return R if order == 1 else R * R


def _arccos_jax(static, P, X):
    """The map of :class:`ArcCosineFeatures` on a device (traced by ``jax.jit``)."""
    (order,) = static
    F = X
    for W in P["weights"]:
        F = _activate_jax(mm(F, W.T), order) * math.sqrt(2.0 / W.shape[0])
    return F


def _count_sketch_jax(U, h, s, n_out):
    """``U C`` for the count sketch C with ``C[i, h_i] = s_i`` (a scatter-add of signed columns)."""
    import jax.numpy as jnp

    return jnp.zeros((U.shape[0], n_out), U.dtype).at[:, h].add(U * s)


def _ntk_jax(static, P, X):
    """The map of :class:`NTKRandomFeatures` on a device (traced by ``jax.jit``), in X's dtype."""
    import jax.numpy as jnp

    w, b, sketch = static
    n, d = X.shape
    bias = jnp.full((n, 1 if b > 0 else 0), b, dtype=X.dtype)
    phi = jnp.concatenate([X * (w / math.sqrt(d)), bias], axis=1)
    psi = phi
    for (W, h1, s1, h2, s2), n_out in zip(P["layers"], sketch):
        m = W.shape[0]
        G = mm(phi, W.T)
        relu = jnp.maximum(G, 0) * (1.0 / math.sqrt(m))
        step = (G > 0).astype(X.dtype) * (1.0 / math.sqrt(m))
        phi = jnp.concatenate([w * relu, bias], axis=1)
        A = _count_sketch_jax(psi, h1, s1, n_out)
        B = _count_sketch_jax(step, h2, s2, n_out)
        ts = jnp.fft.irfft(jnp.fft.rfft(A, axis=1) * jnp.fft.rfft(B, axis=1), n=n_out, axis=1)
        psi = jnp.concatenate([phi, w * ts.astype(X.dtype)], axis=1)
    return psi


class ArcCosineFeatures(RandomFeatureBase):
    """Random features of the arc-cosine kernel :class:`ntkit.kernels.ArcCosine` (``depth=1``) and of
    its ``depth``-fold composition.

    Parameters
    ----------
    order : {0, 1, 2}, default=1
        Step, ReLU or squared-ReLU units.
    depth : int >= 1, default=1
    n_components : int, default=100
        Units per layer (the output dimension).
    random_state : int, Generator or None
    device : {"auto", "cpu", "gpu"} or jax.Device, default="auto"
        Where ``transform`` runs (see :class:`RandomFourierFeatures` and :mod:`ntkit.features`).

    Examples
    --------
    >>> import numpy as np
    >>> from ntkit.features import ArcCosineFeatures
    >>> from ntkit.kernels import ArcCosine
    >>> X = np.random.default_rng(0).normal(size=(30, 4))
    >>> F = ArcCosineFeatures(order=1, n_components=50000, random_state=0).fit_transform(X)
    >>> K = ArcCosine(order=1)(X)
    >>> bool(np.abs(F @ F.T - K).max() / np.abs(K).max() < 0.05)
    True
    """

    def __init__(self, order=1, *, depth=1, n_components=100, random_state=None, device="auto"):
        self.order = order
        self.depth = depth
        self.n_components = n_components
        self.random_state = random_state
        self.device = device

    _jax_map = staticmethod(_arccos_jax)

    def _device_arrays(self):
        return {"weights": list(self.weights_)}

    def _device_static(self):
        return (self.order_,)

    def _draw(self, rng, X):
        owner = type(self).__name__
        order = self.order
        if isinstance(order, bool) or order not in (0, 1, 2):
            raise InvalidParameterError(f"The 'order' parameter of {owner} must be one of {{0, 1, 2}}; got {order!r}.")
        self.order_ = int(order)
        depth = check_int(self.depth, "depth", owner, low=1)
        m = self._check_n_components()
        dims = [X.shape[1]] + [m] * depth
        self.weights_ = [rng.standard_normal((dims[i + 1], dims[i])) for i in range(depth)]

    def _map(self, X):
        F = X
        for W in self.weights_:
            F = _activate(matmul(F, W.T.astype(X.dtype)), self.order_)
            F *= X.dtype.type(math.sqrt(2.0 / W.shape[0]))
        return F


def _count_sketch(rng, n_in, n_out):
    h = rng.integers(0, n_out, size=n_in)
    s = rng.choice(np.array([-1.0, 1.0]), size=n_in)
    return scipy.sparse.csr_matrix((s, (np.arange(n_in), h)), shape=(n_in, n_out))


def tensor_sketch(U, V, C1, C2):
    """Degree-2 tensor sketch of the row-wise products ``U[i] ⊗ V[i]``: ``IFFT(FFT(U C1) · FFT(V C2))``.

    ``C1`` (a × s) and ``C2`` (b × s) are count-sketch matrices (one ±1 per row). The inner
    products of the sketches estimate ``(uᵀu')(vᵀv')`` without bias.
    """
    s = C1.shape[1]
    A = np.asarray(C1.T @ U.T).T
    B = np.asarray(C2.T @ V.T).T
    return np.fft.irfft(np.fft.rfft(A, axis=1) * np.fft.rfft(B, axis=1), n=s, axis=1)


class NTKRandomFeatures(RandomFeatureBase):
    """Random features whose inner products estimate :class:`ntkit.kernels.ReluNTK` (same
    ``depth``, ``weight_std``, ``bias_std`` conventions; NTK parameterisation).

    Each hidden layer draws ``n_components // 2`` Gaussian units; the output is the last
    layer's NNGP features (``n_components // 2`` plus one for the bias) followed by a tensor
    sketch of the rest, ``n_components`` columns in all. See the module notes for the
    construction and its bias (none at depth 1, O(1/m) deeper).

    Parameters
    ----------
    depth : int >= 1, default=2
    n_components : int, default=1024
        Output dimension (at least 2, or 3 with a bias: smaller values are raised to that).
    weight_std : float > 0, default=1.0
    bias_std : float >= 0, default=0.0
    random_state : int, Generator or None
    device : {"auto", "cpu", "gpu"} or jax.Device, default="auto"
        Where ``transform`` runs (see :mod:`ntkit.features`). On a device the map is computed
        in X's dtype (the host path forms it in float64 and rounds the result): count sketches
        are scatter-adds and the tensor sketch uses ``jnp.fft``.

    Examples
    --------
    >>> import numpy as np
    >>> from ntkit.features import NTKRandomFeatures
    >>> from ntkit.kernels import ReluNTK
    >>> X = np.random.default_rng(0).normal(size=(20, 6))
    >>> F = NTKRandomFeatures(depth=1, n_components=40000, random_state=0).fit_transform(X)
    >>> K = ReluNTK(depth=1)(X)
    >>> bool(np.abs(F @ F.T - K).max() / np.abs(K).max() < 0.05)
    True
    """

    def __init__(self, depth=2, *, n_components=1024, weight_std=1.0, bias_std=0.0, random_state=None,
                 device="auto"):
        self.depth = depth
        self.n_components = n_components
        self.weight_std = weight_std
        self.bias_std = bias_std
        self.random_state = random_state
        self.device = device

    _jax_map = staticmethod(_ntk_jax)

    def _device_arrays(self):
        layers = []
        for W, C1, C2 in self.layers_:
            parts = [W]
            for C in (C1, C2):
                C = C.tocsr()  # one ±1 per row: column index h_i and sign s_i
                parts += [C.indices.astype(np.int32), C.data.astype(np.float64)]
            layers.append(tuple(parts))
        return {"layers": layers}

    def _device_static(self):
        return (float(self.w_), float(self.b_), tuple(int(C1.shape[1]) for _, C1, _ in self.layers_))

    def _draw(self, rng, X):
        owner = type(self).__name__
        depth = check_int(self.depth, "depth", owner, low=1)
        D = check_int(self.n_components, "n_components", owner, low=1)
        self.w_ = check_scalar(self.weight_std, "weight_std", owner, low=0.0, closed="right")
        self.b_ = check_scalar(self.bias_std, "bias_std", owner, low=0.0)
        has_b = self.b_ > 0
        m = max(1, D // 2)
        s = max(1, D - m - int(has_b))  # D < 3 (+1 with a bias) still gets one unit and one sketch column
        d = X.shape[1]
        dim_phi = d + int(has_b)
        dim_psi = dim_phi
        self.layers_ = []
        for _ in range(depth):
            W = rng.standard_normal((m, dim_phi))
            C1 = _count_sketch(rng, dim_psi, s)
            C2 = _count_sketch(rng, m, s)
            self.layers_.append((W, C1, C2))
            dim_phi = m + int(has_b)
            dim_psi = dim_phi + s

    def _bias_col(self, n):
        return np.full((n, 1), self.b_) if self.b_ > 0 else np.zeros((n, 0))

    def _map(self, X):
        n, d = X.shape
        w = self.w_
        phi = np.hstack([X.astype(np.float64) * (w / math.sqrt(d)), self._bias_col(n)])
        psi = phi
        for W, C1, C2 in self.layers_:
            m = W.shape[0]
            G = matmul(phi, W.T)
            relu = np.maximum(G, 0.0) * (1.0 / math.sqrt(m))
            step = (G > 0).astype(np.float64) * (1.0 / math.sqrt(m))
            phi = np.hstack([w * relu, self._bias_col(n)])
            psi = np.hstack([phi, w * tensor_sketch(psi, step, C1, C2)])
        return psi.astype(X.dtype, copy=False)
