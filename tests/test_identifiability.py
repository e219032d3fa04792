"""Identifiability: rank conditions and Jacobian rank against closed forms, and the study."""

import pytest

from hcl_stats import Structure
from hcl_stats.identifiability import (
    check_identifiability,
    check_rank_conditions,
    jacobian_rank_check,
)
from simulations import identifiability_study as study


@pytest.mark.parametrize("p,r", [(4, 1), (5, 3), (6, 6)])
def test_single_block_jacobian_rank_closed_form(p, r, rng):
    """One modality, one block of rank r <= p: rank = p r - r (r - 1) / 2 (PPCA count)."""
    res = jacobian_rank_check({(0,): r}, [p], random_state=int(rng.integers(2**31)))
    assert res.n_free == p * r
    assert res.n_rotations == r * (r - 1) // 2
    assert res.rank == p * r - r * (r - 1) // 2
    assert res.identifiable and res.singular_gap > 1e6


def test_single_block_too_many_factors(rng):
    """p < r: W W^T is any p x p PSD matrix, rank p(p+1)/2; fewer factors do the same."""
    res = jacobian_rank_check({(0,): 4}, [2], random_state=int(rng.integers(2**31)))
    assert res.rank == 3 and res.loadings_rank == 2 and not res.identifiable
    rc = check_rank_conditions({(0,): 4}, [2])
    assert not rc.identifiable and not rc.full_column_rank
    assert rc.hall_violations == [((0,), 4, 2)]


@pytest.mark.parametrize("M,rank", [(2, 1), (3, 1), (3, 2), (4, 1)])
def test_wide_full_structures_are_identifiable(M, rank, rng):
    structure = Structure.full(M, rank=rank)
    widths = [structure.modality_rank(m) + 1 for m in range(M)]
    out = check_identifiability(structure, widths, random_state=int(rng.integers(2**31)))
    assert out.identifiable and out.agree
    jc = out.jacobian
    assert jc.n_free == int(structure.mask(widths).sum())
    assert jc.rank == jc.n_free - len(structure) * rank * (rank - 1) // 2


@pytest.mark.parametrize("p0,expected_dim", [(1, 1), (2, 0)])
def test_single_narrow_modality_closed_form(p0, expected_dim, rng):
    """Blocks {0,1} (rank 2) and {1} (rank 1) with modality 0 of width p0 < r_0 = 3:
    the coupling left free has dimension r_{1} * max(0, r_{01} - p0)."""
    structure = Structure({(0, 1, 2): 1, (0, 1): 2, (1,): 1, (2,): 1})
    widths = [p0, 6, 6]
    out = check_identifiability(structure, widths, random_state=int(rng.integers(2**31)))
    rc, jc = out.rank_conditions, out.jacobian
    assert rc.narrow_modalities == [0]
    assert rc.coupling_dimension == expected_dim
    assert jc.expected_rank - jc.rank == expected_dim
    assert out.agree and out.identifiable == (expected_dim == 0)
    if expected_dim:
        assert rc.inseparable_pairs == [("{0,1}", "{1}")]
        assert "too narrow" in rc.verdict


def test_narrow_but_pinned_by_cross_covariances(rng):
    """p_0 = 2 < r_0 = 4 in the full rank-1 structure: the other modalities separate it."""
    out = check_identifiability(Structure.full(3, 1), [2, 8, 8],
                                random_state=int(rng.integers(2**31)))
    assert out.identifiable and out.agree


def test_width_capping_keeps_the_verdict(rng):
    structure = Structure({(0, 1, 2): 2, (0, 1): 1, (1,): 2, (2,): 1})
    seed = int(rng.integers(2**31))
    full = jacobian_rank_check(structure, [3, 40, 30], random_state=seed, max_free=10**6)
    capped = jacobian_rank_check(structure, [3, 40, 30], random_state=seed, max_free=50)
    assert capped.n_features == [3, 6, 6]
    assert full.identifiable == capped.identifiable


def test_bad_input():
    with pytest.raises(ValueError, match="3 modalities"):
        check_rank_conditions(Structure.full(3, 1), [4, 4])
    with pytest.raises(ValueError, match="width"):
        jacobian_rank_check(Structure.full(2, 1), [0, 4])


def test_random_study_agrees_everywhere():
    """Rank conditions == Jacobian verdict on every drawn design; multi-start fits agree."""
    table = study.run_study(6, n_starts=3, random_state=3)
    assert table["agree"].all()
    assert (~table["jacobian"]).any() and table["jacobian"].any()
    decided = table["multistart_agrees"].notna()
    assert decided.mean() >= 0.6
    assert table.loc[decided, "multistart_agrees"].astype(bool).all()


@pytest.mark.slow
def test_random_study_agrees_everywhere_full():
    table = study.run_study(80, n_starts=5, random_state=0)
    assert table["agree"].all()
    assert (table["kind"] == "blocks inseparable").sum() >= 3
    assert (table["kind"] == "ranks not identified").sum() >= 3
    decided = table["multistart_agrees"].notna()
    assert decided.mean() >= 0.9
    assert table.loc[decided, "multistart_agrees"].astype(bool).all()


def test_multistart_separates_identifiable_from_not(rng):
    seed = int(rng.integers(2**31))
    good = study.multistart(Structure({(0, 1): 1, (0,): 1, (1,): 1}), [3, 3], n_starts=3,
                            random_state=seed)
    bad = study.multistart(Structure({(0, 1): 2, (1,): 1}), [1, 4], n_starts=3,
                           random_state=seed)
    assert good["identifiable"] is True and good["spread"] < study.SAME
    assert bad["identifiable"] is False and bad["spread"] > study.DIFFERENT
    assert check_rank_conditions({(0, 1): 2, (1,): 1}, [1, 4]).identifiable is False
