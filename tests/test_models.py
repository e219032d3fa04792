"""The model base classes: entry points, stored results, name binding, generators, threads."""

import numpy as np
import pytest
from _estimators import all_estimator_classes, build
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted
from threadpoolctl import threadpool_limits

from hcl_stats import Structure
from hcl_stats._models.data_model import DataFactorModel, DataFit
from hcl_stats.baselines import AJIVE, JIVE, SLIDE, matched_estimator
from hcl_stats.datasets import make_hierarchical

JI = Structure({(0, 1, 2): 1, (0,): 2, (1,): 1, (2,): 1})
WIDTHS = [6, 7, 8]


@pytest.fixture(scope="module")
def data():
    return make_hierarchical(150, WIDTHS, JI, noise_variance=0.1, random_state=3)


@pytest.mark.parametrize("cls", all_estimator_classes(), ids=lambda c: c.__name__)
def test_fit_from_covariance_matches_fit_or_raises_type_error(cls, data):
    """Every estimator either fits from the covariance (the same model as from the data)
    or says, with a TypeError, that it needs the data."""
    S = np.cov(np.hstack(data), rowvar=False)
    means = np.hstack([x.mean(axis=0) for x in data])
    model = build(cls, JI)
    try:
        model.fit_from_covariance(S, data[0].shape[0], WIDTHS, means=means)
    except TypeError as exc:
        assert "estimated from the data" in str(exc) and "fit(X)" in str(exc)
        with pytest.raises(NotFittedError):
            check_is_fitted(model, "loadings_")
        return
    reference = build(cls, JI).fit(data)
    np.testing.assert_allclose(model.get_covariance(), reference.get_covariance(),
                               atol=1e-6)


class _Broken(DataFactorModel):
    """A data model whose algorithm returns non-finite loadings."""

    def _fit_centred(self, blocks, names):
        structure = Structure.joint_individual(1, [0] * len(blocks), names=names)
        W = np.ones((sum(b.shape[1] for b in blocks), 1))
        W[0, 0] = np.nan
        return DataFit(structure=structure, loadings=W, rss=np.ones(len(blocks)))


def test_non_finite_fitted_attribute_is_an_error(data):
    model = _Broken()
    with pytest.raises(FloatingPointError, match="loadings_"):
        model.fit(data)
    with pytest.raises(NotFittedError):
        check_is_fitted(model, "loadings_")


def _named(data, order):
    return {name: data["abc".index(name)] for name in order}


NAMED = Structure({("a", "b", "c"): 1, ("a",): 2, ("b",): 1, ("c",): 1})


def _covariance_block(model, name):
    rows = model._rows()[model.modality_names_in_.index(name)]
    return model.get_covariance()[rows, rows]


@pytest.mark.parametrize("name", ["HCL", "JIVE", "AJIVE", "SLIDE"])
def test_named_structure_binds_by_name_in_any_dict_order(name, data):
    """Dict keys in another order than the structure's names fit the same model."""
    a = matched_estimator(name, NAMED, random_state=0).fit(_named(data, "abc"))
    b = matched_estimator(name, NAMED, random_state=0).fit(_named(data, "cab"))
    assert b.modality_names_in_ == ("c", "a", "b")
    # modality 'a' (6 features) carries its 2 individual factors whatever the dict order
    assert a.block_loadings("a", ("a",)).shape == b.block_loadings("a", ("a",)).shape \
        == (6, 2)
    assert b.block_loadings("c", ("c",)).shape == (8, 1)
    for m in "abc":
        assert a.structure_.modality_rank("abc".index(m)) == \
            b.structure_.modality_rank("cab".index(m)) == NAMED.modality_rank("abc".index(m))
        # the same modality's model covariance (SLIDE's alternating fit and AJIVE's
        # resampling depend on the column order, hence the tolerance)
        np.testing.assert_allclose(_covariance_block(a, m), _covariance_block(b, m),
                                   rtol=0.1, atol=0.01, err_msg=m)


@pytest.mark.parametrize("name", ["HCL", "JIVE", "AJIVE", "SLIDE"])
def test_unknown_modality_name_is_an_error(name, data):
    wrong = Structure({("a", "b", "z"): 1, ("a",): 1, ("b",): 1, ("z",): 1})
    with pytest.raises(ValueError, match="'z'"):
        matched_estimator(name, wrong).fit(_named(data, "abc"))


def test_matched_jive_keeps_every_modalitys_number_of_factors(data):
    partial = Structure({(0, 1, 2): 1, (0, 1): 1, (2,): 2})
    model = matched_estimator("JIVE", partial).fit(data)
    assert [model.structure_.modality_rank(m) for m in range(3)] == \
        [partial.modality_rank(m) for m in range(3)]


def _fits(data):
    return {
        "JIVE": JIVE(rank_selection="permutation", n_permutations=15, random_state=1).fit(
            data),
        "AJIVE": AJIVE(init_signal_ranks=[3, 2, 2], n_wedin_samples=200,
                       n_randdir_samples=200, random_state=1).fit(data),
        "SLIDE": SLIDE(JI, random_state=1).fit(data),
    }


def test_results_identical_with_one_and_two_blas_threads(data):
    with threadpool_limits(1):
        one = _fits(data)
    with threadpool_limits(2):
        two = _fits(data)
    for name in one:
        np.testing.assert_array_equal(one[name].loadings_, two[name].loadings_, err_msg=name)
        np.testing.assert_array_equal(one[name].noise_variance_, two[name].noise_variance_)
    assert one["JIVE"].selection_path_ == two["JIVE"].selection_path_
    np.testing.assert_array_equal(one["AJIVE"].wedin_samples_, two["AJIVE"].wedin_samples_)
    np.testing.assert_array_equal(one["AJIVE"].randdir_samples_,
                                  two["AJIVE"].randdir_samples_)


def test_random_state_none_is_the_default_seed(data):
    """An int seeds, a Generator is used as is (same stream as its seed), None is seed 0."""

    def draws(random_state):
        model = AJIVE(init_signal_ranks=[3, 2, 2], n_wedin_samples=50,
                      n_randdir_samples=50, random_state=random_state).fit(data)
        return model.wedin_samples_

    np.testing.assert_array_equal(draws(5), draws(np.random.default_rng(5)))
    np.testing.assert_array_equal(draws(None), draws(0))
    assert not np.array_equal(draws(0), draws(1))
