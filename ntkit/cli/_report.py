"""The tour report's page and figure helpers: embedding, ticks, tables, provenance, the attribution gallery.

Shared by :mod:`ntkit.cli._tour` and :mod:`ntkit.cli._explain`.
"""

from __future__ import annotations

import base64
import html
import io
import os
import pathlib
import platform
import subprocess

import numpy as np

#: PNG resolution; figures are shown at 96 CSS pixels per inch, so an 8 pt label is 10.7 px on screen.
_DPI = 150
_SHOW_DPI = 96
#: Figures are at most this wide (inches), so that they fit the page's 1100 px column unscaled.
_MAX_WIDTH_IN = 11.0
_RC = {"font.size": 9, "axes.titlesize": 9.5, "axes.labelsize": 9, "xtick.labelsize": 8, "ytick.labelsize": 8,
       "legend.fontsize": 8, "figure.titlesize": 10}
class _Report:
    """Figure numbering and embedding shared by the sections."""

    def __init__(self):
        self.n_fig = 0

    def figure(self, fig, caption: str) -> str:
        """``<figure>`` with the PNG embedded at its natural size (96 px per inch) and a numbered caption."""
        import matplotlib.pyplot as plt

        width_in = fig.get_size_inches()[0]
        if width_in > _MAX_WIDTH_IN:  # never happens for the tour's own figures; a guard for edits
            fig.set_size_inches(_MAX_WIDTH_IN, fig.get_size_inches()[1] * _MAX_WIDTH_IN / width_in)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=_DPI, bbox_inches="tight")
        plt.close(fig)
        data = buf.getvalue()
        px_w = int.from_bytes(data[16:20], "big")  # the PNG header's width field
        px_h = int.from_bytes(data[20:24], "big")
        w, h = round(px_w * _SHOW_DPI / _DPI), round(px_h * _SHOW_DPI / _DPI)
        self.n_fig += 1
        uri = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
        return (f'<figure><img src="{uri}" width="{w}" height="{h}" alt="Figure {self.n_fig}">'
                f"<figcaption><b>Figure {self.n_fig}.</b> {caption}</figcaption></figure>")


def _log_ticks(ax, axis, values, fmt="{:g}"):
    """Major ticks at ``values`` with plain labels and no minor labels, on a log axis (no overlaps)."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter, NullLocator

    a = ax.xaxis if axis == "x" else ax.yaxis
    a.set_major_locator(FixedLocator(list(values)))
    a.set_major_formatter(FuncFormatter(lambda v, _: fmt.format(v)))
    a.set_minor_locator(NullLocator())
    a.set_minor_formatter(NullFormatter())


def _nice_log_values(lo, hi):
    """1-2-5 values spanning [lo, hi] (for log-axis labels that do not overlap)."""
    out = []
    for e in range(int(np.floor(np.log10(lo))) - 1, int(np.ceil(np.log10(hi))) + 1):
        for m in (1, 2, 5):
            v = m * 10.0**e
            if lo * 0.9 <= v <= hi * 1.1:
                out.append(v)
    return out


def _pct(fraction: float) -> str:
    """A small relative difference in words: "0.02%"."""
    return "0%" if fraction == 0 else f"{100 * fraction:.2g}%"


def _params_text(k) -> str:
    return ", ".join(f"{p}={v:.4g}" if isinstance(v, float) else f"{p}={v}" for p, v in sorted(k.get_params().items()))


def _git_commit(root: pathlib.Path):
    """``(commit, dirty)`` of the source checkout ntkit runs from, or ``None`` (not a checkout, no git)."""
    if not (root / ".git").exists():
        return None
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10)
        return head.stdout.strip(), bool(dirty.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return None


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    import ntkit

    out = {"ntkit": ntkit.__version__, "python": platform.python_version()}
    for dist in ("jax", "jaxlib", "numpy", "scipy", "scikit-learn", "matplotlib"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "not installed"
    return out

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;max-width:1100px;
margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
h1{margin-bottom:.2em}h2{margin-top:2em;border-bottom:1px solid #ddd;padding-bottom:.2em}
table{border-collapse:collapse;margin:.6em 0 1em}td,th{padding:3px 10px;text-align:right;vertical-align:top}
th{border-bottom:1px solid #999;font-weight:600}tr:nth-child(even) td{background:#f7f7f7}
td:first-child,th:first-child{text-align:left;white-space:nowrap}td.l,th.l{text-align:left}
table.meta td{text-align:left;background:none}table.meta td:first-child{color:#555;white-space:nowrap}
pre{background:#f4f4f4;padding:8px;white-space:pre-wrap;font-size:12px}
code{font-size:90%}figure{margin:1em 0}figcaption{font-size:14px;color:#333;max-width:1000px;margin-top:.3em}
img{max-width:100%;height:auto}.note{background:#fff6d6;border:1px solid #e8d48a;padding:6px 10px}
nav ol{columns:2;font-size:15px}.small{font-size:13px;color:#555}
@media print{body{max-width:none}h2{break-after:avoid}figure{break-inside:avoid}}
"""


