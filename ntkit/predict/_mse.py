"""Gradient flow on the mean squared error in function space, in closed form at any time.

A network linearised around its initialisation (or at infinite width) trained by gradient
descent with learning rate η on ``L = ‖f(X) - y‖² / (2·y.size)`` follows, in continuous time,

    f_train(t) = y + e^{-η Θ t / N} (f_train(0) - y)
    f_test(t)  = f_test(0) - Θ_td Θ⁻¹ (I - e^{-η Θ t / N}) (f_train(0) - y)

with Θ the (regularised) train NTK, Θ_td the test-train NTK and N = ``y_train.size``
(Jacot et al. 2018; Lee et al. 2019, eq. 8-9). With ``Θ = V diag(λ) Vᵀ`` computed once, any
number of times cost two small matrix products each. ``t = None`` is the limit t → ∞, computed
by a Cholesky solve rather than by a large t.
"""

from __future__ import annotations

import numpy as np

from ._common import (
    Backend,
    Spectrum,
    any_jax,
    check_bool,
    check_kernel,
    check_output_like,
    check_pair_kernel,
    check_real,
    check_times,
    check_values,
    expm1_coef,
    float_kind,
    inv_expm1_coef,
    kernel_2d,
    make_layout,
)

__all__ = ["gradient_descent_mse", "max_learning_rate"]

_OWNER = "gradient_descent_mse"


