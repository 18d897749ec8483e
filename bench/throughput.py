"""Throughput report: samples per second of every kernel and every mode, as a fraction of a
roofline measured in the same run; float64 and float32, dense rows and CSR word documents.

Data: DIR (``make_dataset("dir", N, 100, 1000)``, the paper's start ``make_init``), dense rows
and CSR word-frequency documents (200 tokens per row, ``speed.word_documents``). Two code
states, each held fixed by a constant threshold: ``sparse`` (alpha 0.1, about 3% non-zero
codes: the engine walks the support with numba) and ``dense`` (alpha 0.01, about 30%: the
block statistics go through BLAS).

What is timed (medians; every call made once, untimed, before timing, so compile time is
never inside a timing). Every timing is taken on two clocks, wall and this process's CPU time;
the machine is shared and often has more runnable processes than cores, and as everything here
runs on one thread, CPU time is the time the work took while it had a core. Samples/s and the
fractions below use CPU time on both sides (the roofs are measured the same way); wall-clock
samples/s are in the JSON (``*_wall``) and the tables.

* kernels, on one row block of the size the library's sources use
  (``sources.default_block_rows`` / ``default_csr_block_rows``), called as ``_engine`` calls
  them: ``threshold_codes``, ``csr_decode``, ``sgd_update_dense`` / ``_csr`` (batch_size 1),
  ``accumulate_stats_dense`` / ``_csr``, and the engine's ``decode`` and ``block_stats``
  (decode + ``StageStats.add``, the map step of a stage);
* modes: the median stage time (CPU time between stage-end callbacks, first stage excluded;
  wall: ``history_["seconds"]`` differences)
  of ``AND(update="stagewise" | "gd" | "sgd")`` and ``Purification(inverse="pinv")`` on N
  in-memory samples with a constant threshold, plus one ``Purification`` (min-inf inverse,
  its default) row on dense float64, whose per-stage linear programmes dominate.

* stream: ``AND(100).partial_fit`` over 2000-row DIR blocks (2e5 samples; ``--quick``
  4e4), every default (the data-driven start, a stage per call), against the bare decode
  product ``Y @ D`` of the same blocks, both on all cores (BLAS as configured), wall clock,
  passes interleaved; with the ln error after the pass and a profile of one pass. With dense
  codes a stage also needs ``Z^T Y``, a second product of the decode's size, so half the
  GEMM's samples/s is the ceiling of a stagewise stream there.

Two references, both measured beside the timings and interleaved with them:

* ``frac BLAS`` = time of the bare NumPy/BLAS products of the same shapes / time of the
  library. Dense data: ``Y @ D`` (decode), ``Z.T @ Y + Z.T @ Z`` (statistics), all three for
  a stagewise/gd/Purification stage, ``Y @ D`` for an sgd stage (its update has no BLAS
  twin). CSR data: the same products with ``scipy.sparse``. Above 1 means faster than the
  dense products (walking only the support of sparse codes does less work than BLAS).
* ``frac roof`` = roofline time / time of the library, with roofline time
  ``max(sum_a bytes_a / BW(size_a), FMAs / FMA_peak)``:

  - ``bytes_a`` is the traffic each array outside L1 must see (read, or read and written,
    once per pass the algorithm makes over it; one-row scratch vectors such as the residual
    ``r`` are L1-resident and not counted). E.g. sgd reads the support rows of ``C`` for the
    residual and reads and writes them again for the step: ``3 nnz(z) m s`` bytes; the
    statistics read and write the support rows of ``S_zy`` (float64): ``2 nnz(z) m 8``;
    the CSR statistics scatter ``2 * 8`` bytes per (code, word) pair.
  - ``BW(size)`` is the best of a numba ``a += s * b`` (2 reads + 1 write, the kernels'
    read-modify-write pattern) and a NumPy copy over a working set of that size, measured
    here on a curve from 32 KiB to 128 MiB (log-interpolated). The arrays a per-sample
    kernel hammers, ``C`` / ``S_zy`` / ``D`` (100 x 1000: 800 KB float64, 400 KB float32),
    fit in this CPU's L2 (1 MiB per core), so their bound is the L2 bandwidth, not DRAM: a
    DRAM bound would be about 3-10x looser and no kernel could be judged against it. The
    streamed blocks (16 MiB) get the L3 figure; a mode's data (N rows) gets DRAM's when it
    exceeds L3.
  - ``FMA_peak`` is the multiply-add rate of a 1000^3 BLAS GEMM of the same dtype.

Compile time, separately: a fresh subprocess with ``NUMBA_CACHE_DIR`` an empty temporary
folder calls every kernel twice per signature (first minus second call = compile), then a
second fresh subprocess with the same folder (first minus second = cache load). The main
process's own first-call overhead is in the JSON too (``first_call_extra_s``).

Usage: ``python bench/throughput.py [--quick] [--out DIR] [--threads 1]``
(without ``--quick``: N = 20000 and more repeats). The full run with default options writes
``bench/results/throughput.json`` and ``.png``; other runs write to ``bench/results/tmp``
(``--out`` overrides). Run with ``OPENBLAS_NUM_THREADS=1`` on a
shared machine.
"""

import argparse
import copy
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numba
import numpy as np
import scipy.sparse as sp

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import _common  # noqa: E402
import streamnmf  # noqa: E402
from speed import word_documents  # noqa: E402
from streamnmf import _engine  # noqa: E402
from streamnmf import _kernels as K  # noqa: E402
from streamnmf.io import sources  # noqa: E402
from streamnmf.datasets import make_dataset, make_init  # noqa: E402

N_COMPONENTS, N_FEATURES = 100, 1000
STATES = {"sparse": 0.1, "dense": 0.01}  # code state: constant threshold
DTYPES = (np.float64, np.float32)
FORMATS = ("dense", "csr")


