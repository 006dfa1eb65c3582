"""What the three predictors share: array backends, output-axis layouts, spectra of train kernels.

**Layouts.** neural-tangents lays kernels out with the output axes *interleaved*: for targets of
shape ``(n, c, k)`` with ``trace_axes=(-1,)`` the train kernel has shape ``(n, n, c, c)`` and a
test-train kernel ``(m, n, c, c)``; the traced axes (here ``k``) are absent from the kernel, which
stands for ``Θ ⊗ I`` along them. Everything here works on the flat matrices instead: the kernel as
``(P, P)`` with ``P = n·c`` (the kept axes), targets as ``(P, R)`` with ``R = k`` (the traced
axes), and :class:`Layout` moves between the two forms.

**Backends.** numpy in, numpy out: the work is done with scipy through :mod:`ntkit._linalg` (the
library's crash-safe, bit-reproducible factorisations) in float64 whatever the input precision,
and results are cast back to the inputs' dtype. jax in, jax out: the work is done with
``jax.numpy`` in the inputs' dtype, on their device. The factorisations of a train kernel are
computed once, when first needed, and cached in its :class:`Spectrum`.
"""

from __future__ import annotations

import collections
import functools
import math
import numbers
import warnings
from typing import Any, NamedTuple

import numpy as np

from .._validation import check_data, is_jax_array

GETS = ("nngp", "ntk")


class Gaussian(NamedTuple):
    """Mean and covariance of a Gaussian, as the predictors of :mod:`ntkit.predict` return it.

    The same ``(mean, covariance)`` pair as ``neural_tangents.predict.Gaussian``.

    Attributes
    ----------
    mean : array
        The mean, with the shape of the outputs (possibly with leading time axes).
    covariance : array
        The covariance between outputs, with the shape of the corresponding kernel
        (``(n_test, n_test)`` for a plain kernel; possibly with leading time axes).

    Examples
    --------
    >>> import numpy as np
    >>> from ntkit.predict import Gaussian
    >>> g = Gaussian(np.zeros(3), np.eye(3))
    >>> g.mean.shape, g.covariance.shape
    ((3,), (3, 3))
    """

    mean: Any
    covariance: Any


@functools.cache
def named_result(fields: tuple[str, ...]):
    """The namedtuple type ``Gaussians`` with one field per requested ``get``, as neural-tangents'."""
    return collections.namedtuple("Gaussians", fields)


def canonical_get(get, owner: str, allowed=("nngp", "ntk"), default=("nngp", "ntk")):
    """``(single, gets)``: whether one string was asked for, and the lower-cased tuple of names."""
    if get is None:
        return False, tuple(default)
    single = isinstance(get, str)
    gets = (get,) if single else get
    if not isinstance(gets, (tuple, list)) or not gets or not all(isinstance(g, str) for g in gets):
        raise ValueError(f"get of {owner} must be one of {allowed}, a non-empty tuple of them or None; got {get!r}.")
    gets = tuple(g.lower() for g in gets)
    bad = [g for g in gets if g not in allowed]
    if bad:
        raise ValueError(f"get of {owner} must name kernels among {allowed}; got {get!r}.")
    if len(set(gets)) < len(gets):
        raise ValueError(f"get of {owner} must not repeat a name; got {get!r}.")
    return single, gets


def pack(single: bool, out: dict):
    """A single value for a string ``get``, else the ``Gaussians`` namedtuple in ``get``'s order."""
    if single:
        return next(iter(out.values()))
    return named_result(tuple(out))(*out.values())


# ---------------------------------------------------------------------------------------------
# Scalars and arrays.


def check_real(value, name: str, owner: str, *, low=None, closed_low=True, high=None):
    """A finite real scalar (Python, numpy or 0-d jax) as float, with the house message format."""
    from .._validation import InvalidParameterError

    ok = not isinstance(value, bool)
    if ok and (is_jax_array(value) or isinstance(value, np.ndarray)):
        ok = value.ndim == 0 and np.dtype(value.dtype).kind in "fiu"
        if ok:
            value = np.asarray(value).item()
    ok = ok and isinstance(value, (numbers.Real, np.floating, np.integer)) and math.isfinite(float(value))
    if ok and low is not None:
        ok = float(value) > low or (closed_low and float(value) == low)
    if ok and high is not None:
        ok = float(value) <= high
    if not ok:
        lo = "(-inf" if low is None else f"{'[' if closed_low else '('}{low!r}"
        rng = f"{lo}, {'inf)' if high is None else repr(high) + ']'}"
        raise InvalidParameterError(f"The {name!r} parameter of {owner} must be a finite real number in the range "
                                    f"{rng}. Got {value!r} instead.")
    return float(value)


