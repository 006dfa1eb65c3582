"""Bad-input fuzzing: entry-point tables, input mutations, the oracle and a crash-proof worker.

An *entry point* (:class:`Entry`) is one public callable (a function, or a class and one of its
methods) with a builder of clean arguments. A *case* is plain data (entry name, seed, sizes,
one mutation), drawn by hypothesis in the test process (or by :class:`RandDraw` in a campaign)
and executed by a worker subprocess, so a segfault or a hang in native code fails the test
that drew the case instead of killing the run.

Oracle, for each case (see :func:`run_case`):

* clean input (no mutation) -> a result of the documented shape, finite (a ValueError or
  TypeError is accepted only at edge sizes, e.g. zero rows);
* ``BENIGN`` mutations (float32, non-contiguous, Fortran order, read-only, sparse) -> the
  same result as the clean float64 input, within a dtype-aware tolerance;
* ``CONVERTIBLE`` mutations (int, bool, float16, object, list, integral floats) -> that
  result, or a ValueError/TypeError that names the argument;
* every other mutation (NaN, Inf, complex, wrong rank, mismatched dimensions, strings,
  out-of-range indices, invalid hyper-parameters) -> a ValueError/TypeError naming the
  argument (or, for a mismatch, its partner).

Any other exception type (IndexError, ZeroDivisionError, AttributeError, LinAlgError, jax
errors...), a non-finite result from finite input or a wrong shape fails the case.

Environment: ``NTKIT_FUZZ_EXAMPLES`` (examples per entry point, default ``CI_EXAMPLES``, scaled by
``Entry.weight``), ``NTKIT_FUZZ_RANDOM=1`` (fresh random examples instead of the derandomized CI
ones), ``NTKIT_FUZZ_KNOWN=1`` (also draw the documented, unfixed failures of ``Entry.known`` /
``Entry.known_errors``).

Run ``python -m tests.reliability._fuzz campaign tests.reliability.test_bad_input --cases 2000``
for a long campaign that records every distinct failure instead of stopping at the first (and
counts cases per entry point); ``python -m tests.reliability._fuzz replay MODULE 'CASE'`` re-runs
one case in-process.
"""

from __future__ import annotations

import collections
import dataclasses
import importlib
import json
import os
import pickle
import random
import re
import select
import struct
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path
from typing import Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[2]

# ----------------------------------------------------------------------------- settings
#: Examples per entry point in CI (scaled by ``Entry.weight``); ``NTKIT_FUZZ_EXAMPLES`` overrides.
CI_EXAMPLES = 30


def n_examples(weight: float) -> int:
    base = int(os.environ.get("NTKIT_FUZZ_EXAMPLES", CI_EXAMPLES))
    return max(2, int(round(base * weight)))


def fuzz_settings(entry: "Entry"):
    """The hypothesis settings of one entry point: the ``ntkit-fuzz`` profile with its example count.

    Deterministic (``derandomize=True``) and without a database in CI; set
    ``NTKIT_FUZZ_RANDOM=1`` for fresh random cases on every run.
    """
    from hypothesis import HealthCheck, settings

    # registered, not loaded: the rest of the test suite keeps its own hypothesis settings
    settings.register_profile(
        "ntkit-fuzz", deadline=None, derandomize=os.environ.get("NTKIT_FUZZ_RANDOM", "0") != "1", database=None,
        print_blob=True, suppress_health_check=list(HealthCheck))
    return settings(settings.get_profile("ntkit-fuzz"), max_examples=n_examples(entry.weight))


# ----------------------------------------------------------------------------- table types
@dataclasses.dataclass(frozen=True)
class Arg:
    """A mutable array argument: allowed ranks, kind of content, other names its errors may use."""

    ndim: tuple = (2,)
    kind: str = "float"  # "float" | "index" | "label" | "adjacency"
    names: tuple = ()  # aliases accepted in error messages
    skip: tuple = ()  # mutation kinds that do not apply
    extra: tuple = ()  # further (bad) mutation kinds, e.g. "negative" for eigenvalues
    high: str | None = None  # for "index": the dims key bounding the valid range


