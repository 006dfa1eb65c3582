"""A stax network's infinite-width kernel as an ntkit Kernel, and block-wise evaluation.

For inputs that are vectors, every stax network's kernel is a function of the inputs' inner
products and squared norms only: the first state is ``nngp = <x, z> / d``,
``cov1 = |x|^2 / d``, ``cov2 = |z|^2 / d``, and every layer maps covariances to covariances.
So :class:`StaxKernel` is a dot-product :class:`~ntkit.kernels.Kernel`: ``ntkit.ops`` forms
the inner products block by block (under its ``memory_budget``) and this module maps each block
through the network, which is how it serves :func:`ntkit.ops.gram`,
:func:`ntkit.ops.kernel_matvec`, :class:`~ntkit.ops.KernelOperator`, the solvers and the
estimators. Image inputs are not a function of one inner product per pair: with
``input_shape=(H, W, C)`` the kernel reads each row as a flattened image and evaluates the
network on the block's rows themselves (``Kernel._block_rows``), its blocks sized by the
covariances of every pair of pixels (``Kernel._workspace_copies``); :func:`batch` evaluates a
``kernel_fn`` in blocks of rows outside ``ntkit.ops``.
"""

from __future__ import annotations

import functools

import numpy as np

from .._validation import InvalidParameterError, check_int
from ..kernels import DotProductKernel

__all__ = ["StaxKernel", "as_kernel", "batch"]

_GETS = ("nngp", "ntk")


def _check_kernel_fn(kernel_fn, owner):
    from ._core import KernelFn

    if isinstance(kernel_fn, tuple) and len(kernel_fn) >= 3:
        kernel_fn = kernel_fn[2]
    if not isinstance(kernel_fn, KernelFn):
        raise InvalidParameterError(f"The 'kernel_fn' parameter of {owner} must be the kernel_fn of an ntkit.stax "
                                    f"layer or network (or its triple); got {type(kernel_fn).__name__}.")
    return kernel_fn


def _network_values(kernel_fn, get, dot, sx, sz, n_features, x1_is_x2):
    """The network's ``get`` kernel from inner products ``dot`` (n, m) and squared norms."""
    import jax.numpy as jnp

    from ._core import _DEFAULT_REQS
    from ._state import KernelState

    layer = kernel_fn._layer
    reqs = dict(_DEFAULT_REQS)
    reqs.update({k: v for k, v in layer.reqs.items() if k in ("batch_axis", "channel_axis")})
    if reqs["batch_axis"] not in (0, -2) or reqs["channel_axis"] not in (1, -1, None):
        raise ValueError("as_kernel needs a network whose first layer reads (n_samples, n_features) rows "
                         f"(batch_axis=0, channel_axis=-1); got {reqs['batch_axis']}, {reqs['channel_axis']}. "
                         "For images pass input_shape=(H, W, C) and flattened rows.")
    inv = 1.0 / max(int(n_features), 1)
    n, m = dot.shape
    state = KernelState(nngp=dot * inv, ntk=jnp.zeros((), dot.dtype) if get == "ntk" else None, cov1=sx * inv,
                        cov2=sz * inv, x1_is_x2=x1_is_x2, is_gaussian=False, is_reversed=False, is_input=False,
                        diagonal_batch=True, diagonal_spatial=False, shape1=(n, int(n_features)),
                        shape2=(m, int(n_features)), batch_axis=0, channel_axis=1)
    out = layer.kfn(state, {})
    if isinstance(out, (list, tuple)):
        raise ValueError("as_kernel needs a network with one output; this one ends in parallel branches.")
    val = getattr(out, get)
    if val.ndim == 0:  # a network without parameters: NTK 0
        val = jnp.broadcast_to(val, (n, m))
    if val.shape != (n, m):
        raise ValueError(f"as_kernel needs a network whose kernel is one number per pair of inputs; its {get} "
                         f"has shape {tuple(val.shape)} for {n} x {m} inputs (end the network with Flatten, "
                         "a global pooling or Dense layers; for images pass input_shape=(H, W, C) and "
                         "flattened rows).")
    return val


