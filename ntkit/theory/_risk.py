r"""Risk curves of spectral algorithms: closed forms, contour integrals, aliasing sums.

Notation: population eigenvalues λ_l of the kernel operator (of K/N), target coefficients
c_l (power c_l²), N training points, label-noise variance σ², profile h. The excess risk is
``E‖f̂ − f*‖²``; ``bias`` is its value without noise and ``variance`` the part due to noise.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import numpy as np

from .._validation import InvalidParameterError, check_scalar
from ._risk_solvers import _contour_risk, _cutoff_risk, _eigenlearning, _upper_edge
from ._sums import ModeSums
from .profiles import Profile, as_profile

__all__ = ["RiskCurve", "risk_curve"]

_MODELS = ("gaussian", "translation_invariant", "nmno")


class RiskCurve(NamedTuple):
    """A predicted learning curve (or a grid of them).

    ``risk``, ``bias`` and ``variance`` have shape ``profile.shape + (len(n_samples),)``;
    ``risk = bias + variance`` is the excess risk E‖f̂ − f*‖² (add ``noise`` for the test MSE
    on noisy labels).
    """

    n_samples: np.ndarray
    risk: np.ndarray
    bias: np.ndarray
    variance: np.ndarray
    profile: Profile
    model: str
    noise: float

    def optimal(self):
        """The lower envelope over the profile grid: ``(risk, argmin index tuple per N)``.

        With a grid of ridges (or times) this is the optimally regularised learning curve.
        """
        if not self.profile.shape:
            return self.risk, np.zeros(len(self.n_samples), np.int64)
        flat = self.risk.reshape(-1, len(self.n_samples))
        nan = np.isnan(flat)
        if nan.all(axis=0).any():
            i = np.zeros(flat.shape[1], np.int64)
            ok = ~nan.all(axis=0)
            i[ok] = np.nanargmin(flat[:, ok], axis=0)
        else:
            i = np.nanargmin(flat, axis=0)
        best = flat[i, np.arange(flat.shape[1])]
        # a minimum next to a NaN (an unconverged grid point) may not be the optimum: say so
        suspect = []
        for j in range(flat.shape[1]):
            lo, hi = max(i[j] - 1, 0), min(i[j] + 1, flat.shape[0] - 1)
            if nan[lo:hi + 1, j].any():
                suspect.append(int(self.n_samples[j]))
        if suspect:
            warnings.warn(f"the optimum at N = {suspect[:5]}{'...' if len(suspect) > 5 else ''} lies next to NaN grid "
                          "points (unconverged); the true optimum may be among them. Narrow the grid.",
                          RuntimeWarning, stacklevel=2)
        return best, i

    def best_params(self):
        """For each N, the profile parameters of the optimum (a dict of arrays)."""
        _, i = self.optimal()
        return {k: v.reshape(-1)[i] for k, v in self.profile.params.items()}

    def plot(self, ax=None, *, parts=True, label=None, optimal=None, **kwargs):
        """Plot risk against N on log-log axes (bias and variance dashed when ``parts``).

        A profile grid plots its optimal envelope (``optimal=True``, the default for grids) or
        every curve (``optimal=False``). Returns the matplotlib axes.
        """
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(5, 3.6))
        n = self.n_samples
        label = label or f"{self.profile.describe()} ({self.model})"
        grid = bool(self.profile.shape)
        if optimal is None:
            optimal = grid
        if grid and optimal:
            r, i = self.optimal()
            ax.loglog(n, r, label=label + " — optimal", **kwargs)
            if parts:
                flat_b = self.bias.reshape(-1, len(n))[i, np.arange(len(n))]
                flat_v = self.variance.reshape(-1, len(n))[i, np.arange(len(n))]
                ax.loglog(n, flat_b, "--", lw=0.8, color=ax.lines[-1].get_color(), label="bias")
                if np.any(flat_v > 0):
                    ax.loglog(n, flat_v, ":", lw=0.8, color=ax.lines[-1].get_color(), label="variance")
        elif grid:
            for j, (r, p) in enumerate(zip(self.risk.reshape(-1, len(n)), self.profile.flat())):
                ax.loglog(n, r, label=p.describe(), **kwargs)
        else:
            ax.loglog(n, self.risk, label=label, **kwargs)
            if parts:
                c = ax.lines[-1].get_color()
                ax.loglog(n, self.bias, "--", lw=0.8, color=c, label="bias")
                if np.any(self.variance > 0):
                    ax.loglog(n, self.variance, ":", lw=0.8, color=c, label="variance")
        ax.set_xlabel("training points N")
        ax.set_ylabel("excess risk")
        ax.legend(fontsize=7)
        return ax


# ---------------------------------------------------------------- validation

def _check_spectrum(eigenvalues, target_coeffs):
    lam = np.asarray(eigenvalues)
    if lam.dtype == object or lam.dtype.kind not in "biuf" or lam.dtype == bool:
        raise InvalidParameterError(f"eigenvalues must be a 1-d array of real numbers; got dtype {lam.dtype}.")
    lam = lam.astype(np.float64)
    if lam.ndim != 1 or lam.size == 0:
        raise InvalidParameterError(f"eigenvalues must be a non-empty 1-d array; got shape {lam.shape}.")
    if not np.all(np.isfinite(lam)):
        raise InvalidParameterError("eigenvalues contain NaN or Inf; pass the finite eigenvalues of the kernel "
                                    "operator (of K/N).")
    if np.any(lam < 0):
        neg = lam[lam < 0]
        raise InvalidParameterError(
            f"eigenvalues must be >= 0 (a kernel operator is positive semi-definite); got {len(neg)} negative "
            f"value(s), the most negative {neg.min():.3g}. Clip round-off negatives with np.clip(lam, 0, None).")
    if lam.max() == 0:
        raise InvalidParameterError("all eigenvalues are zero: the kernel sees nothing.")
    c = np.asarray(target_coeffs)
    if c.dtype == object or c.dtype.kind not in "biufc" or c.dtype == bool:
        raise InvalidParameterError(f"target_coeffs must be an array of numbers; got dtype {c.dtype}.")
    if c.ndim not in (1, 2) or c.shape[0] != lam.shape[0]:
        raise InvalidParameterError(
            f"target_coeffs must have shape (n_modes,) or (n_modes, n_outputs) with n_modes = len(eigenvalues) = "
            f"{lam.shape[0]}; got shape {c.shape}.")
    if not np.all(np.isfinite(c)):
        raise InvalidParameterError("target_coeffs contain NaN or Inf.")
    c2 = np.abs(c.astype(np.complex128 if c.dtype.kind == "c" else np.float64)) ** 2
    if c2.ndim == 2:
        c2 = c2.sum(axis=1)
    return lam, c2.astype(np.float64)


def _check_n(n_samples):
    n = np.atleast_1d(np.asarray(n_samples))
    if n.dtype.kind not in "iuf" or n.ndim != 1 or n.size == 0:
        raise InvalidParameterError(f"n_samples must be a positive integer or a 1-d array of them; got {n_samples!r}.")
    if not np.all(np.isfinite(n)) or np.any(n < 1) or np.any(n != np.round(n)):
        raise InvalidParameterError(f"n_samples must hold positive integers; got {n_samples!r}.")
    return n.astype(np.int64)


# ---------------------------------------------------------------- real roots


# ---------------------------------------------------------------- gaussian model


# ---------------------------------------------------------------- the cut-off (non-analytic)


# ---------------------------------------------------------------- the other two models

def _aliasing(lam, c2, freq, N, H_of, noise):
    """Translation-invariant (circle) model: exact aliasing sum for one N."""
    k = np.mod(freq, N)
    uk, inv = np.unique(k, return_inverse=True)
    lam_hat = np.bincount(inv, weights=lam, minlength=len(uk))
    S = np.bincount(inv, weights=c2, minlength=len(uk))
    h = H_of(lam_hat)  # (np, n_classes)
    with np.errstate(divide="ignore", invalid="ignore"):
        g = np.where(lam_hat > 0, h / np.where(lam_hat > 0, lam_hat, 1.0), 0.0)
    a = lam[None, :] * g[:, inv]  # (np, P)
    bias = np.sum(c2 * (1 - a) ** 2 + a**2 * (S[inv] - c2), axis=1)
    var = noise / N * np.sum(a**2, axis=1)
    return bias, var, lam_hat


def _nmno(lam, c2, N, H, noise):
    bias = np.sum((1 - H) ** 2 * c2, axis=-1)
    var = noise / N * np.sum(H**2, axis=-1)
    return bias, var


# ---------------------------------------------------------------- public entry point

def risk_curve(eigenvalues, target_coeffs, n_samples, *, profile, noise=0.0, model="gaussian", frequencies=None,
               rtol=1e-9):
    r"""Predicted excess risk of a spectral algorithm against the number of training points.

    Parameters
    ----------
    eigenvalues : array (P,)
        λ_l ≥ 0, eigenvalues of the kernel operator (of K/N for an empirical spectrum; see
        :func:`estimate_spectrum`), any order.
    target_coeffs : array (P,) or (P, n_outputs)
        Coefficients c_l of the target in the kernel eigenbasis (power c_l², summed over outputs).
    n_samples : int or array of int
        Training-set sizes N.
    profile : Profile or callable
        The algorithm (:mod:`ntkit.theory.profiles`); a parameter grid gives one curve per point.
    noise : float
        Label-noise variance σ².
    model : {"gaussian", "translation_invariant", "nmno"}
        ``"gaussian"``: features x ~ N(0, diag λ) (high-dimensional, "Wishart") — KRR by the
        eigenlearning closed form, any analytic profile by the contour-integral deterministic
        equivalent, the cut-off by a contour through its threshold. ``"translation_invariant"``:
        the circle model with a randomly shifted lattice of N points — exact aliasing formula;
        ``frequencies`` (integers, one per eigenvalue) say which modes alias (l ≡ l' mod N).
        ``"nmno"``: the naive model of noisy observations, ``Σ (1−h(λ))² c² + (σ²/N) h(λ)²``,
        a surrogate valid for noisy power-law problems at large N (it ignores how sampling
        mixes modes, so it misses aliasing and the noiseless "overlearning" effects).
    rtol : float
        Target relative accuracy of the contour quadrature (nodes double until reached).

    Returns
    -------
    RiskCurve
        ``n_samples``, ``risk``, ``bias``, ``variance`` (shape ``profile.shape + (len(N),)``).

    Examples
    --------
    >>> import numpy as np
    >>> from ntkit.theory import risk_curve, power_law, profiles
    >>> lam, c = power_law(2000, nu=1.5, kappa=1.0)
    >>> rc = risk_curve(lam, c, [10, 100, 1000], profile=profiles.krr(1e-4), noise=0.01)
    >>> bool(np.all(np.diff(rc.risk) < 0))
    True
    """
    lam, c2 = _check_spectrum(eigenvalues, target_coeffs)
    N = _check_n(n_samples)
    prof = as_profile(profile)
    try:
        noise = check_scalar(noise, "noise", "risk_curve", low=0.0)
    except InvalidParameterError:
        raise InvalidParameterError(
            f"noise is the label-noise variance and must be finite and >= 0; got {noise!r}.") from None
    if model not in _MODELS:
        raise InvalidParameterError(f"model must be one of {_MODELS}; got {model!r}.")
    shape = prof.shape + (len(N),)
    bias = np.empty(shape)
    var = np.empty(shape)
    flat = prof.flat()
    fb = bias.reshape(-1, len(N))
    fv = var.reshape(-1, len(N))

    if model == "translation_invariant":
        if frequencies is None:
            raise InvalidParameterError("model='translation_invariant' needs frequencies: the integer frequency of "
                                        "each eigenvalue (e.g. l for the mode exp(i l x)).")
        freq = np.asarray(frequencies)
        if freq.shape != lam.shape or freq.dtype.kind not in "iu":
            raise InvalidParameterError(f"frequencies must be integers with the shape of eigenvalues {lam.shape}; got "
                                        f"shape {freq.shape}, dtype {freq.dtype}.")
        for j, n in enumerate(N):
            b, v, lam_hat = _aliasing(lam, c2, freq, n, lambda x: prof(x).reshape(-1, len(x)), noise)
            _check_gd(prof, lam_hat.max(), f"the aliased spectrum at N = {n}")
            fb[:, j], fv[:, j] = b, v
        return RiskCurve(N, bias + var, bias, var, prof, model, noise)
    if frequencies is not None:
        raise InvalidParameterError("frequencies are only used by model='translation_invariant'.")

    if model == "nmno":
        _check_gd(prof, lam.max(), "the largest eigenvalue")
        H = prof(lam).reshape(-1, len(lam))
        for j, n in enumerate(N):
            b, v = _nmno(lam, c2, n, H, noise)
            fb[:, j], fv[:, j] = b, v
        return RiskCurve(N, bias + var, bias, var, prof, model, noise)

    ms = ModeSums(lam, c2)
    if prof.krr_ridge is not None:
        b, v = _eigenlearning(ms, N[None, :], prof.krr_ridge.reshape(-1, 1), noise)
        fb[...], fv[...] = b, v
        return RiskCurve(N, bias + var, bias, var, prof, model, noise)
    if prof.lr is not None:
        edges = _upper_edge(ms, N)
        j = int(np.argmax(edges))
        _check_gd(prof, float(edges[j]), f"the upper edge of the empirical spectrum at N = {N[j]}")
    if prof.cutoff is not None:
        for i, p in enumerate(flat):
            for j, n in enumerate(N):
                fb[i, j], fv[i, j] = _cutoff_risk(ms, n, float(p.cutoff), noise)
        return RiskCurve(N, bias + var, bias, var, prof, model, noise)
    fb[...], fv[...] = _contour_risk(ms, N, flat, noise, rtol=rtol)
    return RiskCurve(N, bias + var, bias, var, prof, model, noise)


def _check_gd(prof, lam_max, what):
    lr = prof.lr
    if lr is None:
        return
    if np.any(lr * lam_max >= 2):
        raise InvalidParameterError(
            f"gradient descent with lr = {float(np.max(lr)):.4g} diverges: lr · λ_max must be < 2, and λ_max is "
            f"{lam_max:.4g} ({what}). Use lr < {2 / lam_max:.4g}.")
