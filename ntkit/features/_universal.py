r"""Universal random features: φ(x), ψ(w) with ``E[φ(x)ᵀψ(w)] = f(wᵀx)`` for an activation f.

A dense layer ``y = V f(W x + b)`` then reads ``y ≈ φ([x, 1])ᵀ M`` with ``M = Σ_j ψ([w_j, b_j]) v_jᵀ``:
input and parameters meet only through an inner product (the "scalable neural network kernel"
form of Sehanobish et al. 2024), so a layer of m units becomes one D × out matrix.

Constructions (all inner products are over the D random features):

* ``exp``: positive random features (FAVOR+), exact for every x, w:
  ``exp(wᵀx) = E[exp(gᵀx − |x|²/2) exp(gᵀw − |w|²/2)]``, g ~ N(0, I).
* analytic f = Σ_N a_N z^N (``erf``, ``gelu``, ``sin``, ``cos``, or any ``coefficients``): random
  Maclaurin features (Kar & Karnick 2012). Each feature draws a degree N with probability
  ``p_N ∝ |a_N| R^N`` and N Rademacher vectors r_k; ``φ = c Π_k r_kᵀx``,
  ``ψ = sign(a_N) c Π_k r_kᵀw``, ``c = sqrt(|a_N| / (p_N D))``. Since ``E[r rᵀ] = I``,
  ``E[φψ] = Σ_N a_N (wᵀx)^N``: unbiased for the series truncated where its tail
  ``Σ_{N>L} |a_N| R^N`` is below 1e-12 (R = ``bound``, the largest |x||w| expected).
* ``relu`` is not analytic at 0 and no finite-variance unbiased separable estimator of it is
  known here; it is estimated *through a polynomial*: the least-squares Chebyshev fit of
  ``degree`` on [−R, R], whose maximal error (``approximation_bias_``, about 0.03 R at degree 8)
  is the estimator's bias. The same holds for ``tanh`` and ``sigmoid``, whose Maclaurin series
  converge only for |z| < π/2 and π: they are fitted the same way.

The variance of Maclaurin features grows with R^N: keep |x| |w| of order one (scale inputs or
weights), as the paper does.
"""

from __future__ import annotations

import math

import numpy as np
from sklearn.utils.validation import check_is_fitted, validate_data

from .._blas import matmul
from .._validation import (InvalidParameterError, check_array_arg, check_int, check_option, check_same_rows,
                           check_scalar, is_jax_array)
from ._base import RandomFeatureBase, check_device_X, jitted, mm, placement_for, seed_from, to_host, x64_scope

__all__ = ["UniversalRandomFeatures", "LayerKernelForm"]

_ANALYTIC = ("erf", "gelu", "sin", "cos")
_FITTED = ("relu", "tanh", "sigmoid")
_ACTIVATIONS = ("exp",) + _ANALYTIC + _FITTED


