"""The fast paths of small fits against independent computations.

* ``small_eigh`` / ``small_svd`` (LAPACK called directly) against ``scipy.linalg``;
* the dense layout of the L-BFGS solver (small problems) against direct formulas of the
  objective's products and gradient, and its solution against a long independent run of the
  per-modality layout;
* the scalar helpers of the selection's noise step against the spike formula they sum and
  the fixed-point iteration whose limit they solve for;
* the selection's evidence table against ``DataFrame.from_records`` of its rows, and the
  noise step's eigenpairs against NumPy, with no decomposition computed twice.
"""

import numpy as np
import pandas as pd
import pytest
import scipy.linalg
import scipy.optimize

from hcl_stats import Structure
from hcl_stats._estimation import lbfgs
from hcl_stats._estimation import noise as noise_module
from hcl_stats._estimation import rmt
from hcl_stats._estimation import selection as selection_module
from hcl_stats._estimation.init import spectral_init
from hcl_stats._estimation.noise import denoised_eigenpairs
from hcl_stats._estimation.rmt import spike_noise, spike_population, spike_signal
from hcl_stats._numerics.linalg import small_eigh, small_svd, top_eigh
from hcl_stats._statistics.covariance import sample_covariance
from hcl_stats._structure import subset_label
from hcl_stats.datasets import make_hierarchical


@pytest.mark.parametrize("n", [1, 2, 5, 16, 33, 70])
def test_small_eigh_is_scipys_eigh(n):
    rng = np.random.default_rng(n)
    A = rng.standard_normal((n + 3, n))
    A = A.T @ A
    B = np.eye(n) * n + A / 10
    pairs = [(small_eigh(A), scipy.linalg.eigh(A)),
             (small_eigh(A[::-1, ::-1]), scipy.linalg.eigh(A[::-1, ::-1])),  # a view
             (small_eigh(A, B), scipy.linalg.eigh(A, B))]
    for (w, v), (w_ref, v_ref) in pairs:
        np.testing.assert_array_equal(w, w_ref)
        np.testing.assert_array_equal(v, v_ref)
    np.testing.assert_array_equal(small_eigh(A, eigvals_only=True), scipy.linalg.eigvalsh(A))


@pytest.mark.parametrize("shape", [(1, 1), (3, 7), (16, 5), (40, 40), (90, 33)])
def test_small_svd_is_scipys_svd(shape):
    A = np.random.default_rng(sum(shape)).standard_normal(shape)
    for view in (A, A[:, ::-1], np.asfortranarray(A)):
        for got, ref in ((small_svd(view), scipy.linalg.svd(view, full_matrices=False)),
                         (small_svd(view, full_matrices=True), scipy.linalg.svd(view))):
            for a, b in zip(got, ref):
                np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(small_svd(view, compute_uv=False),
                                      scipy.linalg.svdvals(view))


