"""Exact GP posteriors with the NNGP or the NTK: the infinite-time limit of gradient descent.

Three regimes share one train-kernel solve each (Cholesky, cached):

* ``"nngp"``: the Bayesian posterior of an infinitely wide network,
  ``μ = K_td K⁻¹ y``, ``Σ = K_tt - K_td K⁻¹ K_dt``;
* ``"ntk"``: the distribution of an infinite ensemble of infinitely wide networks trained to
  convergence by gradient flow on MSE (Lee et al. 2019, eq. 16 at t = ∞), mean
  ``Θ_td Θ⁻¹ y`` and covariance
  ``K_tt + Θ_td Θ⁻¹ K Θ⁻¹ Θ_dt - (Θ_td Θ⁻¹ K_dt + K_td Θ⁻¹ Θ_dt)``, which needs the NNGP ``K``
  beside the NTK ``Θ``;
* ``"ntkgp"``: a GP posterior with the NTK as covariance (He et al. 2020).
"""

from __future__ import annotations

import collections

import numpy as np

from ._common import (
    Backend,
    Gaussian,
    Layout,
    Spectrum,
    any_jax,
    canonical_get,
    check_bool,
    check_kernel,
    check_pair_kernel,
    check_real,
    check_values,
    cov_from_2d,
    float_kind,
    kernel_2d,
    make_layout,
    pack,
)

__all__ = ["gp_inference"]

_OWNER = "gp_inference"


def is_array(k) -> bool:
    return (hasattr(k, "shape") and hasattr(k, "dtype")) or isinstance(k, (list, np.ndarray))


def kernel_of(k, name: str, which: str, owner: str):
    """The ``which`` kernel of ``k``: ``k`` itself for an array, else its attribute (``None`` if absent)."""
    if k is None:
        return None
    if is_array(k):
        return k
    if not hasattr(k, "nngp") and not hasattr(k, "ntk"):
        raise TypeError(f"{name} of {owner} must be an array or hold kernels as attributes 'nngp' / 'ntk' (a "
                        f"namedtuple, neural-tangents' Kernel, an ntkit.stax result); got {type(k).__name__}.")
    return getattr(k, which, None)


