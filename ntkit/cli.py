"""The ``ntkit`` command line: ``ntkit tour``, ``ntkit risk``, ``ntkit info``."""

from __future__ import annotations

import argparse
import logging
import sys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="ntkit", description="Kernel methods and neural tangent kernels.")
    sub = parser.add_subparsers(dest="command", required=True)
    p_tour = sub.add_parser("tour", help="run the tour on bundled data and write a report")
    p_tour.add_argument("--out", default="tour", help="output folder (default: tour)")
    p_tour.add_argument("--quick", action="store_true", help="a small subset, for smoke tests")
    p_tour.add_argument("--quiet", action="store_true", help="no progress bars")
    sub.add_parser("info", help="show which backends are built")
    p_risk = sub.add_parser("risk", help="predicted learning curves of spectral algorithms on a power-law problem",
                            description="Risk curves (ntkit.theory.risk_curve) for lambda_l = l^-nu, c_l^2 = "
                            "l^-(kappa+1): each profile at its optimal regularisation (a grid), written to "
                            "OUT/risk.csv and OUT/risk.png.")
    p_risk.add_argument("--nu", type=float, default=1.5, help="spectral decay nu (default 1.5)")
    p_risk.add_argument("--kappa", type=float, default=1.0, help="target decay kappa (default 1.0)")
    p_risk.add_argument("--noise", type=float, default=0.1, help="label-noise variance (default 0.1)")
    p_risk.add_argument("--modes", type=int, default=100_000, help="number of modes (default 100000)")
    p_risk.add_argument("--n-min", type=int, default=10)
    p_risk.add_argument("--n-max", type=int, default=10_000)
    p_risk.add_argument("--points", type=int, default=30, help="N values, log-spaced (default 30)")
    p_risk.add_argument("--model", default="gaussian", choices=["gaussian", "translation_invariant", "nmno"])
    p_risk.add_argument("--profiles", default="krr,gradient_flow",
                        help="comma list of krr, gradient_flow, iterated_tikhonov2, spectral_cutoff")
    p_risk.add_argument("--out", default="risk", help="output folder (default: risk)")
    args = parser.parse_args(argv)
    if args.command == "risk":
        from ._risk_cli import run_risk

        print(run_risk(args))
        return 0
    if args.command == "info":
        from . import show_backends

        show_backends()
        return 0
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s")
    from ._tour import run_tour

    summary = run_tour(args.out, quick=args.quick, verbose=not args.quiet)
    best = max(summary["kernels"].items(), key=lambda kv: kv[1]["test_accuracy"])
    print(f"wrote {args.out}/report.html and {args.out}/summary.json; best kernel: {best[0]} "
          f"(test accuracy {best[1]['test_accuracy']:.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