@dataclasses.dataclass
class Entry:
    """One public entry point and how to feed it.

    ``build(rng, dims, hp)`` returns a dict of clean arguments (numpy float64 arrays for the
    mutable ones; fresh objects each time); ``call(args)`` runs the entry point;
    ``out(args, dims, result)`` returns ``[(label, array, expected_shape)]`` (``None`` in a
    shape is a wildcard) for the checks.
    """

    name: str
    covers: tuple
    build: Callable
    call: Callable
    out: Callable
    arrays: dict
    dims: dict
    mismatch: tuple = ()  # (arg, axis, partner)
    params: dict = dataclasses.field(default_factory=dict)  # hyper-parameter -> list of invalid values
    #: hyper-parameter -> extreme but valid values: finite result or an error naming the parameter
    special_params: dict = dataclasses.field(default_factory=dict)
    may_raise: tuple = ()  # BENIGN kinds that may raise (naming the argument) instead of matching
    bad_ok: tuple = ()  # bad kinds that may also succeed (e.g. "ndim_up" where a higher rank is valid)
    edge_ok: Callable | None = None  # dims -> True when a clean ValueError/TypeError is acceptable
    #: known failures left unfixed (in code this suite may not change), not drawn in CI: keys are
    #: "arg:kind" ("y:mismatch" for any mismatch of y; "param:name" for a hyper-parameter); values the reason
    known: dict = dataclasses.field(default_factory=dict)
    #: known wrong exceptions (regex on the message -> reason), accepted unless NTKIT_FUZZ_KNOWN=1
    known_errors: dict = dataclasses.field(default_factory=dict)
    #: extra accepted names in messages for a hyper-parameter mutation (e.g. "params" -> "parameter")
    param_aliases: dict = dataclasses.field(default_factory=dict)
    #: ``check(args, dims, result) -> None or why``: an oracle for successful calls on finite input
    check: Callable | None = None
    #: with every float input float32 ("all_f32"), every float output must be float32 too
    f32_out: bool = False
    compare: bool = True
    #: compare dtype-cast inputs too (off for ill-posed problems whose solution, not just its
    #: rounding, moves with a 1e-7 perturbation of the data: iterative solvers on tiny kernels)
    compare_cast: bool = True
    rtol: float = 1e-6
    rtol_cast: float = 2e-2
    finite: bool = True
    weight: float = 1.0
    timeout: float = 120.0


# ----------------------------------------------------------------------------- mutation kinds
LAYOUT = ("noncontig", "fortran", "readonly", "unaligned", "byteswapped")
BENIGN = frozenset({"f32", "all_f32", "noncontig", "fortran", "readonly", "unaligned", "byteswapped", "sparse"})
CONVERTIBLE = frozenset({"int", "bool", "f16", "object", "list", "float_int"})
#: valid but numerically special values: the call must succeed (finite, right shape, ``check``) or
#: reject them naming the argument
SPECIAL = frozenset({"zero_row", "dup_rows", "large", "zero_stride"})
KINDS = {
    "float": ("f32",) + LAYOUT + ("int", "bool", "f16", "object", "list", "nan", "inf", "complex", "ndim_up",
                                  "ndim_down", "string", "zero_row", "dup_rows", "zero_stride", "structured",
                                  "datetime"),
    "index": LAYOUT + ("list", "float_int", "float_frac", "negative", "out_of_range", "complex", "ndim_up", "ndim_down",
                       "string"),
    "label": LAYOUT + ("list", "float_int", "object", "nan", "complex", "ndim_down", "string"),
    "adjacency": ("f32",) + LAYOUT + ("int", "bool", "object", "list", "sparse", "nan", "inf", "complex", "negative",
                                      "asymmetric", "ndim_up", "ndim_down", "string"),
}

ALLOWED = (ValueError, TypeError)


# ----------------------------------------------------------------------------- drawing
class HypDraw:
    """Draws from a hypothesis ``st.data()`` object."""

    def __init__(self, data):
        from hypothesis import strategies as st

        self.data, self.st = data, st

    def integers(self, lo, hi):
        return self.data.draw(self.st.integers(lo, hi))

    def choice(self, seq):
        return self.data.draw(self.st.sampled_from(list(seq)))


class RandDraw:
    """Draws from ``random.Random`` (campaigns: many cases, no shrinking)."""

    def __init__(self, rnd: random.Random):
        self.rnd = rnd

    def integers(self, lo, hi):
        if hi - lo > 64 and self.rnd.random() < 0.5:
            return self.rnd.randint(lo, lo + 8)
        return self.rnd.randint(lo, hi)

    def choice(self, seq):
        return self.rnd.choice(list(seq))


