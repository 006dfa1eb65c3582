"""One scikit-learn estimator for all online learners of :mod:`ntkit.online`."""

from __future__ import annotations

from sklearn.base import BaseEstimator, RegressorMixin, clone

from .._validation import check_option

__all__ = ["OnlineKernelRegressor"]

_LEARNERS = ("nons_ald", "aogd_ald", "kogd", "kons", "sketched_kons")


def _make(learner, kernel, params, device="auto"):
    from .. import online

    cls = {"nons_ald": online.NONSALD, "aogd_ald": online.AOGDALD, "kogd": online.KOGD, "kons": online.KONS,
           "sketched_kons": online.SketchedKONS}[learner]
    params = dict(params or {})
    params.setdefault("device", device)
    return cls(kernel, **params)


class OnlineKernelRegressor(RegressorMixin, BaseEstimator):
    """Online kernel regression with a choice of learner (``partial_fit`` on streams).

    Parameters
    ----------
    learner : {"nons_ald", "aogd_ald", "kogd", "kons", "sketched_kons"}, default="nons_ald"
        NONS-ALD (second order, sublinear cost) by default; see :mod:`ntkit.online`.
    kernel : Kernel, default=None
        ``None``: the learner's default (``RBF(sqrt(n_features))``).
    learner_params : dict, optional
        Extra parameters of the learner (e.g. ``{"horizon": 10_000}``).
    device : {"auto", "cpu", "gpu"} or jax.Device, default="auto"
        Where the learner runs (passed to it unless ``learner_params`` names one; see
        :mod:`ntkit.online`, "On a device": every round as a jit-compiled scan on device arrays).

    Attributes
    ----------
    learner_ (the fitted ntkit.online estimator), cumulative_loss_, dictionary_size_, n_seen_.

    Examples
    --------
    >>> import numpy as np
    >>> from ntkit.estimators import OnlineKernelRegressor
    >>> rng = np.random.default_rng(0)
    >>> X = rng.uniform(-2, 2, size=(2000, 2)); y = np.sin(X[:, 0]) * X[:, 1]
    >>> est = OnlineKernelRegressor().fit(X, y)
    >>> bool(est.cumulative_loss_ / est.n_seen_ < 0.05)
    True
    """

    def __init__(self, learner="nons_ald", *, kernel=None, learner_params=None, device="auto"):
        self.learner = learner
        self.kernel = kernel
        self.learner_params = learner_params
        self.device = device

    def _new(self):
        learner = check_option(self.learner, "learner", type(self).__name__, _LEARNERS)
        from .._device import _check_option

        _check_option(self.device, type(self).__name__)  # named after this estimator, not the learner inside
        kernel = None if self.kernel is None else clone(self.kernel)
        return _make(learner, kernel, self.learner_params, self.device)

    def fit(self, X, y):
        """Reset, then one pass over (X, y) in order."""
        self.learner_ = self._new().fit(X, y)
        self._sync()
        return self

    def partial_fit(self, X, y):
        """Continue the stream with the rows of (X, y), in order."""
        if not hasattr(self, "learner_"):
            self.learner_ = self._new()
        self.learner_.partial_fit(X, y)
        self._sync()
        return self

    def _sync(self):
        est = self.learner_
        self.n_features_in_ = est.n_features_in_
        self.cumulative_loss_ = est.cumulative_loss_
        self.dictionary_size_ = est.dictionary_size_
        self.n_seen_ = est.n_seen_

    def predict(self, X):
        """Predictions of the current function."""
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(self, "learner_")
        return self.learner_.predict(X)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.regressor_tags.poor_score = True  # one online pass: see ntkit.online's estimators
        return tags
