"""The seven sections of ``ntkit tour``: each takes the shared context and returns ``(summary, html)``."""

from __future__ import annotations

import html
import time

import numpy as np

from .._timing import best_time as _best_time
from ._report import _gallery, _log_ticks, _nice_log_values, _params_text, _pct


def _kernels_section(ctx):
    """Every closed-form kernel: its Gram matrix and a kernel ridge classifier (NTKClassifier, solver='auto')."""
    import matplotlib.pyplot as plt

    from ..estimators import NTKClassifier
    from ..kernels import RBF, ArcCosine, Laplace, Matern, Polynomial, ReluNNGP, ReluNTK
    from ..ops import gram

    X_tr, y_tr, X_te, y_te, progress = ctx["X_tr"], ctx["y_tr"], ctx["X_te"], ctx["y_te"], ctx["progress"]
    n, d = X_tr.shape
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
    ridge_rel = 1e-3  # ridge = ridge_rel * n * (mean kernel diagonal): the same strength for every kernel scale
    order = np.argsort(y_tr, kind="stable")
    counts = np.bincount(y_tr[order], minlength=10)
    edges = np.r_[0, np.cumsum(counts)]
    centres = (edges[:-1] + edges[1:]) / 2 - 0.5
    fig, axes = plt.subplots(2, 4, figsize=(10.8, 5.6))
    res = {}
    bar = progress.bar(total=len(kernels), desc="kernels")
    for ax, (name, k) in zip(axes.flat, kernels.items()):
        t0 = time.perf_counter()
        K = gram(k, X_tr)
        t_gram = time.perf_counter() - t0
        im = ax.imshow(K[np.ix_(order, order)], cmap="viridis", interpolation="nearest")
        cb = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03)
        cb.ax.tick_params(labelsize=8)
        ax.set_title(name, fontsize=10)
        ax.set_xticks(centres, [str(c) for c in range(10)], fontsize=8)
        ax.set_yticks(centres, [str(c) for c in range(10)], fontsize=8)
        ax.tick_params(length=0, pad=1)
        scale = float(np.mean(np.diag(K)))
        ridge = ridge_rel * n * scale
        clf = NTKClassifier(k, ridge=ridge)  # solver="auto": Cholesky at this size
        t0 = time.perf_counter()
        clf.fit(X_tr, y_tr)
        t_fit = time.perf_counter() - t0
        t0 = time.perf_counter()
        acc = float(np.mean(clf.predict(X_te) == y_te))
        t_pred = time.perf_counter() - t0
        res[name] = {"params": {p: (v if np.isscalar(v) else list(np.ravel(v))) for p, v in k.get_params().items()},
                     "ridge": ridge, "solver": clf.solver_, "n_iter": int(clf.n_iter_), "gram_seconds": t_gram,
                     "fit_seconds": t_fit, "predict_seconds": t_pred, "test_accuracy": acc, "mean_diag": scale}
        bar.set_postfix_str(f"{name}: {acc:.3f}")
        bar.update()
    bar.close()
    last = axes.flat[-1]
    last.axis("off")
    last.text(0.0, 0.95, f"Rows and columns: the {n} training\nimages sorted by label; the ticks\nmark each "
              "digit's block.\n\nColour: k(x, x′) on each kernel's\nown scale (its colour bar).\n\nBright diagonal "
              "blocks: images\nof one digit resemble each other\nunder that kernel.", va="top", fontsize=9,
              transform=last.transAxes)
    fig.tight_layout()
    fig_html = ctx["report"].figure(fig, f"Gram matrices K(X, X) of the seven closed-form kernels on the {n} training "
                                    "images (sorted by label). Each panel has its own colour scale.")
    # The matrix-free path, for comparison: the RBF problem by conjugate gradients through KernelOperator.
    k = kernels["RBF"]
    ridge = res["RBF"]["ridge"]
    clf = NTKClassifier(k, ridge=ridge, solver="cg", tol=1e-8)
    t0 = time.perf_counter()
    clf.fit(X_tr, y_tr)
    t_fit = time.perf_counter() - t0
    t0 = time.perf_counter()
    acc = float(np.mean(clf.predict(X_te) == y_te))
    cg = {"kernel": "RBF", "ridge": ridge, "solver": "cg", "tol": 1e-8, "n_iter": int(clf.n_iter_),
          "fit_seconds": t_fit, "predict_seconds": time.perf_counter() - t0, "test_accuracy": acc}
    best = max(res, key=lambda m: res[m]["test_accuracy"])
    progress.note(f"best: {best}, test accuracy {res[best]['test_accuracy']:.3f}")

    def row(name, r, params, it):
        return (f"<tr><td>{html.escape(name)}</td><td class='l'><code>{html.escape(params)}</code></td>"
                f"<td>{r['ridge']:.3g}</td><td>{r['solver']}</td><td>{it}</td>"
                f"<td>{r['gram_seconds'] * 1e3:.0f}</td><td>{r['fit_seconds']:.2f}</td>"
                f"<td>{r['predict_seconds']:.2f}</td><td>{r['test_accuracy']:.3f}</td></tr>")

    rows = "".join(row(m, r, _params_text(kernels[m]), "direct") for m, r in res.items())
    rows += row("RBF, matrix-free", dict(cg, gram_seconds=float("nan")), _params_text(k) + ", tol=1e-8",
                f"{cg['n_iter']}").replace("<td>nan</td>", "<td>—</td>")
    frag = f"""<h2>Kernels and kernel ridge classification (<code>ntkit.kernels</code>, <code>NTKClassifier</code>)</h2>
<p>Seven closed-form kernels on the digits; the infinite-width ReLU kernels (NNGP and NTK, depth 3, bias std 0.1)
follow neural-tangents' conventions. Lengthscales are √d / 2 = {ls:.1f} (Laplace: twice that), d = {d}.</p>
{fig_html}
<p>Kernel ridge classification with <code>NTKClassifier</code> (one-vs-rest ±1 targets), ridge = 10⁻³ · n · mean
k(x, x) (n = {n}), so every kernel is regularised alike whatever its scale. Its <code>solver="auto"</code> picks a
dense Cholesky factorisation up to 6 000 training points — one factorisation, no iterations — and matrix-free
conjugate gradients through <code>KernelOperator</code> (no Gram matrix stored) up to 60 000, EigenPro beyond. The
last row solves the RBF problem with <code>solver="cg"</code> for comparison: iterations are the most over the ten
one-vs-rest columns. Gram: one <code>ntkit.ops.gram</code> call on the training set; fit includes its own Gram
matrix; predict is the {len(y_te)} test images.</p>
<table><tr><th>kernel</th><th class="l">hyper-parameters</th><th>ridge</th><th>solver</th><th>iterations</th>
<th>Gram (ms)</th><th>fit (s)</th><th>predict (s)</th><th>test accuracy</th></tr>{rows}</table>"""
    res["RBF"]["cg"] = cg
    return res, frag


