"""``ntkit tour``: what the library can do today, on data bundled with scikit-learn.

It evaluates every closed-form kernel on the digits data set, shows their Gram
matrices, solves kernel ridge classification through the matrix-free
``KernelOperator`` (conjugate gradients, no Gram matrix stored), times the
backends against scikit-learn on the same data, trains an MLP and a CNN in JAX,
computes their empirical NTKs (full / trace / pseudo-NTK and the gap between
them), fits NTK surrogates and shows their fidelity and attributions, fits
EigenPro with ReluNTK and RBF kernels, and writes a self-contained
``report.html`` (figures embedded) and ``summary.json``. Still to come (their
issues): learning-curve theory, graph random features, online learners.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
import pathlib
import time

import numpy as np

from ._timing import best_time as _best_time

logger = logging.getLogger(__name__)


def _figure_to_data_uri(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def run_tour(out="tour", *, quick=False, verbose=True) -> dict:
    """Run the tour and write ``out/report.html`` and ``out/summary.json``; return the summary."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy.sparse.linalg import cg
    from sklearn.datasets import load_digits
    from sklearn.metrics.pairwise import rbf_kernel
    from sklearn.model_selection import train_test_split
    from tqdm.auto import tqdm

    import ntkit
    from ntkit.kernels import RBF, ArcCosine, Laplace, Matern, Polynomial, ReluNNGP, ReluNTK
    from ntkit.ops import KernelOperator, gram, kernel_matvec

    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    digits = load_digits()
    X = digits.data / 16.0
    y = digits.target
    if quick:
        X, y = X[:400], y[:400]
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)
    d = X.shape[1]
    ls = float(np.sqrt(d) / 2)
    kernels = {
        "RBF": RBF(ls),
        "Laplace": Laplace(ls * 2),
        "Matern 5/2": Matern(ls, nu=2.5),
        "Polynomial (3)": Polynomial(3, gamma=1.0 / d, coef0=1.0),
        "Arc-cosine (1)": ArcCosine(1),
        "ReLU NNGP (depth 3)": ReluNNGP(depth=3, bias_std=0.1),
        "ReLU NTK (depth 3)": ReluNTK(depth=3, bias_std=0.1),
    }
    info = ntkit.backends_info()
    summary = {"ntkit": ntkit.__version__, "n_train": int(len(y_tr)), "n_test": int(len(y_te)),
               "n_features": d, "native": bool(info["native"].get("available")), "kernels": {}}
    order = np.argsort(y_tr, kind="stable")
    Y_tr = np.eye(10)[y_tr]
    ridge_rel = 1e-3  # ridge = ridge_rel * n * (mean kernel diagonal): the same strength for every kernel scale
    n_show = len(kernels)
    fig, axes = plt.subplots(1, n_show, figsize=(2.6 * n_show, 2.8))
    for ax, (name, k) in zip(axes, tqdm(kernels.items(), desc="kernels", disable=not verbose)):
        t0 = time.perf_counter()
        K = gram(k, X_tr)
        t_gram = time.perf_counter() - t0
        ax.imshow(K[np.ix_(order, order)], cmap="viridis")
        ax.set_title(name, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
        # Kernel ridge classification, matrix-free: (K + ridge I) alpha = Y by CG, one column per class.
        scale = float(np.mean(k.diag(X_tr)))
        A = KernelOperator(k, X_tr, ridge=ridge_rel * len(y_tr) * scale)
        t0 = time.perf_counter()
        alpha = np.column_stack([cg(A, Y_tr[:, c], rtol=1e-8, maxiter=2000)[0] for c in range(10)])
        t_solve = time.perf_counter() - t0
        pred = np.argmax(kernel_matvec(k, X_te, X_tr, alpha), axis=1)
        acc = float(np.mean(pred == y_te))
        summary["kernels"][name] = {"params": {kk: (vv if np.isscalar(vv) else list(np.ravel(vv)))
                                               for kk, vv in k.get_params().items()},
                                    "gram_seconds": t_gram, "cg_seconds": t_solve, "test_accuracy": acc,
                                    "mean_diag": scale}
        logger.info("%s: accuracy %.3f", name, acc)
    fig.suptitle("Gram matrices on digits (training set sorted by label)", fontsize=10)
    gram_png = _figure_to_data_uri(fig)
    plt.close(fig)

    # A small benchmark on the same data: RBF Gram of all digits, each backend vs scikit-learn.
    Xb = np.ascontiguousarray(np.vstack([X] * (1 if quick else 2)))
    gamma = 1.0 / (2 * ls * ls)
    bench = {"n": int(Xb.shape[0]), "d": d, "dtype": "float64",
             "sklearn_rbf_kernel": _best_time(lambda: rbf_kernel(Xb, gamma=gamma))}
    for backend in ["numpy", "jax"] + (["native"] if summary["native"] else []):
        gram(RBF(ls), Xb, backend=backend)  # warm-up (jax compiles)
        bench[backend] = _best_time(lambda b=backend: gram(RBF(ls), Xb, backend=b))
    summary["benchmark"] = bench

    fig, ax = plt.subplots(figsize=(5, 2.6))
    names = [n for n in ("sklearn_rbf_kernel", "numpy", "jax", "native") if n in bench]
    ax.barh(names, [bench[n] * 1e3 for n in names], color=["#999"] + ["#3a7"] * (len(names) - 1))
    ax.set_xlabel("milliseconds (best of 3)")
    ax.set_title(f"RBF Gram, n = {bench['n']}, d = {d}, float64", fontsize=9)
    bench_png = _figure_to_data_uri(fig)
    plt.close(fig)

    net_summary, net_html = _networks_section(X_tr, y_tr, X_te, y_te, quick=quick, verbose=verbose)
    summary["networks"] = net_summary
    feat_summary, feat_html = _features_section(X_tr, y_tr, X_te, y_te, quick=quick)
    summary["features"] = feat_summary
    theory_summary, theory_html = _theory_section(X, y, quick=quick)
    summary["theory"] = theory_summary
    graph_summary, graph_html = _graph_section(X, y, quick=quick)
    summary["graphs"] = graph_summary
    online_summary, online_html = _online_section(X, y, quick=quick)
    summary["online"] = online_summary

    rows = "".join(
        f"<tr><td>{html.escape(n)}</td><td>{r['test_accuracy']:.3f}</td><td>{r['gram_seconds'] * 1e3:.1f}</td>"
        f"<td>{r['cg_seconds']:.2f}</td></tr>"
        for n, r in summary["kernels"].items()
    )
    buf = io.StringIO()
    ntkit.show_backends(file=buf)
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>ntkit tour</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}td,th{{padding:2px 10px;text-align:right}}
td:first-child{{text-align:left}}pre{{background:#f4f4f4;padding:8px}}</style></head><body>
<h1>ntkit tour</h1>
<p>Digits (scikit-learn's bundled copy), {summary['n_train']} training and {summary['n_test']} test images,
{d} features scaled to [0, 1].</p>
<h2>Backends</h2><pre>{html.escape(buf.getvalue())}</pre>
<h2>Kernels</h2><img src="{gram_png}" style="max-width:100%">
<h2>Kernel ridge classification (matrix-free CG through <code>KernelOperator</code>)</h2>
<table><tr><th>kernel</th><th>test accuracy</th><th>Gram (ms)</th><th>CG solve (s)</th></tr>{rows}</table>
<h2>Speed on the same data</h2><img src="{bench_png}">
{net_html}
{feat_html}
{theory_html}
{graph_html}
{online_html}
</body></html>"""
    (out / "report.html").write_text(page)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def _networks_section(X_tr, y_tr, X_te, y_te, *, quick, verbose):
    """Train an MLP and a CNN on digits in JAX; their eNTKs, NTK surrogates, attributions, EigenPro."""
    import jax
    import matplotlib.pyplot as plt

    from .estimators import EigenProClassifier
    from .explain import NTKSurrogate, plot_attributions, plot_fidelity
    from .kernels import RBF, ReluNTK
    from .ntk import empirical_ntk
    from .ntk.models import cnn, mlp, train_classifier

    X_tr = X_tr.astype(np.float32)
    X_te = X_te.astype(np.float32)
    nets = {
        "MLP 64-128-10": (mlp((64, 128, 10), "relu"), X_tr, X_te),
        "CNN 2x(3x3, 8 ch)": (cnn((8, 8, 1), (8, 8), 10), X_tr.reshape(-1, 8, 8, 1), X_te.reshape(-1, 8, 8, 1)),
    }
    epochs = 15 if quick else 60
    out = {}
    figs = []
    n_k = 60 if quick else 200
    for name, ((init, apply), xtr, xte) in nets.items():
        t0 = time.perf_counter()
        params = train_classifier(apply, init(jax.random.PRNGKey(0)), xtr, y_tr, epochs=epochs, learning_rate=1e-2)
        t_train = time.perf_counter() - t0
        net_acc = float(np.mean(np.argmax(np.asarray(apply(params, xte)), 1) == y_te))
        rec = {"train_seconds": t_train, "test_accuracy": net_acc, "entk_seconds": {}}
        for kind in ("full", "trace", "sum_logits"):
            empirical_ntk(apply, params, xte[:n_k], kind=kind)  # compile (timed below: the steady call)
            t0 = time.perf_counter()
            K = empirical_ntk(apply, params, xte[:n_k], kind=kind)
            rec["entk_seconds"][kind] = time.perf_counter() - t0
            if kind == "full":
                full = K
            if kind == "sum_logits":
                gap = np.linalg.norm(full - np.einsum("nm,ab->nmab", K, np.eye(10))) / np.linalg.norm(full)
                rec["pntk_relative_gap"] = float(gap)
        t0 = time.perf_counter()
        sur = NTKSurrogate(apply, params).fit(xtr, y_tr)
        fid = sur.fidelity(xte, y_te)
        rec["surrogate"] = {"kendall_tau": fid.kendall_tau, "accuracy": fid.surrogate_accuracy,
                            "label_agreement": fid.label_agreement, "seconds": time.perf_counter() - t0}
        fig, ax = plt.subplots(figsize=(3.6, 3.4))
        plot_fidelity(sur, xte, ax=ax, title=f"{name}: τ = {fid.kendall_tau:.2f}")
        figs.append(_figure_to_data_uri(fig))
        plt.close(fig)
        if name.startswith("MLP"):
            att = sur.attribute(xte[:4], top_k=4)
            fig = plot_attributions(att, X_te[:4], X_tr, image_shape=(8, 8))
            att_png = _figure_to_data_uri(fig)
            plt.close(fig)
        out[name] = rec
        logger.info("%s: accuracy %.3f, surrogate tau %.2f", name, net_acc, fid.kendall_tau)
    kernels = {"EigenPro, ReluNTK (depth 1)": ReluNTK(depth=1, bias_std=0.1),
               "EigenPro, RBF": RBF(float(np.sqrt(X_tr.shape[1]) / 2))}
    ep = {}
    for name, k in kernels.items():
        t0 = time.perf_counter()
        clf = EigenProClassifier(k, epochs=5 if quick else 10, random_state=0).fit(X_tr, y_tr)
        ep[name] = {"test_accuracy": float(clf.score(X_te, y_te)), "seconds": time.perf_counter() - t0}
    out["eigenpro"] = ep
    rows = "".join(
        f"<tr><td>{html.escape(n)}</td><td>{r['test_accuracy']:.3f}</td><td>{r['train_seconds']:.1f}</td>"
        f"<td>{r['entk_seconds']['full'] * 1e3:.0f} / {r['entk_seconds']['trace'] * 1e3:.0f} / "
        f"{r['entk_seconds']['sum_logits'] * 1e3:.0f}</td><td>{r['pntk_relative_gap']:.3f}</td>"
        f"<td>{r['surrogate']['kendall_tau']:.3f}</td><td>{r['surrogate']['accuracy']:.3f}</td></tr>"
        for n, r in out.items() if n != "eigenpro")
    ep_rows = "".join(f"<tr><td>{html.escape(n)}</td><td>{r['test_accuracy']:.3f}</td><td>{r['seconds']:.1f}</td></tr>"
                      for n, r in ep.items())
    imgs = "".join(f'<img src="{f}">' for f in figs)
    frag = f"""<h2>Networks, their empirical NTKs and NTK surrogates</h2>
<p>Both networks are trained in JAX on the training images (Adam, {epochs} epochs). eNTK times are for
{n_k} test images (full (n, n, 10, 10) / trace / sum-of-logits, structured implementation); the pNTK gap is
‖Θ − pNTK ⊗ I‖ / ‖Θ‖. The surrogate is kernel logistic regression on the cosine-normalised trace NTK fitted to
the training labels; τ is Kendall's τ between surrogate and network test logits.</p>
<table><tr><th>network</th><th>test accuracy</th><th>train (s)</th><th>eNTK ms full / trace / pNTK</th>
<th>pNTK gap</th><th>surrogate τ</th><th>surrogate accuracy</th></tr>{rows}</table>
{imgs}
<h3>Which training images support each prediction (MLP surrogate)</h3><img src="{att_png}" style="max-width:100%">
<h3>Kernel machines fitted by EigenPro on the same data</h3>
<table><tr><th>model</th><th>test accuracy</th><th>fit (s)</th></tr>{ep_rows}</table>"""
    return out, frag


def _features_section(X_tr, y_tr, X_te, y_te, *, quick):
    """Random features and Nyström: kernel error and test accuracy against the feature count."""
    import matplotlib.pyplot as plt
    from sklearn.linear_model import RidgeClassifier

    from .features import Nystroem, RandomFourierFeatures, approximation_error
    from .kernels import RBF

    ls = float(np.sqrt(X_tr.shape[1]) / 2)
    k = RBF(ls)
    Ds = [64, 256, 1024] if quick else [64, 128, 256, 512, 1024, 2048]
    makers = {"RFF": lambda D: RandomFourierFeatures(lengthscale=ls, n_components=D, random_state=0),
              "orthogonal RFF": lambda D: RandomFourierFeatures(lengthscale=ls, n_components=D, orthogonal=True,
                                                                random_state=0),
              "Nyström (uniform)": lambda D: Nystroem(k, n_components=min(D, len(X_tr)), random_state=0),
              "Nyström (ridge leverage)": lambda D: Nystroem(k, n_components=min(D, len(X_tr)), sampling="rls",
                                                             random_state=0)}
    sub = X_tr[:500]
    res = {}
    for name, make in makers.items():
        res[name] = []
        for D in Ds:
            t0 = time.perf_counter()
            f = make(D).fit(X_tr)
            clf = RidgeClassifier(alpha=1e-3).fit(f.transform(X_tr), y_tr)
            acc = float(clf.score(f.transform(X_te), y_te))
            err = approximation_error(f, k, sub).frobenius
            res[name].append({"D": D, "error": err, "accuracy": acc, "seconds": time.perf_counter() - t0})
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.3))
    for name, rows in res.items():
        axes[0].loglog([r["D"] for r in rows], [r["error"] for r in rows], "o-", label=name)
        axes[1].semilogx([r["D"] for r in rows], [r["accuracy"] for r in rows], "o-", label=name)
    axes[0].set_xlabel("features D")
    axes[0].set_ylabel("relative Frobenius error of ΦΦᵀ")
    axes[1].set_xlabel("features D")
    axes[1].set_ylabel("test accuracy (ridge on Φ)")
    axes[0].legend(fontsize=7)
    fig.suptitle(f"RBF kernel (lengthscale {ls:.1f}) on digits", fontsize=9)
    fig.tight_layout()
    png = _figure_to_data_uri(fig)
    plt.close(fig)
    frag = f"""<h2>Random features and Nyström (<code>ntkit.features</code>)</h2>
<p>Each map Φ estimates the RBF kernel (ΦΦᵀ ≈ K); a linear ridge classifier on Φ is then a kernel machine
at O(nD²) cost. Left: kernel error on 500 training images; right: test accuracy.</p><img src="{png}">"""
    return res, frag


def _theory_section(X, y, *, quick):
    """Predicted (ntkit.theory on the data set's own spectrum) vs measured KRR learning curve."""
    import matplotlib.pyplot as plt

    from .kernels import RBF, ReluNTK
    from .theory import estimate_spectrum, profiles, risk_curve

    Y = np.eye(10)[y]
    Ns = np.array([20, 50, 100, 200] if quick else [20, 50, 100, 200, 400, 800])
    draws = 5 if quick else 20
    rng = np.random.default_rng(0)
    out = {}
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for name, k, ridge in (("RBF (lengthscale 4)", RBF(4.0), 1e-4), ("ReLU NTK (depth 2)", ReluNTK(depth=2), 1e-4)):
        sp = estimate_spectrum(k, X, Y)
        pred = risk_curve(sp.eigenvalues, sp.target_coeffs, Ns, profile=profiles.krr(ridge)).risk
        K = k(X)
        meas, se = [], []
        for n in Ns:
            errs = []
            for _ in range(draws):
                i = rng.choice(len(X), n, replace=False)
                a = np.linalg.solve(K[np.ix_(i, i)] + n * ridge * np.eye(n), Y[i])
                errs.append(np.mean(np.sum((K[:, i] @ a - Y) ** 2, axis=1)))
            meas.append(float(np.mean(errs)))
            se.append(float(np.std(errs, ddof=1) / np.sqrt(draws)))
        line = ax.loglog(Ns, pred, "-", label=f"{name}: predicted")[0]
        ax.errorbar(Ns, meas, yerr=se, fmt="o", color=line.get_color(), ms=4, label=f"{name}: measured")
        out[name] = {"n": Ns.tolist(), "predicted": [float(p) for p in pred], "measured": meas,
                     "max_relative_gap": float(np.max(np.abs(np.asarray(pred) / np.asarray(meas) - 1)))}
    ax.set_xlabel("training points N")
    ax.set_ylabel("test MSE (one-hot, whole set)")
    ax.legend(fontsize=7)
    ax.set_title("KRR learning curve on digits: theory vs experiment", fontsize=9)
    fig.tight_layout()
    png = _figure_to_data_uri(fig)
    plt.close(fig)
    gaps = ", ".join(f"{n}: {100 * r['max_relative_gap']:.1f}%" for n, r in out.items())
    frag = f"""<h2>Predicted learning curves (<code>ntkit.theory</code>)</h2>
<p>The eigen-decomposition of each kernel on all 1797 digits gives λ and the labels' coefficients; the
eigenlearning equations then predict kernel ridge regression's test error for N random training images
(the data set as the population). Points: measured over {draws} random draws (± one standard error).
Largest gap between prediction and measurement: {gaps}.</p><img src="{png}">"""
    return out, frag


def _graph_section(X, y, *, quick):
    """Graph random features on the 10-nearest-neighbour graph of the digits: labels from 10% of the nodes."""
    import matplotlib.pyplot as plt
    from sklearn.neighbors import kneighbors_graph

    from .graphs import GraphKernelRidge, exact_graph_kernel

    W = kneighbors_graph(X, 10, mode="connectivity", include_self=False)
    W = ((W + W.T) > 0).astype(np.float64)
    n = W.shape[0]
    rng = np.random.default_rng(0)
    train = np.sort(rng.choice(n, max(n // 10, 20), replace=False))
    test = np.setdiff1d(np.arange(n), train)
    out = {"n_nodes": int(n), "n_edges": int(W.nnz // 2), "n_labelled": int(len(train)), "walks": {}}
    walks = [16, 64, 256] if quick else [16, 64, 256, 1024]
    for m in walks:
        t0 = time.perf_counter()
        model = GraphKernelRidge(sigma=0.9, n_walks=m, p_halt=0.2, repelling=True, random_state=0)
        acc = float(np.mean(model.fit(W, train, y[train]).predict(test) == y[test]))
        out["walks"][m] = {"accuracy": acc, "seconds": time.perf_counter() - t0}
    t0 = time.perf_counter()
    K = exact_graph_kernel(W, sigma=0.9)
    A = np.linalg.solve(K[np.ix_(train, train)] + 1e-2 * np.eye(len(train)), np.eye(10)[y[train]])
    out["exact_accuracy"] = float(np.mean(np.argmax(K[np.ix_(test, train)] @ A, 1) == y[test]))
    out["exact_seconds"] = time.perf_counter() - t0
    fig, ax = plt.subplots(figsize=(4.6, 3.2))
    ax.semilogx(walks, [out["walks"][m]["accuracy"] for m in walks], "o-", label="GRF + CG (GraphKernelRidge)")
    ax.axhline(out["exact_accuracy"], color="k", ls="--", lw=1, label="exact kernel ridge")
    ax.set_xlabel("repelling walks per node")
    ax.set_ylabel("accuracy on unlabelled nodes")
    ax.legend(fontsize=7)
    ax.set_title("Regularised-Laplacian kernel on the digits' 10-NN graph", fontsize=9)
    fig.tight_layout()
    png = _figure_to_data_uri(fig)
    plt.close(fig)
    best = out["walks"][walks[-1]]
    frag = f"""<h2>Graph random features (<code>ntkit.graphs</code>)</h2>
<p>The digits as the nodes of their 10-nearest-neighbour graph ({n} nodes, {out['n_edges']} edges); labels of
{len(train)} nodes (10%) predict the rest through the regularised-Laplacian kernel (I − U)⁻¹, σ = 0.9, estimated
by graph random features (sparse Φ from random walks, ΦΦᵀ ≈ K) and solved by CG without any n × n matrix.
With {walks[-1]} walks: accuracy {best['accuracy']:.3f} in {best['seconds']:.2f} s; the exact dense kernel:
{out['exact_accuracy']:.3f} in {out['exact_seconds']:.2f} s.</p><img src="{png}">"""
    return out, frag


def _online_section(X, y, *, quick):
    """Online kernel regression over the digits as a stream: predict before seeing each label."""
    import matplotlib.pyplot as plt

    from .online import AOGDALD, KOGD, NONSALD, regret_curve

    target = np.where(y >= 5, 1.0, -1.0)  # a ±1 regression target: "is the digit ≥ 5?"
    order = np.random.default_rng(0).permutation(len(y))
    Xs, ys = X[order], target[order]
    from .kernels import RBF

    k = RBF(2.5)  # digits scaled to [0, 1]: typical distances 3–4
    T = len(ys)
    learners = {"NONS-ALD": NONSALD(k, horizon=T), "AOGD-ALD": AOGDALD(k, horizon=T), "KOGD": KOGD(k)}
    out = {}
    fig, ax = plt.subplots(figsize=(5.4, 3.6))
    for name, est in learners.items():
        t0 = time.perf_counter()
        rc = regret_curve(est, Xs, ys)
        out[name] = {"cumulative_loss": float(rc.cumulative_loss[-1]), "regret": float(rc.regret[-1]),
                     "dictionary_size": int(est.fit(Xs, ys).dictionary_size_),
                     "comparator_loss": float(rc.comparator_cumulative_loss[-1]),
                     "seconds": time.perf_counter() - t0}
        ax.loglog(rc.t, rc.cumulative_loss, label=f"{name}")
    ax.loglog(rc.t, rc.comparator_cumulative_loss, "k--", lw=1, label="kernel ridge in hindsight")
    ax.set_xlabel("round t")
    ax.set_ylabel("cumulative square loss")
    ax.legend(fontsize=7)
    ax.set_title(f"Online regression over {len(ys)} digits (target: digit ≥ 5)", fontsize=9)
    fig.tight_layout()
    png = _figure_to_data_uri(fig)
    plt.close(fig)
    rows = "".join(f"<tr><td>{html.escape(n)}</td><td>{r['cumulative_loss']:.1f}</td><td>{r['regret']:.1f}</td>"
                   f"<td>{r['dictionary_size']}</td><td>{r['seconds']:.2f}</td></tr>" for n, r in out.items())
    frag = f"""<h2>Online kernel regression (<code>ntkit.online</code>)</h2>
<p>The images arrive one by one; each learner predicts before it sees the label and pays the square loss.
Regret is measured against kernel ridge regression fitted on the whole stream afterwards.</p>
<table><tr><th>learner</th><th>cumulative loss</th><th>regret</th><th>dictionary / support</th><th>time (s)</th></tr>
{rows}</table>
<img src="{png}">"""
    return out, frag
