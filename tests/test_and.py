"""The AND estimator: equal to the paper's algorithms transcribed, recovery, API and errors."""

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.utils.estimator_checks import check_param_validation, parametrize_with_checks

from streamnmf import AND, schedules
from streamnmf._engine import DivergenceError
from streamnmf.datasets import make_dataset, make_init
from streamnmf.metrics import log_total_correlation_error
from streamnmf.io.sources import ArraySource

import naive


def small_problem(name="dir", n_samples=300, n_components=6, n_features=40, seed=0):
    """A paper data set at a small size, with the paper's DIR prior Dirichlet(0.05) and start
    ``A*(I + U)``, ``U ~ U[-0.05, 0.05)`` whatever n (``make_init`` scales U with 1/sqrt(n))."""
    weight_params = {"dir_sparsity": 0.05 * n_components} if name == "dir" else None
    data, truth, _ = make_dataset(name, n_samples, n_components, n_features,
                                  weight_params=weight_params, random_state=seed)
    init = make_init(truth, in_span=0.1 * np.sqrt(n_components), random_state=seed + 1)
    return data, truth, init


# -- the paper's algorithms, transcribed in tests/naive.py ------------------------------------

@pytest.mark.parametrize("layout", ["dense", "csr"])
def test_sgd_batch1_equals_algorithm1(layout):
    data, _, init = small_problem(n_samples=200)
    alphas = [0.05, 0.03, 0.02]
    eta = 0.5
    X = sp.csr_matrix(data) if layout == "csr" else data
    est = AND(6, components="signed", update="sgd", thresholds=alphas, n_stages=3,
              learning_rate=eta, init=init, tol=0, n_iter_no_change=None).fit(X)
    expected = naive.and_algorithm1(data, init, alphas, stage_length=200, eta=eta)
    np.testing.assert_allclose(est.components_, expected, rtol=1e-10, atol=1e-12)
    assert est.n_stages_ == 3
    np.testing.assert_array_equal(est.history_["alpha"], alphas)


def test_sgd_stage_shorter_than_pass_equals_algorithm1():
    # stage ends fall inside blocks and passes wrap around the data
    data, _, init = small_problem(n_samples=100)
    alphas = [0.05, 0.04, 0.03, 0.02, 0.02]
    est = AND(6, components="signed", update="sgd", thresholds=alphas, n_stages=5,
              stage_length=70, learning_rate=0.5, init=init, tol=0,
              n_iter_no_change=None).fit(data)
    expected = naive.and_algorithm1(data, init, alphas, stage_length=70, eta=0.5)
    np.testing.assert_allclose(est.components_, expected, rtol=1e-10, atol=1e-12)


def test_gd_equals_paper_full_batch():
    data, _, init = small_problem()
    alphas = [0.05, 0.03]
    eta_paper = 0.5 / data.shape[0]  # the paper's step on sums; 0.5 on the mean statistics
    est = AND(6, components="signed", update="gd", thresholds=alphas, n_stages=2, n_inner=20,
              learning_rate=eta_paper * data.shape[0], init=init, tol=0,
              n_iter_no_change=None).fit(data)
    expected = naive.and_full_batch(data, init, alphas, n_inner=20, eta_paper=eta_paper)
    np.testing.assert_allclose(est.components_, expected, rtol=1e-10, atol=1e-12)


def test_stagewise_is_the_least_squares_solve():
    data, _, init = small_problem()
    est = AND(6, components="signed", update="stagewise", thresholds=[0.05], n_stages=1,
              init=init).fit(data)
    Z = naive.decode(data, np.linalg.pinv(init), 0.05, 0)
    expected = np.linalg.lstsq(Z, data, rcond=None)[0]
    np.testing.assert_allclose(est.components_, expected, rtol=1e-8, atol=1e-10)


def test_nonnegative_stagewise_is_the_nonnegative_least_squares_solve(monkeypatch):
    import streamnmf._and

    data, _, init = small_problem()
    data = data + 0.02 * np.random.default_rng(5).standard_normal(data.shape)  # signed noise
    monkeypatch.setattr(streamnmf._and, "NNLS_SWEEPS", 100_000)  # solved to convergence
    est = AND(6, components="nonnegative", thresholds=[0.05], n_stages=1, init=init).fit(data)
    Z = naive.decode(data, np.linalg.pinv(init), 0.05, 0)
    expected = naive.nonnegative_least_squares(Z.T @ Z, Z.T @ data)
    assert (expected == 0).any() and np.linalg.lstsq(Z, data, rcond=None)[0].min() < 0
    np.testing.assert_allclose(est.components_, expected, atol=1e-7 * expected.max())
    assert est.nonnegative_ and (est.components_ >= 0).all()


