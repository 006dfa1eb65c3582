r"""Device cores of the online learners: the same rounds as the host cores, as jit-compiled scans.

Online learning is sequential: round t needs the state after round t−1. On a device each learner
is therefore a ``jax.lax.scan`` over the rows of a fixed-size chunk (256 rows, the last chunk
padded with masked rows), one jit-compiled call per chunk, with every array of the state on the
device:

* the support vectors / dictionary atoms live in a **fixed-capacity buffer** (rows beyond the
  current size are masked out), with its coefficients, its Cholesky factor (the identity beyond the
  current size, so a full-capacity triangular solve returns zeros there) and, for NONS-ALD, the
  curvature matrix A and A⁻¹ (``ridge·I`` and ``I/ridge`` beyond the current size — exactly what the
  host core pads with when its dictionary grows, so growth needs no work inside the scan);
* before each chunk the capacity is checked against the worst case (every row of the chunk
  added) and **doubled** when short, so a stream of T rounds compiles O(log T) times;
* a round's kernel row against the buffer and its diagonal are evaluated inside the scan by the
  kernel's own block formula (``Kernel._prepare`` / ``_block`` / ``_diag``: the formula that
  :mod:`ntkit.ops`' jax backend jit-compiles — the primitive's entry points validate and plan on
  the host and cannot be traced); prediction on a batch of queries goes through
  :func:`ntkit.ops.kernel_matvec` / :func:`ntkit.ops.gram` on device arrays;
* every state is float64, as on the host (the scans run with 64-bit jax enabled locally).

What differs from the host cores is rounding only: kernel rows are formed per round (centred on
the round's point) instead of per chunk, KOGD projects eagerly instead of through a lazy scale,
NONS-ALD updates A at once instead of in queued rank-k blocks. The "auto" rules, the ALD test,
the budget maintenance, the refactorisation schedule and the counter-based draws of
Sketched-KONS are the host's, row for row.

This module holds the shared machinery (placement, chunks, buffers, kernel rows) and KOGD;
AOGD-ALD / NONS-ALD are in :mod:`ntkit.online._jax_ald`, KONS / Sketched-KONS in :mod:`ntkit.online._jax_kons`.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import numpy as np

from .._validation import is_jax_array

__all__ = ["resolve_core_device", "KOGDDeviceState", "device_kogd", "device_spec", "device_from_spec"]

CHUNK = 256
#: Free atoms guaranteed before a chunk of the slowly growing dictionaries (ALD, the KONS sketches).
_SLACK = 32
_TINY = 1e-250


# -- placement helpers --------------------------------------------------------------------------------

def device_spec(device):
    """A picklable name of a jax device (``(platform, id)``); None for the host."""
    return None if device is None else (device.platform, int(device.id))


def device_from_spec(spec):
    if spec is None:
        return None
    import jax

    platform, ident = spec
    for d in jax.devices(platform):
        if d.id == ident:
            return d
    raise RuntimeError(f"the jax device {platform}:{ident} this learner was started on is not visible any more "
                       f"(jax sees {[f'{d.platform}:{d.id}' for d in jax.devices()]}); refit it.")


def resolve_core_device(device, owner):
    """The functional cores' ``device``: None (host), "cpu", "gpu", a jax.Device or a device spec."""
    if device is None:
        return None
    if isinstance(device, tuple):
        return device_from_spec(device)
    from .._device import resolve_device

    if isinstance(device, str) and device == "auto":
        from .._validation import InvalidParameterError

        raise InvalidParameterError(f"The 'device' parameter of {owner} must be None (the host), 'cpu', 'gpu' or a "
                                    "jax.Device; 'auto' is for the estimators, which resolve it from the data.")
    return resolve_device(device, owner=owner).device


def _x64():
    from ..ops._backends._jax import x64_scope

    return x64_scope(np.float64)


def _put(a, device, dtype=np.float64):
    import jax

    if is_jax_array(a):
        a = a.astype(dtype) if dtype is not None and np.dtype(a.dtype) != np.dtype(dtype) else a
        return a if device in a.devices() else jax.device_put(a, device)
    return jax.device_put(np.asarray(a, dtype=dtype), device)


def _host(a):
    import jax

    return np.asarray(jax.device_get(a))


def _mm(A, B):
    import jax
    import jax.numpy as jnp

    return jnp.matmul(A, B, precision=jax.lax.Precision.HIGHEST)


# -- the kernel inside a trace ----------------------------------------------------------------------------

