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
