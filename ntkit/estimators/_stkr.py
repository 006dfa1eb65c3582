"""Spectrally transformed kernel regression as semi-supervised scikit-learn estimators.

Thin shells over :func:`ntkit.solvers.stkr`. Unlabeled rows are marked the way scikit-learn's
``sklearn.semi_supervised`` marks them — ``-1`` labels for :class:`STKRClassifier`, ``NaN``
targets for :class:`STKRRegressor` — or passed separately as ``fit(X, y, X_unlabeled=...)``.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import check_array
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_consistent_length, check_is_fitted, validate_data

from .._validation import check_array_arg, check_same_rows
from ..kernels import RBF, Kernel
from ..solvers import stkr
from ._common import DefaultKernelMixin, TargetScaler, check_kernel_scale, resolve_kernel

__all__ = ["STKRClassifier", "STKRRegressor"]

_DTYPES = [np.float64, np.float32]


def _check_scale(kernel, X, owner):
    """The estimators' kernel-scale warning, for a lengthscale far *above* the data's scale only: STKR
    wants local kernels (≈ 0 between most pairs, like a neighbourhood graph), which the other half of
    :func:`~ntkit.estimators._common.check_kernel_scale` would flag."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_kernel_scale(kernel, X, owner, stacklevel=2)
    for w in caught:
        if "≈ 1 between all" in str(w.message):
            warnings.warn(w.message, w.category, stacklevel=5)


class _STKRBase(DefaultKernelMixin, BaseEstimator):
    def __init__(self, kernel=None, *, transformation="inverse_laplacian", eta="auto", coefficients=None, n_terms=None,
                 n_components=None, ridge=1e-3, tol=None, max_iter=None, n_eigen="auto", subsample_size="auto",
                 memory_budget=None, random_state=None, verbose=False, device="auto"):
        self.kernel = kernel
        self.transformation = transformation
        self.eta = eta
        self.coefficients = coefficients
        self.n_terms = n_terms
        self.n_components = n_components
        self.ridge = ridge
        self.tol = tol
        self.max_iter = max_iter
        self.n_eigen = n_eigen
        self.subsample_size = subsample_size
        self.memory_budget = memory_budget
        self.random_state = random_state
        self.verbose = verbose
        self.device = device

    def _default_kernel(self):
        return RBF(lengthscale="scale")

    def _check_unlabeled(self, X_unlabeled, X):
        if X_unlabeled is None:
            return np.empty((0, X.shape[1]), dtype=X.dtype)
        check_array_arg(X_unlabeled, "X_unlabeled", ndim=2, n_features=X.shape[1], finite=True)
        return check_array(X_unlabeled, dtype=X.dtype, ensure_min_samples=0, input_name="X_unlabeled")

    def _fit_stkr(self, X, labeled, Y, X_unlabeled):
        """Fit on the rows ``labeled`` of X with targets Y; every other row of X and X_unlabeled is unlabeled."""
        from .._device import device_name, resolve_device

        if not labeled.any():
            raise ValueError(f"{type(self).__name__} needs at least one labeled sample; every row of y is marked "
                             f"unlabeled ({self._mark}).")
        kernel = resolve_kernel(self._default_kernel() if self.kernel is None else self.kernel, X)
        _check_scale(kernel, X, type(self).__name__)
        placement = resolve_device(self.device, owner=type(self).__name__)
        on_device = placement.on_device and isinstance(kernel, Kernel)
        Xu = np.concatenate([X[~labeled], X_unlabeled]) if X_unlabeled.shape[0] else X[~labeled]
        seed = self.random_state if not isinstance(self.random_state, np.random.RandomState) else \
            self.random_state.randint(0, 2**31 - 1)
        res = stkr(kernel, X[labeled], Y, Xu, transformation=self.transformation, eta=self.eta,
                   coefficients=self.coefficients, n_terms=self.n_terms, n_components=self.n_components,
                   ridge=self.ridge, tol=self.tol, maxiter=self.max_iter, n_eigen=self.n_eigen,
                   subsample_size=self.subsample_size, random_state=seed, memory_budget=self.memory_budget,
                   verbose=self.verbose,
                   device=placement.device if on_device else None)
        self.result_ = res
        self.kernel_ = kernel
        self.device_ = device_name(placement.device) if on_device else None
        self.eta_ = res.eta
        self.n_iter_ = res.n_iter
        self.history_ = res.history
        return self

    def _decision(self, X):
        check_is_fitted(self, "result_")
        check_array_arg(X, "X", ndim=2, min_rows=1)
        X = validate_data(self, X, reset=False, dtype=_DTYPES)
        res = self.result_
        if self.device_ is None:
            return np.asarray(res.predict(X))
        import jax

        from .._device import device_from_name
        from ..ops import kernel_matvec

        dev = device_from_name(self.device_)
        with jax.enable_x64(np.dtype(res.weights.dtype) == np.float64):
            C, W = jax.device_put(res.centers, dev), jax.device_put(res.weights, dev)
            Xd = jax.device_put(np.asarray(X, dtype=res.weights.dtype), dev)
            return np.asarray(kernel_matvec(res.kernel, Xd, C, W, memory_budget=self.memory_budget))


