r"""Mode sums ``Σ_l w_l (λ_l + κ)^{-p}`` over a long spectrum, evaluated at many points κ.

Every quantity of the risk formulas is such a sum (a Stieltjes transform of the spectrum),
with weights ``c_l²`` (target power), ``λ_l`` or ``λ_l²`` and p = 1 or 2. A power-law
spectrum of 10⁵ modes has most of its modes in a few log-spaced bands; inside a band of
centre λ_c and radius r the sum is an exact Taylor series in ``δ = λ_l − λ_c``:

    Σ_l w_l (λ_c + κ + δ_l)^{-p} = Σ_j C_p(j) m_j (λ_c + κ)^{-p-j},   m_j = Σ_l w_l δ_l^j,

with ``C_1(j) = (−1)^j`` and ``C_2(j) = (−1)^j (j + 1)``. The remainder after J + 1 terms is
below ``(J + 2) ρ^{J+1} / (1 − ρ)²`` times the band's leading term, ρ = r / |λ_c + κ|. A band
is summed through its moments only when ρ ≤ ``rho_max`` for every evaluation point (and it
holds more modes than moments); otherwise its modes are summed one by one. With the
defaults (J = 18, ρ ≤ 0.12) the truncation is below 1e-15 relative.
The series is evaluated as ``t^p Σ_j C_p(j) m̃_j u^j`` with ``t = 1/(λ_c + κ)``, ``u = r·t`` and
the scaled moments ``m̃_j = m_j / r^j`` (bounded by Σ w), so no power over- or underflows.
"""

from __future__ import annotations

import numpy as np

from .._blas import matmul

ORDER = 18
RHO_MAX = 0.12
REL_WIDTH = 0.05  # half-width of a band relative to its centre
_CHUNK = 2_000_000  # evaluation points x modes per block