@pytest.mark.parametrize("n", [1, 4, 30, 141])
def test_small_eigh_subset_is_scipys_subset(n):
    rng = np.random.default_rng(n)
    A = rng.standard_normal((n + 5, n))
    A = A.T @ A
    for lo, hi in {(n - 1, n - 1), (max(n - 7, 0), n - 1), (0, n // 2)}:
        for view in (A, A[::-1, ::-1]):
            w, v = small_eigh(view, subset_by_index=[lo, hi])
            w_ref, v_ref = scipy.linalg.eigh(view, subset_by_index=[lo, hi])
            np.testing.assert_array_equal(w, w_ref)
            np.testing.assert_array_equal(v, v_ref)
    with pytest.raises(ValueError, match="indices"):
        small_eigh(A, subset_by_index=[0, n])


def test_dense_top_eigh_rejects_non_finite_input():
    S = np.eye(5)
    S[1, 2] = S[2, 1] = np.nan
    with pytest.raises(ValueError, match="infs or NaNs"):
        top_eigh(S, 2)


def test_small_decompositions_pass_other_input_to_scipy():
    A = np.array([[2.0, 1.0], [1.0, 3.0]], dtype=np.float32)
    w, _ = small_eigh(A)
    np.testing.assert_allclose(w, scipy.linalg.eigh(A)[0])
    assert small_svd(np.zeros((0, 3)), compute_uv=False).shape == (0,)


STRUCTURE = Structure({(0, 1, 2): 2, (0, 1): 1, (1, 2): 1, (0,): 1, (2,): 2})


def _problem(widths, noise, seed):
    X = make_hierarchical(600, widths, STRUCTURE, noise_variance=noise, random_state=seed)
    S = sample_covariance(X)[0]
    _, S_W, values, vectors = denoised_eigenpairs(S, widths, STRUCTURE, "isotropic")
    return S_W, spectral_init(values, vectors, STRUCTURE, widths), STRUCTURE.mask(widths)


def test_dense_layout_products_and_gradient_are_the_objectives():
    widths = [8, 12, 10]
    S_W, W0, mask = _problem(widths, 0.5, 0)
    layout = lbfgs._layout(S_W, mask, widths)
    assert isinstance(layout, lbfgs._DenseLayout)
    rng = np.random.default_rng(1)
    W = rng.standard_normal(mask.shape) * mask
    D = rng.standard_normal(mask.shape) * mask
    x, d = layout.pack(W), layout.pack(D)
    S = S_W / layout.scale
    A = layout.product(x, cheap=False)
    np.testing.assert_allclose(A.reshape(mask.shape), (S @ W) * mask, rtol=1e-13, atol=1e-15)
    G = layout.gram(x, x)
    np.testing.assert_allclose(G, W.T @ W, rtol=1e-13)
    WD, F = layout.line_grams(x, d)
    np.testing.assert_allclose(WD, W.T @ D, rtol=1e-13)
    np.testing.assert_allclose(F, D.T @ D, rtol=1e-13)
    # the gradient of 1/2 ||W W^T - S||^2 on the free entries, by central differences
    grad = layout.gradient(x, A, G).reshape(mask.shape)
    assert np.all(grad[~mask] == 0.0)

    def f(V):
        return 0.5 * np.sum((V @ V.T - S) ** 2)

    h = 1e-6
    for i, k in zip(*np.nonzero(mask)[:2]):
        if (i + k) % 7:
            continue
        E = np.zeros(mask.shape)
        E[i, k] = h
        assert grad[i, k] == pytest.approx((f(W + E) - f(W - E)) / (2 * h), rel=1e-6,
                                           abs=1e-8)
    # the objective at W, in the units of S_W
    assert layout.objective(x, A, G) == pytest.approx(
        0.5 * np.sum((W @ W.T - S_W / layout.scale) ** 2) * layout.scale ** 2, rel=1e-10)


@pytest.mark.parametrize("seed,noise", [(0, 0.5), (1, 1.0), (2, 0.2)])
def test_dense_layout_reaches_the_per_modality_layouts_optimum(seed, noise, monkeypatch):
    widths = [15, 25, 35]
    S_W, W0, mask = _problem(widths, noise, seed)
    W, f, _, converged, rel = lbfgs.solve_lbfgs(S_W, W0, mask, widths, tol=1e-5)
    assert converged and rel <= 1e-5
    assert np.all(W[~mask] == 0.0)
    assert f == pytest.approx(0.5 * np.sum((W @ W.T - S_W) ** 2), rel=1e-9)
    # an independent long run on the per-modality layout, far below the tolerance
    monkeypatch.setattr(lbfgs, "_DENSE_WORK", -1)
    assert isinstance(lbfgs._layout(S_W, mask, widths), lbfgs._PackedLayout)
    W_ref, f_ref, _, _, rel_ref = lbfgs.solve_lbfgs(S_W, W0, mask, widths, max_iter=20000,
                                                    tol=1e-10)
    assert rel_ref <= 1e-9
    assert f == pytest.approx(f_ref, rel=1e-6)
    G, G_ref = W @ W.T, W_ref @ W_ref.T
    assert np.abs(G - G_ref).max() < 1e-3 * np.abs(G_ref).max()


def test_dense_layout_preconditioner_is_the_scaled_gradient_blocks():
    # one modality without factors (no columns): its rows map to zero
    widths = [8, 12, 10, 5]
    structure = Structure({(0, 1, 2): 2, (0, 1): 1, (1, 2): 1, (0,): 1, (2,): 2},
                          modalities=4)
    mask = structure.mask(widths)
    rng = np.random.default_rng(7)
    W0 = rng.standard_normal(mask.shape) * mask
    V = rng.standard_normal(mask.shape) * mask
    layout = lbfgs._layout(np.eye(sum(widths)), mask, widths)
    assert isinstance(layout, lbfgs._DenseLayout)
    got = layout.preconditioner(W0)(layout.pack(V)).reshape(mask.shape)
    # each modality's rows times (G0[C_m, C_m] + 0.3 mean eigenvalue I)^{-1}, by hand
    expected = np.zeros(mask.shape)
    start = 0
    for p in widths:
        rows = slice(start, start + p)
        cols = np.flatnonzero(mask[start])
        if cols.size:
            g = W0[:, cols].T @ W0[:, cols]
            ridge = lbfgs._PRECOND_RIDGE * np.trace(g) / len(g) + 1e-12
            expected[rows.start:rows.stop, cols] = \
                V[rows][:, cols] @ np.linalg.inv(g + ridge * np.eye(len(g)))
        start += p
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-14)


def test_dense_layout_hessian_operator_is_the_gradients_derivative():
    widths = [8, 12, 10]
    S_W, W0, mask = _problem(widths, 0.5, 3)
    layout = lbfgs._layout(S_W, mask, widths)
    rng = np.random.default_rng(4)
    x = layout.pack(W0 / np.sqrt(layout.scale) + 0.1 * rng.standard_normal(mask.shape))
    v = layout.pack(rng.standard_normal(mask.shape))

    def grad(y):
        return layout.gradient(y, layout.product(y, cheap=False), layout.gram(y, y))

    h = 1e-6
    numeric = (grad(x + h * v) - grad(x - h * v)) / (2 * h)
    Hv = layout.hessian_operator(x, layout.gram(x, x))(v)
    assert np.all(Hv.reshape(mask.shape)[~mask] == 0.0)
    # the d x d part of the product runs in float32 (lbfgs._HESSIAN_DTYPE): float32 accuracy
    np.testing.assert_allclose(Hv, numeric, rtol=1e-5, atol=1e-6 * np.abs(numeric).max())


def test_dense_layout_hessian_products_are_new_arrays():
    # the operator refills buffers made once per direction; each product it returns is
    # its own array, equal to that of an operator made for it alone
    widths = [8, 12, 10]
    S_W, W0, mask = _problem(widths, 0.5, 3)
    layout = lbfgs._layout(S_W, mask, widths)
    rng = np.random.default_rng(5)
    x = layout.pack(W0 / np.sqrt(layout.scale))
    v1, v2 = (layout.pack(rng.standard_normal(mask.shape)) for _ in range(2))
    G = layout.gram(x, x)
    product = layout.hessian_operator(x, G)
    first = product(v1)
    kept = first.copy()
    second = product(v2)
    np.testing.assert_array_equal(first, kept)
    np.testing.assert_array_equal(second, layout.hessian_operator(x, G)(v2))
    assert first.dtype == np.float64 and not np.shares_memory(first, second)


@pytest.mark.parametrize("seed,noise", [(0, 0.5), (5, 2.0)])
def test_newton_phase_reaches_the_quasi_newton_and_scipy_optimum(seed, noise, monkeypatch):
    widths = [6, 9, 7]
    S_W, W0, mask = _problem(widths, noise, seed)
    W, f, n_iter, converged, rel = lbfgs.solve_lbfgs(S_W, W0, mask, widths, tol=1e-5)
    assert converged and rel <= 1e-5
    # L-BFGS throughout (no Newton directions), to the same tolerance
    monkeypatch.setattr(lbfgs, "_NEWTON_FROM", -1.0)
    W_q, f_q, n_q, converged_q, _ = lbfgs.solve_lbfgs(S_W, W0, mask, widths, tol=1e-5)
    assert converged_q
    # scipy's L-BFGS-B on the free entries, far below the tolerance
    S = S_W / np.max(np.diagonal(S_W))

    def fun(z):
        V = np.zeros(mask.shape)
        V[mask] = z
        R = V @ V.T - S
        return 0.5 * np.sum(R * R), (2.0 * R @ V)[mask]

    z0 = (W0 / np.sqrt(np.max(np.diagonal(S_W))))[mask]
    res = scipy.optimize.minimize(fun, z0, jac=True, method="L-BFGS-B",
                                  options={"gtol": 1e-13, "ftol": 1e-16, "maxiter": 20000})
    W_s = np.zeros(mask.shape)
    W_s[mask] = res.x * np.sqrt(np.max(np.diagonal(S_W)))
    for other in (W_q, W_s):
        G, G_ref = W @ W.T, other @ other.T
        assert np.abs(G - G_ref).max() < 1e-3 * np.abs(G_ref).max()
    assert f == pytest.approx(0.5 * np.sum((W_s @ W_s.T - S_W) ** 2), rel=1e-6)
    assert f == pytest.approx(f_q, rel=1e-6)


def test_large_problems_keep_the_per_modality_layout():
    d, K = 400, 8  # d^2 K above the dense budget
    mask = np.ones((d, K), dtype=bool)
    layout = lbfgs._layout(np.eye(d), mask, [d])
    assert isinstance(layout, lbfgs._PackedLayout)


def test_spike_signal_is_the_sum_of_spike_populations():
    rng = np.random.default_rng(0)
    for gamma in (0.01, 0.3, 1.0, 2.5):
        spikes = list(rng.uniform(0.0, 12.0, size=9))
        sigma2 = float(rng.uniform(0.5, 2.0))
        expected = sum(spike_population(e / sigma2, gamma) for e in spikes)
        assert spike_signal(spikes, sigma2, gamma) == expected
    assert spike_signal([], 1.0, 0.5) == 0


def test_spike_signal_of_an_array_is_the_sum_of_the_list():
    rng = np.random.default_rng(1)
    for size in (1, 5, 40, 130):
        spikes = np.sort(rng.uniform(0.0, 12.0, size=size))[::-1]  # some below the edge
        for sigma2, gamma in ((0.7, 0.05), (1.3, 0.4), (2.0, 1.7)):
            assert spike_signal(spikes, sigma2, gamma) == \
                spike_signal(spikes.tolist(), sigma2, gamma)


@pytest.mark.parametrize("size", [1, 3, 12, 80])
def test_spike_noise_is_the_limit_of_the_fixed_point_iteration(size):
    rng = np.random.default_rng(size)
    p, gamma = 3 * size + 20, 0.3
    spikes = sorted(rng.uniform(2.0, 30.0, size=size).tolist(), reverse=True)
    trace = sum(spikes) + float(rng.uniform(0.5, 1.5)) * (p - size)
    sigma2 = trace / p
    for _ in range(100_000):  # the iteration written out, run to convergence
        new = trace / (p + spike_signal(spikes, sigma2, gamma))
        done = abs(new - sigma2) <= 1e-15 * sigma2
        sigma2 = new
        if done:
            break
    assert done
    assert spike_noise(spikes, trace, p, gamma) == pytest.approx(sigma2, rel=1e-12)


def test_noise_equation_in_array_passes_is_the_scalar_equation():
    # spike_noise's array passes (many spikes) and its scalar evaluation give the same bits,
    # at points on both sides of each spike's detection limit and at 0
    rng = np.random.default_rng(7)
    for size, gamma in ((1, 0.05), (48, 0.4), (130, 2.0)):
        spikes = np.sort(rng.uniform(0.0, 12.0, size=size))[::-1]
        trace = float(spikes.sum()) + 5.0
        points = np.concatenate([[0.0], rng.uniform(0.0, 4.0, size=50),
                                 spikes / (1 + np.sqrt(gamma)) ** 2])
        expected = [rmt._spike_equation(s, spikes.tolist(), trace, 60, gamma)
                    for s in points.tolist()]
        assert rmt._spike_equation_at(points, spikes, trace, 60, gamma).tolist() == expected


def test_modality_rank_shares_its_noise_iterations_between_caps():
    rng = np.random.default_rng(4)
    X = rng.standard_normal((300, 40)) @ np.diag(np.linspace(4.0, 1.0, 40))
    evals = np.linalg.eigvalsh(np.cov(X, rowvar=False))[::-1]
    memo = {}
    for kmax in (20, 3, 1, 20):
        assert selection_module._modality_rank(evals, 40, 299, 0.01, kmax, memo) == \
            selection_module._modality_rank(evals, 40, 299, 0.01, kmax)


def _recorded_rows(monkeypatch, *args, **kwargs):
    """``select_structure(*args, **kwargs)`` and the rows its evidence table was built from."""
    recorders = []
    table = selection_module._Evidence.table

    def keep(self):
        recorders.append(self)
        return table(self)

    monkeypatch.setattr(selection_module._Evidence, "table", keep)
    result = selection_module.select_structure(*args, **kwargs)
    result.evidence  # the table is built on first access
    return result, recorders[-1].rows


def _from_records(rows, names):
    """The reference table: each row labelled and converted on its own, then pandas'
    ``from_records``."""
    def label(m):
        return None if m is None else (names[m] if names else m)

    labelled = [(step, None if subset is None else subset_label(subset, names), label(m),
                 component, statistic, float(value), float(threshold), bool(selected), rank)
                for step, subset, m, component, statistic, value, threshold, selected, rank
                in rows]
    return pd.DataFrame.from_records(labelled, columns=selection_module._COLUMNS)


@pytest.mark.parametrize("names", [None, ("a", "b", "c")])
def test_evidence_table_is_from_records_of_its_rows(monkeypatch, names):
    truth = Structure({(0, 1, 2): 1, (0, 1): 1, (2,): 1})
    X = make_hierarchical(400, [12, 15, 10], truth, singular_values=(1, 2), random_state=3)
    S, _, n = sample_covariance(X)
    result, rows = _recorded_rows(monkeypatch, S, [12, 15, 10], n_samples=n, names=names,
                                  max_components=2)
    pd.testing.assert_frame_equal(result.evidence, _from_records(rows, names),
                                  check_exact=True)


def test_evidence_table_infers_mixed_columns_as_from_records():
    record = selection_module._Evidence(None)
    record("budget", None, None, None, "factors selected", 3, 2, True)
    record("structure", (0, 1), None, None, "mean count", 1.0, 0.5, np.True_, 1)
    record("membership", (0, 1), 1, 0, "cosine", np.float64(0.9), 0.5, True)
    record("specific rank", (1,), 1, 1, "eigenvalue", np.int64(4), 0.5, False, 0)
    for rows in (record.rows, record.rows[:1], [record.rows[1]], record.rows[2:]):
        for names in (None, ("x", "y")):
            got = selection_module._Evidence(names)
            got.rows = list(rows)
            pd.testing.assert_frame_equal(got.table(), _from_records(rows, names),
                                          check_exact=True)
    assert selection_module._Evidence(None).table().columns.tolist() == \
        selection_module._COLUMNS


@pytest.mark.parametrize("denoise, n_extra", [("isotropic", 1), ("modality", 1),
                                              ("modality", 0), (np.array([0.4]), 1)])
def test_denoised_eigenpairs_decompose_each_matrix_once(monkeypatch, denoise, n_extra):
    widths = [8, 12, 10]
    X = make_hierarchical(600, widths, STRUCTURE, noise_variance=0.5, random_state=2)
    S = sample_covariance(X)[0]
    calls = []

    def counting(decompose):
        def counted(A, k, **kwargs):
            calls.append(A.shape[0])
            return decompose(A, k, **kwargs)
        return counted

    # (the rule reads only the blocks' eigenvalues, top_eigvals)
    for name in ("top_eigenpairs", "top_eigvals"):
        monkeypatch.setattr(noise_module, name, counting(getattr(noise_module, name)))
    noise, S_W, values, vectors = denoised_eigenpairs(S, widths, STRUCTURE, denoise,
                                                      n_extra=n_extra)
    K = STRUCTURE.n_components + n_extra
    ref_values, ref_vectors = np.linalg.eigh(S - np.diag(np.repeat(noise, widths)))
    np.testing.assert_allclose(values, ref_values[::-1][:K], rtol=1e-10)
    np.testing.assert_allclose(np.abs(vectors.T @ ref_vectors[:, ::-1][:, :K]),
                               np.eye(K), atol=1e-6)
    if isinstance(denoise, str) and denoise == "modality":  # each block, then S_W
        assert calls == widths + [sum(widths)]
        for m, rows in enumerate(np.split(np.arange(sum(widths)), np.cumsum(widths)[:-1])):
            block = np.linalg.eigvalsh(S[np.ix_(rows, rows)])[::-1]
            r = STRUCTURE.modality_rank(m)
            assert noise[m] == pytest.approx(block[r:].mean(), rel=1e-10)
    else:  # one variance: the pairs of S, shifted
        assert calls == [sum(widths)]
