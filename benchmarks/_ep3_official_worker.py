"""Official EigenPro 3 timing worker: runs the authors' UNMODIFIED code as a subprocess peer.

    python benchmarks/_ep3_official_worker.py --data FILE.npz --out FILE.json \
        [--device cuda|cpu] [--epochs E] [--subsample S] [--top-q Q] \
        [--kernel gaussian|laplacian] [--loader official|slices] [--dtype float32|float64] \
        [--one-hot] [--seed N] [--max-seconds T] [--eval-chunk R] [--ep3-path DIR]

The official code is EigenPro/EigenPro3 (Abedsoltan, Belkin, Pandit, "Toward Large Kernel Models",
ICML 2023), commit a1da2d397bdf99fc4435bb3a0d968255da4c5d43 (2024-01-25), extracted with
``git archive`` into ``.peers/EigenPro3`` (ignored by git, see ``benchmarks/_peers/README.md``) and
imported from there through ``sys.path``; nothing in it is edited. This script does not import ntkit.

``FILE.npz`` holds::

    X_train (n, d), y_train (n,) or (n, c), X_test (m, d), y_test (m,) or (m, c),
    centers (p, d), and the lengthscale l as ``bandwidth`` or ``lengthscale`` (a scalar)

``--kernel gaussian`` (default) is exp(-|x - z|^2 / (2 l^2)): the official ``eigenpro3.kernels.gaussian``
uses gamma = 1 / (2 bandwidth^2), so bandwidth = l with no conversion. ``--kernel laplacian`` is the
official ``laplacian``: exp(-|x - z| / bandwidth) (ntkit's ``Laplace(l)``), again bandwidth = l.

The call is the README's: ``KernelModel(c, centers, kernel_fn, X=X, y=y, devices=[device],
n_nystrom_samples=S, data_preconditioner_level=Q)`` (defaults S = 5000, Q = 500 are the official
defaults), then one ``model.fit_epoch(model.train_loaders)`` per epoch (``fit`` is just that loop
plus an accuracy print, which we replace by a test-MSE evaluation outside the timed region). The
batch size and learning rate are the official code's own automatic choice (``int(beta / lambda_{Q+1})``
and ``batch_size / beta / 2``); so is the inner projection's (EigenPro 2 on the centers, Nystrom size
min(p, 2000) or 10000, ``mem_gb=20`` hard-wired in ``update_weights``).

``--loader official`` (default) uses the loaders the official ``KernelModel`` builds (a
``torch.utils.data.DataLoader`` over a per-sample ``Dataset`` of device tensors, ``shuffle=False``):
that is how the README calls it, but it indexes the data one sample at a time in Python. ``--loader
slices`` builds the model with ``make_dataloader=False`` and feeds ``fit_epoch`` the SAME batches in
the SAME order as contiguous slices of the device tensors (the README's documented "your own
dataloader" route); the arithmetic is identical, only the Python overhead differs.

Shims (applied here, never in the official files; each one used is listed in the JSON ``shims``):

* ``scipy_eigh_eigvals``: ``eigenpro3/utils/svd.py`` calls ``scipy.linalg.eigh(..., eigvals=(lo, hi))``;
  that keyword was removed in SciPy 1.14. When the installed SciPy lacks it, the module's ``linalg``
  name is replaced by a namespace whose ``eigh`` forwards ``eigvals=`` as ``subset_by_index=`` (the
  same eigenpairs; SciPy's own documented replacement).
* ``torchvision_stub``: ``eigenpro3/utils/__init__.py`` imports ``data_utils``, which imports
  ``torchvision.datasets`` (only for its dataset loaders, never called here). When torchvision is not
  installed, an empty stand-in module is put in ``sys.modules``. On the GPU machine torchvision is
  installed and this shim is not used.
* ``default_dtype_float64`` (only with ``--dtype float64``; NOT an official feature): the official code
  makes its weights with ``torch.zeros(...)`` (default dtype, float32); ``--dtype float64`` sets
  ``torch.set_default_dtype(torch.float64)`` and passes float64 data so the whole run is float64.

Instrumentation (timing only, no behaviour change): the projector's ``setup_preconditioner`` (called
lazily in the first batch of epoch 1) is wrapped to time it; the official prints go to stderr.

Writes ``--out`` (JSON; rewritten after every epoch, so a run stopped early keeps what it finished)
and prints the same JSON as one line on stdout. Times: ``setup_seconds`` (the ``KernelModel``
constructor: Nystrom eigensystem, preconditioner matrix, data to the device), ``epoch_seconds`` (each
epoch timed with ``torch.cuda.synchronize`` on CUDA; includes the projection setup in epoch 1,
reported separately as ``projection_setup_seconds``), ``fit_seconds`` = setup + epochs. Memory:
``peak_device_mib`` = ``torch.cuda.max_memory_allocated`` (CUDA) and peak RSS ``ru_maxrss``.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import json
import os
import pathlib
import platform
import resource
import sys
import time
import types

ROOT = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_EP3 = ROOT / ".peers" / "EigenPro3"
OFFICIAL_COMMIT = "a1da2d397bdf99fc4435bb3a0d968255da4c5d43"


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--subsample", type=int, default=5000, help="n_nystrom_samples (official default 5000)")
    ap.add_argument("--top-q", type=int, default=500, help="data_preconditioner_level (official default 500)")
    ap.add_argument("--kernel", default="gaussian", choices=("gaussian", "laplacian"))
    ap.add_argument("--loader", default="official", choices=("official", "slices"))
    ap.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    ap.add_argument("--one-hot", action="store_true",
                    help="y_* are integer class labels: train on one-hot targets (as the official demo does) "
                         "and also report test accuracy (argmax)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-seconds", type=float, default=None,
                    help="stop after the epoch during which setup + epochs passed this many seconds")
    ap.add_argument("--eval-chunk", type=int, default=None, help="rows per test-prediction block")
    ap.add_argument("--ep3-path", default=os.environ.get("EP3_PATH", str(DEFAULT_EP3)))
    return ap.parse_args(argv)


# ----------------------------------------------------------------------------------- shims
def _apply_shims(ep3_path):
    shims = []
    sys.path.insert(0, str(ep3_path))
    try:
        import torchvision.datasets  # noqa: F401
    except Exception:  # torchvision absent (CPU test venv): only eigenpro3.utils.data_utils needs it
        tv = types.ModuleType("torchvision")
        tvd = types.ModuleType("torchvision.datasets")

        class _Missing:
            def __init__(self, *a, **k):
                raise ImportError("torchvision is not installed (stub from _ep3_official_worker.py)")

        for name in ("MNIST", "EMNIST", "FashionMNIST", "KMNIST", "CIFAR10"):
            setattr(tvd, name, _Missing)
        tv.datasets = tvd
        sys.modules["torchvision"] = tv
        sys.modules["torchvision.datasets"] = tvd
        shims.append("torchvision_stub")

    import scipy.linalg

    import eigenpro3.utils.svd as svd_mod

    if "eigvals" not in inspect.signature(scipy.linalg.eigh).parameters:
        real_eigh = scipy.linalg.eigh

        def eigh(a, *args, eigvals=None, **kwargs):
            if eigvals is not None:
                kwargs["subset_by_index"] = list(eigvals)
            return real_eigh(a, *args, **kwargs)

        svd_mod.linalg = types.SimpleNamespace(eigh=eigh)
        shims.append("scipy_eigh_eigvals")
    return shims


class _Slices:
    """Contiguous batches of device tensors, in order: what DataLoader(shuffle=False) yields."""

    def __init__(self, X, y, batch_size):
        self.X, self.y, self.bs = X, y, int(batch_size)

    def __iter__(self):
        for i in range(0, self.X.shape[0], self.bs):
            yield self.X[i:i + self.bs], self.y[i:i + self.bs]

    def __len__(self):
        return -(-self.X.shape[0] // self.bs)


def _cpu_name():
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} cores)"
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _scalar(v):
    try:
        return float(v.item()) if hasattr(v, "item") else float(v)
    except Exception:
        return None


def main(argv=None):
    args = parse_args(argv)
    t_start = time.perf_counter()
    import numpy as np
    import torch

    ep3_path = pathlib.Path(args.ep3_path).resolve()
    if not (ep3_path / "eigenpro3" / "models.py").is_file():
        sys.exit(f"_ep3_official_worker: official EigenPro3 code not found at {ep3_path} "
                 "(see benchmarks/_peers/README.md)")
    shims = _apply_shims(ep3_path)
    import eigenpro3
    from eigenpro3 import kernels as ep3_kernels
    from eigenpro3.models import KernelModel

    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("_ep3_official_worker: --device cuda but torch sees no GPU")
    device = torch.device("cuda:0" if args.device == "cuda" else "cpu")
    cuda = device.type == "cuda"
    if args.dtype == "float64":
        torch.set_default_dtype(torch.float64)
        shims.append("default_dtype_float64")
    np_dtype = np.float32 if args.dtype == "float32" else np.float64

    data = np.load(args.data)
    key = "bandwidth" if "bandwidth" in data.files else "lengthscale"
    bandwidth = float(np.asarray(data[key]).reshape(-1)[0])
    Xtr = np.ascontiguousarray(data["X_train"], dtype=np_dtype)
    Xte = np.ascontiguousarray(data["X_test"], dtype=np_dtype)
    Z = np.ascontiguousarray(data["centers"], dtype=np_dtype)
    if args.one_hot:
        lab_tr = np.asarray(data["y_train"]).astype(np.int64).reshape(-1)
        lab_te = np.asarray(data["y_test"]).astype(np.int64).reshape(-1)
        n_cls = int(max(lab_tr.max(), lab_te.max())) + 1
        ytr, yte = np.eye(n_cls, dtype=np_dtype)[lab_tr], np.eye(n_cls, dtype=np_dtype)[lab_te]
    else:
        lab_te = None
        ytr = np.ascontiguousarray(data["y_train"], dtype=np_dtype)
        yte = np.ascontiguousarray(data["y_test"], dtype=np_dtype)
    single_output = ytr.ndim == 1
    ytr = np.ascontiguousarray(ytr.reshape(len(ytr), -1))  # the official model needs 2-D targets (n, c)
    yte = yte.reshape(len(yte), -1)
    n, d = Xtr.shape
    p, c = Z.shape[0], ytr.shape[1]
    if not args.top_q + 1 <= min(args.subsample, n):
        sys.exit("_ep3_official_worker: need top_q + 1 <= min(subsample, n)")

    base_fn = ep3_kernels.gaussian if args.kernel == "gaussian" else ep3_kernels.laplacian
    kernel_fn = lambda x, z: base_fn(x, z, bandwidth=bandwidth)  # noqa: E731 (as in the README)

    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    X_t, y_t, Z_t = torch.from_numpy(Xtr), torch.from_numpy(ytr), torch.from_numpy(Z)
    Xte_t, yte_d = torch.from_numpy(Xte), torch.from_numpy(np.ascontiguousarray(yte)).to(device)
    t_loaded = time.perf_counter()

    def sync():
        if cuda:
            torch.cuda.synchronize(device)

    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    out = {
        "peer": "EigenPro3 (official, EigenPro/EigenPro3)", "commit": OFFICIAL_COMMIT,
        "eigenpro3_version": getattr(eigenpro3, "__version__", None), "shims": shims,
        "device": args.device, "device_name": torch.cuda.get_device_name(device) if cuda else _cpu_name(),
        "dtype": args.dtype, "kernel": args.kernel, "bandwidth": bandwidth,
        "n": n, "d": d, "p": p, "n_outputs": c, "single_output": single_output, "n_test": len(Xte),
        "subsample": args.subsample, "top_q": args.top_q, "loader": args.loader, "seed": args.seed,
        "epochs_requested": args.epochs,
        "versions": {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
                     "scipy": __import__("scipy").__version__, "cuda": torch.version.cuda},
        "load_seconds": t_loaded - t_start,
    }

    def write():
        with open(args.out, "w") as fh:
            json.dump(out, fh, indent=1)

    # ------------------------------------------------------------------- setup (official constructor)
    with contextlib.redirect_stdout(sys.stderr):
        sync()
        t0 = time.perf_counter()
        model = KernelModel(c, Z_t, kernel_fn, X=X_t, y=y_t, devices=[device],
                            make_dataloader=args.loader == "official",
                            n_nystrom_samples=args.subsample, data_preconditioner_level=args.top_q)
        if args.loader == "official":
            loaders = model.train_loaders
        else:
            loaders = [_Slices(X_t.to(device), y_t.to(device), model.batch_size)]
        sync()
        setup = time.perf_counter() - t0
    bs = int(model.batch_size)
    out.update(setup_seconds=setup, batch_size=bs, learning_rate=_scalar(model.lr),
               batches_per_epoch=sum(len(ld) for ld in loaders),
               batch_size_exceeds_n=bs > n)
    print(f"[ep3] setup {setup:.2f} s, batch size {bs}, lr {_scalar(model.lr):.4g}, "
          f"{out['batches_per_epoch']} batches/epoch", file=sys.stderr)

    proj = model.inexact_projector
    proj_setup = {}
    real_setup = proj.setup_preconditioner

    def timed_setup(*a):  # instrumentation only
        sync()
        t = time.perf_counter()
        real_setup(*a)
        sync()
        proj_setup["seconds"] = time.perf_counter() - t

    proj.setup_preconditioner = timed_setup

    chunk = args.eval_chunk or max(256, min(65536, int(2 ** 28 // max(p, 1))))

    def test_mse():
        with torch.no_grad():
            W = model.weights.to(device)
            C = model.centers.to(device)
            err, hits = 0.0, 0
            for i in range(0, len(Xte_t), chunk):
                xb = Xte_t[i:i + chunk].to(device)
                pred = kernel_fn(xb, C) @ W
                err += float(((pred - yte_d[i:i + chunk]) ** 2).sum())
                if lab_te is not None:
                    hits += int((pred.argmax(1).cpu().numpy() == lab_te[i:i + chunk]).sum())
            return err / yte_d.numel(), (hits / len(lab_te) if lab_te is not None else None)

    epoch_s, mses, accs = [], [], []
    out.update(epoch_seconds=epoch_s, test_mse=mses, one_hot=args.one_hot)
    if args.one_hot:
        out["test_accuracy"] = accs
    elapsed = setup
    for e in range(args.epochs):
        with contextlib.redirect_stdout(sys.stderr):
            model.epoch = e
            sync()
            t0 = time.perf_counter()
            model.fit_epoch(loaders)
            sync()
            dt = time.perf_counter() - t0
        epoch_s.append(dt)
        elapsed += dt
        mse, acc = test_mse()
        mses.append(mse)
        if acc is not None:
            accs.append(acc)
        out.update(epochs_done=e + 1, fit_seconds=elapsed,
                   seconds_per_epoch=sum(epoch_s) / len(epoch_s),
                   seconds_per_epoch_after_first=(sum(epoch_s[1:]) / (len(epoch_s) - 1) if len(epoch_s) > 1 else None),
                   projection_setup_seconds=proj_setup.get("seconds"),
                   projection_batch_size=_scalar(getattr(proj, "bs", None)),
                   projection_step=_scalar(getattr(proj, "eta", None)),
                   projection_bs_gpu=_scalar(getattr(proj, "bs_gpu", None)),
                   projection_top_eigval=_scalar(getattr(proj, "top_eigval", None)),
                   projection_beta=_scalar(getattr(proj, "beta", None)),
                   peak_device_mib=(torch.cuda.max_memory_allocated(device) / 2 ** 20 if cuda else None),
                   peak_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0)
        print(f"[ep3] epoch {e + 1}: {dt:.2f} s, test MSE {mses[-1]:.6g}", file=sys.stderr)
        write()
        if not np.isfinite(mses[-1]):
            out["diverged"] = True
            break
        if args.max_seconds is not None and elapsed > args.max_seconds:
            out["stopped_by_max_seconds"] = True
            break
    out["wall_seconds"] = time.perf_counter() - t_start
    write()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
