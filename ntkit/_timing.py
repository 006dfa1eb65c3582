"""Wall-clock timing shared by the tour and the benchmarks."""

from __future__ import annotations

import time


def best_time(fn, repeats=3, warmup=0) -> float:
    """Best of ``repeats`` calls of ``fn()`` in seconds, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best