@pytest.mark.parametrize("update", ["gd", "sgd"])
def test_projected_updates_keep_components_nonnegative(update):
    data, _, init = small_problem()
    data = data + 0.02 * np.random.default_rng(5).standard_normal(data.shape)
    kwargs = dict(thresholds=[0.05, 0.03], n_stages=2, init=init, tol=0, n_iter_no_change=None,
                  update=update, learning_rate=0.5)
    signed = AND(6, components="signed", **kwargs).fit(data).components_
    projected = AND(6, components="nonnegative", **kwargs).fit(data).components_
    assert signed.min() < 0 and projected.min() == 0


# -- recovery ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["dir", "ctm-ref", "neg"])
def test_stagewise_recovers_to_round_off(name):
    data, truth, init = small_problem(name, n_samples=2000, n_components=20, n_features=200)
    start = log_total_correlation_error(init, truth)
    est = AND(20, init=init, n_stages=200).fit(data)
    final = log_total_correlation_error(est.components_, truth)
    assert start > -2
    assert final <= -50, (name, final, est.n_stages_)


def test_noise_floor_falls_with_noise():
    floors = []
    for gamma in (0.1, 0.01):
        data, truth, _ = make_dataset("noise", 2000, 20, 200, noise=gamma, random_state=3)
        init = make_init(truth, in_span=0.1 * np.sqrt(20), random_state=4)
        est = AND(20, init=init, n_stages=60).fit(data)
        floors.append(log_total_correlation_error(est.components_, truth))
    assert floors[1] < floors[0] - 2, floors


def test_sgd_lowers_error_100_fold():
    data, truth, init = small_problem("dir", n_samples=2000, n_components=20, n_features=200)
    est = AND(20, update="sgd", init=init, n_stages=30, batch_size=1).fit(data)
    drop = log_total_correlation_error(init, truth) - log_total_correlation_error(
        est.components_, truth)
    assert drop >= np.log(100), drop


@pytest.mark.parametrize("name", ["ctm-ref", "neg"])
def test_default_spa_init_recovers_separable_data(name):
    # "neg": signed components, where scaling the rows to unit l1 norm would make SPA pick
    # mixtures (cancellation raises their l2 / l1 ratio above a pure sample's)
    data, truth, _ = make_dataset(name, 2000, 10, 100, random_state=5)
    est = AND(10, random_state=0, n_stages=100).fit(data)
    assert est.nonnegative_ == (name != "neg")
    assert log_total_correlation_error(est.components_, truth) < -20


def test_data_driven_init_looks_past_the_first_block():
    # the pure samples (one true component each) sit after the first block: SPA finds them
    data, truth, _ = make_dataset("dir", 600, 5, 40, random_state=2)
    data = np.vstack([data, truth / truth.sum(axis=1, keepdims=True)])
    small_blocks = AND(5, n_stages=1, thresholds=1e9, random_state=0)
    small_blocks.fit(ArraySource(data, block_rows=50))
    whole = AND(5, n_stages=1, thresholds=1e9, random_state=0).fit(data)
    # a threshold above every code leaves the start in place: components_ is the init
    np.testing.assert_array_equal(small_blocks.components_, whole.components_)
    assert log_total_correlation_error(whole.components_, truth) < -20


def test_early_stop_waits_while_the_threshold_is_lowered_on_purpose():
    # sgd's change is noisy; during the careful start (alpha falling 1.1x a stage) a change
    # that makes no new minimum is no sign of convergence
    data, truth, init = small_problem("ctm-ref", n_samples=1000, n_components=10,
                                      n_features=100)
    kwargs = dict(update="sgd", init=init, n_stages=120, n_iter_no_change=3, random_state=0)
    careful = AND(10, **kwargs).fit(data)
    alphas = careful.history_["alpha"]
    assert careful.n_stages_ > 48 or alphas[-1] < 1e-3  # past the careful start (0.1 / 1.1**48)


# -- API ------------------------------------------------------------------------------------

def refining_stages(est):
    """A callback recording, per stage, whether the loop decodes in float64 arithmetic."""
    seen = []
    est.set_params(callback=lambda e, row: seen.append(e._loop.refining))
    return seen