def _image_values(kernel_fn, get, A, B, shape):
    """The network's ``get`` kernel between the flattened images A (n, prod(shape)) and B (None: A with itself)."""
    import jax.numpy as jnp

    n, m = A.shape[0], (A if B is None else B).shape[0]
    val = kernel_fn(A.reshape((n,) + shape), None if B is None else B.reshape((m,) + shape), get)
    val = jnp.asarray(val)
    if val.ndim == 0:  # a network without parameters: NTK 0
        val = jnp.broadcast_to(val, (n, m))
    if val.shape != (n, m):
        raise ValueError(f"as_kernel needs a network whose kernel is one number per pair of inputs; its {get} "
                         f"has shape {tuple(val.shape)} for {n} x {m} images of shape {shape} (end the network "
                         "with Flatten, a global pooling or Dense layers).")
    return val


@functools.lru_cache(maxsize=64)
def _compiled_images(kernel_fn, get, shape):
    import jax

    return jax.jit(lambda A, B: _image_values(kernel_fn, get, A, B, shape))


def _image_diag(kernel_fn, get, shape):
    """Each flattened image with itself: ``(n, prod(shape)) -> (n,)``, vmapped."""
    import jax

    return jax.vmap(lambda a: _image_values(kernel_fn, get, a[None], None, shape)[0, 0])


@functools.lru_cache(maxsize=64)
def _compiled_image_diag(kernel_fn, get, shape):
    import jax

    return jax.jit(_image_diag(kernel_fn, get, shape))


@functools.lru_cache(maxsize=64)
def _compiled(kernel_fn, get, n_features, x1_is_x2):
    import jax

    return jax.jit(lambda dot, sx, sz: _network_values(kernel_fn, get, dot, sx, sz, n_features, x1_is_x2))


