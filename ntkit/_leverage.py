r"""Ridge leverage scores: the one place where ntkit estimates them.

The ridge leverage score of point i at ridge γ is

    τ_i(γ) = [K (K + γ I)⁻¹]_ii = (k_ii − k_iᵀ (K + γ I)⁻¹ k_i) / γ,

and their sum is the effective dimension d_eff(γ) = Tr K (K + γ I)⁻¹. Against a weighted
dictionary D (weights s_j, S = diag(s)) the same formula with K_DD in place of K,

    τ̃_i = (k_ii − k_iDᵀ S (S K_DD S + γ I)⁻¹ S k_Di) / γ,

is the estimator of SQUEAK / KORS (Calandriello et al. 2017) and of recursive RLS sampling
(Musco & Musco 2017); with D = all points and unit weights it is exact.

Consumers: :class:`ntkit.features.Nystroem` (``sampling="rls"``) and the sketched second-order
online learners in :mod:`ntkit.online`.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

from . import _linalg
from ._blas import matmul
from .ops import gram, plan_blocks

__all__ = ["exact_leverage_scores", "approximate_leverage_scores", "recursive_rls", "OnlineRLSDictionary"]


def _gram(kernel, X, Z=None):
    """K(X, Z) in float64 for an ntkit kernel (through ntkit.ops) or any callable k(X, Z)."""
    from .kernels import Kernel

    if isinstance(kernel, Kernel):
        return np.asarray(gram(kernel, X, Z), dtype=np.float64)
    return np.asarray(kernel(X, X if Z is None else Z), dtype=np.float64)


def _kernel_diag(kernel, X):
    if hasattr(kernel, "diag"):
        return np.asarray(kernel.diag(X), dtype=np.float64)
    out = np.empty(len(X))  # a plain callable: diagonals of small diagonal blocks
    for i in range(0, len(X), 128):
        out[i:i + 128] = np.diag(_gram(kernel, X[i:i + 128]))
    return out


def exact_leverage_scores(kernel, X, ridge):
    """``diag(K (K + ridge·I)⁻¹)`` from the dense Gram matrix (O(n³); a reference for small n)."""
    K = _gram(kernel, X)
    w, V = _linalg.eigh(K, overwrite_a=True)
    w = np.clip(w, 0.0, None)
    return np.einsum("ij,j,ij->i", V, w / (w + ridge), V)


class _DictionaryFactor:
    """``L⁻¹`` for the Cholesky factor ``L Lᵀ = S K_DD S + γ I``, for repeated leverage-score queries.

    A query needs ``bᵀ (L Lᵀ)⁻¹ b = ‖L⁻¹ b‖²`` for every column b of a (|D|, block) matrix: one product
    with the explicit inverse (a threaded GEMM; |D|³/3 once) instead of two triangular solves per
    block (single-threaded TRSM). The inverse of a triangular factor is computed stably (its error is
    ~ cond(L)·eps = sqrt(cond(M))·eps relative, far below what a leverage-score estimate needs).
    """

    def __init__(self, kernel, D, weights, ridge, *, KDD=None):
        self.kernel, self.D, self.ridge = kernel, D, float(ridge)
        self.s = np.ones(len(D)) if weights is None else np.asarray(weights, np.float64)
        KDD = _gram(kernel, D) if KDD is None else KDD
        M = self.s[:, None] * KDD * self.s[None, :]
        M[np.diag_indices_from(M)] += self.ridge
        L = _linalg.cholesky(M, overwrite_a=True, what="the dictionary's S K_DD S + γI")[0]
        with _linalg.one_blas_thread():  # bit-reproducible (see ntkit._linalg)
            self.Linv = scipy.linalg.solve_triangular(L, np.eye(len(L)), lower=True, overwrite_b=True,
                                                      check_finite=False)

    def scores(self, X, *, memory_budget=None):
        n = len(X)
        out = np.empty(n)
        if n == 0:
            return out
        plan = plan_blocks(n, len(self.D), n_features=X.shape[1], itemsize=8, memory_budget=memory_budget)
        for i in range(0, n, plan.block_rows):
            Xi = X[i:i + plan.block_rows]
            B = _gram(self.kernel, self.D, Xi)  # (|D|, b)
            B *= self.s[:, None]
            q = np.zeros(len(Xi))
            for r0, r1 in self._row_blocks:  # L⁻¹ is lower triangular: skip its zero blocks (~45% of the flops)
                C = matmul(self.Linv[r0:r1, :r1], B[:r1])
                q += np.einsum("ij,ij->j", C, C)
            out[i:i + len(Xi)] = (_kernel_diag(self.kernel, Xi) - q) / self.ridge
        return np.clip(out, 0.0, 1.0)

    @property
    def _row_blocks(self):
        m = len(self.Linv)
        step = max(64, -(-m // 8))
        return [(r0, min(m, r0 + step)) for r0 in range(0, m, step)]


def approximate_leverage_scores(kernel, X, dictionary, ridge, *, weights=None, memory_budget=None):
    """Ridge leverage scores of the rows of ``X`` estimated against a (weighted) dictionary.

    Parameters
    ----------
    kernel : Kernel
    X : array (n, d)
    dictionary : array (m, d)
        The dictionary points D.
    ridge : float > 0
        γ.
    weights : array (m,), optional
        Dictionary weights s_j (1/√p_j for points kept with probability p_j); default ones.
    memory_budget : optional
        Bound on the (block, m) Gram blocks' workspace.

    Returns
    -------
    scores : array (n,), in [0, 1]
    """
    if not ridge > 0:
        raise ValueError(f"ridge must be > 0 for leverage scores; got {ridge!r}.")
    return _DictionaryFactor(kernel, dictionary, weights, ridge).scores(X, memory_budget=memory_budget)


def _auto_ridge(K, weights, s):
    """Musco & Musco's ridge for a target size s: the tail mass of the (weighted) dictionary Gram
    matrix ``K``'s spectrum beyond s, divided by s."""
    w = np.ones(len(K)) if weights is None else weights
    ev = np.clip(np.linalg.eigvalsh(w[:, None] * K * w[None, :]), 0.0, None)[::-1]
    tail = float(ev[s:].sum()) if s < len(ev) else 0.0
    return max(tail / s, 1e-10 * float(ev[0]) if len(ev) else 1e-10, np.finfo(np.float64).tiny)