def mutation_options(entry: Entry, include_known: bool | None = None):
    """Every (array or hyper-parameter) mutation of an entry; known failures only when asked
    (``NTKIT_FUZZ_KNOWN=1``), so CI stays green on them while campaigns still count them."""
    if include_known is None:
        include_known = os.environ.get("NTKIT_FUZZ_KNOWN", "0") == "1"
    known = set() if include_known else set(entry.known)
    opts = []
    for name, arg in sorted(entry.arrays.items()):
        for kind in KINDS[arg.kind] + tuple(arg.extra):
            if kind not in arg.skip and f"{name}:{kind}" not in known:
                opts.append(("arr", name, kind))
        for a, axis, partner in entry.mismatch:
            if a == name and f"{name}:mismatch" not in known:
                opts.append(("arr", name, f"mismatch:{axis}:{partner}"))
    if entry.f32_out and "all_f32" not in known:
        opts.append(("arr", "*", "all_f32"))
    for name, bad in sorted(entry.params.items()):
        if f"param:{name}" not in known:
            for i in range(len(bad)):
                opts.append(("param", name, i))
    for name, vals in sorted(entry.special_params.items()):
        if f"sparam:{name}" not in known:
            for i in range(len(vals)):
                opts.append(("sparam", name, i))
    return opts


def draw_case(entry: Entry, draw) -> dict:
    seed = draw.integers(0, 2**32 - 1)
    dims = {k: draw.integers(lo, hi) for k, (lo, hi) in sorted(entry.dims.items())}
    mut = None
    if draw.choice(("clean", "mutate", "mutate", "mutate", "mutate", "mutate")) == "mutate":
        opt = draw.choice(mutation_options(entry))
        mut = opt + (draw.integers(0, 2**16),) if opt[0] == "arr" else opt
    return {"entry": entry.name, "seed": seed, "dims": dims, "mut": mut}


# ----------------------------------------------------------------------------- mutations
def _noncontig(a):
    """A strided view with the values of ``a`` (every other element along each axis)."""
    if a.ndim == 0:
        return a.copy()
    big = np.zeros(tuple(2 * s + 1 for s in a.shape), dtype=a.dtype)
    view = big[tuple(slice(1, None, 2) for _ in a.shape)]
    view[...] = a
    return view


