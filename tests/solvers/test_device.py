"""The solvers on a jax device (here: jax's CPU device; CI has no GPU) against the host path.

The device path runs the same iteration as the host path (same subsample, batches and step
sizes, from the same random draws), with the kernel blocks formed by XLA instead of the native
engine, so the two differ by rounding only. Bounds (relative, on predictions K(X_test, C) w):

* float64: 1e-9. One step changes the weights by a linear map of norm < 1 in the preconditioned
  metric (EigenPro's step size is chosen below the stability limit) plus a rounding error of a
  few units of 1e-16 times the condition number of the projection (K(Z, Z) ~ 1e3-1e4 here), so
  after E epochs of B batches the difference is below E·B·1e-12 ≈ 1e-10; 1e-9 leaves a margin.
  (Smooth kernels only: for a kernel of the distance itself, such as Laplace, the squared
  distance of coinciding points carries a rounding error of eps·|x|², whose square root is
  ~1e-8 — both paths have it, differently, so Laplace agrees only to ~sqrt(eps).)
* float32: 2e-3 for EigenPro 3 (its kernel blocks are float32, and the float64 projection
  K(Z, Z)⁻¹ amplifies their 6e-8 rounding by cond(K(Z, Z)) ≈ 1e3 per step, plus the
  accumulation above), 1e-4 for EigenPro 2 and Nyström PCG (no K(Z, Z)⁻¹ of float32 blocks in
  the step: ~10·6e-8 per step, accumulated).
"""

from __future__ import annotations

import numpy as np
import pytest

jax = pytest.importorskip("jax")
import jax.numpy as jnp  # noqa: E402

import ntkit  # noqa: E402
from ntkit._device import Placement, device_budget, resolve_device  # noqa: E402
from ntkit.kernels import RBF  # noqa: E402
from ntkit.solvers import eigenpro, nystrom_pcg, top_eigensystem  # noqa: E402

CPU = jax.devices("cpu")[0]


def _rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(1500, 3))
    y = np.sin(2 * X[:, 0]) + 0.2 * rng.normal(size=1500)
    Xt = rng.normal(size=(200, 3))
    return X, y, Xt


BOUND_EP3 = {np.float64: 1e-9, np.float32: 2e-3}
BOUND = {np.float64: 1e-9, np.float32: 1e-4}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_eigenpro3_device_equals_host(data, dtype):
    X, y, Xt = (a.astype(dtype) for a in data)
    kw = dict(centers=X[:150], epochs=5, random_state=0, ridge=1e-3)
    host = eigenpro(RBF(0.7), X, y, **kw)
    dev = eigenpro(RBF(0.7), X, y, device="cpu", **kw)
    assert isinstance(dev.weights, np.ndarray) and dev.weights.dtype == dtype  # numpy in, numpy out
    assert (dev.batch_size, dev.n_eigen) == (host.batch_size, host.n_eigen)
    assert _rel(dev.predict(Xt), host.predict(Xt)) < BOUND_EP3[dtype]
    # the same epochs switch to variance reduction (the loop is shared)
    assert [h.get("variance_reduction") for h in dev.history] == [h.get("variance_reduction") for h in host.history]
    assert any(h.get("variance_reduction") for h in host.history)  # the SVRG snapshot path ran


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_eigenpro2_device_equals_host(data, dtype):
    X, y, Xt = (a.astype(dtype) for a in data)
    kw = dict(epochs=3, random_state=0, ridge=1e-3)
    host = eigenpro(RBF(1.5), X, y, **kw)
    dev = eigenpro(RBF(1.5), X, y, device="cpu", **kw)
    assert (dev.batch_size, dev.n_eigen) == (host.batch_size, host.n_eigen) and dev.n_eigen > 1
    assert _rel(dev.predict(Xt), host.predict(Xt)) < BOUND[dtype]
    np.testing.assert_allclose([h["train_mse"] for h in dev.history], [h["train_mse"] for h in host.history],
                               rtol=10 * BOUND[dtype])