def test_float32_fit_finishes_in_float64_arithmetic_past_the_float32_floor():
    # float32 arithmetic alone stalls a few ulps short (tol=eps: no refinement); the default
    # tol then goes on with float64 decode and products on the float32 data and components
    Y, truth, _ = make_dataset("dir", 5000, 30, 400, random_state=0, dtype=np.float32)
    plain = AND(30, random_state=0, tol=np.finfo(np.float32).eps, blas_threads=1)
    plain_seen = refining_stages(plain)
    plain.fit(Y)
    est = AND(30, random_state=0, blas_threads=1)
    seen = refining_stages(est)
    est.fit(Y)
    assert not any(plain_seen) and 0 < seen.index(True) < len(seen) - 3
    assert est.components_.dtype == est._D.dtype == np.float32
    assert est.transform(Y[:5]).dtype == np.float32
    plain_error = log_total_correlation_error(plain.components_, truth)
    error = log_total_correlation_error(est.components_, truth)
    assert error <= -25.0 and error <= plain_error - 2.0, (error, plain_error)


def test_a_float32_fit_that_stalls_above_the_switch_finishes_in_float64_too(monkeypatch):
    # where float32 arithmetic stalls above REFINE_AT_ULPS (here made lower than DIR's stall
    # at 1-1.3 ulps), the stall rule switches instead of stopping
    from streamnmf import _base

    monkeypatch.setattr(_base, "REFINE_AT_ULPS", 0.5)
    Y, truth, _ = make_dataset("dir", 5000, 30, 400, random_state=0, dtype=np.float32)
    est = AND(30, random_state=0, blas_threads=1)
    seen = refining_stages(est)
    est.fit(Y)
    assert True in seen
    assert log_total_correlation_error(est.components_, truth) <= -25.0


def test_a_float32_fit_resumed_while_refining_equals_the_uninterrupted_one(tmp_path):
    Y, truth, _ = make_dataset("ctm-ref", 3000, 20, 300, random_state=0, dtype=np.float32)
    kwargs = dict(random_state=0, blas_threads=1, n_iter_no_change=None)
    whole = AND(20, **kwargs)
    seen = refining_stages(whole)
    whole.fit(Y)
    first = seen.index(True)  # the stages from this one on decode in float64
    assert first + 3 < whole.n_stages_
    path = tmp_path / "fit.h5"
    AND(20, n_stages=first + 2, checkpoint=path, **kwargs).fit(Y)
    resumed = AND(20, n_stages=200, checkpoint=path, **kwargs).fit(Y, resume=True)
    assert resumed._loop.refining
    assert resumed.n_stages_ == whole.n_stages_
    np.testing.assert_array_equal(resumed.components_, whole.components_)
    np.testing.assert_array_equal(resumed.history_["change"], whole.history_["change"])


def test_a_stop_asked_at_the_switch_to_float64_is_kept_by_the_checkpoint(tmp_path):
    Y = make_dataset("ctm-ref", 3000, 20, 300, random_state=0, dtype=np.float32)[0]
    kwargs = dict(random_state=0, blas_threads=1, n_iter_no_change=None)
    probe = AND(20, **kwargs)
    seen = refining_stages(probe)
    probe.fit(Y)
    switch = seen.index(True) - 1  # the stage whose end would switch to float64
    path = tmp_path / "fit.h5"
    stopped = AND(20, checkpoint=path,
                  callback=lambda est, row: row["stage"] == switch, **kwargs).fit(Y)
    assert stopped.n_stages_ == switch + 1 and not stopped._loop.refining
    resumed = AND(20, checkpoint=path, **kwargs).fit(Y, resume=True)
    assert resumed.n_stages_ == switch + 1  # the stop was asked for: it stays stopped


def test_a_stream_after_a_fit_goes_back_to_float32_arithmetic():
    Y = make_dataset("ctm-ref", 3000, 20, 300, random_state=0, dtype=np.float32)[0]
    est = AND(20, random_state=0, blas_threads=1).fit(Y)
    assert est._loop.refining and est._loop.D.dtype == np.float64
    est.partial_fit(Y[:500])
    assert not est._loop.refining
    assert est._loop.D.dtype == est.components_.dtype == np.float32


