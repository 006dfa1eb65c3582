"""scikit-learn estimators built on ntkit's kernels, solvers, online learners and feature maps.

Regressors and classifiers: :class:`NTKRegressor` / :class:`NTKClassifier` (exact kernel
regression with the infinite-width NTK or any kernel, solver chosen by size),
:class:`EigenProRegressor` / :class:`EigenProClassifier` (large n), :class:`OnlineKernelRegressor`
(streams), :class:`STKRRegressor` / :class:`STKRClassifier` (semi-supervised: unlabeled rows
marked NaN / -1). Transformers (re-exported from :mod:`ntkit.features`): random Fourier, positive,
arc-cosine, NTK and universal random features, and Nyström.
"""

from ..features import (ArcCosineFeatures, NTKRandomFeatures, Nystroem, PositiveRandomFeatures,
                        RandomFourierFeatures, UniversalRandomFeatures)
from ._common import data_lengthscale
from ._eigenpro import EigenProClassifier, EigenProRegressor
from ._ntk import EmpiricalNTKKernel, NTKClassifier, NTKRegressor
from ._online import OnlineKernelRegressor
from ._stkr import STKRClassifier, STKRRegressor

__all__ = ["NTKRegressor", "NTKClassifier", "EmpiricalNTKKernel", "EigenProRegressor", "EigenProClassifier",
           "OnlineKernelRegressor", "STKRRegressor", "STKRClassifier", "RandomFourierFeatures",
           "PositiveRandomFeatures", "ArcCosineFeatures", "NTKRandomFeatures", "UniversalRandomFeatures", "Nystroem", "data_lengthscale"]
