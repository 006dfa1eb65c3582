"""Progress and warnings of the command-line jobs: the one progress rule, in one place.

Progress follows one rule (:data:`PROGRESS_RULE`, repeated in every job's ``--help``): where a person
is watching — the command-line jobs — long work shows progress on stderr by default: a one-line
heading per section with the time elapsed since the job started, and tqdm bars inside sections that
loop; ``--quiet`` turns both off. Library functions stay quiet unless asked (``verbose=False`` by
default, progress through :mod:`logging`), so tests and scripts that call them print nothing.
Warnings raised during a job (numpy's floating-point ``RuntimeWarning``, ntkit's own) are collected
and printed once each at the end, in words, with a count and the fix — never as a source line.
"""

from __future__ import annotations

import contextlib
import re
import sys
import time
import warnings

#: The progress rule, as printed at the end of every job's ``--help``.
PROGRESS_RULE = (
    "Progress: by default a job prints, on stderr, a one-line heading per section with the time elapsed "
    "since it started, and progress bars (tqdm) inside long sections; --quiet turns both off. Results go to "
    "stdout and to the --out folder either way. Warnings are collected and printed once each at the end, in "
    "words, with the fix. Library calls (ntkit.* in Python) are quiet unless given verbose=True.")


def _clock(seconds: float) -> str:
    m, s = divmod(seconds, 60.0)
    return f"{int(m)}:{s:04.1f}"


class Progress:
    """Section headings and progress bars of a command-line job, on stderr (see :data:`PROGRESS_RULE`).

    ``Progress("ntkit tour", enabled=True, sections=7)``; ``section(title)`` prints
    ``ntkit tour [0:12.3] 2/7 title``; ``bar(iterable, desc=...)`` is a tqdm bar that disappears
    when done; ``note(text)`` prints an indented line under the current heading. With
    ``enabled=False`` nothing is printed (the bars are disabled, not just hidden).
    """

    def __init__(self, prog: str, *, enabled: bool = True, sections: int | None = None):
        self.prog = prog
        self.enabled = bool(enabled)
        self.sections = sections
        self.count = 0
        self.t0 = time.perf_counter()

    def elapsed(self) -> float:
        """Seconds since the job started."""
        return time.perf_counter() - self.t0

    def write(self, line: str) -> None:
        """Print ``line`` on stderr (between bars, not through them) when enabled."""
        if self.enabled:
            from tqdm.auto import tqdm

            tqdm.write(line, file=sys.stderr)
            sys.stderr.flush()

    def section(self, title: str) -> None:
        """The one-line heading of the next section, with the elapsed time."""
        self.count += 1
        of = f"{self.count}/{self.sections} " if self.sections else ""
        self.write(f"{self.prog} [{_clock(self.elapsed())}] {of}{title}")

    def note(self, text: str) -> None:
        """An indented result line under the current heading."""
        self.write(f"    {text}")

    def bar(self, iterable=None, *, total=None, desc=None):
        """A tqdm bar on stderr that is removed when it finishes; a silent pass-through when disabled."""
        from tqdm.auto import tqdm

        return tqdm(iterable, total=total, desc=desc, disable=not self.enabled, leave=False, file=sys.stderr,
                    dynamic_ncols=True, mininterval=0.5)

    def done(self, text: str) -> None:
        """The closing line, with the total time."""
        self.write(f"{self.prog} [{_clock(self.elapsed())}] {text}")


_FLOAT_RE = re.compile(r"(overflow|underflow|invalid value|divide by zero) encountered in ([\w .]+)")


def _describe(category: type, message: str, filename: str) -> str:
    """A warning in words: numpy's terse floating-point messages get a sentence saying what they mean."""
    m = _FLOAT_RE.search(message)
    if m is None:
        return message
    where = filename.replace("\\", "/")
    if "/ntkit/" in where:
        where = "ntkit/" + where.rsplit("/ntkit/", 1)[1]
    else:
        where = where.rsplit("/", 1)[-1]
    what = {"overflow": "a value too large for float64 (it became inf)",
            "underflow": "a value too small for float64 (it became 0)",
            "invalid value": "an undefined value (it became NaN)",
            "divide by zero": "a division by zero (it became inf)"}[m.group(1)]
    return f"numpy computed {what} in {m.group(2).strip()} ({where})"


@contextlib.contextmanager
def summarised_warnings(prog: str, *, fix: str | None = None, stream=None):
    """Collect the warnings raised inside the block; at its end print each distinct one once, in words.

    Warnings that differ only in their numbers are one kind (printed once, with a count). ``fix`` is
    the job's advice for numpy's floating-point warnings, which do not carry their own (ntkit's
    warnings say what to do in the message). Nothing is printed when nothing was raised.
    """
    stream = sys.stderr if stream is None else stream
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        warnings.simplefilter("always", UserWarning)  # ntkit's NumericalWarning and PerformanceWarning
        try:
            yield caught
        finally:
            groups: dict[tuple, list] = {}
            for w in caught:
                key = (w.category, re.sub(r"[-+]?\d[\d.]*(e[-+]?\d+)?", "#", str(w.message)))
                groups.setdefault(key, []).append(w)
            for (category, _), ws in groups.items():
                first = ws[0]
                text = _describe(category, str(first.message), first.filename)
                times = "once" if len(ws) == 1 else f"{len(ws)} times, first"
                print(f"{prog}: {category.__name__} ({times}): {text}", file=stream)
                if fix and _FLOAT_RE.search(str(first.message)):
                    print(f"    fix: {fix}", file=stream)
