r"""Nyström features with uniform or ridge-leverage-score landmark sampling.

With landmarks L and ``K_LL = V diag(μ) Vᵀ``, the map ``φ(x) = k(x, L) V diag(μ^{-1/2})``
(eigenvalues below ``n·eps·μ_max`` dropped, i.e. the pseudo-inverse) gives
``Φ(X)Φ(Z)ᵀ = K_XL K_LL⁺ K_LZ``: the exact kernel when L contains X.

``sampling="rls"`` draws landmarks with probabilities proportional to approximate ridge
leverage scores τ̃_i(γ) from recursive RLS sampling (:mod:`ntkit._leverage`): points in
regions the rest of the data does not explain (small, far clusters) get scores near 1 and
are not missed, as they are by uniform sampling. ``d_eff_ = Σ τ̃_i`` estimates the effective
dimension Tr K(K + γI)⁻¹ at the ridge γ used (``ridge_``).
"""

from __future__ import annotations

import numpy as np
from sklearn.utils.validation import validate_data

from .. import _linalg
from .._blas import matmul
from .._leverage import _gram, recursive_rls
from .._validation import InvalidParameterError, check_array_arg, check_option, check_scalar, is_jax_array
from ..kernels import RBF
from ._base import RandomFeatureBase, check_device_X, mm, seed_from, to_host

__all__ = ["Nystroem"]


class _HostRows:
    """Rows of a jax array fetched to the host on demand (only the landmarks, usually)."""

    def __init__(self, X):
        self.X = X
        self.shape = X.shape
        self.dtype = np.dtype(X.dtype)

    def __getitem__(self, idx):
        import jax

        from ._base import x64_scope

        with x64_scope(self.dtype):
            idx = jax.device_put(np.asarray(idx), next(iter(self.X.devices())))
            return to_host(self.X[idx])

    def all(self):
        return to_host(self.X)


