"""A wide sparse text corpus: AND's time and memory against scikit-learn's ``MiniBatchNMF``.

Setting: the WordNet 3.0 glosses as tf-idf rows (``bench/real_table.py``'s ``wordnet-tfidf``:
117,195 x 25,146 CSR, float64, 751,433 non-zeros, built on first use into ``--data-dir`` from
Debian's ``wordnet-base``; nothing is downloaded), rank k = 100 (``--rank``). Many features
and few values per row: the (k x n_features) matrices an algorithm keeps (components, the
decoding matrix, the statistics) are larger than the data itself, so this is where their
copies show.

Every measurement runs in a fresh subprocess with BLAS at one thread (``OPENBLAS_NUM_THREADS``,
``OMP_NUM_THREADS``, ``MKL_NUM_THREADS`` = 1), the methods' subprocesses interleaved over
``--repeats`` rounds (A B C A B C ...); times are medians, on the wall clock and on the
process's CPU clock (the machine is shared: CPU time is the time the work took while it had
a core). What is timed:

* ``AND one stage``: ``streamnmf.AND(k, n_stages=1).fit(Y)``, the start (SPA over the
  leading rows) included, one stage of the default length (a pass). ``streamnmf.warmup()``
  runs first in the same process, so numba's compilation (or cache load) is not in the
  timing; its seconds are reported apart.
* ``AND stream``: one pass as a stream, every default: ``AND(k)`` and ``partial_fit`` on
  row blocks of 2000 rows (a stage per call; the blocks are sliced before the clock starts),
  after ``warmup()``.
* ``MiniBatchNMF (max_iter=1)``: ``MiniBatchNMF(k, max_iter=1, batch_size=1024,
  init="nndsvda", random_state=0).fit(Y)``, its NNDSVDa start included. In scikit-learn
  ``max_iter`` counts iterations over the complete data set, so this asks for one epoch, but
  its early stopping (``tol=1e-4`` on the change of H, ``max_no_improvement=10`` mini-batches
  without a better smoothed cost) can end the epoch sooner: the steps it ran are reported.
* ``MiniBatchNMF (full epoch)``: the same with ``tol=0, max_no_improvement=None``, so that
  all ``ceil(n_samples / 1024)`` mini-batches run: one whole pass.

Ratios: MiniBatchNMF seconds (full epoch, and ``max_iter=1`` as it stops) / AND one-stage
seconds and / AND stream-pass seconds.

Memory (``/proc/self/status``): RSS after ``import streamnmf``, after loading the data and
after the warmup; the peak RSS (VmHWM) of the whole process and of the fit alone (the peak is
reset, through ``/proc/self/clear_refs``, just before the fit where the kernel allows it).
The working memory of a fit is its peak less the RSS just before it, and also, as in
``real_table.py``, the process peak less the RSS after loading the data; both in MiB and in
copies of a (k x n_features) float64 matrix (``k * n_features * 8`` bytes). Also the bytes of
the leading rows a data-driven start reads (``streamnmf.io.sources.leading_rows`` over the
in-memory source of ``fit``: ``INIT_BYTES`` (64 MiB) counted as dense rows, at least one
block; for CSR the rows are kept sparse, so what is read is the CSR bytes of those rows).

Leaks: one process fits ``AND(k, n_stages=1)`` ten times in a loop (fit, ``del``, next; no
explicit ``gc.collect``) and records the RSS after each fit; the growth is fit 10 less fit 1.

References: AND is Li & Liang, "Provable Alternating Gradient Descent for Non-negative Matrix
Factorization with Strong Correlations", ICML 2017; ``MiniBatchNMF`` is scikit-learn's online
NMF after Lefevre, Bach & Fevotte, "Online algorithms for nonnegative matrix factorization
with the Itakura-Saito divergence", WASPAA 2011 (multiplicative updates per mini-batch). The
loader is ``bench/real_table.py``'s (``load``), which builds the data with
``data/build_wordnet.py``.

    python bench/wide_corpus.py [--quick] [--rank 100] [--repeats 3] [--data-dir DIR]
                                [--out DIR]

``--quick``: the first 20,000 rows, k = 20, one round (a few minutes). The full run with
default options writes ``bench/results/wide_corpus.json``; ``--quick`` and other options write
to ``bench/results/tmp`` (``--out`` overrides).
"""

