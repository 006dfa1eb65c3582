r"""Spectral profiles h(λ): which spectral algorithm a risk curve describes.

A spectral algorithm trained on N points predicts ``f̂(x) = k(x)ᵀ K⁻¹ h(K/N) y``: it applies
a scalar *profile* h to the eigenvalues λ of ``K/N``. Convention (as in Velikanov, Panov and
Yarotsky, ICLR 2024):

================================  ==========================  ====================================
algorithm                         profile h(λ)                trained by
================================  ==========================  ====================================
``krr(ridge)``                    λ / (λ + ridge)             ``(K + N·ridge·I) α = y``
``gradient_flow(time)``           1 − exp(−time·λ)            ``α' = −(Kα − y)/N`` from α = 0
``gradient_descent(steps, lr)``   1 − (1 − lr·λ)^steps        ``α ← α − (lr/N)(Kα − y)``
``iterated_tikhonov(ridge, m)``   1 − (ridge/(λ + ridge))^m   m rounds of KRR on the residual
``spectral_cutoff(threshold)``    1[λ ≥ threshold]            principal-component regression
================================  ==========================  ====================================

Any callable with h(0) = 0 works too (:class:`Profile`). Parameters may be arrays: a profile
then stands for a grid of algorithms (e.g. 50 ridges), and :func:`ntkit.theory.risk_curve`
returns one curve per grid point.

Each profile carries what the contour method needs about its analytic continuation:
``analytic_radius`` (how far left of 0 the contour may cross the real axis: the nearest
singularity of h there, or the scale on which an entire h grows) and ``cutoff`` (for the
non-analytic spectral cut-off).
"""

from __future__ import annotations

import numbers

import numpy as np

from .._validation import InvalidParameterError

__all__ = ["Profile", "krr", "gradient_flow", "gradient_descent", "iterated_tikhonov", "spectral_cutoff",
           "as_profile"]


def _param(value, name, owner, *, positive=True, integer=False, allow_zero=False):
    arr = np.asarray(value)
    if arr.dtype == object or arr.dtype.kind not in "biuf" or arr.dtype == bool:
        raise InvalidParameterError(f"The {name!r} parameter of {owner} must be a real number or an array of real "
                                    f"numbers. Got {value!r} instead.")
    arr = arr.astype(np.float64)
    if arr.size == 0:
        raise InvalidParameterError(f"The {name!r} parameter of {owner} is an empty array; give at least one value.")
    if not np.all(np.isfinite(arr)):
        raise InvalidParameterError(f"The {name!r} parameter of {owner} must be finite. Got {value!r} instead.")
    if positive and (np.any(arr < 0) or (not allow_zero and np.any(arr == 0))):
        bound = ">= 0" if allow_zero else "> 0"
        raise InvalidParameterError(f"The {name!r} parameter of {owner} must be {bound}. Got {value!r} instead.")
    if integer and np.any(arr != np.round(arr)):
        raise InvalidParameterError(f"The {name!r} parameter of {owner} must be an integer. Got {value!r} instead.")
    return arr


