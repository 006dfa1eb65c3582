"""Golden ``neural_tangents.predict`` outputs (run in the pinned interop env).

    make interop          # builds .venv-interop and runs this script (and the other make_golden_*.py)

neural-tangents 0.6.5 only runs on jax 0.4.25 / numpy < 2, so ``ntkit.predict`` is compared
against values frozen here. Everything runs in float64 (``jax_enable_x64``).

The file is self-describing: ``cases`` is a JSON list, one entry per predictor built, and the
test (``tests/predict/test_golden_nt.py``) replays each entry with ``ntkit.predict`` and compares
every stored output. An entry is::

    {"name": str, "api": "gradient_descent_mse" | "gp_inference" | "gradient_descent_mse_ensemble"
                        | "max_learning_rate",
     "make": {kwarg: value},            # arguments of the api function
     "calls": [{kwarg: value}, ...]}    # arguments of each call of the returned predict_fn

A value is JSON, or a string naming stored arrays: ``"@name"`` is the array ``name``;
``"@kernel:a,b"`` is a namedtuple ``Kernel(nngp=a, ntk=b)`` of two stored arrays; ``"@true"``
is ``True``; ``"@kernel_fn"`` is the kernel function of the ReLU network
``serial(Dense, Relu, Dense, Relu, Dense)`` (``W_std``, ``b_std`` in ``relu_net``), i.e.
``ntkit.kernels.ReluNNGP / ReluNTK(depth=2, weight_std=W_std, bias_std=b_std)`` on the ntkit side.
A time list stands for an array of times. Times are chosen from the NTK's spectrum (small: the top
mode barely moved; large: every mode within e^-8 of convergence; ~inf: numerically converged).
``max_learning_rate`` runs neural-tangents' non-CPU branch (``jnp.linalg.eigvalsh``): its CPU branch
calls ``scipy.linalg.eigvalsh(..., eigvals=...)``, a keyword scipy 1.14 removed.

Stored arrays::

    cases                  ()          str  JSON list above
    versions               ()          str  JSON {"neural_tangents", "jax", "jaxlib", "numpy", "python"}
    relu_net               (2,)             W_std, b_std of the ReLU network
    x_train (8, 5), x_test (5, 5)           inputs
    y_train (8, 3), fx_train_0 (8, 3), fx_test_0 (5, 3)
    nngp_dd, ntk_dd (8, 8); nngp_td, ntk_td (5, 8); nngp_tt, ntk_tt (5, 5)     nt.stax kernels
    entk_dd (8, 8, 3, 3), entk_td (5, 8, 3, 3), entk_tt (5, 5, 3, 3)           empirical NTK, trace_axes=()
    efx_train_0 (8, 3), efx_test_0 (5, 3)   the finite network's outputs at its parameters
    y3_train (8, 2, 3), fx3_train_0, fx3_test_0 (5, 2, 3)   3-D targets for trace_axes=(1,)
    k3_dd (8, 8, 3, 3), k3_td (5, 8, 3, 3)  a feature-map kernel over the last output axis
    out/<case>/<call>/<path>                each output, flattened: tuple items by index,
                                            namedtuple fields by name (e.g. out/ens/2/ntk/covariance)
"""

import collections
import importlib.metadata
import json
import pathlib
import platform
import sys

import numpy as np

OUT = pathlib.Path(__file__).with_name("predict_nt.npz")
W_STD, B_STD = 1.5, 0.1
LR = 0.7


