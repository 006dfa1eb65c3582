"""Risk curves against independent references.

References: (1) a scalar brentq implementation of the eigenlearning equations written here;
(2) the contour method applied to KRR as a custom profile; (3) Monte-Carlo simulation of the
models (ntkit.theory.simulate_risk, checked itself against a direct phase formula and a
dense least-squares fit); (4) the exact aliasing sum. Tolerances:

* closed form vs contour vs brentq: both sides are accurate to the quadrature target (1e-9)
  or to round-off; the issue's bar is 1e-6 relative, asserted at 1e-7.
* theory vs Monte Carlo: |difference| <= 3 standard errors + a finite-size allowance. The
  deterministic equivalents are exact as P, N -> infinity with O(1/N) corrections; at N = 200
  we allow 2% of the value (the notes measured 1-5% on single draws of bias; with 40 draws
  the mean's deviation is within 3 SE in all our runs).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import brentq

from ntkit import InvalidParameterError
from ntkit.theory import (estimate_spectrum, power_law, power_law_exponent, profiles, risk_curve,
                          simulate_risk)
from ntkit.theory._powerlaw import circle_power_law
from ntkit.theory._sums import ModeSums


def _eigenlearning_ref(lam, c2, N, ridge, noise):
    f = lambda k: np.sum(lam / (lam + k)) + N * ridge / k - N  # noqa: E731
    k = brentq(f, 1e-300, 1e10, xtol=1e-300, rtol=1e-15, maxiter=2000)
    L = lam / (lam + k)
    E0 = N / (N - np.sum(L**2))
    return E0 * np.sum((1 - L) ** 2 * c2), noise * (E0 - 1)


@pytest.fixture(scope="module")
def wishart():
    P = 800
    l = np.arange(1, P + 1)
    lam = l**-1.5 / np.sum(l**-1.5)
    c = np.sqrt(lam) / l  # w*_l = 1/l, c² = λ w²
    return lam, c


def test_mode_sums_match_direct_sums():
    lam, c = power_law(50_000, 1.5, 1.0)
    lam[-5:] = 0.0
    ms = ModeSums(lam, c**2)
    rng = np.random.default_rng(0)
    kap = np.concatenate([10 ** rng.uniform(-8, 0, 30), -(1 + 10 ** rng.uniform(-3, 1, 10)),
                          10 ** rng.uniform(-6, 0, 60) * np.exp(1j * rng.uniform(0.05, 3.1, 60))])
    got = ms.evaluate(kap)
    inv = 1 / (lam[None] + kap[:, None])
    ref = {"S": inv @ c**2, "G": inv @ lam, "S2": inv**2 @ c**2, "F2": inv**2 @ lam**2, "G2": inv**2 @ lam}
    for k, v in ref.items():
        # truncation <= 1e-15 relative per band (module docstring); summation order adds ~1e-14
        np.testing.assert_allclose(got[k], v, rtol=1e-12, err_msg=k)


@pytest.mark.parametrize("ridge", [1e-1, 1e-3, 1e-6])
def test_krr_closed_form_matches_scalar_reference(wishart, ridge):
    lam, c = wishart
    N = np.array([10, 200, 700, 5000])
    rc = risk_curve(lam, c, N, profile=profiles.krr(ridge), noise=0.05)
    for j, n in enumerate(N):
        b, v = _eigenlearning_ref(lam, c**2, n, ridge, 0.05)
        np.testing.assert_allclose([rc.bias[j], rc.variance[j]], [b, v], rtol=1e-9)


@pytest.mark.parametrize("ridge", [1e-1, 1e-3, 1e-5])
def test_contour_equals_eigenlearning_for_krr(wishart, ridge):
    lam, c = wishart
    N = [20, 200, 2000]
    closed = risk_curve(lam, c, N, profile=profiles.krr(ridge), noise=0.05)
    custom = profiles.Profile(lambda z: z / (z + ridge), name="krr-by-contour", analytic_radius=ridge)
    contour = risk_curve(lam, c, N, profile=custom, noise=0.05)
    np.testing.assert_allclose(contour.bias, closed.bias, rtol=1e-7)
    np.testing.assert_allclose(contour.variance, closed.variance, rtol=1e-7)


def test_iterated_tikhonov_order_one_is_krr(wishart):
    lam, c = wishart
    a = risk_curve(lam, c, [50, 500], profile=profiles.iterated_tikhonov(1e-3, 1), noise=0.1)
    b = risk_curve(lam, c, [50, 500], profile=profiles.krr(1e-3), noise=0.1)
    np.testing.assert_allclose(a.risk, b.risk, rtol=1e-7)


@pytest.mark.parametrize("prof", [profiles.krr(1e-3), profiles.gradient_flow(200.0), profiles.gradient_flow(5000.0),
                                  profiles.gradient_descent(100, 3.0), profiles.iterated_tikhonov(1e-3, 3),
                                  profiles.spectral_cutoff(3e-3)], ids=lambda p: p.describe())
def test_gaussian_theory_matches_monte_carlo(wishart, prof):
    lam, c = wishart
    th = risk_curve(lam, c, [200], profile=prof, noise=0.05)
    mc = simulate_risk(lam, c, [200], profile=prof, noise=0.05, n_trials=40, random_state=1)
    for part in ("bias", "variance", "risk"):
        t, m, se = getattr(th, part)[0], getattr(mc, part)[0], getattr(mc, part + "_se")[0]
        assert abs(t - m) <= 3 * se + 0.02 * abs(t), (part, t, m, se)


def test_profile_grid_equals_separate_curves(wishart):
    lam, c = wishart
    times = np.array([10.0, 300.0, 1e4])
    grid = risk_curve(lam, c, [30, 300], profile=profiles.gradient_flow(times), noise=0.02)
    assert grid.risk.shape == (3, 2)
    for i, t in enumerate(times):
        one = risk_curve(lam, c, [30, 300], profile=profiles.gradient_flow(t), noise=0.02)
        np.testing.assert_allclose(grid.risk[i], one.risk, rtol=1e-7)
    best, arg = grid.optimal()
    np.testing.assert_array_equal(best, grid.risk.min(axis=0))


def test_circle_formula_matches_simulation():
    lam, c, f = circle_power_law(1024, 2.0, 1.0)
    for prof in (profiles.gradient_flow(np.array([5.0, 50.0, 500.0])), profiles.krr(1e-2)):
        th = risk_curve(lam, c, [64], profile=prof, noise=0.01, model="translation_invariant", frequencies=f)
        mc = simulate_risk(lam, c, [64], profile=prof, noise=0.01, model="translation_invariant", frequencies=f,
                           n_trials=40, random_state=0)
        # exact formula (no finite-size term): only Monte-Carlo error
        assert np.all(np.abs(th.risk - mc.risk) <= 3 * mc.risk_se), (th.risk, mc.risk, mc.risk_se)


def test_circle_simulation_against_direct_phase_formula():
    """One shift u: the simulator's dense fit equals the mode-by-mode aliasing with phases."""
    from ntkit.theory._simulate import _trial_circle

    lam, c, f = circle_power_law(300, 2.0, 1.0)
    prof = profiles.gradient_flow(50.0)
    N, u = 16, 0.37
    b, _ = _trial_circle(lam, c.reshape(-1, 1), f, N, prof, 0.0, u)
    k = np.mod(f, N)
    tot = 0.0
    for i in range(len(f)):
        m = k == k[i]
        lh = lam[m].sum()
        a = lam[i] * prof(lh) / lh
        tot += abs(a * np.sum(c[m] * np.exp(1j * (f[m] - f[i]) * u)) - c[i]) ** 2
    np.testing.assert_allclose(b[0], tot, rtol=1e-9)


