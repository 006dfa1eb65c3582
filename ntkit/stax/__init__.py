"""Infinite-width networks: a drop-in for ``neural_tangents.stax``.

Replace ``from neural_tangents import stax`` by ``from ntkit import stax``: the same layer
names, signatures, defaults and conventions (NHWC images, ``parameterization="ntk"|"standard"``,
``W_std``, ``b_std``, ``"VALID"``/``"SAME"``/``"CIRCULAR"`` padding). Every layer and
combinator returns ``(init_fn, apply_fn, kernel_fn)``: ``init_fn(key, input_shape) ->
(output_shape, params)`` and ``apply_fn(params, x)`` are the finite network (jax), and
``kernel_fn(x1, x2=None, get=None)`` its infinite-width NNGP and NTK (a :class:`KernelState`
for ``get=None``, a namedtuple for a tuple ``get``, an array for a single string).

:func:`as_kernel` turns a ``kernel_fn`` into an ntkit :class:`~ntkit.kernels.Kernel`, usable by
:func:`ntkit.ops.gram`, :func:`ntkit.ops.kernel_matvec`, the solvers and the estimators;
:func:`batch` evaluates a ``kernel_fn`` block by block under a memory budget.

Importing this package does not import jax; the first layer call does.
"""

from ._aggregate import Aggregate
from ._arccos import ABRelu, Abs, LeakyRelu, RectifiedMonomial, Relu, Sign
from ._attention import GlobalSelfAttention
from ._combinators import (
    FanInConcat,
    FanInProd,
    FanInSum,
    FanOut,
    Identity,
    parallel,
    repeat,
    serial,
)
from ._conv import Conv, ConvLocal, ConvTranspose
from ._elementwise import Elementwise, ElementwiseNumerical
from ._kernel import StaxKernel, as_kernel, batch
from ._linear import Dense, Dropout, Flatten, LayerNorm
from ._polynomial import Hermite, Monomial, Polynomial
from ._pooling import AvgPool, GlobalAvgPool, GlobalSumPool, SumPool
from ._smooth import (
    Cos,
    Erf,
    Exp,
    ExpNormalized,
    Gaussian,
    Gelu,
    Rbf,
    Sigmoid_like,
    Sin,
)
from ._state import KernelState

__all__ = [
    # combinators
    "serial", "parallel", "repeat", "FanOut", "FanInSum", "FanInProd", "FanInConcat", "Identity",
    # linear
    "Dense", "Conv", "ConvLocal", "ConvTranspose", "AvgPool", "SumPool", "GlobalAvgPool", "GlobalSumPool", "Flatten", "LayerNorm",
    "Dropout", "GlobalSelfAttention", "Aggregate",
    # nonlinearities
    "Relu", "ABRelu", "LeakyRelu", "Abs", "Erf", "Sigmoid_like", "Gelu", "Sin", "Cos", "Rbf", "Sign", "Exp",
    "ExpNormalized", "Gaussian", "Hermite", "Monomial", "RectifiedMonomial", "Polynomial", "Elementwise",
    "ElementwiseNumerical",
    # kernels
    "KernelState", "as_kernel", "StaxKernel", "batch",
]
