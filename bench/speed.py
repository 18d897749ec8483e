"""Speed benchmark of the AND engine against bare NumPy references measured in the same run.

(a) Stagewise stage time on dense in-memory data (m=1000, n=100, N=5000 and N=20000): the
    median over stages (the first stage of every fit excluded) of the differences of
    ``history_["seconds"]`` of ``AND(update="stagewise")``, against the three dense products a
    stage needs at least, ``Y @ D`` (N,m)x(m,n), ``Z.T @ Y`` and ``Z.T @ Z``, timed with the
    same repeats, interleaved fit by fit. Acceptance: ratio <= 1.3. Three code states, each held
    fixed by a constant threshold (``tol=0``, ``n_iter_no_change=None``):

    * ``dir-start``: DIR data from the paper's start ``A*(I+U)``, alpha 0.1 (early stages; sparse
      codes, so the engine walks the support with numba instead of BLAS);
    * ``dir-converged``: the working matrix and last threshold of a real stagewise fit (library
      defaults) stopped at ln error <= -40: the threshold is small, the tiny Dirichlet weights
      pass it and the codes are dense (BLAS path);
    * ``ctm-ref-converged``: the same on the near one-hot CTM-ref weights: sparse codes near
      the optimum.

    A breakdown times the engine's pieces (decode, statistics, solve, objective, pinv) alone.
(b) ``update="sgd"`` samples per second (batch_size 1, stage_length = the block) against a
    per-sample NumPy loop doing the same thing with the same fixed decoding matrix, threshold
    and step: ``v = D^T y; S = {k: v_k >= alpha}; z = v_S; r = y - C_S^T z; C_S += eta z r^T``.
    Dense rows and CSR rows (word-count documents, 200 tokens each, from the DIR data), float64
    and float32, over a sweep of shapes (m, n) = (100, 10), (300, 30), (1000, 100) (N and the
    loop's sample count scaled by 1000 / m), and at (100, 10) with dense codes (CTM's
    logistic-normal weights, threshold 0.01: about 80-90% of the codes non-zero, so each
    update writes most rows of C). On non-negative data the library projects every step on
    ``C >= 0`` and so does the loop. Acceptance: >= 30x (>= 25x with dense codes). The two
    results are compared after one stage on the same samples (relative difference of the
    working matrices). Each row also gives ``ceiling_decode = numpy_us_per_sample /
    lib_decode_us``: both sides decode every sample (m n multiply-adds; the loop as a BLAS
    matvec, the library as one GEMM per block), so even with a free update the library
    cannot beat the loop by more than that.
(c) Compile time: a fresh subprocess with ``NUMBA_CACHE_DIR`` set to an empty temporary folder
    (numba compiles and writes its cache there), then a second fresh subprocess with the same
    folder (numba loads the cache); in each, the time of the import and of the first and second
    call of every path (stagewise dense, sgd dense f64/f32, sgd CSR).
(d) Dense decode with few components: ``_kernels.dense_decode_narrow`` (dot products,
    thresholded in the same pass) against BLAS's GEMM followed by ``threshold_codes``, the two
    paths of ``_engine.decode``, on DIR data at m = 100 and 1000 features, n = 2 ... 16
    components, float64 and float32, one BLAS thread, timed round-robin; the engine takes the
    narrow kernel up to ``_engine.NARROW_DECODE_COMPONENTS`` components. Then the decode's
    GEMM alone with a C-ordered output (what the engine does) and a Fortran-ordered one.

(a) and (b) are run under every BLAS thread count of ``--threads`` (threadpoolctl), because on
this shared 2-core machine multi-threaded OpenBLAS is erratic under load (see the report).

Usage: ``python bench/speed.py [--quick] [--out DIR] [--threads 2 1]
[--parts stage sgd decode compile profile]``. The full run of every part with default options
writes ``bench/results/speed.json`` and ``.png``; ``--quick``, a run of only some parts or
other options write to ``bench/results/tmp`` (``--out`` overrides) and leave the full report
alone.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import _common  # noqa: E402
import streamnmf  # noqa: E402
from streamnmf import _engine  # noqa: E402
from streamnmf.datasets import make_dataset, make_init  # noqa: E402

N_COMPONENTS, N_FEATURES = 100, 1000


def fixed_state_fit(data, init, alpha, n_stages, update="stagewise", **kw):
    """AND with a constant threshold and no early stop: every stage does the same work."""
    est = streamnmf.AND(init.shape[0], update=update, init=init, thresholds=float(alpha),
                        n_stages=n_stages, tol=0.0, n_iter_no_change=None, **kw)
    est.fit(data)
    return est


# -- (a) stagewise stage vs bare products --------------------------------------------------------
def bare_products(Y, D, Z):
    def run():
        Z_ = Y @ D
        Z_.T @ Y
        Z.T @ Z  # the thresholded codes' Gram (same shape and cost as Z_.T @ Z_)
    return run


def breakdown(Y, C, alpha, repeats):
    """Seconds of each engine piece of one stagewise stage, alone (medians)."""
    from streamnmf._and import StagewiseRule

    rule = StagewiseRule()
    D = np.ascontiguousarray(rule.decoding_matrix(C))
    kind = rule.kind
    out = {}
    parts = {}

    def dec():
        parts["dec"] = _engine.decode(Y, D, alpha, kind)

    out["decode (Y@D + threshold)"] = _common.time_calls(dec, repeats)
    Z, z_indptr, z_indices, v_min = parts["dec"]

    def stats():
        s = _engine.StageStats(C.shape[0], C.shape[1])
        s.add(Y, Z, z_indptr, z_indices, v_min, with_products=True)
        parts["stats"] = s

    out["statistics (Z^T Y, Z^T Z)"] = _common.time_calls(stats, repeats)
    S = parts["stats"]
    out["solve (Cholesky)"] = _common.time_calls(lambda: parts.__setitem__(
        "C", rule.end_stage(C, S)), repeats)
    out["objective (squared_error)"] = _common.time_calls(
        lambda: S.squared_error(parts["C"]), repeats)
    out["pinv (QR)"] = _common.time_calls(lambda: rule.decoding_matrix(parts["C"]), repeats)
    return {k: _common.summary(v)["median"] for k, v in out.items()}, Z


def converged_state(name, target=-40.0, max_stages=200):
    """A real stagewise fit (library defaults) from the paper's start, stopped once the ln
    error is <= ``target``: its working matrix and the threshold of its last stage."""
    from streamnmf.metrics import log_total_correlation_error

    Y, truth, _ = make_dataset(name, 5000, N_COMPONENTS, N_FEATURES, random_state=0)
    est = streamnmf.AND(
        N_COMPONENTS, init=make_init(truth, random_state=1), n_stages=max_stages,
        callback=lambda e, row: log_total_correlation_error(e._loop.C, truth) <= target)
    est.fit(Y)
    ln_error = log_total_correlation_error(est.components_, truth)
    return est.components_, float(est.history_["alpha"][-1]), ln_error, int(est.n_stages_)


STATES = {
    # state: (data set, how the working matrix is made, threshold)
    "dir-start": ("dir", "start", 0.1),
    "dir-converged": ("dir", "fit", None),
    "ctm-ref-converged": ("ctm-ref", "fit", None),
}


def bench_stage(quick, threads, states_cache):
    from threadpoolctl import threadpool_limits

    sizes = (5000,) if quick else (5000, 20000)
    n_fits = 3 if quick else 4
    n_stages = 5 if quick else 7
    rows = []
    for N in sizes:
        cache = {}
        for state, (name, how, alpha) in STATES.items():
            if name not in cache:
                cache[name] = make_dataset(name, N, N_COMPONENTS, N_FEATURES, random_state=0)
            Y, truth, _ = cache[name]
            if how == "start":
                init, ln_error = make_init(truth, random_state=1), None
            else:
                # components are the same for every N (same seed), so fit once at N=5000
                if state not in states_cache:
                    with threadpool_limits(1):
                        states_cache[state] = converged_state(name)
                init, alpha, ln_error, _ = states_cache[state]
            with threadpool_limits(threads):
                fixed_state_fit(Y[:500], init, alpha, 2)  # compile / warm up
                parts, Z = breakdown(Y, init, alpha, 3)
                ref = bare_products(Y, np.ascontiguousarray(_engine.pinv_rows(init)), Z)
                ref()
                stage_times, ref_times, density = [], [], []
                for _ in range(n_fits):
                    est = fixed_state_fit(Y, init, alpha, n_stages)
                    stage_times += list(np.diff(est.history_["seconds"]))  # drops stage 0
                    density += list(est.history_["density"][1:])
                    ref_times += _common.time_calls(ref, n_stages - 1, warmup=0)
            stage = _common.summary(stage_times)
            bare = _common.summary(ref_times)
            ratio = stage["median"] / bare["median"]
            rows.append(dict(
                threads=threads, N=N, state=state, alpha=alpha, ln_error=ln_error,
                density=float(np.median(density)),
                stage_s=stage["median"], stage_iqr=stage["iqr"], bare_s=bare["median"],
                bare_iqr=bare["iqr"], ratio=ratio, ok=bool(ratio <= 1.3),
                n_stage_samples=stage["n"], breakdown=parts,
            ))
            print(f"  threads={threads} N={N:6d} {state:18s} density {rows[-1]['density']:.3f} "
                  f"stage {stage['median'] * 1e3:7.1f} ms  bare {bare['median'] * 1e3:7.1f} ms"
                  f"  ratio {ratio:5.2f}", flush=True)
    return rows


# -- (b) sgd vs per-sample NumPy loop --------------------------------------------------------
def numpy_sgd(Y, C, D, alpha, eta, nonnegative=False):
    """The reference: one sample at a time, plain NumPy (dense rows or CSR rows); with
    ``nonnegative`` every step is projected on ``C >= 0``, as the library does on
    non-negative data."""
    C = C.copy()
    if sp.issparse(Y):
        data, indices, indptr = Y.data, Y.indices, Y.indptr
        for i in range(Y.shape[0]):
            lo, hi = indptr[i], indptr[i + 1]
            yv, yi = data[lo:hi], indices[lo:hi]
            v = yv @ D[yi]
            S = np.flatnonzero(v >= alpha)
            z = v[S]
            r = -(z @ C[S])
            r[yi] += yv
            C[S] += eta * np.outer(z, r)
            if nonnegative:
                C[S] = np.maximum(C[S], 0)
    else:
        for i in range(Y.shape[0]):
            y = Y[i]
            v = y @ D
            S = np.flatnonzero(v >= alpha)
            z = v[S]
            r = y - z @ C[S]
            C[S] += eta * np.outer(z, r)
            if nonnegative:
                C[S] = np.maximum(C[S], 0)
    return C


def sgd_pieces(Y, C, D, alpha, eta, n_ref, repeats=5):
    """Microseconds per sample of the library's two sgd pieces alone (the block decode and the
    numba update kernel) and of the NumPy loop's decode alone (its floor), timed round-robin
    (decode, update, loop decode, decode, ...) so that load on the shared machine hits all
    three alike."""
    from streamnmf import _kernels as K

    N = Y.shape[0]
    out = {}
    fns = {}  # name: (fn, untimed setup or None, samples per call)
    box, state = {}, {}
    try:
        def dec():
            box["z"] = _engine.decode(Y, D, alpha, K.HARD)

        dec()
        Z, zp, zi, _ = box["z"]

        def setup():
            state.update(C=C.copy(), G=np.zeros_like(C), t=np.zeros(C.shape[0], np.bool_),
                         b=np.zeros(2))

        if sp.issparse(Y):
            def upd():
                K.sgd_update_csr(Y.data, Y.indices, Y.indptr, Z, zp, zi, state["C"], eta, 1,
                                 state["G"], state["t"], state["b"], False)
        else:
            def upd():
                K.sgd_update_dense(Y, Z, zp, zi, state["C"], eta, 1, state["G"], state["t"],
                                   state["b"], False)
        fns["lib_decode_us"] = (dec, None, N)
        fns["lib_update_us"] = (upd, setup, N)
    except Exception as exc:  # the kernels are internal: their signatures may change
        out["pieces_error"] = repr(exc)
    if sp.issparse(Y):
        def ref_decode():
            for i in range(n_ref):
                lo, hi = Y.indptr[i], Y.indptr[i + 1]
                Y.data[lo:hi] @ D[Y.indices[lo:hi]]
    else:
        def ref_decode():
            for i in range(n_ref):
                Y[i] @ D
    fns["numpy_decode_us"] = (ref_decode, None, n_ref)
    times = {k: [] for k in fns}
    for rep in range(repeats + 1):  # the first round is a warm-up
        for k, (fn, su, _) in fns.items():
            if su is not None:
                su()
            t0 = time.perf_counter()
            fn()
            if rep:
                times[k].append(time.perf_counter() - t0)
    for k, (_, _, n) in fns.items():
        out[k] = _common.summary(times[k])["median"] / n * 1e6
    return out


def word_documents(data, n_tokens, rng):
    """CSR rows of word frequencies: ``n_tokens`` words drawn from each row's distribution."""
    p = np.clip(data, 0, None)
    p /= p.sum(axis=1, keepdims=True)
    counts = np.vstack([rng.multinomial(n_tokens, row) for row in p])
    return sp.csr_matrix(counts / n_tokens)


