"""Where work runs: the one place that decides a computation's device and its memory budget.

ntkit computes where the data lives. The rule, applied by every solver, estimator and feature
map (and nowhere else re-implemented):

``device=None`` (solvers: *follow the data*)
    jax arrays in → the device of those arrays (jax out, on that device). numpy in → the host
    engines (numpy / native C++), numpy out — unless ``ntkit.config_context(device=...)`` names
    a device for the block, which then applies as if passed explicitly. (:mod:`ntkit.ops` always
    follows the data: numpy in runs on the host whatever the context says.)
``device="auto"`` (the estimators' default)
    the ``config_context`` device if one is set; else jax's default device when it is an
    accelerator (a GPU), else the host engines. On a machine without a GPU, "auto" is therefore
    exactly the host path ntkit always had. Estimators take and return numpy (scikit-learn's
    validation converts jax input); the solvers are the jax-in, jax-out interface.
``device="cpu"`` / ``"gpu"`` / ``"gpu:1"`` (platform:id) / a ``jax.Device``
    That jax device: numpy data are moved there once, the work is jit-compiled jax on device
    arrays, and numpy callers get numpy back. ``"gpu"`` without a GPU visible to jax is an error
    that says how to get one.

Memory budgets on a device come from the device's own allocator, not from host RAM:
:func:`device_budget` is a quarter of the memory XLA may use on that device (``bytes_limit`` of
``Device.memory_stats()``), capped at 80% of what is free in it at the moment. XLA by default
*preallocates* 75% of a GPU's memory for its pool (``XLA_PYTHON_CLIENT_PREALLOCATE``,
``XLA_PYTHON_CLIENT_MEM_FRACTION``); ntkit never changes those settings — it plans its blocks
inside whatever pool the user configured.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from ._config import DEVICES, _check_option  # noqa: F401  (re-exported: the option check lives with the config)
from ._validation import is_jax_array

__all__ = ["Placement", "resolve_device", "device_budget", "devices_info", "to_device", "device_name",
           "device_from_name", "DEVICES"]

#: Fraction of a device's XLA memory pool used as the default budget, and of its free part.
DEVICE_BUDGET_FRACTION = 0.25
DEVICE_FREE_FRACTION = 0.8


class Placement(NamedTuple):
    """The resolved place of a computation.

    ``device`` is a ``jax.Device`` (jax path) or None (host path: numpy / native engines);
    ``jax_out`` says whether results are returned as jax arrays (the input was jax).
    """

    device: Any
    jax_out: bool

    @property
    def on_device(self) -> bool:
        return self.device is not None

    @property
    def platform(self) -> str:
        return "host" if self.device is None else self.device.platform


def _named_device(name: str):
    import jax

    if name == "cpu":
        return jax.devices("cpu")[0]
    try:
        gpus = jax.devices("gpu")
    except RuntimeError:
        gpus = []
    if not gpus:
        raise RuntimeError(
            "device='gpu' was requested but jax sees no GPU (jax.devices() lists "
            f"{[d.platform for d in jax.devices()]}). Install a CUDA build of jax (pip install 'jax[cuda13]') "
            "on a machine with an NVIDIA GPU, or use device='cpu' / 'auto'.")
    return gpus[0]


def _array_device(a):
    devs = a.devices() if hasattr(a, "devices") else {a.device}
    return sorted(devs, key=lambda d: d.id)[0]


def resolve_device(device=None, *arrays, owner: str = "ntkit") -> Placement:
    """Apply the documented rule (module docstring) to ``device`` and the input ``arrays``.

    Examples
    --------
    >>> import numpy as np
    >>> from ntkit._device import resolve_device
    >>> resolve_device(None, np.zeros((2, 2))).device is None   # numpy in: the host engines
    True
    """
    from ._config import _config

    device = _check_option(device, owner)
    jax_in = any(is_jax_array(a) for a in arrays if a is not None)
    if device is None or device == "auto":
        if jax_in:
            first = next(a for a in arrays if a is not None and is_jax_array(a))
            return Placement(_array_device(first), True)
        cfg = _config.get().get("device", "auto")
        if cfg not in (None, "auto"):
            device = cfg
        elif device == "auto":
            import jax

            dev = jax.devices()[0]
            return Placement(dev if dev.platform != "cpu" else None, False)
        else:
            return Placement(None, False)
    if isinstance(device, str):
        device = device_from_name(device) if ":" in device else _named_device(device)
    return Placement(device, jax_in)


def to_device(a, placement: Placement, dtype=None):
    """``a`` as a jax array on the placement's device (one explicit transfer when it is not there)."""
    import jax
    import jax.numpy as jnp

    if a is None:
        return None
    if is_jax_array(a):
        if dtype is not None and np.dtype(a.dtype) != np.dtype(dtype):
            a = a.astype(dtype)
        if _array_device(a) == placement.device:
            return a
        return jax.device_put(a, placement.device)
    arr = np.asarray(a) if dtype is None else np.asarray(a, dtype=dtype)
    return jax.device_put(arr, placement.device)


