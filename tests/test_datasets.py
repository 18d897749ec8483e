"""Tests of streamnmf.datasets: the AND data sets, the Purification model, HDF5 files."""

import json
import os
import tracemalloc

import h5py
import numpy as np
import pytest
import scipy.sparse as sp
from scipy import stats

import streamnmf
from streamnmf import datasets
from streamnmf.datasets import (
    CHUNK_SIZE,
    DATASET_NAMES,
    Dataset,
    DatasetStream,
    PurificationStream,
    iter_dataset,
    iter_purification_data,
    load_hdf5,
    load_hdf5_truth,
    make_dataset,
    make_init,
    make_purification_data,
    make_topic_components,
    make_weights,
    write_hdf5,
)

# small shapes keep every test well under a second
N, K, M = 300, 10, 40


def clean_part(ds):
    return ds.weights @ ds.components


# ---------------------------------------------------------------------------------------------
# components
# ---------------------------------------------------------------------------------------------

def test_topic_components_are_distributions_with_anchor_words():
    comp = make_topic_components(20, 200, random_state=0)
    assert comp.shape == (20, 200) and comp.dtype == np.float64
    assert np.all(comp >= 0)
    np.testing.assert_allclose(comp.sum(axis=1), 1.0, rtol=0, atol=1e-14)
    # n_anchors = min(3, 200 // 40) = 3 words per topic that no other topic uses
    exclusive = (comp > 0).sum(axis=0) == 1
    owners = np.argmax(comp[:, exclusive], axis=0)
    np.testing.assert_array_equal(np.bincount(owners, minlength=20), 3)
    np.testing.assert_allclose(
        [comp[i, exclusive][owners == i].sum() for i in range(20)], 0.1, rtol=1e-12)
    s = np.linalg.svd(comp, compute_uv=False)
    assert s[0] / s[-1] < 100  # well conditioned


def test_topic_components_options():
    flat = make_topic_components(5, 50, n_anchors=0, anchor_mass=0.0, zipf_exponent=0.0,
                                 random_state=1)
    assert np.all(flat >= 0)
    np.testing.assert_allclose(flat.sum(axis=1), 1.0)
    all_anchor = make_topic_components(5, 10, n_anchors=2, anchor_mass=1.0, random_state=1)
    assert np.all((all_anchor > 0).sum(axis=0) == 1)  # every word is one topic's anchor
    # too few words for anchors (15 < 2 * 10): none are used, every word is shared
    few = make_topic_components(10, 15, random_state=1)
    assert few.shape == (10, 15) and (few > 0).sum(axis=0).min() > 1
    np.testing.assert_array_equal(make_topic_components(4, 30, random_state=7),
                                  make_topic_components(4, 30, random_state=7))


@pytest.mark.parametrize("kwargs, match", [
    ({"n_anchors": 5}, r"need 50 words, but n_features is 40"),
    ({"n_anchors": 0, "anchor_mass": 0.1}, "anchor_mass must be 0 when n_anchors is 0"),
    ({"n_anchors": 4, "anchor_mass": 0.5}, "anchor_mass must be 1"),
    ({"concentration": 0.0}, "concentration must be > 0"),
    ({"zipf_exponent": -1.0}, "zipf_exponent must be >= 0"),
    ({"anchor_mass": 1.5}, "anchor_mass must be <= 1"),
    ({"random_state": -3}, "non-negative int"),
    ({"random_state": "seed"}, "random_state must be None"),
])
def test_topic_components_bad_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_topic_components(10, 40, **kwargs)


# ---------------------------------------------------------------------------------------------
# weights
# ---------------------------------------------------------------------------------------------

def test_dir_weights_are_sparse_distributions():
    w = make_weights("dir", 2000, 100, random_state=0)
    assert w.shape == (2000, 100) and w.dtype == np.float64
    assert np.all(w >= 0) and np.all(np.isfinite(w))
    np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-12)
    assert np.mean(w < 1e-3) > 0.7  # Dirichlet(0.05): most entries tiny
    # the same distribution as normalised Gamma(5 / n) draws
    g = np.random.default_rng(1).gamma(0.05, size=(2000, 100))
    g /= g.sum(axis=1, keepdims=True)
    assert stats.ks_2samp(w.max(axis=1), g.max(axis=1)).pvalue > 1e-3
    dense = make_weights("dir", 2000, 100, dir_sparsity=80, random_state=0)
    assert np.mean(dense < 1e-3) < 0.2
    assert np.median(dense.max(axis=1)) < np.median(w.max(axis=1))


def test_binary_weights_are_bernoulli():
    w = make_weights("binary", 4000, 20, binary_sparsity=4, random_state=0)
    assert set(np.unique(w).tolist()) <= {0.0, 1.0}
    assert w.mean() == pytest.approx(4 / 20, rel=0.05)


