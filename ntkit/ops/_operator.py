"""``KernelOperator``: the kernel matrix as a scipy ``LinearOperator``."""

from __future__ import annotations

import numbers

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import LinearOperator

from .._validation import check_data, check_operand, check_scalar, is_jax_array
from ._gram import _check_kernel, gram, kernel_matvec

__all__ = ["KernelOperator"]


class _CheckedProducts:
    """Validates the operand of every public product of a :class:`LinearOperator` (mixin).

    scipy's own checks say "dimension mismatch" without naming the operand and let complex or
    object operands through to ``_matvec``; these raise first with a message naming ``x``.
    """

    def _check_x(self, x, rows, ndim, method):
        """Validate the operand of a product before scipy sees it (see ``check_operand``)."""
        if isinstance(x, LinearOperator) or sp.issparse(x) or (method == "dot" and isinstance(x, numbers.Number)):
            return x
        return check_operand(x, rows, ndim=ndim, method=method)

    def _jax_product(self, x, rows, ndim, method, transpose):
        """jax operands bypass scipy (which would copy them to the host): jax in, jax out, same device."""
        x = check_data(x, "x", ndim=ndim)
        if method in ("matvec", "rmatvec") and x.ndim == 2 and x.shape[1] != 1:
            raise ValueError(f"{type(self).__name__}.{method} takes x of shape ({rows},) or ({rows}, 1); got shape "
                             f"{tuple(x.shape)} (use matmat for several columns).")
        if x.shape[0] != rows:
            raise ValueError(f"x must have {rows} rows for {type(self).__name__}.{method} on an operator of shape "
                             f"{self.shape}; got shape {tuple(x.shape)}.")
        return self._rapply(x) if transpose else self._apply(x)

    def matvec(self, x):
        """``A @ x`` for x of shape (m,) or (m, 1), validated (see scipy's ``LinearOperator.matvec``)."""
        if is_jax_array(x):
            return self._jax_product(x, self.shape[1], (1, 2), "matvec", False)
        return super().matvec(self._check_x(x, self.shape[1], (1, 2), "matvec"))

    def rmatvec(self, x):
        """``Aᵀ @ x`` for x of shape (n,) or (n, 1)."""
        if is_jax_array(x):
            return self._jax_product(x, self.shape[0], (1, 2), "rmatvec", True)
        return super().rmatvec(self._check_x(x, self.shape[0], (1, 2), "rmatvec"))

    def matmat(self, X):
        """``A @ X`` for X of shape (m, k)."""
        if is_jax_array(X):
            return self._jax_product(X, self.shape[1], (2,), "matmat", False)
        return super().matmat(self._check_x(X, self.shape[1], (2,), "matmat"))

    def rmatmat(self, X):
        """``Aᵀ @ X`` for X of shape (n, k)."""
        if is_jax_array(X):
            return self._jax_product(X, self.shape[0], (2,), "rmatmat", True)
        return super().rmatmat(self._check_x(X, self.shape[0], (2,), "rmatmat"))

    def dot(self, x):
        """``A @ x`` for an array (1-D or 2-D), a scalar (scaled operator) or another LinearOperator."""
        if is_jax_array(x):
            return self._jax_product(x, self.shape[1], (1, 2), "dot", False)
        return super().dot(self._check_x(x, self.shape[1], (1, 2), "dot"))

    def __matmul__(self, x):
        if is_jax_array(x):
            return self.dot(x)
        return super().__matmul__(x)