def _cases(t_small, t_large, t_inf_like, t_array):
    """The table of predictors and calls (times chosen from the kernels' spectra in main())."""
    full = {"fx_train_0": "@fx_train_0", "fx_test_0": "@fx_test_0", "k_test_train": "@ntk_td"}
    times = [t_small, t_large, t_inf_like, None, t_array]
    cases = []
    # gradient_descent_mse on the analytic NTK, multi-output targets, both initial outputs nonzero.
    for tag, make in (("plain", {}), ("rel", {"diag_reg": 1e-2}),
                      ("abs", {"diag_reg": 3e-3, "diag_reg_absolute_scale": True})):
        calls = [dict(full, t=t) for t in times]
        calls += [{"t": t, "fx_train_0": None, "fx_test_0": "@fx_test_0", "k_test_train": "@ntk_td"}
                  for t in (t_small, None)]  # test only
        calls += [{"t": t} for t in (t_small, t_array, None)]  # train only, fx_train_0 = 0.
        calls += [{"t": t, "fx_test_0": "@fx_test_0", "k_test_train": "@ntk_td"} for t in (t_large, None)]
        cases.append({"name": f"mse_{tag}", "api": "gradient_descent_mse",
                      "make": dict({"k_train_train": "@ntk_dd", "y_train": "@y_train", "learning_rate": LR}, **make),
                      "calls": calls})
    # gradient_descent_mse on an empirical NTK with its output axes (trace_axes=()).
    for tag, make in (("plain", {}), ("rel", {"diag_reg": 1e-3})):
        cases.append({"name": f"mse_entk_{tag}", "api": "gradient_descent_mse",
                      "make": dict({"k_train_train": "@entk_dd", "y_train": "@y_train", "trace_axes": []}, **make),
                      "calls": [{"t": t, "fx_train_0": "@efx_train_0", "fx_test_0": "@efx_test_0",
                                 "k_test_train": "@entk_td"} for t in times]})
    # 3-D targets, kernel over the last axis, axis 1 traced (a non-trailing trace axis).
    cases.append({"name": "mse_axis1", "api": "gradient_descent_mse",
                  "make": {"k_train_train": "@k3_dd", "y_train": "@y3_train", "trace_axes": [1], "learning_rate": LR},
                  "calls": [{"t": t, "fx_train_0": "@fx3_train_0", "fx_test_0": "@fx3_test_0",
                             "k_test_train": "@k3_td"} for t in times]})
    # gp_inference.
    for tag, make in (("plain", {}), ("rel", {"diag_reg": 1e-2}),
                      ("abs", {"diag_reg": 3e-3, "diag_reg_absolute_scale": True})):
        kdd, ktd, ktt = "@kernel:nngp_dd,ntk_dd", "@kernel:nngp_td,ntk_td", "@kernel:nngp_tt,ntk_tt"
        calls = [{"get": g, "k_test_train": ktd, "k_test_test": ktt}
                 for g in (None, "nngp", "ntk", "ntkgp", ["ntk", "nngp"], ["ntkgp"])]
        calls += [{"get": g, "k_test_train": ktd} for g in (None, "ntk")]  # means only
        calls += [{"get": None, "k_test_train": None, "k_test_test": "@true"}]  # train set: N(y, 0)
        calls += [{"get": None, "k_test_train": kdd, "k_test_test": kdd}]  # regularised train set
        cases.append({"name": f"gp_{tag}", "api": "gp_inference",
                      "make": dict({"k_train_train": kdd, "y_train": "@y_train"}, **make), "calls": calls})
    cases.append({"name": "gp_entk", "api": "gp_inference",
                  "make": {"k_train_train": "@entk_dd", "y_train": "@y_train", "trace_axes": [], "diag_reg": 1e-3},
                  "calls": [{"get": g, "k_test_train": "@entk_td", "k_test_test": "@entk_tt"}
                            for g in ("nngp", "ntkgp")]})
    # gradient_descent_mse_ensemble with the ReLU network's kernel_fn.
    for tag, make in (("plain", {"learning_rate": 1.0}), ("lr", {"learning_rate": LR}),
                      ("rel", {"diag_reg": 1e-2}), ("abs", {"diag_reg": 3e-3, "diag_reg_absolute_scale": True})):
        calls = []
        for t in times:
            for x_test in ("@x_test", None):
                calls.append({"t": t, "x_test": x_test, "get": None, "compute_cov": True})
        calls += [{"t": t, "x_test": "@x_test", "get": g, "compute_cov": cov}
                  for t in (t_small, None) for g in ("nngp", "ntk", ["ntk"], ["ntk", "nngp"]) for cov in (False, True)]
        calls += [{"t": t_array, "x_test": None, "get": "ntk", "compute_cov": False}]
        cases.append({"name": f"ens_{tag}", "api": "gradient_descent_mse_ensemble",
                      "make": dict({"kernel_fn": "@kernel_fn", "x_train": "@x_train", "y_train": "@y_train"}, **make),
                      "calls": calls})
    # max_learning_rate (a single call, no predict_fn: "calls" holds the one argument set).
    cases.append({"name": "max_lr", "api": "max_learning_rate", "make": {},
                  "calls": [{"ntk_train_train": "@ntk_dd"},
                            {"ntk_train_train": "@ntk_dd", "y_train_size": 24},
                            {"ntk_train_train": "@ntk_dd", "y_train_size": 24, "momentum": 0.9},
                            {"ntk_train_train": "@entk_dd"},
                            {"ntk_train_train": "@entk_dd", "eps": 1e-3}]})
    return cases


