"""``ntkit bench``: run the benchmark suite of a source checkout (``benchmarks/``) and write its table."""

from __future__ import annotations

import importlib
import pathlib
import sys
import time

SECTIONS = ("gram", "entk", "stax", "solvers", "explain", "theory", "features", "grf", "online", "distributed",
            "reliability")


def _bench_dir() -> pathlib.Path:
    here = pathlib.Path(__file__).resolve().parents[2] / "benchmarks"
    if not (here / "_harness.py").exists():
        raise SystemExit("ntkit bench runs the benchmarks/ folder of a source checkout (an editable install, as "
                         "`make install` makes); it was not found next to this ntkit. Clone the repository and "
                         "run `make bench` or `ntkit bench` there.")
    return here


def run_bench(args) -> str:
    bench = _bench_dir()
    wanted = [s.strip() for s in args.sections.split(",") if s.strip()] if args.sections else list(SECTIONS)
    unknown = [s for s in wanted if s not in SECTIONS]
    if unknown:
        raise SystemExit(f"ntkit bench: unknown section(s) {unknown}; choose from {', '.join(SECTIONS)}.")
    sys.path.insert(0, str(bench))
    from _harness import machine  # noqa: PLC0415

    from ._progress import Progress

    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    parts = []
    t0 = time.time()
    progress = Progress("ntkit bench", enabled=not args.quiet, sections=len(wanted))
    for name in wanted:
        progress.section(f"bench_{name}{' (quick)' if args.quick else ''}")
        try:
            mod = importlib.import_module(f"bench_{name}")
        except ImportError:
            print(f"(no benchmarks/bench_{name}.py; skipped)", file=sys.stderr)
            continue
        s = time.time()
        part = mod.run(args.quick, False) if name == "solvers" else mod.run(args.quick)
        parts.append("\n".join(part) if isinstance(part, list) else part)
        progress.note(f"bench_{name}: {time.time() - s:.0f} s")
    text = "\n".join(["# Benchmark results", "", f"Machine: {machine()}.",
                      f"Sections: {', '.join(wanted)}; {time.time() - t0:.0f} s{' (quick mode)' if args.quick else ''}.",
                      "", *parts])
    path = out / "RESULTS.md"
    path.write_text(text + "\n")
    progress.done("done")
    return f"wrote {path}"