def mutate(value, arg: Arg, kind: str, k: int, dims: dict):
    """``(mutated, reference, void)``: the mutated value, the float64 equivalent (for benign and
    convertible kinds; None otherwise) and whether the mutation could not apply."""
    rnd = random.Random(k)
    if value is None or not isinstance(value, np.ndarray):
        return value, None, True
    a = value
    if kind.startswith("mismatch:"):
        _, axis, _ = kind.split(":")
        axis = int(axis)
        if axis >= a.ndim:
            return value, None, True
        extra = np.take(a, [0], axis=axis) if a.shape[axis] else np.ones(a.shape[:axis] + (1,) + a.shape[axis + 1:],
                                                                            a.dtype)
        if arg.kind == "float":
            extra = extra + 0.5
        return np.concatenate([a, extra], axis=axis), None, False
    if kind == "f32":
        m = a.astype(np.float32)
        return m, m.astype(np.float64), False
    if kind == "f16":
        m = a.astype(np.float16)
        return m, m.astype(np.float64), False
    if kind == "int":
        m = np.rint(a).astype(np.int64) if arg.kind == "adjacency" else np.rint(2 * a).astype(np.int64)
        return m, m.astype(np.float64), False
    if kind == "bool":
        m = a > (0.5 if arg.kind == "adjacency" else 0)
        return m, m.astype(np.float64), False
    if kind == "object":
        return a.astype(object), a, False
    if kind == "list":
        if a.ndim > 1 and a.size == 0:
            return value, None, True  # [] loses the shape
        return a.tolist(), a, False
    if kind == "noncontig":
        return _noncontig(a), a, False
    if kind == "fortran":
        if a.ndim < 2 or a.size < 2:
            return value, None, True
        return np.asfortranarray(a), a, False
    if kind == "readonly":
        m = a.copy()
        m.flags.writeable = False
        return m, a, False
    if kind == "unaligned":  # same values in a buffer offset by one byte (as unpickled data can be)
        if a.dtype.itemsize < 2 or a.size == 0:
            return value, None, True
        buf = np.empty(a.nbytes + 1, dtype=np.uint8)
        m = np.frombuffer(buf[1:].data, dtype=a.dtype, count=a.size).reshape(a.shape)
        m[...] = a
        return m, a, False
    if kind == "byteswapped":  # same values, non-native byte order
        if a.dtype.kind not in "fiu" or a.dtype.itemsize < 2:
            return value, None, True
        return a.astype(a.dtype.newbyteorder()), a, False
    if kind == "zero_stride":  # every row the first one, as a read-only view with stride 0 (np.broadcast_to)
        if a.ndim == 0 or a.shape[0] < 2:
            return value, None, True
        return np.broadcast_to(a[:1], a.shape), None, False
    if kind == "structured":  # a record dtype: not numbers at all
        return np.zeros(a.shape, dtype=[("x", "f8")]), None, False
    if kind == "datetime":
        return np.zeros(a.shape, dtype="datetime64[s]"), None, False
    if kind in ("zero_row", "dup_rows", "large"):
        if a.size == 0 or a.ndim == 0 or a.dtype.kind != "f":
            return value, None, True
        m = a.copy()
        if kind == "zero_row":
            m[rnd.randrange(a.shape[0])] = 0
        elif kind == "dup_rows":
            if a.shape[0] < 2:
                return value, None, True
            m[1:] = m[0]
        else:
            m *= 1e3
        return m, None, False
    if kind == "sparse":
        import scipy.sparse as sp

        if a.ndim != 2:
            return value, None, True
        return sp.csr_matrix(a), a, False
    if kind == "float_int":
        return a.astype(np.float64), a, False
    if kind in ("nan", "inf"):
        if a.size == 0:
            return value, None, True
        m = a.astype(np.float64) if a.dtype.kind != "f" else a.copy()
        bad = np.nan if kind == "nan" else rnd.choice([np.inf, -np.inf])
        idx = rnd.randrange(a.size)
        if arg.kind == "adjacency":  # keep it symmetric so only the non-finite entry is wrong
            i, j = np.unravel_index(idx, a.shape)
            m[i, j] = m[j, i] = bad
        else:
            m.flat[idx] = bad
        return m, None, False
    if kind == "complex":
        return a + 1j * (1.0 + np.abs(np.random.default_rng(k).standard_normal(a.shape))), None, False
    if kind == "ndim_up":
        m = a[None] if rnd.random() < 0.5 else a[..., None]
        if m.ndim in arg.ndim:
            return value, None, True
        return m, None, False
    if kind == "ndim_down":
        if a.ndim == 0:
            return value, None, True
        m = a.reshape(-1) if a.ndim >= 2 else (a[0] if a.size else np.asarray(0.0, a.dtype))
        if a.ndim > 2:
            m = a.reshape((a.shape[0] * a.shape[1],) + a.shape[2:])
        if m.ndim in arg.ndim:
            return value, None, True
        return np.asarray(m), None, False
    if kind == "string":
        return "not an array", None, False
    if kind == "float_frac":
        if a.size == 0:
            return value, None, True
        m = a.astype(np.float64)
        m.flat[rnd.randrange(a.size)] += 0.5
        return m, None, False
    if kind == "negative":
        if a.size == 0:
            return value, None, True
        m = a.copy()
        if arg.kind == "adjacency":
            i, j = np.unravel_index(rnd.randrange(a.size), a.shape)
            m[i, j] = m[j, i] = -1.0
        else:
            m.flat[rnd.randrange(a.size)] = -1 - rnd.randrange(3)
        return m, None, False
    if kind == "out_of_range":
        if a.size == 0 or arg.high is None:
            return value, None, True
        m = a.copy()
        m.flat[rnd.randrange(a.size)] = dims[arg.high] + 1 + rnd.randrange(3)
        return m, None, False
    if kind == "asymmetric":
        if a.ndim != 2 or a.shape[0] < 2 or a.shape[0] != a.shape[1]:
            return value, None, True
        m = a.copy()
        m[0, 1] += 1.0
        m[1, 0] = 0.0
        return m, None, False
    raise KeyError(kind)


