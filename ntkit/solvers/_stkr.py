"""Spectrally transformed kernel regression (STKR): unlabeled points reshape the kernel.

A base kernel K and the data distribution define an integral operator with eigenpairs
(λ_i, ψ_i). STKR regresses with the transformed kernel ``K_s(x, x') = Σ_i s(λ_i) ψ_i(x) ψ_i(x')``,
whose eigenfunctions are those of the *data*: the labeled and the unlabeled points estimate them
together, so unlabeled points change the hypothesis space (kernel ridge regression with K alone
never looks at them).

Everything here is written with the empirical operator ``Ĝ = K(X̄, X̄) / N`` on the N = n + m
points ``X̄ = [labeled; unlabeled]``: the transformed Gram matrix on X̄ is ``N·s(Ĝ)``, and every
predictor is ``f(x) = K(x, X̄) θ`` — one kernel product with the N points — so the inductive
prediction at a training point *is* the transductive one. Products with Ĝ go through
:func:`ntkit.ops.kernel_matvec` in streamed blocks, or through the Gram matrix formed once when
``N²`` entries fit in half the memory budget; the (N, N) matrix is never formed otherwise.
The linear systems are solved by preconditioned conjugate gradients whose preconditioners come
from approximate top eigenpairs of Ĝ (a Nyström subsample, :func:`ntkit.solvers.top_eigensystem`):
they change the number of iterations, never the answer.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, NamedTuple

import numpy as np

from .. import _linalg
from .._config import _config, resolve_budget
from .._validation import InvalidParameterError, check_data, check_int, check_option, check_scalar, is_jax_array
from ..kernels import Kernel
from ._eigenpro import _predict
from ._eigenpro_precond import _seed
from ._stkr_linalg import _eigenpairs, _HostLA, _JaxLA, _lambda_max, _operator, _pcg

__all__ = ["TRANSFORMATIONS", "STKRResult", "stkr"]

#: The transformation families :func:`stkr` implements.
TRANSFORMATIONS = ("inverse_laplacian", "polynomial", "kernel_pca")
#: Default relative residual of the conjugate-gradient solves, by dtype of the data.
DEFAULT_TOL = {np.dtype(np.float64): 1e-8, np.dtype(np.float32): 1e-5}
#: ``eta="auto"``: η = ETA_FRACTION / λ̂_max (the paper leaves η to the user; 0.99 as in the
#: label-spreading literature, Zhou et al. 2004). Only the top directions feel it (s(λ)/λ ≤ 5 where
#: λ ≤ 0.8 λ̂_max), which is why the benchmark finds the error flat for fractions 0.9–0.9999.
ETA_FRACTION = 0.99
#: ``subsample_size="auto"``: points of the Nyström subsample that seeds the eigenpairs.
SUBSAMPLE = 2000
#: ``n_eigen="auto"``: eigenpairs in the preconditioners (at most the subsample size).
N_EIGEN = 160
#: ``maxiter=None``: outer CG iterations (inner ones: ``INNER_FACTOR`` times as many), and the
#: subspace iterations that refine kernel-PCA eigenpairs.
MAXITER = 1000
INNER_FACTOR = 4
EIGEN_MAXITER = 200


class STKRResult(NamedTuple):
    """A fitted STKR model: ``f(x) = Σ_j weights[j] k(x, centers[j])``.

    ``centers`` are the N = n + m training points, labeled rows first; ``dual_coef`` is the α of
    ``(K̂_s(X_l, X_l) + n·ridge·I) α = y`` (so ``f(X_l) = y − n·ridge·α``); ``eigenvalues`` are the
    top eigenvalues of ``Ĝ = K(X̄, X̄)/N`` that were computed (the d components for
    ``"kernel_pca"``, the preconditioner's estimates otherwise); ``history`` holds the relative
    residual of the outer CG per iteration (``"kernel_pca"``: the largest relative eigen-residual
    per subspace iteration), its last entry the final *true* residual; ``eta`` is the η used
    (``"auto"`` resolved).

    Examples
    --------
    >>> import numpy as np
    >>> from ntkit.kernels import RBF
    >>> from ntkit.solvers import stkr
    >>> X = np.random.default_rng(0).normal(size=(50, 2))
    >>> res = stkr(RBF(1.0), X[:10], np.sin(X[:10, 0]), X[10:], transformation="polynomial", coefficients=[1, 1])
    >>> res.weights.shape, res.dual_coef.shape, res.n_labeled, res.predict(X[:3]).shape
    ((50,), (10,), 10, (3,))
    """

    weights: Any
    centers: Any
    dual_coef: Any
    n_labeled: int
    transformation: str
    coefficients: tuple | None
    eta: float | None
    eigenvalues: Any
    history: list
    n_iter: int
    kernel: Any
    ridge: float

    def predict(self, X):
        """``K(X, centers) @ weights`` (on the device of jax arrays; jax out for jax ``X``)."""
        return _predict(self.kernel, self.centers, self.weights, X)


# --------------------------------------------------------------------------------------------
# the transformations: s(λ) and r(λ) = s(λ)/λ, applied to Ĝ


def _s_of(transformation, coefficients, eta, lam):
    """s(λ) on an array of eigenvalues (polynomial or exact inverse Laplacian)."""
    if transformation == "polynomial":
        out = 0.0 * lam
        for c in reversed(coefficients):  # Horner on s(λ)/λ, then times λ
            out = out * lam + c
        return out * lam
    return lam / (1.0 - eta * lam)


def _apply_r(op, a, transformation, coefficients, la, inner):
    """θ = r(Ĝ) P a with r(λ) = s(λ)/λ, so that ``K̂_s(·, X_l) a = K(·, X̄) θ``.

    Polynomial ``s = Σ_p π_p λ^p``: Horner, ``θ = π_1 Pa + Ĝ(π_2 Pa + Ĝ(… + Ĝ(π_q Pa)))`` — q − 1
    products with Ĝ, the first one thin (its vector lives on the labeled rows). Inverse Laplacian
    ``s = λ/(1 − ηλ)``: ``θ = (I − ηĜ)⁻¹ Pa`` by the inner preconditioned CG (``inner``)."""
    if transformation != "polynomial":
        return inner(la.pad(a, op.N))
    q = len(coefficients)
    Pa = la.pad(a, op.N)
    if q == 1:
        return coefficients[0] * Pa
    w = op.cols(coefficients[q - 1] * a) + coefficients[q - 2] * Pa   # π_{q-1} Pa + Ĝ π_q Pa
    for p in range(q - 3, -1, -1):                                     # w ← π_{p+1} Pa + Ĝ w
        w = op.full(w) + coefficients[p] * Pa
    return w


# --------------------------------------------------------------------------------------------
# validation


def _check_targets(y, n, owner="stkr"):
    if y is None:
        raise ValueError("y is required; got None.")
    if not is_jax_array(y):
        y = np.asarray(y)
        if y.dtype.kind not in "fiub":
            raise TypeError(f"y must hold numbers; got dtype {y.dtype}.")
    if y.ndim not in (1, 2):
        raise ValueError(f"y must have shape (n,) or (n, n_targets); got shape {tuple(y.shape)}.")
    if y.shape[0] != n:
        raise ValueError(f"y has {y.shape[0]} rows but X has {n}; give one target row per labeled point of X.")
    if is_jax_array(y):
        import jax.numpy as jnp

        finite = bool(jnp.isfinite(y).all())
    else:
        finite = bool(np.isfinite(y).all())
    if not finite:
        raise ValueError("y contains NaN or infinity; stkr takes the labeled points in X and the unlabeled ones in "
                         "X_unlabeled (the estimators accept NaN targets as the unlabeled mark).")
    return y


def _check_coefficients(coefficients):
    msg = ("The 'coefficients' parameter of stkr must be a non-empty sequence of finite non-negative numbers "
           "(π_1, …, π_q of s(λ) = Σ_p π_p λ^p) with a positive sum. Got {!r} instead.")
    if coefficients is None or isinstance(coefficients, (str, bytes)):
        raise InvalidParameterError(msg.format(coefficients))
    try:
        c = np.asarray(coefficients, dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidParameterError(msg.format(coefficients)) from None
    if c.ndim != 1 or c.size == 0 or not np.isfinite(c).all() or (c < 0).any() or c.sum() <= 0:
        raise InvalidParameterError(msg.format(coefficients))
    c = np.trim_zeros(c, "b")  # trailing zeros add products with Ĝ and nothing else
    return tuple(float(v) for v in c)


def _check_options(transformation, eta, coefficients, n_terms, n_components, ridge, N):
    transformation = check_option(transformation, "transformation", "stkr", TRANSFORMATIONS)
    ridge = check_scalar(ridge, "ridge", "stkr", low=0.0, closed="neither")
    # parameters of the other transformations are ignored (as scikit-learn estimators ignore, e.g., an
    # SVC's gamma with a linear kernel)
    coefficients = _check_coefficients(coefficients) if transformation == "polynomial" else None
    n_terms = n_terms if transformation == "inverse_laplacian" else None
    n_components = n_components if transformation == "kernel_pca" else None
    if transformation == "inverse_laplacian":
        if not (isinstance(eta, str) and eta == "auto"):
            eta = check_scalar(eta, "eta", "stkr", low=0.0)
        if n_terms is not None:
            n_terms = check_int(n_terms, "n_terms", "stkr", low=1)
    if transformation == "kernel_pca":
        n_components = min(10, N) if n_components is None else check_int(n_components, "n_components", "stkr",
                                                                          low=1, high=N)
    return transformation, eta, coefficients, n_terms, n_components, ridge


def _auto(value, name, default, low, high):
    if isinstance(value, str) and value == "auto":
        return max(low, min(default, high))
    return check_int(value, name, "stkr", low=low, high=None)


# --------------------------------------------------------------------------------------------
# the public solver


def stkr(kernel, X, y, X_unlabeled=None, *, transformation="inverse_laplacian", eta="auto", coefficients=None,
         n_terms=None, n_components=None, ridge=1e-3, tol=None, maxiter=None, n_eigen="auto",
         subsample_size="auto", random_state=None, memory_budget=None, verbose=None, device=None):
    r"""Spectrally transformed kernel regression with labeled points ``X`` and unlabeled ``X_unlabeled``.

    With ``X̄ = [X; X_unlabeled]`` (N = n + m points) and the empirical operator
    ``Ĝ = K(X̄, X̄)/N`` (eigenpairs λ̂_i, v_i), the transformed kernel on X̄ is
    ``K̂_s(X̄, X̄) = N·s(Ĝ) = Σ_i s(λ̂_i)·(√N v_i)(√N v_i)ᵀ`` — the eigenfunctions ψ̂_i = √N v_i of
    the data with reweighted eigenvalues — and STKR is kernel ridge regression with it::

        α = (K̂_s(X_l, X_l) + n·ridge·I)⁻¹ y,      f(x) = K̂_s(x, X_l) α = K(x, X̄) θ,
        θ = r(Ĝ) P α,   r(λ) = s(λ)/λ,   P = the (N, n) injection of the labeled rows.

    The last form is the inductive predictor (one kernel product with the N points); at a training
    point it equals the transductive value, since ``K(X̄, X̄) θ = N·s(Ĝ) P α``. Transformations:

    ``"polynomial"``
        ``s(λ) = Σ_{p=1}^{q} π_p λ^p`` (``coefficients = (π_1, …, π_q)``, π_p ≥ 0):
        ``K̂_s = Σ_p π_p K̂^p`` with the Monte-Carlo power kernels
        ``K̂^p(x, x') = K(x, X̄) Ĝ^{p-2} K(X̄, x') / N^{p-1}``
        (``K̂^1 = K``: ``coefficients=[1]`` is kernel ridge regression on the labeled points alone).
        Each CG iteration costs q − 2 products with Ĝ and two thin ones with K(X̄, X_l).
    ``"inverse_laplacian"``
        ``s(λ) = λ/(1 − ηλ)``, i.e. ``s⁻¹(λ) = 1/s(λ) = λ⁻¹ − η`` with ``0 ≤ η < 1/λ̂_max``:
        ``θ = (I − ηĜ)⁻¹ P α`` by an inner CG. ``eta="auto"`` is ``0.99/λ̂_max``, λ̂_max bounded from
        above by Lanczos from a fixed start (to 1e-6 relative; ≤ 40 products with Ĝ); η = 0 is kernel
        ridge regression. ``n_terms=q`` uses the power series truncated
        after q terms instead, ``s_q(λ) = Σ_{p=1}^{q} η^{p-1} λ^p`` (a polynomial, no inner solve).
    ``"kernel_pca"``
        The transformation is unknown: the top ``n_components`` = d eigenpairs of Ĝ (kernel PCA on
        all N points) give the representation ``ψ̂(x) = (K(x, X̄) v_i / (√N λ̂_i))_{i≤d}`` (the Nyström
        extension, equal to √N v_i on X̄), and ridge regression on it,
        ``ŵ = (Ψ_lᵀΨ_l + n·ridge·I)⁻¹Ψ_lᵀ y``, ``f(x) = ψ̂(x)ᵀ ŵ`` — STKR with ``s(λ̂_i) = 1`` for i ≤ d
        and 0 beyond.

    Products with Ĝ stream through :func:`ntkit.ops.kernel_matvec`; when ``N²`` entries fit in half
    of ``memory_budget`` the Gram matrix is formed once instead (never otherwise). The n × n system
    is solved by conjugate gradients (t right-hand sides at once), preconditioned with
    ``(N·U s(Λ) Uᵀ + n·ridge·I)⁻¹`` (Woodbury), where Λ, V (U = the labeled rows of V) are
    approximate top eigenpairs of Ĝ from a Nyström subsample
    (:func:`ntkit.solvers.top_eigensystem`, extended to X̄ and refined by one Rayleigh–Ritz step, a
    product of Ĝ with ``n_eigen`` columns); the inner solve with ``I − ηĜ`` is preconditioned by ``I + V diag(ηλ/(1−ηλ)) Vᵀ``.
    Both are symmetric positive definite whatever the quality of the eigenpairs: they change the
    iteration count, not the solution. CG iterates are float64; kernel products run in the data's
    dtype.

    Parameters
    ----------
    kernel : ntkit kernel or callable ``k(A, B)``
        The base kernel K (a callable runs on the host).
    X : array of shape (n, n_features)
        Labeled points (numpy or jax; float32 or float64).
    y : array of shape (n,) or (n, n_targets)
        Their targets (finite).
    X_unlabeled : array of shape (m, n_features), optional
        Unlabeled points (m may be 0).
    transformation : {"inverse_laplacian", "polynomial", "kernel_pca"}, default="inverse_laplacian"
    eta : float or "auto", default="auto"
        η of the inverse Laplacian (``0 ≤ η < 1/λ̂_max``, in the units of the eigenvalues of K/N).
    coefficients : sequence of float, optional
        (π_1, …, π_q) of the polynomial transformation (required with ``"polynomial"``).
    n_terms : int, optional
        Truncate the inverse Laplacian's power series after this many terms.
    n_components : int, optional
        d of ``"kernel_pca"`` (default: min(10, N)). ``eta``, ``coefficients``, ``n_terms`` and
        ``n_components`` are ignored by the transformations that do not use them (as scikit-learn
        estimators ignore, e.g., an SVC's ``gamma`` with a linear kernel).
    ridge : float, default=1e-3
        β_n of the objective ``(1/n) Σ_i (f(x_i) − y_i)² + β_n ‖f‖²_{K̂_s}`` (the penalty scales with n).
    tol : float, optional
        Relative residual ``‖y − Aα‖/‖y‖`` at which CG stops (per target; default 1e-8 for float64
        data, 1e-5 for float32), and, for ``"kernel_pca"`` on more than ``subsample_size`` points,
        the relative eigen-residual of the subspace iterations.
    maxiter : int, optional
        Outer CG iterations (default 1000; the inner solve may take 4000), or subspace
        iterations for ``"kernel_pca"`` (default 200). A solve that stops short warns.
    n_eigen : int or "auto", default="auto"
        Eigenpairs in the preconditioners ("auto": 160, at most the subsample size).
    subsample_size : int or "auto", default="auto"
        Points of the Nyström subsample ("auto": 2000; all points when N is smaller, and then the
        eigenpairs — and ``"kernel_pca"`` — are exact).
    random_state : int, numpy Generator / RandomState or None
        Seeds the subsample (the solution does not depend on it beyond ``tol``).
    memory_budget : int or str, optional
        Bytes of workspace (see :func:`ntkit.config_context`).
    verbose : bool, optional
        Print each iteration's residual.
    device : None, "auto", "cpu", "gpu" or jax.Device
        Where it runs (the rule of :mod:`ntkit._device`; ``None`` follows the data): with jax arrays
        (or a named device) every kernel product and CG step runs on that device through
        :mod:`ntkit.ops` (one scalar read back per iteration) and jax in gives jax out.

    Returns
    -------
    STKRResult
        ``predict(X)`` evaluates ``K(X, X̄) θ``; ``weights`` (θ), ``centers`` (X̄), ``dual_coef``
        (α), ``history``, ``n_iter``, ``eta``, ``eigenvalues``.

    References
    ----------
    Zhai, R., Pukdee, R., Jin, R., Balcan, M.-F. and Ravikumar, P. (2024). Spectrally transformed
    kernel regression. ICLR 2024, arXiv:2402.00645. What is implemented, and where it comes from:

    * the spectrally transformed kernel ``K_s(x, x') = Σ_i s(λ_i) ψ_i(x) ψ_i(x')`` of the base
      kernel's integral operator under the data distribution (Sec. 2);
    * the power kernels ``K^p`` (Sec. 2, Eq. 7) and their Monte-Carlo estimate from the n + m
      labeled and unlabeled samples, ``K̂^p(x, x') = v_K(x)ᵀ G_K^{p-2} v_K(x') / (n+m)^{p-1}``
      with ``v_K(x) = K(X̄, x)``, ``G_K = K(X̄, X̄)``, ``K̂_s = Σ_p π_p K̂^p`` (Sec. 3);
    * the STKR estimator ``f̂(x) = v_{K̂_s,n}(x)ᵀ α̂``, ``α̂ = (G_{K̂_s,n} + nβ_n I_n)⁻¹ y`` (Sec. 3);
    * STKR-Prop, Algorithms 1 (s a polynomial) and 2 (``s⁻¹`` simple), with the inductive
      predictor ``f̂(x) = v_K(x)ᵀ θ`` (Sec. 3). The paper iterates Richardson steps; here the same
      linear systems are solved by preconditioned CG (same fixed point, fewer products with Ĝ);
    * the inverse Laplacian ``s⁻¹(λ) = λ⁻¹ − η``, ``η ∈ (0, λ_1⁻¹)`` (Sec. 4, Example 1) — the
      paper gives no default η; ``"auto"`` is this library's choice;
    * STKR with kernel PCA when s is unknown: top-d eigenfunctions by kernel PCA, then ridge
      regression on them (Sec. 4, Theorems 4–5). The paper estimates them on the unlabeled
      sample; here on all N points, with the Nyström extension ``ψ̂_i(x) = K(x, X̄) v_i/(√N λ̂_i)``
      (Williams & Seeger, 2001, "Using the Nyström method to speed up kernel machines").

    The equation-level derivations (``K̂_s(X̄, X̄) = N s(Ĝ)``, ``θ = r(Ĝ)Pα``, the Horner order, the
    preconditioners) are ntkit's and are checked against a dense eigendecomposition oracle in
    ``tests/solvers/test_stkr.py``.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.datasets import make_moons
    >>> from ntkit.kernels import RBF
    >>> from ntkit.solvers import stkr
    >>> X, y = make_moons(600, noise=0.1, random_state=0)
    >>> res = stkr(RBF(0.2), X[:20], y[:20] - 0.5, X[20:], random_state=0)   # 20 labels, 580 unlabeled
    >>> float(np.mean((res.predict(X[20:]) > 0) == y[20:])) > 0.95
    True
    """
    if isinstance(kernel, str):
        raise InvalidParameterError("stkr needs a kernel function (the transformed kernel is evaluated at new "
                                    f"points); got kernel={kernel!r}.")
    if not isinstance(kernel, Kernel) and not callable(kernel):
        raise TypeError(f"kernel must be an ntkit kernel or a callable k(A, B); got {type(kernel).__name__}.")
    from .._device import resolve_device

    placement = resolve_device(device, X, X_unlabeled, owner="stkr")
    on_device = placement.on_device and isinstance(kernel, Kernel)
    if placement.on_device and not on_device and device not in (None, "auto"):
        raise ValueError("stkr on a jax device needs an ntkit kernel (ntkit.kernels); a callable kernel runs on the "
                         "host: pass numpy arrays and device=None.")
    X = check_data(X, "X", ndim=2, allow_jax=on_device, min_rows=1)
    if X_unlabeled is not None:
        X_unlabeled = check_data(X_unlabeled, "X_unlabeled", ndim=2, allow_jax=on_device)
        if X_unlabeled.shape[1] != X.shape[1]:
            raise ValueError(f"X_unlabeled has {X_unlabeled.shape[1]} features but X has {X.shape[1]}; they must "
                             "match.")
    n = X.shape[0]
    m = 0 if X_unlabeled is None else X_unlabeled.shape[0]
    N = n + m
    y = _check_targets(y if on_device else (np.asarray(y) if is_jax_array(y) else y), n)
    transformation, eta, coefficients, n_terms, n_components, ridge = _check_options(
        transformation, eta, coefficients, n_terms, n_components, ridge, N)
    dtype = np.dtype(np.float64) if np.dtype(X.dtype) == np.float64 and (
        X_unlabeled is None or np.dtype(X_unlabeled.dtype) == np.float64) else np.dtype(np.float32)
    tol = DEFAULT_TOL[dtype] if tol is None else check_scalar(tol, "tol", "stkr", low=0.0, closed="neither")
    s = _auto(subsample_size, "subsample_size", SUBSAMPLE, 1, N)
    k = _auto(n_eigen, "n_eigen", N_EIGEN, 1, min(s, N))
    if maxiter is not None:
        maxiter = check_int(maxiter, "maxiter", "stkr", low=1)
    if verbose is None:
        verbose = bool(_config.get()["verbose"])
    rng = np.random.default_rng(_seed(random_state, "stkr"))
    one_d = y.ndim == 1

    if on_device:
        import jax

        from .._device import device_budget, to_device

        with jax.enable_x64(True):
            la = _JaxLA(placement)
            parts = [to_device(X, placement, dtype)] + ([] if m == 0 else [to_device(X_unlabeled, placement, dtype)])
            Xbar = la.xp.concatenate(parts) if len(parts) > 1 else parts[0]
            Y = la.f64(y).reshape(n, -1)
            budget = device_budget(placement.device, memory_budget)
            res = _fit(kernel, Xbar, Y, la, dtype, budget, transformation, eta, coefficients, n_terms, n_components,
                       ridge, tol, maxiter, k, s, rng, verbose)
            return _finish(res, Xbar, one_d, la, dtype, kernel, transformation, coefficients, ridge, placement)
    X = np.asarray(X)
    Xbar = np.asarray(X if m == 0 else np.concatenate([X, np.asarray(X_unlabeled)]), dtype=dtype)
    la = _HostLA()
    Y = np.asarray(y, dtype=np.float64).reshape(n, -1)
    res = _fit(kernel, Xbar, Y, la, dtype, resolve_budget(memory_budget), transformation, eta, coefficients, n_terms,
               n_components, ridge, tol, maxiter, k, s, rng, verbose)
    out = _finish(res, Xbar, one_d, la, dtype, kernel, transformation, coefficients, ridge, placement)
    if placement.jax_out:  # jax data with a callable kernel: host maths, jax results on the data's device
        import jax

        return out._replace(weights=jax.device_put(out.weights, placement.device),
                            centers=jax.device_put(out.centers, placement.device),
                            dual_coef=jax.device_put(out.dual_coef, placement.device))
    return out


class _Fit(NamedTuple):
    theta: Any
    alpha: Any
    eta: float | None
    coefficients: tuple | None
    eigenvalues: Any
    history: list
    n_iter: int


def _finish(res, Xbar, one_d, la, dtype, kernel, transformation, coefficients, ridge, placement):
    theta, alpha = res.theta, res.alpha
    if one_d:
        theta, alpha = theta[:, 0], alpha[:, 0]
    centers = Xbar if placement.jax_out or not is_jax_array(Xbar) else np.asarray(Xbar)
    lam = None if res.eigenvalues is None else la.out(res.eigenvalues, dtype)
    return STKRResult(la.out(theta, dtype), centers, la.out(alpha, dtype), int(alpha.shape[0]), transformation,
                      res.coefficients, res.eta, lam, res.history, res.n_iter, kernel, float(ridge))


def _fit(kernel, Xbar, Y, la, dtype, budget, transformation, eta, coefficients, n_terms, n_components, ridge, tol,
         maxiter, k, s, rng, verbose) -> _Fit:
    xp = la.xp
    N, n = Xbar.shape[0], Y.shape[0]
    op = _operator(kernel, Xbar, n, dtype, budget, la)
    nb = n * ridge

    if transformation == "kernel_pca":
        d = n_components
        lam, V, hist = _eigenpairs(op, kernel, Xbar, d, subsample=s, rng=rng, la=la, refine=True, tol=tol,
                                   maxiter=EIGEN_MAXITER if maxiter is None else maxiter, verbose=verbose,
                                   what="kernel PCA")
        floor = float(lam[0]) * 1e3 * float(np.finfo(dtype).eps) if len(lam) else 0.0
        keep = np.asarray(lam > floor)
        if not keep.all():
            warnings.warn(f"stkr: {int((~keep).sum())} of the top {d} eigenvalues of K/N are ≈ 0 (below "
                          f"{floor:.1e}); their eigenfunctions are dropped from the kernel-PCA representation "
                          f"(n_components={d} exceeds the numerical rank).", _linalg.NumericalWarning, stacklevel=3)
            lam, V = lam[keep], V[:, keep]
        Psi = math.sqrt(N) * V[:n]                                   # ψ̂_i(x_j) on the labeled rows
        w = la.solve_spd(la.mm(Psi.T, Psi) + nb * xp.eye(Psi.shape[1]), la.mm(Psi.T, Y))
        theta = la.mm(V, w / (math.sqrt(N) * lam)[:, None])          # f(x) = K(x, X̄) θ = ψ̂(x)ᵀ ŵ
        alpha = (Y - la.mm(Psi, w)) / nb                             # = (Ψ_lΨ_lᵀ + nβI)⁻¹ y
        return _Fit(theta, alpha, None, None, lam, hist, max(1, len(hist)))  # n_iter 1: one direct eigh

    truncated = transformation == "inverse_laplacian" and n_terms is not None
    if truncated and not isinstance(eta, str):  # s_q(λ) = Σ_{p≤q} η^{p-1} λ^p: a polynomial, no inner solve
        transformation, coefficients = "polynomial", _series(eta, n_terms)
    lam, V, _ = _eigenpairs(op, kernel, Xbar, k, subsample=s, rng=rng, la=la, refine=True, tol=0.0,
                            maxiter=1, verbose=False, what="preconditioner", warn=False)
    pos = lam > 0
    lam, V = lam[pos], V[:, pos]
    inner = None
    if transformation == "inverse_laplacian":
        if isinstance(eta, str):
            rho, lam_max = _lambda_max(op, la)
            eta = ETA_FRACTION / lam_max if lam_max > 0 else 0.0
        else:  # the top Ritz value is ≤ λ_max: η·ρ ≥ 1 is certainly invalid (the inner CG catches the rest)
            rho = lam_max = float(lam[0]) if len(lam) else 0.0
            if eta * rho >= 1.0:
                raise ValueError(f"eta={eta:.6g} is too large for the inverse Laplacian s(λ) = λ/(1 − ηλ): it needs "
                                 f"η·λ_max < 1, and λ_max of K/N on these points is at least {rho:.6g} (η < "
                                 f"{1 / rho:.6g}); eta='auto' uses {ETA_FRACTION}/λ_max.")
        eta = float(eta)
        if truncated:
            transformation, coefficients = "polynomial", _series(eta, n_terms)
        else:
            lam = xp.minimum(lam, (1.0 - 1e-3) / eta) if eta > 0 else lam  # ηλ < 1 in the preconditioner
            g = eta * lam / (1.0 - eta * lam)
            inner_tol = max(tol * (1.0 - min(eta * lam_max, 1 - 1e-6)) / 10.0, 10 * float(np.finfo(np.float64).eps))
            inner_max = INNER_FACTOR * MAXITER

            def negative():
                raise ValueError(f"eta={eta:.6g} is too large for the inverse Laplacian: I − η·K/N is not positive "
                                 f"definite on these points (η·λ_max ≥ 1); use a smaller eta or eta='auto'.")

            def inner(u):
                th, h = _pcg(lambda v: v - eta * op.full(v), u, lambda r: r + la.mm(V, g[:, None] * la.mm(V.T, r)),
                             inner_tol, inner_max, la, on_negative=negative)
                if h and h[-1] > inner_tol:
                    warnings.warn(f"stkr: the inner solve with I − ηK/N stopped at relative residual {h[-1]:.2e} > "
                                  f"{inner_tol:.1e} after {len(h)} iterations; raise maxiter.",
                                  _linalg.NumericalWarning, stacklevel=5)
                return th
    s_lam = _s_of(transformation, coefficients, eta, lam)
    U = V[:n]
    C = nb / N * xp.diag(1.0 / s_lam) + la.mm(U.T, U)      # Woodbury core of (N U s(Λ) Uᵀ + nβ I)⁻¹

    def precond(r):
        return (r - la.mm(U, la.solve_spd(C, la.mm(U.T, r)))) / nb

    def apply_A(a):
        th = _apply_r(op, a, transformation, coefficients, la, inner)
        Ka = op.ll(coefficients[0] * a) if transformation == "polynomial" and len(coefficients) == 1 else op.rows(th)
        return Ka + nb * a

    alpha, hist = _pcg(apply_A, Y, precond, tol, MAXITER if maxiter is None else maxiter, la, verbose=verbose)
    theta = _apply_r(op, alpha, transformation, coefficients, la, inner)
    Ka = op.ll(coefficients[0] * alpha) if transformation == "polynomial" and len(coefficients) == 1 else op.rows(theta)
    r = Y - Ka - nb * alpha
    bn = xp.sqrt(xp.sum(Y * Y, axis=0))
    true = float(xp.max(xp.sqrt(xp.sum(r * r, axis=0)) / xp.where(bn > 0, bn, 1.0)))
    n_iter = len(hist)
    if hist and hist[-1] > tol:
        warnings.warn(f"stkr: conjugate gradients stopped after {n_iter} iterations at relative residual {true:.2e} "
                      f"> tol={tol:.1e}; raise maxiter (or the ridge).", _linalg.NumericalWarning, stacklevel=3)
    hist = hist + [true]
    plain = isinstance(eta, str) or (transformation == "polynomial" and not truncated)
    return _Fit(theta, alpha, None if plain else eta, coefficients if transformation == "polynomial" else None, lam,
                hist, n_iter)


def _series(eta, n_terms):
    """(π_1, …, π_q) = (1, η, …, η^{q-1}) of the truncated inverse Laplacian (trailing zeros dropped)."""
    c = [float(eta) ** p for p in range(n_terms)]
    while len(c) > 1 and c[-1] == 0.0:
        c.pop()
    return tuple(c)
