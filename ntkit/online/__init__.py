r"""Online kernel regression: first- and second-order learners, exact and with sublinear cost.

Protocol: at round t the learner receives ``x_t``, predicts ``f_t(x_t)``, then sees ``y_t`` and pays
``(f_t(x_t) − y_t)²``. Every learner exists twice:

* as a pure functional core (optax style) — a factory returns an :class:`OnlineLearner` triple
  ``init(n_features) -> state``, ``update(state, X, y) -> Step(state, predictions)``,
  ``predict(state, X)`` on NamedTuple states; ``update`` never modifies its input state;
* as a scikit-learn estimator with ``partial_fit`` (one row or a mini-batch, in order), ``fit``
  (reset + partial_fit), ``predict``, ``cumulative_loss_``, ``dictionary_size_``, ``n_seen_``.

============================  ======================  =============================================
estimator / core              per-round cost          what it is for
============================  ======================  =============================================
:class:`KOGD` / `kogd`        O(t·d), O(B·d) budget   first-order baseline (gradient descent in H)
:class:`AOGDALD` / `aogd_ald` O(|D|²), |D| ~ log²T    first order, sublinear: regret O(sqrt(L(f)))
:class:`NONSALD` / `nons_ald` O(|D|²)                 second order, sublinear: O(d_eff log T)
:class:`KONS` / `kons`        O(t²)                   exact second order (the reference)
:class:`SketchedKONS`         O(t·d + (γt)²)          KONS with a leverage-score sketch
============================  ======================  =============================================

Hyper-parameters named ``"auto"`` follow rules documented in :mod:`ntkit.online._common` (scale of
the targets seen so far; the papers' schedules for the ALD threshold). All states are float64; the
predictions come back in the dtype of X. :func:`regret_curve` measures regret against kernel ridge
regression fitted on the whole stream.
"""

from ._ald import AOGDALDState, NONSALDState, aogd_ald, nons_ald
from ._common import OnlineLearner, Step
from ._estimators import AOGDALD, KOGD, KONS, NONSALD, SketchedKONS
from ._kogd import KOGDState, kogd
from ._kons import KONSState, kons, sketched_kons
from ._regret import RegretCurve, regret_curve

__all__ = [
    "KOGD",
    "AOGDALD",
    "NONSALD",
    "KONS",
    "SketchedKONS",
    "regret_curve",
    "RegretCurve",
    "kogd",
    "aogd_ald",
    "nons_ald",
    "kons",
    "sketched_kons",
    "OnlineLearner",
    "Step",
    "KOGDState",
    "AOGDALDState",
    "NONSALDState",
    "KONSState",
]
