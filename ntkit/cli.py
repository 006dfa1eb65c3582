"""The ``ntkit`` command line: ``ntkit tour``, ``ntkit explain``, ``ntkit bench``, ``ntkit risk``, ``ntkit info``."""

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
    p_exp = sub.add_parser("explain", help="train a network on bundled digits and explain it with an NTK surrogate",
                           description="Trains an MLP or CNN on scikit-learn's digits in JAX, fits an NTKSurrogate "
                           "(ntkit.explain) and writes OUT/fidelity.png, OUT/attributions.png and OUT/explain.json "
                           "(fidelity: Kendall tau, Pearson, R2, label agreement; top supporting/opposing training "
                           "examples per query).")
    p_exp.add_argument("--model", default="mlp", choices=["mlp", "cnn"], help="network (default: mlp, 64-128-10)")
    p_exp.add_argument("--width", type=int, default=128, help="MLP hidden width (default 128)")
    p_exp.add_argument("--epochs", type=int, default=60, help="training epochs (default 60)")
    p_exp.add_argument("--kind", default="trace", choices=["trace", "sum_logits", "full", "projected"],
                       help="eNTK kind (default: trace)")
    p_exp.add_argument("--n-projections", type=int, default=256, help="sketch size for --kind projected")
    p_exp.add_argument("--machine", default="logistic", choices=["logistic", "ridge", "svm"])
    p_exp.add_argument("--target", default="labels", choices=["labels", "network"])
    p_exp.add_argument("--top-k", type=int, default=4, help="training examples shown per query (default 4)")
    p_exp.add_argument("--queries", type=int, default=4, help="test images to attribute (default 4)")
    p_exp.add_argument("--n-train", type=int, default=None, help="use a subset with about this many training images")
    p_exp.add_argument("--seed", type=int, default=0)
    p_exp.add_argument("--quiet", action="store_true", help="no progress bars")
    p_exp.add_argument("--out", default="explain", help="output folder (default: explain)")
    p_bench = sub.add_parser("bench", help="run the benchmarks of a source checkout and write RESULTS.md",
                             description="Runs benchmarks/bench_<section>.py of a source checkout (each compares "
                             "ntkit with its peer on the same data in one run) and writes OUT/RESULTS.md. "
                             "`make bench` runs them all into benchmarks/RESULTS.md.")
    p_bench.add_argument("--sections", default=None,
                         help="comma list of gram, entk, solvers, explain, theory, features, grf, online, distributed, "
                              "reliability (default: all)")
    p_bench.add_argument("--quick", action="store_true", help="small sizes (minutes, not tens of minutes)")
    p_bench.add_argument("--quiet", action="store_true", help="no progress lines")
    p_bench.add_argument("--out", default="bench", help="output folder (default: bench)")
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
    if args.command == "explain":
        from ._explain_cli import run_explain

        print(run_explain(args))
        return 0
    if args.command == "bench":
        from ._bench_cli import run_bench

        print(run_bench(args))
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
