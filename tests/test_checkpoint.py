"""Checkpoints: exact resume (also after SIGKILL), damaged files, mismatched data."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import h5py
import numpy as np
import pytest

from streamnmf import AND
from streamnmf.io.atomic import write_atomic
from streamnmf.io.records import CheckpointError
from streamnmf.datasets import make_dataset, make_init
from streamnmf.io.sources import ArraySource, Source


def problem(n_samples=600, n_components=6, n_features=40, seed=0):
    data, truth, _ = make_dataset("dir", n_samples, n_components, n_features,
                                  weight_params={"dir_sparsity": 0.3}, random_state=seed)
    return data, make_init(truth, in_span=0.25, random_state=seed + 1)


MODES = {
    "stagewise": dict(update="stagewise"),
    "gd": dict(update="gd", n_inner=5),
    # stages of 250 samples end inside blocks of 128 rows; checkpoints every 100 samples
    "sgd": dict(update="sgd", stage_length=250, batch_size=3),
}


@pytest.mark.parametrize("mode", sorted(MODES))
def test_resume_equals_uninterrupted(tmp_path, mode):
    data, init = problem()
    source = ArraySource(data, block_rows=128)
    kwargs = dict(init=init, tol=0, n_iter_no_change=None, checkpoint_every=100, **MODES[mode])
    whole = AND(6, n_stages=8, **kwargs).fit(source)
    path = tmp_path / "fit.ckpt.h5"
    AND(6, n_stages=3, checkpoint=path, **kwargs).fit(source)
    resumed = AND(6, n_stages=8, checkpoint=path, **kwargs).fit(source, resume=True)
    np.testing.assert_array_equal(resumed.components_, whole.components_)
    assert resumed.n_stages_ == 8
    np.testing.assert_array_equal(resumed.history_["alpha"], whole.history_["alpha"])
    assert os.path.exists(str(path) + ".prev")


class FailingSource(Source):
    """Yields the blocks of ``data`` but raises after ``fail_after`` blocks of the fit."""

    def __init__(self, data, fail_after):
        self.inner = ArraySource(data, block_rows=128)
        self.block_rows = 128
        self.n_samples, self.n_features, self.dtype = data.shape[0], data.shape[1], data.dtype
        self.fail_after = fail_after
        self.calls = 0

    def blocks(self, start=0, epoch=0):
        for block in self.inner.blocks(start, epoch):
            self.calls += 1
            if self.calls > self.fail_after:
                raise OSError("the network share went away")
            yield block


def test_source_failing_midway_leaves_a_resumable_checkpoint(tmp_path):
    data, init = problem()
    kwargs = dict(update="sgd", stage_length=250, init=init, tol=0, n_iter_no_change=None,
                  n_stages=6, checkpoint_every=100)
    whole = AND(6, **kwargs).fit(ArraySource(data, block_rows=128))
    path = tmp_path / "fit.h5"
    with pytest.raises(OSError, match="network share"):
        AND(6, checkpoint=path, **kwargs).fit(FailingSource(data, fail_after=11))
    resumed = AND(6, checkpoint=path, **kwargs).fit(ArraySource(data, block_rows=128),
                                                    resume=True)
    np.testing.assert_array_equal(resumed.components_, whole.components_)


def test_resume_without_checkpoint_starts_afresh(tmp_path):
    data, init = problem()
    path = tmp_path / "none.h5"
    with pytest.warns(UserWarning, match="No checkpoint .* starting afresh"):
        est = AND(6, init=init, n_stages=2, checkpoint=path).fit(data, resume=True)
    assert est.n_stages_ == 2 and path.exists()
    with pytest.raises(ValueError, match="resume=True needs the checkpoint parameter"):
        AND(6, init=init).fit(data, resume=True)


def damage(path, how):
    if how == "truncated":
        size = os.path.getsize(path)
        with open(path, "rb+") as f:
            f.truncate(size // 2)
    else:
        with h5py.File(path, "r+") as f:  # a silent bit flip in the working matrix
            C = f["loop/components"][()]
            C[0, 0] += 1e-9
            f["loop/components"][...] = C


@pytest.mark.parametrize("how", ["truncated", "corrupted"])
def test_damaged_checkpoint_detected_and_previous_kept(tmp_path, how):
    data, init = problem()
    kwargs = dict(init=init, tol=0, n_iter_no_change=None)
    path = tmp_path / "fit.h5"
    AND(6, n_stages=3, checkpoint=path, **kwargs).fit(data)
    previous = open(str(path) + ".prev", "rb").read()
    damage(path, how)
    with pytest.warns(UserWarning, match="(corrupted|damaged).*previous checkpoint"):
        est = AND(6, n_stages=4, checkpoint=path, **kwargs).fit(data, resume=True)
    assert est.n_stages_ == 4
    # the damaged newest generation alone: a clear error, nothing overwritten
    os.replace(str(path) + ".prev", tmp_path / "kept.h5")
    AND(6, n_stages=3, checkpoint=tmp_path / "solo.h5", **kwargs).fit(data)
    os.remove(str(tmp_path / "solo.h5") + ".prev")
    damage(tmp_path / "solo.h5", how)
    before = open(tmp_path / "solo.h5", "rb").read()
    with pytest.raises(CheckpointError, match="(corrupted|damaged).*no previous checkpoint"):
        AND(6, n_stages=4, checkpoint=tmp_path / "solo.h5", **kwargs).fit(data, resume=True)
    assert open(tmp_path / "solo.h5", "rb").read() == before
    assert len(previous) > 0


@pytest.mark.parametrize("hard_links", [True, False])
def test_a_new_generation_never_leaves_the_path_empty(tmp_path, monkeypatch, hard_links):
    # every rename made while writing generation 2 happens with generation 1 still at the
    # path; afterwards .prev holds generation 1 (a hard link, or a copy without links)
    path = str(tmp_path / "fit.h5")

    def generation(k):
        return lambda f: f.attrs.__setitem__("generation", k)

    write_atomic(path, generation(1), keep_previous=True)
    present, replace = [], os.replace

    def watched_replace(src, dst):
        present.append(os.path.exists(path))
        replace(src, dst)

    def no_link(src, dst):
        raise OSError("no hard links on this file system")

    monkeypatch.setattr(os, "replace", watched_replace)
    if not hard_links:
        monkeypatch.setattr(os, "link", no_link)
    write_atomic(path, generation(2), keep_previous=True)
    assert present == [True, True]
    for name, k in ((path, 2), (path + ".prev", 1)):
        with h5py.File(name, "r") as f:
            assert f.attrs["generation"] == k
    assert sorted(os.listdir(tmp_path)) == ["fit.h5", "fit.h5.prev"]  # no temporary left


def test_resume_removes_what_a_killed_write_left_and_nothing_else(tmp_path):
    data, init = problem()
    kwargs = dict(init=init, tol=0, n_iter_no_change=None)
    path = tmp_path / "fit.h5"
    AND(6, n_stages=2, checkpoint=path, **kwargs).fit(data)
    strays = ["fit.h5.k3x_9q2z.tmp", "fit.h5.prev.0123456789ab.tmp"]
    others = ["fit.h5.other.abcdefgh.tmp", "fit.h5.abcdefgh", "other.h5.abcdefgh.tmp"]
    for name in strays + others:
        (tmp_path / name).write_bytes(b"partial")
    AND(6, n_stages=3, checkpoint=path, **kwargs).fit(data, resume=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["fit.h5", "fit.h5.prev"] + others)


def test_checkpoint_of_other_data_or_parameters_refused(tmp_path):
    data, init = problem()
    path = tmp_path / "fit.h5"
    AND(6, init=init, n_stages=2, checkpoint=path).fit(data)
    with pytest.raises(CheckpointError, match=r"other data or parameters.*n_samples: "
                                              r"checkpoint 600, now 500"):
        AND(6, init=init, n_stages=4, checkpoint=path).fit(data[:500], resume=True)
    with pytest.raises(CheckpointError, match=r"update: checkpoint 'stagewise', now 'gd'"):
        AND(6, init=init, update="gd", checkpoint=path).fit(data, resume=True)


def test_resume_reads_a_shuffled_source_in_the_same_order(tmp_path):
    data, init = problem()
    kwargs = dict(update="sgd", stage_length=250, init=init, tol=0, n_iter_no_change=None,
                  checkpoint_every=100)

    def shuffled(seed):
        return ArraySource(data, block_rows=128, shuffle=True, random_state=seed)

    whole = AND(6, n_stages=6, **kwargs).fit(shuffled(7))
    path = tmp_path / "fit.h5"
    AND(6, n_stages=3, checkpoint=path, **kwargs).fit(shuffled(7))
    resumed = AND(6, n_stages=6, checkpoint=path, **kwargs).fit(shuffled(7), resume=True)
    np.testing.assert_array_equal(resumed.components_, whole.components_)
    with pytest.raises(CheckpointError, match="source_shuffle_seed: checkpoint 7, now 8"):
        AND(6, n_stages=6, checkpoint=path, **kwargs).fit(shuffled(8), resume=True)


def test_checkpoint_of_other_version_refused(tmp_path):
    data, init = problem()
    path = tmp_path / "fit.h5"
    AND(6, init=init, n_stages=2, checkpoint=path).fit(data)
    os.remove(str(path) + ".prev")
    with h5py.File(path, "r+") as f:
        f.attrs["format_version"] = 99
    with pytest.raises(CheckpointError, match="(format version 99|corrupted)"):
        AND(6, init=init, n_stages=4, checkpoint=path).fit(data, resume=True)


WORKER = textwrap.dedent("""
    import os
    import signal
    import sys
    import numpy as np
    from streamnmf import AND
    from streamnmf.io import atomic
    from streamnmf.io.sources import ArraySource

    # KILL_AT="<point>:<n>": SIGKILL this process at the n-th time it reaches <point>
    point, _, count = os.environ.get("KILL_AT", ":0").partition(":")
    reached = {"stage": 0, "block": 0, "before-publish": 0, "after-publish": 0}

    def reach(name):
        if name == point:
            reached[name] += 1
            if reached[name] == int(count):
                os.kill(os.getpid(), signal.SIGKILL)

    publish = atomic.publish
    def publish_with_kill_points(tmp, path, overwrite):
        reach("before-publish")  # the new generation written, not yet renamed in
        publish(tmp, path, overwrite)
        reach("after-publish")
    atomic.publish = publish_with_kill_points

    class Blocks(ArraySource):
        def blocks(self, start=0, epoch=0):
            for block in super().blocks(start, epoch):
                reach("block")
                yield block

    data = np.load(sys.argv[1])
    init = np.load(sys.argv[2])
    est = AND(init.shape[0], update="sgd", stage_length=900, batch_size=1, init=init,
              n_stages=12, tol=0, n_iter_no_change=None, checkpoint=sys.argv[3] or None,
              checkpoint_every=50, blas_threads=1,  # bit for bit: a fixed thread count
              callback=lambda est, row: reach("stage"))
    est.fit(Blocks(data, block_rows=64), resume=bool(sys.argv[3]))
    np.save(sys.argv[4], est.components_)
