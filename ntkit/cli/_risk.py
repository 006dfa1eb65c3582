"""``ntkit risk``: optimal-regularisation learning curves for a power-law problem.

The defaults take seconds; ``--full`` restores the publication sizes (minutes). Each profile is
evaluated on a grid of its regularisation parameter and the curve is the grid's lower envelope, so
an optimum on the grid's edge is reported (it may lie beyond the grid).
"""

from __future__ import annotations

import csv
import os
import warnings

import numpy as np

#: Advice printed under numpy's floating-point warnings (ntkit's own warnings carry theirs).
RISK_FIX = ("the affected grid points give NaN and the optimum skips them; they are ill-posed points such as "
            "ridge 0 with N close to the number of modes. Use --modes well above --n-max.")

#: (default, --full) sizes.
_SIZES = {"modes": (20_000, 100_000), "n_max": (2_000, 10_000), "points": (12, 30), "rtol": (1e-6, 1e-9)}

PROFILES = ("krr", "gradient_flow", "iterated_tikhonov2", "spectral_cutoff")


def _grid(name, full):
    """(profile maker, grid values, parameter name, whether the grid's lower end is a natural limit)."""
    from ..theory import profiles

    if name == "krr":  # ridge 0 (interpolation) is the natural lower end
        g = np.r_[0.0, np.logspace(-12, 0, 60)] if full else np.r_[0.0, np.logspace(-10, 0, 31)]
        return profiles.krr, g, "ridge", True
    if name == "gradient_flow":  # the contour's cost grows with time·λ₁: times past 1e4 take minutes
        g = np.logspace(0, 4, 9) if full else np.logspace(0, 3.5, 8)
        return profiles.gradient_flow, g, "time", False
    if name == "iterated_tikhonov2":
        g = np.logspace(-6, 0, 25) if full else np.logspace(-5, 0, 11)
        return (lambda r: profiles.iterated_tikhonov(r, 2)), g, "ridge", False
    if name == "spectral_cutoff":  # under the gaussian model each threshold costs tens of seconds
        g = np.logspace(-6, 0, 13) if full else np.logspace(-5, 0, 6)
        return profiles.spectral_cutoff, g, "threshold", False
    raise SystemExit(f"ntkit risk: unknown profile {name!r}; choose from {', '.join(PROFILES)}.")


def _size(args, name):
    v = getattr(args, name, None)
    return _SIZES[name][1 if getattr(args, "full", False) else 0] if v is None else v


def _edge_warning(name, param, grid, index, N, natural_low):
    """Warn (once per profile) when the optimum sits on an open end of the grid."""
    hi = index == len(grid) - 1
    lo = (index == 0) & ~natural_low
    for mask, end in ((hi, "largest"), (lo, "smallest")):
        if mask.any():
            at = N[mask]
            ns = ", ".join(str(int(n)) for n in at[:4]) + (", ..." if len(at) > 4 else "")
            value = grid[-1 if end == "largest" else 0]
            warnings.warn(f"{name}: the best {param} is the grid's {end} value ({value:g}) "
                          f"at N = {ns}; the optimum may lie beyond the grid, so the curve there is an upper bound. "
                          "--full uses wider grids.", RuntimeWarning, stacklevel=2)