def check_bool(value, name: str, owner: str) -> bool:
    from .._validation import InvalidParameterError

    if not isinstance(value, (bool, np.bool_)):
        raise InvalidParameterError(f"The {name!r} parameter of {owner} must be a bool. Got {value!r} instead.")
    return bool(value)


def _finite(a) -> bool:
    """Whether every entry is finite; True for values jax cannot see (under a trace)."""
    if is_jax_array(a):
        import jax
        import jax.numpy as jnp

        try:
            return bool(jnp.isfinite(a).all())
        except jax.errors.ConcretizationTypeError:
            return True
    return bool(np.isfinite(a).all())


def check_kernel(K, name: str, owner: str):
    """A float32/float64 kernel array with an even number (≥ 2) of axes and finite entries."""
    if K is None:
        raise ValueError(f"{name} is required; got None.")
    ndim = getattr(K, "ndim", None)
    if ndim is None:
        if isinstance(K, (list, tuple)):
            K = check_data(K, name, ndim=np.ndim(K), finite=False)
            ndim = K.ndim
        else:
            raise TypeError(f"{name} of {owner} must be a numpy or jax array; got an object of type "
                            f"{type(K).__name__}.")
    if ndim < 2 or ndim % 2:
        raise ValueError(f"{name} of {owner} must have an even number of axes (2 for a plain kernel, 4 with one "
                         f"output axis, ...); got shape {tuple(K.shape)}.")
    return check_data(K, name, ndim=ndim)


def check_values(a, name: str, owner: str, *, allow_scalar=False):
    """A real array (int and bool are accepted and later cast, as neural-tangents does), or a scalar."""
    if a is None:
        raise ValueError(f"{name} of {owner} is required; got None.")
    if allow_scalar and isinstance(a, (numbers.Real, np.floating, np.integer)) and not isinstance(a, bool):
        if not math.isfinite(float(a)):
            raise ValueError(f"{name} of {owner} must be finite; got {a!r}.")
        return float(a)
    if not is_jax_array(a):
        if not hasattr(a, "dtype") and not isinstance(a, (list, tuple)):
            raise TypeError(f"{name} of {owner} must be a numpy or jax array{' or a number' if allow_scalar else ''};"
                            f" got an object of type {type(a).__name__}.")
        try:
            a = np.asarray(a)
        except ValueError as exc:
            raise ValueError(f"{name} of {owner} could not be converted to an array: {exc}") from None
    kind = np.dtype(a.dtype).kind
    if kind not in "fiub" or np.dtype(a.dtype) == np.float16:
        raise TypeError(f"{name} of {owner} must hold real numbers (float32 or float64); got dtype {a.dtype}.")
    if not _finite(a):
        raise ValueError(f"{name} of {owner} contains NaN or infinity.")
    return a


def float_kind(*arrays):
    """The common floating dtype of the floating arrays among ``arrays`` (float64 when there are none)."""
    dts = [np.dtype(a.dtype) for a in arrays if hasattr(a, "dtype") and np.dtype(a.dtype).kind == "f"]
    return np.result_type(*dts) if dts else np.dtype(np.float64)


def any_jax(*arrays) -> bool:
    return any(is_jax_array(a) for a in arrays)