""")


def worker_command(tmp_path):
    """The command that runs WORKER on a fixed problem; its uninterrupted fit's components are
    saved as ``whole.npy``."""
    data, init = problem(n_samples=3000, n_components=10, n_features=200)
    np.save(tmp_path / "data.npy", data)
    np.save(tmp_path / "init.npy", init)
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    run = [sys.executable, str(script), str(tmp_path / "data.npy"), str(tmp_path / "init.npy")]
    subprocess.run(run + ["", str(tmp_path / "whole.npy")], check=True, timeout=300)
    return run


@pytest.mark.slow
def test_sigkill_at_chosen_points_then_resume_is_exact(tmp_path):
    run = worker_command(tmp_path)
    whole = np.load(tmp_path / "whole.npy")
    # mid-pass between blocks, at a stage end before its checkpoint, with a new generation
    # written but not renamed in (its temporary file left behind), and right after a rename;
    # then again in the resumed process
    for kills in (["block:30"], ["stage:4"], ["before-publish:3"], ["after-publish:5"],
                  ["stage:2", "before-publish:2", "block:10"]):
        checkpoint = tmp_path / f"fit-{kills[0].split(':')[0]}-{len(kills)}.h5"
        for kill_at in kills:
            proc = subprocess.run(run + [str(checkpoint), str(tmp_path / "resumed.npy")],
                                  env=dict(os.environ, KILL_AT=kill_at), timeout=300)
            assert proc.returncode == -signal.SIGKILL, kill_at
        subprocess.run(run + [str(checkpoint), str(tmp_path / "resumed.npy")], check=True,
                       timeout=300, env=dict(os.environ, KILL_AT=""))
        np.testing.assert_array_equal(np.load(tmp_path / "resumed.npy"), whole, err_msg=kills)
        assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")], kills


@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume_is_exact(tmp_path):
    run = worker_command(tmp_path)
    checkpoint = tmp_path / "fit.h5"
    rng = np.random.default_rng(0)
    kills = 0
    for _ in range(4):
        proc = subprocess.Popen(run + [str(checkpoint), str(tmp_path / "resumed.npy")])
        # wait for this worker's first checkpoint, then kill it at a random moment
        deadline = time.monotonic() + 120
        start_mtime = checkpoint.stat().st_mtime if checkpoint.exists() else 0
        while time.monotonic() < deadline and proc.poll() is None and (
            not checkpoint.exists() or checkpoint.stat().st_mtime == start_mtime
        ):
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.3))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
    subprocess.run(run + [str(checkpoint), str(tmp_path / "resumed.npy")], check=True,
                   timeout=300)
    assert kills >= 1
    np.testing.assert_array_equal(np.load(tmp_path / "resumed.npy"),
                                  np.load(tmp_path / "whole.npy"))
    # every write cut short by a kill left a temporary file; the resumes removed them
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
