"""Gaussian likelihood: scores, parameter counts and the structured maximum-likelihood fit.

References: scipy's multivariate normal density, scikit-learn's FactorAnalysis and
statsmodels' maximum-likelihood Factor, simulated ground truth, and the rank of the
Jacobian of ``W W^T + Psi``.
"""

import warnings

import numpy as np
import pytest
from scipy.stats import multivariate_normal
from sklearn.decomposition import FactorAnalysis
from sklearn.exceptions import ConvergenceWarning
from threadpoolctl import threadpool_limits
from statsmodels.multivariate.factor import Factor
from statsmodels.tools.sm_exceptions import ConvergenceWarning as SMConvergenceWarning

from hcl_stats import Structure
from hcl_stats._estimation.likelihood import (
    count_parameters,
    log_likelihood_covariance,
    log_likelihood_samples,
    observed_rows,
)
from hcl_stats._estimation.mle import noise_groups, solve_likelihood
from hcl_stats._estimation.principal_axis import solve_principal_axis
from hcl_stats.datasets._hierarchical import make_loadings
from hcl_stats.identifiability import _jacobian


def _heteroscedastic(n, n_features, structure, *, noise_range=(0.1, 2.0),
                     singular_values=(2.0, 4.0), seed=0):
    """Data from the structured model with per-feature noise variances."""
    rng = np.random.default_rng(seed)
    W = make_loadings(n_features, structure, singular_values=singular_values,
                      random_state=seed + 1)
    psi = rng.uniform(*noise_range, size=W.shape[0])
    X = rng.standard_normal((n, W.shape[1])) @ W.T
    X += rng.standard_normal(X.shape) * np.sqrt(psi)
    return X, W, psi


def _relative_gap(a, b):
    return abs(a - b) / abs(b)


# -- scores -----------------------------------------------------------------------------------
def test_log_likelihood_samples_matches_scipy():
    rng = np.random.default_rng(0)
    d, K = 12, 3
    W = rng.normal(size=(d, K))
    psi = rng.uniform(0.2, 3.0, size=d)
    mean = rng.normal(size=d)
    X = rng.normal(size=(50, d)) * 2.0 + mean
    ref = multivariate_normal(mean, W @ W.T + np.diag(psi)).logpdf(X)
    np.testing.assert_allclose(log_likelihood_samples(X, mean, W, psi), ref, rtol=1e-8)


def test_missing_modality_is_the_marginal_density():
    # dropping a modality's rows of (mean, W, psi) is the marginal of the Gaussian: compare
    # with scipy's density of the observed coordinates under the full covariance's sub-block
    rng = np.random.default_rng(1)
    widths = [5, 6, 7]
    st = Structure.full(3, rank=1)
    W = make_loadings(widths, st, random_state=2)
    psi = rng.uniform(0.5, 1.5, size=sum(widths))
    mean = rng.normal(size=sum(widths))
    Sigma = W @ W.T + np.diag(psi)
    X = rng.multivariate_normal(mean, Sigma, size=40)
    rows = observed_rows(widths, [True, False, True])
    ref = multivariate_normal(mean[rows], Sigma[np.ix_(rows, rows)]).logpdf(X[:, rows])
    got = log_likelihood_samples(X[:, rows], mean[rows], W[rows], psi[rows])
    np.testing.assert_allclose(got, ref, rtol=1e-8)
    assert rows.tolist() == list(range(5)) + list(range(11, 18))


def test_log_likelihood_covariance_matches_sum_of_densities():
    rng = np.random.default_rng(2)
    d, K, n = 10, 2, 200
    W = rng.normal(size=(d, K))
    psi = rng.uniform(0.5, 2.0, size=d)
    X = rng.normal(size=(n, d)) @ rng.normal(size=(d, d))
    mean = X.mean(axis=0)
    S_mle = np.cov(X.T, bias=True)
    ref = multivariate_normal(mean, W @ W.T + np.diag(psi)).logpdf(X).sum()
    assert _relative_gap(log_likelihood_covariance(S_mle, n, W, psi), ref) <= 1e-10