def test_eigenpro_jax_in_jax_out_same_device(data):
    X, y, Xt = data
    with jax.enable_x64(True):
        Xj, yj = jax.device_put(X, CPU), jax.device_put(y, CPU)
        res = eigenpro(RBF(0.7), Xj, yj, centers=Xj[:100], epochs=2, random_state=0)
        assert isinstance(res.weights, jax.Array) and res.weights.dtype == jnp.float64
        assert res.weights.devices() == {CPU}
        p = res.predict(jax.device_put(Xt, CPU))
        assert isinstance(p, jax.Array) and p.devices() == {CPU}
        host = eigenpro(RBF(0.7), X, y, centers=X[:100], epochs=2, random_state=0)
        assert _rel(p, host.predict(Xt)) < BOUND_EP3[np.float64]
    # float32 jax data stay float32 without global x64
    r32 = eigenpro(RBF(0.7), jnp.asarray(X, jnp.float32), jnp.asarray(y, jnp.float32), epochs=1,
                   random_state=0)
    assert r32.weights.dtype == jnp.float32


def test_eigenpro3_streams_host_data_through_the_device(data, tmp_path):
    """A host X (here a memmap) streamed batch by batch (stream=True, or "auto" with X beyond half the
    budget) gives the host run's result."""
    X, y, Xt = data
    path = tmp_path / "X.dat"
    mm = np.memmap(path, dtype=np.float64, mode="w+", shape=X.shape)
    mm[:] = X
    mm.flush()
    Xm = np.memmap(path, dtype=np.float64, mode="r", shape=X.shape)
    kw = dict(centers=X[:100], epochs=3, random_state=0, ridge=1e-3, batch_size=100)
    host = eigenpro(RBF(0.7), X, y, **kw)
    from ntkit.solvers import _eigenpro_device as dev_mod

    seen = []
    orig = dev_mod.DeviceEP3.__init__

    def spy(self, *a, **k):
        orig(self, *a, **k)
        seen.append(self.streaming)

    dev_mod.DeviceEP3.__init__ = spy
    try:
        dev = eigenpro(RBF(0.7), Xm, y, device="cpu", stream=True, **kw)
        # "auto": X (48 KB) is more than half the budget (the jax CPU device reports no free memory)
        auto = eigenpro(RBF(0.7), Xm, y, device="cpu", memory_budget="80KB", **kw)
    finally:
        dev_mod.DeviceEP3.__init__ = orig
    assert seen == [True, True]
    assert dev.batch_size == host.batch_size and len(X) // dev.batch_size >= 10  # many streamed batches
    assert _rel(dev.predict(Xt), host.predict(Xt)) < BOUND_EP3[np.float64]
    host_small = eigenpro(RBF(0.7), X, y, memory_budget="80KB", projection="cholesky", **kw)
    assert _rel(auto.predict(Xt), host_small.predict(Xt)) < BOUND_EP3[np.float64]


def test_eigenpro_steps_make_no_host_transfers(data):
    """Inside an epoch the device does all the work: the jitted steps run under
    ``jax.transfer_guard("disallow")``, and the whole fit reads back a number of values that does
    not grow with the number of batches."""
    X, y, _ = data
    from ntkit.solvers import _eigenpro_device as dev_mod

    with jax.enable_x64(True):
        Xj, yj = jax.device_put(X, CPU), jax.device_put(y, CPU)
        orig_epoch = dev_mod.DeviceEP3.epoch

        def guarded(self, W, order, lr, **kw):
            batches = dev_mod._batches(order, self.bs)
            bd = jax.device_put(batches, self.device)
            i = jax.device_put(np.int32(0), self.device)
            lr_d = jax.device_put(np.float64(lr), self.device)
            snapW, snapG = W[:0], jax.device_put(np.zeros(0), self.device)
            with jax.transfer_guard("disallow"):
                for _ in range(len(batches)):
                    W, i = self._step[False](W, i, bd, self.Xr.P, self.Xr.s, self.Y, self.ops, lr_d, self.inv_n,
                                             self.ridge_d, snapW, snapG)
            return orig_epoch(self, W, order, lr, **kw)

        dev_mod.DeviceEP3.epoch = guarded
        try:
            eigenpro(RBF(0.7), Xj, yj, centers=Xj[:100], epochs=1, random_state=0, batch_size=64)
        finally:
            dev_mod.DeviceEP3.epoch = orig_epoch

        counts = {}
        real_get = jax.device_get

        def counting_get(x):
            counts["n"] = counts.get("n", 0) + 1
            return real_get(x)

        for bs in (64, 256):
            counts["n"] = 0
            jax.device_get = counting_get
            try:
                eigenpro(RBF(0.7), Xj, yj, centers=Xj[:100], epochs=2, random_state=0, batch_size=bs)
            finally:
                jax.device_get = real_get
            counts[bs] = counts["n"]
    assert counts[64] == counts[256]  # 23 vs 6 batches per epoch: reads do not scale with batches
    assert counts[64] <= 12