class KernelOperator(_CheckedProducts, LinearOperator):
    """``K(X, Z) + ridge * I`` as a matrix-free :class:`scipy.sparse.linalg.LinearOperator`.

    Products stream through :func:`ntkit.ops.kernel_matvec`, so scipy's
    ``cg``, ``minres``, ``eigsh`` and ntkit's solvers can use kernel matrices
    that do not fit in memory.

    Parameters
    ----------
    kernel : Kernel
    X : array of shape (n_samples, n_features)
    Z : array of shape (m_samples, n_features), optional
        Defaults to X (a square, symmetric operator).
    ridge : float >= 0, default=0.0
        Added to the diagonal; only for square operators.
    backend : {"auto", "numpy", "jax", "native"}, default="auto"
    memory_budget : int or str, optional

    Notes
    -----
    With jax arrays for ``X`` (and ``Z``) the operator lives on their device: products with jax
    operands run there and return jax arrays on that device (scipy is bypassed, so nothing is
    copied to the host); products with numpy operands (scipy's solvers) return numpy.
    :meth:`diagonal` and :meth:`to_dense` return jax arrays for a jax operator.

    Examples
    --------
    >>> import numpy as np
    >>> from scipy.sparse.linalg import cg
    >>> from ntkit.kernels import RBF
    >>> from ntkit.ops import KernelOperator
    >>> rng = np.random.default_rng(0)
    >>> X, y = rng.normal(size=(50, 3)), rng.normal(size=50)
    >>> A = KernelOperator(RBF(1.0), X, ridge=1e-1)
    >>> alpha, info = cg(A, y, rtol=1e-10)
    >>> bool(np.allclose(A @ alpha, y, atol=1e-6))
    True
    """

    def __init__(self, kernel, X, Z=None, *, ridge=0.0, backend="auto", memory_budget=None):
        self.kernel = _check_kernel(kernel)
        self.X = check_data(X, "X")
        self.Z = None if Z is None else check_data(Z, "Z")
        if self.Z is not None and self.Z.shape[1] != self.X.shape[1]:
            raise ValueError(
                f"X has {self.X.shape[1]} features but Z has {self.Z.shape[1]}; both must have the same number of columns."
            )
        self.ridge = check_scalar(ridge, "ridge", "KernelOperator", low=0.0)
        n = self.X.shape[0]
        m = n if self.Z is None else self.Z.shape[0]
        if self.ridge and n != m:
            raise ValueError(f"ridge can only be added to a square operator; this one has shape ({n}, {m}).")
        self.backend = backend
        self.memory_budget = memory_budget
        self._on_device = is_jax_array(self.X) or is_jax_array(self.Z)
        dtype = np.dtype(self.X.dtype) if self.Z is None else np.result_type(np.dtype(self.X.dtype),
                                                                              np.dtype(self.Z.dtype))
        super().__init__(dtype=dtype, shape=(n, m))

    def _apply(self, V):
        jax_v = is_jax_array(V)
        if not jax_v:
            V = np.asarray(V)
        if np.dtype(V.dtype) != self.dtype:
            V = V.astype(self.dtype)
        out = kernel_matvec(self.kernel, self.X, self.Z, V, backend=self.backend, memory_budget=self.memory_budget)
        if self.ridge:
            out = out + self.ridge * V
        return out if jax_v or not self._on_device else np.asarray(out)

    def _rapply(self, V):
        if self.Z is None:
            return self._apply(V)
        jax_v = is_jax_array(V)
        V = V.astype(self.dtype) if jax_v else np.asarray(V, dtype=self.dtype)
        out = kernel_matvec(self.kernel, self.Z, self.X, V, backend=self.backend, memory_budget=self.memory_budget)
        return out if jax_v or not self._on_device else np.asarray(out)

    def _matvec(self, v):
        return self._apply(np.ravel(v))

    def _matmat(self, V):
        return self._apply(V)

    def _rmatvec(self, v):
        # k(x, z) = k(z, x) for every ntkit kernel, so K(X, Z)^T = K(Z, X).
        return self._rmatmat(np.reshape(v, (-1, 1)))[:, 0]

    def _rmatmat(self, V):
        return self._rapply(V)

    def _adjoint(self):
        if self.Z is None:
            return self
        return KernelOperator(self.kernel, self.Z, self.X, backend=self.backend, memory_budget=self.memory_budget)

    def diagonal(self):
        """The diagonal of the operator (square operators only), shape (n,)."""
        if self.Z is not None:
            raise ValueError("diagonal() is defined for square operators (Z=None) only.")
        if self._on_device:
            return self.kernel.diag(self.X).astype(self.dtype) + self.ridge
        return np.asarray(self.kernel.diag(self.X), dtype=self.dtype) + self.ridge

    def to_dense(self):
        """The explicit matrix (for small problems and tests)."""
        K = gram(self.kernel, self.X, self.Z, backend=self.backend, memory_budget=self.memory_budget)
        if self.ridge:
            if self._on_device:
                return K + self.ridge * (K.__array_namespace__().eye(K.shape[0], dtype=K.dtype)
                                         if hasattr(K, "__array_namespace__") else np.eye(K.shape[0], dtype=K.dtype))
            K[np.diag_indices_from(K)] += self.ridge
        return K
