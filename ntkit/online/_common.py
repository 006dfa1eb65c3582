"""Shared pieces of the online learners: the learner triple, input checks, the "auto" rules,
append-only row buffers and counter-based uniforms.

The "auto" rules (documented once here, referenced by every learner)
--------------------------------------------------------------------
All are functions of what has been seen so far, so a learner needs no prior knowledge of the data:

* ``Ŷ_t = max_{s ≤ t} |y_s|`` — the scale of the targets seen up to and including round t
  (the label of round t is known when the update of round t runs, not when its prediction is made);
* ``κ̂_t = max_{s ≤ t} k(x_s, x_s)`` — the largest kernel diagonal seen (1 for RBF/Laplace/Matérn).

``U = "auto"`` (radius of the RKHS ball of the first-order learners):
    ``U_t = 5 · Ŷ_t / sqrt(κ̂_t)``. A function that reaches the largest target seen needs
    ``‖f‖ ≥ Ŷ / sqrt(κ̂)`` (since ``|f(x)| ≤ ‖f‖ sqrt(k(x, x))``); the factor 5 leaves room for
    functions that vary inside the range of the data. The papers' fixed ``U = 2`` assumes targets in
    [−1, 1]: on a target of range [−1, 2] it stalls (test MSE 0.075 measured in issue 8, 0.005 with U = 10);
    this rule gives U = 10 there and scales with the unit of y.
``C = "auto"`` (bound of the second-order learners' constraint ``|f(x_t)| ≤ C``):
    ``C_t = Ŷ_{t−1}`` — predictions are clipped to the range of the labels seen before round t
    (clipping to a range that contains y_t can only lower the loss of round t).
``eta = "auto"`` (curvature weight of the second-order learners, ``A_t = A_{t−1} + η_t g_t g_tᵀ``):
    ``η_t = 1 / (4 (C_t² + Ŷ_t²))``, NONS-ALD's ``1/(4C² + 4)`` with the label bound 1 replaced by
    the observed ``Ŷ_t``; the square loss ``(z − y)²`` satisfies the exp-concavity-type inequality the
    online Newton step needs whenever ``η ≤ 1 / (2 (z − y)²)``, and ``(z − y)² ≤ 2 (C² + Y²)``.
``threshold = "auto"`` (ALD threshold α of AOGD-ALD / NONS-ALD):
    ``α = 5 / sqrt(T)`` when ``horizon = T`` is given (Li & Liao 2023); otherwise the anytime doubling
    schedule ``α_t = 5 / sqrt(2^⌈log₂ t⌉)`` (the horizon guess doubles when t passes it; nothing is
    restarted). A point joins the dictionary when its squared distance to the span of the dictionary
    exceeds ``α² · k(x, x)`` (the papers assume ``k(x, x) = 1``; the relative form makes the rule
    independent of the kernel's scale).

With every rule on "auto", each learner is exactly equivariant to the unit of y: multiplying all
targets by s multiplies every prediction by s (tested).
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple

import numpy as np

from .._validation import InvalidParameterError, check_data, check_scalar, is_jax_array

__all__ = ["OnlineLearner", "Step"]

#: Points whose residual is below this fraction of k(x, x) are never added to a dictionary:
#: the new coordinate would be rounding noise (δ ~ 1e-16 against an O(1) diagonal).
RESIDUAL_FLOOR = 1e-10


class OnlineLearner(NamedTuple):
    """An online learner as three pure functions (optax style).

    ``init(n_features) -> state``; ``update(state, X, y) -> Step(state, predictions)`` processes the
    rows of X in order, predicting each row before its label is used; ``predict(state, X) -> array``
    gives the predictions the learner would make if each row of X came next.
    """

    init: Callable[[int], Any]
    update: Callable[[Any, Any, Any], "Step"]
    predict: Callable[[Any, Any], np.ndarray]
    name: str


class Step(NamedTuple):
    """Result of ``update``: the new state and the predictions made before each label was seen."""

    state: Any
    predictions: np.ndarray


def on_device(owner, name, fns):
    """An :class:`OnlineLearner` over the device functions ``(init, update, predict)`` of
    :mod:`ntkit.online._jax`, with the host cores' input checks (jax arrays checked in place)."""
    init, update_d, predict_d = fns

    def update(state, X, y):
        X, y = check_stream_any(X, y, state.n_features, owner, True)
        new, preds = update_d(state, X, y)
        return Step(new, preds)

    def predict(state, X):
        return predict_d(state, check_query_any(X, state.n_features, owner, True))

    return OnlineLearner(init, update, predict, name)