#: (n_features m, n_components n) of the sgd sweep; the last is the paper's setting
SGD_SHAPES = ((100, 10), (300, 30), (N_FEATURES, N_COMPONENTS))
#: (m, n, data set, threshold) of the dense-code rows: CTM's logistic-normal weights give
#: every sample most components, so the update touches most rows of C per sample
SGD_DENSE_CODES = ((100, 10, "ctm", 0.01),)


def bench_sgd(quick, threads):
    rows = []
    for m, n in SGD_SHAPES:
        rows += bench_sgd_shape(quick, threads, m, n)
    for m, n, data, alpha in SGD_DENSE_CODES:
        rows += bench_sgd_shape(quick, threads, m, n, data=data, alpha=alpha)
    return rows


def bench_sgd_shape(quick, threads, m, n, data="dir", alpha=0.1):
    from threadpoolctl import threadpool_limits

    # more samples for smaller shapes (about the same bytes per stage), so that the per-stage
    # fixed work (pinv, Python) and the timer resolution stay small against the samples' work
    scale = max(1, N_FEATURES // m)
    N = (2000 if quick else 5000) * scale
    n_ref = (300 if quick else 1000) * scale
    n_rounds = 5 if quick else 7
    n_stages = 4 if quick else 5
    Y64, truth, _ = make_dataset(data, N, n, m, random_state=0)
    init64 = make_init(truth, random_state=1)
    docs = word_documents(Y64, 200, np.random.default_rng(2))
    rows = []
    for fmt in ("dense", "csr"):
        for dtype in (np.float64, np.float32):
            Y = (docs if fmt == "csr" else Y64).astype(dtype)
            if fmt == "csr":
                Y.sort_indices()
            init = init64.astype(dtype)
            D = np.ascontiguousarray(_engine.pinv_rows(init))
            # the step the library would choose on this data: 0.5 / mean ||z||^2
            Z0 = _engine.decode(Y, D, alpha, 0)[0]
            eta = float(0.5 / np.mean(np.einsum("ij,ij->i", Z0, Z0, dtype=np.float64)))
            eta_t = dtype(eta)
            alpha_t = dtype(alpha)
            with threadpool_limits(threads):
                # correctness: one stage over the same n_ref samples, both ways
                est = fixed_state_fit(Y[:n_ref], init, alpha, 1, update="sgd",
                                      learning_rate=eta, stage_length=n_ref, batch_size=1)
                nonnegative = bool(est.nonnegative_)
                C_ref = numpy_sgd(Y[:n_ref], init, D, alpha_t, eta_t, nonnegative)
                rel_diff = float(np.linalg.norm(est.components_.astype(np.float64) - C_ref)
                                 / np.linalg.norm(C_ref))
                lib_times, ref_times, density = [], [], []
                for _ in range(n_rounds):
                    est = fixed_state_fit(Y, init, alpha, n_stages, update="sgd",
                                          learning_rate=eta, stage_length=N, batch_size=1)
                    lib_times += list(np.diff(est.history_["seconds"]) / N)
                    density += list(est.history_["density"])
                    t0 = time.perf_counter()
                    numpy_sgd(Y[:n_ref], init, D, alpha_t, eta_t, nonnegative)
                    ref_times.append((time.perf_counter() - t0) / n_ref)
                pieces = sgd_pieces(Y, init, D, alpha_t, eta_t, n_ref, 5 if quick else 9)
            lib = _common.summary(lib_times)["median"]
            ref = _common.summary(ref_times)["median"]
            speedup = ref / lib
            # The library decodes every sample too (m n multiply-adds, in one GEMM per block):
            # with a free update it would take lib_decode_us per sample, so the speed-up over
            # the loop cannot exceed numpy_us_per_sample / lib_decode_us.
            lib_dec = pieces.get("lib_decode_us")
            ceiling = ref * 1e6 / lib_dec if lib_dec else None
            rows.append(dict(
                threads=threads, m=m, n=n, data=data, alpha=alpha, format=fmt,
                dtype=np.dtype(dtype).name, N=N,
                n_ref=n_ref, nnz_per_row=float(Y.nnz / Y.shape[0]) if fmt == "csr" else m,
                density=float(np.median(density)), eta=eta,
                lib_samples_per_s=1.0 / lib, numpy_samples_per_s=1.0 / ref,
                speedup=speedup, ok=bool(speedup >= 30), rel_diff_one_stage=rel_diff,
                lib_us_per_sample=lib * 1e6, numpy_us_per_sample=ref * 1e6,
                ceiling_decode=ceiling,
                speedup_of_ceiling=speedup / ceiling if ceiling else None,
                numpy_decode_share=pieces["numpy_decode_us"] / (ref * 1e6),
                decode_ratio=(pieces["numpy_decode_us"] / lib_dec) if lib_dec else None,
                **pieces,
            ))
            print(f"  threads={threads} sgd {data} m={m:4d} n={n:3d} {fmt:5s} "
                  f"{rows[-1]['dtype']:7s} "
                  f"density {rows[-1]['density']:.3f}: library {1 / lib:10.0f} samples/s, "
                  f"numpy loop {1 / ref:8.0f} samples/s, speed-up {speedup:6.1f}x (ceiling "
                  f"{ceiling or float('nan'):6.1f}x; one-stage rel diff {rel_diff:.1e})",
                  flush=True)
    return rows


# -- (d) narrow decode ------------------------------------------------------------------------
DECODE_COMPONENTS = (2, 3, 4, 5, 6, 8, 10, 16)


def bench_decode(quick):
    """Microseconds per sample of the two dense decode paths (median of round-robin repeats)."""
    from threadpoolctl import threadpool_limits

    from streamnmf import _kernels as K

    rows = []
    for m in (100, N_FEATURES):
        N = (20000 if quick else 100000) * (N_FEATURES // m) // 10
        for n in DECODE_COMPONENTS:
            Y64, truth, _ = make_dataset("dir", N, n, m, random_state=0)
            D64 = _engine.pinv_rows(make_init(truth, random_state=1))
            for dtype in (np.float64, np.float32):
                Y, D = Y64.astype(dtype), D64.astype(dtype)
                alpha = dtype(0.1)

                def narrow():
                    Z = np.empty((N, n), dtype)
                    indptr = np.empty(N + 1, np.int64)
                    indices = np.empty(N * n, np.int32)
                    K.dense_decode_narrow(Y, np.ascontiguousarray(D.T), alpha, K.HARD, Z,
                                          indptr, indices)

                def gemm():
                    Z = Y @ D
                    K.threshold_codes(Z, alpha, K.HARD, np.empty(N + 1, np.int64), Z)

                with threadpool_limits(1):  # the warm-up round compiles
                    times = _common.interleaved({"narrow": narrow, "gemm": gemm},
                                                repeats=5 if quick else 9)
                us = {k: _common.summary(v)["median"] / N * 1e6 for k, v in times.items()}
                rows.append(dict(m=m, n=n, dtype=np.dtype(dtype).name, N=N,
                                 narrow_us=us["narrow"], gemm_threshold_us=us["gemm"],
                                 speedup=us["gemm"] / us["narrow"],
                                 engine_uses_narrow=n <= _engine.NARROW_DECODE_COMPONENTS))
                print(f"  m={m:4d} n={n:2d} {rows[-1]['dtype']:7s}: narrow {us['narrow']:.3f} us, "
                      f"GEMM + threshold {us['gemm']:.3f} us a sample: "
                      f"{rows[-1]['speedup']:.2f}x", flush=True)
    return rows


#: (n_features, n_components) of the GEMM layout comparison in part (d)
LAYOUT_SHAPES = ((100, 10), (300, 30), (1000, 16), (1000, 100))


def bench_gemm_layout(quick):
    """The decode's product in the two output layouts BLAS can be asked for.

    ``Y @ D`` writes a C-ordered ``Z`` (OpenBLAS then computes ``D^T Y^T`` with the short
    dimension first); ``np.matmul(Y, D, out=<Fortran-ordered>)`` has it compute ``Y D`` with
    the long dimension first. The library uses the first; this measures what the second
    would gain (a thresholding pass would then also copy into C order, ~0.1 us a sample).
    """
    from threadpoolctl import threadpool_limits

    rows = []
    rng = np.random.default_rng(0)
    for m, n in LAYOUT_SHAPES:
        N = 20000 if quick else 50000
        for dtype in (np.float64, np.float32):
            Y = rng.random((N, m)).astype(dtype)
            D = (rng.standard_normal((m, n)) / np.sqrt(m)).astype(dtype)
            out_f = np.empty((N, n), dtype=dtype, order="F")
            fns = {"c_order": lambda: Y @ D,
                   "fortran_order": lambda: np.matmul(Y, D, out=out_f)}
            with threadpool_limits(1):
                times = _common.interleaved(fns, repeats=5 if quick else 9)
            us = {k: _common.summary(v)["median"] / N * 1e6 for k, v in times.items()}
            rows.append(dict(m=m, n=n, dtype=np.dtype(dtype).name, N=N,
                             c_order_us=us["c_order"], fortran_order_us=us["fortran_order"],
                             speedup=us["c_order"] / us["fortran_order"]))
            print(f"  GEMM m={m:4d} n={n:3d} {rows[-1]['dtype']:7s}: C-ordered Z "
                  f"{us['c_order']:.3f} us, Fortran-ordered Z {us['fortran_order']:.3f} us a "
                  f"sample: {rows[-1]['speedup']:.2f}x", flush=True)
    return rows


# -- (c) compile time -------------------------------------------------------------------------
CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
import numpy as np, scipy.sparse as sp
t1 = time.perf_counter()
import streamnmf
from streamnmf.datasets import make_dataset, make_init
t2 = time.perf_counter()
Y, truth, _ = make_dataset("dir", 400, 20, 200, random_state=0)
init = make_init(truth, random_state=1)
Ycsr = sp.csr_matrix(np.where(Y > 2e-3, Y, 0.0))
cases = [
    ("stagewise dense f64", dict(update="stagewise"), Y),
    ("stagewise csr f64", dict(update="stagewise"), Ycsr),
    ("sgd dense f64", dict(update="sgd"), Y),
    ("sgd dense f32", dict(update="sgd"), Y.astype(np.float32)),
    ("sgd csr f64", dict(update="sgd"), Ycsr),
]
out = {"import numpy/scipy": t1 - t0, "import streamnmf": t2 - t1, "calls": {}}
for name, kw, X in cases:
    times = []
    for _ in range(2):
        est = streamnmf.AND(20, init=init.astype(X.dtype), n_stages=2, **kw)
        t = time.perf_counter()
        est.fit(X)
        times.append(time.perf_counter() - t)
    out["calls"][name] = {"first": times[0], "second": times[1]}
print("RESULT" + json.dumps(out))
"""


def run_child(cache_dir):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache_dir))
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", CHILD], cwd=str(HERE.parent), env=env,
                          capture_output=True, text=True, timeout=900)
    wall = time.perf_counter() - t0
    line = [s for s in proc.stdout.splitlines() if s.startswith("RESULT")]
    if proc.returncode or not line:
        raise RuntimeError(f"compile-time child failed:\n{proc.stdout}\n{proc.stderr}")
    res = json.loads(line[0][len("RESULT"):])
    res["process_wall"] = wall
    return res


def bench_compile():
    with tempfile.TemporaryDirectory(prefix="numba-cache-") as cache_dir:
        cold = run_child(cache_dir)
        n_files = sum(len(f) for _, _, f in os.walk(cache_dir))
        cached = run_child(cache_dir)
    rows = []
    for name in cold["calls"]:
        c, w = cold["calls"][name], cached["calls"][name]
        rows.append(dict(call=name, cold_first=c["first"], cached_first=w["first"],
                         warm=min(c["second"], w["second"]),
                         compile_s=c["first"] - min(c["second"], w["second"]),
                         cache_load_s=w["first"] - min(c["second"], w["second"])))
    total = dict(
        cold_total_first_calls=sum(c["first"] for c in cold["calls"].values()),
        cached_total_first_calls=sum(c["first"] for c in cached["calls"].values()),
        warm_total=sum(r["warm"] for r in rows),
        cold_import=cold["import streamnmf"], cached_import=cached["import streamnmf"],
        cold_process_wall=cold["process_wall"], cached_process_wall=cached["process_wall"],
        cache_files_written=n_files,
    )
    return rows, total, dict(cold=cold, cached=cached)


# -- profiles ----------------------------------------------------------------------------------
def profiles(threads):
    from threadpoolctl import threadpool_limits

    Y, truth, _ = make_dataset("dir", 5000, N_COMPONENTS, N_FEATURES, random_state=0)
    init = make_init(truth, random_state=1)
    out = {}
    with threadpool_limits(threads):
        fixed_state_fit(Y[:500], init, 0.1, 2)
        out["stagewise dir N=5000, 8 stages"] = _common.profile_top(
            lambda: streamnmf.AND(N_COMPONENTS, init=init, n_stages=8).fit(Y), 12)
        out["sgd dir N=5000, 3 stages"] = _common.profile_top(
            lambda: streamnmf.AND(N_COMPONENTS, update="sgd", init=init, n_stages=3).fit(Y), 12)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=None,
                        help="output folder (default: bench/results, or bench/results/tmp "
                             "for --quick and non-default options)")
    parser.add_argument("--threads", nargs="+", type=int, default=None,
                        help="BLAS thread counts to run (a) and (b) under "
                             "(default: the machine's CPU count, then 1; --quick: 1)")
    parser.add_argument("--parts", nargs="+",
                        default=["stage", "sgd", "decode", "compile", "profile"],
                        choices=["stage", "sgd", "decode", "compile", "profile"])
    args = parser.parse_args(argv)
    stem = _common.output_stem("speed", args.quick, args.out, _common.canonical_run(
        parser, args, ignore=("parts",)) and set(args.parts) == set(parser.get_default("parts")))
    threads = args.threads or ([1] if args.quick else sorted({os.cpu_count() or 1, 1},
                                                             reverse=True))
    t_start = time.perf_counter()
    payload = dict(benchmark="speed", quick=args.quick, threads=threads,
                   machine=_common.machine_info())

    if "stage" in args.parts:
        print("(a) stagewise stage vs bare products", flush=True)
        states_cache = {}
        rows = [r for t in threads for r in bench_stage(args.quick, t, states_cache)]
        payload["stage_states"] = {k: dict(alpha=v[1], ln_error=v[2], stages=v[3])
                                   for k, v in states_cache.items()}
        print("converged states:", payload["stage_states"])
        payload["stage"] = rows
        print()
        print(_common.table(rows, [
            ("threads", "thr"), ("N", "N"), ("state", "state"), ("density", "density"),
            ("stage_s", "stage s"), ("bare_s", "bare s"), ("ratio", "ratio"),
            ("ok", "<= 1.3")]))
        print("\nbreakdown of one stage (seconds, each piece alone):")
        keys = list(rows[0]["breakdown"])
        brows = [dict(threads=r["threads"], N=r["N"], state=r["state"], **r["breakdown"])
                 for r in rows]
        print(_common.table(brows, [("threads", "thr"), ("N", "N"), ("state", "state")]
                            + [(k, k.split(" (")[0]) for k in keys]))
        print(flush=True)

    if "sgd" in args.parts:
        print("(b) sgd samples/s vs per-sample NumPy loop", flush=True)
        rows = [r for t in threads for r in bench_sgd(args.quick, t)]
        payload["sgd"] = rows
        print()
        print(_common.table(rows, [
            ("threads", "thr"), ("m", "m"), ("n", "n"), ("format", "input"), ("dtype", "dtype"),
            ("density", "code density"), ("lib_samples_per_s", "library samples/s"),
            ("numpy_samples_per_s", "numpy samples/s"), ("speedup", "speed-up"),
            ("ceiling_decode", "ceiling"), ("ok", ">= 30x"),
            ("rel_diff_one_stage", "rel diff")], floatfmt="{:.3g}"))
        print("ceiling = numpy loop us/sample / library decode us/sample: the speed-up if the "
              "library's update were free (both sides decode every sample, m n multiply-adds)")
        print("\nmicroseconds per sample: library total = its block decode + update kernel (+ "
              "stage overhead); NumPy loop total and its decode alone (share of the loop)")
        print(_common.table(rows, [
            ("threads", "thr"), ("m", "m"), ("n", "n"), ("format", "input"), ("dtype", "dtype"),
            ("lib_us_per_sample", "lib total"), ("lib_decode_us", "lib decode"),
            ("lib_update_us", "lib update"), ("numpy_us_per_sample", "numpy total"),
            ("numpy_decode_us", "numpy decode"), ("numpy_decode_share", "decode share"),
            ("decode_ratio", "decode numpy/lib")], floatfmt="{:.3g}"))
        print(flush=True)

    if "decode" in args.parts:
        print("(d) dense decode with few components: narrow kernel vs GEMM + threshold",
              flush=True)
        payload["decode"] = bench_decode(args.quick)
        print(f"engine: narrow kernel up to {_engine.NARROW_DECODE_COMPONENTS} components")
        payload["gemm_layout"] = bench_gemm_layout(args.quick)
        print(flush=True)

    if "compile" in args.parts:
        print("(c) compile time (fresh processes, NUMBA_CACHE_DIR = empty temp dir)", flush=True)
        rows, total, raw = bench_compile()
        payload["compile"] = dict(rows=rows, totals=total, raw=raw)
        print(_common.table(rows, [
            ("call", "first call of"), ("cold_first", "cold s"), ("cached_first", "cached s"),
            ("warm", "warm s"), ("compile_s", "compile s"), ("cache_load_s", "cache load s")]))
        print({k: round(v, 3) if isinstance(v, float) else v for k, v in total.items()})
        print(flush=True)

    if "profile" in args.parts:
        prof = profiles(threads[-1])
        payload["profiles"] = dict(threads=threads[-1], top=prof)
        for name, text in prof.items():
            print(f"cProfile, {name} (threads={threads[-1]}), by tottime:")
            print("\n".join(text.splitlines()[:16]))

    payload["total_seconds"] = time.perf_counter() - t_start
    path = _common.save_json(payload, stem.with_suffix(".json"))
    if "stage" in payload or "sgd" in payload:
        plot(payload, stem.with_suffix(".png"))
    print(f"total {payload['total_seconds']:.0f} s; wrote {path}")


def plot(payload, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [k for k in ("stage", "sgd") if k in payload]
    widths = [max(6.5, 0.45 * len(payload[k])) for k in panels]
    fig, axes = plt.subplots(1, len(panels), figsize=(sum(widths), 5.5), squeeze=False,
                             gridspec_kw=dict(width_ratios=widths))
    for ax, key in zip(axes[0], panels):
        rows = payload[key]
        if key == "stage":
            labels = [f"{r['state']}\nN={r['N']} t={r['threads']}" for r in rows]
            values = [r["ratio"] for r in rows]
            ax.axhline(1.3, color="r", ls="--", lw=1, label="target 1.3")
            ax.set_ylabel("stage time / bare products")
            ax.set_title("(a) stagewise stage vs Y@D + Z^T Y + Z^T Z")
        else:
            labels = [f"m={r.get('m', N_FEATURES)} n={r.get('n', N_COMPONENTS)} {r['format']} "
                      f"{r['dtype'].replace('float', 'f')} t={r['threads']}" for r in rows]
            values = [r["speedup"] for r in rows]
            ax.axhline(30, color="r", ls="--", lw=1, label="target 30x")
            ceil = [(i, r["ceiling_decode"]) for i, r in enumerate(rows)
                    if r.get("ceiling_decode")]
            if ceil:
                ax.plot(*zip(*ceil), "k_", ms=12, mew=2,
                        label="ceiling: loop us / library decode us")
            ax.set_yscale("log")
            ax.set_ylabel("speed-up: library / NumPy loop samples per s")
            ax.set_title("(b) sgd, batch 1, vs a per-sample NumPy loop")
        ax.bar(range(len(values)), values, color="C0")
        ax.set_xticks(range(len(values)))
        ax.set_xticklabels(labels, fontsize=7, rotation=40, ha="right")
        ax.legend()
    _common.save_figure(fig, path)


if __name__ == "__main__":
    main()
