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

On a device
-----------
Every core takes ``device=None|"cpu"|"gpu"|jax.Device`` and every estimator ``device="auto"``,
resolved when the stream starts: jax data → their device; numpy data → the
``ntkit.config_context(device=...)`` device if one is set, else the host core — also on a machine
with a GPU (unlike the batch estimators' "auto"): rounds are sequential and latency-bound, and the
host is the faster place for the default learners' small dictionaries. ``"cpu"`` / ``"gpu"`` /
a ``jax.Device`` choose a device explicitly.
On a device each learner is the same sequence of rounds as on the host, run as a jit-compiled
``jax.lax.scan`` over chunks of rows: the kernel row of a round against the dictionary, the ALD
test, the small linear algebra (triangular solves against the dictionary's Cholesky factor, the
Sherman–Morrison and rank-one updates, KOGD's budget maintenance) and the "auto" rules all run
on device arrays, the dictionary in a fixed-capacity buffer that is doubled (between chunks) when
a chunk could overflow it, so a stream of T rounds compiles O(log T) times. Predictions on
queries use :func:`ntkit.ops.kernel_matvec` / :func:`ntkit.ops.gram` on the device. Only
per-chunk sizes come back to the host while learning. numpy data come back as numpy, jax as jax;
the states are :mod:`ntkit.online._jax`'s NamedTuples (float64, as on the host), and the
predictions equal the host core's to rounding (tested: 1e-10 relative on short streams). Sequential
rounds are latency-bound: a device pays off when a round's work is large (KONS's O(t²), big
dictionaries or budgets, high-dimensional inputs), not for dictionaries of a few dozen atoms.
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
