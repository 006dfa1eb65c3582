"""NTK surrogates of a digits MLP: every kind and machine side by side (τ, accuracy, time).

MLP 64-128-10 (ReLU, NTK parameterisation) trained with Adam on scikit-learn's digits
(70/30 split, seed 0); surrogates fitted on the 1257 training images, evaluated on the 540
test images. τ = Kendall τ between surrogate and network logits over all (image, logit)
pairs. Published reference (Engel et al. 2024, pnnl/projection_ntk notebooks): kernel GLM on
the cosine-normalised trace NTK τ = 0.71 (MNIST2 MLP), 0.86 (MNIST2 CNN), 0.81 (BERT/COLA);
proj-trNTK 0.80, proj-pNTK 0.72, unnormalised trNTK 0.53 (BERT/COLA).
"""

from __future__ import annotations

import time

import numpy as np

from _harness import fmt_s, table

CASES = [
    ("trace", "cosine", "logistic", "labels", {}),
    ("trace", None, "logistic", "labels", {}),
    ("sum_logits", "cosine", "logistic", "labels", {}),
    ("projected", "cosine", "logistic", "labels", {"n_projections": 2048}),
    ("projected", "cosine", "logistic", "labels", {"n_projections": 2048, "projected_kind": "sum_logits"}),
    ("trace", "cosine", "ridge", "labels", {}),
    ("trace", "cosine", "svm", "labels", {}),
    ("trace", "cosine", "logistic", "network", {}),
    ("trace", "cosine", "ridge", "network", {"C": 100.0}),
    ("full", None, "logistic", "labels", {"n_train": 400}),
]


def run(quick=False):
    import jax
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    from ntkit.explain import NTKSurrogate
    from ntkit.ntk.models import mlp, train_classifier

    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.3, random_state=0)
    init, apply = mlp((64, 128, 10), "relu")
    t0 = time.perf_counter()
    params = train_classifier(apply, init(jax.random.PRNGKey(0)), Xtr, ytr, epochs=60, learning_rate=1e-2)
    t_train = time.perf_counter() - t0
    net_acc = float(np.mean(np.argmax(np.asarray(apply(params, Xte)), 1) == yte))
    rows = []
    for kind, normalize, machine, target, extra in (CASES[:3] if quick else CASES):
        extra = dict(extra)
        n_train = extra.pop("n_train", len(Xtr))
        label = kind if kind != "projected" else f"projected {extra.get('projected_kind', 'trace')}, k = 2048"
        sur = NTKSurrogate(apply, params, kind=kind, normalize=normalize, machine=machine, target=target, **extra)
        t0 = time.perf_counter()
        sur.fit(Xtr[:n_train], ytr[:n_train])
        fid = sur.fidelity(Xte, yte)
        t = time.perf_counter() - t0
        rows.append([label + (f" (n = {n_train})" if n_train != len(Xtr) else ""), normalize or "none", machine,
                     target, f"{fid.kendall_tau:.3f}", f"{100 * fid.surrogate_accuracy:.1f}%",
                     f"{100 * fid.label_agreement:.1f}%", fmt_s(t)])
    return "\n".join([
        "## NTK surrogates of a digits MLP (ntkit.explain)",
        "",
        f"MLP 64-128-10 (ReLU, NTK parameterisation), Adam 60 epochs ({fmt_s(t_train)}); network test accuracy "
        f"{100 * net_acc:.1f}%. Surrogates fitted on 1257 training images, scored on 540 test images; τ = Kendall τ "
        "between surrogate and network logits over all (image, logit) pairs; time = eNTK + fit + scoring. "
        "Published (Engel et al. 2024): kernel GLM on the cosine trace NTK τ = 0.71 (MNIST2 MLP), 0.86 (MNIST2 "
        "CNN), 0.81 (BERT/COLA); projected trace 0.80, projected pNTK 0.72, unnormalised trace 0.53 (BERT/COLA).",
        "",
        table(["kernel", "normalise", "machine", "target", "Kendall τ", "test accuracy", "agrees with network",
               "time"], rows),
        "",
    ])


if __name__ == "__main__":
    import sys

    print(run("--quick" in sys.argv))