def test_eigenpro_device_checkpoint_resume_and_seed(data, tmp_path):
    X, y, _ = data
    kw = dict(centers=X[:100], random_state=3, device="cpu")
    full = eigenpro(RBF(0.7), X, y, epochs=3, **kw)
    again = eigenpro(RBF(0.7), X, y, epochs=3, **kw)
    np.testing.assert_array_equal(full.weights, again.weights)  # same seed, same bits
    ck = tmp_path / "ep.npz"
    eigenpro(RBF(0.7), X, y, epochs=2, checkpoint=ck, **kw)
    resumed = eigenpro(RBF(0.7), X, y, epochs=3, checkpoint=ck, **kw)
    np.testing.assert_array_equal(resumed.weights, full.weights)
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3]


def test_eigenpro_device_progress_bar(data, capsys):
    X, y, _ = data
    eigenpro(RBF(0.7), X, y, centers=X[:100], epochs=1, random_state=0, device="cpu", verbose=True)
    out = capsys.readouterr()
    assert "epoch 1: train mse" in out.out and "EigenPro epoch 1/1" in out.err


def test_config_context_device_moves_numpy_data(data):
    X, y, Xt = data
    from ntkit.solvers import _eigenpro_device as dev_mod

    made = []
    orig = dev_mod.DeviceEP2.__init__

    def spy(self, *a, **k):
        made.append(True)
        orig(self, *a, **k)

    dev_mod.DeviceEP2.__init__ = spy
    try:
        with ntkit.config_context(device="cpu"):
            res = eigenpro(RBF(1.5), X[:400], y[:400], epochs=1, random_state=0)
    finally:
        dev_mod.DeviceEP2.__init__ = orig
    assert made and isinstance(res.weights, np.ndarray)


@pytest.mark.filterwarnings("ignore::ntkit.NumericalWarning")  # stopped at maxiter=15 on purpose
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_nystrom_pcg_device_equals_host(data, dtype):
    X, y, Xt = (a.astype(dtype) for a in data)
    # a short lengthscale keeps K(centers, centers) well conditioned: the weights (and so the
    # predictions' cancellation) stay O(10), and the bound above applies
    kw = dict(n_centers=150, ridge=1e-3, random_state=0, maxiter=15)
    host = nystrom_pcg(RBF(0.5), X, y, **kw)
    dev = nystrom_pcg(RBF(0.5), X, y, device="cpu", **kw)
    assert np.abs(host.weights).max() < 1e3
    assert isinstance(dev.weights, np.ndarray) and dev.weights.dtype == dtype
    # CG's recurrences amplify rounding differences by about cond·eps per iteration (Greenbaum 1997,
    # ch. 4): the residual histories agree to ~1e-7 (float64) / ~1e-3 (float32) after 15 iterations
    np.testing.assert_allclose(dev.history, host.history, rtol={np.float64: 1e-6, np.float32: 1e-2}[dtype])
    assert _rel(dev.predict(Xt), host.predict(Xt)) < BOUND[dtype]