class StaxKernel(DotProductKernel):
    """The infinite-width NNGP or NTK of an ``ntkit.stax`` network, as an ntkit Kernel.

    Built by :func:`as_kernel`. ``k(X, Z=None)`` is the Gram matrix (through
    :func:`ntkit.ops.gram`), ``k.diag(X)`` its diagonal; it works wherever an ntkit kernel does
    (``ntkit.ops``, solvers, estimators). ``K(X, X)`` has neural-tangents' ``kernel_fn(X, None)``
    values (a Dropout layer scales the diagonal); ``K(X, Z)`` treats X and Z as different inputs.

    Parameters
    ----------
    kernel_fn : callable
        The ``kernel_fn`` of an ``ntkit.stax`` network (or the whole triple).
    get : {"ntk", "nngp"}, default="ntk"
    input_shape : tuple of int, optional
        One input's shape for a network of images (rows of ``X`` are flattened images); None for
        vectors (see :func:`as_kernel`).

    Examples
    --------
    >>> import numpy as np
    >>> from ntkit import stax
    >>> from ntkit.ops import gram
    >>> _, _, kernel_fn = stax.serial(stax.Dense(64), stax.Erf(), stax.Dense(1))
    >>> k = stax.StaxKernel(kernel_fn, get="nngp")
    >>> X = np.random.default_rng(0).normal(size=(4, 3))
    >>> bool(np.allclose(gram(k, X), kernel_fn(X, None, "nngp")))
    True
    """

    def __init__(self, kernel_fn=None, get="ntk", input_shape=None):
        self.kernel_fn = kernel_fn
        self.get = get
        self.input_shape = input_shape

    def _validated(self):
        owner = type(self).__name__
        kernel_fn = _check_kernel_fn(self.kernel_fn, owner)
        if self.get not in _GETS:
            raise InvalidParameterError(f"The 'get' parameter of {owner} must be one of {_GETS}. "
                                        f"Got {self.get!r} instead.")
        shape = self.input_shape
        if shape is not None:
            ok = isinstance(shape, (tuple, list)) and len(shape) >= 2 and all(
                isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0 for v in shape)
            if not ok:
                raise InvalidParameterError(f"The 'input_shape' parameter of {owner} must be None or a tuple of "
                                            f"positive ints with a channel axis, e.g. (8, 8, 1); got {shape!r}.")
            shape = tuple(int(v) for v in shape)
        return {"kernel_fn": kernel_fn, "get": self.get, "input_shape": shape}

    def _image_shape(self, n_features, params):
        shape = params["input_shape"]
        if int(np.prod(shape)) != int(n_features):
            raise ValueError(f"StaxKernel(input_shape={shape}) reads rows of {int(np.prod(shape))} features (flattened "
                             f"images); got rows of {int(n_features)}. Pass X.reshape(n_samples, -1) of images of "
                             "that shape.")
        return shape

    def _workspace_copies(self, params):
        shape = params["input_shape"]
        if shape is None:
            return None
        pixels = int(np.prod(shape[:-1]))
        return 12 * pixels * pixels  # a dozen covariances of every pair of pixels per pair of images

    def _block_rows(self, xp, X, Z, dot, sx, sz, n_features, params):
        if params["input_shape"] is None:
            return self._block(xp, dot, sx, sz, n_features, params)
        shape = self._image_shape(n_features, params)
        if xp is np:
            import jax

            dtype = np.result_type(X, Z)
            with (jax.enable_x64(True) if dtype == np.float64 else jax.enable_x64(False)):
                fn = _compiled_images(params["kernel_fn"], params["get"], shape)
                return np.array(fn(X, Z), dtype=dtype)
        return _image_values(params["kernel_fn"], params["get"], X, Z, shape)

    def _diag_rows(self, xp, X, sx, n_features, params):
        if params["input_shape"] is None:
            return self._diag(xp, sx, n_features, params)
        shape = self._image_shape(n_features, params)
        from .._config import resolve_budget

        # each image with itself, vmapped over chunks of rows that fit ntkit's memory budget
        per_row = 8 * self._workspace_copies(params)
        step = max(1, min(X.shape[0], resolve_budget(None) // per_row))
        if xp is np:
            import jax

            dtype = np.asarray(X).dtype
            fn = _compiled_image_diag(params["kernel_fn"], params["get"], shape)
            with (jax.enable_x64(True) if dtype == np.float64 else jax.enable_x64(False)):
                parts = [np.asarray(fn(X[i:i + step])) for i in range(0, X.shape[0], step)]
            return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)
        import jax.numpy as jnp

        one = _image_diag(params["kernel_fn"], params["get"], shape)
        parts = [one(X[i:i + step]) for i in range(0, X.shape[0], step)]
        return jnp.concatenate(parts) if parts else jnp.zeros(0, X.dtype)

    def _evaluate(self, xp, dot, sx, sz, n_features, params, x1_is_x2):
        if xp is np:  # the numpy backend: a compiled block, computed in the data's precision
            import jax

            dtype = np.result_type(dot, sx, sz)
            ctx = jax.enable_x64(True) if dtype == np.float64 else jax.enable_x64(False)
            with ctx:
                fn = _compiled(params["kernel_fn"], params["get"], int(n_features), x1_is_x2)
                return np.array(fn(dot, sx, sz), dtype=dtype)  # writable: the numpy backend edits blocks
        return _network_values(params["kernel_fn"], params["get"], dot, sx, sz, n_features, x1_is_x2)

    def _block(self, xp, dot, sx, sz, n_features, params):
        if params["input_shape"] is not None:
            raise ValueError("A StaxKernel of images (input_shape given) is evaluated from the rows, not from inner "
                             "products: call it through ntkit.ops / the kernel itself.")
        return self._evaluate(xp, dot, sx, sz, n_features, params, False)

    def _diag(self, xp, sx, n_features, params):
        """Each point with itself: a batch of 1 x 1 kernels (vmapped), identical inputs."""
        if params["input_shape"] is not None:
            raise ValueError("A StaxKernel of images (input_shape given) needs the rows for its diagonal: "
                             "call k.diag(X) (the device solvers take vector kernels only).")
        import jax
        import jax.numpy as jnp

        def one(s):
            s1 = s.reshape(1)
            return _network_values(params["kernel_fn"], params["get"], s.reshape(1, 1), s1, s1, n_features,
                                   True)[0, 0]

        if xp is np:
            dtype = np.asarray(sx).dtype
            with (jax.enable_x64(True) if dtype == np.float64 else jax.enable_x64(False)):
                return np.array(_compiled_diag(params["kernel_fn"], params["get"], int(n_features))(sx),
                                  dtype=dtype)
        return jax.vmap(one)(jnp.asarray(sx))


@functools.lru_cache(maxsize=64)
def _compiled_diag(kernel_fn, get, n_features):
    import jax

    def one(s):
        s1 = s.reshape(1)
        return _network_values(kernel_fn, get, s.reshape(1, 1), s1, s1, n_features, True)[0, 0]

    return jax.jit(jax.vmap(one))


def as_kernel(kernel_fn, get="ntk", input_shape=None):
    """An ntkit :class:`~ntkit.kernels.Kernel` from a stax ``kernel_fn``.

    Parameters
    ----------
    kernel_fn : callable or (init_fn, apply_fn, kernel_fn)
        From an ``ntkit.stax`` layer or network whose output has one number per pair of inputs
        (ending in a readout: Flatten, a global pooling or Dense layers).
    get : {"ntk", "nngp"}, default="ntk"
    input_shape : tuple of int, optional
        The shape of one input when the network reads images (e.g. ``(8, 8, 1)``, NHWC without
        the batch axis): the kernel then takes each row of ``X`` as a flattened image
        (``X.reshape(n, -1)``). None: the network reads ``(n_samples, n_features)`` vectors.

    Returns
    -------
    StaxKernel

    Examples
    --------
    >>> import numpy as np
    >>> from ntkit import stax
    >>> from ntkit.estimators import NTKRegressor
    >>> net = stax.serial(stax.Dense(512, b_std=0.1), stax.Relu(), stax.Dense(1))
    >>> rng = np.random.default_rng(0)
    >>> X, y = rng.normal(size=(30, 4)), rng.normal(size=30)
    >>> model = NTKRegressor(kernel=stax.as_kernel(net, get="ntk"), ridge=1e-3).fit(X, y)
    >>> model.predict(X[:2]).shape
    (2,)

    A convolutional network's kernel on images (the rows are flattened 4 x 4 x 1 images):

    >>> cnn = stax.serial(stax.Conv(16, (3, 3), padding="SAME"), stax.Relu(), stax.GlobalAvgPool(), stax.Dense(1))
    >>> imgs = rng.normal(size=(6, 4, 4, 1))
    >>> model = NTKRegressor(kernel=stax.as_kernel(cnn, input_shape=(4, 4, 1)), ridge=1e-3)
    >>> model.fit(imgs.reshape(6, -1), rng.normal(size=6)).predict(imgs[:2].reshape(2, -1)).shape
    (2,)
    """
    kernel = StaxKernel(_check_kernel_fn(kernel_fn, "as_kernel"), get=get, input_shape=input_shape)
    kernel._validated()
    return kernel


def batch(kernel_fn, batch_size=0, *, memory_budget=None):
    """Evaluate a ``kernel_fn`` in blocks of rows of ``x1`` and ``x2`` (like neural-tangents' ``nt.batch``).

    The returned function has the signature ``fn(x1, x2=None, get=("nngp", "ntk"))`` and
    returns the same arrays as ``kernel_fn`` (``get`` a string or a tuple of ``"nngp"`` /
    ``"ntk"``), computed ``batch_size x batch_size`` pairs of inputs at a time, so the
    intermediate covariances of a convolutional network (``batch_size**2 x (H W)**2`` numbers
    per layer) stay bounded. ``batch_size=0`` takes it from ``memory_budget`` (bytes, or a
    string such as ``"512MiB"``; default: ntkit's budget rule, see :func:`ntkit.config_context`),
    assuming a dozen covariance-sized temporaries per block. A graph network's
    ``pattern=(P1, P2)`` (see :func:`Aggregate`) is cut into the same blocks of rows. With
    ``x2=None`` and a result without spatial axes (a network ending in a readout), only the blocks
    on and above the diagonal are computed and the others are their transposes: about half the
    work of neural-tangents' ``nt.batch``, which computes every block.

    Parameters
    ----------
    kernel_fn : callable
        An ``ntkit.stax`` ``kernel_fn``.
    batch_size : int >= 0, default=0
    memory_budget : int or str, optional

    Returns
    -------
    callable

    Examples
    --------
    >>> import numpy as np
    >>> from ntkit import stax
    >>> _, _, kernel_fn = stax.serial(stax.Dense(8), stax.Relu(), stax.Dense(1))
    >>> x = np.random.default_rng(0).normal(size=(7, 3))
    >>> batched = stax.batch(kernel_fn, batch_size=3)
    >>> bool(np.allclose(batched(x, None, "ntk"), kernel_fn(x, None, "ntk")))
    True
    """
    kernel_fn = _check_kernel_fn(kernel_fn, "batch")
    batch_size = check_int(batch_size, "batch_size", "batch", low=0)

    def fn(x1, x2=None, get=("nngp", "ntk"), **kwargs):
        import jax.numpy as jnp

        from ._core import _canonical_get, _is_array

        get_t, single = _canonical_get(get)
        if get_t is None or any(g not in _GETS for g in get_t):
            raise ValueError(f"batch(kernel_fn) returns arrays: get must be 'nngp', 'ntk' or a tuple of them; "
                             f"got {get!r}.")
        for name, x in (("x1", x1), ("x2", x2)):
            if x is not None and not _is_array(x):
                raise TypeError(f"{name} must be a numpy or jax array; got {type(x).__name__}.")
        n1 = x1.shape[0]
        n2 = n1 if x2 is None else x2.shape[0]
        bs = batch_size or _auto_batch(x1, memory_budget)
        blocks = {g: [] for g in get_t}
        pattern = kwargs.get("pattern")
        # K(x, x): a block below the diagonal is the transpose of one above it when the result has no
        # spatial axes (whose pairs would be swapped too): half the blocks for the usual readouts.
        mirror = x2 is None and pattern is None
        upper = {}
        for i in range(0, n1, bs):
            rows = {g: [] for g in get_t}
            for j in range(0, n2, bs):
                a = x1[i:i + bs]
                kw = dict(kwargs)
                if isinstance(pattern, (tuple, list)) and len(pattern) == 2:
                    kw["pattern"] = tuple(None if p is None else p[lo:lo + bs] for p, lo in zip(pattern, (i, j)))
                if mirror and (j, i) in upper:
                    done = upper.pop((j, i))
                    for g in get_t:
                        rows[g].append(done[g].T)
                    continue
                if x2 is None and i == j:
                    out = kernel_fn(a, None, get_t, **kw)
                else:
                    b = (x1 if x2 is None else x2)[j:j + bs]
                    out = kernel_fn(a, b, get_t, **kw)
                if mirror and j > i and all(getattr(out, g).ndim == 2 for g in get_t):
                    upper[(i, j)] = {g: getattr(out, g) for g in get_t}
                for g in get_t:
                    rows[g].append(getattr(out, g))
            for g in get_t:
                blocks[g].append(jnp.concatenate(rows[g], axis=1))
        res = {g: jnp.concatenate(blocks[g], axis=0) for g in get_t}
        if single:
            return res[get_t[0]]
        from ._core import _result_type

        return _result_type(get_t)(*(res[g] for g in get_t))

    return fn


def _auto_batch(x1, memory_budget):
    from .._config import resolve_budget

    budget = resolve_budget(memory_budget)
    spatial = int(np.prod(x1.shape[1:-1])) if x1.ndim > 2 else 1
    per_pair = 12 * 8 * spatial ** 2  # a dozen float64 covariance-sized temporaries
    return max(1, int((budget / per_pair) ** 0.5))
