"""``ntkit tour``: what the library can do today, on data bundled with scikit-learn.

Seven sections on the digits data set, each a function that returns its summary and its HTML:
every closed-form kernel's Gram matrix and kernel ridge classifier (``NTKClassifier``); the Gram
engine's backends against scikit-learn; an MLP and a CNN trained in JAX with their empirical NTKs,
NTK surrogates, attributions and EigenPro fits; random features and Nyström; predicted against
measured learning curves; graph random features on the digits' neighbour graph; online learners.

``run_tour`` writes ``report.html`` — self-contained (figures embedded as PNG), with the date, seed,
versions, git commit, run time per section and a link to the documentation, so it can be attached
to a paper's supplement as it is — and ``summary.json`` with every number in it. It is quiet by
default (library rule); ``ntkit tour`` passes ``verbose=True`` unless ``--quiet``, which prints a
heading per section with the elapsed time and progress bars inside the long sections.
"""

from __future__ import annotations

import datetime
import json
import os
import pathlib
import platform
import time


from ._report import _RC, _Report, _git_commit, _page, _versions
from ._tour_sections import (_features_section, _graph_section, _kernels_section, _networks_section,
                             _online_section, _speed_section, _theory_section)

_SECTIONS = (
    ("kernels", "Kernels and kernel ridge classification"),
    ("speed", "Speed of the Gram engine"),
    ("networks", "Networks, their empirical NTKs and NTK surrogates"),
    ("features", "Random features and Nyström"),
    ("theory", "Predicted learning curves"),
    ("graphs", "Graph random features"),
    ("online", "Online kernel regression"),
)

def run_tour(out="tour", *, quick=False, seed=0, verbose=False) -> dict:
    """Run the tour and write ``out/report.html`` and ``out/summary.json``; return the summary.

    ``quick`` uses 400 of the 1797 digits and smaller grids (a smoke test); ``seed`` drives every
    random choice (split, network initialisation and batches, features, walks, draws); ``verbose``
    prints a heading per section with the elapsed time and progress bars on stderr.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    import ntkit

    from ._progress import Progress

    started = datetime.datetime.now(datetime.timezone.utc)
    progress = Progress("ntkit tour", enabled=verbose, sections=len(_SECTIONS))
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    digits = load_digits()
    X = digits.data / 16.0
    y = digits.target
    n_all = len(y)
    if quick:
        X, y = X[:400], y[:400]
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.3, random_state=seed, stratify=y)
    ctx = {"X": X, "y": y, "X_tr": X_tr, "y_tr": y_tr, "X_te": X_te, "y_te": y_te, "quick": quick, "seed": seed,
           "progress": progress, "report": _Report(), "n_all": n_all}
    info = ntkit.backends_info()
    summary = {"ntkit": ntkit.__version__, "n_samples": int(len(y)), "n_train": int(len(y_tr)),
               "n_test": int(len(y_te)), "n_features": int(X.shape[1]), "native": bool(info["native"].get("available"))}
    funcs = {"kernels": _kernels_section, "speed": _speed_section, "networks": _networks_section,
             "features": _features_section, "theory": _theory_section, "graphs": _graph_section,
             "online": _online_section}
    frags, seconds = [], {}
    with plt.rc_context(_RC):
        for key, title in _SECTIONS:
            t0 = time.perf_counter()
            progress.section(title)
            res, frag = funcs[key](ctx)
            seconds[key] = time.perf_counter() - t0
            summary[key] = res
            frags.append((key, title, frag))
    total = progress.elapsed()
    root = pathlib.Path(ntkit.__file__).resolve().parents[1]
    git = _git_commit(root)
    command = "ntkit tour" + (" --quick" if quick else "") + f" --seed {seed}" + f" --out {out}"
    summary["run"] = {"date": started.isoformat(timespec="seconds"), "seed": seed, "quick": quick,
                      "seconds": total, "section_seconds": seconds, "versions": _versions(),
                      "git_commit": None if git is None else git[0],
                      "git_uncommitted_changes": None if git is None else git[1],
                      "command": command, "machine": f"{platform.system()} {platform.machine()}, "
                                                     f"{os.cpu_count()} CPUs"}
    page = _page(summary, frags, info, root, out, n_all)
    (out / "report.html").write_text(page)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    progress.done(f"wrote {out}/report.html ({total:.0f} s)")
    return summary