# ----------------------------------------------------------------------------- the oracle
def names_arg(msg: str, names) -> bool:
    for n in names:
        if re.search(r"(?<![A-Za-z0-9_])" + re.escape(n) + r"(?![A-Za-z0-9_])", msg):
            return True
    return False


def _short(exc: BaseException, limit=6) -> str:
    tb = traceback.format_exception(type(exc), exc, exc.__traceback__)
    tail = "".join(tb[-limit:])
    return tail[-3000:]


def _call(entry, args):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with np.errstate(all="ignore"):
            try:
                return entry.call(args), None
            except BaseException as exc:  # noqa: BLE001 - classified by the oracle
                if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                    raise
                return None, exc


def _arrays_of(entry, args, dims, res):
    items = entry.out(args, dims, res)
    out = []
    for label, arr, shape in items:
        if hasattr(arr, "toarray"):
            arr = arr.toarray()
        out.append((label, np.asarray(arr), shape))
    return out


def _bad_exception(exc) -> bool:
    """Types that never count as a proper input error, even when they subclass ValueError."""
    return isinstance(exc, np.linalg.LinAlgError) or type(exc).__module__.startswith(("jax", "jaxlib"))


def _check_result(entry, args, dims, res, ctx):
    try:
        items = _arrays_of(entry, args, dims, res)
    except BaseException as exc:  # noqa: BLE001
        return f"{ctx}: reading the result failed: {_short(exc)}"
    for label, arr, shape in items:
        if shape is not None:
            ok = arr.ndim == len(shape) and all(s is None or s == t for s, t in zip(shape, arr.shape))
            if not ok:
                return f"{ctx}: wrong shape for {label}: expected {shape}, got {arr.shape}"
        if entry.finite and arr.dtype.kind in "fc" and arr.size and not np.all(np.isfinite(arr)):
            return f"{ctx}: non-finite values in {label} from finite input: {arr!r}"[:3000]
    return None


def _compare(entry, items, ref_items, rtol, ctx, cast=False):
    for (label, a, _), (_, b, _) in zip(items, ref_items):
        if a.shape != b.shape:
            return f"{ctx}: {label} has shape {a.shape}, the clean input gives {b.shape}"
        if a.dtype.kind not in "fciub" or b.dtype.kind not in "fciub":
            if not np.array_equal(a, b):
                return f"{ctx}: {label} differs from the clean input's result"
            continue
        a64, b64 = a.astype(np.complex128 if a.dtype.kind == "c" else np.float64), b.astype(
            np.complex128 if b.dtype.kind == "c" else np.float64)
        scale = float(np.max(np.abs(b64))) if b64.size else 1.0
        # a dtype cast perturbs the inputs: an entry that is exactly 0 in float64 may be ~1e-7 in float32
        atol = rtol * (max(scale, 1.0) if cast else max(scale, 1e-300))
        if not np.allclose(a64, b64, rtol=rtol, atol=atol, equal_nan=True):
            err = float(np.max(np.abs(a64 - b64))) if a64.size else 0.0
            return (f"{ctx}: {label} differs from the clean float64 input's result (max abs diff {err:.3g}, "
                    f"scale {scale:.3g}, rtol {rtol})")
    return None


