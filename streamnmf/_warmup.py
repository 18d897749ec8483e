"""``streamnmf.warmup()``: compile (or load from numba's cache) every kernel a fit runs."""

import time

import numpy as np
import scipy.sparse as sp

from . import _kernels
from ._engine import FORTRAN_GEMM_MIN_FEATURES, NARROW_DECODE_COMPONENTS, decode


def warmup(dtypes=("float64", "float32")):
    """Compile every kernel a fit, ``partial_fit`` and ``transform`` run, once per process.

    The kernels are compiled on their first call and cached on disk (numba's ``cache=True``,
    next to the package or in ``NUMBA_CACHE_DIR``), so a process's first fit pays seconds of
    compilation, or a fraction of a second to load the cache. Call this before timing a fit, in
    each worker of a pool, or once after installing (to fill the cache). It fits AND (each
    update rule, non-negative and signed components, narrow and wide decodes) and
    Purification on tiny dense and CSR data of each dtype, and transforms with each decoder.

    Parameters
    ----------
    dtypes : sequence of {"float64", "float32"}
        The data types to compile for. float32 includes float64: a float32 fit finishes in
        float64 arithmetic.

    Returns
    -------
    float
        Seconds spent.
    """
    from ._and import AND
    from ._purification import Purification

    t0 = time.perf_counter()
    rng = np.random.default_rng(0)
    n_samples, n_features = 96, 16
    dtypes = {np.dtype(d) for d in dtypes}
    if np.dtype(np.float32) in dtypes:
        dtypes.add(np.dtype(np.float64))
    for dtype in sorted(dtypes, key=str):
        # narrow and wide decodes; with 12 components the codes are sparse enough for the
        # kernels that walk their support
        for n_components in (NARROW_DECODE_COMPONENTS, 12):
            weights = np.eye(n_components)[rng.integers(n_components, size=n_samples)]
            components = rng.random((n_components, n_features))
            # noise, so that the non-negative solve meets negative entries
            noise = 0.05 * rng.random((n_samples, n_features))
            positive = (weights @ components + noise).astype(dtype)
            signed = positive - positive.mean()
            for Y in (positive, sp.csr_matrix(positive), signed):
                for update in ("stagewise", "gd", "sgd"):
                    model = AND(n_components, update=update, n_stages=2, stage_length=32,
                                n_inner=2, random_state=0, tol=0, n_iter_no_change=None,
                                blas_threads=1, drift=None).fit(Y)
                    model.partial_fit(Y)
                    for decoder in ("nnls", "threshold"):
                        model.set_params(transform_algorithm=decoder).transform(Y)
            for Y in (positive, sp.csr_matrix(positive)):
                Purification(n_components, n_stages=2, stage_length=32, random_state=0,
                             n_iter_no_change=None, blas_threads=1).fit(Y).transform(Y)
        if dtype == np.float64:  # wide float64 blocks: the product written in Fortran order
            wide = rng.random((8, FORTRAN_GEMM_MIN_FEATURES))
            decode(wide, rng.random((FORTRAN_GEMM_MIN_FEATURES, 12)), 0.0, _kernels.HARD)
    return time.perf_counter() - t0
