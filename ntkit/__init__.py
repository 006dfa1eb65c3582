"""ntkit: kernel methods and neural tangent kernels, exact and fast.

The library is built around one primitive, the kernel operator ``K(X, Z)``
evaluated as blocks (:func:`ntkit.ops.gram`) or applied to vectors without
being stored (:func:`ntkit.ops.kernel_matvec`). See ``show_backends()`` for
what this installation can run.
"""

from ._config import config_context, get_config
from ._linalg import NumericalWarning
from ._warnings import PerformanceWarning
from ._validation import InvalidParameterError

__version__ = "0.1.0"

from . import kernels, ops  # noqa: E402
from . import predict, stax  # noqa: E402
from .ntk import linearize, monte_carlo_kernel_fn, taylor_expand  # noqa: E402  (neural-tangents' root names)

__all__ = ["__version__", "config_context", "get_config", "show_backends", "backends_info", "InvalidParameterError",
           "NumericalWarning", "PerformanceWarning", "kernels", "ops", "predict", "stax"]
__all__ += ["linearize", "taylor_expand", "monte_carlo_kernel_fn"]


def backends_info() -> dict:
    """What this installation can run, as a dict (see :func:`show_backends`)."""
    import importlib.util
    import os

    info = {"ntkit": __version__, "numpy": True}
    try:
        import numpy

        info["numpy_version"] = numpy.__version__
    except ImportError:  # pragma: no cover
        pass
    info["jax"] = importlib.util.find_spec("jax") is not None
    try:
        import ntkit_native

        native = ntkit_native.info()
    except Exception as exc:  # never fail here: this is a diagnostic
        native = {"available": False, "error": str(exc)}
    info["native"] = native
    info["default_backend_rule"] = "jax arrays -> jax; else native if built and the kernel is implemented; else numpy"
    if info["jax"]:
        from ._device import devices_info

        try:
            info["devices"] = devices_info()
        except Exception as exc:  # never fail here: this is a diagnostic
            info["devices"] = [{"error": str(exc)}]
    else:
        info["devices"] = []
    info["device_rule"] = ("jax arrays stay on their device; numpy data use the host engines, or the device named "
                           "by device= / config_context(device=...); estimators' 'auto' uses a GPU when jax has one")
    info["cpu_count"] = os.cpu_count()
    return info


def show_backends(file=None) -> dict:
    """Print (and return) which backends are built: native CPU/CUDA, OpenMP threads, BLAS, jax.

    >>> info = show_backends(file=open("/dev/null", "w"))
    >>> "native" in info
    True
    """
    import sys

    info = backends_info()
    out = file or sys.stdout
    native = info["native"]
    lines = [f"ntkit {info['ntkit']}", f"  numpy  : {info.get('numpy_version', '?')}"]
    lines.append(f"  jax    : {'installed' if info['jax'] else 'not installed'}")
    if native.get("available"):
        cuda = "yes" if native.get("cuda_compiled") else "no"
        devs = native.get("cuda_devices", 0)
        lines.append(
            f"  native : built (OpenMP {'on' if native.get('openmp') else 'off'}, "
            f"{native.get('omp_max_threads', '?')} threads, BLAS {native.get('blas', '?')}; "
            f"CUDA compiled: {cuda}, devices: {devs})"
        )
        ffi = native.get("ffi_platforms") or []
        lines.append(f"  ffi    : {'XLA custom calls on ' + ', '.join(ffi) if native.get('ffi') else 'not built'} "
                     "(backend='native' with jax arrays)")
    else:
        lines.append(f"  native : not available ({native.get('error', 'extension not built')})")
    lines.append(f"  auto   : {info['default_backend_rule']}")
    for d in info.get("devices", []):
        if "error" in d:
            lines.append(f"  device : unavailable ({d['error']})")
            continue
        mem = (f", {d['bytes_limit'] / 2**30:.1f} GiB pool ({d['bytes_in_use'] / 2**30:.1f} in use)"
               if "bytes_limit" in d else "")
        lines.append(f"  device : jax {d['platform']}:{d['id']} {d['kind']}{mem}")
    lines.append(f"  devices: {info['device_rule']}")
    print("\n".join(lines), file=out)
    return info
