"""Purification benchmark: sample size, step decay on a stream, AND, noise.

Setting of all parts: the Purification paper's simplified case (A2') -- ``m = 120`` features,
``n = 30`` components, ``x_i = 1`` with probability ``s / n``, ``s = 3`` -- with the
default ground truth of :func:`streamnmf.datasets.make_purification_data` (topic-like
columns of unit l1 norm, anchor words) and the paper's warm start (A3) with ``l = 1/10`` and
``N(0) = 0``: ``A0 = A* (I + E)``, ``E`` off-diagonal with ``||E||_s = max(max column l1,
max row l1) = 1/10`` (built exactly as ``tests/test_purification.py::warm_start`` does).
The error is :func:`streamnmf.metrics.log_total_correlation_error` ("ln error": the natural
log of the papers' total correlation error, quadratic in the column errors).

Parts (``--parts``, default all):

``samplesize``  Item 1. For N = 2000, 8000, 32000, 128000 samples, Purification with a
    constant step, two protocols: (a) ``fixed``: ``fit`` on one data set of N samples to
    convergence (``eta = 1``, ``n_iter_no_change`` / ``tol`` stop; the fixed point does not
    depend on ``eta``), several data seeds; (b) ``fresh``: every iteration draws N fresh
    samples (Algorithm 1 literally), ``eta = 0.5`` (the default), and the stalled level is the
    median ln error over the second half of the iterations. Reports the slope of ln error vs
    ln N and the drop per 4x.
``stream``  Item 2. Fresh blocks of 50000 samples, ``partial_fit`` per block, with
    ``step_decay=2.0, eta=0.5`` (``eta_t = 1 / (t + 2)``: the running average of the
    iterations' targets, the start counting as one batch) up to 1e7 samples (1e6 with
    ``--quick``); references ``step_decay="sqrt"`` and the constant step to 1e6 (2e5).
``and``  Item 3. AND (``thresholds=0.25`` constant, AND's Theorem 1 case; ``update=
    "stagewise"`` and ``"sgd"``) against Purification on the same stream of fresh blocks
    (10000 samples per block; Purification also with 50000) from the same start; error vs
    samples and vs fitting seconds (``history`` seconds: the library's own timer, which
    leaves out the error evaluation and the data generation), ``repeats`` interleaved runs,
    median seconds. Also a fixed data set (``fit``, many passes).
``noise``  Item 4. Adversarial (N1) and unbiased (N2) noise at C_nu = 0, 0.001, 0.003, 0.01,
    0.03 on a stream (step decay as in ``stream``, 2e6 samples; ``--quick``: 3e5 samples
    and no level 0.001, which needs the lower sampling floor of the full run),
    inverse ``"min-inf"`` and ``"pinv"``; AND stagewise as a reference. Reports the ln error,
    the paper's column l1 error ``max_i ||A_i / ||A_i||_1 - A*_i||_1`` (Theorem 1's remark,
    linear in the column error) and their slopes against ln C_nu.
``aimed``  Item 4, the inverses under noise aimed at a decoder (``noise_kind="aimed"``):
    ``nu = C_nu sign(b_K)``, ``K`` uniform per sample and independent of ``x``, with ``b_k``
    the rows of the min-inf inverse or of the Moore-Penrose inverse of ``A*``. Noise aimed at
    decoder ``B`` moves a decoded value by ``C_nu ||b_K||_1``, the most the bound allows:
    the worst case that Theorem 1's ``||B||_inf`` measures. Both inverses against both aims
    at the nonzero noise levels of ``noise``; reported per decoder: the error under its own
    worst aim and under the other's.

Outputs ``purification.json`` and ``purification_<part>.png`` in ``bench/results`` for the
full run of every part (``bench/results/tmp`` for ``--quick`` or a subset of ``--parts``,
where a subset is merged into the parts saved there; ``--out`` overrides) and prints the
tables. Heavy numerics run single-threaded (``OPENBLAS_NUM_THREADS=1``
is set here unless the environment sets it): the bench machines are small and shared.

Usage: ``OPENBLAS_NUM_THREADS=1 python bench/purification.py [--quick] [--parts a,b]
[--out DIR] [--replot]`` (``--replot``: plots and tables from the saved JSON).
"""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy loads OpenBLAS

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import _common  # noqa: E402
import streamnmf  # noqa: E402
from streamnmf import AND, Purification  # noqa: E402
from streamnmf._engine import pinv_rows  # noqa: E402
from streamnmf._lp import min_inf_inverse_rows  # noqa: E402
from streamnmf.datasets import iter_purification_data, make_purification_data  # noqa: E402
from streamnmf.metrics import log_total_correlation_error  # noqa: E402

M_FEATURES, N_COMPONENTS, SPARSITY, ELL = 120, 30, 3.0, 0.1
ALPHA_PUR = 0.1  # Purification's ReLU offset (library default)
ALPHA_AND = 0.25  # AND's constant threshold of its Theorem 1 (binary weights)
DECAY = dict(learning_rate=0.5, step_decay=2.0)  # eta_t = 0.5 / (1 + t / 2) = 1 / (t + 2)
PARTS = ("samplesize", "stream", "and", "noise", "aimed")

CONFIG = {
    "full": dict(
        sizes=(2000, 8000, 32000, 128000), fixed_seeds=(0, 1, 2, 3, 4), fresh_seeds=(0, 1),
        fresh_iters=30, stream_total=10_000_000, stream_ref_total=1_000_000,
        stream_block=50_000, and_total=1_000_000, and_block=10_000, and_repeats=3,
        and_fixed_n=20_000, noise_levels=(0.0, 0.001, 0.003, 0.01, 0.03),
        noise_total=2_000_000, noise_seeds=(0, 1),
    ),
    "quick": dict(
        sizes=(2000, 8000, 32000, 128000), fixed_seeds=(0,), fresh_seeds=(0,),
        fresh_iters=10, stream_total=1_000_000, stream_ref_total=200_000,
        stream_block=50_000, and_total=150_000, and_block=10_000, and_repeats=1,
        and_fixed_n=10_000, noise_levels=(0.0, 0.003, 0.01, 0.03),
        noise_total=300_000, noise_seeds=(0,),
    ),
}


