"""Golden finite-width tools from neural-tangents (run in the pinned interop env): empirical NNGP,
``empirical_kernel_fn``, ``monte_carlo_kernel_fn``, ``linearize`` and ``taylor_expand``.

    make interop          # builds .venv-interop and runs this script (with the other golden scripts)

The networks are the pure-jax reference models of ``ntkit/ntk/models.py`` (loaded by file path),
plus ``mlp_tanh`` with its 6 outputs reshaped to (2, 3) so that ``trace_axes`` /
``diagonal_axes`` act on outputs of more than one axis. Everything runs in float64.

``jax.random`` draws differ between jax 0.4.25 and modern jax, so the Monte Carlo parameter
draws are stored explicitly: the script reproduces neural-tangents' key sequence (the k-th draw
initialises with the first half of ``split(split(key)^k[1])``), stores those parameters, and
aborts unless ``nt.monte_carlo_kernel_fn`` equals the mean of neural-tangents' empirical kernels at
them to ``RTOL``. The tests feed the stored draws to ntkit's ``monte_carlo_kernel_fn`` in order.

Key scheme of ``finite_nt.npz`` (``M`` a model name in ``models``; ``s`` a draw 0..S-1; ``i`` a layer)::

    models, versions                      as in entk_nt.npz
    M/meta                                JSON: constructor, args, kwargs, out_shape, n_samples S, mc_seed, ...
    M/x1 (n1, ...), M/x2 (n2, ...)
    M/params/<s>/<i>/W, .../b             draw s of neural-tangents' Monte Carlo key sequence (draw 0 is the
                                          expansion point and the point of the empirical kernels)
    M/nngp_<axes>_12, M/nngp_<axes>_11    nt.empirical_nngp_fn at draw 0 on (x1, x2) and (x1, None)
    M/kernel_<get>_<axes>_12              nt.empirical_kernel_fn(get=("nngp", "ntk")) at draw 0
    M/mc_<get>_<axes>_12, ..._11          nt.monte_carlo_kernel_fn(n_samples=S) (jacobian contraction)
    M/mcgen<n>_<get>_mean_12              the generator of n_samples=[1, S] at n
    M/shift/<i>/W, .../b                  a parameter shift dp (0.05 times a standard normal draw)
    M/linearize, M/taylor2, M/taylor3     nt.linearize / nt.taylor_expand(degree) at draw 0, evaluated at
                                          draw 0 + dp on x1;  M/f_shifted: the network there

``<axes>``: ``mean`` = trace_axes=(-1,) (neural-tangents' default: the MEAN over the last axis),
``full`` = trace_axes=(), ``diag`` = trace_axes=(), diagonal_axes=(-1,); for the reshaped model also
``t12`` = trace_axes=(1, 2) and ``d1t2`` = trace_axes=(2,), diagonal_axes=(1,).
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
OUT = HERE / "finite_nt.npz"
MODELS_PY = HERE.parents[1] / "ntkit" / "ntk" / "models.py"
RTOL = 1e-12
N1, N2 = 6, 5
N_SAMPLES = 3

# name -> (constructor, args, kwargs, input seed, reshape of the outputs or None)
MODELS = {
    "mlp_tanh": ("mlp", [[5, 16, 16, 3]], dict(activation="tanh", parameterization="ntk", W_std=1.0, b_std=0.1),
                 201, None),
    "mlp_relu_std": ("mlp", [[4, 32, 2]], dict(activation="relu", parameterization="standard", W_std=1.0,
                                               b_std=0.1), 202, None),
    "cnn": ("cnn", [], dict(in_shape=[5, 5, 2], channels=[3], out_dim=2, activation="relu", kernel_size=3,
                            W_std=1.0, b_std=0.1), 203, None),
    "mlp_2x3": ("mlp", [[4, 12, 6]], dict(activation="erf", parameterization="ntk", W_std=1.2, b_std=0.2),
                204, [2, 3]),
}
AXES = {"mean": dict(trace_axes=(-1,)), "full": dict(trace_axes=()), "diag": dict(trace_axes=(), diagonal_axes=(-1,))}
AXES_2X3 = {**AXES, "t12": dict(trace_axes=(1, 2)), "d1t2": dict(trace_axes=(2,), diagonal_axes=(1,))}


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
    return float(np.max(np.abs(a - ref)) / scale)


def nt_draws(init, key, n):
    """The parameters of neural-tangents' Monte Carlo draws 1..n (its key sequence, re-derived)."""
    out = []
    for _ in range(n):
        key, split = jax.random.split(key)
        init_key, _ = jax.random.split(split, 2)
        out.append(init(init_key))
    return out


def store_params(arrays, prefix, params):
    for i, layer in enumerate(params):
        for leaf in sorted(layer):
            arrays[f"{prefix}/{i}/{leaf}"] = np.asarray(layer[leaf])


