"""The pairwise covariance of data with missing values, in memory, chunked and with Dask.

Oracles: a Python loop over pairs of features using the samples that observe both,
pandas' pairwise-deletion ``DataFrame.cov`` where its per-pair centring coincides with the
per-feature one (within a modality missing by whole rows), counts of the observed rows,
and the complete-data statistics (unchanged, bit for bit).
"""

import numpy as np
import pandas as pd
import pytest

import hcl_stats._statistics.chunked as chunked
from hcl_stats._statistics.missing import pairwise_covariance

da = pytest.importorskip("dask.array")

WIDTHS = [3, 4, 2]
N = 240


def _brute(blocks):
    """Reference: per feature the observed mean, per pair the samples observing both."""
    Z = np.hstack(blocks)
    O = ~np.isnan(Z)
    d = Z.shape[1]
    mu = np.array([Z[O[:, j], j].mean() for j in range(d)])
    S = np.zeros((d, d))
    for j in range(d):
        for k in range(d):
            both = O[:, j] & O[:, k]
            if both.sum() >= 2:
                S[j, k] = np.sum((Z[both, j] - mu[j]) * (Z[both, k] - mu[k])) / (both.sum() - 1)
    rows = np.column_stack([~np.isnan(b).all(axis=1) for b in blocks])
    joint = np.array([[np.sum(rows[:, m] & rows[:, l]) for l in range(len(blocks))]
                      for m in range(len(blocks))])
    return S, mu, joint


@pytest.fixture
def complete():
    rng = np.random.default_rng(0)
    latent = rng.standard_normal((N, 2))
    # correlated modalities with large, different means (the chunked sums must not lose
    # digits to them)
    return [latent @ rng.standard_normal((2, p)) + rng.standard_normal((N, p))
            + 500.0 * (m + 1) for m, p in enumerate(WIDTHS)]


def _whole_rows(X, seed=1):
    rng = np.random.default_rng(seed)
    Y = [x.copy() for x in X]
    Y[1][rng.random(N) < 0.35] = np.nan
    Y[2][rng.random(N) < 0.3] = np.nan
    return Y


def _scattered(X, seed=2):
    Y = _whole_rows(X, seed)
    rng = np.random.default_rng(seed + 10)
    Y[0][rng.random(Y[0].shape) < 0.1] = np.nan
    Y[1][rng.random(Y[1].shape) < 0.05] = np.nan
    return Y


def _memmaps(tmp_path, X):
    for m, x in enumerate(X):
        np.save(tmp_path / f"m{m}.npy", x)
    return [np.load(tmp_path / f"m{m}.npy", mmap_mode="r") for m in range(len(X))]


SLICES = 8 * sum(WIDTHS) * 17  # 17-row slices: many, some complete, some not


@pytest.mark.parametrize("pattern", [_whole_rows, _scattered], ids=["whole rows", "scattered"])
def test_in_memory_chunked_and_dask_match_the_pairwise_loop(complete, pattern, tmp_path):
    X = pattern(complete)
    S_ref, mu_ref, joint_ref = _brute(X)
    scale = np.abs(S_ref).max()
    results = {
        "in memory": pairwise_covariance(X),
        "statistics": chunked.covariance_statistics(X, missing="allow"),
        "chunked": chunked.covariance_statistics(X, missing="allow", chunk_bytes=SLICES),
        "memmap": chunked.covariance_statistics(_memmaps(tmp_path, X), missing="allow",
                                                chunk_bytes=SLICES),
        "dask": chunked.covariance_statistics([da.from_array(x, chunks=(50, -1)) for x in X],
                                              missing="allow", chunk_bytes=SLICES),
    }
    for S, mu, n, joint in results.values():
        np.testing.assert_allclose(S, S_ref, rtol=0, atol=1e-11 * scale)
        np.testing.assert_allclose(mu, mu_ref, rtol=1e-13)
        assert n == N
        np.testing.assert_array_equal(joint, joint_ref)
        np.testing.assert_array_equal(S, S.T)


def test_diagonal_blocks_are_pandas_pairwise_deletion(complete):
    # within a modality missing by whole rows every pair of its features is observed by the
    # same samples, so pandas' per-pair centring is the per-feature one
    X = _whole_rows(complete)
    S, _, _, _ = pairwise_covariance(X)
    frame = pd.DataFrame(np.hstack(X))
    start = 0
    for p in WIDTHS:
        block = frame.iloc[:, start:start + p].cov().to_numpy()
        np.testing.assert_allclose(S[start:start + p, start:start + p], block, rtol=1e-12)
        start += p


