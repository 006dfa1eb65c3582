"""Dask scale-out of ntkit computations (``pip install "dask[distributed]"``).

Functions here take a ``dask.distributed.Client``; the same code runs on a ``LocalCluster`` on
one machine or on a real cluster (``Client("tcp://scheduler:8786")``). Results equal the local
ones: work is split so that every random number is keyed by the item it belongs to.
"""

from ._eigenpro import eigenpro
from ._graphs import graph_random_features
from ._ops import gram, kernel_matvec

__all__ = ["gram", "kernel_matvec", "eigenpro", "graph_random_features"]