def run_case(entry: Entry, case: dict) -> tuple[str, str]:
    """Execute one case and judge it: ``("ok", "")`` or ``("fail", why)``."""
    dims, seed, mut = case["dims"], case["seed"], case["mut"]
    hp, category, names, kind, target = {}, "clean", (), None, None
    if mut is not None and mut[0] == "param":
        name = mut[1]
        hp = {name: entry.params[name][mut[2]]}
        category, names, kind = "bad", (name,) + tuple(entry.param_aliases.get(name, ())), f"param {name}={hp[name]!r}"
    elif mut is not None and mut[0] == "sparam":
        name = mut[1]
        hp = {name: entry.special_params[name][mut[2]]}
        category, names, kind = "special", (name,), f"extreme {name}={hp[name]!r}"
    args = entry.build(np.random.default_rng(seed), dims, hp)
    ref_value = None
    all_f32 = mut is not None and mut[0] == "arr" and mut[2] == "all_f32"
    if all_f32:  # every float array argument float32 (the native engine never mixes dtypes)
        _, target, kind, k = mut
        floats = [n for n, v in args.items() if isinstance(v, np.ndarray) and v.dtype.kind == "f" and n in entry.arrays]
        ref_value = {n: args[n].astype(np.float32).astype(np.float64) for n in floats}
        for n in floats:
            args[n] = args[n].astype(np.float32)
        names, category = tuple(floats), "benign" if floats else "clean"
    elif mut is not None and mut[0] == "arr":
        _, target, kind, k = mut
        arg = entry.arrays[target]
        new, ref_value, void = mutate(args.get(target), arg, kind, k, dims)
        if kind.startswith("mismatch:") and args.get(kind.split(":")[2]) is None:
            void = True  # the partner is absent (e.g. Z=None): nothing to mismatch with
        if not void:
            args[target] = new
            names = (target,) + tuple(arg.names)
            if kind.startswith("mismatch:"):
                partner = kind.split(":")[2]
                names += (partner,) + tuple(entry.arrays[partner].names if partner in entry.arrays else ())
                category = "bad"
            elif kind in BENIGN:
                category = "benign"
            elif kind in CONVERTIBLE:
                category = "convertible"
            elif kind in SPECIAL:
                category = "special"
            else:
                category = "bad"
            if (kind in entry.bad_ok or kind.split(":")[0] in entry.bad_ok) and category == "bad":
                category = "bad_ok"
    ctx = f"[{entry.name}] {category} case, mutation {kind or 'none'} of {target or '-'}"
    res, exc = _call(entry, args)
    if exc is not None and os.environ.get("NTKIT_FUZZ_KNOWN", "0") != "1" and any(
            re.search(pat, str(exc)) for pat in entry.known_errors):
        return "ok", ""  # a documented, unfixed bug (see Entry.known_errors)

    def ref_items():
        rargs = entry.build(np.random.default_rng(seed), dims, hp)
        if all_f32:
            rargs.update(ref_value)
        elif ref_value is not None:
            rargs[target] = ref_value
        rres, rexc = _call(entry, rargs)
        return rres, rexc, rargs

    def known_exc(e):
        return e is not None and os.environ.get("NTKIT_FUZZ_KNOWN", "0") != "1" and any(
            re.search(pat, str(e)) for pat in entry.known_errors)

    def clean_raises():
        """The unmutated input is itself rejected (edge sizes): then any proper input error will do."""
        if entry.edge_ok is None or not entry.edge_ok(dims):
            return False
        _, cexc = _call(entry, entry.build(np.random.default_rng(seed), dims, {}))
        return cexc is not None and isinstance(cexc, ALLOWED) and not _bad_exception(cexc)

    if category in ("bad", "bad_ok"):
        if exc is None:
            if category == "bad_ok":
                return ("ok", "") if (msg := _check_result(entry, args, dims, res, ctx)) is None else ("fail", msg)
            return "fail", f"{ctx}: no error was raised; the call returned {type(res).__name__}"
        if not isinstance(exc, ALLOWED) or _bad_exception(exc):
            return "fail", f"{ctx}: raised {type(exc).__name__} instead of ValueError/TypeError:\n{_short(exc)}"
        if not names_arg(str(exc), names) and not clean_raises():
            return "fail", f"{ctx}: the {type(exc).__name__} does not name {names[0]!r}: {str(exc)[:600]!r}"
        return "ok", ""
    if exc is not None:
        if not isinstance(exc, ALLOWED) or _bad_exception(exc):
            return "fail", f"{ctx}: raised {type(exc).__name__}:\n{_short(exc)}"
        if category == "special":
            if names_arg(str(exc), names) or clean_raises():
                return "ok", ""
            return "fail", f"{ctx}: the {type(exc).__name__} does not name {names[0]!r}: {str(exc)[:600]!r}"
        if category == "clean":
            if entry.edge_ok is not None and entry.edge_ok(dims):
                return "ok", ""
            return "fail", f"{ctx}: clean input raised {type(exc).__name__}:\n{_short(exc)}"
        # benign / convertible: raising is acceptable when the clean input raises too
        rres, rexc, _ = ref_items()
        if known_exc(rexc):
            return "ok", ""
        if rexc is not None:
            if isinstance(rexc, ALLOWED) and not _bad_exception(rexc):
                return "ok", ""
            return "fail", f"{ctx}: the clean input raised {type(rexc).__name__}:\n{_short(rexc)}"
        if category == "benign" and kind not in entry.may_raise:
            return "fail", f"{ctx}: raised {type(exc).__name__} although the clean input works:\n{_short(exc)}"
        if not names_arg(str(exc), names):
            return "fail", f"{ctx}: the {type(exc).__name__} does not name {names[0]!r}: {str(exc)[:600]!r}"
        return "ok", ""
    msg = _check_result(entry, args, dims, res, ctx)
    if msg is not None:
        return "fail", msg
    if entry.check is not None:
        try:
            why = entry.check(args, dims, res)
        except BaseException as cexc:  # noqa: BLE001
            why = f"the oracle failed: {_short(cexc)}"
        if why:
            return "fail", f"{ctx}: wrong result: {why}"
    if all_f32 and entry.f32_out:
        for label, arr, _ in _arrays_of(entry, args, dims, res):
            if arr.dtype.kind == "f" and arr.dtype != np.float32:
                return "fail", f"{ctx}: float32 in, but {label} is {arr.dtype} (dtype in = dtype out)"
    cast = kind not in LAYOUT + ("object", "list", "float_int", "sparse")
    if category in ("benign", "convertible") and entry.compare and (entry.compare_cast or not cast):
        rres, rexc, rargs = ref_items()
        if known_exc(rexc):
            return "ok", ""
        if rexc is not None:
            if category == "convertible" and isinstance(rexc, ALLOWED) and not _bad_exception(rexc):
                return "ok", ""  # e.g. bool data that makes the clean problem degenerate
            return "fail", f"{ctx}: mutated input succeeded but the clean input raised:\n{_short(rexc)}"
        rtol = entry.rtol_cast if cast else entry.rtol
        return ("ok", "") if (msg := _compare(entry, _arrays_of(entry, args, dims, res),
                                               _arrays_of(entry, rargs, dims, rres), rtol, ctx, cast)) is None \
            else ("fail", msg)
    return "ok", ""


