"""Kernel solvers: EigenPro 2/3 (preconditioned SGD), Nyström PCG (Falkon-style) and spectrally
transformed kernel regression (STKR: labeled + unlabeled points).

All kernel work goes through :mod:`ntkit.ops` (fused, native when built); kernels may be
ntkit kernels, callables ``k(A, B)`` (e.g. an empirical NTK) or precomputed Gram matrices.
"""

from ._eigen import EigenSystem, top_eigensystem
from ._eigenpro import EigenProResult, eigenpro
from ._eigenpro_precond import eigenpro_parameters
from ._nystrom import NystromResult, nystrom_pcg
from ._stkr import STKRResult, stkr

__all__ = ["eigenpro", "EigenProResult", "eigenpro_parameters", "top_eigensystem", "EigenSystem", "nystrom_pcg",
           "NystromResult", "stkr", "STKRResult"]
