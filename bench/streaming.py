"""Streaming benchmark: one pass over a stream of fresh samples, AND vs online NMF peers.

The case a batch solver cannot take: ``--n-samples`` (10^6; 10^5 with ``--quick``) fresh DIR
samples (m = 1000 features, n = 100 components, ``streamnmf.datasets.iter_dataset``) arrive
in blocks of ``--block`` rows (2000) and each method sees every block once, through its
streaming API:

* ``AND(update="stagewise").partial_fit`` per block, ``stage_length=STAGE_LENGTH["stagewise"]``
  (a least-squares solve every that many samples; stages span blocks);
* ``AND(update="sgd").partial_fit`` per block, batch_size 1 and the default step,
  ``stage_length=STAGE_LENGTH["sgd"]`` (the decoding matrix and threshold are refreshed
  that often);
* ``MiniBatchNMF.partial_fit`` per block (scikit-learn; batch = block, its defaults:
  ``forget_factor`` 0.7 per call, each block's W solved afresh by 30 multiplicative steps).
  Other settings do not rescue it: after 6 x 10^4 samples (start ln 1.54) forget factors
  0.7 / 0.95 / 0.99 gave ln 1.94 / 1.48 / 1.44, and 100 steps for W ln 1.09 at 2.4x the time;
* ``gensim.models.Nmf.update`` per block (chunksize = block), if gensim imports.

Same data for every method: the stream is regenerated in every method's process from the
same seed (``iter_dataset`` makes the same numbers for any block size). Same start: AND from
the paper's ``A0 = make_init(truth)``; MiniBatchNMF and gensim from ``max(A0, 0)`` with, for
MiniBatchNMF (multiplicative updates cannot move a zero), its zeros lifted to
``peers.MU_FLOOR`` x the mean entry, as in ``recovery.py``. Generating a block, converting it
to the CSC layout gensim takes, and the ln error evaluations (every ``n_blocks / 100``
blocks) are outside the clock; ``samples/s`` is samples over fitting seconds.

Memory: every method runs in its own Python process (``--worker``), which reports its peak
resident set (``resource.getrusage(RUSAGE_SELF).ru_maxrss``) and its resident set just
before the first block (imports, ground truth, start), so the difference is what the method
and the block generator add while streaming.

Outputs ``streaming.json`` and ``.png`` (ln error vs samples consumed, and vs fitting seconds)
in ``bench/results`` (``bench/results/tmp`` for ``--quick`` and non-default options; ``--out``
overrides) and prints a table.

Usage: ``python bench/streaming.py [--quick] [--methods stagewise sgd minibatch gensim]``
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import _common  # noqa: E402

METHODS = ("stagewise", "sgd", "minibatch", "gensim")
N_COMPONENTS, N_FEATURES = 100, 1000
# Samples per AND stage (stagewise: one least-squares solve per stage; sgd: the decoding
# matrix and threshold are refreshed once per stage): one block, so that every partial_fit
# call is a stage. Fresh samples make long stages wasteful: after 10^5 samples (quick run,
# machine shared) stagewise / sgd reached ln -59 / -58 with stages of 500 samples, -50 / -48
# with 1000, -33 / -32 with 2000, -16 / -13 with 5000, -8 / -4 with 10000, at 32k / 20k,
# 34k / 27k, 59k / 42k, 60k / 54k, 44k / 53k samples/s; 2000 keeps most of the throughput and
# still reaches round-off well within 10^6 samples.
STAGE_LENGTH = {"stagewise": 2000, "sgd": 2000}
LABELS = {
    "stagewise": "AND stagewise (partial_fit)",
    "sgd": "AND sgd (partial_fit, batch 1)",
    "minibatch": "sklearn MiniBatchNMF.partial_fit",
    "gensim": "gensim Nmf.update",
}


def _rss_mb():
    """Current resident set of this process in MB (Linux /proc; psutil if present)."""
    try:
        import psutil

        return psutil.Process().memory_info().rss / 2**20
    except ImportError:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KB on Linux


# -- one method, in its own process ------------------------------------------------------------
def worker(method, n_samples, block, seed, stage_length):
    """Stream the data through ``method`` once; return the result dict."""
    from streamnmf.datasets import iter_dataset, make_init
    from streamnmf.metrics import log_total_correlation_error

    stream = iter_dataset("dir", n_samples, N_COMPONENTS, N_FEATURES, block_size=block,
                          random_state=seed)
    truth = stream.components
    start = make_init(truth, in_span=1.0, random_state=seed + 1)
    n, m = truth.shape
    settings = {}
    convert = None

    if method in ("stagewise", "sgd"):
        import streamnmf

        params = dict(update=method, init=start, stage_length=stage_length, random_state=0)
        if method == "sgd":
            params["batch_size"] = 1
        est = streamnmf.AND(n, **params)
        # compile (or load from cache) the kernels outside the clock, on a throw-away model
        warm = streamnmf.AND(n, **params)
        warm.partial_fit(next(iter(iter_dataset("dir", 64, n, m, block_size=64,
                                                random_state=seed + 7)))[0])
        del warm
        fit = est.partial_fit

        def components():
            return est.components_

        settings = {k: v for k, v in params.items() if k != "init"}
        start_used = start
        start_text = "A0 = make_init(truth) (the paper's start, signed entries kept)"
    elif method == "minibatch":
        import warnings

        import peers
        from sklearn.decomposition import MiniBatchNMF

        H0 = peers._floored(np.maximum(start, 0.0))
        est = MiniBatchNMF(n, init="custom", batch_size=block, random_state=0)
        settings = dict(batch_size=block, forget_factor=est.forget_factor,
                        fresh_restarts_max_iter=est.fresh_restarts_max_iter,
                        beta_loss="frobenius", api="MiniBatchNMF.partial_fit per block")
        warnings.filterwarnings("ignore", module="sklearn")

        def fit(Y):
            if not hasattr(est, "components_"):
                # partial_fit solves the block's W itself; this one only passes its check
                W = np.full((Y.shape[0], n), np.sqrt(Y.mean() / n))
                est.partial_fit(Y, W=W, H=H0.copy())
            else:
                est.partial_fit(Y)

        def components():
            return est.components_

        start_used = H0
        start_text = (f"max(A0, 0) with zeros lifted to {peers.MU_FLOOR} x mean "
                      f"(multiplicative updates cannot move a zero)")
    elif method == "gensim":
        import logging

        import gensim
        import scipy.sparse as sp
        from gensim.models import Nmf

        logging.getLogger("gensim").setLevel(logging.WARNING)
        est = Nmf(corpus=None, num_topics=n, id2word={i: str(i) for i in range(m)},
                  chunksize=block, passes=1, eval_every=0, normalize=False, random_state=0)
        H0 = np.maximum(start, 0.0)
        # its start, set where Nmf._setup would draw a random one on the first chunk
        est._W = np.ascontiguousarray(H0.T)
        est.A, est.B = np.zeros((n, n)), np.zeros((m, n))
        settings = dict(chunksize=block, kappa=est._kappa, w_max_iter=est._w_max_iter,
                        h_max_iter=est._h_max_iter, gensim=gensim.__version__,
                        api="gensim.models.Nmf.update per block")
        convert = lambda Y: sp.csc_matrix(Y.T)  # noqa: E731 - gensim's (features, docs) layout

        def fit(V):
            est.update(V, passes=1, eval_every=0)

        def components():
            return est.get_topics(normalize=False)

        start_used = H0
        start_text = "max(A0, 0), set as gensim's _W before the first update"
    else:
        raise ValueError(method)

    n_blocks = -(-n_samples // block)
    eval_every = max(1, n_blocks // 100)
    rss_before = _rss_mb()
    trace = [dict(samples=0, seconds=0.0,
                  ln_error=log_total_correlation_error(start_used, truth))]
    fit_seconds = gen_seconds = convert_seconds = eval_seconds = 0.0
    seen = 0
    blocks = iter(stream)
    for i in range(n_blocks):
        t0 = time.perf_counter()
        Y, _ = next(blocks)
        gen_seconds += time.perf_counter() - t0
        if convert is not None:
            t0 = time.perf_counter()
            V = convert(Y)
            convert_seconds += time.perf_counter() - t0
        else:
            V = Y
        t0 = time.perf_counter()
        fit(V)
        fit_seconds += time.perf_counter() - t0
        seen += Y.shape[0]
        if (i + 1) % eval_every == 0 or i + 1 == n_blocks:
            t0 = time.perf_counter()
            trace.append(dict(samples=seen, seconds=fit_seconds,
                              ln_error=log_total_correlation_error(components(), truth)))
            eval_seconds += time.perf_counter() - t0
    out = dict(
        method=method, label=LABELS[method], settings=settings, start=start_text,
        n_samples=seen, block=block, final_ln_error=trace[-1]["ln_error"],
        best_ln_error=min(p["ln_error"] for p in trace),
        fit_seconds=fit_seconds, samples_per_second=seen / fit_seconds,
        generation_seconds=gen_seconds, convert_seconds=convert_seconds,
        eval_seconds=eval_seconds, rss_before_stream_mb=rss_before,
        peak_rss_mb=_peak_rss_mb(), trace=trace,
    )
    if method in ("stagewise", "sgd"):
        out["stages"] = int(est.n_stages_)
        out["learning_rate"] = getattr(est._loop, "sgd_eta", None)
        out["final_alpha"] = float(est.alpha_)
    return out


def _run_worker(args, method):
    """Run ``method`` in a fresh Python process; return its result dict."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "result.json"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", method,
               "--n-samples", str(args.n_samples), "--block", str(args.block),
               "--seed", str(args.seed), "--threads", str(args.threads),
               "--worker-out", str(path)]
        if args.stage_length:
            cmd += ["--stage-length", str(args.stage_length)]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if proc.returncode != 0 or not path.exists():
            return dict(method=method, label=LABELS[method], wall_seconds=wall,
                        error=f"exit {proc.returncode}: {proc.stderr.strip()[-2000:]}")
        result = json.loads(path.read_text())
        result["wall_seconds"] = wall
        return result


