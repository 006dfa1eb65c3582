"""One interface over the three kinds of kernel a solver accepts.

- an :mod:`ntkit.kernels` kernel: products go through :func:`ntkit.ops.kernel_matvec`
  (fused, native when built) and blocks through :func:`ntkit.ops.gram`;
- ``"precomputed"``: ``X`` is the (n, n) Gram matrix and points are row indices;
- any callable ``k(A, B) -> (len(A), len(B))`` (e.g. an eNTK built with
  :func:`ntkit.ntk.empirical_ntk_fn`): evaluated in row blocks sized by the memory budget.
"""

from __future__ import annotations

import numpy as np

from .._blas import matmul
from .._config import resolve_budget
from .._validation import InvalidParameterError
from ..kernels import Kernel


class KernelAccess:
    def __init__(self, kernel, X, *, memory_budget=None, dtype=None):
        self.precomputed = isinstance(kernel, str)
        if self.precomputed and kernel != "precomputed":
            raise InvalidParameterError(
                f"kernel must be an ntkit kernel, a callable k(A, B) or the string 'precomputed'; got {kernel!r}.")
        if not self.precomputed and not isinstance(kernel, Kernel) and not callable(kernel):
            raise TypeError(f"kernel must be an ntkit kernel, a callable k(A, B) or 'precomputed'; got "
                            f"{type(kernel).__name__}.")
        self.kernel = kernel
        self.X = X
        self.budget = resolve_budget(memory_budget)
        self.dtype = np.dtype(dtype or X.dtype)
        self.is_ntkit = isinstance(kernel, Kernel)

    # points are either index arrays into X (training points) or explicit data arrays
    def _data(self, P):
        if isinstance(P, _Idx):
            return self.X[P.idx] if not self.precomputed else P
        return P

    def block(self, A, B):
        """Dense K(A, B)."""
        if self.precomputed:
            if not (isinstance(A, _Idx) and isinstance(B, _Idx)):
                raise ValueError("with kernel='precomputed' only training points (rows of the Gram matrix) can be "
                                 "used; centers, validation data and predictions need a kernel function.")
            return np.asarray(self.X[np.ix_(A.idx, B.idx)], dtype=self.dtype)
        a, b = self._data(A), self._data(B)
        if self.is_ntkit:
            from ..ops import gram

            return np.asarray(gram(self.kernel, a, b), dtype=self.dtype)
        return self._callable_block(a, b)

    def _callable_block(self, a, b):
        K = np.asarray(self.kernel(a, b))
        if K.shape != (len(a), len(b)):
            raise ValueError(f"the kernel callable returned shape {K.shape} for inputs of {len(a)} and {len(b)} rows; "
                             f"it must return ({len(a)}, {len(b)}).")
        K = K.astype(self.dtype, copy=False)
        if not np.isfinite(K).all():
            raise ValueError(f"the kernel callable returned NaN or infinity (in {self.dtype}); check the kernel, or "
                             "rescale it if its values exceed the dtype's range.")
        return K

    def matvec(self, A, B, v):
        """K(A, B) @ v without storing K(A, B) beyond a budget-sized block."""
        if self.precomputed:
            return matmul(self.block(A, B), v) if len(A.idx) * len(B.idx) * 8 < self.budget else \
                np.concatenate([matmul(self.block(_Idx(A.idx[s:s + 1024]), B), v) for s in range(0, len(A.idx), 1024)])
        a, b = self._data(A), self._data(B)
        if self.is_ntkit:
            from ..ops import kernel_matvec

            return np.asarray(kernel_matvec(self.kernel, a, b, v, memory_budget=self.budget), dtype=self.dtype)
        rows = max(1, int(self.budget // (4 * max(1, len(b)) * self.dtype.itemsize)))
        return np.concatenate([matmul(self._callable_block(a[s:s + rows], b), v) for s in range(0, len(a), rows)])

    def diag_max(self, A):
        """max_i k(x_i, x_i) over the points A (β in EigenPro)."""
        if self.precomputed:
            return float(np.max(np.diagonal(self.X)[A.idx]))
        a = self._data(A)
        if self.is_ntkit:
            return float(np.max(self.kernel.diag(a)))
        return float(max(self._callable_block(a[i:i + 1], a[i:i + 1])[0, 0] for i in range(len(a))))


class _Idx:
    """Training points given by their row indices."""

    __slots__ = ("idx",)

    def __init__(self, idx):
        self.idx = np.asarray(idx)

    def __len__(self):
        return len(self.idx)


def idx(i):
    return _Idx(i)
