"""Long runs survive kill -9: resume from the checkpoint and get the uninterrupted result, bit for bit.

Each workload runs in a subprocess that kills itself with SIGKILL halfway through writing its
second (or third) checkpoint piece, leaving a torn temporary file behind; a second subprocess
resumes from the checkpoint. The resumed result must equal an uninterrupted run exactly
(np.array_equal): every piece is a deterministic function of the seed and the data, and the
torn file must be ignored, never read.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

WORKER = os.path.join(os.path.dirname(__file__), "_interrupt_worker.py")


def _run(*args, timeout=600):
    out = subprocess.run([sys.executable, WORKER, *map(str, args)], capture_output=True, text=True, timeout=timeout)
    return out


# workload -> (checkpoint is a directory?, write at which to die, writes an uninterrupted run makes)
CASES = {
    "online": (False, 3, 5),  # 10 000 rows in blocks of 2048: 5 states
    "grf": (True, 3, 7),  # meta + 6 blocks of 1000 start nodes
    "entk": (True, 4, 16),  # meta + 15 upper-triangle tiles of 10 × 10
    "eigenpro": (False, 3, 6),  # one state per epoch
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_kill9_mid_write_then_resume_equals_uninterrupted(name, tmp_path):
    is_dir, kill_at, total = CASES[name]
    ref = _run(name, tmp_path / "ref-ckpt", tmp_path / "ref.npy")
    assert ref.returncode == 0, ref.stderr[-3000:]
    assert f"WRITES {total}" in ref.stdout, ref.stdout

    ckpt = tmp_path / "ckpt"
    died = _run(name, ckpt, tmp_path / "never.npy", kill_at)
    assert died.returncode == -9, (died.returncode, died.stderr[-2000:])
    assert not (tmp_path / "never.npy").exists()
    where = ckpt if is_dir else tmp_path
    torn = [f for f in os.listdir(where) if ".tmp-" in f]
    assert torn, "the killed run should have left its half-written temporary file"

    resumed = _run(name, ckpt, tmp_path / "resumed.npy")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    # the resumed run writes only what was missing: the pieces from the torn one on
    assert f"WRITES {total - (kill_at - 1)}" in resumed.stdout, resumed.stdout
    np.testing.assert_array_equal(np.load(tmp_path / "resumed.npy"), np.load(tmp_path / "ref.npy"))


def test_checkpoint_of_another_run_or_garbage_is_refused(tmp_path):
    from ntkit import _checkpoint

    p = tmp_path / "state.pkl"
    _checkpoint.save(p, {"data": "a", "every": 2048}, {"rows": 10})
    assert _checkpoint.load(p, {"data": "a", "every": 2048}) == {"rows": 10}
    with pytest.raises(ValueError, match=r"different run .*\['data'\]"):
        _checkpoint.load(p, {"data": "b", "every": 2048})
    p.write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match="cannot be read"):
        _checkpoint.load(p, {"data": "a"})
    assert _checkpoint.load(tmp_path / "absent.pkl", {}) is None
    with pytest.raises(ValueError, match="directory"):
        _checkpoint.CheckpointDir(p, {})


def test_online_checkpoint_refuses_other_data_and_finished_run_returns_at_once(tmp_path):
    from ntkit.online import NONSALD

    rng = np.random.default_rng(1)
    X = rng.normal(size=(3000, 2))
    y = X[:, 0] ** 2
    p = tmp_path / "stream.pkl"
    a = NONSALD().fit(X, y, checkpoint=p, checkpoint_every=1000)
    b = NONSALD().fit(X, y, checkpoint=p, checkpoint_every=1000)  # finished: restored, nothing recomputed
    np.testing.assert_array_equal(a.online_predictions_, b.online_predictions_)
    assert b.n_seen_ == 3000 and b.cumulative_loss_ == a.cumulative_loss_
    np.testing.assert_array_equal(NONSALD().fit(X, y).online_predictions_, a.online_predictions_)
    with pytest.raises(ValueError, match="different run"):
        NONSALD().fit(X, y + 1.0, checkpoint=p, checkpoint_every=1000)
