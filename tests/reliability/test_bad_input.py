"""Property-based bad-input suite for the public Python API (see ``_fuzz.py`` for the oracle).

Every public entry point that takes arrays has a row in ``TABLE`` (or a reason in
``EXEMPT``); ``test_table_covers_public_api`` fails when a new public array-taking function
or method is added without one. Each row is fuzzed by hypothesis with random sizes (0 and 1
rows included), dtypes (int, bool, float16, float32, complex, object, lists), layouts
(non-contiguous, Fortran, read-only), NaN/Inf, wrong ranks, mismatched dimensions and invalid
hyper-parameters; the cases run in a worker subprocess, so a crash in native code fails the
test that found it. ``NTKIT_FUZZ_EXAMPLES=2000`` runs a long local campaign.
"""

from __future__ import annotations

import importlib
import inspect

import numpy as np
import pytest

from ._fuzz import Arg, Entry, Worker, check_entry

NAN, INF = float("nan"), float("inf")
#: invalid values of hyper-parameters, by constraint
BAD_POS = [0.0, -1.0, NAN, INF, "1.0", 1j, None]
BAD_NONNEG = [-1.0, NAN, INF, "0.1", 1j]
BAD_POS_INT = [0, -1, 1.5, "2", NAN, None]
BAD_NONNEG_INT = [-1, 1.5, "2", NAN]
BAD_UNIT = [0.0, 1.0, -0.5, 1.5, NAN, "0.5"]
BAD_BUDGET = [-1, 0, "lots", NAN]

#: Degenerate clean data (tiny random problems whose kernel is zero on X or on the centers, e.g. an
#: all-zero row set with a dot-product kernel): EigenPro cannot precondition and says so, naming X /
#: centers. A correct ValueError, accepted for the unmutated ("clean") input too.
EIGENPRO_AUTO = {r"kernel on the training data X gives max k\(x, x\) = 0\.0": "solvers.eigenpro: all-zero kernel on X",
                 r"kernel between the centers and the training data X": "solvers.eigenpro: all-zero kernel",
                 r"K\(centers, centers\) .* is not positive definite": "solvers.eigenpro: kernel zero on centers"}

ROWS = (0, 5)
ROWS1 = (1, 6)
FEATS = (1, 4)


def _mod(name):
    """A module imported on first use (the jax-based ones stay out of the test process until needed)."""
    return importlib.import_module(name)


def _rows(*keys):
    """Clean input may raise (naming an argument) when one of these sizes is 0."""
    return lambda dims: any(dims[k] == 0 for k in keys)


def _normal(rng, *shape):
    return rng.standard_normal(shape)


# ------------------------------------------------------------------------------------- kernels
def _kernel_factories():
    from ntkit import kernels as K

    return {
        "RBF": (lambda hp: K.RBF(hp.get("lengthscale", 1.3)), {"lengthscale": BAD_POS}),
        "Laplace": (lambda hp: K.Laplace(hp.get("lengthscale", 0.9)), {"lengthscale": BAD_POS}),
        "Matern": (lambda hp: K.Matern(hp.get("lengthscale", 1.1), nu=hp.get("nu", 2.5)),
                   {"lengthscale": BAD_POS, "nu": [1.0, 0.0, -1.5, NAN, "1.5", None, True]}),
        "Linear": (lambda hp: K.Linear(), {}),
        "Polynomial": (lambda hp: K.Polynomial(degree=hp.get("degree", 3), gamma=hp.get("gamma", 0.5),
                                               coef0=hp.get("coef0", 1.0)),
                       {"degree": BAD_POS_INT, "gamma": [NAN, INF, "1", 1j, None], "coef0": [NAN, -INF, "1", None]}),
        "ArcCosine": (lambda hp: K.ArcCosine(order=hp.get("order", 1)), {"order": [-1, 3, 1.5, "1", None, NAN]}),
        "ReluNNGP": (lambda hp: K.ReluNNGP(depth=hp.get("depth", 2), bias_std=hp.get("bias_std", 0.1),
                                           weight_std=hp.get("weight_std", 1.0)),
                     {"depth": BAD_NONNEG_INT, "bias_std": BAD_NONNEG, "weight_std": BAD_POS}),
        "ReluNTK": (lambda hp: K.ReluNTK(depth=hp.get("depth", 3), bias_std=hp.get("bias_std", 0.2),
                                         weight_std=hp.get("weight_std", 1.5)),
                    {"depth": BAD_NONNEG_INT, "bias_std": BAD_NONNEG, "weight_std": BAD_POS}),
    }


KERNEL_NAMES = ("RBF", "Laplace", "Matern", "Linear", "Polynomial", "ArcCosine", "ReluNNGP", "ReluNTK")


def _kernel(dims_or_index, hp=None):
    """The kernel number ``k`` (0..7) of KERNEL_NAMES with hyper-parameters ``hp``."""
    return _kernel_factories()[KERNEL_NAMES[dims_or_index]][0](hp or {})


def _kernel_entries():
    out = {}
    for kname, (factory, params) in _kernel_factories().items():
        def build_call(rng, dims, hp, factory=factory):
            n, m, d = dims["n"], dims["m"], dims["d"]
            return {"kernel": factory(hp), "X": _normal(rng, n, d), "Z": _normal(rng, m, d) if dims["z"] else None}

        out[f"kernels.{kname}.__call__"] = Entry(
            name=f"kernels.{kname}.__call__", covers=(f"ntkit.kernels.{kname}.__call__",), build=build_call,
            call=lambda a: a["kernel"](a["X"], a["Z"]),
            out=lambda a, dims, r: [("K", r, (dims["n"], dims["m"] if dims["z"] else dims["n"]))],
            arrays={"X": Arg((2,)), "Z": Arg((2,))}, dims={"n": ROWS, "m": ROWS, "d": FEATS, "z": (0, 1)},
            mismatch=(("Z", 1, "X"), ("X", 1, "Z")), params=params, f32_out=True,
            special_params={"lengthscale": [1e-200, 1e-150, 1e200]} if "lengthscale" in params else {})

        def build_diag(rng, dims, hp, factory=factory):
            return {"kernel": factory(hp), "X": _normal(rng, dims["n"], dims["d"])}

        out[f"kernels.{kname}.diag"] = Entry(
            name=f"kernels.{kname}.diag", covers=(f"ntkit.kernels.{kname}.diag",), build=build_diag,
            call=lambda a: a["kernel"].diag(a["X"]), out=lambda a, dims, r: [("diag", r, (dims["n"],))],
            arrays={"X": Arg((2,))}, dims={"n": ROWS, "d": FEATS}, params=params, f32_out=True)
    return out


# ------------------------------------------------------------------------------------- ops
BACKENDS = ("auto", "numpy", "native")


def _build_xz(rng, dims, hp):
    n, m, d = dims["n"], dims["m"], dims["d"]
    return {"kernel": _kernel(dims["k"]), "X": _normal(rng, n, d), "Z": _normal(rng, m, d) if dims["z"] else None,
            "backend": hp.get("backend", BACKENDS[dims["b"]]), "memory_budget": hp.get("memory_budget", None)}


def _build_matvec(rng, dims, hp):
    a = _build_xz(rng, dims, hp)
    rows = dims["m"] if dims["z"] else dims["n"]
    a["v"] = _normal(rng, rows) if dims["t"] == 0 else _normal(rng, rows, dims["t"])
    return a


def _matvec_shape(dims):
    return (dims["n"],) if dims["t"] == 0 else (dims["n"], dims["t"])


def _assemble(a):
    from ntkit.ops import iter_gram_blocks

    n = a["X"].shape[0] if hasattr(a["X"], "shape") else len(a["X"])
    Z = a["X"] if a["Z"] is None else a["Z"]
    m = Z.shape[0] if hasattr(Z, "shape") else len(Z)
    K = np.full((n, m), np.nan)
    for rows, cols, blk in iter_gram_blocks(a["kernel"], a["X"], a["Z"], backend=a["backend"],
                                            memory_budget=a["memory_budget"]):
        K[rows, cols] = blk
    return K


def _operator(a):
    from ntkit.ops import KernelOperator

    return KernelOperator(a["kernel"], a["X"], a["Z"], ridge=a.get("ridge", 0.0), backend=a["backend"])


XZ_DIMS = {"n": ROWS, "m": ROWS, "d": FEATS, "z": (0, 1), "k": (0, 7), "b": (0, 2)}
XZ_ARRAYS = {"X": Arg((2,)), "Z": Arg((2,))}
XZ_MISMATCH = (("Z", 1, "X"), ("X", 1, "Z"))


