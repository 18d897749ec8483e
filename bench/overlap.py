"""Overlap of reading and computing in a stagewise pass over an HDF5 file.

Setting: the DIR data set (``streamnmf generate dir``), 2e5 samples x 1000 features, float64,
dense, uncompressed, chunked by rows (1.6 GB; ``--quick``: 2e4 samples, 0.16 GB), read once
before timing so that it sits in the page cache. Three stages per fit (``--n-stages``). Rank 100, ``AND(update="stagewise")`` from
two starts: ``warm`` (the paper's ``A*(I + U)``: sparse codes, the Numba statistics kernel) and
``random`` (``init="random"``: codes about 50 % dense, the BLAS products).

In one worker process (fresh for every repeat and thread setting, the two settings
alternating) and interleaved:

* ``fit, prefetch on``: ``AND(n_stages=S).fit(HDF5Source(path, prefetch=True))``; the time of a
  stage is the WALL time between the end-of-stage callbacks (a full pass: reading, waiting,
  computing, the end-of-stage solve); ``history_["seconds"]`` is recorded too. The file is
  written contiguous, so the source hands out blocks mapped from the page cache.
* ``read``: the bare read of the same blocks (``HDF5Source.block_rows`` rows each) with
  ``Dataset.read_direct`` into one reused buffer.
* ``compute``: ``streamnmf._engine.block_stats(Y, D, alpha, HARD)`` (decode + statistics) on
  the same blocks held in memory, with the ``D`` and ``alpha`` of every stage >= 1 of the fit
  (captured in its callback).
* ``fit, prefetch off``; ``fit, read_direct``: prefetch on with ``memory_map=False`` (every block
  copied through HDF5, as before the mapped reads); then ``read`` again.

Reported per start and thread setting: medians over stages >= 1 and repeats, and the ratio
``pass / max(read, compute)`` computed within each worker (the same load period) for every
stage >= 1, then the median. Acceptance: the ratio with prefetch on is at most 1.25 (the
reference ``read`` stays the bare ``read_direct``, whichever way the fit reads).

Compile time: a small fit of in-memory data of the same dtype runs first in every worker and
is reported separately (``warmup_s``; the kernels are cached on disk, so it is mostly the cache
load); stage 0 of every fit is left out of the medians.

Outputs ``overlap.json`` / ``.png`` in ``bench/results`` (``bench/results/tmp`` for
``--quick`` and non-default options; ``--out`` overrides). The file is deleted at the end
unless ``--keep``.

Usage: ``python bench/overlap.py [--quick] [--keep] [--workdir DIR] [--repeats N]``
"""

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import _common  # noqa: E402
from _common import loadavg  # noqa: E402
from out_of_core import (  # noqa: E402
    THREAD_MODES, blas_threads, mode_order, run_measured, run_worker, thread_env,
)

SIZES = {"full": dict(n_samples=200_000, n_stages=3, repeats=2),
         "quick": dict(n_samples=20_000, n_stages=3, repeats=2)}
N_FEATURES = 1000
RANK = 100
INITS = ("warm", "random")
TARGET = 1.25