def gradient_descent_mse(k_train_train, y_train, learning_rate=1.0, diag_reg=0.0, diag_reg_absolute_scale=False,
                         trace_axes=(-1,)):
    r"""Outputs of gradient descent on the mean squared error at any time, from kernel matrices.

    Drop-in for ``neural_tangents.predict.gradient_descent_mse``: same arguments, defaults and
    outputs. Solves the continuous-time (gradient flow) dynamics in function space,
    :math:`\dot f = -\eta\,\Theta\,(f - y) / N` on the train set (:math:`N` = ``y_train.size``)
    and the test outputs carried along by the test-train kernel. The kernel is any NTK: the
    infinite-width one, or an empirical NTK of a finite network (whose linearisation then evolves
    exactly as predicted), with or without output axes.

    The train kernel is eigendecomposed on the first finite-time call, and factorised by Cholesky
    on the first ``t=None`` call; both are cached, so each further time costs two small matrix
    products.

    Parameters
    ----------
    k_train_train : array
        Train-train kernel, shape ``(n, n)``, or with output axes interleaved
        (``(n, n, k, k)`` for ``y_train`` of shape ``(n, k)`` and ``trace_axes=()``): pairs of the
        axes of ``y_train`` that are not in ``trace_axes``.
    y_train : array of shape (n, ...)
        Train targets.
    learning_rate : float, default=1.0
        Step size η; times are in steps, ``absolute time = learning_rate · t``.
    diag_reg : float, default=0.0
        Diagonal regulariser added to ``k_train_train`` before it is decomposed.
    diag_reg_absolute_scale : bool, default=False
        ``True``: add ``diag_reg · I``; ``False``: add ``diag_reg · mean(diag(K)) · I``.
    trace_axes : int or tuple of int, default=(-1,)
        Axes of ``y_train`` along which the kernel is ``Θ ⊗ I`` and which it therefore lacks
        (the logits for an infinite-width kernel). ``()`` for a full empirical kernel.

    Returns
    -------
    predict_fn : callable
        ``predict_fn(t=None, fx_train_0=0., fx_test_0=None, k_test_train=None)``.
        ``t``: ``None`` (infinite time), a number, or an array of times of any shape, which
        becomes the leading axes of the outputs. ``fx_train_0``: train outputs at ``t = 0``, a
        number or an array of ``y_train``'s shape (``None``: no train predictions). ``fx_test_0``:
        test outputs at ``t = 0``, likewise (``None``: no test predictions), which needs
        ``k_test_train`` (shape: pairs of test and train axes).
        Returns ``fx_train_t``, ``fx_test_t``, or ``(fx_train_t, fx_test_t)`` when both are asked
        for. At ``t=None`` the train outputs are ``y_train`` (exact interpolation, whatever
        ``diag_reg``).

    See Also
    --------
    gradient_descent_mse_ensemble : the same dynamics averaged over initialisations, with covariances.
    max_learning_rate : the largest learning rate for which discrete gradient descent converges.

    References
    ----------
    Jacot, Gabriel, Hongler (2018), "Neural tangent kernel: convergence and generalization in
    neural networks", NeurIPS.
    Lee, Xiao, Schoenholz, Bahri, Novak, Sohl-Dickstein, Pennington (2019), "Wide neural networks
    of any depth evolve as linear models under gradient descent", NeurIPS.

    Examples
    --------
    >>> import numpy as np
    >>> from ntkit.kernels import ReluNTK
    >>> from ntkit.predict import gradient_descent_mse
    >>> rng = np.random.default_rng(0)
    >>> x_train, x_test, y_train = rng.normal(size=(6, 3)), rng.normal(size=(4, 3)), rng.normal(size=(6, 2))
    >>> ntk = ReluNTK(depth=1)
    >>> predict_fn = gradient_descent_mse(ntk(x_train), y_train)
    >>> fx_train, fx_test = predict_fn(t=[1.0, 10.0], fx_train_0=0.0, fx_test_0=0.0,
    ...                                k_test_train=ntk(x_test, x_train))
    >>> fx_train.shape, fx_test.shape
    ((2, 6, 2), (2, 4, 2))
    >>> bool(np.allclose(predict_fn(None), y_train))  # infinite time: the targets
    True
    """
    K = check_kernel(k_train_train, "k_train_train", _OWNER)
    y = check_values(y_train, "y_train", _OWNER)
    if y.ndim < 1 or y.size == 0:
        raise ValueError(f"y_train of {_OWNER} must be a non-empty array with a sample axis; got shape {y.shape}.")
    layout = make_layout(trace_axes, y.shape, _OWNER)
    check_pair_kernel(K, "k_train_train", _OWNER, layout, square=True)
    lr = check_real(learning_rate, "learning_rate", _OWNER, low=0.0, closed_low=False)
    reg = check_real(diag_reg, "diag_reg", _OWNER, low=0.0)
    absolute = check_bool(diag_reg_absolute_scale, "diag_reg_absolute_scale", _OWNER)
    be = Backend(any_jax(K, y))
    xp = be.xp
    N = y.size
    cache = {}

    def spectrum():
        if "s" not in cache:
            cache["s"] = Spectrum(be, K, float_kind(K, y), reg, absolute, "k_train_train")
        return cache["s"]

    def predict_fn(t=None, fx_train_0=0.0, fx_test_0=None, k_test_train=None):
        """Train [and test] outputs at time(s) ``t`` (``None``: infinite time); see :func:`gradient_descent_mse`."""
        if fx_train_0 is None and fx_test_0 is None:
            raise ValueError(f"predict_fn of {_OWNER}: fx_train_0 and fx_test_0 are both None, so there is nothing to "
                             "predict; pass fx_train_0 (train outputs at t = 0) and/or fx_test_0.")
        if fx_test_0 is not None and k_test_train is None:
            raise ValueError(f"predict_fn of {_OWNER}: test predictions (fx_test_0 given) need k_test_train, the "
                             "test-train kernel.")
        f0 = None
        if fx_train_0 is not None:
            f0 = check_values(fx_train_0, "fx_train_0", _OWNER, allow_scalar=True)
            check_output_like(f0, y.shape, "fx_train_0", _OWNER, "y_train's shape")
        ft0 = Kt = None
        if fx_test_0 is not None:
            Kt = check_kernel(k_test_train, "k_test_train", _OWNER)
            rows = check_pair_kernel(Kt, "k_test_train", _OWNER, layout, square=False)
            ft0 = check_values(fx_test_0, "fx_test_0", _OWNER, allow_scalar=True)
            check_output_like(ft0, layout.out_shape(rows), "fx_test_0", _OWNER, "the test outputs' shape")
        times = None if t is None else check_times(t, _OWNER)
        dtype = float_kind(K, y, f0, ft0, Kt)
        jax_out = be.jax or any_jax(f0, ft0, Kt, times)
        work = be.work
        Y = work(y, dtype)
        F0 = xp.zeros((), Y.dtype) if f0 is None else xp.broadcast_to(work(f0, dtype), y.shape)
        out = []

        if times is None:  # infinite time: interpolation on the train set, a solve for the test set
            if f0 is not None:
                out.append(be.out(Y, dtype, jax_out))
            if ft0 is not None:
                alpha = spectrum().solve(layout.targets_2d(xp, xp.broadcast_to(Y - F0, y.shape)))
                d = kernel_2d(xp, work(Kt, dtype)) @ alpha
                out.append(be.out(work(ft0, dtype) + layout.from_2d(xp, d, (), rows), dtype, jax_out))
        else:
            T = work(times, dtype) * lr
            lead = tuple(T.shape)
            s = T.reshape(-1, 1) / N
            w, V = spectrum().eig()
            C = V.T @ layout.targets_2d(xp, xp.broadcast_to(F0 - Y, y.shape))  # (P, R), residual in the eigenbasis
            if f0 is not None:
                d = V @ (expm1_coef(xp, w, s)[:, :, None] * C)  # (T, P, R)
                out.append(be.out(F0 + layout.from_2d(xp, d, lead, layout.kept_shape), dtype, jax_out))
            if ft0 is not None:
                KV = kernel_2d(xp, work(Kt, dtype)) @ V
                d = KV @ (inv_expm1_coef(xp, w, s)[:, :, None] * C)  # (T, Q, R)
                out.append(be.out(work(ft0, dtype) + layout.from_2d(xp, d, lead, rows), dtype, jax_out))
        return out[0] if len(out) == 1 else tuple(out)

    return predict_fn


