"""ntkit_native's engine on jax arrays: XLA FFI custom calls (CPU, and CUDA when compiled).

The extension exports typed XLA FFI handlers (``csrc/bindings/xla_ffi.cpp``) that call
the same framework-free cores as :func:`ntkit_native.gram` and friends: on the CPU the
very same functions (same results, bit for bit), on a GPU the stream-ordered CUDA entry
points, which run on XLA's stream directly on the device buffers (no host copies, no
synchronisation, temporaries from XLA's scratch allocator). The functions here work on
jax arrays eagerly and under :func:`jax.jit`, and batch under :func:`jax.vmap` (one
custom call for the whole batch, ``vmap_method="expand_dims"``: unbatched operands are
broadcast by the handler without a copy). They are not differentiable.

Registration with jax (``jax.ffi.register_ffi_target``, platforms ``"cpu"`` and
``"CUDA"``) happens on first use, once per process; importing this module does nothing
(it does not even import jax).

Functions
---------
``gram(X, Z=None, kernel_id="rbf", params=None)``
    ``K(X, Z)`` of shape (n, m); ``Z=None``: exactly symmetric ``K(X, X)`` with the
    exact diagonal.
``kernel_matvec(X, Z, v, kernel_id="rbf", params=None)``
    ``K(X, Z) @ v`` for v of shape (m,) or (m, t), never materialising K; ``Z=None``:
    Z is X and the diagonal of K is the exact ``k(x, x)``.
``batched_gram(A, B=None, reduce="none")``
    ``A_i @ B_i.T`` stacked (b, n, m) or summed (n, m); ``B=None`` means B is A.

Inputs are jax arrays (numpy arrays are converted with ``jnp.asarray``) of dtype float32
or float64, one dtype for all (never cast; float64 needs ``jax_enable_x64``). Kernel ids
and parameters are those of :mod:`ntkit_native` (``KERNEL_IDS``, ``KERNEL_PARAMS``,
defaults ``DEFAULT_PARAMS``); parameters are compile-time attributes of the custom call,
so they must be concrete numbers (not traced). Unlike the numpy entry points, NaN or Inf
in the data is not detected (jax's convention: it propagates to the result).
"""

from __future__ import annotations

import numbers
import threading

__all__ = ["available", "platforms", "register", "gram", "kernel_matvec", "batched_gram", "TARGETS"]

#: Custom-call target names (the same on every platform).
TARGETS = ("ntkit_gram", "ntkit_kernel_matvec", "ntkit_batched_gram")

_lock = threading.Lock()
_registered: tuple[str, ...] | None = None


def _native():
    import ntkit_native  # noqa: PLC0415

    return ntkit_native


def platforms() -> tuple[str, ...]:
    """Platforms with FFI targets in this build (``"cpu"``, ``"CUDA"``); empty without FFI."""
    nn = _native()
    mod = nn._load()
    if mod is None or not hasattr(mod, "ffi_platforms"):
        return ()
    return tuple(mod.ffi_platforms())


def available() -> bool:
    """True iff the extension has XLA FFI targets and jax can be imported. Never raises."""
    try:
        if not platforms():
            return False
        import jax  # noqa: F401, PLC0415
    except Exception:  # noqa: BLE001
        return False
    return True


def register() -> tuple[str, ...]:
    """Register the targets with jax (idempotent, thread-safe); returns the platforms."""
    global _registered
    if _registered is not None:
        return _registered
    with _lock:
        if _registered is None:
            mod = _native()._require()
            plats = tuple(mod.ffi_platforms()) if hasattr(mod, "ffi_platforms") else ()
            if not plats:
                raise RuntimeError(
                    "ntkit_native was built without the XLA FFI custom calls (jaxlib's headers were not "
                    "found at build time); reinstall ntkit with jax installed")
            import jax  # noqa: PLC0415

            for plat in plats:
                for name, capsule in mod.ffi_targets(plat).items():
                    jax.ffi.register_ffi_target(name, capsule, platform=plat)
            _registered = plats
    return _registered


# ----------------------------------------------------------------- validation
def _jax():
    import jax  # noqa: PLC0415
    import jax.numpy as jnp  # noqa: PLC0415

    return jax, jnp