def _speed_section(ctx):
    """RBF Gram of every digit: each backend against scikit-learn."""
    import matplotlib.pyplot as plt
    from sklearn.metrics.pairwise import rbf_kernel

    from ..kernels import RBF
    from ..ops import gram

    X, progress = np.ascontiguousarray(ctx["X"]), ctx["progress"]
    n, d = X.shape
    ls = float(np.sqrt(d) / 2)
    gamma = 1.0 / (2 * ls * ls)
    import ntkit

    native = bool(ntkit.backends_info()["native"].get("available"))
    names = {"sklearn": "scikit-learn rbf_kernel", "numpy": "ntkit, numpy", "jax": "ntkit, jax",
             "native": "ntkit, native (C++)"}
    fns = {"sklearn": lambda: rbf_kernel(X, gamma=gamma)}
    for backend in ["numpy", "jax"] + (["native"] if native else []):
        fns[backend] = lambda b=backend: gram(RBF(ls), X, backend=b)
    bench = {"n": int(n), "d": int(d), "dtype": "float64"}
    for key in progress.bar(list(fns), desc="backends"):
        fns[key]()  # warm-up (jax compiles)
        bench[key] = _best_time(fns[key])
    fig, ax = plt.subplots(figsize=(6.4, 2.4))
    keys = [k for k in names if k in bench]
    ms = [bench[k] * 1e3 for k in keys]
    ax.barh([names[k] for k in keys], ms, color=["#999"] + ["#3a7"] * (len(keys) - 1))
    for i, m in enumerate(ms):
        ax.text(m, i, f" {m:.1f} ms", va="center", fontsize=8)
    ax.set_xlim(0, max(ms) * 1.25)
    ax.invert_yaxis()
    ax.set_xlabel("milliseconds (best of 3, after a warm-up call)")
    ax.set_title(f"RBF Gram matrix of {n} digits (n × n, d = {d}, float64)")
    fig.tight_layout()
    fig_html = ctx["report"].figure(fig, f"Time to compute the {n} × {n} RBF Gram matrix of the digits (lengthscale "
                                    f"{ls:.1f}), each ntkit backend against scikit-learn's <code>rbf_kernel</code> on "
                                    "the same array in the same run.")
    frag = f"""<h2>Speed of the Gram engine (<code>ntkit.ops.gram</code>)</h2>
<p>The same matrix by every backend this installation has: <code>numpy</code> (the reference), <code>jax</code>
(jit) and <code>native</code> (C++/OpenMP, fused kernel tiles), against scikit-learn. <code>benchmarks/</code>
(<code>make bench</code>) has the full comparison at larger sizes.</p>{fig_html}"""
    return bench, frag


