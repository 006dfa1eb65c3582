"""Explain a trained network with a kernel machine on its empirical NTK (Engel et al. 2024)."""

from ._plots import plot_attributions, plot_fidelity
from ._surrogate import Attribution, Fidelity, NTKSurrogate

__all__ = ["NTKSurrogate", "Fidelity", "Attribution", "plot_attributions", "plot_fidelity"]
