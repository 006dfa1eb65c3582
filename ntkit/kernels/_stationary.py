"""Translation-invariant kernels: RBF, Laplace, Matern."""

from __future__ import annotations

import math

from .._validation import InvalidParameterError
from ._base import StationaryKernel

__all__ = ["RBF", "Laplace", "Matern"]


class RBF(StationaryKernel):
    """Gaussian (squared-exponential) kernel ``k(x, z) = exp(-|x - z|^2 / (2 l^2))``.

    Parameters
    ----------
    lengthscale : float, array of shape (n_features,) or "scale", default=1.0
        Positive lengthscale ``l``; an array gives one lengthscale per feature.
        scikit-learn's ``rbf_kernel(gamma=g)`` is ``RBF(lengthscale=1/sqrt(2 g))``. ``"scale"``
        (estimators only) is ``sqrt(n_features · X.var())`` of the training data, resolved at fit.

    Examples
    --------
    >>> import numpy as np
    >>> from ntkit.kernels import RBF
    >>> X = np.array([[0.0], [1.0]])
    >>> np.round(RBF(1.0)(X), 4)
    array([[1.    , 0.6065],
           [0.6065, 1.    ]])
    """

    def __init__(self, lengthscale=1.0):
        self.lengthscale = lengthscale

    def _validated(self):
        return {"lengthscale": self._check_lengthscale()}

    def _from_sqdist(self, xp, d2, params):
        return xp.exp(-0.5 * d2)

    def _native_spec(self, params):
        return "rbf", {"lengthscale": 1.0}  # data are pre-scaled by _prepare


class Laplace(StationaryKernel):
    """Laplace (exponential) kernel ``k(x, z) = exp(-|x - z| / l)``.

    Note the Euclidean norm (as in Matern with nu = 1/2); scikit-learn's
    ``laplacian_kernel`` uses the L1 distance instead.

    Parameters
    ----------
    lengthscale : float or array of shape (n_features,), default=1.0

    Examples
    --------
    >>> import numpy as np
    >>> from ntkit.kernels import Laplace
    >>> np.round(Laplace(2.0)(np.array([[0.0, 0.0]]), np.array([[3.0, 4.0]])), 4)
    array([[0.0821]])
    """

    def __init__(self, lengthscale=1.0):
        self.lengthscale = lengthscale

    def _validated(self):
        return {"lengthscale": self._check_lengthscale()}

    def _from_sqdist(self, xp, d2, params):
        return xp.exp(-xp.sqrt(d2))

    def _native_spec(self, params):
        return "laplace", {"lengthscale": 1.0}


_SQRT3 = math.sqrt(3.0)
_SQRT5 = math.sqrt(5.0)


class Matern(StationaryKernel):
    """Matern kernel with smoothness ``nu`` in {0.5, 1.5, 2.5}, ``r = |x - z| / l``.

    * nu = 0.5: ``exp(-r)``
    * nu = 1.5: ``(1 + sqrt(3) r) exp(-sqrt(3) r)``
    * nu = 2.5: ``(1 + sqrt(5) r + 5 r^2 / 3) exp(-sqrt(5) r)``

    These match scikit-learn's ``Matern(length_scale=l, nu=nu)``. Other values of
    nu need Bessel functions and are not offered (use scikit-learn's kernel).

    Parameters
    ----------
    lengthscale : float or array of shape (n_features,), default=1.0
    nu : {0.5, 1.5, 2.5}, default=1.5

    Examples
    --------
    >>> import numpy as np
    >>> from ntkit.kernels import Matern
    >>> float(np.round(Matern(1.0, nu=1.5)(np.zeros((1, 1)), np.ones((1, 1)))[0, 0], 4))
    0.4834
    """

    def __init__(self, lengthscale=1.0, nu=1.5):
        self.lengthscale = lengthscale
        self.nu = nu

    def _validated(self):
        nu = self.nu
        if isinstance(nu, bool) or nu not in (0.5, 1.5, 2.5):
            raise InvalidParameterError(
                f"The 'nu' parameter of Matern must be one of {{0.5, 1.5, 2.5}}. Got {nu!r} instead."
            )
        return {"lengthscale": self._check_lengthscale(), "nu": float(nu)}

    def _from_sqdist(self, xp, d2, params):
        r = xp.sqrt(d2)
        nu = params["nu"]
        if nu == 0.5:
            return xp.exp(-r)
        if nu == 1.5:
            a = _SQRT3 * r
            return (1 + a) * xp.exp(-a)
        a = xp.minimum(_SQRT5 * r, 1e3)  # exp(-1000) is 0 in every dtype: keeps a²/3 from overflowing (inf·0)
        return (1 + a + a * a / 3) * xp.exp(-a)

    def _native_spec(self, params):
        ident = {0.5: "matern12", 1.5: "matern32", 2.5: "matern52"}[params["nu"]]
        return ident, {"lengthscale": 1.0}