def test_complete_data_take_the_complete_data_statistics_bit_for_bit(complete, tmp_path):
    for kwargs in ({}, {"chunk_bytes": SLICES}, {"dtype": np.float32}):
        expected = chunked.covariance_statistics(complete, **kwargs)
        *got, counts = chunked.covariance_statistics(complete, missing="allow", **kwargs)
        assert counts is None
        for a, b in zip(got, expected):
            np.testing.assert_array_equal(a, b)
    lazy = [da.from_array(x, chunks=(50, -1)) for x in complete]
    expected = chunked.covariance_statistics(lazy, chunk_bytes=SLICES)
    *got, counts = chunked.covariance_statistics(lazy, missing="allow", chunk_bytes=SLICES)
    assert counts is None
    for a, b in zip(got, expected):
        np.testing.assert_array_equal(a, b)


def test_float32_request_rounds_the_pairwise_covariance(complete):
    X = _whole_rows(complete)
    S32, _, _, _ = chunked.covariance_statistics(X, missing="allow", dtype=np.float32)
    S64, _, _, _ = pairwise_covariance(X)
    assert S32.dtype == np.float32
    np.testing.assert_array_equal(S32, S64.astype(np.float32))


def test_a_pair_without_two_joint_samples_has_no_covariance():
    rng = np.random.default_rng(3)
    X = [rng.standard_normal((20, 2)) for _ in range(3)]
    X[1][:10] = np.nan  # modality 1 observed in rows 10..19
    X[2][9:] = np.nan   # modality 2 in rows 0..8: never together with modality 1
    S, _, _, joint = pairwise_covariance(X)
    assert joint[1, 2] == 0
    np.testing.assert_array_equal(S[2:4, 4:6], 0.0)
    S_chunked, *_ = chunked.covariance_statistics(X, missing="allow", chunk_bytes=8 * 6 * 3)
    np.testing.assert_allclose(S_chunked, S, rtol=0, atol=1e-13)


def test_chunked_checks_name_the_modality(complete, tmp_path):
    X = _whole_rows(complete)
    X[2][100, 1] = np.inf
    lazy = [da.from_array(x, chunks=(50, -1)) for x in X]
    with pytest.raises(ValueError, match="modality 2 contains infinite values.*row 100"):
        chunked.covariance_statistics(lazy, missing="allow", chunk_bytes=SLICES)
    with pytest.raises(ValueError, match="modality 'c' contains infinite values.*row 100"):
        chunked.covariance_statistics(_memmaps(tmp_path, X), ("a", "b", "c"),
                                      missing="allow", chunk_bytes=SLICES)
    with pytest.raises(ValueError, match="modality 1 contains NaN"):
        chunked.covariance_statistics(_whole_rows(complete), chunk_bytes=SLICES)
    once = [x.copy() for x in complete]
    once[0][1:, 2] = np.nan  # feature 2 of modality 0 observed once
    with pytest.raises(ValueError, match="modality 0: feature 2 is observed in 1 sample"):
        chunked.covariance_statistics([da.from_array(x, chunks=(50, -1)) for x in once],
                                      missing="allow")
    apart = [x.copy() for x in complete]
    apart[1][:120] = np.nan
    apart[0][120:] = np.nan
    apart[2][120:] = np.nan
    with pytest.raises(ValueError, match="modality 1 shares no sample"):
        chunked.covariance_statistics(apart, missing="allow", chunk_bytes=SLICES)


def test_leading_rows_missing_still_give_a_stable_shift(complete):
    # the shift comes from the observed values of the leading rows: with the first rows of
    # a modality missing, its large mean must still be removed before the products
    X = [x.copy() for x in complete]
    X[1][:40] = np.nan
    S_ref, _, _ = _brute(X)
    S, _, _, _ = chunked.covariance_statistics(X, missing="allow", chunk_bytes=8 * 9 * 25)
    np.testing.assert_allclose(S, S_ref, rtol=0, atol=1e-11 * np.abs(S_ref).max())


def test_inputs_are_only_read(complete):
    X = _scattered(complete)
    before = [x.copy() for x in X]
    pairwise_covariance(X)
    chunked.covariance_statistics(X, missing="allow", chunk_bytes=SLICES)
    for x, b in zip(X, before):
        np.testing.assert_array_equal(x, b)


def test_dask_shift_of_a_modality_missing_from_the_first_chunks(complete):
    X = [x.copy() for x in complete]
    X[1][:120] = np.nan  # the first two row chunks (and the leading rows) lack modality 1
    S_ref, _, _ = _brute(X)
    lazy = [da.from_array(x, chunks=(60, -1)) for x in X]
    S, _, _, _ = chunked.covariance_statistics(lazy, missing="allow", chunk_bytes=8 * 9 * 25)
    np.testing.assert_allclose(S, S_ref, rtol=0, atol=1e-11 * np.abs(S_ref).max())
