"""Kernel regression and classification with NTK (or any) kernels, solved by the right method for the size."""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from .. import _linalg
from .._blas import matmul
from .._leverage import _gram
from .._validation import InvalidParameterError, check_array_arg, check_option, check_scalar
from ..kernels import Kernel, ReluNTK
from ._common import DefaultKernelMixin, TargetScaler, check_kernel_scale, resolve_kernel
from ._eigenpro import _check_xy

__all__ = ["NTKRegressor", "NTKClassifier", "EmpiricalNTKKernel"]

#: "auto": dense Cholesky up to this many training points, matrix-free CG up to ``_CG_MAX``, EigenPro beyond.
_CHOLESKY_MAX = 6000
_CG_MAX = 60000


class EmpiricalNTKKernel:
    """The empirical NTK of a JAX model as a kernel callable ``k(A, B) -> (n, m)``.

    ``kind="trace"`` (the trace over logits) or ``"sum_logits"`` (the pseudo-NTK); ``normalize``
    as in :func:`ntkit.ntk.empirical_ntk`. Use it as ``NTKRegressor(kernel=EmpiricalNTKKernel(apply_fn, params))``.
    """

    def __init__(self, apply_fn, params, *, kind="trace", normalize=None, batch_size=None, memory_budget=None):
        self.apply_fn = apply_fn
        self.params = params
        self.kind = kind
        self.normalize = normalize
        self.batch_size = batch_size
        self.memory_budget = memory_budget

    def __call__(self, A, B=None):
        from ..ntk import empirical_ntk

        if self.kind not in ("trace", "sum_logits"):
            raise InvalidParameterError(f"EmpiricalNTKKernel kind must be 'trace' or 'sum_logits' (a scalar kernel); "
                                        f"got {self.kind!r}.")
        # named checks (empirical_ntk's own messages would call these x1 / x2)
        for name, V in (("A", A), ("B", B)):
            if V is not None:
                check_array_arg(V, name, ndim=tuple(range(2, 8)), finite=True)
        A = np.asarray(A, dtype=np.float32) if np.asarray(A).dtype != np.float64 else np.asarray(A)
        B = None if B is None else (np.asarray(B, dtype=A.dtype))
        if B is not None and A.shape[1:] != B.shape[1:]:
            raise ValueError(f"A and B must have the same per-example shape; got A of shape {A.shape} and B of "
                             f"shape {B.shape}.")
        try:
            K = empirical_ntk(self.apply_fn, self.params, A, B, kind=self.kind, normalize=self.normalize,
                              batch_size=self.batch_size, memory_budget=self.memory_budget)
        except (ValueError, TypeError) as e:  # empirical_ntk calls them x1 / x2
            shapes = f"A of shape {A.shape}" + ("" if B is None else f" and B of shape {B.shape}")
            raise type(e)(f"EmpiricalNTKKernel: the rows of A and B are the model's inputs ({shapes}): {e}") from e
        return np.asarray(K, dtype=np.float64)

    def diag(self, A):
        """``k(a, a)`` for each row (small diagonal blocks)."""
        check_array_arg(A, "A", ndim=tuple(range(2, 8)), finite=True)
        A = np.asarray(A)
        return np.concatenate([np.diag(self(A[i:i + 128])) for i in range(0, len(A), 128)]) if len(A) else \
            np.zeros(0)