_PARAMS = """
    Parameters
    ----------
    kernel : Kernel or callable, default=None
        The base kernel K; ``None`` is ``RBF(lengthscale="scale")`` (``sqrt(n_features · X.var())``;
        tunable as ``kernel__lengthscale``). Unlabeled points help when the kernel is local
        enough to follow the data's clusters or manifold: a lengthscale well below "scale".
    transformation : {"inverse_laplacian", "polynomial", "kernel_pca"}, default="inverse_laplacian"
        The spectral transformation s (see :func:`ntkit.solvers.stkr`): ``s(λ) = λ/(1 − ηλ)``,
        ``Σ_p π_p λ^p``, or kernel PCA with ``n_components`` eigenfunctions.
    eta : float or "auto", default="auto"
        η of the inverse Laplacian ("auto": 0.99/λ_max of K/N).
    coefficients : sequence of float, default=None
        (π_1, …, π_q) for ``transformation="polynomial"``.
    n_terms : int, default=None
        Truncate the inverse Laplacian's power series after this many terms.
    n_components : int, default=None
        Eigenfunctions for ``transformation="kernel_pca"`` (default min(10, N)).
    ridge : float, default=1e-3
        β of ``(1/n) Σ (f(x_i) − y_i)² + β ‖f‖²_{K_s}`` over the n labeled samples.
    tol, max_iter : stopping rules of the conjugate-gradient (or subspace) iterations.
    n_eigen, subsample_size : the preconditioner's eigenpairs and Nyström subsample ("auto").
    memory_budget, random_state, verbose
    device : {"auto", "cpu", "gpu"} or jax.Device, default="auto"
        Where the fit and predictions run (:mod:`ntkit._device`): "auto" uses a GPU when jax has
        one, else the host engines; numpy in, numpy out. An ntkit kernel is needed on a device.
"""


class STKRRegressor(RegressorMixin, _STKRBase):
    __doc__ = """Semi-supervised kernel regression with a spectrally transformed kernel (STKR).

    Rows of ``y`` that are all ``NaN`` are unlabeled (as ``-1`` labels are for
    ``sklearn.semi_supervised``); more unlabeled points can be passed as ``fit(X, y,
    X_unlabeled=...)``. Labeled and unlabeled points together estimate the eigenfunctions of the
    kernel's integral operator, and the regression uses ``K_s = Σ_i s(λ_i) ψ_i ψ_iᵀ``
    (:func:`ntkit.solvers.stkr`, Zhai et al., ICLR 2024). Predictions for new points are inductive
    (``K(x, X̄) θ``) and equal the transductive ones on the training rows.
""" + _PARAMS + """    normalize_y : bool, default=True
        Fit on labeled targets centred and scaled per output (the intercept); as
        ``GaussianProcessRegressor(normalize_y=True)``.

    Attributes
    ----------
    result_ : STKRResult
        The solver's result (``weights``, ``centers`` — labeled rows first —, ``dual_coef``).
    transduction_ : ndarray of shape (n_samples,) or (n_samples, n_targets)
        Predicted targets of every row of ``X`` in fit, labeled or not.
    eta_, n_iter_, history_, kernel_, device_, y_mean_, y_std_

    References
    ----------
    Zhai, R., Pukdee, R., Jin, R., Balcan, M.-F. and Ravikumar, P. (2024). Spectrally transformed
    kernel regression. ICLR 2024, arXiv:2402.00645 (the equations: :func:`ntkit.solvers.stkr`).

    Examples
    --------
    >>> import numpy as np
    >>> from ntkit.estimators import STKRRegressor
    >>> from ntkit.kernels import RBF
    >>> t = np.random.default_rng(0).uniform(0, 3 * np.pi, 400)
    >>> X = np.c_[np.cos(t), np.sin(t)] * (1 + t[:, None] / 3)         # a spiral
    >>> y = np.where(np.arange(400) % 20 == 0, np.sin(t), np.nan)       # 20 labels, 380 NaN
    >>> est = STKRRegressor(RBF(0.3), random_state=0).fit(X, y)
    >>> est.transduction_.shape, bool(np.corrcoef(est.transduction_, np.sin(t))[0, 1] > 0.9)
    ((400,), True)
    """

    _mark = "all-NaN target rows"

    def __init__(self, kernel=None, *, transformation="inverse_laplacian", eta="auto", coefficients=None, n_terms=None,
                 n_components=None, ridge=1e-3, tol=None, max_iter=None, n_eigen="auto", subsample_size="auto",
                 normalize_y=True, memory_budget=None, random_state=None, verbose=False, device="auto"):
        super().__init__(kernel, transformation=transformation, eta=eta, coefficients=coefficients, n_terms=n_terms,
                         n_components=n_components, ridge=ridge, tol=tol, max_iter=max_iter, n_eigen=n_eigen,
                         subsample_size=subsample_size, memory_budget=memory_budget, random_state=random_state,
                         verbose=verbose, device=device)
        self.normalize_y = normalize_y

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True  # y of shape (n, c) fits c outputs at once
        return tags

    def fit(self, X, y, X_unlabeled=None):
        """Fit on the labeled rows of (X, y); rows whose targets are all NaN and ``X_unlabeled`` are unlabeled."""
        check_array_arg(X, "X", ndim=2, min_rows=1)
        if y is None:
            raise ValueError(f"{type(self).__name__} requires y to be passed, but the target y is None.")
        check_array_arg(y, "y", ndim=(1, 2))
        check_same_rows(X, y, "X", "y")
        X = validate_data(self, X, dtype=_DTYPES)
        y = check_array(y, ensure_2d=False, dtype=np.float64, ensure_all_finite="allow-nan", input_name="y")
        check_consistent_length(X, y)
        Xu = self._check_unlabeled(X_unlabeled, X)
        Y = y.reshape(len(y), -1)
        nan = np.isnan(Y)
        labeled = ~nan.all(axis=1)
        if (nan.any(axis=1) & labeled).any():
            raise ValueError("y has rows with some but not all targets NaN; a row is unlabeled when all its targets "
                             "are NaN (impute the others or mark the whole row).")
        self._y_1d = y.ndim == 1
        scaler = TargetScaler(Y[labeled], bool(self.normalize_y))
        self.y_mean_, self.y_std_ = scaler.mean, scaler.std
        self._fit_stkr(X, labeled, scaler.forward(Y[labeled]).astype(X.dtype), Xu)
        self.transduction_ = self.predict(X)
        return self

    def predict(self, X):
        """``K(X, X̄) θ`` (plus the target mean with ``normalize_y``)."""
        out = self._decision(X)
        out = (out.reshape(len(out), -1) * self.y_std_ + self.y_mean_).astype(out.dtype, copy=False)
        return out[:, 0] if self._y_1d else out


