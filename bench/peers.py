"""Peer NMF / topic-model solvers for the recovery benchmark (the AND paper's Figure 1).

Every runner has the signature ``run_<peer>(data, truth, start, budget, shared)`` and returns
``(trace, info)`` in the format of ``recovery.py``: ``trace`` is a list of
``dict(seconds=..., ln_error=..., ...)`` whose first point is the method's start at 0 s, and
``seconds`` is cumulative FITTING time: the ln error (and any data preparation) is computed
outside the clock. A run stops after the iteration (epoch) that crosses ``budget`` seconds.

The peers and their starts (see ``info["start"]`` of each run):

* ``mu``: scikit-learn ``NMF(solver="mu", init="custom")`` (Lee & Seung), continued in
  chunks of iterations: ``fit_transform`` is called again from the returned ``W, H``. The
  Frobenius MU update keeps no state besides ``W`` and ``H``, so chunk after chunk is the same
  run as one long ``max_iter`` run (checked: bit-identical) and the clock sees each
  iteration once.
* ``minibatch``: ``MiniBatchNMF(init="custom").fit`` from ``W0, H0``, a fresh run per
  ``max_iter`` (epochs) on a growing grid, like cd in ``recovery.py``: it cannot be continued
  (``fit`` resets its running averages). Not epochs of ``partial_fit``: that re-solves each
  batch's ``W`` from a flat start and ignores ``W0``; on DIR (quick sizes) it stalls at ln
  +0.5 and climbs back, where ``fit`` reaches +0.16 in 50 epochs. ``partial_fit`` is what
  ``streaming.py`` measures.
* ``lda``: online ``LatentDirichletAllocation`` (Hoffman et al., as in the paper),
  ``partial_fit`` once per epoch, ``total_samples = N`` as in ``fit``. It has no custom start:
  it starts from its own random topics. Its topics are the rows of ``components_``. The
  data rows are word distributions (they sum to 1); LDA models word counts, so they are fed
  as pseudo counts, rows x ``LDA_DOC_LENGTH``: long documents make its Dirichlet priors
  (1/n) negligible, as for real text. On DIR (quick sizes, 6 s) lengths 1, 1e2, 1e3, 1e4,
  1e5, 1e6, 1e7 gave ln 3.07, 2.84, 2.57, 2.03, 1.58, 1.42, 1.45: 1e5 is near the best.
* ``gensim``: ``gensim.models.Nmf`` (online NMF of Zhao et al.), ``update`` once per epoch on
  the data as a (n_features, N) CSC matrix (the format it takes; the conversion is not
  timed). Its start is set through its (private) ``_W`` before the first update, which is
  exactly where gensim would otherwise draw a random one.
* ``anls``: alternating non-negative least squares (Kim & Park 2008) with
  ``scipy.optimize.nnls``: all rows of ``W`` with ``H`` fixed, then all columns of ``H``
  with ``W`` fixed; one trace point per outer iteration. Each NNLS subproblem is reduced
  EXACTLY to its n x n triangular form first (``A = QR``, ``||A x - b||^2 = ||R x - Q^T b||^2
  + const``), so one BLAS product serves all right-hand sides and each ``nnls`` call has n
  rows instead of m or N (5x faster per call on the paper's shapes; Kim & Park's block
  principal pivoting would be faster still).

The non-negative start, for every peer that takes one: ``H0 = max(A0, 0)`` (A0 the paper's
start ``make_init``) and ``W0 = max(Y pinv(H0), 0)`` refined by 10 cd sweeps on ``W`` with
``H0`` fixed, exactly as ``recovery.run_cd``; its preparation is not timed. The multiplicative
updates (``mu``, ``minibatch``) can never move an entry that is exactly 0, and the clipping
zeroes many entries where the truth is small but positive (on DIR at the quick sizes 45% of
``H0`` is 0 where 29% of the truth is), so for them the zeros of ``H0`` and ``W0`` are lifted
to ``MU_FLOOR`` x the mean entry: on DIR (quick, 6 s) MU reaches ln -2.0 so, -1.2 without
(floors 1e-3, 1e-1: -1.6, -1.7).

Data with negative entries (the NEG set; NOISE, whose Gaussian noise makes small entries
negative) are outside these peers' model: :func:`applicable` says so and ``recovery.py``
records the reason instead of running them.
"""

import time
import warnings

import numpy as np

from streamnmf.metrics import log_total_correlation_error