def recursive_rls(kernel, X, n_components, *, ridge=None, oversample=2.0, random_state=None,
                  memory_budget=None):
    """Approximate ridge leverage scores of all rows of X by recursive halving (Musco & Musco 2017).

    Each level keeps a random half of its points, builds a dictionary on that half recursively,
    estimates every point's score against it and keeps each point with probability
    ``p_i = min(1, oversample · s · τ̃_i / Σ τ̃)`` (weight 1/√p), so every level's dictionary has
    about ``oversample · s`` points and costs O(n s²). Points of a small cluster the dictionary misses
    get τ̃ ≈ 1 and are kept, so no cluster is lost however small it is.

    Parameters
    ----------
    kernel : Kernel
    X : array (n, d), float64
    n_components : int
        Target dictionary size s (sets the ridge when ``ridge`` is None).
    ridge : float, optional
        γ; default: the dictionary's spectral tail beyond s, divided by s, at every level.
    oversample : float
        Dictionary size per level, in units of s.
    random_state : int or Generator

    Returns
    -------
    scores : array (n,)
        Estimated τ̃_i for every row.
    ridge : float
        The ridge used at the last level.
    """
    rng = np.random.default_rng(random_state)
    X = np.asarray(X)
    n = len(X)
    s = int(n_components)
    base = max(int(oversample * s), 64)

    def _level(D, w):
        # one K_DD per level, shared by the ridge rule and the factor
        KDD = _gram(kernel, X[D])
        gam = ridge if ridge is not None else _auto_ridge(KDD, w, s)
        return _DictionaryFactor(kernel, X[D], w, gam, KDD=KDD)

    def sample(idx):
        # a dictionary of about oversample·s points per level (Musco & Musco's accelerated variant):
        # p_i ∝ τ̃_i, capped at 1, weights 1/√p_i
        if len(idx) <= base:
            return idx, np.ones(len(idx))
        half = idx[rng.random(len(idx)) < 0.5]
        D, w = sample(half)
        tau = _level(D, w).scores(X[idx], memory_budget=memory_budget)
        p = np.minimum(1.0, oversample * s * tau / max(tau.sum(), 1e-300))
        keep = rng.random(len(idx)) < p
        return idx[keep], 1.0 / np.sqrt(p[keep])

    all_idx = np.arange(n)
    if n <= base:
        D, w = all_idx, np.ones(n)
    else:
        D, w = sample(all_idx[rng.random(n) < 0.5])
    fac = _level(D, w)
    return fac.scores(X, memory_budget=memory_budget), fac.ridge


