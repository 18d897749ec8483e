"""Non-negative components and codes: what an NMF user expects of non-negative data."""

import numpy as np
import pytest
import scipy.sparse as sp

import streamnmf
from streamnmf import AND
from streamnmf.datasets import make_dataset, make_init

import naive


def parts_data(seed=0, n_samples=400, n_components=5, n_features=60):
    """Non-negative data that the model does not generate: sparse parts plus positive noise."""
    rng = np.random.default_rng(seed)
    parts = rng.random((n_components, n_features)) * (rng.random((n_components, n_features))
                                                      < 0.3)
    weights = rng.gamma(0.5, size=(n_samples, n_components))
    return weights @ parts + 0.05 * rng.random((n_samples, n_features))


def test_auto_is_nonnegative_on_nonnegative_data_and_signed_otherwise():
    data = parts_data()
    model = AND(5, n_stages=20).fit(data)
    assert model.nonnegative_ and (model.components_ >= 0).all()
    signed_data = data - 0.1
    model = AND(5, n_stages=5).fit(signed_data)
    assert not model.nonnegative_ and (model.components_ < 0).any()
    # explicit choices override what the data say
    assert not AND(5, components="signed", n_stages=5).fit(data).nonnegative_
    assert AND(5, components="nonnegative", n_stages=5).fit(signed_data).nonnegative_


def test_the_papers_signed_case_is_chosen_signed_and_recovers():
    from streamnmf.metrics import log_total_correlation_error

    data, truth, _ = make_dataset("neg", 2000, 10, 100, random_state=0)
    init = make_init(truth, in_span=0.1 * np.sqrt(10), random_state=1)  # the paper's U[-.05, .05)
    model = AND(10, init=init).fit(data)
    assert not model.nonnegative_
    assert log_total_correlation_error(model.components_, truth) < -50


@pytest.mark.parametrize("layout", ["dense", "csr"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_default_transform_gives_nnls_codes_to_every_row(layout, dtype):
    data = parts_data().astype(dtype)
    X = sp.csr_matrix(data) if layout == "csr" else data
    model = AND(5, n_stages=30).fit(X)
    codes = model.transform(X)
    assert codes.dtype == dtype
    expected = naive.nnls_rows(data, model.components_)
    tol = 1e-6 if dtype == np.float64 else 1e-3
    np.testing.assert_allclose(codes, expected, atol=tol * expected.max())
    assert np.all(codes.any(axis=1))  # every row has a code
    thresholded = AND(5, n_stages=30, transform_algorithm="threshold").fit(X).transform(X)
    # the NNLS codes are the best non-negative reconstruction of the components
    best = np.linalg.norm(data - model.inverse_transform(codes))
    assert best <= np.linalg.norm(data - thresholded @ model.components_) * (1 + 1e-6)


def test_signed_models_keep_the_papers_thresholded_codes():
    data, truth, _ = make_dataset("neg", 500, 6, 40, random_state=0)
    model = AND(6, init=make_init(truth, random_state=1), n_stages=10).fit(data)
    codes = model.transform(data)
    expected = naive.decode(data, model._D.T.T, model.alpha_, 0)
    np.testing.assert_allclose(codes, expected, rtol=1e-10, atol=1e-12)


def test_reconstruction_err_and_n_iter_as_in_scikit_learn():
    data = parts_data()
    model = AND(5, n_stages=15, tol=0, n_iter_no_change=None).fit(data)
    assert model.n_iter_ == model.n_stages_ == 15
    # the last stage's codes and the final components, from the statistics alone
    assert model.reconstruction_err_ == pytest.approx(
        np.sqrt(model.history_["objective"][-1] * data.shape[0]))
    nnls_error = np.linalg.norm(data - model.inverse_transform(model.transform(data)))
    assert nnls_error <= model.reconstruction_err_ * (1 + 1e-9)


def test_uniform_rescaling_of_the_rows_rescales_the_components_alone():
    data = parts_data()
    kwargs = dict(n_stages=25, tol=0, n_iter_no_change=None, random_state=0)
    one = AND(5, **kwargs).fit(data)
    scaled = AND(5, **kwargs).fit(1000.0 * data)
    np.testing.assert_allclose(scaled.components_, 1000.0 * one.components_, rtol=1e-6,
                               atol=1e-9 * scaled.components_.max())
    np.testing.assert_allclose(scaled.transform(1000.0 * data), one.transform(data),
                               rtol=1e-6, atol=1e-9)


def test_the_decision_is_kept_in_checkpoints_and_model_files(tmp_path):
    data = parts_data()
    checkpoint = str(tmp_path / "fit.ckpt.h5")
    model = AND(5, n_stages=4, checkpoint=checkpoint, tol=0, n_iter_no_change=None).fit(data)
    path = str(tmp_path / "model.h5")
    model.save(path)
    loaded = streamnmf.load(path)
    assert loaded.nonnegative_ and loaded.reconstruction_err_ == model.reconstruction_err_
    np.testing.assert_allclose(loaded.transform(data), model.transform(data), rtol=1e-12)
    resumed = AND(5, n_stages=6, checkpoint=checkpoint, tol=0, n_iter_no_change=None).fit(
        data, resume=True)
    whole = AND(5, n_stages=6, tol=0, n_iter_no_change=None).fit(data)
    assert resumed.nonnegative_
    np.testing.assert_array_equal(resumed.components_, whole.components_)


@pytest.mark.parametrize("update", ["stagewise", "gd", "sgd"])
def test_every_update_fits_nonnegative_data_with_nonnegative_parts(update):
    data = parts_data()
    kwargs = dict(update=update, n_stages=30)
    if update == "sgd":
        kwargs.update(stage_length=400, batch_size=8)
    model = AND(5, **kwargs).fit(data)
    assert (model.components_ >= 0).all()
    error = np.linalg.norm(data - model.inverse_transform(model.transform(data)))
    assert error / np.linalg.norm(data) < 0.3


def test_bad_options_are_refused():
    data = parts_data()
    with pytest.raises(ValueError, match=r"'components' parameter .* Got 'positive'"):
        AND(5, components="positive").fit(data)
    with pytest.raises(ValueError, match=r"'transform_algorithm' parameter .* Got 'lasso'"):
        AND(5, transform_algorithm="lasso").fit(data)
