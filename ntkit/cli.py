"""The ``ntkit`` command line: ``ntkit tour``, ``ntkit info``."""

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
    args = parser.parse_args(argv)
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
