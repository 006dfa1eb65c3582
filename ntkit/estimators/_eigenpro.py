"""EigenPro as scikit-learn estimators."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from .._validation import InvalidParameterError, check_array_arg, check_int, check_same_rows
from ..kernels import Kernel, Laplace
from ..solvers import eigenpro
from ._common import DefaultKernelMixin, TargetScaler, check_kernel_scale, resolve_kernel

__all__ = ["EigenProRegressor", "EigenProClassifier"]


def _check_xy(X, y, y_ndim, labels=False):
    """Named checks of the training data before scikit-learn's (whose messages name neither argument)."""
    check_array_arg(X, "X", ndim=2, min_rows=1)
    check_array_arg(y, "y", ndim=y_ndim, required=False, labels=labels)
    check_same_rows(X, y, "X", "y")


#: ``n_centers="auto"``: EigenPro 2 (centers = data) up to this many rows, EigenPro 3 on
#: ``AUTO_CENTERS`` centers (a uniform subsample) above it.
EP2_MAX_ROWS = 100_000
AUTO_CENTERS = 10_000


class _EigenProBase(DefaultKernelMixin, BaseEstimator):
    def __init__(self, kernel=None, *, n_centers="auto", ridge=0.0, n_eigen="auto", subsample_size="auto",
                 batch_size="auto", epochs=10, tol=None, warm_start=False, random_state=None, memory_budget=None,
                 verbose=False, device="auto"):
        self.kernel = kernel
        self.device = device
        self.n_centers = n_centers
        self.ridge = ridge
        self.n_eigen = n_eigen
        self.subsample_size = subsample_size
        self.batch_size = batch_size
        self.epochs = epochs
        self.tol = tol
        self.warm_start = warm_start
        self.random_state = random_state
        self.memory_budget = memory_budget
        self.verbose = verbose

    def _default_kernel(self):
        return Laplace(lengthscale="scale")

    def _kernel(self, X):
        kernel = resolve_kernel(self._default_kernel() if self.kernel is None else self.kernel, X)
        check_kernel_scale(kernel, X, type(self).__name__, stacklevel=5)
        return kernel

    def _n_centers(self, n):
        nc = self.n_centers
        if isinstance(nc, str):
            if nc != "auto":
                raise InvalidParameterError(f"The 'n_centers' parameter of {type(self).__name__} must be 'auto', None "
                                            f"or an int in the range [1, inf). Got {nc!r} instead.")
            return None if n <= EP2_MAX_ROWS else AUTO_CENTERS
        if nc is None:
            return None
        return check_int(nc, "n_centers", type(self).__name__, low=1)

    def _fit_targets(self, X, Y):
        kernel = self._kernel(X)
        n_centers = self._n_centers(len(X))
        seed = self.random_state if isinstance(self.random_state, (int, np.integer)) or self.random_state is None \
            else np.random.RandomState(self.random_state).randint(0, 2**31 - 1) if not isinstance(
                self.random_state, np.random.RandomState) else self.random_state.randint(0, 2**31 - 1)
        centers = None
        if n_centers is not None and n_centers < len(X):
            rng = np.random.default_rng(seed)
            centers = X[np.sort(rng.choice(len(X), size=int(n_centers), replace=False))]
        warm = self.warm_start and hasattr(self, "result_") and self.result_.weights.shape[0] == (
            len(X) if centers is None else len(centers))
        from .._device import device_name, resolve_device

        placement = resolve_device(self.device, owner=type(self).__name__)
        on_device = placement.on_device and isinstance(kernel, Kernel)
        self.__dict__.pop("_device_cache", None)
        res = eigenpro(kernel, X, Y, centers=centers, ridge=self.ridge, n_eigen=self.n_eigen,
                       subsample_size=self.subsample_size, batch_size=self.batch_size, epochs=self.epochs,
                       tol=self.tol, random_state=seed, verbose=self.verbose, memory_budget=self.memory_budget,
                       init=self.result_.weights if warm else None, device=placement.device if on_device else None)
        self.device_ = device_name(placement.device) if on_device else None
        self.result_ = res
        if on_device:  # centers and weights moved once, kept beside the fitted result for predict
            self._device_cache = self._device_arrays(res)
        self.kernel_ = kernel
        self.history_ = res.history
        return self

    def _device_arrays(self, res):
        import jax

        from .._device import device_from_name

        dev = device_from_name(self.device_)
        with jax.enable_x64(np.dtype(res.weights.dtype) == np.float64):
            return jax.device_put(res.centers, dev), jax.device_put(res.weights, dev)

    def __getstate__(self):
        state = super().__getstate__()
        state.pop("_device_cache", None)  # device copies are rebuilt on demand
        return state

    def _decision(self, X):
        check_is_fitted(self, "result_")
        check_array_arg(X, "X", ndim=2, min_rows=1)
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        if getattr(self, "device_", None) is None:
            return self.result_.predict(X)
        import jax

        from ..ops import kernel_matvec

        res = self.result_
        with jax.enable_x64(np.dtype(res.weights.dtype) == np.float64):
            cache = self.__dict__.get("_device_cache")
            if cache is None:  # after unpickling: moved again for this call (predict leaves __dict__ alone)
                cache = self._device_arrays(res)
            C, W = cache
            Xd = jax.device_put(np.asarray(X, dtype=res.weights.dtype), next(iter(C.devices())))
            return np.asarray(kernel_matvec(res.kernel, Xd, C, W, memory_budget=self.memory_budget))