# -- helpers ---------------------------------------------------------------------------------
def warm_start(C_true, ell, rng):
    """(A3) with Sigma = I, N(0) = 0: rows of ``A* (I + E)``, ``||E||_s = ell``.

    ``E`` is off-diagonal, uniform in [-1, 1] then scaled so that the larger of its largest
    column l1 norm and largest row l1 norm is ``ell`` (as ``tests/test_purification.py``).
    """
    n = C_true.shape[0]
    E = rng.uniform(-1, 1, (n, n))
    np.fill_diagonal(E, 0)
    E *= ell / max(np.abs(E).sum(axis=0).max(), np.abs(E).sum(axis=1).max())
    return ((np.eye(n) + E).T @ C_true).copy()


def start_for(seed, C_true):
    return warm_start(C_true, ELL, np.random.default_rng(1000 + seed))


def truth_for(seed):
    """The ground truth of a seed (the same for every n_samples and noise level)."""
    return iter_purification_data(1, N_COMPONENTS, M_FEATURES, sparsity=SPARSITY,
                                  random_state=seed).components.copy()


def stream_for(seed, total, block, noise=0.0, noise_kind="adversarial"):
    """Fresh (A2') samples; the numbers do not depend on ``block``."""
    return iter_purification_data(total, N_COMPONENTS, M_FEATURES, sparsity=SPARSITY,
                                  noise=noise, noise_kind=noise_kind, block_size=block,
                                  random_state=seed)


def ln_err(C, truth):
    return float(log_total_correlation_error(C, truth))


def l1_column_error(C, truth):
    """Theorem 1's remark: ``max_i ||A_i / ||A_i||_1 - A*_i||_1`` (columns = rows here).

    Rows matched to the truth by index (the warm start keeps the order; checked by the
    largest |cos|), sign fixed, scaled to unit l1 norm; the truth has unit l1 rows.
    """
    C = np.asarray(C, dtype=np.float64)
    t = truth / np.abs(truth).sum(axis=1, keepdims=True)
    cos = (t / np.linalg.norm(t, axis=1, keepdims=True)) @ (
        C / np.linalg.norm(C, axis=1, keepdims=True)).T
    order_ok = bool(np.all(np.argmax(np.abs(cos), axis=1) == np.arange(C.shape[0])))
    sign = np.sign(np.sum(C * t, axis=1, keepdims=True))
    sign[sign == 0] = 1
    Ch = sign * C / np.abs(C).sum(axis=1, keepdims=True)
    return float(np.abs(Ch - t).sum(axis=1).max()), order_ok


def slope(x, y):
    """Least-squares slope of ln y on ln x (x, y positive) and its intercept."""
    x, y = np.log(np.asarray(x, float)), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 2:
        return None
    return float(np.polyfit(x[ok], y[ok], 1)[0])


def run_stream(est, blocks, truth, extra=None):
    """``partial_fit`` every block; per block: samples, fitting seconds, wall, ln error."""
    trace = []
    wall = 0.0
    samples = 0
    for Y, _ in blocks:
        t0 = time.perf_counter()
        est.partial_fit(Y)
        wall += time.perf_counter() - t0
        samples += Y.shape[0]
        point = dict(samples=samples, seconds=float(est._loop.seconds), wall=wall,
                     ln_error=ln_err(est.components_, truth))
        if extra is not None:
            point.update(extra(est))
        trace.append(point)
    return trace


def value_at(trace, samples):
    """The trace point with the given sample count (None if the trace has none)."""
    for p in trace:
        if p["samples"] == samples:
            return p["ln_error"]
    return None


def first_reach(trace, level, key):
    for p in trace:
        if p["ln_error"] <= level:
            return p[key]
    return None


# -- part: sample size ---------------------------------------------------------------------
def part_samplesize(cfg):
    out = {"setting": dict(m=M_FEATURES, n=N_COMPONENTS, s=SPARSITY, ell=ELL, alpha=ALPHA_PUR,
                           fixed=dict(eta=1.0, n_iter=200, n_iter_no_change=10, tol="default"),
                           fresh=dict(eta=0.5, iterations=cfg["fresh_iters"],
                                      stall="median ln error over the second half"))}
    fixed = []
    for seed in cfg["fixed_seeds"]:
        truth = truth_for(seed)
        C0 = start_for(seed, truth)
        for N in cfg["sizes"]:
            Y = make_purification_data(N, N_COMPONENTS, M_FEATURES, sparsity=SPARSITY,
                                       random_state=seed).data
            est = Purification(N_COMPONENTS, thresholds=ALPHA_PUR, learning_rate=1.0, init=C0,
                               n_stages=200)
            t0 = time.perf_counter()
            est.fit(Y)
            wall = time.perf_counter() - t0
            row = dict(seed=seed, N=N, start_ln_error=ln_err(C0, truth),
                       ln_error=ln_err(est.components_, truth), iterations=int(est.n_stages_),
                       final_change=float(est.history_["change"][-1]),
                       seconds=float(est.history_["seconds"][-1]), wall=wall)
            fixed.append(row)
            print(f"  fixed  seed {seed} N {N:7d}: ln error {row['ln_error']:7.3f} after "
                  f"{row['iterations']} iterations ({wall:.1f}s)", flush=True)
    fresh = []
    half = cfg["fresh_iters"] // 2
    for seed in cfg["fresh_seeds"]:
        truth = truth_for(seed)
        C0 = start_for(seed, truth)
        for N in cfg["sizes"]:
            est = Purification(N_COMPONENTS, thresholds=ALPHA_PUR, learning_rate=0.5, init=C0)
            trace = run_stream(est, stream_for(seed, N * cfg["fresh_iters"], N), truth)
            errs = [p["ln_error"] for p in trace]
            row = dict(seed=seed, N=N, ln_errors=errs, stall=float(np.median(errs[half:])),
                       stall_iqr=float(np.subtract(*np.percentile(errs[half:], [75, 25]))),
                       seconds=trace[-1]["seconds"])
            fresh.append(row)
            print(f"  fresh  seed {seed} N {N:7d}: stalled ln error {row['stall']:7.3f} "
                  f"(IQR {row['stall_iqr']:.2f})", flush=True)
    out["fixed"], out["fresh"] = fixed, fresh
    summary = {}
    for name, rows, key in (("fixed", fixed, "ln_error"), ("fresh", fresh, "stall")):
        med = [float(np.median([r[key] for r in rows if r["N"] == N])) for N in cfg["sizes"]]
        s = slope(cfg["sizes"], med)
        drops = [med[i] - med[i + 1] for i in range(len(med) - 1)]
        summary[name] = dict(N=list(cfg["sizes"]), median_ln_error=med, slope=s,
                             drop_per_4x_fit=-s * np.log(4), drops_per_4x=drops,
                             min_drop=min(drops), pass_=bool(min(drops) >= 1.0))
    out["summary"] = summary
    out["acceptance"] = dict(
        criterion="final ln error falls by >= 1 per 4x samples (ideal ln 4 = 1.386)",
        fixed_point=summary["fixed"]["pass_"], fresh_stall=summary["fresh"]["pass_"],
    )
    return out


