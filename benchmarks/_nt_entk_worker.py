"""neural-tangents eNTK timing worker: run as a subprocess in the pinned interop environment.

    .venv-interop/bin/python benchmarks/_nt_entk_worker.py --data FILE.npz --kind full|trace \
        --implementation jacobian|ntk_vp|structured --repeats R [--out KERNEL.npz]

neural-tangents 0.6.5 only runs on jax 0.4.25 / numpy < 2, so the benchmark (modern jax) writes
the model parameters and inputs to ``FILE.npz`` and runs this script with ``.venv-interop/bin/python``;
both sides then time the same network on identical data. This script does not import ntkit: it
loads ``ntkit/ntk/models.py`` by file path (that module only imports jax).

``FILE.npz`` holds (optionally all under one common prefix ``P/``, e.g. ``mlp/params/0/W``)::

    params/<i>/W, params/<i>/b   layer i of ntkit.ntk.models.mlp's params list (float32)
    x                            (N, widths[0]) inputs (float32)

The model is ``mlp(widths, activation, parameterization=..., W_std=..., b_std=...)``, by default
``mlp((784, 512, 512, 10), "relu", parameterization="ntk")`` (W_std=1, b_std=0.1); the widths
must match the parameter shapes. The kernel is ``jax.jit(nt.empirical_ntk_fn(apply_fn,
trace_axes=() | (-1,), vmap_axes=0, implementation=...))(x, None, params)``.

Prints ONE JSON line on stdout (everything else goes to stderr) with: first-call time (compilation
included), best steady time over ``--repeats`` calls (each ``block_until_ready``), all steady times,
peak RSS (``ru_maxrss``, MiB) before the first call and at the end, versions, N, kind,
implementation, output shape and checksums. For ``--kind trace`` the result is neural-tangents'
mean over logits multiplied by O, i.e. ntkit's convention (SUM over logits); the checksums and
``--out`` use that convention. ``--out`` saves ``kernel`` (float32/64 as computed) and ``meta``
(the JSON line as a string).
"""

import argparse
import importlib.util
import json
import os
import pathlib
import re
import resource
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # neural-tangents imports tensorflow at start-up

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from _rss import RssSampler  # noqa: E402

MODELS_PY = pathlib.Path(__file__).resolve().parents[1] / "ntkit" / "ntk" / "models.py"
IMPLEMENTATIONS = {"jacobian": "JACOBIAN_CONTRACTION", "ntk_vp": "NTK_VECTOR_PRODUCTS",
                   "structured": "STRUCTURED_DERIVATIVES"}
_PARAM_KEY = re.compile(r"^(?P<prefix>(?:.*/)?)params/(?P<layer>\d+)/(?P<leaf>W|b)$")


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--data", required=True, help="npz with params/<i>/W, params/<i>/b and x")
    ap.add_argument("--kind", required=True, choices=("full", "trace"))
    ap.add_argument("--implementation", required=True, choices=tuple(IMPLEMENTATIONS))
    ap.add_argument("--repeats", type=int, default=3, help="steady-state calls after the first (>= 1)")
    ap.add_argument("--out", default=None, help="optional npz to save the kernel to")
    ap.add_argument("--widths", default="784,512,512,10", help="comma-separated mlp widths")
    ap.add_argument("--cnn", default=None,
                    help="JSON kwargs of ntkit.ntk.models.cnn (e.g. '{\"in_shape\": [16, 16, 1], \"channels\": "
                         "[8, 8], \"out_dim\": 10}'): time that CNN instead of the MLP")
    ap.add_argument("--activation", default="relu")
    ap.add_argument("--parameterization", default="ntk", choices=("ntk", "standard"))
    ap.add_argument("--W-std", dest="W_std", type=float, default=1.0)
    ap.add_argument("--b-std", dest="b_std", type=float, default=0.1)
    args = ap.parse_args(argv)
    if args.repeats < 1:
        ap.error("--repeats must be >= 1")
    return args


def load_data(path):
    import numpy as np

    with np.load(path) as z:
        files = list(z.files)
        layers, prefixes = {}, set()
        for key in files:
            m = _PARAM_KEY.match(key)
            if m:
                prefixes.add(m["prefix"])
                layers.setdefault(int(m["layer"]), {})[m["leaf"]] = np.asarray(z[key])
        if len(prefixes) != 1:
            raise SystemExit(f"{path}: expected params/<i>/W|b under exactly one prefix; found {sorted(prefixes)}")
        prefix = prefixes.pop()
        if sorted(layers) != list(range(len(layers))) or any(set(v) != {"W", "b"} for v in layers.values()):
            raise SystemExit(f"{path}: params must be layers 0..L-1 each with W and b; found {files}")
        xkey = prefix + "x" if prefix + "x" in files else "x"
        if xkey not in files:
            raise SystemExit(f"{path}: no inputs 'x' (or '{prefix}x'); keys: {files}")
        x = np.asarray(z[xkey])
    return [layers[i] for i in range(len(layers))], x