def _kernel_key(kernel):
    """Hashable summary of a kernel including array parameters (jit caches key on it)."""
    params = kernel._validated()
    items = []
    for k, v in sorted(params.items()):
        if isinstance(v, np.ndarray):
            v = ("array", v.shape, tuple(np.asarray(v, dtype=np.float64).ravel().tolist()))
        items.append((k, v))
    return (type(kernel).__name__, tuple(items))


class _KK:
    """A kernel keyed by its parameters (so equal kernels share compiled scans)."""

    __slots__ = ("kernel", "key")

    def __init__(self, kernel):
        self.kernel, self.key = kernel, _kernel_key(kernel)

    def __hash__(self):
        return hash(self.key)

    def __eq__(self, other):
        return isinstance(other, _KK) and self.key == other.key


def _kernel_fns(kk):
    """``krow(X, Z) -> (r, C)`` and ``kdiag(X) -> (r,)``, traceable (the kernel's block formula)."""
    import jax.numpy as jnp

    kernel = kk.kernel
    params = kernel._validated()

    def krow(X, Z):
        Xp, Zp = kernel._prepare(jnp, X, Z, params)
        return kernel._block_rows(jnp, Xp, Zp, _mm(Xp, Zp.T), jnp.sum(Xp * Xp, axis=1), jnp.sum(Zp * Zp, axis=1), X.shape[1],
                             params)

    def kdiag(X):
        Xp, _ = kernel._prepare(jnp, X, None, params)
        return kernel._diag(jnp, jnp.sum(Xp * Xp, axis=1), X.shape[1], params) * jnp.ones(X.shape[0], X.dtype)

    return krow, kdiag


# -- the "auto" rules in jax (see ntkit.online._common) -------------------------------------------------------

def _radius(U, ys, ks):
    import jax.numpy as jnp

    if U != "auto":
        return jnp.asarray(U, dtype=jnp.float64)
    return jnp.where(ks > 0, 5.0 * ys / jnp.sqrt(jnp.where(ks > 0, ks, 1.0)), 0.0)


def _bound(C, ys_before):
    import jax.numpy as jnp

    return ys_before if C == "auto" else jnp.asarray(C, dtype=jnp.float64)


def _curvature(eta, Ct, ys):
    import jax.numpy as jnp

    if eta != "auto":
        return jnp.asarray(eta, dtype=jnp.float64)
    den = 4.0 * (Ct * Ct + ys * ys)
    return jnp.where(den > 0, 1.0 / jnp.where(den > 0, den, 1.0), 0.0)


def _flush(v):
    import jax.numpy as jnp

    return jnp.where(jnp.abs(v) < _TINY, 0.0, v)


def _select(valid, new, old):
    import jax
    import jax.numpy as jnp

    return jax.tree_util.tree_map(lambda a, b: jnp.where(valid, a, b), new, old)


def _chunks(X, y, device, extra=None):
    """Rows of (X, y) as device chunks of CHUNK rows, the last one padded by repeating its last row
    (valid mask False): a gather per chunk, so ragged batches compile nothing new."""
    import jax.numpy as jnp

    from .._device import _array_device

    n = X.shape[0]

    def rows(A, idx):  # a gather where A lives (jax) or on the host (numpy), then to the device
        if is_jax_array(A):
            return _put(jnp.take(A, _put(idx, _array_device(A), None), axis=0), device)
        return _put(np.asarray(A)[idx], device)

    for i in range(0, n, CHUNK):
        e = min(n, i + CHUNK)
        idx = np.minimum(np.arange(i, i + CHUNK), n - 1)
        Xc, yc = rows(X, idx), rows(y, idx)
        valid = np.arange(CHUNK) < (e - i)
        ex = None if extra is None else _put(np.asarray(extra)[idx], device)
        yield i, e, Xc, yc, _put(valid, device, None), ex


def _gather_preds(preds, n, X):
    """The chunks' (padded) predictions as one array of the n rows (one concatenation, one slice)."""
    import jax.numpy as jnp

    if not preds:
        return _out(jnp.zeros(0), X)
    f = preds[0] if len(preds) == 1 else jnp.concatenate(preds)
    if is_jax_array(X):
        return _out(f[:n], X)
    return _out(_host(f)[:n], X)


def _on(state, device):
    """The state's arrays on ``device`` (no-op when they are there; an unpickled state holds numpy)."""
    import jax

    return state._replace(**{k: jax.device_put(v, device) for k, v in state._asdict().items()
                             if is_jax_array(v) or isinstance(v, np.ndarray)})


def _restore(cls, values):
    return cls(*values)