# -- part: stream with a decreasing step -----------------------------------------------------
def part_stream(cfg):
    seed = 0
    truth = truth_for(seed)
    C0 = start_for(seed, truth)
    B = cfg["stream_block"]
    runs = {
        "step_decay=2.0, eta=0.5": (dict(learning_rate=0.5, step_decay=2.0), cfg["stream_total"]),
        'step_decay="sqrt", eta=0.5': (dict(learning_rate=0.5, step_decay="sqrt"),
                                       cfg["stream_ref_total"]),
        "constant step, eta=0.5": (dict(learning_rate=0.5), cfg["stream_ref_total"]),
    }
    out = {"setting": dict(block=B, seed=seed, alpha=ALPHA_PUR, m=M_FEATURES, n=N_COMPONENTS,
                           s=SPARSITY, start_ln_error=ln_err(C0, truth)), "runs": {}}
    for name, (kw, total) in runs.items():
        t0 = time.perf_counter()
        est = Purification(N_COMPONENTS, thresholds=ALPHA_PUR, init=C0, **kw)
        trace = run_stream(est, stream_for(seed, total, B), truth)
        wall = time.perf_counter() - t0
        samples = np.array([p["samples"] for p in trace])
        errs = np.array([p["ln_error"] for p in trace])
        marks = {f"{m:.0e}": value_at(trace, int(m)) for m in (1e5, 1e6, 1e7) if m <= total}
        sel = sorted({int(np.argmin(np.abs(np.log(samples / g))))
                      for g in np.geomspace(1e5, total, 9)})
        fit = slope(samples[sel], errs[sel]) if total > 1e5 else None
        decades = {}
        for a, b in ((1e5, 1e6), (1e6, 1e7)):
            ea, eb = value_at(trace, int(a)), value_at(trace, int(b))
            if ea is not None and eb is not None:
                decades[f"{a:.0e}-{b:.0e}"] = (eb - ea) / np.log(10)
        out["runs"][name] = dict(params=kw, total=total, trace=trace, ln_error_at=marks,
                                 slope_fit_from_1e5=fit, slope_per_decade=decades,
                                 final_ln_error=float(errs[-1]), seconds=trace[-1]["seconds"],
                                 wall_with_generation=wall,
                                 programmes=est._inverse_cache.get("programmes"),
                                 inverses=est._inverse_cache.get("inverses"))
        print(f"  {name:28s}: " + "  ".join(f"{k}: {v:.2f}" for k, v in marks.items()
                                            if v is not None)
              + f"  final {errs[-1]:.2f}  slope {fit}  ({trace[-1]['seconds']:.1f}s fitting)",
              flush=True)
    main = out["runs"]["step_decay=2.0, eta=0.5"]
    target = int(cfg["stream_total"])
    errs = [p["ln_error"] for p in main["trace"]]
    # "keeps falling": the error in every later tenth of the log-sample range is below the
    # one before (medians of the trace points in log-spaced bins)
    s = np.log([p["samples"] for p in main["trace"]])
    edges = np.linspace(np.log(1e5), s[-1], 6)
    bins = [float(np.median([e for e, x in zip(errs, s) if lo <= x <= hi]))
            for lo, hi in zip(edges[:-1], edges[1:])
            if any(lo <= x <= hi for x in s)]
    out["acceptance"] = dict(
        criterion="ln error keeps falling; ln <= -7 after 1e7 samples (--quick: 1e6)",
        samples=target, ln_error=value_at(main["trace"], target),
        log_bin_medians_from_1e5=bins,
        keeps_falling=bool(all(b2 < b1 for b1, b2 in zip(bins, bins[1:]))),
        reaches_minus_7=bool(value_at(main["trace"], target) <= -7.0),
    )
    return out


