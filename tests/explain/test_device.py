"""NTKSurrogate on jax devices: jax in → jax out on the same device, the device fit equal to the host fit.

A small untrained MLP (random weights) is enough: these tests compare two implementations of the
same surrogate, not its faithfulness (tests/explain/test_surrogate.py). The eNTK Gram matrices are
the same on both paths (one :func:`ntkit.ntk.empirical_ntk`); what differs is where the solve runs.

Tolerances (float64 arithmetic on both paths; logits compared relative to their largest):

* ridge: a Cholesky solve of ``K + λnI`` (λn = 1/C) by jax's vs LAPACK's factorisation — same maths,
  different summation order, amplified by cond(K + λnI) ≤ (‖K‖ + 1/C)·C ≈ 10·n = 500 for a
  cosine-normalised K: rtol 1e-10 · 500 → 1e-9 (the table's float64 row times the condition
  number, rounded up);
* logistic: both stop L-BFGS at a gradient ≤ gtol = 1e-7 (scaled by scipy's stopping rule), and the
  objective is λ-strongly convex in the coefficients with λ = 1/(C·n), so each solution is within
  ~gtol/λ = 1e-7·C·n = 5e-5 of the optimum in W; logits differ by ≤ ‖Φ‖·that: rtol 1e-3;
* jax outputs are rounded to the input's float32 at the end: rtol 1e-6 on top (float32 eps ·
  a few).
"""

from __future__ import annotations

import numpy as np
import pytest

import ntkit
from ntkit.explain import NTKSurrogate

jax = pytest.importorskip("jax")
jnp = jax.numpy


@pytest.fixture(scope="module")
def net():
    from ntkit.ntk.models import mlp

    init, apply = mlp((4, 16, 3))
    params = init(jax.random.PRNGKey(0))
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 4)).astype(np.float32)
    y = np.argmax(np.asarray(apply(params, X)), axis=1)
    Xq = rng.normal(size=(7, 4)).astype(np.float32)
    return apply, params, X, y, Xq


RTOL = {"ridge": 1e-9, "logistic": 1e-3, "svm": 1e-9}


def _close(actual, desired, rtol):
    actual, desired = np.asarray(actual, np.float64), np.asarray(desired, np.float64)
    np.testing.assert_allclose(actual, desired, rtol=0, atol=rtol * np.abs(desired).max())


@pytest.mark.parametrize("kw", [{"machine": "ridge"}, {"machine": "logistic", "target": "network"},
                                {"machine": "ridge", "kind": "full"}, {"machine": "svm"}],
                         ids=lambda kw: "-".join(kw.values()))
def test_jax_fit_and_predict_equal_host(net, kw):
    apply, params, X, y, Xq = net
    host = NTKSurrogate(apply, params, **kw).fit(X, y)
    dev = NTKSurrogate(apply, params, **kw).fit(jnp.asarray(X), jnp.asarray(y))
    if kw["machine"] != "svm":
        assert isinstance(dev.dual_coef_, jax.Array) and isinstance(dev.K_train_, jax.Array)
    Xj = jnp.asarray(Xq)
    S = dev.decision_function(Xj)
    assert isinstance(S, jax.Array) and S.dtype == np.float32 and S.devices() == Xj.devices()
    rtol = RTOL[kw["machine"]] + 1e-6  # float32 rounding of the jax output
    _close(S, host.decision_function(Xq), rtol)
    np.testing.assert_array_equal(np.asarray(dev.predict(Xj)), host.predict(Xq))
    P = dev.predict_proba(Xj)
    assert isinstance(P, jax.Array)
    _close(P, host.predict_proba(Xq), rtol)
    # a host-fitted surrogate evaluates jax queries on their device too
    _close(host.decision_function(Xj), host.decision_function(Xq), 1e-6)
    fh, fd = host.fidelity(Xq, y[:7]), dev.fidelity(Xj, jnp.asarray(y[:7]))
    assert isinstance(fd.kendall_tau_per_logit, jax.Array)
    assert fd.kendall_tau == pytest.approx(fh.kendall_tau) and fd.label_agreement == fh.label_agreement
    assert fd.pearson == pytest.approx(fh.pearson, rel=rtol, abs=rtol)


def test_attribute_on_device_equals_host(net):
    apply, params, X, y, Xq = net
    host = NTKSurrogate(apply, params, machine="ridge").fit(X, y)
    dev = NTKSurrogate(apply, params, machine="ridge").fit(jnp.asarray(X), y)
    for logit in ("predicted", "network", 1):
        ah, ad = host.attribute(Xq, top_k=3, logit=logit), dev.attribute(jnp.asarray(Xq), top_k=3, logit=logit)
        for name, a, b in zip(ah._fields, ad, ah):
            assert isinstance(a, jax.Array), name
            if np.asarray(b).dtype.kind in "iu":  # indices, labels: the same training examples
                np.testing.assert_array_equal(np.asarray(a), b, err_msg=name)
            else:
                _close(a, b, 1e-6)


def test_device_parameter_numpy_in_numpy_out(net):
    apply, params, X, y, Xq = net
    host = NTKSurrogate(apply, params, machine="ridge").fit(X, y)
    dev = NTKSurrogate(apply, params, machine="ridge", device="cpu").fit(X, y)
    assert isinstance(dev.dual_coef_, jax.Array)  # fitted on the device
    S = dev.decision_function(Xq)
    assert type(S) is np.ndarray and S.dtype == np.float64  # numpy callers get the host dtype
    _close(S, host.decision_function(Xq), RTOL["ridge"])
    with ntkit.config_context(device="cpu"):
        cfg = NTKSurrogate(apply, params, machine="ridge").fit(X, y)
    assert isinstance(cfg.dual_coef_, jax.Array)
    _close(cfg.decision_function(Xq), host.decision_function(Xq), RTOL["ridge"])


def test_device_errors(net):
    apply, params, X, y, _ = net
    with pytest.raises(ValueError, match="'device' parameter of NTKSurrogate"):
        NTKSurrogate(apply, params, device="tpu").fit(X, y)
    with pytest.raises(ValueError, match="X_train contains NaN"):
        NTKSurrogate(apply, params).fit(jnp.asarray(X).at[0, 0].set(jnp.nan), y)
    with pytest.raises(ValueError, match="y_train must have shape"):
        NTKSurrogate(apply, params).fit(jnp.asarray(X), y[:5])
    sur = NTKSurrogate(apply, params, machine="ridge").fit(jnp.asarray(X), y)
    with pytest.raises(ValueError, match="X has examples of shape"):
        sur.decision_function(jnp.ones((2, 5), dtype=jnp.float32))


def _pickle_apply(p, x):  # module level: picklable
    import jax.numpy as jnp

    return jnp.tanh(x @ p["W1"]) @ p["W2"]


def test_device_fitted_surrogate_pickles_and_deep_copies():
    import copy
    import pickle

    import jax

    k = jax.random.split(jax.random.PRNGKey(0))
    p = {"W1": jax.random.normal(k[0], (4, 16)), "W2": jax.random.normal(k[1], (16, 3))}
    X = np.random.default_rng(0).normal(size=(40, 4)).astype(np.float32)
    y = np.random.default_rng(1).integers(0, 3, 40)
    s = NTKSurrogate(_pickle_apply, p, machine="ridge", device="cpu").fit(X, y)
    a = s.decision_function(X[:5])
    for again in (pickle.loads(pickle.dumps(s)), copy.deepcopy(s)):
        np.testing.assert_array_equal(np.asarray(again.decision_function(X[:5])), np.asarray(a))
