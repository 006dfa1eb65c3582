"""Infinite-width kernels: ntkit.stax vs neural-tangents' stax on the same networks and inputs, one run.

Three networks (float32, NTK parameterisation, ``get=("nngp", "ntk")``, x2 = x1):

* ``mlp_erf``: ``[Dense(512, W_std=1.5, b_std=0.05), Erf()] * 3 + Dense(1)`` on the flattened images;
* ``resnet_ln``: ``Dense(512)`` then 4 residual blocks ``FanOut(2) -> parallel(Identity, [Relu, Dense(512),
  Relu, Dense(512)]) -> FanInSum -> LayerNorm``, then ``Dense(1)``, on the flattened images;
* ``myrtle_gap``: a Myrtle-style CNN with global average pooling, ``[Conv(3x3, SAME), Relu] * 2, AvgPool(2),
  [Conv, Relu], AvgPool(2), [Conv, Relu], GlobalAvgPool, Dense(1)`` (``W_std=sqrt(2)``, ``b_std=0``), whose
  NTK keeps every pair of pixels: cost quadratic in the number of pixels.

Inputs: ``n`` standard-normal NHWC images with 3 channels, 8x8 and 16x16, ``n`` = 256 and 1024.
neural-tangents 0.6.5 runs in the pinned ``.venv-interop`` (jax 0.4.25) and ntkit in this environment,
each case in a fresh subprocess running the worker mode of this file (which imports neither ntkit nor
neural-tangents at the top, so the same file serves both environments). Both sides are configured as
neural-tangents advises: the MLP and ResNet kernels through ``jax.jit(kernel_fn, static_argnames="get")``;
the CNN through ``nt.batch(kernel_fn, batch_size)`` (which jits internally) and ``ntkit.stax.batch`` with
the same ``batch_size`` (its layers run as compiled jax functions). Each worker reports the first call
(compilation included), the best of the following calls, and the peak resident memory added by all the
calls (sampled every 2 ms above the level after imports and data loading; ``benchmarks/_rss.py``).

    python benchmarks/bench_stax.py            # the default table (~10 minutes on 2 cores)
    python benchmarks/bench_stax.py --quick    # n = 256, 8x8 only
    python benchmarks/bench_stax.py --large    # also the CNN at 8x8, n = 1024 and at 16x16 (hours on 2 cores)
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
INTEROP_PY = ROOT / ".venv-interop" / "bin" / "python"
ARCHS = ("mlp_erf", "resnet_ln", "myrtle_gap")
#: blocks of rows for the CNN (the same for both libraries): (b, b, H, H, W, W) float32 per covariance
BATCH = {8: 64, 16: 16}
CHANNELS = 3


def build(stax, arch):
    """The network ``arch`` from ``stax`` (``neural_tangents.stax`` or ``ntkit.stax``)."""
    if arch == "mlp_erf":
        layers = []
        for _ in range(3):
            layers += [stax.Dense(512, W_std=1.5, b_std=0.05), stax.Erf()]
        return stax.serial(*layers, stax.Dense(1, W_std=1.5, b_std=0.05))
    if arch == "resnet_ln":
        def block():
            branch = stax.serial(stax.Relu(), stax.Dense(512, W_std=1.4, b_std=0.1),
                                 stax.Relu(), stax.Dense(512, W_std=1.4, b_std=0.1))
            return stax.serial(stax.FanOut(2), stax.parallel(stax.Identity(), branch), stax.FanInSum(),
                               stax.LayerNorm())
        return stax.serial(stax.Dense(512, W_std=1.0, b_std=0.1), *[block() for _ in range(4)],
                           stax.Dense(1, W_std=1.0, b_std=0.1))
    if arch == "myrtle_gap":
        def conv():
            return stax.Conv(128, (3, 3), padding="SAME", W_std=math.sqrt(2.0), b_std=0.0)
        return stax.serial(conv(), stax.Relu(), conv(), stax.Relu(), stax.AvgPool((2, 2), strides=(2, 2)),
                           conv(), stax.Relu(), stax.AvgPool((2, 2), strides=(2, 2)),
                           conv(), stax.Relu(), stax.GlobalAvgPool(), stax.Dense(1, W_std=math.sqrt(2.0), b_std=0.0))
    raise ValueError(f"unknown architecture {arch!r}")


def worker(argv):
    """``--worker LIB DATA ARCH BATCH REPEATS [OUT]``: time one case in this process, print one JSON line."""
    lib, data, arch, batch_size, repeats = argv[0], argv[1], argv[2], int(argv[3]), int(argv[4])
    out_path = argv[5] if len(argv) > 5 and argv[5] else None
    block = len(argv) > 6 and argv[6] == "block"  # one (batch, batch) block: x1 = x[:b], x2 = x[b:2b]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import jax

    jax.config.update("jax_enable_x64", False)  # float32 on both sides (jax's default)
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
    from _rss import RssSampler

    if lib == "nt":
        import neural_tangents as nt
        from neural_tangents import stax

        version = getattr(nt, "__version__", "0.6.5")
    else:
        import ntkit
        from ntkit import stax

        version = ntkit.__version__
    with np.load(data) as z:
        x = z["x"]
    if arch != "myrtle_gap":
        x = x.reshape(x.shape[0], -1)
    x = jax.numpy.asarray(x)
    x2 = None
    if block:
        x, x2 = x[:batch_size], x[batch_size:2 * batch_size]
    _, _, kernel_fn = build(stax, arch)
    if batch_size:  # in block mode, the batched function's unit of work: one call of the (jitted) kernel_fn
        fn = nt.batch(kernel_fn, batch_size=batch_size) if lib == "nt" else stax.batch(kernel_fn, batch_size)
    else:
        fn = jax.jit(kernel_fn, static_argnames="get")

    def call():
        k = fn(x, x2, get=("nngp", "ntk"))
        jax.block_until_ready(k)
        return k

    with RssSampler() as sampler:
        t0 = time.perf_counter()
        k = call()
        first = time.perf_counter() - t0
        times = []
        while len(times) < repeats or (sum(times) < 2.0 and len(times) < 20):  # more calls when they are short
            del k
            t0 = time.perf_counter()
            k = call()
            times.append(time.perf_counter() - t0)
    if out_path:
        np.savez(out_path, nngp=np.asarray(k.nngp), ntk=np.asarray(k.ntk))
    print(json.dumps({"first_call_s": first, "best_s": min(times) if times else first, "times": times,
                      "extra_rss_mib": sampler.extra_mib, "shape": list(k.ntk.shape), "dtype": str(k.ntk.dtype),
                      "version": version, "jax": jax.__version__}))


def _run(cmd, timeout=3600):
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[:4]} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_case(lib, data, arch, batch_size, repeats, out=None, block=False):
    py = str(INTEROP_PY) if lib == "nt" else sys.executable
    cmd = [py, __file__, "--worker", lib, str(data), arch, str(batch_size), str(repeats), str(out or "")]
    return _run(cmd + (["block"] if block else []))


def cases(quick=False, large=False):
    """(arch, side, n) in the order they run; the CNN at 16x16 and n = 1024 only with ``large``."""
    out = []
    for side in (8, 16):
        for n in (256, 1024):
            if quick and (side, n) != (8, 256):
                continue
            for arch in ARCHS:
                if arch == "myrtle_gap" and (side, n) != (8, 256) and not large:
                    continue
                out.append((arch, side, n))
    return out


def _rel(a, b, off_diagonal=False):
    a, b = a.astype(np.float64), b.astype(np.float64)
    err = np.abs(a - b)
    if off_diagonal:
        np.fill_diagonal(err, 0.0)
    return float(err.max() / np.abs(b).max())


def _long(t):
    return f"{t / 3600:.1f} h" if t >= 3600 else f"{t / 60:.0f} min" if t >= 120 else f"{t:.0f} s"


def block_table(tmp, have_nt, large, fmt_s):
    """One (batch x batch) block of the CNN-GAP kernel per image size, both libraries, extrapolated to n."""
    rows = []
    for side in (8, 16):
        bs = BATCH[side]
        data = tmp / f"block_{side}.npz"
        x = np.random.default_rng(side).standard_normal((2 * bs, side, side, CHANNELS))
        np.savez(data, x=x.astype(np.float32))
        res = {}
        for lib in ("ntkit", "nt") if have_nt else ("ntkit",):
            try:
                res[lib] = run_case(lib, data, "myrtle_gap", bs, 2, block=True)
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                print(f"{lib} block {side}x{side} failed: {exc}", file=sys.stderr)
        o, b = res.get("ntkit"), res.get("nt")
        if o is None:
            continue
        row = [f"{side}x{side}", bs, fmt_s(o["best_s"]), f"{o['extra_rss_mib']:.0f}"]
        row += [fmt_s(b["best_s"]), f"{b['extra_rss_mib']:.0f}", f"**{b['best_s'] / o['best_s']:.2f}x**"] if b else \
            ["not run", "", ""]
        # K(x, x) in blocks: ntkit.stax.batch computes the nb (nb + 1) / 2 blocks on and above the diagonal and
        # mirrors the rest, nt.batch all nb^2 (a diagonal block, x2 = None, is counted as one off-diagonal block)
        ext = []
        for n in (256, 1024):
            nb = n // bs
            t_o, t_b = o["best_s"] * nb * (nb + 1) / 2, (b["best_s"] * nb * nb if b else None)
            ext.append(f"ntkit {_long(t_o)}" + (f", NT {_long(t_b)} (**{t_b / t_o:.1f}x**)" if b else ""))
        rows.append(row + ext)
        print(" | ".join(str(c) for c in rows[-1]), file=sys.stderr, flush=True)
    return rows


def run(quick=False, large=False, only=None):
    from _harness import fmt_s, machine, table

    have_nt = INTEROP_PY.exists()
    rows, skipped = [], []
    t_start = time.time()
    load = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        for arch, side, n in cases(quick, large):
            if only and arch not in only:
                continue
            data = tmp / f"x_{side}_{n}.npz"
            if not data.exists():
                x = np.random.default_rng(side * 10_000 + n).standard_normal((n, side, side, CHANNELS))
                np.savez(data, x=x.astype(np.float32))
            bs = BATCH[side] if arch == "myrtle_gap" else 0
            repeats = 1 if arch == "myrtle_gap" else 3  # a CNN call takes minutes
            res, outs = {}, {}
            # cheap cases: two rounds, alternating the libraries, best of each (load on shared cores)
            for _ in range(1 if arch == "myrtle_gap" else 2):
                for lib in ("ntkit", "nt"):
                    if lib == "nt" and not have_nt:
                        continue
                    outs[lib] = tmp / f"k_{lib}_{arch}_{side}_{n}.npz"
                    try:
                        r = run_case(lib, data, arch, bs, repeats, outs[lib])
                    except (RuntimeError, subprocess.TimeoutExpired) as exc:
                        print(f"{lib} {arch} {side}x{side} n={n} failed: {exc}", file=sys.stderr)
                        continue
                    if lib in res:
                        r = {**r, "best_s": min(r["best_s"], res[lib]["best_s"]),
                             "first_call_s": min(r["first_call_s"], res[lib]["first_call_s"]),
                             "extra_rss_mib": max(r["extra_rss_mib"], res[lib]["extra_rss_mib"])}
                    res[lib] = r
            o, b = res.get("ntkit"), res.get("nt")
            if o is None:
                skipped.append(f"{arch} {side}x{side} n={n}")
                continue
            diff = off = "—"
            if b is not None:
                with np.load(outs["ntkit"]) as ko, np.load(outs["nt"]) as kb:
                    diff = f"{max(_rel(ko[g], kb[g]) for g in ('nngp', 'ntk')):.1e}"
                    off = f"{max(_rel(ko[g], kb[g], True) for g in ('nngp', 'ntk')):.1e}"
            row = [arch, f"{side}x{side}", n, "" if not bs else bs, fmt_s(o["best_s"]), fmt_s(o["first_call_s"]),
                   f"{o['extra_rss_mib']:.0f}"]
            if b is not None:
                row += [fmt_s(b["best_s"]), fmt_s(b["first_call_s"]), f"{b['extra_rss_mib']:.0f}",
                        f"**{b['best_s'] / o['best_s']:.2f}x**", f"{b['first_call_s'] / o['first_call_s']:.2f}x",
                        diff, off]
            else:
                row += ["not run", "", "", "", "", "", ""]
            rows.append(row)
            print(" | ".join(str(c) for c in row), file=sys.stderr, flush=True)
        block_rows = [] if quick else block_table(tmp, have_nt, large, fmt_s)
    versions = ""
    if rows and b is not None:
        versions = f"ntkit {o['version']} on jax {o['jax']}; neural-tangents {b['version']} on jax {b['jax']} "
    header = ["network", "image", "n", "batch", "ntkit", "ntkit 1st call", "ntkit peak MiB", "neural-tangents",
              "NT 1st call", "NT peak MiB", "speed-up", "1st-call speed-up", "max rel. diff",
              "off-diagonal"]
    lines = [
        "## Infinite-width kernels: ntkit.stax vs neural-tangents (`benchmarks/bench_stax.py`)",
        "",
        f"Machine: {machine()}.",
        "",
        (f"NNGP and NTK together (`get=(\"nngp\", \"ntk\")`), x2 = x1, float32 on both sides; {versions}"
        "(`.venv-interop`). Networks: `mlp_erf` = [Dense(512), Erf] x 3 + Dense(1) and `resnet_ln` = Dense(512) + 4 x "
        "[FanOut(2), parallel(Identity, [Relu, Dense(512)] x 2), FanInSum, LayerNorm] + Dense(1), both on the "
        "flattened images (192 or 768 features) through `jax.jit(kernel_fn, static_argnames=\"get\")`; "
        "`myrtle_gap` = [Conv(3x3, SAME), Relu] x 2, AvgPool(2), [Conv, Relu], AvgPool(2), [Conv, Relu], "
        "GlobalAvgPool, Dense(1) (W_std = sqrt 2, b_std = 0; every pair of pixels kept) through `nt.batch` / "
        "`ntkit.stax.batch` with the same `batch` rows per block. Inputs: n standard-normal 3-channel images. "
        "Each case runs in a fresh subprocess per library: *1st call* includes compilation, the time columns are "
        "the best of the calls after it (3 to 20 for the MLP and ResNet, 1 for the CNN); peak MiB = resident memory "
        "added by all the calls (sampled every 2 ms above the level after imports and data loading; includes "
        "compilation). *max rel. diff* = max over NNGP and NTK of max |ntkit - NT| / max |NT|; *off-diagonal* the "
        "same without the pairs of an image with itself, where neural-tangents' float32 arc-cosine angle of a "
        "correlation rounded below 1 is off by ~sqrt(eps) (docs/stax.md). "
        f"Load average at the start of the run: {load[0]:.2f}; section time {time.time() - t_start:.0f} s"
         f"{' (quick)' if quick else ''}{' (with --large)' if large else ''}."),
        "",
        table(header, rows),
        "",
    ]
    if block_rows:
        lines += [("The CNN at 8x8, n = 1024 and at 16x16 runs in full only with `--large` (its cost grows as "
                  "n² (H W)²: 16 times the 8x8, n = 256 case, 256 times for 16x16, n = 1024, i.e. hours per library "
                  "on 2 cores). Both libraries compute the batched kernel from identical blocks of `batch` x `batch` images, "
                  "neural-tangents' `nt.batch` all (n / batch)² of them, `ntkit.stax.batch` (x2 = None, a readout: no "
                  "spatial axes in the result) the (n / batch)(n / batch + 1) / 2 on and above the diagonal, mirroring "
                  "the others. So the default run times one block (x1, x2 = two different sets of `batch` images, "
                  "through `nt.batch` / `stax.batch` as above, best of 2 after the first call) and extrapolates "
                  "with those counts (a diagonal block counted as one off-diagonal block):"), "",
                  table(["image", "batch", "ntkit block", "ntkit peak MiB", "NT block", "NT peak MiB", "speed-up",
                         "n = 256 (extrapolated)", "n = 1024 (extrapolated)"], block_rows), ""]
    if not have_nt:
        lines += ["neural-tangents was not run: `make interop` builds `.venv-interop`.", ""]
    if skipped:
        lines += ["Failed (see the log): " + "; ".join(skipped) + ".", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[2:])
    else:
        sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
        only = [a.split("=", 1)[1] for a in sys.argv if a.startswith("--only=")]
        print(run("--quick" in sys.argv, "--large" in sys.argv, only=only[0].split(",") if only else None))
