"""Predictions of wide networks trained by gradient descent, and NNGP / NTK posteriors.

A drop-in for ``neural_tangents.predict`` (0.6.5): the same functions, arguments, defaults and
return conventions, on numpy or jax arrays (numpy in, numpy out; jax in, jax out).

- :func:`gradient_descent_mse`: outputs at any time(s) of gradient descent on the mean squared
  error, from kernel matrices (infinite-width or empirical NTKs, with or without output axes).
- :func:`gradient_descent_mse_ensemble`: mean and covariance over initialisations of infinitely
  wide networks so trained (NNGP and NTK-GP), from a ``kernel_fn``.
- :func:`gp_inference`: the infinite-time posteriors (NNGP, NTK, NTK-GP) from kernel matrices.
- :func:`max_learning_rate`: the largest stable learning rate.

Each train kernel is eigendecomposed once (for finite times) and Cholesky-factorised once (for
``t=None``, the exact limit), on first use; further times and test sets are cheap.
"""

from ._common import Gaussian
from ._ensemble import gradient_descent_mse_ensemble
from ._gp import gp_inference
from ._mse import gradient_descent_mse, max_learning_rate

__all__ = ["Gaussian", "gp_inference", "gradient_descent_mse", "gradient_descent_mse_ensemble", "max_learning_rate"]
