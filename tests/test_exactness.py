"""The bit-exactness rule: a tuned branch is chosen from a block's shape, dtype and layout
only, so a resumed fit takes the branches of the uninterrupted one and equals it bit for bit.

One case per tuned branch of the engine, each checked to take its branch.
"""

import numpy as np
import pytest
import scipy.sparse as sp

from streamnmf import AND, _engine
from streamnmf import _kernels as K
from streamnmf.datasets import make_dataset

# name -> (data set, n_components, n_features, dtype, csr, the branch's spy)
BRANCHES = {
    # at most NARROW_DECODE_COMPONENTS components: the fused narrow decode
    "narrow-decode": ("dir", 3, 100, np.float64, False, "narrow"),
    # GEMM in C order: float64 below FORTRAN_GEMM_MIN_FEATURES, and float32 at any width
    "gemm-c-order": ("dir", 8, 100, np.float64, False, "c-order"),
    "gemm-c-order-float32": ("dir", 8, 300, np.float32, False, "c-order"),
    # float64 from FORTRAN_GEMM_MIN_FEATURES features: GEMM written in Fortran order
    "gemm-fortran-order": ("dir", 8, 300, np.float64, False, "fortran-order"),
    # codes denser than DENSE_CODES: the statistics by BLAS products; sparser: the kernel
    "stats-by-products": ("dir", 8, 100, np.float64, False, "products"),
    "stats-on-the-support": ("ctm-ref", 30, 100, np.float64, False, "support"),
    "csr": ("dir", 8, 300, np.float64, True, "csr"),
    # CSR rows: the statistics by scipy.sparse products above CSR_DENSE_CODES, else the kernel
    "csr-stats-by-products": ("dir", 8, 300, np.float64, True, "csr-products"),
    "csr-stats-on-the-support": ("ctm-ref", 30, 300, np.float64, True, "csr-support"),
}


def spies(monkeypatch):
    """Count the calls of each branch's kernel, and the layout of the GEMM products."""
    seen = {key: 0 for key in ("narrow", "c-order", "fortran-order", "products", "support",
                               "csr", "csr-products", "csr-support")}

    def wrap(name, count):
        original = getattr(K, name)

        def spy(*args):
            count(*args)
            return original(*args)

        monkeypatch.setattr(K, name, spy)

    def layout(V, *rest):
        seen["fortran-order" if V.flags.f_contiguous and not V.flags.c_contiguous
             else "c-order"] += 1

    def stats(Y, Z, *rest):
        seen["support"] += 1

    wrap("dense_decode_narrow", lambda *a: seen.__setitem__("narrow", seen["narrow"] + 1))
    wrap("threshold_codes", layout)
    wrap("accumulate_stats_dense", stats)
    wrap("csr_decode", lambda *a: seen.__setitem__("csr", seen["csr"] + 1))
    wrap("accumulate_stats_csr",
         lambda *a: seen.__setitem__("csr-support", seen["csr-support"] + 1))
    products = _engine.StageStats.add

    def add(self, Y, Z, z_indptr, z_indices, v_min, with_products=False):
        if with_products and not sp.issparse(Y) and z_indices.size > _engine.DENSE_CODES * Z.size:
            seen["products"] += 1
        if (with_products and sp.issparse(Y)
                and z_indices.size > _engine.CSR_DENSE_CODES * Z.size):
            seen["csr-products"] += 1
        return products(self, Y, Z, z_indptr, z_indices, v_min, with_products=with_products)

    monkeypatch.setattr(_engine.StageStats, "add", add)
    return seen


@pytest.mark.parametrize("branch", list(BRANCHES))
def test_a_resumed_fit_takes_the_same_branch_and_equals_the_uninterrupted_one(
        branch, tmp_path, monkeypatch):
    name, k, m, dtype, csr, spy = BRANCHES[branch]
    data, truth, _ = make_dataset(name, 1200, k, m, random_state=1, dtype=dtype)
    rng = np.random.default_rng(2)
    init = truth * (1 + 0.05 * rng.uniform(-1, 1, truth.shape))
    if csr:
        data = sp.csr_matrix(data)
    kw = dict(init=init, stage_length=400, tol=0, n_iter_no_change=None, blas_threads=1)
    seen = spies(monkeypatch)
    whole = AND(k, n_stages=4, checkpoint=tmp_path / "whole.h5", **kw).fit(data)
    assert seen[spy] > 0, f"the {branch} branch did not run: {seen}"
    if spy == "products":
        assert seen["support"] == 0
    if spy == "support":
        assert seen["products"] == 0
    if spy == "csr-products":
        assert seen["csr-support"] == 0
    if spy == "csr-support":
        assert seen["csr-products"] == 0

    part = tmp_path / "part.h5"
    AND(k, n_stages=2, checkpoint=part, **kw).fit(data)
    resumed = AND(k, n_stages=4, checkpoint=part, **kw).fit(data, resume=True)
    assert resumed.n_stages_ == whole.n_stages_ == 4
    assert resumed.components_.dtype == dtype
    np.testing.assert_array_equal(resumed.components_, whole.components_)
    np.testing.assert_array_equal(resumed.history_["objective"], whole.history_["objective"])