# -- parameter count --------------------------------------------------------------------------
def _noise_jacobian(rule, widths):
    """Columns: d(upper triangle of Psi) / d(noise parameters) for a noise rule."""
    d = sum(widths)
    groups, n_groups = noise_groups(rule, widths)
    iu = np.triu_indices(d)
    J = np.zeros((iu[0].size, n_groups))
    on_diag = np.flatnonzero(iu[0] == iu[1])
    J[on_diag, groups[iu[0][on_diag]]] = 1.0
    return J


@pytest.mark.parametrize("rule", ["isotropic", "modality", "diagonal"])
@pytest.mark.parametrize("blocks, widths", [
    ({(0, 1, 2): 2}, [5, 6, 7]),
    ({(0, 1, 2): 1, (0, 1): 1, (1, 2): 2, (0,): 1, (2,): 1}, [6, 7, 8]),
    ({(0, 1, 2, 3): 1, (0, 1): 1, (2, 3): 1, (3,): 2}, [4, 5, 5, 7]),
])
def test_parameter_count_is_the_jacobian_rank(blocks, widths, rule):
    st = Structure(blocks)
    mask = st.mask(widths)
    rng = np.random.default_rng(3)
    W = np.where(mask, rng.standard_normal(mask.shape), 0.0)
    J = np.hstack([_jacobian(W, mask), _noise_jacobian(rule, widths)])
    rank = np.linalg.matrix_rank(J)
    assert count_parameters(st, widths, rule, means=False) == rank
    assert count_parameters(st, widths, rule) == rank + sum(widths)


def test_parameter_count_exceeds_rank_when_noise_and_specific_factor_are_confounded():
    # a rank-1 specific factor on two features cannot be told apart from their two noise
    # variances: the count is the dimension only for identifiable models
    st = Structure({(0, 1): 1, (0,): 1})
    widths = [2, 6]
    mask = st.mask(widths)
    W = np.where(mask, np.random.default_rng(4).standard_normal(mask.shape), 0.0)
    J = np.hstack([_jacobian(W, mask), _noise_jacobian("diagonal", widths)])
    assert count_parameters(st, widths, "diagonal", means=False) > np.linalg.matrix_rank(J)


# -- maximum likelihood against references ----------------------------------------------------
def _global_only_data(seed=5):
    widths = [6, 8, 10]
    st = Structure({(0, 1, 2): 3})
    X, _, _ = _heteroscedastic(800, widths, st, singular_values=(1.0, 3.0), seed=seed)
    return X, widths, st


def _spectral_start(S, K):
    vals, vecs = np.linalg.eigh(S)
    W0 = vecs[:, -K:] * np.sqrt(np.maximum(vals[-K:] - vals[:-K].mean(), 1e-3))
    return W0, np.full(S.shape[0], vals[:-K].mean())


def test_global_diagonal_mle_reaches_factor_analysis_maximum():
    X, widths, st = _global_only_data()
    n = X.shape[0]
    with threadpool_limits(limits=1, user_api="blas"):  # its SVD loop (two BLAS pools)
        fa = FactorAnalysis(3, tol=1e-12, max_iter=100_000, svd_method="lapack").fit(X)
    S = np.cov(X.T, bias=True)  # FactorAnalysis' likelihood uses the divisor n
    W0, psi0 = _spectral_start(S, 3)
    res = solve_likelihood(S, widths, st.mask(widths), W0, psi0, noise="diagonal",
                           n_samples=n, tol=1e-7)
    assert res.converged
    assert _relative_gap(res.log_likelihood, fa.score(X) * n) <= 1e-6
    np.testing.assert_allclose(res.noise_variance, fa.noise_variance_, rtol=1e-3)


