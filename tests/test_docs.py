"""The code in README.md and docs/*.md runs as written."""

from __future__ import annotations

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).parents[1]
FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _blocks(path):
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_code_blocks_run(path):
    namespace = {"__name__": "__docs__"}  # blocks of one page run in order, like notebook cells
    for code in _blocks(path):
        exec(compile(code, str(path), "exec"), namespace)


NOTEBOOKS = sorted((ROOT / "docs" / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebooks_run(path, tmp_path):
    """Every notebook's code cells run top to bottom at small sizes (NTKIT_DOCS_SMALL=1), in a
    fresh interpreter so a notebook's global settings (e.g. jax x64) cannot leak into the suite."""
    import os
    import subprocess
    import sys

    runner = (
        "import json, sys\n"
        "nb = json.load(open(sys.argv[1]))\n"
        "g = {'__name__': '__notebook__'}\n"
        "for c in nb['cells']:\n"
        "    if c['cell_type'] == 'code':\n"
        "        exec(compile(''.join(c['source']), sys.argv[1], 'exec'), g)\n"
    )
    env = dict(os.environ, NTKIT_DOCS_SMALL="1", NTKIT_DOCS_OUT=str(tmp_path), MPLBACKEND="Agg")
    proc = subprocess.run([sys.executable, "-c", runner, str(path)], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_docs_site_builds_without_warnings_and_documents_every_public_name(tmp_path):
    """``make docs``: MkDocs in strict mode (a warning fails the build); every name in a public
    package's ``__all__`` gets its own heading in the API reference."""
    import importlib
    import shutil
    import subprocess
    import sys

    mkdocs = shutil.which("mkdocs", path=str(pathlib.Path(sys.executable).parent))
    if mkdocs is None:
        pytest.skip("mkdocs is not installed (pip install -e '.[docs]')")
    proc = subprocess.run([mkdocs, "build", "--strict", "-q", "-d", str(tmp_path / "site")], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    html = "".join(p.read_text() for p in (tmp_path / "site" / "api").glob("*/index.html"))
    missing = []
    for mod in ("ntkit.kernels", "ntkit.ops", "ntkit.ntk", "ntkit.solvers", "ntkit.estimators", "ntkit.features",
                "ntkit.graphs", "ntkit.distributed", "ntkit.online", "ntkit.theory", "ntkit.theory.profiles",
                "ntkit.explain"):
        for name in importlib.import_module(mod).__all__:
            if f'id="{mod}.{name}"' not in html:
                missing.append(f"{mod}.{name}")
    assert not missing, f"public names without an API entry: {missing}"