def check_times(t, owner: str):
    """``t`` as a numpy or jax float array (any shape); NaN rejected, infinities allowed."""
    if is_jax_array(t):
        if np.dtype(t.dtype).kind not in "fiu":
            raise TypeError(f"t of {owner} must hold real numbers; got dtype {t.dtype}.")
        import jax
        import jax.numpy as jnp

        try:
            if bool(jnp.isnan(t).any()):
                raise ValueError(f"t of {owner} contains NaN.")
        except jax.errors.ConcretizationTypeError:
            pass
        return t
    try:
        arr = np.asarray(t)
    except ValueError as exc:
        raise ValueError(f"t of {owner} could not be converted to an array: {exc}") from None
    if arr.dtype.kind not in "fiu" or isinstance(t, bool):
        raise TypeError(f"t of {owner} must be None, a real number or an array of them; got {t!r}.")
    if np.isnan(arr).any():
        raise ValueError(f"t of {owner} contains NaN.")
    return arr.astype(np.float64)


# ---------------------------------------------------------------------------------------------
# Layouts.


class Layout(NamedTuple):
    """How the targets' axes split into kept axes (in the kernel) and traced axes (``Θ ⊗ I``)."""

    ndim: int
    kept: tuple[int, ...]
    traced: tuple[int, ...]
    kept_shape: tuple[int, ...]
    traced_shape: tuple[int, ...]

    @property
    def P(self) -> int:
        return math.prod(self.kept_shape)

    @property
    def R(self) -> int:
        return math.prod(self.traced_shape)

    def kernel_shape(self, rows: tuple[int, ...] | None = None) -> tuple[int, ...]:
        """The interleaved shape of a kernel between ``rows`` (default: the train points) and the train points."""
        rows = self.kept_shape if rows is None else rows
        return tuple(d for pair in zip(rows, self.kept_shape) for d in pair)

    def out_shape(self, rows: tuple[int, ...]) -> tuple[int, ...]:
        """Output shape for kept-axes shape ``rows``: the traced axes inserted where ``y_train`` has them."""
        shape, it_rows, it_tr = [], iter(rows), iter(self.traced_shape)
        for ax in range(self.ndim):
            shape.append(next(it_tr) if ax in self.traced else next(it_rows))
        return tuple(shape)

    def targets_2d(self, xp, y):
        """``(P, R)``: kept axes flattened into rows, traced axes into columns."""
        y = xp.moveaxis(y, self.traced, tuple(range(self.ndim - len(self.traced), self.ndim)))
        return y.reshape(self.P, self.R)

    def from_2d(self, xp, M, lead: tuple[int, ...], rows: tuple[int, ...]):
        """Inverse of :meth:`targets_2d` for ``M`` of shape ``lead + (Q, R)`` with kept shape ``rows``."""
        M = M.reshape(lead + tuple(rows) + self.traced_shape)
        nt = len(self.traced)
        src = tuple(range(M.ndim - nt, M.ndim))
        dst = tuple(len(lead) + a for a in self.traced)
        return xp.moveaxis(M, src, dst)


def make_layout(trace_axes, y_shape, owner: str) -> Layout:
    ndim = len(y_shape)
    if isinstance(trace_axes, (numbers.Integral, np.integer)) and not isinstance(trace_axes, bool):
        trace_axes = (int(trace_axes),)
    try:
        axes = [int(a) for a in trace_axes if not isinstance(a, bool) and float(a) == int(a)]
        complete = len(axes) == len(tuple(trace_axes))
    except (TypeError, ValueError):
        complete = False
    if not complete:
        raise TypeError(f"trace_axes of {owner} must be an int or a tuple of ints; got {trace_axes!r}.")
    bad = [a for a in axes if not -ndim <= a < ndim]
    if bad:
        raise ValueError(f"trace_axes {tuple(axes)} of {owner} out of range for y_train of shape {tuple(y_shape)} "
                         f"({ndim} axes).")
    traced = tuple(sorted({a % ndim for a in axes}))
    kept = tuple(a for a in range(ndim) if a not in traced)
    if not kept:
        raise ValueError(f"trace_axes {tuple(axes)} of {owner} trace every axis of y_train (shape {tuple(y_shape)}); "
                         "at least the sample axis must stay in the kernel (for 1-D targets pass trace_axes=() or "
                         "reshape y_train to (n, 1)).")
    return Layout(ndim, kept, traced, tuple(y_shape[a] for a in kept), tuple(y_shape[a] for a in traced))


