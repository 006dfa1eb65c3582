"""scikit-learn estimators built on ntkit's solvers."""

from ._eigenpro import EigenProClassifier, EigenProRegressor

__all__ = ["EigenProRegressor", "EigenProClassifier"]
