"""Theory of kernel learning: spectral-algorithm risk curves, spectra from data, simulators.

* :func:`risk_curve` — predicted excess risk of KRR, gradient flow/descent, iterated
  Tikhonov, spectral cut-off or any profile h(λ) against N, for the Gaussian (Wishart),
  translation-invariant (circle) and NMNO models;
* :mod:`ntkit.theory.profiles` — the spectral profiles;
* :func:`power_law` and :func:`power_law_exponent` — power-law spectra and their rates;
* :func:`estimate_spectrum` — eigenvalues and target coefficients of a real kernel on data;
* :func:`simulate_risk` — Monte-Carlo simulators of the Gaussian and circle models.

Convention: λ are eigenvalues of K/N (of the kernel integral operator in the population);
``profiles.krr(ridge)`` solves ``(K + N·ridge·I) α = y``.
"""

from . import profiles
from ._powerlaw import circle_power_law, power_law, power_law_exponent
from ._risk import RiskCurve, risk_curve
from ._simulate import SimulatedRisk, simulate_risk
from ._spectrum import Spectrum, estimate_spectrum

__all__ = ["profiles", "risk_curve", "RiskCurve", "power_law", "circle_power_law", "power_law_exponent", "estimate_spectrum",
           "Spectrum", "simulate_risk", "SimulatedRisk"]