# -- hyper-parameter checks ------------------------------------------------------------------------

def check_auto_scalar(value, name, owner, *, low=0.0, closed="neither"):
    """``"auto"`` or a finite float in the range; returns the float or "auto"."""
    if isinstance(value, str) and value == "auto":
        return value
    try:
        if isinstance(value, str):
            raise InvalidParameterError(value)
        return check_scalar(value, name, owner, low=low, closed=closed)
    except InvalidParameterError:
        left = "[" if closed in ("left", "both") else "("
        raise InvalidParameterError(
            f"The {name!r} parameter of {owner} must be 'auto' or a finite real number in the range "
            f"{left}{low!r}, inf). Got {value!r} instead.") from None


def check_optional_int(value, name, owner, *, low=1):
    if value is None:
        return None
    from .._validation import check_int

    return check_int(value, name, owner, low=low)


def check_kernel(kernel, owner):
    from ..kernels import Kernel

    if not isinstance(kernel, Kernel):
        raise InvalidParameterError(
            f"The 'kernel' parameter of {owner} must be an ntkit.kernels.Kernel instance such as RBF(1.0). "
            f"Got {type(kernel).__name__} instead.")
    kernel._validated()  # hyper-parameters of the kernel itself
    return kernel


# -- data checks ------------------------------------------------------------------------------------

def check_stream(X, y, n_features, owner):
    """Validate one batch of the stream; returns float64 copies-free views (X (n, d), y (n,)).

    Nothing of the state is touched before this returns, so a rejected batch leaves it unchanged.
    """
    X = check_data(X, "X", ndim=2, allow_jax=False)
    if X.shape[0] == 0:
        raise ValueError(f"X is an empty batch (shape {tuple(X.shape)}); {owner} needs at least one row.")
    if X.shape[1] != n_features:
        raise ValueError(f"X has {X.shape[1]} features, but {owner} was initialised with {n_features} "
                         f"(the feature count of the first row); found shape {tuple(X.shape)}.")
    y = check_data(y, "y", ndim=1, allow_jax=False)
    if y.shape[0] != X.shape[0]:
        raise ValueError(f"y must have one target per row of X ({X.shape[0]}); found shape {tuple(y.shape)}.")
    return np.asarray(X, dtype=np.float64), np.asarray(y, dtype=np.float64)


def check_stream_any(X, y, n_features, owner, device):
    """:func:`check_stream` for the device cores (``device`` not None): jax arrays are checked where
    they live (no copy to the host) and returned as they are; numpy as by :func:`check_stream`."""
    if device is None or not (is_jax_array(X) or is_jax_array(y)):
        return check_stream(X, y, n_features, owner)
    X = check_data(X, "X", ndim=2, allow_jax=True)
    if X.shape[0] == 0:
        raise ValueError(f"X is an empty batch (shape {tuple(X.shape)}); {owner} needs at least one row.")
    if X.shape[1] != n_features:
        raise ValueError(f"X has {X.shape[1]} features, but {owner} was initialised with {n_features} "
                         f"(the feature count of the first row); found shape {tuple(X.shape)}.")
    y = check_data(y, "y", ndim=1, allow_jax=True)
    if y.shape[0] != X.shape[0]:
        raise ValueError(f"y must have one target per row of X ({X.shape[0]}); found shape {tuple(y.shape)}.")
    return X, y


def check_query_any(X, n_features, owner, device):
    """:func:`check_query` that leaves jax arrays where they are when a device core asks."""
    if device is None or not is_jax_array(X):
        return check_query(X, n_features, owner)
    X = check_data(X, "X", ndim=2, allow_jax=True)
    if X.shape[1] != n_features:
        raise ValueError(f"X has {X.shape[1]} features, but {owner} was initialised with {n_features}; "
                         f"found shape {tuple(X.shape)}.")
    return X