def _networks_section(ctx):
    """Train an MLP and a CNN on digits in JAX; their eNTKs, NTK surrogates, attributions, EigenPro."""
    import jax
    import matplotlib.pyplot as plt

    from ..estimators import EigenProClassifier
    from ..explain import NTKSurrogate, plot_attributions, plot_fidelity
    from ..kernels import RBF, ReluNTK
    from ..ntk import empirical_ntk
    from ..ntk.models import cnn, mlp, train_classifier

    quick, seed, progress = ctx["quick"], ctx["seed"], ctx["progress"]
    X_tr = ctx["X_tr"].astype(np.float32)
    X_te = ctx["X_te"].astype(np.float32)
    y_tr, y_te = ctx["y_tr"], ctx["y_te"]
    nets = {
        "MLP 64-128-10": (mlp((64, 128, 10), "relu"), X_tr, X_te),
        "CNN 2x(3x3, 8 ch)": (cnn((8, 8, 1), (8, 8), 10), X_tr.reshape(-1, 8, 8, 1), X_te.reshape(-1, 8, 8, 1)),
    }
    epochs = 15 if quick else 60
    n_k = 60 if quick else 200
    n_q = 4
    ep_kernels = {"EigenPro, ReluNTK (depth 1)": ReluNTK(depth=1, bias_std=0.1),
                  "EigenPro, RBF": RBF(float(np.sqrt(X_tr.shape[1]) / 2))}
    ep_epochs = 5 if quick else 10
    steps = [(name, s) for name in nets for s in ("train", "eNTK", "surrogate")] + [(m, "fit") for m in ep_kernels]
    bar = progress.bar(total=len(steps), desc="networks")
    out = {}
    fig_f, axes_f = plt.subplots(1, 2, figsize=(8.4, 3.6))
    for ax_f, (name, ((init, apply), xtr, xte)) in zip(axes_f, nets.items()):
        bar.set_postfix_str(f"{name}: training ({epochs} epochs)")
        t0 = time.perf_counter()
        params = train_classifier(apply, init(jax.random.PRNGKey(seed)), xtr, y_tr, epochs=epochs,
                                  learning_rate=1e-2, seed=seed)
        t_train = time.perf_counter() - t0
        net_pred = np.argmax(np.asarray(apply(params, xte)), 1)
        net_acc = float(np.mean(net_pred == y_te))
        bar.update()
        bar.set_postfix_str(f"{name}: eNTKs of {n_k} images")
        rec = {"train_seconds": t_train, "epochs": epochs, "test_accuracy": net_acc, "entk_seconds": {}}
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
        bar.update()
        bar.set_postfix_str(f"{name}: NTK surrogate")
        t0 = time.perf_counter()
        sur = NTKSurrogate(apply, params).fit(xtr, y_tr)
        fid = sur.fidelity(xte, y_te)
        rec["surrogate"] = {"kendall_tau": fid.kendall_tau, "accuracy": fid.surrogate_accuracy,
                            "label_agreement": fid.label_agreement, "seconds": time.perf_counter() - t0}
        plot_fidelity(sur, xte, ax=ax_f, title=f"{name}: Kendall τ = {fid.kendall_tau:.2f}")
        if name.startswith("MLP"):
            att = sur.attribute(xte[:n_q], top_k=4)
            gallery = _gallery(plot_attributions(att, X_te[:n_q], X_tr, image_shape=(8, 8)), att, y_te[:n_q], y_tr,
                               net_pred[:n_q])
            rec["attributions"] = [{"test_index": i, "label": int(y_te[i]), "surrogate_prediction":
                                    int(att.logit_index[i]), "network_prediction": int(net_pred[i]),
                                    "support_index": att.support_index[i].tolist(),
                                    "support_label": np.asarray(y_tr)[att.support_index[i]].tolist(),
                                    "support_contribution": att.support_contribution[i].tolist(),
                                    "oppose_index": att.oppose_index[i].tolist(),
                                    "oppose_label": np.asarray(y_tr)[att.oppose_index[i]].tolist(),
                                    "oppose_contribution": att.oppose_contribution[i].tolist()}
                                   for i in range(n_q)]
        bar.update()
        out[name] = rec
        progress.note(f"{name}: test accuracy {net_acc:.3f}, surrogate τ {fid.kendall_tau:.2f}")
    fig_f.tight_layout()
    ep = {}
    for name, k in ep_kernels.items():
        bar.set_postfix_str(name)
        t0 = time.perf_counter()
        clf = EigenProClassifier(k, epochs=ep_epochs, random_state=seed).fit(X_tr, y_tr)
        ep[name] = {"test_accuracy": float(clf.score(X_te, y_te)), "seconds": time.perf_counter() - t0,
                    "epochs": ep_epochs, "params": _params_text(k)}
        bar.update()
    bar.close()
    out["eigenpro"] = ep
    report = ctx["report"]
    fid_html = report.figure(fig_f, "Each network's test logits (all ten per image) against its NTK surrogate's; τ is "
                             "Kendall's rank correlation between the two.")
    gal_html = report.figure(gallery, f"The MLP's NTK surrogate explains its prediction for the first {n_q} test "
                             "images (left column: the image, its true label and the two predictions). The next four "
                             "columns are the training images that raise the score of the predicted class most "
                             "(green: contribution α<sub>j</sub> k(x, x<sub>j</sub>) to that score), the last four "
                             "those that lower it most (red); under each, that training image's label.")
    rows = "".join(
        f"<tr><td>{html.escape(n)}</td><td>{r['test_accuracy']:.3f}</td><td>{r['train_seconds']:.1f}</td>"
        f"<td>{r['entk_seconds']['full'] * 1e3:.0f} / {r['entk_seconds']['trace'] * 1e3:.0f} / "
        f"{r['entk_seconds']['sum_logits'] * 1e3:.0f}</td><td>{r['pntk_relative_gap']:.3f}</td>"
        f"<td>{r['surrogate']['kendall_tau']:.3f}</td><td>{r['surrogate']['accuracy']:.3f}</td>"
        f"<td>{r['surrogate']['seconds']:.1f}</td></tr>"
        for n, r in out.items() if n != "eigenpro")
    ep_rows = "".join(f"<tr><td>{html.escape(n)}</td><td class='l'><code>{html.escape(r['params'])}</code></td>"
                      f"<td>{r['epochs']}</td><td>{r['test_accuracy']:.3f}</td><td>{r['seconds']:.1f}</td></tr>"
                      for n, r in ep.items())
    frag = f"""<h2>Networks, their empirical NTKs and NTK surrogates (<code>ntkit.ntk</code>,
<code>ntkit.explain</code>)</h2>
<p>Both networks are trained in JAX on the {len(y_tr)} training images (softmax cross-entropy, Adam, learning rate
10⁻², batch 64, {epochs} epochs). eNTK times are for {n_k} test images — full (n, n, 10, 10) / trace /
sum-of-logits (pNTK), structured implementation, after a compiling call; the pNTK gap is
‖Θ − pNTK ⊗ I‖ / ‖Θ‖. The
surrogate is kernel logistic regression on the cosine-normalised trace NTK, fitted to the training labels (time:
its eNTK and fit).</p>
<table><tr><th>network</th><th>test accuracy</th><th>train (s)</th><th>eNTK ms full / trace / pNTK</th>
<th>pNTK gap</th><th>surrogate τ</th><th>surrogate accuracy</th><th>surrogate (s)</th></tr>{rows}</table>
{fid_html}
<h3>Which training images support each prediction (MLP surrogate)</h3>
{gal_html}
<h3>Kernel machines fitted by EigenPro on the same data</h3>
<p><code>EigenProClassifier</code> (EigenPro 2 preconditioned SGD, ridge 0, {ep_epochs} epochs): the kernel machine a
network's infinite-width limit would be, trained the way the network is.</p>
<table><tr><th>model</th><th class="l">kernel</th><th>epochs</th><th>test accuracy</th><th>fit (s)</th></tr>
{ep_rows}</table>"""
    return out, frag

