"""Golden empirical NTKs of small finite networks from neural-tangents (run in the pinned interop env).

    make interop          # builds .venv-interop and runs this script (and make_golden_kernels.py)

The networks are the pure-jax reference models of ``ntkit/ntk/models.py``, loaded here by
file path (that module imports only jax), so the test suite can rebuild exactly the same
``apply_fn`` on modern jax and compare ntkit's eNTK with neural-tangents'. Everything runs in
float64 (``jax_enable_x64``). For every model the kernel is computed with each of
neural-tangents' three implementations (JACOBIAN_CONTRACTION, NTK_VECTOR_PRODUCTS,
STRUCTURED_DERIVATIVES), with ``vmap_axes`` None and 0, and the script aborts unless all of
them agree to ``RTOL`` (max |a - b| <= RTOL * max |reference|). It also checks the internal
consistency of the three kinds it stores and compares with a direct ``jax.jacrev`` eNTK.
The stored values are those of JACOBIAN_CONTRACTION (neural-tangents' default).

Key scheme of ``entk_nt.npz`` (``M`` is a model name listed in ``models``)::

    models                      (n_models,) str   model names, in order
    versions                    ()  str          JSON {"neural_tangents", "jax", "jaxlib", "numpy", "python"}
    M/meta                      ()  str          JSON: constructor ("mlp" | "cnn"), its args and kwargs
                                                 (dtype as a string), init_seed (jax.random.PRNGKey seed),
                                                 n_leaves, n_params, out_dim, input_shape, n1, n2,
                                                 versions, agreement (max relative disagreement measured)
    M/params/<i>/W, M/params/<i>/b                   leaf "W" / "b" of layer i of init_fn's params list
                                                 (i = 0, 1, ...; the list is [{"W", "b"}, ...])
    M/x1                        (n1, *input_shape)
    M/x2                        (n2, *input_shape)
    M/ntk_full_12               (n1, n2, O, O)   trace_axes=()              on (x1, x2)
    M/ntk_full_11               (n1, n1, O, O)   trace_axes=()              on (x1, None)
    M/ntk_meantrace_12          (n1, n2)         trace_axes=(-1,)  (MEAN over logits: ntkit "trace" / O)
    M/ntk_meantrace_11          (n1, n1)
    M/ntk_diag_12               (n1, n2, O)      trace_axes=(), diagonal_axes=(-1,)  (Theta_oo blocks)
    M/ntk_diag_11               (n1, n1, O)

All arrays are float64. Full kernel convention: Theta(x, x')[o, o'] = <df_o(x)/dtheta, df_o'(x')/dtheta>.
"""

import importlib.metadata
import importlib.util
import json
import pathlib
import platform
import sys

import numpy as np
from jax import config

config.update("jax_enable_x64", True)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import neural_tangents as nt  # noqa: E402

HERE = pathlib.Path(__file__).resolve().parent
OUT = HERE / "entk_nt.npz"
MODELS_PY = HERE.parents[1] / "ntkit" / "ntk" / "models.py"
RTOL = 1e-12
N1, N2 = 6, 5

IMPLEMENTATIONS = {
    "jacobian": nt.NtkImplementation.JACOBIAN_CONTRACTION,
    "ntk_vp": nt.NtkImplementation.NTK_VECTOR_PRODUCTS,
    "structured": nt.NtkImplementation.STRUCTURED_DERIVATIVES,
}
REFERENCE = "jacobian"

# name -> (constructor, args, kwargs, init seed, input seed).  dtype is added as float64.
MODELS = {
    "mlp_tanh": ("mlp", [[5, 16, 16, 3]], dict(activation="tanh", parameterization="ntk", W_std=1.0, b_std=0.1),
                 11, 101),
    "mlp_relu_std": ("mlp", [[4, 32, 32, 2]], dict(activation="relu", parameterization="standard", W_std=1.0,
                                                   b_std=0.1), 12, 102),
    "mlp_erf": ("mlp", [[3, 8, 1]], dict(activation="erf", parameterization="ntk", W_std=1.0, b_std=0.1), 13, 103),
    "cnn": ("cnn", [], dict(in_shape=[6, 6, 2], channels=[3, 4], out_dim=3, activation="relu", kernel_size=3,
                            W_std=1.0, b_std=0.1), 14, 104),
}


def load_models():
    spec = importlib.util.spec_from_file_location("_ntkit_ref_models", MODELS_PY)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def versions():
    return {"neural_tangents": importlib.metadata.version("neural-tangents"), "jax": jax.__version__,
            "jaxlib": importlib.metadata.version("jaxlib"), "numpy": np.__version__,
            "python": platform.python_version()}


def rel_diff(a, ref):
    a, ref = np.asarray(a), np.asarray(ref)
    if a.shape != ref.shape:
        raise AssertionError(f"shape mismatch {a.shape} vs {ref.shape}")
    scale = np.max(np.abs(ref))
    if not np.all(np.isfinite(a)) or scale == 0:
        raise AssertionError("non-finite or all-zero kernel")
    return float(np.max(np.abs(a - ref)) / scale)