def run_risk(args):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ._progress import Progress
    from ..theory import circle_power_law, power_law, risk_curve

    modes, n_max, points, rtol = (_size(args, k) for k in ("modes", "n_max", "points", "rtol"))
    for name, v, low in (("--modes", modes, 2), ("--n-max", n_max, args.n_min), ("--points", points, 1)):
        if v < low:
            raise SystemExit(f"ntkit risk: {name} must be at least {low}; got {v}.")
    names = [s.strip() for s in args.profiles.split(",") if s.strip()]
    grids = {name: _grid(name, args.full) for name in names}  # unknown names fail before any work
    progress = Progress("ntkit risk", enabled=not getattr(args, "quiet", False), sections=len(names) + 1)
    progress.section(f"spectrum: {modes} modes, nu = {args.nu}, kappa = {args.kappa} ({args.model} model)")
    if args.model == "translation_invariant":
        lam, c, freq = circle_power_law(modes // 2, args.nu, args.kappa)
    else:
        (lam, c), freq = power_law(modes, args.nu, args.kappa), None
    N = np.unique(np.logspace(np.log10(args.n_min), np.log10(n_max), points).astype(np.int64))
    os.makedirs(args.out, exist_ok=True)
    fig, ax = plt.subplots(figsize=(5.5, 4))
    rows = {"n_samples": N}
    params = {"n_samples": N}
    styles = [dict(marker="o", ls="-", ms=4), dict(marker="s", ls="--", ms=6, mfc="none"),
              dict(marker="^", ls=":", ms=5), dict(marker="D", ls="-.", ms=6, mfc="none")]
    for j, name in enumerate(names):
        make, grid, param, natural_low = grids[name]
        progress.section(f"{name}: {len(grid)} values of {param} x {len(N)} sizes N = {N[0]}..{N[-1]}")
        if name == "krr":  # closed form: the whole grid in one call, well under a second
            risk = risk_curve(lam, c, N, profile=make(grid), noise=args.noise, model=args.model,
                              frequencies=freq, rtol=rtol).risk.reshape(len(grid), len(N))
        else:  # one grid point at a time, for the progress bar (the cost grows along the grid)
            risk = np.stack([risk_curve(lam, c, N, profile=make(g), noise=args.noise, model=args.model,
                                        frequencies=freq, rtol=rtol).risk.reshape(len(N))
                             for g in progress.bar(grid, desc=name)])
        best, index = _lower_envelope(name, risk, N)
        _edge_warning(name, param, grid, index, N, natural_low)
        ax.loglog(N, best, label=f"{name} (best {param} on the grid)", **styles[j % len(styles)])
        rows[name] = best
        params[f"{name}_{param}"] = grid[index]
        progress.note(f"risk at N = {N[-1]}: {best[-1]:.4g} ({param} {grid[index[-1]]:g})")
    ax.set_xlabel("training points N")
    ax.set_ylabel("excess risk")
    ax.legend(fontsize=8)
    ax.set_title(f"nu={args.nu}, kappa={args.kappa}, noise={args.noise} ({args.model})", fontsize=9)
    fig.tight_layout()
    fig.savefig(os.path.join(args.out, "risk.png"), dpi=120)
    plt.close(fig)
    for fname, table in (("risk.csv", rows), ("risk_params.csv", params)):
        with open(os.path.join(args.out, fname), "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(list(table))
            for i in range(len(N)):
                w.writerow([table[k][i] for k in table])
    progress.done(f"done ({'full' if args.full else 'default'} sizes)")
    return (f"wrote {args.out}/risk.csv (risk at the best grid point), risk_params.csv (that point) and risk.png "
            f"({len(N)} sizes N = {N[0]}..{N[-1]}, {modes} modes, profiles {', '.join(names)})")


def _lower_envelope(name, risk, N):
    """Per N: the smallest finite risk over the grid and its index; warns when a NaN point is next to it."""
    finite = np.where(np.isfinite(risk), risk, np.inf)
    index = np.argmin(finite, axis=0)
    best = finite[index, np.arange(risk.shape[1])]
    nan = ~np.isfinite(risk)
    suspect = [int(N[j]) for j, i in enumerate(index)
               if nan[max(i - 1, 0):i + 2, j].any() or np.isinf(best[j])]
    if suspect:
        more = " ..." if len(suspect) > 4 else ""
        warnings.warn(f"{name}: at N = {suspect[:4]}{more} the best grid point is next to "
                      "a point whose quadrature did not converge (NaN), so the true optimum may be that point. "
                      "Narrow the grid or lower --n-max.", RuntimeWarning, stacklevel=2)
    return np.where(np.isinf(best), np.nan, best), index
