"""Checks of the empirical-NTK inputs (parameters, data, dtypes), shared by the eNTK functions and NTKOperator."""

from __future__ import annotations

import collections
import contextlib
import threading

import numpy as np

from .._validation import is_jax_array

def _jax():
    import jax
    import jax.numpy as jnp

    return jax, jnp

# ----------------------------------------------------------------------------- checks


def _leaf_paths(params):
    jax, _ = _jax()
    flat, treedef = jax.tree_util.tree_flatten_with_path(params)
    paths = ["/".join(str(getattr(k, "key", getattr(k, "idx", getattr(k, "name", k)))) for k in path) or "<root>"
             for path, _ in flat]
    return paths, [leaf for _, leaf in flat], treedef


def _check_params(params):
    """Flatten ``params``; every leaf must be a finite float array."""
    paths, leaves, treedef = _leaf_paths(params)
    if not leaves:
        raise ValueError("params has no array leaves: there is nothing to differentiate.")
    out = []
    for path, leaf in zip(paths, leaves):
        if not hasattr(leaf, "dtype"):
            if isinstance(leaf, (float, int)) and not isinstance(leaf, bool):
                leaf = np.asarray(leaf, dtype=np.float32 if isinstance(leaf, float) else np.int64)
            else:
                raise TypeError(
                    f"params leaf '{path}' is a {type(leaf).__name__}, not an array; keep only arrays in the "
                    "parameter pytree and close over everything else in apply_fn.")
        dt = np.dtype(leaf.dtype)
        if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise TypeError(
                f"params leaf '{path}' has dtype {dt}; the empirical NTK differentiates every leaf of params, so "
                "each must be float32 or float64. Close over integer buffers (or batch statistics) in apply_fn "
                "instead of passing them in params.")
        if leaf.size and not bool(np.isfinite(np.asarray(leaf)).all()):
            raise ValueError(f"params leaf '{path}' contains NaN or infinity; the NTK of such a network is undefined.")
        out.append(leaf)
    return paths, out, treedef


def _check_x(x, name, feature_shape=None):
    if x is None:
        raise ValueError(f"{name} is required; got None.")
    if not is_jax_array(x):
        if not hasattr(x, "shape") or not hasattr(x, "dtype"):
            try:
                x = np.asarray(x)
            except Exception:  # noqa: BLE001 - any conversion failure is the caller's input
                raise TypeError(f"{name} must be an array; got {type(x).__name__}.") from None
        x = np.asarray(x)
        if not x.dtype.isnative:  # byte order is storage, not type: jax rejects e.g. '>f4'
            x = x.astype(x.dtype.newbyteorder("="))
    if x.ndim < 1:
        raise ValueError(f"{name} must have a leading batch dimension (n, ...); got a scalar.")
    if x.shape[0] == 0:
        raise ValueError(f"{name} has no rows (shape {tuple(x.shape)}); pass at least one example.")
    dt = np.dtype(x.dtype)
    if dt.kind not in "fiub" or dt == np.float16:
        raise TypeError(f"{name} must be a float32/float64 (or integer) array; got dtype {dt}.")
    if dt.kind == "f" and not bool(np.isfinite(np.asarray(x)).all()):
        raise ValueError(f"{name} contains NaN or infinity; remove or impute those entries first.")
    if feature_shape is not None and tuple(x.shape[1:]) != tuple(feature_shape):
        raise ValueError(
            f"x1 and x2 must have the same per-example shape; got x1 examples of shape {tuple(feature_shape)} and "
            f"{name} examples of shape {tuple(x.shape[1:])}.")
    return x


def _compute_dtype(leaves, xs):
    dts = [np.dtype(leaf.dtype) for leaf in leaves] + [np.dtype(x.dtype) for x in xs if np.dtype(x.dtype).kind == "f"]
    return np.dtype(np.float64) if any(d == np.float64 for d in dts) else np.dtype(np.float32)


@contextlib.contextmanager
def _x64(dtype):
    jax, _ = _jax()
    if np.dtype(dtype) == np.float64 and not jax.config.jax_enable_x64:
        with jax.enable_x64(True):
            yield
    else:
        yield


_SELECT_CACHE: "collections.OrderedDict" = collections.OrderedDict()
_SELECT_LOCK = threading.Lock()


def _select_params(apply_fn, params):
    """Flax-style ``variables`` (a mapping with a ``"params"`` collection beside others such as
    ``"batch_stats"``): differentiate the ``"params"`` collection only, holding the others fixed,
    as the network's tangent kernel is defined. Returns ``(apply_fn, params)`` unchanged otherwise.

    The wrapper closes over the other collections; it is cached on their identity (16 entries), so
    repeated calls with the same variables reuse the compiled kernel."""
    from collections.abc import Mapping

    if not (isinstance(params, Mapping) and "params" in params and len(params) > 1):
        return apply_fn, params
    frozen = {k: v for k, v in params.items() if k != "params"}
    jax, _ = _jax()
    key = (id(apply_fn), tuple(sorted((k, id(v)) for k, v in frozen.items())))
    with _SELECT_LOCK:
        hit = _SELECT_CACHE.get(key)
        if hit is not None and hit[1] is apply_fn and all(hit[2][k] is v for k, v in frozen.items()):
            _SELECT_CACHE.move_to_end(key)
            return hit[0], params["params"]

        def params_only(p, x):
            return apply_fn({**frozen, "params": p}, x)

        _SELECT_CACHE[key] = (params_only, apply_fn, frozen)
        while len(_SELECT_CACHE) > 16:
            _SELECT_CACHE.popitem(last=False)
    return params_only, params["params"]


def _resolve_apply_fn(apply_fn):
    if isinstance(apply_fn, tuple) and len(apply_fn) == 3 and all(callable(f) for f in apply_fn):
        return apply_fn[1]  # a neural-tangents stax triple (init_fn, apply_fn, kernel_fn)
    if not callable(apply_fn):
        raise TypeError(
            f"apply_fn must be a callable apply_fn(params, x) -> (n, O) (or a neural-tangents stax triple); got "
            f"{type(apply_fn).__name__}.")
    return apply_fn


def _key_data(key):
    jax, jnp = _jax()
    if key is None:
        key = 0
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        key = jax.random.key(int(key))
    try:
        if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
            return np.asarray(jax.random.key_data(key))
        raw = np.asarray(key)
        if raw.dtype == np.uint32 and raw.shape == (2,):
            return raw
    except AttributeError:
        pass
    raise TypeError(f"key must be an int seed or a jax PRNG key; got {key!r}.")