def max_learning_rate(ntk_train_train, y_train_size=None, momentum=0.0, eps=1e-12):
    r"""The largest learning rate for which full-batch gradient descent on the MSE converges.

    Drop-in for ``neural_tangents.predict.max_learning_rate``. With the loss
    ``‖f - y‖² / (2 N)`` (N = ``y_train_size``), one step multiplies the train residual by
    ``I - η Θ / N``, a contraction while ``η < 2 N / λ_max(Θ)``; with heavy-ball momentum μ the
    bound is ``2 (1 + μ) N / λ_max(Θ)`` (Goh 2017).

    Parameters
    ----------
    ntk_train_train : array
        NTK on the training data, ``(n, n)`` or with output axes interleaved ``(n, n, k, k, ...)``.
    y_train_size : int, optional
        ``y_train.size``; by default the side of the flattened kernel (right for ``trace_axes=()``;
        multiply by the number of outputs otherwise).
    momentum : float, default=0.0
        Heavy-ball momentum, in ``[0, 1]``.
    eps : float, default=1e-12
        Added to ``λ_max`` against division by zero.

    Returns
    -------
    float
        ``2 (1 + momentum) · y_train_size / (λ_max + eps)``, a Python float for numpy and jax input
        alike (neural-tangents returns a 0-d array).

    References
    ----------
    Goh (2017), "Why momentum really works", Distill.
    Lee et al. (2019), "Wide neural networks of any depth evolve as linear models under gradient
    descent", NeurIPS.

    Examples
    --------
    >>> import numpy as np
    >>> from ntkit.predict import max_learning_rate
    >>> max_learning_rate(np.diag([1.0, 2.0, 4.0]), eps=0.0)
    1.5
    """
    owner = "max_learning_rate"
    K = check_kernel(ntk_train_train, "ntk_train_train", owner)
    h = K.ndim // 2
    if tuple(K.shape[0::2]) != tuple(K.shape[1::2]):
        raise ValueError(f"ntk_train_train of {owner} must be a square kernel (pairs of equal axes); got shape "
                         f"{tuple(K.shape)}.")
    n = int(np.prod(K.shape[:2 * h:2]))
    if n == 0:
        raise ValueError(f"ntk_train_train of {owner} is empty; got shape {tuple(K.shape)}.")
    if y_train_size is None:
        factor = n
    else:
        from .._validation import check_int

        factor = check_int(y_train_size, "y_train_size", owner, low=1)
    mom = check_real(momentum, "momentum", owner, low=0.0, high=1.0)
    eps = check_real(eps, "eps", owner, low=0.0)
    if any_jax(K):
        import jax.numpy as jnp

        A = kernel_2d(jnp, K)
        top = float(jnp.linalg.eigvalsh(0.5 * (A + A.T))[-1])
    else:
        from .._linalg import eigh

        A = kernel_2d(np, np.asarray(K, dtype=np.float64))
        top = float(eigh(0.5 * (A + A.T), subset_by_index=[n - 1, n - 1])[0][-1])
    return 2.0 * (1.0 + mom) * factor / (top + eps)
