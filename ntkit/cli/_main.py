"""The ``ntkit`` command line: the parser and the dispatch to the jobs (one module per job).

``ntkit tour`` (:mod:`ntkit.cli._tour`), ``ntkit explain`` (:mod:`ntkit.cli._explain`), ``ntkit bench``
(:mod:`ntkit.cli._bench`), ``ntkit risk`` (:mod:`ntkit.cli._risk`) and ``ntkit info``. Each job is imported
only when it runs. The progress rule is in :mod:`ntkit.cli._progress`.
"""

from __future__ import annotations

import argparse
import sys

from ._progress import PROGRESS_RULE, summarised_warnings


def _add_quiet(p):
    p.add_argument("--quiet", action="store_true",
                   help="no progress on stderr (no section headings, no bars); warnings and results are still printed")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ntkit", description="Kernel methods and neural tangent kernels.",
                                     epilog=PROGRESS_RULE)
    sub = parser.add_subparsers(dest="command", required=True)
    p_tour = sub.add_parser("tour", help="run the tour on bundled data and write a report",
                            description="Runs every part of ntkit on scikit-learn's bundled digits (seven sections, "
                            "under a minute on two cores) and writes OUT/report.html (self-contained, "
                            "figures embedded, with the date, seed, versions, git commit and run time) and "
                            "OUT/summary.json.", epilog=PROGRESS_RULE)
    p_tour.add_argument("--out", default="tour", help="output folder (default: tour)")
    p_tour.add_argument("--quick", action="store_true",
                        help="400 of the 1797 digits and smaller grids: a smoke test in about 15 s, not a result")
    p_tour.add_argument("--seed", type=int, default=0, help="seed of every random choice in the tour (default 0)")
    _add_quiet(p_tour)
    sub.add_parser("info", help="show which backends are built")
    p_exp = sub.add_parser("explain", help="train a network on bundled digits and explain it with an NTK surrogate",
                           description="Trains an MLP or CNN on scikit-learn's digits in JAX, fits an NTKSurrogate "
                           "(ntkit.explain) and writes OUT/fidelity.png, OUT/attributions.png and OUT/explain.json "
                           "(fidelity: Kendall tau, Pearson, R2, label agreement; top supporting/opposing training "
                           "examples per query).", epilog=PROGRESS_RULE)
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
    _add_quiet(p_exp)
    p_exp.add_argument("--out", default="explain", help="output folder (default: explain)")
    p_bench = sub.add_parser("bench", help="run the benchmarks of a source checkout and write RESULTS.md",
                             description="Runs benchmarks/bench_<section>.py of a source checkout (each compares "
                             "ntkit with its peer on the same data in one run) and writes OUT/RESULTS.md. "
                             "`make bench` runs them all into benchmarks/RESULTS.md.", epilog=PROGRESS_RULE)
    p_bench.add_argument("--sections", default=None,
                         help="comma list of gram, entk, solvers, explain, theory, features, grf, online, distributed, "
                              "reliability (default: all)")
    p_bench.add_argument("--quick", action="store_true", help="small sizes (minutes, not tens of minutes)")
    _add_quiet(p_bench)
    p_bench.add_argument("--out", default="bench", help="output folder (default: bench)")
    p_risk = sub.add_parser("risk", help="predicted learning curves of spectral algorithms on a power-law problem",
                            description="Risk curves (ntkit.theory.risk_curve) for lambda_l = l^-nu, c_l^2 = "
                            "l^-(kappa+1): each profile at its optimal regularisation (the best point of a grid), "
                            "written to OUT/risk.csv (that point in OUT/risk_params.csv) and OUT/risk.png. The "
                            "defaults take seconds (20000 modes, 12 sizes up to N = 2000, quadrature rtol 1e-6); "
                            "--full is the publication run (100000 modes, 30 sizes up to N = 10000, rtol 1e-9, finer "
                            "grids: minutes). An explicit option "
                            "overrides either.", epilog=PROGRESS_RULE)
    p_risk.add_argument("--nu", type=float, default=1.5, help="spectral decay nu (default 1.5)")
    p_risk.add_argument("--kappa", type=float, default=1.0, help="target decay kappa (default 1.0)")
    p_risk.add_argument("--noise", type=float, default=0.1, help="label-noise variance (default 0.1)")
    p_risk.add_argument("--full", action="store_true",
                        help="the full-size run: --modes 100000 --n-max 10000 --points 30 --rtol 1e-9 and finer "
                             "regularisation grids (minutes instead of seconds)")
    p_risk.add_argument("--modes", type=int, default=None, help="number of modes (default 20000; 100000 with --full)")
    p_risk.add_argument("--n-min", type=int, default=10, help="smallest N (default 10)")
    p_risk.add_argument("--n-max", type=int, default=None, help="largest N (default 2000; 10000 with --full)")
    p_risk.add_argument("--points", type=int, default=None,
                        help="N values, log-spaced (default 12; 30 with --full)")
    p_risk.add_argument("--rtol", type=float, default=None,
                        help="relative accuracy of the contour quadrature (default 1e-6; 1e-9 with --full)")
    p_risk.add_argument("--model", default="gaussian", choices=["gaussian", "translation_invariant", "nmno"])
    p_risk.add_argument("--profiles", default="krr,gradient_flow",
                        help="comma list of krr, gradient_flow, iterated_tikhonov2, spectral_cutoff (default: "
                             "krr,gradient_flow; spectral_cutoff under the gaussian model costs tens of seconds per "
                             "grid point)")
    _add_quiet(p_risk)
    p_risk.add_argument("--out", default="risk", help="output folder (default: risk)")
    return parser


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "info":
        from .. import show_backends

        show_backends()
        return 0
    prog = f"ntkit {args.command}"
    if args.command == "risk":
        from ._risk import RISK_FIX, run_risk

        with summarised_warnings(prog, fix=RISK_FIX):
            text = run_risk(args)
        print(text)
        return 0
    if args.command == "explain":
        from ._explain import run_explain

        with summarised_warnings(prog):
            text = run_explain(args)
        print(text)
        return 0
    if args.command == "bench":
        from ._bench import run_bench

        with summarised_warnings(prog):
            text = run_bench(args)
        print(text)
        return 0
    from ._tour import run_tour

    with summarised_warnings(prog):
        summary = run_tour(args.out, quick=args.quick, seed=args.seed, verbose=not args.quiet)
    best = max(summary["kernels"].items(), key=lambda kv: kv[1]["test_accuracy"])
    print(f"wrote {args.out}/report.html and {args.out}/summary.json in {summary['run']['seconds']:.0f} s; best "
          f"kernel: {best[0]} (test accuracy {best[1]['test_accuracy']:.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
