"""The kernel primitive: ``gram``, ``kernel_matvec``, ``KernelOperator``, ``batched_gram``."""

from ._batched import batched_gram
from ._blocks import BlockPlan, plan_blocks
from ._gram import gram, iter_gram_blocks, kernel_matvec, resolve_backend
from ._operator import KernelOperator

__all__ = [
    "gram",
    "kernel_matvec",
    "iter_gram_blocks",
    "KernelOperator",
    "batched_gram",
    "plan_blocks",
    "BlockPlan",
    "resolve_backend",
]