class EigenProRegressor(RegressorMixin, _EigenProBase):
    """Kernel regression fitted by EigenPro 2 (``n_centers=None``) or EigenPro 3 on ``n_centers`` centers.

    ``kernel`` defaults to ``Laplace(lengthscale="scale")``, i.e. ``sqrt(n_features · X.var())`` of the
    training data (it follows the data's scale, as ``SVC(gamma="scale")``); any ntkit kernel
    (tunable through ``kernel__lengthscale`` in a grid search, also from the default) or callable
    works, and a stationary kernel that is ≈ 0 or ≈ 1 between distinct training points gives a
    ``NumericalWarning``. ``n_centers="auto"`` is EigenPro 2 (centers = data) up to 100 000 rows
    and EigenPro 3 on 10 000 uniformly drawn centers above; an int asks for that many centers,
    None for EigenPro 2 at any size. ``normalize_y=True`` (regressor) fits centred, scaled targets
    and adds the mean back (the intercept). ``warm_start=True``
    continues from the previous weights. ``device`` ("auto", "cpu", "gpu" or a jax device; the rule
    of :mod:`ntkit._device`) says where the fit and predictions run: "auto" uses a GPU when jax
    has one, else the host engines; numpy in, numpy out on every device. See
    :func:`ntkit.solvers.eigenpro` for the rest.

    Examples
    --------
    >>> import numpy as np
    >>> from ntkit.estimators import EigenProRegressor
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(400, 3)); y = np.sin(X[:, 0])
    >>> EigenProRegressor(epochs=20, random_state=0).fit(X, y).score(X, y) > 0.99
    True
    """

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True  # y of shape (n, c) fits c outputs at once
        return tags

    def __init__(self, kernel=None, *, n_centers="auto", ridge=0.0, n_eigen="auto", subsample_size="auto",
                 batch_size="auto", epochs=10, tol=None, warm_start=False, random_state=None, memory_budget=None,
                 verbose=False, device="auto", normalize_y=True):
        super().__init__(kernel, n_centers=n_centers, ridge=ridge, n_eigen=n_eigen, subsample_size=subsample_size,
                         batch_size=batch_size, epochs=epochs, tol=tol, warm_start=warm_start,
                         random_state=random_state, memory_budget=memory_budget, verbose=verbose, device=device)
        self.normalize_y = normalize_y

    def fit(self, X, y):
        _check_xy(X, y, (1, 2))
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32], multi_output=True, y_numeric=True)
        Y = np.asarray(y, dtype=np.float64)
        scaler = TargetScaler(Y.reshape(len(Y), -1), bool(self.normalize_y))
        self.y_mean_, self.y_std_ = scaler.mean, scaler.std
        Yn = scaler.forward(Y.reshape(len(Y), -1))
        return self._fit_targets(X, Yn.reshape(Y.shape).astype(X.dtype))

    def predict(self, X):
        F = np.asarray(self._decision(X))
        mean, std = (self.y_mean_, self.y_std_) if F.ndim == 2 else (self.y_mean_[0], self.y_std_[0])
        return (F * std + mean).astype(F.dtype, copy=False)


class EigenProClassifier(ClassifierMixin, _EigenProBase):
    """Kernel classifier: EigenPro regression on one-hot targets, prediction by argmax.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from ntkit.estimators import EigenProClassifier
    >>> X, y = load_digits(return_X_y=True)
    >>> clf = EigenProClassifier(epochs=5, random_state=0).fit(X[:1000] / 16, y[:1000])
    >>> clf.score(X[1000:] / 16, y[1000:]) > 0.9
    True
    """

    def fit(self, X, y):
        _check_xy(X, y, (1, 2), labels=True)
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32])
        check_classification_targets(y)
        self._binarizer = LabelBinarizer(neg_label=0, pos_label=1)
        Y = self._binarizer.fit_transform(y).astype(X.dtype)
        self.classes_ = self._binarizer.classes_
        if Y.shape[1] == 1:  # binary: two columns so argmax works
            Y = np.hstack([1 - Y, Y])
        return self._fit_targets(X, Y)

    def decision_function(self, X):
        scores = self._decision(X)
        return scores[:, 1] - scores[:, 0] if len(self.classes_) == 2 else scores

    def predict(self, X):
        scores = self._decision(X)
        if len(self.classes_) == 1:  # one class seen in fit: the padded second column is not a class
            return np.full(scores.shape[0], self.classes_[0])
        return self.classes_[np.argmax(scores, axis=1)]
