r"""Positive random features (FAVOR+, Choromanski et al. 2021) for the softmax and Gaussian kernels.

With x scaled by 1/l and rows w_i ~ N(0, I) (or orthogonal with χ norms),

    softmax  SM(x, z) = exp(xᵀz):           φ(x) = m^{-1/2} exp(W x − |x|²/2)
    gaussian exp(−|x − z|²/2) = e^{−|x|²/2} SM(x, z) e^{−|z|²/2}:  φ(x) = m^{-1/2} exp(W x − |x|²)

and ``kind="hyperbolic"`` uses the pair ``(2m)^{-1/2} e^{−|x|²/2}[exp(Wx), exp(−Wx)]`` (lower
variance, still positive). E[φ(x)ᵀφ(z)] is the kernel exactly, and every feature is positive,
so ratios of kernel sums (attention) stay stable where trigonometric features go negative.

Numerics: the exponent is formed whole in float64 (``w·x − |x|²/2 − log(m)/2``) and
exponentiated once, so no ``inf · 0`` appears; if a row's features would all overflow or all
underflow to 0 (|x| / l of several tens, where the kernel itself is out of range) a ValueError
says to scale the data.
"""

from __future__ import annotations

import math

import numpy as np

from .._blas import matmul
from .._validation import check_option, is_jax_array
from ._base import RandomFeatureBase, check_lengthscale, mm, orthogonal_directions, to_host

__all__ = ["PositiveRandomFeatures"]


def _exponents(kind, odd, kernel, P, Xs):
    """The exponents of the features in jax, as :meth:`PositiveRandomFeatures._map` forms them."""
    import jax.numpy as jnp

    sq = jnp.sum(Xs * Xs, axis=1)
    shift = 0.5 * sq if kernel == "softmax" else sq
    m = P.shape[1]
    if kind == "positive":
        return P - shift[:, None] - 0.5 * math.log(m), sq
    if not odd:
        base = -shift[:, None] - 0.5 * math.log(2 * m)
        return jnp.concatenate([P + base, -P + base], axis=1), sq
    base = -shift[:, None] - 0.5 * math.log(2 * m - 1)
    return jnp.concatenate([P[:, :-1] + base, -P[:, :-1] + base, P[:, -1:] + base], axis=1), sq


def _positive_jax(static, params, X):
    """The map of :class:`PositiveRandomFeatures` on a device (traced by ``jax.jit``), in X's dtype.

    Returns the features and, per row, the largest exponent and |x|²/l² (for the range check).
    """
    import jax.numpy as jnp

    kind, odd, kernel = static
    Xs = (X - params["center"]) / params["lengthscale"]
    E, sq = _exponents(kind, odd, kernel, mm(Xs, params["weights"].T), Xs)
    return jnp.exp(E), jnp.max(E, axis=1), sq


def _range_error(X_dtype, top, sq, hi, lo):
    bad = int(np.argmax(top > hi)) if top.max() > hi else int(np.argmin(top))
    what = "overflow" if top.max() > hi else "underflow to 0 (the row's kernel estimate would be 0)"
    return ValueError(
        f"positive features of X[{bad}] {what} in {X_dtype}: exponent {top[bad]:.0f} outside "
        f"[{lo:.0f}, {hi:.0f}], |x| / lengthscale = {math.sqrt(float(sq[bad])):.1f}. The kernel itself is "
        "out of range there; scale the data down or raise lengthscale.")


