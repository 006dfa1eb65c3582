"""Kernels in closed form: stationary, dot-product and infinite-width network kernels.

Every kernel is callable, ``k(X, Z=None) -> (n, m)``, has ``k.diag(X) -> (n,)``
and scikit-learn style ``get_params`` / ``set_params``.
"""

from ._base import DotProductKernel, Kernel, StationaryKernel
from ._dot import ArcCosine, Linear, Polynomial
from ._relu import ReluNNGP, ReluNTK
from ._stationary import RBF, Laplace, Matern

__all__ = [
    "Kernel",
    "StationaryKernel",
    "DotProductKernel",
    "RBF",
    "Laplace",
    "Matern",
    "Linear",
    "Polynomial",
    "ArcCosine",
    "ReluNNGP",
    "ReluNTK",
]
