"""Checkpoints for long runs: atomic writes, a fingerprint of the run, nothing half-written read.

Two shapes of checkpoint:

- :func:`save` / :func:`load` — one file holding the whole state (online streams; EigenPro
  keeps its own ``.npz`` with the same discipline);
- :class:`CheckpointDir` — a directory of independent pieces (graph random features by blocks
  of start nodes, empirical-NTK tiles), each written once; a resumed run loads the pieces that
  exist and computes the rest.

Every write goes to a temporary name in the same directory, is flushed and fsynced, and is
renamed over its final name (``os.replace`` is atomic on POSIX), so a run killed at any moment
(``kill -9`` included) leaves either the previous complete file or the new complete file, and a
reader never sees a partial one; leftover temporaries are ignored. Each checkpoint records the
run's *fingerprint* (the data's hash, the settings): resuming with different data or settings
raises instead of silently mixing two runs.

Checkpoints are pickles: load only checkpoints you wrote.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re

import numpy as np

__all__ = ["fingerprint", "save", "load", "CheckpointDir"]

_FORMAT = "ntkit-checkpoint-1"


def fingerprint(*items) -> str:
    """A short hash of arrays (shape, dtype, bytes) and plain values (their repr)."""
    h = hashlib.blake2b(digest_size=16)
    for item in items:
        if hasattr(item, "shape") and hasattr(item, "dtype") and not np.isscalar(item):
            a = np.asarray(item)
            h.update(repr((a.shape, a.dtype.str)).encode())
            if a.dtype.kind == "O":
                h.update(repr(a.tolist()).encode())
                continue
            flat = np.ascontiguousarray(a).reshape(-1).view(np.uint8)
            for s in range(0, flat.size, 1 << 26):  # 64 MiB at a time
                h.update(flat[s:s + (1 << 26)].data)
        else:
            h.update(repr(item).encode())
        h.update(b"|")
    return h.hexdigest()


def _write_atomic(path, data: bytes):
    path = os.fspath(path)
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    tmp = os.path.join(d, f".{os.path.basename(path)}.tmp-{os.getpid()}")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    try:  # make the rename itself durable
        fd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:  # pragma: no cover - directories cannot be opened on some systems
        pass


def save(path, meta: dict, payload):
    """Write ``payload`` with the run's ``meta`` to ``path`` atomically."""
    _write_atomic(path, pickle.dumps({"format": _FORMAT, "meta": meta, "payload": payload},
                                     protocol=pickle.HIGHEST_PROTOCOL))


def load(path, meta: dict):
    """The payload saved at ``path`` by a run with the same ``meta``; ``None`` if there is no file.

    Raises ``ValueError`` when the file belongs to another run (different data or settings) or
    is not an ntkit checkpoint.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        return None
    try:
        with open(path, "rb") as fh:
            obj = pickle.load(fh)
    except Exception as exc:
        raise ValueError(f"checkpoint {path} cannot be read ({type(exc).__name__}: {exc}); delete it to start "
                         "afresh.") from None
    if not isinstance(obj, dict) or obj.get("format") != _FORMAT:
        raise ValueError(f"{path} is not an ntkit checkpoint; pass another path or delete it.")
    if obj["meta"] != meta:
        diff = sorted(k for k in set(meta) | set(obj["meta"]) if obj["meta"].get(k) != meta.get(k))
        raise ValueError(f"checkpoint {path} was written by a different run (it differs in {diff}); delete it or "
                         "resume with the same data and settings.")
    return obj["payload"]


class CheckpointDir:
    """A directory of pieces keyed by small tuples of ints, with the run's meta in ``meta.pkl``."""

    def __init__(self, path, meta: dict):
        self.path = os.fspath(path)
        if os.path.exists(self.path) and not os.path.isdir(self.path):
            raise ValueError(f"checkpoint must be a directory path; {self.path} is a file.")
        os.makedirs(self.path, exist_ok=True)
        mfile = os.path.join(self.path, "meta.pkl")
        if load(mfile, meta) is None:  # no meta yet (a foreign run's meta raises in load)
            save(mfile, meta, "meta")
        self.meta = meta

    def _file(self, key):
        return os.path.join(self.path, "piece-" + "-".join(str(int(k)) for k in key) + ".pkl")

    def keys(self):
        """Keys of the complete pieces on disk."""
        out = set()
        for name in os.listdir(self.path):
            m = re.fullmatch(r"piece-([0-9-]+)\.pkl", name)
            if m:
                out.add(tuple(int(k) for k in m.group(1).split("-")))
        return out

    def save(self, key, payload):
        save(self._file(key), self.meta, payload)

    def load(self, key):
        return load(self._file(key), self.meta)