class PositiveRandomFeatures(RandomFeatureBase):
    """Positive (FAVOR+) random features of the softmax kernel ``exp(xᵀz / l²)`` or the Gaussian
    kernel ``exp(−|x − z|² / (2 l²))`` (= :class:`ntkit.kernels.RBF`).

    Parameters
    ----------
    n_components : int, default=256
        Output dimension.
    kernel : {"softmax", "gaussian"}, default="softmax"
    lengthscale : float or array (n_features,), default=1.0
        Data are divided by it (attention's ``q·k/√d`` is ``lengthscale = d**0.25``).
    orthogonal : bool, default=True
        Orthogonal directions with χ-distributed norms (unbiased, lower variance).
    kind : {"positive", "hyperbolic"}, default="positive"
    random_state : int, Generator or None
    device : {"auto", "cpu", "gpu"} or jax.Device, default="auto"
        Where ``transform`` runs (see :mod:`ntkit.features`). On a device the exponent is formed
        whole in X's dtype (the host path forms it in float64): in float32 it carries an absolute
        error of about ``eps · |x|²/l²``, i.e. a relative error of the features of that size.

    Examples
    --------
    >>> import numpy as np
    >>> from ntkit.features import PositiveRandomFeatures
    >>> X = 0.3 * np.random.default_rng(0).normal(size=(50, 4))
    >>> prf = PositiveRandomFeatures(n_components=20000, random_state=0).fit(X)
    >>> F = prf.transform(X)
    >>> bool((F > 0).all()), bool(np.abs(F @ F.T / np.exp(X @ X.T) - 1).max() < 0.1)
    (True, True)
    """

    def __init__(self, n_components=256, *, kernel="softmax", lengthscale=1.0, orthogonal=True, kind="positive",
                 random_state=None, device="auto"):
        self.n_components = n_components
        self.kernel = kernel
        self.lengthscale = lengthscale
        self.orthogonal = orthogonal
        self.kind = kind
        self.random_state = random_state
        self.device = device

    _jax_map = staticmethod(_positive_jax)

    def _device_arrays(self):
        return {"center": self.center_, "lengthscale": self.lengthscale_, "weights": self.weights_}

    def _device_static(self):
        return (self.kind, self.n_components % 2 == 1, self.kernel_)

    def _map_device(self, X, device):
        F, top, sq = super()._map_device(X, device)
        fi = np.finfo(X.dtype)
        hi, lo = math.log(fi.max), math.log(fi.tiny)
        import jax.numpy as jnp

        t_hi, t_lo = to_host(jnp.stack([top.max(), top.min()]))  # one explicit sync for the check
        if t_hi > hi or t_lo < lo:
            raise _range_error(X.dtype, to_host(top).astype(np.float64), to_host(sq), hi, lo)
        return F

    def _draw(self, rng, X):
        owner = type(self).__name__
        self.kernel_ = check_option(self.kernel, "kernel", owner, ("softmax", "gaussian"))
        kind = check_option(self.kind, "kind", owner, ("positive", "hyperbolic"))
        D = self._check_n_components()
        d = X.shape[1]
        self.lengthscale_ = check_lengthscale(self.lengthscale, owner, d)
        m = D if kind == "positive" else -(-D // 2)  # hyperbolic, odd D: the last row gives one exp(wx) feature
        # the Gaussian kernel is shift invariant: centring on the fit data keeps |x| (and so the
        # exponents) small wherever the data live; the softmax kernel is not, and is used as is
        if self.kernel_ != "gaussian":
            self.center_ = np.zeros(d)
        elif is_jax_array(X):  # d numbers come to the host
            self.center_ = to_host(X.mean(axis=0)).astype(np.float64)
        else:
            self.center_ = X.mean(axis=0).astype(np.float64)
        if self.orthogonal:
            self.weights_ = orthogonal_directions(rng, m, d) * np.sqrt(rng.chisquare(d, size=m))[:, None]
        else:
            self.weights_ = rng.standard_normal((m, d))

    def _map(self, X):
        Xs = (X.astype(np.float64) - self.center_) / self.lengthscale_
        P = matmul(Xs, self.weights_.T)
        sq = np.einsum("ij,ij->i", Xs, Xs)
        shift = 0.5 * sq if self.kernel_ == "softmax" else sq
        m = P.shape[1]
        if self.kind == "positive":
            E = P - shift[:, None] - 0.5 * math.log(m)
        elif self.n_components % 2 == 0:
            base = -shift[:, None] - 0.5 * math.log(2 * m)
            E = np.concatenate([P + base, -P + base], axis=1)
        else:  # odd D = 2(m−1) + 1: pairs with weight 2(m−1)/D, one positive feature with weight 1/D
            D = 2 * m - 1
            base = -shift[:, None] - 0.5 * math.log(D)
            E = np.concatenate([P[:, :-1] + base, -P[:, :-1] + base, P[:, -1:] + base], axis=1)
        fi = np.finfo(X.dtype)
        hi, lo = math.log(fi.max), math.log(fi.tiny)
        if E.size:
            top = E.max(axis=1)
            if top.max() > hi or top.min() < lo:
                raise _range_error(X.dtype, top, sq, hi, lo)
        return np.exp(E).astype(X.dtype, copy=False)
