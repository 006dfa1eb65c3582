"""Property-based bad-input suite for every ``ntkit_native`` entry point, in worker subprocesses.

Both layers are fuzzed: the validating Python wrappers (``ntkit_native.gram`` ...) and the raw
pybind11 functions of ``ntkit_native._C``, which must themselves reject every bad buffer
(wrong dtype, rank, shape, byte order, alignment, contiguity, NaN/Inf) with a ValueError or
TypeError and never crash. A case that kills the worker (segfault, abort) or hangs fails the
test that drew it, with the case and a ``replay`` command; see ``_fuzz.py`` for the oracle.
Successful calls on finite input are also checked against slow NumPy oracles (the ones of
``tests/native/test_native.py``, the Walsh-Hadamard transform of ``ntkit.features`` and the
NumPy walk sampler of ``ntkit.graphs``), so garbage from a mis-strided buffer fails too.
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from ._fuzz import Arg, Entry, Worker, check_entry

nn = pytest.importorskip("ntkit_native")

NAN, INF = float("nan"), float("inf")
KIDS = ("linear", "rbf", "laplace", "matern12", "matern32", "matern52", "polynomial", "arccos0", "arccos1", "arccos2",
        "relu_nngp", "relu_ntk")
PARAMS_OF = {"linear": (), "rbf": ("lengthscale",), "laplace": ("lengthscale",), "matern12": ("lengthscale",),
             "matern32": ("lengthscale",), "matern52": ("lengthscale",), "polynomial": ("degree", "gamma", "coef0"),
             "arccos0": (), "arccos1": (), "arccos2": (), "relu_nngp": ("depth", "weight_std", "bias_std"),
             "relu_ntk": ("depth", "weight_std", "bias_std")}
#: invalid kernel parameters (each drawn for a kernel that has the parameter)
BAD_KPARAMS = {"lengthscale": [0.0, -1.0, NAN, INF, "1", None, True, 1j],
               "degree": [0, -1, 1.5, True, None, "2", 2**70],
               "gamma": [NAN, INF, None, "1", 1j],
               "coef0": [NAN, -INF, None, "1"],
               "depth": [-1, 1.5, True, None, "2", 2**70],
               "weight_std": [0.0, -1.0, NAN, INF, None],
               "bias_std": [-1.0, NAN, INF, None]}
BAD_BLOCK = [0, -1, 1.5, True, "2", 2**70]
NATIVE_EXTRA = ("all_f32", "large")
LAYOUT_KINDS = ("noncontig", "fortran", "unaligned", "byteswapped")


def _kid(dims, hp):
    """The kernel id: one that has the mutated parameter when a kernel parameter is mutated."""
    for name in hp:
        if name in BAD_KPARAMS or name in EXTREME_KPARAMS:
            owners = [k for k in KIDS if name in PARAMS_OF[k]]
            return owners[dims["k"] % len(owners)]
    return KIDS[dims["k"]]


def _kparams(rng, kid, hp):
    vals = {"lengthscale": float(rng.uniform(0.5, 2.0)), "degree": int(rng.integers(1, 5)),
            "gamma": float(rng.uniform(0.2, 1.0)), "coef0": float(rng.uniform(0.0, 1.0)),
            "depth": int(rng.integers(0, 4)), "weight_std": float(rng.uniform(0.5, 1.5)),
            "bias_std": float(rng.uniform(0.0, 0.5))}
    p = {k: vals[k] for k in PARAMS_OF[kid]}
    p.update({k: v for k, v in hp.items() if k in BAD_KPARAMS or k in EXTREME_KPARAMS})
    return p


def _tol(dtype, kid, d, ref):
    scale = float(np.max(np.abs(ref))) if ref.size else 1.0
    if np.dtype(dtype) == np.float64:
        r = 1e-5 if (kid or "").startswith("arccos") and d <= 2 else 1e-7
    else:
        r = 3e-2 if (kid or "").startswith("arccos") and d <= 2 else 3e-3
    return r, r * max(scale, 1.0)


def _sz(dims, key):
    """Sizes are small, except in one case of four ("big"), which crosses the engine's tiles
    (256 rows x 512/1024 columns per thread, 64-wide GEMM panels) with odd remainders."""
    scale = {"n": 61, "m": 67, "d": 7, "t": 3}.get(key, 1) if dims.get("big", 0) == 3 else 1
    return dims[key] * scale


def _f64(a):
    return None if a is None else np.asarray(a, dtype=np.float64)


def _close(name, got, ref, rtol, atol):
    got = np.asarray(got, dtype=np.float64)
    if got.shape != ref.shape:
        return f"{name} has shape {got.shape}, the oracle {ref.shape}"
    if not np.allclose(got, ref, rtol=rtol, atol=atol):
        err = float(np.max(np.abs(got - ref)))
        return f"{name} differs from the NumPy oracle by {err:.3g} (rtol {rtol}, atol {atol:.3g})"
    return None


def _finite_inputs(*arrays):
    for a in arrays:
        if a is None:
            continue
        a = np.asarray(a)
        if a.dtype.kind not in "fiub" or not np.all(np.isfinite(a.astype(np.float64))):
            return False
    return True


def _oracle_gram(X, Z, kid, p):
    from tests.native.test_native import oracle_gram

    full = {"lengthscale": 1.0, "degree": 3, "gamma": 1.0, "coef0": 1.0, "depth": 1, "weight_std": 1.0,
            "bias_std": 0.0}
    full.update(p or {})
    return oracle_gram(_f64(X), _f64(Z), kid, full, symmetric=Z is None)


# ------------------------------------------------------------------------------------- gram / matvec
def _build_gram(rng, dims, hp):
    kid = hp.get("kernel_id", None) or _kid(dims, hp)
    kid_arg = hp["kernel_id"] if "kernel_id" in hp else kid
    n, m, d = _sz(dims, "n"), _sz(dims, "m"), _sz(dims, "d")
    X = rng.standard_normal((n, d))
    Z = rng.standard_normal((m, d)) if dims["z"] else None
    params = hp["params"] if "params" in hp else _kparams(rng, kid if kid in KIDS else "rbf", hp)
    return {"X": X, "Z": Z, "kernel_id": kid_arg, "params": params, "device": hp.get("device", "cpu"), "_kid": kid}


def _check_gram(a, dims, r):
    if not _finite_inputs(a["X"], a["Z"]):
        return None
    X, Z = a["X"], a["Z"]
    ref = _oracle_gram(X, Z, a["_kid"], a["params"])
    rtol, atol = _tol(np.asarray(r).dtype, a["_kid"], _sz(dims, "d"), ref)
    why = _close("K", r, ref, rtol, atol)
    if why is None and Z is None and not np.array_equal(r, np.asarray(r).T):
        why = "K(X, X) is not exactly symmetric"
    return why


def _gram_shape(dims):
    return (_sz(dims, "n"), _sz(dims, "m") if dims["z"] else _sz(dims, "n"))


def _build_matvec(rng, dims, hp):
    a = _build_gram(rng, dims, hp)
    rows = _sz(dims, "m") if dims["z"] else _sz(dims, "n")
    a["v"] = rng.standard_normal(rows) if dims["t"] < 0 else rng.standard_normal((rows, _sz(dims, "t")))
    a["block_rows"] = hp.get("block_rows", None if dims["br"] == 0 else dims["br"])
    a["block_cols"] = hp.get("block_cols", None if dims["bc"] == 0 else dims["bc"])
    return a


def _check_matvec(a, dims, r):
    if not _finite_inputs(a["X"], a["Z"], a["v"]):
        return None
    K = _oracle_gram(a["X"], a["Z"], a["_kid"], a["params"])
    ref = K @ _f64(a["v"])
    scale = np.abs(K).max() * np.abs(_f64(a["v"])).sum(axis=0).max() if K.size and np.size(a["v"]) else 1.0
    rtol, atol = _tol(np.asarray(r).dtype, a["_kid"], _sz(dims, "d"), np.asarray([scale]))
    return _close("K @ v", r, ref, rtol, atol)


def _matvec_shape(dims):
    return (_sz(dims, "n"),) if dims["t"] < 0 else (_sz(dims, "n"), _sz(dims, "t"))


GRAM_DIMS = {"n": (0, 5), "m": (0, 5), "d": (0, 4), "z": (0, 1), "k": (0, 11), "big": (0, 3)}
XZ = {"X": Arg((2,), extra=NATIVE_EXTRA), "Z": Arg((2,), extra=NATIVE_EXTRA)}
GRAM_PARAMS = dict(BAD_KPARAMS, kernel_id=["rbff", None, 3, ""], params=["notadict", [1.0], {"bogus": 1.0}],
                   device=["gpu", None, 1])
#: the public wrappers take device=None ("where the data lives": numpy → cpu); the raw _C functions do not
WRAPPER_GRAM_PARAMS = dict(GRAM_PARAMS, device=["gpu", 1])
PARAM_ALIASES = {"params": ("parameter",), "kernel_id": ("kernel",)}
#: extreme but valid kernel parameters: the result must be finite or the call must raise naming them
EXTREME_KPARAMS = {"lengthscale": [1e-300, 1e-200, 1e300], "weight_std": [1e200], "bias_std": [1e300],
                   "gamma": [1e300], "degree": [10**6]}


def _matvec_params(wrapper=False):
    return dict(WRAPPER_GRAM_PARAMS if wrapper else GRAM_PARAMS, block_rows=BAD_BLOCK, block_cols=BAD_BLOCK)


# ------------------------------------------------------------------------------------- batched_gram
def _build_batched(rng, dims, hp):
    b, n, m, p = dims["b"], _sz(dims, "n"), _sz(dims, "m"), _sz(dims, "d")
    return {"A": rng.standard_normal((b, n, p)), "B": rng.standard_normal((b, m, p)) if dims["z"] else None,
            "reduce": hp.get("reduce", ("none", "sum")[dims["r"]]), "device": hp.get("device", "cpu")}


def _check_batched(a, dims, r):
    if not _finite_inputs(a["A"], a["B"]):
        return None
    A = _f64(a["A"])
    B = A if a["B"] is None else _f64(a["B"])
    ref = np.einsum("bnp,bmp->bnm", A, B)
    if a["reduce"] == "sum":
        ref = ref.sum(axis=0)
    scale = float(np.abs(A).max() * np.abs(B).max() * max(A.shape[0], 1) * max(A.shape[2], 1)) if A.size and B.size \
        else 1.0
    rtol, atol = _tol(np.asarray(r).dtype, None, 8, np.asarray([scale]))
    return _close("batched Gram", r, ref, rtol, atol)


def _batched_shape(dims):
    m = _sz(dims, "m") if dims["z"] else _sz(dims, "n")
    return ((dims["b"],) if dims["r"] == 0 else ()) + (_sz(dims, "n"), m)


# ------------------------------------------------------------------------------------- hadamard
def _build_hadamard(rng, dims, hp):
    d = _sz(dims, "d")
    dp = 1 << (max(d, 1) - 1).bit_length()
    dp <<= dims["up"]
    return {"X": rng.standard_normal((_sz(dims, "n"), d)),
            "signs": rng.choice(np.array([-1.0, 1.0]), size=(dims["nb"], 3, dp))}


def _check_hadamard(a, dims, r):
    if not _finite_inputs(a["X"], a["signs"]):
        return None
    from ntkit.features._fourier import fwht

    X, S = _f64(a["X"]), _f64(a["signs"])
    n, d = X.shape
    nb, _, dp = S.shape
    out = np.zeros((n, nb, dp))
    out[:, :, :d] = X[:, None, :]
    for k in range(3):
        out *= S[None, :, k, :]
        fwht(out)
        out /= np.sqrt(dp)
    ref = out.reshape(n, nb * dp)
    rtol, atol = _tol(np.asarray(r).dtype, None, 8, np.asarray([np.abs(X).sum(axis=1).max() if X.size else 1.0]))
    return _close("H D3 H D2 H D1 x", r, ref, rtol, atol)


def _hadamard_shape(a, dims):
    nb, _, dp = np.shape(a["signs"])
    return (_sz(dims, "n"), nb * dp)


# ------------------------------------------------------------------------------------- graph walks
def _build_grf(rng, dims, hp):
    n = _sz(dims, "n")
    dims["_n"] = n  # the range of node indices (for "out_of_range")
    A = np.triu((rng.random((n, n)) < 0.5).astype(np.float64), 1)
    A = A + A.T
    A *= rng.uniform(0.5, 1.5, (n, n)) * (A > 0)
    A = (A + A.T) / 2
    rows, cols = np.nonzero(A)
    indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=n))]).astype(np.int64)
    dims["_nnz"] = len(cols)  # the range of indptr entries (for "out_of_range")
    mode = dims["mode"]
    n_walks = hp.get("n_walks", 2 * dims["w"] if mode & 1 else 2 * dims["w"] - 1)
    return {"indptr": indptr, "indices": cols.astype(np.int64), "weights": A[rows, cols],
            "starts": rng.integers(0, n, dims["s"]).astype(np.int64) if n else np.zeros(0, np.int64),
            "n_walks": n_walks, "p_halt": hp.get("p_halt", float(rng.uniform(0.2, 0.8))),
            "modulation": rng.uniform(0.1, 1.0, dims["L"]), "seed": hp.get("seed", int(rng.integers(0, 2**63))),
            "mode": hp.get("mode", mode)}


def _grf_call(fn):
    return lambda a: fn(a["indptr"], a["indices"], a["weights"], a["starts"], a["n_walks"], a["p_halt"],
                        a["modulation"], a["seed"], a["mode"])


def _grf_dense(res, n_starts, n_nodes):
    import scipy.sparse as sp

    rp, c, v, _ = res
    return sp.csr_matrix((np.asarray(v), np.asarray(c), np.asarray(rp)), shape=(n_starts, n_nodes)).toarray()


def _check_grf(a, dims, r):
    if not _finite_inputs(a["weights"], a["modulation"]):
        return None
    from ntkit.graphs._grf import _walks_numpy

    n = len(np.asarray(a["indptr"])) - 1
    starts = np.asarray(a["starts"]).astype(np.int64)
    got = _grf_dense(r, len(starts), n)
    M, steps = _walks_numpy(np.asarray(a["indptr"]).astype(np.int64), np.asarray(a["indices"]).astype(np.int64),
                            _f64(a["weights"]), starts, int(a["n_walks"]), float(a["p_halt"]), _f64(a["modulation"]),
                            int(a["seed"]) & 0xFFFFFFFFFFFFFFFF, int(a["mode"]))
    ref = M.toarray()
    why = _close("walk features", got, ref, 1e-9, 1e-9 * max(1.0, float(np.abs(ref).max()) if ref.size else 1.0))
    if why is None and int(r[3]) != int(steps):
        why = f"{int(r[3])} walk steps, the NumPy sampler took {steps}"
    return why


def _grf_out(a, dims, r):
    n = len(np.asarray(a["indptr"])) - 1
    k = len(np.asarray(a["starts"]))
    return [("row_ptr", np.asarray(r[0]), (k + 1,)), ("features", _grf_dense(r, k, n), (k, n))]


GRF_DIMS = {"n": (1, 6), "s": (0, 5), "w": (1, 3), "L": (1, 5), "mode": (0, 3), "big": (0, 3)}
GRF_ARRAYS = {"indptr": Arg((1,), kind="index", high="_nnz", skip=("float_int",)),
              "indices": Arg((1,), kind="index", high="_n", skip=("float_int",)),
              "weights": Arg((1,)), "starts": Arg((1,), kind="index", high="_n", skip=("float_int",)),
              "modulation": Arg((1,))}
GRF_PARAMS = {"n_walks": [0, -1, None, "2", 2**70], "p_halt": [0.0, 1.0, -0.5, 1.5, NAN, None, "x"],
              "seed": [None, "x", 1.5]}
# ------------------------------------------------------------------------------------- table
def _entries():
    from ntkit_native import _C

    E = {}
    raw_layout = tuple(LAYOUT_KINDS)  # the raw binding rejects (naming the buffer) what the wrappers copy

    E["native.gram"] = Entry(
        "native.gram", ("ntkit_native.gram",), _build_gram,
        lambda a: nn.gram(a["X"], a["Z"], a["kernel_id"], a["params"], device=a["device"]),
        lambda a, dims, r: [("K", r, _gram_shape(dims))], XZ, GRAM_DIMS, (("Z", 1, "X"), ("X", 1, "Z")),
        params=WRAPPER_GRAM_PARAMS, may_raise=("f32",), param_aliases=PARAM_ALIASES, check=_check_gram, f32_out=True,
        special_params=EXTREME_KPARAMS,
        timeout=60)
    E["native._C.gram"] = Entry(
        "native._C.gram", ("ntkit_native._C.gram",), _build_gram,
        lambda a: _C.gram(a["X"], a["Z"], a["kernel_id"], a["params"], a["device"]),
        lambda a, dims, r: [("K", r, _gram_shape(dims))], XZ, GRAM_DIMS, (("Z", 1, "X"), ("X", 1, "Z")),
        params=GRAM_PARAMS, may_raise=("f32",) + raw_layout, param_aliases=PARAM_ALIASES, check=_check_gram,
        f32_out=True, special_params=EXTREME_KPARAMS, timeout=60)

    mv_arrays = dict(XZ, v=Arg((1, 2), extra=NATIVE_EXTRA, names=("Z",)))
    mv_dims = dict(GRAM_DIMS, t=(-1, 3), br=(0, 6), bc=(0, 6))
    E["native.kernel_matvec"] = Entry(
        "native.kernel_matvec", ("ntkit_native.kernel_matvec",), _build_matvec,
        lambda a: nn.kernel_matvec(a["X"], a["Z"], a["v"], a["kernel_id"], a["params"], block_rows=a["block_rows"],
                                   block_cols=a["block_cols"], device=a["device"]),
        lambda a, dims, r: [("Kv", r, _matvec_shape(dims))], mv_arrays, mv_dims,
        (("Z", 1, "X"), ("X", 1, "Z"), ("v", 0, "Z")), params=_matvec_params(wrapper=True), may_raise=("f32",),
        param_aliases=PARAM_ALIASES, check=_check_matvec, f32_out=True, timeout=60,
        special_params=EXTREME_KPARAMS)
    E["native._C.kernel_matvec"] = Entry(
        "native._C.kernel_matvec", ("ntkit_native._C.kernel_matvec",), _build_matvec,
        lambda a: _C.kernel_matvec(a["X"], a["Z"], a["v"], a["kernel_id"], a["params"], a["block_rows"],
                                   a["block_cols"], a["device"]),
        lambda a, dims, r: [("Kv", r, _matvec_shape(dims))], mv_arrays, mv_dims,
        (("Z", 1, "X"), ("X", 1, "Z"), ("v", 0, "Z")), params=_matvec_params(), may_raise=("f32",) + raw_layout,
        param_aliases=PARAM_ALIASES, check=_check_matvec, f32_out=True, timeout=60,
        special_params=EXTREME_KPARAMS)

    bg_arrays = {"A": Arg((3,), extra=NATIVE_EXTRA), "B": Arg((3,), extra=NATIVE_EXTRA)}
    bg_dims = {"b": (0, 3), "n": (0, 4), "m": (0, 4), "d": (0, 4), "z": (0, 1), "r": (0, 1), "big": (0, 3)}
    bg_mismatch = (("B", 0, "A"), ("B", 2, "A"), ("A", 2, "B"))
    bg_params = {"reduce": ["mean", None, 1], "device": ["gpu", None]}
    E["native.batched_gram"] = Entry(
        "native.batched_gram", ("ntkit_native.batched_gram",), _build_batched,
        lambda a: nn.batched_gram(a["A"], a["B"], a["reduce"], device=a["device"]),
        lambda a, dims, r: [("G", r, _batched_shape(dims))], bg_arrays, bg_dims, bg_mismatch,
        params=dict(bg_params, device=["gpu"]),
        may_raise=("f32",), check=_check_batched, f32_out=True, timeout=60)
    E["native._C.batched_gram"] = Entry(
        "native._C.batched_gram", ("ntkit_native._C.batched_gram",), _build_batched,
        lambda a: _C.batched_gram(a["A"], a["B"], a["reduce"], a["device"]),
        lambda a, dims, r: [("G", r, _batched_shape(dims))], bg_arrays, bg_dims, bg_mismatch, params=bg_params,
        may_raise=("f32",) + raw_layout, check=_check_batched, f32_out=True, timeout=60)

    hd_arrays = {"X": Arg((2,), extra=NATIVE_EXTRA), "signs": Arg((3,), extra=("all_f32",), names=("dp",))}
    hd_dims = {"n": (0, 5), "d": (0, 9), "nb": (0, 3), "up": (0, 1), "big": (0, 3)}
    hd_mismatch = (("signs", 1, "X"), ("signs", 2, "X"), ("X", 1, "signs"))
    E["native.hadamard_blocks"] = Entry(
        "native.hadamard_blocks", ("ntkit_native.hadamard_blocks",), _build_hadamard,
        lambda a: nn.hadamard_blocks(a["X"], a["signs"]),
        lambda a, dims, r: [("P", r, _hadamard_shape(a, dims))], hd_arrays, hd_dims, hd_mismatch, may_raise=("f32",),
        check=_check_hadamard, f32_out=True, bad_ok=("mismatch",), timeout=60)
    E["native._C.hadamard_blocks"] = Entry(
        "native._C.hadamard_blocks", ("ntkit_native._C.hadamard_blocks",), _build_hadamard,
        lambda a: _C.hadamard_blocks(a["X"], a["signs"]),
        lambda a, dims, r: [("P", r, _hadamard_shape(a, dims))], hd_arrays, hd_dims, hd_mismatch,
        may_raise=("f32",) + raw_layout, check=_check_hadamard, f32_out=True, bad_ok=("mismatch",), timeout=60)

    E["native.grf_features"] = Entry(
        "native.grf_features", ("ntkit_native.grf_features",), _build_grf, _grf_call(nn.grf_features), _grf_out,
        GRF_ARRAYS, GRF_DIMS, (("indices", 0, "indptr"), ("weights", 0, "indices")), params=GRF_PARAMS,
        check=_check_grf, timeout=60)
    E["native._C.grf_features"] = Entry(
        "native._C.grf_features", ("ntkit_native._C.grf_features",), _build_grf, _grf_call(_C.grf_features),
        _grf_out, GRF_ARRAYS, GRF_DIMS, (("indices", 0, "indptr"), ("weights", 0, "indices")),
        params={"n_walks": [0, -1, None, "2", 2**70], "p_halt": [0.0, 1.0, -0.5, 1.5, NAN, None, "x"],
                "seed": [None, "x", -1, 2**70]},
        may_raise=LAYOUT_KINDS + ("f32",), check=_check_grf, timeout=60)  # the raw walks take float64 only
    for e in E.values():
        e.weight = 6.0  # cheap cases: six times the base number of examples
    return E


TABLE = _entries() if nn.is_available() else {}

#: Public (or raw-binding) callables with array arguments that are not fuzzed, with the reason.
_DLPACK_WHY = ("raw DLPack entry point for CUDA tensors only, reached through the public wrappers with CUDA "
               "arrays; a CPU-only build raises before reading anything, and the CUDA build's input checks are "
               "tested on a GPU in tests/native/test_cuda_engine.py")
EXEMPT = {
    "ntkit_native._C.gram_dlpack": _DLPACK_WHY,
    "ntkit_native._C.kernel_matvec_dlpack": _DLPACK_WHY,
    "ntkit_native._C.batched_gram_dlpack": _DLPACK_WHY,
    "ntkit_native._C.ffi_targets": "takes a platform name and returns PyCapsules of the XLA FFI handlers; no "
                                   "buffers (the handlers' input checks are tested in tests/native/test_ffi.py)",
}


# ------------------------------------------------------------------------------------- tests
@pytest.fixture(scope="module")
def worker():
    w = Worker(__name__)
    yield w
    w.close()


@pytest.mark.skipif(not nn.is_available(), reason="ntkit_native._C is not built")
@pytest.mark.parametrize("name", sorted(TABLE))
def test_bad_input_native(name, worker):
    check_entry(TABLE[name], worker)


@pytest.mark.skipif(not nn.is_available(), reason="ntkit_native._C is not built")
def test_table_covers_native_entry_points():
    """Every public ntkit_native function and every public _C function taking buffers is fuzzed."""
    from ntkit_native import _C

    names = set()
    for name in nn.__all__:
        obj = getattr(nn, name)
        if callable(obj) and not inspect.isclass(obj):
            try:
                params = inspect.signature(obj).parameters
            except (TypeError, ValueError):
                continue
            if params:
                names.add(f"ntkit_native.{name}")
    for name in dir(_C):
        obj = getattr(_C, name)
        doc = getattr(obj, "__doc__", "") or ""
        # pybind11 functions: the first line of the docstring is the signature; buffers are typed object
        if not name.startswith("_") and callable(obj) and "object" in doc.split("\n")[0]:
            names.add(f"ntkit_native._C.{name}")
    covered = {c for e in TABLE.values() for c in e.covers}
    missing = sorted(names - covered - set(EXEMPT))
    assert not missing, f"ntkit_native entry points without a fuzz entry in {__name__}: {missing}"