# -- clocks --------------------------------------------------------------------------------------
# The bench machine is shared (other benchmarks run beside this one, often more runnable
# processes than cores), so every timing is taken on two clocks: wall (perf_counter) and this
# process's CPU time (process_time). Everything here runs on one thread (BLAS limited to 1,
# numba kernels serial), so CPU time is the time the work took while it had a core; it does not
# count the time-slices the scheduler gave to other processes. Fractions of the roofline use
# CPU time on both sides (the roofs are measured the same way); wall-clock samples/s are
# reported beside them.
def now():
    return time.perf_counter(), time.process_time()


def timed(fn, repeats, warmup=1, setup=None):
    """(wall seconds list, CPU seconds list) of ``repeats`` calls after ``warmup`` calls."""
    items = interleaved_setup({"x": (fn, setup)}, repeats, warmup)
    return items["x"]


def med(times):
    return _common.summary(times)["median"]


# -- machine roofs -------------------------------------------------------------------------------
@numba.njit(cache=False, fastmath=K.FASTMATH)
def _axpy_reps(a, b, s, reps):
    for _ in range(reps):
        for i in range(a.shape[0]):
            a[i] += s * b[i]


def cache_sizes():
    """Per-core data cache sizes in bytes by level (from sysfs); L1/L2/L3 defaults if absent."""
    out = {}
    base = Path("/sys/devices/system/cpu/cpu0/cache")
    for idx in sorted(base.glob("index*")) if base.exists() else []:
        try:
            kind = (idx / "type").read_text().strip()
            if kind == "Instruction":
                continue
            level = int((idx / "level").read_text())
            size = (idx / "size").read_text().strip()
            mult = {"K": 1024, "M": 1024**2}.get(size[-1], 1)
            out[f"L{level}"] = int(size.rstrip("KM")) * mult
        except (OSError, ValueError):
            pass
    return out or {"L1": 32 << 10, "L2": 1 << 20, "L3": 32 << 20}