import argparse
import gc
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from _common import (  # noqa: E402
    RESULTS, canonical_run, loadavg, machine_info, output_stem, save_json, summary, table,
)

DATASET = "wordnet-tfidf"
STREAM_ROWS = 2000
MBNMF_BATCH = 1024
QUICK_ROWS, QUICK_RANK = 20_000, 20
LOOP_FITS = 10
SEED = 0
MODES = ("and-fit", "and-stream", "minibatchnmf", "minibatchnmf-epoch")
LABELS = {"and-fit": "AND one stage", "and-stream": "AND stream (one pass)",
          "minibatchnmf": "MiniBatchNMF (max_iter=1)",
          "minibatchnmf-epoch": "MiniBatchNMF (full epoch)"}
#: what makes ``minibatchnmf-epoch`` run every mini-batch of its epoch
NO_EARLY_STOP = dict(tol=0.0, max_no_improvement=None)


# -- memory of this process ---------------------------------------------------------------------
def status_mib(field):
    """A ``/proc/self/status`` field (``VmRSS``, ``VmHWM``) in MiB; None where absent."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def rss_mib():
    rss = status_mib("VmRSS")
    if rss is None:  # no /proc/self/status: statm's resident pages
        with open("/proc/self/statm") as f:
            rss = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    return rss


def peak_mib():
    peak = status_mib("VmHWM")
    if peak is None:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return peak


def reset_peak():
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def clocks():
    return time.perf_counter(), time.process_time()


def since(start):
    wall, cpu = clocks()
    return wall - start[0], cpu - start[1]


# -- data --------------------------------------------------------------------------------------
def load_rows(data_dir, rows=None):
    """WordNet tf-idf (CSR, float64), its first ``rows`` rows when given."""
    from real_table import load

    Y, _ = load(data_dir, DATASET)
    if rows is not None and rows < Y.shape[0]:
        Y = Y[:rows]
    Y.sort_indices()
    return Y


def leading_rows_info(Y):
    """What a data-driven start of ``fit(Y)`` reads: rows, their CSR bytes, the budget."""
    from streamnmf.io import sources
    from streamnmf.io.inputs import as_source

    source = as_source(Y)
    lead = sources.leading_rows(source.blocks(), source.n_features, source.n_samples)
    csr_bytes = int(lead.data.nbytes + lead.indices.nbytes + lead.indptr.nbytes)
    return dict(block_rows=int(source.block_rows), rows=int(lead.shape[0]),
                nnz=int(lead.nnz), csr_bytes=csr_bytes,
                budget_bytes=int(sources.INIT_BYTES),
                budget_rows=int(sources.INIT_BYTES // (Y.shape[1] * Y.dtype.itemsize)),
                dense_equivalent_bytes=int(lead.shape[0]) * Y.shape[1] * Y.dtype.itemsize)


# -- one measurement, in its own process ----------------------------------------------------------
def measure(mode, data_dir, rows, k):
    """Run ``mode`` once in this process; print one JSON line."""
    import warnings

    warnings.simplefilter("ignore")  # MiniBatchNMF's convergence warning at max_iter=1
    out = dict(mode=mode, rss_start_mib=rss_mib())
    import streamnmf

    out["rss_import_mib"] = rss_mib()
    Y = load_rows(data_dir, rows)
    blocks = None
    if mode == "and-stream":  # sliced (copied, as a stream delivers them) before the clock
        blocks = [Y[lo:lo + STREAM_ROWS] for lo in range(0, Y.shape[0], STREAM_ROWS)]
    if mode.startswith("minibatchnmf"):
        from sklearn.decomposition import MiniBatchNMF
    gc.collect()
    out["rss_loaded_mib"] = rss_mib()
    out["data_bytes"] = int(Y.data.nbytes + Y.indices.nbytes + Y.indptr.nbytes)
    if not mode.startswith("minibatchnmf"):
        start = clocks()
        streamnmf.warmup()
        out["warmup_seconds"], out["warmup_cpu_seconds"] = since(start)
    gc.collect()
    out["rss_before_fit_mib"] = rss_mib()
    out["peak_before_fit_mib"] = peak_mib()
    out["peak_reset"] = reset_peak()
    if mode == "and-fit":
        start = clocks()
        model = streamnmf.AND(k, n_stages=1).fit(Y)
        seconds = since(start)
        out.update(n_stages=int(model.n_stages_), density=float(model.history_["density"][-1]),
                   objective=float(model.history_["objective"][-1]))
    elif mode == "and-stream":
        start = clocks()
        model = streamnmf.AND(k)
        first = None
        for block in blocks:
            model.partial_fit(block)
            if first is None:
                first = since(start)
        seconds = since(start)
        out.update(first_call_seconds=first[0], first_call_cpu_seconds=first[1],
                   n_calls=len(blocks), n_stages=int(model.n_stages_),
                   drift_flags=int(np.sum(model.history_["drift"])),
                   density=float(np.mean(model.history_["density"])),
                   objective_last=float(model.history_["objective"][-1]))
    else:
        start = clocks()
        extra = NO_EARLY_STOP if mode == "minibatchnmf-epoch" else {}
        model = MiniBatchNMF(k, max_iter=1, batch_size=MBNMF_BATCH, init="nndsvda",
                             random_state=SEED, **extra).fit(Y)
        seconds = since(start)
        steps_per_epoch = -(-Y.shape[0] // MBNMF_BATCH)
        out.update(n_iter=int(model.n_iter_), n_steps=int(model.n_steps_),
                   steps_per_epoch=int(steps_per_epoch),
                   full_epoch=bool(model.n_steps_ >= steps_per_epoch),
                   reconstruction_err=float(model.reconstruction_err_))
    out["seconds"], out["cpu_seconds"] = seconds
    out["peak_fit_mib"] = peak_mib()
    out["rss_after_fit_mib"] = rss_mib()
    print(json.dumps(out))


def measure_loop(data_dir, rows, k, n_fits=LOOP_FITS):
    """RSS after each of ``n_fits`` one-stage fits in this process; print one JSON line."""
    import streamnmf

    rss_import = rss_mib()
    Y = load_rows(data_dir, rows)
    rss_loaded = rss_mib()
    streamnmf.warmup()
    rss_warm = rss_mib()
    after_fit, after_del, seconds = [], [], []
    for _ in range(n_fits):
        t0 = time.perf_counter()
        model = streamnmf.AND(k, n_stages=1).fit(Y)
        seconds.append(time.perf_counter() - t0)
        after_fit.append(rss_mib())
        del model
        after_del.append(rss_mib())
    print(json.dumps(dict(rss_import_mib=rss_import, rss_loaded_mib=rss_loaded,
                          rss_warm_mib=rss_warm, rss_after_fit_mib=after_fit,
                          rss_after_del_mib=after_del, seconds=seconds,
                          peak_mib=peak_mib(),
                          growth_mib=after_fit[-1] - after_fit[0])))


def run_child(args, *extra):
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    cmd = [sys.executable, __file__, *extra, "--data-dir", str(args.data_dir),
           "--rank", str(args.k)]
    if args.rows is not None:
        cmd += ["--rows", str(args.rows)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=3600)
    if done.returncode:
        raise RuntimeError(f"{' '.join(extra)} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- the report -----------------------------------------------------------------------------------
def med(runs, key):
    values = [r[key] for r in runs if r.get(key) is not None]
    return float(np.median(values)) if values else None


def summarize(runs, matrix_mib):
    """One row per method: medians over its runs, memory as the largest over them."""
    rows = {}
    for mode, items in runs.items():
        row = dict(method=LABELS[mode], seconds=med(items, "seconds"),
                   cpu_seconds=med(items, "cpu_seconds"),
                   seconds_all=[r["seconds"] for r in items],
                   cpu_seconds_all=[r["cpu_seconds"] for r in items],
                   seconds_summary=summary([r["seconds"] for r in items]),
                   warmup_seconds=med(items, "warmup_seconds"),
                   rss_import_mib=med(items, "rss_import_mib"),
                   rss_loaded_mib=med(items, "rss_loaded_mib"),
                   rss_before_fit_mib=med(items, "rss_before_fit_mib"),
                   peak_mib=max(max(r["peak_fit_mib"], r["peak_before_fit_mib"])
                                for r in items),
                   peak_reset=all(r["peak_reset"] for r in items))
        # the fit's own working memory: its peak (reset before it) less the RSS before it
        row["working_mib"] = max(
            r["peak_fit_mib"] - r["rss_before_fit_mib"] if r["peak_reset"]
            else r["peak_fit_mib"] - r["rss_loaded_mib"] for r in items)
        # as real_table.py: the process's peak less the RSS after loading the data
        row["above_loaded_mib"] = max(max(r["peak_fit_mib"], r["peak_before_fit_mib"])
                                      - r["rss_loaded_mib"] for r in items)
        row["working_copies"] = row["working_mib"] / matrix_mib
        row["above_loaded_copies"] = row["above_loaded_mib"] / matrix_mib
        for key in ("n_stages", "n_calls", "drift_flags", "first_call_seconds", "density",
                    "n_iter", "n_steps", "steps_per_epoch", "full_epoch",
                    "reconstruction_err"):
            if key in items[-1]:
                row[key] = items[-1][key]
        rows[mode] = row
    for mode in ("and-fit", "and-stream"):
        for reference, key in (("minibatchnmf-epoch", "epoch_over_this"),
                               ("minibatchnmf", "mbnmf_over_this")):
            if reference in rows and mode in rows:
                rows[mode][key] = rows[reference]["seconds"] / rows[mode]["seconds"]
                rows[mode][key + "_cpu"] = (rows[reference]["cpu_seconds"]
                                            / rows[mode]["cpu_seconds"])
    return rows


def report(result):
    columns = [("method", "method"), ("seconds", "wall s"), ("cpu_seconds", "CPU s"),
               ("epoch_over_this", "epoch / this"), ("epoch_over_this_cpu", "(CPU)"),
               ("mbnmf_over_this", "max_iter=1 / this"),
               ("warmup_seconds", "warmup s"), ("rss_before_fit_mib", "RSS before MiB"),
               ("peak_mib", "peak MiB"), ("working_mib", "working MiB"),
               ("working_copies", "x (k x n)"), ("above_loaded_mib", "above data MiB"),
               ("above_loaded_copies", "x (k x n)")]
    lead, loop = result["leading_rows"], result["loop"]
    shape = result["shape"]
    lines = [f"WordNet tf-idf {shape[0]} x {shape[1]} (nnz {result['nnz']}, CSR "
             f"{result['data_mib']:.1f} MiB), rank {result['rank']}, "
             f"{result['repeats']} round(s); one (k x n_features) float64 matrix = "
             f"{result['matrix_mib']:.1f} MiB",
             "", table(list(result["methods"].values()), columns), "",
             f"leading rows of the start: {lead['rows']} rows (one CSR block of "
             f"{lead['block_rows']}; budget {lead['budget_bytes'] / 2**20:.0f} MiB = "
             f"{lead['budget_rows']} dense rows), {lead['nnz']} non-zeros, "
             f"{lead['csr_bytes'] / 2**20:.2f} MiB as CSR "
             f"({lead['dense_equivalent_bytes'] / 2**20:.0f} MiB if they were dense)",
             f"{LOOP_FITS} one-stage fits in one process: RSS after each (MiB) "
             + " ".join(f"{v:.0f}" for v in loop["rss_after_fit_mib"])
             + f"; growth fit 1 -> {LOOP_FITS}: {loop['growth_mib']:+.1f} MiB "
             f"(RSS after import {loop['rss_import_mib']:.0f}, data loaded "
             f"{loop['rss_loaded_mib']:.0f}, warm {loop['rss_warm_mib']:.0f})"]
    row = result["methods"].get("and-stream")
    if row:
        lines.append(f"stream: {row['n_calls']} partial_fit calls, {row['n_stages']} "
                     f"stages, {row['drift_flags']} drift flag(s), first call "
                     f"{row['first_call_seconds']:.2f} s")
    for mode in ("minibatchnmf", "minibatchnmf-epoch"):
        row = result["methods"].get(mode)
        if row:
            lines.append(f"{row['method']}: {row['n_steps']} of {row['steps_per_epoch']} "
                         f"mini-batch steps of the epoch, reconstruction_err_ "
                         f"{row['reconstruction_err']:.4g}")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--one", choices=MODES + ("loop",), help=argparse.SUPPRESS)
    parser.add_argument("--rows", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", default=str(RESULTS / "tmp" / "real_data"))
    parser.add_argument("--rank", type=int, default=100, dest="k", help="rank k (default 100)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="rounds of fits, one process each (time: median)")
    parser.add_argument("--out", default=None,
                        help="output folder (default: bench/results, or bench/results/tmp "
                             "for --quick and non-default options)")
    parser.add_argument("--quick", action="store_true",
                        help=f"the first {QUICK_ROWS} rows, k = {QUICK_RANK}, one round")
    args = parser.parse_args()
    if args.one == "loop":
        return measure_loop(args.data_dir, args.rows, args.k)
    if args.one:
        return measure(args.one, args.data_dir, args.rows, args.k)
    canonical = canonical_run(parser, args, ignore=("data_dir", "one", "rows"))
    if args.quick:
        args.rows, args.k, args.repeats = QUICK_ROWS, QUICK_RANK, 1
    stem = output_stem("wide_corpus", args.quick, args.out, canonical)
    t0 = time.perf_counter()
    load_avg = loadavg()
    Y = load_rows(args.data_dir, args.rows)  # builds the data file on first use
    matrix_bytes = args.k * Y.shape[1] * 8
    result = dict(benchmark="wide_corpus", quick=args.quick, dataset=DATASET,
                  shape=list(Y.shape), nnz=int(Y.nnz), rank=args.k, repeats=args.repeats,
                  data_mib=(Y.data.nbytes + Y.indices.nbytes + Y.indptr.nbytes) / 2**20,
                  matrix_bytes=matrix_bytes, matrix_mib=matrix_bytes / 2**20,
                  stream_block_rows=STREAM_ROWS, minibatch_batch_size=MBNMF_BATCH,
                  leading_rows=leading_rows_info(Y), loadavg_start=load_avg)
    del Y
    runs = {mode: [] for mode in MODES}
    for round_ in range(args.repeats):
        for mode in MODES:
            r = run_child(args, "--one", mode)
            runs[mode].append(r)
            print(f"round {round_ + 1}: {LABELS[mode]:26s} {r['seconds']:7.2f} s "
                  f"(CPU {r['cpu_seconds']:.2f} s), peak {r['peak_fit_mib']:.0f} MiB, "
                  f"before {r['rss_before_fit_mib']:.0f} MiB", flush=True)
    result["runs"] = runs
    result["methods"] = summarize(runs, result["matrix_mib"])
    result["loop"] = run_child(args, "--one", "loop")
    result["loadavg_end"] = loadavg()
    result["total_seconds"] = time.perf_counter() - t0
    result["machine"] = machine_info()
    path = save_json(result, stem.with_suffix(".json"))
    print(report(result))
    print(f"wrote {path} ({result['total_seconds']:.0f} s)")


if __name__ == "__main__":
    main()