def plot(results, path, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.4))
    for k, res in enumerate(results):
        if "trace" not in res:
            continue
        style = dict(color=f"C{k}", label=res["label"], marker="o", ms=2)
        x = [p["samples"] for p in res["trace"]]
        y = [p["ln_error"] for p in res["trace"]]
        axes[0].plot(x, y, **style)
        # log time axis: AND's pass is 10-100x shorter than the peers'; the start (0 s) is
        # the left panel's first point
        later = [p for p in res["trace"] if p["seconds"] > 0]
        axes[1].plot([p["seconds"] for p in later], [p["ln_error"] for p in later], **style)
    axes[0].set_xlabel("samples consumed (one pass)")
    axes[1].set_xlabel("fitting time (s, log scale; generation and evaluation excluded)")
    axes[1].set_xscale("log")
    for ax in axes:
        ax.set_ylabel("ln total correlation error")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    _common.save_figure(fig, path, title)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="10^5 samples instead of 10^6")
    parser.add_argument("--n-samples", type=int, default=None)
    parser.add_argument("--block", type=int, default=2000, help="rows per block")
    parser.add_argument("--methods", nargs="+", default=None, choices=METHODS,
                        help="default: all (gensim only if it imports)")
    parser.add_argument("--stage-length", type=int, default=None,
                        help="override STAGE_LENGTH for the AND methods")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None,
                        help="output folder (default: bench/results, or bench/results/tmp "
                             "for --quick and non-default options)")
    parser.add_argument("--threads", type=int, default=1,
                        help="BLAS threads for every method (1: the shared machine's load "
                             "would otherwise be measured, see recovery.py)")
    parser.add_argument("--replot", metavar="JSON", default=None)
    parser.add_argument("--worker", choices=METHODS, help=argparse.SUPPRESS)
    parser.add_argument("--worker-out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    canonical = _common.canonical_run(parser, args, ignore=(
        "replot", "worker", "worker_out", "n_samples")) and args.n_samples in (None, 10**6)
    if args.n_samples is None:
        args.n_samples = 10**5 if args.quick else 10**6

    if args.replot:
        saved = json.loads(Path(args.replot).read_text())
        plot(saved["results"], Path(args.replot).with_suffix(".png"), saved["title"])
        return
    if args.worker:
        from threadpoolctl import threadpool_limits

        stage_length = args.stage_length or STAGE_LENGTH.get(args.worker)
        with threadpool_limits(args.threads or None):
            result = worker(args.worker, args.n_samples, args.block, args.seed, stage_length)
        Path(args.worker_out).write_text(json.dumps(_common._finite(result),
                                                    default=_common._default))
        return

    machine = _common.machine_info()  # at the start: the load average before the run
    methods = args.methods
    missing = {}
    if methods is None:
        import peers

        ok, why = peers.gensim_available()
        methods = [m for m in METHODS if ok or m != "gensim"]
        if not ok:
            missing["gensim"] = why
    print(f"streaming: {args.n_samples} fresh DIR samples, n={N_COMPONENTS} m={N_FEATURES}, "
          f"blocks of {args.block}, BLAS threads {args.threads}", flush=True)
    results = []
    t_start = time.perf_counter()
    for method in methods:
        res = _run_worker(args, method)
        results.append(res)
        if "error" in res:
            print(f"  {method:10s} FAILED {res['error']}", flush=True)
        else:
            print(f"  {method:10s} ln error {res['final_ln_error']:8.2f}, "
                  f"{res['samples_per_second']:9.0f} samples/s, peak RSS "
                  f"{res['peak_rss_mb']:.0f} MB ({res['wall_seconds']:.0f} s wall)", flush=True)
    total = time.perf_counter() - t_start

    rows = [dict(method=r["label"], final=r.get("final_ln_error"), best=r.get("best_ln_error"),
                 rate=r.get("samples_per_second"), fit=r.get("fit_seconds"),
                 peak=r.get("peak_rss_mb"), base=r.get("rss_before_stream_mb"),
                 extra=None if "peak_rss_mb" not in r
                 else r["peak_rss_mb"] - r["rss_before_stream_mb"],
                 error=r.get("error", "")[:60] or None)
            for r in results]
    print()
    print(_common.table(rows, [
        ("method", "method"), ("final", "ln err after pass"), ("best", "best ln err"),
        ("rate", "samples/s"), ("fit", "fit s"), ("peak", "peak RSS MB"),
        ("base", "RSS before MB"), ("extra", "peak - before MB"), ("error", "error"),
    ], floatfmt="{:.4g}"))
    print(f"\ntotal {total:.0f} s")

    stem = _common.output_stem("streaming", args.quick, args.out, canonical)
    title = (f"one pass over {args.n_samples:.0e} fresh DIR samples, n={N_COMPONENTS}, "
             f"m={N_FEATURES}, blocks of {args.block}")
    payload = dict(
        benchmark="streaming", quick=args.quick, n_samples=args.n_samples, block=args.block,
        n_components=N_COMPONENTS, n_features=N_FEATURES, seed=args.seed,
        blas_threads=args.threads, stage_length=args.stage_length or STAGE_LENGTH,
        unavailable=missing, title=title,
        notes=[
            "fit seconds: partial_fit / update calls only; block generation, gensim's CSC "
            "conversion and the ln error evaluations are timed separately.",
            "peak_rss_mb: ru_maxrss of the method's own process; rss_before_stream_mb: its "
            "RSS after imports, truth and start, before the first block.",
        ],
        total_seconds=total, summary=rows, results=results, machine=machine,
    )
    json_path = _common.save_json(payload, stem.with_suffix(".json"))
    png_path = stem.with_suffix(".png")
    plot(results, png_path, title)
    print(f"wrote {json_path} and {png_path}")


if __name__ == "__main__":
    main()