# -- part: AND vs Purification ---------------------------------------------------------------
def part_and(cfg):
    seed = 0
    truth = truth_for(seed)
    C0 = start_for(seed, truth)
    total, B = cfg["and_total"], cfg["and_block"]
    methods = {
        'AND stagewise (alpha=1/4)': (lambda: AND(N_COMPONENTS, update="stagewise",
                                                  thresholds=ALPHA_AND, init=C0), B),
        'AND sgd (alpha=1/4)': (lambda: AND(N_COMPONENTS, update="sgd", thresholds=ALPHA_AND,
                                            init=C0), B),
        "Purification step decay": (lambda: Purification(
            N_COMPONENTS, thresholds=ALPHA_PUR, init=C0, **DECAY), B),
        "Purification step decay, 50000/block": (lambda: Purification(
            N_COMPONENTS, thresholds=ALPHA_PUR, init=C0, **DECAY), 50_000),
        "Purification constant eta=0.5": (lambda: Purification(
            N_COMPONENTS, thresholds=ALPHA_PUR, init=C0, learning_rate=0.5), B),
    }
    traces = {name: [] for name in methods}
    loads = []
    for rep in range(cfg["and_repeats"]):  # interleaved: a burst of load hits all alike
        for name, (make, block) in methods.items():
            loads.append(_common.loadavg())
            traces[name].append(run_stream(make(), stream_for(seed, total, block), truth))
    stream = {}
    for name, reps in traces.items():
        first = reps[0]
        same = all([p["ln_error"] for p in r] == [p["ln_error"] for p in first] for r in reps)
        secs = np.median([[p["seconds"] for p in r] for r in reps], axis=0)
        trace = [dict(p, seconds=float(t)) for p, t in zip(first, secs)]
        total_secs = [r[-1]["seconds"] for r in reps]
        row = dict(block=methods[name][1], trace=trace, deterministic_across_repeats=same,
                   total_seconds=_common.summary(total_secs),
                   final_ln_error=trace[-1]["ln_error"],
                   us_per_sample=1e6 * float(np.median(total_secs)) / total)
        for level in (-5, -7, -10, -30):
            row[f"samples_to_{level}"] = first_reach(trace, level, "samples")
            row[f"seconds_to_{level}"] = first_reach(trace, level, "seconds")
        stream[name] = row
        print(f"  stream {name:38s}: final ln {row['final_ln_error']:7.2f}  "
              f"{row['us_per_sample']:.2f} us/sample  samples to -7: {row['samples_to_-7']}"
              f"  seconds to -7: {row['seconds_to_-7']}", flush=True)
    # a fixed data set, fit to convergence (many passes)
    N = cfg["and_fixed_n"]
    Y = make_purification_data(N, N_COMPONENTS, M_FEATURES, sparsity=SPARSITY,
                               random_state=seed).data
    fixed = {}
    for name, make in {
        'AND stagewise (alpha=1/4)': lambda cb: AND(
            N_COMPONENTS, update="stagewise", thresholds=ALPHA_AND, init=C0, n_stages=100,
            callback=cb),
        'AND sgd (alpha=1/4)': lambda cb: AND(
            N_COMPONENTS, update="sgd", thresholds=ALPHA_AND, init=C0, n_stages=100,
            callback=cb),
        "Purification constant eta=1": lambda cb: Purification(
            N_COMPONENTS, thresholds=ALPHA_PUR, learning_rate=1.0, init=C0, n_stages=100,
            callback=cb),
    }.items():
        trace = [dict(samples=0, seconds=0.0, ln_error=ln_err(C0, truth))]

        def cb(est, row, trace=trace):
            trace.append(dict(samples=(int(row["stage"]) + 1) * N,
                              seconds=float(row["seconds"]),
                              ln_error=ln_err(est._loop.C, truth)))
        est = make(cb).fit(Y)
        fixed[name] = dict(trace=trace, final_ln_error=ln_err(est.components_, truth),
                           passes=int(est.n_stages_), seconds=trace[-1]["seconds"])
        print(f"  fixed N={N} {name:32s}: final ln {fixed[name]['final_ln_error']:7.2f} after "
              f"{est.n_stages_} passes, {trace[-1]['seconds']:.2f}s", flush=True)
    best_pur = min((r["final_ln_error"], n) for n, r in stream.items()
                   if n.startswith("Purification"))[1]
    best_and = min((r["final_ln_error"], n) for n, r in stream.items()
                   if n.startswith("AND"))[1]
    pur_final = stream[best_pur]["final_ln_error"]
    # the samples and seconds AND needs to reach Purification's final error
    and_match = {n: dict(samples=first_reach(r["trace"], pur_final, "samples"),
                         seconds=first_reach(r["trace"], pur_final, "seconds"))
                 for n, r in stream.items() if n.startswith("AND")}
    verdict = dict(
        purification_best=best_pur, purification_best_final=pur_final,
        purification_seconds=stream[best_pur]["total_seconds"]["median"],
        and_best=best_and, and_best_final=stream[best_and]["final_ln_error"],
        and_to_purification_final=and_match,
    )
    return dict(setting=dict(block=B, total=total, seed=seed, start_ln_error=ln_err(C0, truth),
                             and_threshold=ALPHA_AND, purification=DECAY,
                             repeats=cfg["and_repeats"], loads=loads),
                stream=stream, fixed=dict(N=N, runs=fixed), verdict=verdict)


