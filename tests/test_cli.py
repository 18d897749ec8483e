"""The command line and the model files."""

import json

import h5py
import numpy as np
import pytest

import streamnmf
from streamnmf import AND
from streamnmf.io.records import CheckpointError
from streamnmf.cli import main
from streamnmf.datasets import make_dataset, make_init


def run_json(capsys, argv):
    assert main(argv + ["--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_generate_fit_evaluate(tmp_path, capsys):
    corpus = str(tmp_path / "corpus.h5")
    out = run_json(capsys, ["generate", "ctm-ref", corpus, "--n-samples", "1500",
                            "--n-components", "8", "--n-features", "80"])
    assert out["n_samples"] == 1500
    model = str(tmp_path / "model.h5")
    checkpoint = str(tmp_path / "fit.ckpt.h5")
    fit = run_json(capsys, ["fit", corpus, "--rank", "8", "--init", "warm:0.28",
                            "--checkpoint", checkpoint, "--out", model])
    assert fit["n_stages"] >= 5
    out = run_json(capsys, ["evaluate", model, corpus])
    assert out["ln_error"] < -40 and out["ln_matched_error"] < -40
    # resuming a fit that stopped early continues nothing and gives the same model
    again = run_json(capsys, ["fit", corpus, "--rank", "8", "--init", "warm:0.28",
                              "--checkpoint", checkpoint, "--resume", "--out", model,
                              "--overwrite"])
    assert again["n_stages"] == fit["n_stages"]
    assert run_json(capsys, ["evaluate", model, corpus]) == out


def test_fit_purification_from_the_command_line(tmp_path, capsys):
    corpus = str(tmp_path / "corpus.h5")
    run_json(capsys, ["generate", "binary", corpus, "--n-samples", "3000",
                      "--n-components", "6", "--n-features", "40"])
    model = str(tmp_path / "model.h5")
    fit = run_json(capsys, ["fit", corpus, "--rank", "6", "--algorithm", "purification",
                            "--init", "warm:0.1", "--n-stages", "5", "--out", model])
    assert fit["n_stages"] == 5
    loaded = streamnmf.load(model)
    assert isinstance(loaded, streamnmf.Purification) and loaded.n_stages == 5
    assert np.isfinite(run_json(capsys, ["evaluate", model, corpus])["ln_error"])


def test_demo_quick(capsys):
    out = run_json(capsys, ["demo", "--quick"])
    assert out["ln_error"] < -50
    assert out["ln_error_start"] > -1
    assert len(out["log"]) == out["n_stages"]


def test_errors_are_reported_and_nothing_overwritten(tmp_path, capsys):
    assert main(["fit", str(tmp_path / "missing.h5"), "--rank", "3"]) == 2
    assert "not found" in capsys.readouterr().err
    corpus = tmp_path / "corpus.h5"
    corpus.write_bytes(b"precious")
    assert main(["generate", "dir", str(corpus), "--n-samples", "10", "--n-components", "2",
                 "--n-features", "5"]) == 2
    assert "overwrite" in capsys.readouterr().err
    assert corpus.read_bytes() == b"precious"


def fitted(**params):
    data, truth, _ = make_dataset("ctm-ref", 500, 5, 40, random_state=0)
    return AND(5, init=make_init(truth, in_span=0.2, random_state=1), **params).fit(data), data


def test_model_file_round_trip(tmp_path):
    est, data = fitted(update="gd", n_inner=7, thresholds=[0.05, 0.01])
    path = tmp_path / "model.h5"
    est.save(path)
    loaded = streamnmf.load(path)
    assert isinstance(loaded, AND)
    assert loaded.update == "gd" and loaded.n_inner == 7
    assert loaded.thresholds == [0.05, 0.01]
    np.testing.assert_array_equal(loaded.components_, est.components_)
    np.testing.assert_array_equal(loaded.transform(data), est.transform(data))
    np.testing.assert_array_equal(loaded.history_["alpha"], est.history_["alpha"])
    assert AND.load(path).n_features_in_ == 40


def test_model_file_errors(tmp_path):
    est, _ = fitted()
    path = tmp_path / "model.h5"
    est.save(path)
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match="overwrite=True"):
        est.save(path)
    assert path.read_bytes() == before
    with h5py.File(path, "r+") as f:
        f["components"][0, 0] += 1.0
    with pytest.raises(CheckpointError, match="corrupted"):
        streamnmf.load(path)
    with pytest.raises(FileNotFoundError, match="No such file"):
        streamnmf.load(tmp_path / "none.h5")
    est.save(tmp_path / "ok.h5")
    with pytest.raises(CheckpointError, match="not a streamnmf-model file"):
        streamnmf.load(_as_checkpoint(tmp_path))


def _as_checkpoint(tmp_path):
    fitted(n_stages=1, checkpoint=tmp_path / "c.h5")
    return tmp_path / "c.h5"
