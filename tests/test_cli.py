"""The command line: every subcommand has --help, writes into --out, and rejects bad arguments clearly."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def _run(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "ntkit", *args], capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("cmd", ["tour", "explain", "bench", "risk", "info"])
def test_help(cmd):
    proc = _run(cmd, "--help")
    assert proc.returncode == 0 and "usage: ntkit" in proc.stdout


def test_explain_writes_its_outputs(tmp_path):
    proc = _run("explain", "--n-train", "120", "--epochs", "5", "--queries", "2", "--quiet", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((tmp_path / "explain.json").read_text())
    assert {"kendall_tau", "network_accuracy", "surrogate_accuracy", "attributions"} <= set(summary)
    assert len(summary["attributions"]) == 2 and len(summary["attributions"][0]["support_index"]) == 4
    assert (tmp_path / "fidelity.png").stat().st_size > 0 and (tmp_path / "attributions.png").stat().st_size > 0


def test_bad_arguments_are_named(tmp_path):
    proc = _run("bench", "--sections", "gram,nonsense", "--out", str(tmp_path))
    assert proc.returncode != 0 and "nonsense" in proc.stderr
    proc = _run("explain", "--n-train", "5", "--out", str(tmp_path))
    assert proc.returncode != 0 and "--n-train" in proc.stderr
    proc = _run("explain", "--kind", "bogus")
    assert proc.returncode != 0 and "bogus" in proc.stderr