PEERS = ("mu", "minibatch", "lda", "gensim", "anls")

#: pseudo document length for LDA: the data rows sum to 1 (word distributions)
LDA_DOC_LENGTH = 1e5
#: MU can never move a zero entry: zeros of the clipped start are lifted to this x mean entry
MU_FLOOR = 1e-2
#: MiniBatchNMF's and LDA's batch sizes: scikit-learn's defaults
MINIBATCH_SIZE = 1024
LDA_BATCH_SIZE = 128


def gensim_available():
    """``(True, version)`` if gensim imports, else ``(False, reason)``."""
    try:
        import gensim

        return True, gensim.__version__
    except Exception as exc:  # ImportError, or a binary incompatible with this numpy
        return False, f"gensim does not import: {type(exc).__name__}: {exc}"


def available():
    """The peers that can run here, and ``{peer: reason}`` for those that cannot."""
    ok, why = gensim_available()
    if ok:
        return list(PEERS), {}
    return [p for p in PEERS if p != "gensim"], {"gensim": why}


def applicable(data):
    """None if the non-negative peers can take ``data``, else the reason they cannot."""
    low = float(data.min())
    if low < 0:
        return (f"data have negative entries (min {low:.3g}): outside the model of a "
                f"non-negative factorisation, which would refuse or clip them "
                f"(sklearn NMF cd shows this case, through its internal solver)")
    return None


def nonneg_start(data, start, shared):
    """``(H0, W0)``: recovery.run_cd's clipped start; computed once per data set (``shared``)."""
    if "H0" not in shared:
        from sklearn.decomposition._nmf import _fit_coordinate_descent

        H0 = np.ascontiguousarray(np.maximum(start, 0.0))
        t0 = time.perf_counter()
        W0 = np.ascontiguousarray(np.maximum(data @ np.linalg.pinv(H0), 0.0))
        W0, _, _ = _fit_coordinate_descent(data, W0, H0, tol=0.0, max_iter=10, update_H=False)
        shared.update(H0=H0, W0=np.ascontiguousarray(W0),
                      w0_seconds=time.perf_counter() - t0)
    return shared["H0"], shared["W0"]


def _floored(M):
    """``M`` with its exact zeros lifted to ``MU_FLOOR * mean(M)`` (for multiplicative updates)."""
    M = M.copy()
    M[M == 0] = MU_FLOOR * M.mean()
    return M


def _point(seconds, components, truth, **extra):
    return dict(seconds=float(seconds),
                ln_error=log_total_correlation_error(components, truth), **extra)


def _common_info(shared, start_text, **settings):
    return dict(settings=settings, start=start_text,
                w0_seconds=shared.get("w0_seconds"),
                w0="max(Y pinv(H0), 0) + 10 cd sweeps on W (H0 fixed), not timed"
                if "w0_seconds" in shared else None)