def test_nystrom_pcg_jax_in_jax_out(data):
    X, y, Xt = data
    with jax.enable_x64(True):
        res = nystrom_pcg(RBF(1.5), jnp.asarray(X), jnp.asarray(y), n_centers=100, ridge=1e-3, random_state=0)
        assert isinstance(res.weights, jax.Array) and isinstance(res.predict(jnp.asarray(Xt)), jax.Array)


@pytest.mark.parametrize("method", ["eigh", "randomized"])
def test_top_eigensystem_device(data, method):
    X = data[0][:300]
    host = top_eigensystem(RBF(1.0), X, 6, method=method, random_state=0)
    dev = top_eigensystem(RBF(1.0), X, 6, method=method, random_state=0, device="cpu")
    # eigenvalues of the same float64 matrix: backward-stable solvers agree to ~n·eps·λ_max
    np.testing.assert_allclose(dev.eigenvalues, host.eigenvalues, rtol=1e-9, atol=1e-12)
    # eigenvectors up to sign (well-separated eigenvalues here)
    np.testing.assert_allclose(np.abs(dev.eigenvectors.T @ host.eigenvectors), np.eye(6), atol=1e-6)
    jx = top_eigensystem(RBF(1.0), jnp.asarray(X, jnp.float32), 6, method=method, random_state=0)
    assert isinstance(jx.eigenvalues, jax.Array) and jx.eigenvalues.dtype == jnp.float32


def test_device_rule_and_budget():
    X = np.zeros((3, 2))
    assert resolve_device(None, X) == Placement(None, False)
    assert resolve_device("cpu", X).device == CPU
    assert resolve_device(None, jnp.zeros((3, 2))) == Placement(CPU, True)
    with ntkit.config_context(device="cpu"):
        assert resolve_device(None, X).device == CPU
    if not any(d.platform == "gpu" for d in jax.devices()):
        assert resolve_device("auto", X).device is None  # no GPU: the host engines, as before
        with pytest.raises(RuntimeError, match="jax sees no GPU"):
            resolve_device("gpu", X)
    with pytest.raises(ValueError, match="'device' parameter"):
        resolve_device("tpu0", X)

    class FakeGPU:
        platform, id = "gpu", 0

        @staticmethod
        def memory_stats():
            return {"bytes_limit": 100 * 2**30, "bytes_in_use": 90 * 2**30}

    assert device_budget(FakeGPU()) == int(0.8 * 10 * 2**30)  # the free part caps a quarter of the pool
    assert device_budget(FakeGPU(), "1GiB") == 2**30  # explicit wins
    assert device_budget(CPU) == ntkit._config.default_memory_budget()


GPU = [d for d in jax.devices() if d.platform == "gpu"]


@pytest.mark.gpu
@pytest.mark.skipif(not GPU, reason="jax sees no GPU")
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_solvers_on_the_gpu_equal_the_host(data, dtype):
    """The same checks on a real GPU (run on the lent machine; skipped in CI). cuBLAS/XLA's GPU
    reductions sum in other orders than the CPU: the same bounds apply."""
    X, y, Xt = (a.astype(dtype) for a in data)
    for kw, bound in ((dict(centers=X[:150], epochs=4, ridge=1e-3), BOUND_EP3[dtype]),
                      (dict(epochs=3, ridge=1e-3), BOUND[dtype])):
        host = eigenpro(RBF(0.7), X, y, random_state=0, **kw)
        dev = eigenpro(RBF(0.7), X, y, random_state=0, device="gpu", **kw)
        assert _rel(dev.predict(Xt), host.predict(Xt)) < bound
    with jax.enable_x64(dtype == np.float64):
        Xg = jax.device_put(X, GPU[0])
        res = nystrom_pcg(RBF(0.5), Xg, jax.device_put(y, GPU[0]), n_centers=150, ridge=1e-3, random_state=0,
                          maxiter=15)
        assert res.weights.devices() == {GPU[0]}
        host = nystrom_pcg(RBF(0.5), X, y, n_centers=150, ridge=1e-3, random_state=0, maxiter=15)
        assert _rel(res.predict(Xt), host.predict(Xt)) < BOUND[dtype]
