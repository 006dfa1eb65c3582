r"""Power-law spectra and the asymptotic exponents of their risk curves.

Setting: ``λ_l = scale · l^{-ν}`` and ``c_l² = target_scale · l^{-κ-1}`` (l = 1, 2, ...), so the
target's tail power beyond mode L is ``≍ L^{-κ}``.
"""

from __future__ import annotations

import numpy as np

from .._validation import InvalidParameterError, check_int, check_scalar

__all__ = ["power_law", "circle_power_law", "power_law_exponent"]


def power_law(n_modes, nu, kappa, *, scale=1.0, target_scale=1.0):
    """``(eigenvalues, target_coeffs)`` with ``λ_l = scale·l^{-ν}``, ``c_l = sqrt(target_scale·l^{-κ-1})``.

    Examples
    --------
    >>> from ntkit.theory import power_law
    >>> lam, c = power_law(4, nu=2.0, kappa=1.0)
    >>> lam.tolist(), (c**2).tolist()
    ([1.0, 0.25, 0.1111111111111111, 0.0625], [1.0, 0.25, 0.1111111111111111, 0.0625])
    """
    n = check_int(n_modes, "n_modes", "power_law", low=1)
    nu = check_scalar(nu, "nu", "power_law", low=0, closed="neither")
    kappa = check_scalar(kappa, "kappa", "power_law", low=-1, closed="neither")
    scale = check_scalar(scale, "scale", "power_law", low=0, closed="neither")
    target_scale = check_scalar(target_scale, "target_scale", "power_law", low=0, closed="left")
    l = np.arange(1, n + 1, dtype=np.float64)
    return scale * l**-nu, np.sqrt(target_scale * l ** (-kappa - 1))


def circle_power_law(max_frequency, nu, kappa, *, scale=1.0, target_scale=1.0):
    """The circle model's power law: modes ``e^{ilx}`` for ``0 < |l| ≤ max_frequency``.

    Returns ``(eigenvalues, target_coeffs, frequencies)`` with ``λ_l = scale·|l|^{-ν}`` and
    ``c_l² = target_scale·|l|^{-κ-1}``, ready for ``risk_curve(..., model="translation_invariant")``.
    """
    lam, c = power_law(max_frequency, nu, kappa, scale=scale, target_scale=target_scale)
    f = np.arange(1, int(max_frequency) + 1)
    return np.concatenate([lam, lam]), np.concatenate([c, c]), np.concatenate([f, -f])


_SATURATION = {"krr": 2.0, "iterated_tikhonov": 2.0, "gradient_flow": np.inf, "gradient_descent": np.inf,
               "spectral_cutoff": np.inf}


def power_law_exponent(nu, kappa, profile="krr", *, noise=True, order=1):
    r"""The exponent γ of the optimally regularised risk, ``risk ≍ N^{-γ}``, for a power law.

    Noisy labels (``noise=True``), regularisation tuned for each N: the risk balances the
    unlearned tail ``L^{-min(κ, s)}`` against the variance ``σ² L / N`` at ``L`` learned modes,
    so ``γ = a / (a + 1)`` with ``a = min(κ, s)``, where the *saturation* ``s`` is ``2ν`` for KRR,
    ``2mν`` for iterated Tikhonov of order m and infinite for gradient flow/descent and the
    cut-off (their residual ``1 − h`` decays faster than any power of ``λ``).

    Noiseless labels (``noise=False``), interpolation (ridge → 0): ``γ = min(κ, 2ν)`` — every
    profile interpolates in that limit, so all saturate at ``2ν``.

    Parameters
    ----------
    nu, kappa : float
        ``λ_l ∝ l^{-ν}`` (ν > 1 for a trace-class kernel) and ``c_l² ∝ l^{-κ-1}`` (κ > 0).
    profile : {"krr", "gradient_flow", "gradient_descent", "iterated_tikhonov", "spectral_cutoff"}
    order : int
        The order m of iterated Tikhonov.
    """
    nu = check_scalar(nu, "nu", "power_law_exponent", low=1, closed="neither")
    kappa = check_scalar(kappa, "kappa", "power_law_exponent", low=0, closed="neither")
    if profile not in _SATURATION:
        raise InvalidParameterError(f"profile must be one of {sorted(_SATURATION)}; got {profile!r}.")
    if not noise:
        return min(kappa, 2 * nu)
    s = _SATURATION[profile] * nu * (check_int(order, "order", "power_law_exponent", low=1)
                                     if profile == "iterated_tikhonov" else 1)
    a = min(kappa, s)
    return a / (a + 1)