def _features_section(ctx):
    """Random features and Nyström: kernel error and test accuracy against the feature count."""
    import matplotlib.pyplot as plt
    from sklearn.linear_model import RidgeClassifier

    from ..features import Nystroem, RandomFourierFeatures, approximation_error
    from ..kernels import RBF

    X_tr, y_tr, X_te, y_te, seed, progress = (ctx[k] for k in ("X_tr", "y_tr", "X_te", "y_te", "seed", "progress"))
    ls = float(np.sqrt(X_tr.shape[1]) / 2)
    k = RBF(ls)
    Ds = [64, 256, 1024] if ctx["quick"] else [64, 128, 256, 512, 1024, 2048]
    makers = {"RFF": lambda D: RandomFourierFeatures(lengthscale=ls, n_components=D, random_state=seed),
              "orthogonal RFF": lambda D: RandomFourierFeatures(lengthscale=ls, n_components=D, orthogonal=True,
                                                                random_state=seed),
              "Nyström (uniform)": lambda D: Nystroem(k, n_components=min(D, len(X_tr)), random_state=seed),
              "Nyström (ridge leverage)": lambda D: Nystroem(k, n_components=min(D, len(X_tr)), sampling="rls",
                                                             random_state=seed)}
    sub = X_tr[:500]
    res = {}
    bar = progress.bar(total=len(makers) * len(Ds), desc="feature maps")
    for name, make in makers.items():
        res[name] = []
        for D in Ds:
            t0 = time.perf_counter()
            f = make(D).fit(X_tr)
            clf = RidgeClassifier(alpha=1e-3).fit(f.transform(X_tr), y_tr)
            acc = float(clf.score(f.transform(X_te), y_te))
            err = approximation_error(f, k, sub).frobenius
            res[name].append({"D": D, "error": err, "accuracy": acc, "seconds": time.perf_counter() - t0})
            bar.update()
    bar.close()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.7))
    # filled small markers under hollow large ones: both stay visible where two curves coincide
    styles = {"RFF": dict(marker="o", ls="-", ms=5), "orthogonal RFF": dict(marker="s", ls="--", ms=9, mfc="none"),
              "Nyström (uniform)": dict(marker="^", ls="-", ms=5),
              "Nyström (ridge leverage)": dict(marker="D", ls=":", ms=9, mfc="none")}
    for name, rows in res.items():
        axes[0].loglog([r["D"] for r in rows], [max(r["error"], 1e-16) for r in rows], label=name, **styles[name])
        axes[1].semilogx([r["D"] for r in rows], [r["accuracy"] for r in rows], label=name, **styles[name])
    for ax in axes:
        _log_ticks(ax, "x", Ds, "{:.0f}")
        ax.set_xlabel("features D")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("relative Frobenius error of ΦΦᵀ")
    axes[1].set_ylabel("test accuracy (ridge on Φ)")
    axes[0].legend()
    fig.tight_layout()
    n_sub = len(sub)
    fig_html = ctx["report"].figure(fig, f"RBF kernel (lengthscale {ls:.1f}). Left: ‖ΦΦᵀ − K‖<sub>F</sub> / "
                                    f"‖K‖<sub>F</sub> on {n_sub} training images; right: test accuracy of a linear "
                                    "ridge classifier (α = 10⁻³) on Φ. Nyström with D ≥ n uses every training "
                                    "image "
                                    "as a landmark and is exact (error at rounding level).")
    frag = f"""<h2>Random features and Nyström (<code>ntkit.features</code>)</h2>
<p>Each map Φ estimates the RBF kernel (ΦΦᵀ ≈ K); a linear ridge classifier on Φ is then a kernel machine at
O(nD²) cost.</p>{fig_html}"""
    return res, frag


