"""Fit records: the typed states round-trip through HDF5, older versions migrate, newer ones
are refused."""

import dataclasses
import os
import shutil

import h5py
import numpy as np
import pytest

from streamnmf import AND, CheckpointError
from streamnmf.io.atomic import write_atomic
from streamnmf.io.records import read_verified
from streamnmf.io.state import (
    CHECKPOINT_FORMAT, MIGRATIONS, MODEL_FORMAT, VERSIONS, FitState, LoopState, ModelState,
    Record, StatisticsState, migrate,
)

DATA = os.path.join(os.path.dirname(__file__), "data")
HISTORY = ("stage", "seconds", "alpha", "n_samples", "objective")


def loop_state(rng, per_sample=False, with_drift=False, with_sum_y=False, n_components=3,
               n_features=5, n_stages=4):
    def matrix(*shape):
        return rng.standard_normal(shape)

    return LoopState(
        stage=n_stages, samples_seen=1234, seconds=5.5, alpha=0.0625,
        sgd_eta=0.3 if per_sample else None, components=matrix(n_components, n_features),
        stage_start=matrix(n_components, n_features),
        decoding_matrix=matrix(n_features, n_components),
        stats=StatisticsState(
            S_zy=matrix(n_components, n_features), S_zz=matrix(n_components, n_components),
            sum_z=matrix(n_components), sum_y=matrix(n_features) if with_sum_y else None,
            count=17, nnz=40, sum_yy=2.5, code_max=3.25, v_min=-np.inf if per_sample else -0.5),
        schedule_state=matrix(6), rule_state=np.zeros(0),
        history={k: matrix(n_stages) for k in HISTORY},
        drift_state=matrix(7) if with_drift else None, drift_pending=with_drift,
        sgd_gradient=matrix(n_components, n_features) if per_sample else None,
        sgd_touched=rng.random(n_components) < 0.5 if per_sample else None,
        sgd_batch=matrix(2) if per_sample else None,
    )


def fit_state(loop):
    n_components, n_features = loop.components.shape
    return FitState(
        estimator="AND", params={"n_components": n_components, "update": "sgd", "tol": None},
        library_version="0.1.0", n_samples=-1, n_features=n_features,
        n_components=n_components, dtype="float64", source_block_rows=128,
        source_shuffle_seed=-1, epoch=1, offset=56, stalled=2, best_change=0.01,
        early_stopped=False, nonnegative=True, recovering=False, loop=loop,
    )


def assert_same(expected, found, where="state"):
    """Field by field: arrays equal bit for bit, with their dtypes; scalars of equal value."""
    if dataclasses.is_dataclass(expected):
        assert type(found) is type(expected), where
        for f in dataclasses.fields(expected):
            assert_same(getattr(expected, f.name), getattr(found, f.name), f"{where}.{f.name}")
    elif isinstance(expected, dict):
        assert sorted(found) == sorted(expected), where
        for key in expected:
            assert_same(expected[key], found[key], f"{where}[{key!r}]")
    elif isinstance(expected, np.ndarray):
        assert isinstance(found, np.ndarray) and found.dtype == expected.dtype, where
        np.testing.assert_array_equal(found, expected, err_msg=where)
    else:
        assert found == expected or (expected != expected and found != found), where


@pytest.mark.parametrize("per_sample,with_drift,with_sum_y,refining",
                         [(False, False, False, False), (True, True, False, False),
                          (False, True, True, False), (False, False, False, True)])
def test_fit_state_round_trips_through_a_checkpoint_file(tmp_path, per_sample, with_drift,
                                                         with_sum_y, refining):
    loop = loop_state(np.random.default_rng(0), per_sample, with_drift, with_sum_y)
    if refining:  # float32 components decoded in float64
        loop.refining = True
        loop.components = loop.components.astype(np.float32)
        loop.stage_start = loop.stage_start.astype(np.float32)
    state = fit_state(loop)
    path = tmp_path / "state.h5"
    write_atomic(path, state.to_hdf5)
    record = read_verified(path, CHECKPOINT_FORMAT)  # checksum checked
    assert record.version == VERSIONS[CHECKPOINT_FORMAT]
    assert_same(state, FitState.from_record(record))
    with h5py.File(path, "r") as f:
        assert_same(state, FitState.from_hdf5(f))
        # optional parts are absent, not stored as placeholders
        assert ("loop/sgd" in f) == per_sample
        assert ("loop/drift_state" in f) == with_drift
        assert ("sgd_eta" in f["loop"].attrs) == per_sample
        assert ("refining" in f["loop"].attrs) == refining