# ---------------------------------------------------------------------------------------------
# Online (one atom at a time) dictionary: SQUEAK / KORS estimates, ALD residuals, Woodbury solves
# ---------------------------------------------------------------------------------------------

class _Store:
    """Append-only buffers shared by successive versions of one :class:`OnlineRLSDictionary`.

    ``hwm`` is the size of the largest version written so far. A version of size ``n`` may append
    in place only when ``n == hwm`` (nobody has appended after it); otherwise it copies first, so
    every version ever returned keeps its contents (copy-on-write, amortised O(1) appends).
    """

    def __init__(self, capacity, n_features):
        self.points = np.empty((capacity, n_features), dtype=np.float64)
        self.weights = np.empty(capacity, dtype=np.float64)
        self.chol = np.zeros((capacity, capacity), dtype=np.float64, order="F")
        self.hwm = 0

    @property
    def capacity(self):
        return self.weights.shape[0]


class OnlineRLSDictionary:
    r"""A weighted dictionary grown one atom at a time, with the Cholesky factor of ``S K_DD S + ridge·I``.

    For atoms ``D = (d_1, …, d_m)`` with weights ``s_j`` (``S = diag(s)``) the factor
    ``L Lᵀ = S K_DD S + ridge·I`` gives, for any point x with ``a = L⁻¹ S k_D(x)``,

    * the **residual** ``r(x) = k(x, x) − ‖a‖² = k(x, x) − k_D(x)ᵀ S (S K_DD S + ridge·I)⁻¹ S k_D(x)``;
      with ``ridge = 0`` and unit weights it is the squared RKHS distance of ``φ(x)`` to ``span φ(D)``
      (the approximate-linear-dependence test of Engel, Mannor & Meir 2004);
    * the **ridge leverage score** ``τ̃(x) = r(x) / ridge`` — the estimator of SQUEAK and KORS
      (Calandriello, Lazaric & Valko 2017), the same formula as :func:`approximate_leverage_scores`,
      here *without* clipping to [0, 1] (``τ̃/(1+τ̃)`` is the score with x itself included);
    * **Woodbury solves**: ``(ridge·I + Φ_D S² Φ_Dᵀ)⁻¹ φ(x) = (φ(x) − Φ_D S L⁻ᵀ a) / ridge``.

    Appending an atom costs one O(m²) triangular solve (skipped when the caller passes ``a``) and
    writes one row of L: the factor is exactly the row-by-row Cholesky of the final matrix, so it is
    backward stable and does not drift however many atoms are added (no inverse is ever updated).

    Versions are immutable: :meth:`add` returns a new dictionary and leaves the old one valid.
    Storage is float64 whatever the input dtype.

    Parameters
    ----------
    n_features : int
    ridge : float >= 0
        ``ridge > 0`` is needed for :meth:`leverage`; ``ridge = 0`` (the ALD dictionary) requires every
        appended atom to have a positive residual.
    capacity : int, default=64
        Initial buffer size (doubled as needed).

    Examples
    --------
    >>> import numpy as np
    >>> from ntkit.kernels import RBF
    >>> from ntkit._leverage import OnlineRLSDictionary, approximate_leverage_scores
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(30, 2)); k = RBF(1.0)
    >>> D = OnlineRLSDictionary(n_features=2, ridge=0.1)
    >>> for x in X[:10]:
    ...     D = D.add(kernel=k, x=x, weight=1.0)
    >>> len(D), bool(np.allclose(D.leverage(k, X[10:]).clip(0, 1),
    ...                          approximate_leverage_scores(k, X[10:], X[:10], 0.1)))
    (10, True)
    """

    def __init__(self, n_features, ridge, *, capacity=64, _store=None, _size=0):
        self.n_features = int(n_features)
        self.ridge = float(ridge)
        if not (np.isfinite(self.ridge) and self.ridge >= 0):
            raise ValueError(f"ridge must be a finite float >= 0; got {ridge!r}.")
        self._store = _store if _store is not None else _Store(max(int(capacity), 1), self.n_features)
        self._size = int(_size)

    # -- views -----------------------------------------------------------------------------------
    def __len__(self):
        return self._size

    @property
    def points(self):
        """The atoms, array of shape (m, n_features) (a read-only view)."""
        v = self._store.points[:self._size]
        v.flags.writeable = False
        return v

    @property
    def weights(self):
        """The weights s_j, array of shape (m,) (a read-only view)."""
        v = self._store.weights[:self._size]
        v.flags.writeable = False
        return v

    @property
    def factor(self):
        """Lower-triangular L with ``L Lᵀ = S K_DD S + ridge·I``, shape (m, m) (a copy)."""
        return np.array(self._store.chol[:self._size, :self._size])

    # -- linear algebra ----------------------------------------------------------------------------
    def solve_lower(self, B):
        """``L⁻¹ B`` for B of shape (m,) or (m, n)."""
        return self._trs(B, trans=0)

    def solve_upper(self, B):
        """``L⁻ᵀ B`` for B of shape (m,) or (m, n)."""
        return self._trs(B, trans=1)

    def _trs(self, B, trans):
        m = self._size
        B = np.asarray(B, dtype=np.float64)
        if B.shape[0] != m:
            raise ValueError(f"B must have {m} rows to match the dictionary; found shape {B.shape}.")
        if m == 0:
            return np.array(B, dtype=np.float64)
        from scipy.linalg.lapack import dtrtrs

        one_d = B.ndim == 1
        rhs = np.asfortranarray(B.reshape(m, -1))
        # The factor lives in the top-left m×m block of a (capacity × capacity) Fortran buffer;
        # LAPACK reads it in place with leading dimension = capacity (no copy of the factor).
        x, info = dtrtrs(self._store.chol[:, :m], rhs, lower=1, trans=trans)
        if info != 0:  # pragma: no cover - a zero pivot cannot be appended (checked in add)
            raise np.linalg.LinAlgError(f"singular dictionary factor (LAPACK info {info}).")
        return x[:, 0] if one_d else x

    def weighted_kernel(self, kernel, X):
        """``S k_D(X)``, shape (m, n), through :func:`ntkit.ops.gram`."""
        X = np.atleast_2d(np.asarray(X, dtype=np.float64))
        if self._size == 0:
            return np.zeros((0, X.shape[0]))
        return self.weights[:, None] * _gram(kernel, self.points, X)

    def residual(self, kernel, X, *, k_DX=None, k_XX=None):
        """``k(x, x) − ‖L⁻¹ S k_D(x)‖²`` for the rows of X, shape (n,) (clipped at 0).

        ``k_DX`` (the *unweighted* block ``k(D, X)``, shape (m, n)) and ``k_XX`` (the diagonal,
        shape (n,)) may be passed when already computed.
        """
        X = np.atleast_2d(np.asarray(X, dtype=np.float64))
        if k_XX is None:
            k_XX = _kernel_diag(kernel, X)
        if self._size == 0:
            return np.clip(np.asarray(k_XX, dtype=np.float64), 0.0, None)
        B = self.weighted_kernel(kernel, X) if k_DX is None else self.weights[:, None] * np.asarray(k_DX)
        A = self.solve_lower(B)
        return np.clip(k_XX - np.einsum("ij,ij->j", A, A), 0.0, None)

    def leverage(self, kernel, X, *, k_DX=None, k_XX=None):
        """Ridge leverage scores ``τ̃(x) = residual(x) / ridge`` of the rows of X (x itself not in D).

        Equal to :func:`approximate_leverage_scores` before its clipping to [0, 1].
        """
        if not self.ridge > 0:
            raise ValueError("leverage scores need ridge > 0; this dictionary has ridge 0 (an ALD dictionary).")
        return self.residual(kernel, X, k_DX=k_DX, k_XX=k_XX) / self.ridge

    # -- growth ----------------------------------------------------------------------------------
    def add(self, *, x, weight=1.0, kernel=None, a=None, k_xx=None):
        """A new dictionary with ``x`` appended with weight ``weight``.

        Pass either ``kernel`` (the O(m²) solve ``a = L⁻¹ S k_D(x)`` and ``k(x, x)`` are then
        computed here) or the precomputed ``a`` (shape (m,)) and ``k_xx``. The appended row of the
        factor is ``(weight·a, sqrt(ridge + weight²·(k(x, x) − ‖a‖²)))``.

        Raises
        ------
        ValueError
            If the new pivot is not positive (ridge 0 and x already in the span of D).
        """
        x = np.asarray(x, dtype=np.float64).reshape(-1)
        if x.shape[0] != self.n_features:
            raise ValueError(f"x must have {self.n_features} features; found shape {x.shape}.")
        m = self._size
        if a is None or k_xx is None:
            if kernel is None:
                raise ValueError("pass either kernel, or both a and k_xx.")
            k_xx = float(_kernel_diag(kernel, x[None, :])[0])
            a = self.solve_lower(self.weighted_kernel(kernel, x[None, :])[:, 0]) if m else np.zeros(0)
        a = np.asarray(a, dtype=np.float64).reshape(-1)
        if a.shape[0] != m:
            raise ValueError(f"a must have {m} entries; found shape {a.shape}.")
        w = float(weight)
        pivot2 = self.ridge + w * w * (float(k_xx) - float(a @ a))
        if not pivot2 > 0 or not np.isfinite(pivot2):
            raise ValueError(f"cannot append an atom with a non-positive pivot ({pivot2!r}): with ridge 0 the "
                             "point must not lie in the span of the dictionary.")
        st = self._store
        if m != st.hwm or m >= st.capacity:  # copy-on-write: an older version, or the buffer is full
            new = _Store(max(2 * st.capacity, m + 1) if m >= st.capacity else st.capacity, self.n_features)
            new.points[:m] = st.points[:m]
            new.weights[:m] = st.weights[:m]
            new.chol[:m, :m] = st.chol[:m, :m]
            new.hwm = m
            st = new
        st.points[m] = x
        st.weights[m] = w
        st.chol[m, :m] = w * a
        st.chol[m, m] = np.sqrt(pivot2)
        st.hwm = m + 1
        return OnlineRLSDictionary(self.n_features, self.ridge, _store=st, _size=m + 1)

    def __repr__(self):
        return f"OnlineRLSDictionary(size={self._size}, n_features={self.n_features}, ridge={self.ridge:g})"