def test_global_diagonal_mle_matches_statsmodels_factor():
    X, widths, st = _global_only_data(seed=6)
    with warnings.catch_warnings(), threadpool_limits(limits=1, user_api="blas"):
        # its BFGS stops at the precision of its loglike
        warnings.simplefilter("ignore", SMConvergenceWarning)
        fa = Factor(X, n_factor=3, method="ml").fit(opt={"gtol": 1e-9, "maxiter": 20_000},
                                                     rng=np.random.default_rng(0))
    R = np.corrcoef(X.T)
    Sigma_sm = fa.loadings @ fa.loadings.T + np.diag(fa.uniqueness)
    sign, logdet = np.linalg.slogdet(Sigma_sm)
    f_sm = logdet + np.trace(np.linalg.solve(Sigma_sm, R))
    W0, psi0 = _spectral_start(R, 3)
    res = solve_likelihood(R, widths, st.mask(widths), W0, psi0, noise="diagonal", tol=1e-7)
    assert res.converged
    assert sign > 0 and res.objective <= f_sm + 1e-9 * abs(f_sm)
    assert _relative_gap(res.objective, f_sm) <= 1e-6
    np.testing.assert_allclose(res.noise_variance, fa.uniqueness, rtol=1e-3, atol=1e-4)


# -- heteroscedastic recovery -----------------------------------------------------------------
@pytest.fixture(scope="module")
def hetero():
    widths = [30, 40, 50]
    st = Structure.full(3, rank=2)
    X, W, psi = _heteroscedastic(3000, widths, st, seed=7)
    return X, W, psi, widths, st


def test_diagonal_noise_recovered_by_both_objectives(hetero):
    X, W_true, psi_true, widths, st = hetero
    S = np.cov(X.T)
    mask = st.mask(widths)
    W0, psi0 = _spectral_start(S, st.n_components)
    W0 = np.where(mask, W0, 0.0)
    W_ls, psi_ls, *_, ok_ls, _ = solve_principal_axis(S, widths, mask, W0)
    mle = solve_likelihood(S, widths, mask, W_ls, psi_ls, noise="diagonal", n_samples=3000)
    assert ok_ls and mle.converged
    for psi in (psi_ls, mle.noise_variance):
        assert np.median(np.abs(psi - psi_true) / psi_true) < 0.1
    assert np.all(mle.loadings[~mask] == 0.0) and np.all(W_ls[~mask] == 0.0)
    ll_ls = log_likelihood_covariance(S, 3000, W_ls, psi_ls)
    assert mle.log_likelihood >= ll_ls
    # the maximum: no free loading or noise variance moves the likelihood up
    rng = np.random.default_rng(8)
    for _ in range(5):
        dW = np.where(mask, rng.standard_normal(mask.shape), 0.0) * 1e-3
        dpsi = rng.standard_normal(len(psi_true)) * 1e-3
        assert log_likelihood_covariance(S, 3000, mle.loadings + dW,
                                         mle.noise_variance + dpsi) <= mle.log_likelihood


@pytest.mark.parametrize("rule", ["isotropic", "modality"])
def test_grouped_noise_mle_gives_one_variance_per_group(hetero, rule):
    X, _, _, widths, st = hetero
    S = np.cov(X.T)
    mask = st.mask(widths)
    W0, psi0 = _spectral_start(S, st.n_components)
    res = solve_likelihood(S, widths, mask, W0, psi0, noise=rule, n_samples=3000)
    groups, n_groups = noise_groups(rule, widths)
    assert res.converged
    for g in range(n_groups):
        assert np.ptp(res.noise_variance[groups == g]) == 0.0
    diag = solve_likelihood(S, widths, mask, res.loadings, res.noise_variance,
                            noise="diagonal", n_samples=3000)
    assert diag.log_likelihood >= res.log_likelihood  # nested models


