"""EigenPro's preconditioner and step size: the top eigensystem of a subsample's kernel matrix, the
flattening weights, the batch size and learning rate that follow from the flattened spectrum
(Ma & Belkin 2017, 2019; Abedsoltan et al. 2023 for EigenPro 3).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .._validation import InvalidParameterError, check_int, check_scalar
from ._access import idx
from ._eigen import _eig_of_gram

__all__ = ["eigenpro_parameters"]


#: Exponent on the eigenvalue ratio in EigenPro 2's preconditioner (Ma & Belkin 2019):
#: it compensates for the Nyström estimate's bias on the tail eigenvalue.
ALPHA_EP2 = 0.95


class _Precond(NamedTuple):
    q: int  # eigenpairs used (the q-th is the tail)
    E: np.ndarray  # (s, q-1) unit eigenvectors of K_ss/s
    D: np.ndarray  # (q-1,) correction weights (1 - (λ_q/λ_i)^α) / (s λ_i)
    lam_top: float  # top eigenvalue after preconditioning
    lam: np.ndarray  # all computed eigenvalues
    beta: float
    S: np.ndarray  # subsample indices


def eigenpro_parameters(eigenvalues, beta, *, n_eigen="auto", max_batch=None, alpha=ALPHA_EP2, batch_size="auto",
                        variant=2):
    """EigenPro's analytic choices from a spectrum: ``(q, batch_size, learning_rate, lam_top)``.

    ``eigenvalues`` (descending, non-negative, the first positive) of K/n (Nyström estimate),
    ``beta = max k(x, x)`` (positive).
    ``q`` ("auto"): the largest level whose critical batch ``beta / λ_q`` fits ``max_batch``
    (at least 2 when possible). After preconditioning at level q the top eigenvalue is
    ``λ* = λ_1 (λ_q / λ_1)^α``; the critical batch size is ``m* = beta / λ*``.
    EigenPro 2: ``batch = min(int(m* + 1), max_batch)``; the step per example is ``1/beta``
    when the batch is below m* + 1, else ``0.99 · 2 / (beta + (batch − 1) λ*)``.
    EigenPro 3: ``batch = min(int(beta / λ_q), max_batch)``, step per example ``1 / (2 beta)``
    (``1 / (beta + (batch − 1) λ_q)`` for a user batch above ``beta / λ_q``).

    Examples
    --------
    >>> import numpy as np
    >>> q, bs, lr, top = eigenpro_parameters(np.array([1.0, 0.1, 0.01, 0.001]), beta=1.0, max_batch=64)
    >>> q, bs, round(lr, 4)
    (2, 9, 1.0)
    """
    owner = "eigenpro_parameters"
    lam = np.asarray(eigenvalues)
    if lam.dtype.kind not in "fiu":
        raise InvalidParameterError(f"eigenvalues must be a 1-D array of real numbers; got dtype {lam.dtype}.")
    lam = lam.astype(np.float64)
    if lam.ndim != 1 or lam.size == 0:
        raise InvalidParameterError(f"eigenvalues must be a non-empty 1-D array; got shape {lam.shape}.")
    if not np.isfinite(lam).all():
        raise InvalidParameterError("eigenvalues contain NaN or infinity.")
    if lam[0] <= 0 or lam.min() < 0:
        raise InvalidParameterError(f"eigenvalues must be non-negative with a positive first (largest) one; got "
                                    f"first {lam[0]:.3g}, smallest {lam.min():.3g}. Clip round-off negatives to 0.")
    if np.any(np.diff(lam) > 0):
        raise InvalidParameterError("eigenvalues must be sorted in descending order; pass np.sort(eigenvalues)[::-1].")
    beta = check_scalar(beta, "beta", owner, low=0.0, closed="neither")
    if not (isinstance(n_eigen, str) and n_eigen == "auto"):
        n_eigen = check_int(n_eigen, "n_eigen", owner, low=1, high=len(lam))
    if max_batch is not None:
        max_batch = check_int(max_batch, "max_batch", owner, low=1)
    alpha = check_scalar(alpha, "alpha", owner, low=0.0, high=1.0, closed="right")
    if not (isinstance(batch_size, str) and batch_size == "auto"):
        batch_size = check_int(batch_size, "batch_size", owner, low=1)
    if variant not in (2, 3) or isinstance(variant, bool):
        raise InvalidParameterError(f"variant must be 2 or 3 (EigenPro 2 or 3); got {variant!r}.")
    return _parameters(lam, beta, n_eigen=n_eigen, max_batch=max_batch, alpha=alpha, batch_size=batch_size,
                       variant=variant)


def _parameters(eigenvalues, beta, *, n_eigen="auto", max_batch=None, alpha=ALPHA_EP2, batch_size="auto", variant=2):
    """:func:`eigenpro_parameters` without its argument checks, for the solvers' own spectra (their
    messages speak of the kernel, which is what a bad spectrum there comes from)."""
    lam = np.asarray(eigenvalues, dtype=np.float64)
    k = len(lam)
    if not np.isfinite(beta) or beta <= 0 or not np.all(np.isfinite(lam)):
        raise ValueError(f"the kernel on the training data X gives max k(x, x) = {beta!r} and eigenvalues "
                         f"{lam[:3]}...; EigenPro needs a finite positive kernel scale on X (an all-zero X with a "
                         "dot-product kernel has k(x, x) = 0): rescale the kernel or X.")
    max_batch = int(max_batch) if max_batch is not None else 10**9
    if n_eigen == "auto":
        ok = np.nonzero(lam > 0)[0]
        fits = [i + 1 for i in ok if beta / lam[i] <= max_batch]
        q = max(fits) if fits else 1
        q = min(q, max(1, k - 1)) if k > 1 else 1
        if k > 1 and lam[1] > 1e-12 * lam[0]:  # two levels at least, when the second is above round-off
            q = max(q, 2)
    else:
        q = int(n_eigen)
    lam_q = lam[q - 1]
    if lam_q <= 0:
        raise ValueError("the subsample's kernel matrix has non-positive eigenvalues at the preconditioning level; "
                         "use fewer eigenvalues (n_eigen) or check that the kernel is positive definite.")
    q = int(q)
    if variant == 3:
        lam_top = lam_q
        bs = max(1, min(int(beta / lam_q), max_batch)) if batch_size == "auto" else int(batch_size)
        lr = 1.0 / (2.0 * beta) if bs <= beta / lam_q else 1.0 / (beta + (bs - 1) * lam_q)
        return q, bs, lr, lam_top
    lam_top = float(lam[0] * (lam_q / lam[0]) ** alpha) if q > 1 else float(lam[0])
    m_star = beta / lam_top
    bs = max(1, min(int(m_star + 1), max_batch)) if batch_size == "auto" else int(batch_size)
    if bs < m_star + 1:
        eta = bs / beta
    else:
        eta = 0.99 * 2 * bs / (beta + (bs - 1) * lam_top)
    lr = eta / bs
    if not np.isfinite(lr) or lr <= 0:
        raise ValueError(f"EigenPro's step size is {lr!r} for max k(x, x) = {beta}; rescale the kernel.")
    return q, bs, lr, lam_top


def _seed(random_state, owner="eigenpro"):
    """A 32-bit seed from ``random_state`` (None, an int, a RandomState or a Generator); ``owner`` names the caller in errors."""
    if random_state is None:
        return int(np.random.SeedSequence().entropy % (2**32))
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(0, 2**31 - 1))
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(0, 2**31 - 1))
    return check_int(random_state, "random_state", owner, low=0)


class _Data:
    """Explicit data rows (EigenPro 3 streams X by batches; X may be a memory map)."""

    def __init__(self, X):
        self.X = X

    def at(self, rows):
        return np.asarray(self.X[rows])


def _preconditioner(acc, points, n_total, s, n_eigen, max_batch, alpha, ridge, rng, variant, batch_size):
    S = np.sort(rng.choice(len(points.X) if isinstance(points, _Data) else len(points), size=s, replace=False))
    K = acc.block(idx(S), idx(S)) if not isinstance(points, _Data) else acc.block(points.at(S), points.at(S))
    K = K / s
    k = min(s - 1, 400) if n_eigen == "auto" else min(int(n_eigen) + 1, s)
    k = max(k, 1)
    lam, E = _eig_of_gram(K.astype(np.float64), k, "auto", rng)
    beta = acc.diag_max(idx(S)) if not isinstance(points, _Data) else acc.diag_max(points.at(S))
    lam_eff = lam + ridge / n_total
    beta_eff = beta + ridge
    q, bs, lr, lam_top = _parameters(lam_eff, beta_eff, n_eigen=n_eigen if n_eigen == "auto" else
                                     min(int(n_eigen), len(lam)), max_batch=max_batch, alpha=alpha,
                                     batch_size=batch_size, variant=variant)
    lam_q = lam_eff[q - 1]
    top = lam_eff[: q - 1]
    # flatten with the ridge-shifted spectrum; normalise the Nyström eigenfunctions with the raw one
    D = (1.0 - (lam_q / top) ** alpha) / (s * lam[: q - 1]) if q > 1 else np.zeros(0)
    return _Precond(q, E[:, : q - 1], D, lam_top, lam_eff, beta_eff, S), bs, lr
