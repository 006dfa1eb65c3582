r"""Graph kernels as power series of a normalised weighted adjacency, their modulation functions,
and exact references for small graphs.

``U = σ² D^{-1/2} W D^{-1/2}`` (D the weighted degrees; rows of isolated nodes are zero) and
``K_α = Σ_l α_l U^l``. Graph random features need the *modulation* f with ``f * f = α``
(discrete convolution): ``f(0) = sqrt(α_0)``, ``f(l) = (α_l − Σ_{p=1}^{l−1} f(p) f(l−p)) / (2 f(0))``.

| kernel | K | α_l | f(l) |
|---|---|---|---|
| ``regularized_laplacian`` | (I − U)⁻¹ | 1 | (2l−1)!! / (2l)!! |
| ``regularized_laplacian_2`` | (I − U)⁻² | l + 1 | 1 |
| ``diffusion`` | exp(U) | 1/l! | 1 / (2^l l!) |
| ``p_step`` | (I + U)^p | binom(p, l) | deconvolution (binom(p/2, l) for even p) |
| ``cosine`` | cos U + sin U | ±1/l! (signs + + − −) | deconvolution |

The two Laplacian series converge only for spectral radius ρ(U) < 1; since the normalised
adjacency has ρ ≤ 1 (= 1 on any graph with an edge), that means σ < 1.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp

from .. import _linalg
from .._blas import matmul
from .._validation import InvalidParameterError, check_int

__all__ = ["NAMED_KERNELS", "alpha_coefficients", "modulation", "deconvolve", "normalized_adjacency",
           "exact_graph_kernel", "as_adjacency"]

NAMED_KERNELS = ("regularized_laplacian", "regularized_laplacian_2", "diffusion", "p_step", "cosine")
_DIVERGENT_AT_ONE = ("regularized_laplacian", "regularized_laplacian_2")


def deconvolve(alpha):
    """The modulation f with ``Σ_p f(p) f(l−p) = α_l`` (needs α_0 > 0)."""
    alpha = np.asarray(alpha, dtype=np.float64)
    if alpha.ndim != 1 or len(alpha) == 0:
        raise InvalidParameterError(f"the 'kernel' power-series coefficients must be a non-empty 1-D array; got "
                                    f"shape {alpha.shape}.")
    if not np.all(np.isfinite(alpha)):
        raise InvalidParameterError("the 'kernel' power-series coefficients must be finite.")
    if alpha[0] <= 0:
        raise InvalidParameterError(f"the constant coefficient α_0 of 'kernel' must be > 0 for a modulation to exist "
                                    f"(f(0) = sqrt(α_0)); got α_0 = {alpha[0]!r}.")
    f = np.zeros_like(alpha)
    f[0] = math.sqrt(alpha[0])
    for l in range(1, len(alpha)):
        f[l] = (alpha[l] - np.dot(f[1:l], f[l - 1:0:-1])) / (2 * f[0])
    return f


def alpha_coefficients(kernel, length, *, p=2):
    """α_0 … α_{length−1} of a named kernel."""
    l = np.arange(length, dtype=np.float64)
    if kernel == "regularized_laplacian":
        return np.ones(length)
    if kernel == "regularized_laplacian_2":
        return l + 1
    if kernel == "diffusion":
        return np.exp(-np.array([math.lgamma(k + 1) for k in range(length)]))
    if kernel == "p_step":
        return np.array([math.comb(int(p), k) if k <= p else 0.0 for k in range(length)], dtype=np.float64)
    if kernel == "cosine":
        sign = np.where(np.arange(length) % 4 < 2, 1.0, -1.0)
        return sign * np.exp(-np.array([math.lgamma(k + 1) for k in range(length)]))
    raise InvalidParameterError(f"kernel must be one of {NAMED_KERNELS}, a callable modulation f(l) or an array of "
                                f"power-series coefficients; got {kernel!r}.")


def modulation(kernel, length, *, p=2):
    """f(0) … f(length−1) for a named kernel, an array of coefficients α (deconvolved) or a callable f(l)."""
    if callable(kernel):
        f = np.array([float(kernel(k)) for k in range(length)])
        if not np.all(np.isfinite(f)):
            raise InvalidParameterError("the modulation function returned a non-finite value.")
        return f
    if not isinstance(kernel, str):
        alpha = np.asarray(kernel, dtype=np.float64)
        f = deconvolve(alpha)
        return np.concatenate([f, np.zeros(max(0, length - len(f)))])[:length] if len(f) < length else f[:length]
    if kernel == "regularized_laplacian":
        f = np.ones(length)
        for k in range(1, length):
            f[k] = f[k - 1] * (2 * k - 1) / (2 * k)
        return f
    if kernel == "regularized_laplacian_2":
        return np.ones(length)
    if kernel == "diffusion":
        f = np.ones(length)
        for k in range(1, length):
            f[k] = f[k - 1] / (2 * k)
        return f
    return deconvolve(alpha_coefficients(kernel, length, p=p))


def as_adjacency(adjacency, *, symmetrize=False, name="adjacency"):
    """A symmetric, non-negative, finite scipy CSR matrix from scipy.sparse, a dense array or a networkx graph."""
    try:
        import networkx as nx

        if isinstance(adjacency, nx.Graph):
            if adjacency.is_directed() and not symmetrize:
                raise ValueError(f"{name} is a directed networkx graph; graph kernels here need an undirected graph. "
                                 "Pass symmetrize=True to use (W + Wᵀ)/2, or convert with G.to_undirected().")
            adjacency = nx.to_scipy_sparse_array(adjacency, nodelist=list(adjacency.nodes()), weight="weight",
                                                 format="csr")
    except ImportError:  # pragma: no cover - networkx is optional
        pass
    if sp.issparse(adjacency):
        A = sp.csr_matrix(adjacency, dtype=np.float64)
    else:
        arr = np.asarray(adjacency)
        if arr.dtype == object or arr.dtype.kind not in "biuf":
            raise TypeError(f"{name} must be a scipy.sparse matrix, a dense numeric array or a networkx graph; got "
                            f"dtype {arr.dtype}.")
        if arr.ndim != 2:
            raise ValueError(f"{name} must be a square 2-D matrix; got shape {arr.shape}.")
        A = sp.csr_matrix(arr.astype(np.float64))
    if A.shape[0] != A.shape[1]:
        raise ValueError(f"{name} must be square (n_nodes × n_nodes); got shape {A.shape}.")
    A.sum_duplicates()
    A.eliminate_zeros()
    if not np.all(np.isfinite(A.data)):
        raise ValueError(f"{name} contains NaN or Inf weights.")
    if np.any(A.data < 0):
        raise ValueError(f"{name} has negative weights (min {A.data.min():.3g}); graph kernels here need "
                         "non-negative edge weights.")
    asym = abs(A - A.T)
    if asym.nnz and asym.max() > 1e-12 * (A.data.max() if A.nnz else 1.0):
        if not symmetrize:
            raise ValueError(f"{name} is not symmetric (a directed graph; max |W - Wᵀ| = {asym.max():.3g}). Pass "
                             "symmetrize=True to use (W + Wᵀ)/2.")
        A = ((A + A.T) * 0.5).tocsr()
    A.sort_indices()
    return A


def normalized_adjacency(A, sigma):
    """``U = σ² D^{-1/2} W D^{-1/2}`` as CSR (isolated nodes: zero rows)."""
    d = np.asarray(A.sum(axis=1)).ravel()
    inv = np.zeros_like(d)
    inv[d > 0] = 1.0 / np.sqrt(d[d > 0])
    U = sp.diags(inv) @ A @ sp.diags(inv)
    U = sp.csr_matrix(U * (sigma**2))
    U.sort_indices()
    return U


def check_sigma(kernel, sigma, A):
    if isinstance(sigma, (bool, str)) or not isinstance(sigma, (int, float, np.integer, np.floating)) or not (
            np.isfinite(sigma) and sigma > 0):
        raise InvalidParameterError(f"sigma must be a positive float; got {sigma!r}.")
    if isinstance(kernel, str) and kernel in _DIVERGENT_AT_ONE and A.nnz and sigma >= 1:
        raise InvalidParameterError(
            f"the {kernel} series Σ U^l diverges for sigma = {sigma}: U = σ² D^(-1/2) W D^(-1/2) has spectral radius "
            f"σ² ≥ 1 on a graph with edges. Use sigma < 1 (e.g. 0.5).")


def exact_graph_kernel(adjacency, kernel="regularized_laplacian", *, sigma=0.5, p=2, symmetrize=False):
    """The exact node kernel ``Σ_l α_l U^l`` of a small graph (dense, from the eigendecomposition of U).

    Parameters
    ----------
    adjacency : scipy.sparse, dense array or networkx graph (symmetric, non-negative)
    kernel : str, array of coefficients α, or callable modulation f(l)
        Named kernels use their closed forms ((I−U)⁻¹, (I−U)⁻², exp U, (I+U)^p, cos U + sin U);
        an array α gives the polynomial Σ α_l U^l; a callable f gives α = f * f (to 200 terms).
    sigma : float
    p : int
        Power of the ``p_step`` kernel.

    Examples
    --------
    >>> import numpy as np
    >>> from ntkit.graphs import exact_graph_kernel
    >>> W = np.array([[0, 1, 0], [1, 0, 1], [0, 1, 0]], float)
    >>> K = exact_graph_kernel(W, "regularized_laplacian", sigma=0.5)
    >>> U = 0.25 * np.diag(1 / np.sqrt(W.sum(1))) @ W @ np.diag(1 / np.sqrt(W.sum(1)))
    >>> bool(np.allclose(K, np.linalg.inv(np.eye(3) - U)))
    True
    """
    A = as_adjacency(adjacency, symmetrize=symmetrize)
    check_sigma(kernel, sigma, A)
    if isinstance(kernel, str) and kernel == "p_step":
        p = check_int(p, "p", "exact_graph_kernel", low=0)
    n = A.shape[0]
    if n > 20_000:
        raise MemoryError(f"exact_graph_kernel forms dense n × n matrices; n = {n} is too large. Use "
                          "GraphRandomFeatures.kernel_matvec.")
    U = normalized_adjacency(A, sigma).toarray()
    lam, V = _linalg.eigh(0.5 * (U + U.T), overwrite_a=True)
    if isinstance(kernel, str):
        g = {"regularized_laplacian": lambda x: 1.0 / (1.0 - x),
             "regularized_laplacian_2": lambda x: 1.0 / (1.0 - x) ** 2,
             "diffusion": np.exp,
             "p_step": lambda x: (1.0 + x) ** int(p),
             "cosine": lambda x: np.cos(x) + np.sin(x)}.get(kernel)
        if g is None:
            alpha_coefficients(kernel, 1)  # raises the error naming the options
        vals = g(lam)
    else:
        if callable(kernel):
            f = modulation(kernel, 200)
            alpha = np.convolve(f, f)[:200]
        else:
            alpha = np.asarray(kernel, dtype=np.float64)
            deconvolve(alpha)  # validates
        vals = np.polynomial.polynomial.polyval(lam, alpha)
    return matmul(V * vals, V.T)