class Profile:
    """A spectral profile h(λ), possibly a grid of them.

    Parameters
    ----------
    func : callable
        ``func(lam, **params) -> h`` evaluated elementwise on real or complex ``lam``; ``params``
        are broadcast arrays of shape ``shape + (1,) * lam.ndim`` so that the result has shape
        ``shape + lam.shape``. A plain ``h(lam)`` callable is accepted too (``params`` empty).
    params : dict of arrays, optional
        The profile's parameters (broadcast together to ``shape``).
    name : str
    analytic_radius : float or array, optional
        How far left of 0 the contour may cross the real axis: the distance to the nearest
        singularity of h on the negative real axis (``ridge`` for KRR), or for an entire h the
        scale beyond which it grows fast (``2/time`` for gradient flow, so |h| stays below e²
        there). ``inf`` (the default) lets ntkit pick half the top eigenvalue. h must be
        analytic on a neighbourhood of ``[−radius/2, ∞)`` (and of the spectrum in the complex
        plane) for the Gaussian model's contour method; the cut-off is handled separately.
    family : str, optional
        Set by the factories below (their function name, e.g. "krr", "spectral_cutoff"): tells
        :func:`~ntkit.theory.risk_curve` which closed form or check applies. Leave it unset for
        a custom profile.

    Examples
    --------
    >>> import numpy as np
    >>> from ntkit.theory import profiles
    >>> h = profiles.krr(ridge=[1e-3, 1e-2])
    >>> h.shape
    (2,)
    >>> np.round(h(np.array([1e-3, 1.0])), 4)
    array([[0.5   , 0.999 ],
           [0.0909, 0.9901]])
    >>> custom = profiles.Profile(lambda lam: np.tanh(3 * lam), name="tanh")  # any h with h(0) = 0
    """

    def __init__(self, func, params=None, *, name="custom", analytic_radius=np.inf, family=None):
        if not callable(func):
            raise InvalidParameterError(f"Profile needs a callable h(lam); got {type(func).__name__}.")
        self.func = func
        self.name = name
        params = dict(params or {})
        shape = np.broadcast_shapes(*(np.shape(v) for v in params.values())) if params else ()
        self.params = {k: np.broadcast_to(np.asarray(v, dtype=np.float64), shape) for k, v in params.items()}
        self.shape = tuple(shape)
        self.analytic_radius = np.broadcast_to(np.asarray(analytic_radius, dtype=np.float64), shape)
        self.family = family
        if not params:
            with np.errstate(all="ignore"):
                h0 = np.asarray(func(np.zeros(1)), dtype=np.complex128)
            if h0.shape != (1,) or not np.isfinite(h0).all() or abs(h0[0]) > 1e-12:
                raise InvalidParameterError(
                    f"a spectral profile must satisfy h(0) = 0 (an algorithm cannot learn a mode it cannot see) and "
                    f"map an array of eigenvalues to an array of the same shape; {name!r} gives h(0) = "
                    f"{h0.ravel()[:1]} with shape {h0.shape}.")

    @property
    def size(self):
        return int(np.prod(self.shape, dtype=np.int64))

    def _param_of(self, family, key):
        return self.params[key] if self.family == family else None

    @property
    def cutoff(self):
        """The threshold(s) of a spectral cut-off (non-analytic), else None."""
        return self._param_of("spectral_cutoff", "threshold")

    @property
    def krr_ridge(self):
        """The ridge(s) of a KRR profile (closed form available), else None."""
        return self._param_of("krr", "ridge")

    @property
    def lr(self):
        """The step size(s) of gradient descent (for its stability check), else None."""
        return self._param_of("gradient_descent", "lr")

    @property
    def analytic(self):
        """True when the contour method applies (everything but the cut-off)."""
        return self.cutoff is None

    def __call__(self, lam):
        """h(λ) with shape ``self.shape + np.shape(lam)``."""
        lam = np.asarray(lam)
        if lam.dtype.kind not in "biufc":
            raise TypeError(f"lam must be an array of real or complex numbers; got dtype {lam.dtype}.")
        if not self.params:
            return np.broadcast_to(self.func(lam), self.shape + lam.shape)
        ex = {k: v.reshape(self.shape + (1,) * lam.ndim) for k, v in self.params.items()}
        return self.func(lam, **ex)

    def flat(self):
        """The grid as a list of scalar profiles (row-major)."""
        if not self.shape:
            return [self]
        out = []
        for i in range(self.size):
            idx = np.unravel_index(i, self.shape)
            out.append(self._take(idx))
        return out

    def _take(self, idx):
        p = Profile.__new__(Profile)
        p.func, p.name = self.func, self.name
        p.params = {k: np.asarray(v[idx]) for k, v in self.params.items()}
        p.shape = ()
        p.analytic_radius = np.asarray(self.analytic_radius[idx])
        p.family = self.family
        return p

    def describe(self):
        """A short text such as ``krr(ridge=0.001)`` (grids give their parameter ranges)."""
        parts = []
        for k, v in self.params.items():
            if v.size == 1:
                parts.append(f"{k}={float(v.ravel()[0]):.3g}")
            else:
                parts.append(f"{k}=[{float(v.min()):.3g} .. {float(v.max()):.3g}]")
        return f"{self.name}({', '.join(parts)})"

    def __repr__(self):
        return f"<Profile {self.describe()} shape={self.shape}>"


