"""Recovery metrics against closed forms."""

import numpy as np
import pytest
from scipy.stats import ortho_group

from hcl_stats import Structure
from hcl_stats.datasets import make_loadings
from hcl_stats.metrics import (
    block_sin_theta,
    gram_errors,
    recovery_table,
    sin_theta_distance,
)


@pytest.mark.parametrize("theta", [0.0, 0.3, 1.0, np.pi / 2])
def test_sin_theta_two_lines(theta):
    a = np.array([[1.0], [0.0], [0.0]])
    b = np.array([[np.cos(theta)], [np.sin(theta)], [0.0]])
    assert sin_theta_distance(a, b) == pytest.approx(abs(np.sin(theta)), abs=1e-12)


def test_sin_theta_planes_closed_form(rng):
    # span(e1, e2) against span(e1, cos t e2 + sin t e3): principal angles 0 and t
    t = 0.4
    A = np.eye(4)[:, :2]
    B = np.column_stack([np.eye(4)[:, 0], np.cos(t) * np.eye(4)[:, 1] + np.sin(t) * np.eye(4)[:, 2]])
    assert sin_theta_distance(A, B) == pytest.approx(np.sin(t))
    assert sin_theta_distance(A, B, norm="fro") == pytest.approx(np.sin(t) / np.sqrt(2))
    # invariant to invertible column transformations of either argument
    T = rng.standard_normal((2, 2)) + 3 * np.eye(2)
    assert sin_theta_distance(A @ T, B @ T.T) == pytest.approx(np.sin(t))
    assert sin_theta_distance(A, np.zeros((4, 2))) == 1.0


def test_gram_errors_zero_for_block_rotations(rng):
    st = Structure({(0, 1): 2, (0,): 1, (1,): 2})
    widths = [6, 7]
    W = make_loadings(widths, st, random_state=0)
    V = W.copy()
    for subset, r in st.blocks:
        cols = st.columns(subset)
        V[:, cols] = V[:, cols] @ ortho_group.rvs(r, random_state=1) if r > 1 else -V[:, cols]
    blocks, overall = gram_errors(W, V, st, widths)
    # computed through the trace identity, so zero up to sqrt(machine epsilon)
    assert overall == pytest.approx(0, abs=1e-6)
    assert max(blocks.values()) == pytest.approx(0, abs=1e-6)
    sins = block_sin_theta(W, V, st, widths, structure_hat=st)
    assert max(sins.values()) < 1e-7


def test_gram_error_closed_form():
    # W = [1; 0], V = [0; 1]: ||W W^T - V V^T||_F = sqrt(2); Procrustes cannot align them
    st = Structure({(0,): 1})
    W = np.array([[1.0], [0.0]])
    V = np.array([[0.0], [1.0]])
    blocks, overall = gram_errors(W, V, st, [2])
    assert overall == pytest.approx(np.sqrt(2))
    assert blocks[(0, (0,))] == pytest.approx(np.sqrt(2))


def test_recovery_table_is_tidy():
    from hcl_stats import HCL
    from hcl_stats.datasets import make_hierarchical

    st = Structure({(0, 1): 1, (0,): 1, (1,): 1})
    X, truth = make_hierarchical(300, [5, 6], st, noise_variance=0.05, random_state=0,
                                 return_truth=True)
    table = recovery_table(HCL(st).fit(X), truth)
    assert list(table.columns) == ["modality", "structure", "level", "metric", "value"]
    # 4 (modality, block) pairs x 2 metrics + the overall Gram error
    assert len(table) == 4 * 2 + 1
    assert set(table.level) == {"global", "specific", "overall"}
    assert np.all(table.value >= 0)
