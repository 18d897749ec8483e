"""A fit never replaces a file it did not write; outputs are checked before any work."""

import hashlib
import os
import stat
import time

import h5py
import numpy as np
import pytest

import streamnmf
from streamnmf import AND, Purification
from streamnmf.io.atomic import write_atomic
from streamnmf.io.records import CheckpointError, check_output_path
from streamnmf.cli import main
from streamnmf.datasets import make_dataset, make_init, write_hdf5


def digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


@pytest.fixture
def corpus(tmp_path):
    """A small DIR data set on disk, its truth and a warm start."""
    path = str(tmp_path / "data.h5")
    write_hdf5(path, "dir", 600, 6, 40, weight_params={"dir_sparsity": 0.3}, random_state=0)
    with h5py.File(path, "r") as f:
        truth = f["components"][()]
    return path, make_init(truth, in_span=0.25, random_state=1)


@pytest.fixture
def others(tmp_path):
    """Files a user might have next to the data: another HDF5 file and a text file."""
    other_h5 = str(tmp_path / "results.h5")
    with h5py.File(other_h5, "w") as f:
        f["table"] = np.arange(12.0)
    text = str(tmp_path / "notes.txt")
    with open(text, "w") as f:
        f.write("my notes\n")
    return {"hdf5": other_h5, "text": text}


def fit_kwargs(init):
    return dict(init=init, n_stages=3, tol=0, n_iter_no_change=None)


# -- the Python API -------------------------------------------------------------------------------

@pytest.mark.parametrize("target", ["input", "input-prev", "hdf5", "text"])
@pytest.mark.parametrize("backend", ["in process", "dask"])
def test_a_checkpoint_aimed_at_a_users_file_is_refused_before_any_work(
        corpus, others, target, backend, monkeypatch):
    path, init = corpus
    if target == "input":
        checkpoint = path
    elif target == "input-prev":  # the checkpoint's previous generation would land on the data
        os.replace(path, path + ".prev")
        checkpoint, path = path, path + ".prev"
    else:
        checkpoint = others[target]
    before = {p: digest(p) for p in [path, *others.values()]}
    if backend == "dask":
        pytest.importorskip("dask")
        import dask.array as da

        X = da.from_array(h5py.File(path, "r")["data"], chunks=(200, 40))
        if target.startswith("input"):
            # a dask array does not name its file: the check sees an HDF5 file that is not a
            # checkpoint, and refuses it all the same
            expected = "not a streamnmf checkpoint|input data"
        else:
            expected = "never replaces a file it did not write"
    else:
        X = path
        expected = ("input data file" if target.startswith("input")
                    else "never replaces a file it did not write")

    def no_work(*args, **kwargs):
        raise AssertionError("the fit started before the checkpoint path was checked")

    monkeypatch.setattr(AND, "_start", no_work)
    for overwrite in (False, True):
        with pytest.raises((ValueError, FileExistsError), match=expected):
            AND(6, checkpoint=checkpoint, **fit_kwargs(init)).fit(X, overwrite=overwrite)
    assert {p: digest(p) for p in before} == before


def test_resume_does_not_take_a_foreign_file_either(corpus, others):
    path, init = corpus
    before = digest(others["hdf5"])
    with pytest.raises(FileExistsError, match="an HDF5 file that is not a streamnmf checkpoint"):
        AND(6, checkpoint=others["hdf5"], **fit_kwargs(init)).fit(path, resume=True)
    assert digest(others["hdf5"]) == before


def test_an_existing_checkpoint_of_this_fit_needs_resume_or_overwrite(corpus, tmp_path):
    path, init = corpus
    checkpoint = str(tmp_path / "fit.ckpt.h5")
    first = AND(6, checkpoint=checkpoint, **fit_kwargs(init)).fit(path)
    before = digest(checkpoint)
    with pytest.raises(FileExistsError, match=r"checkpoint of this fit, at stage 3\)\. Pass "
                                              r"resume=True to continue it, or overwrite=True"):
        AND(6, checkpoint=checkpoint, **fit_kwargs(init)).fit(path)
    assert digest(checkpoint) == before
    # resume continues it; overwrite starts afresh and gives the same answer as the first fit
    resumed = AND(6, checkpoint=checkpoint, **dict(fit_kwargs(init), n_stages=4)).fit(
        path, resume=True)
    assert resumed.n_stages_ == 4
    again = AND(6, checkpoint=checkpoint, **fit_kwargs(init)).fit(path, overwrite=True)
    np.testing.assert_array_equal(again.components_, first.components_)


