"""The online learners on a jax device: the device cores (jit-compiled scans over the rounds) make the
host cores' predictions, the estimators take ``device=``, jax in → jax out.

Tolerance: float64 states on both paths, the same rounds in the same order; what differs is rounding
(kernel rows formed per round against the buffer — centred on the round's point — instead of per
chunk; KOGD's eager projection instead of a lazy scale; NONS-ALD's A updated at once instead of in
queued rank-k blocks). Each round's error is a few eps relative, and on these short streams
(≤ 150 rounds, step sizes ≤ U/sqrt(Σ‖∇‖²)) it is not amplified beyond ~1e3·eps (measured: ≤ 2e-14):
the table's float64 row, rtol 1e-10 of the largest |prediction|. The discrete decisions (ALD
additions, budget evictions, KORS draws, projections) are the same here: their margins on these
fixed seeds are far above 1e-10 (a flipped decision would show up as an O(1) difference and fail).
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.utils.estimator_checks import check_estimator

import ntkit
from ntkit._validation import InvalidParameterError
from ntkit.estimators import OnlineKernelRegressor
from ntkit.kernels import RBF, Laplace
from ntkit.online import AOGDALD, KOGD, KONS, NONSALD, SketchedKONS, aogd_ald, kogd, kons, nons_ald, sketched_kons

jax = pytest.importorskip("jax")
jnp = jax.numpy

RTOL = 1e-10


def _has_gpu():
    try:
        return bool(jax.devices("gpu"))
    except RuntimeError:
        return False


DEVICES = ["cpu", pytest.param("gpu", marks=[pytest.mark.gpu, pytest.mark.skipif(not _has_gpu(),
                                                                                   reason="jax sees no GPU")])]


def _stream(n=150, d=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1, 1, size=(n, d))
    return X, np.sin(3 * X[:, 0]) + 0.5 * X[:, 1] + 0.1 * rng.normal(size=n), rng.uniform(-1, 1, size=(20, d))


def _close(actual, desired, scale):
    np.testing.assert_allclose(np.asarray(actual, np.float64), desired, rtol=0, atol=RTOL * scale)


CORES = {
    "kogd": lambda **k: kogd(RBF(0.5), **k),
    "kogd-budget-eta0": lambda **k: kogd(Laplace(0.7), budget=25, learning_rate=0.5, U=3.0, **k),
    "aogd_ald": lambda **k: aogd_ald(RBF(0.5), **k),
    # threshold 0: every independent point joins, so the optimistic device buffer overflows and the
    # chunk is rerun with a doubled one
    "aogd_ald-threshold0": lambda **k: aogd_ald(Laplace(1.0), threshold=0.0, **k),
    "nons_ald": lambda **k: nons_ald(RBF(0.5), refactor_every=40, budget=12, **k),
    "kons": lambda **k: kons(RBF(0.5), **k),
    "sketched_kons": lambda **k: sketched_kons(RBF(0.5), gamma=0.3, seed=3, **k),
}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", list(CORES))
def test_device_core_equals_host_core(name, device):
    X, y, Xq = _stream()
    host, dev = CORES[name](), CORES[name](device=device)
    sh, sd = host.init(X.shape[1]), dev.init(X.shape[1])
    ph, pd = [], []
    for sl in (slice(0, 100), slice(100, 101), slice(101, None)):  # batching must not matter
        sh, a = host.update(sh, X[sl], y[sl])
        sd, b = dev.update(sd, X[sl], y[sl])
        assert type(b) is np.ndarray and b.dtype == np.float64
        ph.append(a)
        pd.append(b)
    scale = np.abs(y).max()
    _close(np.concatenate(pd), np.concatenate(ph), scale)
    _close(dev.predict(sd, Xq), host.predict(sh, Xq), scale)
    assert sd.t == sh.t
    assert float(sd.cumulative_loss) == pytest.approx(sh.cumulative_loss, rel=RTOL)
    host_size = {"kogd": lambda s: s.coef.shape[0], "aogd": lambda s: len(s.dictionary),
                 "nons": lambda s: len(s.dictionary), "kons": lambda s: s.points.n}
    if name.startswith("sketched"):
        assert sd.dictionary_size() == len(sh.sketch)
    else:
        assert sd.dictionary_size() == host_size[name.split("_")[0].split("-")[0]](sh)


def test_jax_batches_and_float32():
    X, y, Xq = _stream()
    core = CORES["nons_ald"]
    sh, ph = core().update(core().init(3), X, y)
    dev = core(device="cpu")
    Xj, yj = jnp.asarray(X, dtype=jnp.float32), jnp.asarray(y, dtype=jnp.float32)
    sd, pd = dev.update(dev.init(3), Xj, yj)
    assert isinstance(pd, jax.Array) and pd.dtype == np.float32 and pd.devices() == Xj.devices()
    # float32 inputs: the states are float64 on both paths; the inputs are the float32-rounded ones
    sh32, ph32 = core().update(core().init(3), X.astype(np.float32), y.astype(np.float32))
    _close(pd, ph32, 1e3 * np.abs(y).max())  # then rounded to float32 (eps 6e-8 ≤ 1e3 · 1e-10)
    q = dev.predict(sd, jnp.asarray(Xq, dtype=jnp.float32))
    assert isinstance(q, jax.Array) and q.dtype == np.float32


@pytest.mark.parametrize("make", [lambda **k: KOGD(budget=20, **k), lambda **k: AOGDALD(**k),
                                  lambda **k: NONSALD(**k), lambda **k: KONS(**k),
                                  lambda **k: SketchedKONS(random_state=0, **k),
                                  lambda **k: OnlineKernelRegressor("kogd", **k)],
                         ids=["KOGD", "AOGDALD", "NONSALD", "KONS", "SketchedKONS", "OnlineKernelRegressor"])
def test_estimators_device_parameter(make):
    X, y, Xq = _stream()
    host = make().fit(X, y)
    dev = make(device="cpu").fit(X[:60], y[:60]).partial_fit(X[60:], y[60:])
    p = dev.predict(Xq)
    assert type(p) is np.ndarray and p.dtype == np.float64
    scale = np.abs(y).max()
    _close(p, host.predict(Xq), scale)
    assert dev.dictionary_size_ == host.dictionary_size_ and dev.n_seen_ == host.n_seen_
    assert dev.cumulative_loss_ == pytest.approx(host.cumulative_loss_, rel=RTOL)
    again = pickle.loads(pickle.dumps(dev))  # device arrays pickle as numpy and go back at the next call
    _close(again.predict(Xq), p, scale)
    with ntkit.config_context(device="cpu"):
        cfg = clone(make()).fit(X, y)
    _close(cfg.predict(Xq), host.predict(Xq), scale)


def test_estimator_jax_in_jax_out():
    X, y, Xq = _stream()
    host = KONS().fit(X, y)
    Xj, yj = jnp.asarray(X, dtype=jnp.float32), jnp.asarray(y, dtype=jnp.float32)
    est = KONS().fit(Xj, yj)  # "auto" + jax data: the data's device
    assert type(est.state_).__name__ == "KONSDeviceState"
    assert isinstance(est.online_predictions_, jax.Array) and est.online_predictions_.dtype == np.float32
    q = est.predict(jnp.asarray(Xq, dtype=jnp.float32))
    assert isinstance(q, jax.Array) and q.dtype == np.float32
    # float32 rounding of the inputs only (see test_jax_batches_and_float32)
    _close(q, host.predict(Xq.astype(np.float32)), 1e3 * np.abs(y).max())
    # a host learner answers jax queries with jax arrays too
    assert isinstance(host.predict(jnp.asarray(Xq)), jax.Array)


def test_checkpointed_fit_on_device(tmp_path):
    X, y, Xq = _stream(n=300)
    ref = AOGDALD(device="cpu").fit(X, y)
    est = AOGDALD(device="cpu").fit(X, y, checkpoint=tmp_path / "ck", checkpoint_every=2048)
    _close(est.predict(Xq), ref.predict(Xq), np.abs(y).max())
    again = AOGDALD(device="cpu").fit(X, y, checkpoint=tmp_path / "ck", checkpoint_every=2048)  # nothing left
    _close(again.predict(Xq), ref.predict(Xq), np.abs(y).max())


def test_device_errors():
    X, y, _ = _stream(n=10)
    with pytest.raises(InvalidParameterError, match="'device' parameter of KONS"):
        KONS(device="tpu").fit(X, y)
    with pytest.raises(InvalidParameterError, match="'device' parameter of kogd"):
        kogd(RBF(1.0), device="auto")
    dev = kons(RBF(1.0), device="cpu")
    state = dev.init(3)
    with pytest.raises(ValueError, match="X has 2 features, but kons was initialised with 3"):
        dev.update(state, jnp.ones((2, 2)), jnp.ones(2))
    with pytest.raises(ValueError, match="X contains NaN"):
        dev.update(state, jnp.full((2, 3), jnp.nan), jnp.ones(2))
    if not _has_gpu():
        with pytest.raises(RuntimeError, match="device='gpu' was requested"):
            KOGD(device="gpu").fit(X, y)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.SkipTestWarning")
def test_check_estimator_on_a_device():
    check_estimator(KOGD(budget=20, device="cpu"))
