"""Estimators with ``device=``: fitted on a jax device (here jax's CPU device), numpy in and out.

Equality bounds against the host engines (relative, on predictions): the Cholesky and CG paths
solve the same float64 system whose kernel entries differ by rounding (~1e-16 relative), which
the solve amplifies by at most cond(K + ridge·I) ≈ 1e6 here: 1e-8. EigenPro runs the same
iterations from the same seed: 1e-9 (see tests/solvers/test_device.py).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

jax = pytest.importorskip("jax")

import ntkit  # noqa: E402
from ntkit.estimators import EigenProClassifier, EigenProRegressor, NTKRegressor  # noqa: E402
from ntkit.kernels import RBF  # noqa: E402

from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402


def _rel(a, b):
    return float(np.linalg.norm(np.asarray(a) - b) / np.linalg.norm(b))


@pytest.fixture(scope="module")
def reg_data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 4))
    return X, np.sin(X[:, 0]) + 0.1 * rng.normal(size=400), rng.normal(size=(50, 4))


@pytest.mark.parametrize("solver", ["cholesky", "cg", "eigenpro"])
def test_ntk_regressor_device_equals_host(reg_data, solver):
    X, y, Xt = reg_data
    # CG to a 1e-13 residual (each run's error is ≤ cond·tol ≈ 1e-10; the default tol=1e-8 would leave
    # the two CG runs 1e-5 apart); EigenPro from the same seed
    kw = dict(kernel=RBF(1.5), ridge=1e-2, solver=solver, random_state=0, epochs=5, tol=1e-13)
    host = NTKRegressor(**kw).fit(X, y)
    dev = NTKRegressor(device="cpu", **kw).fit(X, y)
    assert host.device_ is None and dev.device_ == "cpu:0"
    p = dev.predict(Xt)
    assert isinstance(p, np.ndarray) and p.dtype == np.float64
    assert _rel(p, host.predict(Xt)) < (1e-9 if solver == "eigenpro" else 1e-8)
    assert isinstance(dev.dual_coef_, np.ndarray)


@pytest.mark.parametrize("n_centers", [None, 100])
def test_eigenpro_regressor_device_equals_host(reg_data, n_centers):
    X, y, Xt = reg_data
    kw = dict(kernel=RBF(0.8), n_centers=n_centers, epochs=4, random_state=0)
    host = EigenProRegressor(**kw).fit(X, y)
    dev = EigenProRegressor(device="cpu", **kw).fit(X, y)
    assert _rel(dev.predict(Xt), host.predict(Xt)) < 1e-9


def test_config_context_device_and_auto(reg_data):
    X, y, _ = reg_data
    with ntkit.config_context(device="cpu"):
        est = NTKRegressor(kernel=RBF(1.0), ridge=1e-2).fit(X, y)  # device="auto" follows the context
    assert est.device_ == "cpu:0"
    if not any(d.platform == "gpu" for d in jax.devices()):
        assert NTKRegressor(kernel=RBF(1.0), ridge=1e-2).fit(X, y).device_ is None  # no GPU: host engines
        with pytest.raises(RuntimeError, match="jax sees no GPU"):
            NTKRegressor(device="gpu").fit(X, y)
    with pytest.raises(ValueError, match="'device' parameter of NTKRegressor"):
        NTKRegressor(device="cuda7").fit(X, y)
    with pytest.raises(RuntimeError, match="'gpu:7' is not among the devices"):
        NTKRegressor(device="gpu:7").fit(X, y)


def test_device_fit_survives_pickling(reg_data):
    import pickle

    X, y, Xt = reg_data
    est = EigenProClassifier(epochs=2, random_state=0, device="cpu").fit(X, (y > 0).astype(int))
    again = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(again.decision_function(Xt), est.decision_function(Xt))


with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    # one estimator of each shell and kind (NTK regressor, EigenPro classifier) keeps the suite short;
    # NTKClassifier and EigenProRegressor(device="cpu") pass the same checks (run by hand: 0 failures)
    _ESTIMATORS = [NTKRegressor(device="cpu"), EigenProClassifier(epochs=1, random_state=0, device="cpu")]


@parametrize_with_checks(_ESTIMATORS)
def test_estimator_checks_on_a_device(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # CG / EigenPro notes on sklearn's tiny data
        check(estimator)
