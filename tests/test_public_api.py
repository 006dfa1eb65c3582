"""Every public name resolves, is documented, and importing ntkit has no side effects."""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys

import pytest

PACKAGES = ["ntkit", "ntkit.kernels", "ntkit.ops", "ntkit.theory", "ntkit.theory.profiles", "ntkit.features", "ntkit.graphs",
            "ntkit.distributed", "ntkit.online", "ntkit.estimators", "ntkit.predict", "ntkit.stax"]


@pytest.mark.parametrize("modname", PACKAGES)
def test_all_names_resolve_and_are_documented(modname):
    mod = importlib.import_module(modname)
    assert mod.__doc__
    for name in mod.__all__:
        obj = getattr(mod, name)
        if inspect.ismodule(obj) or name == "__version__":
            continue
        assert inspect.getdoc(obj), f"{modname}.{name} has no docstring"


def test_contract_names_exist():
    from ntkit.kernels import RBF, ArcCosine, Laplace, Matern, Polynomial, ReluNNGP, ReluNTK  # noqa: F401
    from ntkit.ops import KernelOperator, batched_gram, gram, kernel_matvec  # noqa: F401
    import ntkit_native

    from ntkit.features import (ArcCosineFeatures, NTKRandomFeatures, Nystroem,  # noqa: F401
                                PositiveRandomFeatures, RandomFourierFeatures, approximation_error)

    for name in ("is_available", "has_cuda", "gram", "kernel_matvec", "batched_gram", "hadamard_blocks", "grf_features"):
        assert callable(getattr(ntkit_native, name))


def test_import_is_quiet_and_lazy():
    """No output, no jax import, no extension load at import time."""
    code = (
        "import sys, ntkit, ntkit_native\n"
        "assert 'jax' not in sys.modules, 'jax imported eagerly'\n"
        "assert 'ntkit_native._C' not in sys.modules, 'extension loaded eagerly'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "" and proc.stderr == ""


def test_show_backends_reports(capsys):
    import ntkit

    info = ntkit.show_backends()
    text = capsys.readouterr().out
    assert "native" in text and "auto" in text
    assert set(info) >= {"ntkit", "jax", "native"}


def test_cli_info_and_tour(tmp_path):
    """`ntkit info`, and the quick tour as a person watching runs it (progress on): ~20 s."""
    proc = subprocess.run([sys.executable, "-m", "ntkit", "info"], capture_output=True, text=True)
    assert proc.returncode == 0 and "ntkit" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "ntkit", "tour", "--quick", "--seed", "0", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    import json
    import re

    summary = json.loads((tmp_path / "summary.json").read_text())
    page = (tmp_path / "report.html").read_text()
    assert len(page) > 10_000  # figures embedded
    # Kernel ridge on digits is an easy problem: every kernel should classify well.
    assert min(r["test_accuracy"] for r in summary["kernels"].values()) > 0.9
    assert {r["solver"] for r in summary["kernels"].values()} == {"cholesky"}  # NTKClassifier's auto at this size
    # progress: one heading per section, with the elapsed time, on stderr; results on stdout
    headings = re.findall(r"^ntkit tour \[\d+:\d\d\.\d\] (\d)/7 ", proc.stderr, flags=re.M)
    assert headings == [str(i) for i in range(1, 8)], proc.stderr[-2000:]
    assert "wrote" in proc.stdout and "Unable to initialize backend" not in proc.stderr
    # a page for a supplement: when, how, with what
    run = summary["run"]
    assert run["seed"] == 0 and run["quick"] and run["seconds"] > 0 and len(run["section_seconds"]) == 7
    assert set(run["versions"]) >= {"ntkit", "jax", "numpy", "scikit-learn"}
    for text in (run["date"][:10], "seed", "jax " + run["versions"]["jax"], "scikit-learn", "docs/index.md",
                 "Quick mode", "Figure 8.", "true label and the two predictions"):
        assert text in page, text
    assert f"{summary['n_samples']} digits" in page and "3594" not in page
