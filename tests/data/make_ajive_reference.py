"""Produce tests/data/ajive_reference.npz: AJIVE computed by a separate, literal implementation.

This script does NOT import hcl_stats. It re-implements AJIVE (Feng, Jiang, Hannig and
Marron 2018, "Angle-based joint and individual variation explained", J. Multivariate Anal.)
step by step from the paper's description, as plainly as possible (full SVDs, explicit
residual matrices, explicit complement bases, loops), on data drawn with its own generator:

1. centre each block; full SVD; keep the given initial signal ranks r_m;
2. Wedin bound by resampling: residual E_m = X_m - U_r D_r V_r^T; draw random r_m-dimensional
   orthonormal bases inside the span of the dropped left (resp. right) singular vectors;
   sin(theta_m) ~ min(1, max(||E_m^T U~||_2, ||E_m V~||_2) / d_{m,r_m}); threshold = 5th
   percentile of M - sum_m sin^2(theta_m);
3. random-direction bound: 95th percentile of the top squared singular value of stacked
   uniformly random orthonormal bases of dimensions r_m;
4. joint rank = number of squared singular values of [U_1, ..., U_M] above the larger
   threshold, minus directions u with ||X_m^T u|| below (d_{m,r_m} + d_{m,r_m+1}) / 2 for
   some m; joint score basis = those leading left singular vectors.

Run from the repository root:  python tests/data/make_ajive_reference.py
It writes the data, the initial ranks, the joint rank and the joint score basis. The test
(tests/test_ajive_reference.py) fits hcl_stats.baselines.AJIVE to the stored data with the
same initial ranks and compares.
"""

import os

import numpy as np

SEED = 20261128
N = 300
WIDTHS = (20, 30, 40)
JOINT_RANK = 2
INDIVIDUAL_RANKS = (2, 1, 3)
NOISE_SD = 0.3


def simulate(rng):
    z_joint = rng.standard_normal((N, JOINT_RANK))
    blocks = []
    for p, r in zip(WIDTHS, INDIVIDUAL_RANKS):
        z_ind = rng.standard_normal((N, r))
        load_joint = np.linalg.qr(rng.standard_normal((p, JOINT_RANK)))[0] \
            * rng.uniform(1.0, 2.0, JOINT_RANK)
        load_ind = np.linalg.qr(rng.standard_normal((p, r)))[0] * rng.uniform(1.0, 2.0, r)
        blocks.append(z_joint @ load_joint.T + z_ind @ load_ind.T
                      + NOISE_SD * rng.standard_normal((N, p)))
    return blocks


def random_orthonormal(rng, basis, r):
    """r random orthonormal vectors uniformly distributed in span(basis) (orthonormal cols)."""
    G = rng.standard_normal((basis.shape[1], r))
    Q, _ = np.linalg.qr(G)
    return basis @ Q


def ajive_joint(blocks, ranks, rng, n_samples=1000, wedin_pct=5, randdir_pct=95):
    M = len(blocks)
    n = blocks[0].shape[0]
    centred = [X - X.mean(axis=0) for X in blocks]
    svd = [np.linalg.svd(X, full_matrices=False) for X in centred]

    wedin = np.zeros((n_samples, M))
    for m in range(M):
        U, d, Vt = svd[m]
        r = ranks[m]
        E = centred[m] - U[:, :r] @ np.diag(d[:r]) @ Vt[:r]
        U_rest = U[:, r:]
        V_rest = Vt[r:].T
        for b in range(n_samples):
            U_tilde = random_orthonormal(rng, U_rest, r)
            V_tilde = random_orthonormal(rng, V_rest, r)
            left = np.linalg.norm(E.T @ U_tilde, 2)
            right = np.linalg.norm(E @ V_tilde, 2)
            wedin[b, m] = min(1.0, max(left, right) / d[r - 1]) ** 2
    wedin_threshold = np.percentile(M - wedin.sum(axis=1), wedin_pct)

    randdir = np.zeros(n_samples)
    for b in range(n_samples):
        frames = [random_orthonormal(rng, np.eye(n), r) for r in ranks]
        randdir[b] = np.linalg.svd(np.hstack(frames), compute_uv=False)[0] ** 2
    randdir_threshold = np.percentile(randdir, randdir_pct)

    stacked = np.hstack([svd[m][0][:, :ranks[m]] for m in range(M)])
    P, s, _ = np.linalg.svd(stacked, full_matrices=False)
    threshold = max(wedin_threshold, randdir_threshold)
    candidates = [j for j in range(len(s)) if s[j] ** 2 > threshold]
    sv_threshold = [(svd[m][1][ranks[m] - 1] + svd[m][1][ranks[m]]) / 2 for m in range(M)]
    joint = []
    for j in candidates:
        if all(np.linalg.norm(centred[m].T @ P[:, j]) >= sv_threshold[m] for m in range(M)):
            joint.append(j)
    return P[:, joint], s ** 2, wedin_threshold, randdir_threshold


def main():
    rng = np.random.default_rng(SEED)
    blocks = simulate(rng)
    ranks = [JOINT_RANK + r for r in INDIVIDUAL_RANKS]
    joint_scores, sv2, wedin_thr, randdir_thr = ajive_joint(blocks, ranks, rng)
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ajive_reference.npz")
    np.savez(out, X0=blocks[0], X1=blocks[1], X2=blocks[2], init_ranks=np.array(ranks),
             joint_rank=joint_scores.shape[1], joint_scores=joint_scores, sv_squared=sv2,
             wedin_threshold=wedin_thr, randdir_threshold=randdir_thr)
    print(f"wrote {out}: joint rank {joint_scores.shape[1]}, thresholds "
          f"wedin={wedin_thr:.4f} randdir={randdir_thr:.4f}, top sv^2 {np.round(sv2[:4], 4)}")


if __name__ == "__main__":
    main()