class _NTKBase(DefaultKernelMixin, BaseEstimator):
    def __init__(self, kernel=None, *, ridge=1e-6, solver="auto", tol=1e-8, max_iter=None, epochs=20,
                 memory_budget=None, random_state=None, verbose=False, device="auto"):
        self.kernel = kernel
        self.device = device
        self.ridge = ridge
        self.solver = solver
        self.tol = tol
        self.max_iter = max_iter
        self.epochs = epochs
        self.memory_budget = memory_budget
        self.random_state = random_state
        self.verbose = verbose

    def _default_kernel(self):
        return ReluNTK(depth=2)

    def _resolve(self, X):
        n = X.shape[0]
        owner = type(self).__name__
        solver = check_option(self.solver, "solver", owner, ("auto", "cholesky", "cg", "eigenpro"))
        check_scalar(self.ridge, "ridge", owner, low=0.0)
        if solver == "auto":
            solver = "cholesky" if n <= _CHOLESKY_MAX else ("cg" if n <= _CG_MAX else "eigenpro")
        kernel = self._default_kernel() if self.kernel is None else self.kernel
        if not callable(kernel):
            raise InvalidParameterError(f"kernel must be an ntkit kernel or a callable k(A, B); got {kernel!r}.")
        kernel = resolve_kernel(kernel, X)
        check_kernel_scale(kernel, X, owner, stacklevel=5)
        return solver, kernel

    def __getstate__(self):
        state = super().__getstate__()
        state.pop("_device_cache", None)  # device copies are rebuilt on demand
        return state

    def _solve(self, X, Y):
        from .._device import device_name, resolve_device

        solver, kernel = self._resolve(X)
        ridge = float(self.ridge)
        X64 = X.astype(np.float64, copy=False)
        placement = resolve_device(self.device, owner=type(self).__name__)
        self.__dict__.pop("_device_cache", None)
        if placement.on_device and isinstance(kernel, Kernel):
            self.device_ = device_name(placement.device)
            return self._solve_device(X64, Y, solver, kernel, ridge, placement)
        self.device_ = None
        if solver == "cholesky":
            def build():
                K = _gram(kernel, X64)
                K[np.diag_indices_from(K)] += ridge
                return K

            # crash-safe blocked factorisation in place; jitter (with a NumericalWarning) when K + ridge·I
            # is numerically singular, recomputing K rather than keeping a second n×n copy
            L, _ = _linalg.cholesky(build(), overwrite_a=True, rebuild=build, stacklevel=4,
                                    what=f"the training kernel matrix plus ridge={ridge:g}")
            alpha = _linalg.cho_solve(L, np.asarray(Y, dtype=np.float64))
            self.n_iter_ = 1  # one direct factorisation
        elif solver == "cg":
            import scipy.sparse.linalg as spla

            from ..ops import KernelOperator

            if isinstance(kernel, Kernel):
                A = KernelOperator(kernel, X64, ridge=ridge)
            else:
                K = _gram(kernel, X64)
                A = spla.aslinearoperator(K + ridge * np.eye(n))
            alpha = np.empty_like(Y)
            its = []
            for c in range(Y.shape[1]):
                count = [0]
                alpha[:, c], info = spla.cg(A, Y[:, c], rtol=self.tol, maxiter=self.max_iter,
                                            callback=lambda _: count.__setitem__(0, count[0] + 1))
                its.append(count[0])
                if info > 0:
                    warnings.warn(f"CG stopped after {count[0]} iterations without reaching tol={self.tol:g} "
                                  f"(target column {c}); raise ridge or max_iter, or use solver='eigenpro'.",
                                  RuntimeWarning, stacklevel=3)
            self.n_iter_ = max(1, max(its) if its else 0)
        else:
            from ..solvers import eigenpro

            res = eigenpro(kernel, X64, Y, ridge=ridge, epochs=self.epochs, tol=self.tol if self.tol else None,
                           random_state=self.random_state, verbose=self.verbose, memory_budget=self.memory_budget)
            alpha = np.asarray(res.weights)
            self.n_iter_ = len(res.history) if hasattr(res, "history") else self.epochs
        self.solver_ = solver
        self.kernel_ = kernel
        self.dual_coef_ = alpha
        self.X_fit_ = X64
        return self

    def _solve_device(self, X64, Y, solver, kernel, ridge, placement):
        """The fit on a jax device: the data moved once, K (Cholesky), K-products (CG) or EigenPro there."""
        import jax
        import jax.numpy as jnp

        from .._device import device_budget
        from ..ops import gram, kernel_matvec
        from ..solvers._device import device_cg, device_cholesky

        dev = placement.device
        with jax.enable_x64(True):
            Xd = jax.device_put(X64, dev)
            Yd = jax.device_put(np.asarray(Y, dtype=np.float64), dev)
            budget = device_budget(dev, self.memory_budget)
            if solver == "cholesky":
                K = gram(kernel, Xd, memory_budget=budget)
                K = K + ridge * jnp.eye(K.shape[0], dtype=K.dtype)
                L, _ = device_cholesky(K, what=f"the training kernel matrix plus ridge={ridge:g}", stacklevel=5)
                del K
                alpha = jax.scipy.linalg.cho_solve((L, True), Yd)
                self.n_iter_ = 1
            elif solver == "cg":
                maxiter = self.max_iter if self.max_iter is not None else 10 * X64.shape[0]

                def matvec(V):
                    return kernel_matvec(kernel, Xd, None, V, memory_budget=budget) + ridge * V

                alpha, hist = device_cg(matvec, Yd, tol=self.tol, maxiter=maxiter, verbose=bool(self.verbose),
                                        label=f"{type(self).__name__} CG")
                self.n_iter_ = max(1, len(hist))
                if hist and hist[-1] >= self.tol:
                    warnings.warn(f"CG stopped after {len(hist)} iterations without reaching tol={self.tol:g} "
                                  f"(relative residual {hist[-1]:.2e}); raise ridge or max_iter, or use "
                                  "solver='eigenpro'.", RuntimeWarning, stacklevel=4)
            else:
                from ..solvers import eigenpro

                res = eigenpro(kernel, Xd, Yd, ridge=ridge, epochs=self.epochs, tol=self.tol if self.tol else None,
                               random_state=self.random_state, verbose=self.verbose, memory_budget=self.memory_budget)
                alpha = res.weights.reshape(X64.shape[0], -1)
                self.n_iter_ = len(res.history)
            self.dual_coef_ = np.asarray(jax.device_get(alpha), dtype=np.float64)
            self._device_cache = (Xd, alpha)
        self.solver_ = solver
        self.kernel_ = kernel
        self.X_fit_ = X64
        return self

    def _decision_device(self, X64):
        import jax

        from .._device import device_from_name
        from ..ops import kernel_matvec

        with jax.enable_x64(True):
            cache = self.__dict__.get("_device_cache")
            if cache is None:  # after unpickling: moved again for this call (predict leaves __dict__ alone)
                dev = device_from_name(self.device_)
                cache = (jax.device_put(self.X_fit_, dev), jax.device_put(self.dual_coef_, dev))
            Xd, alpha = cache
            Xt = jax.device_put(X64, next(iter(Xd.devices())))
            return np.asarray(kernel_matvec(self.kernel_, Xt, Xd, alpha, memory_budget=self.memory_budget))

    def _decision(self, X):
        check_is_fitted(self, "dual_coef_")
        check_array_arg(X, "X", ndim=2, min_rows=1)
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        X64 = X.astype(np.float64, copy=False)
        if getattr(self, "device_", None) is not None:
            return self._post(self._decision_device(X64)).astype(X.dtype, copy=False)
        if isinstance(self.kernel_, Kernel):
            from ..ops import kernel_matvec

            out = np.asarray(kernel_matvec(self.kernel_, X64, self.X_fit_, self.dual_coef_,
                                           memory_budget=self.memory_budget))
        else:
            out = matmul(_gram(self.kernel_, X64, self.X_fit_), self.dual_coef_)
        return self._post(out).astype(X.dtype, copy=False)

    def _post(self, F):
        """Map the kernel machine's outputs to predictions (identity; regressors undo ``normalize_y``)."""
        return F