# ----------------------------------------------------------------------------- worker protocol
def _send(fp, obj):
    data = pickle.dumps(obj)
    fp.write(struct.pack("<Q", len(data)) + data)
    fp.flush()


def _recv(fp):
    hdr = fp.read(8)
    if len(hdr) < 8:
        return EOFError
    (n,) = struct.unpack("<Q", hdr)
    return pickle.loads(fp.read(n))


def _worker_main(table_module: str):
    proto_out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # library prints go to stderr, never into the protocol
    sys.stdout = sys.stderr
    table = importlib.import_module(table_module).TABLE
    stdin = sys.stdin.buffer
    while True:
        case = _recv(stdin)
        if case is EOFError:
            return
        try:
            res = run_case(table[case["entry"]], case)
        except BaseException as exc:  # noqa: BLE001 - an oracle bug must not look like a crash
            res = ("fail", f"oracle error: {_short(exc, 12)}")
        _send(proto_out, res)


def _signal_name(rc):
    import signal

    try:
        return signal.Signals(-rc).name
    except (ValueError, TypeError):
        return str(rc)


class Worker:
    """A persistent subprocess that runs cases of one table; restarted after a crash or hang."""

    def __init__(self, table_module: str):
        self.table_module = table_module
        self.proc = None
        self.counts = collections.Counter()
        self.failures = collections.Counter()
        self.crashes = 0

    def _start(self):
        self.err = tempfile.TemporaryFile()
        env = dict(os.environ)
        env.setdefault("JAX_PLATFORMS", "cpu")
        env.setdefault("OMP_NUM_THREADS", "2")
        env["PYTHONFAULTHANDLER"] = "1"
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.reliability._fuzz", "worker", self.table_module],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.err, cwd=str(ROOT),
                                     env=env)

    def _stderr_tail(self, n=4000):
        try:
            self.err.seek(0)
            return self.err.read().decode(errors="replace")[-n:]
        except (OSError, ValueError):
            return ""

    def run(self, case: dict, timeout: float) -> tuple[str, str]:
        if self.proc is None or self.proc.poll() is not None:
            self._start()
        self.counts[case["entry"]] += 1
        try:
            _send(self.proc.stdin, case)
        except (BrokenPipeError, OSError):
            pass
        fd = self.proc.stdout
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self.proc.kill()
                self.proc.wait()
                self.proc = None
                self.failures[case["entry"]] += 1
                return "hang", f"the case did not finish within {timeout:.0f} s (hang?): {json.dumps(case)}"
            r, _, _ = select.select([fd], [], [], min(left, 1.0))
            if r:
                break
        res = _recv(fd)
        if res is EOFError:
            rc = self.proc.wait()
            tail = self._stderr_tail()
            self.proc = None
            self.crashes += 1
            self.failures[case["entry"]] += 1
            return "crash", (f"the worker died ({_signal_name(rc)}, exit code {rc}) on case {json.dumps(case)}\n"
                             f"reproduce: python -m tests.reliability._fuzz replay {self.table_module} "
                             f"'{json.dumps(case)}'\nworker stderr:\n{tail}")
        if res[0] != "ok":
            self.failures[case["entry"]] += 1
        return res

    def close(self):
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def check_entry(entry: Entry, worker: Worker):
    """The hypothesis test body of one entry point (used by both test modules)."""
    from hypothesis import given
    from hypothesis import strategies as st

    @fuzz_settings(entry)
    @given(st.data())
    def inner(data):
        case = draw_case(entry, HypDraw(data))
        status, msg = worker.run(case, entry.timeout)
        if status != "ok":
            raise AssertionError(f"{status}: {msg}\ncase: {json.dumps(case)}")

    inner()