def test_ctm_ref_weights_are_nearly_one_hot():
    w = make_weights("ctm-ref", 2000, 100, random_state=0)
    np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-12)
    assert np.all(w >= 0)
    # the reference code's "CTM": about 89% of samples have a weight above 0.99 (n = 100)
    assert 0.84 < np.mean(w.max(axis=1) > 0.99) < 0.94


def test_ctm_weights_are_dense_and_correlated():
    w = make_weights("ctm", 3000, 40, random_state=0)
    np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-12)
    assert np.all(w > 0)
    assert np.mean(w.max(axis=1)) < 0.5
    logw = np.log(w)
    corr = np.corrcoef(logw - logw.mean(axis=1, keepdims=True), rowvar=False)
    assert np.max(np.abs(corr[np.triu_indices(40, 1)])) > 0.5
    # an explicit prior: the mean moves the mass, an identity covariance leaves them uncorrelated
    mu = np.zeros(5)
    mu[2] = 4.0
    w = make_weights("ctm", 3000, 5, mu=mu, cov=np.eye(5), random_state=0)
    assert np.argmax(w.mean(axis=0)) == 2
    assert w[:, 2].mean() > 0.7


def test_ctm_ref_fast_draw_matches_brute_force_distribution():
    # The 3n-normal draw against the reference code's C ~ randn(n, n), logit = C @ (C @ g).
    n, count = 6, 6000
    rng = np.random.default_rng(0)
    fast = datasets.topics._ctm_ref_logits(count, n, rng)
    C = rng.standard_normal((count, n, n))
    g = rng.standard_normal((count, n))
    brute = np.einsum("kij,kj->ki", C, np.einsum("kij,kj->ki", C, g))
    wrong = np.einsum("kji,kj->ki", C, np.einsum("kij,kj->ki", C, g))  # C^T C g instead

    def statistics(logits):
        return [logits[:, 0], logits[:, 0] * logits[:, 1], np.linalg.norm(logits, axis=1),
                np.max(logits, axis=1)]

    for a, b in zip(statistics(fast), statistics(brute)):
        assert stats.ks_2samp(a, b).pvalue > 1e-3
    # the comparison has power: it tells C C g from C^T C g (E||.||^2 ~ n^3 vs 2 n^3)
    assert stats.ks_2samp(np.linalg.norm(wrong, axis=1),
                          np.linalg.norm(brute, axis=1)).pvalue < 1e-6


@pytest.mark.parametrize("kind, params, match", [
    ("gamma", {}, "Unknown weight kind"),
    ("dir", {"binary_sparsity": 3}, r"unexpected parameter\(s\) \['binary_sparsity'\]"),
    ("ctm-ref", {"mu": 0}, "accepts no parameters"),
    ("dir", {"dir_sparsity": 0}, "dir_sparsity must be > 0"),
    ("binary", {"binary_sparsity": 11}, "binary_sparsity must be <= 10"),
    ("ctm", {"mu": np.zeros(3)}, r"mu must be a finite vector of shape"),
    ("ctm", {"cov": np.eye(3)}, r"cov must be a finite matrix of shape"),
    ("ctm", {"cov": np.eye(10), "ctm_sigma": 2.0}, "not both"),
    ("ctm", {"cov": np.triu(np.ones((10, 10)))}, "symmetric"),
    ("ctm", {"cov": -np.eye(10)}, "positive semi-definite"),
    ("ctm", {"ctm_sigma": 0.0}, "ctm_sigma must be > 0"),
])
def test_make_weights_bad_parameters(kind, params, match):
    with pytest.raises(ValueError, match=match):
        make_weights(kind, 5, 10, random_state=0, **params)


