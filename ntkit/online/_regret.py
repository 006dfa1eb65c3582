r"""Regret against the best fixed function in hindsight.

``R_t = Σ_{s≤t} (f_s(x_s) − y_s)² − Σ_{s≤t} (f*(x_s) − y_s)²`` where ``f_s`` is the learner's function
at round s (its prediction made before y_s was seen) and ``f*`` one fixed function chosen after the
whole stream: by default kernel ridge regression on the stream,

    f* = argmin_f Σ_t (f(x_t) − y_t)² + ridge · ‖f‖²_H,

with the learner's kernel; ``ridge`` defaults to 1, the ``A_0 = I`` of the second-order learners, so
``α‖f*‖²`` in their regret bounds is the comparator's own penalty.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from sklearn.base import clone

from .._blas import matmul
from .._validation import check_array_arg, check_int, check_same_rows, check_scalar

__all__ = ["regret_curve", "RegretCurve"]


class RegretCurve(NamedTuple):
    """Per-round losses of a learner and of a fixed comparator on one stream.

    ``t`` is 1..T; ``regret[i] = cumulative_loss[i] − comparator_cumulative_loss[i]``.
    """

    t: np.ndarray
    loss: np.ndarray
    cumulative_loss: np.ndarray
    comparator_loss: np.ndarray
    comparator_cumulative_loss: np.ndarray
    regret: np.ndarray
    learner: str
    comparator: str

    def plot(self, ax=None):
        """Cumulative losses and regret against t (log-log). Returns the matplotlib Axes.

        Works under any backend (no pyplot state is touched when ``ax`` is None: a new
        :class:`matplotlib.figure.Figure` is made, reachable as ``ax.figure``).
        """
        if ax is None:
            from matplotlib.figure import Figure

            ax = Figure(figsize=(5.5, 3.8)).subplots()
        ax.loglog(self.t, self.cumulative_loss, label=f"{self.learner} cumulative loss")
        ax.loglog(self.t, self.comparator_cumulative_loss, "--", label=f"{self.comparator} cumulative loss")
        pos = self.regret > 0
        ax.loglog(self.t[pos], self.regret[pos], label="regret (where > 0)")
        ax.set_xlabel("round t")
        ax.set_ylabel("Σ square loss")
        ax.legend(fontsize=8)
        ax.grid(True, which="both", alpha=0.3)
        return ax


def _krr_comparator(kernel, X, y, ridge, n_centers, max_exact, random_state):
    from ..ops import gram

    n = X.shape[0]
    if n <= max_exact:
        from .. import _linalg

        K = np.asarray(gram(kernel, X), dtype=np.float64)
        alpha = _linalg.solve_psd(K + ridge * np.eye(n), y, what="the comparator's kernel matrix plus ridge")
        return matmul(K, alpha), f"KRR (ridge {ridge:g}, exact)"
    from ..solvers import nystrom_pcg

    m = min(n_centers, n)
    # Falkon's objective is ‖K_nm a − y‖² + λ n aᵀK_mm a: λ = ridge / n gives ridge·‖f‖².
    res = nystrom_pcg(kernel, X, y, n_centers=m, ridge=ridge / n, maxiter=50, tol=1e-8, random_state=random_state)
    return np.asarray(res.predict(X), dtype=np.float64), f"Nyström KRR (ridge {ridge:g}, {m} centers)"


def regret_curve(learner, X, y, comparator="krr", *, ridge=1.0, max_exact=6000, n_centers=2000, random_state=0):
    r"""Run an online learner over a stream and measure its regret against a fixed comparator.

    Parameters
    ----------
    learner : an ntkit.online estimator
        Cloned and fitted on (X, y) in order (the argument itself is not modified).
    X : array-like (T, n_features); y : array-like (T,)
    comparator : "krr", callable, or fitted estimator, default="krr"
        "krr": kernel ridge regression fitted on the whole stream with the learner's kernel —
        exactly (dense Cholesky) when T ≤ ``max_exact``, else by Nyström-PCG on ``n_centers``
        uniformly drawn centers (:func:`ntkit.solvers.nystrom_pcg`, a fixed function all the same).
        A callable ``f(X) -> (T,)`` or an object with ``predict`` is used as the fixed function.
    ridge : float > 0, default=1.0
        Penalty of the "krr" comparator: ``min Σ (f(x_t) − y_t)² + ridge‖f‖²``.
    max_exact, n_centers, random_state
        See ``comparator``.

    Returns
    -------
    RegretCurve
        Arrays over t = 1..T, with ``.plot()``.

    Examples
    --------
    >>> import numpy as np
    >>> from ntkit.online import NONSALD, regret_curve
    >>> rng = np.random.default_rng(0)
    >>> X = rng.uniform(-1, 1, size=(400, 2)); y = np.sin(3 * X[:, 0]) + 0.1 * rng.normal(size=400)
    >>> rc = regret_curve(NONSALD(horizon=400), X, y)
    >>> bool(rc.regret[-1] < 0.5 * rc.cumulative_loss[-1])
    True
    """
    ridge = check_scalar(ridge, "ridge", "regret_curve", low=0.0, closed="neither")
    max_exact = check_int(max_exact, "max_exact", "regret_curve", low=0)
    n_centers = check_int(n_centers, "n_centers", "regret_curve", low=1)
    check_array_arg(X, "X", ndim=2, min_rows=1)
    check_array_arg(y, "y", ndim=1)  # a column (n, 1) would broadcast against the (n,) predictions
    check_same_rows(X, y, "X", "y")
    model = clone(learner).fit(X, y)
    Xf = np.asarray(X, dtype=np.float64)
    yf = np.asarray(y, dtype=np.float64)
    pred = np.asarray(model.online_predictions_, dtype=np.float64)
    if isinstance(comparator, str):
        if comparator != "krr":
            raise ValueError(f"comparator must be 'krr', a callable or a fitted estimator; got {comparator!r}.")
        comp, comp_name = _krr_comparator(model.kernel_, Xf, yf, ridge, n_centers, max_exact, random_state)
    elif hasattr(comparator, "predict"):
        comp, comp_name = np.asarray(comparator.predict(X), dtype=np.float64), type(comparator).__name__
    elif callable(comparator):
        comp, comp_name = np.asarray(comparator(X), dtype=np.float64), getattr(comparator, "__name__", "comparator")
    else:
        raise TypeError(f"comparator must be 'krr', a callable or a fitted estimator; got {type(comparator).__name__}.")
    if comp.shape != yf.shape:
        raise ValueError(f"the comparator returned shape {comp.shape}; expected {yf.shape}.")
    loss = (pred - yf) ** 2
    closs = (comp - yf) ** 2
    cum, ccum = np.cumsum(loss), np.cumsum(closs)
    return RegretCurve(np.arange(1, len(yf) + 1), loss, cum, closs, ccum, cum - ccum, type(learner).__name__,
                       comp_name)
