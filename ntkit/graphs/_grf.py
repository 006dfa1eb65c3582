r"""Graph random features (GRFs): unbiased random-walk estimators of graph node kernels.

For each node i, ``n_walks`` random walks start at i; at every step a walk halts with
probability ``p_halt``, else moves to a uniformly random neighbour. A walk prefix
``i = v_0, …, v_l`` adds to ``φ(i)[v_l]``

    f(l) · Π_s U[v_s, v_{s+1}] / Π_s ((1 − p_halt) / deg(v_s))        (divided by n_walks)

— the product of edge weights over the prefix's probability. Then ``E[φ(i)ᵀφ(j)] = K_ij``
for i ≠ j when f is the modulation of K (f * f = α). Diagonal entries need two independent
walk sets: ``½(Φ_A Φ_Bᵀ + Φ_B Φ_Aᵀ)`` is unbiased everywhere. Φ is sparse (about
``n_walks / p_halt`` entries per row), so ``K̂ v = Φ(Φᵀ v)`` costs O(nnz) for any graph size.

Variance reduction, both keeping every walk's marginal law: antithetic termination (q-GRFs;
walkers in pairs whose halting uniforms are u and u + ½ mod 1) and repelling walks (walkers on
the same vertex take distinct neighbours by a stratified random shift).

The walks run in ``ntkit_native`` (C++, OpenMP over start nodes); the randomness is a
counter-based hash of (seed, start node, walker, step), so Φ does not depend on the thread
count or on how start nodes are split (the Dask version gives the same Φ). Without the
extension a numpy implementation with the same random numbers is used (slower).
"""

from __future__ import annotations

import math
import time

import numpy as np
import scipy.sparse as sp

from .._validation import InvalidParameterError, check_array_arg, check_int, check_option, check_scalar
from ._kernels import NAMED_KERNELS, as_adjacency, check_sigma, modulation, normalized_adjacency

__all__ = ["GraphRandomFeatures", "walk_features"]

_M1, _M2, _M3 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB), np.uint64(0x9E3779B97F4A7C15)
_STREAM = np.uint64(0xD1B54A32D192ED03)


def _mix64(x):
    with np.errstate(over="ignore"):  # uint64 arithmetic wraps, as in C++
        x = x + _M3
        x = (x ^ (x >> np.uint64(30))) * _M1
        x = (x ^ (x >> np.uint64(27))) * _M2
        return x ^ (x >> np.uint64(31))


def _u01(seed, stream, a, b, c, d):
    """The native sampler's uniforms, vectorised (uint64 arithmetic wraps exactly like C++)."""
    with np.errstate(over="ignore"):
        h = _mix64(np.uint64(seed) ^ (np.uint64(stream) * _STREAM))
        for x in (a, b, c, d):
            h = _mix64(h ^ np.asarray(x).astype(np.uint64))
    return (h >> np.uint64(11)).astype(np.float64) * 2.0**-53


