"""Library-wide defaults, overridable in a ``with`` block.

>>> import ntkit
>>> with ntkit.config_context(backend="numpy", memory_budget="256MiB"):
...     ntkit.get_config()["backend"]
'numpy'
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import re
from typing import Any

from ._validation import InvalidParameterError

__all__ = ["config_context", "get_config", "parse_memory", "available_memory", "default_memory_budget"]

_BACKENDS = ("auto", "numpy", "jax", "native")
#: The device options of estimators and ``config_context`` (the rule is in :mod:`ntkit._device`).
DEVICES = ("auto", "cpu", "gpu")
_DEFAULTS: dict[str, Any] = {"backend": "auto", "memory_budget": None, "verbose": False, "device": "auto"}
_config: contextvars.ContextVar[dict] = contextvars.ContextVar("ntkit_config", default=_DEFAULTS)

_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "m": 1000**2,
    "mb": 1000**2,
    "g": 1000**3,
    "gb": 1000**3,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}

#: Fraction of the machine's physical memory used when no budget is given (capped at
#: ``_MAX_DEFAULT_BUDGET``). Physical, not currently available, memory: block sizes set the
#: summation order, so a default that moved with other processes' usage would change results
#: in the last bits from run to run.
DEFAULT_BUDGET_FRACTION = 0.25
_MAX_DEFAULT_BUDGET = 8 * 1024**3
_MIN_BUDGET = 16 * 1024**2


def parse_memory(value: Any, name: str = "memory_budget") -> int | None:
    """Parse a memory size: bytes as an int, or a string such as ``"512MiB"`` or ``"2GB"``.

    ``None`` means "use the default". Returns bytes.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise InvalidParameterError(f"{name} must be a number of bytes or a string like '2GiB'; got {value!r}.")
    if isinstance(value, str):
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", value)
        if m is None or m.group(2).lower() not in _UNITS:
            raise InvalidParameterError(
                f"{name} must be a number of bytes or a string like '512MiB', '2GB'; got {value!r}."
            )
        value = float(m.group(1)) * _UNITS[m.group(2).lower()]
    try:
        out = int(value)
    except (TypeError, ValueError):
        raise InvalidParameterError(f"{name} must be a number of bytes or a string like '2GiB'; got {value!r}.") from None
    if out <= 0:
        raise InvalidParameterError(f"{name} must be positive; got {value!r}.")
    return out


def _meminfo(key: str, sysconf_pages: str, fallback: int) -> int:
    """``key`` of ``/proc/meminfo`` in bytes, else ``sysconf`` pages, else ``fallback``."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf(sysconf_pages) * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return fallback


def available_memory() -> int:
    """Bytes of memory currently available (``MemAvailable`` on Linux), or 4 GiB when unknown."""
    return _meminfo("MemAvailable", "SC_AVPHYS_PAGES", 4 * 1024**3)


def total_memory() -> int:
    """Bytes of physical memory (``MemTotal`` on Linux), or 16 GiB when unknown."""
    return _meminfo("MemTotal", "SC_PHYS_PAGES", 16 * 1024**3)


def default_memory_budget() -> int:
    """The budget used when none is given: a quarter of physical memory, between 16 MiB and 8 GiB.

    It depends on the machine only (not on what other processes use at the moment), so that
    repeated runs pick the same block sizes and give bit-identical results."""
    return max(_MIN_BUDGET, min(_MAX_DEFAULT_BUDGET, int(DEFAULT_BUDGET_FRACTION * total_memory())))


def get_config() -> dict:
    """The current configuration (a copy)."""
    return dict(_config.get())


def resolve_budget(memory_budget: Any) -> int:
    """Explicit argument, else the ``config_context`` value, else the default."""
    budget = parse_memory(memory_budget)
    if budget is None:
        budget = parse_memory(_config.get()["memory_budget"])
    return budget if budget is not None else default_memory_budget()


@contextlib.contextmanager
def config_context(*, backend: str | None = None, memory_budget: Any = None, verbose: bool | None = None,
                   device: Any = None):
    """Set ntkit defaults inside a ``with`` block (thread- and async-safe).

    Parameters
    ----------
    backend : {"auto", "numpy", "jax", "native"}, optional
        Backend used by :func:`ntkit.ops.gram` and friends when they are
        called with ``backend="auto"``.
    memory_budget : int or str, optional
        Default workspace budget in bytes (or ``"512MiB"``-style string).
    verbose : bool, optional
        Default for progress reporting.
    device : {"auto", "cpu", "gpu"} or jax.Device, optional
        Where solvers and estimators run numpy data inside the block (see :mod:`ntkit._device`
        for the whole rule): ``"cpu"`` / ``"gpu"`` move the data to that jax device once and
        return numpy results; ``"auto"`` restores the default (jax arrays stay on their device,
        numpy data use the host engines; estimators use a GPU when jax has one).

    Examples
    --------
    >>> import ntkit
    >>> with ntkit.config_context(device="cpu"):
    ...     ntkit.get_config()["device"]
    'cpu'
    """
    new = dict(_config.get())
    if backend is not None:
        if backend not in _BACKENDS:
            raise InvalidParameterError(
                f"The 'backend' parameter of config_context must be one of {_BACKENDS}. Got {backend!r} instead."
            )
        new["backend"] = backend
    if memory_budget is not None:
        parse_memory(memory_budget)
        new["memory_budget"] = memory_budget
    if verbose is not None:
        new["verbose"] = bool(verbose)
    if device is not None:
        new["device"] = _check_option(device, "config_context")
    token = _config.set(new)
    try:
        yield new
    finally:
        _config.reset(token)


def _check_option(device, owner):
    if device is None or isinstance(device, str) and device in DEVICES:
        return device
    if isinstance(device, str) and re.fullmatch(r"(cpu|gpu|cuda|rocm|tpu):\d+", device):
        return device  # "platform:id", as estimators' device_ records it
    if type(device).__name__ == "Device" or hasattr(device, "platform") and hasattr(device, "memory_stats"):
        return device  # a jax.Device
    raise InvalidParameterError(
        f"The 'device' parameter of {owner} must be one of {{'auto', 'cpu', 'gpu'}}, 'platform:id' (e.g. 'gpu:1'), "
        "None or a jax.Device. "
        f"Got {device!r} instead.")