def main(argv=None):
    args = parse_args(argv)
    t_import = time.perf_counter()
    import numpy as np
    import jax
    import neural_tangents as nt

    t_import = time.perf_counter() - t_import

    spec = importlib.util.spec_from_file_location("_ntkit_ref_models", MODELS_PY)
    models = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(models)

    params_np, x_np = load_data(args.data)
    if args.cnn:
        cnn_kwargs = json.loads(args.cnn)
        _, apply_fn = models.cnn(**cnn_kwargs)
        widths = (int(np.prod(x_np.shape[1:])), int(cnn_kwargs.get("out_dim", 3)))
        return _time(args, nt, jax, np, apply_fn, params_np, x_np, widths, t_import, model="cnn " + args.cnn)
    widths = tuple(int(w) for w in args.widths.split(","))
    shapes = [(tuple(p["W"].shape), tuple(p["b"].shape)) for p in params_np]
    expected = [((a, b), (b,)) for a, b in zip(widths[:-1], widths[1:])]
    if shapes != expected:
        raise SystemExit(f"parameter shapes {shapes} do not match widths {widths} (expected {expected})")
    if x_np.ndim != 2 or x_np.shape[1] != widths[0]:
        raise SystemExit(f"x has shape {x_np.shape}; expected (N, {widths[0]})")

    _, apply_fn = models.mlp(widths, args.activation, parameterization=args.parameterization,
                             W_std=args.W_std, b_std=args.b_std)
    return _time(args, nt, jax, np, apply_fn, params_np, x_np, widths, t_import, model="mlp")


def _time(args, nt, jax, np, apply_fn, params_np, x_np, widths, t_import, model):
    dtypes = {str(a.dtype) for p in params_np for a in p.values()} | {str(x_np.dtype)}
    params = jax.tree_util.tree_map(jax.numpy.asarray, params_np)
    x = jax.numpy.asarray(x_np)
    jax.block_until_ready((params, x))
    out_dim = widths[-1]

    impl = getattr(nt.NtkImplementation, IMPLEMENTATIONS[args.implementation])
    trace_axes = () if args.kind == "full" else (-1,)
    kernel_fn = jax.jit(nt.empirical_ntk_fn(apply_fn, trace_axes=trace_axes, vmap_axes=0, implementation=impl))

    rss_before = peak_rss_mib()
    with RssSampler() as sampler:
        t0 = time.perf_counter()
        k = kernel_fn(x, None, params).block_until_ready()
        first = time.perf_counter() - t0
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            k = kernel_fn(x, None, params).block_until_ready()
            times.append(time.perf_counter() - t0)
    rss_peak = peak_rss_mib()

    kernel = np.asarray(k)
    if args.kind == "trace":
        kernel = kernel * out_dim  # neural-tangents' trace_axes=(-1,) is the MEAN over logits; report the SUM
    k64 = kernel.astype(np.float64)
    result = {
        "tool": "neural-tangents", "kind": args.kind, "implementation": args.implementation,
        "nt_implementation": IMPLEMENTATIONS[args.implementation], "N": int(x_np.shape[0]),
        "model": model, "widths": list(widths), "activation": args.activation, "parameterization": args.parameterization,
        "n_params": int(sum(a.size for p in params_np for a in p.values())), "data_dtypes": sorted(dtypes),
        "kernel_dtype": str(kernel.dtype), "shape": list(kernel.shape), "trace_convention": "sum over logits",
        "first_call_s": first, "best_s": min(times), "times_s": times, "repeats": args.repeats,
        "peak_rss_mib": rss_peak, "peak_rss_before_first_call_mib": rss_before, "import_s": t_import,
        "extra_rss_mib": sampler.extra_mib,
        "checksum_sum": float(k64.sum()), "checksum_abs_sum": float(np.abs(k64).sum()),
        "checksum_diag_sum": float(np.einsum("ii...->...", k64).sum()), "finite": bool(np.isfinite(k64).all()),
        "jax": jax.__version__, "jaxlib": __import__("jaxlib").__version__, "neural_tangents": nt.__version__,
        "numpy": np.__version__, "backend": jax.default_backend(),
        "data": str(pathlib.Path(args.data).resolve()),
    }
    line = json.dumps(result, sort_keys=True)
    if args.out:
        np.savez(args.out, kernel=kernel, meta=np.array(line))
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