class Posterior:
    """Test-set posteriors given the train kernels, with one cached :class:`Spectrum` per kernel."""

    def __init__(self, train, y, layout: Layout, spectrum, owner: str, backend: Backend):
        self.train, self.y, self.layout, self.spectrum, self.owner, self.be = train, y, layout, spectrum, owner, backend
        self._alpha = {}

    def train_kernel(self, which: str):
        K = kernel_of(self.train, "k_train_train", which, self.owner)
        if K is None:
            raise ValueError(f"k_train_train of {self.owner} has no {which!r} kernel, which get needs; pass a "
                             f"namedtuple with an {which!r} field.")
        return K

    def alpha(self, which: str, dtype):
        """``K⁻¹ y`` (flat ``(P, R)``), cached per kernel."""
        spec = self.spectrum(which)
        key = (id(spec), np.dtype(dtype))
        if key not in self._alpha:
            Y2 = self.layout.targets_2d(self.be.xp, self.be.work(self.y, dtype))
            self._alpha[key] = spec.solve(Y2)
        return self._alpha[key]

    def __call__(self, gets, k_test_train, k_test_test, extra_jax=False):
        be, xp, lay, owner = self.be, self.be.xp, self.layout, self.owner
        out = {}
        for g in gets:
            which = "ntk" if g == "ntkgp" else g
            K_dd = self.train_kernel(which)
            K_td = None if k_test_train is None else kernel_of(k_test_train, "k_test_train", which, owner)
            if k_test_train is not None and K_td is None:
                raise ValueError(f"k_test_train of {owner} has no {which!r} kernel, which get={g!r} needs.")
            arrays = [self.y, K_dd]
            if K_td is not None:
                K_td = check_kernel(K_td, "k_test_train", owner)
                rows = check_pair_kernel(K_td, "k_test_train", owner, lay, square=False)
                arrays.append(K_td)
            cov_needed = k_test_test is not None
            K_tt = None
            if cov_needed and K_td is not None:
                if k_test_test is True or not (is_array(k_test_test) or hasattr(k_test_test, "nngp")
                                               or hasattr(k_test_test, "ntk")):
                    raise TypeError(f"k_test_test of {owner} must be a kernel (array or namedtuple) when k_test_train "
                                    f"is given; got {k_test_test!r}.")
                init = "ntk" if g == "ntkgp" else "nngp"  # the kernel of the outputs at initialisation
                K_tt = kernel_of(k_test_test, "k_test_test", init, owner)
                if K_tt is None:
                    raise ValueError(f"k_test_test of {owner} has no {init!r} kernel, which the {g!r} covariance "
                                     "needs.")
                K_tt = check_kernel(K_tt, "k_test_test", owner)
                want = tuple(d for r in rows for d in (r, r))
                if tuple(K_tt.shape) != want:
                    raise ValueError(f"k_test_test of {owner} must have shape {want} to match k_test_train of shape "
                                     f"{tuple(K_td.shape)}; got shape {tuple(K_tt.shape)}.")
                arrays.append(K_tt)
            dtype = float_kind(*arrays)
            jax_out = be.jax or extra_jax or any_jax(*arrays)
            if K_td is None:
                mean = be.out(be.work(self.y, dtype), dtype, jax_out)
            else:
                Ktd2 = kernel_2d(xp, be.work(K_td, dtype))
                mean = be.out(lay.from_2d(xp, Ktd2 @ self.alpha(which, dtype), (), rows), dtype, jax_out)
            if not cov_needed:
                out[g] = mean
                continue
            if K_td is None:  # train set, no regulariser: N(y, 0)
                out[g] = Gaussian(mean, be.out(xp.zeros(tuple(K_dd.shape)), dtype, jax_out))
                continue
            Ktt2 = kernel_2d(xp, be.work(K_tt, dtype))
            solve = self.spectrum(which).solve
            if g in ("nngp", "ntkgp"):
                cov = Ktt2 - Ktd2 @ solve(Ktd2.T)
            else:
                K_nngp = kernel_of(self.train, "k_train_train", "nngp", owner)
                Ktd_nngp = kernel_of(k_test_train, "k_test_train", "nngp", owner)
                if is_array(self.train) or is_array(k_test_train) or K_nngp is None or Ktd_nngp is None:
                    raise ValueError(f"The 'ntk' posterior covariance of {owner} needs both the NTK and the NNGP in "
                                     "k_train_train and k_test_train (the NNGP is the covariance of the outputs at "
                                     "initialisation): pass namedtuples with 'nngp' and 'ntk' fields.")
                Kdd2 = kernel_2d(xp, be.work(check_kernel(K_nngp, "k_train_train.nngp", owner), dtype))
                Ktdn2 = kernel_2d(xp, be.work(check_kernel(Ktd_nngp, "k_test_train.nngp", owner), dtype))
                if Kdd2.shape != (lay.P, lay.P) or Ktdn2.shape != Ktd2.shape:
                    raise ValueError(f"The NNGP kernels of {owner} must have the shapes of the NTK ones; got "
                                     f"{tuple(K_nngp.shape)} and {tuple(Ktd_nngp.shape)}.")
                term1 = solve(Ktd2.T)  # Θ⁻¹ Θ_dt, (P, Q)
                cross = Ktd2 @ solve(Ktdn2.T)  # Θ_td Θ⁻¹ K_dt
                cov = term1.T @ Kdd2 @ term1 - cross - cross.T + Ktt2
            out[g] = Gaussian(mean, be.out(cov_from_2d(xp, cov, (), rows), dtype, jax_out))
        return out


def train_kernels(k_train_train, owner: str):
    """Validated train kernel(s): an array, or a namedtuple-like with 'nngp' / 'ntk'. Returns (obj, arrays)."""
    if is_array(k_train_train):
        K = check_kernel(k_train_train, "k_train_train", owner)
        return K, {"array": K}
    found = {}
    for which in ("nngp", "ntk"):
        K = kernel_of(k_train_train, "k_train_train", which, owner)
        if K is not None:
            found[which] = check_kernel(K, f"k_train_train.{which}", owner)
    if not found:
        raise ValueError(f"k_train_train of {owner} has neither an 'nngp' nor an 'ntk' kernel.")
    Pair = collections.namedtuple("Kernel", "nngp ntk", defaults=(None, None))
    return Pair(**found), found


