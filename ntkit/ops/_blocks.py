"""Block planning: how many rows and columns of a Gram matrix fit a memory budget."""

from __future__ import annotations

from typing import NamedTuple

from .._config import resolve_budget

__all__ = ["BlockPlan", "plan_blocks"]

#: Number of (block_rows x block_cols) temporaries the numpy/jax paths keep alive
#: at once while forming a block (inner products, squared distances, kernel values).
WORKSPACE_COPIES = 3


class BlockPlan(NamedTuple):
    """Result of :func:`plan_blocks`."""

    block_rows: int
    block_cols: int
    n_blocks: int
    workspace_bytes: int


def plan_blocks(n, m, *, n_features=0, n_targets=0, itemsize=8, memory_budget=None, square=False,
                entry_copies=None) -> BlockPlan:
    """Choose block sizes so the workspace of one Gram block stays within ``memory_budget``.

    The workspace of a (b_r x b_c) block is ``WORKSPACE_COPIES * b_r * b_c``
    entries plus the block's rows of the data and right-hand side. Columns are
    taken whole when possible (fewer, larger matrix products), then rows are
    filled up to the budget. The rule is deterministic: the same sizes and
    budget always give the same plan.

    Parameters
    ----------
    n, m : int
        Rows and columns of the Gram matrix.
    n_features, n_targets : int
        Feature dimension of the data and number of right-hand sides (for the
        per-block copies of data and output).
    itemsize : int
        Bytes per entry (4 for float32, 8 for float64).
    memory_budget : int or str, optional
        Bytes (or ``"512MiB"``); default: :func:`ntkit.get_config` / a quarter of
        available memory.
    square : bool
        Force ``block_rows == block_cols`` (symmetric Gram matrices are filled by
        mirroring whole blocks).
    entry_copies : int, optional
        Workspace entries per Gram entry (default ``WORKSPACE_COPIES``); a kernel whose
        evaluation needs more per pair says so (``Kernel._workspace_copies``: an image
        network's kernel keeps covariances of every pair of pixels).

    Returns
    -------
    BlockPlan

    Examples
    --------
    >>> from ntkit.ops import plan_blocks
    >>> plan_blocks(10_000, 10_000, n_features=10, itemsize=8, memory_budget="64MiB").block_rows
    275
    """
    budget = resolve_budget(memory_budget)
    n = max(int(n), 1)
    m = max(int(m), 1)
    per_entry = (WORKSPACE_COPIES if entry_copies is None else max(int(entry_copies), 1)) * itemsize

    def cost(br, bc):
        return per_entry * br * bc + itemsize * (br + bc) * (n_features + n_targets + 1)

    if cost(1, 1) > budget:
        raise ValueError(
            f"memory_budget of {budget} bytes cannot hold even one row of work "
            f"({cost(1, 1)} bytes needed); raise memory_budget."
        )
    if square:
        side = min(n, m)
        lo, hi = 1, side
        while lo < hi:  # largest side with cost(side, side) <= budget
            mid = (lo + hi + 1) // 2
            if cost(mid, mid) <= budget:
                lo = mid
            else:
                hi = mid - 1
        br = bc = lo
    else:
        bc = m
        while bc > 1 and cost(1, bc) > budget:
            bc = (bc + 1) // 2
        rem = budget - itemsize * bc * (n_features + n_targets + 1)
        br = max(1, min(n, rem // (per_entry * bc + itemsize * (n_features + n_targets + 1))))
    n_blocks = -(-n // br) * -(-m // bc)
    return BlockPlan(int(br), int(bc), int(n_blocks), int(cost(br, bc)))
