"""The numerics behind :func:`ntkit.theory.risk_curve` in the Gaussian-design model: the effective
regularisation κ (real roots of the self-consistent equation), the eigenlearning risk, the contour
integrals that give the risk of spectral filters, and the non-analytic cut-off filter.
"""

from __future__ import annotations

import warnings

import numpy as np



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
