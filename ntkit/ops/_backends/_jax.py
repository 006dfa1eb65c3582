"""The jax backend: jit-compiled blocks, padded to a fixed size so ragged edges never recompile."""

from __future__ import annotations

import contextlib
import functools

import numpy as np

from .._blocks import plan_blocks


def _jax():
    import jax
    import jax.numpy as jnp

    return jax, jnp


def x64_scope(dtype):
    """Enable 64-bit jax locally when the data are float64 (dtype in = dtype out)."""
    jax, _ = _jax()
    if np.dtype(dtype) == np.float64 and not jax.config.jax_enable_x64:
        return jax.enable_x64(True)
    return contextlib.nullcontext()


def _mm(jnp, A, B):
    import jax

    return jnp.matmul(A, B, precision=jax.lax.Precision.HIGHEST)


@functools.lru_cache(maxsize=64)
def _block_fn(kk, n_features):
    # ``kk.key`` is the kernel's static summary; ``kk.kernel`` rides along for the formula.
    jax, jnp = _jax()
    kernel, params = kk.kernel, dict(kk.key[1:])

    def block(X, Z):
        sx = jnp.sum(X * X, axis=1)
        sz = jnp.sum(Z * Z, axis=1)
        return kernel._block_rows(jnp, X, Z, _mm(jnp, X, Z.T), sx, sz, n_features, params)

    return jax.jit(block)


@functools.lru_cache(maxsize=64)
def _matvec_fn(kk, n_features, sym):
    jax, jnp = _jax()
    kernel, params = kk.kernel, dict(kk.key[1:])

    def mv(X, Zb, vb, row0):
        sx = jnp.sum(X * X, axis=1)
        rows = row0 + jnp.arange(X.shape[0])
        bc = Zb.shape[1]
        dvals = kernel._diag_rows(jnp, X, sx, n_features, params) if sym else None

        def body(acc, zv):
            j, Zj, vj = zv
            szj = jnp.sum(Zj * Zj, axis=1)
            K = kernel._block_rows(jnp, X, Zj, _mm(jnp, X, Zj.T), sx, szj, n_features, params)
            if sym:  # K(X, X): the exact diagonal, not the rounded expansion
                cols = j * bc + jnp.arange(bc)
                K = jnp.where(rows[:, None] == cols[None, :], dvals[:, None].astype(K.dtype), K)
            return acc + _mm(jnp, K, vj), None

        acc0 = jnp.zeros((X.shape[0], vb.shape[2]), dtype=X.dtype)
        return jax.lax.scan(body, acc0, (jnp.arange(Zb.shape[0]), Zb, vb))[0]

    return jax.jit(mv)


class _Key:
    """Hashable wrapper so lru_cache keys on the kernel's parameters, not its identity."""

    __slots__ = ("kernel", "key")

    def __init__(self, kernel, key):
        self.kernel, self.key = kernel, key

    def __hash__(self):
        return hash(self.key)

    def __eq__(self, other):
        return isinstance(other, _Key) and self.key == other.key


def _pad_rows(jnp, A, size):
    extra = size - A.shape[0]
    return A if extra == 0 else jnp.concatenate([A, jnp.zeros((extra,) + A.shape[1:], A.dtype)])