def test_model_state_round_trips_through_a_model_file(tmp_path):
    rng = np.random.default_rng(1)
    state = ModelState(
        estimator="Purification", params={"n_components": 3, "inverse": "pinv"},
        library_version="0.1.0", components=rng.random((3, 8)),
        decoding_matrix=rng.standard_normal((8, 3)).astype(np.float32),
        history={k: rng.random(5) for k in HISTORY}, alpha=0.1, n_features_in=8,
        n_stages=5, samples_seen=5000, nonnegative=False, reconstruction_err=np.nan,
    )
    path = tmp_path / "model.h5"
    write_atomic(path, state.to_hdf5)
    assert_same(state, ModelState.from_record(read_verified(path, MODEL_FORMAT)))
    with pytest.raises(CheckpointError, match="is not a streamnmf-checkpoint file"):
        read_verified(path, CHECKPOINT_FORMAT)


def as_version_1(state):
    """The record streamnmf 0.1.0 wrote for ``state`` (format version 1): the loop's scalars
    as root attributes ``loop_<name>``, its arrays at the root under the engine's names."""
    record = state.to_record()
    loop, stats = state.loop, state.loop.stats
    attrs = {k: v for k, v in record.attrs.items()}
    attrs["format_version"] = 1
    attrs.update(
        loop_stage=loop.stage, loop_samples_seen=loop.samples_seen, loop_seconds=loop.seconds,
        loop_alpha=loop.alpha, loop_sgd_eta=-1.0 if loop.sgd_eta is None else loop.sgd_eta,
        loop_stats_count=stats.count, loop_stats_nnz=stats.nnz,
        loop_stats_sum_yy=stats.sum_yy, loop_stats_code_max=stats.code_max,
        loop_stats_v_min=stats.v_min)
    arrays = {"C": loop.components, "C_start": loop.stage_start, "D": loop.decoding_matrix,
              "stats/S_zy": stats.S_zy, "stats/S_zz": stats.S_zz, "stats/sum_z": stats.sum_z,
              "schedule_state": loop.schedule_state, "rule_state": loop.rule_state}
    if loop.drift_state is not None:
        arrays["drift_state"] = loop.drift_state
        attrs["loop_drift_pending"] = int(loop.drift_pending)
    if stats.sum_y is not None:
        arrays["stats/sum_y"] = stats.sum_y
    if loop.sgd_gradient is not None:
        arrays.update({"sgd/G": loop.sgd_gradient, "sgd/touched": loop.sgd_touched,
                       "sgd/batch": loop.sgd_batch})
    arrays.update({f"history/{k}": v for k, v in loop.history.items()})
    return Record(attrs=attrs, arrays=arrays)


@pytest.mark.parametrize("per_sample,with_drift,with_sum_y",
                         [(False, False, False), (True, True, True)])
def test_version_1_record_migrates_to_the_same_state(per_sample, with_drift, with_sum_y):
    state = fit_state(loop_state(np.random.default_rng(2), per_sample, with_drift, with_sum_y))
    old = as_version_1(state)
    assert_same(state, FitState.from_record(old))
    assert old.version == 1  # the migration works on copies


def test_checkpoint_written_by_streamnmf_0_1_resumes_like_a_current_one(tmp_path):
    # tests/data/checkpoint-v1.h5: written by streamnmf 0.1.0 (format version 1) with
    #   AND(4, update="sgd", stage_length=250, batch_size=3, n_stages=2, init=init, tol=0,
    #       n_iter_no_change=None, checkpoint=...).fit(data)
    # on the data and init stored in checkpoint-v1-data.h5
    with h5py.File(os.path.join(DATA, "checkpoint-v1-data.h5"), "r") as f:
        data, init = f["data"][()], f["init"][()]
    old = tmp_path / "old.h5"
    shutil.copy(os.path.join(DATA, "checkpoint-v1.h5"), old)
    state = FitState.from_record(read_verified(old, CHECKPOINT_FORMAT))
    assert (state.loop.stage, state.loop.samples_seen, state.nonnegative) == (2, 500, True)
    assert state.loop.sgd_gradient.shape == state.loop.components.shape == (4, 20)

    kwargs = dict(update="sgd", stage_length=250, batch_size=3, init=init, tol=0,
                  n_iter_no_change=None, blas_threads=1)
    resumed = AND(4, n_stages=4, checkpoint=old, **kwargs).fit(data, resume=True)
    new = tmp_path / "new.h5"
    AND(4, n_stages=2, checkpoint=new, **kwargs).fit(data)
    reference = AND(4, n_stages=4, checkpoint=new, **kwargs).fit(data, resume=True)
    assert resumed.n_stages_ == reference.n_stages_ == 4
    # the stored components came from another machine's BLAS: equal to round-off
    np.testing.assert_allclose(resumed.components_, reference.components_, rtol=1e-9,
                               atol=1e-12)
    assert read_verified(old, CHECKPOINT_FORMAT).version == VERSIONS[CHECKPOINT_FORMAT]