def test_gaussian_simulation_against_least_squares_on_features():
    """Ridgeless KRR with N > P is least squares on the features: risk = σ² tr(Λ (XᵀX)⁻¹) exactly."""
    rng = np.random.default_rng(3)
    lam = np.array([1.0, 0.5, 0.2, 0.1])
    c = np.array([1.0, -0.5, 0.3, 0.0])
    N = 40
    from ntkit.theory._simulate import _trial_gaussian

    class Rng:  # hand the simulator a known design
        def standard_normal(self, shape):
            return G

    G = rng.standard_normal((N, 4))
    bias, var = _trial_gaussian(lam, c.reshape(-1, 1), N, profiles.krr(0.0), 0.3, Rng())
    X = G * np.sqrt(lam)
    np.testing.assert_allclose(bias, 0.0, atol=1e-20)
    np.testing.assert_allclose(var, 0.3 * np.trace(np.diag(lam) @ np.linalg.inv(X.T @ X)), rtol=1e-10)
    # and the eigenlearning closed form for ridgeless N > P: E0 = N/(N − P)
    rc = risk_curve(lam, c, [N], profile=profiles.krr(0.0), noise=0.3)
    np.testing.assert_allclose(rc.variance[0], 0.3 * 4 / (N - 4), rtol=1e-12)
    assert rc.bias[0] == 0.0


