"""EigenPro 2 (centers = data) and EigenPro 3 (centers given): preconditioned SGD for kernel models."""

from __future__ import annotations

import contextlib
import json
import os
import time
import warnings
from typing import Any, NamedTuple

import numpy as np
import scipy.linalg

from .. import _linalg
from .._blas import matmul
from .._config import _config, resolve_budget
from .._validation import InvalidParameterError, check_data, check_int, check_scalar, is_jax_array
from .._warnings import PerformanceWarning
from ..kernels import Kernel
from ._access import KernelAccess, idx
from ._eigen import _eig_of_gram

__all__ = ["eigenpro", "EigenProResult", "eigenpro_parameters"]

#: Exponent on the eigenvalue ratio in EigenPro 2's preconditioner (Ma & Belkin 2019):
#: it compensates for the Nyström estimate's bias on the tail eigenvalue.
ALPHA_EP2 = 0.95
#: Points used to report the training loss each epoch.
EVAL_POINTS = 5000


class EigenProResult(NamedTuple):
    """The fitted kernel model ``f(x) = Σ_j weights[j] k(x, centers[j])`` and how it was fitted.

    ``history`` has one dict per epoch: ``epoch``, ``train_mse`` (on up to 5000 training
    points), ``val_mse`` (when validation data was given), ``seconds`` (since the first epoch
    began) and ``epoch_seconds`` (this epoch's steps, its SVRG snapshot and its training loss;
    not the validation loss).
    """

    weights: np.ndarray
    centers: Any  # training data (EigenPro 2) or the centers (EigenPro 3); None for a precomputed Gram
    history: list
    batch_size: int
    learning_rate: float  # the step applied per example: α_B ← α_B − learning_rate · residual
    n_eigen: int
    kernel: Any
    ridge: float

    def predict(self, X):
        """``K(X, centers) @ weights``."""
        if isinstance(self.kernel, str):
            raise ValueError("a model fitted on a precomputed Gram matrix predicts with K_test @ weights, where "
                             "K_test = K(X_test, X_train).")
        return _predict(self.kernel, self.centers, self.weights, X)


def _predict(kernel, centers, weights, X):
    """``K(X, centers) @ weights``: on the device of jax arrays (jax out for jax ``X``), else on the host."""
    if isinstance(kernel, Kernel) and (is_jax_array(X) or is_jax_array(weights) or is_jax_array(centers)):
        from .._device import _array_device
        from ..ops import kernel_matvec

        X = check_data(X, "X", ndim=2)
        jax_out = is_jax_array(X)
        ref = next(a for a in (X, weights, centers) if is_jax_array(a))
        dev = _array_device(ref)
        import jax

        wide = any(np.dtype(a.dtype) == np.float64 for a in (X, weights))
        with _x64_scope() if wide else _nullcontext():  # (float64 host arrays must not be cut to float32)
            put = [a if is_jax_array(a) else jax.device_put(np.asarray(a), dev) for a in (X, centers, weights)]
            out = kernel_matvec(kernel, put[0], put[1], put[2])
        return out if jax_out else np.asarray(out)
    jax_out = is_jax_array(X)
    Xh = check_data(X, "X", ndim=2, allow_jax=False)
    acc = KernelAccess(kernel, _host(centers))
    out = acc.matvec(Xh, idx(np.arange(len(centers))), _host(weights))
    if jax_out:  # a callable kernel on jax data: computed on the host, given back on X's device
        from .._device import _array_device

        return _to_jax(out, _array_device(X))
    return out


def _nullcontext():
    import contextlib

    return contextlib.nullcontext()


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


def _seed(random_state):
    if random_state is None:
        return int(np.random.SeedSequence().entropy % (2**32))
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(0, 2**31 - 1))
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(0, 2**31 - 1))
    return check_int(random_state, "random_state", "eigenpro", low=0)


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


class _Data:
    """Explicit data rows (EigenPro 3 streams X by batches; X may be a memory map)."""

    def __init__(self, X):
        self.X = X

    def at(self, rows):
        return np.asarray(self.X[rows])


def _check_common(X, y, ridge, epochs, kernel):
    if isinstance(kernel, str):
        X = check_data(X, "X", ndim=2, allow_jax=False)
        if X.shape[0] != X.shape[1]:
            raise ValueError(f"with kernel='precomputed', X must be the square (n, n) Gram matrix; got {X.shape}.")
        d = np.diagonal(X)
        if np.any(d < 0) or not np.allclose(X[: min(200, len(X)), : min(200, len(X))],
                                            X[: min(200, len(X)), : min(200, len(X))].T,
                                            rtol=1e-5, atol=1e-8 * max(1.0, float(np.abs(d).max(initial=0)))):
            raise ValueError("the precomputed Gram matrix is not symmetric positive semi-definite (negative "
                             "diagonal or asymmetric entries); pass K = (K + K.T) / 2 of a valid kernel.")
    elif not isinstance(X, np.memmap) and not getattr(X, "_ntkit_sharded", False):  # shards are checked on entry
        X = check_data(X, "X", ndim=2, allow_jax=False, min_rows=1)
    if y is None:
        raise ValueError("y is required; got None.")
    y = np.asarray(y)
    if y.ndim not in (1, 2):
        raise ValueError(f"y must have shape (n,) or (n, n_outputs); got {y.shape}.")
    if y.shape[0] != X.shape[0]:
        raise ValueError(f"y has {y.shape[0]} rows but X has {X.shape[0]}; they must match.")
    if y.dtype.kind not in "fiu" or not np.isfinite(y).all():
        raise ValueError("y must be finite numbers (no NaN or infinity).")
    ridge = check_scalar(ridge, "ridge", "eigenpro", low=0.0)
    epochs = check_int(epochs, "epochs", "eigenpro", low=1)
    return X, y, ridge, epochs


