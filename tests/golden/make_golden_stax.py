"""Golden infinite-width kernels of many architectures from neural-tangents' stax (pinned interop env).

    make interop          # builds .venv-interop and runs this script

The architectures live in ``stax_specs.py`` (pure Python, ``build(stax, name)``), imported by
this script with ``neural_tangents.stax`` and by ``tests/stax/test_golden_stax.py`` with
``ntkit.stax``, so both sides build the same network. For every architecture the file holds
neural-tangents' float64 NNGP and NTK on the fixed inputs, between the two batches
(``<name>/nngp_12``, ``<name>/ntk_12``) and of the first batch with itself (``<name>/nngp_11``,
``<name>/ntk_11``); the inputs are stored as ``<kind>_x1``, ``<kind>_x2`` (kinds "vec", "img",
"seq", "graph") and the graphs of the "graph" inputs as ``pattern_<format>_1``, ``pattern_<format>_2``
(formats "dense", "sparse"). For the architectures in ``stax_specs.APPLY`` it also holds a finite
network: parameters drawn with numpy in the shapes of neural-tangents' ``init_fn`` (the leaves in
order, ``<name>/param_<i>``) and neural-tangents' ``apply_fn`` on ``x1`` (``<name>/apply``).
"""

import json
import pathlib
import sys
import warnings
import zlib

import jax
import numpy as np
from jax import config

config.update("jax_enable_x64", True)

import neural_tangents as nt
from neural_tangents import stax

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import stax_specs

OUT = pathlib.Path(__file__).with_name("stax_nt.npz")


def main():
    warnings.simplefilter("ignore")
    rng = np.random.default_rng(20261123)
    data = stax_specs.inputs(rng)
    patterns = stax_specs.graphs(rng)
    arrays = {f"{kind}_{i}": x for kind, (x1, x2) in data.items() for i, x in (("x1", x1), ("x2", x2))}
    arrays.update({f"pattern_{fmt}_{i + 1}": p for fmt, pair in patterns.items() for i, p in enumerate(pair)})
    names = []
    for name, (kind, _, _) in stax_specs.SPECS.items():
        x1, x2 = data[kind]
        init_fn, apply_fn, kernel_fn = stax_specs.build(stax, name)
        k12 = kernel_fn(x1, x2, ("nngp", "ntk"), **stax_specs.kernel_kwargs(name, patterns, "12"))
        k11 = kernel_fn(x1, None, ("nngp", "ntk"), **stax_specs.kernel_kwargs(name, patterns, "11"))
        for tag, k in (("12", k12), ("11", k11)):
            arrays[f"{name}/nngp_{tag}"] = np.asarray(k.nngp)
            arrays[f"{name}/ntk_{tag}"] = np.asarray(k.ntk)
        if name in stax_specs.APPLY:
            _, params = init_fn(jax.random.PRNGKey(0), x1.shape)
            leaves, tree = jax.tree_util.tree_flatten(params)
            prng = np.random.default_rng(zlib.crc32(name.encode()))
            leaves = [prng.normal(size=np.shape(leaf)) for leaf in leaves]
            for i, leaf in enumerate(leaves):
                arrays[f"{name}/param_{i}"] = leaf
            out = apply_fn(jax.tree_util.tree_unflatten(tree, leaves), x1,
                           **stax_specs.apply_kwargs(name, patterns, "1"))
            arrays[f"{name}/apply"] = np.asarray(out)
        names.append(name)
    arrays["names"] = np.array(names)
    arrays["versions"] = np.array(json.dumps({"neural_tangents": getattr(nt, "__version__", "0.6.5"),
                                              "jax": __import__("jax").__version__, "numpy": np.__version__}))
    np.savez_compressed(OUT, **arrays)
    print(f"wrote {OUT} ({len(names)} architectures)", file=sys.stderr)


if __name__ == "__main__":
    main()
