"""The documentation: the code in README.md and docs/*.md runs as written, and the site builds the
way ``make docs`` builds it (MkDocs Material, strict, notebooks executed at small sizes) into pages
with working cross-references, typeset maths and rendered notebooks."""

from __future__ import annotations

import json
import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).parents[1]
FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
NOTEBOOKS = sorted((ROOT / "docs" / "notebooks").glob("*.ipynb"))
BUILD_TIMEOUT_S = 900


def _blocks(path):
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_code_blocks_run(path):
    namespace = {"__name__": "__docs__"}  # blocks of one page run in order, like notebook cells
    for code in _blocks(path):
        exec(compile(code, str(path), "exec"), namespace)


def _mkdocs():
    mkdocs = shutil.which("mkdocs", path=str(pathlib.Path(sys.executable).parent))
    if mkdocs is None:
        pytest.skip("mkdocs is not installed (pip install -e '.[docs]')")
    return mkdocs


def _build(mkdocs, config, site, cwd):
    env = dict(os.environ, NTKIT_DOCS_SMALL="1")
    env.pop("NTKIT_DOCS_EXECUTE", None)  # the notebooks always run here
    return subprocess.run([mkdocs, "build", "--strict", "-q", "-f", str(config), "-d", str(site)], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The site, built once for the tests below as ``make docs`` builds it. The notebooks run during
    the build (docs/hooks.py), so a notebook cell that raises fails the build and the first test."""
    out = tmp_path_factory.mktemp("docs") / "site"
    proc = _build(_mkdocs(), ROOT / "mkdocs.yml", out, ROOT)
    return proc, out


def _pages(site_dir, pattern="**/*.html"):
    return {p.relative_to(site_dir).as_posix(): p.read_text() for p in sorted(site_dir.glob(pattern))}


def test_docs_site_builds_without_warnings_and_documents_every_public_name(site):
    """``make docs``: MkDocs in strict mode (a warning, or a notebook that fails to run, fails the
    build); every name in a public package's ``__all__`` gets its own heading in the API reference."""
    import importlib

    proc, out = site
    assert proc.returncode == 0, proc.stderr[-5000:]
    html = "".join(_pages(out, "api/*/index.html").values())
    missing = []
    for mod in ("ntkit", "ntkit.kernels", "ntkit.ops", "ntkit.ntk", "ntkit.solvers", "ntkit.estimators",
                "ntkit.features", "ntkit.graphs", "ntkit.distributed", "ntkit.online", "ntkit.theory",
                "ntkit.theory.profiles", "ntkit.explain", "ntkit.predict", "ntkit.stax"):
        for name in importlib.import_module(mod).__all__:
            if name.startswith("__"):
                continue  # __version__
            if f'id="{mod}.{name}"' not in html:
                missing.append(f"{mod}.{name}")
    assert not missing, f"public names without an API entry: {missing}"


# A Sphinx role as the docstring wrote it (:func:`gram`) or as Markdown renders it (:func:<code>gram</code>).
SPHINX_ROLE = re.compile(r":(?:py:)?(?:func|class|mod|meth|attr|data|obj|exc|const|type):(?:`|<code>)")


def test_sphinx_roles_become_links_or_code(site):
    """No docstring role shows literally; a role naming a public ntkit object is a link to its entry,
    and only roles to private or outside objects (``ntkit._device``, ``ValueError``) degrade to code."""
    proc, out = site
    assert proc.returncode == 0, proc.stderr[-3000:]
    pages = _pages(out)
    literal = [f"{name}: …{html[max(0, m.start() - 60):m.end() + 40]}…"
               for name, html in pages.items() for m in SPHINX_ROLE.finditer(html)]
    assert not literal, "literal Sphinx roles in the site:\n" + "\n".join(literal[:20])

    api = "".join(html for name, html in pages.items() if name.startswith("api/"))
    links = re.findall(r'<a class="autorefs autorefs-internal ntkit-role"[^>]*href="([^"]+)"', api)
    assert len(links) > 100, f"only {len(links)} roles became links"
    # Unresolved roles are rendered by autorefs as <span title="target"><code>…</code></span>.
    unresolved = set(re.findall(r'<span title="([^"]+)"><code>', api))
    public = sorted(t for t in unresolved
                    if t.split(".")[0] in ("ntkit", "ntkit_native") and not any(p.startswith("_") for p in t.split(".")))
    assert not public, f"roles naming public objects that did not become links: {public}"
    # Absolute (:func:`ntkit.ops.gram`) and relative (:func:`show_backends`, in ntkit's root) targets.
    root = pages["api/ntkit/index.html"]
    assert re.search(r'ntkit-role"[^>]*href="../kernels/#ntkit\.ops\.gram"', root)
    assert re.search(r'ntkit-role"[^>]*href="#ntkit\.show_backends"', root)


def test_maths_is_typeset_by_mathjax(site):
    """``$...$`` in the pages becomes arithmatex's MathJax markup, and the pages load MathJax."""
    proc, out = site
    assert proc.returncode == 0, proc.stderr[-3000:]
    theory = (out / "theory" / "index.html").read_text()
    graphs = (out / "graphs" / "index.html").read_text()
    assert re.search(r'<span class="arithmatex">\\\(1 - e\^\{-\\text\{time\}', theory), "inline maths not wrapped"
    assert '<div class="arithmatex">\\[' in graphs, "display maths not wrapped"
    assert "e^{−time·λ}" not in theory
    for page in (theory, graphs, (out / "api" / "solvers" / "index.html").read_text()):
        assert "javascripts/mathjax.js" in page and "mathjax@3" in page


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_page_is_rendered_with_its_outputs(site, path):
    """Each notebook is a page with its cells rendered and executed (text output and figures), not a
    link to raw JSON; the executed notebook sits beside it for download."""
    proc, out = site
    assert proc.returncode == 0, proc.stderr[-3000:]
    page = out / "notebooks" / path.stem / "index.html"
    assert page.exists(), f"no page for {path.name}"
    html = page.read_text()
    assert '"cell_type"' not in html, "the notebook's JSON is shown instead of its cells"
    assert "jp-InputArea" in html and "jp-OutputArea-output" in html, "cells or outputs not rendered"
    assert "data:image/png;base64," in html, "no figure in the rendered outputs"
    assert re.search(r"In(?:\s|&nbsp;)\[\d+\]", html), "the notebook was not executed (no execution counts)"
    nb = json.loads((page.parent / path.name).read_text())
    assert all(c.get("outputs") is not None for c in nb["cells"] if c["cell_type"] == "code")


def test_a_notebook_that_fails_fails_the_build(tmp_path):
    """The same hooks on a one-notebook site: a cell that raises makes the build fail and says where."""
    mkdocs = _mkdocs()
    docs = tmp_path / "docs"
    (docs / "notebooks").mkdir(parents=True)
    (docs / "index.md").write_text("# Test\n\n[notebook](notebooks/bad.ipynb)\n")
    nb = {"cells": [{"cell_type": "code", "id": "c0", "metadata": {}, "execution_count": None, "outputs": [],
                     "source": ["raise ValueError('broken on purpose')\n"]}],
          "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
          "nbformat": 4, "nbformat_minor": 5}
    (docs / "notebooks" / "bad.ipynb").write_text(json.dumps(nb))
    config = tmp_path / "mkdocs.yml"
    config.write_text(
        "site_name: t\n"
        f"hooks: [{json.dumps(str(ROOT / 'docs' / 'hooks.py'))}]\n"
        "plugins:\n  - mkdocs-jupyter:\n      include: ['notebooks/*.ipynb']\n      execute: false\n"
    )
    proc = _build(mkdocs, config, tmp_path / "site", tmp_path)
    assert proc.returncode != 0
    assert "notebooks/bad.ipynb failed to execute" in proc.stderr and "broken on purpose" in proc.stderr


def test_landing_page_maps_the_library(site):
    """The landing page links every user-guide page and every API page."""
    proc, out = site
    assert proc.returncode == 0, proc.stderr[-3000:]
    index = (out / "index.html").read_text()
    targets = [p.stem for p in (ROOT / "docs").glob("*.md") if p.stem != "index"]
    targets += [f"api/{p.stem}" for p in (ROOT / "docs" / "api").glob("*.md")]
    missing = [t for t in targets if f'href="{t}/' not in index]
    assert not missing, f"pages the landing page does not link: {missing}"