def run_mu(data, truth, start, budget, shared):
    """scikit-learn ``NMF(solver="mu")`` from the floored clipped start, continued in chunks."""
    from sklearn.decomposition import NMF

    n = truth.shape[0]
    H0, W0 = nonneg_start(data, start, shared)
    W, H = _floored(W0), _floored(H0)
    trace = [_point(0.0, H, truth, n_iter=0)]
    seconds, done = 0.0, 0
    while seconds < budget:
        # chunks grow with the iterations done (1, 1, ..., then ~1/8 of them): a trace point
        # per iteration early, few fit_transform calls (and validations) later
        step = max(1, done // 8)
        model = NMF(n, solver="mu", init="custom", max_iter=step, tol=0.0, random_state=0)
        t0 = time.perf_counter()
        W = model.fit_transform(data, W=W, H=H)
        H = model.components_
        seconds += time.perf_counter() - t0
        done += step
        trace.append(_point(seconds, H, truth, n_iter=done))
    info = _common_info(shared, f"H0 = max(A0, 0), W0 as cd's; zeros of both lifted to "
                        f"{MU_FLOOR} x their mean (MU cannot move a zero)",
                        solver="mu", beta_loss="frobenius", tol=0.0,
                        api="sklearn.decomposition.NMF.fit_transform, continued from W, H")
    info.update(n_iter=done, fit_seconds=seconds)
    return trace, info


def _grid_runs(fit_k, budget, first=(1, 2, 5, 10, 20, 50)):
    """Fresh runs ``fit_k(k) -> (seconds, components, extra)`` on a growing grid of ``k``.

    For solvers that cannot be continued: run ``k`` is the ``k``-epoch prefix of any longer
    run (deterministic, ``tol=0``). After the fixed ``first`` values ``k`` doubles while the
    next run is predicted to end inside ``budget``; the last run is sized to just cross it.
    Returns ``[(k, seconds, components, extra), ...]``.
    """
    out, k_list = [], list(first)
    while k_list:
        k = k_list.pop(0)
        seconds, components, extra = fit_k(k)
        out.append((k, seconds, components, extra))
        if seconds >= budget:
            break
        if not k_list:
            rate = seconds / k
            nxt = 2 * k
            if nxt * rate < budget:
                k_list.append(nxt)
            else:  # one run that just crosses the budget, then stop
                k_list.append(max(k + 1, int(np.ceil(1.02 * budget / rate))))
    return out


def run_minibatch(data, truth, start, budget, shared):
    """``MiniBatchNMF.fit`` from the floored clipped start, on a grid of epochs (``max_iter``).

    ``fit`` rather than epochs of ``partial_fit``: ``partial_fit`` re-solves every batch's
    ``W`` from a flat start by 30 multiplicative steps, which on DIR (quick sizes) stalls at
    ln +0.5 and then climbs, while ``fit`` carries ``W`` from epoch to epoch (and uses the
    custom ``W0``) and reaches ln +0.16 in 50 epochs. ``partial_fit`` is what
    ``bench/streaming.py`` measures.
    """
    from sklearn.decomposition import MiniBatchNMF
    from sklearn.exceptions import ConvergenceWarning

    n, N = truth.shape[0], data.shape[0]
    H0, W0 = nonneg_start(data, start, shared)
    H0, W0 = _floored(H0), _floored(W0)
    batch = min(MINIBATCH_SIZE, N)

    def fit_k(k):
        model = MiniBatchNMF(n, init="custom", batch_size=batch, max_iter=k, tol=0.0,
                             max_no_improvement=None, random_state=0)
        W, H = W0.copy(), H0.copy()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            t0 = time.perf_counter()
            model.fit(data, W=W, H=H)
            seconds = time.perf_counter() - t0
        return seconds, model.components_, dict(n_iter=int(model.n_iter_),
                                                 n_steps=int(model.n_steps_))

    runs = _grid_runs(fit_k, budget)
    trace = [_point(0.0, H0, truth, max_iter=0)]
    trace += [_point(s, H, truth, max_iter=k, **extra) for k, s, H, extra in runs]
    info = _common_info(shared, f"H0, W0 as cd's with zeros lifted to {MU_FLOOR} x mean "
                        f"(its updates are multiplicative)",
                        batch_size=batch, forget_factor=0.7, beta_loss="frobenius",
                        tol=0.0, max_no_improvement=None, grid=[r[0] for r in runs],
                        api="sklearn.decomposition.MiniBatchNMF.fit, a fresh run per "
                            "max_iter (it cannot be continued)")
    info.update(fit_seconds=trace[-1]["seconds"],
                all_runs_seconds=float(sum(r[1] for r in runs)))
    return trace, info


def run_lda(data, truth, start, budget, shared, seed=0):
    """Online ``LatentDirichletAllocation``: its own random start, one epoch per trace point."""
    from sklearn.decomposition import LatentDirichletAllocation

    n, N = truth.shape[0], data.shape[0]
    counts = data * LDA_DOC_LENGTH  # prepared outside the clock
    model = LatentDirichletAllocation(n, learning_method="online", batch_size=LDA_BATCH_SIZE,
                                      total_samples=N, random_state=seed)
    # its random start: the draw partial_fit makes on its first call (same generator)
    first = np.random.RandomState(seed).gamma(100.0, 0.01, (n, data.shape[1]))
    trace = [_point(0.0, first, truth, epoch=0)]
    seconds, epoch = 0.0, 0
    while seconds < budget:
        t0 = time.perf_counter()
        model.partial_fit(counts)
        seconds += time.perf_counter() - t0
        epoch += 1
        trace.append(_point(seconds, model.components_, truth, epoch=epoch))
    info = dict(
        settings=dict(learning_method="online", batch_size=LDA_BATCH_SIZE, total_samples=N,
                      learning_offset=model.learning_offset,
                      learning_decay=model.learning_decay, doc_length=LDA_DOC_LENGTH,
                      random_state=seed,
                      api="sklearn.decomposition.LatentDirichletAllocation.partial_fit "
                          "per epoch"),
        start="random (LDA has no custom start): Gamma(100, 0.01) topic-word parameters, "
              "scikit-learn's own init; the A0 start is not used",
        data=f"rows x {LDA_DOC_LENGTH:g} (pseudo word counts; the rows sum to 1)",
        epochs=epoch, fit_seconds=seconds)
    return trace, info


def run_gensim(data, truth, start, budget, shared, chunksize=2000):
    """``gensim.models.Nmf`` from the clipped start, ``update`` once per epoch."""
    import logging

    import scipy.sparse as sp
    from gensim.models import Nmf

    logging.getLogger("gensim").setLevel(logging.WARNING)
    n, m = truth.shape
    H0, _ = nonneg_start(data, start, shared)
    corpus = sp.csc_matrix(data.T)  # gensim's layout: (n_features, n_samples); not timed
    model = Nmf(corpus=None, num_topics=n, id2word={i: str(i) for i in range(m)},
                chunksize=chunksize, passes=1, eval_every=0, normalize=False, random_state=0)
    # the start: what Nmf._setup would set on the first chunk, with W = H0^T instead of its
    # random half-normal draw (columns of W are topics; _transform keeps their norms <= 1)
    model._W = np.ascontiguousarray(H0.T)
    model.w_std = np.sqrt(corpus.mean() / (m * n))
    model.A = np.zeros((n, n))
    model.B = np.zeros((m, n))
    trace = [_point(0.0, model.get_topics(normalize=False), truth, epoch=0)]
    seconds, epoch = 0.0, 0
    while seconds < budget:
        t0 = time.perf_counter()
        model.update(corpus, passes=1, eval_every=0)
        seconds += time.perf_counter() - t0
        epoch += 1
        trace.append(_point(seconds, model.get_topics(normalize=False), truth, epoch=epoch))
    import gensim

    info = _common_info(shared, "W = max(A0, 0)^T set as gensim's _W before the first "
                        "update (where it draws its random start)",
                        chunksize=chunksize, kappa=model._kappa,
                        w_max_iter=model._w_max_iter, h_max_iter=model._h_max_iter,
                        api="gensim.models.Nmf.update per epoch", gensim=gensim.__version__)
    info.update(epochs=epoch, fit_seconds=seconds)
    return trace, info


def _nnls_rows(A, B):
    """Rows ``x_i >= 0`` minimising ``||A x_i - b_i||`` for the rows ``b_i`` of ``B``.

    Thin QR ``A = Q R`` first: the same minimisers, n x n subproblems.
    """
    from scipy.optimize import nnls

    Q, R = np.linalg.qr(A)
    rhs = B @ Q  # row i is (Q^T b_i)^T
    out = np.empty((B.shape[0], A.shape[1]))
    for i in range(B.shape[0]):
        out[i] = nnls(R, rhs[i], maxiter=50 * A.shape[1])[0]
    return out


def run_anls(data, truth, start, budget, shared):
    """Alternating NNLS with ``scipy.optimize.nnls`` from the clipped start."""
    H0, W0 = nonneg_start(data, start, shared)
    W, H = W0.copy(), H0.copy()
    trace = [_point(0.0, H, truth, iteration=0)]
    seconds, it = 0.0, 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        while seconds < budget:
            t0 = time.perf_counter()
            W = _nnls_rows(H.T, data)       # min ||Y - W H||, rows of W; H fixed
            H = _nnls_rows(W, data.T).T     # columns of H; W fixed
            seconds += time.perf_counter() - t0
            it += 1
            trace.append(_point(seconds, H, truth, iteration=it))
    info = _common_info(shared, "H0 = max(A0, 0) (W0 unused: the first half-step solves W "
                        "from H0)", solver="scipy.optimize.nnls (Lawson-Hanson) per row, "
                        "on the exact QR-reduced n x n problem", order="W then H")
    info.update(iterations=it, fit_seconds=seconds)
    return trace, info


RUNNERS = {"mu": run_mu, "minibatch": run_minibatch, "lda": run_lda, "gensim": run_gensim,
           "anls": run_anls}


def run_peer(peer, data, truth, start, budget, shared):
    """Run one peer; ``shared`` is a dict kept for one data set (the non-negative start)."""
    return RUNNERS[peer](data, truth, start, budget, shared)