class ModeSums:
    """Compressed evaluation of the spectrum's Stieltjes sums (see the module docstring)."""

    def __init__(self, lam, c2, *, order=ORDER, rel_width=REL_WIDTH):
        lam = np.asarray(lam, dtype=np.float64)
        c2 = np.asarray(c2, dtype=np.float64)
        order_idx = np.argsort(-lam, kind="stable")
        self.lam = lam[order_idx]
        self.c2 = c2[order_idx]
        self.order = int(order)
        self.n_modes = len(lam)
        pos = self.lam > 0
        self.n_pos = int(pos.sum())
        self.lam1 = float(self.lam[0]) if self.n_modes else 0.0
        self.sum_lam = float(self.lam.sum())
        self.sum_lam2 = float(np.sum(self.lam**2))
        self.sum_c2 = float(self.c2.sum())
        self.c2_zero = float(self.c2[~pos].sum())  # target power in modes the kernel cannot see
        # bands in log(λ) over the positive eigenvalues (contiguous in the sorted order)
        lp = self.lam[pos]
        if len(lp):
            step = np.log1p(2 * rel_width)
            band = np.floor(np.log(lp[0] / lp) / step).astype(np.int64)
            cuts = np.flatnonzero(np.diff(band)) + 1
            starts = np.concatenate([[0], cuts])
            ends = np.concatenate([cuts, [len(lp)]])
        else:
            starts = ends = np.zeros(0, np.int64)
        self.starts, self.ends = starts, ends
        hi, lo = lp[starts] if len(lp) else np.zeros(0), lp[ends - 1] if len(lp) else np.zeros(0)
        self.center = 0.5 * (hi + lo)
        self.radius = 0.5 * (hi - lo)
        self.count = ends - starts
        J = self.order
        nb = len(starts)
        # scaled moments m̃_j = m_j / r^j = Σ_l w_l (δ_l / r)^j of the three weight families per band,
        # (3, nb, J+1); 0 for j ≥ 1 when r = 0
        self.scaled = np.zeros((3, nb, J + 1))
        if nb:
            bidx = np.repeat(np.arange(nb), self.count)
            d = lp - self.center[bidx]
            w = np.stack([self.c2[pos], lp, lp * lp])
            rb = self.radius[bidx]
            e = np.divide(d, rb, out=np.zeros_like(d), where=rb > 0)
            pw = np.ones_like(d)
            for j in range(J + 1):
                for f in range(3):
                    self.scaled[f, :, j] = np.bincount(bidx, weights=w[f] * pw, minlength=nb)
                pw = pw * e

    # which bands may be compressed for these evaluation points
    def _plan(self, kap):
        if len(self.starts) == 0:
            return np.zeros(0, bool)
        dist = np.full(len(self.center), np.inf)
        kap = np.asarray(kap).ravel()
        for i in range(0, len(kap), 4096):
            dist = np.minimum(dist, np.abs(self.center[:, None] + kap[None, i:i + 4096]).min(axis=1))
        with np.errstate(divide="ignore", invalid="ignore"):
            rho = np.where(self.radius == 0, 0.0, self.radius / dist)
        return (rho <= RHO_MAX) & (self.count > self.order + 1)

    def evaluate(self, kap, which=("S", "G", "S2", "F2", "G2")):
        """The sums at the points ``kap`` (any shape, real or complex) as a dict of arrays.

        ``S = Σ c²/(λ+κ)``, ``G = Σ λ/(λ+κ)``, ``S2 = Σ c²/(λ+κ)²``, ``F2 = Σ λ²/(λ+κ)²``,
        ``G2 = Σ λ/(λ+κ)²``; modes with λ = 0 contribute ``c²/κ`` and ``c²/κ²`` to S and S2.
        """
        kap = np.asarray(kap)
        shape = kap.shape
        k = kap.ravel()
        dt = np.result_type(k.dtype, np.float64)
        spec = {"S": (0, 1), "G": (1, 1), "S2": (0, 2), "F2": (2, 2), "G2": (1, 2)}
        out = {name: np.zeros(len(k), dt) for name in which}
        comp = self._plan(k)
        # exact part: the modes of the bands not compressed
        pos_lam = self.lam[: self.n_pos]
        pos_c2 = self.c2[: self.n_pos]
        if len(comp):
            keep = np.repeat(~comp, self.count)
            le, ce = pos_lam[keep], pos_c2[keep]
        else:
            le, ce = pos_lam, pos_c2
        if len(le):
            weights = {0: ce, 1: le, 2: le * le}
            step = max(1, _CHUNK // max(len(le), 1))
            for i in range(0, len(k), step):
                inv = 1.0 / (le[None, :] + k[i:i + step, None])
                inv2 = inv * inv if any(spec[n][1] == 2 for n in which) else None
                for name in which:
                    f, p = spec[name]
                    out[name][i:i + step] = matmul(inv if p == 1 else inv2, weights[f])
        # compressed bands: Σ_j C_p(j) m_j t^{j+p} = t^p Σ_j C_p(j) m̃_j u^j with u = r·t (|u| ≤ ρ) and the
        # scaled moments m̃_j = m_j / r^j, so nothing overflows; the inner sums of all requested
        # names are one batched product over bands, (nb, K, J+1) @ (nb, J+1, names)
        if comp.any():
            cen, rad = self.center[comp], self.radius[comp]
            J1 = self.order + 1
            j = np.arange(J1)
            W = np.stack([(-1.0) ** j * (1.0 if spec[n][1] == 1 else j + 1.0) * self.scaled[spec[n][0]][comp]
                          for n in which], axis=2)  # (nb, J+1, names)
            pw = np.array([spec[n][1] for n in which])
            step = max(1, _CHUNK // (len(cen) * J1))
            for i in range(0, len(k), step):
                tb = 1.0 / (cen[:, None] + k[None, i:i + step])  # (nb, K)
                u = rad[:, None] * tb
                U = np.empty(tb.shape + (J1,), dt)
                U[..., 0] = 1.0
                for jj in range(1, J1):
                    U[..., jj] = U[..., jj - 1] * u
                inner = U @ W  # (nb, K, names)
                for c, n in enumerate(which):
                    out[n][i:i + step] += np.sum(inner[:, :, c] * tb ** pw[c], axis=0)
        if self.c2_zero:
            if "S" in out:
                out["S"] += self.c2_zero / k
            if "S2" in out:
                out["S2"] += self.c2_zero / (k * k)
        return {name: v.reshape(shape) for name, v in out.items()}