def kernel_2d(xp, K):
    """``(a1, b1, a2, b2, ...)`` → ``(a1·a2·…, b1·b2·…)``."""
    h = K.ndim // 2
    if h == 1:
        return K
    K = xp.transpose(K, tuple(range(0, 2 * h, 2)) + tuple(range(1, 2 * h, 2)))
    return K.reshape(math.prod(K.shape[:h]), math.prod(K.shape[h:]))


def cov_from_2d(xp, C, lead: tuple[int, ...], rows: tuple[int, ...]):
    """``lead + (Q, Q)`` → ``lead + (r1, r1, r2, r2, ...)`` (neural-tangents' interleaved covariance)."""
    h, L = len(rows), len(lead)
    C = C.reshape(lead + tuple(rows) * 2)
    if h == 1:
        return C
    perm = tuple(range(L)) + tuple(L + i + j * h for i in range(h) for j in (0, 1))
    return xp.transpose(C, perm)


def check_pair_kernel(K, name: str, owner: str, layout: Layout, *, square: bool):
    """Shape check of a train-train (``square``) or test-train kernel against the targets' layout."""
    want = len(layout.kept) * 2
    shape = tuple(K.shape)
    rows = shape[0::2]
    if K.ndim != want or shape[1::2] != layout.kept_shape or (square and rows != layout.kept_shape):
        expect = layout.kernel_shape() if square else layout.kernel_shape(("m",) + layout.kept_shape[1:])
        expect = "(" + ", ".join(str(d) for d in expect) + ")"
        raise ValueError(f"{name} of {owner} must have shape {expect} (pairs of y_train's axes {layout.kept}, "
                         f"interleaved, with trace_axes {layout.traced} absent) to match y_train of shape "
                         f"{layout.out_shape(layout.kept_shape)}; got shape {shape}.")
    return rows


def check_output_like(a, shape: tuple[int, ...], name: str, owner: str, target: str):
    """Initial outputs: a number (0-d) or an array of exactly the outputs' shape (no silent broadcasting)."""
    s = tuple(np.shape(a))
    if s not in ((), tuple(shape)):
        raise ValueError(f"{name} of {owner} must be a number or an array of {target} {tuple(shape)}; got shape {s}.")


# ---------------------------------------------------------------------------------------------
# Backends and spectra.


class Backend(NamedTuple):
    """``xp`` and the factorisations: numpy/scipy (float64 work) or jax.numpy (input dtype)."""

    jax: bool

    @property
    def xp(self):
        if self.jax:
            import jax.numpy as jnp

            return jnp
        return np

    def work(self, a, dtype):
        """``a`` as a working array: float64 numpy, or a jax array in ``dtype`` (as jax's x64 mode allows)."""
        if not self.jax:
            return np.asarray(a, dtype=np.float64)
        import jax
        import jax.numpy as jnp

        a = jnp.asarray(a)
        dtype = jax.dtypes.canonicalize_dtype(dtype)
        return a.astype(dtype) if a.dtype != dtype else a

    def out(self, a, dtype, jax_out: bool):
        """The result in the output dtype, as a jax array when any input was one."""
        if self.jax:
            import jax

            dtype = jax.dtypes.canonicalize_dtype(dtype)
            return a.astype(dtype) if a.dtype != dtype else a
        a = np.asarray(a).astype(dtype, copy=False)
        if jax_out:
            import jax.numpy as jnp

            return jnp.asarray(a)
        return a

    @staticmethod
    def eager():
        """Factorisations of concrete kernels run eagerly even inside ``jax.jit`` (and are cached)."""
        import contextlib

        import jax

        return jax.ensure_compile_time_eval() if hasattr(jax, "ensure_compile_time_eval") else contextlib.nullcontext()


def _nullcontext():
    import contextlib

    return contextlib.nullcontext()