def _ops_entries():
    def gram_shape(dims):
        return (dims["n"], dims["m"] if dims["z"] else dims["n"])

    def build_budget(rng, dims, hp):
        a = _build_xz(rng, dims, hp)
        a["memory_budget"] = hp.get("memory_budget", [None, 4096, 600][dims["mb"]])
        return a

    E = {}
    E["ops.gram"] = Entry(
        "ops.gram", ("ntkit.ops.gram",), _build_xz,
        lambda a: _mod("ntkit.ops").gram(a["kernel"], a["X"], a["Z"], backend=a["backend"],
                                         memory_budget=a["memory_budget"]),
        lambda a, dims, r: [("K", r, gram_shape(dims))], XZ_ARRAYS, XZ_DIMS, XZ_MISMATCH,
        params={"backend": ["fast", None, 1], "memory_budget": BAD_BUDGET}, f32_out=True)
    E["ops.kernel_matvec"] = Entry(
        "ops.kernel_matvec", ("ntkit.ops.kernel_matvec",), _build_matvec,
        lambda a: _mod("ntkit.ops").kernel_matvec(a["kernel"], a["X"], a["Z"], a["v"],
                                                  backend=a["backend"],
                                                  memory_budget=a["memory_budget"]),
        lambda a, dims, r: [("Kv", r, _matvec_shape(dims))],
        {"X": Arg((2,)), "Z": Arg((2,)), "v": Arg((1, 2), names=("Z",))}, dict(XZ_DIMS, t=(0, 3)),
        XZ_MISMATCH + (("v", 0, "Z"),), params={"backend": ["fast", None], "memory_budget": BAD_BUDGET}, f32_out=True)
    E["ops.iter_gram_blocks"] = Entry(
        "ops.iter_gram_blocks", ("ntkit.ops.iter_gram_blocks",), build_budget, _assemble,
        lambda a, dims, r: [("K", r, gram_shape(dims))], XZ_ARRAYS, dict(XZ_DIMS, mb=(0, 2)), XZ_MISMATCH,
        params={"backend": ["fast", None], "memory_budget": BAD_BUDGET})

    def build_op(rng, dims, hp):
        a = _build_xz(rng, dims, hp)
        a["ridge"] = hp.get("ridge", 0.0 if dims["z"] else 0.1)
        return a

    E["ops.KernelOperator"] = Entry(
        "ops.KernelOperator", ("ntkit.ops.KernelOperator", "ntkit.ops.KernelOperator.to_dense",
                               "ntkit.ops.KernelOperator.diagonal"), build_op,
        lambda a: (lambda op: (op.to_dense(), op.diagonal() if a["Z"] is None else np.zeros(0)))(_operator(a)),
        lambda a, dims, r: [("dense", r[0], gram_shape(dims)),
                            ("diagonal", r[1], (dims["n"] if not dims["z"] else 0,))],
        XZ_ARRAYS, XZ_DIMS, XZ_MISMATCH, params={"ridge": BAD_NONNEG})

    def build_op_apply(rng, dims, hp):
        a = build_op(rng, dims, hp)
        a["op"], a["how"] = _operator(a), dims["how"]
        m = dims["m"] if dims["z"] else dims["n"]
        rows = dims["n"] if dims["how"] in (2, 3) else m  # rmatvec / rmatmat take n rows
        if dims["how"] in (0, 2):  # matvec / rmatvec: a vector
            a["v"] = _normal(rng, rows)
        elif dims["how"] in (1, 3):  # matmat / rmatmat: a matrix
            a["v"] = _normal(rng, rows, max(1, dims["t"]))
        else:  # A @ v: either
            a["v"] = _normal(rng, rows) if dims["t"] == 0 else _normal(rng, rows, dims["t"])
        return a

    def op_apply(a):
        op = a["op"]
        return [op.matvec, op.matmat, op.rmatvec, op.rmatmat, op.__matmul__][a["how"]](a["v"])

    def op_shape(a, dims, r):
        m = dims["m"] if dims["z"] else dims["n"]
        rows = m if dims["how"] in (2, 3) else dims["n"]
        shp = (rows,) if dims["how"] in (0, 2) or (dims["how"] == 4 and dims["t"] == 0) else (
            rows, max(1, dims["t"]))
        return [("Av", r, shp)]

    E["ops.KernelOperator.matvec"] = Entry(
        "ops.KernelOperator.matvec", ("ntkit.ops.KernelOperator.matvec", "ntkit.ops.KernelOperator.matmat",
                                      "ntkit.ops.KernelOperator.rmatvec", "ntkit.ops.KernelOperator.rmatmat",
                                      "ntkit.ops.KernelOperator.dot"),
        build_op_apply, op_apply, op_shape, {"v": Arg((1, 2), names=("x", "operands"))},
        dict(XZ_DIMS, t=(0, 2), how=(0, 4)),
        (("v", 0, "op"),))
    E["ops.batched_gram"] = Entry(
        "ops.batched_gram", ("ntkit.ops.batched_gram",),
        lambda rng, dims, hp: {"A": _normal(rng, dims["b"], dims["n"], dims["p"]),
                               "B": _normal(rng, dims["b"], dims["m"], dims["p"]) if dims["z"] else None,
                               "reduce": hp.get("reduce", ("none", "sum")[dims["r"]]),
                               "backend": hp.get("backend", BACKENDS[dims["bk"]])},
        lambda a: _mod("ntkit.ops").batched_gram(a["A"], a["B"], reduce=a["reduce"],
                                                 backend=a["backend"]),
        lambda a, dims, r: [("G", r, ((dims["b"],) if not dims["r"] else ()) +
                             (dims["n"], dims["m"] if dims["z"] else dims["n"]))],
        {"A": Arg((3,)), "B": Arg((3,))}, {"b": (0, 3), "n": ROWS, "m": ROWS, "p": FEATS, "z": (0, 1),
                                           "r": (0, 1), "bk": (0, 2)},
        (("B", 0, "A"), ("B", 2, "A"), ("A", 2, "B")), params={"reduce": ["mean", None, 1], "backend": ["fast"]},
        f32_out=True)
    return E


# ------------------------------------------------------------------------------------- features
URF_ACTIVATIONS = ("exp", "erf", "gelu", "sin", "cos", "relu", "tanh", "sigmoid")


