"""NTK surrogate models: explain a trained network through its training examples.

On a device (jax inputs, or ``device="cpu"|"gpu"``, or ``ntkit.config_context(device=...)``) the
network's outputs, the kernel matrices, the solve and every prediction stay on that device; see
:class:`NTKSurrogate` for exactly what runs where.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np
import scipy.optimize
import scipy.stats

from .. import _linalg
from .._blas import matmul
from .._validation import InvalidParameterError, check_scalar, is_jax_array

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


def _x64():
    """float64 jax for the device work of the surrogate (the host path's precision)."""
    from ..ops._backends._jax import x64_scope

    return x64_scope(np.float64)


def to_host(a):
    import jax

    return np.asarray(jax.device_get(a))


def _check_device_x(X, name, placement):
    """The checks of ``ntkit.ntk``'s input validation, done where X lives; X on the placement's device."""
    import jax.numpy as jnp

    from .._device import to_device

    if not is_jax_array(X):
        from ..ntk._checks import _check_x

        X = np.asarray(_check_x(X, name))
        return to_device(X, placement)
    if X.ndim < 1:
        raise ValueError(f"{name} must have a leading batch dimension (n, ...); got a scalar.")
    if X.shape[0] == 0:
        raise ValueError(f"{name} has no rows (shape {tuple(X.shape)}); pass at least one example.")
    dt = np.dtype(X.dtype)
    if dt.kind not in "fiub" or dt == np.float16:
        raise TypeError(f"{name} must be a float32/float64 (or integer) array; got dtype {dt}.")
    if dt.kind == "f":
        with _x64():
            if not bool(to_host(jnp.isfinite(X).all())):
                raise ValueError(f"{name} contains NaN or infinity; remove or impute those entries first.")
    with _x64():
        return to_device(X, placement)


def _solve_psd_device(K, ridge, T, cho_factor, cho_solve):
    """``(K + ridge·I)⁻¹ T`` by Cholesky on the device (ridge > 0 keeps it positive definite)."""
    import jax.numpy as jnp

    c = cho_factor(K + ridge * jnp.eye(K.shape[0], dtype=K.dtype), lower=True)
    if not bool(to_host(jnp.isfinite(c[0]).all())):
        raise np.linalg.LinAlgError("the surrogate's kernel matrix plus ridge is not positive definite on the device; "
                                    "check the network's eNTK for NaN or raise the ridge (lower C).")
    return cho_solve(c, T)


@functools.lru_cache(maxsize=None)
def _logistic_objective(n, O, r, cols, full):
    """The jitted loss and gradient of :meth:`NTKSurrogate._fit_logistic` (same formulas)."""
    import jax
    import jax.numpy as jnp

    def fg(x, Phi, P_target, lam):
        W = x[: r * cols].reshape(r, cols)
        b = x[r * cols:]
        Sc = (Phi @ W).reshape(n, O) + b if full else Phi @ W + b
        Sc = Sc - Sc.max(axis=1, keepdims=True)
        logp = Sc - jnp.log(jnp.exp(Sc).sum(axis=1, keepdims=True))
        loss = -jnp.sum(P_target * logp) / n + 0.5 * lam * jnp.sum(W * W)
        G = (jnp.exp(logp) - P_target) / n
        gW = Phi.T @ (G.reshape(-1, 1) if full else G) + lam * W
        return loss, jnp.concatenate([gW.reshape(-1), G.sum(axis=0)])

    return jax.jit(fg)


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
    device : {"auto", "cpu", "gpu"} or jax.Device, default="auto"
        Where the surrogate is fitted and evaluated. ``"auto"`` follows the data: jax arrays on
        their device; numpy data on the host, unless ``ntkit.config_context(device=...)`` names a
        device. ``"cpu"`` / ``"gpu"``: numpy data are moved there once and numpy comes back.

        On a device, ``fit`` computes the network's outputs there, takes the eNTK Gram matrix
        from :func:`ntkit.ntk.empirical_ntk` to the device (no copy when the eNTK already lives
        there) and solves there in float64: ``"ridge"`` by a Cholesky factorisation
        (``jax.scipy.linalg.cho_factor``, for every n — the host switches to EigenPro above
        ``DIRECT_MAX``), ``"logistic"`` by an eigendecomposition (``jnp.linalg.eigh``) and
        L-BFGS whose objective and gradient are one jit-compiled device function of the
        (n × r) feature matrix — scipy's L-BFGS driver runs on the host and only the r·O
        coefficients cross per iteration. ``"svm"`` is scikit-learn's SVC: its Gram matrices
        go to the host. ``decision_function``, ``predict``, ``predict_proba`` and ``attribute``
        compute the cross kernel, the logits, the contributions and their top-k on the device
        and return jax arrays for jax input (in the input's dtype: float32 logits for float32
        data, computed in float64), numpy (float64, as on the host) otherwise. ``fidelity``
        computes the logits there; the rank statistics (scipy's Kendall τ) use host copies of
        the (n, O) logits.

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
                 verbose=False, device="auto"):
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
        self.device = device

    def __getstate__(self):
        """Fitted jax arrays pickle as numpy (a float64 jax array unpickled without x64 would come back
        float32); a surrogate fitted on a device moves them back when it next predicts there."""
        state = super().__getstate__()
        return {k: (np.asarray(v) if is_jax_array(v) else v) for k, v in state.items()}

    # ------------------------------------------------------------------ placement
    def _placement(self, *arrays):
        """The rule of ``device`` (class docstring); at prediction time a surrogate fitted on a device
        keeps numpy queries there too (its coefficients live there)."""
        from .._device import resolve_device

        device = self.device
        jax_in = any(is_jax_array(a) for a in arrays)
        if isinstance(device, str) and device == "auto" and not jax_in:
            fitted = self.__dict__.get("_device_fitted")
            if fitted is not None:
                from .._device import Placement, device_from_name

                return Placement(device_from_name(fitted), False)
            device = None
        return resolve_device(device, *arrays, owner="NTKSurrogate")

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

    def _network(self, X, name="X", placement=None):
        """The network's logits as float64: numpy ``F`` on the host; ``(X, F)`` — X checked and
        placed, F a jax array — when ``placement`` is on a device."""
        import jax

        from ..ntk._checks import _check_x

        if placement is not None and placement.on_device:
            X = _check_device_x(X, name, placement)
        else:
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
        if placement is not None and placement.on_device:
            from .._device import to_device

            with _x64():
                return X, to_device(self.apply_fn(self.params, X), placement, np.float64)
        return np.asarray(self.apply_fn(self.params, X), dtype=np.float64)

    def _kernel_device(self, placement, X1, X2=None):
        """The eNTK Gram matrix as a float64 jax array on the placement's device."""
        from .._device import to_device
        from ..ntk import empirical_ntk

        kind = self.kind
        normalize = None if kind == "full" else self.normalize
        kw = dict(kind=kind, normalize=normalize, memory_budget=self.memory_budget, batch_size=self.batch_size,
                  verbose=self.verbose)
        if kind == "projected":
            kw.update(n_projections=self.n_projections, projected_kind=self.projected_kind, key=self.key)
        K = empirical_ntk(self.apply_fn, self.params, X1, X2, **kw)
        with _x64():
            K = to_device(K, placement, np.float64)
            if kind == "full":  # (n, m, O, O) -> (n O, m O)
                n, m, O, _ = K.shape
                K = K.transpose(0, 2, 1, 3).reshape(n * O, m * O)
        return K

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
        placement = self._placement(X_train)
        self.__dict__.pop("_device_fitted", None)
        if placement.on_device:
            return self._fit_device(X_train, y_train, placement)
        X = np.asarray(X_train)
        F = self._network(X, "X_train")
        self._x_shape = tuple(X.shape[1:])
        n, O = F.shape
        self.n_outputs_ = O
        y = self._check_labels(y_train, n, O)
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

    def _check_labels(self, y_train, n, O):
        y = np.asarray(to_host(y_train) if is_jax_array(y_train) else y_train)
        if y.shape != (n,):
            raise ValueError(f"y_train must have shape ({n},) (one label per row of X_train); got {y.shape}.")
        if y.dtype.kind not in "iu" and not (y.dtype.kind == "f" and np.all(y == np.round(y))):
            raise ValueError("y_train must hold integer class labels (indices of the network's logits).")
        y = y.astype(np.int64)
        if y.min() < 0 or y.max() >= O:
            raise ValueError(f"y_train labels must be logit indices in [0, {O}) for this network with {O} outputs; "
                             f"got labels in [{y.min()}, {y.max()}].")
        return y

    def _fit_device(self, X_train, y_train, placement):
        """``fit`` on ``placement.device`` (see the class docstring)."""
        import jax
        import jax.numpy as jnp
        from jax.scipy.linalg import cho_factor, cho_solve

        from .._device import to_device

        X, F = self._network(X_train, "X_train", placement)
        self._x_shape = tuple(X.shape[1:])
        n, O = F.shape
        self.n_outputs_ = O
        y = self._check_labels(y_train, n, O)
        if self.kind == "projected" and not self.n_projections:
            raise InvalidParameterError("kind='projected' needs n_projections (the sketch dimension).")
        from .._device import device_name

        self._device_fitted = device_name(placement.device)  # a name: jax.Device objects do not pickle
        self.X_train_ = X
        self.y_train_ = y
        self.optimizer_result_ = None
        K = self._kernel_device(placement, X)
        full = self.kind == "full"
        with _x64():
            self.network_train_logits_ = F
            yd = to_device(y, placement)
            Y = jax.nn.one_hot(yd, O, dtype=jnp.float64)
            if self.machine == "svm":
                from sklearn.svm import SVC

                self.svm_ = SVC(kernel="precomputed", C=self.C, decision_function_shape="ovr").fit(to_host(K), y)
                self.dual_coef_ = None
                self.intercept_ = None
            elif self.machine == "ridge":
                T = F if self.target == "network" else Y
                lam = 1.0 / (self.C * n)
                if full:
                    A = _solve_psd_device(K, lam * n, T.reshape(-1), cho_factor, cho_solve).reshape(n, O)
                    b = jnp.zeros(O)
                else:
                    mean = T.mean(axis=0)
                    A = _solve_psd_device(K, lam * n, T - mean, cho_factor, cho_solve)
                    b = mean
                self.dual_coef_, self.intercept_ = A, b
            else:
                soft = jax.nn.softmax(F, axis=1) if self.target == "network" else Y
                self.dual_coef_, self.intercept_ = self._fit_logistic_device(K, soft, n, O, full)
            self.K_train_ = K
        return self

    def _fit_logistic_device(self, K, P_target, n, O, full):
        """:meth:`_fit_logistic` with the eigendecomposition and every objective evaluation on the device."""
        import jax
        import jax.numpy as jnp

        lam = 1.0 / (self.C * n)
        w, U = jnp.linalg.eigh((K + K.T) / 2)
        w_host = to_host(w)
        _linalg.report_negative(w_host, what="the surrogate's training kernel", stacklevel=4)
        keep = np.flatnonzero(w_host > 1e-10 * max(w_host.max(), 1e-300))
        kd = jax.device_put(keep, next(iter(K.devices())))
        w, U = w[kd], U[:, kd]
        Phi = U * jnp.sqrt(w)
        r = Phi.shape[1]
        cols = 1 if full else O
        fg = _logistic_objective(n, O, r, cols, full)

        def fun(x):
            loss, grad = fg(jax.device_put(x, Phi.devices().pop()), Phi, P_target, lam)
            loss, grad = jax.device_get((loss, grad))
            return float(loss), np.asarray(grad, dtype=np.float64)

        x0 = np.zeros(r * cols + O)
        res = scipy.optimize.minimize(fun, x0, jac=True, method="L-BFGS-B",
                                      options={"maxiter": 5000, "gtol": 1e-7, "ftol": 1e-13})
        self.optimizer_result_ = res
        x = jax.device_put(res.x, Phi.devices().pop())
        W = x[: r * cols].reshape(r, cols)
        A = U @ (W / jnp.sqrt(w)[:, None])
        if full:
            A = A.reshape(n, O)
        return A, x[r * cols:]

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

    def _cross(self, X, placement=None):
        self._fitted()
        from ..ntk._checks import _check_x

        if placement is not None and placement.on_device:
            X = _check_device_x(X, "X", placement)
        else:
            X = np.asarray(_check_x(X, "X"))
        if X.ndim < 1 or tuple(X.shape[1:]) != self._x_shape:
            raise ValueError(f"X has examples of shape {tuple(X.shape[1:])}, but the surrogate was fitted on examples of "
                             f"shape {self._x_shape}.")
        if placement is not None and placement.on_device:
            return X, self._kernel_device(placement, X, self._train_on(placement))
        return X, self._kernel(X, self._train_on(placement))

    def _train_on(self, placement):
        """The training inputs where this evaluation runs (host numpy or the placement's device)."""
        X = self.X_train_
        if placement is not None and placement.on_device:
            from .._device import to_device

            with _x64():
                return to_device(X, placement)
        return to_host(X) if is_jax_array(X) else X

    def _fitted_arrays(self, placement):
        """Dual coefficients and intercept on the host (numpy) or on the placement's device (float64)."""
        A, b = self.dual_coef_, self.intercept_
        if placement is not None and placement.on_device:
            from .._device import to_device

            with _x64():
                return (None if A is None else to_device(A, placement, np.float64),
                        None if b is None else to_device(b, placement, np.float64))
        return (None if A is None else (to_host(A) if is_jax_array(A) else A),
                None if b is None else (to_host(b) if is_jax_array(b) else b))

    def _out(self, a, placement, X):
        """jax out (in X's floating dtype) for jax input, numpy otherwise."""
        if not placement.on_device:
            return a
        if placement.jax_out:
            dt = np.dtype(X.dtype) if np.dtype(X.dtype).kind == "f" else np.dtype(np.float32)
            if np.dtype(a.dtype).kind == "f" and np.dtype(a.dtype) != dt:
                with _x64():
                    return a.astype(dt)
            return a
        return to_host(a)

    def decision_function(self, X):
        """Surrogate logits, shape (n, O): numpy float64 for numpy input, jax for jax input (on its
        device, in its dtype)."""
        placement = self._placement(X)
        Xc, Kx = self._cross(X, placement)
        return self._out(self._scores(Kx, len(Xc), placement), placement, Xc)

    def _scores(self, Kx, n, placement=None):
        O = self.n_outputs_
        on_device = placement is not None and placement.on_device
        if self.machine == "svm":
            d = self.svm_.decision_function(to_host(Kx) if is_jax_array(Kx) else Kx)
            if d.ndim == 1:  # two classes seen in training (whatever O is): columns for both
                d = np.stack([-d, d], axis=1)
            out = np.full((n, O), -np.inf if d.ndim == 2 and d.shape[1] < O else 0.0)
            out[:, self.svm_.classes_] = d if d.ndim == 2 else d[:, None]
            out = np.where(np.isfinite(out), out, np.min(d) - 1.0)
            if on_device:
                from .._device import to_device

                with _x64():
                    return to_device(out, placement)
            return out
        A, b = self._fitted_arrays(placement)
        if on_device:
            with _x64():
                if self.kind == "full":
                    return (Kx @ A.reshape(-1)).reshape(n, O) + b
                return Kx @ A + b
        if self.kind == "full":
            return matmul(Kx, A.reshape(-1)).reshape(n, O) + b
        return matmul(Kx, A) + b

    def predict(self, X):
        """The surrogate's class (argmax of its logits); jax out for jax input."""
        S = self.decision_function(X)
        if is_jax_array(S):
            import jax.numpy as jnp

            return jnp.argmax(S, axis=1)
        return np.argmax(S, axis=1)

    def predict_proba(self, X):
        """Softmax of the surrogate logits (the fitted probabilities for ``machine="logistic"``)."""
        S = self.decision_function(X)
        if is_jax_array(S):
            import jax

            return jax.nn.softmax(S, axis=1)
        return _softmax(S)

    # ------------------------------------------------------------------ explain
    def fidelity(self, X, y=None):
        """Agreement between surrogate and network logits on ``X`` (see :class:`Fidelity`).

        On a device the logits of both are computed there; the statistics use host copies of the
        two (n, O) logit matrices. ``kendall_tau_per_logit`` is a jax array for jax input."""
        placement = self._placement(X)
        if placement.on_device:
            Xc, Kx = self._cross(X, placement)
            with _x64():
                S_dev = self._scores(Kx, len(Xc), placement)
                _, F_dev = self._network(Xc, "X", placement)
                S, F = to_host(S_dev), to_host(F_dev)
        else:
            S = self.decision_function(X)
            F = self._network(np.asarray(X))
        tau = float(scipy.stats.kendalltau(S.ravel(), F.ravel()).statistic)
        per = np.array([scipy.stats.kendalltau(S[:, o], F[:, o]).statistic for o in range(F.shape[1])])
        pear = float(np.corrcoef(S.ravel(), F.ravel())[0, 1])
        r2 = float(1.0 - np.sum((F - S) ** 2) / np.sum((F - F.mean()) ** 2))
        agree = float(np.mean(np.argmax(S, 1) == np.argmax(F, 1)))
        sacc = nacc = None
        if y is not None:
            y = np.asarray(to_host(y) if is_jax_array(y) else y)
            if y.dtype.kind not in "iub" and not (y.dtype.kind == "f" and np.all(y == np.round(y))):
                raise ValueError(f"y must hold integer class labels (logit indices); got dtype {y.dtype}.")
            if y.shape != (len(S),):
                raise ValueError(f"y must have shape ({len(S)},) (one label per row of X); got {y.shape}.")
            sacc = float(np.mean(np.argmax(S, 1) == y))
            nacc = float(np.mean(np.argmax(F, 1) == y))
        if placement.jax_out:
            from .._device import to_device

            per = to_device(per.astype(np.float32), placement)
        return Fidelity(tau, per, pear, r2, agree, sacc, nacc)

    def attribute(self, X, top_k=5, logit="predicted"):
        """Training examples with the largest signed contributions to each query's logit.

        ``logit``: ``"predicted"`` (the surrogate's argmax), ``"network"`` (the network's argmax)
        or an int / array of logit indices. On a device the contributions and their top-k
        (``jax.lax.top_k``) are computed there; jax arrays come back for jax input.
        """
        if self.machine == "svm":
            raise InvalidParameterError("attribute() needs dual coefficients per logit; use machine='logistic' or "
                                        "'ridge'.")
        if self.kind == "full":
            raise InvalidParameterError("attribute() is defined for scalar kernels; use kind='trace', 'sum_logits' "
                                        "or 'projected'.")
        placement = self._placement(X)
        if placement.on_device:
            return self._attribute_device(X, top_k, logit, placement)
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
        A, b = self._fitted_arrays(None)
        top_k = int(min(top_k, Kx.shape[1]))
        contrib = Kx * A[:, o].T  # (n, n_train)
        sup = np.argsort(-contrib, axis=1)[:, :top_k]
        opp = np.argsort(contrib, axis=1)[:, :top_k]
        rows = np.arange(n)[:, None]
        bias = b[o]
        total = contrib.sum(axis=1)
        share = np.where(np.abs(total) > 0, contrib[rows, sup].sum(axis=1) / np.where(total == 0, 1, total), 0.0)
        y_train = self.y_train_
        return Attribution(o, S[np.arange(n), o], bias, sup, contrib[rows, sup], y_train[sup], opp,
                           contrib[rows, opp], y_train[opp], share)

    def _attribute_device(self, X, top_k, logit, placement):
        import jax
        import jax.numpy as jnp

        from .._device import to_device

        Xc, Kx = self._cross(X, placement)
        n = len(Xc)
        with _x64():
            S = self._scores(Kx, n, placement)
            if isinstance(logit, str):
                if logit == "predicted":
                    o = jnp.argmax(S, 1)
                elif logit == "network":
                    o = jnp.argmax(self._network(Xc, "X", placement)[1], 1)
                else:
                    raise InvalidParameterError(f"logit must be 'predicted', 'network' or indices; got {logit!r}.")
            else:
                oh = np.broadcast_to(np.asarray(to_host(logit) if is_jax_array(logit) else logit, dtype=np.int64), (n,))
                if oh.min() < 0 or oh.max() >= self.n_outputs_:
                    raise ValueError(f"logit indices must be in [0, {self.n_outputs_}).")
                o = to_device(np.ascontiguousarray(oh), placement)
            A, b = self._fitted_arrays(placement)
            k = int(min(top_k, Kx.shape[1]))
            contrib = Kx * A[:, o].T  # (n, n_train)
            sup_c, sup = jax.lax.top_k(contrib, k)
            opp_neg, opp = jax.lax.top_k(-contrib, k)
            total = contrib.sum(axis=1)
            share = jnp.where(jnp.abs(total) > 0, sup_c.sum(axis=1) / jnp.where(total == 0, 1, total), 0.0)
            y_train = to_device(self.y_train_, placement)
            parts = (o, S[jnp.arange(n), o], b[o], sup, sup_c, y_train[sup], opp, -opp_neg, y_train[opp], share)
            parts = tuple(self._out(p, placement, Xc) for p in parts)
        return Attribution(*parts)
