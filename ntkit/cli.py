"""The ``ntkit`` command line: ``ntkit tour``, ``ntkit explain``, ``ntkit bench``, ``ntkit risk``, ``ntkit info``.

Progress follows one rule (:data:`PROGRESS_RULE`, repeated in every job's ``--help``): where a person
is watching — the command-line jobs — long work shows progress on stderr by default: a one-line
heading per section with the time elapsed since the job started, and tqdm bars inside sections that
loop; ``--quiet`` turns both off. Library functions stay quiet unless asked (``verbose=False`` by
default, progress through :mod:`logging`), so tests and scripts that call them print nothing.
Warnings raised during a job (numpy's floating-point ``RuntimeWarning``, ntkit's own) are collected
and printed once each at the end, in words, with a count and the fix — never as a source line.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import sys
import time
import warnings

#: The progress rule, as printed at the end of every job's ``--help``.
PROGRESS_RULE = (
    "Progress: by default a job prints, on stderr, a one-line heading per section with the time elapsed "
    "since it started, and progress bars (tqdm) inside long sections; --quiet turns both off. Results go to "
    "stdout and to the --out folder either way. Warnings are collected and printed once each at the end, in "
    "words, with the fix. Library calls (ntkit.* in Python) are quiet unless given verbose=True.")


def _clock(seconds: float) -> str:
    m, s = divmod(seconds, 60.0)
    return f"{int(m)}:{s:04.1f}"


class Progress:
    """Section headings and progress bars of a command-line job, on stderr (see :data:`PROGRESS_RULE`).

    ``Progress("ntkit tour", enabled=True, sections=7)``; ``section(title)`` prints
    ``ntkit tour [0:12.3] 2/7 title``; ``bar(iterable, desc=...)`` is a tqdm bar that disappears
    when done; ``note(text)`` prints an indented line under the current heading. With
    ``enabled=False`` nothing is printed (the bars are disabled, not just hidden).
    """

    def __init__(self, prog: str, *, enabled: bool = True, sections: int | None = None):
        self.prog = prog
        self.enabled = bool(enabled)
        self.sections = sections
        self.count = 0
        self.t0 = time.perf_counter()

    def elapsed(self) -> float:
        """Seconds since the job started."""
        return time.perf_counter() - self.t0

    def write(self, line: str) -> None:
        """Print ``line`` on stderr (between bars, not through them) when enabled."""
        if self.enabled:
            from tqdm.auto import tqdm

            tqdm.write(line, file=sys.stderr)
            sys.stderr.flush()

    def section(self, title: str) -> None:
        """The one-line heading of the next section, with the elapsed time."""
        self.count += 1
        of = f"{self.count}/{self.sections} " if self.sections else ""
        self.write(f"{self.prog} [{_clock(self.elapsed())}] {of}{title}")

    def note(self, text: str) -> None:
        """An indented result line under the current heading."""
        self.write(f"    {text}")

    def bar(self, iterable=None, *, total=None, desc=None):
        """A tqdm bar on stderr that is removed when it finishes; a silent pass-through when disabled."""
        from tqdm.auto import tqdm

        return tqdm(iterable, total=total, desc=desc, disable=not self.enabled, leave=False, file=sys.stderr,
                    dynamic_ncols=True, mininterval=0.5)

    def done(self, text: str) -> None:
        """The closing line, with the total time."""
        self.write(f"{self.prog} [{_clock(self.elapsed())}] {text}")


_FLOAT_RE = re.compile(r"(overflow|underflow|invalid value|divide by zero) encountered in ([\w .]+)")


def _describe(category: type, message: str, filename: str) -> str:
    """A warning in words: numpy's terse floating-point messages get a sentence saying what they mean."""
    m = _FLOAT_RE.search(message)
    if m is None:
        return message
    where = filename.replace("\\", "/")
    if "/ntkit/" in where:
        where = "ntkit/" + where.rsplit("/ntkit/", 1)[1]
    else:
        where = where.rsplit("/", 1)[-1]
    what = {"overflow": "a value too large for float64 (it became inf)",
            "underflow": "a value too small for float64 (it became 0)",
            "invalid value": "an undefined value (it became NaN)",
            "divide by zero": "a division by zero (it became inf)"}[m.group(1)]
    return f"numpy computed {what} in {m.group(2).strip()} ({where})"


@contextlib.contextmanager
def summarised_warnings(prog: str, *, fix: str | None = None, stream=None):
    """Collect the warnings raised inside the block; at its end print each distinct one once, in words.

    Warnings that differ only in their numbers are one kind (printed once, with a count). ``fix`` is
    the job's advice for numpy's floating-point warnings, which do not carry their own (ntkit's
    warnings say what to do in the message). Nothing is printed when nothing was raised.
    """
    stream = sys.stderr if stream is None else stream
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        warnings.simplefilter("always", UserWarning)  # ntkit's NumericalWarning and PerformanceWarning
        try:
            yield caught
        finally:
            groups: dict[tuple, list] = {}
            for w in caught:
                key = (w.category, re.sub(r"[-+]?\d[\d.]*(e[-+]?\d+)?", "#", str(w.message)))
                groups.setdefault(key, []).append(w)
            for (category, _), ws in groups.items():
                first = ws[0]
                text = _describe(category, str(first.message), first.filename)
                times = "once" if len(ws) == 1 else f"{len(ws)} times, first"
                print(f"{prog}: {category.__name__} ({times}): {text}", file=stream)
                if fix and _FLOAT_RE.search(str(first.message)):
                    print(f"    fix: {fix}", file=stream)


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
        from . import show_backends

        show_backends()
        return 0
    prog = f"ntkit {args.command}"
    if args.command == "risk":
        from ._risk_cli import RISK_FIX, run_risk

        with summarised_warnings(prog, fix=RISK_FIX):
            text = run_risk(args)
        print(text)
        return 0
    if args.command == "explain":
        from ._explain_cli import run_explain

        with summarised_warnings(prog):
            text = run_explain(args)
        print(text)
        return 0
    if args.command == "bench":
        from ._bench_cli import run_bench

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
