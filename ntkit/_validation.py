"""Parameter and array checks with one message format.

Every public entry point validates its inputs here, so users see the same
kind of message everywhere: the argument, its owner, what was expected and
what was found.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

__all__ = [
    "InvalidParameterError",
    "check_scalar",
    "check_int",
    "check_option",
    "check_data",
    "is_jax_array",
    "float_dtype",
    "check_array_arg",
    "check_same_rows",
    "check_operand",
]

_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


class InvalidParameterError(ValueError, TypeError):
    """A hyper-parameter has the wrong type or value.

    Subclasses both :class:`ValueError` and :class:`TypeError`, like
    scikit-learn's error of the same name, so either ``except`` clause works.
    """


def _range_text(low, high, closed) -> str:
    left = "[" if closed in ("left", "both") else "("
    right = "]" if closed in ("right", "both") else ")"
    lo = "-inf" if low is None else repr(low)
    hi = "inf" if high is None else repr(high)
    return f"{left}{lo}, {hi}{right}"


def check_scalar(
    value: Any,
    name: str,
    owner: str,
    *,
    low: float | None = None,
    high: float | None = None,
    closed: str = "both",
) -> float:
    """Check that ``value`` is a finite real number in a range; return it as float.

    ``closed`` is one of "both", "left", "right", "neither" and says which
    ends of ``[low, high]`` are allowed.
    """
    rng = _range_text(low, high, closed)
    msg = f"The {name!r} parameter of {owner} must be a finite real number in the range {rng}. Got {value!r} instead."
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, np.floating, np.integer)):
        if isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype.kind in "fi":
            value = value.item()
        else:
            raise InvalidParameterError(msg)
    value = float(value)
    if not np.isfinite(value):
        raise InvalidParameterError(msg)
    if low is not None:
        if value < low or (value == low and closed in ("right", "neither")):
            raise InvalidParameterError(msg)
    if high is not None:
        if value > high or (value == high and closed in ("left", "neither")):
            raise InvalidParameterError(msg)
    return value


def check_int(value: Any, name: str, owner: str, *, low: int | None = None, high: int | None = None) -> int:
    """Check that ``value`` is an integer (not bool) in ``[low, high]``; return it as int."""
    rng = _range_text(low, high, "both")
    msg = f"The {name!r} parameter of {owner} must be an int in the range {rng}. Got {value!r} instead."
    if isinstance(value, bool) or not isinstance(value, (numbers.Integral, np.integer)):
        # Accept integral floats such as 2.0 only when they are exactly integers.
        if isinstance(value, (float, np.floating)) and np.isfinite(value) and float(value).is_integer():
            value = int(value)
        else:
            raise InvalidParameterError(msg)
    value = int(value)
    if (low is not None and value < low) or (high is not None and value > high):
        raise InvalidParameterError(msg)
    return value


def check_option(value: Any, name: str, owner: str, options) -> Any:
    """Check that ``value`` is one of ``options``."""
    if not isinstance(value, (str, numbers.Number)) or value not in options:
        opts = ", ".join(repr(o) for o in options)
        raise InvalidParameterError(f"The {name!r} parameter of {owner} must be one of {{{opts}}}. Got {value!r} instead.")
    return value


def is_jax_array(x: Any) -> bool:
    """True for a ``jax.Array`` without importing jax when it is not loaded."""
    import sys

    jax = sys.modules.get("jax")
    return jax is not None and isinstance(x, jax.Array)


def float_dtype(*arrays) -> np.dtype:
    """The common floating dtype of ``arrays`` (float32 only if all are float32)."""
    return np.result_type(*[np.dtype(a.dtype) for a in arrays if a is not None])


def check_data(
    X: Any,
    name: str = "X",
    *,
    ndim: int | tuple[int, ...] = 2,
    allow_jax: bool = True,
    finite: bool = True,
    min_rows: int = 0,
):
    """Validate a data array: numeric floating dtype, rank, finiteness.

    Returns a numpy array (or the jax array unchanged when ``allow_jax``).
    Integer, boolean, complex, float16 and object arrays are rejected with a
    :class:`TypeError` that says how to convert them: casting silently would
    hide a caller's mistake (e.g. passing labels where features were meant).
    """
    if X is None:
        raise ValueError(f"{name} is required; got None.")
    jax_in = is_jax_array(X)
    if jax_in and not allow_jax:
        X = np.asarray(X)
        jax_in = False
    if not jax_in:
        if isinstance(X, (list, tuple)):
            try:
                X = np.asarray(X)
            except ValueError as exc:  # ragged nested lists
                raise ValueError(f"{name} could not be converted to an array: {exc}") from None
        elif not hasattr(X, "dtype") or not hasattr(X, "shape"):
            raise TypeError(f"{name} must be a numpy or jax array; got an object of type {type(X).__name__}.")
        else:
            X = np.asarray(X)
    dtype = np.dtype(X.dtype)
    if not jax_in and dtype.kind == "f" and not dtype.isnative:  # e.g. '>f8' read from a big-endian file
        X = X.astype(dtype.newbyteorder("="))
        dtype = np.dtype(X.dtype)
    if dtype not in _FLOAT_DTYPES:
        if dtype.kind in "iub":
            hint = f" Convert it first, e.g. {name}.astype(np.float64)."
        else:
            hint = ""
        raise TypeError(f"{name} must have dtype float32 or float64; got {dtype}.{hint}")
    dims = (ndim,) if isinstance(ndim, int) else tuple(ndim)
    if X.ndim not in dims:
        want = " or ".join(f"{d}-D" for d in dims)
        extra = ""
        if X.ndim == 1 and 2 in dims:
            extra = " Reshape a single feature with X.reshape(-1, 1) or a single sample with X.reshape(1, -1)."
        raise ValueError(f"{name} must be a {want} array; got shape {tuple(X.shape)}.{extra}")
    if X.shape[0] < min_rows:
        raise ValueError(f"{name} must have at least {min_rows} rows; got shape {tuple(X.shape)}.")
    if finite and X.size:
        if jax_in:
            import jax
            import jax.numpy as jnp

            try:
                ok = bool(jnp.isfinite(X).all())
            except jax.errors.ConcretizationTypeError:
                return X  # under jit the values are not known: NaN propagates, as everywhere in jax
        else:
            ok = bool(np.isfinite(X).all())
        if not ok:
            raise ValueError(f"{name} contains NaN or infinity; remove or impute those entries first.")
    return X


def _shape_dtype(X, name):
    """``(shape, dtype)`` of an array-like without copying arrays (lists are converted once)."""
    if hasattr(X, "shape") and hasattr(X, "dtype"):
        return tuple(X.shape), np.dtype(X.dtype)
    if hasattr(X, "shape") and hasattr(X, "dtypes"):  # a DataFrame: no copy just to look at it
        kinds = {np.dtype(d).kind if isinstance(d, np.dtype) else "O" for d in getattr(X.dtypes, "values", [])}
        return tuple(X.shape), np.dtype(np.float64) if kinds <= set("fiub") else np.dtype(object)
    try:
        arr = np.asarray(X)
    except (ValueError, TypeError) as exc:  # ragged nested lists and the like
        raise ValueError(f"{name} could not be converted to an array: {exc}") from None
    return arr.shape, arr.dtype


def check_array_arg(X: Any, name: str = "X", *, ndim: int | tuple[int, ...] = 2, min_rows: int = 0,
                    n_features: int | None = None, finite: bool = False, required: bool = True,
                    labels: bool = False):
    """Named checks for an array-like that is then converted elsewhere (e.g. scikit-learn's ``validate_data``).

    scikit-learn's own messages do not say which argument is wrong ("Complex data not supported",
    "Expected 2D array, got 1D array instead", "could not convert string to float", "Found array with
    0 sample(s)"); this raises first, naming ``name``, and returns ``X`` unchanged, so everything it
    accepts (lists, int, bool and object arrays of numbers, sparse matrices) keeps its usual
    conversion. Complex input raises a :class:`ValueError` starting with "Complex data not
    supported" (the message scikit-learn's estimator checks look for). ``labels=True`` (class
    labels) also accepts strings.
    """
    if X is None:
        if required:
            raise ValueError(f"{name} is required; got None.")
        return X
    if isinstance(X, (str, bytes)):
        raise TypeError(f"{name} must be an array{' of labels' if labels else ' of numbers'}; got a "
                        f"{type(X).__name__}.")
    import scipy.sparse as sp

    if sp.issparse(X):
        return X
    shape, dtype = _shape_dtype(X, name)
    if dtype.kind == "c":
        raise ValueError(f"Complex data not supported: {name} has dtype {dtype}; pass real numbers.")
    if dtype.kind in ("VMm" if labels else "USVMm"):
        raise TypeError(f"{name} must hold {'labels' if labels else 'numbers'}; got dtype {dtype}.")
    dims = (ndim,) if isinstance(ndim, int) else tuple(ndim)
    if len(shape) not in dims:
        want = " or ".join(f"{d}D" for d in dims)
        extra = ""
        if len(shape) == 1 and 2 in dims:
            extra = (f" Reshape your data with {name}.reshape(-1, 1) for a single feature or {name}.reshape(1, -1) "
                     "for a single sample.")
        raise ValueError(f"Expected {want} array, got {len(shape)}D array instead: {name} has shape {shape}.{extra}")
    if min_rows and shape[0] < min_rows:
        raise ValueError(f"{name} is empty: found array with {shape[0]} sample(s) (shape={shape}) while a minimum of "
                         f"{min_rows} is required.")
    if n_features is not None and len(shape) >= 2 and shape[1] != n_features:
        raise ValueError(f"{name} has {shape[1]} features, but {n_features} are expected (as in fit); "
                         f"got shape {shape}.")
    if finite and dtype.kind in "fO" and int(np.prod(shape)):
        try:
            ok = bool(np.isfinite(np.asarray(X, dtype=np.float64)).all())
        except (ValueError, TypeError):
            raise TypeError(f"{name} must hold real numbers; could not convert it to float.") from None
        if not ok:
            raise ValueError(f"{name} contains NaN or infinity; remove or impute those entries first.")
    return X


def check_same_rows(A: Any, B: Any, a_name: str, b_name: str) -> None:
    """Raise a ValueError naming both arguments unless A and B have the same number of rows."""
    if A is None or B is None:
        return
    na = _shape_dtype(A, a_name)[0]
    nb = _shape_dtype(B, b_name)[0]
    if na and nb and na[0] != nb[0]:
        raise ValueError(f"Found input variables with inconsistent numbers of samples: {b_name} has {nb[0]} rows but "
                         f"{a_name} has {na[0]}; give one row of {b_name} per row of {a_name}.")


def check_operand(x: Any, rows: int, *, ndim=(1, 2), method: str = "matvec", name: str = "x"):
    """Validate the operand of a LinearOperator product (matvec/matmat/rmatvec/rmatmat/dot).

    Real numeric arrays (int and bool included) pass unchanged; complex, object and string
    operands, NaN/Inf and wrong shapes raise with a message naming ``x``, instead of scipy's bare
    "dimension mismatch" or a silent cast that would drop an imaginary part.
    """
    x = np.asanyarray(x)
    if x.dtype.kind not in "fiub":
        raise TypeError(f"{name} must be a real numeric array for {method}; got dtype {x.dtype}.")
    if x.ndim not in ndim:
        want = " or ".join(f"{d}-D" for d in ndim)
        raise ValueError(f"{name} must be a {want} array for {method}; got shape {x.shape}.")
    if x.shape[0] != rows or (method in ("matvec", "rmatvec") and x.ndim == 2 and x.shape[1] != 1):
        raise ValueError(f"{name} must have {rows} rows for {method}; found shape {x.shape}.")
    if x.size and not np.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinity; remove or impute those entries first.")
    return x