def test_newer_or_unknown_versions_are_refused(tmp_path, monkeypatch):
    state = fit_state(loop_state(np.random.default_rng(3)))
    record = state.to_record()
    record.attrs["format_version"] = VERSIONS[CHECKPOINT_FORMAT] + 1
    with pytest.raises(ValueError, match="reads streamnmf-checkpoint files up to version 3"):
        FitState.from_record(record)
    path = tmp_path / "newer.h5"
    write_atomic(path, record.write)
    with pytest.raises(CheckpointError, match="newer.h5.*up to version 3.*library version 0.1.0"):
        read_verified(path, CHECKPOINT_FORMAT)
    # a version whose migration was dropped
    monkeypatch.setitem(MIGRATIONS, CHECKPOINT_FORMAT, {})
    with pytest.raises(ValueError, match="version 1 can no longer be read; refit"):
        migrate(as_version_1(state))
    with pytest.raises(ValueError, match="unknown format 'other'"):
        migrate(Record(attrs={"format": "other", "format_version": 1}))


OLD_PURIFICATION_PARAMS = {"n_components": 3, "alpha": 0.1, "eta": 0.5, "n_iter": 40,
                           "batch_size": 2000, "inverse": "pinv"}
NEW_PURIFICATION_PARAMS = {"n_components": 3, "thresholds": 0.1, "learning_rate": 0.5,
                           "n_stages": 40, "stage_length": 2000, "inverse": "pinv"}


def test_version_1_purification_checkpoint_gets_the_shared_parameter_names():
    state = fit_state(loop_state(np.random.default_rng(4)))
    state.estimator, state.params = "Purification", OLD_PURIFICATION_PARAMS
    migrated = FitState.from_record(as_version_1(state))
    assert migrated.params == NEW_PURIFICATION_PARAMS
    # AND's parameters of the same names are not renamed
    state.estimator, state.params = "AND", {"batch_size": 3, "n_stages": 2}
    assert FitState.from_record(as_version_1(state)).params == state.params


def test_version_1_purification_model_file_loads_with_the_shared_parameter_names(tmp_path):
    from streamnmf import Purification, load

    rng = np.random.default_rng(5)
    state = ModelState(
        estimator="Purification", params=OLD_PURIFICATION_PARAMS, library_version="0.1.0",
        components=rng.random((3, 8)), decoding_matrix=rng.standard_normal((8, 3)),
        history={k: rng.random(5) for k in HISTORY}, alpha=0.1, n_features_in=8, n_stages=5,
        samples_seen=5000, nonnegative=False, reconstruction_err=np.nan,
    )
    record = state.to_record()
    record.attrs["format_version"] = 1
    path = tmp_path / "model-v1.h5"
    write_atomic(path, record.write)
    model = load(path)
    assert isinstance(model, Purification)
    assert {k: model.get_params()[k] for k in NEW_PURIFICATION_PARAMS} == NEW_PURIFICATION_PARAMS
    np.testing.assert_array_equal(model.components_, state.components)


def test_a_version_2_checkpoint_reads_as_a_loop_in_its_own_arithmetic():
    state = fit_state(loop_state(np.random.default_rng(4)))
    record = state.to_record()
    record.attrs["format_version"] = 2
    record.group_attrs["loop"].pop("refining", None)
    migrated = migrate(record)
    assert migrated.version == VERSIONS[CHECKPOINT_FORMAT] == 3
    assert FitState.from_record(migrated).loop.refining is False
