"""Top eigensystem of a kernel's Nyström subsample: the spectrum EigenPro preconditions with."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .. import _linalg
from .._blas import matmul
from .._validation import InvalidParameterError, check_int
from ._access import KernelAccess, idx

__all__ = ["EigenSystem", "top_eigensystem"]

#: Above this subsample size the randomised method is used (eigh is O(s^3) and not BLAS-3 bound).
EIGH_MAX = 4000


class EigenSystem(NamedTuple):
    """Top eigenpairs of ``K(X_sub, X_sub) / s``, largest first.

    ``eigenvectors`` are unit-norm columns (s, q); ``beta`` is ``max_i k(x_i, x_i)`` on the
    subsample. The eigenvalues estimate those of the kernel integral operator (of K/n).
    """

    eigenvalues: np.ndarray
    eigenvectors: np.ndarray
    beta: float


def _eig_of_gram(K, q, method, rng):
    s = K.shape[0]
    q = min(q, s)
    if method == "auto":
        method = "eigh" if s <= EIGH_MAX else "randomized"
    if method == "eigh":
        w, V = _linalg.eigh(K, subset_by_index=[s - q, s - 1])
    elif method == "randomized":
        # subspace iteration with oversampling; the top q Ritz pairs
        k = min(s, q + 20)
        Q = rng.standard_normal((s, k)).astype(K.dtype)
        for _ in range(4):
            KQ = matmul(K, Q)
            with _linalg.one_blas_thread():  # threaded QR is not bit-reproducible (see ntkit._linalg)
                Q, _ = np.linalg.qr(KQ)
        B = matmul(Q.T, matmul(K, Q))
        w, U = _linalg.eigh((B + B.T) / 2)
        V = matmul(Q, U)
        w, V = w[-q:], V[:, -q:]
    else:
        raise InvalidParameterError(f"method must be 'auto', 'eigh' or 'randomized'; got {method!r}.")
    order = np.argsort(w)[::-1]
    return np.asarray(w[order]), np.asarray(V[:, order])


def top_eigensystem(kernel, X_sub, q, *, method="auto", random_state=None, device=None):
    """Top-``q`` eigensystem of ``K(X_sub, X_sub) / s`` (Nyström estimate of the kernel operator).

    Parameters
    ----------
    kernel : ntkit kernel, callable ``k(A, B)``, or ``"precomputed"``
        With ``"precomputed"``, ``X_sub`` is the (s, s) Gram matrix of the subsample.
    X_sub : array (s, d)
    q : int
        Number of eigenpairs (at most s).
    method : {"auto", "eigh", "randomized"}
        ``"auto"``: LAPACK ``eigh`` up to s = 4000, subspace iteration above.
    device : None, "auto", "cpu", "gpu" or jax.Device
        Where it runs (the rule of :mod:`ntkit._device`; ``None`` follows the data): on a jax
        device the Gram matrix and the eigensolver run there, from the same random start, and a
        jax ``X_sub`` gives jax eigenpairs on its device.

    Examples
    --------
    >>> import numpy as np
    >>> from ntkit.kernels import RBF
    >>> from ntkit.solvers import top_eigensystem
    >>> X = np.random.default_rng(0).normal(size=(300, 3))
    >>> es = top_eigensystem(RBF(1.0), X, 5)
    >>> es.eigenvalues.shape, es.beta
    ((5,), 1.0)
    """
    from .._validation import check_data

    if isinstance(kernel, str):
        X_sub = check_data(X_sub, "X_sub", ndim=2)
        if X_sub.shape[0] != X_sub.shape[1]:
            raise ValueError(f"with kernel='precomputed', X_sub must be a square Gram matrix; got {X_sub.shape}.")
    else:
        X_sub = check_data(X_sub, "X_sub", ndim=2, min_rows=1)
    s = X_sub.shape[0]
    q = check_int(q, "q", "top_eigensystem", low=1, high=s)
    from .._device import resolve_device
    from ..kernels import Kernel

    placement = resolve_device(device, X_sub, owner="top_eigensystem")
    if placement.on_device and isinstance(kernel, Kernel):
        return _top_eigensystem_device(kernel, X_sub, q, method, random_state, placement)
    if placement.jax_out:  # a callable or precomputed kernel on jax data: host maths, jax results
        es = top_eigensystem(kernel, np.asarray(X_sub), q, method=method, random_state=random_state)
        import jax

        return EigenSystem(jax.device_put(es.eigenvalues, placement.device),
                           jax.device_put(es.eigenvectors, placement.device), es.beta)
    X_sub = np.asarray(X_sub)
    acc = KernelAccess(kernel, X_sub)
    all_ = idx(np.arange(s))
    K = acc.block(all_, all_) / s
    w, V = _eig_of_gram(K, q, method, np.random.default_rng(random_state))
    return EigenSystem(w, V, acc.diag_max(all_))


def _top_eigensystem_device(kernel, X_sub, q, method, random_state, placement):
    import jax
    import jax.numpy as jnp

    from .._device import to_device
    from ._device import DeviceKernel, eig_top

    dtype = np.dtype(X_sub.dtype)
    with jax.enable_x64(True):
        Xd = to_device(X_sub, placement, dtype)
        dk = DeviceKernel(kernel, Xd, dtype)
        r = dk.rows(Xd)
        s = Xd.shape[0]
        K = dk.block(r.P, r.s, r.P, r.s).astype(jnp.float64) / s
        w, V = eig_top(K, q, np.random.default_rng(random_state), method=method, eigh_max=EIGH_MAX)
        beta = float(jax.device_get(jnp.max(dk.diag(r.s))))
        w, V = w.astype(dtype), V.astype(dtype)  # dtype in = dtype out (the host path works in the data's dtype)
        if not placement.jax_out:
            return EigenSystem(np.asarray(w), np.asarray(V), beta)
        return EigenSystem(w, V, beta)