def _walks_numpy(indptr, indices, U, starts, n_walks, p_halt, f, seed, mode):
    """Reference implementation of the native sampler (same random numbers), all walkers in lockstep."""
    antithetic, repelling = bool(mode & 1), bool(mode & 2)
    n_s = len(starts)
    deg_all = np.diff(indptr)
    rows = [np.arange(n_s)]
    cols = [starts.astype(np.int64)]
    vals = [np.full(n_s, f[0] * n_walks)]
    sidx = np.repeat(np.arange(n_s), n_walks)  # which start each walker belongs to
    wid = np.tile(np.arange(n_walks), n_s)
    v = starts[sidx].astype(np.int64)
    load = np.ones(len(v))
    steps = 0
    for l in range(1, len(f)):
        if len(v) == 0:
            break
        st = starts[sidx]
        if antithetic:
            u = _u01(seed, 1, st, wid // 2, l, 0)
            u = np.where(wid % 2 == 1, np.where(u + 0.5 >= 1.0, u - 0.5, u + 0.5), u)
        else:
            u = _u01(seed, 1, st, wid, l, 0)
        keep = (u >= p_halt) & (deg_all[v] > 0)
        sidx, wid, v, load, st = sidx[keep], wid[keep], v[keep], load[keep], st[keep]
        if len(v) == 0:
            break
        deg = deg_all[v]
        if repelling:
            order = np.lexsort((wid, v, sidx))
            sidx, wid, v, load, st, deg = (a[order] for a in (sidx, wid, v, load, st, deg))
            key_change = np.ones(len(v), bool)
            key_change[1:] = (sidx[1:] != sidx[:-1]) | (v[1:] != v[:-1])
            gstart = np.flatnonzero(key_change)
            gid = np.cumsum(key_change) - 1
            k = np.arange(len(v)) - gstart[gid]
            w = np.diff(np.append(gstart, len(v)))[gid]
            block, kb = k // deg, k % deg
            bsize = np.minimum(deg, w - block * deg)
            sh = _u01(seed, 3, st, v, l, block)
            pos = kb / bsize + sh
            pos = np.where(pos >= 1.0, pos - 1.0, pos)
            j = np.minimum((pos * deg).astype(np.int64), deg - 1)
        else:
            j = np.minimum((_u01(seed, 2, st, wid, l, 0) * deg).astype(np.int64), deg - 1)
        e = indptr[v] + j
        load = load * U[e] * deg / (1.0 - p_halt)
        v = indices[e]
        steps += len(v)
        rows.append(sidx)
        cols.append(v)
        vals.append(f[l] * load)
    M = sp.csr_matrix((np.concatenate(vals) / n_walks, (np.concatenate(rows), np.concatenate(cols))),
                      shape=(n_s, len(indptr) - 1))
    M.sum_duplicates()
    M.eliminate_zeros()
    M.sort_indices()
    return M, steps


def walk_features(U, starts, n_walks, p_halt, f, seed, mode, *, backend="auto"):
    """Feature rows (CSR, len(starts) × n) for the start nodes of the CSR matrix U; and the walk-step count."""
    starts = np.asarray(starts, dtype=np.int64)
    use_native = backend in ("auto", "native")
    if use_native:
        try:
            import ntkit_native

            use_native = ntkit_native.is_available() and hasattr(ntkit_native, "grf_features")
        except ImportError:  # pragma: no cover
            use_native = False
        if backend == "native" and not use_native:
            raise RuntimeError("backend='native' was requested but ntkit_native is not built; use backend='auto'.")
    if use_native:
        rp, c, v, steps = ntkit_native.grf_features(U.indptr.astype(np.int64), U.indices.astype(np.int64), U.data,
                                                    starts, n_walks, p_halt, f, seed, mode)
        return sp.csr_matrix((v, c, rp), shape=(len(starts), U.shape[0])), int(steps)
    return _walks_numpy(U.indptr.astype(np.int64), U.indices.astype(np.int64), U.data, starts, n_walks, p_halt, f,
                        seed, mode)


def _seed(random_state):
    if isinstance(random_state, (int, np.integer)):
        return int(random_state) & 0xFFFFFFFFFFFFFFFF
    rng = random_state if isinstance(random_state, np.random.Generator) else np.random.default_rng(random_state)
    return int(rng.integers(0, 2**63 - 1))


class GraphRandomFeatures:
    """Graph random features for node kernels ``K = Σ_l α_l U^l``, ``U = σ² D^{-1/2} W D^{-1/2}``.

    Parameters
    ----------
    kernel : str, callable or array, default="regularized_laplacian"
        One of ``"regularized_laplacian"`` ((I−U)⁻¹), ``"regularized_laplacian_2"`` ((I−U)⁻²),
        ``"diffusion"`` (exp U), ``"p_step"`` ((I+U)^p), ``"cosine"`` (cos U + sin U); an array
        of power-series coefficients α (deconvolved into the modulation); or a callable
        modulation f(l) (e.g. learned), whose kernel is α = f * f.
    sigma : float, default=0.5
        Scale of U (the Laplacian kernels need sigma < 1).
    n_walks : int, default=16
        Walks per node (even for antithetic termination).
    p_halt : float in (0, 1), default=0.5
    max_walk_length : int, optional
        Cut walks at this length (biased unless f vanishes beyond). Default: the length a walk
        exceeds with probability < 1e-16.
    antithetic, repelling : bool
        Variance reduction (q-GRFs, repelling walks); both keep the estimator unbiased.
    p : int, default=2
        Power of ``"p_step"``.
    symmetrize : bool, default=False
        Accept a directed (asymmetric) W by using (W + Wᵀ)/2.
    random_state : int, Generator or None
    backend : {"auto", "native", "numpy"}

    Attributes
    ----------
    features_ : scipy.sparse.csr_matrix (n_nodes, n_nodes)
        Φ; ``Φ Φᵀ`` estimates K (its diagonal is biased upwards: see ``kernel_estimate``).
    modulation_ : ndarray
        f(0), …, f(L).
    n_steps_ : int
        Walk steps taken. ``fit_seconds_``.

    Notes
    -----
    Self-loops are edges like any other (a walk may stay on its node); isolated nodes get the
    feature of the node itself only (K_ii = α_0 there).

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> from ntkit.graphs import GraphRandomFeatures, exact_graph_kernel
    >>> rng = np.random.default_rng(0)
    >>> W = sp.random(60, 60, density=0.1, random_state=0); W = ((W + W.T) > 0).astype(float)
    >>> grf = GraphRandomFeatures(n_walks=2000, random_state=0).fit(W)
    >>> K = exact_graph_kernel(W, sigma=0.5)
    >>> bool(np.linalg.norm(grf.kernel_estimate() - K) / np.linalg.norm(K) < 0.05)
    True
    """

    def __init__(self, kernel="regularized_laplacian", *, sigma=0.5, n_walks=16, p_halt=0.5, max_walk_length=None,
                 antithetic=False, repelling=False, p=2, symmetrize=False, random_state=None, backend="auto"):
        self.kernel = kernel
        self.sigma = sigma
        self.n_walks = n_walks
        self.p_halt = p_halt
        self.max_walk_length = max_walk_length
        self.antithetic = antithetic
        self.repelling = repelling
        self.p = p
        self.symmetrize = symmetrize
        self.random_state = random_state
        self.backend = backend

    def _setup(self, adjacency):
        owner = type(self).__name__
        if isinstance(self.kernel, str) and self.kernel not in NAMED_KERNELS:
            raise InvalidParameterError(f"The 'kernel' parameter of {owner} must be one of {NAMED_KERNELS}, a callable "
                                        f"modulation or an array of coefficients; got {self.kernel!r}.")
        n_walks = check_int(self.n_walks, "n_walks", owner, low=1)
        if self.antithetic and n_walks % 2:
            raise InvalidParameterError(f"antithetic termination pairs the walkers: n_walks must be even; got {n_walks}.")
        p_halt = check_scalar(self.p_halt, "p_halt", owner, low=0.0, high=1.0, closed="neither")
        if not (0.0 < p_halt < 1.0):
            raise InvalidParameterError(f"The 'p_halt' parameter of {owner} must lie in (0, 1); got {self.p_halt!r}.")
        check_option(self.backend, "backend", owner, ("auto", "native", "numpy"))
        A = as_adjacency(adjacency, symmetrize=self.symmetrize)
        sigma = check_scalar(self.sigma, "sigma", owner, low=0.0, closed="right")
        check_sigma(self.kernel, sigma, A)
        if self.max_walk_length is None:
            L = int(math.ceil(math.log(1e-16) / math.log1p(-p_halt)))
        else:
            L = check_int(self.max_walk_length, "max_walk_length", owner, low=0)
        L = min(L, 100_000)
        f = modulation(self.kernel, L + 1, p=check_int(self.p, "p", owner, low=0))
        last = np.flatnonzero(f)
        f = f[: (last[-1] + 1) if len(last) else 1]
        self.modulation_ = f
        self.adjacency_ = A
        self.U_ = normalized_adjacency(A, sigma)
        self._mode = int(bool(self.antithetic)) | (2 * int(bool(self.repelling)))
        self._n_walks, self._p_halt = n_walks, p_halt
        return A

    def fit(self, adjacency, y=None, *, checkpoint=None, block_nodes=65536, verbose=False):
        """Sample the walks from every node of the graph and build ``features_``.

        Parameters
        ----------
        adjacency : scipy.sparse matrix, array or networkx graph
        y : ignored
        checkpoint : path of a directory, optional
            Walks are sampled in blocks of ``block_nodes`` start nodes; each finished block is
            written there atomically, and a later ``fit`` with the same graph, settings and an
            explicit integer ``random_state`` loads the finished blocks and samples only the
            rest. A walk's randomness depends only on (seed, start node, walker, step), so a
            resumed run's ``features_`` equal an uninterrupted run's bit for bit.
        block_nodes : int
            Start nodes per block (checkpoint granularity and progress unit).
        verbose : bool
            Progress bar over blocks.
        """
        self._setup(adjacency)
        if checkpoint is not None and not isinstance(self.random_state, (int, np.integer)):
            raise ValueError("checkpoint needs an integer random_state: a resumed run must replay the same walks.")
        block = check_int(block_nodes, "block_nodes", type(self).__name__, low=1)
        self.seed_ = _seed(self.random_state)
        t0 = time.perf_counter()
        n = self.U_.shape[0]
        walk = lambda starts: walk_features(self.U_, starts, self._n_walks, self._p_halt,  # noqa: E731
                                            self.modulation_, self.seed_, self._mode, backend=self.backend)
        if checkpoint is None and not verbose:
            self.features_, self.n_steps_ = walk(np.arange(n))
        else:
            store = None
            if checkpoint is not None:
                from .._checkpoint import CheckpointDir, fingerprint

                U = self.U_
                store = CheckpointDir(checkpoint, {
                    "what": "GraphRandomFeatures", "graph": fingerprint(U.indptr, U.indices, U.data),
                    "modulation": fingerprint(self.modulation_), "seed": self.seed_, "n_walks": self._n_walks,
                    "p_halt": self._p_halt, "mode": self._mode, "block_nodes": block})
            done = store.keys() if store is not None else set()
            bar = None
            if verbose:
                from tqdm.auto import tqdm

                bar = tqdm(total=n, desc="graph random features", unit="node")
            parts, steps = [], 0
            for b, s in enumerate(range(0, n, block)):
                if (b,) in done:
                    F, k = store.load((b,))
                else:
                    F, k = walk(np.arange(s, min(n, s + block)))
                    if store is not None:
                        store.save((b,), (F, k))
                parts.append(F)
                steps += k
                if bar is not None:
                    bar.update(F.shape[0])
            if bar is not None:
                bar.close()
            self.features_ = sp.vstack(parts, format="csr") if len(parts) > 1 else parts[0]
            self.n_steps_ = steps
        self.fit_seconds_ = time.perf_counter() - t0
        self._features_b = None
        return self

    def _check_fitted(self):
        if not hasattr(self, "features_"):
            raise RuntimeError("GraphRandomFeatures is not fitted yet: call fit(adjacency) first.")

    @property
    def features_b_(self):
        """A second, independent walk set Φ_B (for unbiased diagonals), sampled on first use."""
        self._check_fitted()
        if self._features_b is None:
            seed_b = int(_mix64(np.uint64(self.seed_) ^ np.uint64(0x5DEECE66D)))
            self._features_b, _ = walk_features(self.U_, np.arange(self.U_.shape[0]), self._n_walks, self._p_halt,
                                                self.modulation_, seed_b, self._mode, backend=self.backend)
        return self._features_b

    def kernel_estimate(self, *, unbiased_diagonal=True, memory_budget=None):
        """Dense K̂: ``½(Φ_A Φ_Bᵀ + Φ_B Φ_Aᵀ)`` (unbiased everywhere), or ``Φ Φᵀ`` (PSD; diagonal biased).

        The (n, n) result must fit in memory; it is filled in row blocks whose workspace (the
        sparse products and their dense copies) is planned from ``memory_budget`` (default: see
        :func:`ntkit.config_context`).
        """
        from .._config import resolve_budget

        self._check_fitted()
        n = self.features_.shape[0]
        if n > 20_000:
            raise MemoryError(f"kernel_estimate forms a dense {n} × {n} matrix; use kernel_matvec for large graphs.")
        A = self.features_
        B = self.features_b_ if unbiased_diagonal else A
        At, Bt = A.T.tocsr(), B.T.tocsr()
        # per row: two dense rows and at most two sparse rows (value + index, 12 bytes an entry)
        rows = max(1, resolve_budget(memory_budget) // (40 * max(n, 1)))
        out = np.empty((n, n))
        for i in range(0, n, rows):
            sl = slice(i, min(n, i + rows))
            if unbiased_diagonal:
                out[sl] = (A[sl] @ Bt).toarray()
                out[sl] += (B[sl] @ At).toarray()
                out[sl] *= 0.5
            else:
                out[sl] = (A[sl] @ At).toarray()
        return out

    def kernel_matvec(self, v, *, unbiased_diagonal=True):
        """``K̂ v`` through the sparse features (any graph size): O(nnz(Φ)) per column."""
        self._check_fitted()
        n = self.features_.shape[0]
        check_array_arg(v, "v", ndim=(1, 2), finite=True)
        v = np.asarray(v, dtype=np.float64)
        if v.shape[0] != n:
            raise ValueError(f"v must have shape ({n},) or ({n}, k); got {v.shape}.")
        if not np.all(np.isfinite(v)):
            raise ValueError("v contains NaN or Inf.")
        A = self.features_
        if not unbiased_diagonal:
            return A @ (A.T @ v)
        B = self.features_b_
        return 0.5 * (A @ (B.T @ v) + B @ (A.T @ v))
