"""The command line: every subcommand has --help, writes into --out, and rejects bad arguments clearly.

The progress rule (ntkit.cli.PROGRESS_RULE): jobs show a heading per section with the elapsed time on
stderr unless --quiet; warnings are summarised once each, in words, never as a source line.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest


def _run(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "ntkit", *args], capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("cmd", ["tour", "explain", "bench", "risk", "info"])
def test_help(cmd):
    proc = _run(cmd, "--help")
    assert proc.returncode == 0 and "usage: ntkit" in proc.stdout
    if cmd != "info":  # every job states the progress rule and has --quiet
        text = " ".join(proc.stdout.split())
        assert "Progress: by default a job prints, on stderr, a one-line heading per section" in text
        assert "--quiet" in text


def test_explain_writes_its_outputs(tmp_path):
    proc = _run("explain", "--n-train", "120", "--epochs", "5", "--queries", "2", "--quiet", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((tmp_path / "explain.json").read_text())
    assert {"kendall_tau", "network_accuracy", "surrogate_accuracy", "attributions"} <= set(summary)
    assert len(summary["attributions"]) == 2 and len(summary["attributions"][0]["support_index"]) == 4
    assert (tmp_path / "fidelity.png").stat().st_size > 0 and (tmp_path / "attributions.png").stat().st_size > 0
    assert "ntkit explain [" not in proc.stderr  # --quiet: no headings


def test_bad_arguments_are_named(tmp_path):
    proc = _run("bench", "--sections", "gram,nonsense", "--out", str(tmp_path))
    assert proc.returncode != 0 and "nonsense" in proc.stderr
    proc = _run("explain", "--n-train", "5", "--out", str(tmp_path))
    assert proc.returncode != 0 and "--n-train" in proc.stderr
    proc = _run("explain", "--kind", "bogus")
    assert proc.returncode != 0 and "bogus" in proc.stderr
    proc = _run("risk", "--profiles", "krr,bogus", "--out", str(tmp_path))
    assert proc.returncode != 0 and "bogus" in proc.stderr
    proc = _run("risk", "--points", "0", "--out", str(tmp_path))
    assert proc.returncode != 0 and "--points" in proc.stderr


def test_risk_defaults_take_seconds_and_show_progress(tmp_path):
    """`ntkit risk` as a newcomer types it: seconds, headings with elapsed time, no echoed source lines."""
    t0 = time.perf_counter()
    proc = _run("risk", "--out", str(tmp_path), timeout=300)
    seconds = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert seconds < 90, f"ntkit risk took {seconds:.0f} s with its defaults"  # ~10 s on 2 cores; generous
    headings = [ln for ln in proc.stderr.splitlines() if re.match(r"ntkit risk \[\d+:\d\d\.\d\] \d/3 ", ln)]
    assert len(headings) == 3, proc.stderr
    assert "risk_curve(" not in proc.stderr and "Warning: " not in proc.stderr  # no warnings.showwarning echo
    rows = (tmp_path / "risk.csv").read_text().splitlines()
    assert rows[0] == "n_samples,krr,gradient_flow" and len(rows) == 13
    assert (tmp_path / "risk_params.csv").read_text().splitlines()[0] == "n_samples,krr_ridge,gradient_flow_time"
    assert (tmp_path / "risk.png").stat().st_size > 0
    risk = np.array([[float(v) for v in r.split(",")] for r in rows[1:]])
    assert np.all(np.isfinite(risk)) and np.all(np.diff(risk[:, 1]) < 0)  # the optimal KRR curve falls with N


def test_risk_quiet_prints_nothing_but_warnings(tmp_path):
    proc = _run("risk", "--quiet", "--modes", "2000", "--n-max", "4000", "--points", "3", "--profiles", "krr",
                "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "ntkit risk [" not in proc.stderr and "it/s" not in proc.stderr
    # N = 4000 > 2000 modes: ridge 0 is ill-posed there. One summary line per kind of warning, in words.
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert all(ln.startswith("ntkit risk: ") or ln.startswith("    fix: ") for ln in lines), proc.stderr
    assert len(lines) == len(set(lines))


def test_warnings_are_summarised_once_in_words():
    from ntkit.cli import summarised_warnings

    out = io.StringIO()
    with summarised_warnings("ntkit test", fix="use smaller numbers", stream=out):
        for v in (1000.0, 2000.0, 3000.0):
            np.exp(np.array([v]))
        warnings.warn("the grid point 1e-3 did not converge", RuntimeWarning)
        warnings.warn("the grid point 2e-3 did not converge", RuntimeWarning)
    text = out.getvalue()
    lines = text.splitlines()
    assert lines[0] == ("ntkit test: RuntimeWarning (3 times, first): numpy computed a value too large for float64 "
                        "(it became inf) in exp (test_cli.py)")
    assert lines[1] == "    fix: use smaller numbers"
    assert lines[2] == "ntkit test: RuntimeWarning (2 times, first): the grid point 1e-3 did not converge"
    assert len(lines) == 3  # numbers differ, kinds do not; ntkit's own messages carry their own fix
    out = io.StringIO()
    with summarised_warnings("ntkit test", stream=out):
        pass
    assert out.getvalue() == ""


def test_progress_rule(capsys):
    from ntkit.cli import Progress

    quiet = Progress("ntkit test", enabled=False, sections=2)
    quiet.section("first")
    for _ in quiet.bar(range(3), desc="loop"):
        pass
    quiet.note("result")
    quiet.done("done")
    assert capsys.readouterr().err == ""
    loud = Progress("ntkit test", enabled=True, sections=2)
    loud.section("first")
    loud.note("result")
    err = capsys.readouterr().err
    assert re.match(r"ntkit test \[0:0\d\.\d\] 1/2 first\n    result\n", err), err
