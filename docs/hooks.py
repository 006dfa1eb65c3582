"""MkDocs hooks for the ntkit site (``hooks:`` in mkdocs.yml).

Notebooks. Every build executes ``docs/notebooks/*.ipynb`` before the pages are rendered, all at
once (one Jupyter kernel per notebook, as many at a time as there are CPUs), with
``NTKIT_DOCS_SMALL=1`` (small sizes; ``NTKIT_DOCS_SMALL=0 make docs`` builds at full size) and
``NTKIT_DOCS_OUT`` pointing at a scratch folder, so the figures a notebook saves do not overwrite
the full-size ones committed beside it. mkdocs-jupyter then renders the executed copies (its own
``execute`` is off). A cell that raises fails the build, naming the notebook and the cell.
``NTKIT_DOCS_EXECUTE=0`` skips the execution (the pages then show code without output), for quick
edits under ``mkdocs serve``; the test suite and ``make docs`` never set it.

Notebook pages. nbconvert's template loads MathJax 2 and Mermaid from a CDN; the site already loads
MathJax 3 (``extra_javascript``), so the notebook's copies are dropped. A download button for the
executed notebook goes beside the title.

API pages. reST double backticks inside the numpydoc types (``k(A, B)``) are dropped: the type is
already shown as code.
"""

from __future__ import annotations

import concurrent.futures
import os
import pathlib
import re
import shutil
import tempfile
import time

from mkdocs.exceptions import PluginError
from mkdocs.plugins import get_plugin_logger

log = get_plugin_logger("ntkit-docs")

NOTEBOOKS = "notebooks/*.ipynb"  # relative to docs_dir; the same pattern as mkdocs-jupyter's `include`
CELL_TIMEOUT_S = 600

_scratch: pathlib.Path | None = None
_executed: dict[str, str] = {}  # src_uri -> path of the executed copy


def _execute(src: pathlib.Path, dest: pathlib.Path, env: dict) -> float:
    import nbformat
    from nbclient import NotebookClient

    start = time.perf_counter()
    nb = nbformat.read(src, as_version=4)
    client = NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                            resources={"metadata": {"path": str(src.parent)}})
    log_path = dest.with_suffix(".kernel.log")
    with open(log_path, "w") as kernel_log:  # the kernel's own chatter, shown only if the notebook fails
        try:
            client.execute(env=env, stdout=kernel_log, stderr=kernel_log)
        except Exception as exc:
            tail = log_path.read_text()[-2000:].strip()
            raise RuntimeError(f"{exc}" + (f"\n--- kernel log ---\n{tail}" if tail else "")) from exc
    nbformat.write(nb, dest)
    return time.perf_counter() - start


def on_pre_build(config, **kwargs):
    global _scratch
    docs = pathlib.Path(config.docs_dir)
    notebooks = sorted(docs.glob(NOTEBOOKS))
    _executed.clear()
    if os.environ.get("NTKIT_DOCS_EXECUTE", "1") == "0":
        log.warning("NTKIT_DOCS_EXECUTE=0: notebooks rendered without running them")
        return
    _scratch = pathlib.Path(tempfile.mkdtemp(prefix="ntkit-docs-"))
    (_scratch / "figures").mkdir()
    # Executed copies keep their path below docs_dir, so mkdocs-jupyter's `include` still matches.
    executed = {nb: _scratch / "docs" / nb.relative_to(docs) for nb in notebooks}
    for dest in executed.values():
        dest.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, NTKIT_DOCS_OUT=str(_scratch / "figures"))
    env.setdefault("NTKIT_DOCS_SMALL", "1")
    # Figures should show inline (ipykernel's default backend); a non-interactive backend inherited
    # from the caller (MPLBACKEND=Agg in CI) would leave the rendered pages without them.
    env.pop("MPLBACKEND", None)
    start = time.perf_counter()
    workers = max(1, min(len(notebooks), os.cpu_count() or 1))
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        jobs = {pool.submit(_execute, nb, executed[nb], env): nb for nb in notebooks}
        failures = []
        for job in concurrent.futures.as_completed(jobs):
            nb = jobs[job]
            try:
                seconds = job.result()
            except Exception as exc:  # nbclient.exceptions.CellExecutionError, a dead kernel, a timeout
                failures.append(f"{nb.relative_to(docs)} failed to execute:\n{exc}")
            else:
                _executed[nb.relative_to(docs).as_posix()] = str(executed[nb])
                log.info("executed %s in %.1f s", nb.relative_to(docs), seconds)
    if failures:
        raise PluginError("\n\n".join(failures))
    log.info("%d notebooks executed in %.1f s (NTKIT_DOCS_SMALL=%s, %d at a time)", len(notebooks),
             time.perf_counter() - start, env["NTKIT_DOCS_SMALL"], workers)


def on_files(files, config, **kwargs):
    for file in files:
        if file.src_uri in _executed:
            file.abs_src_path = _executed[file.src_uri]
    return files


_NB_SCRIPTS = re.compile(
    r"<!-- Load mathjax -->.*?<!-- End of mathjax configuration -->"
    r"|<script[^>]*mermaid[^>]*>.*?</script>",
    flags=re.S,
)


# Material's "download" icon, as the button beside the title of a notebook page (the executed .ipynb
# is copied next to the page by mkdocs-jupyter's include_source).
_DOWNLOAD = (
    '<a href="{name}" download title="Download the executed notebook" '
    'class="md-content__button md-icon"><svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24">'
    '<path d="M5 20h14v-2H5m14-9h-4V3H9v6H5l7 7 7-7Z"/></svg></a>'
)


# numpydoc types are plain text that mkdocstrings shows as code; ntkit's often quote literals the
# reST way (``k(A, B)``), which would show the backticks inside the code.
_RST_LITERAL_IN_CODE = re.compile(r"<code>([^<]*``[^<]*)</code>")


def on_page_content(html, page, **kwargs):
    if page.file.src_uri.startswith("api/"):
        html = _RST_LITERAL_IN_CODE.sub(lambda m: "<code>" + m[1].replace("``", "") + "</code>", html)
    if page.file.src_uri.endswith(".ipynb"):
        html = _DOWNLOAD.format(name=pathlib.PurePosixPath(page.file.src_uri).name) + _NB_SCRIPTS.sub("", html)
    return html


def _remove_scratch():
    global _scratch
    if _scratch is not None:
        shutil.rmtree(_scratch, ignore_errors=True)
        _scratch = None


def on_post_build(config, **kwargs):
    _remove_scratch()


def on_build_error(error, **kwargs):
    _remove_scratch()
