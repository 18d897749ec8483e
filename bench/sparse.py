"""Sparse corpora: a stagewise pass over a CSR HDF5 corpus costs time in nnz.

Data: no bag-of-words corpus installs offline here (scikit-learn's 20 Newsgroups downloads at
run time), so the corpora are synthetic and shaped like 20 Newsgroups (11,314 documents,
about 1.7e6 stored counts): 20 latent topics; every topic's word law is 30 % a shared Zipf law
(``1 / (rank + 2.7)^1.07``) and 70 % the same law over its own random permutation of the
vocabulary, so word frequencies are Zipfian overall; document lengths are log-normal (mean
``mean_len`` tokens, sigma 0.8), topic mixtures Dirichlet(0.1); values are the raw counts
(float64), stored as a CSR group (``data``, ``indices`` int32, ``indptr`` int64, attribute
``shape``: the anndata layout that :class:`streamnmf.HDF5Source` reads).

Three series vary one size at a time around the base corpus (11,314 docs x 50,000 words,
mean length 180 tokens):

* ``rows``: 1/4 to 4x the documents (nnz grows with them);
* ``features``: 12,500 to 100,000 words (nnz about constant, n_samples x n_features 8x);
* ``length``: mean length 45 to 720 tokens (nnz 0.3x to 3x, rows and words fixed).

For every corpus ``AND(50, update="stagewise", n_stages=S)`` fits the HDF5 file (prefetch on)
from 50 distinct random documents; the pass time is the wall time between end-of-stage
callbacks, median over stages >= 1; the end-of-stage work (solve, pseudo-inverse: dense
n_components x n_features algebra) is timed separately by wrapping ``StageLoop.end_stage`` in
this process, so ``data part = pass - end of stage``; the bare read of one pass through
``HDF5Source.blocks()`` (no prefetch, no compute) is timed as well. The pass times are fitted by
non-negative least squares to ``a*nnz + b*n_samples*n_components`` (and with a third term
``c*n_features*n_components``).

Reference in the same worker: one epoch of scikit-learn's ``MiniBatchNMF(n_components=50)``
on the base corpus in memory as CSR, ``partial_fit`` over the same row blocks as the
HDF5 source (and over sklearn's default 1024 rows); the first epoch includes its
initialisation, the second is timed. Ratio = AND pass / MiniBatchNMF epoch. An AND pass over
the base corpus in memory (no HDF5) is timed as well.

Every worker is a fresh process under one thread setting (default OpenBLAS threads,
``OPENBLAS_NUM_THREADS=1``), the settings alternating; a small warm-up fit (compile / cache
load) runs first and is reported separately. A cProfile of one fit of the widest corpus is
kept. Finally the peak RSS of fits with ``init="spa"`` / ``"random"`` / an explicit array is
measured on a 12,500-word corpus (those inits densify the first block).

Outputs ``sparse.json`` / ``.png`` in ``bench/results`` (``bench/results/tmp`` for
``--quick`` and non-default options; ``--out`` overrides).

Usage: ``python bench/sparse.py [--quick] [--keep] [--workdir DIR] [--repeats N]``
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
from out_of_core import (  # noqa: E402
    THREAD_MODES, blas_threads, last_json, loadavg, mode_order, run_measured, run_worker,
    thread_env,
)

RANK = 50
SIZES = {
    "full": dict(base=(11314, 50000, 180), rows=(0.25, 0.5, 2, 4),
                 features=(12500, 25000, 100000), length=(45, 90, 360, 720),
                 n_stages=3, repeats=2, init_corpus=(11314, 12500, 180)),
    "quick": dict(base=(3000, 20000, 120), rows=(0.5, 2), features=(10000, 40000),
                  length=(60, 240), n_stages=3, repeats=1, init_corpus=(3000, 10000, 120)),
}


# -- corpus ------------------------------------------------------------------------------------
def make_corpus(n_docs, n_words, mean_len=180, n_topics=20, zipf_a=1.07, doc_alpha=0.1,
                seed=0):
    """Counts of a Zipfian topic model as CSR (n_docs, n_words), float64, canonical."""
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    law = 1.0 / (np.arange(n_words) + 2.7) ** zipf_a
    law /= law.sum()
    cdf = np.empty((n_topics, n_words))
    for t in range(n_topics):
        cdf[t] = np.cumsum(0.3 * law + 0.7 * law[rng.permutation(n_words)])
    cdf /= cdf[:, -1:]
    # log-normal lengths with mean mean_len (sigma 0.8: mean = exp(mu + sigma^2 / 2))
    lengths = np.maximum(10, rng.lognormal(np.log(mean_len) - 0.32, 0.8, n_docs)).astype(np.int64)
    theta = np.cumsum(rng.dirichlet(np.full(n_topics, doc_alpha), n_docs), axis=1)
    doc = np.repeat(np.arange(n_docs), lengths)
    topic = np.empty(doc.size, dtype=np.int64)
    for start in range(0, doc.size, 1 << 20):  # bounded temporaries
        d = doc[start:start + (1 << 20)]
        u = rng.random(d.size)
        topic[start:start + d.size] = np.minimum((u[:, None] > theta[d]).sum(axis=1),
                                                 n_topics - 1)
    word = np.empty(doc.size, dtype=np.int64)
    for t in range(n_topics):
        sel = np.flatnonzero(topic == t)
        word[sel] = np.minimum(np.searchsorted(cdf[t], rng.random(sel.size)), n_words - 1)
    X = sp.csr_matrix((np.ones(doc.size), (doc, word)), shape=(n_docs, n_words))
    X.sum_duplicates()
    X.sort_indices()
    return X


def write_corpus(path, X):
    import h5py

    with h5py.File(path, "w") as f:
        g = f.create_group("data")
        g.create_dataset("data", data=X.data)
        g.create_dataset("indices", data=X.indices.astype(np.int32))
        g.create_dataset("indptr", data=X.indptr.astype(np.int64))
        g.attrs["shape"] = np.array(X.shape, dtype=np.int64)
        g.attrs["encoding-type"] = "csr_matrix"
        g.attrs["encoding-version"] = "0.1.0"


def corpus_configs(cfg):
    n0, v0, l0 = cfg["base"]
    configs = [dict(name="base", series="base", n_docs=n0, n_words=v0, mean_len=l0)]
    for f in cfg["rows"]:
        configs.append(dict(name=f"rows-x{f:g}", series="rows", n_docs=int(round(n0 * f)),
                            n_words=v0, mean_len=l0))
    for v in cfg["features"]:
        configs.append(dict(name=f"words-{v}", series="features", n_docs=n0, n_words=v,
                            mean_len=l0))
    for ln in cfg["length"]:
        configs.append(dict(name=f"len-{ln}", series="length", n_docs=n0, n_words=v0,
                            mean_len=ln))
    return configs


# -- worker ------------------------------------------------------------------------------------
def worker(spec):
    import scipy.sparse as sp
    from sklearn.decomposition import MiniBatchNMF

    from streamnmf import AND, HDF5Source
    from streamnmf import _engine

    out = dict(loadavg_start=loadavg(), corpora={})
    end_times = []
    original_end_stage = _engine.StageLoop.end_stage

    def timed_end_stage(self):  # benchmark-local wrapper: times the end-of-stage work
        t0 = time.perf_counter()
        try:
            return original_end_stage(self)
        finally:
            end_times.append(time.perf_counter() - t0)

    _engine.StageLoop.end_stage = timed_end_stage

    t0 = time.perf_counter()  # compile / cache load, excluded from the timings
    warm = sp.random(2000, 500, density=0.02, format="csr", random_state=0)
    AND(10, init=warm[:10].toarray() + 0.01, n_stages=2).fit(warm)
    MiniBatchNMF(10, random_state=0).partial_fit(warm)
    out["warmup_s"] = time.perf_counter() - t0
    out["blas"] = blas_threads()

    def init_rows(source, seed=0):
        rows = np.sort(np.random.default_rng(seed).choice(source.n_samples, RANK, replace=False))
        return np.vstack([source.read(r, r + 1).toarray() for r in rows])

    def fit(source, C0, n_stages):
        marks = []
        end_times.clear()

        def callback(est, row):
            marks.append(time.perf_counter())
            return False

        est = AND(RANK, init=C0, n_stages=n_stages, n_iter_no_change=None, tol=None,
                  callback=callback)
        t0 = time.perf_counter()
        est.fit(source)
        wall = np.diff(np.r_[t0, marks])
        ends = np.asarray(end_times[: len(wall)])
        return dict(stage_wall_s=wall.tolist(), end_stage_s=ends.tolist(),
                    data_part_s=(wall - ends).tolist(),
                    stage_history_s=np.diff(np.r_[0.0, est.history_["seconds"]]).tolist(),
                    density=est.history_["density"].tolist(), loadavg=loadavg())

    for corpus in spec["corpora"]:
        source = HDF5Source(corpus["path"], prefetch=True)
        C0 = init_rows(source)
        rec = dict(block_rows=source.block_rows, nnz=source.nnz, n_samples=source.n_samples,
                   n_features=source.n_features)
        rec["fit"] = fit(source, C0, spec["n_stages"])
        source.close()
        reads = []  # the bare read of one pass through the source (no prefetch, no compute)
        for _ in range(2):
            plain = HDF5Source(corpus["path"])
            t0 = time.perf_counter()
            for _block in plain.blocks():
                pass
            reads.append(time.perf_counter() - t0)
            plain.close()
        rec["read_s"] = reads
        if corpus["name"] == spec["profile"] and spec.get("do_profile"):
            source = HDF5Source(corpus["path"], prefetch=True)
            rec["profile"] = _common.profile_top(lambda: fit(source, C0, spec["n_stages"]), 18)
            source.close()
        if corpus["name"] == "base":
            source = HDF5Source(corpus["path"])
            X = source.read(0, source.n_samples)
            rec["fit_in_memory"] = fit(X, C0, spec["n_stages"])
            mb = {}
            for label, rows in (("same_blocks", source.block_rows), ("batch_1024", 1024)):
                blocks = [X[a:a + rows] for a in range(0, X.shape[0], rows)]
                model = MiniBatchNMF(RANK, batch_size=rows, random_state=0)
                epochs = []
                for _ in range(2):
                    t0 = time.perf_counter()
                    for block in blocks:
                        model.partial_fit(block)
                    epochs.append(time.perf_counter() - t0)
                mb[label] = dict(batch_rows=rows, epoch_s=epochs, loadavg=loadavg())
            rec["minibatchnmf"] = mb
            source.close()
        out["corpora"][corpus["name"]] = rec
    out["loadavg_end"] = loadavg()
    print(json.dumps(out))
    return 0


# -- init memory probe -------------------------------------------------------------------------
INIT_PROBE = (
    "import sys, json, time, numpy as np; from streamnmf import AND, HDF5Source; "
    "path, init = sys.argv[1], sys.argv[2]; src = HDF5Source(path); "
    "rows = np.sort(np.random.default_rng(0).choice(src.n_samples, {rank}, replace=False)); "
    "C0 = np.vstack([src.read(r, r + 1).toarray() for r in rows]) if init == 'array' else init; "
    "t = time.perf_counter(); AND({rank}, init=C0, n_stages=1).fit(src); "
    "print(json.dumps(dict(seconds=time.perf_counter() - t, block_rows=src.block_rows)))"
).format(rank=RANK)


def init_memory(path):
    out = {}
    for init in ("array", "random", "spa"):
        res = run_measured([sys.executable, "-c", INIT_PROBE, str(path), init],
                           env=thread_env("1thread"), timeout=600)
        info = last_json(res["stdout"]) or {}
        out[init] = dict(maxrss_mib=res["maxrss_mib"], wall_s=res["wall_s"], rc=res["rc"],
                         fit_s=info.get("seconds"), block_rows=info.get("block_rows"),
                         loadavg=res["loadavg_end"], stderr=res["stderr"][-500:] if res["rc"] else "")
        print(f"  init={init:>6}: peak RSS {res['maxrss_mib']:7.0f} MiB, fit "
              f"{info.get('seconds') or float('nan'):.1f} s", flush=True)
    return out


# -- analysis ----------------------------------------------------------------------------------
def fit_model(points, terms):
    """NNLS fit of time = sum_k coef_k * term_k over the points; R^2 and residuals."""
    from scipy.optimize import nnls

    A = np.array([[p[t] for t in terms] for p in points], dtype=float)
    y = np.array([p["t"] for p in points], dtype=float)
    scale = A.max(axis=0)
    scale[scale == 0] = 1.0
    coef, _ = nnls(A / scale, y)
    coef = coef / scale
    pred = A @ coef
    ss_res = float(np.sum((y - pred) ** 2))
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    return dict(terms=list(terms), coef=coef.tolist(), r2=1.0 - ss_res / ss_tot if ss_tot else None,
                max_rel_residual=float(np.max(np.abs(pred - y) / y)),
                predicted=pred.tolist())


def analyse(workers, configs):
    per, rows = {}, []
    for mode in THREAD_MODES:
        ws = [w for w in workers if w["mode"] == mode]
        if not ws:
            continue
        points = []
        for c in configs:
            recs = [w["corpora"][c["name"]] for w in ws]
            stage = [t for r in recs for t in r["fit"]["stage_wall_s"][1:]]
            data = [t for r in recs for t in r["fit"]["data_part_s"][1:]]
            end = [t for r in recs for t in r["fit"]["end_stage_s"][1:]]
            r0 = recs[0]
            p = dict(name=c["name"], series=c["series"], mode=mode, n_samples=r0["n_samples"],
                     n_features=r0["n_features"], nnz=r0["nnz"], block_rows=r0["block_rows"],
                     t=float(np.median(stage)), data=float(np.median(data)),
                     end=float(np.median(end)), stage=_common.summary(stage),
                     read=float(np.median([t for r in recs for t in r["read_s"]])),
                     n_blocks=-(-r0["n_samples"] // r0["block_rows"]),
                     density=float(np.median(r0["fit"]["density"][1:])),
                     load=float(np.median([r["fit"]["loadavg"][0] for r in recs])))
            p["nnz_x"] = p["nnz"]
            p["rows_x_rank"] = p["n_samples"] * RANK
            p["feat_x_rank"] = p["n_features"] * RANK
            p["rows_x_feat"] = p["n_samples"] * p["n_features"]
            p["ns_per_nnz"] = 1e9 * p["data"] / p["nnz"]
            points.append(p)
            rows.append(dict(p, dense_gb=p["rows_x_feat"] * 8 / 1e9))
        models = {
            "pass ~ a*nnz + b*N*n": fit_model(points, ("nnz_x", "rows_x_rank")),
            "pass ~ a*nnz + b*N*n + c*m*n": fit_model(points, ("nnz_x", "rows_x_rank", "feat_x_rank")),
            "pass ~ d*N*m (dense cost)": fit_model(points, ("rows_x_feat",)),
        }
        data_points = [dict(p, t=p["data"]) for p in points]
        models["data part ~ a*nnz + b*N*n"] = fit_model(data_points, ("nnz_x", "rows_x_rank"))
        end_points = [dict(p, t=p["end"]) for p in points]
        models["end of stage ~ c*m*n"] = fit_model(end_points, ("feat_x_rank",))
        # MiniBatchNMF against AND on the base corpus, paired within each worker
        cmp = {}
        for label in ("same_blocks", "batch_1024"):
            ratios, mb_epochs, and_pass, mem_pass = [], [], [], []
            for w in ws:
                base = w["corpora"]["base"]
                ap = float(np.median(base["fit"]["stage_wall_s"][1:]))
                ep = base["minibatchnmf"][label]["epoch_s"][1]
                ratios.append(ap / ep)
                mb_epochs.append(ep)
                and_pass.append(ap)
                mem_pass.append(float(np.median(base["fit_in_memory"]["stage_wall_s"][1:])))
            cmp[label] = dict(
                batch_rows=ws[0]["corpora"]["base"]["minibatchnmf"][label]["batch_rows"],
                minibatchnmf_epoch=_common.summary(mb_epochs),
                minibatchnmf_first_epoch=_common.summary(
                    [w["corpora"]["base"]["minibatchnmf"][label]["epoch_s"][0] for w in ws]),
                and_pass_hdf5=_common.summary(and_pass), and_pass_in_memory=_common.summary(mem_pass),
                ratio_and_over_minibatchnmf=_common.summary(ratios))
        per[mode] = dict(points=points, models=models, minibatchnmf=cmp)
    return per, rows


def plot(result, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(13, 9.5))
    colors = {"base": "k", "rows": "#1f77b4", "features": "#d62728", "length": "#2ca02c"}
    markers = {"default": "o", "1thread": "s"}
    panels = [(axes[0, 0], "nnz", "t", "nnz of the corpus",
               "stage wall time (data pass + end-of-stage solve/pinv)"),
              (axes[0, 1], "nnz", "data", "nnz of the corpus",
               "data part (stage wall time - end of stage)"),
              (axes[1, 0], "rows_x_feat", "data", "n_samples x n_features (dense cells)",
               "data part against the dense size")]
    for ax, xkey, ykey, xlabel, title in panels:
        for mode, res in result["analysis"].items():
            for series, color in colors.items():
                pts = [p for p in res["points"] if p["series"] == series]
                if pts:
                    ax.plot([p[xkey] for p in pts], [p[ykey] for p in pts], ls="none",
                            marker=markers[mode], color=color,
                            mfc="none" if mode == "1thread" else color,
                            label=f"{series}, {mode} threads")
            if ykey == "t" and xkey == "nnz":
                m = res["models"]["pass ~ a*nnz + b*N*n + c*m*n"]
                ax.plot([p["nnz"] for p in res["points"]], m["predicted"], ls="none",
                        marker="x", color="gray", label=f"fit a*nnz+b*N*n+c*m*n ({mode})")
        pts = [p for r in result["analysis"].values() for p in r["points"]]
        xs = np.array([min(p[xkey] for p in pts), max(p[xkey] for p in pts)])
        ref = np.median([p[ykey] / p[xkey] for p in pts if p["mode"] == "1thread"] or [1])
        ax.plot(xs, ref * xs, "k:", lw=0.8, label="slope 1")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("seconds (median over stages >= 1)")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3, which="both")
    axes[0, 0].legend(fontsize=7, ncol=2, loc="lower right")
    ax = axes[1, 1]
    labels, vals, cols = [], [], []
    for mode, res in result["analysis"].items():
        c = res["minibatchnmf"]
        for key, lab, col in (("and_pass_hdf5", "AND pass\nHDF5", "#3a7d44"),
                              ("and_pass_in_memory", "AND pass\nmemory", "#7fbf7f")):
            labels.append(f"{lab}\n{mode}")
            vals.append(c["same_blocks"][key]["median"])
            cols.append(col)
        for label, col in (("same_blocks", "#b0413e"), ("batch_1024", "#e08080")):
            labels.append(f"MBNMF\n{c[label]['batch_rows']} rows\n{mode}")
            vals.append(c[label]["minibatchnmf_epoch"]["median"])
            cols.append(col)
    ax.bar(range(len(vals)), vals, color=cols)
    for i, v in enumerate(vals):
        ax.text(i, v, f"{v:.2f}", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(vals)))
    ax.set_xticklabels(labels, fontsize=7)
    ax.set_ylabel("seconds")
    ax.set_title("base corpus: one AND pass vs one MiniBatchNMF epoch (median)", fontsize=10)
    _common.save_figure(fig, path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--no-init-memory", action="store_true",
                        help="skip the peak-RSS probe of init='spa'/'random'")
    parser.add_argument("--out", default=None,
                        help="output folder (default: bench/results, or bench/results/tmp "
                             "for --quick and non-default options)")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    stem = _common.output_stem("sparse", args.quick, args.out, _common.canonical_run(
        parser, args, ignore=("keep", "workdir", "worker")))
    if args.worker:
        return worker(json.loads(args.worker))
    kind = "quick" if args.quick else "full"
    cfg = SIZES[kind]
    repeats = args.repeats or cfg["repeats"]
    machine = _common.machine_info()
    workdir = Path(args.workdir) if args.workdir else Path(
        tempfile.mkdtemp(prefix="streamnmf-sparse-"))
    workdir.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    configs = corpus_configs(cfg)
    workers, init_mem = [], None
    try:
        for c in configs:
            c["path"] = str(workdir / f"corpus-{c['n_docs']}x{c['n_words']}-L{c['mean_len']}.h5")
            t0 = time.perf_counter()
            if not Path(c["path"]).exists():
                X = make_corpus(c["n_docs"], c["n_words"], c["mean_len"])
                write_corpus(c["path"], X)
                c.update(nnz=int(X.nnz), words_used=int((X.getnnz(axis=0) > 0).sum()))
                del X
            c["gen_s"] = time.perf_counter() - t0
            c["bytes"] = Path(c["path"]).stat().st_size
            print(f"corpus {c['name']:>12}: {c['n_docs']} x {c['n_words']}, nnz "
                  f"{c.get('nnz', 0):,}, {c['bytes'] / 1e6:.0f} MB ({c['gen_s']:.1f} s)",
                  flush=True)
        widest = max(configs, key=lambda c: c["n_words"])["name"]
        spec = dict(corpora=configs, n_stages=cfg["n_stages"], profile=widest)
        for r in range(repeats):
            for mode in mode_order(r):
                w = run_worker(Path(__file__), dict(spec, do_profile=(r == 0)), mode)
                w["repeat"] = r
                workers.append(w)
                base = w["corpora"]["base"]
                print(f"  repeat {r} {mode:>8}: base pass "
                      f"{np.median(base['fit']['stage_wall_s'][1:]):.2f} s, MiniBatchNMF epoch "
                      f"{base['minibatchnmf']['same_blocks']['epoch_s'][1]:.2f} s; load "
                      f"{w['loadavg_end'][0]:.2f}", flush=True)
        if not args.no_init_memory:
            n0, v0, l0 = cfg["init_corpus"]
            ipath = workdir / f"init-{n0}x{v0}.h5"
            X = make_corpus(n0, v0, l0)
            write_corpus(ipath, X)
            del X
            print(f"init memory probe on {n0} x {v0}:", flush=True)
            init_mem = dict(n_docs=n0, n_words=v0, mean_len=l0, runs=init_memory(ipath))
            ipath.unlink(missing_ok=True)
    finally:
        if not args.keep:
            for c in configs:
                Path(c["path"]).unlink(missing_ok=True)
            if not args.workdir:
                shutil.rmtree(workdir, ignore_errors=True)

    analysis, rows = analyse(workers, configs)
    result = dict(benchmark="sparse", size=kind, rank=RANK, n_stages=cfg["n_stages"],
                  repeats=repeats, corpora=configs, analysis=analysis, workers=workers,
                  init_memory=init_mem, total_seconds=time.perf_counter() - t_start,
                  machine=machine)
    print()
    print(_common.table(rows, [
        ("name", "corpus"), ("mode", "threads"), ("n_samples", "docs"), ("n_features", "words"),
        ("nnz", "nnz"), ("dense_gb", "dense GB"), ("n_blocks", "blocks"),
        ("t", "pass s"), ("data", "data part s"), ("end", "end-of-stage s"),
        ("read", "bare read s"),
        ("ns_per_nnz", "ns/nnz (data)"), ("density", "code density"), ("load", "load 1m")]))
    for mode, res in analysis.items():
        print(f"\n{mode}: models (NNLS over the {len(res['points'])} corpora)")
        for name, m in res["models"].items():
            coef = ", ".join(f"{t}={c:.3g}" for t, c in zip(m["terms"], m["coef"]))
            print(f"  {name:<32} {coef:<60} R^2 {m['r2']:.3f}, max |rel. residual| "
                  f"{m['max_rel_residual']:.2f}")
        for label, c in res["minibatchnmf"].items():
            print(f"  MiniBatchNMF ({label}, {c['batch_rows']} rows/batch): epoch "
                  f"{c['minibatchnmf_epoch']['median']:.2f} s (first epoch with init "
                  f"{c['minibatchnmf_first_epoch']['median']:.2f} s); AND pass "
                  f"{c['and_pass_hdf5']['median']:.2f} s from HDF5, "
                  f"{c['and_pass_in_memory']['median']:.2f} s in memory; ratio AND/MBNMF "
                  f"{c['ratio_and_over_minibatchnmf']['median']:.2f}")
    profiles = [w["corpora"][widest].get("profile") for w in workers]
    for w, prof in zip(workers, profiles):
        if prof:
            print(f"\nprofile of one fit of '{widest}' ({w['mode']} threads, "
                  f"{cfg['n_stages']} stages):\n{prof}")
            break
    if init_mem:
        print(f"init peak RSS on {init_mem['n_docs']} x {init_mem['n_words']}: " + ", ".join(
            f"{k} {v['maxrss_mib']:.0f} MiB / {v['wall_s']:.1f} s"
            for k, v in init_mem["runs"].items()))
    _common.write_results(result, stem, plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
