"""Graph random features: unbiased, sparse estimators of node kernels on large graphs.

:class:`GraphRandomFeatures` samples random walks from every node (C++ in ``ntkit_native``)
into a sparse feature matrix Φ with ``E[ΦΦᵀ] = K`` off the diagonal (two walk sets make the
diagonal unbiased too); :func:`exact_graph_kernel` is the dense reference for small graphs;
:class:`GraphKernelRidge` does node regression/classification from labelled nodes with CG on
the sparse features.
"""

from ._grf import GraphRandomFeatures
from ._kernels import exact_graph_kernel
from ._ridge import GraphKernelRidge

__all__ = ["GraphRandomFeatures", "GraphKernelRidge", "exact_graph_kernel"]