def _as_array(x, name, ndims, dtype=None, ref_name=None):
    import numpy as np  # noqa: PLC0415

    jax, jnp = _jax()
    if isinstance(x, np.ndarray):
        if x.dtype == np.float64 and not jax.config.jax_enable_x64:
            raise TypeError(f"{name} has dtype float64 but jax_enable_x64 is off (jax would cast it to "
                            "float32); enable x64 or pass float32")
        x = jnp.asarray(x)
    elif not isinstance(x, jax.Array):  # jax.Array covers tracers under jit / vmap
        raise TypeError(f"{name} must be a jax or numpy array, got {type(x).__name__}")
    dt = np.dtype(x.dtype)
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise TypeError(f"{name} has unsupported dtype {dt}; expected float32 or float64 (inputs are not cast)")
    if x.ndim not in ndims:
        want = " or ".join(f"{k}-D" for k in ndims)
        raise ValueError(f"{name} must be {want}, got {x.ndim}-D array of shape {tuple(x.shape)}")
    if dtype is not None and dt != dtype:
        raise TypeError(f"{name} has dtype {dt} but {ref_name} has dtype {dtype}; all arrays must share one dtype")
    return x


def _concrete_params(params):
    """Python numbers from the params dict (0-d arrays allowed); traced values are refused."""
    if params is None or not isinstance(params, dict):
        return params  # _check_kernel reports the type
    jax, _ = _jax()
    out = {}
    for key, val in params.items():
        if isinstance(val, jax.core.Tracer):
            raise TypeError(f"parameter {key!r} must be a concrete number: kernel parameters are compile-time "
                            "attributes of the custom call and cannot be traced (close over them instead of "
                            "passing them through jit / vmap)")
        if not isinstance(val, (numbers.Number, bool)) and getattr(val, "shape", None) == ():
            val = val.item()
        out[key] = val
    return out


def _kernel_attrs(kernel_id, params):
    import numpy as np  # noqa: PLC0415

    nn = _native()
    p = dict(nn.DEFAULT_PARAMS)
    p.update(nn._check_kernel(kernel_id, _concrete_params(params)))
    return {
        "kernel": np.int64(nn.KERNEL_IDS.index(kernel_id)),
        "lengthscale": np.float64(p["lengthscale"]),
        "degree": np.int64(p["degree"]),
        "gamma": np.float64(p["gamma"]),
        "coef0": np.float64(p["coef0"]),
        "depth": np.int64(p["depth"]),
        "weight_std": np.float64(p["weight_std"]),
        "bias_std": np.float64(p["bias_std"]),
    }


def _check_xz(X, Z):
    import numpy as np  # noqa: PLC0415

    X = _as_array(X, "X", (2,))
    if Z is not None:
        Z = _as_array(Z, "Z", (2,), np.dtype(X.dtype), "X")
        if Z.shape[1] != X.shape[1]:
            raise ValueError(f"X has {X.shape[1]} features but Z has {Z.shape[1]} features")
    return X, Z


# ----------------------------------------------------------------- operations
def gram(X, Z=None, kernel_id="rbf", params=None):
    """Kernel matrix K(X, Z) of shape (n, m) on jax arrays; ``Z=None`` -> exactly symmetric K(X, X).

    Parameters
    ----------
    X : jax.Array of shape (n, d), float32 or float64
    Z : jax.Array of shape (m, d) or None
    kernel_id : str
        One of ``ntkit_native.KERNEL_IDS``.
    params : dict or None
        Kernel parameters (``ntkit_native.KERNEL_PARAMS[kernel_id]``; defaults for omitted keys).

    Returns
    -------
    jax.Array of shape (n, m), the dtype of X, on X's device.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> from ntkit_native import _jax_ffi
    >>> if _jax_ffi.available():
    ...     K = _jax_ffi.gram(jnp.ones((3, 2)), None, "rbf", {"lengthscale": 1.0})
    ...     print(K.shape)
    ... else:
    ...     print((3, 3))
    (3, 3)
    """
    jax, jnp = _jax()
    X, Z = _check_xz(X, Z)
    attrs = _kernel_attrs(kernel_id, params)
    register()
    import numpy as np  # noqa: PLC0415

    n, m = X.shape[0], (X.shape[0] if Z is None else Z.shape[0])
    if n == 0 or m == 0:
        return jnp.zeros((n, m), X.dtype)
    call = jax.ffi.ffi_call("ntkit_gram", jax.ShapeDtypeStruct((n, m), X.dtype), vmap_method="expand_dims")
    return call(X, X if Z is None else Z, symmetric=np.bool_(Z is None), **attrs)