def device_budget(device, memory_budget=None) -> int:
    """Bytes of workspace for blocks on ``device`` (a ``jax.Device``; None = host).

    An explicit ``memory_budget`` (or ``config_context(memory_budget=...)``) wins. Otherwise, on a
    device whose allocator reports its limits (GPUs): ``min(0.25 · bytes_limit, 0.8 · free)``,
    where ``bytes_limit`` is XLA's pool on that device; on the host or a jax CPU device: the host
    default (:func:`ntkit._config.default_memory_budget`).
    """
    from ._config import _config, parse_memory, resolve_budget

    explicit = parse_memory(memory_budget)
    if explicit is None:
        explicit = parse_memory(_config.get()["memory_budget"])
    if explicit is not None or device is None:
        return resolve_budget(explicit)
    stats = None
    try:
        stats = device.memory_stats()
    except Exception:  # noqa: BLE001  (backends without allocator statistics)
        stats = None
    if not stats or "bytes_limit" not in stats:
        return resolve_budget(None)
    limit = int(stats["bytes_limit"])
    free = limit - int(stats.get("bytes_in_use", 0))
    return max(16 * 1024**2, int(min(DEVICE_BUDGET_FRACTION * limit, DEVICE_FREE_FRACTION * free)))


def devices_info() -> list[dict]:
    """The devices jax sees (platform, kind, memory), for :func:`ntkit.show_backends`; empty without jax."""
    try:
        import jax
    except ImportError:
        return []
    out = []
    for d in jax.devices() + ([] if jax.default_backend() == "cpu" else jax.devices("cpu")[:1]):
        rec = {"id": d.id, "platform": d.platform, "kind": getattr(d, "device_kind", "?")}
        try:
            stats = d.memory_stats()
        except Exception:  # noqa: BLE001
            stats = None
        if stats and "bytes_limit" in stats:
            rec["bytes_limit"] = int(stats["bytes_limit"])
            rec["bytes_in_use"] = int(stats.get("bytes_in_use", 0))
        out.append(rec)
    return out


def device_name(device) -> str | None:
    """A picklable name for a placement's device (``"gpu:0"``), or None for the host engines."""
    return None if device is None else f"{device.platform}:{device.id}"


def device_from_name(name):
    """The jax device a :func:`device_name` names (None → None, the host engines)."""
    if name is None:
        return None
    import jax

    platform, _, idx = name.partition(":")
    try:
        devs = jax.devices("gpu" if platform == "cuda" else platform)
    except RuntimeError:
        devs = []
    for d in devs:
        if str(d.id) == idx:
            return d
    seen = [f"{d.platform}:{d.id}" for d in jax.devices()]
    raise RuntimeError(f"jax device {name!r} is not among the devices this process sees ({', '.join(seen)}); name "
                       "one of those (an estimator fitted elsewhere: refit it, or set its device parameter).")
