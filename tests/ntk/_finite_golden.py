"""Loader of ``tests/golden/finite_nt.npz`` (written by ``tests/golden/make_golden_finite.py`` in the
pinned neural-tangents environment), shared by the empirical-NNGP, Monte Carlo and linearisation tests."""

from __future__ import annotations

import functools
import json
import pathlib

import jax.numpy as jnp
import numpy as np

from ntkit.ntk import models

GOLDEN = pathlib.Path(__file__).resolve().parents[1] / "golden" / "finite_nt.npz"


class Case:
    def __init__(self, z, name):
        self.name = name
        self.meta = json.loads(str(z[f"{name}/meta"]))
        self.g = {k[len(name) + 1:]: z[k] for k in z.files if k.startswith(name + "/")}
        kwargs = {k: v for k, v in self.meta["kwargs"].items() if k != "dtype"}
        args = [tuple(a) if isinstance(a, list) else a for a in self.meta["args"]]
        self.init, apply = getattr(models, self.meta["constructor"])(*args, **kwargs, dtype=jnp.float64)
        reshape = self.meta["reshape"]
        self.apply = apply if reshape is None else (lambda p, x: apply(p, x).reshape((-1,) + tuple(reshape)))
        self.x1, self.x2 = self.g["x1"], self.g["x2"]

    def params(self, which):
        """Draw ``which`` (an int) or the parameter shift (``"shift"``) as a list of {"W", "b"} layers."""
        prefix = f"params/{which}" if which != "shift" else "shift"
        n_layers = len({k.split("/")[-2] for k in self.g if k.startswith(prefix + "/")})
        return [{"W": jnp.asarray(self.g[f"{prefix}/{i}/W"]), "b": jnp.asarray(self.g[f"{prefix}/{i}/b"])}
                for i in range(n_layers)]

    @property
    def draws(self):
        return [self.params(s) for s in range(self.meta["n_samples"])]


@functools.cache
def _file():
    return np.load(GOLDEN)


def names():
    return sorted(str(m) for m in _file()["models"])


def case(name) -> Case:
    return Case(_file(), name)