def _page(summary, frags, info, root, out, n_all):
    import ntkit

    run = summary["run"]
    v = run["versions"]
    versions = " · ".join(f"{k} {html.escape(v[k])}" for k in ("ntkit", "jax", "jaxlib", "numpy", "scipy",
                                                             "scikit-learn", "matplotlib", "python"))
    if run["git_commit"]:
        src = f"<code>{run['git_commit']}</code>" + (" (with uncommitted changes)" if run["git_uncommitted_changes"]
                                                     else "")
    else:
        src = "not a git checkout (installed package)"
    docs = root / "docs" / "index.md"
    site = root / "site" / "index.html"
    links = []
    if site.exists():
        links.append(f'<a href="{html.escape(os.path.relpath(site, out.resolve()))}">the documentation site</a> '
                     "(built by <code>make docs</code>)")
    if docs.exists():
        links.append(f'<a href="{html.escape(os.path.relpath(docs, out.resolve()))}">docs/index.md</a> in the source '
                     "checkout")
    if not links:
        links.append("docs/index.md in ntkit's source repository (<code>make docs</code> builds the site)")
    native = info["native"]
    nat = (f"native extension built (OpenMP {native.get('omp_max_threads', '?')} threads, "
           f"CUDA {'yes' if native.get('cuda_compiled') else 'no'})" if native.get("available")
           else "native extension not built (numpy and jax backends)")
    short = {"kernels": "kernels", "speed": "speed", "networks": "networks", "features": "features",
             "theory": "learning curves", "graphs": "graphs", "online": "online"}
    per = " · ".join(f"{short[k]} {run['section_seconds'][k]:.0f} s" for k, _, _ in frags)
    buf = io.StringIO()
    ntkit.show_backends(file=buf)
    quick = ""
    if run["quick"]:
        quick = (f'<p class="note"><b>Quick mode</b>: {summary["n_samples"]} of the {n_all} digits, fewer epochs and '
                 "smaller grids — a smoke test of the installation, not a result to report. Run "
                 "<code>ntkit tour</code> (or <code>make tour</code>) for the full report.</p>")
    toc = "".join(f'<li><a href="#{k}">{html.escape(t)}</a></li>' for k, t, _ in frags)
    body = "\n".join(f'<section id="{k}">{f}</section>' for k, _, f in frags)
    date = run["date"].replace("T", " ").replace("+00:00", " UTC")
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>ntkit tour — {date}</title><style>{_CSS}</style></head><body>
<h1>ntkit tour</h1>
<p>Kernel methods and neural tangent kernels with ntkit on scikit-learn's bundled copy of the UCI handwritten
digits: {summary['n_samples']} images of 8 × 8 pixels ({summary['n_features']} features scaled to [0, 1]), split
stratified into {summary['n_train']} training and {summary['n_test']} test images. Every number below was computed
in this run; all of them are in <code>summary.json</code> beside this page.</p>
{quick}
<table class="meta">
<tr><td>date</td><td>{html.escape(date)}</td></tr>
<tr><td>command</td><td><code>{html.escape(run['command'])}</code> (the same seed reproduces every number up to
timing)</td></tr>
<tr><td>seed</td><td>{run['seed']} (train/test split, network initialisation and batches, random features,
Nyström landmarks, EigenPro, graph walks, learning-curve draws, stream order)</td></tr>
<tr><td>run time</td><td>{run['seconds']:.0f} s in all: {per}</td></tr>
<tr><td>versions</td><td>{versions}</td></tr>
<tr><td>source</td><td>{src}</td></tr>
<tr><td>machine</td><td>{html.escape(run['machine'])}; {nat}</td></tr>
<tr><td>documentation</td><td>{' · '.join(links)}</td></tr>
</table>
<details><summary class="small">Backends (<code>ntkit.show_backends()</code>)</summary>
<pre>{html.escape(buf.getvalue())}</pre></details>
<nav><ol>{toc}</ol></nav>
{body}
</body></html>"""


# --------------------------------------------------------------------------------------------- sections

def _gallery(fig, att, y_query, y_train, net_pred):
    """Relabel ``plot_attributions``' figure: true label and both predictions per query, the label of every
    training image shown, fonts that stay readable at the report's size."""
    y_train = np.asarray(y_train)
    rows = len(y_query)
    k = att.support_index.shape[1]
    cols = 1 + 2 * k
    axes = np.asarray(fig.axes).reshape(rows, cols)
    for r in range(rows):
        q = axes[r, 0]
        q.set_title(f"test image {r}", fontsize=8.5)
        q.set_xlabel(f"label {y_query[r]}\nsurrogate → {att.logit_index[r]}\nnetwork → {net_pred[r]}", fontsize=8,
                     labelpad=1)
        for j in range(k):
            for col, idx, c, color in ((1 + j, att.support_index[r, j], att.support_contribution[r, j], "#1a7f37"),
                                       (1 + k + j, att.oppose_index[r, j], att.oppose_contribution[r, j], "#c62828")):
                a = axes[r, col]
                a.set_title(f"{c:+.2f}", fontsize=8.5, color=color)
                a.set_xlabel(f"label {y_train[idx]}", fontsize=8, labelpad=1)
    fig.suptitle("supporting (green) and opposing (red) training images for the predicted class; "
                 "number: contribution to its score", fontsize=9)
    fig.set_size_inches(10.8, 2.0 * rows + 0.5)
    fig.tight_layout()
    return fig