def _maclaurin(activation, L):
    """a_0 … a_L of an entire activation."""
    a = np.zeros(L + 1)
    lf = [math.lgamma(k + 1) for k in range(L + 1)]
    if activation == "sin":
        for k in range(1, L + 1, 2):
            a[k] = (-1) ** ((k - 1) // 2) * math.exp(-lf[k])
    elif activation == "cos":
        for k in range(0, L + 1, 2):
            a[k] = (-1) ** (k // 2) * math.exp(-lf[k])
    elif activation in ("erf", "gelu"):
        # erf(z) = 2/√π Σ_n (−1)^n z^{2n+1} / (n! (2n+1))
        erf = np.zeros(L + 2)
        for n in range((L + 1) // 2 + 1):
            k = 2 * n + 1
            if k <= L + 1:
                erf[k] = 2 / math.sqrt(math.pi) * (-1) ** n / (math.exp(math.lgamma(n + 1)) * k)
        if activation == "erf":
            a[:] = erf[: L + 1]
        else:  # gelu(z) = z Φ(z) = z/2 + (z/2) erf(z/√2)
            a[1] = 0.5
            for k in range(1, L):
                a[k + 1] += 0.5 * erf[k] * 2.0 ** (-k / 2)
    return a


def _series_length(a_fn, R, tol=1e-12, cap=200):
    """Smallest L with the tail Σ_{N>L} |a_N| R^N below tol (checked on a longer expansion)."""
    a = a_fn(cap)
    terms = np.abs(a) * np.power(float(R), np.arange(cap + 1))
    tail = np.cumsum(terms[::-1])[::-1]
    ok = np.flatnonzero(tail < tol * max(1.0, terms.max()))
    return int(ok[0]) if len(ok) else cap


def _chebyshev_fit(f, R, degree):
    """Monomial coefficients of the least-squares Chebyshev fit of f on [−R, R], and its max error."""
    x = np.cos(np.pi * (np.arange(4 * degree + 64) + 0.5) / (4 * degree + 64))  # Chebyshev nodes on [−1, 1]
    c = np.polynomial.chebyshev.chebfit(x, f(R * x), degree)
    p = np.polynomial.chebyshev.cheb2poly(c)  # in t = z / R
    grid = np.linspace(-1, 1, 4001)
    err = float(np.max(np.abs(np.polynomial.polynomial.polyval(grid, p) - f(R * grid))))
    return p / np.power(float(R), np.arange(len(p))), err


def _activation_fn(name):
    from scipy.special import erf, expit

    return {"relu": lambda z: np.maximum(z, 0.0), "tanh": np.tanh, "sigmoid": expit, "erf": erf,
            "gelu": lambda z: 0.5 * z * (1 + erf(z / math.sqrt(2))), "sin": np.sin, "cos": np.cos,
            "exp": np.exp}[name]


def _universal_jax(static, P, Z):
    """φ (or ψ) of :class:`UniversalRandomFeatures` on a device (traced by ``jax.jit``), in Z's dtype.

    The Maclaurin features are products of N_j projections: here a running product over a padded
    (D, max N) index table (padding points at a column of ones), which needs no logarithms — so
    exact zeros and float32 underflow need no special care.
    """
    import jax.numpy as jnp

    kind, weights_side, n_max = static
    if kind == "positive":
        G = P["gauss"]
        E = mm(Z, G.T) - 0.5 * jnp.sum(Z * Z, axis=1)[:, None]
        return jnp.exp(E) * (1.0 / math.sqrt(G.shape[0]))
    proj = mm(Z, P["rademacher"].T)
    proj = jnp.concatenate([proj, jnp.ones((Z.shape[0], 1), Z.dtype)], axis=1)
    idx = P["index"]
    out = jnp.ones((Z.shape[0], idx.shape[0]), Z.dtype)
    for k in range(n_max):
        out = out * proj[:, idx[:, k]]
    out = out * P["scale"]
    return out * P["sign"] if weights_side else out


class UniversalRandomFeatures(RandomFeatureBase):
    """Random feature pairs with ``E[φ(x)ᵀψ(w)] = f(wᵀx)`` (see the module notes for each f).

    Parameters
    ----------
    activation : {"exp", "erf", "gelu", "sin", "cos", "relu", "tanh", "sigmoid"}, default="exp"
    n_components : int, default=256
        Number of random features D.
    coefficients : array, optional
        Power-series coefficients a_N of any other f (overrides ``activation`` for the series).
    bound : float, optional
        R, the largest |x|·|w| the features must serve (sets the series' truncation, the degree
        distribution and the fitted polynomial's interval). Default: from ``fit(X, weights=W)``
        (max |x| · max |w|), or max |x|² without weights.
    degree : int, default=8
        Polynomial degree for ``relu``/``tanh``/``sigmoid``.
    random_state : int, Generator or None
    device : {"auto", "cpu", "gpu"} or jax.Device, default="auto"
        Where ``transform`` and ``transform_weights`` run (see :mod:`ntkit.features`). On a device
        the features are computed in the input's dtype (the host path: float64, rounded at the
        end), the Maclaurin products as running products instead of sums of logarithms.

    Attributes
    ----------
    bound_, degrees_ (the sampled N per feature), approximation_bias_ (max |f − series| on
    [−R, R]: 0 up to 1e-12 for exp and the entire activations).

    Examples
    --------
    >>> import numpy as np
    >>> from ntkit.features import UniversalRandomFeatures
    >>> rng = np.random.default_rng(0)
    >>> X, W = 0.3 * rng.normal(size=(50, 4)), 0.3 * rng.normal(size=(6, 4))
    >>> urf = UniversalRandomFeatures("sin", n_components=20000, random_state=0).fit(X, weights=W)
    >>> est = urf.transform(X) @ urf.transform_weights(W).T
    >>> bool(np.abs(est - np.sin(X @ W.T)).max() < 0.05)
    True
    """

    def __init__(self, activation="exp", *, n_components=256, coefficients=None, bound=None, degree=8,
                 random_state=None, device="auto"):
        self.activation = activation
        self.n_components = n_components
        self.coefficients = coefficients
        self.bound = bound
        self.degree = degree
        self.random_state = random_state
        self.device = device

    def fit(self, X, y=None, *, weights=None):
        """Draw the features for inputs like X (and, when given, the layer ``weights`` (m, d)).

        A jax X is read on its device (only the largest row norm comes to the host)."""
        placement = self._placement(X)
        if is_jax_array(X):
            X = check_device_X(self, X, placement, reset=True)
        else:
            check_array_arg(X, "X", ndim=2, min_rows=1)
            X = validate_data(self, X, dtype=[np.float64, np.float32], ensure_min_samples=1)
        W = None
        if weights is not None:
            check_array_arg(weights, "weights", ndim=2, n_features=X.shape[1], finite=not is_jax_array(weights))
            W = np.asarray(to_host(weights) if is_jax_array(weights) else weights, dtype=np.float64)
            if W.size and not np.isfinite(W).all():
                raise ValueError("weights contains NaN or infinity; remove or impute those entries first.")
        with x64_scope(X.dtype):
            self._draw(seed_from(self.random_state), X, W)
        self._on_device = {}
        return self

    _jax_map = staticmethod(_universal_jax)

    def _device_arrays(self):
        if self.kind_ == "positive":
            return {"gauss": self.gauss_}
        N = np.asarray(self.degrees_, dtype=np.int64)
        n_max = int(N.max()) if N.size else 0
        pad = int(self.offsets_[-1])  # the appended column of ones
        index = np.full((N.size, n_max), pad, dtype=np.int32)
        for k in range(n_max):
            has = N > k
            index[has, k] = self.offsets_[:-1][has] + k
        return {"rademacher": self.rademacher_, "index": index, "scale": self.scale_, "sign": self.sign_}

    def _device_static(self, weights_side=False):
        n_max = 0 if self.kind_ == "positive" or not len(self.degrees_) else int(np.max(self.degrees_))
        return (self.kind_, bool(weights_side), n_max)

    def _draw(self, rng, X, W=None):
        owner = type(self).__name__
        act = check_option(self.activation, "activation", owner, _ACTIVATIONS)
        D = self._check_n_components()
        d = X.shape[1]
        if is_jax_array(X):
            import jax.numpy as jnp

            xn = float(to_host(jnp.max(jnp.linalg.norm(X, axis=1))))
        else:
            xn = float(np.max(np.linalg.norm(X, axis=1))) if len(X) else 1.0
        deg = check_int(self.degree, "degree", owner, low=1)  # validated whatever the activation
        if self.bound is not None:
            R = check_scalar(self.bound, "bound", owner, low=0.0, closed="right")
        else:
            wn = float(np.max(np.linalg.norm(W, axis=1))) if W is not None and len(W) else xn
            R = max(xn * wn, 1e-12)
        self.bound_ = R
        self.activation_ = act
        if self.coefficients is None and act == "exp":
            self.kind_ = "positive"
            self.gauss_ = rng.standard_normal((D, d))
            self.approximation_bias_ = 0.0
            return
        self.kind_ = "maclaurin"
        if self.coefficients is not None:
            a = np.asarray(self.coefficients, dtype=np.float64).ravel()
            if a.size == 0 or not np.all(np.isfinite(a)):
                raise InvalidParameterError("coefficients must be a non-empty finite 1-D array.")
            self.approximation_bias_ = 0.0
        elif act in _ANALYTIC:
            L = max(_series_length(lambda n: _maclaurin(act, n), R), 3)
            a = _maclaurin(act, L)
            self.approximation_bias_ = float(np.sum(np.abs(_maclaurin(act, L + 60)[L + 1:]) *
                                                    np.power(R, np.arange(L + 1, L + 61))))
        else:
            a, self.approximation_bias_ = _chebyshev_fit(_activation_fn(act), R, deg)
        self.coef_ = a
        with np.errstate(divide="ignore"):
            logw = np.log(np.abs(a)) + np.arange(len(a)) * math.log(R)
        if not np.any(np.isfinite(logw)):
            raise InvalidParameterError("the power series is identically zero.")
        top = float(np.max(logw))
        # Σ|a_N| R^N bounds the features' second moment: beyond ~1e12 no feature count gives a usable
        # estimate (and products of N projections overflow)
        if top > math.log(1e12):
            raise ValueError(f"bound R = {R:.3g} is too large for power-series features of {act!r}: Σ|a_N| R^N "
                             f"reaches e^{top:.0f}, so the estimator's variance is astronomically large. Scale the "
                             "inputs or weights so that |x|·|w| is of order one.")
        w = np.exp(logw - top)
        p = w / w.sum()
        N = rng.choice(len(a), size=D, p=p)
        self.degrees_ = N
        self.scale_ = np.sqrt(np.abs(a[N]) / (p[N] * D))
        self.sign_ = np.sign(a[N])
        self.rademacher_ = rng.choice(np.array([-1.0, 1.0]), size=(int(N.sum()), d))
        self.offsets_ = np.concatenate([[0], np.cumsum(N)])

    def _features(self, Z, weights_side):
        Z = np.asarray(Z, dtype=np.float64)
        if self.kind_ == "positive":
            E = matmul(Z, self.gauss_.T) - 0.5 * np.einsum("ij,ij->i", Z, Z)[:, None]
            return np.exp(E) / math.sqrt(self.gauss_.shape[0])
        P = matmul(Z, self.rademacher_.T) if len(self.rademacher_) else np.zeros((len(Z), 0))
        out = np.empty((len(Z), len(self.degrees_)))
        # product of the N_j projections of each feature j (segments of the Rademacher rows)
        logabs = np.log(np.abs(P) + 1e-300)
        neg = (P < 0).astype(np.int64)
        cs_log = np.concatenate([np.zeros((len(Z), 1)), np.cumsum(logabs, axis=1)], axis=1)
        cs_neg = np.concatenate([np.zeros((len(Z), 1), np.int64), np.cumsum(neg, axis=1)], axis=1)
        lo, hi = self.offsets_[:-1], self.offsets_[1:]
        mag = np.exp(cs_log[:, hi] - cs_log[:, lo])
        sgn = np.where((cs_neg[:, hi] - cs_neg[:, lo]) % 2 == 1, -1.0, 1.0)
        is0 = (P == 0).astype(np.int64)  # an exactly zero projection makes the product exactly zero
        cs0 = np.concatenate([np.zeros((len(Z), 1), np.int64), np.cumsum(is0, axis=1)], axis=1)
        zero = (cs0[:, hi] - cs0[:, lo]) > 0
        out[:] = np.where(zero, 0.0, sgn * mag) * self.scale_
        if weights_side:
            out *= self.sign_
        return out

    def _map(self, X):
        return self._features(X, False).astype(X.dtype, copy=False)

    def transform_weights(self, W):
        """ψ(w) for the rows of W (m, n_features): ``transform(X) @ transform_weights(W).T ≈ f(X Wᵀ)``.

        numpy W: float64 numpy out (host path, or the ``device`` named by the parameter or the
        configuration); jax W: computed on its device, jax out in W's dtype."""
        check_is_fitted(self)
        placement = placement_for(self.device, W, type(self).__name__)
        if not placement.on_device:
            check_array_arg(W, "W", ndim=2, n_features=self.n_features_in_, finite=True)
            return self._features(np.asarray(W, dtype=np.float64), True)
        from .._device import to_device
        from ._base import device_finite

        if is_jax_array(W):
            check_array_arg(W, "W", ndim=2, n_features=self.n_features_in_)
            if np.dtype(W.dtype) not in (np.float32, np.float64):
                raise TypeError(f"W must have dtype float32 or float64; got {np.dtype(W.dtype)}.")
            dtype = np.dtype(W.dtype)
        else:
            check_array_arg(W, "W", ndim=2, n_features=self.n_features_in_, finite=True)
            W, dtype = np.asarray(W, dtype=np.float64), np.dtype(np.float64)
        with x64_scope(dtype):
            Wd = to_device(W, placement)
            device_finite(Wd, "W")
            out = jitted(_universal_jax)(self._device_static(True), self._device_params(placement.device, dtype), Wd)
        return out if placement.jax_out else to_host(out)

    @classmethod
    def from_dense_layer(cls, W, b=None, V=None, *, activation="relu", n_components=1024, X=None, **kwargs):
        """The kernel form of a trained dense layer ``y = f(x Wᵀ + b) Vᵀ``.

        Parameters
        ----------
        W : (m, d) weights; b : (m,) biases or None; V : (out, m) read-out or None (identity)
        X : (n, d) representative inputs (sets the bound); optional when ``bound`` is given.

        Returns
        -------
        LayerKernelForm
            ``predict(x) = φ([x, 1]) M`` with ``M = Ψ([W, b])ᵀ Vᵀ`` (D × out).
        """
        W = np.asarray(check_array_arg(W, "W", ndim=2, finite=True), dtype=np.float64)
        m, d = W.shape
        if b is not None:
            check_array_arg(b, "b", ndim=1, finite=True)
            check_same_rows(W, b, "W", "b")
        if V is not None:
            check_array_arg(V, "V", ndim=2, n_features=m, finite=True)
        b = np.zeros(m) if b is None else np.asarray(b, dtype=np.float64).reshape(m)
        Wb = np.hstack([W, b[:, None]])
        if X is None:
            if kwargs.get("bound") is None:
                raise ValueError("give representative inputs X (or bound=...) to size the features.")
            X = np.zeros((1, d))
        check_array_arg(X, "X", ndim=2, min_rows=1, n_features=d, finite=True)
        Xa = np.hstack([np.asarray(X, dtype=np.float64), np.ones((len(X), 1))])
        urf = cls(activation, n_components=n_components, **kwargs).fit(Xa, weights=Wb)
        Psi = urf.transform_weights(Wb)  # (m, D)
        M = Psi.T if V is None else matmul(Psi.T, np.asarray(V, dtype=np.float64).T)
        return LayerKernelForm(urf, M)


class LayerKernelForm:
    """A dense layer in kernel form: ``predict(X) = φ([X, 1]) @ M`` (see
    :meth:`UniversalRandomFeatures.from_dense_layer`)."""

    def __init__(self, features, M):
        self.features = features
        self.M = M

    def predict(self, X):
        """The layer's outputs ``φ([X, 1]) @ M``, shape (n_samples, n_outputs)."""
        check_array_arg(X, "X", ndim=2, min_rows=1, n_features=self.features.n_features_in_ - 1, finite=True)
        X = np.asarray(X, dtype=np.float64)
        return matmul(self.features.transform(np.hstack([X, np.ones((len(X), 1))])), self.M)
