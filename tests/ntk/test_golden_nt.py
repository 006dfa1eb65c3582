"""ntkit's empirical NTK against golden values from neural-tangents 0.6.5.

``tests/golden/entk_nt.npz`` is written by ``make interop`` (``tests/golden/make_golden_entk.py``
in the pinned jax 0.4.25 environment): for each model it stores the parameters as explicit
arrays (random draws differ across jax versions), the inputs, and neural-tangents' full
(``trace_axes=()``), mean-trace and per-logit diagonal kernels in float64, with its three
implementations agreeing to 4e-16. Tolerance 1e-10 relative to max|Θ| (the float64 row of
``tests/conftest.py``): the same sums in a different order.
"""

from __future__ import annotations

import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntkit.ntk import empirical_ntk, models
from tests.conftest import assert_close

GOLDEN = pathlib.Path(__file__).resolve().parents[1] / "golden" / "entk_nt.npz"


def _load():
    z = np.load(GOLDEN)
    out = {}
    for name in [str(m) for m in z["models"]]:
        meta = json.loads(str(z[f"{name}/meta"]))
        kwargs = {k: v for k, v in meta["kwargs"].items() if k != "dtype"}
        args = [tuple(a) if isinstance(a, list) else a for a in meta["args"]]
        init, apply = getattr(models, meta["constructor"])(*args, **kwargs, dtype=jnp.float64)
        n_layers = len({k.split("/")[2] for k in z.files if k.startswith(f"{name}/params/")})
        params = [{"W": jnp.asarray(z[f"{name}/params/{i}/W"]), "b": jnp.asarray(z[f"{name}/params/{i}/b"])}
                  for i in range(n_layers)]
        out[name] = (apply, params, {k[len(name) + 1:]: z[k] for k in z.files if k.startswith(name + "/")})
    return out


NAMES = sorted(str(m) for m in np.load(GOLDEN)["models"])


@pytest.fixture(scope="module")
def cases():
    with jax.enable_x64(True):
        return _load()


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("implementation", ["structured", "jacobian", "ntk_vp"])
def test_matches_neural_tangents(cases, name, implementation):
    apply, params, g = cases[name]
    x1, x2 = jnp.asarray(g["x1"]), jnp.asarray(g["x2"])
    O = g["ntk_full_12"].shape[-1]
    full = empirical_ntk(apply, params, x1, x2, implementation=implementation)
    assert_close(full, g["ntk_full_12"], np.float64)
    assert_close(empirical_ntk(apply, params, x1, implementation=implementation), g["ntk_full_11"], np.float64)
    # neural-tangents' trace_axes=(-1,) is the mean over logits; ntkit's trace is the sum
    assert_close(empirical_ntk(apply, params, x1, x2, kind="trace", implementation=implementation),
                 O * g["ntk_meantrace_12"], np.float64)
    assert_close(np.einsum("nmoo->nmo", full), g["ntk_diag_12"], np.float64)