def eigenpro(kernel, X, y, *, centers=None, ridge=0.0, n_eigen="auto", subsample_size="auto", batch_size="auto",
             epochs=10, tol=None, X_val=None, y_val=None, checkpoint=None, random_state=None, verbose=None,
             memory_budget=None, projection="auto", callback=None, init=None, device=None, stream="auto"):
    r"""Fit a kernel model by EigenPro: preconditioned SGD with analytic batch and step sizes.

    - ``centers=None`` → **EigenPro 2** (Ma & Belkin 2019): the model lives on the training
      points and the iteration solves ``(K + ridge·I) α = y``.
    - ``centers`` given (p, d) → **EigenPro 3** (Abedsoltan et al. 2023): the model lives on p
      centers; each step preconditions the batch's functional gradient with the data
      preconditioner and projects it onto span{k(z_j, ·)}; model memory O(p), data read by
      batches (``X`` may be a ``numpy.memmap``). The preconditioner is applied to the
      projected gradient, so the iteration converges to the exact least-squares solution
      ``argmin_α ‖K(X, Z) α − y‖²`` (+ ``ridge·αᵀK(Z,Z)α``).

    Parameters
    ----------
    kernel : ntkit kernel, callable ``k(A, B) -> (len(A), len(B))`` or ``"precomputed"``
        With ``"precomputed"`` (EigenPro 2 only), ``X`` is the (n, n) Gram matrix.
    X : array (n, d)
    y : array (n,) or (n, c)
    centers : array (p, d), optional
    ridge : float, default=0
    n_eigen : int or "auto"
        Preconditioning level q. "auto": the largest q whose critical batch size fits the
        memory budget (see :func:`eigenpro_parameters`).
    subsample_size : int or "auto"
        Nyström subsample for the preconditioner: min(n, 2000) below 100 000 points, else 12 000
        (EigenPro 2) or 5000 (EigenPro 3).
    batch_size : int or "auto"
        "auto": the critical batch size ``β/λ*`` (capped by memory).
    epochs : int
    tol : float, optional
        Stop when the training MSE divided by mean(y²) falls below ``tol``.
    X_val, y_val : validation data for the history.
    checkpoint : path, optional
        State written atomically at each epoch end; an existing file resumes the run (same
        data, seed and settings give the same final weights as an uninterrupted run).
    random_state : int, optional
    verbose : bool, optional
        Progress bar over batches.
    memory_budget : int or str, optional
    projection : {"auto", "cholesky", "eigenpro"}
        EigenPro 3's projection onto the centers: a Cholesky factor of K(Z, Z) (exact; "auto"
        up to 15 000 centers) or an inner EigenPro 2 on the centers (inexact, O(p) memory).
    callback : callable, optional
        ``callback(epoch, batch_index, weights)`` after every batch.
    init : array (p,) or (p, c), optional
        Starting weights (warm start); zeros by default.
    device : None, "auto", "cpu", "gpu" or jax.Device
        Where the iteration runs (the rule of :mod:`ntkit._device`). ``None`` follows the data:
        jax arrays run on their device and the result holds jax arrays there; numpy data run
        on the host engines (or on the ``ntkit.config_context(device=...)`` device). On a
        device, every step is one jit-compiled function of device arrays (no host round trip
        within an epoch; one scalar, the training loss, is read per epoch); a host ``X``
        (array or ``numpy.memmap``) can be streamed to the device batch by batch (EigenPro 3,
        see ``stream``). The device path needs an ntkit kernel and, for
        EigenPro 3, the Cholesky projection; it reaches the same iterates as the host path up
        to rounding.
    stream : {"auto", True, False}
        EigenPro 3 on a device with ``X`` on the host (a numpy array or ``numpy.memmap``):
        ``True`` streams batches of rows to the device (one batch ahead of the step that uses
        it) instead of moving ``X`` there; ``"auto"`` streams when ``X`` would take more than
        half of the device's free memory (where the device does not report it, half of the
        memory budget). jax ``X`` is already on the device and never streams.

    Returns
    -------
    EigenProResult

    Examples
    --------
    >>> import numpy as np
    >>> from ntkit.kernels import Laplace
    >>> from ntkit.solvers import eigenpro
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(500, 5)); y = np.sin(X[:, 0])
    >>> res = eigenpro(Laplace(3.0), X, y, epochs=20, random_state=0)
    >>> bool(res.history[-1]["train_mse"] < 1e-3 * np.mean(y**2))
    True
    """
    from .._device import resolve_device

    placement = resolve_device(device, X, centers, X_val, owner="eigenpro")
    if projection not in ("auto", "cholesky", "eigenpro"):
        raise InvalidParameterError(f"projection must be 'auto', 'cholesky' or 'eigenpro'; got {projection!r}.")
    if not (isinstance(stream, str) and stream == "auto") and stream not in (True, False):
        raise InvalidParameterError(f"stream must be 'auto', True or False; got {stream!r}.")
    # the device path needs an ntkit kernel and (EigenPro 3) the Cholesky projection; otherwise jax data
    # are computed on the host (and given back as jax arrays), and an explicitly named device is an error
    on_device = placement.on_device and isinstance(kernel, Kernel) and not (centers is not None and
                                                                            projection == "eigenpro")
    if placement.on_device and not on_device and device not in (None, "auto"):
        raise ValueError("eigenpro on a jax device needs an ntkit kernel (ntkit.kernels) and, with centers, "
                         "projection='auto' or 'cholesky'; a callable or 'precomputed' kernel, or the inexact "
                         "projection, runs on the host: pass device=None.")
    if on_device:
        X, y, ridge, epochs = _check_device_common(X, y, ridge, epochs)
    else:
        X, y, ridge, epochs = _check_common(_host(X), _host(y), ridge, epochs, kernel)
    if isinstance(kernel, str) and centers is not None:
        raise ValueError("kernel='precomputed' supports EigenPro 2 only (centers=None); pass a kernel function "
                         "to use centers.")
    dtype = np.dtype(np.float64) if np.dtype(X.dtype) == np.float64 else np.dtype(np.float32)
    y2 = y.astype(dtype).reshape(y.shape[0], -1) if is_jax_array(y) else np.asarray(y, dtype=dtype).reshape(len(y), -1)
    single = y.ndim == 1
    if centers is not None:
        centers = check_data(centers, "centers", ndim=2, allow_jax=on_device, min_rows=1)
        if centers.shape[1] != X.shape[1]:
            raise ValueError(f"centers have {centers.shape[1]} features but X has {X.shape[1]}; they must match.")
        centers = centers.astype(dtype) if is_jax_array(centers) else np.asarray(centers, dtype=dtype)
    if X_val is not None:
        X_val = check_data(X_val, "X_val", ndim=2, allow_jax=on_device)
        if y_val is None:
            raise ValueError("X_val was given without y_val.")
        if not isinstance(kernel, str) and X_val.shape[1] != X.shape[1]:
            raise ValueError(f"X_val has {X_val.shape[1]} features but X has {X.shape[1]}; they must match.")
        if y_val.shape[0] != X_val.shape[0]:
            raise ValueError(f"y_val has {y_val.shape[0]} rows but X_val has {X_val.shape[0]}; they must match.")
        y_val = (y_val.astype(dtype).reshape(X_val.shape[0], -1) if is_jax_array(y_val) else
                 np.asarray(y_val, dtype=dtype).reshape(len(X_val), -1))
    if checkpoint is not None and random_state is None:
        raise ValueError("checkpoint needs an explicit random_state: resuming must replay the same batches and "
                         "preconditioner.")
    seed = _seed(random_state)
    if verbose is None:
        verbose = bool(_config.get()["verbose"])
    if on_device:
        from .._device import device_budget

        budget = device_budget(placement.device, memory_budget)
    else:
        budget = resolve_budget(memory_budget)
    n = X.shape[0]
    c = y2.shape[1]
    if subsample_size == "auto":  # EigenPro 2's defaults; EigenPro 3's Nyström size (5000) above 10^5
        s = min(n, 2000 if n < 100_000 else (12_000 if centers is None else 5000))
    else:
        s = check_int(subsample_size, "subsample_size", "eigenpro", low=1)
        s = min(s, n)
    if n_eigen != "auto":
        n_eigen = check_int(n_eigen, "n_eigen", "eigenpro", low=1, high=max(1, s - 1))
    if batch_size != "auto":
        batch_size = check_int(batch_size, "batch_size", "eigenpro", low=1)
    p = n if centers is None else len(centers)
    d = X.shape[1] if not isinstance(kernel, str) else 0
    per_row = dtype.itemsize * (s + 2 * p + 2 * d + 4 * c + 16) if centers is not None else \
        dtype.itemsize * (s + 2 * d + 4 * c + 16)
    max_batch = max(1, min(n, int(budget // (2 * per_row))))
    with contextlib.ExitStack() as stack:  # the device engines run in a 64-bit jax scope, always exited
        if on_device:
            import jax

            caller_x64 = bool(jax.config.jax_enable_x64)
            stack.enter_context(_x64_scope())
            engine = _device_engine(kernel, X, y2, centers, placement, dtype, s, n_eigen, max_batch, ridge, seed,
                                    batch_size, budget, projection, stream)
            if callback is not None:  # the caller's code runs with the caller's x64 setting
                user_callback = callback

                def callback(epoch, b, W):
                    with jax.enable_x64(caller_x64):
                        user_callback(epoch, b, W)
        else:
            engine = _HostEngine(kernel, X, y2, centers, dtype, s, n_eigen, max_batch, ridge, seed, batch_size,
                                 budget, projection)
        stack.callback(engine.close)
        if batch_size == "auto" and engine.bs == max_batch < min(n, 256):
            warnings.warn(
                f"eigenpro: memory_budget={budget} bytes caps the batch at {max_batch} rows (each row of a batch needs "
                f"{2 * per_row} bytes of workspace), below EigenPro's critical batch size: each step does little "
                "work and the fit will be slow. Raise memory_budget (or leave it to the default).",
                PerformanceWarning, stacklevel=2)
        W, history, lr_now = _run(engine, n, p, c, dtype, seed, epochs, tol, y2, X_val, y_val, checkpoint, verbose,
                                  callback, init, ridge, centers is not None)
        weights = engine.finish(W)
        weights = weights[:, 0] if single else weights
    ctr = centers if centers is not None else (None if isinstance(kernel, str) else X)
    if placement.jax_out and not is_jax_array(weights):
        weights = _to_jax(weights, placement.device)
    elif not placement.jax_out and is_jax_array(weights):  # numpy in, numpy out
        weights = np.asarray(weights)
    return EigenProResult(weights, ctr, history, int(engine.bs), float(lr_now), int(engine.q), kernel, float(ridge))


def _host(a):
    """numpy view of a jax array (the host engines' input); anything else unchanged."""
    return np.asarray(a) if is_jax_array(a) else a


def _to_jax(a, device):
    import jax

    return jax.device_put(np.asarray(a), device)


def _check_device_common(X, y, ridge, epochs):
    """:func:`_check_common` for data that may be jax arrays (checked where they live)."""
    if not isinstance(X, np.memmap):
        X = check_data(X, "X", ndim=2, min_rows=1)
    if y is None:
        raise ValueError("y is required; got None.")
    if not is_jax_array(y):
        y = np.asarray(y)
    if y.ndim not in (1, 2):
        raise ValueError(f"y must have shape (n,) or (n, n_outputs); got {tuple(y.shape)}.")
    if y.shape[0] != X.shape[0]:
        raise ValueError(f"y has {y.shape[0]} rows but X has {X.shape[0]}; they must match.")
    if np.dtype(y.dtype).kind not in "fiu":
        raise ValueError("y must be finite numbers (no NaN or infinity).")
    if is_jax_array(y):
        import jax.numpy as jnp

        finite = bool(jnp.isfinite(y).all())
    else:
        finite = bool(np.isfinite(y).all())
    if not finite:
        raise ValueError("y must be finite numbers (no NaN or infinity).")
    ridge = check_scalar(ridge, "ridge", "eigenpro", low=0.0)
    epochs = check_int(epochs, "epochs", "eigenpro", low=1)
    return X, y, ridge, epochs


def _device_engine(kernel, X, y2, centers, placement, dtype, s, n_eigen, max_batch, ridge, seed, batch_size, budget,
                   projection, stream):
    from . import _eigenpro_device as dev

    if projection == "eigenpro":
        raise ValueError("projection='eigenpro' (the inexact projection) runs on the host only; on a device "
                         "EigenPro 3 projects with the Cholesky factor of K(centers, centers): use "
                         "projection='auto' or 'cholesky', or device=None with numpy data.")
    if centers is None:
        eng = dev.DeviceEP2(kernel, X, y2, placement=placement, dtype=dtype, s=s, n_eigen=n_eigen,
                            max_batch=max_batch, ridge=ridge, seed=seed, batch_size=batch_size, budget=budget,
                            alpha=ALPHA_EP2, parameters=_parameters)
    else:
        p = centers.shape[0]
        free = _device_free(placement.device)
        if free is not None and 3 * p * p * 8 > free:
            raise MemoryError(
                f"EigenPro 3 on the device keeps K(centers, centers)'s Cholesky factor and its inverse (float64, "
                f"{2 * p * p * 8 / 2**30:.1f} GiB for p = {p}, plus a p × p temporary) but the device has "
                f"{free / 2**30:.1f} GiB free; use fewer centers, or run on the host (device=None, numpy data) "
                "with projection='eigenpro'.")
        if stream == "auto":
            x_bytes = X.shape[0] * (X.shape[1] + 1) * dtype.itemsize
            room = _device_free(placement.device)
            stream = not is_jax_array(X) and x_bytes > (room if room is not None else budget) // 2
        eng = dev.DeviceEP3(kernel, X, y2, centers, placement=placement, dtype=dtype, s=s, n_eigen=n_eigen,
                            max_batch=max_batch, ridge=ridge, seed=seed, batch_size=batch_size, budget=budget,
                            parameters=_parameters, stream=bool(stream) and not is_jax_array(X))
    eng.finish = lambda W: W[: eng.n] if centers is None else W
    return eng


def _device_free(device):
    """Free bytes in the device's XLA pool, or None when the device does not report it (jax CPU)."""
    try:
        stats = device.memory_stats()
    except Exception:  # noqa: BLE001
        return None
    if not stats or "bytes_limit" not in stats:
        return None
    return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))


def _x64_scope():
    import jax

    return jax.enable_x64(True)


class _HostEngine:
    """The host (numpy / native) EigenPro 2 and 3 behind the engine interface of :func:`_run`."""

    def __init__(self, kernel, X, y2, centers, dtype, s, n_eigen, max_batch, ridge, seed, batch_size, budget,
                 projection):
        self.dtype = dtype
        n = X.shape[0]
        self.n = n
        self.p = n if centers is None else len(centers)
        acc = KernelAccess(kernel, X, memory_budget=budget, dtype=dtype)
        if centers is None:
            pc, self.bs, self.lr = _preconditioner(acc, np.arange(n), n, s, n_eigen, max_batch, ALPHA_EP2, ridge,
                                                   np.random.default_rng([seed, 0]), 2, batch_size)
            self.q = pc.q
            self._step = _ep2_stepper(acc, X, y2, pc, ridge, n)
            self._predict = lambda W, rows: acc.matvec(idx(rows), idx(np.arange(n)), W)  # noqa: E731
            self._predict_val = lambda W, Xv: acc.matvec(Xv, idx(np.arange(n)), W)  # noqa: E731
        else:
            bind, self.q, self.bs, self.lr = _ep3_setup(acc, X, centers, s, n_eigen, max_batch, ridge, projection,
                                                        budget, seed, batch_size)
            self._step = bind(y2)
            p = len(centers)
            cacc = KernelAccess(kernel, centers, memory_budget=budget, dtype=dtype)
            self._predict = lambda W, rows: cacc.matvec(np.asarray(X[rows], dtype=dtype), idx(np.arange(p)), W)  # noqa
            self._predict_val = lambda W, Xv: cacc.matvec(Xv, idx(np.arange(p)), W)  # noqa: E731
        self.has_vr = hasattr(self._step, "snapshot")
        self.y2 = y2

    def zeros(self, c):
        return np.zeros((self.p, c), self.dtype)

    def from_host(self, W):
        return np.array(W, dtype=self.dtype)

    def to_host(self, W):
        return W

    def copy(self, W):
        return W.copy()

    def snapshot(self, W):
        self._step.snapshot(W)

    def epoch(self, W, order, lr, *, callback=None, bar=None, epoch=0):
        n = len(order)
        for b, i in enumerate(range(0, n, self.bs)):
            self._step(W, np.sort(order[i:i + self.bs]), lr)
            if callback is not None:
                callback(epoch, b, W)
            if bar is not None:
                bar.update(1)
        return W

    def mse_rows(self, W, rows):
        return float(np.mean(np.square(self._predict(W, rows) - self.y2[rows])))

    def mse_val(self, W, X_val, y_val):
        return float(np.mean(np.square(self._predict_val(W, X_val) - y_val)))

    def finish(self, W):
        return W

    def close(self):
        pass


def _run(engine, n, p, c, dtype, seed, epochs, tol, y2, X_val, y_val, checkpoint, verbose, callback, init, ridge,
         has_centers):
    """The epoch loop shared by every engine: history, roll-back, variance reduction, checkpoints."""
    eval_idx = np.sort(np.random.default_rng([seed, 1]).choice(n, size=min(n, EVAL_POINTS), replace=False))
    y_host = np.asarray(y2) if not is_jax_array(y2) else None
    y_scale = float(np.mean(np.square(y_host))) if y_host is not None else float(_mean_sq(y2))
    y_scale = y_scale or 1.0
    bs, lr, q = int(engine.bs), float(engine.lr), int(engine.q)
    meta = {"n": int(n), "p": int(p), "c": int(c), "dtype": dtype.str, "seed": int(seed), "batch_size": bs,
            "lr": lr, "q": q, "ridge": ridge, "centers": has_centers}
    W_host = None
    if init is not None:
        init_a = np.asarray(init, dtype=dtype)
        if init_a.size != p * c:
            raise ValueError(f"init must have {p} rows (one weight per center) and {c} outputs.")
        if not np.isfinite(init_a).all():
            raise ValueError("init contains NaN or infinity; pass finite starting weights (or None for zeros).")
        W_host = init_a.reshape(p, -1).copy()
    state = {"epoch": 0, "history": []}
    if checkpoint is not None and os.path.exists(checkpoint):
        state = _load_checkpoint(checkpoint, meta)
        W_host = state["weights"]
    W = engine.from_host(W_host) if W_host is not None else engine.zeros(c)
    history = state["history"]
    if history and tol is not None and history[-1]["train_mse"] / y_scale < tol:
        epochs = 0  # the checkpointed run had already converged: nothing more to do
    lr_now = float(state.get("lr_now", lr))
    vr_on = bool(state.get("vr_on", False))
    if history:
        prev_mse = history[-1]["train_mse"]
    else:  # the loss of the starting weights (zeros, or init for a warm start)
        prev_mse = engine.mse_rows(W, eval_idx) if W_host is not None and np.any(W_host) else y_scale
    t_start = time.perf_counter()
    for epoch in range(state["epoch"], epochs):
        order = np.random.default_rng([seed, 2, epoch]).permutation(n)
        bar = None
        if verbose:
            from tqdm.auto import tqdm

            bar = tqdm(total=-(-n // bs), desc=f"EigenPro epoch {epoch + 1}/{epochs}", leave=False)
        W_start = engine.copy(W)
        t_epoch = time.perf_counter()
        if vr_on and engine.has_vr:
            engine.snapshot(W)
        W = engine.epoch(W, order, lr_now, callback=callback, bar=bar, epoch=epoch)
        if bar is not None:
            bar.close()
        train_mse = engine.mse_rows(W, eval_idx)  # (on a device: waits for the epoch's last step)
        now = time.perf_counter()
        rec = {"epoch": epoch + 1, "train_mse": train_mse, "seconds": now - t_start,
               "epoch_seconds": now - t_epoch}
        if not np.isfinite(train_mse) or train_mse > 2 * max(prev_mse, 1e-30 * y_scale):
            # the spectrum estimate under-rated the curvature: undo this epoch, halve the step
            W = W_start
            lr_now /= 2
            if lr_now < lr * 2.0**-20:
                raise FloatingPointError(
                    f"EigenPro diverged (training MSE {train_mse:.3g}) even with the step reduced 2^20-fold; check "
                    "the kernel (positive definite? finite?) and the data scale.")
            rec.update(train_mse=prev_mse, rolled_back=True, learning_rate=lr_now)
        else:
            # plain SGD stalls at a noise floor when the model cannot interpolate (p < n):
            # once the loss stops falling, switch EigenPro 3 to variance-reduced steps
            if not vr_on and train_mse > 0.9 * prev_mse and engine.has_vr:
                vr_on = True
                rec["variance_reduction"] = True
            prev_mse = train_mse
        if X_val is not None:
            rec["val_mse"] = engine.mse_val(W, X_val, y_val)
        history.append(rec)
        if verbose:
            print(f"epoch {epoch + 1}: train mse {train_mse:.4g}" +
                  (f", val mse {rec['val_mse']:.4g}" if X_val is not None else ""))
        if checkpoint is not None:
            _save_checkpoint(checkpoint, engine.to_host(W), epoch + 1, history, meta, lr_now, vr_on)
        if tol is not None and train_mse / y_scale < tol:
            break
    return W, history, lr_now


def _mean_sq(a):
    import jax
    import jax.numpy as jnp

    return jax.device_get(jnp.mean(jnp.square(a.astype(jnp.float64) if a.dtype == jnp.float64 else a)))


def _ep2_stepper(acc, X, y, pc, ridge, n):
    allp = idx(np.arange(n))
    S = idx(pc.S)
    ED = pc.E * pc.D if pc.q > 1 else None

    def step(W, B, lr):
        g = acc.matvec(idx(B), allp, W) - y[B]
        if ridge:
            g += ridge * W[B]
        W[B] -= lr * g
        if ED is not None:
            Ksb = acc.block(S, idx(B))
            W[pc.S] += lr * matmul(ED, matmul(pc.E.T, matmul(Ksb, g)))

    return step


def _ep3_setup(acc, X, Z, s, n_eigen, max_batch, ridge, projection, budget, seed, batch_size):
    """EigenPro 3's step on centers Z: ``(step, q, batch_size, lr)``.

    With ``projection="cholesky"`` (K(Z, Z) = L Lᵀ) the preconditioner is built in the span of
    the centers: the top eigenpairs of ``L⁻¹ K(Z, X_S) K(X_S, Z) L⁻ᵀ / s`` (the data operator
    restricted to span{k(z_j, ·)}, from the Nyström subsample) via an SVD of
    ``L⁻¹ K(Z, X_S) / √s``. A step projects the batch's functional gradient onto the centers
    (θ₀ = K_ZZ⁻¹ K_ZB r) and flattens the top q − 1 directions:
    ``θ = θ₀ − V diag(1 − λ_q/λ_i) Vᵀ K_ZZ θ₀`` with K_ZZ-orthonormal ``V = L⁻ᵀ U``. The map
    from gradient to step is positive definite, so the fixed point is the exact least-squares
    solution, and λ_q bounds the preconditioned curvature, so ``batch = β/λ_q`` with step
    ``1/(2β)`` per example is stable. With ``projection="eigenpro"`` (no p×p factor) the
    paper's data preconditioner (from the subsample) is applied to the batch gradient after an
    inexact projection onto the centers (two epochs of EigenPro 2), and its correction is
    projected the same way.
    """
    dtype = acc.dtype
    p = len(Z)
    n = X.shape[0]
    cacc = KernelAccess(acc.kernel, Z, memory_budget=budget, dtype=dtype)
    if projection == "auto":
        projection = "cholesky" if p <= 15_000 and 2 * p * p * 8 <= budget else "eigenpro"
    rng = np.random.default_rng([seed, 0])
    if projection == "cholesky":
        S = np.sort(rng.choice(n, size=s, replace=False))
        Xs = np.asarray(X[S], dtype=dtype)
        beta = acc.diag_max(Xs) + ridge / n  # the ridge adds ridge/n per example in the centre coordinates
        # crash-safe at any p; jitter with a NumericalWarning when the centers make K_ZZ singular
        try:
            L, _ = _linalg.cholesky(cacc.block(Z, Z).astype(np.float64), overwrite_a=True, stacklevel=4,
                                    rebuild=lambda: cacc.block(Z, Z).astype(np.float64),
                                    what="K(centers, centers) (duplicate centers?)")
        except np.linalg.LinAlgError as e:
            raise ValueError(f"EigenPro 3 projects onto the span of the centers, but {e} (the kernel is zero or not "
                             "positive semi-definite on centers: e.g. all-zero centers with a dot-product kernel)") \
                from None
        G = cacc.block(Z, Xs).astype(np.float64)
        with _linalg.one_blas_thread():  # bit-reproducible triangular solves (see ntkit._linalg)
            G = scipy.linalg.solve_triangular(L.T, G, lower=False, trans="T", overwrite_b=True, check_finite=False)
        G /= np.sqrt(s)
        k_max = min(s, p, 401) if n_eigen == "auto" else min(s, p, int(n_eigen) + 1)
        # top eigenpairs of G Gᵀ (p × p): directly when p ≤ s, else from the s × s Gram Gᵀ G (same
        # nonzero eigenvalues) as U = G W / σ — the cheaper of the two factorisations
        M = matmul(G, G.T) if p <= s else matmul(G.T, G)
        w, Wv = _linalg.eigh(M, subset_by_index=[M.shape[0] - k_max, M.shape[0] - 1], overwrite_a=True)
        del M
        order = np.argsort(w)[::-1]
        w, Wv = np.maximum(w[order], 0.0), Wv[:, order]
        pos = w > 1e-14 * max(w[0], 1e-300)
        w, Wv = w[pos], Wv[:, pos]
        if len(w) == 0:
            raise ValueError("the kernel between the centers and the training data X (a subsample) is zero to "
                             "working precision; check the kernel's lengthscale against the scale of X and centers.")
        U = Wv if p <= s else matmul(G, Wv) / np.sqrt(w)
        del G
        lam = w + ridge / n
        k = len(lam)
        ne = n_eigen if n_eigen == "auto" else min(int(n_eigen), k)
        q, bs, lr, _ = _parameters(lam, beta, n_eigen=ne, max_batch=max_batch, variant=3, batch_size=batch_size)
        c = 1.0 - lam[q - 1] / lam[: q - 1]
        with _linalg.one_blas_thread():
            V = scipy.linalg.solve_triangular(L.T, U[:, : q - 1], lower=False, check_finite=False)
        Vc = V * c

        def bind(y):
            snap = {}
            grad, full_grad = _gradient_fns(X, y, Z, cacc, dtype, bs)

            def snapshot(W):
                """Variance reduction (SVRG): the full gradient at a snapshot of the weights, one data pass."""
                snap.update(W=W.copy(), G=full_grad(W))

            def step(W, B, lr):
                if snap:  # r(W) − r(W_snap) + mean gradient: unbiased, and zero at the optimum
                    g = grad(W - snap["W"], B, False).astype(np.float64, copy=False) + (len(B) / n) * snap["G"]
                else:
                    g = grad(W, B, True).astype(np.float64, copy=False)  # K_ZB r = K_ZZ θ₀
                if ridge:
                    g += (ridge * len(B) / n) * matmul(L, matmul(L.T, W.astype(np.float64)))
                theta = _linalg.cho_solve(L, g)
                if q > 1:
                    theta -= matmul(Vc, matmul(V.T, g))
                W -= (lr * theta).astype(dtype)

            step.snapshot = snapshot
            return step

        return bind, q, bs, lr

    pc, bs, lr = _preconditioner(acc, _Data(X), n, s, n_eigen, max_batch, 1.0, 0.0, rng, 3, batch_size)
    Xs = np.asarray(X[pc.S], dtype=dtype)
    N = matmul(cacc.block(Z, Xs), pc.E) if pc.q > 1 else None  # K(Z, X_S) E: the data preconditioner at the centers
    allz = idx(np.arange(p))
    zrng = np.random.default_rng([seed, 3])
    s_z = min(p, 2000 if p < 100_000 else 10_000)
    zpc, zbs, zlr = _preconditioner(cacc, np.arange(p), p, s_z, "auto", p, ALPHA_EP2, 0.0, zrng, 2, "auto")

    def project(H):  # K_ZZ θ = H, inexactly: two epochs of EigenPro 2 on the centers
        theta = np.zeros_like(H)
        zstep = _ep2_stepper(cacc, Z, H, zpc, 0.0, p)
        check = np.arange(min(p, 1000))
        h_scale = float(np.mean(np.square(H[check]))) or 1.0
        for ep in range(2):
            order = np.random.default_rng([seed, 4, ep]).permutation(p)
            for i in range(0, p, zbs):
                zstep(theta, np.sort(order[i:i + zbs]), zlr)
            r = cacc.matvec(idx(check), allz, theta) - H[check]
            if float(np.mean(np.square(r))) < 1e-6 * h_scale:
                break
        return theta

    # Inexact path: project the batch gradient onto the centers (inner EigenPro 2), then apply the
    # data preconditioner to that projected gradient and project its correction again.
    # The data preconditioner is built for the full RKHS; seen through the projection onto the
    # centers it flattens the spectrum less than in EigenPro 2, so the curvature it leaves is
    # measured (power iteration on the subsample's loss, θ ↦ precondition(project(H_S θ)))
    # and the batch and step come from that measured top eigenvalue.
    Ksz = cacc.block(Xs, Z)

    def precond_op(v):
        u = project(matmul(Ksz.T, matmul(Ksz, v)) / s)
        if N is not None:
            u = u - project(matmul(N, pc.D[:, None] * matmul(N.T, u)))
        return u

    v = np.random.default_rng([seed, 5]).standard_normal((p, 1)).astype(dtype)
    lam_hat = 0.0
    for _ in range(8):
        u = precond_op(v)
        lam_hat = float(np.linalg.norm(u) / max(np.linalg.norm(v), 1e-300))
        v = u / max(np.linalg.norm(u), 1e-300)
    lam_hat = max(lam_hat * 1.1, pc.lam_top)  # 10% margin over the power-iteration estimate
    beta = pc.beta
    if batch_size == "auto":
        bs = max(1, min(int(beta / lam_hat), max_batch))
    lr = 1.0 / (beta + (bs - 1) * lam_hat)

    def bind(y):
        grad, _ = _gradient_fns(X, y, Z, cacc, dtype, bs)

        def step(W, B, lr):
            theta = project(grad(W, B, True))
            if ridge:
                theta += (ridge * len(B) / n) * W
            if N is not None:
                theta -= project(matmul(N, pc.D[:, None] * matmul(N.T, theta)))
            W -= lr * theta

        return step

    return bind, pc.q, bs, lr


def _gradient_fns(X, y, Z, cacc, dtype, bs):
    """EigenPro 3's data pass: ``grad(W, B, with_y) = K(Z, X_B) (K(X_B, Z) W − [y_B])`` and
    ``full_grad(W)`` (the same over all rows, float64). Data sharded on Dask workers
    (:func:`ntkit.distributed.eigenpro`) brings its own pair, computed where the rows live."""
    if getattr(X, "_ntkit_sharded", False):
        return X.gradient_fns(y, Z, dtype)
    n = X.shape[0]

    def grad(W, B, with_y):
        Kbz = cacc.block(np.asarray(X[B], dtype=dtype), Z)
        return matmul(Kbz.T, matmul(Kbz, W) - y[B] if with_y else matmul(Kbz, W))

    def full_grad(W):
        G = np.zeros(W.shape, np.float64)
        for i in range(0, n, max(bs, 1024)):
            rows = np.arange(i, min(n, i + max(bs, 1024)))
            G += grad(W, rows, True)
        return G

    return grad, full_grad


def _save_checkpoint(path, W, epoch, history, meta, lr_now, vr_on):
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as fh:
        np.savez(fh, weights=W, epoch=epoch, history=json.dumps(history), meta=json.dumps(meta), lr_now=lr_now,
                 vr_on=vr_on)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _load_checkpoint(path, meta):
    with np.load(path) as z:
        saved = json.loads(str(z["meta"]))
        if saved != json.loads(json.dumps(meta)):
            diff = {k: (saved.get(k), meta[k]) for k in meta if saved.get(k) != meta[k]}
            raise ValueError(f"checkpoint {path} was written by a different run (differs in {diff}); delete it or "
                             "pass the same data and settings.")
        return {"weights": np.array(z["weights"]), "epoch": int(z["epoch"]), "history": json.loads(str(z["history"])),
                "lr_now": float(z["lr_now"]), "vr_on": bool(z["vr_on"])}