def main():
    models = load_models()
    ver = versions()
    arrays = {"models": np.array(list(MODELS)), "versions": np.array(json.dumps(ver, sort_keys=True))}
    report = []
    for m_index, (name, (ctor, args, kwargs, x_seed, reshape)) in enumerate(MODELS.items()):
        init, apply0 = getattr(models, ctor)(*args, **kwargs, dtype=jnp.float64)
        apply = apply0 if reshape is None else (lambda p, x, f=apply0, r=tuple(reshape): f(p, x).reshape((-1,) + r))
        in_shape = tuple(args[0][:1]) if ctor == "mlp" else tuple(kwargs["in_shape"])
        rng = np.random.default_rng(x_seed)
        x1 = rng.normal(size=(N1, *in_shape))
        x2 = rng.normal(size=(N2, *in_shape))
        mc_seed = 300 + m_index
        draws = nt_draws(init, jax.random.PRNGKey(mc_seed), N_SAMPLES)
        params = draws[0]
        axes = AXES if reshape is None else AXES_2X3

        # neural-tangents' conventions: apply_fn(params, x, **kwargs) (it passes rng=...), init_fn(key, shape).
        def apply_nt(p, x, apply=apply, **kw):
            return apply(p, x)

        def init_nt(k, shape, init=init):
            return None, init(k)

        checks = {}
        for s, p in enumerate(draws):
            store_params(arrays, f"{name}/params/{s}", p)
        for tag, kw in axes.items():
            nngp = nt.empirical_nngp_fn(apply_nt, **kw)
            arrays[f"{name}/nngp_{tag}_12"] = np.asarray(nngp(x1, x2, params))
            arrays[f"{name}/nngp_{tag}_11"] = np.asarray(nngp(x1, None, params))
            kfn = nt.empirical_kernel_fn(apply_nt, vmap_axes=0, implementation=1, **kw)
            k = kfn(x1, x2, ("nngp", "ntk"), params)
            arrays[f"{name}/kernel_nngp_{tag}_12"] = np.asarray(k.nngp)
            arrays[f"{name}/kernel_ntk_{tag}_12"] = np.asarray(k.ntk)
            mc = nt.monte_carlo_kernel_fn(init_nt, apply_nt, jax.random.PRNGKey(mc_seed), N_SAMPLES,
                                          vmap_axes=0, implementation=1, **kw)
            for pair, xb in (("12", x2), ("11", None)):
                res = mc(x1, xb, ("nngp", "ntk"))
                for get in ("nngp", "ntk"):
                    arrays[f"{name}/mc_{get}_{tag}_{pair}"] = np.asarray(getattr(res, get))
                # check: the Monte Carlo estimate is the mean of the empirical kernels at the stored draws
                mean = [kfn(x1, xb, ("nngp", "ntk"), p) for p in draws]
                for get in ("nngp", "ntk"):
                    ref = sum(np.asarray(getattr(m, get)) for m in mean) / N_SAMPLES
                    checks[f"mc_{get}_{tag}_{pair}"] = rel_diff(getattr(res, get), ref)
        gen = nt.monte_carlo_kernel_fn(init_nt, apply_nt, jax.random.PRNGKey(mc_seed), [1, N_SAMPLES], vmap_axes=0,
                                       implementation=1)
        for n, res in zip([1, N_SAMPLES], gen(x1, x2, ("nngp", "ntk"))):
            for get in ("nngp", "ntk"):
                arrays[f"{name}/mcgen{n}_{get}_mean_12"] = np.asarray(getattr(res, get))

        # linearize / taylor_expand at draw 0, evaluated at draw 0 + dp
        leaves, treedef = jax.tree_util.tree_flatten(params)
        shift_rng = np.random.default_rng(x_seed + 1000)
        dp = jax.tree_util.tree_unflatten(treedef, [0.05 * shift_rng.normal(size=leaf.shape) for leaf in leaves])
        store_params(arrays, f"{name}/shift", dp)
        p_new = jax.tree_util.tree_map(lambda a, b: a + b, params, dp)
        arrays[f"{name}/linearize"] = np.asarray(nt.linearize(apply, params)(p_new, x1))
        arrays[f"{name}/taylor2"] = np.asarray(nt.taylor_expand(apply, params, 2)(p_new, x1))
        arrays[f"{name}/taylor3"] = np.asarray(nt.taylor_expand(apply, params, 3)(p_new, x1))
        arrays[f"{name}/f_shifted"] = np.asarray(apply(p_new, x1))
        checks["taylor1_is_linearize"] = rel_diff(nt.taylor_expand(apply, params, 1)(p_new, x1),
                                                  arrays[f"{name}/linearize"])

        bad = {k: v for k, v in checks.items() if not v <= RTOL}
        if bad:
            sys.exit(f"ABORT {name}: consistency checks failed: {bad}")
        arrays[f"{name}/x1"] = x1
        arrays[f"{name}/x2"] = x2
        out_shape = list(np.asarray(apply(params, x1[:1])).shape[1:])
        meta = {"constructor": ctor, "args": args, "kwargs": {**kwargs, "dtype": "float64"}, "reshape": reshape,
                "out_shape": out_shape, "input_shape": list(in_shape), "n1": N1, "n2": N2, "n_samples": N_SAMPLES,
                "mc_seed": mc_seed, "input_seed": x_seed, "axes": {k: {a: list(v) for a, v in kw.items()}
                                                                   for k, kw in axes.items()},
                "rtol": RTOL, "max_consistency_rel_diff": max(checks.values()), "versions": ver}
        arrays[f"{name}/meta"] = np.array(json.dumps(meta, sort_keys=True))
        report.append(f"  {name:13s} out {tuple(out_shape)}  MC = mean of empirical kernels to "
                      f"{max(checks.values()):.1e}")

    np.savez_compressed(OUT, **arrays)
    print(f"wrote {OUT} ({OUT.stat().st_size / 1024:.1f} KiB, {len(MODELS)} models, "
          f"neural-tangents {ver['neural_tangents']}, jax {ver['jax']})", file=sys.stderr)
    print("\n".join(report), file=sys.stderr)


if __name__ == "__main__":
    main()