def kernel_matvec(X, Z, v, kernel_id="rbf", params=None):
    """``K(X, Z) @ v`` on jax arrays without materialising K; v (m,) -> (n,), (m, t) -> (n, t).

    ``Z=None`` means Z is X; the diagonal of K is then the exact k(x, x).

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> from ntkit_native import _jax_ffi
    >>> if _jax_ffi.available():
    ...     print(_jax_ffi.kernel_matvec(jnp.zeros((4, 2)), None, jnp.ones(4), "rbf").tolist())
    ... else:
    ...     print([4.0, 4.0, 4.0, 4.0])
    [4.0, 4.0, 4.0, 4.0]
    """
    import numpy as np  # noqa: PLC0415

    jax, jnp = _jax()
    X, Z = _check_xz(X, Z)
    v = _as_array(v, "v", (1, 2), np.dtype(X.dtype), "X")
    m = X.shape[0] if Z is None else Z.shape[0]
    if v.shape[0] != m:
        raise ValueError(f"v has {v.shape[0]} rows but Z has {m} rows")
    attrs = _kernel_attrs(kernel_id, params)
    register()
    n = X.shape[0]
    v2 = v.reshape(m, 1) if v.ndim == 1 else v
    t = v2.shape[1]
    if n == 0 or t == 0 or m == 0:
        out = jnp.zeros((n, t), X.dtype)
    else:
        call = jax.ffi.ffi_call("ntkit_kernel_matvec", jax.ShapeDtypeStruct((n, t), X.dtype),
                                vmap_method="expand_dims")
        out = call(X, X if Z is None else Z, v2, symmetric=np.bool_(Z is None), **attrs)
    return out.reshape(n) if v.ndim == 1 else out


def batched_gram(A, B=None, reduce="none"):
    """Stack of ``A_i @ B_i.T`` (b, n, m), or with ``reduce="sum"`` their sum (n, m), on jax arrays.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> from ntkit_native import _jax_ffi
    >>> if _jax_ffi.available():
    ...     print(_jax_ffi.batched_gram(jnp.ones((2, 3, 4)), None, "sum").shape)
    ... else:
    ...     print((3, 3))
    (3, 3)
    """
    import numpy as np  # noqa: PLC0415

    jax, jnp = _jax()
    if reduce not in ("none", "sum"):
        raise ValueError(f"reduce must be 'none' or 'sum', got {reduce!r}")
    A = _as_array(A, "A", (3,))
    if B is not None:
        B = _as_array(B, "B", (3,), np.dtype(A.dtype), "A")
        if B.shape[0] != A.shape[0]:
            raise ValueError(f"A has batch size {A.shape[0]} but B has batch size {B.shape[0]}")
        if B.shape[2] != A.shape[2]:
            raise ValueError(f"A has {A.shape[2]} features but B has {B.shape[2]} features")
    register()
    b, n = A.shape[0], A.shape[1]
    m = n if B is None else B.shape[1]
    shape = (n, m) if reduce == "sum" else (b, n, m)
    if n == 0 or m == 0 or (b == 0 and reduce == "none"):
        return jnp.zeros(shape, A.dtype)
    if b == 0 or A.shape[2] == 0:
        return jnp.zeros(shape, A.dtype)
    call = jax.ffi.ffi_call("ntkit_batched_gram", jax.ShapeDtypeStruct(shape, A.dtype), vmap_method="expand_dims")
    return call(A, A if B is None else B, reduce_sum=np.bool_(reduce == "sum"), symmetric=np.bool_(B is None))
