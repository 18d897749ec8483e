"""The data-driven start: SPA's picks on the rows' leading singular subspace."""

import numpy as np
import pytest
import scipy.sparse as sp

from streamnmf._start import (
    _orthonormal_columns, _spa_picks, leading_subspace_coordinates, spa_init,
)


def low_rank_rows(n_samples, n_features, rank, seed, noise=0.0):
    rng = np.random.default_rng(seed)
    Y = rng.dirichlet(np.full(rank, 0.3), n_samples) @ rng.uniform(0, 1, (rank, n_features))
    return Y + noise * rng.uniform(0, 1, Y.shape)


@pytest.mark.parametrize("sparse", [False, True])
def test_subspace_coordinates_match_the_truncated_svd(sparse):
    # a spectrum with a clear gap after the rank: the randomized range finder's projection
    # equals the exact truncated SVD's, compared through the Gram matrix (the basis of the
    # subspace is free up to a rotation)
    rank = 6
    R = low_rank_rows(300, 80, rank, 0, noise=1e-3)
    U, s, Vt = np.linalg.svd(R, full_matrices=False)
    reference = (U[:, :rank] * s[:rank]) @ (U[:, :rank] * s[:rank]).T
    P = leading_subspace_coordinates(sp.csr_matrix(R) if sparse else R, rank,
                                     np.random.default_rng(1))
    assert P.shape == (300, rank)
    np.testing.assert_allclose(P @ P.T, reference, atol=1e-6 * np.abs(reference).max())


def test_exact_low_rank_rows_are_projected_without_loss():
    R = low_rank_rows(200, 50, 5, 2)
    P = leading_subspace_coordinates(R, 5, np.random.default_rng(0))
    np.testing.assert_allclose(P @ P.T, R @ R.T, rtol=0, atol=1e-10 * np.abs(R @ R.T).max())
    assert _spa_picks(P, 5) == _spa_picks(R, 5)


@pytest.mark.parametrize("seed", [0, 1])
def test_projection_drops_a_noisy_outlier_that_raw_spa_would_pick(seed):
    # 5 topics (10 words each over a background), 2000 mixtures, and one 2-word document off
    # every topic: scaled to unit l1 norm it has the largest norm, so SPA on the raw rows
    # picks it first; in the leading 5-dimensional subspace it is small, and every pure row
    # is found
    rng = np.random.default_rng(seed)
    parts = 0.1 * rng.uniform(0, 1, (5, 60))
    for i in range(5):
        parts[i, 10 * i:10 * i + 10] += 1.0
    Y = np.vstack([np.eye(5), rng.dirichlet(np.ones(5), 2000)]) @ parts
    outlier = np.zeros(60)
    outlier[rng.choice(np.arange(50, 60), 2, replace=False)] = Y.sum(axis=1).mean() / 2
    Y = np.vstack([Y, outlier])
    assert _spa_picks(Y / Y.sum(axis=1, keepdims=True), 5)[0] == len(Y) - 1
    start = spa_init(Y, 5, np.random.default_rng(0))
    picked = [int(np.flatnonzero(np.all(Y == row, axis=1))[0]) for row in start]
    assert sorted(picked) == [0, 1, 2, 3, 4]


def test_start_rows_are_rows_of_the_data_dense_and_csr_alike():
    Y = low_rank_rows(150, 40, 4, 5, noise=0.01)
    Y[Y < 0.2] = 0.0
    dense = spa_init(Y, 4, np.random.default_rng(0))
    csr = spa_init(sp.csr_matrix(Y), 4, np.random.default_rng(0))
    np.testing.assert_allclose(csr, dense, rtol=0, atol=1e-14)
    for row in dense:
        assert np.any(np.all(Y == row, axis=1))


@pytest.mark.parametrize("n_samples", [0, 3])
def test_fewer_pure_rows_than_components_are_filled(n_samples):
    Y = low_rank_rows(max(n_samples, 1), 10, 2, 6)[:n_samples]
    C0 = spa_init(Y, 5, np.random.default_rng(0))
    assert C0.shape == (5, 10) and np.all(np.isfinite(C0))


def test_an_all_zero_block_gets_a_random_start():
    C0 = spa_init(np.zeros((20, 8)), 3, np.random.default_rng(0))
    assert C0.shape == (3, 8) and np.all(np.isfinite(C0)) and C0.min() >= 0


def test_orthonormal_columns_span_the_range_of_rank_deficient_columns():
    rng = np.random.default_rng(7)
    X = rng.standard_normal((500, 4)) @ rng.standard_normal((4, 9))  # rank 4 of 9 columns
    Q = _orthonormal_columns(X)
    assert Q.shape == (500, 4)
    np.testing.assert_allclose(Q.T @ Q, np.eye(4), atol=1e-13)
    reference = np.linalg.svd(X, full_matrices=False)[0][:, :4]  # the range, NumPy's SVD
    np.testing.assert_allclose(Q @ Q.T, reference @ reference.T, atol=1e-10)
    assert _orthonormal_columns(np.zeros((10, 3))).shape == (10, 0)
