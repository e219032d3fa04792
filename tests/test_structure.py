"""Tests of the Structure object."""

import pickle
from itertools import combinations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hcl_stats import Structure


def test_blocks_columns_levels():
    s = Structure({(2,): 1, (0, 1): 2, (0, 1, 2): 3})
    assert s.blocks == [((0, 1, 2), 3), ((0, 1), 2), ((2,), 1)]
    assert s.n_components == 6 and s.n_modalities == 3
    assert s.columns((0, 1, 2)) == slice(0, 3)
    assert s.columns((1, 0)) == slice(3, 5)
    assert s.columns(2) == slice(5, 6)
    assert [s.level(x) for x in s.subsets] == ["global", "partial", "specific"]
    assert s.modality_rank(0) == 5 and s.modality_rank(2) == 4
    assert s.subsets_of(2) == [(0, 1, 2), (2,)]
    assert list(s.modality_columns(2)) == [0, 1, 2, 5]


def test_full_has_all_subsets():
    s = Structure.full(n_modalities=4, rank=2)
    assert len(s) == 2 ** 4 - 1
    assert s.n_components == 2 * 15
    expected = {c for k in range(1, 5) for c in combinations(range(4), k)}
    assert set(s.subsets) == expected


def test_joint_individual():
    s = Structure.joint_individual(2, [1, 0, 3])
    assert s.blocks == [((0, 1, 2), 2), ((0,), 1), ((2,), 3)]


def test_mask_matches_definition():
    s = Structure({(0, 1): 2, (1,): 1, (0,): 1})
    mask = s.mask([3, 2])
    assert mask.shape == (5, 4)
    rows = np.repeat([0, 1], [3, 2])
    for i in range(5):
        for subset in s.subsets:
            cols = s.columns(subset)
            assert np.all(mask[i, cols] == (rows[i] in subset))


def test_names_and_bind():
    s = Structure({("ehr", "notes", "labs"): 2, ("notes", "labs"): 1, ("ehr",): 1})
    assert s.modality_names == ("ehr", "notes", "labs")
    assert s.label(("labs", "notes")) == "{notes,labs}"
    bound = s.bind(["labs", "ehr", "notes"])
    assert bound.modality_names == ("labs", "ehr", "notes")
    assert bound.rank(("ehr",)) == 1
    assert bound.resolve(("notes", "labs")) == (0, 2)
    with pytest.raises(ValueError, match="'ehr'"):
        s.bind(["notes", "labs", "images"])


@pytest.mark.parametrize(
    "spec, match",
    [
        ({(0, 1): 0}, "rank must be a positive integer"),
        ({(0, 1): 1.5}, "rank must be a positive integer"),
        ({(): 1, (0,): 1}, "empty"),
        ({(0, -1): 1}, "negative"),
        ({(0, 0): 1}, "repeated"),
        ({(0, 1): 1, (1, 0): 2}, "same subset"),
        ({(0, 2): 1}, "modality 1.* carries no factor"),
        ({(0, "a"): 1}, "mixes"),
        ({}, "at least one block"),
    ],
)
def test_invalid_specifications(spec, match):
    with pytest.raises(ValueError, match=match):
        Structure(spec)


def test_out_of_range_with_explicit_modalities():
    with pytest.raises(ValueError, match="out of range"):
        Structure({(0, 3): 1, (1,): 1, (2,): 1}, modalities=3)


def test_immutable_hashable_picklable():
    s = Structure.full(3, rank=1)
    with pytest.raises(AttributeError):
        s.foo = 1
    assert s == Structure.full(3, rank=1)
    assert hash(s) == hash(Structure.full(3, rank=1))
    assert pickle.loads(pickle.dumps(s)) == s
    assert "M=3" in repr(s)


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_columns_partition_and_mask_rank(data):
    M = data.draw(st.integers(1, 5))
    all_subsets = [c for k in range(1, M + 1) for c in combinations(range(M), k)]
    chosen = data.draw(st.lists(st.sampled_from(all_subsets), min_size=1, unique=True))
    chosen = set(chosen) | {(m,) for m in range(M)}  # every modality covered
    ranks = {c: data.draw(st.integers(1, 3)) for c in chosen}
    s = Structure(ranks, modalities=M)
    # column slices tile 0..K without overlap
    covered = np.zeros(s.n_components, dtype=int)
    for subset in s.subsets:
        covered[s.columns(subset)] += 1
    assert np.all(covered == 1)
    widths = data.draw(st.lists(st.integers(1, 4), min_size=M, max_size=M))
    mask = s.mask(widths)
    assert mask.sum() == sum(widths[m] * s.modality_rank(m) for m in range(M))
    # rows tile 0..d in modality order, with the given widths
    rows = s.rows(widths)
    assert [r.stop - r.start for r in rows] == widths
    assert rows[0].start == 0 and all(a.stop == b.start for a, b in zip(rows, rows[1:]))
    # the non-zero blocks of iter_blocks cover exactly the mask's True entries, once each
    hits = np.zeros(mask.shape, dtype=int)
    seen = []
    for m, subset, r, cols in s.iter_blocks(widths):
        assert m in subset and r == rows[m] and cols == s.columns(subset)
        hits[r, cols] += 1
        seen.append((m, subset))
    assert np.array_equal(hits, mask.astype(int))
    assert len(seen) == len(set(seen)) == sum(len(b) for b in s.subsets)


def test_rows_needs_one_width_per_modality():
    with pytest.raises(ValueError, match="3 modality widths, got 2"):
        Structure.full(3, rank=1).rows([4, 5])


def test_declared_modality_without_factors():
    st = Structure({(0, 1): 2, (0,): 1}, modalities=3)
    assert st.n_modalities == 3 and st.modality_rank(2) == 0
    mask = st.mask([4, 5, 6])
    assert mask.shape == (15, 3) and not mask[9:].any() and mask[:9].any()
    named = Structure({("a", "b"): 1}, modalities=["a", "b", "c"])
    assert named.modality_rank(2) == 0
    with pytest.raises(ValueError, match="modality 1.* carries no factor"):
        Structure({(0, 2): 1})  # inferred modalities: the gap is treated as a typo
