"""``ntkit explain``: train a small network on bundled digits and explain it with an NTK surrogate."""

from __future__ import annotations

import json
import os
import time

import numpy as np


def run_explain(args) -> str:
    import jax
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    from ._report import _gallery
    from ._progress import Progress
    from ..explain import NTKSurrogate, plot_attributions, plot_fidelity
    from ..ntk.models import cnn, mlp, train_classifier

    progress = Progress("ntkit explain", enabled=not args.quiet, sections=4)
    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    if args.n_train is not None:
        if args.n_train < 20:
            raise SystemExit(f"ntkit explain: --n-train must be at least 20; got {args.n_train}.")
        X, y = X[: int(args.n_train / 0.7) + 1], y[: int(args.n_train / 0.7) + 1]
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)
    if args.model == "mlp":
        init, apply = mlp((64, args.width, 10), "relu")
        xtr, xte = X_tr, X_te
    else:
        init, apply = cnn((8, 8, 1), (8, 8), 10)
        xtr, xte = X_tr.reshape(-1, 8, 8, 1), X_te.reshape(-1, 8, 8, 1)
    os.makedirs(args.out, exist_ok=True)
    progress.section(f"training the {args.model.upper()} on {len(y_tr)} digits ({args.epochs} epochs, "
                     f"seed {args.seed})")
    t0 = time.perf_counter()
    params = train_classifier(apply, init(jax.random.PRNGKey(args.seed)), xtr, y_tr, epochs=args.epochs,
                              learning_rate=1e-2, seed=args.seed)
    t_train = time.perf_counter() - t0
    net_acc = float(np.mean(np.argmax(np.asarray(apply(params, xte)), 1) == y_te))
    progress.note(f"test accuracy {net_acc:.3f} ({t_train:.1f} s)")
    progress.section(f"NTK surrogate: {args.kind} eNTK of the training set, {args.machine} machine")
    t0 = time.perf_counter()
    kw = {"n_projections": args.n_projections} if args.kind == "projected" else {}
    sur = NTKSurrogate(apply, params, kind=args.kind, machine=args.machine, target=args.target,
                       verbose=not args.quiet, **kw).fit(xtr, y_tr)
    progress.section(f"fidelity on {len(y_te)} test images")
    fid = sur.fidelity(xte, y_te)
    t_sur = time.perf_counter() - t0
    progress.note(f"Kendall τ {fid.kendall_tau:.3f}, surrogate accuracy {fid.surrogate_accuracy:.3f}")
    fig, ax = plt.subplots(figsize=(4, 3.8))
    plot_fidelity(sur, xte, ax=ax, title=f"{args.model}, {args.kind} NTK: Kendall τ = {fid.kendall_tau:.2f}")
    fig.tight_layout()
    fig.savefig(os.path.join(args.out, "fidelity.png"), dpi=120)
    plt.close(fig)
    q = min(args.queries, len(xte))
    progress.section(f"attributions of {q} test images (top {args.top_k} training images each)")
    att = sur.attribute(xte[:q], top_k=args.top_k)
    net_pred = np.argmax(np.asarray(apply(params, xte[:q])), 1)
    # the gallery with each query's true label and both predictions, and every training image's label
    fig = _gallery(plot_attributions(att, X_te[:q], X_tr, image_shape=(8, 8), rows=range(q)), att, y_te[:q], y_tr,
                   net_pred)
    fig.savefig(os.path.join(args.out, "attributions.png"), dpi=120)
    plt.close(fig)
    summary = {"model": args.model, "kind": args.kind, "machine": args.machine, "target": args.target,
               "n_train": int(len(y_tr)), "n_test": int(len(y_te)), "network_accuracy": net_acc,
               "train_seconds": t_train, "surrogate_seconds": t_sur, "kendall_tau": fid.kendall_tau,
               "pearson": fid.pearson, "r2": fid.r2, "label_agreement": fid.label_agreement,
               "surrogate_accuracy": fid.surrogate_accuracy,
               "attributions": [{"query": int(i), "logit_index": int(att.logit_index[i]),
                                 "label": int(y_te[i]), "network_prediction": int(net_pred[i]),
                                 "support_index": att.support_index[i].tolist(),
                                 "support_label": np.asarray(y_tr)[att.support_index[i]].tolist(),
                                 "support_contribution": att.support_contribution[i].tolist(),
                                 "oppose_index": att.oppose_index[i].tolist(),
                                 "oppose_label": np.asarray(y_tr)[att.oppose_index[i]].tolist(),
                                 "oppose_contribution": att.oppose_contribution[i].tolist(),
                                 "support_share": float(att.support_share[i])} for i in range(q)]}
    with open(os.path.join(args.out, "explain.json"), "w") as fh:
        json.dump(summary, fh, indent=2)
    progress.done("done")
    return (f"{args.model} (test accuracy {net_acc:.3f}) explained by a {args.kind}-NTK {args.machine} surrogate: "
            f"Kendall τ {fid.kendall_tau:.3f}, surrogate accuracy {fid.surrogate_accuracy:.3f}, label agreement "
            f"{fid.label_agreement:.3f}; wrote {args.out}/fidelity.png, attributions.png, explain.json")
