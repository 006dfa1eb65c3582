"""EigenPro 2 (centers = data) and EigenPro 3 (centers given): preconditioned SGD for kernel models."""

from __future__ import annotations

import contextlib
import warnings
from typing import Any, NamedTuple

import numpy as np

from .._config import _config, resolve_budget
from .._validation import InvalidParameterError, check_data, check_int, check_scalar, is_jax_array
from .._warnings import PerformanceWarning
from ..kernels import Kernel
from ._access import KernelAccess, idx
from ._eigenpro_host import _HostEngine, _run
from ._eigenpro_precond import ALPHA_EP2, _parameters, _seed

__all__ = ["eigenpro", "EigenProResult"]


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

