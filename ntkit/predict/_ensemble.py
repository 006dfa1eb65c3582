"""Mean and covariance of an infinite ensemble of infinitely wide networks trained by gradient descent.

Over random initialisations the outputs at ``t = 0`` are a centred Gaussian process with the NNGP
kernel ``K``; gradient flow on the MSE is linear in them, so at any time the outputs stay
Gaussian. With ``N = y_train.size``, ``s = η t / N`` and the regularised train kernel
``Θ = V diag(λ) Vᵀ`` (the NTK for ``get="ntk"``; ``K`` itself for ``get="nngp"``, i.e. training
only the last layer), Lee et al. (2019, eq. 15-16) give on the test set

    μ(t) = Θ_td Θ⁻¹ (I - e^{-Θ s}) y
    Σ(t) = K_tt + Θ_td Θ⁻¹ (I - e^{-Θ s}) K (I - e^{-Θ s}) Θ⁻¹ Θ_dt
                - [Θ_td Θ⁻¹ (I - e^{-Θ s}) K_dt + transpose]

which for ``Θ = K`` collapses to ``K_tt - K_td K⁻¹ (I - e^{-2 K s}) K_dt``; on the train set
``μ(t) = (I - e^{-Θ s}) y`` and ``Σ(t) = e^{-Θ s} K e^{-Θ s}``. Every matrix function is taken in
the cached eigenbasis of Θ; ``t = None`` is the exact GP posterior of :func:`gp_inference`.
"""

from __future__ import annotations

import collections

from ._common import (
    Backend,
    Gaussian,
    Spectrum,
    any_jax,
    canonical_get,
    check_bool,
    check_kernel,
    check_pair_kernel,
    check_real,
    check_times,
    check_values,
    cov_from_2d,
    decay,
    expm1_coef,
    float_kind,
    inv_expm1_coef,
    kernel_2d,
    make_layout,
    pack,
)
from ._gp import Posterior, is_array

__all__ = ["gradient_descent_mse_ensemble"]

_OWNER = "gradient_descent_mse_ensemble"
_Pair = collections.namedtuple("Kernel", "nngp ntk", defaults=(None, None))
_MISSING = object()


def call_kernel_fn(kernel_fn, x1, x2, gets, kwargs) -> dict:
    """``{get: kernel}`` from ``kernel_fn(x1, x2, get, **kwargs)`` in neural-tangents' convention."""
    arg = gets[0] if len(gets) == 1 else tuple(gets)
    res = kernel_fn(x1, x2, arg, **kwargs)
    out = {}
    for g in gets:
        if len(gets) == 1 and is_array(res):
            out[g] = res
        elif getattr(res, g, None) is not None:
            out[g] = getattr(res, g)
        else:
            raise TypeError(f"kernel_fn(x1, x2, get={arg!r}) of {_OWNER} must return an array for a single get, or an "
                            f"object with {g!r} as an attribute; got {type(res).__name__}.")
    return out


def _all_arrays(v) -> bool:
    if isinstance(v, (tuple, list)):
        return all(_all_arrays(u) for u in v)
    if isinstance(v, dict):
        return all(_all_arrays(u) for u in v.values())
    return v is None or is_array(v)


def merge_kwargs(train_kw: dict, test_kw: dict):
    """Keyword arguments of the test-train and test-test ``kernel_fn`` calls (neural-tangents' rules).

    Each test-test value overrides the train-train one. Array values given as pairs ``(a1, a2)``
    (one per input, e.g. graph patterns) are combined as ``(test[0], train[0])`` for the test-train
    call; other values must agree between the train-train and the test-test calls.
    """
    kw_td, kw_tt = dict(train_kw), dict(train_kw)
    for k, v_tt in test_kw.items():
        v_dd = train_kw.get(k, _MISSING)
        v_td = v_tt
        if v_dd is not _MISSING:
            if _all_arrays(v_dd) and _all_arrays(v_tt):
                if (isinstance(v_dd, tuple) and len(v_dd) == 2 and isinstance(v_tt, tuple) and len(v_tt) == 2):
                    v_td = (v_tt[0], v_dd[0])
            else:
                try:
                    same = bool(v_dd == v_tt)
                except (TypeError, ValueError):  # e.g. arrays of other shapes: not comparable, so not the same
                    same = False
                if not same:
                    raise ValueError(f"The keyword argument {k!r} of kernel_fn is {v_dd!r} for the train-train kernel "
                                     f"but {v_tt!r} for the test kernels; they must agree.")
        kw_td[k], kw_tt[k] = v_td, v_tt
    return kw_td, kw_tt