def _reduce(state):
    """Pickle a device state with host (numpy) copies of its arrays: a float64 jax array unpickled
    while 64-bit jax is off would come back truncated to float32; the copies return to the device
    at the next call."""
    return _restore, (type(state), tuple(_host(v) if is_jax_array(v) else v for v in state))


@functools.lru_cache(maxsize=None)
def _grow_fns():
    import jax
    import jax.numpy as jnp

    def rows(A, cap):
        return jnp.zeros((cap,) + A.shape[1:], dtype=A.dtype).at[: A.shape[0]].set(A)

    def square(A, cap, diag):
        return (jnp.eye(cap, dtype=A.dtype) * diag).at[: A.shape[0], : A.shape[1]].set(A)

    return jax.jit(rows, static_argnums=1), jax.jit(square, static_argnums=(1, 2))


def _grow_rows(A, cap):
    """A buffer of ``cap`` rows holding A's rows first, zeros after (one compiled call per size)."""
    return _grow_fns()[0](A, cap)


def _grow_square(A, cap, diag):
    """A (cap, cap) matrix with A in its top-left block and ``diag·I`` beyond."""
    return _grow_fns()[1](A, cap, float(diag))


def _capacity(cap, need):
    while cap < need:
        cap *= 2
    return cap


def _out(preds, X):
    """jax predictions for jax input (in X's float dtype); numpy otherwise."""
    dt = np.float32 if np.dtype(X.dtype) == np.float32 else np.float64
    if is_jax_array(X):
        if np.dtype(dt) == np.float64:
            return preds
        return preds.astype(dt)
    return np.asarray(_host(preds) if is_jax_array(preds) else preds).astype(dt, copy=False)


# ======================================================================================================
# KOGD
# ======================================================================================================

class KOGDDeviceState(NamedTuple):
    """KOGD on a device: ``points`` (capacity, d), ``coef``/``k_diag`` (capacity,), ``gram`` (B+1, B+1)
    with a budget (None without), ``size`` the number of support vectors (device int); scalars as
    in :class:`~ntkit.online.KOGDState` (``t`` is a host int)."""

    n_features: int
    points: Any
    coef: Any
    k_diag: Any
    gram: Any
    size: Any
    norm_sq: Any
    grad_sq_sum: Any
    t: int
    cumulative_loss: Any
    y_scale: Any
    k_scale: Any

    def __reduce__(self):
        return _reduce(self)

    def dictionary_size(self):
        return int(self.size)

    @property
    def support_vectors(self):
        return self.points[: int(self.size)]


@functools.lru_cache(maxsize=64)
def _kogd_scan(kk, U, lr, budget):
    import jax
    import jax.numpy as jnp

    krow, kdiag = _kernel_fns(kk)

    def step_size(Ur, S, t):
        if lr == "auto":
            return jnp.where(S > 0, Ur / jnp.sqrt(jnp.where(S > 0, S, 1.0)), 0.0)
        return lr / jnp.sqrt(t.astype(jnp.float64))

    def body(carry, row):
        P, coef, kd, G, m, nsq, S, t, loss, ys, ks = carry
        x, y, valid = row
        cap = P.shape[0]
        mask = jnp.arange(cap) < m
        kx = jnp.where(mask, krow(x[None, :], P)[0], 0.0)
        f = jnp.dot(coef, kx)
        kxx = kdiag(x[None, :])[0]
        res = f - y
        t1 = t + 1
        ys1 = jnp.maximum(ys, jnp.abs(y))
        ks1 = jnp.maximum(ks, kxx)
        Ur = _radius(U, ys1, ks1)
        S1 = S + 4.0 * res * res * kxx
        g = step_size(Ur, S1, t1) * 2.0 * res
        add = g != 0.0
        nsq1 = jnp.where(add, jnp.maximum(nsq - 2.0 * g * f + g * g * kxx, 0.0), nsq)
        P1 = jnp.where(add, P.at[m].set(x), P)
        coef1 = jnp.where(add, coef.at[m].set(-g), coef)
        kd1 = jnp.where(add, kd.at[m].set(kxx), kd)
        m1 = m + add.astype(m.dtype)
        G1 = G
        if budget is not None:
            G1 = jnp.where(add, G.at[m, :].set(kx).at[:, m].set(kx).at[m, m].set(kxx), G)

            def evict(args):  # remove the smallest older support vector (norm |c_j| sqrt(k_jj))
                P2, c2, kd2, G2, m2, nsq2 = args
                last = m2 - 1
                older = jnp.arange(cap) < last
                j = jnp.argmin(jnp.where(older, jnp.abs(c2) * jnp.sqrt(kd2), jnp.inf))
                live = jnp.arange(cap) < m2
                fj = jnp.dot(jnp.where(live, c2, 0.0), G2[:, j])
                cj = c2[j]
                nsq3 = jnp.maximum(nsq2 - 2.0 * cj * fj + cj * cj * kd2[j], 0.0)
                P3 = P2.at[j].set(P2[last])
                c3 = c2.at[j].set(c2[last]).at[last].set(0.0)
                kd3 = kd2.at[j].set(kd2[last])
                G3 = G2.at[j, :].set(G2[last, :])
                G3 = G3.at[:, j].set(G3[:, last])
                G3 = G3.at[j, j].set(G2[last, last])
                return P3, c3, kd3, G3, last, nsq3

            P1, coef1, kd1, G1, m1, nsq1 = jax.lax.cond(add & (m1 > budget), evict, lambda a: a,
                                                        (P1, coef1, kd1, G1, m1, nsq1))
        nrm = jnp.sqrt(nsq1)
        proj = add & (nrm > Ur)
        coef1 = jnp.where(proj, _flush(coef1 * (Ur / jnp.where(proj, nrm, 1.0))), coef1)
        nsq1 = jnp.where(proj, Ur * Ur, nsq1)
        new = (P1, coef1, kd1, G1, m1, nsq1, S1, t1, loss + res * res, ys1, ks1)
        return _select(valid, new, carry), f

    def run(carry, X, y, valid):
        return jax.lax.scan(body, carry, (X, y, valid))

    return jax.jit(run)