def gram(kernel, params, X, Z, n_features, memory_budget, *, to_numpy=False):
    """K(X, Z) from jit-compiled blocks; ``Z=None`` means Z = X (then the diagonal is the kernel's exact one).

    ``to_numpy=True`` (numpy in, numpy out) writes each block into one preallocated numpy
    array, so the memory beyond the (n, m) result is one block's workspace, as planned from
    ``memory_budget``. Otherwise (jax in, jax out) the result is concatenated from row
    blocks: transiently the blocks and the result, twice the output.
    """
    _, jnp = _jax()
    sym = Z is None
    Zs = X if sym else Z
    n, m = X.shape[0], Zs.shape[0]
    if n == 0 or m == 0:
        return np.zeros((n, m), dtype=np.dtype(X.dtype)) if to_numpy else jnp.zeros((n, m), dtype=X.dtype)
    fn = _block_fn(_Key(kernel, kernel._static_key(params)), n_features)
    plan = plan_blocks(n, m, n_features=X.shape[1], itemsize=X.dtype.itemsize, memory_budget=memory_budget,
                       entry_copies=kernel._workspace_copies(params))
    br, bc = plan.block_rows, plan.block_cols
    diag = kernel._diag_rows(jnp, X, jnp.sum(X * X, axis=1), n_features, params).astype(X.dtype) if sym else None
    if to_numpy:
        out = np.empty((n, m), dtype=np.dtype(X.dtype))
        for i in range(0, n, br):
            if bc < m:  # very small budgets: columns too
                for j in range(0, m, bc):
                    out[i:i + br, j:j + bc] = np.asarray(fn(X[i:i + br], Zs[j:j + bc]))
            else:
                out[i:i + br] = np.asarray(fn(_pad_rows(jnp, X[i:i + br], br), Zs))[: min(br, n - i)]
        if sym:
            np.fill_diagonal(out, np.asarray(diag))
        return out

    def row_block(i):
        e = min(i + br, n)
        if bc < m:  # very small budgets: columns too
            blk = jnp.concatenate([fn(X[i:e], Zs[j:j + bc]) for j in range(0, m, bc)], axis=1)
        else:
            blk = fn(_pad_rows(jnp, X[i:e], br), Zs)[: e - i]
        if sym:  # the exact diagonal, set per row block (no extra copy of the whole result)
            idx = jnp.arange(e - i)
            blk = blk.at[idx, i + idx].set(diag[i:e])
        return blk

    rows = [row_block(i) for i in range(0, n, br)]
    return rows[0] if len(rows) == 1 else jnp.concatenate(rows, axis=0)


#: Largest row / column blocks of the jax matvec (rows: fixed, so results are row-invariant;
#: a GPU needs larger blocks to be busy).
ROW_BLOCK_CPU, COL_BLOCK_CPU = 2048, 4096
ROW_BLOCK_GPU, COL_BLOCK_GPU = 8192, 16384
#: Up to this many rows, the row block is this size (two fixed sizes keep results row-invariant).
SMALL_ROWS = 128


def _platform(a):
    try:
        return next(iter(a.devices())).platform
    except Exception:  # noqa: BLE001  (numpy input: the jax default device)
        import jax

        return jax.devices()[0].platform


def matvec(kernel, params, X, Z, v, n_features, memory_budget):
    """``K(X, Z) @ v``; ``Z=None`` means Z = X (then the diagonal is the kernel's exact one)."""
    _, jnp = _jax()
    sym = Z is None
    Z = X if sym else Z
    n, m = X.shape[0], Z.shape[0]
    t = v.shape[1]
    if n == 0 or m == 0:
        return jnp.zeros((n, t), dtype=X.dtype)
    fn = _matvec_fn(_Key(kernel, kernel._static_key(params)), n_features, sym)
    # Row blocks of a fixed size (planned as if n were unbounded, capped): every row of X is then
    # computed by the same compiled block, so a row's result does not depend on how many other
    # rows X has or where it sits (scikit-learn's subset / sample-order invariance, bit for bit).
    gpu = _platform(X) != "cpu"
    plan = plan_blocks(1 << 40, m, n_features=X.shape[1], n_targets=t, itemsize=X.dtype.itemsize,
                       memory_budget=memory_budget, entry_copies=kernel._workspace_copies(params))
    br, bc = min(plan.block_rows, ROW_BLOCK_GPU if gpu else ROW_BLOCK_CPU), min(plan.block_cols,
                                                                             COL_BLOCK_GPU if gpu else COL_BLOCK_CPU)
    if n <= SMALL_ROWS:  # few rows (single predictions): a small fixed block, not a full one
        br = min(br, SMALL_ROWS)
    nb = -(-m // bc)
    # Padded rows of Z meet zero rows of v, so they add nothing.
    Zb = _pad_rows(jnp, Z, nb * bc).reshape(nb, bc, Z.shape[1])
    vb = _pad_rows(jnp, v, nb * bc).reshape(nb, bc, t)
    parts = [fn(_pad_rows(jnp, X[i:i + br], br), Zb, vb, i)[: min(br, n - i)] for i in range(0, n, br)]
    return parts[0] if len(parts) == 1 else jnp.concatenate(parts, axis=0)


def batched_gram(A, B, reduce):
    _, jnp = _jax()
    Bs = A if B is None else B
    import jax

    eq = "bnp,bmp->nm" if reduce == "sum" else "bnp,bmp->bnm"
    return jnp.einsum(eq, A, Bs, precision=jax.lax.Precision.HIGHEST)
