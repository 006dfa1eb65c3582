"""Warning categories of ntkit besides :class:`ntkit.NumericalWarning` (in :mod:`ntkit._linalg`)."""

from __future__ import annotations

__all__ = ["PerformanceWarning"]


class PerformanceWarning(UserWarning):
    """A computation will be much slower than it could be.

    For example a memory budget that caps a solver's batch far below its useful size; the message
    says why and how to fix it."""