class Nystroem(RandomFeatureBase):
    """Nyström feature map of any ntkit kernel (or callable ``k(X, Z) -> (n, m)`` such as an
    empirical-NTK kernel), with uniform or ridge-leverage-score landmarks.

    Parameters
    ----------
    kernel : Kernel or callable, default=None
        ``None`` means ``RBF(lengthscale=sqrt(n_features))``. Kernel evaluations go through
        :func:`ntkit.ops.gram` for ntkit kernels.
    n_components : int, default=100
        Number of landmarks (the output dimension; capped at n_samples with a warning-free
        reduction, as in scikit-learn).
    sampling : {"uniform", "rls"}, default="uniform"
    ridge : float > 0, optional
        γ for the leverage scores (``sampling="rls"``); default: chosen from n_components
        (the spectrum's tail beyond n_components, divided by n_components).
    random_state : int, Generator or None
    memory_budget : int or str, optional
        Bound on the workspace of the (block, n_components) Gram blocks (on a device: of that
        device's memory, :func:`ntkit._device.device_budget`).
    device : {"auto", "cpu", "gpu"} or jax.Device, default="auto"
        Where ``transform`` runs (see :mod:`ntkit.features`). On a device, ``K(X, landmarks)``
        comes from :func:`ntkit.ops.gram` on device arrays, block by block, and is multiplied
        by the normalisation there; as on the host, the arithmetic is float64 (the
        pseudo-inverse ``μ^{-1/2}`` amplifies rounding by up to ``1/sqrt(n·eps)``) and the
        features are rounded to X's dtype at the end. ``fit`` always factors the landmarks'
        m × m matrix on the host; with a jax X only the m landmark rows (uniform sampling) or
        the data (``sampling="rls"``, whose recursive sampler is a host algorithm) are copied
        to the host.

    Attributes
    ----------
    components_ : ndarray (n_components, n_features)
        The landmarks.
    component_indices_ : ndarray (n_components,)
    normalization_ : ndarray (n_components, n_components)
        ``V diag(μ^{-1/2})``.
    leverage_scores_, d_eff_, ridge_ : only for ``sampling="rls"``.

    Examples
    --------
    >>> import numpy as np
    >>> from ntkit.features import Nystroem
    >>> from ntkit.kernels import RBF
    >>> X = np.random.default_rng(0).normal(size=(60, 3))
    >>> F = Nystroem(RBF(1.0), n_components=60).fit_transform(X)
    >>> bool(np.abs(F @ F.T - RBF(1.0)(X)).max() < 1e-8)
    True
    """

    def __init__(self, kernel=None, *, n_components=100, sampling="uniform", ridge=None, random_state=None,
                 memory_budget=None, device="auto"):
        self.kernel = kernel
        self.n_components = n_components
        self.sampling = sampling
        self.ridge = ridge
        self.random_state = random_state
        self.memory_budget = memory_budget
        self.device = device

    def fit(self, X, y=None):
        """Choose the landmarks among the rows of X and factor their Gram matrix."""
        placement = self._placement(X)  # also validates ``device``
        if is_jax_array(X):
            Xj = check_device_X(self, X, placement, reset=True)
            X = _HostRows(Xj)
        else:
            check_array_arg(X, "X", ndim=2, min_rows=1)
            X = validate_data(self, X, dtype=[np.float64, np.float32], ensure_min_samples=1)
        owner = type(self).__name__
        sampling = check_option(self.sampling, "sampling", owner, ("uniform", "rls"))
        m = min(self._check_n_components(), X.shape[0])
        kernel = self.kernel if self.kernel is not None else RBF(lengthscale=float(np.sqrt(X.shape[1])))
        if not callable(kernel):
            raise InvalidParameterError(f"kernel must be an ntkit kernel or a callable k(X, Z); got {kernel!r}.")
        if self.ridge is not None:
            try:
                check_scalar(self.ridge, "ridge", owner, low=0.0, closed="right")
            except InvalidParameterError:
                raise InvalidParameterError(
                    f"The 'ridge' parameter of {owner} must be a positive float; got {self.ridge!r}.") from None
        rng = seed_from(self.random_state)
        n = X.shape[0]
        if sampling == "uniform" or m == n:
            idx = np.sort(rng.choice(n, size=m, replace=False))
        else:
            if isinstance(X, _HostRows):  # the recursive sampler reads every row: one copy to the host
                X = X.all()
            X64 = X.astype(np.float64, copy=False)
            tau, gam = recursive_rls(kernel, X64, m, ridge=self.ridge, random_state=rng,
                                     memory_budget=self.memory_budget)
            self.leverage_scores_, self.ridge_, self.d_eff_ = tau, float(gam), float(tau.sum())
            p = np.maximum(tau, 1e-12)
            idx = np.sort(rng.choice(n, size=m, replace=False, p=p / p.sum()))
        components = X[idx]
        L = components.astype(np.float64)
        K = _gram(kernel, L)
        mu, V = _linalg.eigh(K)
        # eigenvectors are defined up to sign: fix it (largest entry positive) so that the same
        # landmarks give the same features whatever the rounding (e.g. float32 vs float64 data)
        V = V * np.where(V[np.abs(V).argmax(axis=0), np.arange(V.shape[1])] < 0, -1.0, 1.0)[None, :]
        keep = mu > max(mu[-1], 0.0) * m * np.finfo(np.float64).eps
        inv_sqrt = np.zeros_like(mu)
        inv_sqrt[keep] = 1.0 / np.sqrt(mu[keep])
        self.kernel_ = kernel
        self.component_indices_ = idx
        self.components_ = components
        self._landmarks = L  # float64, reused by every transform
        self.normalization_ = V * inv_sqrt[None, :]
        self.rank_ = int(keep.sum())
        self._on_device = {}
        return self

    def _device_arrays(self):
        return {"landmarks": self._landmarks, "normalization": self.normalization_}

    def _map_device(self, X, device):
        """``K(X, L) V μ^{-1/2}`` on the device, in float64 blocks within the device budget."""
        import jax.numpy as jnp

        from .._device import device_budget
        from ..kernels import Kernel
        from ..ops import gram, plan_blocks
        from ._base import x64_scope

        with x64_scope(np.float64):
            P = self._device_params(device, np.float64)
            L, N = P["landmarks"], P["normalization"]
            X64 = X.astype(np.float64)
            plan = plan_blocks(X.shape[0], L.shape[0], n_features=X.shape[1], itemsize=8,
                               memory_budget=device_budget(device, self.memory_budget))
            parts = []
            for i in range(0, X.shape[0], plan.block_rows):
                Xi = X64[i:i + plan.block_rows]
                if isinstance(self.kernel_, Kernel):
                    K = gram(self.kernel_, Xi, L)
                else:  # a callable k(X, Z): called with device arrays, its result taken to the device
                    from .._device import Placement, to_device

                    K = to_device(self.kernel_(Xi, L), Placement(device, True), np.float64)
                parts.append(mm(K, N))
            out = parts[0] if len(parts) == 1 else jnp.concatenate(parts, axis=0)
            return out.astype(X.dtype)

    def _map(self, X):
        from ..ops import plan_blocks

        m = self.components_.shape[0]
        out = np.empty((X.shape[0], m), dtype=X.dtype)
        plan = plan_blocks(X.shape[0], m, n_features=X.shape[1], itemsize=8, memory_budget=self.memory_budget)
        L = self._landmarks
        for i in range(0, X.shape[0], plan.block_rows):
            Xi = X[i:i + plan.block_rows].astype(np.float64)
            out[i:i + len(Xi)] = matmul(_gram(self.kernel_, Xi, L), self.normalization_)
        return out