def _theory_section(ctx):
    """Predicted (ntkit.theory on the data set's own spectrum) vs measured KRR learning curve."""
    import matplotlib.pyplot as plt

    from ..kernels import RBF, ReluNTK
    from ..theory import estimate_spectrum, profiles, risk_curve

    X, y, quick, progress = ctx["X"], ctx["y"], ctx["quick"], ctx["progress"]
    Y = np.eye(10)[y]
    Ns = np.array([20, 50, 100, 200] if quick else [20, 50, 100, 200, 400, 800])
    draws = 5 if quick else 20
    rng = np.random.default_rng(ctx["seed"])
    out = {}
    fig, ax = plt.subplots(figsize=(6.2, 4.0))
    models = (("RBF (lengthscale 4)", RBF(4.0), 1e-4, "o", "-"),
              ("ReLU NTK (depth 2)", ReluNTK(depth=2), 1e-4, "s", "--"))
    bar = progress.bar(total=len(models) * (1 + len(Ns)), desc="learning curves")
    lo, hi = np.inf, 0.0
    for name, k, ridge, marker, style in models:
        sp = estimate_spectrum(k, X, Y)
        pred = risk_curve(sp.eigenvalues, sp.target_coeffs, Ns, profile=profiles.krr(ridge)).risk
        K = k(X)
        bar.update()
        meas, se = [], []
        for n in Ns:
            errs = []
            for _ in range(draws):
                i = rng.choice(len(X), n, replace=False)
                a = np.linalg.solve(K[np.ix_(i, i)] + n * ridge * np.eye(n), Y[i])
                errs.append(np.mean(np.sum((K[:, i] @ a - Y) ** 2, axis=1)))
            meas.append(float(np.mean(errs)))
            se.append(float(np.std(errs, ddof=1) / np.sqrt(draws)))
            bar.update()
        line = ax.loglog(Ns, pred, style, label=f"{name}: predicted")[0]
        ax.errorbar(Ns, meas, yerr=se, fmt=marker, color=line.get_color(), ms=5, mfc="none", capsize=2,
                    label=f"{name}: measured (± 1 s.e.)")
        lo, hi = min(lo, np.min(pred), np.min(meas)), max(hi, np.max(pred), np.max(meas))
        out[name] = {"n": Ns.tolist(), "ridge": ridge, "predicted": [float(p) for p in pred], "measured": meas,
                     "standard_error": se,
                     "max_relative_gap": float(np.max(np.abs(np.asarray(pred) / np.asarray(meas) - 1)))}
    bar.close()
    _log_ticks(ax, "x", Ns, "{:.0f}")
    _log_ticks(ax, "y", _nice_log_values(lo, hi))
    ax.set_xlabel("training points N")
    ax.set_ylabel("test MSE (one-hot, whole set)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    gaps = ", ".join(f"{n}: {100 * r['max_relative_gap']:.1f}%" for n, r in out.items())
    fig_html = ctx["report"].figure(fig, "Kernel ridge regression's learning curve on the digits: the eigenlearning "
                                    f"prediction (lines) against the mean over {draws} random training sets "
                                    "(markers, ± one standard error). Ridge N · 10⁻⁴.")
    frag = f"""<h2>Predicted learning curves (<code>ntkit.theory</code>)</h2>
<p>The eigen-decomposition of each kernel on all {len(X)} digits gives λ and the labels' coefficients; the
eigenlearning equations then predict kernel ridge regression's test error for N random training images (the data
set as the population). Largest gap between prediction and measurement: {gaps}.
<code>ntkit risk</code> draws the same curves for power-law problems.</p>{fig_html}"""
    return out, frag


def _graph_section(ctx):
    """Graph random features on the 10-nearest-neighbour graph of the digits: labels from 10% of the nodes."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FormatStrFormatter, MaxNLocator
    from sklearn.neighbors import kneighbors_graph

    from ..graphs import GraphKernelRidge, exact_graph_kernel

    X, y, seed, progress = ctx["X"], ctx["y"], ctx["seed"], ctx["progress"]
    W = kneighbors_graph(X, 10, mode="connectivity", include_self=False)
    W = ((W + W.T) > 0).astype(np.float64)
    n = W.shape[0]
    rng = np.random.default_rng(seed)
    train = np.sort(rng.choice(n, max(n // 10, 20), replace=False))
    test = np.setdiff1d(np.arange(n), train)
    out = {"n_nodes": int(n), "n_edges": int(W.nnz // 2), "n_labelled": int(len(train)), "walks": {}}
    walks = [16, 64, 256] if ctx["quick"] else [16, 64, 256, 1024]
    for m in progress.bar(walks, desc="walks per node"):
        t0 = time.perf_counter()
        model = GraphKernelRidge(sigma=0.9, n_walks=m, p_halt=0.2, repelling=True, random_state=seed)
        acc = float(np.mean(model.fit(W, train, y[train]).predict(test) == y[test]))
        out["walks"][m] = {"accuracy": acc, "seconds": time.perf_counter() - t0}
    t0 = time.perf_counter()
    K = exact_graph_kernel(W, sigma=0.9)
    A = np.linalg.solve(K[np.ix_(train, train)] + 1e-2 * np.eye(len(train)), np.eye(10)[y[train]])
    out["exact_accuracy"] = float(np.mean(np.argmax(K[np.ix_(test, train)] @ A, 1) == y[test]))
    out["exact_seconds"] = time.perf_counter() - t0
    fig, ax = plt.subplots(figsize=(5.6, 3.5))
    ax.semilogx(walks, [out["walks"][m]["accuracy"] for m in walks], "o-", label="GRF + CG (GraphKernelRidge)")
    ax.axhline(out["exact_accuracy"], color="k", ls="--", lw=1, label="exact kernel ridge")
    _log_ticks(ax, "x", walks, "{:.0f}")
    ax.yaxis.set_major_locator(MaxNLocator(nbins=6, steps=[1, 2, 5, 10]))
    ax.yaxis.set_major_formatter(FormatStrFormatter("%.3f"))
    ax.set_xlabel("repelling walks per node")
    ax.set_ylabel("accuracy on unlabelled nodes")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    best = out["walks"][walks[-1]]
    fig_html = ctx["report"].figure(fig, f"Accuracy on the {len(test)} unlabelled nodes against the number of "
                                    "random walks per node, against the exact dense kernel (dashed).")
    frag = f"""<h2>Graph random features (<code>ntkit.graphs</code>)</h2>
<p>The digits as the nodes of their 10-nearest-neighbour graph ({n} nodes, {out['n_edges']} edges); labels of
{len(train)} nodes (10%) predict the rest through the regularised-Laplacian kernel (I − U)⁻¹, σ = 0.9, estimated
by graph random features (sparse Φ from random walks, ΦΦᵀ ≈ K) and solved by CG without any n × n matrix.
With {walks[-1]} walks: accuracy {best['accuracy']:.3f} in {best['seconds']:.2f} s; the exact dense kernel (ridge
10⁻²): {out['exact_accuracy']:.3f} in {out['exact_seconds']:.2f} s.</p>{fig_html}"""
    return out, frag


def _online_section(ctx):
    """Online kernel regression over the digits as a stream: predict before seeing each label."""
    import matplotlib.pyplot as plt

    from ..kernels import RBF
    from ..online import AOGDALD, KOGD, NONSALD, regret_curve

    X, y, progress = ctx["X"], ctx["y"], ctx["progress"]
    target = np.where(y >= 5, 1.0, -1.0)  # a ±1 regression target: "is the digit ≥ 5?"
    order = np.random.default_rng(ctx["seed"]).permutation(len(y))
    Xs, ys = X[order], target[order]
    k = RBF(2.5)  # digits scaled to [0, 1]: typical distances 3–4
    T = len(ys)
    learners = {"KOGD": KOGD(k), "AOGD-ALD": AOGDALD(k, horizon=T), "NONS-ALD": NONSALD(k, horizon=T)}
    # KOGD wide and pale underneath, AOGD-ALD dashed with markers on top: visible even where they coincide
    styles = {"KOGD": dict(color="#8fb8de", lw=4, ls="-"),
              "AOGD-ALD": dict(color="#d95f02", lw=1.4, ls="--", marker="o", ms=3.5, markevery=0.08),
              "NONS-ALD": dict(color="#1b9e77", lw=1.6, ls="-")}
    out, curves = {}, {}
    for name, est in progress.bar(learners.items(), total=len(learners), desc="online learners"):
        t0 = time.perf_counter()
        rc = regret_curve(est, Xs, ys)
        out[name] = {"cumulative_loss": float(rc.cumulative_loss[-1]), "regret": float(rc.regret[-1]),
                     "dictionary_size": int(est.fit(Xs, ys).dictionary_size_),
                     "comparator_loss": float(rc.comparator_cumulative_loss[-1]),
                     "seconds": time.perf_counter() - t0}
        curves[name] = rc
    # say so in the legend when two curves coincide (within 2% everywhere after the first 10 rounds)
    a, b = curves["AOGD-ALD"].cumulative_loss, curves["KOGD"].cumulative_loss
    rel = float(np.max(np.abs(a[10:] - b[10:]) / np.maximum(np.abs(b[10:]), 1e-12))) if T > 10 else np.inf
    out["AOGD-ALD"]["max_relative_difference_to_KOGD"] = rel
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for name, rc in curves.items():
        label = name
        if name == "AOGD-ALD" and rel < 0.02:
            label = f"AOGD-ALD (coincides with KOGD: within {_pct(rel)})"
        ax.loglog(rc.t, rc.cumulative_loss, label=label, **styles[name])
    ax.loglog(rc.t, rc.comparator_cumulative_loss, "k:", lw=1.2, label="kernel ridge in hindsight")
    ax.set_xlabel("round t")
    ax.set_ylabel("cumulative square loss")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    rows = "".join(f"<tr><td>{html.escape(n)}</td><td>{r['cumulative_loss']:.1f}</td><td>{r['regret']:.1f}</td>"
                   f"<td>{r['dictionary_size']}</td><td>{r['seconds']:.2f}</td></tr>" for n, r in out.items())
    same = ""
    if rel < 0.02:
        same = (f" AOGD-ALD's curve lies on KOGD's (within {_pct(rel)} after round 10): AOGD-ALD is KOGD's step "
                "on the projection onto its ALD dictionary, and with "
                f"{out['AOGD-ALD']['dictionary_size']} of the {T} images in that dictionary the projection changes "
                "little (with <code>threshold=0</code> the two are identical).")
    fig_html = ctx["report"].figure(fig, "Cumulative square loss of each online learner over the stream, against "
                                    "kernel ridge regression fitted on the whole stream afterwards (dotted)." + same)
    frag = f"""<h2>Online kernel regression (<code>ntkit.online</code>)</h2>
<p>The {T} images arrive one by one in a random order (target: +1 if the digit is ≥ 5, else −1; RBF kernel,
lengthscale 2.5); each learner predicts before it sees the label and pays the square loss. Regret is measured
against kernel ridge regression fitted on the whole stream afterwards.</p>
<table><tr><th>learner</th><th>cumulative loss</th><th>regret</th><th>dictionary / support</th><th>time (s)</th></tr>
{rows}</table>{fig_html}"""
    return out, frag