def device_kogd(kernel, U, lr, budget, device):
    """init / update / predict of KOGD on ``device`` (see :func:`ntkit.online.kogd`)."""
    kk = _KK(kernel)

    def init(n_features):

        cap = CHUNK if budget is None else budget + 1
        with _x64():
            z = lambda *s: _put(np.zeros(s), device)  # noqa: E731
            G = None if budget is None else z(cap, cap)
            return KOGDDeviceState(int(n_features), z(cap, n_features), z(cap), z(cap), G,
                                   _put(np.int32(0), device, None), z(), z(), 0, z(), z(), z())

    def update(state, X, y):
        import jax.numpy as jnp

        run = _kogd_scan(kk, U, lr, budget)
        preds = []
        with _x64():
            state = _on(state, device)
            P, coef, kd, G = state.points, state.coef, state.k_diag, state.gram
            m = state.size
            if G is None:
                G = jnp.zeros((1, 1))
            carry = [P, coef, kd, G, m, state.norm_sq, state.grad_sq_sum, _put(np.int64(state.t), device, None),
                     state.cumulative_loss, state.y_scale, state.k_scale]
            for i, e, Xc, yc, valid, _ in _chunks(X, y, device):
                if budget is None:  # worst case: every row of the chunk a new support vector
                    cap = _capacity(carry[0].shape[0], int(carry[4]) + (e - i))
                    if cap > carry[0].shape[0]:
                        carry[0], carry[1], carry[2] = (_grow_rows(carry[0], cap), _grow_rows(carry[1], cap),
                                                        _grow_rows(carry[2], cap))
                carry, f = run(tuple(carry), Xc, yc, valid)
                carry = list(carry)
                preds.append(f)
            P, coef, kd, G, m, nsq, S, t, loss, ys, ks = carry
            new = KOGDDeviceState(state.n_features, P, coef, kd, None if budget is None else G, m, nsq, S,
                                  state.t + X.shape[0], loss, ys, ks)
            return new, _gather_preds(preds, X.shape[0], X)

    def predict(state, X):
        import jax.numpy as jnp

        from ..ops import kernel_matvec

        with _x64():
            state = _on(state, device)
            Xd = _put(X, device)
            m = int(state.size)
            if m == 0:
                return _out(jnp.zeros(Xd.shape[0]), X)
            return _out(kernel_matvec(kernel, Xd, state.points[:m], state.coef[:m]), X)

    return init, update, predict


class _Cfg:
    """A hashable view of a configuration dict (for the jit caches)."""

    __slots__ = ("key", "d")

    def __init__(self, key):
        self.key, self.d = key, dict(key)

    def __getitem__(self, k):
        return self.d[k]

    def get(self, k, default=None):
        return self.d.get(k, default)

    def __hash__(self):
        return hash(self.key)

    def __eq__(self, other):
        return isinstance(other, _Cfg) and self.key == other.key


