"""Structures against an observation pattern (``joint_counts``): the errors of
``check_structure`` and the verdicts of ``hcl_stats.identifiability``, on constructed
patterns with the expected outcome worked out by hand."""

import numpy as np
import pytest

from hcl_stats import Structure
from hcl_stats._input.validation import check_structure
from hcl_stats._structure import JointShortfall
from hcl_stats.identifiability import (
    check_identifiability,
    check_rank_conditions,
    jacobian_rank_check,
)

NAMES = ["ehr", "notes", "labs"]
NAMED = {("ehr", "notes", "labs"): 1, ("ehr", "notes"): 2, ("notes", "labs"): 1,
         ("ehr",): 1, ("notes",): 1, ("labs",): 1}
WIDTHS = [6, 7, 8]


def _counts(n0, n1, n2, n01, n02, n12):
    return np.array([[n0, n01, n02], [n01, n1, n12], [n02, n12, n2]])


def _check(counts):
    return check_structure(NAMED, WIDTHS, NAMES, n_samples=300, joint_counts=counts)


def test_enough_joint_samples_pass():
    # ehr-notes: blocks {ehr,notes,labs} and {ehr,notes} carry 3 factors, 4 samples suffice
    assert _check(_counts(200, 150, 100, 4, 50, 3)) == check_structure(NAMED, WIDTHS, NAMES)


SUFFIX = "; drop or merge the block, lower its rank, or use samples that observe more modalities"


@pytest.mark.parametrize("counts, message", [
    (_counts(200, 150, 100, 0, 50, 40),  # a pair never observed together
     "block {ehr,notes} needs samples that observe modality 'ehr' and modality 'notes' "
     "together, but no sample does (0 joint samples), so the covariance between them is "
     "never observed"),
    (_counts(200, 150, 100, 3, 50, 40),  # too rarely: the two blocks carry 3 factors
     "block {ehr,notes} needs more than 3 samples that observe modality 'ehr' and "
     "modality 'notes' together (the blocks containing both, {ehr,notes,labs}, "
     "{ehr,notes}, carry 3 factors), but only 3 do"),
    (_counts(200, 5, 100, 5, 50, 5),  # notes carries 1 + 2 + 1 + 1 = 5 factors
     "modality 'notes' is observed in 5 samples but carries 5 factors ({ehr,notes,labs}, "
     "{ehr,notes}, {notes,labs}, {notes}): it needs more than 5 observing samples"),
], ids=["never", "too-rarely", "modality"])
def test_too_few_samples_are_refused(counts, message):
    with pytest.raises(ValueError) as err:
        _check(counts)
    assert str(err.value) == message + SUFFIX


def test_pairs_sharing_no_block_need_no_joint_samples():
    structure = {(0, 2): 1, (1, 2): 1, (0,): 1, (1,): 1, (2,): 1}
    counts = _counts(100, 80, 120, 0, 60, 40)
    assert check_structure(structure, [4, 4, 4], joint_counts=counts) == Structure(structure)
    with pytest.raises(ValueError, match=r"^block \{1,2\} needs samples that observe "
                                         "modality 1 and modality 2 together, but no"):
        check_structure(structure, [4, 4, 4], joint_counts=_counts(100, 80, 120, 0, 60, 0))


@pytest.mark.parametrize("counts, message", [
    (np.full((2, 2), 10), r"joint_counts must have shape \(3, 3\)"),
    (_counts(100, 80, 120, -1, 60, 40), "non-negative integers"),
    (_counts(100, 80, 120, 1.5, 60, 40), "non-negative integers"),
    (_counts(100, 80, 120, 10, 60, 40) + np.triu(np.ones((3, 3)), 1),
     "joint_counts must be symmetric"),
    (_counts(100, 30, 120, 40, 60, 20),
     r"joint_counts\[0, 1\] = 40 exceeds joint_counts\[1, 1\] = 30"),
])
def test_malformed_joint_counts(counts, message):
    with pytest.raises(ValueError, match=message):
        _check(counts)


PAIR = {(0, 1): 1, (0,): 1, (1,): 1}
NEVER = [[50, 0], [0, 40]]


def test_identifiability_pair_never_observed_together():
    out = check_identifiability(PAIR, [4, 4], random_state=0, joint_counts=NEVER)
    rc = out.rank_conditions
    assert not out.identifiable and out.agree
    assert rc.joint_shortfalls == [JointShortfall((0, 1), 0, 1, ((0, 1),))]
    assert rc.verdict == ("block {0,1} needs samples that observe modality 0 and modality 1 "
                          "together, but no sample does (0 joint samples), so the covariance "
                          "between them is never observed")
    # only the two diagonal blocks are seen: each modality's 2 columns are free up to one
    # rotation, rank = sum_m (p_m r_m - r_m (r_m - 1) / 2) = 2 (8 - 1)
    assert out.jacobian.rank == 14 and out.jacobian.expected_rank == 16


def test_identifiability_rank_two_pair_never_observed():
    out = jacobian_rank_check({(0, 1): 2, (0,): 1, (1,): 1}, [4, 4], random_state=0,
                              joint_counts=NEVER)
    assert not out.identifiable
    assert out.rank == 2 * (4 * 3 - 3)  # each modality's 3 columns rotate freely


def test_global_block_with_one_pair_unobserved():
    """Two of the three cross-covariances determine a rank-one global block (the Jacobian
    check), but the pairwise estimator needs all three (the observation condition)."""
    structure = {(0, 1, 2): 1, (0,): 1, (1,): 1, (2,): 1}
    counts = _counts(50, 40, 60, 0, 30, 20)
    out = check_identifiability(structure, [4, 4, 4], random_state=0, joint_counts=counts)
    assert out.jacobian.identifiable and not out.rank_conditions.identifiable
    assert not out.identifiable and not out.agree
    assert out.rank_conditions.verdict.startswith(
        "block {0,1,2} needs samples that observe modality 0 and modality 1 together")


@pytest.mark.parametrize("structure, widths", [
    ({(0, 1, 2): 1, (0, 1): 2, (1,): 1, (2,): 1}, [1, 5, 5]),  # not identifiable
    ({(0, 1, 2): 2, (0, 1): 1, (1, 2): 1, (0,): 1, (1,): 2, (2,): 1}, [5, 6, 7]),
])
def test_complete_counts_change_no_verdict(structure, widths):
    plain = check_identifiability(structure, widths, random_state=0)
    full = check_identifiability(structure, widths, random_state=0,
                                 joint_counts=np.full((3, 3), 100))
    assert full.identifiable == plain.identifiable
    assert full.rank_conditions.identifiable == plain.rank_conditions.identifiable
    assert full.jacobian.rank == plain.jacobian.rank
    assert full.rank_conditions.joint_shortfalls == []


def test_unobserved_pairs_outside_every_block_leave_the_jacobian_rank():
    structure = {(0, 2): 1, (1, 2): 1, (0,): 1, (1,): 1, (2,): 1}
    counts = _counts(50, 40, 60, 0, 30, 20)
    plain = jacobian_rank_check(structure, [4, 4, 4], random_state=0)
    seen = jacobian_rank_check(structure, [4, 4, 4], random_state=0, joint_counts=counts)
    assert seen.identifiable and seen.rank == plain.rank == plain.expected_rank
    assert check_rank_conditions(structure, [4, 4, 4], joint_counts=counts).identifiable
