"""Peak resident memory sampling, standalone (no ntkit import): the neural-tangents worker runs
in the pinned environment and uses it too."""

import os


class RssSampler:
    """Peak resident memory above the starting level, sampled every 2 ms from /proc/self/statm.

    ``ru_maxrss`` cannot be reset, so an earlier peak (e.g. while the inputs were made)
    would hide the peak of the measured call; sampling the current RSS does not.
    """

    def __init__(self):
        import threading

        self._page = os.sysconf("SC_PAGE_SIZE")
        self._stop = threading.Event()
        self.base = self._rss()
        self.peak = self.base
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _rss(self):
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * self._page

    def _run(self):
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, self._rss())

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())

    @property
    def extra_mib(self):
        return (self.peak - self.base) / 2**20
