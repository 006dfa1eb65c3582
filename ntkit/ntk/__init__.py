"""Empirical neural tangent kernels of any JAX model.

``empirical_ntk`` / ``empirical_ntk_fn`` compute the full, trace, sum-of-logits
(pseudo-NTK), projected and diagonal kernels with three implementations (structured
per-layer factorisation read from the jaxpr, Jacobian contraction, NTK-vector products);
``NTKOperator`` is the matrix-free NTK as a scipy ``LinearOperator``; ``models`` holds
small reference networks. Infinite-width closed forms live in :mod:`ntkit.kernels`
(``ReluNTK``, ``ReluNNGP``).
"""

from ._empirical import empirical_ntk, empirical_ntk_fn
from ._engine import StructureReport, structure_report
from ._operator import NTKOperator
from ._nngp import empirical_kernel_fn, empirical_nngp, empirical_nngp_fn
from ._linearize import linearize, taylor_expand
from ._monte_carlo import monte_carlo_kernel_fn

__all__ = ["empirical_ntk", "empirical_ntk_fn", "structure_report", "StructureReport", "NTKOperator"]
__all__ += ["empirical_nngp", "empirical_nngp_fn", "empirical_kernel_fn", "linearize", "taylor_expand",
            "monte_carlo_kernel_fn"]