def test_nmno_agrees_in_noisy_power_law_regime():
    """Noisy, optimally regularised, large N: the three models' risks agree (the NMNO regime)."""
    nu, kappa = 1.5, 1.0
    lam, c, f = circle_power_law(20_000, nu, kappa)
    ridges = np.logspace(-7, -1, 40)
    N = np.array([2000, 8000])
    g = risk_curve(lam, c, N, profile=profiles.krr(ridges), noise=0.5).optimal()[0]
    t = risk_curve(lam, c, N, profile=profiles.krr(ridges), noise=0.5, model="translation_invariant",
                   frequencies=f).optimal()[0]
    n = risk_curve(lam, c, N, profile=profiles.krr(ridges), noise=0.5, model="nmno").optimal()[0]
    assert np.all(np.abs(n / g - 1) < 0.15) and np.all(np.abs(n / t - 1) < 0.15), (g, t, n)
    # and NMNO is NOT a model of the noiseless case: there it misses the aliasing floor
    g0 = risk_curve(lam, c, [2000], profile=profiles.krr(1e-9)).risk[0]
    n0 = risk_curve(lam, c, [2000], profile=profiles.krr(1e-9), model="nmno").risk[0]
    assert n0 < 0.5 * g0


@pytest.mark.parametrize("nu,kappa,name", [(1.5, 1.0, "krr"), (1.5, 4.0, "krr"), (1.2, 5.0, "krr")])
def test_power_law_exponents_match_computed_curves(nu, kappa, name):
    lam, c = power_law(200_000, nu, kappa)
    N = np.array([2000, 4000, 8000, 16000])
    rc = risk_curve(lam, c, N, profile=profiles.krr(np.logspace(-13, 0, 150)), noise=0.1)
    slope = np.polyfit(np.log(N), np.log(rc.optimal()[0]), 1)[0]
    # pre-asymptotic corrections decay like a power of N; over this decade the local slope is
    # within 0.04 of the limit for these (ν, κ) (measured: ≤ 0.025)
    assert abs(-slope - power_law_exponent(nu, kappa, name)) < 0.04


def test_noiseless_ridgeless_exponent():
    for kappa in (1.0, 4.0):
        lam, c = power_law(200_000, 1.5, kappa)
        N = np.array([1000, 2000, 4000, 8000])
        slope = np.polyfit(np.log(N), np.log(risk_curve(lam, c, N, profile=profiles.krr(0.0)).risk), 1)[0]
        assert abs(-slope - power_law_exponent(1.5, kappa, noise=False)) < 0.1


def test_float32_inputs(wishart):
    lam, c = wishart
    a = risk_curve(lam.astype(np.float32), c.astype(np.float32), [100], profile=profiles.krr(1e-3), noise=0.1)
    b = risk_curve(lam.astype(np.float32).astype(np.float64), c.astype(np.float32).astype(np.float64), [100],
                   profile=profiles.krr(1e-3), noise=0.1)
    np.testing.assert_array_equal(a.risk, b.risk)  # computed in float64 from the same values
    assert a.risk.dtype == np.float64


# ---------------------------------------------------------------- spectra from data

def test_estimate_spectrum_dense_against_numpy():
    from ntkit.kernels import RBF

    rng = np.random.default_rng(0)
    X = rng.normal(size=(150, 4))
    y = np.c_[np.sin(X[:, 0]), X[:, 1] ** 2]
    sp = estimate_spectrum(RBF(1.5), X, y)
    K = np.exp(-0.5 * ((X[:, None] - X[None]) ** 2).sum(-1) / 1.5**2)
    w, U = np.linalg.eigh(K / 150)
    np.testing.assert_allclose(sp.eigenvalues, np.clip(w[::-1], 0, None), atol=1e-13)
    np.testing.assert_allclose(np.sum(sp.target_coeffs**2), np.mean(np.sum(y**2, 1)), rtol=1e-12)
    top = np.abs(U[:, ::-1][:, :5].T @ y / np.sqrt(150))
    np.testing.assert_allclose(np.abs(sp.target_coeffs[:5]), top, atol=1e-10)


def test_estimate_spectrum_nystrom_top_modes():
    from ntkit.kernels import Laplace

    rng = np.random.default_rng(1)
    X = rng.normal(size=(1200, 3))
    y = np.tanh(X[:, 0])
    d = estimate_spectrum(Laplace(2.0), X, y, method="dense")
    ny = estimate_spectrum(Laplace(2.0), X, y, method="nystrom", n_components=400, random_state=0)
    # top eigenvalues of a Nyström approximation converge fast for a smooth spectrum
    np.testing.assert_allclose(ny.eigenvalues[:5], d.eigenvalues[:5], rtol=0.02)
    assert ny.residual_power >= 0 and np.sum(ny.target_coeffs**2) <= np.mean(y**2) + 1e-12