def test_an_inverse_failing_in_partial_fit_is_the_error_the_caller_sees():
    from streamnmf._lp import InverseError

    Y = np.random.default_rng(0).random((200, 20))
    est = AND(3, random_state=0).partial_fit(Y)

    def failing(C):
        raise InverseError("the next stage's inverse failed")

    est._loop.rule.decoding_matrix = failing  # the next stage's inverse, at this call's end
    with pytest.raises(InverseError, match="next stage's inverse failed"):
        est.partial_fit(Y)


def test_float32_preserved_and_transform_shapes():
    data, truth, init = small_problem()
    est = AND(6, init=init.astype(np.float32), n_stages=5).fit(data.astype(np.float32))
    assert est.components_.dtype == np.float32
    Z = est.transform(data.astype(np.float32))
    assert Z.shape == (data.shape[0], 6) and Z.dtype == np.float32
    assert np.all(Z >= 0)
    assert est.inverse_transform(Z).shape == data.shape


def test_fit_transform_and_sparse_input_agree_with_dense():
    data, _, init = small_problem()
    dense = AND(6, init=init, n_stages=3).fit(data)
    sparse = AND(6, init=init, n_stages=3).fit(sp.csr_matrix(data))
    np.testing.assert_allclose(sparse.components_, dense.components_, rtol=1e-9, atol=1e-12)
    Z = AND(6, init=init, n_stages=3).fit_transform(data)
    np.testing.assert_allclose(Z, dense.transform(data), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("init", ["spa", "nndsvda", "random"])
def test_data_driven_inits_agree_on_dense_and_csr(init):
    data, _, _ = small_problem()
    sparse_data = sp.csr_matrix(np.where(data > 0.01, data, 0.0))
    dense = AND(6, init=init, n_stages=1, random_state=3).fit(sparse_data.toarray())
    sparse = AND(6, init=init, n_stages=1, random_state=3).fit(sparse_data)
    np.testing.assert_allclose(sparse.components_, dense.components_, rtol=1e-9, atol=1e-12)


def test_partial_fit_stage_spans_calls():
    data, _, init = small_problem(n_samples=300)
    kwargs = dict(update="sgd", thresholds=[0.05, 0.03], stage_length=300, learning_rate=0.5,
                  init=init, tol=0, n_iter_no_change=None)
    whole = AND(6, n_stages=2, **kwargs).fit(data)
    est = AND(6, **kwargs)
    for _ in range(2):
        for start in range(0, 300, 70):
            est.partial_fit(data[start:start + 70])
    assert est.n_stages_ == 2
    np.testing.assert_allclose(est.components_, whole.components_, rtol=1e-12)
    assert est.samples_seen_ == 600


def test_history_and_early_stop():
    data, _, init = small_problem()
    est = AND(6, init=init, n_stages=500).fit(data)
    assert est.n_stages_ < 500  # round-off reached, stopped early
    for key in ("stage", "seconds", "alpha", "objective", "change", "density"):
        assert est.history_[key].shape == (est.n_stages_,)
    assert np.all(np.diff(est.history_["seconds"]) >= 0)
    # the objective comes from the statistics by a difference: its floor is eps * ||y||^2
    assert est.history_["objective"][-1] < 1e-10 * est.history_["objective"][0]


def test_a_stage_that_decodes_nothing_is_not_convergence():
    data, truth, init = small_problem()
    est = AND(6, init=init, thresholds=schedules.Adaptive(alpha0=100.0), n_stages=40).fit(data)
    assert est.history_["density"][0] == 0  # nothing passes a threshold of 100
    assert est.n_stages_ > 5 and est.history_["alpha"][1] < 100
    assert log_total_correlation_error(est.components_, truth) < -10


def test_adaptive_probing_gets_past_the_threshold_bias_of_dense_weights():
    # Dirichlet(0.4) weights: most weights are small but not zero, and a threshold at the
    # decoding error cuts them; without probes the schedule stalls there
    data, truth, _ = make_dataset("dir", 300, 6, 40, weight_params={"dir_sparsity": 2.4},
                                  random_state=0)
    init = make_init(truth, in_span=0.1 * np.sqrt(6), random_state=1)
    errors = {probe: log_total_correlation_error(
        AND(6, init=init, thresholds=schedules.Adaptive(probe=probe), n_stages=300)
        .fit(data).components_, truth) for probe in (None, 1.1)}
    assert errors[None] > -8 and errors[1.1] < -12


def test_callback_can_stop():
    data, _, init = small_problem()
    rows = []

    def callback(estimator, row):
        rows.append((row["stage"], estimator.components_))
        return row["stage"] == 2

    est = AND(6, init=init, n_stages=50, callback=callback).fit(data)
    assert [stage for stage, _ in rows] == [0, 1, 2] and est.n_stages_ == 3
    assert not np.array_equal(rows[0][1], rows[1][1])  # the matrix of each stage, a copy
    np.testing.assert_array_equal(rows[-1][1], est.components_)


# -- bad input --------------------------------------------------------------------------------

def test_nan_names_the_row():
    data, _, init = small_problem()
    data[7, 3] = np.nan
    with pytest.raises(ValueError, match=r"NaN or infinity.*row 7"):
        AND(6, init=init).fit(data)
    data[7, 3] = np.inf
    with pytest.raises(ValueError, match=r"row 7"):
        AND(6, init=init).partial_fit(data)


def test_wrong_feature_count_in_partial_fit():
    data, _, init = small_problem()
    est = AND(6, init=init).partial_fit(data)
    with pytest.raises(ValueError, match="X has 39 features, but AND is expecting 40"):
        est.partial_fit(data[:, :39])


@pytest.mark.parametrize("n_components, message", [
    (0, r"'n_components' parameter of AND must be an int in the range \[1, inf\) or None"),
    (41, r"n_components=41 is larger than n_features=40"),
    (2.5, r"'n_components' parameter .* Got 2.5"),
])
def test_bad_n_components(n_components, message):
    data, _, _ = small_problem()
    with pytest.raises(ValueError, match=message):
        AND(n_components).fit(data)


def test_non_numeric_and_empty_input():
    with pytest.raises(ValueError, match="could not convert|numeric"):
        AND(2).fit(np.array([["a", "b"], ["c", "d"]]))
    with pytest.raises(ValueError, match="0 sample"):
        AND(2).fit(np.zeros((0, 5)))


@pytest.mark.parametrize("csr", [False, True])
def test_nndsvda_start_is_scikit_learns(csr):
    from sklearn.decomposition._nmf import _initialize_nmf

    from streamnmf._start import nndsvda_init

    rng = np.random.default_rng(3)
    X = rng.random((60, 40)) * (rng.random((60, 40)) < 0.3)
    X = sp.csr_matrix(X) if csr else X
    C0 = nndsvda_init(X, 7, np.random.default_rng(5))
    seed = int(np.random.default_rng(5).integers(2**31 - 1))  # the seed nndsvda_init draws
    H = _initialize_nmf(X, 7, init="nndsvda", random_state=seed)[1]
    np.testing.assert_allclose(C0, H, rtol=1e-10, atol=1e-12)
    assert C0.min() > 0
    est = AND(7, init="nndsvda", random_state=5, n_stages=3).fit(X)
    assert est.nonnegative_ and est.components_.min() >= 0


@pytest.mark.parametrize("data, message", [
    (np.random.default_rng(0).standard_normal((50, 20)),
     r"init='nndsvda' needs non-negative rows; the rows the start reads hold -\d.*'spa'"),
    (np.random.default_rng(0).random((5, 20)),
     r"n_components <= min\(n_samples, n_features\).* got 6 components and 5 x 20 rows"),
    (np.zeros((50, 20)), r"init='nndsvda': the rows the start reads are all zero"),
])
def test_nndsvda_start_refuses_what_it_cannot_start_from(data, message):
    with pytest.raises(ValueError, match=message):
        AND(6, init="nndsvda").fit(data)


def test_init_of_wrong_shape():
    data, _, init = small_problem()
    with pytest.raises(ValueError, match=r"init: expected an array of shape .*\(6, 40\).*\(6, 39\)"):
        AND(6, init=init[:, :39]).fit(data)


@pytest.mark.parametrize("params, message", [
    (dict(update="als"), r"'update' parameter of AND must be a str among .* Got 'als' instead"),
    (dict(thresholds="fast"), r"'thresholds' parameter .*'adaptive'.* Got 'fast'"),
    (dict(thresholds=[0.1, -0.1]), r"sequence of finite thresholds >= 0 .* got \[0.1, -0.1\]"),
    (dict(n_stages=0), r"'n_stages' parameter .* int in the range \[1, inf\). Got 0"),
    (dict(learning_rate=-1.0), r"'learning_rate' parameter .* Got -1.0"),
    (dict(batch_size=0), r"'batch_size' parameter .* Got 0"),
    (dict(init="nndsvd"), r"'init' parameter .* Got 'nndsvd'"),
    (dict(random_state=1.5), r"'random_state' parameter .*Generator' or None. Got 1.5"),
    (dict(checkpoint_every=0), r"'checkpoint_every' parameter .* Got 0"),
])
def test_bad_parameters(params, message):
    data, _, _ = small_problem()
    with pytest.raises(ValueError, match=message):
        AND(6, **params).fit(data)


def test_divergence_keeps_last_finite_components():
    data, _, init = small_problem()
    est = AND(6, components="signed", update="sgd", learning_rate=1e8, init=init, n_stages=5)
    with pytest.raises(DivergenceError, match="non-finite in stage 0.*Lower learning_rate"):
        est.fit(data)
    assert np.all(np.isfinite(est.components_))
    np.testing.assert_array_equal(est.components_, init)


# -- scikit-learn conventions -------------------------------------------------------------------

@parametrize_with_checks([AND(1, n_stages=5, random_state=0)])
def test_sklearn_compatible(estimator, check):
    check(estimator)


def test_every_parameter_has_a_constraint():
    # scikit-learn's own check: one constraint per parameter, an informative error for a
    # value of the wrong type or out of range of each
    check_param_validation("AND", AND(2, n_stages=2, random_state=0))


@pytest.mark.parametrize("update", ["stagewise", "sgd"])
def test_a_discarded_estimator_is_freed_without_the_cycle_collector(update):
    import gc
    import weakref

    data, _, init = small_problem()
    est = AND(6, update=update, init=init, n_stages=3).fit(data)
    est.partial_fit(data[:50])
    alive = weakref.ref(est)
    gc.disable()
    try:
        del est
        assert alive() is None  # freed by reference counting alone: no reference cycle
    finally:
        gc.enable()


def test_an_estimator_copied_mid_stream_goes_on_like_the_original():
    import copy

    data, _, init = small_problem()
    est = AND(6, init=init, stage_length=100).partial_fit(data[:150])
    twin = copy.deepcopy(est)
    for model in (est, twin):
        model.partial_fit(data[150:])
    np.testing.assert_array_equal(twin.components_, est.components_)
    assert twin.n_stages_ == est.n_stages_ == 3


@pytest.mark.parametrize("update", ["stagewise", "sgd"])
@pytest.mark.parametrize("how", ["fit", "partial_fit"])
def test_a_discarded_estimator_frees_its_arrays_at_once(update, how):
    # no reference cycle may hold the working matrices until the cycle collector runs
    import gc
    import weakref

    data, truth, _ = make_dataset("dir", 600, 5, 40, random_state=0)
    est = AND(5, update=update, n_stages=2, stage_length=300, blas_threads=1)
    if how == "fit":
        est.fit(data)
    else:
        est.partial_fit(data[:300]).partial_fit(data[300:])
    est.transform(data[:5])
    arrays = [weakref.ref(a) for a in (est._loop.C, est._loop.D, est._loop.stats.S_zy,
                                       est.components_)]
    enabled = gc.isenabled()
    gc.disable()
    try:
        del est
        assert [a() is None for a in arrays] == [True] * len(arrays)
    finally:
        if enabled:
            gc.enable()


def test_a_wide_sparse_fit_allocates_fewer_than_five_component_matrices():
    # a fit holds at most four (k x m) matrices at once (components, decoding matrix,
    # statistics, and the solve's new components or the inverse's scratch) plus the leading
    # rows the start reads; tracemalloc sees numpy's allocations, untouched zero pages
    # included, so it bounds the resident memory from above
    import tracemalloc

    rng = np.random.default_rng(0)
    n_samples, n_features, k = 3000, 20000, 20
    Y = sp.random(n_samples, n_features, density=5e-4, format="csr", random_state=rng)
    Y.data[:] = rng.uniform(0.1, 1.0, Y.nnz)
    AND(k, n_stages=2, blas_threads=1).fit(Y[:500])  # compile, first calls
    matrix = k * n_features * 8
    data_bytes = Y.data.nbytes + Y.indices.nbytes + Y.indptr.nbytes
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        est = AND(k, n_stages=2, blas_threads=1).fit(Y)
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    assert est.n_stages_ == 2
    assert peak <= 4.75 * matrix + data_bytes, (peak / matrix, data_bytes / matrix)