class NTKRegressor(RegressorMixin, _NTKBase):
    """Kernel ridge regression ``(K + ridge·I) α = y`` with the infinite-width ReLU NTK by default.

    Parameters
    ----------
    kernel : Kernel or callable, default=None
        ``None`` is ``ReluNTK(depth=2)``; any ntkit kernel (``ReluNNGP``, ``RBF``, ... — tunable as
        ``kernel__<param>`` in a grid search, also from the default: ``kernel__depth``), an
        :class:`EmpiricalNTKKernel` of a JAX model, or any callable ``k(A, B)``. A stationary
        kernel's ``lengthscale="scale"`` is ``sqrt(n_features · X.var())`` of the training data. A
        stationary kernel that is ≈ 0 or ≈ 1 between distinct training points (a lengthscale far
        from the data's scale) gives a ``NumericalWarning`` that says so.
    ridge : float, default=1e-6
        Added to the kernel diagonal.
    solver : {"auto", "cholesky", "cg", "eigenpro"}, default="auto"
        ``"auto"``: dense Cholesky up to 6 000 points (a blocked factorisation that survives
        OpenBLAS's large-n crash, with jitter and a ``NumericalWarning`` when K + ridge·I is
        numerically singular), matrix-free conjugate gradients (blocks
        through :class:`ntkit.ops.KernelOperator`) up to 60 000, EigenPro 2 beyond.
    tol, max_iter : CG / EigenPro stopping rules.
    epochs : int, default=20
        EigenPro epochs.
    memory_budget, random_state, verbose
    normalize_y : bool, default=True
        Fit on targets centred (and scaled) per output and add the mean back in predictions: the
        intercept kernel ridge regression lacks (without it, predictions shrink towards 0 as the
        ridge grows or away from the data). As ``GaussianProcessRegressor(normalize_y=True)``.
        ``dual_coef_`` are then the coefficients of the normalised targets.
    device : {"auto", "cpu", "gpu"} or jax.Device, default="auto"
        Where the fit and predictions run (:mod:`ntkit._device`): "auto" uses a GPU when jax
        has one (else the host engines, as before); "cpu" / "gpu" name a jax device. The data
        are moved there once; the factorisation, CG iterations or EigenPro steps run on the
        device in float64; ``predict`` returns numpy. An ntkit kernel is needed on a device
        (a callable such as :class:`EmpiricalNTKKernel` runs on the host).

    Attributes
    ----------
    dual_coef_ : ndarray of shape (n_samples, n_outputs)
        Coefficients of the (normalised, with ``normalize_y``) targets.
    solver_ : str
        The solver used.
    kernel_ : Kernel or callable
        The kernel fitted (``lengthscale="scale"`` resolved).
    X_fit_ : ndarray of shape (n_samples, n_features)
    n_iter_ : int
    device_ : str or None
        The device fitted on, as ``"gpu:0"``, or None for the host engines.
    y_mean_, y_std_ : ndarray of shape (n_outputs,)
        The target normalisation (0 and 1 without ``normalize_y``).

    Examples
    --------
    >>> import numpy as np
    >>> from ntkit.estimators import NTKRegressor
    >>> X = np.random.default_rng(0).normal(size=(200, 4)); y = np.sin(X[:, 0])
    >>> NTKRegressor(ridge=1e-3).fit(X[:150], y[:150]).score(X[150:], y[150:]) > 0.8
    True
    """

    def __init__(self, kernel=None, *, ridge=1e-6, solver="auto", tol=1e-8, max_iter=None, epochs=20,
                 memory_budget=None, random_state=None, verbose=False, device="auto", normalize_y=True):
        super().__init__(kernel, ridge=ridge, solver=solver, tol=tol, max_iter=max_iter, epochs=epochs,
                         memory_budget=memory_budget, random_state=random_state, verbose=verbose, device=device)
        self.normalize_y = normalize_y

    def fit(self, X, y):
        """Solve for the dual coefficients on (X, y)."""
        _check_xy(X, y, (1, 2))
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32], y_numeric=True, multi_output=True)
        Y = np.asarray(y, dtype=np.float64)
        self._y_1d = Y.ndim == 1
        Y = Y.reshape(len(Y), -1)
        scaler = TargetScaler(Y, bool(self.normalize_y))
        self.y_mean_, self.y_std_ = scaler.mean, scaler.std
        return self._solve(X, scaler.forward(Y))

    def _post(self, F):
        return F * self.y_std_ + self.y_mean_

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    def predict(self, X):
        """``K(X, X_fit) α``."""
        out = self._decision(X)
        return out[:, 0] if self._y_1d else out


