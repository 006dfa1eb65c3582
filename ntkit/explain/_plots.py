"""Figures for NTK surrogates: attribution galleries and fidelity scatter plots."""

from __future__ import annotations

import numpy as np

__all__ = ["plot_attributions", "plot_fidelity"]


def plot_attributions(attribution, X_query, X_train, *, image_shape, rows=None, top_k=None, ax=None):
    """Gallery: each query image beside its top supporting (green) and opposing (red) training images.

    Returns the matplotlib figure. ``image_shape`` e.g. ``(8, 8)`` for scikit-learn's digits.
    """
    import matplotlib.pyplot as plt

    rows = range(min(4, len(X_query))) if rows is None else rows
    rows = list(rows)
    k = attribution.support_index.shape[1] if top_k is None else min(top_k, attribution.support_index.shape[1])
    fig, axes = plt.subplots(len(rows), 1 + 2 * k, figsize=(1.3 * (1 + 2 * k), 1.5 * len(rows)), squeeze=False)
    for r, i in enumerate(rows):
        ax0 = axes[r, 0]
        ax0.imshow(np.asarray(X_query[i]).reshape(image_shape), cmap="gray_r")
        ax0.set_title(f"query → {attribution.logit_index[i]}", fontsize=7)
        for j in range(k):
            for col, idx, c, color in ((1 + j, attribution.support_index[i, j], attribution.support_contribution[i, j],
                                        "tab:green"),
                                       (1 + k + j, attribution.oppose_index[i, j], attribution.oppose_contribution[i, j],
                                        "tab:red")):
                a = axes[r, col]
                a.imshow(np.asarray(X_train[idx]).reshape(image_shape), cmap="gray_r")
                a.set_title(f"{c:+.2f}", fontsize=7, color=color)
        for a in axes[r]:
            a.set_xticks([])
            a.set_yticks([])
    fig.suptitle("supporting (green) and opposing (red) training examples", fontsize=9)
    fig.tight_layout()
    return fig


def plot_fidelity(surrogate, X, *, ax=None, title=None):
    """Scatter of surrogate vs network logits with Kendall τ in the title. Returns the axes."""
    import matplotlib.pyplot as plt

    S = surrogate.decision_function(X)
    F = surrogate._network(np.asarray(X))
    fid = surrogate.fidelity(X)
    if ax is None:
        _, ax = plt.subplots(figsize=(3.6, 3.4))
    ax.scatter(F.ravel(), S.ravel(), s=3, alpha=0.4)
    ax.set_xlabel("network logit")
    ax.set_ylabel("surrogate logit")
    ax.set_title(title or f"{surrogate.kind}/{surrogate.machine}: τ = {fid.kendall_tau:.2f}", fontsize=9)
    return ax