class STKRClassifier(ClassifierMixin, _STKRBase):
    __doc__ = """Semi-supervised kernel classification with a spectrally transformed kernel (STKR).

    Labels ``-1`` mark unlabeled samples, as in ``sklearn.semi_supervised`` (for numeric labels;
    more unlabeled points can be passed as ``fit(X, y, X_unlabeled=...)``). STKR regression on
    one-hot (0/1) targets, prediction by argmax (:func:`ntkit.solvers.stkr`, Zhai et al., ICLR 2024).
""" + _PARAMS + """
    Attributes
    ----------
    classes_ : ndarray
        The labels seen on labeled samples (``-1`` is never a class).
    transduction_ : ndarray of shape (n_samples,)
        The label given to every row of ``X`` in fit (as ``LabelSpreading.transduction_``).
    result_, eta_, n_iter_, history_, kernel_, device_

    References
    ----------
    Zhai, R., Pukdee, R., Jin, R., Balcan, M.-F. and Ravikumar, P. (2024). Spectrally transformed
    kernel regression. ICLR 2024, arXiv:2402.00645 (the equations: :func:`ntkit.solvers.stkr`).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.datasets import make_moons
    >>> from ntkit.estimators import STKRClassifier
    >>> from ntkit.kernels import RBF
    >>> X, y = make_moons(500, noise=0.1, random_state=0)
    >>> y_semi = np.where(np.arange(500) < 20, y, -1)                  # 20 labels, 480 unlabeled
    >>> clf = STKRClassifier(RBF(0.2), random_state=0).fit(X, y_semi)
    >>> float(np.mean(clf.transduction_ == y)) > 0.95
    True
    """

    _mark = "labels -1"

    def fit(self, X, y, X_unlabeled=None):
        """Fit on the rows of (X, y) whose label is not -1; those and ``X_unlabeled`` are unlabeled."""
        check_array_arg(X, "X", ndim=2, min_rows=1)
        check_array_arg(y, "y", ndim=(1, 2), required=False, labels=True)
        check_same_rows(X, y, "X", "y")
        X, y = validate_data(self, X, y, dtype=_DTYPES)
        Xu = self._check_unlabeled(X_unlabeled, X)
        labeled = ~(y == -1) if y.dtype.kind in "iuf" else np.ones(len(y), dtype=bool)
        check_classification_targets(y[labeled] if labeled.any() else y)
        if labeled.any():
            self._binarizer = LabelBinarizer(neg_label=0, pos_label=1)
            Y = self._binarizer.fit_transform(y[labeled]).astype(X.dtype)
            self.classes_ = self._binarizer.classes_
            if Y.shape[1] == 1:  # binary (or one class): two columns so argmax works
                Y = np.hstack([1 - Y, Y])
        else:
            Y = None
        self._fit_stkr(X, labeled, Y, Xu)
        self.transduction_ = self.predict(X)
        return self

    def decision_function(self, X):
        """One score per class (a single column, class 1 minus class 0, for two classes)."""
        scores = self._decision(X)
        return scores[:, 1] - scores[:, 0] if len(self.classes_) == 2 else scores

    def predict(self, X):
        """The class with the largest score."""
        scores = self._decision(X)
        if len(self.classes_) == 1:  # one class seen in fit: the padded column is not a class
            return np.full(scores.shape[0], self.classes_[0])
        return self.classes_[np.argmax(scores, axis=1)]