# -- part: noise -----------------------------------------------------------------------------
def part_noise(cfg):
    B, total = cfg["stream_block"], cfg["noise_total"]
    levels = cfg["noise_levels"]
    variants = [("adversarial", "min-inf"), ("adversarial", "pinv"),
                ("unbiased", "min-inf"), ("unbiased", "pinv")]
    rows = []
    info = {}
    for seed in cfg["noise_seeds"]:
        truth = truth_for(seed)
        C0 = start_for(seed, truth)
        inv_norm = float(np.abs(min_inf_inverse_rows(truth)).sum(axis=0).max())
        info[seed] = dict(min_inf_norm_of_truth_inverse=inv_norm,
                          theorem_scale=max(M_FEATURES, N_COMPONENTS * inv_norm))
        done0 = {}
        for kind, inverse in variants + [("adversarial", "AND"), ("unbiased", "AND")]:
            for level in levels:
                if level == 0 and inverse in done0:  # no noise: the same data for both kinds
                    rows.append(dict(done0[inverse], kind=kind))
                    continue
                if inverse == "AND":
                    est = AND(N_COMPONENTS, update="stagewise", thresholds=ALPHA_AND, init=C0)
                else:
                    est = Purification(N_COMPONENTS, thresholds=ALPHA_PUR, init=C0,
                                       inverse=inverse, **DECAY)
                t0 = time.perf_counter()
                error = None
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        trace = run_stream(est, stream_for(seed, total, B, level, kind), truth)
                except Exception as exc:  # report, do not hide: a failed run is a result
                    error, trace = repr(exc), []
                wall = time.perf_counter() - t0
                row = dict(seed=seed, kind=kind, inverse=inverse, noise=level, error=error,
                           wall=wall)
                if trace:
                    l1, order_ok = l1_column_error(est.components_, truth)
                    errs = [p["ln_error"] for p in trace]
                    row.update(ln_error=errs[-1], ln_error_trace=errs[::max(1, len(errs) // 20)],
                               l1_column_error=l1, order_ok=order_ok,
                               seconds=trace[-1]["seconds"])
                rows.append(row)
                if level == 0:
                    done0[inverse] = row
                print(f"  seed {seed} {kind:11s} {inverse:7s} C_nu {level:6.3f}: ln error "
                      f"{row.get('ln_error', float('nan')):7.3f}  l1 col err "
                      f"{row.get('l1_column_error', float('nan')):.4f}"
                      f"{'  ' + error if error else ''}  ({wall:.1f}s)", flush=True)
    # medians over seeds and slopes
    table = []
    slopes = {}
    for kind, inverse in variants + [("adversarial", "AND"), ("unbiased", "AND")]:
        med, medl1 = [], []
        for level in levels:
            sel = [r for r in rows if r["kind"] == kind and r["inverse"] == inverse
                   and r["noise"] == level and r.get("ln_error") is not None]
            e = float(np.median([r["ln_error"] for r in sel])) if sel else None
            l1 = float(np.median([r["l1_column_error"] for r in sel])) if sel else None
            med.append(e)
            medl1.append(l1)
            table.append(dict(kind=kind, inverse=inverse, noise=level, ln_error=e,
                              l1_column_error=l1,
                              noise_l1_per_sample=level * M_FEATURES))
        nz = [i for i, lv in enumerate(levels) if lv > 0 and med[i] is not None]
        lv = np.array([levels[i] for i in nz])
        e = np.array([med[i] for i in nz])
        base = med[0]
        # the part of the error due to the noise: subtract the noiseless run (linear units)
        excess = np.exp(e) - np.exp(base) if base is not None else None
        use = [j for j in range(len(nz)) if excess is not None and excess[j] > np.exp(base)]
        local = {f"{levels[nz[j]]}-{levels[nz[j + 1]]}":
                 (e[j + 1] - e[j]) / np.log(lv[j + 1] / lv[j]) for j in range(len(nz) - 1)}
        slopes[f"{kind}/{inverse}"] = dict(
            ln_error_all_nonzero=slope(lv, e),
            ln_error_local=local,
            excess_over_noiseless=(slope(lv[use], np.log(excess[use])) if len(use) >= 2
                                   else None),
            excess_levels=[float(lv[j]) for j in use],
            l1_column_error_all_nonzero=slope(lv, np.log([medl1[i] for i in nz])),
            l1_column_error_excess_levels=(slope(lv[use], np.log([medl1[nz[j]] for j in use]))
                                           if len(use) >= 2 else None),
        )
    med = {(t["kind"], t["inverse"], t["noise"]): t["ln_error"] for t in table}
    adv_vs_unb = {lv: (med[("adversarial", "min-inf", lv)], med[("unbiased", "min-inf", lv)])
                  for lv in levels if lv > 0}
    mininf_vs_pinv = {lv: (med[("adversarial", "min-inf", lv)], med[("adversarial", "pinv", lv)])
                      for lv in levels if lv > 0}
    per_seed = {}
    for lv in levels:
        if lv == 0:
            continue
        pairs = []
        for seed in cfg["noise_seeds"]:
            a = [r.get("ln_error") for r in rows if r["seed"] == seed and r["noise"] == lv
                 and r["kind"] == "adversarial" and r["inverse"] == "min-inf"]
            b = [r.get("ln_error") for r in rows if r["seed"] == seed and r["noise"] == lv
                 and r["kind"] == "adversarial" and r["inverse"] == "pinv"]
            pairs.append((a[0], b[0]))
        per_seed[lv] = pairs
    return dict(
        setting=dict(block=B, total=total, seeds=list(cfg["noise_seeds"]), levels=list(levels),
                     purification=DECAY, alpha=ALPHA_PUR, and_threshold=ALPHA_AND,
                     signal_l1_per_sample=SPARSITY, truth=info),
        runs=rows, table=table, slopes=slopes,
        adversarial_vs_unbiased_min_inf=adv_vs_unb,
        min_inf_vs_pinv_adversarial=mininf_vs_pinv,
        min_inf_vs_pinv_adversarial_per_seed=per_seed,
    )


# -- part: noise aimed at a decoder -------------------------------------------------------------
def part_aimed(cfg):
    B, total = cfg["stream_block"], cfg["noise_total"]
    levels = [lv for lv in cfg["noise_levels"] if lv > 0]
    inverses = ("min-inf", "pinv")
    rows, info = [], {}
    for seed in cfg["noise_seeds"]:
        truth = truth_for(seed)
        C0 = start_for(seed, truth)
        # (m, n): column k is the decoder row b_k of component k
        decoders = {"min-inf": min_inf_inverse_rows(truth), "pinv": pinv_rows(truth)}
        info[seed] = {f"row_l1_{k}": dict(max=float(np.abs(D).sum(axis=0).max()),
                                          mean=float(np.abs(D).sum(axis=0).mean()))
                      for k, D in decoders.items()}
        for level in levels:
            for aim in inverses:
                V = np.sign(decoders[aim].T)
                for inverse in inverses:
                    # the decoded value K moves by C_nu |v_K . b_K| through this decoder
                    moved = level * np.abs(np.sum(V * decoders[inverse].T, axis=1))
                    est = Purification(N_COMPONENTS, thresholds=ALPHA_PUR, init=C0,
                                       inverse=inverse, **DECAY)
                    stream = iter_purification_data(
                        total, N_COMPONENTS, M_FEATURES, sparsity=SPARSITY, noise=level,
                        noise_kind="aimed", noise_directions=V, block_size=B,
                        random_state=seed)
                    t0 = time.perf_counter()
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        trace = run_stream(est, stream, truth)
                    l1, order_ok = l1_column_error(est.components_, truth)
                    row = dict(seed=seed, aim=aim, inverse=inverse, noise=level,
                               ln_error=trace[-1]["ln_error"], l1_column_error=l1,
                               order_ok=order_ok, decoded_shift_max=float(moved.max()),
                               decoded_shift_mean=float(moved.mean()),
                               wall=time.perf_counter() - t0)
                    rows.append(row)
                    print(f"  seed {seed} C_nu {level:6.3f} aimed at {aim:7s} decoder "
                          f"{inverse:7s}: ln error {row['ln_error']:7.3f}  decoded shift "
                          f"max {row['decoded_shift_max']:.3f}  ({row['wall']:.1f}s)",
                          flush=True)
    table = []
    for level in levels:
        for aim in inverses:
            for inverse in inverses:
                sel = [r for r in rows if (r["noise"], r["aim"], r["inverse"]) ==
                       (level, aim, inverse)]
                table.append(dict(noise=level, aim=aim, inverse=inverse,
                                  ln_error=float(np.median([r["ln_error"] for r in sel])),
                                  decoded_shift_max=float(np.median(
                                      [r["decoded_shift_max"] for r in sel]))))
    med = {(t["noise"], t["aim"], t["inverse"]): t["ln_error"] for t in table}
    verdict = {}
    for level in levels:
        worst = {inv: max(med[(level, aim, inv)] for aim in inverses) for inv in inverses}
        own = {inv: med[(level, inv, inv)] for inv in inverses}
        cells = {aim: med[(level, aim, "min-inf")] - med[(level, aim, "pinv")]
                 for aim in inverses}
        verdict[str(level)] = dict(
            worst_aim=worst, own_aim=own, min_inf_minus_pinv_per_aim=cells,
            min_inf_worst_not_above_pinv_worst=bool(worst["min-inf"] <= worst["pinv"]))
    return dict(setting=dict(block=B, total=total, seeds=list(cfg["noise_seeds"]),
                             levels=levels, purification=DECAY, alpha=ALPHA_PUR, truth=info),
                runs=rows, table=table, verdict=verdict)


# -- profile ---------------------------------------------------------------------------------
def profile_stream():
    """Where a Purification stage's time goes on a stream (10 blocks of 10000)."""
    truth = truth_for(0)
    C0 = start_for(0, truth)
    blocks = [Y for Y, _ in stream_for(0, 110_000, 10_000)]
    est = Purification(N_COMPONENTS, thresholds=ALPHA_PUR, init=C0, **DECAY)
    est.partial_fit(blocks[0])
    text = _common.profile_top(lambda: [est.partial_fit(Y) for Y in blocks[1:]], n=12)
    cache = est._inverse_cache
    return dict(text=text, programmes=cache.get("programmes"), inverses=cache.get("inverses"),
                note="programmes = LPs solved; inverses = min-inf inverses computed; "
                     "n_components = 30 programmes per inverse without basis reuse")


# -- plots -----------------------------------------------------------------------------------
def plot_all(res, stem, mode):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []

    def save(fig, part):
        path = stem.with_name(f"{stem.name}_{part}.png")
        _common.save_figure(fig, path, dpi=120)
        paths.append(path)

    if "samplesize" in res:
        r = res["samplesize"]
        fig, ax = plt.subplots(figsize=(6, 4.5))
        for name, key, rows, marker in (("fixed data set, fit to convergence (eta=1)",
                                         "ln_error", r["fixed"], "o"),
                                        ("fresh batches, constant eta=0.5: stalled level",
                                         "stall", r["fresh"], "s")):
            s = r["summary"]["fixed" if key == "ln_error" else "fresh"]
            line, = ax.plot(s["N"], s["median_ln_error"], marker=marker,
                            label=f"{name} (slope {s['slope']:.2f})")
            ax.scatter([x["N"] for x in rows], [x[key] for x in rows], s=10,
                       color=line.get_color(), alpha=0.5)
        N = np.array(r["summary"]["fixed"]["N"], float)
        m0 = r["summary"]["fixed"]["median_ln_error"][0]
        ax.plot(N, m0 - np.log(N / N[0]), "k:", lw=1)
        ax.text(N[-1], m0 - np.log(N[-1] / N[0]), " slope -1", va="center", fontsize=8)
        ax.axhline(r["fixed"][0]["start_ln_error"], color="gray", lw=0.8, ls="--")
        ax.text(N[0], r["fixed"][0]["start_ln_error"] + 0.1, "warm start (l = 1/10)",
                fontsize=8, color="gray")
        ax.set_xscale("log")
        ax.set_xlabel("samples per iteration N (log scale)")
        ax.set_ylabel("final ln total correlation error")
        ax.set_title(f"Purification sample-size limit, (A2') m=120 n=30 s=3 ({mode})")
        ax.legend(fontsize=8)
        save(fig, "samplesize")
    if "stream" in res:
        r = res["stream"]
        fig, ax = plt.subplots(figsize=(6, 4.5))
        for name, run in r["runs"].items():
            ax.plot([p["samples"] for p in run["trace"]], [p["ln_error"] for p in run["trace"]],
                    label=name)
        main = r["runs"]["step_decay=2.0, eta=0.5"]["trace"]
        x = np.array([1e5, main[-1]["samples"]], float)
        y0 = value_at(main, 100000)
        if y0 is not None:
            ax.plot(x, y0 - np.log(x / x[0]), "k:", lw=1)
            ax.text(x[-1], y0 - np.log(x[-1] / x[0]), " slope -1", fontsize=8, va="center")
        ax.axhline(-7, color="gray", lw=0.8, ls="--")
        ax.set_xscale("log")
        ax.set_xlabel("samples consumed (log scale)")
        ax.set_ylabel("ln total correlation error")
        ax.set_title(f"Purification on a stream, 50000 fresh samples/iteration ({mode})")
        ax.legend(fontsize=8)
        save(fig, "stream")
    if "and" in res:
        r = res["and"]
        fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
        for name, run in r["stream"].items():
            t = run["trace"]
            axes[0].plot([p["samples"] for p in t], [p["ln_error"] for p in t], label=name)
            axes[1].plot([p["seconds"] for p in t], [p["ln_error"] for p in t])
        for name, run in r["fixed"]["runs"].items():
            t = run["trace"]
            axes[2].plot([p["samples"] for p in t], [p["ln_error"] for p in t],
                         marker=".", label=f"{name} (fixed data)")
        axes[0].set_xscale("log")
        axes[0].set_xlabel("samples consumed (log scale)")
        axes[1].set_xscale("log")
        axes[1].set_xlabel("fitting seconds (log scale)")
        axes[2].set_xlabel(f"samples consumed = passes x {r['fixed']['N']}")
        for ax in axes:
            ax.set_ylabel("ln total correlation error")
        axes[0].set_title("stream of fresh samples: vs samples")
        axes[1].set_title("stream of fresh samples: vs seconds")
        axes[2].set_title(f"one data set of {r['fixed']['N']} samples (fit)")
        axes[0].legend(fontsize=8)
        axes[2].legend(fontsize=8)
        fig.suptitle(f"AND (constant threshold 1/4) vs Purification, (A2') exact data ({mode})")
        save(fig, "and")
    if "noise" in res:
        r = res["noise"]
        levels = [lv for lv in r["setting"]["levels"] if lv > 0]
        fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
        for key in r["slopes"]:
            kind, inverse = key.split("/")
            rows = {t["noise"]: t for t in r["table"] if t["kind"] == kind
                    and t["inverse"] == inverse}
            label = (f"AND stagewise, {kind}" if inverse == "AND"
                     else f"Purification {inverse}, {kind}")
            ls = "-" if kind == "adversarial" else "--"
            line, = axes[0].plot(levels, [rows[lv]["ln_error"] for lv in levels], ls,
                                 marker="o", label=label)
            if inverse != "AND":  # AND's noiseless level is round-off, far off the scale
                axes[0].axhline(rows[0.0]["ln_error"], color=line.get_color(), lw=0.6, ls=":")
            axes[1].plot(levels, [rows[lv]["l1_column_error"] for lv in levels], ls,
                         marker="o", color=line.get_color())
        lv = np.array(levels)
        anchor = {t["noise"]: t["ln_error"] for t in r["table"]
                  if t["kind"] == "adversarial" and t["inverse"] == "min-inf"}
        y0 = anchor.get(0.01)
        if y0 is not None and 0.01 in levels:
            axes[0].plot(lv, y0 + 2 * np.log(lv / 0.01), "k:", lw=1)
            axes[0].text(lv[-1], y0 + 2 * np.log(lv[-1] / 0.01), " slope 2", fontsize=8)
        shown = [t["ln_error"] for t in r["table"] if t["ln_error"] is not None
                 and (t["noise"] > 0 or t["inverse"] != "AND")]
        if shown:
            axes[0].set_ylim(min(shown) - 1, max(shown) + 1)
        for ax in axes:
            ax.set_xscale("log")
            ax.set_xlabel("noise bound C_nu (log scale)")
        axes[1].set_yscale("log")
        axes[0].set_ylabel("final ln total correlation error")
        axes[1].set_ylabel("max column l1 error of normalised A (log scale)")
        axes[0].set_title("paper's error (dotted: noiseless level)")
        axes[1].set_title("Theorem 1 remark: ||A_i/||A_i||_1 - A*_i||_1")
        axes[0].legend(fontsize=8, loc="lower right")
        fig.suptitle(f"Noise: {r['setting']['total']:.0e} streamed samples, step decay "
                     f"({mode})")
        save(fig, "noise")
    if "aimed" in res:
        r = res["aimed"]
        levels = r["setting"]["levels"]
        med = {(t["noise"], t["aim"], t["inverse"]): t["ln_error"] for t in r["table"]}
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for inverse, color in (("min-inf", "C0"), ("pinv", "C3")):
            for aim, ls in (("min-inf", "--"), ("pinv", "-")):
                ax.plot(levels, [med[(lv, aim, inverse)] for lv in levels], ls, color=color,
                        marker="o", label=f"decoder {inverse}, noise aimed at {aim} rows")
        ax.set_xscale("log")
        ax.set_xlabel("noise bound C_nu (log scale)")
        ax.set_ylabel("final ln total correlation error")
        ax.set_title(f"Purification under noise aimed at a decoder, "
                     f"{r['setting']['total']:.0e} samples ({mode})")
        ax.legend(fontsize=8)
        save(fig, "aimed")
    return paths


# -- report ----------------------------------------------------------------------------------
def report(res):
    lines = []
    if "samplesize" in res:
        r = res["samplesize"]["summary"]
        rows = [dict(N=N, fixed=r["fixed"]["median_ln_error"][i],
                     fresh=r["fresh"]["median_ln_error"][i]) for i, N in enumerate(r["fixed"]["N"])]
        lines += ["", "Item 1: final ln error vs samples per iteration N (median over seeds)",
                  _common.table(rows, [("N", "N"), ("fixed", "fixed data, converged"),
                                       ("fresh", "fresh batches, stall")], "{:.3f}"),
                  f"slope vs ln N: fixed {r['fixed']['slope']:.3f}, fresh "
                  f"{r['fresh']['slope']:.3f}; drops per 4x: fixed "
                  f"{np.round(r['fixed']['drops_per_4x'], 2).tolist()}, fresh "
                  f"{np.round(r['fresh']['drops_per_4x'], 2).tolist()}",
                  f"acceptance (>= 1 per 4x): fixed {r['fixed']['pass_']}, fresh "
                  f"{r['fresh']['pass_']}"]
    if "stream" in res:
        r = res["stream"]
        rows = [dict(name=n, **{k: v for k, v in run["ln_error_at"].items()},
                     final=run["final_ln_error"], slope=run["slope_fit_from_1e5"],
                     secs=run["seconds"]) for n, run in r["runs"].items()]
        lines += ["", "Item 2: stream, ln error at samples consumed",
                  _common.table(rows, [("name", "run"), ("1e+05", "1e5"), ("1e+06", "1e6"),
                                       ("1e+07", "1e7"), ("final", "final"),
                                       ("slope", "slope from 1e5"), ("secs", "fit s")],
                                "{:.3f}"),
                  f"acceptance: {r['acceptance']}"]
    if "and" in res:
        r = res["and"]
        rows = [dict(name=n, final=v["final_ln_error"], us=v["us_per_sample"],
                     s5=v["samples_to_-5"], s7=v["samples_to_-7"], t7=v["seconds_to_-7"],
                     s30=v["samples_to_-30"], t30=v["seconds_to_-30"],
                     tot=v["total_seconds"]["median"])
                for n, v in r["stream"].items()]
        lines += ["", f"Item 3: AND vs Purification, stream of {r['setting']['total']:.0e} "
                      "fresh samples",
                  _common.table(rows, [("name", "method"), ("final", "final ln"),
                                       ("us", "us/sample"), ("s5", "samples to -5"),
                                       ("s7", "samples to -7"), ("t7", "s to -7"),
                                       ("s30", "samples to -30"), ("t30", "s to -30"),
                                       ("tot", "total s")], "{:.3g}"),
                  "fixed data set: " + ", ".join(
                      f"{n}: ln {v['final_ln_error']:.2f} in {v['passes']} passes "
                      f"{v['seconds']:.2f}s" for n, v in r["fixed"]["runs"].items()),
                  f"verdict: {r['verdict']}"]
    if "noise" in res:
        r = res["noise"]
        levels = r["setting"]["levels"]
        med = {(t["kind"], t["inverse"], t["noise"]): t for t in r["table"]}
        rows = []
        for key in r["slopes"]:
            kind, inverse = key.split("/")
            row = dict(name=f"{kind}/{inverse}")
            for lv in levels:
                row[str(lv)] = med[(kind, inverse, lv)]["ln_error"]
            row["slope"] = r["slopes"][key]["ln_error_all_nonzero"]
            row["excess"] = r["slopes"][key]["excess_over_noiseless"]
            row["l1slope"] = r["slopes"][key]["l1_column_error_all_nonzero"]
            rows.append(row)
        lines += ["", "Item 4: final ln error vs noise bound C_nu (median over seeds)",
                  _common.table(rows, [("name", "noise/inverse")]
                                + [(str(lv), f"C_nu={lv}") for lv in levels]
                                + [("slope", "slope"), ("excess", "excess slope"),
                                   ("l1slope", "l1 col err slope")], "{:.3f}")]
    if "aimed" in res:
        r = res["aimed"]
        levels = r["setting"]["levels"]
        med = {(t["noise"], t["aim"], t["inverse"]): t for t in r["table"]}
        rows = []
        for aim in ("min-inf", "pinv"):
            for inverse in ("min-inf", "pinv"):
                row = dict(name=f"aimed at {aim} / decoder {inverse}")
                for lv in levels:
                    row[str(lv)] = med[(lv, aim, inverse)]["ln_error"]
                    row[f"s{lv}"] = med[(lv, aim, inverse)]["decoded_shift_max"]
                rows.append(row)
        for inverse in ("min-inf", "pinv"):
            rows.append(dict(name=f"worst aim / decoder {inverse}", **{
                str(lv): r["verdict"][str(lv)]["worst_aim"][inverse] for lv in levels}))
        lines += ["", "Item 4b: noise aimed at a decoder's rows, final ln error (median over "
                      "seeds); shift = C_nu max_k |sign(b_k aimed) . b_k decoder|",
                  _common.table(rows, [("name", "noise / decoder")]
                                + [(str(lv), f"C_nu={lv}") for lv in levels]
                                + [(f"s{lv}", f"shift {lv}") for lv in levels], "{:.3f}"),
                  "min-inf worst <= pinv worst: " + ", ".join(
                      f"C_nu={lv}: {r['verdict'][str(lv)]['min_inf_worst_not_above_pinv_worst']}"
                      for lv in levels)]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small run (< 3 minutes)")
    parser.add_argument("--parts", default=",".join(PARTS),
                        help=f"comma-separated subset of {','.join(PARTS)}")
    parser.add_argument("--out", default=None,
                        help="output folder (default: bench/results, or bench/results/tmp "
                             "for --quick and a subset of --parts)")
    parser.add_argument("--replot", action="store_true",
                        help="redraw the plots and the tables from the saved JSON only")
    args = parser.parse_args(argv)
    mode = "quick" if args.quick else "full"
    stem = _common.output_stem("purification", args.quick, args.out, set(
        p for p in args.parts.split(",") if p) == set(PARTS))
    if args.replot:
        import json

        with open(stem.with_suffix(".json")) as f:
            res = json.load(f)["results"]
        print(report(res))
        print("wrote", ", ".join(str(p) for p in plot_all(res, stem, mode)))
        return
    cfg = CONFIG[mode]
    parts = [p for p in args.parts.split(",") if p]
    unknown = set(parts) - set(PARTS)
    if unknown:
        parser.error(f"unknown parts {sorted(unknown)}; choose from {PARTS}")
    machine = _common.machine_info()
    t_start = time.perf_counter()
    streamnmf.warmup()
    res = {}
    part_info = {}
    for name, fn in (("samplesize", part_samplesize), ("stream", part_stream),
                     ("and", part_and), ("noise", part_noise), ("aimed", part_aimed)):
        if name not in parts:
            continue
        print(f"[{name}]", flush=True)
        la0, t0 = _common.loadavg(), time.perf_counter()
        res[name] = fn(cfg)
        part_info[name] = dict(wall=time.perf_counter() - t0, loadavg_start=la0,
                               loadavg_end=_common.loadavg())
        print(f"  ({part_info[name]['wall']:.0f}s, load {la0} -> {_common.loadavg()})", flush=True)
    res["profile"] = profile_stream()
    total = time.perf_counter() - t_start
    text = report(res)
    print(text)
    print("\nprofile of 10 stream stages (Purification, 10000 samples/stage):")
    print(res["profile"]["text"])
    for info in part_info.values():  # parts of a saved file may come from other runs
        info.update(date=machine["date"], commit=machine["git"]["commit"])
    path = stem.with_suffix(".json")
    saved = None
    if path.exists() and set(parts) != set(PARTS):  # keep the parts not rerun
        import json

        with open(path) as f:
            saved = json.load(f)
    if saved is not None and saved.get("mode") == mode:
        res = {**saved["results"], **res}
        part_info = {**saved.get("parts", {}), **part_info}
        text = report(res)
    doc = dict(mode=mode, config=cfg, parts=part_info, total_wall=total, results=res,
               report=text, machine=machine)
    path = _common.save_json(doc, path)
    paths = plot_all(res, stem, mode)
    print(f"wrote {path} and {', '.join(str(p) for p in paths)} in {total:.0f}s")


if __name__ == "__main__":
    main()
