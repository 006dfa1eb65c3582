"""``ntkit risk``: optimal-regularisation learning curves for a power-law problem."""

from __future__ import annotations

import csv
import os

import numpy as np


def _grid(name):
    from .theory import profiles

    if name == "krr":
        return profiles.krr(np.logspace(-12, 0, 60))
    if name == "gradient_flow":
        return profiles.gradient_flow(np.logspace(0, 5, 11))
    if name == "iterated_tikhonov2":
        return profiles.iterated_tikhonov(np.logspace(-8, 0, 17), 2)
    if name == "spectral_cutoff":
        return profiles.spectral_cutoff(np.logspace(-8, 0, 17))
    raise SystemExit(f"ntkit risk: unknown profile {name!r}; choose from krr, gradient_flow, iterated_tikhonov2, "
                     "spectral_cutoff")


def run_risk(args):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from tqdm.auto import tqdm

    from .theory import circle_power_law, power_law, risk_curve

    if args.model == "translation_invariant":
        lam, c, freq = circle_power_law(args.modes // 2, args.nu, args.kappa)
    else:
        (lam, c), freq = power_law(args.modes, args.nu, args.kappa), None
    N = np.unique(np.logspace(np.log10(args.n_min), np.log10(args.n_max), args.points).astype(np.int64))
    os.makedirs(args.out, exist_ok=True)
    fig, ax = plt.subplots(figsize=(5.5, 4))
    rows = {"n_samples": N}
    for name in tqdm(args.profiles.split(","), desc="ntkit risk"):
        prof = _grid(name)
        rc = risk_curve(lam, c, N, profile=prof, noise=args.noise, model=args.model, frequencies=freq)
        rc.plot(ax=ax, parts=False, label=name)
        rows[name] = rc.optimal()[0]
    ax.set_title(f"nu={args.nu}, kappa={args.kappa}, noise={args.noise} ({args.model})", fontsize=9)
    fig.tight_layout()
    fig.savefig(os.path.join(args.out, "risk.png"), dpi=120)
    with open(os.path.join(args.out, "risk.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(list(rows))
        for i in range(len(N)):
            w.writerow([rows[k][i] for k in rows])
    return f"wrote {args.out}/risk.csv and {args.out}/risk.png ({len(N)} sizes, profiles {args.profiles})"
