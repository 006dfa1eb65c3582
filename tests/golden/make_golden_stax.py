"""Golden infinite-width kernels of many architectures from neural-tangents' stax (pinned interop env).

    make interop          # builds .venv-interop and runs this script

The architectures live in ``stax_specs.py`` (pure Python, ``build(stax, name)``), imported by
this script with ``neural_tangents.stax`` and by ``tests/stax/test_golden_stax.py`` with
``ntkit.stax``, so both sides build the same network. For every architecture the file holds
neural-tangents' float64 NNGP and NTK on the fixed inputs, between the two batches
(``<name>/nngp_12``, ``<name>/ntk_12``) and of the first batch with itself (``<name>/nngp_11``,
``<name>/ntk_11``); the inputs are stored as ``vec_x1``, ``vec_x2``, ``img_x1``, ``img_x2``.
"""

import json
import pathlib
import sys
import warnings

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
    data = stax_specs.inputs(np.random.default_rng(20261123))
    arrays = {f"{kind}_{i}": x for kind, (x1, x2) in data.items() for i, x in (("x1", x1), ("x2", x2))}
    names = []
    for name, (kind, kwargs, _) in stax_specs.SPECS.items():
        x1, x2 = data[kind]
        _, _, kernel_fn = stax_specs.build(stax, name)
        k12 = kernel_fn(x1, x2, ("nngp", "ntk"), **kwargs)
        k11 = kernel_fn(x1, None, ("nngp", "ntk"), **kwargs)
        for tag, k in (("12", k12), ("11", k11)):
            arrays[f"{name}/nngp_{tag}"] = np.asarray(k.nngp)
            arrays[f"{name}/ntk_{tag}"] = np.asarray(k.ntk)
        names.append(name)
    arrays["names"] = np.array(names)
    arrays["versions"] = np.array(json.dumps({"neural_tangents": getattr(nt, "__version__", "0.6.5"),
                                              "jax": __import__("jax").__version__, "numpy": np.__version__}))
    np.savez_compressed(OUT, **arrays)
    print(f"wrote {OUT} ({len(names)} architectures)", file=sys.stderr)


if __name__ == "__main__":
    main()