def test_another_fits_checkpoint_is_not_replaced_even_with_overwrite(corpus, tmp_path):
    path, init = corpus
    checkpoint = str(tmp_path / "fit.ckpt.h5")
    AND(6, checkpoint=checkpoint, **fit_kwargs(init)).fit(path)
    before = digest(checkpoint)
    other = AND(6, update="gd", checkpoint=checkpoint, **fit_kwargs(init))
    with pytest.raises(FileExistsError, match="belongs to another fit.*update: checkpoint "
                                              "'stagewise', now 'gd'"):
        other.fit(path, overwrite=True)
    with pytest.raises(CheckpointError, match="written for other data or parameters"):
        other.fit(path, resume=True)
    assert digest(checkpoint) == before


def test_partial_fit_checks_the_checkpoint_on_its_first_call(corpus, others):
    path, init = corpus
    with h5py.File(path, "r") as f:
        block = f["data"][:200]
    before = digest(others["text"])
    with pytest.raises(FileExistsError, match="a file that is not HDF5"):
        AND(6, init=init, checkpoint=others["text"]).partial_fit(block)
    assert digest(others["text"]) == before


def test_a_checkpoint_folder_that_cannot_be_written_is_refused_before_the_fit(corpus, tmp_path):
    path, init = corpus
    missing = str(tmp_path / "no such folder" / "fit.ckpt.h5")
    with pytest.raises(FileNotFoundError, match="folder .*no such folder.* does not exist"):
        AND(6, checkpoint=missing, **fit_kwargs(init)).fit(path)
    blocked = tmp_path / "a file"
    blocked.write_text("not a folder")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        AND(6, checkpoint=str(blocked / "fit.ckpt.h5"), **fit_kwargs(init)).fit(path)


