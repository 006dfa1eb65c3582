"""The ``ntkit`` command line: ``ntkit tour``, ``ntkit explain``, ``ntkit bench``, ``ntkit risk``, ``ntkit info``.

One module per job (``_tour``, ``_explain``, ``_bench``, ``_risk``), the parser in ``_main`` and the
progress rule shared by every job in ``_progress``:

Progress follows one rule (:data:`PROGRESS_RULE`, repeated in every job's ``--help``): where a person
is watching — the command-line jobs — long work shows progress on stderr by default: a one-line
heading per section with the time elapsed since the job started, and tqdm bars inside sections that
loop; ``--quiet`` turns both off. Library functions stay quiet unless asked (``verbose=False`` by
default, progress through :mod:`logging`), so tests and scripts that call them print nothing.
Warnings raised during a job (numpy's floating-point ``RuntimeWarning``, ntkit's own) are collected
and printed once each at the end, in words, with a count and the fix — never as a source line.
"""

from ._main import main
from ._progress import PROGRESS_RULE, Progress, summarised_warnings

__all__ = ["main", "PROGRESS_RULE", "Progress", "summarised_warnings"]