def check_query(X, n_features, owner):
    X = check_data(X, "X", ndim=2, allow_jax=False)
    if X.shape[1] != n_features:
        raise ValueError(f"X has {X.shape[1]} features, but {owner} was initialised with {n_features}; "
                         f"found shape {tuple(X.shape)}.")
    return X


def out_dtype(X):
    return np.float32 if np.asarray(X).dtype == np.float32 else np.float64


# -- the auto rules ---------------------------------------------------------------------------------

def radius(U, y_scale, k_scale):
    """``U_t`` of the module docstring."""
    if U != "auto":
        return U
    return 5.0 * y_scale / math.sqrt(k_scale) if k_scale > 0 else 0.0


def bound(C, y_scale_before):
    """``C_t`` of the module docstring (``y_scale_before`` = Ŷ_{t−1})."""
    return y_scale_before if C == "auto" else C


def curvature(eta, C_t, y_scale):
    """``η_t`` of the module docstring."""
    if eta != "auto":
        return eta
    den = 4.0 * (C_t * C_t + y_scale * y_scale)
    return 1.0 / den if den > 0 else 0.0


def ald_thresholds(threshold, horizon, t0, n):
    """α for rounds t0+1 … t0+n (1-based), shape (n,)."""
    if threshold != "auto":
        return np.full(n, float(threshold))
    if horizon is not None:
        return np.full(n, 5.0 / math.sqrt(horizon))
    t = np.arange(t0 + 1, t0 + n + 1, dtype=np.float64)
    epoch = np.exp2(np.ceil(np.log2(t)))
    return 5.0 / np.sqrt(epoch)


def running_max_abs(y_scale, y):
    """(Ŷ_{t−1}, Ŷ_t) for every row of a batch given Ŷ before the batch."""
    after = np.maximum.accumulate(np.maximum(np.abs(y), y_scale))
    before = np.concatenate([[y_scale], after[:-1]])
    return before, after


# -- append-only row buffer (copy-on-write; see _leverage._Store for the idea) -------------------------

class _RowStore:
    def __init__(self, capacity, n_cols):
        self.rows = np.empty((capacity, n_cols), dtype=np.float64)
        self.hwm = 0


class Rows(NamedTuple):
    """An append-only float64 matrix; versions share storage and never see each other's appends."""

    store: _RowStore
    n: int

    @staticmethod
    def empty(n_cols, capacity=64):
        return Rows(_RowStore(max(capacity, 1), n_cols), 0)

    @property
    def array(self):
        v = self.store.rows[:self.n]
        v.flags.writeable = False
        return v

    def extend(self, R):
        """A new version with the rows of R appended (copying only if an older version is extended)."""
        R = np.asarray(R, dtype=np.float64)
        k = R.shape[0]
        st, n = self.store, self.n
        if n != st.hwm or n + k > st.rows.shape[0]:
            cap = st.rows.shape[0]
            while cap < n + k:
                cap *= 2
            new = _RowStore(cap, st.rows.shape[1])
            new.rows[:n] = st.rows[:n]
            st = new
        st.rows[n:n + k] = R
        st.hwm = n + k
        return Rows(st, n + k)


# -- counter-based uniforms (batch-invariant randomness) ----------------------------------------------

_M64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def uniforms(seed, t0, n):
    """U(0, 1) draws for rounds t0+1 … t0+n from the SplitMix64 hash of (seed, t).

    A pure function of (seed, t): how the stream is split into batches does not change the draws.
    """
    with np.errstate(over="ignore"):
        t = np.arange(t0 + 1, t0 + n + 1, dtype=np.uint64)
        z = np.uint64(seed) * np.uint64(0xD1B54A32D192ED03) + t * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) * (1.0 / 9007199254740992.0)


def chunks(n, size):
    for i in range(0, n, size):
        yield slice(i, min(n, i + size))


def chunk_rows(n_points, *, target_bytes=32 * 2**20, lo=16, hi=256):
    """Rows per internal chunk so that the (chunk × n_points) kernel block stays near target_bytes."""
    return int(min(hi, max(lo, target_bytes // (8 * (n_points + hi)))))