# ---------------------------------------------------------------------------------------------
# data sets
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", DATASET_NAMES)
def test_make_dataset_shapes_and_model(name):
    ds = make_dataset(name, N, K, M, random_state=0)
    assert isinstance(ds, Dataset)
    assert ds.data.shape == (N, M) and ds.components.shape == (K, M)
    assert ds.weights.shape == (N, K)
    assert ds.data.dtype == ds.components.dtype == ds.weights.dtype == np.float64
    assert np.all(ds.weights >= 0)
    if name == "neg":
        assert ds.components.min() < 0 and np.all(np.abs(ds.components) <= 0.5)
    else:
        assert np.all(ds.components >= 0)
        np.testing.assert_allclose(ds.components.sum(axis=1), 1.0, atol=1e-14)
    if name == "noise":
        assert not np.allclose(ds.data, clean_part(ds))
    else:
        np.testing.assert_allclose(ds.data, clean_part(ds), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("name", ["dir", "ctm", "noise", "binary"])
def test_blocks_concatenate_to_make_dataset_for_any_block_size(name):
    full = make_dataset(name, N, K, M, random_state=3)
    for block_size in (1, 7, CHUNK_SIZE, CHUNK_SIZE + 1, N, 10 * N):
        stream = iter_dataset(name, N, K, M, block_size=block_size, random_state=3)
        assert isinstance(stream, DatasetStream)
        blocks = list(stream)
        assert len(blocks) == stream.n_blocks == len(stream) == -(-N // block_size)
        assert all(b[0].shape[0] == min(block_size, N) for b in blocks[:-1])
        np.testing.assert_array_equal(np.vstack([b[0] for b in blocks]), full.data)
        np.testing.assert_array_equal(np.vstack([b[1] for b in blocks]), full.weights)
        np.testing.assert_array_equal(stream.components, full.components)


def test_get_block_any_order_and_prefix_property():
    stream = iter_dataset("dir", 600, K, M, random_state=5)
    full = make_dataset("dir", 600, K, M, random_state=5)
    for start, stop in [(550, 600), (3, 9), (255, 257), (0, 0), (100, 600), (0, 1)]:
        data, weights = stream.get_block(start, stop)
        np.testing.assert_array_equal(data, full.data[start:stop])
        np.testing.assert_array_equal(weights, full.weights[start:stop])
    shorter = make_dataset("dir", 100, K, M, random_state=5)
    np.testing.assert_array_equal(shorter.data, full.data[:100])
    np.testing.assert_array_equal(shorter.components, full.components)
    with pytest.raises(ValueError, match=r"start <= stop <= n_samples = 600"):
        stream.get_block(10, 601)
    with pytest.raises(ValueError, match=r"start <= stop"):
        stream.get_block(10, 5)
    with pytest.raises(ValueError, match="start must be an int >= 0"):
        stream.get_block(-1, 5)


def test_same_seed_same_output_other_seed_other_output():
    a = make_dataset("ctm", N, K, M, random_state=11)
    b = make_dataset("ctm", N, K, M, random_state=11)
    c = make_dataset("ctm", N, K, M, random_state=12)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a.data, c.data)
    assert not np.array_equal(a.components, c.components)
    # a SeedSequence and a seeded Generator are reproducible too
    ss = make_dataset("dir", N, K, M, random_state=np.random.SeedSequence(4))
    np.testing.assert_array_equal(ss.data, make_dataset("dir", N, K, M, random_state=4).data)
    g1 = make_dataset("dir", N, K, M, random_state=np.random.default_rng(9))
    g2 = make_dataset("dir", N, K, M, random_state=np.random.default_rng(9))
    np.testing.assert_array_equal(g1.data, g2.data)
    # unseeded: two calls differ
    assert not np.array_equal(make_dataset("dir", N, K, M).data,
                              make_dataset("dir", N, K, M).data)


def test_float32_is_the_float64_data_cast():
    d64 = make_dataset("noise", N, K, M, random_state=2)
    d32 = make_dataset("noise", N, K, M, random_state=2, dtype=np.float32)
    for x64, x32 in zip(d64, d32):
        assert x32.dtype == np.float32
        np.testing.assert_array_equal(x32, x64.astype(np.float32))
    stream = iter_dataset("noise", N, K, M, random_state=2, dtype="float32", block_size=50)
    assert next(iter(stream))[0].dtype == np.float32


def test_noise_has_std_gamma_over_sqrt_m_and_rescales_the_same_draw():
    n_samples, m = 2000, 100
    ds = make_dataset("noise", n_samples, K, m, random_state=0)
    residual = ds.data - clean_part(ds)
    assert residual.std() == pytest.approx(0.01 / np.sqrt(m), rel=0.02)
    assert abs(residual.mean()) < 4 * 0.01 / np.sqrt(m) / np.sqrt(residual.size)
    assert stats.normaltest(residual.ravel()[:5000]).pvalue > 1e-3
    double = make_dataset("noise", n_samples, K, m, noise=0.02, random_state=0)
    np.testing.assert_array_equal(double.components, ds.components)
    np.testing.assert_array_equal(double.weights, ds.weights)
    np.testing.assert_allclose(double.data - clean_part(double), 2 * residual, rtol=1e-9,
                               atol=1e-15)
    silent = make_dataset("noise", n_samples, K, m, noise=0.0, random_state=0)
    np.testing.assert_array_equal(silent.data, clean_part(silent))
    noisy_dir = make_dataset("dir", n_samples, K, m, noise=0.1, random_state=0)
    assert (noisy_dir.data - clean_part(noisy_dir)).std() == pytest.approx(
        0.1 / np.sqrt(m), rel=0.02)


def test_weight_params_reach_the_weights():
    ds = make_dataset("binary", 2000, 20, M, weight_params={"binary_sparsity": 10},
                      random_state=0)
    assert ds.weights.mean() == pytest.approx(0.5, rel=0.05)


def test_stream_components_are_a_copy():
    stream = iter_dataset("dir", N, K, M, random_state=0)
    before = stream.get_block(0, 10)[0]
    stream.components[:] = 0.0  # the caller's copy; the data must not change
    stream._cache = None
    np.testing.assert_array_equal(stream.get_block(0, 10)[0], before)


def test_stream_attributes():
    stream = iter_dataset("noise", 1000, K, M, block_size=300, random_state=8)
    assert stream.shape == (1000, M)
    assert stream.noise == 0.01 and stream.weight_kind == "ctm-ref"
    assert stream.random_state == 8
    assert iter_dataset("dir", 10, K, M).random_state is None
    assert "DatasetStream('noise'" in repr(stream)


@pytest.mark.parametrize("call, match", [
    (lambda: make_dataset("lda"), "Unknown data set name 'lda'"),
    (lambda: make_dataset("dir", 0), "n_samples must be an int >= 1"),
    (lambda: make_dataset("dir", 10.0), "n_samples must be an int"),
    (lambda: make_dataset("dir", True), "n_samples must be an int"),
    (lambda: make_dataset("dir", 10, 0), "n_components must be an int >= 1"),
    (lambda: make_dataset("dir", 10, 5, -1), "n_features must be an int >= 1"),
    (lambda: make_dataset("dir", 10, noise=-0.1), "noise must be >= 0"),
    (lambda: make_dataset("dir", 10, noise=float("nan")), "noise must be a finite number"),
    (lambda: make_dataset("dir", 10, dtype=np.int64), "dtype must be np.float32 or"),
    (lambda: make_dataset("dir", 10, dtype="nonsense"), "dtype must be np.float32 or"),
    (lambda: make_dataset("dir", 10, weight_params=[1]), "weight_params must be a dict"),
    (lambda: make_dataset("dir", 10, weight_params={"x": 1}), "unexpected parameter"),
    (lambda: make_dataset("dir", 10, random_state=-1), "non-negative int"),
    (lambda: make_dataset("dir", 10, random_state=1.5), "random_state must be None"),
    (lambda: iter_dataset("dir", 10, block_size=0), "block_size must be an int >= 1"),
])
def test_make_dataset_bad_parameters(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# ---------------------------------------------------------------------------------------------
# initialisation
# ---------------------------------------------------------------------------------------------

def test_make_init_without_perturbation_is_the_truth():
    truth = make_topic_components(K, M, random_state=0)
    np.testing.assert_array_equal(make_init(truth, in_span=0.0, random_state=1), truth)
    t32 = truth.astype(np.float32)
    init32 = make_init(t32, in_span=0.0, random_state=1)
    assert init32.dtype == np.float32
    np.testing.assert_array_equal(init32, t32)
    assert make_init(truth.tolist(), in_span=0, random_state=0).dtype == np.float64


def test_make_init_perturbs_in_and_out_of_span_reproducibly():
    truth = make_topic_components(K, M, random_state=0)
    init = make_init(truth, random_state=3)
    assert init.shape == truth.shape
    np.testing.assert_array_equal(init, make_init(truth, random_state=3))
    assert not np.array_equal(init, make_init(truth, random_state=4))
    # in-span only: every row is a combination of the true rows, mostly its own
    coef = np.linalg.lstsq(truth.T, init.T, rcond=None)[0].T
    np.testing.assert_allclose(coef @ truth, init, atol=1e-12)
    assert np.all(np.argmax(np.abs(coef), axis=1) == np.arange(K))
    # the in-span error scale: U entries in [-0.5, 0.5) / sqrt(n)
    assert np.max(np.abs(coef - np.eye(K))) <= 0.5 / np.sqrt(K)
    # out of span: leaves the row space; U itself does not depend on out_of_span
    outside = make_init(truth, out_of_span=0.05, random_state=3)
    coef_out = np.linalg.lstsq(truth.T, outside.T, rcond=None)[0].T
    assert np.linalg.norm(outside - coef_out @ truth) > 1e-3
    noise_part = outside - init
    assert np.max(np.abs(noise_part)) <= 0.5 * 0.05 / np.sqrt(K) * 1.0 + 1e-15
    # proportional to the truth's scale
    np.testing.assert_allclose(make_init(5 * truth, out_of_span=0.05, random_state=3),
                               5 * outside, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("args, kwargs, match", [
    ((np.ones(5),), {}, "2-D array"),
    ((np.ones((0, 5)),), {}, "non-empty 2-D"),
    ((np.full((2, 2), np.nan),), {}, "finite real numbers"),
    ((np.ones((2, 2)),), {"in_span": -1.0}, "in_span must be >= 0"),
    ((np.ones((2, 2)),), {"out_of_span": float("inf")}, "out_of_span must be a finite"),
])
def test_make_init_bad_parameters(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_init(*args, **kwargs)


# ---------------------------------------------------------------------------------------------
# the Purification model
# ---------------------------------------------------------------------------------------------

def test_purification_a2_prime_weights_and_default_components():
    ds = make_purification_data(4000, K, M, sparsity=2.0, random_state=0)
    assert ds.data.shape == (4000, M) and ds.components.shape == (K, M)
    assert ds.weights.shape == (4000, K)
    assert set(np.unique(ds.weights).tolist()) == {0.0, 1.0}
    assert ds.weights.mean() == pytest.approx(2.0 / K, rel=0.05)
    # independent coordinates: no correlation between them
    corr = np.corrcoef(ds.weights, rowvar=False)
    assert np.max(np.abs(corr[np.triu_indices(K, 1)])) < 0.1
    # default components: topic matrix, columns of A* of unit l1 norm, (A1) holds
    assert np.all(ds.components >= 0)
    np.testing.assert_allclose(ds.components.sum(axis=1), 1.0, atol=1e-14)
    assert np.linalg.matrix_rank(ds.components) == K
    np.testing.assert_array_equal(ds.data, clean_part(ds))  # noise 0 by default


def test_purification_a2_weights_moments():
    low, high, s = 0.2, 0.9, 3.0
    ds = make_purification_data(8000, K, M, weights="a2", sparsity=s, value_range=(low, high),
                                random_state=1)
    w = ds.weights
    active = w > 0
    assert np.all((w[active] >= low) & (w[active] < high))
    assert np.all(w <= 1)
    p = s / K
    assert w.mean() == pytest.approx(p * (low + high) / 2, rel=0.05)
    assert (w**2).mean() == pytest.approx(p * (low**2 + low * high + high**2) / 3, rel=0.05)
    default = make_purification_data(3000, K, M, weights="a2", random_state=1).weights
    assert 0 < default.max() <= 1 and default[default > 0].min() < 0.05  # U[0, 1)


def test_purification_unbalanced_sparsity():
    s = np.linspace(0.5, 5.0, K)
    w = make_purification_data(6000, K, M, sparsity=s, random_state=2).weights
    np.testing.assert_allclose(w.mean(axis=0), s / K, rtol=0.15, atol=0.01)
    assert w[:, -1].mean() > 5 * w[:, 0].mean()


def test_purification_component_options():
    signed = make_purification_data(10, K, M, components="signed", random_state=0).components
    assert signed.min() < 0
    np.testing.assert_allclose(np.abs(signed).sum(axis=1), 1.0)
    given = np.random.default_rng(0).random((K, M))
    ds = make_purification_data(50, K, M, components=given, random_state=0)
    np.testing.assert_array_equal(ds.components, given)
    assert ds.components is not given
    np.testing.assert_allclose(ds.data, ds.weights @ given, rtol=1e-12)
    square = make_purification_data(10, K, K, random_state=0).components  # m == n allowed
    assert np.linalg.matrix_rank(square) == K


def test_purification_unbiased_noise_is_bounded_zero_mean_and_independent():
    level = 0.05
    ds = make_purification_data(3000, K, M, noise=level, noise_kind="unbiased", random_state=4)
    nu = ds.data - clean_part(ds)
    np.testing.assert_allclose(np.abs(nu), level, rtol=1e-9)  # Rademacher: saturates the bound
    assert abs(nu.mean()) < 4 * level / np.sqrt(nu.size)
    # E[nu | x] = 0: no cross-covariance with the weights
    cross = (nu - nu.mean(0)).T @ (ds.weights - ds.weights.mean(0)) / len(nu)
    assert np.max(np.abs(cross)) < 5 * level * 0.5 / np.sqrt(len(nu))


def test_purification_adversarial_noise_is_bounded_and_biased():
    level = 0.05
    stream = iter_purification_data(3000, K, M, noise=level, random_state=4)
    ds = make_purification_data(3000, K, M, noise=level, random_state=4)
    nu = ds.data - clean_part(ds)
    assert np.max(np.abs(nu)) <= level * (1 + 1e-9)
    V = stream.noise_directions
    assert V.shape == (K, M) and set(np.unique(V).tolist()) == {-1.0, 1.0}
    # a sample with exactly one active component i is (A*_i + level v_i) x_i
    single = np.flatnonzero(ds.weights.sum(axis=1) == 1)
    assert single.size > 100
    i = np.argmax(ds.weights[single], axis=1)
    np.testing.assert_allclose(ds.data[single], ds.components[i] + level * V[i], rtol=1e-12,
                               atol=1e-15)
    # a general sample: nu = level V^T x / max(1, ||x||_1); zero weights, zero noise
    x = ds.weights
    expected = level * (x @ V) / np.maximum(1.0, x.sum(axis=1))[:, None]
    np.testing.assert_allclose(nu, expected, atol=1e-14)
    # biased: the cross-covariance with the weights is of the order of the noise itself
    cross = (nu - nu.mean(0)).T @ (x - x.mean(0)) / len(nu)
    assert np.max(np.abs(cross)) > 0.3 * level * x.var(axis=0).min()
    assert iter_purification_data(10, K, M, noise_kind="unbiased").noise_directions is None


def test_purification_aimed_noise_moves_one_decoded_value_by_the_row_norm():
    level = 0.01
    truth = make_purification_data(1, K, M, random_state=5).components
    B = np.linalg.pinv(truth)  # (M, K): column k decodes component k
    V = np.sign(B.T)
    ds = make_purification_data(2000, K, M, noise=level, noise_kind="aimed",
                                noise_directions=V, random_state=5)
    nu = ds.data - clean_part(ds)
    assert np.max(np.abs(nu)) <= level * (1 + 1e-12)
    # every sample's noise is level * v_K for one K, and K is uniform, independent of x
    aim = np.argmax(np.abs(nu @ V.T), axis=1)
    np.testing.assert_allclose(nu, level * V[aim], atol=1e-15)
    counts = np.bincount(aim, minlength=K)
    assert counts.min() > 0.5 * len(aim) / K
    # through the decoder the aimed value moves by level * ||b_K||_1, the most it can
    moved = (nu @ B)[np.arange(len(aim)), aim]
    np.testing.assert_allclose(moved, level * np.abs(B).sum(axis=0)[aim], rtol=1e-9)
    # default directions: the adversarial model's random signs, the same draw
    default = iter_purification_data(10, K, M, noise=level, noise_kind="aimed", random_state=5)
    np.testing.assert_array_equal(
        default.noise_directions,
        iter_purification_data(10, K, M, noise=level, random_state=5).noise_directions)


def test_purification_streams_like_the_and_data():
    kwargs = dict(weights="a2", noise=0.01, noise_kind="unbiased", random_state=6)
    full = make_purification_data(N, K, M, **kwargs)
    for block_size in (1, 13, CHUNK_SIZE, 1000):
        stream = iter_purification_data(N, K, M, block_size=block_size, **kwargs)
        assert isinstance(stream, PurificationStream)
        assert isinstance(stream, DatasetStream)
        np.testing.assert_array_equal(np.vstack([b[0] for b in stream]), full.data)
        np.testing.assert_array_equal(np.vstack([b[1] for b in stream]), full.weights)
    again = make_purification_data(N, K, M, **kwargs)
    np.testing.assert_array_equal(again.data, full.data)
    other = make_purification_data(N, K, M, **{**kwargs, "random_state": 7})
    assert not np.array_equal(other.data, full.data)
    double = make_purification_data(N, K, M, **{**kwargs, "noise": 0.02})
    np.testing.assert_allclose(double.data - clean_part(double),
                               2 * (full.data - clean_part(full)), rtol=1e-9, atol=1e-15)
    f32 = make_purification_data(N, K, M, dtype=np.float32, **kwargs)
    assert f32.data.dtype == np.float32
    np.testing.assert_array_equal(f32.data, full.data.astype(np.float32))
    assert "PurificationStream(" in repr(iter_purification_data(N, K, M))


@pytest.mark.parametrize("kwargs, match", [
    ({"weights": "a3"}, "weights must be one of"),
    ({"noise_kind": "gaussian"}, "noise_kind must be one of"),
    ({"noise_kind": "unbiased", "noise_directions": np.ones((10, 40))},
     "noise_directions applies to noise_kind 'adversarial' or 'aimed'"),
    ({"noise_directions": np.ones((10, 3))},
     r"noise_directions must be a real array of shape \(n_components, n_features\) = \(10, 40\)"),
    ({"noise_directions": np.full((10, 40), 2.0)}, r"entries in \[-1, 1\].*found entries up to 2"),
    ({"value_range": (0, 1)}, "value_range applies to weights='a2' only"),
    ({"weights": "a2", "value_range": (0.8, 0.2)}, "low <= high"),
    ({"weights": "a2", "value_range": (0.0, 1.5)}, r"value_range\[1\] must be <= 1"),
    ({"weights": "a2", "value_range": 0.5}, "must be a pair"),
    ({"sparsity": 0.0}, "sparsity must be > 0"),
    ({"sparsity": 11.0}, "sparsity must be <= 10"),
    ({"sparsity": np.ones(3)}, r"shape \(n_components,\) = \(10,\)"),
    ({"sparsity": np.zeros(10)}, r"in \(0, n_components\]"),
    ({"noise": -1.0}, "noise must be >= 0"),
    ({"components": "gaussian"}, "components must be None, 'topic', 'signed'"),
    ({"components": np.ones((10, 30))}, r"shape \(n_components, n_features\) = \(10, 40\)"),
    ({"components": np.ones((10, 40))}, r"linearly independent \(assumption \(A1\)\)"),
    ({"components": np.full((10, 40), np.nan)}, "finite real numbers"),
])
def test_purification_bad_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_purification_data(20, K, M, **kwargs)


def test_purification_needs_n_features_at_least_n_components():
    with pytest.raises(ValueError, match=r"\(A1\).*n_components=10 > n_features=5"):
        make_purification_data(20, 10, 5)


# ---------------------------------------------------------------------------------------------
# HDF5 files
# ---------------------------------------------------------------------------------------------

def test_hdf5_dense_round_trip(tmp_path):
    path = tmp_path / "dir.h5"
    out = write_hdf5(path, "dir", 1000, K, M, block_size=77, with_weights=True, random_state=3)
    assert out == str(path)
    ref = make_dataset("dir", 1000, K, M, random_state=3)
    with h5py.File(path, "r") as f:
        assert f["data"].shape == (1000, M) and f["data"].dtype == np.float64
        assert f["data"].chunks is None  # uncompressed: contiguous, one piece to map
        np.testing.assert_array_equal(f["data"][()], ref.data)
        np.testing.assert_array_equal(f["components"][()], ref.components)
        np.testing.assert_array_equal(f["weights"][()], ref.weights)
        attrs = dict(f.attrs)
    assert attrs["name"] == "dir" and attrs["n_components"] == K
    assert attrs["n_samples"] == 1000 and attrs["n_features"] == M
    assert attrs["noise"] == 0.0 and attrs["random_state"] == 3
    assert attrs["streamnmf_version"] == streamnmf.__version__
    assert attrs["format"] == "streamnmf-dataset" and attrs["layout"] == "dense"
    assert json.loads(attrs["weight_params_json"]) == {"dir_sparsity": 5.0}
    np.testing.assert_array_equal(load_hdf5_truth(path), ref.components)
    loaded, loaded_attrs = load_hdf5(path)
    np.testing.assert_array_equal(loaded.data, ref.data)
    assert loaded_attrs["weight_params"] == {"dir_sparsity": 5.0}


def test_hdf5_compressed_dense_chunks_are_about_one_mib(tmp_path):
    path = tmp_path / "wide.h5"
    write_hdf5(path, "dir", 600, 5, 1000, random_state=0, dtype=np.float32, compression="lzf")
    with h5py.File(path, "r") as f:
        assert f["data"].dtype == np.float32
        rows, cols = f["data"].chunks
        assert cols == 1000 and 0.5 * 2**20 <= rows * cols * 4 <= 2 * 2**20
        assert "weights" not in f
    np.testing.assert_array_equal(
        load_hdf5(path)[0].data,
        make_dataset("dir", 600, 5, 1000, random_state=0, dtype=np.float32).data)


def test_hdf5_csr_round_trip_of_sparse_data(tmp_path):
    # (A2') weights with components that have exact zeros: most entries of the data are 0
    rng = np.random.default_rng(0)
    comp = (rng.random((K, 200)) < 0.05) * rng.random((K, 200))
    comp[np.arange(K), np.arange(K)] = 1.0  # full rank
    stream = iter_purification_data(900, K, 200, components=comp, sparsity=1.0,
                                    random_state=5)
    path = tmp_path / "sparse.h5"
    write_hdf5(path, stream, sparse=True, block_size=100, with_weights=True)
    ref = make_purification_data(900, K, 200, components=comp, sparsity=1.0, random_state=5)
    with h5py.File(path, "r") as f:
        group = f["data"]
        assert isinstance(group, h5py.Group)
        assert tuple(group.attrs["shape"]) == (900, 200)
        assert group.attrs["encoding-type"] == "csr_matrix"
        assert group.attrs["h5sparse_format"] == "csr"
        assert group["indices"].dtype == np.int32 and group["indptr"].dtype == np.int64
        assert group["data"].maxshape == (None,) and group["indices"].maxshape == (None,)
        assert group["indptr"].shape == (901,)
        csr = sp.csr_matrix((group["data"][()], group["indices"][()], group["indptr"][()]),
                            shape=(900, 200))
        assert f.attrs["noise_kind"] == "adversarial" and f.attrs["weight_kind"] == "a2'"
    assert csr.nnz == np.count_nonzero(ref.data) < 0.1 * ref.data.size
    assert np.all(csr.data != 0)
    csr.has_sorted_indices = False
    csr.sort_indices()
    np.testing.assert_array_equal(csr.toarray(), ref.data)
    loaded, _ = load_hdf5(path)
    assert sp.issparse(loaded.data)
    np.testing.assert_array_equal(loaded.data.toarray(), ref.data)
    np.testing.assert_array_equal(loaded.weights, ref.weights)
    np.testing.assert_array_equal(loaded.components, comp)


def test_hdf5_csr_of_dense_data_and_compression(tmp_path):
    path = tmp_path / "noise.h5"
    write_hdf5(path, "noise", 500, K, M, sparse=True, compression="gzip", random_state=1)
    ref = make_dataset("noise", 500, K, M, random_state=1)
    loaded, attrs = load_hdf5(path)
    np.testing.assert_array_equal(loaded.data.toarray(), ref.data)
    assert attrs["layout"] == "csr" and attrs["noise"] == 0.01
    with h5py.File(path, "r") as f:
        assert f["data/data"].compression == "gzip"
    write_hdf5(tmp_path / "lzf.h5", "dir", 100, K, M, compression=4, random_state=1)
    with h5py.File(tmp_path / "lzf.h5", "r") as f:
        assert f["data"].compression == "gzip" and f["data"].compression_opts == 4


def test_hdf5_existing_file_is_refused_unless_overwrite(tmp_path):
    path = tmp_path / "x.h5"
    path.write_bytes(b"precious")
    with pytest.raises(FileExistsError, match="pass overwrite=True"):
        write_hdf5(path, "dir", 50, K, M, random_state=0)
    assert path.read_bytes() == b"precious"
    assert os.listdir(tmp_path) == ["x.h5"]
    write_hdf5(path, "dir", 50, K, M, random_state=0, overwrite=True)
    np.testing.assert_array_equal(load_hdf5(path)[0].data,
                                  make_dataset("dir", 50, K, M, random_state=0).data)


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("exists", [False, True])
def test_hdf5_failed_write_leaves_no_file(tmp_path, monkeypatch, sparse, exists):
    path = tmp_path / "fail.h5"
    if exists:
        path.write_bytes(b"old")
    stream = iter_dataset("dir", 1000, K, M, random_state=0)
    real_get_block = stream.get_block
    calls = []

    def failing_get_block(start, stop):
        calls.append(start)
        if len(calls) == 3:
            raise RuntimeError("disk on fire")
        return real_get_block(start, stop)

    monkeypatch.setattr(stream, "get_block", failing_get_block)
    with pytest.raises(RuntimeError, match="disk on fire"):
        write_hdf5(path, stream, block_size=100, sparse=sparse, overwrite=True)
    assert len(calls) == 3
    if exists:
        assert os.listdir(tmp_path) == ["fail.h5"] and path.read_bytes() == b"old"
    else:
        assert os.listdir(tmp_path) == []


def test_hdf5_memory_is_bounded_by_a_block(tmp_path):
    # 40000 x 100 float64 is 32 MB; blocks of 1000 rows are 0.8 MB
    path = tmp_path / "big.h5"
    tracemalloc.start()
    try:
        write_hdf5(path, "binary", 40000, 5, 100, block_size=1000, random_state=0, sparse=True)
        _, peak_sparse = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        write_hdf5(path, "binary", 40000, 5, 100, block_size=1000, random_state=0,
                   overwrite=True)
        _, peak_dense = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak_sparse < 8e6 and peak_dense < 8e6
    with h5py.File(path, "r") as f:
        assert f["data"].shape == (40000, 100)
        np.testing.assert_array_equal(
            f["data"][39000:], make_dataset("binary", 40000, 5, 100, random_state=0).data[39000:])


def test_hdf5_seed_entropy_regenerates_an_unseeded_stream(tmp_path):
    stream = iter_dataset("ctm-ref", 200, K, M)  # unseeded
    path = tmp_path / "u.h5"
    write_hdf5(path, stream)
    with h5py.File(path, "r") as f:
        assert "random_state" not in f.attrs
        entropy = int(f.attrs["seed_entropy"])
        data = f["data"][()]
    np.testing.assert_array_equal(make_dataset("ctm-ref", 200, K, M, random_state=entropy).data,
                                  data)


def test_hdf5_bad_parameters(tmp_path):
    stream = iter_dataset("dir", 10, K, M, random_state=0)
    with pytest.raises(ValueError, match=r"\['n_samples', 'random_state'\] are fixed by the"):
        write_hdf5(tmp_path / "a.h5", stream, n_samples=20, random_state=1)
    with pytest.raises(ValueError, match="source must be a data set name"):
        write_hdf5(tmp_path / "a.h5", make_dataset("dir", 10, K, M))
    with pytest.raises(ValueError, match="Unknown data set name"):
        write_hdf5(tmp_path / "a.h5", "lda")
    with pytest.raises(ValueError, match="other than 'components' and 'weights'"):
        write_hdf5(tmp_path / "a.h5", stream, dataset="components")
    with pytest.raises(ValueError, match="compression must be None"):
        write_hdf5(tmp_path / "a.h5", stream, compression="zstd")
    with pytest.raises(ValueError, match="gzip compression level must be in 0..9"):
        write_hdf5(tmp_path / "a.h5", stream, compression=12)
    with pytest.raises(ValueError, match="block_size must be an int >= 1"):
        write_hdf5(tmp_path / "a.h5", stream, block_size=0)
    with pytest.raises(FileNotFoundError, match="does not exist; create it first"):
        write_hdf5(tmp_path / "missing" / "a.h5", stream)
    with pytest.raises(ValueError, match="is a directory"):
        write_hdf5(tmp_path, stream)
    assert os.listdir(tmp_path) == []


def test_load_hdf5_truth_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="No such file"):
        load_hdf5_truth(tmp_path / "none.h5")
    text = tmp_path / "text.h5"
    text.write_text("not hdf5")
    with pytest.raises(ValueError, match="cannot be read as HDF5"):
        load_hdf5_truth(text)
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["x"] = np.ones(3)
    with pytest.raises(ValueError, match="not written by streamnmf.datasets.write_hdf5"):
        load_hdf5_truth(other)