def gradient_descent_mse_ensemble(kernel_fn, x_train, y_train, learning_rate=1.0, diag_reg=0.0,
                                  diag_reg_absolute_scale=False, trace_axes=(-1,), **kernel_fn_train_train_kwargs):
    r"""Outputs of an infinite ensemble of infinitely wide networks trained by gradient descent on MSE.

    Drop-in for ``neural_tangents.predict.gradient_descent_mse_ensemble``: same arguments,
    defaults and outputs. Over random initialisations, the outputs of infinitely wide networks
    trained by gradient flow are a Gaussian process at every time; this returns its mean and
    (with ``compute_cov=True``) covariance on the train set or a test set, at any time(s), for
    training all layers (``"ntk"``, the NTK-GP) or only the readout (``"nngp"``). The train
    kernels are computed once, and eigendecomposed (finite times) or Cholesky-factorised
    (``t=None``) once each, on first use.

    Parameters
    ----------
    kernel_fn : callable
        ``kernel_fn(x1, x2, get, **kwargs)`` in neural-tangents' convention (``x2=None`` for
        ``x1`` against itself): a string ``get`` returns that kernel as an array, a tuple an
        object with ``nngp`` / ``ntk`` attributes. ``ntkit.stax`` and ``neural_tangents.stax``
        kernel functions qualify.
    x_train : array
        Training inputs, passed to ``kernel_fn`` as they are.
    y_train : array of shape (n, ...)
        Training targets.
    learning_rate : float, default=1.0
        Step size η; times are in steps, ``absolute time = learning_rate · t``.
    diag_reg : float, default=0.0
        Diagonal regulariser added to the train kernels before they are decomposed.
    diag_reg_absolute_scale : bool, default=False
        ``True``: add ``diag_reg · I``; ``False``: add ``diag_reg · mean(diag(K)) · I``.
    trace_axes : int or tuple of int, default=(-1,)
        Axes of ``y_train`` along which the kernels are ``Θ ⊗ I`` (absent from them).
    **kernel_fn_train_train_kwargs
        Passed to ``kernel_fn`` for the train-train kernels, and to the test kernels unless
        overridden in ``predict_fn`` (pairs of arrays such as graph patterns are combined
        per input).

    Returns
    -------
    predict_fn : callable
        ``predict_fn(t=None, x_test=None, get=None, compute_cov=False, **kernel_fn_test_test_kwargs)``.
        ``t``: ``None`` (infinite time), a number or an array of times (leading axes of the
        outputs). ``x_test=None`` predicts on the train inputs (without ``diag_reg``: pass
        ``x_test=x_train`` for regularised ones). ``get``: ``"nngp"``, ``"ntk"``, a tuple of them,
        or ``None`` for both; a string gives one result, a tuple a namedtuple ``Gaussians``.
        Each result is the mean, or a :class:`Gaussian` ``(mean, covariance)`` when
        ``compute_cov``; the covariance has the shape of the test-test kernel.

    See Also
    --------
    gradient_descent_mse : the same dynamics from given kernel matrices and initial outputs.
    gp_inference : the infinite-time posteriors from kernel matrices.

    References
    ----------
    Lee, Xiao, Schoenholz, Bahri, Novak, Sohl-Dickstein, Pennington (2019), "Wide neural networks
    of any depth evolve as linear models under gradient descent", NeurIPS, eq. 15-16.

    Examples
    --------
    >>> import numpy as np
    >>> from collections import namedtuple
    >>> from ntkit.kernels import ReluNNGP, ReluNTK
    >>> from ntkit.predict import gradient_descent_mse_ensemble
    >>> Kernel = namedtuple("Kernel", "nngp ntk")
    >>> def kernel_fn(x1, x2=None, get=("nngp", "ntk")):
    ...     k = Kernel(ReluNNGP(depth=1)(x1, x2), ReluNTK(depth=1)(x1, x2))
    ...     return getattr(k, get) if isinstance(get, str) else k
    >>> rng = np.random.default_rng(0)
    >>> x_train, x_test, y_train = rng.normal(size=(6, 3)), rng.normal(size=(4, 3)), rng.normal(size=(6, 1))
    >>> predict_fn = gradient_descent_mse_ensemble(kernel_fn, x_train, y_train, diag_reg=1e-4)
    >>> out = predict_fn(t=[1.0, 100.0], x_test=x_test, get="ntk", compute_cov=True)
    >>> out.mean.shape, out.covariance.shape
    ((2, 4, 1), (2, 4, 4))
    >>> predict_fn(x_test=x_test)._fields  # t=None: the converged GP posterior means
    ('nngp', 'ntk')
    """
    if not callable(kernel_fn):
        raise TypeError(f"kernel_fn of {_OWNER} must be callable as kernel_fn(x1, x2, get); got "
                        f"{type(kernel_fn).__name__}.")
    if x_train is None:
        raise ValueError(f"x_train of {_OWNER} is required; got None.")
    y = check_values(y_train, "y_train", _OWNER)
    if y.ndim < 1 or y.size == 0:
        raise ValueError(f"y_train of {_OWNER} must be a non-empty array with a sample axis; got shape {y.shape}.")
    layout = make_layout(trace_axes, y.shape, _OWNER)
    lr = check_real(learning_rate, "learning_rate", _OWNER, low=0.0, closed_low=False)
    reg = check_real(diag_reg, "diag_reg", _OWNER, low=0.0)
    absolute = check_bool(diag_reg_absolute_scale, "diag_reg_absolute_scale", _OWNER)
    train_kw = dict(kernel_fn_train_train_kwargs)
    N = y.size
    train, spectra, state = {}, {}, {}

    def train_kernels(deps):
        missing = tuple(g for g in deps if g not in train)
        found = {}
        if len(missing) == 2:
            found = call_kernel_fn(kernel_fn, x_train, None, missing, train_kw)
        else:
            for g in missing:
                found.update(call_kernel_fn(kernel_fn, x_train, None, (g,), train_kw))
        for g, K in found.items():
            name = f"kernel_fn(x_train, None, {g!r})"
            K = check_kernel(K, name, _OWNER)
            check_pair_kernel(K, name, _OWNER, layout, square=True)
            train[g] = K
        if "be" not in state:
            state["be"] = Backend(any_jax(x_train, y, *train.values()))
            state["post"] = Posterior(None, y, layout, spectrum, _OWNER, state["be"])
        state["post"].train = _Pair(**train)
        return {g: train[g] for g in deps}

    def spectrum(g):
        if g not in spectra:
            spectra[g] = Spectrum(state["be"], train[g], float_kind(train[g], y), reg, absolute,
                                  f"kernel_fn(x_train, None, {g!r})")
        return spectra[g]

    def predict_fn(t=None, x_test=None, get=None, compute_cov=False, **kernel_fn_test_test_kwargs):
        """Mean (and covariance) at time(s) ``t`` on ``x_test``; see :func:`gradient_descent_mse_ensemble`."""
        single, gets = canonical_get(get, _OWNER)
        cov = check_bool(compute_cov, "compute_cov", _OWNER)
        deps = (("nngp",) if "nngp" in gets or ("ntk" in gets and cov) else ()) + (("ntk",) if "ntk" in gets else ())
        kdd = train_kernels(deps)
        be, xp = state["be"], state["be"].xp
        k_td, nngp_tt, rows = None, (True if cov else None), layout.kept_shape
        if x_test is not None:
            kw_td, kw_tt = merge_kwargs(train_kw, kernel_fn_test_test_kwargs)
            k_td = call_kernel_fn(kernel_fn, x_test, x_train, deps, kw_td)
            for g, K in k_td.items():
                name = f"kernel_fn(x_test, x_train, {g!r})"
                k_td[g] = check_kernel(K, name, _OWNER)
                rows = check_pair_kernel(k_td[g], name, _OWNER, layout, square=False)
            if cov:
                nngp_tt = check_kernel(call_kernel_fn(kernel_fn, x_test, None, ("nngp",), kw_tt)["nngp"],
                                       "kernel_fn(x_test, None, 'nngp')", _OWNER)
                want = tuple(d for r in rows for d in (r, r))
                if tuple(nngp_tt.shape) != want:
                    raise ValueError(f"kernel_fn(x_test, None, 'nngp') of {_OWNER} must have shape {want}; got "
                                     f"{tuple(nngp_tt.shape)}.")
        extra = [] if k_td is None else list(k_td.values())
        if is_array(nngp_tt):
            extra.append(nngp_tt)
        jax_out = be.jax or any_jax(x_test, *extra)

        if t is None:  # the converged GP posterior
            out = state["post"](gets, None if k_td is None else _Pair(**k_td), nngp_tt, extra_jax=jax_out)
            return pack(single, out)

        times = check_times(t, _OWNER)
        jax_out = jax_out or any_jax(times)
        dtype = float_kind(y, *kdd.values(), *extra)
        work = be.work
        T = work(times, dtype) * lr
        lead = tuple(T.shape)
        s = T.reshape(-1, 1) / N
        Y2 = layout.targets_2d(xp, work(y, dtype))
        out = {}
        for g in gets:
            w, V = spectrum(g).eig()
            C = V.T @ Y2
            if k_td is None:
                mean = V @ (-expm1_coef(xp, w, s)[:, :, None] * C)
            else:
                KV = kernel_2d(xp, work(k_td[g], dtype)) @ V  # Θ_td V
                G = -inv_expm1_coef(xp, w, s)  # (1 - e^{-λ s}) / λ
                mean = KV @ (G[:, :, None] * C)
            mean = be.out(layout.from_2d(xp, mean, lead, rows), dtype, jax_out)
            if not cov:
                out[g] = mean
                continue
            K = kernel_2d(xp, work(kdd["nngp"], dtype))  # covariance at initialisation, never regularised
            VT = V.T
            if k_td is None:
                if g == "nngp":
                    wp = xp.maximum(w, 0.0)
                    S = V @ ((wp * xp.exp(-2.0 * wp * s))[:, :, None] * VT)
                else:
                    E = V @ (decay(xp, w, s)[:, :, None] * VT)  # e^{-Θ s}
                    S = E @ K @ xp.swapaxes(E, -1, -2)
            else:
                Ktt = kernel_2d(xp, work(nngp_tt, dtype))
                if g == "nngp":
                    H = -inv_expm1_coef(xp, w, 2.0 * s)  # (1 - e^{-2 λ s}) / λ
                    S = Ktt - KV @ (H[:, :, None] * KV.T)
                else:
                    term1 = V @ (G[:, :, None] * KV.T)  # Θ⁻¹ (I - e^{-Θ s}) Θ_dt, (T, P, Q)
                    Kdt = kernel_2d(xp, work(k_td["nngp"], dtype)).T
                    term2 = KV @ (G[:, :, None] * (VT @ Kdt))  # Θ_td Θ⁻¹ (I - e^{-Θ s}) K_dt
                    S = xp.swapaxes(term1, -1, -2) @ K @ term1 - term2 - xp.swapaxes(term2, -1, -2) + Ktt
            out[g] = Gaussian(mean, be.out(cov_from_2d(xp, S.reshape(lead + S.shape[1:]), lead, rows), dtype, jax_out))
        return pack(single, out)

    return predict_fn