# -- worker (runs in a fresh process under one thread setting) ---------------------------------
def worker(spec):
    import h5py

    from streamnmf import AND, HDF5Source
    from streamnmf import _kernels as K
    from streamnmf._engine import block_stats
    from streamnmf.datasets import load_hdf5_truth, make_init

    path, n_stages = spec["path"], spec["n_stages"]
    out = dict(blas=None, loadavg_start=loadavg(), inits={})

    # compile / cache load, kept out of every timing below
    t0 = time.perf_counter()
    rng = np.random.default_rng(0)
    small = rng.random((3000, 200))
    AND(20, init="random", n_stages=2, random_state=0).fit(small)
    small_truth = rng.random((20, 200))
    AND(20, init=make_init(small_truth, random_state=1), n_stages=2).fit(
        rng.dirichlet(np.full(20, 0.05), 3000) @ small_truth)
    out["warmup_s"] = time.perf_counter() - t0
    out["blas"] = blas_threads()

    probe = HDF5Source(path)
    n, m, block_rows = probe.n_samples, probe.n_features, probe.block_rows
    probe.close()
    ranges = [(a, min(n, a + block_rows)) for a in range(0, n, block_rows)]
    out.update(block_rows=block_rows, n_blocks=len(ranges))

    f = h5py.File(path, "r")
    dset = f["data"]
    X = np.empty((n, m), dtype=dset.dtype)
    t0 = time.perf_counter()
    for a, b in ranges:  # also warms the page cache
        dset.read_direct(X, np.s_[a:b], np.s_[a:b])
    out["load_s"] = time.perf_counter() - t0
    truth = load_hdf5_truth(path)
    buf = np.empty((block_rows, m), dtype=dset.dtype)

    def read_pass():
        t = time.perf_counter()
        for a, b in ranges:
            dset.read_direct(buf, np.s_[a:b], np.s_[0:b - a])
        return time.perf_counter() - t

    def compute_pass(D, alpha):
        t = time.perf_counter()
        for a, b in ranges:
            block_stats(X[a:b], D, alpha, K.HARD)
        return time.perf_counter() - t

    def fit(init, prefetch, capture, memory_map=True):
        marks, captured = [], []

        def callback(est, row):
            marks.append(time.perf_counter())
            if capture:  # the loop has begun the next stage: its D and alpha are set
                captured.append((est._loop.D.copy(), float(est._loop.alpha)))
            return False

        C0 = make_init(truth, random_state=1) if init == "warm" else "random"
        source = HDF5Source(path, prefetch=prefetch, memory_map=memory_map)
        est = AND(RANK, init=C0, n_stages=n_stages, n_iter_no_change=None, tol=None,
                  random_state=0, callback=callback)
        t0 = time.perf_counter()
        est.fit(source)
        total = time.perf_counter() - t0
        source.close()
        wall = np.diff(np.r_[t0, marks]).tolist()
        hist = np.diff(np.r_[0.0, est.history_["seconds"]]).tolist()
        return dict(stage_wall_s=wall, stage_history_s=hist, total_s=total,
                    density=est.history_["density"].tolist(),
                    alpha=est.history_["alpha"].tolist(), loadavg=loadavg()), captured[:-1]

    for init in spec["inits"]:
        rec = {}
        rec["fit_on"], stages = fit(init, True, capture=True)
        rec["read"] = [read_pass()]
        # stage j >= 1 decodes with the D and alpha the callback of stage j - 1 captured
        rec["compute"] = [compute_pass(D, alpha) for D, alpha in stages]
        rec["compute_alpha"] = [alpha for _, alpha in stages]
        rec["fit_off"], _ = fit(init, False, capture=False)
        rec["fit_copy"], _ = fit(init, True, capture=False, memory_map=False)
        rec["read"].append(read_pass())
        rec["loadavg"] = loadavg()
        out["inits"][init] = rec
    f.close()
    out["loadavg_end"] = loadavg()
    print(json.dumps(out))
    return 0


# -- parent ------------------------------------------------------------------------------------
def _paired_ratios(rec, key):
    """pass / max(read, compute) for every stage >= 1 of one worker's fit."""
    read = float(np.median(rec["read"]))
    ratios = []
    for j, t in enumerate(rec[key]["stage_wall_s"][1:]):
        ratios.append(t / max(read, rec["compute"][j]))
    return ratios


