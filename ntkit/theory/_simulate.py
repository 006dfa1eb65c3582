r"""Monte-Carlo simulators of the Gaussian (Wishart) and translation-invariant (circle) models.

They fit the spectral algorithm on random training sets exactly as defined (``f̂ = k(x)ᵀ K⁻¹
h(K/N) y`` through an eigendecomposition of the N × N kernel matrix) and measure the excess
risk; the noise part is averaged analytically (its expectation given the inputs), so only
the inputs are random. They are the independent check of :func:`ntkit.theory.risk_curve`.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .. import _linalg
from .._blas import matmul
from .._validation import InvalidParameterError, check_int, check_scalar
from ._risk import _check_n, _check_spectrum
from .profiles import as_profile

__all__ = ["SimulatedRisk", "simulate_risk"]


class SimulatedRisk(NamedTuple):
    """Monte-Carlo means over ``n_trials`` draws and their standard errors (``*_se``)."""

    n_samples: np.ndarray
    risk: np.ndarray
    bias: np.ndarray
    variance: np.ndarray
    risk_se: np.ndarray
    bias_se: np.ndarray
    variance_se: np.ndarray
    n_trials: int


def _filter(prof, s, N):
    """``h(s)/(N s)`` for the eigenvalues s of K/N, 0 on the numerical null space."""
    tiny = s <= 1e-12 * max(s.max(), 1e-300)
    with np.errstate(divide="ignore", invalid="ignore"):  # h(0)/0 on the null space: set to 0 below
        H = prof(s).reshape(-1, len(s))
        return np.where(tiny, 0.0, H / (N * np.where(tiny, 1.0, s)))


def _trial_gaussian(lam, c, N, prof, noise, rng):
    pos = lam > 0
    lp = lam[pos]
    w = c[pos] / np.sqrt(lp)[:, None]  # c² = λ w²
    X = rng.standard_normal((N, len(lp))) * np.sqrt(lp)
    K = matmul(X, X.T)
    K /= N
    s, U = _linalg.eigh(K, overwrite_a=True)
    s = np.maximum(s, 0.0)
    g = _filter(prof, s, N)  # (np, N)
    V = matmul(U.T, matmul(X, w))  # (N, C): the noiseless labels in K's eigenbasis
    XU = matmul(X.T, U)  # (P, N)
    zero_power = float(np.sum(np.abs(c[~pos]) ** 2))
    bias = np.empty(g.shape[0])
    for i in range(g.shape[0]):
        e = matmul(XU, g[i][:, None] * V) - w
        bias[i] = float(np.sum(lp[:, None] * e**2)) + zero_power
    if noise:
        B = (XU * np.sqrt(lp)[:, None])  # Λ^{1/2} Xᵀ U
        colnorm = np.sum(B**2, axis=0)  # ‖Λ^{1/2} Xᵀ u_k‖²
        var = noise * matmul(g**2, colnorm)
    else:
        var = np.zeros(g.shape[0])
    return bias, var


def _trial_circle(lam, c, freq, N, prof, noise, u):
    x = u + 2 * np.pi * np.arange(N) / N
    F = np.exp(1j * np.outer(x, freq))  # (N, P)
    K = (F * lam) @ F.conj().T
    K /= N
    s, U = _linalg.eigh(K, overwrite_a=True)
    s = np.maximum(s, 0.0)
    g = _filter(prof, s, N)
    y = F @ c  # (N, C)
    FU = (F.conj().T @ U) * lam[:, None]  # (P, N): diag(λ) Fᴴ U
    Uy = U.conj().T @ y
    bias = np.empty(g.shape[0])
    var = np.zeros(g.shape[0])
    for i in range(g.shape[0]):
        chat = FU @ (g[i][:, None] * Uy)
        bias[i] = float(np.sum(np.abs(chat - c) ** 2))
    if noise:
        var = noise * (g**2 @ np.sum(np.abs(FU) ** 2, axis=0))
    return bias, var


def simulate_risk(eigenvalues, target_coeffs, n_samples, *, profile, noise=0.0, model="gaussian", frequencies=None,
                  n_trials=20, random_state=None, verbose=False):
    """Monte-Carlo excess risk of a spectral algorithm in the Gaussian or circle model.

    Same arguments and conventions as :func:`ntkit.theory.risk_curve` (``model`` is
    ``"gaussian"`` or ``"translation_invariant"``). Gaussian: x ~ N(0, diag λ), f*(x) = Σ c_l
    x_l/√λ_l, one fresh training set per trial. Circle: modes ``e^{ilx}`` at ``frequencies``,
    inputs on the lattice ``u + 2πi/N``; the risk is periodic in u with period 2π/N and
    sharply peaked where the aliased phases align (u ≈ 0), so the shifts are stratified over
    one period (trial t draws u in the t-th of ``n_trials`` equal slices; unbiased, and the
    reported standard error, computed as for independent draws, is conservative). Cost per trial
    O(N²P + N³); each trial evaluates every profile of a grid on the same draw.

    Returns
    -------
    SimulatedRisk
        means and standard errors, shape ``profile.shape + (len(n_samples),)``.
    """
    lam, _ = _check_spectrum(eigenvalues, target_coeffs)
    c = np.asarray(target_coeffs, dtype=np.complex128 if np.iscomplexobj(target_coeffs) else np.float64)
    c = c.reshape(len(lam), -1)
    N = _check_n(n_samples)
    prof = as_profile(profile)
    n_trials = check_int(n_trials, "n_trials", "simulate_risk", low=2)
    if model not in ("gaussian", "translation_invariant"):
        raise InvalidParameterError(f"simulate_risk models are 'gaussian' and 'translation_invariant'; got {model!r}.")
    try:
        noise = check_scalar(noise, "noise", "simulate_risk", low=0.0)
    except InvalidParameterError:
        raise InvalidParameterError(f"noise must be a finite variance >= 0; got {noise!r}.") from None
    if model == "translation_invariant":
        if frequencies is None:
            raise InvalidParameterError("model='translation_invariant' needs frequencies (one integer per eigenvalue).")
        freq = np.asarray(frequencies)
        if freq.shape != lam.shape or freq.dtype.kind not in "iu":
            raise InvalidParameterError(f"frequencies must be integers of shape {lam.shape}; got {freq.shape}.")
    rng = np.random.default_rng(random_state)
    nb = max(prof.size, 1)
    B = np.empty((nb, len(N), n_trials))
    V = np.empty((nb, len(N), n_trials))
    total = len(N) * n_trials
    bar = None
    if verbose:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc="simulate_risk")
    for j, n in enumerate(N):
        for t in range(n_trials):
            if model == "gaussian":
                b, v = _trial_gaussian(lam, c, int(n), prof, float(noise), rng)
            else:
                # the risk is periodic in the shift with period 2π/N: stratified shifts
                u = 2 * np.pi / n * (t + rng.uniform()) / n_trials
                b, v = _trial_circle(lam, c, freq, int(n), prof, float(noise), u)
            B[:, j, t], V[:, j, t] = b, v
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    R = B + V
    shape = prof.shape + (len(N),)
    se = lambda A: (A.std(axis=-1, ddof=1) / np.sqrt(n_trials)).reshape(shape)  # noqa: E731
    mean = lambda A: A.mean(axis=-1).reshape(shape)  # noqa: E731
    return SimulatedRisk(N, mean(R), mean(B), mean(V), se(R), se(B), se(V), n_trials)
