"""Node regression and classification with graph random features."""

from __future__ import annotations

import numpy as np
import scipy.sparse.linalg as spla

from .._validation import InvalidParameterError, check_array_arg, check_scalar
from ._grf import GraphRandomFeatures

__all__ = ["GraphKernelRidge"]


def _check_nodes(nodes, n):
    """Node indices as a 1-D int64 array in [0, n) (no negative wrap-around, no float or boolean masks)."""
    arr = np.asarray(nodes)
    if arr.ndim != 1 or not (arr.dtype.kind in "iu" or (arr.size == 0 and arr.dtype.kind == "f")):
        raise InvalidParameterError(f"nodes must be a 1-D array of integer node indices; got dtype {arr.dtype}, shape "
                                    f"{arr.shape}.")
    if arr.size and (arr.min() < 0 or arr.max() >= n):
        raise InvalidParameterError(f"nodes must be indices in [0, {n}); got range [{arr.min()}, {arr.max()}].")
    return arr.astype(np.int64)


class GraphKernelRidge:
    """Kernel ridge regression on graph nodes with the GRF estimate ``K̂ = ΦΦᵀ``.

    ``fit(adjacency, nodes, y)`` solves ``(Φ_L Φ_Lᵀ + ridge·I) A = Y`` on the labelled nodes L by
    conjugate gradients (each product costs O(nnz(Φ_L)); no n × n matrix), and
    ``predict(nodes)`` returns ``Φ[nodes] Φ_Lᵀ A``. Integer or string labels give a classifier
    (one-vs-rest targets, argmax); float targets a regressor.

    Parameters
    ----------
    kernel, sigma, n_walks, p_halt, antithetic, repelling, p, symmetrize, random_state, backend
        As in :class:`GraphRandomFeatures`.
    ridge : float > 0, default=1e-2
    tol : float, default=1e-8
        CG relative residual.
    max_iter : int, default=2000

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> from ntkit.graphs import GraphKernelRidge
    >>> # two cliques joined by one edge; one labelled node in each
    >>> W = np.zeros((10, 10)); W[:5, :5] = 1; W[5:, 5:] = 1; np.fill_diagonal(W, 0); W[4, 5] = W[5, 4] = 1
    >>> m = GraphKernelRidge(n_walks=64, random_state=0).fit(W, [0, 9], ["a", "b"])
    >>> m.predict().tolist()
    ['a', 'a', 'a', 'a', 'a', 'b', 'b', 'b', 'b', 'b']
    """

    def __init__(self, kernel="regularized_laplacian", *, sigma=0.5, n_walks=16, p_halt=0.5, antithetic=False,
                 repelling=False, p=2, symmetrize=False, ridge=1e-2, tol=1e-8, max_iter=2000, random_state=None,
                 backend="auto"):
        self.kernel = kernel
        self.sigma = sigma
        self.n_walks = n_walks
        self.p_halt = p_halt
        self.antithetic = antithetic
        self.repelling = repelling
        self.p = p
        self.symmetrize = symmetrize
        self.ridge = ridge
        self.tol = tol
        self.max_iter = max_iter
        self.random_state = random_state
        self.backend = backend

    def fit(self, adjacency, nodes, y):
        """Fit on the labelled ``nodes`` (indices into the graph) with targets ``y``."""
        ridge = check_scalar(self.ridge, "ridge", type(self).__name__, low=0.0, closed="right")
        self.grf_ = GraphRandomFeatures(self.kernel, sigma=self.sigma, n_walks=self.n_walks, p_halt=self.p_halt,
                                        antithetic=self.antithetic, repelling=self.repelling, p=self.p,
                                        symmetrize=self.symmetrize, random_state=self.random_state,
                                        backend=self.backend).fit(adjacency)
        n = self.grf_.features_.shape[0]
        nodes = np.asarray(nodes)
        if nodes.ndim != 1 or nodes.dtype.kind not in "iu":
            raise InvalidParameterError(f"nodes must be a 1-D array of integer node indices; got dtype {nodes.dtype}, "
                                        f"shape {nodes.shape}.")
        if len(nodes) == 0 or nodes.min() < 0 or nodes.max() >= n:
            raise InvalidParameterError(f"nodes must be non-empty indices in [0, {n}); got range "
                                        f"[{nodes.min() if len(nodes) else '-'}, {nodes.max() if len(nodes) else '-'}].")
        if len(np.unique(nodes)) != len(nodes):
            raise InvalidParameterError("nodes contains repeated indices; give each labelled node once.")
        check_array_arg(y, "y", ndim=(1, 2), labels=True)  # string labels make a classifier
        y = np.asarray(y)
        if y.shape[0] != len(nodes):
            raise InvalidParameterError(f"y has {y.shape[0]} entries but nodes has {len(nodes)}.")
        self.classification_ = y.dtype.kind in "iubOU"
        if self.classification_:
            self.classes_, codes = np.unique(y, return_inverse=True)
            Y = np.eye(len(self.classes_))[codes]
        else:
            Y = y.astype(np.float64).reshape(len(nodes), -1)
            if not np.all(np.isfinite(Y)):
                raise InvalidParameterError("y contains NaN or Inf.")
        PL = self.grf_.features_[nodes]
        PLt = PL.T.tocsr()
        op = spla.LinearOperator((len(nodes), len(nodes)), matvec=lambda v: PL @ (PLt @ v) + ridge * v,
                                 dtype=np.float64)
        A = np.empty_like(Y)
        self.n_iter_ = []
        for c in range(Y.shape[1]):
            it = [0]
            A[:, c], info = spla.cg(op, Y[:, c], rtol=self.tol, maxiter=self.max_iter,
                                    callback=lambda _: it.__setitem__(0, it[0] + 1))
            self.n_iter_.append(it[0])
            if info > 0:
                import warnings

                warnings.warn(f"CG did not reach tol={self.tol} in {self.max_iter} iterations (target column {c}); "
                              "raise ridge or max_iter.", RuntimeWarning, stacklevel=2)
        self.nodes_ = nodes
        self.dual_coef_ = A
        self._W = PLt @ A  # (n, outputs): Φ_Lᵀ A, so predictions are one sparse product
        self._y_shape = y.shape
        return self

    def decision_function(self, nodes=None):
        """``Φ[nodes] Φ_Lᵀ A`` (all nodes by default)."""
        if not hasattr(self, "dual_coef_"):
            raise RuntimeError("GraphKernelRidge is not fitted yet: call fit(adjacency, nodes, y) first.")
        F = self.grf_.features_
        if nodes is not None:
            F = F[_check_nodes(nodes, F.shape[0])]
        return np.asarray(F @ self._W)

    def predict(self, nodes=None):
        """Labels (classification) or values (regression) of ``nodes`` (all nodes by default)."""
        S = self.decision_function(nodes)
        if self.classification_:
            return self.classes_[np.argmax(S, axis=1)]
        return S[:, 0] if len(self._y_shape) == 1 else S
