"""NTK surrogate models: explain a trained network through its training examples."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import scipy.optimize
import scipy.stats

from .. import _linalg
from .._blas import matmul
from .._validation import InvalidParameterError, check_scalar

__all__ = ["NTKSurrogate", "Fidelity", "Attribution"]

_KINDS = ("trace", "sum_logits", "full", "projected")
_MACHINES = ("logistic", "ridge", "svm")
_TARGETS = ("labels", "network")
#: Above this many training examples the ridge machine is solved by EigenPro (precomputed Gram).
DIRECT_MAX = 6000


class Fidelity(NamedTuple):
    """How closely the surrogate's logits track the network's (on the rows given to ``fidelity``).

    ``kendall_tau`` and ``pearson`` over all (example, logit) pairs; ``kendall_tau_per_logit``
    the τ of each logit column; ``r2`` the coefficient of determination of the network's
    logits by the surrogate's, without rescaling, against the grand mean of all logits (1 is
    perfect; negative when the scales differ); ``label_agreement`` the
    fraction of rows whose argmax agrees; ``surrogate_accuracy``/``network_accuracy`` when
    labels are given.
    """

    kendall_tau: float
    kendall_tau_per_logit: np.ndarray
    pearson: float
    r2: float
    label_agreement: float
    surrogate_accuracy: float | None
    network_accuracy: float | None


class Attribution(NamedTuple):
    """Per query row: which training examples push the explained logit up or down.

    ``contributions`` of training example j to logit o of query x: ``A[j, o] · K(x, x_j)``, so
    the logit is ``bias[o] + Σ_j contributions``. ``support_*`` are the ``top_k`` largest
    contributions, ``oppose_*`` the ``top_k`` smallest (normally positive and negative; not
    filtered by sign); ``support_share`` is the sum of the supporting contributions divided by
    the logit minus bias (it can exceed 1 when opposing examples cancel part of it).
    """

    logit_index: np.ndarray  # (n,)
    logit: np.ndarray  # (n,)
    bias: np.ndarray  # (n,)
    support_index: np.ndarray  # (n, k)
    support_contribution: np.ndarray
    support_label: np.ndarray
    oppose_index: np.ndarray
    oppose_contribution: np.ndarray
    oppose_label: np.ndarray
    support_share: np.ndarray  # (n,)


def _softmax(Z):
    Z = Z - Z.max(axis=1, keepdims=True)
    E = np.exp(Z)
    return E / E.sum(axis=1, keepdims=True)


class NTKSurrogate:
    r"""A kernel machine on a trained network's empirical NTK that stands in for the network.

    Parameters
    ----------
    apply_fn, params
        The trained network: ``apply_fn(params, x) -> (n, O)`` logits.
    kind : {"trace", "sum_logits", "full", "projected"}
        Which eNTK (see :func:`ntkit.ntk.empirical_ntk`). ``"full"`` uses the (nO × nO)
        operator-valued kernel (small n only); ``"projected"`` needs ``n_projections``.
    normalize : {"cosine", None}
        Cosine normalisation (Engel et al.): much better faithfulness than the raw kernel.
        Ignored for ``kind="full"``.
    machine : {"logistic", "ridge", "svm"}
        ``"logistic"``: multinomial kernel logistic regression, cross-entropy plus
        ``C⁻¹/2 · tr(AᵀKA)``, fitted by L-BFGS — a kernel GLM on the labels, as in Engel et al.
        ``"ridge"``: kernel ridge on one-hot labels (or on the network's logits).
        ``"svm"``: scikit-learn's ``SVC(kernel="precomputed")`` (labels only).
    target : {"labels", "network"}
        ``"labels"``: fit the training labels — the surrogate is an independent kernel model
        whose agreement with the network measures how well the NTK explains it.
        ``"network"``: fit the network's own training outputs (soft labels for logistic,
        logits for ridge) — a distillation that tracks the network more closely but says
        less about whether the kernel alone would have learned the task.
    C : float
        Inverse regularisation strength (logistic, svm); ridge uses ``1 / (C n)`` as λ.
    n_projections, projected_kind, key, memory_budget, batch_size, verbose
        Passed to :func:`ntkit.ntk.empirical_ntk` (``projected_kind="sum_logits"`` sketches the pNTK).

    Examples
    --------
    >>> import jax, numpy as np
    >>> from ntkit.ntk.models import mlp
    >>> from ntkit.explain import NTKSurrogate
    >>> init, apply = mlp((4, 32, 3))
    >>> params = init(jax.random.PRNGKey(0))
    >>> X = np.random.default_rng(0).normal(size=(60, 4)).astype(np.float32)
    >>> y = np.argmax(np.asarray(apply(params, X)), axis=1)
    >>> sur = NTKSurrogate(apply, params).fit(X, y)
    >>> sur.decision_function(X[:5]).shape
    (5, 3)
    """

    def __init__(self, apply_fn, params, *, kind="trace", normalize="cosine", machine="logistic", target="labels",
                 C=10.0, n_projections=None, projected_kind="trace", key=0, memory_budget=None, batch_size=None,
                 verbose=False):
        self.apply_fn = apply_fn
        self.params = params
        self.kind = kind
        self.normalize = normalize
        self.machine = machine
        self.target = target
        self.C = C
        self.n_projections = n_projections
        self.projected_kind = projected_kind
        self.key = key
        self.memory_budget = memory_budget
        self.batch_size = batch_size
        self.verbose = verbose

    # ------------------------------------------------------------------ helpers
    def _check(self):
        for name, value, options in (("kind", self.kind, _KINDS), ("machine", self.machine, _MACHINES),
                                     ("target", self.target, _TARGETS)):
            if value not in options:
                raise InvalidParameterError(f"The '{name}' parameter of NTKSurrogate must be one of {options}. Got "
                                            f"{value!r} instead.")
        if self.normalize not in (None, "cosine"):
            raise InvalidParameterError(f"normalize must be 'cosine' or None; got {self.normalize!r}.")
        if self.machine == "svm" and self.target == "network":
            raise InvalidParameterError("machine='svm' fits class labels; use target='labels' (or machine='ridge' / "
                                        "'logistic' to fit the network's outputs).")
        if self.kind == "full" and self.machine == "svm":
            raise InvalidParameterError("kind='full' (an operator-valued kernel) works with machine='logistic' or "
                                        "'ridge', not 'svm'.")
        check_scalar(self.C, "C", "NTKSurrogate", low=0.0, closed="right")

    def _network(self, X, name="X"):
        import jax

        from ..ntk._empirical import _check_x

        X = np.asarray(_check_x(X, name))  # dtype, rank, rows and finiteness, with this method's name for X
        if X.ndim < 2 and self._x_shape is None:
            raise ValueError(f"{name} must be a batch of examples (n, ...); got shape {X.shape}.")
        if self._x_shape is not None and tuple(X.shape[1:]) != self._x_shape:
            raise ValueError(f"{name} has examples of shape {tuple(X.shape[1:])}, but the surrogate was fitted on "
                             f"examples of shape {self._x_shape}.")
        try:
            out = jax.eval_shape(self.apply_fn, self.params, jax.ShapeDtypeStruct(X.shape, X.dtype))
        except Exception as exc:  # noqa: BLE001 - any failure here means params/X do not fit apply_fn
            raise ValueError(f"apply_fn(params, {name}) failed for {name} of shape {X.shape}: {exc}. Check that params "
                             f"belong to apply_fn and that {name} has the network's input shape.") from None
        if len(out.shape) != 2 or out.shape[0] != X.shape[0]:
            raise ValueError(f"apply_fn(params, {name}) must return (n, O) logits; got shape {tuple(out.shape)}.")
        return np.asarray(self.apply_fn(self.params, X), dtype=np.float64)

    def _kernel(self, X1, X2=None):
        from ..ntk import empirical_ntk

        kind = self.kind
        normalize = None if kind == "full" else self.normalize
        kw = dict(kind=kind, normalize=normalize, memory_budget=self.memory_budget, batch_size=self.batch_size,
                  verbose=self.verbose)
        if kind == "projected":
            kw.update(n_projections=self.n_projections, projected_kind=self.projected_kind, key=self.key)
        K = np.asarray(empirical_ntk(self.apply_fn, self.params, X1, X2, **kw), dtype=np.float64)
        if kind == "full":  # (n, m, O, O) -> (n O, m O)
            n, m, O, _ = K.shape
            K = K.transpose(0, 2, 1, 3).reshape(n * O, m * O)
        return K

    # ------------------------------------------------------------------ fit
    def fit(self, X_train, y_train):
        """Fit the kernel machine on the eNTK of the training set (a dense n × n Gram)."""
        self._check()
        self._x_shape = None
        X = np.asarray(X_train)
        F = self._network(X, "X_train")
        self._x_shape = tuple(X.shape[1:])
        n, O = F.shape
        self.n_outputs_ = O
        y = np.asarray(y_train)
        if y.shape != (n,):
            raise ValueError(f"y_train must have shape ({n},) (one label per row of X_train); got {y.shape}.")
        if y.dtype.kind not in "iu" and not (y.dtype.kind == "f" and np.all(y == np.round(y))):
            raise ValueError("y_train must hold integer class labels (indices of the network's logits).")
        y = y.astype(np.int64)
        if y.min() < 0 or y.max() >= O:
            raise ValueError(f"y_train labels must be logit indices in [0, {O}) for this network with {O} outputs; "
                             f"got labels in [{y.min()}, {y.max()}].")
        if self.kind == "projected" and not self.n_projections:
            raise InvalidParameterError("kind='projected' needs n_projections (the sketch dimension).")
        self.X_train_ = X
        self.y_train_ = y
        self.network_train_logits_ = F
        K = self._kernel(X)
        full = self.kind == "full"
        Y = np.eye(O)[y]
        if self.machine == "svm":
            from sklearn.svm import SVC

            self.svm_ = SVC(kernel="precomputed", C=self.C, decision_function_shape="ovr").fit(K, y)
            self.dual_coef_ = None
            self.intercept_ = None
        elif self.machine == "ridge":
            T = F if self.target == "network" else Y
            lam = 1.0 / (self.C * n)
            if full:
                A = _linalg.solve_psd(K + lam * n * np.eye(n * O), T.reshape(-1), overwrite_a=True,
                                      what="the surrogate's kernel matrix plus ridge").reshape(n, O)
                b = np.zeros(O)
            else:
                mean = T.mean(axis=0)
                if n <= DIRECT_MAX:
                    A = _linalg.solve_psd(K + lam * n * np.eye(n), T - mean, overwrite_a=True,
                                          what="the surrogate's kernel matrix plus ridge")
                else:
                    from ..solvers import eigenpro

                    A = eigenpro("precomputed", K, T - mean, ridge=lam * n, epochs=20, tol=1e-10,
                                 random_state=0).weights
                b = mean
            self.dual_coef_, self.intercept_ = A, b
        else:
            soft = _softmax(F) if self.target == "network" else Y
            self.dual_coef_, self.intercept_ = self._fit_logistic(K, soft, n, O, full)
        self.K_train_ = K
        return self

    def _fit_logistic(self, K, P_target, n, O, full):
        """min_A,b  mean CE(softmax(K A + b), P) + (1/(2 C n)) tr(Aᵀ K A), by L-BFGS.

        Solved in the kernel's eigenbasis: with K = U Λ Uᵀ and features Φ = U Λ^{1/2}, the scores
        are Φ W + b and the penalty is ‖W‖²/(2 C n) — an ordinary, well-conditioned multinomial
        logistic regression (in the coefficients A it is as ill-conditioned as K², and L-BFGS
        stalls). A = U Λ^{-1/2} W; directions with λ < 1e-10 λ_max are dropped (they carry
        no function).
        """
        lam = 1.0 / (self.C * n)
        w, U = _linalg.eigh((K + K.T) / 2, overwrite_a=True)
        # an empirical NTK is PSD in exact arithmetic; say so when round-off (or a non-PSD kind) left
        # negative eigenvalues beyond round-off level: their directions are dropped with the tiny ones
        _linalg.report_negative(w, what="the surrogate's training kernel", stacklevel=3)
        keep = w > 1e-10 * max(w.max(), 1e-300)
        w, U = w[keep], U[:, keep]
        Phi = U * np.sqrt(w)
        r = Phi.shape[1]
        if full:  # one logistic output per (example, logit) row of the (nO x nO) kernel: scores = (Φ W)[:, 0]
            T = P_target  # (n, O)

            def scores(W, b):
                return matmul(Phi, W).reshape(n, O) + b
        else:
            def scores(W, b):
                return matmul(Phi, W) + b

        cols = 1 if full else O

        def fg(x):
            W = x[: r * cols].reshape(r, cols)
            b = x[r * cols:]
            Sc = scores(W, b)
            Sc = Sc - Sc.max(axis=1, keepdims=True)
            logp = Sc - np.log(np.exp(Sc).sum(axis=1, keepdims=True))
            loss = -np.sum(P_target * logp) / n + 0.5 * lam * np.sum(W * W)
            G = (np.exp(logp) - P_target) / n
            gW = matmul(Phi.T, G.reshape(-1, 1) if full else G) + lam * W
            return loss, np.concatenate([gW.reshape(-1), G.sum(axis=0)])

        x0 = np.zeros(r * cols + O)
        res = scipy.optimize.minimize(fg, x0, jac=True, method="L-BFGS-B",
                                      options={"maxiter": 5000, "gtol": 1e-7, "ftol": 1e-13})
        self.optimizer_result_ = res
        W = res.x[: r * cols].reshape(r, cols)
        A = matmul(U, W / np.sqrt(w)[:, None])
        if full:
            A = A.reshape(n, O)
        return A, res.x[r * cols:]

    # ------------------------------------------------------------------ predict
    def _fitted(self):
        if not hasattr(self, "K_train_"):
            from sklearn.exceptions import NotFittedError

            raise NotFittedError("This NTKSurrogate is not fitted yet; call fit(X_train, y_train) first.")

    def _cross(self, X):
        self._fitted()
        from ..ntk._empirical import _check_x

        X = np.asarray(_check_x(X, "X"))
        if X.ndim < 1 or tuple(X.shape[1:]) != self._x_shape:
            raise ValueError(f"X has examples of shape {tuple(X.shape[1:])}, but the surrogate was fitted on examples of "
                             f"shape {self._x_shape}.")
        return X, self._kernel(X, self.X_train_)

    def decision_function(self, X):
        """Surrogate logits, shape (n, O)."""
        X, Kx = self._cross(X)
        return self._scores(Kx, len(X))

    def _scores(self, Kx, n):
        O = self.n_outputs_
        if self.machine == "svm":
            d = self.svm_.decision_function(Kx)
            if d.ndim == 1:  # two classes seen in training (whatever O is): columns for both
                d = np.stack([-d, d], axis=1)
            out = np.full((n, O), -np.inf if d.ndim == 2 and d.shape[1] < O else 0.0)
            out[:, self.svm_.classes_] = d if d.ndim == 2 else d[:, None]
            return np.where(np.isfinite(out), out, np.min(d) - 1.0)
        if self.kind == "full":
            return matmul(Kx, self.dual_coef_.reshape(-1)).reshape(n, O) + self.intercept_
        return matmul(Kx, self.dual_coef_) + self.intercept_

    def predict(self, X):
        return np.argmax(self.decision_function(X), axis=1)

    def predict_proba(self, X):
        """Softmax of the surrogate logits (the fitted probabilities for ``machine="logistic"``)."""
        return _softmax(self.decision_function(X))

    # ------------------------------------------------------------------ explain
    def fidelity(self, X, y=None):
        """Agreement between surrogate and network logits on ``X`` (see :class:`Fidelity`)."""
        S = self.decision_function(X)
        F = self._network(np.asarray(X))
        tau = float(scipy.stats.kendalltau(S.ravel(), F.ravel()).statistic)
        per = np.array([scipy.stats.kendalltau(S[:, o], F[:, o]).statistic for o in range(F.shape[1])])
        pear = float(np.corrcoef(S.ravel(), F.ravel())[0, 1])
        r2 = float(1.0 - np.sum((F - S) ** 2) / np.sum((F - F.mean()) ** 2))
        agree = float(np.mean(np.argmax(S, 1) == np.argmax(F, 1)))
        sacc = nacc = None
        if y is not None:
            y = np.asarray(y)
            if y.dtype.kind not in "iub" and not (y.dtype.kind == "f" and np.all(y == np.round(y))):
                raise ValueError(f"y must hold integer class labels (logit indices); got dtype {y.dtype}.")
            if y.shape != (len(S),):
                raise ValueError(f"y must have shape ({len(S)},) (one label per row of X); got {y.shape}.")
            sacc = float(np.mean(np.argmax(S, 1) == y))
            nacc = float(np.mean(np.argmax(F, 1) == y))
        return Fidelity(tau, per, pear, r2, agree, sacc, nacc)

    def attribute(self, X, top_k=5, logit="predicted"):
        """Training examples with the largest signed contributions to each query's logit.

        ``logit``: ``"predicted"`` (the surrogate's argmax), ``"network"`` (the network's argmax)
        or an int / array of logit indices.
        """
        if self.machine == "svm":
            raise InvalidParameterError("attribute() needs dual coefficients per logit; use machine='logistic' or "
                                        "'ridge'.")
        if self.kind == "full":
            raise InvalidParameterError("attribute() is defined for scalar kernels; use kind='trace', 'sum_logits' "
                                        "or 'projected'.")
        X, Kx = self._cross(X)
        n = len(X)
        S = self._scores(Kx, n)
        if isinstance(logit, str):
            if logit == "predicted":
                o = np.argmax(S, 1)
            elif logit == "network":
                o = np.argmax(self._network(X), 1)
            else:
                raise InvalidParameterError(f"logit must be 'predicted', 'network' or indices; got {logit!r}.")
        else:
            o = np.broadcast_to(np.asarray(logit, dtype=np.int64), (n,))
            if o.min() < 0 or o.max() >= self.n_outputs_:
                raise ValueError(f"logit indices must be in [0, {self.n_outputs_}).")
        top_k = int(min(top_k, Kx.shape[1]))
        contrib = Kx * self.dual_coef_[:, o].T  # (n, n_train)
        sup = np.argsort(-contrib, axis=1)[:, :top_k]
        opp = np.argsort(contrib, axis=1)[:, :top_k]
        rows = np.arange(n)[:, None]
        bias = self.intercept_[o]
        total = contrib.sum(axis=1)
        share = np.where(np.abs(total) > 0, contrib[rows, sup].sum(axis=1) / np.where(total == 0, 1, total), 0.0)
        return Attribution(o, S[np.arange(n), o], bias, sup, contrib[rows, sup], self.y_train_[sup], opp,
                           contrib[rows, opp], self.y_train_[opp], share)
