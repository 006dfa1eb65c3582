"""``make bench``: run every benchmark and rewrite benchmarks/RESULTS.md."""

from __future__ import annotations

import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).parent))

from _harness import machine  # noqa: E402

import bench_distributed  # noqa: E402
import bench_entk  # noqa: E402
import bench_explain  # noqa: E402
import bench_features  # noqa: E402
import bench_gram  # noqa: E402
import bench_grf  # noqa: E402
import bench_online  # noqa: E402
import bench_reliability  # noqa: E402
import bench_solvers  # noqa: E402
import bench_stax  # noqa: E402
import bench_stkr  # noqa: E402
import bench_theory  # noqa: E402


def main():
    quick = "--quick" in sys.argv
    t0 = time.time()
    large = "--large" in sys.argv  # EigenPro 3 at n = 1 000 000, exact STKR at N = 110 000 (~30 minutes more);
    # the CNN-GAP kernel of bench_stax at 8x8, n = 1024 and 16x16 in full (hours)
    sections = [bench_gram.run(quick), bench_entk.run(quick), bench_stax.run(quick, large),
                bench_solvers.run(quick, large),
                bench_stkr.run(quick, large), bench_explain.run(quick), bench_theory.run(quick),
                bench_features.run(quick), bench_grf.run(quick), "\n".join(bench_online.run(quick)),
                bench_distributed.run(quick), bench_reliability.run(quick)]
    text = "\n".join([
        "# Benchmark results",
        "",
        "Written by `make bench` (`benchmarks/run_all.py`); every table compares ntkit with its peer on the",
        "same data in the same run. Absolute times on shared 2-core machines are noisy: read the ratios.",
        "",
        f"Machine: {machine()}.",
        f"Total benchmark time: {time.time() - t0:.0f} s{' (quick mode)' if quick else ''}"
        f"{' (with --large)' if large else ''}.",
        "",
        "\n\n".join(s.rstrip("\n") for s in sections),
    ])
    out = pathlib.Path(__file__).with_name("RESULTS.md")
    out.write_text(text + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