def summarise(workers, inits):
    summary, rows = {}, []
    for init in inits:
        for mode in THREAD_MODES:
            recs = [w["inits"][init] for w in workers if w["mode"] == mode]
            if not recs:
                continue
            on = [t for r in recs for t in r["fit_on"]["stage_wall_s"][1:]]
            off = [t for r in recs for t in r["fit_off"]["stage_wall_s"][1:]]
            copy = [t for r in recs for t in r["fit_copy"]["stage_wall_s"][1:]]
            hist_on = [t for r in recs for t in r["fit_on"]["stage_history_s"][1:]]
            hist_off = [t for r in recs for t in r["fit_off"]["stage_history_s"][1:]]
            read = [t for r in recs for t in r["read"]]
            comp = [t for r in recs for t in r["compute"]]
            s = dict(pass_on=_common.summary(on), pass_off=_common.summary(off),
                     pass_copy=_common.summary(copy),
                     history_on=_common.summary(hist_on), history_off=_common.summary(hist_off),
                     read=_common.summary(read), compute=_common.summary(comp))
            ref = max(s["read"]["median"], s["compute"]["median"])
            s["ratio_on_paired"] = _common.summary([x for r in recs for x in _paired_ratios(r, "fit_on")])
            s["ratio_off_paired"] = _common.summary([x for r in recs for x in _paired_ratios(r, "fit_off")])
            s["ratio_copy_paired"] = _common.summary(
                [x for r in recs for x in _paired_ratios(r, "fit_copy")])
            s["ratio_on_of_medians"] = s["pass_on"]["median"] / ref
            s["ratio_off_of_medians"] = s["pass_off"]["median"] / ref
            s["serial_ratio"] = (s["read"]["median"] + s["compute"]["median"]) / ref
            for key in ("on", "off"):  # time a stage spends outside the library's own clock
                s[f"wall_minus_history_{key}"] = _common.summary([
                    w - h for r in recs for w, h in zip(r[f"fit_{key}"]["stage_wall_s"][1:],
                                                        r[f"fit_{key}"]["stage_history_s"][1:])])
            s["density"] = recs[0]["fit_on"]["density"]
            s["loadavg"] = [r["loadavg"][0] for r in recs]
            s["meets_target"] = bool(s["ratio_on_paired"]["median"] <= TARGET)
            summary[f"{init}/{mode}"] = s
            rows.append(dict(
                init=init, mode=mode, read=s["read"]["median"], compute=s["compute"]["median"],
                serial=s["read"]["median"] + s["compute"]["median"],
                on=s["pass_on"]["median"], off=s["pass_off"]["median"],
                hon=s["history_on"]["median"], ron=s["ratio_on_paired"]["median"],
                gap_off=s["wall_minus_history_off"]["median"],
                roff=s["ratio_off_paired"]["median"], copy=s["pass_copy"]["median"],
                rcopy=s["ratio_copy_paired"]["median"],
                dens=float(np.median(s["density"][1:])), load=float(np.median(s["loadavg"])),
                ok="yes" if s["meets_target"] else "NO"))
    return summary, rows