def test_save_checks_its_target_and_names_the_users_path(corpus, others, tmp_path, monkeypatch):
    path, init = corpus
    model = AND(6, **fit_kwargs(init)).fit(path)
    before = digest(others["hdf5"])
    with pytest.raises(FileExistsError, match=r"results\.h5' exists \(an HDF5 file .*\); add "
                                              r"overwrite=True"):
        model.save(others["hdf5"])
    assert digest(others["hdf5"]) == before
    with pytest.raises(FileNotFoundError, match="does not exist"):
        model.save(tmp_path / "missing" / "model.h5")
    with pytest.raises(IsADirectoryError, match="is a folder"):
        model.save(tmp_path)

    # a failure while writing names the user's file, not the temporary one
    def fail(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    target = str(tmp_path / "model.h5")
    monkeypatch.setattr("streamnmf.io.atomic.h5py.File", fail)
    with pytest.raises(PermissionError, match=r"Cannot write '.*model\.h5': Permission denied"):
        write_atomic(target, lambda f: None)
    assert not os.path.exists(target)
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_an_unwritable_folder_is_reported_by_a_real_probe(tmp_path, monkeypatch):
    # the probe creates a file (permission bits, ACLs and read-only mounts all answer it)
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("streamnmf.io.atomic.tempfile.mkstemp", refuse)
    with pytest.raises(PermissionError, match="cannot create files in .*Permission denied"):
        check_output_path(tmp_path / "model.h5")


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_files_are_created_with_the_users_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        path = str(tmp_path / "model.h5")
        write_atomic(path, lambda f: None)
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o666 & ~umask
    os.chmod(path, 0o640)  # a file replaced keeps its mode
    write_atomic(path, lambda f: None)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640


# -- generators -----------------------------------------------------------------------------------

def blocks_of(data, rows=200):
    return (data[i:i + rows] for i in range(0, data.shape[0], rows))


def test_a_one_shot_generator_is_refused_with_what_works(corpus):
    path, init = corpus
    with h5py.File(path, "r") as f:
        data = f["data"][()]
    with pytest.raises(ValueError, match="one-shot generator.*partial_fit.*"
                                         r"IterableSource\(make_blocks, n_samples=N\)"):
        AND(6, **fit_kwargs(init)).fit(blocks_of(data))
    # what the message says works: a factory of generators with the rows of a pass ...
    factory = streamnmf.io.sources.IterableSource(lambda: blocks_of(data), n_samples=len(data))
    from_factory = AND(6, **fit_kwargs(init)).fit(factory)
    np.testing.assert_allclose(from_factory.components_,
                               AND(6, **fit_kwargs(init)).fit(data).components_, rtol=1e-10)
    # ... and partial_fit over the generator's blocks
    stream = AND(6, init=init)
    for block in blocks_of(data):
        stream.partial_fit(block)
    assert stream.n_stages_ == 3


def test_a_factory_without_n_features_takes_the_width_of_its_first_block(corpus):
    path, init = corpus
    with h5py.File(path, "r") as f:
        data = f["data"][()]
    source = streamnmf.io.sources.IterableSource(lambda: blocks_of(data), n_samples=len(data))
    est = AND(6, n_stages=2).fit(source)  # a data-driven start reads the leading rows
    assert est.components_.shape == (6, 40)


def test_a_reiterable_of_unknown_length_is_refused_with_the_fix(corpus):
    path, init = corpus
    with h5py.File(path, "r") as f:
        data = f["data"][()]
    source = streamnmf.io.sources.IterableSource(lambda: blocks_of(data))
    with pytest.raises(ValueError, match=r"n_samples=None\. Give the rows of one pass"):
        AND(6, **fit_kwargs(init)).fit(source)


# -- silent nonsense --------------------------------------------------------------------------------

@pytest.mark.parametrize("estimator", [AND, Purification])
def test_a_zero_row_in_init_is_an_error(estimator):
    data, truth, _ = make_dataset("dir", 300, 4, 20, random_state=0)
    init = truth.copy()
    init[2] = 0
    with pytest.raises(ValueError, match=r"init: row 2 is all zeros \(1 of 4 rows\)"):
        estimator(4, init=init).fit(data)
    with pytest.raises(ValueError, match=r"row 0 is all zeros \(4 of 4 rows\)"):
        estimator(4, init=np.zeros_like(truth)).fit(data)


@pytest.mark.parametrize("thresholds, match", [
    (-0.1, r"'thresholds' parameter of AND must be .*a float in the range \[0.0, inf\).* Got -0.1"),
    ([0.1, -0.01], "threshold.*>= 0"),
])
def test_negative_thresholds_are_refused(thresholds, match):
    data, truth, _ = make_dataset("dir", 300, 4, 20, random_state=0)
    with pytest.raises(ValueError, match=match):
        AND(4, init=truth, thresholds=thresholds).fit(data)


def test_a_custom_schedule_going_negative_is_stopped():
    from streamnmf.schedules import ThresholdSchedule

    class Falling(ThresholdSchedule):
        def alpha(self, stage):
            return 0.1 - 0.1 * stage

        def __repr__(self):
            return "Falling()"

    data, truth, _ = make_dataset("dir", 300, 4, 20, random_state=0)
    with pytest.raises(ValueError, match=r"Falling\(\) gave the threshold -0\.1 for stage 2"):
        AND(4, init=truth, thresholds=Falling(), tol=0, n_iter_no_change=None).fit(data)


def model_file(tmp_path):
    data, truth, _ = make_dataset("dir", 300, 4, 20, random_state=0)
    path = str(tmp_path / "model.h5")
    AND(4, init=truth, n_stages=2).fit(data).save(path)
    return path


def rewrite_attrs(path, **attrs):
    """Change root attributes and recompute the checksum (a file from another version)."""
    from streamnmf.io.atomic import checksum as _checksum

    with h5py.File(path, "r+") as f:
        f.attrs.update(attrs)
        f.attrs["checksum"] = _checksum(f)


def test_a_model_of_an_unknown_estimator_is_a_clear_error(tmp_path):
    path = model_file(tmp_path)
    rewrite_attrs(path, estimator="FancyNMF", library_version="9.0")
    with pytest.raises(CheckpointError, match="estimator 'FancyNMF', which this streamnmf .* "
                                              r"does not know \(it knows AND, Purification\).*9\.0"):
        streamnmf.load(path)


def test_unknown_parameters_in_a_model_file_are_reported(tmp_path):
    import json

    path = model_file(tmp_path)
    with h5py.File(path, "r") as f:
        params = json.loads(f.attrs["params_json"])
    rewrite_attrs(path, params_json=json.dumps(dict(params, momentum=0.9)))
    with pytest.warns(UserWarning, match="parameters this streamnmf .* does not have: momentum"):
        model = streamnmf.load(path)
    assert model.n_stages == params["n_stages"]


# -- the command line ------------------------------------------------------------------------------

def run(argv, capsys):
    status = main(argv)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.mark.parametrize("target", ["input", "hdf5", "text"])
def test_cli_refuses_a_checkpoint_aimed_at_a_users_file(corpus, others, target, capsys):
    path, _ = corpus
    checkpoint = path if target == "input" else others[target]
    before = {p: digest(p) for p in [path, *others.values()]}
    for extra in ([], ["--overwrite"], ["--resume"]):
        status, _, err = run(["fit", path, "--rank", "6", "--checkpoint", checkpoint,
                              *extra], capsys)
        assert status == 2
        assert err.startswith("streamnmf fit: error: ") and err.count("\n") == 1
        assert "Traceback" not in err
    assert {p: digest(p) for p in before} == before


def test_cli_existing_checkpoint_says_which_flag(corpus, tmp_path, capsys):
    path, _ = corpus
    checkpoint = str(tmp_path / "fit.ckpt.h5")
    argv = ["fit", path, "--rank", "6", "--n-stages", "2", "--checkpoint", checkpoint]
    assert run(argv, capsys)[0] == 0
    status, _, err = run(argv, capsys)
    assert status == 2
    assert "Pass --resume to continue it, or --overwrite to start afresh" in err
    assert run(argv + ["--overwrite"], capsys)[0] == 0


def test_cli_refuses_an_existing_out_in_a_fraction_of_a_fit(others, tmp_path, capsys):
    path = str(tmp_path / "larger.h5")
    write_hdf5(path, "dir", 20000, 20, 400, random_state=0)
    model = str(tmp_path / "model.h5")
    argv = ["fit", path, "--rank", "20", "--n-stages", "10"]
    t0 = time.perf_counter()
    assert run(argv + ["--out", model], capsys)[0] == 0
    fit_seconds = time.perf_counter() - t0
    for out in (model, others["hdf5"], others["text"]):
        before = digest(out)
        t0 = time.perf_counter()
        status, _, err = run(argv + ["--out", out], capsys)
        refused_seconds = time.perf_counter() - t0
        assert status == 2 and "exists" in err and "add --overwrite to replace it" in err
        assert digest(out) == before
        assert refused_seconds < 0.25 * fit_seconds
    # the input data and the checkpoint are never a model's target, even with --overwrite
    before = digest(path)
    status, _, err = run(argv + ["--out", path, "--overwrite"], capsys)
    assert status == 2 and "is the input data" in err and digest(path) == before
    status, _, err = run(argv + ["--out", str(tmp_path / "nowhere" / "m.h5")], capsys)
    assert status == 2 and "does not exist" in err


def test_cli_warns_when_nothing_will_be_saved(corpus, capsys):
    path, _ = corpus
    status, _, err = run(["fit", path, "--rank", "6", "--n-stages", "2"], capsys)
    assert status == 0
    assert "streamnmf fit: warning: neither --out nor --checkpoint is given" in err


@pytest.mark.parametrize("extra, expected", [
    (["--update", "sgd"], "--update applies to --algorithm and only"),
    (["--components", "signed"], "--components applies to --algorithm and only"),
    (["--thresholds", "geometric"], "--thresholds geometric applies to --algorithm and only"),
    (["--resume"], "--resume needs --checkpoint"),
    (["--scheduler", "tcp://nowhere:1", "--workers", "2"], "exclude each other"),
])
def test_cli_refuses_options_that_do_not_apply(corpus, capsys, extra, expected):
    path, _ = corpus
    status, _, err = run(["fit", path, "--rank", "6", "--algorithm", "purification",
                          "--n-stages", "2", *extra], capsys)
    assert status == 2 and expected in err


def test_cli_library_errors_are_one_line(corpus, tmp_path, capsys):
    path, _ = corpus
    damaged = str(tmp_path / "model.h5")
    with open(damaged, "w") as f:
        f.write("not a model")
    status, _, err = run(["evaluate", damaged, path], capsys)
    assert status == 2 and err.count("\n") == 1 and "cannot be read as HDF5" in err


def test_cli_interrupt_says_how_to_resume(corpus, tmp_path, capsys, monkeypatch):
    import streamnmf.cli

    path, _ = corpus
    checkpoint = str(tmp_path / "fit.ckpt.h5")
    make = streamnmf.cli._make_estimator

    def interrupted_after_stage_3(args, init, callback):
        def press_ctrl_c(est, row):
            callback(est, row)
            if row["stage"] == 2:
                raise KeyboardInterrupt

        return make(args, init, press_ctrl_c)

    monkeypatch.setattr(streamnmf.cli, "_make_estimator", interrupted_after_stage_3)
    status, _, err = run(["fit", path, "--rank", "6", "--checkpoint", checkpoint], capsys)
    assert status == 130
    assert "interrupted at stage 3" in err and "with --resume to continue" in err
    assert "Traceback" not in err
    status, _, err = run(["fit", path, "--rank", "6"], capsys)
    assert status == 130 and "nothing was saved" in err
    monkeypatch.setattr(streamnmf.cli, "_make_estimator", make)
    # the command it suggests continues the fit from the stage the checkpoint holds
    status, out, _ = run(["fit", path, "--rank", "6", "--checkpoint", checkpoint, "--resume",
                          "--n-stages", "5", "--json"], capsys)
    assert status == 0 and '"n_stages": 5' in out


def test_cli_help_shows_every_option_with_its_default(capsys):
    with pytest.raises(SystemExit):
        main(["fit", "--help"])
    text = capsys.readouterr().out
    for option in ("--rank", "--update", "--components", "--thresholds", "--n-stages", "--stage-length",
                   "--init", "--checkpoint", "--checkpoint-every", "--resume", "--shuffle",
                   "--out", "--overwrite", "--seed", "--scheduler", "--workers", "--json"):
        assert option in text
    assert "(default: 200)" in text and "(default: spa)" in text
    assert "named 'data'" in text


def test_cli_demo_workdir_keeps_a_users_files(tmp_path, capsys):
    mine = tmp_path / "dir.h5"
    mine.write_text("my own file")
    status, _, err = run(["demo", "--quick", "--workdir", str(tmp_path)], capsys)
    assert status == 2 and "add --overwrite" in err
    assert mine.read_text() == "my own file"


def test_cli_generate_refuses_a_file_larger_than_the_free_disk(tmp_path, capsys):
    status, _, err = run(["generate", "dir", str(tmp_path / "huge.h5"), "--n-samples",
                          str(10**12)], capsys)
    assert status == 2 and "GB free" in err
    assert not os.path.exists(tmp_path / "huge.h5")


def test_generated_data_files_get_the_users_umask_too(tmp_path):
    old = os.umask(0o027)
    try:
        path = str(tmp_path / "data.h5")
        write_hdf5(path, "dir", 50, 3, 10, random_state=0)
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640


def test_cli_resumed_progress_bar_starts_at_the_checkpoints_stage(corpus, tmp_path, capsys):
    import argparse

    from streamnmf.cli import _progress, _stages_in_checkpoint

    path, _ = corpus
    checkpoint = str(tmp_path / "fit.ckpt.h5")
    assert run(["fit", path, "--rank", "6", "--n-stages", "3", "--checkpoint", checkpoint],
               capsys)[0] == 0
    args = argparse.Namespace(checkpoint=checkpoint)
    assert _stages_in_checkpoint(args) == 3
    bar = _progress(200, True, initial=_stages_in_checkpoint(args))
    if bar is not None:  # tqdm draws on a terminal only, but the count is kept
        assert bar.n == 3
        bar.close()
    assert _stages_in_checkpoint(argparse.Namespace(checkpoint=str(tmp_path / "none.h5"))) == 0