def jacrev_entk(apply_fn, params, x1, x2):
    """Independent check: Theta = J(x1) J(x2)^T from jax.jacrev, shape (n1, n2, O, O)."""
    def flat_jac(x):
        jac = jax.jacrev(apply_fn)(params, x)  # leaves (n, O, *leaf_shape)
        leaves = jax.tree_util.tree_leaves(jac)
        return jnp.concatenate([leaf.reshape(leaf.shape[0], leaf.shape[1], -1) for leaf in leaves], axis=-1)

    j1, j2 = flat_jac(x1), flat_jac(x2)
    return np.asarray(jnp.einsum("iap,jbp->ijab", j1, j2))


def kernels(apply_fn, params, x1, x2, implementation, vmap_axes):
    out = {}
    specs = {"full": dict(trace_axes=()), "meantrace": dict(trace_axes=(-1,)),
             "diag": dict(trace_axes=(), diagonal_axes=(-1,))}
    for kind, kw in specs.items():
        fn = jax.jit(nt.empirical_ntk_fn(apply_fn, vmap_axes=vmap_axes, implementation=implementation, **kw))
        out[f"ntk_{kind}_12"] = np.asarray(fn(x1, x2, params))
        out[f"ntk_{kind}_11"] = np.asarray(fn(x1, None, params))
    return out


def main():
    models = load_models()
    ver = versions()
    arrays = {"models": np.array(list(MODELS)), "versions": np.array(json.dumps(ver, sort_keys=True))}
    report = []
    for name, (ctor, args, kwargs, init_seed, x_seed) in MODELS.items():
        init_fn, apply_fn = getattr(models, ctor)(*args, **kwargs, dtype=jnp.float64)
        params = init_fn(jax.random.PRNGKey(init_seed))
        in_shape = tuple(args[0][:1]) if ctor == "mlp" else tuple(kwargs["in_shape"])
        rng = np.random.default_rng(x_seed)
        x1 = rng.normal(size=(N1, *in_shape))
        x2 = rng.normal(size=(N2, *in_shape))
        out_dim = int(apply_fn(params, jnp.asarray(x1[:1])).shape[-1])
        for p in jax.tree_util.tree_leaves(params):
            assert p.dtype == np.float64, p.dtype

        results = {(impl, vmap): kernels(apply_fn, params, x1, x2, IMPLEMENTATIONS[impl], vmap)
                   for impl in IMPLEMENTATIONS for vmap in (None, 0)}
        ref = results[(REFERENCE, None)]
        worst = 0.0
        for (impl, vmap), res in results.items():
            for key, val in res.items():
                d = rel_diff(val, ref[key])
                worst = max(worst, d)
                if not d <= RTOL:
                    sys.exit(f"ABORT {name}: {impl} (vmap_axes={vmap}) disagrees with {REFERENCE} on {key}: "
                             f"relative difference {d:.3e} > {RTOL:g}")
        # Internal consistency of the stored kinds and an independent jacrev check.
        checks = {}
        for pair, xb in (("12", x2), ("11", x1)):
            full = ref[f"ntk_full_{pair}"]
            diag = np.diagonal(full, axis1=2, axis2=3)
            checks[f"diag_{pair}"] = rel_diff(ref[f"ntk_diag_{pair}"], diag)
            checks[f"meantrace_{pair}"] = rel_diff(ref[f"ntk_meantrace_{pair}"], diag.mean(-1))
            checks[f"jacrev_{pair}"] = rel_diff(full, jacrev_entk(apply_fn, params, jnp.asarray(x1), jnp.asarray(xb)))
        checks["symmetric_11"] = rel_diff(ref["ntk_full_11"], ref["ntk_full_11"].transpose(1, 0, 3, 2))
        bad = {k: v for k, v in checks.items() if not v <= RTOL}
        if bad:
            sys.exit(f"ABORT {name}: consistency checks failed: {bad}")

        n_params = 0
        for i, layer in enumerate(params):
            for leaf in sorted(layer):
                arr = np.asarray(layer[leaf])
                arrays[f"{name}/params/{i}/{leaf}"] = arr
                n_params += arr.size
        arrays[f"{name}/x1"] = x1
        arrays[f"{name}/x2"] = x2
        for key, val in ref.items():
            arrays[f"{name}/{key}"] = val.astype(np.float64)
        meta = {"constructor": ctor, "args": args, "kwargs": {**kwargs, "dtype": "float64"},
                "init_seed": init_seed, "input_seed": x_seed, "n_leaves": len(jax.tree_util.tree_leaves(params)),
                "n_params": n_params, "out_dim": out_dim, "input_shape": list(in_shape), "n1": N1, "n2": N2,
                "stored_implementation": "JACOBIAN_CONTRACTION", "rtol": RTOL,
                "agreement": {"max_rel_diff_between_implementations": worst,
                              "max_rel_diff_consistency": max(checks.values())},
                "versions": ver}
        arrays[f"{name}/meta"] = np.array(json.dumps(meta, sort_keys=True))
        report.append(f"  {name:13s} P={n_params:5d} O={out_dim}  max rel diff between NT implementations "
                      f"{worst:.2e}, consistency/jacrev {max(checks.values()):.2e}")

    np.savez_compressed(OUT, **arrays)
    print(f"wrote {OUT} ({OUT.stat().st_size / 1024:.1f} KiB, {len(MODELS)} models, "
          f"neural-tangents {ver['neural_tangents']}, jax {ver['jax']})", file=sys.stderr)
    print("\n".join(report), file=sys.stderr)


if __name__ == "__main__":
    main()