# ----------------------------------------------------------------------------- campaigns
def _signature(entry, case, msg):
    kind = case["mut"][2] if case["mut"] and case["mut"][0] == "arr" else (case["mut"][1] if case["mut"] else "none")
    first = re.sub(r"\d+(\.\d+)?(e[-+]?\d+)?", "#", msg.splitlines()[0] if msg else "")[:160]
    last = re.sub(r"\d+", "#", msg.strip().splitlines()[-1])[:160] if msg.strip() else ""
    return f"{entry} | {kind} | {first} | {last}"


def campaign(table_module: str, cases: int, pattern: str = "", seed: int = 0, out: str | None = None,
             time_limit: float = 1e9):
    table = importlib.import_module(table_module).TABLE
    worker = Worker(table_module)
    rnd = random.Random(seed)
    found: dict[str, dict] = {}
    t_start = time.monotonic()
    names = [n for n in table if re.search(pattern, n)]
    per_entry_time = time_limit / max(1, len(names))
    try:
        for name in names:
            entry = table[name]
            t0 = time.monotonic()
            n = max(1, int(cases * entry.weight))
            for _ in range(n):
                if time.monotonic() - t0 > per_entry_time:
                    break
                case = draw_case(entry, RandDraw(rnd))
                status, msg = worker.run(case, entry.timeout)
                if status != "ok":
                    sig = _signature(name, case, f"{status}: {msg}")
                    rec = found.setdefault(sig, {"count": 0, "case": case, "status": status, "msg": msg})
                    rec["count"] += 1
            print(f"{name}: {worker.counts[name]} cases, {worker.failures[name]} failing "
                  f"({time.monotonic() - t0:.1f} s)", file=sys.stderr, flush=True)
    finally:
        worker.close()
    summary = {"cases": dict(worker.counts), "failing": dict(worker.failures), "crashes": worker.crashes,
               "seconds": time.monotonic() - t_start, "failures": found}
    if out:
        Path(out).write_text(json.dumps(summary, indent=1, default=str))
    return summary


def replay(table_module: str, case_json: str):
    table = importlib.import_module(table_module).TABLE
    case = json.loads(case_json)
    if case["mut"] is not None:
        case["mut"] = tuple(case["mut"])
    print(run_case(table[case["entry"]], case))


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "worker":
        _worker_main(sys.argv[2])
    elif cmd == "replay":
        replay(sys.argv[2], sys.argv[3])
    elif cmd == "campaign":
        import argparse

        p = argparse.ArgumentParser()
        p.add_argument("cmd")
        p.add_argument("table")
        p.add_argument("--cases", type=int, default=1000)
        p.add_argument("--entries", default="")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--out")
        p.add_argument("--time-limit", type=float, default=1e9)
        a = p.parse_args()
        s = campaign(a.table, a.cases, a.entries, a.seed, a.out, a.time_limit)
        print(json.dumps({k: v for k, v in s.items() if k != "failures"}, indent=1))
        for sig, rec in s["failures"].items():
            print(f"\n### {sig}  (x{rec['count']})\n{json.dumps(rec['case'])}\n{rec['msg'][:2500]}")