def gp_inference(k_train_train, y_train, diag_reg=0.0, diag_reg_absolute_scale=False, trace_axes=(-1,)):
    r"""Posterior of the NNGP, NTK or NTK-GP Gaussian process on a test set (infinite training time).

    Drop-in for ``neural_tangents.predict.gp_inference``: same arguments, defaults and outputs.
    ``"nngp"`` is the exact posterior of an infinitely wide Bayesian network; ``"ntk"`` the
    distribution of an infinite ensemble of infinitely wide networks trained to convergence by
    gradient flow on the mean squared error; ``"ntkgp"`` the posterior of a GP whose covariance
    is the NTK. The train kernel is factorised (Cholesky) once per kernel, on first use.

    Parameters
    ----------
    k_train_train : array or namedtuple
        Train-train kernel: an array (used for any ``get``) or an object with ``nngp`` and/or
        ``ntk`` attributes (a namedtuple, neural-tangents' ``Kernel``). Shape
        ``(n, n)``, or with output axes interleaved, ``(n, n, c, c, ...)``, for the axes of
        ``y_train`` not in ``trace_axes``. The ``"ntk"`` covariance needs both kernels.
    y_train : array of shape (n, ...)
        Train targets.
    diag_reg : float, default=0.0
        Diagonal regulariser added to the train kernel before it is factorised.
    diag_reg_absolute_scale : bool, default=False
        ``True``: add ``diag_reg · I``; ``False``: add ``diag_reg · mean(diag(K)) · I``.
    trace_axes : int or tuple of int, default=(-1,)
        Axes of ``y_train`` along which the kernel is ``Θ ⊗ I`` (absent from the kernels).

    Returns
    -------
    predict_fn : callable
        ``predict_fn(get=None, k_test_train=None, k_test_test=None)``. ``get`` is ``"nngp"``,
        ``"ntk"``, ``"ntkgp"``, a tuple of them, or ``None`` for ``("nngp", "ntk")``; a string
        gives one result, a tuple a namedtuple ``Gaussians`` with one field per name. Each result
        is the posterior mean (shape of the test outputs) or, when ``k_test_test`` is given, a
        :class:`Gaussian` ``(mean, covariance)``. ``k_test_train=None`` gives the train set,
        ``N(y_train, 0)`` (pass any non-None ``k_test_test``, e.g. ``True``, for the zero
        covariance); for regularised train predictions pass ``k_test_train=k_train_train``.

    References
    ----------
    Lee, Xiao, Schoenholz, Bahri, Novak, Sohl-Dickstein, Pennington (2019), "Wide neural networks
    of any depth evolve as linear models under gradient descent", NeurIPS.
    He, Lakshminarayanan, Teh (2020), "Bayesian deep ensembles via the neural tangent kernel", NeurIPS.

    Examples
    --------
    >>> import numpy as np
    >>> from collections import namedtuple
    >>> from ntkit.kernels import ReluNNGP, ReluNTK
    >>> from ntkit.predict import gp_inference
    >>> rng = np.random.default_rng(0)
    >>> x_train, x_test, y_train = rng.normal(size=(6, 3)), rng.normal(size=(4, 3)), rng.normal(size=(6, 1))
    >>> Kernel = namedtuple("Kernel", "nngp ntk")
    >>> k = lambda a, b=None: Kernel(ReluNNGP(depth=1)(a, b), ReluNTK(depth=1)(a, b))
    >>> predict_fn = gp_inference(k(x_train), y_train, diag_reg=1e-4)
    >>> out = predict_fn("ntk", k(x_test, x_train), k(x_test))
    >>> out.mean.shape, out.covariance.shape
    ((4, 1), (4, 4))
    >>> predict_fn(("nngp", "ntkgp"), k(x_test, x_train))._fields
    ('nngp', 'ntkgp')
    """
    y = check_values(y_train, "y_train", _OWNER)
    if y.ndim < 1 or y.size == 0:
        raise ValueError(f"y_train of {_OWNER} must be a non-empty array with a sample axis; got shape {y.shape}.")
    layout = make_layout(trace_axes, y.shape, _OWNER)
    train, arrays = train_kernels(k_train_train, _OWNER)
    for which, K in arrays.items():
        check_pair_kernel(K, "k_train_train" if which == "array" else f"k_train_train.{which}", _OWNER, layout,
                          square=True)
    reg = check_real(diag_reg, "diag_reg", _OWNER, low=0.0)
    absolute = check_bool(diag_reg_absolute_scale, "diag_reg_absolute_scale", _OWNER)
    be = Backend(any_jax(y, *arrays.values()))
    spectra = {}

    def spectrum(which):
        key = "array" if "array" in arrays else which
        if key not in spectra:
            K = arrays[key]
            spectra[key] = Spectrum(be, K, float_kind(K, y), reg, absolute, "k_train_train")
        return spectra[key]

    post = Posterior(train, y, layout, spectrum, _OWNER, be)

    def predict_fn(get=None, k_test_train=None, k_test_test=None):
        """Posterior mean (and covariance when ``k_test_test`` is given) for ``get`` on a test set."""
        single, gets = canonical_get(get, _OWNER, allowed=("nngp", "ntk", "ntkgp"))
        return pack(single, post(gets, k_test_train, k_test_test))

    return predict_fn
