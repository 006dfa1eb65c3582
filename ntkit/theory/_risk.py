r"""Risk curves of spectral algorithms: closed forms, contour integrals, aliasing sums.

Notation: population eigenvalues λ_l of the kernel operator (of K/N), target coefficients
c_l (power c_l²), N training points, label-noise variance σ², profile h. The excess risk is
``E‖f̂ − f*‖²``; ``bias`` is its value without noise and ``variance`` the part due to noise.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import numpy as np

from .._validation import InvalidParameterError, check_scalar
from ._sums import ModeSums
from .profiles import Profile, as_profile

__all__ = ["RiskCurve", "risk_curve"]

_MODELS = ("gaussian", "translation_invariant", "nmno")


class RiskCurve(NamedTuple):
    """A predicted learning curve (or a grid of them).

    ``risk``, ``bias`` and ``variance`` have shape ``profile.shape + (len(n_samples),)``;
    ``risk = bias + variance`` is the excess risk E‖f̂ − f*‖² (add ``noise`` for the test MSE
    on noisy labels).
    """

    n_samples: np.ndarray
    risk: np.ndarray
    bias: np.ndarray
    variance: np.ndarray
    profile: Profile
    model: str
    noise: float

    def optimal(self):
        """The lower envelope over the profile grid: ``(risk, argmin index tuple per N)``.

        With a grid of ridges (or times) this is the optimally regularised learning curve.
        """
        if not self.profile.shape:
            return self.risk, np.zeros(len(self.n_samples), np.int64)
        flat = self.risk.reshape(-1, len(self.n_samples))
        nan = np.isnan(flat)
        if nan.all(axis=0).any():
            i = np.zeros(flat.shape[1], np.int64)
            ok = ~nan.all(axis=0)
            i[ok] = np.nanargmin(flat[:, ok], axis=0)
        else:
            i = np.nanargmin(flat, axis=0)
        best = flat[i, np.arange(flat.shape[1])]
        # a minimum next to a NaN (an unconverged grid point) may not be the optimum: say so
        suspect = []
        for j in range(flat.shape[1]):
            lo, hi = max(i[j] - 1, 0), min(i[j] + 1, flat.shape[0] - 1)
            if nan[lo:hi + 1, j].any():
                suspect.append(int(self.n_samples[j]))
        if suspect:
            warnings.warn(f"the optimum at N = {suspect[:5]}{'...' if len(suspect) > 5 else ''} lies next to NaN grid "
                          "points (unconverged); the true optimum may be among them. Narrow the grid.",
                          RuntimeWarning, stacklevel=2)
        return best, i

    def best_params(self):
        """For each N, the profile parameters of the optimum (a dict of arrays)."""
        _, i = self.optimal()
        return {k: v.reshape(-1)[i] for k, v in self.profile.params.items()}

    def plot(self, ax=None, *, parts=True, label=None, optimal=None, **kwargs):
        """Plot risk against N on log-log axes (bias and variance dashed when ``parts``).

        A profile grid plots its optimal envelope (``optimal=True``, the default for grids) or
        every curve (``optimal=False``). Returns the matplotlib axes.
        """
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(5, 3.6))
        n = self.n_samples
        label = label or f"{self.profile.describe()} ({self.model})"
        grid = bool(self.profile.shape)
        if optimal is None:
            optimal = grid
        if grid and optimal:
            r, i = self.optimal()
            ax.loglog(n, r, label=label + " — optimal", **kwargs)
            if parts:
                flat_b = self.bias.reshape(-1, len(n))[i, np.arange(len(n))]
                flat_v = self.variance.reshape(-1, len(n))[i, np.arange(len(n))]
                ax.loglog(n, flat_b, "--", lw=0.8, color=ax.lines[-1].get_color(), label="bias")
                if np.any(flat_v > 0):
                    ax.loglog(n, flat_v, ":", lw=0.8, color=ax.lines[-1].get_color(), label="variance")
        elif grid:
            for j, (r, p) in enumerate(zip(self.risk.reshape(-1, len(n)), self.profile.flat())):
                ax.loglog(n, r, label=p.describe(), **kwargs)
        else:
            ax.loglog(n, self.risk, label=label, **kwargs)
            if parts:
                c = ax.lines[-1].get_color()
                ax.loglog(n, self.bias, "--", lw=0.8, color=c, label="bias")
                if np.any(self.variance > 0):
                    ax.loglog(n, self.variance, ":", lw=0.8, color=c, label="variance")
        ax.set_xlabel("training points N")
        ax.set_ylabel("excess risk")
        ax.legend(fontsize=7)
        return ax


# ---------------------------------------------------------------- validation

def _check_spectrum(eigenvalues, target_coeffs):
    lam = np.asarray(eigenvalues)
    if lam.dtype == object or lam.dtype.kind not in "biuf" or lam.dtype == bool:
        raise InvalidParameterError(f"eigenvalues must be a 1-d array of real numbers; got dtype {lam.dtype}.")
    lam = lam.astype(np.float64)
    if lam.ndim != 1 or lam.size == 0:
        raise InvalidParameterError(f"eigenvalues must be a non-empty 1-d array; got shape {lam.shape}.")
    if not np.all(np.isfinite(lam)):
        raise InvalidParameterError("eigenvalues contain NaN or Inf; pass the finite eigenvalues of the kernel "
                                    "operator (of K/N).")
    if np.any(lam < 0):
        neg = lam[lam < 0]
        raise InvalidParameterError(
            f"eigenvalues must be >= 0 (a kernel operator is positive semi-definite); got {len(neg)} negative "
            f"value(s), the most negative {neg.min():.3g}. Clip round-off negatives with np.clip(lam, 0, None).")
    if lam.max() == 0:
        raise InvalidParameterError("all eigenvalues are zero: the kernel sees nothing.")
    c = np.asarray(target_coeffs)
    if c.dtype == object or c.dtype.kind not in "biufc" or c.dtype == bool:
        raise InvalidParameterError(f"target_coeffs must be an array of numbers; got dtype {c.dtype}.")
    if c.ndim not in (1, 2) or c.shape[0] != lam.shape[0]:
        raise InvalidParameterError(
            f"target_coeffs must have shape (n_modes,) or (n_modes, n_outputs) with n_modes = len(eigenvalues) = "
            f"{lam.shape[0]}; got shape {c.shape}.")
    if not np.all(np.isfinite(c)):
        raise InvalidParameterError("target_coeffs contain NaN or Inf.")
    c2 = np.abs(c.astype(np.complex128 if c.dtype.kind == "c" else np.float64)) ** 2
    if c2.ndim == 2:
        c2 = c2.sum(axis=1)
    return lam, c2.astype(np.float64)


def _check_n(n_samples):
    n = np.atleast_1d(np.asarray(n_samples))
    if n.dtype.kind not in "iuf" or n.ndim != 1 or n.size == 0:
        raise InvalidParameterError(f"n_samples must be a positive integer or a 1-d array of them; got {n_samples!r}.")
    if not np.all(np.isfinite(n)) or np.any(n < 1) or np.any(n != np.round(n)):
        raise InvalidParameterError(f"n_samples must hold positive integers; got {n_samples!r}.")
    return n.astype(np.int64)


# ---------------------------------------------------------------- real roots

def _solve_kappa(ms, N, eta):
    """κ > 0 with ``Σ λ/(λ+κ) + N·η/κ = N`` (broadcast over N and η); 0 when η = 0 and N ≥ #modes.

    Equivalently κ(z) at z = −η: ``η = κ (1 − (1/N) Σ λ/(λ+κ))``. The left side is decreasing
    in κ; safeguarded Newton in log κ, bracketed by ``[η, η + Σλ/N]`` (η > 0).
    """
    N, eta = np.broadcast_arrays(np.asarray(N, np.float64), np.asarray(eta, np.float64))
    shape = N.shape
    N, eta = N.ravel(), eta.ravel()
    kap = np.zeros(N.shape)
    solve = (eta > 0) | (ms.n_pos > N)
    if not solve.any():
        return kap.reshape(shape)
    Ns, es = N[solve], eta[solve]
    hi = es + ms.sum_lam / Ns
    lo = np.where(es > 0, es, ms.lam[ms.n_pos - 1] * 1e-12)
    lo = np.maximum(lo, 1e-300)
    ulo, uhi = np.log(lo), np.log(hi)
    # η = 0: make sure the lower end is left of the root (G(lo) > N)
    for _ in range(60):
        g = ms.evaluate(np.exp(ulo), ("G",))["G"] + Ns * es / np.exp(ulo) - Ns
        bad = g <= 0
        if not bad.any():
            break
        ulo = np.where(bad, ulo - 10.0, ulo)
    u = 0.5 * (ulo + uhi)
    for _ in range(200):
        k = np.exp(u)
        s = ms.evaluate(k, ("G", "G2"))
        val = s["G"] + Ns * es / k
        F = np.log(val) - np.log(Ns)
        dF = k * (-s["G2"] - Ns * es / k**2) / val
        ulo = np.where(F > 0, u, ulo)
        uhi = np.where(F <= 0, u, uhi)
        with np.errstate(divide="ignore", invalid="ignore"):
            un = u - F / dF
        out = ~np.isfinite(un) | (un <= ulo) | (un >= uhi)
        un = np.where(out, 0.5 * (ulo + uhi), un)
        done = np.abs(un - u) < 1e-14 * np.maximum(1.0, np.abs(u))
        u = un
        if np.all(done | (uhi - ulo < 1e-15 * np.maximum(1.0, np.abs(u)))):
            break
    kap[solve] = np.exp(u)
    return kap.reshape(shape)


def _kappa_edge(ms, N):
    """The real κ < −λ₁ where ``(1/N) Σ λ²/(λ+κ)² = 1`` (the image of the spectrum's upper edge)."""
    N = np.asarray(N, np.float64)
    lam1 = ms.lam1
    # u = −λ₁ − κ > 0; Φ decreases in u; Φ > 1 for u < λ₁/√N, Φ ≤ 1 at u = sqrt(Σλ²/N)
    lo = np.log(0.5 * lam1 / np.sqrt(N))
    hi = np.log(np.sqrt(ms.sum_lam2 / N) * 1.0000001)
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        phi = ms.evaluate(-lam1 - np.exp(mid), ("F2",))["F2"] / N
        lo = np.where(phi > 1, mid, lo)
        hi = np.where(phi > 1, hi, mid)
        if np.all(hi - lo < 1e-13):
            break
    return -lam1 - np.exp(hi)


def _upper_edge(ms, N):
    """λ₊, the upper edge of the spectrum of the empirical K/N (deterministic equivalent)."""
    ke = _kappa_edge(ms, N)
    G = ms.evaluate(ke, ("G",))["G"]
    return -ke * (1 - G / N)


# ---------------------------------------------------------------- gaussian model

def _eigenlearning(ms, N, ridge, noise):
    """KRR closed form (eigenlearning): arrays broadcast over (ridge grid, N)."""
    kap = _solve_kappa(ms, N, ridge)
    N_b = np.broadcast_to(N, kap.shape).astype(np.float64)
    bias = np.empty(kap.shape)
    var = np.empty(kap.shape)
    pos = kap > 0
    if pos.any():
        s = ms.evaluate(kap[pos], ("S2", "F2"))
        E0 = N_b[pos] / (N_b[pos] - s["F2"])
        bias[pos] = E0 * kap[pos] ** 2 * s["S2"]
        var[pos] = noise * (E0 - 1)
    if (~pos).any():  # ridgeless with N >= number of modes: least squares on the modes
        Nz = N_b[~pos]
        with np.errstate(divide="ignore", invalid="ignore"):
            E0 = np.where(Nz > ms.n_pos, Nz / (Nz - ms.n_pos), np.inf)
        bias[~pos] = np.where(ms.c2_zero > 0, E0 * ms.c2_zero, 0.0)
        var[~pos] = np.where(noise > 0, noise * (E0 - 1), 0.0)
    return bias, var


def _nodes(M):
    """Clustered trapezoid nodes on [0, 2π): θ = 2π w(w(s)), w(s) = s − sin(2πs)/2π."""
    s = np.arange(M) / M
    w1 = s - np.sin(2 * np.pi * s) / (2 * np.pi)
    th = 2 * np.pi * (w1 - np.sin(2 * np.pi * w1) / (2 * np.pi))
    dth = 2 * np.pi * (1 - np.cos(2 * np.pi * s)) * (1 - np.cos(2 * np.pi * w1)) / M
    return th, dth


_CONTOUR_SUMS = ("S", "G", "S2", "F2")


class _Contour:
    """The κ-plane contour for one N: an ellipse through κ(−δ) and left of the upper edge.

    The map κ ↦ z(κ) = −κ (1 − (1/N) Σ λ/(λ+κ)) is explicit, so the contour is laid out in the
    κ-plane (no equation is solved per node): an ellipse crossing the real axis at
    κ_R = κ(−δ) > 0 and at κ_L, left of the edge κ_e, tall enough to stay where
    Φ(κ) = (1/N) Σ λ²/|λ+κ|² < 1 (the physical sheet). Its image in z is a closed curve
    through −δ that encloses the spectrum of Σ̂ and no singularity of h.
    """

    def __init__(self, ms, N, delta, kR=None, ke=None):
        self.ms, self.N = ms, float(N)
        self.kR = float(_solve_kappa(ms, N, delta)) if kR is None else float(kR)
        ke = float(_kappa_edge(ms, N)) if ke is None else float(ke)
        self.kL = ke - 0.5 * (self.kR - ke)
        self.c = 0.5 * (self.kL + self.kR)
        self.a = 0.5 * (self.kR - self.kL)
        self.b = max(3.0 * np.sqrt(ms.sum_lam2 / N), self.a)
        self.cache = {}

    def sums(self, M):
        """Nodes, z, dz and the mode sums for M nodes. The contour is symmetric about the real
        axis (node M−k is the conjugate of node k), so the sums are evaluated on the upper half."""
        th, dth = _nodes(M)
        half_n = M // 2 + 1  # nodes 0..M/2: θ ∈ [0, π]
        for _ in range(8):
            key = (M, self.b)
            if key not in self.cache:
                kap = self.c + self.a * np.cos(th) + 1j * self.b * np.sin(th)
                kap[half_n:] = np.conj(kap[1:M // 2][::-1])
                prev = self.cache.get((M // 2, self.b))
                if prev is None:
                    up = self.ms.evaluate(kap[:half_n], _CONTOUR_SUMS)
                else:  # nested nodes: the even ones are the previous level's
                    odd = self.ms.evaluate(kap[1:half_n:2], _CONTOUR_SUMS)
                    up = {}
                    for name, v in odd.items():
                        up[name] = np.empty(half_n, v.dtype)
                        up[name][0::2], up[name][1::2] = prev[1][name][: M // 4 + 1], v
                s = {name: np.concatenate([v, np.conj(v[1:M // 2][::-1])]) for name, v in up.items()}
                # Φ(κ) = Im(κ G(κ)) / (N Im κ) off the axis, F2/N on it
                with np.errstate(divide="ignore", invalid="ignore"):
                    phi = np.where(np.abs(kap.imag) > 1e-12 * np.abs(kap), (kap * s["G"]).imag / kap.imag,
                                   s["F2"].real) / self.N
                self.cache[key] = (kap, s, phi)
            kap, s, phi = self.cache[key]
            if np.all(phi < 0.95):
                break
            self.b *= 2.0
            self.cache.clear()
        else:  # pragma: no cover - the unphysical region is bounded by |Im κ| < sqrt(Σλ²/N)
            raise RuntimeError("could not place the contour outside the spectrum; please report this spectrum.")
        dk = (-self.a * np.sin(th) + 1j * self.b * np.cos(th)) * dth
        z = -kap * (1 - s["G"] / self.N)
        dz = (-1 + s["F2"] / self.N) * dk
        return kap, z, dz, s


def _pair_matrix(kap, s, N, rows):
    """``A[i, j] = [Σ c²/((λ+κᵢ)(λ+κⱼ))] / [1 − (1/N) Σ λ²/((λ+κᵢ)(λ+κⱼ))]`` for i in rows.

    With z(κ) = −κ(1 − G(κ)/N) and the partial fractions of 1/((λ+κᵢ)(λ+κⱼ)) this is the
    divided difference ``(S(κᵢ) − S(κⱼ)) / (z(κᵢ) − z(κⱼ))``, and ``S2 / (1 − F2/N)`` = dS/dz on
    the diagonal.
    """
    S = s["S"]
    z = -kap * (1 - s["G"] / N)
    dzm = z[rows, None] - z[None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        A = (S[rows, None] - S[None, :]) / dzm
    # coincident nodes (the diagonal, and nodes that the clustering packs within rounding of each
    # other, where the weights vanish): the derivative, averaged over the pair
    close = np.abs(dzm) <= 1e-7 * np.abs(z[rows, None])
    if close.any():
        i, j = np.nonzero(close)
        d = s["S2"] / (1 - s["F2"] / N)
        A[i, j] = 0.5 * (d[rows[i]] + d[j])
    return A


def _upper_rows(M):
    """Rows 0..M/2 of a conjugate-symmetric node set and their weights (2 for the rows whose
    conjugate is another node, 1 for the two real-axis nodes): ``Re Σ_all = Re Σ_rows weight·(…)``."""
    rows = np.arange(M // 2 + 1)
    wt = np.full(len(rows), 2.0)
    wt[0] = wt[-1] = 1.0
    return rows, wt


def _contour_risk(ms, Ns, profiles, noise, rtol=1e-10, max_nodes=8192):
    """Gaussian-model bias and variance, shape (n_profiles, len(Ns)), for scalar analytic profiles.

    Profiles whose analytic radii are within a factor 10 share one contour (crossing at half
    the smallest radius); others get their own. The contours' real crossings are solved for all
    N at once, and each N starts one doubling below the node count the previous N needed.
    """
    Ns = np.asarray(Ns)
    radius = np.array([min(float(p.analytic_radius), ms.lam1) for p in profiles])
    bias = np.empty((len(profiles), len(Ns)))
    var = np.empty((len(profiles), len(Ns)))
    order = np.argsort(radius)
    ke = _kappa_edge(ms, Ns) if len(Ns) else Ns
    start = 0
    while start < len(order):
        stop = start + 1
        while stop < len(order) and radius[order[stop]] <= 10 * radius[order[start]]:
            stop += 1
        group = order[start:stop]
        delta = 0.5 * radius[order[start]]
        kR = _solve_kappa(ms, Ns, delta)
        M = 128
        for j, N in enumerate(Ns):
            cont = _Contour(ms, N, delta, kR[j], ke[j])
            b, v, M = _contour_group(cont, [profiles[i] for i in group], noise, rtol, max_nodes, max(128, M // 2))
            bias[group, j], var[group, j] = b, v
        start = stop
    return bias, var


def _contour_group(cont, profiles, noise, rtol, max_nodes, M=128):
    ms, N = cont.ms, cont.N
    prev = None
    while True:
        kap, z, dz, s = cont.sums(M)
        H = np.stack([np.asarray(p(z), dtype=np.complex128) for p in profiles])  # (np, M)
        w1 = (1 - H) * (kap / z) * dz / (2j * np.pi)  # bias = ∮∮ (1−h₁)(1−h₂)(κ₁κ₂/z₁z₂) A dz₁dz₂/(2πi)²
        # h(z̄) = conj h(z): the rows of the lower half are the conjugates of the upper half's
        up, wt = _upper_rows(M)
        AW = np.zeros((len(up), len(profiles)), np.complex128)
        for r0 in range(0, len(up), 512):
            rows = up[r0:r0 + 512]
            AW[rows] = _pair_matrix(kap, s, cont.N, rows) @ w1.T
        bias = np.einsum("pm,mp,m->p", w1[:, up], AW, wt).real
        var1 = (np.sum(H**2 / z * (kap / z) * s["G"] * dz, axis=1) / (2j * np.pi)).real / cont.N
        cur = np.concatenate([bias, var1])
        if prev is not None:
            scale = np.abs(cur) + 1e-15 * (ms.sum_c2 + 1.0)
            if np.all(np.abs(cur - prev) <= rtol * scale):
                break
            if 2 * M > max_nodes:
                change = np.abs(cur - prev) / scale
                bad = (change[: len(profiles)] > 1e-4) | (change[len(profiles):] > 1e-4)
                if bad.any() or np.max(change) > 1e-6:  # below 1e-6 the result is kept without noise
                    warnings.warn(
                        f"the contour integral at N = {int(N)} did not converge to {rtol:g} with {M} nodes (change "
                        f"{np.max(change):.1e}); {int(bad.sum())} profile(s) set to NaN (change > 1e-4), the others "
                        "kept. The profile varies on scales far below the spectrum's width (e.g. gradient flow with "
                        "time·λ₁ >> 10³ at large N): use shorter times, or krr(0) for the interpolation limit.",
                        RuntimeWarning, stacklevel=4)
                cur[: len(profiles)][bad] = np.nan
                cur[len(profiles):][bad] = np.nan
                bias, var1 = cur[: len(profiles)], cur[len(profiles):]
                break
        prev = cur
        M *= 2
    hmax = float(np.abs(H).max())
    if hmax > 1e8:
        warnings.warn(f"|h(z)| reaches {hmax:.1e} on the contour at N = {int(N)}; expect cancellation errors "
                      "(a profile with a very large time or step count?).", RuntimeWarning, stacklevel=4)
    return bias, noise * var1, M


# ---------------------------------------------------------------- the cut-off (non-analytic)

def _kappa_at(ms, N, zpts, k0):
    """κ(z) on the physical sheet at the complex points ``zpts`` (Im z > 0), by continuation from k0."""
    out = np.empty(len(zpts), np.complex128)
    k = complex(k0)
    for i, zt in enumerate(zpts):
        for _ in range(100):
            s = ms.evaluate(np.array([k]), ("G", "F2"))
            f = -k * (1 - s["G"][0] / N) - zt
            dfk = -1 + s["F2"][0] / N
            step = f / dfk
            k -= step
            if abs(step) <= 1e-14 * abs(k):
                break
        out[i] = k
    return out


def _cutoff_risk(ms, N, threshold, noise, n_nodes=400):
    """Gaussian model with h = 1[λ ≥ θ]: h(Σ̂) is the spectral projector of [θ, ∞), a contour
    integral over a circle crossing the real axis at θ and right of the spectrum (Gauss–Legendre
    in the angle, graded towards θ where the boundary values of the two sheets meet)."""
    lam_plus = float(_upper_edge(ms, N))
    if threshold > lam_plus:
        return float(ms.sum_c2), 0.0
    right = lam_plus * 1.05 + 1e-3 * ms.lam1
    cen, rad = 0.5 * (threshold + right), 0.5 * (right - threshold)
    x, wq = np.polynomial.legendre.leggauss(n_nodes)
    # φ ∈ (0, π): upper half from the right crossing (φ=0) to θ (φ=π); grade towards φ = π
    u = 0.5 * (x + 1)
    g = 1 - (1 - u) ** 2  # dφ/du ∝ 2(1−u): nodes cluster at u → 1 (φ → π)
    phi = np.pi * g
    dphi = np.pi * 2 * (1 - u) * 0.5 * wq
    zu = cen + rad * np.exp(1j * phi)
    dzu = 1j * rad * np.exp(1j * phi) * dphi
    # κ along the upper arc: start right of the spectrum (real κ left of the edge) and continue
    ke = float(_kappa_edge(ms, N))
    kz = _kappa_at(ms, N, zu, ke - 0.05 * abs(ke) - 1e-12)
    # lower arc = conjugates, traversed the other way: ∮ = 2 Re-type combination via both halves
    kap = np.concatenate([kz, np.conj(kz)])
    z = np.concatenate([zu, np.conj(zu)])
    dz = np.concatenate([dzu, -np.conj(dzu)])  # counter-clockwise: upper arc φ: 0→π, lower arc back
    s = ms.evaluate(kap)
    w = (kap / z) * dz / (2j * np.pi)  # h = 1 inside this contour, 0 on [0, θ)
    lin = np.sum(w * s["S"]).real
    quad = 0.0  # rows of the lower arc are the conjugates of the upper arc's
    for r0 in range(0, len(kz), 512):
        rows = np.arange(r0, min(len(kz), r0 + 512))
        quad += 2 * (w[rows] @ (_pair_matrix(kap, s, N, rows) @ w)).real
    bias = ms.sum_c2 - 2 * lin + quad
    var = noise / N * (np.sum(1 / z * (kap / z) * s["G"] * dz) / (2j * np.pi)).real
    return float(bias), float(var)


# ---------------------------------------------------------------- the other two models

def _aliasing(lam, c2, freq, N, H_of, noise):
    """Translation-invariant (circle) model: exact aliasing sum for one N."""
    k = np.mod(freq, N)
    uk, inv = np.unique(k, return_inverse=True)
    lam_hat = np.bincount(inv, weights=lam, minlength=len(uk))
    S = np.bincount(inv, weights=c2, minlength=len(uk))
    h = H_of(lam_hat)  # (np, n_classes)
    with np.errstate(divide="ignore", invalid="ignore"):
        g = np.where(lam_hat > 0, h / np.where(lam_hat > 0, lam_hat, 1.0), 0.0)
    a = lam[None, :] * g[:, inv]  # (np, P)
    bias = np.sum(c2 * (1 - a) ** 2 + a**2 * (S[inv] - c2), axis=1)
    var = noise / N * np.sum(a**2, axis=1)
    return bias, var, lam_hat


def _nmno(lam, c2, N, H, noise):
    bias = np.sum((1 - H) ** 2 * c2, axis=-1)
    var = noise / N * np.sum(H**2, axis=-1)
    return bias, var


# ---------------------------------------------------------------- public entry point

def risk_curve(eigenvalues, target_coeffs, n_samples, *, profile, noise=0.0, model="gaussian", frequencies=None,
               rtol=1e-9):
    r"""Predicted excess risk of a spectral algorithm against the number of training points.

    Parameters
    ----------
    eigenvalues : array (P,)
        λ_l ≥ 0, eigenvalues of the kernel operator (of K/N for an empirical spectrum; see
        :func:`estimate_spectrum`), any order.
    target_coeffs : array (P,) or (P, n_outputs)
        Coefficients c_l of the target in the kernel eigenbasis (power c_l², summed over outputs).
    n_samples : int or array of int
        Training-set sizes N.
    profile : Profile or callable
        The algorithm (:mod:`ntkit.theory.profiles`); a parameter grid gives one curve per point.
    noise : float
        Label-noise variance σ².
    model : {"gaussian", "translation_invariant", "nmno"}
        ``"gaussian"``: features x ~ N(0, diag λ) (high-dimensional, "Wishart") — KRR by the
        eigenlearning closed form, any analytic profile by the contour-integral deterministic
        equivalent, the cut-off by a contour through its threshold. ``"translation_invariant"``:
        the circle model with a randomly shifted lattice of N points — exact aliasing formula;
        ``frequencies`` (integers, one per eigenvalue) say which modes alias (l ≡ l' mod N).
        ``"nmno"``: the naive model of noisy observations, ``Σ (1−h(λ))² c² + (σ²/N) h(λ)²``,
        a surrogate valid for noisy power-law problems at large N (it ignores how sampling
        mixes modes, so it misses aliasing and the noiseless "overlearning" effects).
    rtol : float
        Target relative accuracy of the contour quadrature (nodes double until reached).

    Returns
    -------
    RiskCurve
        ``n_samples``, ``risk``, ``bias``, ``variance`` (shape ``profile.shape + (len(N),)``).

    Examples
    --------
    >>> import numpy as np
    >>> from ntkit.theory import risk_curve, power_law, profiles
    >>> lam, c = power_law(2000, nu=1.5, kappa=1.0)
    >>> rc = risk_curve(lam, c, [10, 100, 1000], profile=profiles.krr(1e-4), noise=0.01)
    >>> bool(np.all(np.diff(rc.risk) < 0))
    True
    """
    lam, c2 = _check_spectrum(eigenvalues, target_coeffs)
    N = _check_n(n_samples)
    prof = as_profile(profile)
    try:
        noise = check_scalar(noise, "noise", "risk_curve", low=0.0)
    except InvalidParameterError:
        raise InvalidParameterError(
            f"noise is the label-noise variance and must be finite and >= 0; got {noise!r}.") from None
    if model not in _MODELS:
        raise InvalidParameterError(f"model must be one of {_MODELS}; got {model!r}.")
    shape = prof.shape + (len(N),)
    bias = np.empty(shape)
    var = np.empty(shape)
    flat = prof.flat()
    fb = bias.reshape(-1, len(N))
    fv = var.reshape(-1, len(N))

    if model == "translation_invariant":
        if frequencies is None:
            raise InvalidParameterError("model='translation_invariant' needs frequencies: the integer frequency of "
                                        "each eigenvalue (e.g. l for the mode exp(i l x)).")
        freq = np.asarray(frequencies)
        if freq.shape != lam.shape or freq.dtype.kind not in "iu":
            raise InvalidParameterError(f"frequencies must be integers with the shape of eigenvalues {lam.shape}; got "
                                        f"shape {freq.shape}, dtype {freq.dtype}.")
        for j, n in enumerate(N):
            b, v, lam_hat = _aliasing(lam, c2, freq, n, lambda x: prof(x).reshape(-1, len(x)), noise)
            _check_gd(prof, lam_hat.max(), f"the aliased spectrum at N = {n}")
            fb[:, j], fv[:, j] = b, v
        return RiskCurve(N, bias + var, bias, var, prof, model, noise)
    if frequencies is not None:
        raise InvalidParameterError("frequencies are only used by model='translation_invariant'.")

    if model == "nmno":
        _check_gd(prof, lam.max(), "the largest eigenvalue")
        H = prof(lam).reshape(-1, len(lam))
        for j, n in enumerate(N):
            b, v = _nmno(lam, c2, n, H, noise)
            fb[:, j], fv[:, j] = b, v
        return RiskCurve(N, bias + var, bias, var, prof, model, noise)

    ms = ModeSums(lam, c2)
    if prof.krr_ridge is not None:
        b, v = _eigenlearning(ms, N[None, :], prof.krr_ridge.reshape(-1, 1), noise)
        fb[...], fv[...] = b, v
        return RiskCurve(N, bias + var, bias, var, prof, model, noise)
    if prof.lr is not None:
        edges = _upper_edge(ms, N)
        j = int(np.argmax(edges))
        _check_gd(prof, float(edges[j]), f"the upper edge of the empirical spectrum at N = {N[j]}")
    if prof.cutoff is not None:
        for i, p in enumerate(flat):
            for j, n in enumerate(N):
                fb[i, j], fv[i, j] = _cutoff_risk(ms, n, float(p.cutoff), noise)
        return RiskCurve(N, bias + var, bias, var, prof, model, noise)
    fb[...], fv[...] = _contour_risk(ms, N, flat, noise, rtol=rtol)
    return RiskCurve(N, bias + var, bias, var, prof, model, noise)


def _check_gd(prof, lam_max, what):
    lr = prof.lr
    if lr is None:
        return
    if np.any(lr * lam_max >= 2):
        raise InvalidParameterError(
            f"gradient descent with lr = {float(np.max(lr)):.4g} diverges: lr · λ_max must be < 2, and λ_max is "
            f"{lam_max:.4g} ({what}). Use lr < {2 / lam_max:.4g}.")
