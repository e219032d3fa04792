"""The solver's building blocks against independent truth: the recursive BFGS update and
``numpy.roots``."""

import numpy as np
import pytest

from hcl_stats._estimation.lbfgs import _quartic_step
from hcl_stats._numerics.optim import CompactLBFGS


def _recursive_bfgs(pairs, H0):
    """Inverse-Hessian BFGS update applied pair by pair to the dense matrix ``H0``."""
    H = H0.copy()
    n = len(H)
    for s, y in pairs:
        rho = 1.0 / (s @ y)
        V = np.eye(n) - rho * np.outer(y, s)
        H = V.T @ H @ V + rho * np.outer(s, s)
    return H


@pytest.mark.parametrize("memory", [1, 3, 5])
def test_compact_lbfgs_equals_recursive_bfgs(rng, memory):
    n = 15
    A = rng.standard_normal((n, n))
    hessian = A @ A.T + np.eye(n)
    L = rng.standard_normal((n, n))
    P = L @ L.T / n + np.eye(n)
    approx = CompactLBFGS(n, precondition=lambda v: P @ v, memory=memory)
    pairs = []
    for _ in range(memory + 4):  # more pairs than memory: the oldest are dropped
        s = rng.standard_normal(n)
        y = hessian @ s
        assert approx.update(s, y)
        pairs.append((s, y))
    kept = pairs[-memory:]
    s, y = kept[-1]
    gamma = (s @ y) / (y @ P @ y)
    H = _recursive_bfgs(kept, gamma * P)
    for _ in range(3):
        g = rng.standard_normal(n)
        np.testing.assert_allclose(approx.apply(g), H @ g, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(approx.apply(g, pg=P @ g), H @ g, rtol=1e-10, atol=1e-12)
    # secant condition on the newest pair
    np.testing.assert_allclose(approx.apply(y), s, rtol=1e-9)


def test_compact_lbfgs_skips_bad_curvature_and_resets(rng):
    n = 6
    approx = CompactLBFGS(n, memory=3)
    s = rng.standard_normal(n)
    assert not approx.update(s, -s)  # negative curvature: not stored
    assert len(approx) == 0
    g = rng.standard_normal(n)
    np.testing.assert_array_equal(approx.apply(g), g)  # identity preconditioner
    assert approx.update(s, 2.0 * s)
    approx.reset()
    np.testing.assert_array_equal(approx.apply(g), g)


def test_quartic_step_is_the_global_minimiser(rng):
    for i in range(3000):
        c1 = -abs(rng.standard_normal()) * 10 ** rng.uniform(-6, 3)
        c2, c3 = rng.standard_normal(2) * 10 ** rng.uniform(-3, 3, 2)
        c4 = abs(rng.standard_normal()) * 10 ** rng.uniform(-4, 3)
        if i % 7 == 0:  # cubic with a positive leading term
            c4, c3 = 0.0, abs(c3)
        step = _quartic_step(c1, c2, c3, c4)
        coefs = [4 * c4, 3 * c3, 2 * c2, c1] if c4 > 0 else [3 * c3, 2 * c2, c1]
        roots = np.roots(coefs)
        roots = roots.real[(np.abs(roots.imag) <= 1e-6 * np.abs(roots)) & (roots.real > 0)]
        values = (((c4 * roots + c3) * roots + c2) * roots + c1) * roots
        assert step is not None and roots.size > 0
        t, value = step
        assert t > 0
        assert value == pytest.approx((((c4 * t + c3) * t + c2) * t + c1) * t, rel=1e-12)
        assert value <= values.min() + 1e-9 * abs(values.min())