def bandwidth_curve(sizes, repeats):
    """Bytes per second of a numba axpy and a NumPy copy, per working-set size (bytes)."""
    rows = []
    for ws in sizes:
        n = max(64, ws // 16)  # axpy: two float64 arrays of n elements = ws bytes
        a, b = np.zeros(n), np.full(n, 1.0)
        reps = max(1, int(4e6 // n))  # about 4e6 elements per timed call
        _axpy_reps(a, b, 1e-12, 1)
        wall, cpu = timed(lambda: _axpy_reps(a, b, 1e-12, reps), repeats)
        axpy, axpy_wall = 3 * 8 * n * reps / med(cpu), 3 * 8 * n * reps / med(wall)
        copy = copy_wall = None
        if ws >= 128 << 10:  # below that, a NumPy call's overhead is not small against the copy
            src, dst = np.full(n, 1.0), np.empty(n)
            creps = max(1, int(2e6 // n))

            def cp():
                for _ in range(creps):
                    np.copyto(dst, src)

            wall, cpu = timed(cp, repeats)
            copy, copy_wall = 2 * 8 * n * creps / med(cpu), 2 * 8 * n * creps / med(wall)
        rows.append(dict(ws_bytes=int(ws), axpy_Bps=axpy, copy_Bps=copy,
                         best_Bps=max(axpy, copy or 0.0), axpy_Bps_wall=axpy_wall,
                         copy_Bps_wall=copy_wall))
    return rows


def gemm_peak(dtype, repeats, size=1000):
    A = np.random.default_rng(0).random((size, size)).astype(dtype)
    B = A.copy()
    A @ B
    wall, cpu = timed(lambda: A @ B, repeats)
    return size**3 / med(cpu)  # multiply-adds per second (CPU time)


class Roof:
    """Bandwidth by working-set size (log-interpolated) and FMA peak by dtype."""

    def __init__(self, curve, peaks, caches):
        self.ws = np.log([r["ws_bytes"] for r in curve])
        self.bw = np.log([r["best_Bps"] for r in curve])
        self.peaks = peaks
        self.caches = caches

    def bandwidth(self, size):
        return float(np.exp(np.interp(np.log(max(size, 1)), self.ws, self.bw)))

    def level(self, size):
        for name in ("L1", "L2", "L3"):
            if name in self.caches and size <= self.caches[name]:
                return name
        return "DRAM"

    def time(self, traffic, fmas, dtype):
        """Roofline seconds of ``traffic`` [(bytes, array_size)] and ``fmas`` multiply-adds,
        and what bounds it ('L2', 'L3', 'DRAM' for the largest memory term, or 'compute')."""
        t_mem, worst, worst_t = 0.0, None, -1.0
        for nbytes, size in traffic:
            t = nbytes / self.bandwidth(size)
            t_mem += t
            if t > worst_t:
                worst, worst_t = self.level(size), t
        t_fma = fmas / self.peaks[np.dtype(dtype).name]
        return (t_mem, f"mem {worst}") if t_mem >= t_fma else (t_fma, "compute")


# -- traffic models ------------------------------------------------------------------------------
def counts_of(Y, Z, zp, zi):
    """Sizes the models need, from a block and its codes."""
    R, n = Z.shape
    nzi = np.diff(zp)
    c = dict(R=R, n=n, m=Y.shape[1], s=Z.dtype.itemsize, nz=int(zi.size),
             nz2=int(np.sum(nzi.astype(np.int64) ** 2)), density=zi.size / max(Z.size, 1))
    if sp.issparse(Y):
        nyi = np.diff(Y.indptr)
        c.update(ny=int(Y.nnz), nzny=int(np.sum(nzi.astype(np.int64) * nyi)),
                 y_bytes=int(Y.data.nbytes + Y.indices.nbytes + Y.indptr.nbytes))
    else:
        c.update(y_bytes=int(Y.nbytes))
    return c


def model(name, c, y_size=None):
    """Traffic [(bytes, array size)] and FMAs of one call on ``c['R']`` samples.

    ``y_size``: the size that decides the data's bandwidth (the block when a kernel is called
    on a block; the whole data set in a mode, where every stage streams it from memory).
    """
    R, n, m, s, nz = c["R"], c["n"], c["m"], c["s"], c["nz"]
    csr = "ny" in c
    ysz = y_size or c["y_bytes"]
    mat = n * m * s  # C or D
    szy = n * m * 8  # S_zy, float64
    vsz = R * n * s  # decoded block
    tr, fm = [], 0
    if name == "threshold_codes":
        tr += [(2 * vsz, vsz), (4 * nz + 8 * (R + 1), vsz)]
    elif name == "csr_decode":
        tr += [(c["ny"] * (s + 4) + 4 * (R + 1), ysz), (c["ny"] * n * s, mat), (vsz, vsz)]
        fm += c["ny"] * n
    elif name == "decode":
        if csr:
            t1, f1 = model("csr_decode", c, y_size)
        else:
            t1, f1 = [(R * m * s, ysz), (mat, mat), (vsz, vsz)], R * m * n
        t2, _ = model("threshold_codes", c, y_size)
        tr, fm = t1 + t2, f1
    elif name in ("sgd_update_dense", "sgd_update_csr"):
        y = c["ny"] * (s + 4) if csr else R * m * s
        tr += [(y, ysz), (3 * nz * m * s, mat), (nz * (s + 4) + 8 * R, vsz)]
        fm += 2 * nz * m + R * m  # residual + step + r.r
    elif name in ("accumulate_stats_dense", "accumulate_stats_csr"):
        if csr:
            tr += [(c["ny"] * (s + 4), ysz), (2 * 8 * c["nzny"], szy)]
            fm += c["nzny"]
        else:
            tr += [(R * m * s, ysz), (2 * nz * m * 8, szy)]
            fm += nz * m
        tr += [(nz * (s + 4) + 8 * R, vsz), (2 * 8 * c["nz2"], n * n * 8)]
        fm += c["nz2"]
    elif name == "stats_add":  # StageStats.add with products, as the engine chooses
        if csr:
            tr, fm = model("accumulate_stats_csr", c, y_size)
        elif nz > _engine.DENSE_CODES * R * n:  # BLAS: Z.T @ Y, Z.T @ Z over the whole block
            tr = [(R * m * s, ysz), (vsz, vsz), (szy, szy)]
            fm = R * n * m + R * n * n
        else:
            tr, fm = model("accumulate_stats_dense", c, y_size)
        tr = tr + [(c["ny"] * s if csr else R * m * s, ysz), (vsz, vsz)]  # sum_yy, Z.max
    elif name == "block_stats":
        t1, f1 = model("decode", c, y_size)
        t2, f2 = model("stats_add", c, y_size)
        tr, fm = t1 + t2, f1 + f2
    elif name == "sgd_stage":
        t1, f1 = model("decode", c, y_size)
        t2, f2 = model("sgd_update_csr" if csr else "sgd_update_dense", c, y_size)
        y = c["ny"] * s if csr else R * m * s
        tr, fm = t1 + t2 + [(y, ysz), (vsz, vsz)], f1 + f2  # + sum_yy, Z.max
    elif name == "purification_stage":
        tr, fm = model("block_stats", c, y_size)
        tr = tr + [(c["ny"] * (s + 4) if csr else R * m * s, ysz)]  # sum_y
    else:
        raise KeyError(name)
    return tr, fm


# -- timing helpers ------------------------------------------------------------------------------
def interleaved_setup(items, repeats, warmup=1):
    """Like ``_common.interleaved`` but each item is ``(fn, setup or None)``, setup untimed;
    returns {name: (wall seconds list, CPU seconds list)}."""
    for _ in range(warmup):
        for fn, setup in items.values():
            if setup:
                setup()
            fn()
    out = {k: ([], []) for k in items}
    for _ in range(repeats):
        for k, (fn, setup) in items.items():
            if setup:
                setup()
            w0, c0 = now()
            fn()
            w1, c1 = now()
            out[k][0].append(w1 - w0)
            out[k][1].append(c1 - c0)
    return out


def first_call_extra(fn, setup=None):
    """First call minus a warm call, in this process (compile or cache load, whichever)."""
    times = []
    for _ in range(2):
        if setup:
            setup()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times[0] - times[1]


def block_of(fmt, dtype, Y64, docs):
    s = np.dtype(dtype).itemsize
    if fmt == "csr":
        X = docs.astype(dtype)
        X.sort_indices()
        rows = min(X.shape[0], sources.default_csr_block_rows(X.shape[0], X.nnz, s))
        return X, X[:rows]
    X = np.ascontiguousarray(Y64, dtype=dtype)
    rows = min(X.shape[0], sources.default_block_rows(X.shape[1], s))
    return X, X[:rows]


def bare_products(Y, D, Z):
    """The BLAS-shaped references (scipy.sparse products for CSR Y)."""
    return {
        "Y@D": lambda: Y @ D,
        "Z^T Y": lambda: Z.T @ Y,
        "Z^T Z": lambda: Z.T @ Z,
    }


# -- kernels -------------------------------------------------------------------------------------
KERNEL_BLAS_REF = {  # which bare products a kernel is compared with
    "decode": ("Y@D",),
    "csr_decode": ("Y@D",),
    "accumulate_stats_dense": ("Z^T Y", "Z^T Z"),
    "accumulate_stats_csr": ("Z^T Y", "Z^T Z"),
    "block_stats": ("Y@D", "Z^T Y", "Z^T Z"),
}


def bench_kernels(state, alpha, fmt, dtype, Y64, docs, init, roof, repeats):
    X, Yb = block_of(fmt, dtype, Y64, docs)
    csr = fmt == "csr"
    C0 = np.ascontiguousarray(init, dtype=dtype)
    D = np.ascontiguousarray(_engine.pinv_rows(C0))
    a_t = dtype(alpha)
    R = Yb.shape[0]
    Z, zp, zi, _ = _engine.decode(Yb, D, alpha, K.HARD)
    if csr:
        V0 = np.empty((R, N_COMPONENTS), dtype=dtype)
        K.csr_decode(Yb.data, Yb.indices, Yb.indptr, D, V0)
    else:
        V0 = Yb @ D
    coded = max(np.count_nonzero(np.diff(zp)), 1)
    eta = dtype(_engine.SGD_STEP / (float(np.einsum("ij,ij->", Z, Z, dtype=np.float64)) / coded))
    c = counts_of(Yb, Z, zp, zi)

    V = np.empty_like(V0)
    zp_buf = np.empty(R + 1, dtype=np.int64)
    Cw = np.empty_like(C0)
    G = np.zeros_like(C0)
    touched = np.zeros(N_COMPONENTS, dtype=np.bool_)
    batch = np.zeros(2)
    S_zy = np.zeros((N_COMPONENTS, N_FEATURES))
    S_zz = np.zeros((N_COMPONENTS, N_COMPONENTS))
    sum_z = np.zeros(N_COMPONENTS)

    def reset_sgd():
        np.copyto(Cw, C0)
        touched[:] = False
        batch[:] = 0.0

    def reset_stats():
        S_zy[...] = 0.0
        S_zz[...] = 0.0
        sum_z[...] = 0.0

    items = {
        "decode": (lambda: _engine.decode(Yb, D, alpha, K.HARD), None),
        "threshold_codes": (lambda: K.threshold_codes(V, a_t, K.HARD, zp_buf, V),
                            lambda: np.copyto(V, V0)),
    }
    if csr:
        d, ind, ptr = Yb.data, Yb.indices, Yb.indptr
        items["csr_decode"] = (lambda: K.csr_decode(d, ind, ptr, D, V), None)
        items["sgd_update_csr"] = (lambda: K.sgd_update_csr(
            d, ind, ptr, Z, zp, zi, Cw, eta, 1, G, touched, batch, False), reset_sgd)
        items["accumulate_stats_csr"] = (lambda: K.accumulate_stats_csr(
            d, ind, ptr, Z, zp, zi, S_zy, S_zz, sum_z), reset_stats)
    else:
        items["sgd_update_dense"] = (lambda: K.sgd_update_dense(
            Yb, Z, zp, zi, Cw, eta, 1, G, touched, batch, False), reset_sgd)
        items["accumulate_stats_dense"] = (lambda: K.accumulate_stats_dense(
            Yb, Z, zp, zi, S_zy, S_zz, sum_z), reset_stats)
    items["block_stats"] = (lambda: _engine.block_stats(Yb, D, alpha, K.HARD), None)
    first = {k: first_call_extra(fn, setup) for k, (fn, setup) in items.items()}
    refs = bare_products(Yb, D, Z)
    for k, fn in refs.items():
        items["ref " + k] = (fn, None)
    times = interleaved_setup(items, repeats)
    cpu = {k: med(v[1]) for k, v in times.items()}
    wall = {k: med(v[0]) for k, v in times.items()}

    rows = []
    for k in [k for k in items if not k.startswith("ref ")]:
        t = cpu[k]
        traffic, fmas = model(k, c)
        t_roof, bound = roof.time(traffic, fmas, dtype)
        ref_keys = KERNEL_BLAS_REF.get(k)
        t_blas = sum(cpu["ref " + r] for r in ref_keys) if ref_keys else None
        rows.append(dict(
            state=state, alpha=alpha, format=fmt, dtype=np.dtype(dtype).name, kernel=k,
            rows=R, density=c["density"], seconds=t, iqr=_common.summary(times[k][1])["iqr"],
            samples_per_s=R / t, us_per_sample=t / R * 1e6, seconds_wall=wall[k],
            samples_per_s_wall=R / wall[k],
            roof_s=t_roof, roof_samples_per_s=R / t_roof, frac_roof=t_roof / t, bound=bound,
            bytes=sum(b for b, _ in traffic), fmas=fmas,
            blas_ref="+".join(ref_keys) if ref_keys else None, blas_ref_s=t_blas,
            frac_blas=(t_blas / t) if t_blas else None, first_call_extra_s=first[k],
        ))
    return rows, {k[4:]: cpu[k] for k in cpu if k.startswith("ref ")}


# -- modes ---------------------------------------------------------------------------------------
MODES = ("AND stagewise", "AND gd", "AND sgd", "Purification pinv")


def make_estimator(mode, init, alpha, n_stages, callback=None):
    if mode.startswith("AND"):
        return streamnmf.AND(N_COMPONENTS, update=mode.split()[1], init=init,
                             thresholds=float(alpha), n_stages=n_stages, tol=0.0,
                             n_iter_no_change=None, callback=callback)
    inverse = mode.split()[1]
    return streamnmf.Purification(N_COMPONENTS, thresholds=float(alpha), init=init,
                                  n_stages=n_stages, inverse=inverse, tol=0.0,
                                  n_iter_no_change=None, callback=callback)


def stage_end_seconds(est, X, repeats=3):
    """Seconds of the per-stage fixed work alone: the next decoding matrix (pinv / min-inf
    inverse, computed afresh: no cached inverse or LP bases) and, for full-batch rules, the
    end-of-stage update and objective from the stage's statistics."""
    loop = est._loop
    rule = loop.rule
    C = loop.C
    fresh = copy.copy(rule)  # Purification's rule caches the inverse of the last C: bypass it

    def dec():
        if hasattr(fresh, "cache"):
            fresh.cache = {}
        fresh.decoding_matrix(C)

    try:
        with _engine.single_threaded_blas():
            t_dec = med(timed(dec, repeats, warmup=0)[1])
            t_end = 0.0
            if not rule.per_sample:
                S = _engine.block_stats(X, loop.D, loop.alpha, rule.kind, rule.needs_sum_y)
                t_end = med(timed(lambda: S.squared_error(rule.end_stage(C, S)), repeats,
                                  warmup=0)[1])
        return t_dec + t_end
    except Exception as exc:  # the rules are internal; report rather than fail
        return repr(exc)


def bench_modes(state, alpha, fmt, dtype, Y64, docs, init, roof, n_fits, n_stages, modes):
    X, _ = block_of(fmt, dtype, Y64, docs)
    N = X.shape[0]
    C0 = np.ascontiguousarray(init, dtype=dtype)
    D = np.ascontiguousarray(_engine.pinv_rows(C0))
    Z, zp, zi, _ = _engine.decode(X, D, alpha, K.HARD)
    refs = bare_products(X, D, Z)
    rows = []
    for mode in modes:
        lp = mode.endswith("min-inf")  # one linear programme per component per stage
        if not lp:
            make_estimator(mode, C0, alpha, 2).fit(X[:500])  # compile / warm up
        ref_keys = ("Y@D",) if mode == "AND sgd" else ("Y@D", "Z^T Y", "Z^T Z")
        stage_t, stage_wall, ref_t, density = [], [], [], []
        timed_D = {}  # the decoding matrix of the first timed stage (stage 1), for the model

        def grab(e, row):
            marks.append(now()[1])  # CPU clock at every stage end
            if row["stage"] == 0 and "D" not in timed_D:
                timed_D["D"] = e._loop.D.copy()

        for _ in range(n_fits):
            marks = []
            est = make_estimator(mode, C0, alpha, n_stages, grab)
            est.fit(X)
            stage_t += list(np.diff(marks))  # CPU seconds of stages 1, 2, ...
            stage_wall += list(np.diff(est.history_["seconds"]))
            density += list(est.history_["density"][1:])
            ref_t += timed(lambda: [refs[k]() for k in ref_keys], max(1, n_stages - 1),
                           warmup=0)[1]
        t = med(stage_t)
        t_blas = med(ref_t)
        # the per-sample work a timed stage must do: its codes decoded with its own matrix
        Zs, zps, zis, _ = _engine.decode(X, timed_D["D"], alpha, est._loop.rule.kind)
        c = counts_of(X, Zs, zps, zis)
        if mode.startswith("Purification"):
            traffic, fmas = model("purification_stage", c)
        else:
            traffic, fmas = model("sgd_stage" if mode == "AND sgd" else "block_stats", c)
        t_roof, bound = roof.time(traffic, fmas, dtype)
        end_s = stage_end_seconds(est, X, 1 if lp else 3)
        per_sample_s = t - end_s if isinstance(end_s, float) else None
        rows.append(dict(
            state=state, alpha=alpha, format=fmt, dtype=np.dtype(dtype).name, mode=mode, N=N,
            density=float(np.median(density)), model_density=c["density"], stage_s=t,
            stage_iqr=_common.summary(stage_t)["iqr"], n_stage_samples=len(stage_t),
            samples_per_s=N / t, us_per_sample=t / N * 1e6, stage_s_wall=med(stage_wall),
            samples_per_s_wall=N / med(stage_wall),
            roof_s=t_roof, roof_samples_per_s=N / t_roof, frac_roof=t_roof / t, bound=bound,
            blas_ref="+".join(ref_keys), blas_ref_s=t_blas, frac_blas=t_blas / t,
            stage_end_s=end_s,
            lp_programmes_per_stage=(est._loop.rule.cache.get("programmes", 0)
                                     / max(est._loop.rule.cache.get("inverses", 1), 1)
                                     if lp else None),
            frac_roof_excl_stage_end=(t_roof / per_sample_s if per_sample_s and per_sample_s > 0
                                      else None),
        ))
        r = rows[-1]
        print(f"  {state:6s} {fmt:5s} {r['dtype']:7s} {mode:18s} {r['samples_per_s']:10.0f} "
              f"samples/s  roof {r['frac_roof']:.2f} ({bound})  BLAS {r['frac_blas']:.2f}  "
              f"stage {t * 1e3:.1f} ms (end {end_s if isinstance(end_s, str) else end_s * 1e3:.3g}"
              f" ms)", flush=True)
    return rows


# -- compile time --------------------------------------------------------------------------------
CHILD = r"""
import json, time
t0 = time.perf_counter()
import numpy as np, scipy.sparse as sp
from streamnmf import _kernels as K
t1 = time.perf_counter()
rng = np.random.default_rng(0)
n, m, R = 8, 40, 30
out = {"import": t1 - t0, "calls": {}}
for dtype in (np.float64, np.float32):
    dn = np.dtype(dtype).name
    Y = np.ascontiguousarray(rng.random((R, m)), dtype=dtype)
    Ycsr = sp.csr_matrix(np.where(Y > 0.7, Y, 0).astype(dtype))
    D = np.ascontiguousarray(rng.random((m, n)) - 0.5, dtype=dtype)
    C = np.ascontiguousarray(rng.random((n, m)), dtype=dtype)
    V0 = Y @ D
    def mk(k, fn):
        ts = []
        for _ in range(2):
            t = time.perf_counter(); fn(); ts.append(time.perf_counter() - t)
        out["calls"][k] = ts
    zp = np.empty(R + 1, np.int64)
    V = V0.copy()
    box = {}
    def thr():
        V[...] = V0
        box["z"] = K.threshold_codes(V, dtype(0.1), K.HARD, zp, V)
    mk(f"threshold_codes {dn}", thr)
    Z, zi = V.copy(), box["z"][0]
    Vc = np.empty_like(V0)
    mk(f"csr_decode {dn}", lambda: K.csr_decode(Ycsr.data, Ycsr.indices, Ycsr.indptr, D, Vc))
    G = np.zeros_like(C); tch = np.zeros(n, np.bool_); b = np.zeros(2)
    mk(f"sgd_update_dense {dn}", lambda: K.sgd_update_dense(Y, Z, zp, zi, C.copy(), dtype(0.01),
                                                            1, G, tch, b, False))
    mk(f"sgd_update_csr {dn}", lambda: K.sgd_update_csr(Ycsr.data, Ycsr.indices, Ycsr.indptr,
                                                        Z, zp, zi, C.copy(), dtype(0.01), 1, G,
                                                        tch, b, False))
    Szy, Szz, sz = np.zeros((n, m)), np.zeros((n, n)), np.zeros(n)
    mk(f"accumulate_stats_dense {dn}", lambda: K.accumulate_stats_dense(Y, Z, zp, zi, Szy, Szz, sz))
    mk(f"accumulate_stats_csr {dn}", lambda: K.accumulate_stats_csr(
        Ycsr.data, Ycsr.indices, Ycsr.indptr, Z, zp, zi, Szy, Szz, sz))
print("RESULT" + json.dumps(out))
"""


def run_child(cache_dir):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache_dir))
    proc = subprocess.run([sys.executable, "-c", CHILD], cwd=str(HERE.parent), env=env,
                          capture_output=True, text=True, timeout=900)
    line = [s for s in proc.stdout.splitlines() if s.startswith("RESULT")]
    if proc.returncode or not line:
        raise RuntimeError(f"compile-time child failed:\n{proc.stdout}\n{proc.stderr}")
    return json.loads(line[0][len("RESULT"):])


def bench_compile():
    with tempfile.TemporaryDirectory(prefix="numba-cache-") as cache_dir:
        cold = run_child(cache_dir)
        cached = run_child(cache_dir)
    rows = []
    for key, (c1, c2) in cold["calls"].items():
        w1, w2 = cached["calls"][key]
        warm = min(c2, w2)
        kernel, dtype = key.split()
        rows.append(dict(kernel=kernel, dtype=dtype, compile_s=c1 - warm,
                         cache_load_s=w1 - warm, warm_s=warm))
    return rows, dict(cold_import_s=cold["import"], cached_import_s=cached["import"])


# -- main ----------------------------------------------------------------------------------------
STREAM_BLOCK = 2000


def bench_stream(quick, repeats):
    """The stream part (see the module docstring): rows per dtype, with a pass's profile."""
    from streamnmf.metrics import log_total_correlation_error

    n = 40_000 if quick else 200_000
    rows = []
    for dtype in DTYPES:
        Y, truth, _ = make_dataset("dir", n, N_COMPONENTS, N_FEATURES, random_state=0,
                                   dtype=dtype)
        blocks = [Y[i:i + STREAM_BLOCK] for i in range(0, n, STREAM_BLOCK)]
        D = np.ascontiguousarray(np.linalg.pinv(truth).astype(dtype))
        streamnmf.warmup(dtypes=(np.dtype(dtype).name,))
        box = {}

        def gemm():
            for Yb in blocks:
                Yb @ D

        def stream():
            est = streamnmf.AND(N_COMPONENTS)
            for Yb in blocks:
                est.partial_fit(Yb)
            box["est"] = est

        times = {"gemm": [], "stream": []}
        for _ in range(repeats):
            for name, fn in (("gemm", gemm), ("stream", stream)):
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
        gemm_s, stream_s = med(times["gemm"]), med(times["stream"])
        rows.append(dict(
            dtype=np.dtype(dtype).name, n_samples=n, block=STREAM_BLOCK,
            samples_per_s=n / stream_s, gemm_samples_per_s=n / gemm_s,
            frac_gemm=gemm_s / stream_s, stream_s=times["stream"], gemm_s=times["gemm"],
            ln_error=float(log_total_correlation_error(box["est"].components_, truth)),
            stages=int(box["est"].n_stages_),
            profile=_common.profile_top(stream, n=12)))
        print(f"  {rows[-1]['dtype']:7s} stream {rows[-1]['samples_per_s']:9.0f} samples/s, "
              f"bare GEMM {rows[-1]['gemm_samples_per_s']:9.0f}: {rows[-1]['frac_gemm']:.2f} "
              f"of it; ln error {rows[-1]['ln_error']:.1f}", flush=True)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="N = 5000, fewer repeats (a few minutes on 2 cores)")
    parser.add_argument("--out", default=None,
                        help="output folder (default: bench/results, or bench/results/tmp "
                             "for --quick and non-default options)")
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads (threadpoolctl)")
    parser.add_argument("--no-compile", action="store_true", help="skip the compile part")
    args = parser.parse_args(argv)
    stem = _common.output_stem("throughput", args.quick, args.out,
                               _common.canonical_run(parser, args))
    from threadpoolctl import threadpool_limits

    quick = args.quick
    N = 5000 if quick else 20000
    repeats = 5 if quick else 9
    n_fits, n_stages = (2, 4) if quick else (4, 5)
    t_start = time.perf_counter()
    payload = dict(benchmark="throughput", quick=quick, threads=args.threads, N=N,
                   n_components=N_COMPONENTS, n_features=N_FEATURES, states=STATES,
                   machine=_common.machine_info(), loadavg={})
    caches = cache_sizes()
    payload["caches"] = caches

    with threadpool_limits(args.threads):
        print("roofs: bandwidth curve and GEMM peak", flush=True)
        sizes = [s << 10 for s in (32, 64, 128, 256, 512, 768, 1024, 1536, 2048, 4096, 8192,
                                   16384, 32768, 65536, 131072)]
        curve0 = bandwidth_curve(sizes, 3 if quick else 5)
        peaks = {np.dtype(d).name: gemm_peak(d, 3 if quick else 5) for d in DTYPES}
        roof = Roof(curve0, peaks, caches)
        for r in curve0:
            copy = "-" if r["copy_Bps"] is None else f"{r['copy_Bps'] / 1e9:.1f}"
            print(f"  ws {r['ws_bytes'] / 2**10:8.0f} KiB  axpy {r['axpy_Bps'] / 1e9:6.1f} GB/s  "
                  f"copy {copy} GB/s", flush=True)
        print("  GEMM peak (multiply-adds/s):", {k: f"{v:.3g}" for k, v in peaks.items()})
        payload["loadavg"]["after_roofs"] = os.getloadavg()

        Y64, truth, _ = make_dataset("dir", N, N_COMPONENTS, N_FEATURES, random_state=0)
        init = make_init(truth, random_state=1)
        docs = word_documents(Y64, 200, np.random.default_rng(2))

        print("kernels", flush=True)
        krows, krefs = [], []
        for state, alpha in STATES.items():
            for fmt in FORMATS:
                for dtype in DTYPES:
                    rows, refs = bench_kernels(state, alpha, fmt, dtype, Y64, docs, init, roof,
                                               repeats)
                    krows += rows
                    krefs.append(dict(state=state, format=fmt, dtype=np.dtype(dtype).name,
                                      **refs))
                    for r in rows:
                        print(f"  {state:6s} {fmt:5s} {r['dtype']:7s} {r['kernel']:24s} "
                              f"{r['samples_per_s']:12.0f} samples/s  roof {r['frac_roof']:.2f}"
                              f" ({r['bound']})", flush=True)
        payload["kernels"] = krows
        payload["kernel_blas_refs_s"] = krefs
        payload["loadavg"]["after_kernels"] = os.getloadavg()

        print("modes", flush=True)
        mrows = []
        for state, alpha in STATES.items():
            for fmt in FORMATS:
                for dtype in DTYPES:
                    mrows += bench_modes(state, alpha, fmt, dtype, Y64, docs, init, roof,
                                         n_fits, n_stages, MODES)
        # Purification with its default inverse: one LP per component per stage
        mrows += bench_modes("sparse", STATES["sparse"], "dense", np.float64, Y64, docs, init,
                             roof, 1, 2 if quick else 3, ("Purification min-inf",))
        payload["modes"] = mrows
        payload["loadavg"]["after_modes"] = os.getloadavg()

        curve1 = bandwidth_curve(sizes, 3 if quick else 5)  # drift check under load
        payload["roofs"] = dict(bandwidth_curve=curve0, bandwidth_curve_end=curve1,
                                gemm_fma_per_s=peaks,
                                gemm_fma_per_s_end={np.dtype(d).name: gemm_peak(d, 3)
                                                    for d in DTYPES})

    print("stream: partial_fit on 2000-row blocks against the bare decode GEMM (all cores)",
          flush=True)
    payload["stream"] = bench_stream(quick, 2 if quick else 3)

    if not args.no_compile:
        print("compile time (fresh processes, NUMBA_CACHE_DIR = empty temp dir)", flush=True)
        crows, ctot = bench_compile()
        payload["compile"] = dict(rows=crows, **ctot)

    payload["notes"] = NOTES
    payload["total_seconds"] = time.perf_counter() - t_start
    report(payload)
    path = _common.save_json(payload, stem.with_suffix(".json"))
    plot(payload, stem.with_suffix(".png"))
    print(f"total {payload['total_seconds']:.0f} s; wrote {path}")


NOTES = [
    "All samples/s, roofs and fractions are from CPU time (process_time; one thread): the "
    "machine is shared; *_wall fields hold the wall-clock figures.",
    "frac roof = roofline time / library time; roofline time = max(sum bytes/BW(array size), "
    "FMAs/GEMM peak), bandwidth from a numba axpy / NumPy copy curve measured in the same run.",
    "frac BLAS = time of bare NumPy/scipy products of the same shapes / library time; > 1: "
    "faster than the dense products (the support walk does less work with sparse codes).",
    "C, D and S_zy (100 x 1000) fit in L2 (1 MiB/core): the per-sample kernels' bound is the "
    "L2 bandwidth; DRAM would be a much looser bound.",
    "Mode rows: stage time includes the per-stage fixed work (stage_end_s: pinv or min-inf "
    "inverse, solve / gradient steps, objective); the roofline covers the per-sample work.",
]


def report(p):
    print("\nroofs:")
    r = p["roofs"]
    for name, size in list(p["caches"].items()) + [("DRAM", 128 << 20)]:
        roof = Roof(r["bandwidth_curve"], r["gemm_fma_per_s"], p["caches"])
        print(f"  {name} ({size / 2**10:.0f} KiB working set): "
              f"{roof.bandwidth(size * 0.75 if name != 'DRAM' else size) / 1e9:.1f} GB/s")
    print("  GEMM multiply-adds/s:", {k: f"{v:.3g}" for k, v in r["gemm_fma_per_s"].items()})
    print("\nkernels (one library-sized block; samples/s from the median CPU time, wall "
          "clock beside it):")
    print(_common.table(p["kernels"], [
        ("state", "codes"), ("format", "input"), ("dtype", "dtype"), ("kernel", "kernel"),
        ("rows", "rows"), ("samples_per_s", "samples/s"), ("samples_per_s_wall", "wall"),
        ("roof_samples_per_s", "roof/s"),
        ("frac_roof", "frac roof"), ("bound", "bound"), ("frac_blas", "frac BLAS"),
        ("first_call_extra_s", "1st call +s")]))
    print("\nmodes (N samples per stage; samples/s from the median stage CPU time, wall "
          "clock beside it; end s = the per-stage fixed work alone):")
    print(_common.table(p["modes"], [
        ("state", "codes"), ("format", "input"), ("dtype", "dtype"), ("mode", "mode"),
        ("density", "density"), ("samples_per_s", "samples/s"),
        ("samples_per_s_wall", "wall"), ("roof_samples_per_s", "roof/s"), ("frac_roof", "frac roof"), ("bound", "bound"),
        ("frac_blas", "frac BLAS"), ("stage_s", "stage s"), ("stage_end_s", "end s"),
        ("frac_roof_excl_stage_end", "roof excl end")]))
    if "stream" in p:
        print("\nstream (a stage per 2000-row call; frac GEMM = bare decode GEMM time / "
              "stream time; wall clock, all cores):")
        print(_common.table(p["stream"], [
            ("dtype", "dtype"), ("n_samples", "samples"), ("samples_per_s", "samples/s"),
            ("gemm_samples_per_s", "GEMM samples/s"), ("frac_gemm", "frac GEMM"),
            ("ln_error", "ln error"), ("stages", "stages")]))
        print(p["stream"][0]["profile"])
    if "compile" in p:
        print("\ncompile time per kernel signature (fresh process, empty cache) and cache load:")
        print(_common.table(p["compile"]["rows"], [
            ("kernel", "kernel"), ("dtype", "dtype"), ("compile_s", "compile s"),
            ("cache_load_s", "cache load s"), ("warm_s", "warm call s")]))
        print(f"  total compile {sum(x['compile_s'] for x in p['compile']['rows']):.2f} s, "
              f"cache load {sum(x['cache_load_s'] for x in p['compile']['rows']):.2f} s")
    print("load average:", p["loadavg"])


def plot(p, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    combos = [(f, d) for f in FORMATS for d in ("float64", "float32")]
    colors = {c: f"C{i}" for i, c in enumerate(combos)}
    fig, axes = plt.subplots(3, 2, figsize=(14, 14))
    # (0,0) bandwidth curve
    ax = axes[0, 0]
    curve = p["roofs"]["bandwidth_curve"]
    ws = [r["ws_bytes"] / 2**10 for r in curve]
    ax.loglog(ws, [r["axpy_Bps"] / 1e9 for r in curve], "o-", label="numba a += s*b")
    cp = [(w, r["copy_Bps"] / 1e9) for w, r in zip(ws, curve) if r["copy_Bps"]]
    ax.loglog(*zip(*cp), "s-", label="NumPy copy")
    for name, size in p["caches"].items():
        ax.axvline(size / 2**10, color="gray", ls=":", lw=1)
        ax.text(size / 2**10, ax.get_ylim()[0] * 1.1, name, fontsize=8)
    for label, size in (("C f64", 800e3), ("C f32", 400e3)):
        ax.axvline(size / 2**10, color="r", ls="--", lw=0.8)
        ax.text(size / 2**10, ax.get_ylim()[1] / 1.6, label, fontsize=8, color="r", rotation=90)
    ax.set_xlabel("working set (KiB)")
    ax.set_ylabel("bandwidth (GB/s)")
    ax.set_title("memory bandwidth measured beside the timings (1 thread)")
    ax.legend(fontsize=8)
    # (0,1) compile
    ax = axes[0, 1]
    if "compile" in p:
        rows = p["compile"]["rows"]
        y = np.arange(len(rows))
        ax.barh(y - 0.2, [r["compile_s"] for r in rows], 0.4, label="compile (empty cache)")
        ax.barh(y + 0.2, [r["cache_load_s"] for r in rows], 0.4, label="load from cache")
        ax.set_yticks(y)
        ax.set_yticklabels([f"{r['kernel']} {r['dtype']}" for r in rows], fontsize=7)
        ax.invert_yaxis()
        ax.set_xlabel("seconds (first call - warm call, fresh process)")
        ax.set_title("numba compile time per kernel signature")
        ax.legend(fontsize=8, loc="lower right")
    # kernels and modes, one panel per code state
    for col, state in enumerate(STATES):
        for row, key, label, name in ((1, "kernels", "kernel", "frac_roof"),
                                      (2, "modes", "mode", "samples_per_s")):
            ax = axes[row, col]
            rows = [r for r in p[key] if r["state"] == state]
            names = list(dict.fromkeys(r[label] for r in rows))
            w = 0.8 / len(combos)
            for i, combo in enumerate(combos):
                sel = {r[label]: r for r in rows if (r["format"], r["dtype"]) == combo}
                xs = [j + (i - 1.5) * w for j, nm in enumerate(names) if nm in sel]
                vals = [sel[nm][name] for nm in names if nm in sel]
                ax.bar(xs, vals, w, color=colors[combo], label=f"{combo[0]} {combo[1]}")
                if key == "modes":
                    ax.plot(xs, [sel[nm]["roof_samples_per_s"] for nm in names if nm in sel],
                            "k_", ms=10, mew=2, label="roofline" if i == 0 else None)
            ax.set_xticks(range(len(names)))
            ax.set_xticklabels(names, fontsize=7, rotation=25, ha="right")
            if key == "kernels":
                ax.axhline(1.0, color="k", lw=0.8, ls="--")
                ax.set_ylim(0, max([1.2] + [1.15 * r["frac_roof"] for r in rows]))
                ax.set_ylabel("roofline time / measured time")
                ax.set_title(f"kernels, {state} codes (alpha {STATES[state]}): fraction of "
                             "roofline")
            else:
                ax.set_yscale("log")
                lo, hi = ax.get_ylim()
                ax.set_ylim(lo, hi * 30)  # room for the legend above the bars
                ax.set_ylabel("samples per second (median stage, CPU time)")
                ax.set_title(f"modes, {state} codes (alpha {STATES[state]}), N={p['N']}")
            ax.legend(fontsize=7, ncol=3, loc="upper center")
    _common.save_figure(fig, path, dpi=100)


if __name__ == "__main__":
    main()