def test_digits_learning_curve_predicted_vs_measured():
    """Eigenlearning on a real data set (digits as the population): prediction within 10%."""
    from sklearn.datasets import load_digits

    from ntkit.kernels import RBF

    X, lab = load_digits(return_X_y=True)
    X = X[::2] / 16.0
    Y = np.eye(10)[lab[::2]]
    k = RBF(4.0)
    sp = estimate_spectrum(k, X, Y)
    ridge = 1e-3
    Ns = np.array([50, 200])
    pred = risk_curve(sp.eigenvalues, sp.target_coeffs, Ns, profile=profiles.krr(ridge)).risk
    K = k(X)
    rng = np.random.default_rng(0)
    for n, p in zip(Ns, pred):
        errs = []
        for _ in range(30):
            i = rng.choice(len(X), n, replace=False)
            a = np.linalg.solve(K[np.ix_(i, i)] + n * ridge * np.eye(n), Y[i])
            errs.append(np.mean(np.sum((K[:, i] @ a - Y) ** 2, axis=1)))
        assert abs(np.mean(errs) / p - 1) < 0.1, (n, np.mean(errs), p)


# ---------------------------------------------------------------- bad input

def test_bad_input_messages(wishart):
    lam, c = wishart
    with pytest.raises(InvalidParameterError, match="negative"):
        risk_curve(-lam, c, [10], profile=profiles.krr(1e-3))
    with pytest.raises(InvalidParameterError, match="NaN or Inf"):
        risk_curve(np.r_[lam[:-1], np.nan], c, [10], profile=profiles.krr(1e-3))
    with pytest.raises(InvalidParameterError, match="n_modes"):
        risk_curve(lam, c[:-1], [10], profile=profiles.krr(1e-3))
    with pytest.raises(InvalidParameterError, match=r"h\(0\) = 0"):
        risk_curve(lam, c, [10], profile=lambda x: 1.0 + 0 * x)
    with pytest.raises(InvalidParameterError, match="diverges"):
        risk_curve(lam, c, [10], profile=profiles.gradient_descent(10, 50.0))
    with pytest.raises(InvalidParameterError, match="diverges"):
        risk_curve(lam, c, [10], profile=profiles.gradient_descent(10, 50.0), model="nmno")
    with pytest.raises(InvalidParameterError, match="n_samples"):
        risk_curve(lam, c, [0], profile=profiles.krr(1e-3))
    with pytest.raises(InvalidParameterError, match="frequencies"):
        risk_curve(lam, c, [10], profile=profiles.krr(1e-3), model="translation_invariant")
    with pytest.raises(InvalidParameterError, match="ridge"):
        profiles.krr(-1.0)
    with pytest.raises(InvalidParameterError, match="model"):
        risk_curve(lam, c, [10], profile=profiles.krr(1e-3), model="wishart")
    with pytest.raises(InvalidParameterError, match="noise"):
        risk_curve(lam, c, [10], profile=profiles.krr(1e-3), noise=-1)


def test_plot_returns_axes(wishart):
    import matplotlib

    matplotlib.use("Agg")
    lam, c = wishart
    ax = risk_curve(lam, c, [10, 100], profile=profiles.krr([1e-4, 1e-2]), noise=0.1).plot()
    assert ax.get_xscale() == "log" and len(ax.lines) >= 2


def test_cli_risk_writes_csv_and_png(tmp_path):
    import csv

    from ntkit.cli import main

    out = tmp_path / "risk"
    assert main(["risk", "--modes", "2000", "--points", "4", "--n-max", "300", "--profiles", "krr,spectral_cutoff",
                 "--model", "nmno", "--out", str(out)]) == 0
    rows = list(csv.reader(open(out / "risk.csv")))
    assert rows[0] == ["n_samples", "krr", "spectral_cutoff"] and len(rows) == 5
    vals = np.array(rows[1:], dtype=float)
    assert np.all(np.isfinite(vals)) and np.all(np.diff(vals[:, 1]) < 0)  # the risk falls with N
    assert (out / "risk.png").stat().st_size > 1000


def test_optimal_warns_when_the_minimum_borders_unconverged_points():
    from ntkit.theory._risk import RiskCurve

    prof = profiles.krr(np.array([1e-3, 1e-2, 1e-1]))
    N = np.array([10, 20])
    risk = np.array([[np.nan, 0.5], [0.1, 0.4], [0.2, 0.3]])
    rc = RiskCurve(N, risk, risk, 0 * risk, prof, "gaussian", 0.0)
    with pytest.warns(RuntimeWarning, match=r"N = \[10\]"):
        best, i = rc.optimal()
    np.testing.assert_array_equal(i, [1, 2])
    np.testing.assert_allclose(best, [0.1, 0.3])