def _transformers():
    """name -> (factory(hp), invalid hyper-parameters, output width given n_components)."""
    from ntkit import features as F

    return {
        "RandomFourierFeatures": (
            lambda hp, dims: F.RandomFourierFeatures(("rbf", "laplace", "matern")[dims.get("v", 0) % 3],
                                                     lengthscale=hp.get("lengthscale", 1.5),
                                                     n_components=hp.get("n_components", 7),
                                                     orthogonal=dims.get("v", 0) >= 3, random_state=0),
            {"lengthscale": BAD_POS + [[1.0, -1.0]], "n_components": BAD_POS_INT}),
        "PositiveRandomFeatures": (
            lambda hp, dims: F.PositiveRandomFeatures(hp.get("n_components", 6),
                                                      kernel=("softmax", "gaussian")[dims.get("v", 0) % 2],
                                                      lengthscale=hp.get("lengthscale", 2.0),
                                                      kind=("positive", "hyperbolic")[dims.get("v", 0) // 3 % 2],
                                                      random_state=0),
            {"lengthscale": BAD_POS, "n_components": BAD_POS_INT}),
        "ArcCosineFeatures": (
            lambda hp, dims: F.ArcCosineFeatures(hp.get("order", dims.get("v", 0) % 3), depth=hp.get("depth", 1),
                                                 n_components=hp.get("n_components", 5), random_state=0),
            {"order": [3, -1, 0.5, "1", None], "depth": BAD_POS_INT, "n_components": BAD_POS_INT}),
        "NTKRandomFeatures": (
            lambda hp, dims: F.NTKRandomFeatures(hp.get("depth", 1 + dims.get("v", 0) % 2),
                                                 n_components=hp.get("n_components", 8),
                                                 weight_std=hp.get("weight_std", 1.0),
                                                 bias_std=hp.get("bias_std", 0.1 * (dims.get("v", 0) % 2)),
                                                 random_state=0),
            {"depth": BAD_POS_INT, "n_components": BAD_POS_INT, "weight_std": BAD_POS, "bias_std": BAD_NONNEG}),
        "Nystroem": (
            lambda hp, dims: F.Nystroem(_kernel(dims.get("v", 0) % 8) if dims.get("v", 0) < 8 else None,
                                        n_components=hp.get("n_components", 4),
                                        sampling=hp.get("sampling", ("uniform", "rls")[dims.get("v", 0) % 2]),
                                        ridge=hp.get("ridge", None), random_state=0),
            {"n_components": BAD_POS_INT, "sampling": ["random", None], "ridge": [0.0, -1.0, NAN, "1"]}),
        "UniversalRandomFeatures": (
            lambda hp, dims: F.UniversalRandomFeatures(
                hp.get("activation", URF_ACTIVATIONS[dims.get("v", 0) % 8]),
                n_components=hp.get("n_components", 6), bound=hp.get("bound", None), degree=hp.get("degree", 4),
                random_state=0),
            {"activation": ["softplus", None], "n_components": BAD_POS_INT, "bound": [0.0, -1.0, NAN, INF, "2"],
             "degree": BAD_POS_INT}),
    }


def _scaled(rng, n, d, scale=0.5):
    return scale * rng.standard_normal((n, d))


def _feature_entries():
    E = {}
    for cname, (factory, params) in _transformers().items():
        def build_fit(rng, dims, hp, factory=factory):
            return {"obj": factory(hp, dims), "X": _scaled(rng, dims["n"], dims["d"]),
                    "_probe": _scaled(rng, 3, dims["d"])}

        E[f"features.{cname}.fit"] = Entry(
            f"features.{cname}.fit", (f"ntkit.features.{cname}.fit",), build_fit,
            lambda a: a["obj"].fit(a["X"]),
            lambda a, dims, r: [("transform(probe)", r.transform(a["_probe"]), (3, None))],
            {"X": Arg((2,))}, {"n": ROWS, "d": FEATS, "v": (0, 8)}, params=params, edge_ok=_rows("n"))

        def build_transform(rng, dims, hp, factory=factory):
            obj = factory({}, dims).fit(_scaled(rng, 5, dims["d"]))
            return {"obj": obj, "X": _scaled(rng, dims["n"], dims["d"])}

        E[f"features.{cname}.transform"] = Entry(
            f"features.{cname}.transform", (f"ntkit.features.{cname}.transform",), build_transform,
            lambda a: a["obj"].transform(a["X"]), lambda a, dims, r: [("features", r, (dims["n"], None))],
            {"X": Arg((2,))}, {"n": ROWS, "d": FEATS, "v": (0, 8)}, (("X", 1, "n_features_in_"),),
            edge_ok=_rows("n"), f32_out=True)  # scikit-learn transformers reject 0 samples

    def build_estimate(rng, dims, hp):
        names = sorted(_transformers())
        factory = _transformers()[names[dims["c"]]][0]
        obj = factory({}, dims).fit(_scaled(rng, 5, dims["d"]))
        return {"obj": obj, "X": _scaled(rng, dims["n"], dims["d"]),
                "Z": _scaled(rng, dims["m"], dims["d"]) if dims["z"] else None}

    E["features.kernel_estimate"] = Entry(
        "features.kernel_estimate", tuple(f"ntkit.features.{c}.kernel_estimate" for c in _transformers()),
        build_estimate, lambda a: a["obj"].kernel_estimate(a["X"], a["Z"]),
        lambda a, dims, r: [("K", r, (dims["n"], dims["m"] if dims["z"] else dims["n"]))],
        {"X": Arg((2,)), "Z": Arg((2,))}, {"n": ROWS, "m": ROWS, "d": FEATS, "v": (0, 8), "z": (0, 1), "c": (0, 5)},
        (("X", 1, "n_features_in_"), ("Z", 1, "n_features_in_")), edge_ok=_rows("n", "m"))

    def build_urf_weights(rng, dims, hp):
        from ntkit.features import UniversalRandomFeatures

        act = URF_ACTIVATIONS[dims["v"]]
        return {"obj": UniversalRandomFeatures(act, n_components=6, degree=4, random_state=0),
                "X": _scaled(rng, dims["n"], dims["d"]), "W": _scaled(rng, dims["m"], dims["d"]),
                "_probe": _scaled(rng, 3, dims["d"])}

    E["features.UniversalRandomFeatures.fit(weights)"] = Entry(
        "features.UniversalRandomFeatures.fit(weights)", ("ntkit.features.UniversalRandomFeatures.fit",),
        build_urf_weights, lambda a: a["obj"].fit(a["X"], weights=a["W"]),
        lambda a, dims, r: [("transform(probe)", r.transform(a["_probe"]), (3, 6)),
                            ("transform_weights(probe)", r.transform_weights(a["_probe"]), (3, 6))],
        {"X": Arg((2,)), "W": Arg((2,), names=("weights",))}, {"n": ROWS1, "m": ROWS, "d": FEATS, "v": (0, 7)},
        (("W", 1, "X"), ("X", 1, "W")))

    def build_urf_tw(rng, dims, hp):
        a = build_urf_weights(rng, dims, hp)
        a["obj"].fit(a["X"], weights=a["W"])
        a["W"] = _scaled(rng, dims["k"], dims["d"])
        return a

    E["features.UniversalRandomFeatures.transform_weights"] = Entry(
        "features.UniversalRandomFeatures.transform_weights",
        ("ntkit.features.UniversalRandomFeatures.transform_weights",), build_urf_tw,
        lambda a: a["obj"].transform_weights(a["W"]), lambda a, dims, r: [("psi", r, (dims["k"], 6))],
        {"W": Arg((2,))}, {"n": ROWS1, "m": ROWS1, "k": ROWS, "d": FEATS, "v": (0, 7)}, (("W", 1, "n_features_in_"),))

    def build_layer(rng, dims, hp):
        from ntkit.features import UniversalRandomFeatures

        m, d, o = dims["m"], dims["d"], dims["o"]
        return {"W": _scaled(rng, m, d), "b": _scaled(rng, m, 1)[:, 0] if dims["bb"] else None,
                "V": _scaled(rng, o, m) if o else None, "X": _scaled(rng, dims["n"], d),
                "act": ("relu", "tanh", "sigmoid", "erf", "gelu", "sin")[dims["v"]],
                "_cls": UniversalRandomFeatures, "_probe": _scaled(rng, 3, d)}

    def layer_out(a, dims, r):
        return [("predict(probe)", r.predict(a["_probe"]), (3, dims["o"] or dims["m"]))]

    E["features.UniversalRandomFeatures.from_dense_layer"] = Entry(
        "features.UniversalRandomFeatures.from_dense_layer",
        ("ntkit.features.UniversalRandomFeatures.from_dense_layer", "ntkit.features.LayerKernelForm"), build_layer,
        lambda a: a["_cls"].from_dense_layer(a["W"], a["b"], a["V"], activation=a["act"], n_components=8, X=a["X"],
                                             random_state=0, degree=4),
        layer_out, {"W": Arg((2,)), "b": Arg((1,)), "V": Arg((2,)), "X": Arg((2,))},
        {"m": ROWS1, "d": FEATS, "o": (0, 3), "n": ROWS1, "bb": (0, 1), "v": (0, 5)},
        (("X", 1, "W"), ("b", 0, "W"), ("V", 1, "W")))

    def build_layer_predict(rng, dims, hp):
        a = build_layer(rng, dims, hp)
        layer = a["_cls"].from_dense_layer(a["W"], a["b"], a["V"], activation=a["act"], n_components=8, X=a["X"],
                                           random_state=0, degree=4)
        return {"layer": layer, "X": _scaled(rng, dims["k"], dims["d"])}

    E["features.LayerKernelForm.predict"] = Entry(
        "features.LayerKernelForm.predict", ("ntkit.features.LayerKernelForm.predict",), build_layer_predict,
        lambda a: a["layer"].predict(a["X"]), lambda a, dims, r: [("y", r, (dims["k"], dims["o"] or dims["m"]))],
        {"X": Arg((2,))}, {"m": ROWS1, "d": FEATS, "o": (0, 3), "n": ROWS1, "bb": (0, 1), "v": (0, 5), "k": ROWS},
        (("X", 1, "n_features_in_"),), edge_ok=_rows("k"))

    def build_err(rng, dims, hp):
        names = sorted(_transformers())
        obj = _transformers()[names[dims["c"]]][0]({}, dims)
        X = _scaled(rng, dims["n"], dims["d"])
        if dims["fit"]:
            obj.fit(_scaled(rng, 4, dims["d"]))
        return {"obj": obj, "kernel": _kernel(dims["k"]), "X": X}

    E["features.approximation_error"] = Entry(
        "features.approximation_error", ("ntkit.features.approximation_error",), build_err,
        lambda a: _mod("ntkit.features").approximation_error(a["obj"], a["kernel"], a["X"]),
        lambda a, dims, r: [("errors", np.array(tuple(r)), (3,))], {"X": Arg((2,))},
        {"n": ROWS1, "d": FEATS, "v": (0, 8), "c": (0, 5), "k": (0, 7), "fit": (0, 1)},
        (("X", 1, "n_features_in_"),), edge_ok=lambda dims: False, rtol_cast=5e-2)
    return E


# ------------------------------------------------------------------------------------- graphs
def _adjacency(rng, n, weighted):
    A = (rng.random((n, n)) < 0.5).astype(np.float64)
    A = np.triu(A, 1)
    A = A + A.T
    if weighted:
        W = rng.uniform(0.5, 2.0, (n, n))
        A = A * (W + W.T) / 2
    return A


GRAPH_DIMS = {"n": (0, 6), "w": (0, 1), "b": (0, 1), "kk": (0, 4)}
GRAPH_KERNELS = ("regularized_laplacian", "regularized_laplacian_2", "diffusion", "p_step", "cosine")


def _grf(dims, hp):
    from ntkit.graphs import GraphRandomFeatures

    return GraphRandomFeatures(hp.get("kernel", GRAPH_KERNELS[dims["kk"]]), sigma=hp.get("sigma", 0.5),
                               n_walks=hp.get("n_walks", 4), p_halt=hp.get("p_halt", 0.4), random_state=0,
                               backend=hp.get("backend", ("auto", "numpy")[dims["b"]]))


def _graph_entries():
    E = {}

    def build_fit(rng, dims, hp):
        return {"obj": _grf(dims, hp), "adjacency": _adjacency(rng, dims["n"], dims["w"])}

    E["graphs.GraphRandomFeatures.fit"] = Entry(
        "graphs.GraphRandomFeatures.fit", ("ntkit.graphs.GraphRandomFeatures.fit",
                                           "ntkit.graphs.GraphRandomFeatures.kernel_estimate"), build_fit,
        lambda a: a["obj"].fit(a["adjacency"]),
        lambda a, dims, r: [("features_", r.features_, (dims["n"], dims["n"])),
                            ("kernel_estimate", r.kernel_estimate(), (dims["n"], dims["n"]))],
        {"adjacency": Arg((2,), kind="adjacency")}, GRAPH_DIMS, (("adjacency", 1, "adjacency"),),
        params={"sigma": [0.0, -1.0, NAN, INF, "0.5"], "n_walks": BAD_POS_INT, "p_halt": BAD_UNIT,
                "kernel": ["heat", None, [NAN], [0.0, 1.0]], "backend": ["fast", None]})

    def build_kmv(rng, dims, hp):
        obj = _grf(dims, {}).fit(_adjacency(rng, dims["n"], dims["w"]))
        v = rng.standard_normal((dims["n"],) if dims["t"] == 0 else (dims["n"], dims["t"]))
        return {"obj": obj, "v": v, "ub": bool(dims["ub"])}

    E["graphs.GraphRandomFeatures.kernel_matvec"] = Entry(
        "graphs.GraphRandomFeatures.kernel_matvec", ("ntkit.graphs.GraphRandomFeatures.kernel_matvec",), build_kmv,
        lambda a: a["obj"].kernel_matvec(a["v"], unbiased_diagonal=a["ub"]),
        lambda a, dims, r: [("Kv", r, (dims["n"],) if dims["t"] == 0 else (dims["n"], dims["t"]))],
        {"v": Arg((1, 2))}, dict(GRAPH_DIMS, t=(0, 2), ub=(0, 1)), (("v", 0, "n_nodes"),))

    def build_ridge(rng, dims, hp):
        from ntkit.graphs import GraphKernelRidge

        n = dims["n"]
        k = min(dims["k"], n)
        nodes = rng.permutation(n)[:k].astype(np.int64)
        y = rng.standard_normal(k) if dims["cls"] == 0 else rng.standard_normal((k, 2))
        return {"obj": GraphKernelRidge(GRAPH_KERNELS[dims["kk"]], n_walks=4, ridge=hp.get("ridge", 0.1),
                                        random_state=0, backend=("auto", "numpy")[dims["b"]]),
                "adjacency": _adjacency(rng, n, dims["w"]), "nodes": nodes, "y": y}

    E["graphs.GraphKernelRidge.fit"] = Entry(
        "graphs.GraphKernelRidge.fit", ("ntkit.graphs.GraphKernelRidge.fit",), build_ridge,
        lambda a: a["obj"].fit(a["adjacency"], a["nodes"], a["y"]),
        lambda a, dims, r: [("decision_function", r.decision_function(), (dims["n"], None)),
                            ("predict", r.predict(), (dims["n"],) + ((2,) if dims["cls"] else ()))],
        {"adjacency": Arg((2,), kind="adjacency"), "nodes": Arg((1,), kind="index", high="n"),
         # int/bool/object targets mean classification (labels), not the same problem as float y
         "y": Arg((1, 2), names=("nodes",), skip=("int", "bool", "object", "list"))},
        dict(GRAPH_DIMS, n=(1, 6), k=(0, 4), cls=(0, 1)), (("y", 0, "nodes"), ("nodes", 0, "y")),
        params={"ridge": BAD_POS}, edge_ok=lambda dims: min(dims["k"], dims["n"]) == 0)

    def build_ridge_pred(rng, dims, hp):
        a = build_ridge(rng, dict(dims, k=max(1, dims["k"])), hp)
        a["obj"].fit(a["adjacency"], a["nodes"], a["y"])
        a["q"] = rng.integers(0, dims["n"], dims["q"]).astype(np.int64) if dims["all"] == 0 else None
        a["how"] = dims["how"]
        return a

    def ridge_pred_out(a, dims, r):
        rows = dims["q"] if dims["all"] == 0 else dims["n"]
        return [("out", r, (rows,) + ((2,) if dims["cls"] else ()) if dims["how"] == 1 else (rows, None))]

    E["graphs.GraphKernelRidge.predict"] = Entry(
        "graphs.GraphKernelRidge.predict", ("ntkit.graphs.GraphKernelRidge.predict",
                                            "ntkit.graphs.GraphKernelRidge.decision_function"), build_ridge_pred,
        lambda a: (a["obj"].decision_function, a["obj"].predict)[a["how"]](a["q"]), ridge_pred_out,
        {"q": Arg((1,), kind="index", high="n", names=("nodes",))},
        dict(GRAPH_DIMS, n=(1, 6), k=(1, 4), cls=(0, 1), q=(0, 4), all=(0, 1), how=(0, 1)))

    def build_exact(rng, dims, hp):
        kk = 3 if "p" in hp else dims["kk"]  # p is the power of the p_step kernel only
        return {"adjacency": _adjacency(rng, dims["n"], dims["w"]), "kernel": hp.get("kernel", GRAPH_KERNELS[kk]),
                "sigma": hp.get("sigma", 0.5), "p": hp.get("p", 2)}

    E["graphs.exact_graph_kernel"] = Entry(
        "graphs.exact_graph_kernel", ("ntkit.graphs.exact_graph_kernel",), build_exact,
        lambda a: _mod("ntkit.graphs").exact_graph_kernel(a["adjacency"], a["kernel"],
                                                          sigma=a["sigma"], p=a["p"]),
        lambda a, dims, r: [("K", r, (dims["n"], dims["n"]))], {"adjacency": Arg((2,), kind="adjacency")}, GRAPH_DIMS,
        (("adjacency", 1, "adjacency"),),
        params={"sigma": [0.0, -1.0, NAN, INF, "0.5"], "kernel": ["heat", None, [NAN], [0.0, 1.0]],
                "p": [-1, 1.5, "2"]})
    return E


# ------------------------------------------------------------------------------------- theory
def _spectrum(rng, P, o):
    lam = np.sort(rng.uniform(0.01, 1.0, P))[::-1].copy()
    c = rng.standard_normal(P) if o == 0 else rng.standard_normal((P, o))
    return lam, c


PROFILE_FACTORIES = ("krr", "gradient_flow", "gradient_descent", "iterated_tikhonov", "spectral_cutoff")
PROFILE_PARAM_NAMES = ("ridge", "time", "steps", "lr", "order", "threshold")


def _profile(which, arr):
    from ntkit.theory import profiles as pr

    return (lambda: pr.krr(arr), lambda: pr.gradient_flow(arr), lambda: pr.gradient_descent(5, arr),
            lambda: pr.iterated_tikhonov(arr, 2), lambda: pr.spectral_cutoff(arr))[which]()


def _theory_entries():
    E = {}
    SPEC_ARRAYS = {"eigenvalues": Arg((1,), skip=("bool",), extra=("negative",)),
                   "target_coeffs": Arg((1, 2), skip=("complex",)),
                   "n_samples": Arg((0, 1), kind="index")}

    def build_risk(rng, dims, hp):
        lam, c = _spectrum(rng, dims["P"], dims["o"])
        N = rng.integers(1, 50, dims["nN"]) if dims["nN"] else int(rng.integers(1, 50))
        model = ("gaussian", "nmno", "translation_invariant")[dims["model"]]
        freq = np.arange(dims["P"]) if model == "translation_invariant" else None
        return {"eigenvalues": lam, "target_coeffs": c, "n_samples": N, "frequencies": freq, "model": model,
                # gradient descent needs lr·λ_max < 2 on the empirical spectrum (λ_max up to ~P at tiny N)
                "profile": _profile(dims["pf"], np.array(0.05 if dims["pf"] == 2 else 0.1 + 0.2 * dims["pf"])),
                "noise": hp.get("noise", 0.1)}

    def n_len(a, dims):
        return dims["nN"] if dims["nN"] else 1

    # shared by risk_curve and simulate_risk: the three (len(n_samples),) curves, the arrays, the mismatches
    def curves(a, dims, r):
        return [(k, getattr(r, k), (n_len(a, dims),)) for k in ("risk", "bias", "variance")]

    risk_arrays = dict(SPEC_ARRAYS, frequencies=Arg((1,), kind="index", skip=("negative",)))
    risk_mismatch = (("target_coeffs", 0, "eigenvalues"), ("frequencies", 0, "eigenvalues"))

    E["theory.risk_curve"] = Entry(
        "theory.risk_curve", ("ntkit.theory.risk_curve",), build_risk,
        lambda a: _mod("ntkit.theory").risk_curve(
            a["eigenvalues"], a["target_coeffs"], a["n_samples"], profile=a["profile"], noise=a["noise"],
            model=a["model"], frequencies=a["frequencies"]),
        curves, risk_arrays, {"P": (1, 6), "o": (0, 2), "nN": (0, 3), "model": (0, 2), "pf": (0, 4)},
        risk_mismatch, params={"noise": BAD_NONNEG}, rtol=1e-5, weight=0.5)

    def build_sim(rng, dims, hp):
        a = build_risk(rng, dict(dims, model=dims["model"]), hp)
        a["n_samples"] = rng.integers(1, 8, dims["nN"]) if dims["nN"] else int(rng.integers(1, 8))
        return a

    E["theory.simulate_risk"] = Entry(
        "theory.simulate_risk", ("ntkit.theory.simulate_risk",), build_sim,
        lambda a: _mod("ntkit.theory").simulate_risk(
            a["eigenvalues"], a["target_coeffs"], a["n_samples"], profile=a["profile"], noise=a["noise"],
            model=a["model"] if a["model"] != "nmno" else "gaussian", frequencies=a["frequencies"], n_trials=2,
            random_state=0),
        curves, risk_arrays, {"P": (1, 5), "o": (0, 2), "nN": (0, 2), "model": (0, 2), "pf": (0, 4)},
        risk_mismatch, params={"noise": BAD_NONNEG}, rtol=1e-5, weight=0.5)

    def build_spec(rng, dims, hp):
        n = dims["n"]
        X = _normal(rng, n, dims["d"])
        y = rng.standard_normal(n) if dims["o"] == 0 else rng.standard_normal((n, dims["o"]))
        return {"kernel": _kernel(dims["k"]), "X": X, "y": y, "n_components": hp.get("n_components", None),
                "method": ("auto", "dense", "nystrom")[dims["m"]]}

    def spec_out(a, dims, r):
        return [("eigenvalues", r.eigenvalues, (None,)), ("target_coeffs", r.target_coeffs, (None,) if dims["o"] == 0
                                                                                         else (None, dims["o"]))]

    E["theory.estimate_spectrum"] = Entry(
        "theory.estimate_spectrum", ("ntkit.theory.estimate_spectrum",), build_spec,
        lambda a: _mod("ntkit.theory").estimate_spectrum(
            a["kernel"], a["X"], a["y"], n_components=a["n_components"], method=a["method"], random_state=0),
        spec_out, {"X": Arg((2,)), "y": Arg((1, 2))},
        {"n": ROWS, "d": FEATS, "o": (0, 2), "k": (0, 7), "m": (0, 2)}, (("y", 0, "X"), ("X", 0, "y")),
        params={"n_components": BAD_POS_INT[:-1]}, edge_ok=_rows("n"), rtol=1e-5, compare=False)

    E["estimators.data_lengthscale"] = Entry(
        "estimators.data_lengthscale", ("ntkit.estimators.data_lengthscale",),
        lambda rng, dims, hp: {"X": _normal(rng, dims["n"], dims["d"])},
        lambda a: _mod("ntkit.estimators").data_lengthscale(a["X"]),
        lambda a, dims, r: [("lengthscale", np.asarray(r), ())], {"X": Arg((2,))},
        {"n": ROWS, "d": FEATS}, (), edge_ok=_rows("n"), rtol=1e-5, compare=False)

    def build_prof(rng, dims, hp):
        arr = rng.uniform(0.05, 1.0, dims["k"]) if dims["k"] else np.asarray(rng.uniform(0.05, 1.0))
        return {"param": arr, "lam": rng.uniform(0.0, 1.0, dims["L"]), "which": dims["pf"]}

    E["theory.profiles"] = Entry(
        "theory.profiles", tuple(f"ntkit.theory.profiles.{f}" for f in PROFILE_FACTORIES) +
        ("ntkit.theory.profiles.Profile.__call__", "ntkit.theory.profiles.Profile.flat",
         "ntkit.theory.profiles.as_profile"), build_prof,
        lambda a: _profile(a["which"], a["param"])(a["lam"]),
        lambda a, dims, r: [("h", r, np.shape(a["param"]) + np.shape(a["lam"]))],
        # h(λ) is elementwise on real or complex λ of any shape (NaN in, NaN out, like a ufunc);
        # parameter grids may have any shape too
        {"param": Arg((0, 1), names=PROFILE_PARAM_NAMES, skip=("bool", "f16")), "lam": Arg((1,), names=("lam",))},
        {"k": (0, 3), "L": (0, 5), "pf": (0, 4)}, bad_ok=("ndim_up", "ndim_down", "nan", "inf", "complex"),
        rtol=1e-6, finite=False)

    def build_pl(rng, dims, hp):
        return {"n": hp.get("n_modes", 1 + dims["n"]), "nu": hp.get("nu", 1.5), "kappa": hp.get("kappa", 0.5),
                "which": dims["w"] % 2 if "n_modes" in hp else dims["w"]}

    def pl_call(a):
        from ntkit import theory as T

        if a["which"] == 0:
            return T.power_law(a["n"], a["nu"], a["kappa"])
        if a["which"] == 1:
            return T.circle_power_law(a["n"], a["nu"], a["kappa"])
        return (T.power_law_exponent(a["nu"], a["kappa"]),)

    E["theory.power_law"] = Entry(
        "theory.power_law", ("ntkit.theory.power_law", "ntkit.theory.circle_power_law",
                             "ntkit.theory.power_law_exponent"), build_pl, pl_call,
        lambda a, dims, r: [(f"out{i}", np.asarray(x, dtype=float), None) for i, x in enumerate(r)], {},
        {"n": (0, 5), "w": (0, 2)}, params={"n_modes": BAD_POS_INT, "nu": [0.0, -1.0, NAN, INF, "2", None],
                                             "kappa": [-1.0, -2.0, NAN, INF, "1", None]})
    return E


# ------------------------------------------------------------------------------------- online
ONLINE_CORES = ("kogd", "aogd_ald", "nons_ald", "kons", "sketched_kons")
ONLINE_ESTIMATORS = ("KOGD", "AOGDALD", "NONSALD", "KONS", "SketchedKONS")


def _online_entries():
    E = {}

    def build_update(rng, dims, hp):
        from ntkit import online

        core = getattr(online, ONLINE_CORES[dims["c"]])(_kernel(dims["k"] % 3))
        d = dims["d"]
        state = core.init(d)
        if dims["warm"]:
            state = core.update(state, _normal(rng, 3, d), rng.standard_normal(3)).state
        return {"core": core, "state": state, "X": _normal(rng, dims["n"], d), "y": rng.standard_normal(dims["n"]),
                "_probe": _normal(rng, 2, d)}

    E["online.cores.update"] = Entry(
        "online.cores.update", tuple(f"ntkit.online.{c}" for c in ONLINE_CORES), build_update,
        lambda a: a["core"].update(a["state"], a["X"], a["y"]),
        lambda a, dims, r: [("predictions", r.predictions, (dims["n"],)),
                            ("predict(probe)", a["core"].predict(r.state, a["_probe"]), (2,))],
        {"X": Arg((2,)), "y": Arg((1,))}, {"c": (0, 4), "k": (0, 7), "d": FEATS, "n": ROWS1, "warm": (0, 1)},
        (("y", 0, "X"), ("X", 1, "n_features"), ("X", 0, "y")))

    def build_predict(rng, dims, hp):
        a = build_update(rng, dims, hp)
        a["state"] = a["core"].update(a["state"], _normal(rng, 3, dims["d"]), rng.standard_normal(3)).state
        return a

    E["online.cores.predict"] = Entry(
        "online.cores.predict", (), build_predict, lambda a: a["core"].predict(a["state"], a["X"]),
        lambda a, dims, r: [("predictions", r, (dims["n"],))], {"X": Arg((2,))},
        {"c": (0, 4), "k": (0, 7), "d": FEATS, "n": ROWS, "warm": (0, 1)}, (("X", 1, "n_features"),))

    for ename in ONLINE_ESTIMATORS:
        def build_fit(rng, dims, hp, ename=ename):
            from ntkit import online

            est = getattr(online, ename)(_kernel(dims["k"] % 3) if dims["k"] < 6 else None)
            if ename == "SketchedKONS":
                est.set_params(random_state=0)
            d = dims["d"]
            if dims["pf"]:
                est.partial_fit(_normal(rng, 3, d), rng.standard_normal(3))
            return {"est": est, "X": _normal(rng, dims["n"], d), "y": rng.standard_normal(dims["n"]),
                    "how": dims["pf"], "_probe": _normal(rng, 2, d)}

        E[f"online.{ename}.fit"] = Entry(
            f"online.{ename}.fit", (f"ntkit.online.{ename}.fit", f"ntkit.online.{ename}.partial_fit"), build_fit,
            lambda a: (a["est"].fit, a["est"].partial_fit)[a["how"]](a["X"], a["y"]),
            lambda a, dims, r: [("online_predictions_", r.online_predictions_, (dims["n"],)),
                                ("predict(probe)", r.predict(a["_probe"]), (2,))],
            {"X": Arg((2,)), "y": Arg((1,))}, {"k": (0, 7), "d": FEATS, "n": ROWS1, "pf": (0, 1)},
            (("y", 0, "X"), ("X", 0, "y"), ("X", 1, "n_features_in_")), bad_ok=("ndim_up",))

        def build_pred(rng, dims, hp, ename=ename):
            a = build_fit(rng, dict(dims, pf=1), hp, ename)
            return {"est": a["est"], "X": _normal(rng, dims["n"], dims["d"])}

        E[f"online.{ename}.predict"] = Entry(
            f"online.{ename}.predict", (f"ntkit.online.{ename}.predict",), build_pred,
            lambda a: a["est"].predict(a["X"]), lambda a, dims, r: [("predictions", r, (dims["n"],))],
            {"X": Arg((2,))}, {"k": (0, 7), "d": FEATS, "n": ROWS}, (("X", 1, "n_features_in_"),),
            edge_ok=_rows("n"))

    def build_regret(rng, dims, hp):
        from ntkit import online

        n = dims["n"]
        est = getattr(online, ONLINE_ESTIMATORS[dims["c"]])(_kernel(dims["k"] % 3))
        if ONLINE_ESTIMATORS[dims["c"]] == "SketchedKONS":
            est.set_params(random_state=0)
        return {"est": est, "X": _normal(rng, n, dims["d"]), "y": rng.standard_normal(n),
                "comparator": "krr", "ridge": hp.get("ridge", 1.0)}

    E["online.regret_curve"] = Entry(
        "online.regret_curve", ("ntkit.online.regret_curve",), build_regret,
        lambda a: _mod("ntkit.online").regret_curve(a["est"], a["X"], a["y"], a["comparator"],
                                                    ridge=a["ridge"], n_centers=4),
        lambda a, dims, r: [(k, getattr(r, k), (dims["n"],)) for k in ("loss", "cumulative_loss", "regret")],
        {"X": Arg((2,)), "y": Arg((1,))}, {"c": (0, 4), "k": (0, 7), "d": FEATS, "n": ROWS1},
        (("y", 0, "X"), ("X", 0, "y")), params={"ridge": BAD_POS[:-1]}, rtol=1e-5)

    def build_okr(rng, dims, hp):
        from ntkit.estimators import OnlineKernelRegressor

        est = OnlineKernelRegressor(("kogd", "aogd_ald", "nons_ald", "kons", "sketched_kons")[dims["c"]],
                                    kernel=_kernel(dims["k"] % 3), learner_params={"random_state": 0} if dims["c"] == 4
                                    else None)
        d = dims["d"]
        if dims["pf"]:
            est.partial_fit(_normal(rng, 3, d), rng.standard_normal(3))
        return {"est": est, "X": _normal(rng, dims["n"], d), "y": rng.standard_normal(dims["n"]), "how": dims["pf"],
                "_probe": _normal(rng, 2, d)}

    E["estimators.OnlineKernelRegressor.fit"] = Entry(
        "estimators.OnlineKernelRegressor.fit", ("ntkit.estimators.OnlineKernelRegressor.fit",
                                                 "ntkit.estimators.OnlineKernelRegressor.partial_fit"), build_okr,
        lambda a: (a["est"].fit, a["est"].partial_fit)[a["how"]](a["X"], a["y"]),
        lambda a, dims, r: [("predict(probe)", r.predict(a["_probe"]), (2,))],
        {"X": Arg((2,)), "y": Arg((1,))}, {"c": (0, 4), "k": (0, 7), "d": FEATS, "n": ROWS1, "pf": (0, 1)},
        (("y", 0, "X"), ("X", 0, "y"), ("X", 1, "n_features_in_")), bad_ok=("ndim_up",))

    def build_okr_pred(rng, dims, hp):
        a = build_okr(rng, dict(dims, pf=1), hp)
        return {"est": a["est"], "X": _normal(rng, dims["n"], dims["d"])}

    E["estimators.OnlineKernelRegressor.predict"] = Entry(
        "estimators.OnlineKernelRegressor.predict", ("ntkit.estimators.OnlineKernelRegressor.predict",),
        build_okr_pred, lambda a: a["est"].predict(a["X"]), lambda a, dims, r: [("predictions", r, (dims["n"],))],
        {"X": Arg((2,))}, {"c": (0, 4), "k": (0, 7), "d": FEATS, "n": ROWS}, (("X", 1, "n_features_in_"),),
        edge_ok=_rows("n"))
    return E


# ------------------------------------------------------------------------------------- solvers
def _solver_entries():
    E = {}

    def build_ep(rng, dims, hp):
        n, d = dims["n"], dims["d"]
        X = _normal(rng, n, d)
        y = rng.standard_normal(n) if dims["o"] == 0 else rng.standard_normal((n, dims["o"]))
        centers = _normal(rng, dims["p"], d) if dims["c"] else None
        return {"kernel": _kernel(dims["k"]), "X": X, "y": y, "centers": centers, "ridge": hp.get("ridge", 0.0),
                "epochs": hp.get("epochs", 2), "_probe": _normal(rng, 2, d)}

    def ep_out(a, dims, r):
        rows = dims["p"] if dims["c"] else dims["n"]
        tail = () if dims["o"] == 0 else (dims["o"],)
        return [("weights", r.weights, (rows,) + tail), ("predict(probe)", r.predict(a["_probe"]), (2,) + tail)]

    E["solvers.eigenpro"] = Entry(
        "solvers.eigenpro", ("ntkit.solvers.eigenpro", "ntkit.solvers.EigenProResult.predict"), build_ep,
        lambda a: _mod("ntkit.solvers").eigenpro(a["kernel"], a["X"], a["y"], centers=a["centers"],
                                                 ridge=a["ridge"], epochs=a["epochs"],
                                                 random_state=0),
        ep_out, {"X": Arg((2,)), "y": Arg((1, 2)), "centers": Arg((2,))},
        {"n": ROWS1, "d": FEATS, "o": (0, 2), "c": (0, 1), "p": (1, 4), "k": (0, 7)},
        (("y", 0, "X"), ("X", 0, "y"), ("centers", 1, "X")), params={"ridge": BAD_NONNEG, "epochs": BAD_POS_INT},
        rtol=1e-4, rtol_cast=5e-2, known_errors=EIGENPRO_AUTO, compare_cast=False)

    def build_ep_pred(rng, dims, hp):
        a = build_ep(rng, dims, hp)
        from ntkit.solvers import eigenpro

        from ntkit.kernels import Laplace

        for kernel, n_eigen in ((a["kernel"], "auto"), (a["kernel"], 1), (Laplace(), 1)):
            try:  # EIGENPRO_AUTO on a tiny problem: fall back to a simpler preconditioner, then kernel
                res = eigenpro(kernel, a["X"], a["y"], centers=a["centers"], epochs=2, random_state=0,
                               n_eigen=n_eigen)
                break
            except ValueError:
                continue
        return {"res": res, "X": _normal(rng, dims["q"], dims["d"])}

    E["solvers.EigenProResult.predict"] = Entry(
        "solvers.EigenProResult.predict", ("ntkit.solvers.EigenProResult.predict",), build_ep_pred,
        lambda a: a["res"].predict(a["X"]),
        lambda a, dims, r: [("predictions", r, (dims["q"],) + (() if dims["o"] == 0 else (dims["o"],)))],
        {"X": Arg((2,))}, {"n": ROWS1, "d": FEATS, "o": (0, 2), "c": (0, 1), "p": (1, 4), "k": (0, 7), "q": ROWS},
        (("X", 1, "centers"),))

    def build_ny(rng, dims, hp):
        a = build_ep(rng, dims, hp)
        a["ridge"] = hp.get("ridge", 1e-3)
        return a

    def ny_out(a, dims, r):
        tail = () if dims["o"] == 0 else (dims["o"],)
        return [("weights", r.weights, (None,) + tail), ("predict(probe)", r.predict(a["_probe"]), (2,) + tail)]

    E["solvers.nystrom_pcg"] = Entry(
        "solvers.nystrom_pcg", ("ntkit.solvers.nystrom_pcg", "ntkit.solvers.NystromResult.predict"), build_ny,
        lambda a: _mod("ntkit.solvers").nystrom_pcg(a["kernel"], a["X"], a["y"], n_centers=3,
                                                    centers=a["centers"], ridge=a["ridge"],
                                                    maxiter=5, random_state=0),
        ny_out, {"X": Arg((2,)), "y": Arg((1, 2)), "centers": Arg((2,))},
        {"n": ROWS1, "d": FEATS, "o": (0, 2), "c": (0, 1), "p": (1, 4), "k": (0, 7)},
        (("y", 0, "X"), ("X", 0, "y"), ("centers", 1, "X")), params={"ridge": BAD_POS[:-1]}, rtol=1e-4,
        rtol_cast=5e-2, compare_cast=False)

    def build_top(rng, dims, hp):
        return {"kernel": _kernel(dims["k"]), "X": _normal(rng, dims["n"], dims["d"]),
                "q": hp.get("q", min(dims["q"], dims["n"])), "method": ("auto", "eigh", "randomized")[dims["m"]]}

    E["solvers.top_eigensystem"] = Entry(
        "solvers.top_eigensystem", ("ntkit.solvers.top_eigensystem",), build_top,
        lambda a: _mod("ntkit.solvers").top_eigensystem(a["kernel"], a["X"], a["q"],
                                                        method=a["method"], random_state=0),
        lambda a, dims, r: [("eigenvalues", r.eigenvalues, (min(dims["q"], dims["n"]),))],
        {"X": Arg((2,), names=("X_sub",))}, {"n": ROWS1, "d": FEATS, "q": (1, 4), "k": (0, 7), "m": (0, 2)},
        params={"q": [0, -1, 1.5, "2", None, 100]}, rtol=1e-5, rtol_cast=5e-2)

    def build_epp(rng, dims, hp):
        lam = np.sort(rng.uniform(0.01, 1.0, dims["P"]))[::-1].copy()
        return {"eigenvalues": lam, "beta": hp.get("beta", 1.0)}

    E["solvers.eigenpro_parameters"] = Entry(
        "solvers.eigenpro_parameters", ("ntkit.solvers.eigenpro_parameters",), build_epp,
        lambda a: _mod("ntkit.solvers").eigenpro_parameters(a["eigenvalues"], a["beta"]),
        lambda a, dims, r: [(f"field{i}", np.asarray(x, dtype=float), None) for i, x in enumerate(r)
                            if np.asarray(x).dtype.kind in "fiu"],
        {"eigenvalues": Arg((1,), skip=("bool",), extra=("negative",))}, {"P": (1, 6)}, params={"beta": BAD_POS})
    return E


# ------------------------------------------------------------------------------------- estimators
def _estimator_entries():
    E = {}
    REGS = {"NTKRegressor": lambda k: _mod("ntkit.estimators").NTKRegressor(k, ridge=1e-3),
            "EigenProRegressor": lambda k: _mod("ntkit.estimators").EigenProRegressor(
                k, epochs=2, random_state=0),
            "NTKClassifier": lambda k: _mod("ntkit.estimators").NTKClassifier(k, ridge=1e-3),
            "EigenProClassifier": lambda k: _mod("ntkit.estimators").EigenProClassifier(
                k, epochs=2, random_state=0)}
    for ename, factory in REGS.items():
        cls = "Classifier" in ename

        def build_fit(rng, dims, hp, factory=factory, cls=cls):
            n, d = dims["n"], dims["d"]
            y = np.arange(n) % 3 if cls else rng.standard_normal(n)
            return {"est": factory(_kernel(dims["k"]) if dims["k"] < 8 else None), "X": _normal(rng, n, d), "y": y,
                    "_probe": _normal(rng, 2, d)}

        def fit_out(a, dims, r, cls=cls):
            outs = [("predict(probe)", r.predict(a["_probe"]), (2,) + np.shape(a["y"])[1:])]
            if cls:
                outs.append(("decision_function(probe)", r.decision_function(a["_probe"]), None))
            return outs

        E[f"estimators.{ename}.fit"] = Entry(
            f"estimators.{ename}.fit", (f"ntkit.estimators.{ename}.fit",), build_fit,
            lambda a: a["est"].fit(a["X"], a["y"]), fit_out,
            {"X": Arg((2,)), "y": Arg((1,), kind="label" if cls else "float", names=("label",) if cls else (),
                                        skip=("complex",) if cls else ())},
            {"n": (1, 6), "d": FEATS, "k": (0, 8)},
            (("y", 0, "X"), ("X", 0, "y")),
            rtol=1e-4, rtol_cast=5e-2, edge_ok=(lambda dims: dims["n"] < 2) if cls else None,
            bad_ok=() if cls else ("ndim_up",),  # a column y is a one-output multi-output regression
            known_errors=EIGENPRO_AUTO if ename.startswith("EigenPro") else {},
            compare_cast=not ename.startswith("EigenPro"))

        def build_pred(rng, dims, hp, factory=factory, cls=cls):
            a = build_fit(rng, dict(dims, n=12), hp, factory, cls)
            if cls:
                a["y"] = np.arange(12) % 3
            try:
                a["est"].fit(a["X"], a["y"])
            except ValueError:  # EIGENPRO_AUTO on a tiny problem: a simpler preconditioner then
                from ntkit.kernels import Laplace

                a["est"].set_params(n_eigen=1, kernel=Laplace()).fit(a["X"], a["y"])
            return {"est": a["est"], "X": _normal(rng, dims["n"], dims["d"]), "how": dims["how"] if cls else 0}

        def pred_out(a, dims, r, cls=cls):
            return [("out", r, (dims["n"],) if dims["how"] == 0 or not cls else (dims["n"], 3))]

        E[f"estimators.{ename}.predict"] = Entry(
            f"estimators.{ename}.predict", (f"ntkit.estimators.{ename}.predict",) +
            ((f"ntkit.estimators.{ename}.decision_function",) if cls else ()), build_pred,
            lambda a: getattr(a["est"], ("predict", "decision_function")[a["how"]])(a["X"]), pred_out,
            {"X": Arg((2,))}, {"n": ROWS, "d": FEATS, "k": (0, 8), "how": (0, 1)}, (("X", 1, "n_features_in_"),),
            edge_ok=_rows("n"), rtol=1e-4, rtol_cast=5e-2)
    return E


# ------------------------------------------------------------------------------------- STKR
def _stkr_entries():
    E = {}
    TRANS = ("inverse_laplacian", "polynomial", "kernel_pca")

    def build(rng, dims, hp):
        n, d = dims["n"], dims["d"]
        y = rng.standard_normal(n) if dims["o"] == 0 else rng.standard_normal((n, dims["o"]))
        return {"kernel": _kernel(dims["k"]), "X": _normal(rng, n, d), "y": y,
                "X_unlabeled": _normal(rng, dims["m"], d), "transformation": TRANS[dims["t"]],
                "ridge": hp.get("ridge", 1e-2), "_probe": _normal(rng, 2, d)}

    def call(a):
        t = a["transformation"]
        return _mod("ntkit.solvers").stkr(a["kernel"], a["X"], a["y"], a["X_unlabeled"], transformation=t,
                                          coefficients=(1.0, 1.0) if t == "polynomial" else None,
                                          n_components=1 if t == "kernel_pca" else None, ridge=a["ridge"],
                                          random_state=0)

    def out(a, dims, r):
        tail = () if dims["o"] == 0 else (dims["o"],)
        return [("weights", r.weights, (dims["n"] + dims["m"],) + tail),
                ("predict(probe)", r.predict(a["_probe"]), (2,) + tail)]

    dims = {"n": ROWS1, "m": (1, 6), "d": FEATS, "o": (0, 2), "k": (0, 7), "t": (0, 2)}
    E["solvers.stkr"] = Entry(
        "solvers.stkr", ("ntkit.solvers.stkr",), build, call, out,
        {"X": Arg((2,)), "y": Arg((1, 2)), "X_unlabeled": Arg((2,))}, dims,
        (("y", 0, "X"), ("X", 0, "y"), ("X_unlabeled", 1, "X")), params={"ridge": BAD_POS[:-1]},
        rtol=1e-4, rtol_cast=5e-2, compare_cast=False)

    def build_pred(rng, dims, hp):
        a = build(rng, dict(dims, n=8, m=12), hp)
        return {"res": call(a), "X": _normal(rng, dims["q"], dims["d"])}

    E["solvers.STKRResult.predict"] = Entry(
        "solvers.STKRResult.predict", ("ntkit.solvers.STKRResult.predict",), build_pred,
        lambda a: a["res"].predict(a["X"]),
        lambda a, dims, r: [("predictions", r, (dims["q"],) + (() if dims["o"] == 0 else (dims["o"],)))],
        {"X": Arg((2,))}, dict(dims, q=ROWS), (("X", 1, "centers"),), edge_ok=_rows("q"), rtol=1e-4,
        rtol_cast=5e-2)

    for cls in (False, True):
        ename = "STKRClassifier" if cls else "STKRRegressor"

        def build_fit(rng, dims, hp, cls=cls, ename=ename):
            n, d = dims["n"], dims["d"]
            y = np.arange(n) % 2 if cls else rng.standard_normal(n)
            est = getattr(_mod("ntkit.estimators"), ename)(_kernel(dims["k"]), ridge=1e-2,
                                                          transformation=TRANS[dims["t"]],
                                                          n_components=1 if dims["t"] == 2 else None,
                                                          coefficients=(1.0, 1.0) if dims["t"] == 1 else None,
                                                          random_state=0)
            return {"est": est, "X": _normal(rng, n, d), "y": y, "X_unlabeled": _normal(rng, dims["m"], d),
                    "_probe": _normal(rng, 2, d)}

        def fit_out(a, dims, r, cls=cls):
            outs = [("predict(probe)", r.predict(a["_probe"]), (2,) + (() if cls else np.shape(a["y"])[1:]))]
            if cls:
                outs.append(("decision_function(probe)", r.decision_function(a["_probe"]), None))
            return outs

        E[f"estimators.{ename}.fit"] = Entry(
            f"estimators.{ename}.fit", (f"ntkit.estimators.{ename}.fit",), build_fit,
            lambda a: a["est"].fit(a["X"], a["y"], X_unlabeled=a["X_unlabeled"]), fit_out,
            {"X": Arg((2,)), "y": Arg((1,), kind="label" if cls else "float", names=("label",) if cls else (),
                                        skip=("complex", "nan") if cls else ("nan",)),
             "X_unlabeled": Arg((2,))},
            {"n": (2, 6), "m": (1, 6), "d": FEATS, "k": (0, 7), "t": (0, 2)},
            (("y", 0, "X"), ("X", 0, "y"), ("X_unlabeled", 1, "X")),
            rtol=1e-4, rtol_cast=5e-2, edge_ok=(lambda dims: dims["n"] < 2) if cls else None,
            bad_ok=() if cls else ("ndim_up",), compare_cast=False)

        def build_pred(rng, dims, hp, build_fit=build_fit, cls=cls):
            a = build_fit(rng, dict(dims, n=12, m=8), hp)
            a["est"].fit(a["X"], a["y"], X_unlabeled=a["X_unlabeled"])
            return {"est": a["est"], "X": _normal(rng, dims["q"], dims["d"]), "how": dims["how"] if cls else 0}

        E[f"estimators.{ename}.predict"] = Entry(
            f"estimators.{ename}.predict", (f"ntkit.estimators.{ename}.predict",) +
            ((f"ntkit.estimators.{ename}.decision_function",) if cls else ()), build_pred,
            lambda a: getattr(a["est"], ("predict", "decision_function")[a["how"]])(a["X"]),
            lambda a, dims, r: [("out", r, (dims["q"],))],
            {"X": Arg((2,))}, {"q": ROWS, "d": FEATS, "k": (0, 7), "t": (0, 2), "how": (0, 1)},
            (("X", 1, "n_features_in_"),), edge_ok=_rows("q"), rtol=1e-4, rtol_cast=5e-2)
    return E


# ------------------------------------------------------------------------------------- stax
def _stax_entries():
    def factory(hp):
        from ntkit import stax

        _, _, kernel_fn = stax.serial(stax.Dense(16, W_std=1.5, b_std=0.1), stax.Erf(), stax.Dense(1))
        # validated at call time, like every kernel
        return stax.StaxKernel(kernel_fn, get=hp.get("get", "ntk"), input_shape=hp.get("input_shape"))

    params = {"get": ["nngp_ntk", None, 1, ("nngp", "ntk")], "input_shape": [(0, 2), (2,), "2x2", (2, True)]}

    def build_call(rng, dims, hp):
        n, m, d = dims["n"], dims["m"], dims["d"]
        return {"kernel": factory(hp), "X": _normal(rng, n, d), "Z": _normal(rng, m, d) if dims["z"] else None}

    def build_diag(rng, dims, hp):
        return {"kernel": factory(hp), "X": _normal(rng, dims["n"], dims["d"])}

    return {
        "stax.StaxKernel.__call__": Entry(
            name="stax.StaxKernel.__call__", covers=("ntkit.stax.StaxKernel.__call__",), build=build_call,
            call=lambda a: a["kernel"](a["X"], a["Z"]),
            out=lambda a, dims, r: [("K", r, (dims["n"], dims["m"] if dims["z"] else dims["n"]))],
            arrays={"X": Arg((2,)), "Z": Arg((2,))}, dims={"n": ROWS, "m": ROWS, "d": FEATS, "z": (0, 1)},
            mismatch=(("Z", 1, "X"), ("X", 1, "Z")), params=params, f32_out=True, weight=0.5),
        "stax.StaxKernel.diag": Entry(
            name="stax.StaxKernel.diag", covers=("ntkit.stax.StaxKernel.diag",), build=build_diag,
            call=lambda a: a["kernel"].diag(a["X"]), out=lambda a, dims, r: [("diag", r, (dims["n"],))],
            arrays={"X": Arg((2,))}, dims={"n": ROWS, "d": FEATS}, params=params, f32_out=True, weight=0.5),
    }


# ------------------------------------------------------------------------------------- ntk / explain (jax)
def _mlp(d, o, seed=0):
    import jax

    from ntkit.ntk.models import mlp

    init, apply = mlp((d, 4, o))
    return apply, init(jax.random.PRNGKey(seed))


NTK_KINDS = ("trace", "sum_logits", "full", "diagonal")


def _ntk_entries():
    E = {}

    def build(rng, dims, hp):
        apply, params = _mlp(dims["d"], dims["o"])
        return {"apply": apply, "params": params, "x1": _normal(rng, dims["n"], dims["d"]).astype(np.float32),
                "x2": _normal(rng, dims["m"], dims["d"]).astype(np.float32) if dims["z"] else None,
                "kind": NTK_KINDS[dims["kind"]], "fn": dims["fn"]}

    def call(a):
        from ntkit.ntk import empirical_ntk, empirical_ntk_fn

        if a["fn"]:
            return empirical_ntk_fn(a["apply"], kind=a["kind"])(a["params"], a["x1"], a["x2"])
        return empirical_ntk(a["apply"], a["params"], a["x1"], a["x2"], kind=a["kind"])

    def out(a, dims, r):
        n = dims["n"]
        m = dims["m"] if dims["z"] else n
        o = dims["o"]
        shape = {"trace": (n, m), "sum_logits": (n, m), "full": (n, m, o, o), "diagonal": None}[a["kind"]]
        return [("ntk", np.asarray(r), shape)]

    E["ntk.empirical_ntk"] = Entry(
        "ntk.empirical_ntk", ("ntkit.ntk.empirical_ntk", "ntkit.ntk.empirical_ntk_fn"), build, call, out,
        {"x1": Arg((2,)), "x2": Arg((2,))}, {"n": (0, 3), "m": (1, 3), "d": (1, 2), "o": (1, 2), "z": (0, 1),
                                            "kind": (0, 2), "fn": (0, 1)},
        (("x2", 1, "x1"),), edge_ok=_rows("n"), rtol=1e-4, rtol_cast=5e-2, weight=0.4)

    def call_nngp(a):
        from ntkit.ntk import empirical_nngp, empirical_nngp_fn

        if a["fn"]:
            return empirical_nngp_fn(a["apply"], kind=a["kind"])(a["params"], a["x1"], a["x2"])
        return empirical_nngp(a["apply"], a["params"], a["x1"], a["x2"], kind=a["kind"])

    E["ntk.empirical_nngp"] = Entry(
        "ntk.empirical_nngp", ("ntkit.ntk.empirical_nngp",), build, call_nngp,
        lambda a, dims, r: [("nngp", np.asarray(r), out(a, dims, r)[0][2])],
        {"x1": Arg((2,)), "x2": Arg((2,))}, {"n": (0, 3), "m": (1, 3), "d": (1, 2), "o": (1, 2), "z": (0, 1),
                                            "kind": (0, 2), "fn": (0, 1)},
        (("x2", 1, "x1"),), edge_ok=_rows("n"), rtol=1e-4, rtol_cast=5e-2, weight=0.3)

    def build_sr(rng, dims, hp):
        apply, params = _mlp(dims["d"], dims["o"])
        return {"apply": apply, "params": params, "x": _normal(rng, dims["n"], dims["d"]).astype(np.float32)}

    E["ntk.structure_report"] = Entry(
        "ntk.structure_report", ("ntkit.ntk.structure_report",), build_sr,
        lambda a: _mod("ntkit.ntk").structure_report(a["apply"], a["params"], a["x"]),
        lambda a, dims, r: [("n_params", np.asarray(r.n_params), ())], {"x": Arg((2,))},
        {"n": (0, 3), "d": (1, 2), "o": (1, 2)}, edge_ok=_rows("n"), weight=0.3)

    def build_op(rng, dims, hp):
        a = build_sr(rng, dims, hp)
        a["kind"] = ("full", "trace")[dims["kind"]]
        a["ridge"] = hp.get("ridge", 0.1)
        return a

    def op_out(a, dims, r):
        rows = dims["n"] * (dims["o"] if a["kind"] == "full" else 1)
        return [("dense", r.matmat(np.eye(r.shape[1], dtype=r.dtype)), (rows, rows))]

    E["ntk.NTKOperator"] = Entry(
        "ntk.NTKOperator", ("ntkit.ntk.NTKOperator",), build_op,
        lambda a: _mod("ntkit.ntk").NTKOperator(a["apply"], a["params"], a["x"], kind=a["kind"],
                                                ridge=a["ridge"]),
        op_out, {"x": Arg((2,))}, {"n": (0, 3), "d": (1, 2), "o": (1, 2), "kind": (0, 1)},
        params={"ridge": BAD_NONNEG}, edge_ok=_rows("n"), rtol=1e-4, rtol_cast=5e-2, weight=0.3)

    def build_op_mv(rng, dims, hp):
        a = build_op(rng, dims, hp)
        op = _mod("ntkit.ntk").NTKOperator(a["apply"], a["params"], a["x"], kind=a["kind"],
                                           ridge=a["ridge"])
        rows = op.shape[1]
        return {"op": op, "v": rng.standard_normal(rows) if dims["t"] == 0 else rng.standard_normal((rows, dims["t"]))}

    E["ntk.NTKOperator.matvec"] = Entry(
        "ntk.NTKOperator.matvec", tuple(f"ntkit.ntk.NTKOperator.{m}" for m in ("matvec", "matmat", "rmatvec",
                                                                             "rmatmat", "dot")), build_op_mv,
        lambda a: a["op"] @ a["v"],
        lambda a, dims, r: [("Av", r, (a["op"].shape[0],) + ((dims["t"],) if dims["t"] else ()))],
        {"v": Arg((1, 2), names=("x", "operands"))}, {"n": (1, 3), "d": (1, 2), "o": (1, 2), "kind": (0, 1),
                                                      "t": (0, 2)},
        (("v", 0, "op"),), rtol=1e-4, rtol_cast=5e-2, weight=0.3)

    def build_ek(rng, dims, hp):
        from ntkit.estimators import EmpiricalNTKKernel

        apply, params = _mlp(dims["d"], dims["o"])
        return {"k": EmpiricalNTKKernel(apply, params, kind=("trace", "sum_logits")[dims["kind"]]),
                "A": _normal(rng, dims["n"], dims["d"]),
                "B": _normal(rng, dims["m"], dims["d"]) if dims["z"] and not dims["how"] else None, "how": dims["how"]}

    def ek_out(a, dims, r):
        m = dims["m"] if dims["z"] else dims["n"]
        return [("K", r, (dims["n"], m) if a["how"] == 0 else (dims["n"],))]

    E["estimators.EmpiricalNTKKernel"] = Entry(
        "estimators.EmpiricalNTKKernel", ("ntkit.estimators.EmpiricalNTKKernel.__call__",
                                          "ntkit.estimators.EmpiricalNTKKernel.diag"), build_ek,
        lambda a: a["k"](a["A"], a["B"]) if a["how"] == 0 else a["k"].diag(a["A"]), ek_out,
        {"A": Arg((2,)), "B": Arg((2,))}, {"n": (0, 3), "m": (1, 3), "d": (1, 2), "o": (1, 2), "z": (0, 1),
                                          "kind": (0, 1), "how": (0, 1)},
        (("B", 1, "A"),), edge_ok=_rows("n"), rtol=1e-4, rtol_cast=5e-2, weight=0.4)

    def build_sur(rng, dims, hp):
        from ntkit.explain import NTKSurrogate

        apply, params = _mlp(dims["d"], 2)
        n = dims["n"]
        return {"s": NTKSurrogate(apply, params, kind=("trace", "sum_logits")[dims["kind"]],
                                  machine=("logistic", "ridge")[dims["mach"]]),
                "X_train": _normal(rng, n, dims["d"]).astype(np.float32), "y_train": np.arange(n) % 2,
                "_probe": _normal(rng, 2, dims["d"]).astype(np.float32)}

    E["explain.NTKSurrogate.fit"] = Entry(
        "explain.NTKSurrogate.fit", ("ntkit.explain.NTKSurrogate.fit",), build_sur,
        lambda a: a["s"].fit(a["X_train"], a["y_train"]),
        lambda a, dims, r: [("decision_function(probe)", r.decision_function(a["_probe"]), (2, 2))],
        {"X_train": Arg((2,)), "y_train": Arg((1,), kind="label")},
        {"n": (1, 4), "d": (1, 2), "kind": (0, 1), "mach": (0, 1)}, (("y_train", 0, "X_train"),),
        rtol=1e-3, rtol_cast=5e-2, weight=0.4)

    def build_sur_use(rng, dims, hp):
        a = build_sur(rng, dict(dims, n=4), hp)
        a["s"].fit(a["X_train"], a["y_train"])
        return {"s": a["s"], "X": _normal(rng, dims["n"], dims["d"]).astype(np.float32), "how": dims["how"],
                "y": np.arange(dims["n"]) % 2 if dims["yy"] and dims["how"] == 3 else None}

    def sur_call(a):
        s, X = a["s"], a["X"]
        return [s.decision_function, s.predict, s.predict_proba, lambda X: s.fidelity(X, a["y"]),
                lambda X: s.attribute(X, top_k=2)][a["how"]](X)

    def sur_out(a, dims, r):
        n = dims["n"]
        how = a["how"]
        if how == 3:
            return [("fidelity", np.array([x for x in r if x is not None and np.ndim(x) == 0], dtype=float), None)]
        if how == 4:
            return [("support_contribution", r.support_contribution, (n, None))]
        return [("out", r, ((n, 2), (n,), (n, 2))[how])]

    E["explain.NTKSurrogate.predict"] = Entry(
        "explain.NTKSurrogate.predict", ("ntkit.explain.NTKSurrogate.decision_function",
                                         "ntkit.explain.NTKSurrogate.predict",
                                         "ntkit.explain.NTKSurrogate.predict_proba",
                                         "ntkit.explain.NTKSurrogate.fidelity", "ntkit.explain.NTKSurrogate.attribute"),
        build_sur_use, sur_call, sur_out, {"X": Arg((2,)), "y": Arg((1,), kind="label")},
        {"n": (0, 3), "d": (1, 2), "kind": (0, 1), "mach": (0, 1), "how": (0, 4), "yy": (0, 1)},
        (("X", 1, "X_train"), ("y", 0, "X")), edge_ok=lambda dims: dims["n"] < 2, rtol=1e-3, rtol_cast=5e-2,
        weight=0.4, finite=False)
    return E


# ------------------------------------------------------------------------------------- distributed
def _distributed_entries():
    E = {}

    def build(rng, dims, hp):
        a = _build_matvec(rng, dims, hp)
        a["how"] = dims["how"]
        if not a["how"]:
            a["v"] = None  # gram takes no v
        return a

    def call(a):
        from ntkit import distributed as D

        if a["how"] == 0:
            return D.gram(a["kernel"], a["X"], a["Z"], client=None)
        return D.kernel_matvec(a["kernel"], a["X"], a["Z"], a["v"], client=None)

    def out(a, dims, r):
        m = dims["m"] if dims["z"] else dims["n"]
        return [("out", r, (dims["n"], m) if a["how"] == 0 else _matvec_shape(dims))]

    E["distributed.local"] = Entry(
        "distributed.local", ("ntkit.distributed.gram", "ntkit.distributed.kernel_matvec"), build, call, out,
        {"X": Arg((2,)), "Z": Arg((2,)), "v": Arg((1, 2), names=("Z",))}, dict(XZ_DIMS, t=(0, 3), how=(0, 1)),
        XZ_MISMATCH + (("v", 0, "Z"),), weight=0.5,
        )

    def build_ep(rng, dims, hp):
        n, d = dims["n"], dims["d"]
        return {"kernel": _kernel(dims["k"]), "X": _normal(rng, n, d),
                "y": rng.standard_normal(n) if dims["o"] == 0 else rng.standard_normal((n, dims["o"])),
                "centers": _normal(rng, dims["p"], d), "_probe": _normal(rng, 2, d)}

    def ep_out(a, dims, r):
        tail = () if dims["o"] == 0 else (dims["o"],)
        return [("weights", r.weights, (dims["p"],) + tail), ("predict(probe)", r.predict(a["_probe"]), (2,) + tail)]

    E["distributed.eigenpro"] = Entry(
        "distributed.eigenpro", ("ntkit.distributed.eigenpro",), build_ep,
        lambda a: _mod("ntkit.distributed").eigenpro(a["kernel"], a["X"], a["y"],
                                                     centers=a["centers"], client=None,
                                                     epochs=2, random_state=0),
        ep_out, {"X": Arg((2,)), "y": Arg((1, 2)), "centers": Arg((2,))},
        {"n": ROWS1, "d": FEATS, "o": (0, 2), "p": (1, 4), "k": (0, 7)},
        (("y", 0, "X"), ("X", 0, "y"), ("centers", 1, "X")), rtol=1e-4, rtol_cast=5e-2, weight=0.5,
        known_errors=EIGENPRO_AUTO, compare_cast=False)
    return E


# ------------------------------------------------------------------------------------- predict
def _predict_entries():
    E = {}
    TIMES = (None, 0.7, np.array([0.5, 30.0]))

    def joint(rng, n, m):
        F = _normal(rng, n + m, n + m + 3)
        return F @ F.T / (n + m + 3)  # PSD, well conditioned

    def lead(dims):
        return (2,) if dims["t"] == 2 else ()

    def build_mse(rng, dims, hp):
        n, m, k = dims["n"], dims["m"], dims["k"]
        J = joint(rng, n, m)
        return {"k_train_train": J[:n, :n], "y_train": _normal(rng, n, k), "fx_train_0": 0.1 * _normal(rng, n, k),
                "fx_test_0": 0.1 * _normal(rng, m, k), "k_test_train": J[n:, :n], "t": TIMES[dims["t"]],
                "learning_rate": hp.get("learning_rate", 1.0), "diag_reg": hp.get("diag_reg", 1e-3)}

    E["predict.gradient_descent_mse"] = Entry(
        "predict.gradient_descent_mse", ("ntkit.predict.gradient_descent_mse",), build_mse,
        lambda a: _mod("ntkit.predict").gradient_descent_mse(
            a["k_train_train"], a["y_train"], learning_rate=a["learning_rate"], diag_reg=a["diag_reg"])(
            a["t"], a["fx_train_0"], a["fx_test_0"], a["k_test_train"]),
        lambda a, dims, r: [("fx_train", r[0], lead(dims) + (dims["n"], dims["k"])),
                            ("fx_test", r[1], lead(dims) + (dims["m"], dims["k"]))],
        {"k_train_train": Arg((2,)), "y_train": Arg((2,)), "fx_train_0": Arg((2,), names=("y_train",)),
         "fx_test_0": Arg((2,)), "k_test_train": Arg((2,))},
        {"n": ROWS1, "m": (0, 3), "k": (1, 3), "t": (0, 2)},
        (("y_train", 0, "k_train_train"), ("k_train_train", 1, "y_train"), ("fx_train_0", 0, "y_train"),
         ("fx_train_0", 1, "y_train"), ("k_test_train", 1, "k_train_train"), ("fx_test_0", 0, "k_test_train"),
         ("fx_test_0", 1, "y_train")),
        params={"learning_rate": BAD_POS, "diag_reg": BAD_NONNEG}, f32_out=True, rtol=1e-5, weight=0.5)

    def build_gp(rng, dims, hp):
        n, m, k = dims["n"], dims["m"], dims["k"]
        J = joint(rng, n, m)
        return {"k_train_train": J[:n, :n], "y_train": _normal(rng, n, k), "k_test_train": J[n:, :n],
                "k_test_test": J[n:, n:], "get": ("nngp", "ntkgp")[dims["g"]], "diag_reg": hp.get("diag_reg", 1e-3)}

    E["predict.gp_inference"] = Entry(
        "predict.gp_inference", ("ntkit.predict.gp_inference",), build_gp,
        lambda a: _mod("ntkit.predict").gp_inference(a["k_train_train"], a["y_train"], diag_reg=a["diag_reg"])(
            a["get"], a["k_test_train"], a["k_test_test"]),
        lambda a, dims, r: [("mean", r.mean, (dims["m"], dims["k"])), ("covariance", r.covariance,
                                                                      (dims["m"], dims["m"]))],
        {"k_train_train": Arg((2,)), "y_train": Arg((2,)), "k_test_train": Arg((2,)), "k_test_test": Arg((2,))},
        {"n": ROWS1, "m": (0, 3), "k": (1, 3), "g": (0, 1)},
        (("y_train", 0, "k_train_train"), ("k_test_train", 1, "k_train_train"), ("k_test_test", 0, "k_test_train")),
        params={"diag_reg": BAD_NONNEG}, f32_out=True, rtol=1e-5, weight=0.5)

    def build_ens(rng, dims, hp):
        from collections import namedtuple

        from ntkit.kernels import ReluNNGP, ReluNTK

        Kernel = namedtuple("Kernel", "nngp ntk")
        nngp, ntk = ReluNNGP(depth=1, bias_std=0.1), ReluNTK(depth=1, bias_std=0.1)

        def kernel_fn(x1, x2=None, get=("nngp", "ntk")):
            k = Kernel(nngp(x1, x2), ntk(x1, x2))
            return getattr(k, get) if isinstance(get, str) else k

        n, m = dims["n"], dims["m"]
        return {"kernel_fn": kernel_fn, "x_train": _normal(rng, n, 3), "y_train": _normal(rng, n, dims["k"]),
                "x_test": _normal(rng, m, 3) if m else None, "t": TIMES[dims["t"]], "get": ("nngp", "ntk")[dims["g"]],
                "learning_rate": hp.get("learning_rate", 1.0), "diag_reg": hp.get("diag_reg", 1e-3)}

    E["predict.gradient_descent_mse_ensemble"] = Entry(
        "predict.gradient_descent_mse_ensemble", ("ntkit.predict.gradient_descent_mse_ensemble",), build_ens,
        lambda a: _mod("ntkit.predict").gradient_descent_mse_ensemble(
            a["kernel_fn"], a["x_train"], a["y_train"], learning_rate=a["learning_rate"], diag_reg=a["diag_reg"])(
            a["t"], a["x_test"], a["get"], compute_cov=True),
        lambda a, dims, r: [("mean", r.mean, lead(dims) + (dims["m"] or dims["n"], dims["k"])),
                            ("covariance", r.covariance, lead(dims) + (dims["m"] or dims["n"],) * 2)],
        {"y_train": Arg((2,))}, {"n": ROWS1, "m": (0, 3), "k": (1, 3), "t": (0, 2), "g": (0, 1)},
        (("y_train", 0, "x_train"),), params={"learning_rate": BAD_POS, "diag_reg": BAD_NONNEG},
        rtol=1e-5, weight=0.5)  # no f32_out: the kernels (from float64 x) set the output dtype, as y_train does
    return E


# ------------------------------------------------------------------------------------- table
def _table():
    t = {}
    t.update(_kernel_entries())
    t.update(_ops_entries())
    t.update(_feature_entries())
    t.update(_graph_entries())
    t.update(_theory_entries())
    t.update(_online_entries())
    t.update(_solver_entries())
    t.update(_estimator_entries())
    t.update(_stkr_entries())
    t.update(_stax_entries())
    t.update(_ntk_entries())
    t.update(_distributed_entries())
    t.update(_predict_entries())
    return t


TABLE = _table()

#: Public callables that take arrays but are not fuzzed here, with the reason.
EXEMPT = {
    **{f"ntkit.kernels.{b}.{m}": "abstract base class; every concrete kernel's method is fuzzed"
       for b in ("Kernel", "StationaryKernel", "DotProductKernel") for m in ("__call__", "diag")},
    "ntkit.explain.plot_attributions": "draws a matplotlib figure from an Attribution; its arrays come from "
                                       "NTKSurrogate.attribute, which is fuzzed",
    "ntkit.explain.plot_fidelity": "draws a matplotlib figure; the arrays go through NTKSurrogate.fidelity (fuzzed)",
    **{f"ntkit.stax.{name}": "a layer constructor whose scalar hyper-parameters carry array-like names from "
                             "neural-tangents' signature (a, b); no data arrays: its kernel_fn is tested in tests/stax "
                             "and reached through StaxKernel (fuzzed)"
       for name in ("ABRelu", "Cos", "Erf", "Exp", "Gaussian", "Sin")},
    "ntkit.distributed.graph_random_features": "needs a running Dask client (cluster spin-up is out of CI's budget); "
                                               "its walks are GraphRandomFeatures' (fuzzed)",
    "ntkit.ntk.monte_carlo_kernel_fn": "its n_samples is a count of draws, not data; the arrays of the kernel_fn it "
                                       "returns go through empirical_nngp / empirical_ntk (fuzzed)",
}

#: Parameter names that carry data arrays: a public function or method with one of them must be in
#: TABLE (covers) or EXEMPT.
ARRAY_PARAMS = {"X", "Z", "v", "y", "A", "B", "x", "x1", "x2", "X_sub", "adjacency", "nodes", "eigenvalues",
                "target_coeffs", "n_samples", "frequencies", "W", "b", "V", "weights", "lam", "centers", "init",
                "X_val", "y_val", "X_train", "y_train", "X_query", "M"}
PUBLIC_MODULES = ("ntkit.kernels", "ntkit.ops", "ntkit.ntk", "ntkit.features", "ntkit.graphs", "ntkit.solvers",
                  "ntkit.theory", "ntkit.theory.profiles", "ntkit.online", "ntkit.explain", "ntkit.estimators",
                  "ntkit.distributed", "ntkit.predict", "ntkit.stax")


def _takes_arrays(fn) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return any(p in ARRAY_PARAMS for p in params)


def public_array_callables() -> dict:
    """``{qualified name: callable}`` of every public function and ntkit-defined public method
    (``__init__`` and ``__call__`` included) that takes a data array, by the first public module
    that exports it."""
    out, seen = {}, set()
    for modname in PUBLIC_MODULES:
        mod = importlib.import_module(modname)
        for name in mod.__all__:
            obj = getattr(mod, name)
            if inspect.ismodule(obj) or id(obj) in seen:
                continue
            seen.add(id(obj))
            qual = f"{modname}.{name}"
            if not inspect.isclass(obj):
                if callable(obj) and _takes_arrays(obj):
                    out[qual] = obj
                continue
            container = issubclass(obj, tuple) and hasattr(obj, "_fields")  # NamedTuple results
            for attr in dir(obj):
                if attr.startswith("_") and attr not in ("__init__", "__call__"):
                    continue
                fn = getattr(obj, attr, None)
                fn = getattr(fn, "__func__", fn)
                if not inspect.isfunction(fn) or not (fn.__module__ or "").startswith("ntkit"):
                    continue
                if attr == "__init__":
                    if not container and _takes_arrays(fn):
                        out[qual] = fn
                elif _takes_arrays(fn):
                    out[f"{qual}.{attr}"] = fn
    return out


# ------------------------------------------------------------------------------------- tests
@pytest.fixture(scope="module")
def worker():
    w = Worker(__name__)
    yield w
    w.close()


@pytest.mark.parametrize("name", sorted(TABLE))
def test_bad_input(name, worker):
    check_entry(TABLE[name], worker)


def test_table_covers_public_api():
    """A new public function or method that takes arrays must get a TABLE row (or an EXEMPT reason)."""
    covered = {c for e in TABLE.values() for c in e.covers}
    missing = sorted(set(public_array_callables()) - covered - set(EXEMPT))
    assert not missing, ("public array-taking callables without a fuzz entry in tests/reliability/"
                         f"test_bad_input.py (add one to TABLE, or a reason to EXEMPT): {missing}")
    stale = sorted(set(EXEMPT) & covered)
    assert not stale, f"EXEMPT names that TABLE covers anyway: {stale}"