class NTKClassifier(ClassifierMixin, _NTKBase):
    """Kernel classification by ridge regression on one-hot (±1) targets, NTK kernel by default.

    Same parameters as :class:`NTKRegressor` but ``normalize_y``; ``predict`` is the argmax of
    ``decision_function`` (one column per class; one column for two classes).

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from ntkit.estimators import NTKClassifier
    >>> X, y = load_digits(return_X_y=True)
    >>> clf = NTKClassifier(ridge=1e-2).fit(X[:1000] / 16, y[:1000])
    >>> clf.score(X[1000:] / 16, y[1000:]) > 0.95
    True
    """

    def fit(self, X, y):
        """Fit one-vs-rest ±1 targets."""
        _check_xy(X, y, (1, 2), labels=True)
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32])
        check_classification_targets(y)
        self._lb = LabelBinarizer(neg_label=-1, pos_label=1)
        Y = self._lb.fit_transform(y).astype(np.float64)
        self.classes_ = self._lb.classes_
        return self._solve(X, Y)

    def decision_function(self, X):
        """Scores, shape (n,) for two classes, (n, n_classes) otherwise."""
        out = self._decision(X)
        return out[:, 0] if out.shape[1] == 1 else out

    def predict(self, X):
        """The class with the largest score."""
        S = self.decision_function(X)
        if len(self.classes_) == 1:  # one class seen in fit: every prediction is that class
            return np.full(S.shape[0], self.classes_[0])
        if S.ndim == 1:
            return self.classes_[(S > 0).astype(int)]
        return self.classes_[np.argmax(S, axis=1)]