def test_noise_floor_keeps_heywood_case_finite():
    # a feature that is an exact copy of a factor has no noise: its variance sits on the floor
    rng = np.random.default_rng(9)
    z = rng.standard_normal((500, 1))
    X = np.hstack([z, z @ rng.normal(size=(1, 5)) + rng.standard_normal((500, 5))])
    S = np.cov(X.T)
    widths = [6]
    st = Structure({(0,): 1})
    W0, psi0 = _spectral_start(S, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        res = solve_likelihood(S, widths, st.mask(widths), W0, psi0, noise="diagonal")
    assert np.all(np.isfinite(res.loadings)) and np.isfinite(res.objective)
    assert res.noise_variance[0] >= 1e-6 * S[0, 0]
    assert res.noise_variance[0] < 0.05 * S[0, 0]
    assert np.all(res.noise_variance[1:] > 0.5)


def test_not_converged_warns(hetero):
    X, _, _, widths, st = hetero
    S = np.cov(X.T)
    W0, psi0 = _spectral_start(S, st.n_components)
    with pytest.warns(ConvergenceWarning, match="likelihood fit did not converge"):
        res = solve_likelihood(S, widths, st.mask(widths), W0, psi0, max_iter=2)
    assert not res.converged and res.gradient_norm > 1e-5


def test_unknown_noise_rule_raises():
    with pytest.raises(ValueError, match="'isotropic', 'modality' or 'diagonal'"):
        noise_groups("bogus", [2, 3])


# -- closed forms: probabilistic PCA ----------------------------------------------------------
def test_isotropic_global_mle_is_probabilistic_pca():
    # Tipping and Bishop (1999): the isotropic-noise MLE is sklearn's PCA model covariance
    from sklearn.decomposition import PCA

    X, widths, st = _global_only_data(seed=10)
    S = np.cov(X.T)  # PCA's eigenvalues have the divisor n - 1
    W0, psi0 = _spectral_start(S, 3)
    res = solve_likelihood(S, widths, st.mask(widths), 0.5 * W0, 2.0 * psi0,
                           noise="isotropic", tol=1e-8)
    ref = PCA(n_components=3).fit(X).get_covariance()
    got = res.loadings @ res.loadings.T + np.diag(res.noise_variance)
    assert res.converged
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-8 * np.abs(ref).max())


def test_fixed_noise_mle_is_the_shrunk_eigendecomposition():
    # with sigma^2 fixed the MLE is W W^T = U_K (Lambda_K - sigma^2) U_K^T
    X, widths, st = _global_only_data(seed=11)
    S = np.cov(X.T)
    vals, vecs = np.linalg.eigh(S)
    sigma2 = 0.5 * vals[:-3].mean()
    W0, _ = _spectral_start(S, 3)
    res = solve_likelihood(S, widths, st.mask(widths), W0, np.full(len(S), sigma2),
                           noise="fixed", tol=1e-8)
    U, lam = vecs[:, -3:], vals[-3:]
    ref = (U * (lam - sigma2)) @ U.T
    np.testing.assert_allclose(res.loadings @ res.loadings.T, ref,
                               atol=1e-6 * np.abs(ref).max())
    assert np.all(res.noise_variance == sigma2)


def test_mle_from_a_data_operator_equals_the_covariance_fit(hetero):
    from scipy.sparse.linalg import LinearOperator

    X, _, _, widths, st = hetero
    Xc = X - X.mean(axis=0)
    n, d = Xc.shape
    S = Xc.T @ Xc / (n - 1)
    op = LinearOperator((d, d), matvec=lambda v: Xc.T @ (Xc @ v) / (n - 1),
                        matmat=lambda V: Xc.T @ (Xc @ V) / (n - 1), dtype=float)
    W0, psi0 = _spectral_start(S, st.n_components)
    mask = st.mask(widths)
    a = solve_likelihood(S, widths, mask, W0, psi0, tol=1e-7)
    b = solve_likelihood(op, widths, mask, W0, psi0, tol=1e-7, diag_S=np.diag(S))
    assert _relative_gap(b.objective, a.objective) <= 1e-10
    np.testing.assert_allclose(b.noise_variance, a.noise_variance, rtol=1e-4)
