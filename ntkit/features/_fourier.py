r"""Random Fourier features for the stationary kernels (Rahimi & Recht 2007), i.i.d., orthogonal
(Yu et al. 2016) and structured (Hadamard-diagonal products, O(D log d) per input).

For a stationary kernel ``k(x, z) = κ(x − z)`` with spectral density p(ω) (Bochner),

    φ(x) = m^{-1/2} [cos(W x), sin(W x)],   rows of W ~ p,   E[φ(x)ᵀφ(z)] = E cos(ωᵀ(x − z)) = k(x, z)

with m = D/2 frequencies. The [cos, sin] pair has a lower variance than sklearn's
``sqrt(2/D) cos(Wx + b)`` at the same output size D for the Gaussian kernel (Sutherland &
Schneider 2015). Spectral densities, with data divided by the lengthscale:

* ``rbf`` ``exp(−r²/2)``: ω ~ N(0, I);
* ``matern`` ν ``∝ (2ν)^{ν} K_ν(√(2ν) r)…``: ω = z / sqrt(g / 2ν), z ~ N(0, I), g ~ χ²_{2ν}
  (multivariate Student t with 2ν degrees of freedom);
* ``laplace`` ``exp(−r)`` = Matérn ν = 1/2: multivariate Cauchy.

Every spectral density here is rotation invariant, ω = R·u with u uniform on the sphere and R
its radial law. ``orthogonal=True`` draws the directions of each block of d frequencies
exactly orthogonal (QR of a Gaussian, Haar) and the radii R independently: every ω keeps its
marginal law (unbiased) while the block's frequencies are negatively correlated, which
lowers the variance. ``structured=True`` replaces the QR block by ``H D₃ H D₂ H D₁`` (normalised
Walsh–Hadamard H, random signs D), computed with fast Walsh–Hadamard transforms.
"""

from __future__ import annotations

import math

import numpy as np

from .._blas import matmul
from .._validation import InvalidParameterError, check_option
from ._base import RandomFeatureBase, check_lengthscale, mm, orthogonal_directions

__all__ = ["RandomFourierFeatures"]

_KERNELS = ("rbf", "laplace", "matern")


def _radii(rng, n, d, kernel, nu):
    """|ω| for n frequencies of the spectral density (unit lengthscale)."""
    chi = np.sqrt(rng.chisquare(d, size=n))
    if kernel == "rbf":
        return chi
    dof = 1.0 if kernel == "laplace" else 2.0 * nu
    return chi / np.sqrt(rng.chisquare(dof, size=n) / dof)


def _gaussian_scale(rng, n, kernel, nu):
    """Per-frequency scale s so that ω = s·z, z ~ N(0, I), has the spectral law (i.i.d. case)."""
    if kernel == "rbf":
        return np.ones(n)
    dof = 1.0 if kernel == "laplace" else 2.0 * nu
    return 1.0 / np.sqrt(rng.chisquare(dof, size=n) / dof)


