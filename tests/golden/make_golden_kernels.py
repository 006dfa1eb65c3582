"""Golden infinite-width ReLU kernels from neural-tangents (run in the pinned interop env).

    make interop          # builds .venv-interop and runs this script

neural-tangents 0.6.5 only runs on jax 0.4.25 / numpy < 2, so it cannot be a
dependency of ntkit; its analytic kernels are frozen here once and the main
test suite compares ``ntkit.kernels.ReluNNGP`` / ``ReluNTK`` against them.
"""

import itertools
import pathlib
import sys

import numpy as np
from jax import config

config.update("jax_enable_x64", True)

import neural_tangents as nt  # noqa: E402
from neural_tangents import stax  # noqa: E402

OUT = pathlib.Path(__file__).with_name("relu_kernels_nt.npz")


def main():
    rng = np.random.default_rng(20261122)
    x1 = rng.normal(size=(7, 5))
    x2 = rng.normal(size=(4, 5)) * 1.7 + 0.3
    arrays = {"x1": x1, "x2": x2}
    configs = []
    for depth, w_std, b_std in itertools.product((0, 1, 2, 3, 5), (1.0, 1.5), (0.0, 0.3)):
        layers = []
        for _ in range(depth):
            layers += [stax.Dense(64, W_std=w_std, b_std=b_std), stax.Relu()]
        layers += [stax.Dense(1, W_std=w_std, b_std=b_std)]
        _, _, kernel_fn = stax.serial(*layers)
        tag = f"d{depth}_w{w_std}_b{b_std}"
        k12 = kernel_fn(x1, x2, ("nngp", "ntk"))
        k11 = kernel_fn(x1, None, ("nngp", "ntk"))
        arrays[f"nngp_12_{tag}"] = np.asarray(k12.nngp)
        arrays[f"ntk_12_{tag}"] = np.asarray(k12.ntk)
        arrays[f"nngp_11_{tag}"] = np.asarray(k11.nngp)
        arrays[f"ntk_11_{tag}"] = np.asarray(k11.ntk)
        configs.append((depth, w_std, b_std))
    arrays["configs"] = np.array(configs, dtype=np.float64)
    arrays["versions"] = np.array([nt.__version__ if hasattr(nt, "__version__") else "0.6.5",
                                   __import__("jax").__version__, np.__version__])
    np.savez_compressed(OUT, **arrays)
    print(f"wrote {OUT} ({len(configs)} configurations)", file=sys.stderr)


if __name__ == "__main__":
    main()
