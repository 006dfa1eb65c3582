"""Graph random features against exact graph kernels (dense scipy references)."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
import scipy.linalg
import scipy.sparse as sp

from ntkit.graphs import GraphKernelRidge, GraphRandomFeatures, exact_graph_kernel
from ntkit.graphs._grf import walk_features
from ntkit.graphs._kernels import NAMED_KERNELS, alpha_coefficients, deconvolve, modulation, normalized_adjacency


def _csr(G):
    return nx.to_scipy_sparse_array(G, format="csr").astype(np.float64)


GRAPHS = {
    "erdos_renyi": lambda: _csr(nx.erdos_renyi_graph(300, 0.03, seed=0)),
    "barabasi_albert": lambda: _csr(nx.barabasi_albert_graph(300, 3, seed=0)),
    "mesh_2d": lambda: _csr(nx.convert_node_labels_to_integers(nx.grid_2d_graph(15, 20))),
}


@pytest.fixture(scope="module")
def weighted():
    """A weighted ER graph with a self-loop and an isolated node."""
    rng = np.random.default_rng(0)
    W = sp.random(80, 80, density=0.08, random_state=1, data_rvs=lambda k: rng.uniform(0.2, 2.0, k))
    W = sp.triu(W, 1)
    W = (W + W.T).tolil()
    W[3, 3] = 0.7
    W[10, :] = 0
    W[:, 10] = 0
    return sp.csr_matrix(W)


# --------------------------------------------------------------------------- kernels

def test_modulations_are_convolution_square_roots():
    L = 40
    for kernel in NAMED_KERNELS:
        f = modulation(kernel, L, p=4)
        np.testing.assert_allclose(np.convolve(f, f)[:L], alpha_coefficients(kernel, L, p=4), rtol=1e-12, atol=1e-14)
    # closed forms = numerical deconvolution
    for kernel in ("regularized_laplacian", "regularized_laplacian_2", "diffusion"):
        # the recursion subtracts nearly equal terms for tiny coefficients: absolute accuracy 1e-15
        np.testing.assert_allclose(modulation(kernel, L), deconvolve(alpha_coefficients(kernel, L)), rtol=1e-12,
                                   atol=1e-15)
    np.testing.assert_allclose(modulation("p_step", 6, p=4), [1, 2, 1, 0, 0, 0], atol=1e-15)


def test_exact_kernels_against_scipy(weighted):
    W = weighted
    U = normalized_adjacency(W, 0.6).toarray()
    # independent references: scipy.linalg inverse / expm / cosm / sinm / matrix power
    I = np.eye(len(U))
    refs = {"regularized_laplacian": scipy.linalg.inv(I - U),
            "regularized_laplacian_2": np.linalg.matrix_power(scipy.linalg.inv(I - U), 2),
            "diffusion": scipy.linalg.expm(U),
            "p_step": np.linalg.matrix_power(I + U, 3),
            "cosine": scipy.linalg.cosm(U) + scipy.linalg.sinm(U)}
    for kernel, ref in refs.items():
        np.testing.assert_allclose(exact_graph_kernel(W, kernel, sigma=0.6, p=3), ref, rtol=0, atol=1e-11)
    alpha = [1.0, 0.5, 0.25]
    np.testing.assert_allclose(exact_graph_kernel(W, alpha, sigma=0.6), I + 0.5 * U + 0.25 * U @ U, atol=1e-12)
    # isolated node: U row zero, K_ii = α_0
    assert abs(exact_graph_kernel(W, sigma=0.6)[10, 10] - 1.0) < 1e-12


# --------------------------------------------------------------------------- estimator

def test_native_and_numpy_samplers_agree(weighted):
    pytest.importorskip("ntkit_native")
    import ntkit_native

    if not ntkit_native.is_available():
        pytest.skip("native extension not built")
    g = GraphRandomFeatures(n_walks=8, random_state=1).fit(weighted)
    for mode in (0, 1, 2, 3):
        a, s1 = walk_features(g.U_, np.arange(80), 8, 0.3, g.modulation_, 99, mode, backend="native")
        b, s2 = walk_features(g.U_, np.arange(80), 8, 0.3, g.modulation_, 99, mode, backend="numpy")
        assert s1 == s2
        # identical random numbers; only the summation order of repeated visits differs
        np.testing.assert_allclose(a.toarray(), b.toarray(), rtol=1e-13, atol=1e-15)


def test_features_do_not_depend_on_how_start_nodes_are_split(weighted):
    g = GraphRandomFeatures(n_walks=6, repelling=True, antithetic=True, random_state=5).fit(weighted)
    whole = g.features_
    parts = [walk_features(g.U_, idx, 6, 0.5, g.modulation_, g.seed_, 3)[0] for idx in
             (np.arange(0, 33), np.arange(33, 80))]
    assert (sp.vstack(parts).tocsr() != whole).nnz == 0


@pytest.mark.parametrize("kernel", ["regularized_laplacian", "diffusion", "cosine"])
def test_unbiased_including_the_diagonal(weighted, kernel):
    K = exact_graph_kernel(weighted, kernel, sigma=0.6)
    S = 200  # heavy-tailed far entries: the sample variance needs a few hundred draws to be reliable
    est = np.stack([GraphRandomFeatures(kernel, sigma=0.6, n_walks=8, p_halt=0.3, random_state=s).fit(weighted)
                    .kernel_estimate() for s in range(S)])
    naive = np.stack([GraphRandomFeatures(kernel, sigma=0.6, n_walks=8, p_halt=0.3, random_state=s).fit(weighted)
                      .kernel_estimate(unbiased_diagonal=False) for s in range(S)])

    def excess(E, mask):
        # E‖mean − K‖² = Σ var/S for an unbiased estimator; compare with the sample variances
        # (entry-wise z-tests are unreliable here: far entries are rare, heavy-tailed events)
        err2 = np.sum(((E.mean(0) - K) ** 2)[mask])
        var = np.sum((E.var(0, ddof=1) / len(E))[mask])
        return err2 / var

    off = ~np.eye(len(K), dtype=bool)
    diag = np.eye(len(K), dtype=bool)
    # a χ²-like ratio near 1 for an unbiased estimator (thousands of entries: 2 is a wide margin)
    assert excess(est, off) < 2.0
    assert excess(est, diag) < 2.0
    # the single-set Gram ΦΦᵀ pairs each walk set with itself: its diagonal is biased upwards
    assert excess(naive, diag) > 5.0
    assert np.mean(np.diag(naive.mean(0)) - np.diag(K)) > 0


def test_callable_and_array_kernels(weighted):
    f = lambda l: 0.8**l  # noqa: E731 - a "learned" modulation
    K = exact_graph_kernel(weighted, f, sigma=0.6)
    g = GraphRandomFeatures(f, sigma=0.6, n_walks=512, repelling=True, random_state=0).fit(weighted)
    assert np.linalg.norm(g.kernel_estimate() - K) / np.linalg.norm(K) < 0.02
    alpha = np.array([1.0, 0.6, 0.3, 0.1])
    K = exact_graph_kernel(weighted, alpha, sigma=0.9)
    g = GraphRandomFeatures(alpha, sigma=0.9, n_walks=512, repelling=True, random_state=0).fit(weighted)
    assert np.linalg.norm(g.kernel_estimate() - K) / np.linalg.norm(K) < 0.02


@pytest.mark.parametrize("graph", GRAPHS)
def test_error_falls_like_one_over_sqrt_walks_and_qmc_helps(graph):
    W = GRAPHS[graph]()
    K = exact_graph_kernel(W, sigma=0.5)
    walks = np.array([4, 16, 64, 256])

    def err(**kw):
        return np.array([np.mean([np.linalg.norm(GraphRandomFeatures(n_walks=m, random_state=s, **kw).fit(W)
                                                 .kernel_estimate() - K) / np.linalg.norm(K) for s in range(2)])
                         for m in walks])

    iid, anti, rep = err(), err(antithetic=True), err(repelling=True)
    slope = np.polyfit(np.log(walks), np.log(iid), 1)[0]
    # Monte Carlo: the Frobenius error of an average of m independent walks ∝ m^{-1/2}
    assert abs(slope + 0.5) < 0.1, (slope, iid)
    # antithetic termination and repelling walks keep the mean and lower the variance
    assert np.all(anti <= 1.02 * iid), (anti, iid)
    assert np.all(rep[1:] < iid[1:]), (rep, iid)


def test_kernel_matvec_matches_dense(weighted):
    g = GraphRandomFeatures(n_walks=16, random_state=0).fit(weighted)
    V = np.random.default_rng(0).normal(size=(80, 3))
    np.testing.assert_allclose(g.kernel_matvec(V), g.kernel_estimate() @ V, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(g.kernel_matvec(V[:, 0], unbiased_diagonal=False),
                               g.kernel_estimate(unbiased_diagonal=False) @ V[:, 0], rtol=1e-12, atol=1e-12)
    # isolated node: its feature is itself only, with f(0) = 1
    row = g.features_[10]
    assert row.nnz == 1 and row.indices[0] == 10 and row.data[0] == 1.0


def test_inputs_dense_networkx_and_symmetrize():
    G = nx.path_graph(6)
    a = GraphRandomFeatures(n_walks=4, random_state=0).fit(G).features_
    b = GraphRandomFeatures(n_walks=4, random_state=0).fit(nx.to_numpy_array(G)).features_
    assert (a != b).nnz == 0
    D = nx.DiGraph([(0, 1), (1, 2)])
    with pytest.raises(ValueError, match="directed"):
        GraphRandomFeatures().fit(D)
    W = np.array([[0, 1, 0], [0, 0, 1], [1, 0, 0]], float)
    with pytest.raises(ValueError, match="symmetrize=True"):
        GraphRandomFeatures().fit(W)
    g = GraphRandomFeatures(symmetrize=True, n_walks=4, random_state=0).fit(W)
    assert g.adjacency_.toarray().tolist() == [[0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]]


@pytest.mark.parametrize("make,adj,match", [
    (lambda: GraphRandomFeatures(), np.array([[0, -1.0], [-1.0, 0]]), "negative"),
    (lambda: GraphRandomFeatures(), np.array([[0, np.nan], [np.nan, 0]]), "NaN"),
    (lambda: GraphRandomFeatures(), np.ones((2, 3)), "square"),
    (lambda: GraphRandomFeatures(sigma=1.2), np.array([[0, 1.0], [1.0, 0]]), "diverges"),
    (lambda: GraphRandomFeatures(n_walks=3, antithetic=True), np.array([[0, 1.0], [1.0, 0]]), "even"),
    (lambda: GraphRandomFeatures(p_halt=1.0), np.array([[0, 1.0], [1.0, 0]]), "p_halt"),
    (lambda: GraphRandomFeatures(n_walks=0), np.array([[0, 1.0], [1.0, 0]]), "n_walks"),
    (lambda: GraphRandomFeatures(kernel="heat"), np.array([[0, 1.0], [1.0, 0]]), "kernel"),
    (lambda: GraphRandomFeatures(kernel=[0.0, 1.0]), np.array([[0, 1.0], [1.0, 0]]), "α_0"),
])
def test_bad_input(make, adj, match):
    with pytest.raises(ValueError, match=match):
        make().fit(adj)


def test_diffusion_allows_any_sigma():
    W = np.array([[0, 1.0], [1.0, 0]])
    g = GraphRandomFeatures("diffusion", sigma=1.5, n_walks=4000, random_state=0).fit(W)
    K = exact_graph_kernel(W, "diffusion", sigma=1.5)
    assert np.abs(g.kernel_estimate() - K).max() / np.abs(K).max() < 0.05


# --------------------------------------------------------------------------- downstream

def _sbm(n=600, seed=0):
    sizes = [n // 3, n // 3, n - 2 * (n // 3)]
    P = np.full((3, 3), 0.004) + np.eye(3) * 0.05
    G = nx.stochastic_block_model(sizes, P, seed=seed)
    y = np.concatenate([np.full(s, i) for i, s in enumerate(sizes)])
    return _csr(G), y


def test_graph_kernel_ridge_matches_exact_kernel_ridge():
    W, y = _sbm()
    rng = np.random.default_rng(0)
    train = np.sort(rng.choice(len(y), 60, replace=False))
    test = np.setdiff1d(np.arange(len(y)), train)
    ridge = 1e-2
    m = GraphKernelRidge(n_walks=256, p_halt=0.2, repelling=True, ridge=ridge, random_state=0).fit(W, train, y[train])
    acc = np.mean(m.predict(test) == y[test])
    K = exact_graph_kernel(W, sigma=0.5)
    Y = np.eye(3)[y[train]]
    A = np.linalg.solve(K[np.ix_(train, train)] + ridge * np.eye(len(train)), Y)
    acc_exact = np.mean(np.argmax(K[np.ix_(test, train)] @ A, 1) == y[test])
    assert acc_exact > 0.8 and acc >= acc_exact - 0.01, (acc, acc_exact)
    # regression on a smooth node signal
    s = np.where(y == 0, 1.0, np.where(y == 1, -1.0, 0.5))
    r = GraphKernelRidge(sigma=0.9, n_walks=256, p_halt=0.2, repelling=True, ridge=ridge, random_state=0)
    pred = r.fit(W, train, s[train]).predict(test)
    K9 = exact_graph_kernel(W, sigma=0.9)
    exact = K9[np.ix_(test, train)] @ np.linalg.solve(K9[np.ix_(train, train)] + ridge * np.eye(len(train)), s[train])
    assert pred.shape == (len(test),)
    assert np.corrcoef(pred, exact)[0, 1] > 0.99
    mse, mse_exact = np.mean((pred - s[test]) ** 2), np.mean((exact - s[test]) ** 2)
    assert mse <= 1.01 * mse_exact and mse_exact < 0.8 * np.var(s), (mse, mse_exact)
    with pytest.raises(ValueError, match="nodes"):
        GraphKernelRidge().fit(W, [0.5, 1.5], [1, 2])
    with pytest.raises(ValueError, match="repeated"):
        GraphKernelRidge().fit(W, [1, 1], [1, 2])


def test_dask_equals_local_bit_for_bit():
    distributed = pytest.importorskip("dask.distributed")
    from ntkit.distributed import graph_random_features

    W = GRAPHS["barabasi_albert"]()
    local = GraphRandomFeatures(n_walks=8, antithetic=True, repelling=True, random_state=7).fit(W)
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None) as c, \
            distributed.Client(c) as client:
        remote = graph_random_features(W, client=client, n_walks=8, antithetic=True, repelling=True, random_state=7)
    assert np.array_equal(remote.features_.indptr, local.features_.indptr)
    assert np.array_equal(remote.features_.indices, local.features_.indices)
    assert np.array_equal(remote.features_.data, local.features_.data)
    assert remote.n_steps_ == local.n_steps_