def fwht(a):
    """Unnormalised fast Walsh–Hadamard transform along the last axis (length a power of 2), in place."""
    n = a.shape[-1]
    lead = a.shape[:-1]
    h = 1
    while h < n:
        v = a.reshape(*lead, n // (2 * h), 2, h)
        x = v[..., 0, :].copy()
        v[..., 0, :] += v[..., 1, :]
        v[..., 1, :] *= -1
        v[..., 1, :] += x
        h *= 2
    return a


def fwht_jax(a):
    """:func:`fwht` in jax (a new array; the same butterflies in the same order, so the same sums)."""
    import jax.numpy as jnp

    n = a.shape[-1]
    lead = a.shape[:-1]
    h = 1
    while h < n:
        v = a.reshape(*lead, n // (2 * h), 2, h)
        x, y = v[..., 0, :], v[..., 1, :]
        a = jnp.stack([x + y, x - y], axis=-2).reshape(*lead, n)
        h *= 2
    return a


def _hadamard_blocks_jax(Xs, signs):
    """:func:`_hadamard_blocks` in jax (traceable; ``signs`` already in Xs's dtype)."""
    import jax.numpy as jnp

    nb, _, dp = signs.shape
    n, d = Xs.shape
    out = jnp.broadcast_to(jnp.pad(Xs, ((0, 0), (0, dp - d)))[:, None, :], (n, nb, dp))
    scale = 1.0 / math.sqrt(dp)
    for k in range(3):
        out = fwht_jax(out * signs[None, :, k, :]) * scale
    return out.reshape(n, nb * dp)


def _rff_jax(static, P, X):
    """The feature map of :class:`RandomFourierFeatures` on a device (traced by ``jax.jit``)."""
    import jax.numpy as jnp

    structured, m, odd, phase = static
    Xs = X / P["lengthscale"]
    if structured:
        Pr = _hadamard_blocks_jax(Xs, P["signs"])[:, :m] * P["radii"]
    else:
        Pr = mm(Xs, P["frequencies"].T)
    if not odd:
        return jnp.concatenate([jnp.cos(Pr), jnp.sin(Pr)], axis=1) * (1.0 / math.sqrt(m))
    m -= 1  # odd D = 2m + 1 (see RandomFourierFeatures._map)
    D = 2 * m + 1
    pairs = jnp.concatenate([jnp.cos(Pr[:, :m]), jnp.sin(Pr[:, :m])], axis=1) * math.sqrt(2.0 / D)
    return jnp.concatenate([pairs, math.sqrt(2.0 / D) * jnp.cos(Pr[:, m:] + phase)], axis=1)


def _hadamard_blocks(Xs, signs):
    """``(Xs padded) ↦ [H D₃ H D₂ H D₁ x]_b`` for each block b, normalised H; shape (n, nb·dp)."""
    nb, _, dp = signs.shape
    n, d = Xs.shape
    try:
        import ntkit_native

        if ntkit_native.is_available() and hasattr(ntkit_native, "hadamard_blocks"):
            return ntkit_native.hadamard_blocks(Xs, signs.astype(Xs.dtype, copy=False))
    except ImportError:  # pragma: no cover
        pass
    out = np.zeros((n, nb, dp), dtype=Xs.dtype)
    out[:, :, :d] = Xs[:, None, :]
    scale = Xs.dtype.type(1.0 / math.sqrt(dp))
    for k in range(3):
        out *= signs[None, :, k, :].astype(Xs.dtype)
        fwht(out)
        out *= scale
    return out.reshape(n, nb * dp)


def _parallel_rows(fn, n, width):
    """Run ``fn(i0, i1)`` over row blocks on a thread pool (numpy's trigonometric ufuncs release the
    GIL, and are otherwise single-threaded); serial for small outputs."""
    import os

    threads = min(os.cpu_count() or 1, 8)
    if threads == 1 or n * width < 2_000_000:
        fn(0, n)
        return
    from concurrent.futures import ThreadPoolExecutor

    step = -(-n // (4 * threads))
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda i: fn(i, min(n, i + step)), range(0, n, step)))


class RandomFourierFeatures(RandomFeatureBase):
    """Random Fourier features of the RBF, Laplace and Matérn kernels of :mod:`ntkit.kernels`.

    ``Φ(X) Φ(Z)ᵀ`` is an unbiased estimate of ``kernel(X, Z)`` (i.i.d. and orthogonal
    frequencies; the structured variant is a close approximation) with the same conventions
    as :class:`ntkit.kernels.RBF`, :class:`~ntkit.kernels.Laplace` and
    :class:`~ntkit.kernels.Matern` (lengthscale l, Euclidean distance).

    Parameters
    ----------
    kernel : {"rbf", "laplace", "matern"}, default="rbf"
    lengthscale : float or array of shape (n_features,), default=1.0
    nu : float > 0, default=1.5
        Matérn smoothness (any positive value; the closed-form ntkit kernel has 0.5, 1.5, 2.5).
    n_components : int, default=100
        Output dimension D: D/2 frequencies, each giving a cosine and a sine (an odd D adds one
        ``sqrt(2) cos(ωx + b)`` feature, weighted so that the estimate stays unbiased).
    orthogonal : bool, default=False
        Exactly orthogonal directions within blocks of d frequencies (lower variance).
    structured : bool, default=False
        Hadamard–diagonal blocks instead of dense Gaussian matrices: O(D log d) per input and
        O(D) memory for the map (d is padded to a power of 2). With fewer than 16 input features
        the dense orthogonal construction is used instead (``structured_`` is then False): tiny
        Hadamard blocks do not mix directions uniformly, and the dense map is cheap there.
    random_state : int, Generator or None
    device : {"auto", "cpu", "gpu"} or jax.Device, default="auto"
        Where ``transform`` runs: "auto" follows the data (jax arrays on their device, numpy on
        the host unless ``ntkit.config_context(device=...)`` names a device); "cpu"/"gpu" move
        numpy data there once and return numpy (see :mod:`ntkit.features`). On a device the
        map is one jit-compiled function; ``structured=True`` uses a jax fast Walsh–Hadamard
        transform with the same butterflies as the host one.

    Attributes
    ----------
    frequencies_ : ndarray of shape (n_components // 2, n_features)
        The frequencies ω (rows, for unit-lengthscale data; built on demand when structured).
    n_features_in_ : int

    Examples
    --------
    >>> import numpy as np
    >>> from ntkit.features import RandomFourierFeatures
    >>> from ntkit.kernels import RBF
    >>> X = np.random.default_rng(0).normal(size=(200, 5))
    >>> rff = RandomFourierFeatures(lengthscale=2.0, n_components=4000, random_state=0).fit(X)
    >>> F = rff.transform(X)
    >>> err = np.abs(F @ F.T - RBF(2.0)(X)).max()
    >>> bool(err < 0.1)
    True
    """

    def __init__(self, kernel="rbf", *, lengthscale=1.0, nu=1.5, n_components=100, orthogonal=False,
                 structured=False, random_state=None, device="auto"):
        self.kernel = kernel
        self.lengthscale = lengthscale
        self.nu = nu
        self.n_components = n_components
        self.orthogonal = orthogonal
        self.structured = structured
        self.random_state = random_state
        self.device = device

    def _draw(self, rng, X):
        owner = type(self).__name__
        kernel = check_option(self.kernel, "kernel", owner, _KERNELS)
        nu = float(self.nu)
        if kernel == "matern" and not (np.isfinite(nu) and nu > 0):
            raise InvalidParameterError(f"The 'nu' parameter of {owner} must be a positive float; got {self.nu!r}.")
        D = self._check_n_components()
        d = X.shape[1]
        self.lengthscale_ = check_lengthscale(self.lengthscale, owner, d)
        m = -(-D // 2)  # an odd D uses its last frequency as one cos(ωx + b) feature
        self.kernel_ = kernel
        # below 16 features the Hadamard blocks are too small to mix directions uniformly (a
        # measurable bias) and the dense matrix is cheap anyway: use exact orthogonal blocks
        self.structured_ = bool(self.structured) and d >= 16
        self._frequencies = None
        if self.structured_:
            dp = 1 << max(0, (d - 1).bit_length())
            nb = -(-m // dp)
            # rows of H D₃ H D₂ H D₁ are unit vectors of R^dp; restricted to the d data coordinates
            # their norms vary around sqrt(d/dp) and can vanish when d is small (the Hadamard
            # products have exact zeros): redraw a block's signs until every row keeps at least a
            # fifth of the typical norm, then divide by the exact norm so that |ω| follows the
            # radial law (norms computed once from the d unit vectors, O(d·D log d))
            signs = rng.choice(np.array([-1.0, 1.0]), size=(nb, 3, dp))
            floor = 0.2 * math.sqrt(d / dp)
            for b in range(nb):
                for _ in range(100):
                    rows = _hadamard_blocks(np.eye(d), signs[b:b + 1])
                    if np.sqrt(np.einsum("ij,ij->j", rows, rows)).min() >= floor:
                        break
                    signs[b] = rng.choice(np.array([-1.0, 1.0]), size=(3, dp))
                else:  # pragma: no cover - not seen for any d; the norms are still divided out below
                    pass
            self.signs_ = signs
            rows = _hadamard_blocks(np.eye(d), signs)[:, :m]  # (d, m): column i = row i restricted
            norms = np.sqrt(np.einsum("ij,ij->j", rows, rows))
            self.radii_ = _radii(rng, m, d, kernel, nu) / np.maximum(norms, np.finfo(np.float64).tiny)
            self._frequencies = None
        else:
            if self.orthogonal or self.structured:
                W = orthogonal_directions(rng, m, d) * _radii(rng, m, d, kernel, nu)[:, None]
            else:
                W = rng.standard_normal((m, d)) * _gaussian_scale(rng, m, kernel, nu)[:, None]
            self._frequencies = W
        self.n_frequencies_ = m
        self.phase_ = rng.uniform(0, 2 * np.pi) if D % 2 else None

    @property
    def frequencies_(self):
        if getattr(self, "_frequencies", None) is None and getattr(self, "structured_", False):
            d = self.n_features_in_
            self._frequencies = _hadamard_blocks(np.eye(d), self.signs_)[:, : self.n_frequencies_].T \
                * self.radii_[:, None]
        if not hasattr(self, "n_frequencies_"):
            raise AttributeError("frequencies_ exists after fit")
        return self._frequencies

    _jax_map = staticmethod(_rff_jax)

    def _device_arrays(self):
        if self.structured_:
            return {"lengthscale": self.lengthscale_, "signs": self.signs_, "radii": self.radii_}
        return {"lengthscale": self.lengthscale_, "frequencies": self._frequencies}

    def _device_static(self):
        odd = self.phase_ is not None
        return (bool(self.structured_), int(self.n_frequencies_), odd, float(self.phase_) if odd else 0.0)

    def _project(self, X):
        Xs = X / self.lengthscale_.astype(X.dtype)
        if self.structured_:
            P = _hadamard_blocks(Xs, self.signs_)[:, : self.n_frequencies_]
            P *= self.radii_.astype(X.dtype)
            return P
        return matmul(Xs, self._frequencies.T.astype(X.dtype))

    def _map(self, X):
        P = self._project(X)
        if self.phase_ is None:
            m = P.shape[1]
            out = np.empty((X.shape[0], 2 * m), dtype=X.dtype)
            scale = X.dtype.type(1.0 / math.sqrt(m))

            def block(i0, i1):
                np.cos(P[i0:i1], out=out[i0:i1, :m])
                np.sin(P[i0:i1], out=out[i0:i1, m:])
                out[i0:i1] *= scale

            _parallel_rows(block, X.shape[0], 2 * m)
            return out
        # odd D = 2m + 1: m [cos, sin] pairs (weight 2m/D) and one sqrt(2) cos(ωx + b) (weight 1/D),
        # each unbiased, so their weighted average is too
        m = P.shape[1] - 1
        D = 2 * m + 1
        out = np.empty((X.shape[0], D), dtype=X.dtype)
        np.cos(P[:, :m], out=out[:, :m])
        np.sin(P[:, :m], out=out[:, m:2 * m])
        out[:, :2 * m] *= X.dtype.type(math.sqrt(2.0 / D))
        out[:, 2 * m] = np.sqrt(2.0 / D) * np.cos(P[:, m] + self.phase_)
        return out
