"""Shared timing, memory and table helpers for ``make bench``.

Timings are the best of ``repeats`` runs after one warm-up (jax compiles on the
first call). Peak memory is measured in a fresh subprocess from the kernel's
``ru_maxrss`` high-water mark minus the mark after the inputs were allocated.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time

import numpy as np

from ntkit._timing import best_time as _best_time

from _rss import RssSampler  # noqa: F401  (re-exported: benchmarks import it from here)


def best_time(fn, repeats=3, warmup=1):
    """Best of ``repeats`` timed calls after one warm-up (jax compiles on the first call)."""
    return _best_time(fn, repeats, warmup)


def peak_memory_subprocess(code: str, timeout=1800) -> dict:
    """Run ``code`` in a fresh interpreter; it must print one JSON line (its own measurements)."""
    env = dict(os.environ)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, env=env)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        from threadpoolctl import threadpool_info

        blas = ", ".join(f"{i['internal_api']} {i.get('version', '')} ({i['num_threads']} threads)"
                         for i in threadpool_info() if i["user_api"] == "blas")
    except Exception:  # pragma: no cover - diagnostics only
        blas = "unknown"
    import ntkit

    native = ntkit.backends_info()["native"]
    nat = (f"native: OpenMP {native.get('omp_max_threads')} threads, BLAS {native.get('blas')}"
           if native.get("available") else "native: not built")
    return (f"{cpu}, {os.cpu_count()} cores; numpy {np.__version__} ({blas}); {nat}; "
            f"{time.strftime('%Y-%m-%d')}")


def table(header, rows) -> str:
    out = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def fmt_s(t):
    return f"{t * 1e3:.1f} ms" if t < 1 else f"{t:.2f} s"
