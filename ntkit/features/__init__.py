"""Random-feature and Nyström approximations of kernels, as scikit-learn transformers.

Every transformer maps X to Φ(X) of shape (n, n_components) with ``Φ(X)Φ(Z)ᵀ ≈ K(X, Z)``
(unbiased where the notes of each class say so), keeps float32 inputs float32, and takes
``random_state``. :func:`approximation_error` measures how good a map is on given points.
"""

from ._error import ApproximationError, approximation_error
from ._fourier import RandomFourierFeatures
from ._neural import ArcCosineFeatures, NTKRandomFeatures
from ._nystroem import Nystroem
from ._positive import PositiveRandomFeatures
from ._universal import LayerKernelForm, UniversalRandomFeatures

__all__ = ["RandomFourierFeatures", "PositiveRandomFeatures", "ArcCosineFeatures", "NTKRandomFeatures", "Nystroem",
           "UniversalRandomFeatures", "LayerKernelForm", "approximation_error", "ApproximationError"]
