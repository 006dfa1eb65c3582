r"""AOGD-ALD and NONS-ALD (Li & Liao, ICML 2023): online kernel regression on an ALD dictionary.

Both learners keep a dictionary ``D`` chosen by the approximate-linear-dependence test and work in
the orthonormal coordinates of ``span φ(D)`` given by the Cholesky factor ``K_DD = L Lᵀ``:

    φ_D(x) = L⁻¹ k_D(x),        δ(x) = k(x, x) − ‖φ_D(x)‖²   (squared RKHS distance of φ(x) to span φ(D)).

``φ_D`` is the paper's Nyström map ``Σ^{-1/2} Uᵀ k_D(x)`` up to a fixed rotation (both are
``K_DD^{-1/2}`` factorisations), and both learners are rotation-equivariant, so every prediction is
the paper's. The Cholesky choice makes dictionary growth cheap and exact: appending an atom appends
one coordinate, ``φ_{D∪{x}}(x') = (φ_D(x'), ψ(x'))``, so the paper's re-expression
``A ← μI + Q(A − μI)Qᵀ, w ← Q w`` is, in these coordinates, ``Q = [I; 0]``: pad with a zero
coordinate (and ``μ`` on the diagonal of A). No SVD, no O(m³) solve when the dictionary grows.

AOGD-ALD: ``f = θᵀφ_D`` with ‖f‖ = ‖θ‖ exactly; projected gradient ``2 r_t φ_D(x_t)``, AdaGrad-norm
step ``η_t = U_t / sqrt(Σ_{s≤t} ‖∇_s‖²)``, projection onto the ball ``‖f‖ ≤ U_t``. (The R code starts
the sum at 1, which ties the step to the unit of y; we start it at 0 — rounds with a zero gradient
take no step — so the learner is equivariant to the unit of y. The R code also tracks ‖f‖ by an
incremental formula and grows K_DD⁻¹ by block inversion; the orthonormal coordinates need neither.)

NONS-ALD: online Newton step on the features ``φ_D``: with ``A_0 = μ I``,

    z = vᵀφ_t,  ŷ_t = clip(z, −C, C)                     (the generalised projection of v onto
    w = v − h(z) A⁻¹φ_t / (φ_tᵀA⁻¹φ_t),  h(z) = sign(z) max(|z| − C, 0)     |φ_tᵀ w| ≤ C, lazily)
    g_t = 2(ŷ_t − y_t) φ_t,  A ← A + η_t g_t g_tᵀ,  v ← w − A⁻¹ g_t.

The paper projects onto ``|φ_{t+1}ᵀ w| ≤ C`` at the end of round t; doing it at the start of round
t+1 is the same computation, needs no look-ahead, and uses the features of the current dictionary
(so with threshold 0 the learner *is* KONS). ``A⁻¹`` is updated by Sherman–Morrison and recomputed
from A (Cholesky, O(m³)) every ``refactor_every`` rounds so its error does not accumulate.

References
----------
Junfan Li and Shizhong Liao. Nearly optimal algorithms with sublinear computational complexity for
online kernel regression. ICML 2023, PMLR 202:19743-19766 (arXiv:2306.08320); R code JunfLi-TJU/OKR.
Y. Engel, S. Mannor, R. Meir. The kernel recursive least-squares algorithm. IEEE TSP 52(8), 2004.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from scipy.linalg.blas import dsymv, dsyr, dsyrk
from scipy.linalg.lapack import dpotrf, dpotri

from .._blas import matmul
from .._leverage import OnlineRLSDictionary
from ..ops import gram
from ._jax import resolve_core_device
from ._jax_ald import device_ald
from ._common import (
    RESIDUAL_FLOOR,
    on_device as _on_device,
    OnlineLearner,
    Step,
    ald_thresholds,
    bound,
    check_auto_scalar,
    check_kernel,
    check_optional_int,
    check_query,
    check_stream,
    chunks,
    curvature,
    out_dtype,
    radius,
    running_max_abs,
)

__all__ = ["aogd_ald", "nons_ald", "AOGDALDState", "NONSALDState", "ald_features"]

_CHUNK = 256
_PENDING = 64  # curvature terms queued before a rank-k update of A


def ald_features(dictionary, kernel, X, k_XX, alphas, budget=None):
    """Run the ALD test over the rows of X in order, growing the dictionary.

    Parameters
    ----------
    dictionary : OnlineRLSDictionary with ridge 0
    kernel : Kernel
    X : array (n, d) float64; k_XX : array (n,) its kernel diagonal
    alphas : array (n,)
        Threshold of each row: row i joins when ``δ_i > max(α_i², 1e-10) · k(x_i, x_i)`` (an empty
        dictionary takes the first row with ``δ > 1e-10·k(x, x)``).
    budget : int or None
        Maximum dictionary size.

    Returns
    -------
    dictionary : the grown dictionary
    F : array (n, m) — row i holds ``φ_{D_i}(x_i)`` in the coordinates of the final dictionary,
        where ``D_i`` is the dictionary of round i (after x_i's own test); coordinates added after
        round i are zero.
    sizes : int array (n,) — ``|D_i|``.
    """
    n = X.shape[0]
    m0 = len(dictionary)
    F = np.zeros((n, m0 + n))
    if m0:
        F[:, :m0] = dictionary.solve_lower(np.asarray(gram(kernel, dictionary.points, X), dtype=np.float64)).T
    delta = np.clip(k_XX - np.einsum("ij,ij->i", F[:, :m0], F[:, :m0]), 0.0, None)
    floor = RESIDUAL_FLOOR * k_XX
    thr = np.maximum(alphas * alphas * k_XX, floor)
    added = np.zeros(n, dtype=bool)
    m, i = m0, 0
    while i < n and (budget is None or m < budget):
        mask = delta[i:] > (floor[i:] if m == 0 else thr[i:])
        if not mask.any():
            break
        j = i + int(np.argmax(mask))
        a = F[j, :m].copy()
        piv2 = k_XX[j] - float(a @ a)
        if not piv2 > floor[j]:  # rounding moved it under the floor: leave it out
            delta[j] = 0.0
            i = j
            continue
        dictionary = dictionary.add(x=X[j], weight=1.0, a=a, k_xx=float(k_XX[j]))
        s = math.sqrt(piv2)
        F[j, m] = s
        if j + 1 < n:
            k_rj = np.asarray(gram(kernel, X[j + 1:], X[j:j + 1]), dtype=np.float64)[:, 0]
            col = (k_rj - matmul(F[j + 1:, :m], a)) / s
            F[j + 1:, m] = col
            delta[j + 1:] = np.clip(delta[j + 1:] - col * col, 0.0, None)
        delta[j] = 0.0
        added[j] = True
        m += 1
        i = j + 1
    sizes = m0 + np.cumsum(added)
    return dictionary, F[:, :m], sizes


def _ald_features_for_query(dictionary, kernel, X):
    if len(dictionary) == 0:
        return np.zeros((0, X.shape[0]))
    return dictionary.solve_lower(np.asarray(gram(kernel, dictionary.points, X), dtype=np.float64))


def _check_ald_params(owner, threshold, horizon, budget):
    threshold = check_auto_scalar(threshold, "threshold", owner, low=0.0, closed="left")
    horizon = check_optional_int(horizon, "horizon", owner)
    budget = check_optional_int(budget, "budget", owner)
    return threshold, horizon, budget


# ================================================================================================
# AOGD-ALD
# ================================================================================================

class AOGDALDState(NamedTuple):
    """State of AOGD-ALD.

    ``theta`` holds f in the orthonormal coordinates of span φ(D): ``f(x) = θᵀ L⁻¹ k_D(x)`` and
    ``‖f‖_H = ‖θ‖``. ``grad_sq_sum`` is the AdaGrad-norm accumulator ``Σ ‖∇_s‖²``.
    """

    n_features: int
    dictionary: OnlineRLSDictionary
    theta: np.ndarray
    grad_sq_sum: float
    t: int
    cumulative_loss: float
    y_scale: float
    k_scale: float

    def coefficients(self):
        """c with ``f = Σ_j c_j k(d_j, ·)`` (``c = L⁻ᵀ θ``), shape (m,)."""
        return self.dictionary.solve_upper(self.theta)


def aogd_ald(kernel, *, U="auto", threshold="auto", horizon=None, budget=None, device=None):
    r"""AOGD-ALD: AdaGrad-norm kernel gradient descent on an ALD dictionary (Li & Liao 2023).

    Parameters
    ----------
    kernel : Kernel
    U : float > 0 or "auto", default="auto"
        Radius of the RKHS ball ``‖f‖ ≤ U``; "auto" is ``5·max|y|/sqrt(max k(x, x))`` over the rounds
        seen (see :mod:`ntkit.online._common`). The paper's code uses U = 2 (targets in [−1, 1]).
    threshold : float >= 0 or "auto", default="auto"
        ALD threshold α: x joins the dictionary when ``δ(x) > α² k(x, x)``. "auto": ``5/sqrt(horizon)``,
        or the anytime doubling schedule ``5/sqrt(2^⌈log₂ t⌉)`` when ``horizon`` is None.
    horizon : int, optional
        The number of rounds T, when known.
    budget : int, optional
        Maximum dictionary size (None: unbounded).
    device : None, "cpu", "gpu" or jax.Device, default=None
        None: the host core. Otherwise the rounds (ALD test, features, gradient step) run on that
        jax device as a jit-compiled scan with the dictionary, its Cholesky factor and θ in
        fixed-capacity device buffers doubled as needed (see :mod:`ntkit.online._jax`); the state
        is an :class:`~ntkit.online._jax_ald.ALDDeviceState`, predictions numpy for numpy input and
        jax for jax input.

    Returns
    -------
    OnlineLearner
        ``init(n_features)``, ``update(state, X, y) -> Step(state, predictions)``, ``predict(state, X)``.

    Examples
    --------
    >>> import numpy as np
    >>> from ntkit.kernels import RBF
    >>> from ntkit.online import aogd_ald
    >>> rng = np.random.default_rng(0)
    >>> X = rng.uniform(-1, 1, size=(500, 2)); y = np.sin(3 * X[:, 0])
    >>> learner = aogd_ald(RBF(0.5), horizon=500)
    >>> state, preds = learner.update(learner.init(2), X, y)
    >>> state.t, len(state.dictionary) < 100
    (500, True)
    """
    owner = "aogd_ald"
    check_kernel(kernel, owner)
    U = check_auto_scalar(U, "U", owner)
    threshold, horizon, budget = _check_ald_params(owner, threshold, horizon, budget)
    dev = resolve_core_device(device, owner)
    if dev is not None:
        cfg = {"U": U, "threshold": threshold, "horizon": horizon, "budget": budget}
        return _on_device(owner, "AOGD-ALD", device_ald(kernel, "aogd", cfg, dev))

    def init(n_features):
        return AOGDALDState(int(n_features), OnlineRLSDictionary(n_features, 0.0), np.zeros(0), 0.0, 0, 0.0, 0.0, 0.0)

    def update(state, X, y):
        X, y = check_stream(X, y, state.n_features, owner)
        dtype_out = out_dtype(X)
        preds = np.empty(X.shape[0])
        dic, theta, S = state.dictionary, state.theta.copy(), state.grad_sq_sum
        t, loss, ys, ks = state.t, state.cumulative_loss, state.y_scale, state.k_scale
        for sl in chunks(X.shape[0], _CHUNK):
            Xc, yc = X[sl], y[sl]
            n = Xc.shape[0]
            kxx = np.asarray(kernel.diag(Xc), dtype=np.float64)
            dic, F, sizes = ald_features(dic, kernel, Xc, kxx, ald_thresholds(threshold, horizon, t, n), budget)
            _, ys_after = running_max_abs(ys, yc)
            ks_after = np.maximum.accumulate(np.maximum(kxx, ks))
            if theta.shape[0] < F.shape[1]:
                theta = np.concatenate([theta, np.zeros(F.shape[1] - theta.shape[0])])
            out = preds[sl]
            for r in range(n):
                phi = F[r, :sizes[r]]
                th = theta[:sizes[r]]  # a view: coordinates added later are still zero
                f = float(th @ phi)
                out[r] = f
                res = f - yc[r]
                loss += res * res
                S += 4.0 * res * res * float(phi @ phi)
                Ur = radius(U, ys_after[r], ks_after[r])
                if S > 0.0 and res != 0.0:
                    th -= (Ur / math.sqrt(S)) * 2.0 * res * phi
                    nrm = math.sqrt(float(th @ th))
                    if nrm > Ur:
                        th *= Ur / nrm
                        th[np.abs(th) < 1e-250] = 0.0  # no subnormals (see _kogd._flush)
            t += n
            ys, ks = float(ys_after[-1]), float(ks_after[-1])
        new = AOGDALDState(state.n_features, dic, theta, S, t, loss, ys, ks)
        return Step(new, preds.astype(dtype_out, copy=False))

    def predict(state, X):
        X = check_query(X, state.n_features, owner)
        Xf = np.asarray(X, dtype=np.float64)
        out = np.empty(Xf.shape[0])
        for sl in chunks(Xf.shape[0], 4096):
            out[sl] = matmul(state.theta, _ald_features_for_query(state.dictionary, kernel, Xf[sl]))
        return out.astype(out_dtype(X), copy=False)

    return OnlineLearner(init, update, predict, "AOGD-ALD")


# ================================================================================================
# NONS-ALD
# ================================================================================================

class NONSALDState(NamedTuple):
    """State of NONS-ALD.

    ``v`` is the (not yet projected) Newton iterate in the coordinates ``φ_D = L⁻¹ k_D``;
    ``A_lower`` and ``A_inv_lower`` hold A and A⁻¹ in their lower triangles (BLAS symmetric storage;
    :meth:`matrix` and :meth:`inverse` return the full matrices).
    """

    n_features: int
    dictionary: OnlineRLSDictionary
    v: np.ndarray
    A_lower: np.ndarray
    A_inv_lower: np.ndarray
    since_refactor: int
    t: int
    cumulative_loss: float
    y_scale: float
    k_scale: float

    def matrix(self):
        """A = μI + Σ η_s g_s g_sᵀ (in the current coordinates), shape (m, m)."""
        return _symmetric(self.A_lower)

    def inverse(self):
        """The maintained A⁻¹, shape (m, m)."""
        return _symmetric(self.A_inv_lower)


def _symmetric(L):
    L = np.tril(L)
    return L + np.tril(L, -1).T


def _grow(A, Ainv, v, m, ridge):
    k = A.shape[0]
    A2 = np.zeros((m, m), order="F")
    Ai2 = np.zeros((m, m), order="F")
    A2[:k, :k] = A
    Ai2[:k, :k] = Ainv
    idx = np.arange(k, m)
    A2[idx, idx] = ridge
    Ai2[idx, idx] = 1.0 / ridge
    return A2, Ai2, np.concatenate([v, np.zeros(m - k)])


def _refactor(A_lower):
    """A⁻¹ (lower triangle) recomputed from A by Cholesky: O(m³), exact to rounding."""
    c, info = dpotrf(A_lower, lower=1, clean=1, overwrite_a=0)
    if info != 0:  # pragma: no cover - A ⪰ μI is positive definite
        raise np.linalg.LinAlgError(f"A is not positive definite (LAPACK info {info}).")
    inv, info = dpotri(c, lower=1, overwrite_c=1)
    if info != 0:  # pragma: no cover
        raise np.linalg.LinAlgError(f"A is singular (LAPACK info {info}).")
    return np.asfortranarray(inv)


def nons_ald(kernel, *, C="auto", eta="auto", ridge=1.0, threshold="auto", horizon=None, budget=None,
             refactor_every=1000, device=None):
    r"""NONS-ALD: online Newton step on Nyström features of an ALD dictionary (Li & Liao 2023).

    Parameters
    ----------
    kernel : Kernel
    C : float > 0 or "auto", default="auto"
        Bound of the constraint ``|f(x_t)| ≤ C`` (predictions are clipped to [−C, C]); "auto" is the
        largest |y| seen before the round. The paper's code uses C = 1 (targets in [−1, 1]).
    eta : float > 0 or "auto", default="auto"
        Curvature weight η in ``A ← A + η g gᵀ``; "auto" is ``1/(4(C² + max|y|²))`` (the paper's
        ``1/(4C² + 4)`` with the label bound taken from the data).
    ridge : float > 0, default=1.0
        μ in ``A_0 = μ I`` (paper default 1).
    threshold, horizon, budget
        As in :func:`aogd_ald`; the paper adds x when ``δ > α²`` with ``α = 5/sqrt(T)``.
    refactor_every : int or None, default=1000
        Recompute A⁻¹ from A (O(m³)) every this many rounds; None never does.
    device : None, "cpu", "gpu" or jax.Device, default=None
        None: the host core. Otherwise every round (ALD test, Newton step, Sherman–Morrison update
        of A⁻¹, the refactorisations) runs on that jax device as a jit-compiled scan, with A and
        A⁻¹ in fixed-capacity device buffers (see :mod:`ntkit.online._jax`).

    Returns
    -------
    OnlineLearner

    Examples
    --------
    >>> import numpy as np
    >>> from ntkit.kernels import RBF
    >>> from ntkit.online import nons_ald
    >>> rng = np.random.default_rng(0)
    >>> X = rng.uniform(-1, 1, size=(500, 2)); y = np.sin(3 * X[:, 0])
    >>> learner = nons_ald(RBF(0.5), horizon=500)
    >>> state, preds = learner.update(learner.init(2), X, y)
    >>> float(np.mean((preds[-100:] - y[-100:]) ** 2)) < 0.01
    True
    """
    owner = "nons_ald"
    check_kernel(kernel, owner)
    C = check_auto_scalar(C, "C", owner)
    eta = check_auto_scalar(eta, "eta", owner, low=0.0, closed="left")
    from .._validation import check_scalar

    ridge = check_scalar(ridge, "ridge", owner, low=0.0, closed="neither")
    threshold, horizon, budget = _check_ald_params(owner, threshold, horizon, budget)
    refactor_every = check_optional_int(refactor_every, "refactor_every", owner)
    dev = resolve_core_device(device, owner)
    if dev is not None:
        cfg = {"C": C, "eta": eta, "ridge": ridge, "threshold": threshold, "horizon": horizon, "budget": budget,
               "refactor_every": refactor_every}
        return _on_device(owner, "NONS-ALD", device_ald(kernel, "nons", cfg, dev))

    def init(n_features):
        e = np.zeros((0, 0), order="F")
        return NONSALDState(int(n_features), OnlineRLSDictionary(n_features, 0.0), np.zeros(0), e, e.copy(order="F"),
                            0, 0, 0.0, 0.0, 0.0)

    def update(state, X, y):
        X, y = check_stream(X, y, state.n_features, owner)
        dtype_out = out_dtype(X)
        preds = np.empty(X.shape[0])
        dic = state.dictionary
        v = state.v.copy()
        A = np.array(state.A_lower, order="F")  # copies: the updates below are in place
        Ainv = np.array(state.A_inv_lower, order="F")
        since = state.since_refactor
        t, loss, ys, ks = state.t, state.cumulative_loss, state.y_scale, state.k_scale
        # Curvature terms e·φφᵀ are applied to A⁻¹ at once (Sherman–Morrison, needed for the next
        # round) but queued for A and folded in blocks by one BLAS-3 rank-k update (A += PᵀP).
        pending = np.zeros((_PENDING, v.shape[0]))
        n_pend = 0

        def fold(A, pending, n_pend):
            if n_pend:
                A = dsyrk(1.0, pending[:n_pend], beta=1.0, c=A, trans=1, lower=1, overwrite_c=1)
            return A, 0

        for sl in chunks(X.shape[0], _CHUNK):
            Xc, yc = X[sl], y[sl]
            n = Xc.shape[0]
            kxx = np.asarray(kernel.diag(Xc), dtype=np.float64)
            dic, F, sizes = ald_features(dic, kernel, Xc, kxx, ald_thresholds(threshold, horizon, t, n), budget)
            ys_before, ys_after = running_max_abs(ys, yc)
            out = preds[sl]
            for r in range(n):
                m = int(sizes[r])
                if m > v.shape[0]:
                    A, n_pend = fold(A, pending, n_pend)
                    A, Ainv, v = _grow(A, Ainv, v, m, ridge)
                    pending = np.zeros((_PENDING, m))
                phi = F[r, :m]
                z = float(v @ phi)
                Aphi = dsymv(1.0, Ainv, phi, lower=1) if m else phi
                q = float(phi @ Aphi)
                Ct = bound(C, ys_before[r])
                h = math.copysign(max(abs(z) - Ct, 0.0), z)
                yhat = z - h
                out[r] = yhat
                res = yhat - yc[r]
                loss += res * res
                c = 2.0 * res
                e = curvature(eta, Ct, ys_after[r]) * c * c
                coef = (h / q if q > 0.0 else 0.0) + c / (1.0 + e * q)
                if m and coef != 0.0:
                    v -= coef * Aphi
                if m and e > 0.0:
                    Ainv = dsyr(-e / (1.0 + e * q), Aphi, lower=1, a=Ainv, overwrite_a=1)
                    pending[n_pend] = math.sqrt(e) * phi
                    n_pend += 1
                    if n_pend == _PENDING:
                        A, n_pend = fold(A, pending, n_pend)
                since += 1
                if refactor_every is not None and since >= refactor_every and m:
                    A, n_pend = fold(A, pending, n_pend)
                    Ainv, since = _refactor(A), 0
            t += n
            ys = float(ys_after[-1])
            ks = max(ks, float(kxx.max()))
        A, n_pend = fold(A, pending, n_pend)
        new = NONSALDState(state.n_features, dic, v, A, Ainv, since, t, loss, ys, ks)
        return Step(new, preds.astype(dtype_out, copy=False))

    def predict(state, X):
        X = check_query(X, state.n_features, owner)
        Xf = np.asarray(X, dtype=np.float64)
        Ct = bound(C, state.y_scale)
        out = np.empty(Xf.shape[0])
        for sl in chunks(Xf.shape[0], 4096):
            out[sl] = np.clip(matmul(state.v, _ald_features_for_query(state.dictionary, kernel, Xf[sl])), -Ct, Ct)
        return out.astype(out_dtype(X), copy=False)

    return OnlineLearner(init, update, predict, "NONS-ALD")