def _flatten(out, prefix, arrays):
    if isinstance(out, tuple) and hasattr(out, "_fields"):
        for f in out._fields:
            _flatten(getattr(out, f), f"{prefix}/{f}", arrays)
    elif isinstance(out, tuple):
        for i, v in enumerate(out):
            _flatten(v, f"{prefix}/{i}", arrays)
    else:
        arrays[prefix] = np.asarray(out, dtype=np.float64)


def main():
    from jax import config

    config.update("jax_enable_x64", True)

    import jax
    import neural_tangents as nt
    from neural_tangents import stax
    from neural_tangents._src import predict as nt_predict

    rng = np.random.default_rng(20261123)
    n, m, d, o = 8, 5, 5, 3
    a = {"relu_net": np.array([W_STD, B_STD])}
    a["x_train"] = rng.normal(size=(n, d))
    a["x_test"] = rng.normal(size=(m, d)) * 1.3 + 0.2
    a["y_train"] = rng.normal(size=(n, o))
    a["fx_train_0"] = 0.3 * rng.normal(size=(n, o))
    a["fx_test_0"] = 0.3 * rng.normal(size=(m, o))

    _, _, kernel_fn = stax.serial(stax.Dense(512, W_std=W_STD, b_std=B_STD), stax.Relu(),
                                  stax.Dense(512, W_std=W_STD, b_std=B_STD), stax.Relu(),
                                  stax.Dense(1, W_std=W_STD, b_std=B_STD))
    for tag, (x1, x2) in {"dd": (a["x_train"], None), "td": (a["x_test"], a["x_train"]),
                          "tt": (a["x_test"], None)}.items():
        k = kernel_fn(x1, x2, ("nngp", "ntk"))
        a[f"nngp_{tag}"], a[f"ntk_{tag}"] = np.asarray(k.nngp), np.asarray(k.ntk)

    # A small finite network and its empirical NTK with the output axes kept.
    init_fn, apply_fn, _ = stax.serial(stax.Dense(16, b_std=0.1), stax.Erf(), stax.Dense(o, b_std=0.1))
    _, params = init_fn(jax.random.PRNGKey(3), (-1, d))
    entk_fn = nt.empirical_ntk_fn(apply_fn, trace_axes=(), vmap_axes=0)
    for tag, (x1, x2) in {"dd": (a["x_train"], None), "td": (a["x_test"], a["x_train"]),
                          "tt": (a["x_test"], None)}.items():
        a[f"entk_{tag}"] = np.asarray(entk_fn(x1, x2, params))
    a["efx_train_0"] = np.asarray(apply_fn(params, a["x_train"]))
    a["efx_test_0"] = np.asarray(apply_fn(params, a["x_test"]))

    # 3-D targets (n, 2, 3): a kernel over (sample, last axis) from a random feature map.
    phi_tr = rng.normal(size=(n, 3, 40)) / np.sqrt(40)
    phi_te = rng.normal(size=(m, 3, 40)) / np.sqrt(40)
    a["k3_dd"] = np.einsum("iap,jbp->ijab", phi_tr, phi_tr)
    a["k3_td"] = np.einsum("iap,jbp->ijab", phi_te, phi_tr)
    a["y3_train"] = rng.normal(size=(n, 2, 3))
    a["fx3_train_0"] = 0.3 * rng.normal(size=(n, 2, 3))
    a["fx3_test_0"] = 0.3 * rng.normal(size=(m, 2, 3))

    # Times from the NTK spectrum (time unit: learning_rate * t / y_train.size).
    lam = np.linalg.eigvalsh(a["ntk_dd"])
    scale = a["y_train"].size / LR
    t_small = float(0.3 * scale / lam[-1])             # the top mode barely moved
    t_large = float(8.0 * scale / lam[0])              # every mode within e^-8 of convergence
    t_inf_like = 1e7 * scale / lam[0]                  # numerically converged: matches t=None
    t_array = [[0.0, t_small], [float(scale / lam[len(lam) // 2]), t_large]]
    cases = _cases(t_small, t_large, t_inf_like, t_array)

    Kernel = collections.namedtuple("Kernel", "nngp ntk")

    def value(v):
        if isinstance(v, str) and v.startswith("@kernel:"):
            nngp, ntk = v[len("@kernel:"):].split(",")
            return Kernel(nngp=a[nngp], ntk=a[ntk])
        if v == "@true":
            return True
        if v == "@kernel_fn":
            return kernel_fn
        if isinstance(v, str) and v.startswith("@"):
            return a[v[1:]]
        if isinstance(v, list):
            return tuple(v) if all(isinstance(s, str) for s in v) else np.asarray(v)
        return v

    api = {"gradient_descent_mse": nt.predict.gradient_descent_mse, "gp_inference": nt.predict.gp_inference,
           "gradient_descent_mse_ensemble": nt.predict.gradient_descent_mse_ensemble,
           "max_learning_rate": nt.predict.max_learning_rate}
    for case in cases:
        make = {k: value(v) for k, v in case["make"].items()}
        if case["api"] == "max_learning_rate":
            # neural-tangents 0.6.5's CPU branch calls scipy.linalg.eigvalsh(..., eigvals=...), a keyword
            # removed in scipy 1.14 (TypeError); its other branch (jnp.linalg.eigvalsh) is the same formula.
            nt_predict._is_on_cpu = lambda x: False
            for i, call in enumerate(case["calls"]):
                out = api["max_learning_rate"](**{k: value(v) for k, v in call.items()})
                a[f"out/{case['name']}/{i}"] = np.asarray(out, dtype=np.float64)
            continue
        if "trace_axes" in make:
            make["trace_axes"] = tuple(case["make"]["trace_axes"])
        predict_fn = api[case["api"]](**make)
        for i, call in enumerate(case["calls"]):
            out = predict_fn(**{k: value(v) for k, v in call.items()})
            _flatten(out, f"out/{case['name']}/{i}", a)

    bad = [k for k, v in a.items() if k.startswith("out/") and not np.isfinite(v).all()]
    if bad:
        raise SystemExit(f"non-finite golden outputs: {bad}")
    a["cases"] = np.array(json.dumps(cases))
    a["versions"] = np.array(json.dumps({
        "neural_tangents": importlib.metadata.version("neural-tangents"), "jax": jax.__version__,
        "jaxlib": importlib.metadata.version("jaxlib"), "numpy": np.__version__, "python": platform.python_version()}))
    np.savez_compressed(OUT, **a)
    n_out = sum(k.startswith("out/") for k in a)
    print(f"wrote {OUT} ({len(cases)} predictors, {n_out} outputs)", file=sys.stderr)


if __name__ == "__main__":
    main()
