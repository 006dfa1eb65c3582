"""Run one long workload with a checkpoint; optionally die by SIGKILL in the middle of a write.

``python _interrupt_worker.py WORKLOAD CHECKPOINT OUT [KILL_AT]``: with KILL_AT = k > 0 the
k-th checkpoint write stops halfway through its temporary file and the process kills itself
with SIGKILL (what ``kill -9`` or the OOM killer does: no cleanup, no atexit, no flush).
The result is saved to OUT (``.npy``) and the number of checkpoint writes is printed.
"""

from __future__ import annotations

import os
import signal
import sys

import numpy as np


def workload(name, ckpt):
    if name == "online":
        from ntkit.online import NONSALD

        rng = np.random.default_rng(0)
        X = rng.normal(size=(10_000, 3))
        y = np.sin(X[:, 0]) + 0.1 * rng.normal(size=len(X))
        est = NONSALD().fit(X, y, checkpoint=ckpt, checkpoint_every=2048)
        return np.concatenate([est.online_predictions_, est.predict(X[:200]), [est.cumulative_loss_]])
    if name == "grf":
        import scipy.sparse as sp

        from ntkit.graphs import GraphRandomFeatures

        W = sp.random(6000, 6000, density=0.002, random_state=0)
        W = ((W + W.T) > 0).astype(float)
        F = GraphRandomFeatures(n_walks=8, random_state=5).fit(W, checkpoint=ckpt, block_nodes=1000).features_
        return np.concatenate([F.indptr.astype(np.float64), F.indices.astype(np.float64), F.data])
    if name == "entk":
        import jax

        from ntkit.ntk import empirical_ntk
        from ntkit.ntk.models import mlp

        init, apply = mlp((5, 32, 3))
        params = init(jax.random.PRNGKey(0))
        x = np.random.default_rng(0).normal(size=(50, 5)).astype(np.float32)
        return empirical_ntk(apply, params, x, kind="trace", batch_size=10, checkpoint=ckpt).ravel()
    if name == "eigenpro":
        from ntkit.kernels import Laplace
        from ntkit.solvers import eigenpro

        rng = np.random.default_rng(0)
        X = rng.normal(size=(2000, 4))
        y = np.sin(X[:, 0])
        return eigenpro(Laplace(2.0), X, y, centers=X[:300], epochs=6, random_state=0, checkpoint=ckpt).weights
    raise SystemExit(f"unknown workload {name}")


def main():
    name, ckpt, out = sys.argv[1:4]
    kill_at = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    writes = [0]

    import ntkit._checkpoint as ck
    import ntkit.solvers._eigenpro_host as ep

    real_write, real_ep_save = ck._write_atomic, ep._save_checkpoint

    def torn(path):
        with open(f"{path}.tmp-{os.getpid()}", "wb") as fh:  # half a file under the temporary name
            fh.write(b"\x80\x05half-written")
            fh.flush()
        os.kill(os.getpid(), signal.SIGKILL)

    def write(path, data):
        writes[0] += 1
        if writes[0] == kill_at:
            torn(path)
        real_write(path, data)

    def ep_save(path, *a, **k):
        writes[0] += 1
        if writes[0] == kill_at:
            torn(path)
        real_ep_save(path, *a, **k)

    ck._write_atomic = write
    ep._save_checkpoint = ep_save
    result = workload(name, ckpt)
    np.save(out, np.asarray(result, dtype=np.float64))
    print("WRITES", writes[0])


if __name__ == "__main__":
    main()