def plot(result, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k in result["summary"]]
    fig, ax = plt.subplots(figsize=(11, 4.8))
    parts = [("read", "bare read_direct", "#8fb3d9"), ("compute", "bare block_stats", "#f2b77c"),
             ("pass_on", "stagewise pass, prefetch on", "#3a7d44"),
             ("pass_off", "stagewise pass, prefetch off", "#b0413e"),
             ("pass_copy", "stagewise pass, prefetch on, read_direct", "#7b5ea7")]
    width = 0.16
    x = np.arange(len(keys))
    for i, (name, label, color) in enumerate(parts):
        med = [result["summary"][k][name]["median"] for k in keys]
        lo = [result["summary"][k][name]["min"] for k in keys]
        hi = [result["summary"][k][name]["max"] for k in keys]
        ax.bar(x + (i - 2) * width, med, width, color=color, label=label,
               yerr=[np.subtract(med, lo), np.subtract(hi, med)], capsize=2)
    for j, k in enumerate(keys):
        s = result["summary"][k]
        ref = TARGET * max(s["read"]["median"], s["compute"]["median"])
        ax.hlines(ref, j - 2.5 * width, j + 2.5 * width, color="k", ls="--", lw=1,
                  label="1.25 x max(read, compute)" if j == 0 else None)
        ax.text(j, s["pass_on"]["median"], f"{s['ratio_on_paired']['median']:.2f}x",
                ha="center", va="bottom", fontsize=8)
    ax.set_xticks(x)
    ax.set_xticklabels([k.replace("/", "\n") for k in keys])
    ax.set_ylabel("seconds per pass (median, stages >= 1)")
    ax.set_title(f"stagewise pass over {result['n_samples']:.0e} x {N_FEATURES} float64 "
                 f"({result['file_bytes'] / 1e9:.2f} GB, page cache), rank {RANK}")
    ax.legend(fontsize=8, ncol=2)
    _common.save_figure(fig, path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--n-stages", type=int, default=None)
    parser.add_argument("--out", default=None,
                        help="output folder (default: bench/results, or bench/results/tmp "
                             "for --quick and non-default options)")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    stem = _common.output_stem("overlap", args.quick, args.out, _common.canonical_run(
        parser, args, ignore=("keep", "workdir", "worker")))
    if args.worker:
        return worker(json.loads(args.worker))
    kind = "quick" if args.quick else "full"
    cfg = SIZES[kind]
    repeats = args.repeats or cfg["repeats"]
    machine = _common.machine_info()
    workdir = Path(args.workdir) if args.workdir else Path(
        tempfile.mkdtemp(prefix="streamnmf-overlap-"))
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / f"dir-{cfg['n_samples']}-f64.h5"
    t_start = time.perf_counter()
    workers = []
    try:
        if not path.exists():
            res = run_measured([sys.executable, "-m", "streamnmf.cli", "generate", "dir",
                                str(path), "--n-samples", str(cfg["n_samples"]),
                                "--n-components", str(RANK), "--n-features", str(N_FEATURES),
                                "--seed", "0", "--json"], env=thread_env("default"))
            if res["rc"]:
                raise RuntimeError(res["stderr"][-3000:])
        file_bytes = path.stat().st_size
        t0 = time.perf_counter()
        with open(path, "rb") as fh:  # into the page cache
            while fh.read(64 << 20):
                pass
        warm_read = time.perf_counter() - t0
        print(f"{path.name}: {file_bytes / 1e9:.2f} GB, cache-warming read {warm_read:.2f} s "
              f"({file_bytes / warm_read / 1e9:.1f} GB/s)", flush=True)
        n_stages = args.n_stages or cfg["n_stages"]
        spec = dict(path=str(path), n_stages=n_stages, inits=list(INITS))
        for r in range(repeats):
            for mode in mode_order(r):
                w = run_worker(Path(__file__), spec, mode)
                w["repeat"] = r
                workers.append(w)
                for init in INITS:
                    rec = w["inits"][init]
                    print(f"  repeat {r} {mode:>8} {init:>6}: pass on "
                          f"{np.median(rec['fit_on']['stage_wall_s'][1:]):.2f} s, off "
                          f"{np.median(rec['fit_off']['stage_wall_s'][1:]):.2f} s, read "
                          f"{np.median(rec['read']):.2f} s, compute "
                          f"{np.median(rec['compute']):.2f} s, load {rec['loadavg'][0]:.2f}",
                          flush=True)
    finally:
        if not args.keep:
            path.unlink(missing_ok=True)
            if not args.workdir:
                shutil.rmtree(workdir, ignore_errors=True)
    summary, rows = summarise(workers, INITS)
    result = dict(benchmark="overlap", size=kind, n_samples=cfg["n_samples"],
                  n_features=N_FEATURES, rank=RANK, dtype="float64", n_stages=n_stages,
                  repeats=repeats, target=TARGET, file_bytes=file_bytes,
                  block_rows=workers[0]["block_rows"], n_blocks=workers[0]["n_blocks"],
                  cache_warming_read_s=warm_read, summary=summary, workers=workers,
                  total_seconds=time.perf_counter() - t_start, machine=machine)
    print()
    print(f"{cfg['n_samples']} x {N_FEATURES} float64, {file_bytes / 1e9:.2f} GB, "
          f"{workers[0]['n_blocks']} blocks of {workers[0]['block_rows']} rows; seconds per "
          "pass, medians over stages >= 1 and repeats")
    print(_common.table(rows, [
        ("init", "start"), ("mode", "threads"), ("read", "read"), ("compute", "compute"),
        ("serial", "read+compute"), ("on", "pass prefetch"), ("off", "pass no prefetch"),
        ("hon", "history_ s (prefetch)"), ("gap_off", "wall-history_ (no prefetch)"),
        ("ron", "ratio prefetch"),
        ("roff", "ratio no prefetch"), ("copy", "pass read_direct"),
        ("rcopy", "ratio read_direct"), ("dens", "code density"), ("load", "load 1m"),
        ("ok", "<= 1.25")]))
    print("ratio = pass / max(read, compute), paired within a worker, median over stages >= 1;"
          " pass read_direct = prefetch on, memory_map=False")
    warm = [w["warmup_s"] for w in workers]
    print(f"compile/cache-load warm-up per worker: median {np.median(warm):.2f} s (excluded)")
    _common.write_results(result, stem, plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