def _krr(lam, ridge):
    return lam / (lam + ridge)


def krr(ridge):
    """Kernel ridge regression: ``h(λ) = λ / (λ + ridge)``, i.e. ``(K + N·ridge·I) α = y``.

    ``ridge = 0`` is ridgeless interpolation (closed form only).
    """
    r = _param(ridge, "ridge", "krr", allow_zero=True)
    return Profile(_krr, {"ridge": r}, name="krr", analytic_radius=r, family="krr")


def _gf(lam, time):
    return -np.expm1(-time * lam)


def gradient_flow(time):
    """Gradient flow on the square loss for ``time``: ``h(λ) = 1 − exp(−time·λ)`` (entire)."""
    t = _param(time, "time", "gradient_flow")
    return Profile(_gf, {"time": t}, name="gradient_flow", analytic_radius=2.0 / t,
                   family="gradient_flow")


def _gd(lam, steps, lr):
    return 1.0 - (1.0 - lr * lam) ** steps


def gradient_descent(steps, lr):
    """``steps`` of full-batch gradient descent with step ``lr``: ``h(λ) = 1 − (1 − lr·λ)^steps``.

    Stable only when ``lr·λ_max(K/N) < 2``; :func:`ntkit.theory.risk_curve` checks this against
    the spectrum's upper edge and raises otherwise.
    """
    s = _param(steps, "steps", "gradient_descent", integer=True)
    a = _param(lr, "lr", "gradient_descent")
    s, a = np.broadcast_arrays(s, a)
    return Profile(_gd, {"steps": s, "lr": a}, name="gradient_descent", family="gradient_descent",
                   analytic_radius=2.0 / (a * s))


def _it(lam, ridge, order):
    return 1.0 - (ridge / (lam + ridge)) ** order


def iterated_tikhonov(ridge, order):
    """Iterated Tikhonov of ``order`` m: ``h(λ) = 1 − (ridge/(λ + ridge))^m`` (m = 1 is KRR)."""
    r = _param(ridge, "ridge", "iterated_tikhonov")
    m = _param(order, "order", "iterated_tikhonov", integer=True)
    if np.any(m < 1):
        raise InvalidParameterError(f"The 'order' parameter of iterated_tikhonov must be >= 1. Got {order!r}.")
    r, m = np.broadcast_arrays(r, m)
    return Profile(_it, {"ridge": r, "order": m}, name="iterated_tikhonov", analytic_radius=r,
                   family="iterated_tikhonov")


def _cut(lam, threshold):
    return (np.real(lam) >= threshold).astype(np.float64)


def spectral_cutoff(threshold):
    """Spectral cut-off (PCR): ``h(λ) = 1[λ ≥ threshold]``; non-analytic, evaluated on the real axis."""
    t = _param(threshold, "threshold", "spectral_cutoff")
    return Profile(_cut, {"threshold": t}, name="spectral_cutoff", family="spectral_cutoff")


def as_profile(profile):
    """A :class:`Profile` from a profile or a plain callable h(λ) with h(0) = 0."""
    if isinstance(profile, Profile):
        return profile
    if callable(profile):
        return Profile(profile, name=getattr(profile, "__name__", "custom"))
    if isinstance(profile, (str, numbers.Number)):
        raise InvalidParameterError(
            f"profile must be a Profile (e.g. ntkit.theory.profiles.krr(1e-3)) or a callable h(lam) with h(0) = 0; "
            f"got {profile!r}.")
    raise InvalidParameterError(f"profile must be a Profile or a callable; got {type(profile).__name__}.")