def _jax_cholesky(A, what: str):
    """Lower Cholesky factor with :func:`ntkit._linalg.cholesky`'s jitter policy, in jax."""
    import jax
    import jax.numpy as jnp

    from .._linalg import MAX_JITTER, NumericalWarning

    L = jnp.linalg.cholesky(A)
    try:
        if bool(jnp.isfinite(L).all()):
            return L
    except jax.errors.ConcretizationTypeError:  # a traced kernel: nothing to check
        return L
    n = A.shape[0]
    scale = float(jnp.mean(jnp.abs(jnp.diagonal(A))))
    rel = 10 * float(jnp.finfo(A.dtype).eps)
    while rel <= MAX_JITTER and scale > 0:
        added = rel * scale
        L = jnp.linalg.cholesky(A + added * jnp.eye(n, dtype=A.dtype))
        if bool(jnp.isfinite(L).all()):
            warnings.warn(f"{what} ({n} × {n}, {A.dtype}) was not numerically positive definite; added jitter "
                          f"{added:.3g} to its diagonal ({rel:.1e} × its mean diagonal {scale:.3g}).",
                          NumericalWarning, stacklevel=4)
            return L
        rel *= 10
    raise ValueError(f"{what} ({n} × {n}, {A.dtype}) is not positive definite, even with jitter. Add a diag_reg, "
                     "remove duplicate points, or use a positive semi-definite kernel; finite times (t not None) need "
                     "no factorisation and still work.")


class Spectrum:
    """A regularised train kernel ``A = K + diag_reg·I`` (flat, ``(P, P)``) and its cached factorisations.

    ``eig()`` (ascending eigenvalues and eigenvectors) serves finite times; ``solve(B)`` (Cholesky)
    the infinite-time limit. Each is computed on first use only.
    """

    def __init__(self, backend: Backend, K, dtype, diag_reg: float, absolute: bool, what: str):
        self.backend, self.what = backend, what
        xp = backend.xp
        with Backend.eager() if backend.jax else _nullcontext():
            K2 = kernel_2d(xp, backend.work(K, dtype))
            A = 0.5 * (K2 + K2.T)  # exactly symmetric, so every factorisation reads the same matrix
            if diag_reg:
                n = A.shape[0]
                scale = diag_reg if absolute else diag_reg * xp.trace(A) / n
                A = A + scale * xp.eye(n, dtype=A.dtype)
        self.A = A
        self._eig = None
        self._chol = None

    def eig(self):
        if self._eig is None:
            if self.backend.jax:
                import jax.numpy as jnp

                with Backend.eager():
                    self._eig = jnp.linalg.eigh(self.A)
            else:
                from .._linalg import eigh

                self._eig = eigh(self.A)
        return self._eig

    def solve(self, B):
        """``A⁻¹ B`` by a cached Cholesky factorisation."""
        if self.backend.jax:
            import jax.scipy.linalg as jsl

            if self._chol is None:
                with Backend.eager():
                    self._chol = _jax_cholesky(self.A, self.what)
            return jsl.cho_solve((self._chol, True), B)
        from .._linalg import cho_solve, cholesky

        if self._chol is None:
            try:
                self._chol, _ = cholesky(self.A, what=self.what, stacklevel=5)
            except np.linalg.LinAlgError as exc:  # a bad input, reported as one (ValueError naming the kernel)
                raise ValueError(f"{exc} Finite times (t not None) need no factorisation and still work.") from None
        return cho_solve(self._chol, np.asarray(B, dtype=self._chol.dtype))


def decay(xp, w, s):
    """``exp(-max(λ, 0)·s)`` for eigenvalues ``w`` (P,) and scaled times ``s`` (T, 1)."""
    return xp.exp(-xp.maximum(w, 0.0) * s)


def expm1_coef(xp, w, s):
    """``expm1(-max(λ, 0)·s)``: train outputs move by ``V diag(·) Vᵀ (f₀ - y)``."""
    return xp.expm1(-xp.maximum(w, 0.0) * s)


def inv_expm1_coef(xp, w, s):
    """``expm1(-λ s) / λ`` for λ > 0, its limit ``-s`` at λ = 0, and 0 for λ < 0 (round-off of a PSD kernel).

    neural-tangents computes ``expm1(-max(λ, 0) s) / |λ|``: the same for λ ≠ 0, NaN at λ = 0.
    """
    pos = w > 0
    safe = xp.where(pos, w, 1.0)
    return xp.where(pos, xp.expm1(-safe * s) / safe, xp.where(w == 0, -s, 0.0))
