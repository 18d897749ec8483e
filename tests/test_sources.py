"""Sources: in-memory, streamed and HDF5 row blocks, shuffling, resume, prefetching, errors."""

import mmap
import pathlib
import pickle
import threading
import time

import h5py
import numpy as np
import pytest
import scipy.sparse as sp

from streamnmf.io.hdf5 import DatasetNotFoundError, HDF5Source, split_path_spec
from streamnmf.io import as_source
from streamnmf.io.sources import (
    INIT_BYTES, ArraySource, IterableSource, Prefetch, block_order, check_block,
    leading_rows, pass_ranges, prefetch_blocks,
)

N_SAMPLES, N_FEATURES = 1000, 50


# -- data and files ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def dense():
    rng = np.random.default_rng(0)
    X = rng.random((N_SAMPLES, N_FEATURES))
    X[:, 0] = np.arange(N_SAMPLES)  # the row index: tells which rows a block holds
    return X


@pytest.fixture(scope="module")
def csr():
    rng = np.random.default_rng(1)
    dense = np.where(rng.random((N_SAMPLES, N_FEATURES)) < 0.1, rng.random((N_SAMPLES, N_FEATURES)),
                     0.0)
    dense[:, 0] = np.arange(1, N_SAMPLES + 1)  # 1 + the row index
    dense[5:7] = 0.0  # empty rows must survive
    X = sp.csr_matrix(dense)
    assert X.has_canonical_format
    return X


def write_csr(group, X, shape_attr="shape"):
    group["data"] = X.data
    group["indices"] = X.indices
    group["indptr"] = X.indptr
    if shape_attr:
        group.attrs[shape_attr] = X.shape


@pytest.fixture(scope="module")
def h5file(tmp_path_factory, dense, csr):
    path = tmp_path_factory.mktemp("h5") / "data.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("data", data=dense, chunks=(64, N_FEATURES))
        f.create_dataset("contiguous", data=dense)
        f.create_dataset("single", data=dense.astype(np.float32))
        f.create_dataset("ints", data=(dense * 10).astype(np.int16))
        write_csr(f.create_group("X"), csr)
        write_csr(f.create_group("nested/X32"), sp.csr_matrix(csr, dtype=np.float32))
    return path


def collect(blocks):
    """Stack blocks (copied: ring buffers are reused)."""
    blocks = [b.copy() for b in blocks]
    if blocks and sp.issparse(blocks[0]):
        return sp.vstack(blocks, format="csr")
    return np.vstack(blocks) if blocks else np.zeros((0, N_FEATURES))


def as_dense(X):
    return X.toarray() if sp.issparse(X) else np.asarray(X)


# -- helpers -------------------------------------------------------------------------------------

def test_block_order_is_a_seeded_permutation_per_epoch():
    assert np.array_equal(block_order(5), np.arange(5))
    first = block_order(20, epoch=0, seed=7)
    assert np.array_equal(np.sort(first), np.arange(20))
    assert np.array_equal(first, block_order(20, epoch=0, seed=7))
    assert np.array_equal(first, np.random.default_rng([7, 0]).permutation(20))
    assert not np.array_equal(first, block_order(20, epoch=1, seed=7))


def test_pass_ranges_start_inside_a_block():
    assert list(pass_ranges(10, 4)) == [(0, 4), (4, 8), (8, 10)]
    assert list(pass_ranges(10, 4, start=5)) == [(5, 8), (8, 10)]
    assert list(pass_ranges(10, 4, order=[2, 0, 1], start=3)) == [(1, 4), (4, 8)]
    assert list(pass_ranges(10, 4, start=10)) == []


# -- in-memory and streamed sources ------------------------------------------------------------

@pytest.mark.parametrize("block_rows", [1, 64, 333, 1000, 4096])
@pytest.mark.parametrize("start", [0, 1, 63, 64, 500, 999, 1000])
def test_array_source_blocks_from_start(dense, csr, block_rows, start):
    for X in (dense, csr):
        source = ArraySource(X, block_rows=block_rows)
        blocks = list(source.blocks(start=start))
        assert all(b.shape[0] <= block_rows for b in blocks)
        got = collect(blocks)
        assert np.array_equal(as_dense(got), as_dense(X[start:]))


def test_array_source_unshuffled_blocks_are_views(dense, csr):
    source = ArraySource(dense, block_rows=300)
    assert all(np.shares_memory(b, dense) for b in source.blocks())
    assert [b.shape[0] for b in source.blocks()] == [300, 300, 300, 100]
    # CSR blocks share the values and column indices (scipy's row slice would copy them)
    blocks = list(ArraySource(csr, block_rows=300).blocks(start=10))
    assert [b.shape[0] for b in blocks] == [290, 300, 300, 100]
    for b, lo in zip(blocks, (10, 300, 600, 900)):
        assert np.shares_memory(b.data, csr.data) and np.shares_memory(b.indices, csr.indices)
        assert b.indptr[0] == 0 and b.has_canonical_format
        assert (b != csr[lo:lo + b.shape[0]]).nnz == 0


def test_array_source_shuffle_resume(dense):
    source = ArraySource(dense, block_rows=64, shuffle=True, random_state=3)
    full = collect(source.blocks(epoch=4))
    assert sorted(full[:, 0]) == list(range(N_SAMPLES))
    for start in (0, 10, 64, 65, 900):
        assert np.array_equal(collect(source.blocks(start=start, epoch=4)), full[start:])


def test_iterable_source_checks_width_and_dtype(dense):
    blocks = [dense[:10], dense[10:20, :40]]
    with pytest.raises(ValueError, match="block 1: expected 50 features"):
        list(IterableSource(blocks).blocks())
    blocks = [dense[:10], dense[10:20].astype(np.float32)]
    with pytest.raises(ValueError, match="block 1: expected dtype float64 like the earlier"):
        list(IterableSource(iter(blocks)).blocks())
    with pytest.raises(ValueError, match="block 0: expected 3 features"):
        list(IterableSource([dense[:5]], n_features=3).blocks())
    bad = dense[:10].copy()
    bad[3, 3] = np.nan
    with pytest.raises(ValueError, match="block 1: the data contain NaN or infinity"):
        list(IterableSource([dense[:10], bad]).blocks())


def test_iterable_source_start_and_sparse_blocks(csr):
    blocks = [csr[:100], csr[100:250].tocoo(), csr[250:]]
    source = IterableSource(blocks)
    got = collect(source.blocks(start=120))
    assert (got != csr[120:]).nnz == 0
    assert source.n_features == N_FEATURES and source.dtype == np.float64
    assert source.n_samples is None


def test_iterable_source_generator_is_one_shot_but_a_factory_is_not(dense):
    def make_blocks():
        for s in range(0, N_SAMPLES, 300):
            yield dense[s:s + 300]

    once = IterableSource(make_blocks())
    assert collect(once.blocks()).shape == dense.shape
    with pytest.raises(ValueError, match="consumed by an earlier pass.*function that returns"):
        once.blocks()
    again = IterableSource(make_blocks, n_samples=N_SAMPLES)
    for _ in range(2):
        assert np.array_equal(collect(again.blocks()), dense)
    wrong = IterableSource(make_blocks, n_samples=N_SAMPLES + 1)
    with pytest.raises(ValueError, match="expected n_samples=1001 rows in a pass, the iterable "
                                         "yielded 1000"):
        list(wrong.blocks())


def test_check_block_converts_and_checks(dense):
    ints = check_block(np.arange(6).reshape(2, 3))
    assert ints.dtype == np.float64 and ints.flags.c_contiguous
    fortran = check_block(np.asfortranarray(dense))
    assert fortran.flags.c_contiguous and np.array_equal(fortran, dense)
    huge = np.full((4, 4), 1e300)  # the quick finiteness test overflows; the exact one passes
    assert check_block(huge) is not None
    with pytest.raises(ValueError, match="X: the data contain NaN or infinity"):
        check_block(np.array([[1.0, np.inf]]), where="X")
    with pytest.raises(ValueError, match="expected numeric data, got dtype <U1"):
        check_block(np.array([["a"]]))
    with pytest.raises(ValueError, match="expected a 2-D array .* got shape \\(3,\\)"):
        check_block(np.ones(3))
    duplicated = sp.csr_matrix((np.ones(2), np.array([1, 1]), np.array([0, 2])), shape=(1, 3))
    assert check_block(duplicated).has_canonical_format


def test_as_source_dispatch(dense, h5file):
    assert isinstance(as_source(dense), ArraySource)
    assert isinstance(as_source([dense[:3]]), IterableSource)
    source = ArraySource(dense)
    assert as_source(source) is source
    with pytest.raises(TypeError, match="Expected an array, a sparse matrix, an iterable of row "
                                        "blocks or a Source.*got int"):
        as_source(3)


@pytest.mark.parametrize("name", ["data", "X"])
def test_leading_rows_copies_whole_blocks_up_to_the_budget(h5file, dense, csr, name):
    expected = csr if name == "X" else dense
    # read_direct into a ring of 3 buffers: the blocks taken must be copied as they come
    source = HDF5Source(h5file, name, block_rows=64, memory_map=False)
    rows = leading_rows(source.blocks(), N_FEATURES, N_SAMPLES)
    assert rows.shape == (N_SAMPLES, N_FEATURES)  # the file is far below INIT_BYTES
    assert np.array_equal(as_dense(rows), as_dense(expected))
    with pytest.MonkeyPatch.context() as patch:  # a budget of 100 dense rows
        patch.setattr("streamnmf.io.sources.INIT_BYTES", 100 * N_FEATURES * 8)
        rows = leading_rows(source.blocks(), N_FEATURES, N_SAMPLES)
        assert np.array_equal(as_dense(rows), as_dense(expected[:100]))
        big_first = HDF5Source(h5file, name, block_rows=300, memory_map=False)
        assert leading_rows(big_first.blocks(), N_FEATURES).shape[0] == 300  # >= one block
    assert INIT_BYTES >= 1 << 24


# -- HDF5: reading -------------------------------------------------------------------------------

@pytest.mark.parametrize("memory_map", [True, False])
@pytest.mark.parametrize("name", ["data", "contiguous", "X", "nested/X32"])
@pytest.mark.parametrize("block_rows", [1, 64, 100, 1000, 5000])
def test_hdf5_reads_back_the_array(h5file, dense, csr, name, block_rows, memory_map):
    expected = csr if "X" in name else dense
    source = HDF5Source(h5file, name, block_rows=block_rows, memory_map=memory_map)
    assert (source.n_samples, source.n_features) == (N_SAMPLES, N_FEATURES)
    assert source.kind == ("csr" if "X" in name else "dense")
    for start in (0, 1, 63, 64, 517, 999):
        # held blocks share ring buffers: only their shapes are compared
        blocks = list(source.blocks(start=start)) if block_rows >= 100 else None
        got = collect(source.blocks(start=start))
        assert got.dtype == source.dtype
        assert np.allclose(as_dense(got), as_dense(expected[start:]), rtol=1e-6)
        if blocks is not None:  # partial first block, then aligned blocks
            first = min(block_rows - start % block_rows, N_SAMPLES - start)
            assert blocks[0].shape[0] == first


def test_hdf5_block_types(h5file):
    dense_block = next(iter(HDF5Source(h5file, "data", block_rows=100).blocks()))
    assert isinstance(dense_block, np.ndarray) and dense_block.flags.c_contiguous
    assert dense_block.dtype == np.float64
    csr_source = HDF5Source(h5file, "X", block_rows=100)
    block = next(iter(csr_source.blocks()))
    assert isinstance(block, sp.csr_matrix)
    assert block.indices.dtype == np.int32 and block.indptr.dtype == np.int32
    assert csr_source.nnz > 0
    assert HDF5Source(h5file, "single").dtype == np.float32
    assert HDF5Source(h5file, "nested/X32").dtype == np.float32
    assert HDF5Source(h5file, "single", dtype=np.float64).dtype == np.float64
    forced = next(iter(HDF5Source(h5file, "data", dtype=np.float32).blocks()))
    assert forced.dtype == np.float32


def test_hdf5_integers_become_float64(h5file, dense):
    source = HDF5Source(h5file, "ints", block_rows=128)
    got = collect(source.blocks())
    assert source.dtype == np.float64 and got.dtype == np.float64
    assert np.array_equal(got, (dense * 10).astype(np.int16).astype(np.float64))


def test_hdf5_default_block_rows_are_whole_chunks(h5file):
    source = HDF5Source(h5file, "data")
    assert source.block_rows % 64 == 0


@pytest.mark.parametrize("memory_map", [True, False])
def test_hdf5_blocks_stay_valid_for_two_more(h5file, dense, memory_map):
    for prefetch in (False, 1, 3):
        source = HDF5Source(h5file, "data", block_rows=50, prefetch=prefetch,
                            memory_map=memory_map)
        held = []
        for block in source.blocks():
            held.append(block)
            for earlier in held[-3:]:  # this block and the two before it
                rows = earlier[:, 0].astype(int)
                assert np.array_equal(earlier, dense[rows])
            time.sleep(0.001 if prefetch else 0)  # let the reader run ahead


def test_hdf5_csr_ring_reuses_buffers(h5file):
    blocks = list(HDF5Source(h5file, "X", block_rows=100, memory_map=False).blocks())
    assert np.shares_memory(blocks[0].data, blocks[3].data)  # slot 0 again after 3 blocks
    assert not np.shares_memory(blocks[0].data, blocks[1].data)


# -- HDF5: blocks mapped from the file ---------------------------------------------------------

def is_mapped(array):
    """Whether an array is a view of a memory map (not a buffer HDF5 read into)."""
    base = array
    while base is not None and not isinstance(base, mmap.mmap):
        base = getattr(base, "base", None) if isinstance(base, np.ndarray) else getattr(
            base, "obj", None)
    return base is not None


@pytest.fixture(scope="module")
def layouts(tmp_path_factory, dense, csr):
    """Datasets of one file in layouts that can and cannot be mapped."""
    path = tmp_path_factory.mktemp("h5") / "layouts.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("gzip", data=dense, chunks=(64, N_FEATURES), compression="gzip")
        f.create_dataset("big_endian", data=dense.astype(">f8"))
        f.create_dataset("part_rows", data=dense, chunks=(64, 10))
        f.create_dataset("unwritten", shape=dense.shape, dtype=np.float64)
        # chunks written alternately with another dataset's: some blocks span a gap
        gaps = f.create_dataset("gaps", shape=dense.shape, dtype=np.float64,
                                chunks=(64, N_FEATURES))
        other = f.create_dataset("other", shape=dense.shape, dtype=np.float64,
                                 chunks=(64, N_FEATURES))
        for start in range(0, N_SAMPLES, 256):
            gaps[start:start + 256] = dense[start:start + 256]
            other[start:start + 256] = 1.0
            f.flush()  # allocate both datasets' chunks now, in turn
        write_csr(f.create_group("X64"), csr)  # indices stored as int32
        group = f.create_group("X_int64")
        write_csr(group, csr)
        del group["indices"]
        group["indices"] = csr.indices.astype(np.int64)
    return path


@pytest.mark.parametrize("name", ["data", "contiguous"])
def test_hdf5_maps_blocks_in_one_piece(h5file, dense, name):
    source = HDF5Source(h5file, name, block_rows=100, prefetch=True)
    blocks = [block.copy() if not is_mapped(block) else block for block in source.blocks()]
    assert all(is_mapped(block) for block in blocks)
    assert np.array_equal(np.vstack(blocks), dense)
    assert all(block.flags.writeable and block.flags.c_contiguous for block in blocks)


def test_hdf5_maps_where_it_can_and_reads_the_rest(layouts, dense):
    source = HDF5Source(layouts, "gaps", block_rows=100)
    blocks = [block.copy() if not is_mapped(block) else block for block in source.blocks()]
    mapped = [is_mapped(block) for block in blocks]
    assert any(mapped) and not all(mapped)  # blocks across a gap between chunks are read
    assert np.array_equal(np.vstack(blocks), dense)


@pytest.mark.parametrize("name, options", [
    ("gzip", {}), ("big_endian", {}), ("part_rows", {}), ("data", {"dtype": np.float32}),
    ("data", {"memory_map": False}),
])
def test_hdf5_reads_what_it_cannot_map(h5file, layouts, dense, name, options):
    path = h5file if name == "data" else layouts
    source = HDF5Source(path, name, block_rows=128, **options)
    blocks = [block.copy() for block in source.blocks()]
    assert not any(is_mapped(block) for block in source.blocks())
    assert np.array_equal(np.vstack(blocks), dense.astype(source.dtype))


def test_hdf5_unwritten_dataset_reads_fill_values(layouts):
    got = collect(HDF5Source(layouts, "unwritten", block_rows=300).blocks())
    assert np.array_equal(got, np.zeros((N_SAMPLES, N_FEATURES)))


def test_hdf5_maps_after_a_user_block(tmp_path, dense):
    path = tmp_path / "userblock.h5"
    with h5py.File(path, "w", userblock_size=4096) as f:
        f.create_dataset("data", data=dense)
    blocks = list(HDF5Source(path, block_rows=300).blocks())
    assert all(is_mapped(block) for block in blocks)
    assert np.array_equal(np.vstack(blocks), dense)


def test_hdf5_mapped_csr(layouts, csr):
    for name, indices_mapped in (("X64", True), ("X_int64", False)):
        blocks = list(HDF5Source(layouts, name, block_rows=1000).blocks())
        assert is_mapped(blocks[0].data)
        assert is_mapped(blocks[0].indices) == indices_mapped
        assert blocks[0].indices.dtype == np.int32
        assert (blocks[0] != csr).nnz == 0


def test_hdf5_writing_a_mapped_block_changes_nothing_else(tmp_path, dense):
    path = tmp_path / "mine.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("data", data=dense)
    before = path.read_bytes()
    source = HDF5Source(path, block_rows=100)
    block = next(iter(source.blocks()))
    assert is_mapped(block)
    block[:] = -1.0
    again = next(iter(source.blocks()))
    source.close()
    assert np.array_equal(again, dense[:100])
    assert np.all(block == -1.0)  # still valid after close
    assert path.read_bytes() == before


def test_hdf5_falls_back_to_reading_when_mapping_fails(h5file, dense, monkeypatch):
    import streamnmf.io.hdf5

    def refuse(*args, **kwargs):
        raise OSError(12, "Cannot allocate memory")

    source = HDF5Source(h5file, "contiguous", block_rows=300)
    first = next(iter(source.blocks()))
    assert is_mapped(first)
    monkeypatch.setattr(streamnmf.io.hdf5.mmap, "mmap", refuse)
    blocks = [block.copy() for block in source.blocks()]  # maps ready, mapping refused
    fresh = [block.copy() for block in HDF5Source(h5file, "contiguous", block_rows=300).blocks()]
    for got in (blocks, fresh):
        assert np.array_equal(np.vstack(got), dense)


def test_hdf5_pickled_source_maps_in_the_copy(h5file, dense):
    source = HDF5Source(h5file, "contiguous", block_rows=400)
    next(iter(source.blocks()))
    copy = pickle.loads(pickle.dumps(source))
    blocks = list(copy.blocks())
    assert is_mapped(blocks[0])
    assert np.array_equal(blocks[0], dense[:400])


def test_hdf5_shuffle_reproducible_and_complete(h5file):
    source = HDF5Source(h5file, "data", block_rows=64, shuffle=True, random_state=11)
    order = collect(source.blocks(epoch=2))[:, 0]
    assert sorted(order) == list(range(N_SAMPLES))  # every row exactly once
    assert np.array_equal(order, collect(source.blocks(epoch=2))[:, 0])
    assert not np.array_equal(order, collect(source.blocks(epoch=3))[:, 0])
    expected = np.concatenate([np.arange(N_SAMPLES)[b * 64:(b + 1) * 64]
                               for b in np.random.default_rng([11, 2]).permutation(16)])
    assert np.array_equal(order, expected)
    same_seed = HDF5Source(h5file, "data", block_rows=64, shuffle=True, random_state=11)
    assert np.array_equal(order, collect(same_seed.blocks(epoch=2))[:, 0])


def test_hdf5_shuffle_resume_inside_a_block(h5file, csr):
    source = HDF5Source(h5file, "X", block_rows=64, shuffle=True, random_state=5)
    full = collect(source.blocks(epoch=1))
    for start in (1, 63, 64, 100, 999):
        rest = collect(source.blocks(start=start, epoch=1))
        assert (rest != full[start:]).nnz == 0
    assert collect(source.blocks(start=N_SAMPLES, epoch=1)).shape[0] == 0


def test_hdf5_random_state_none_is_drawn_once(h5file):
    source = HDF5Source(h5file, "data", block_rows=64, shuffle=True)
    assert isinstance(source.seed, int) and HDF5Source(h5file).seed is None
    copy = pickle.loads(pickle.dumps(source))
    assert copy.seed == source.seed
    assert np.array_equal(collect(source.blocks(epoch=1)), collect(copy.blocks(epoch=1)))


def test_hdf5_pickle_round_trip(h5file, dense, csr):
    for name, expected in (("data", dense), ("X", csr)):
        source = HDF5Source(h5file, name, block_rows=100)
        next(iter(source.blocks()))  # the file is open now
        payload = pickle.dumps(source)
        assert len(payload) < 2000  # path, name and layout; neither handle nor indptr
        copy = pickle.loads(payload)
        assert copy._file is None
        assert (copy.n_samples, copy.n_features, copy.dtype) == (
            source.n_samples, source.n_features, source.dtype)
        assert np.array_equal(as_dense(collect(copy.blocks(start=5))), as_dense(expected[5:]))
        source.close()


def test_hdf5_close_context_manager_and_reopen(h5file, dense):
    with HDF5Source(h5file, "data", block_rows=100) as source:
        next(iter(source.blocks()))
        assert source._file is not None
    assert source._file is None
    assert np.array_equal(collect(source.blocks()), dense)  # opens again
    source.close()
    source.close()  # twice is fine


def test_hdf5_read_rows(h5file, dense, csr):
    assert np.array_equal(HDF5Source(h5file, "data").read(10, 20), dense[10:20])
    got = HDF5Source(h5file, "X").read(0, 7)
    assert (got != csr[:7]).nnz == 0
    with pytest.raises(ValueError, match="rows \\[10, 2000\\) are outside \\[0, 1000\\)"):
        HDF5Source(h5file, "data").read(10, 2000)


def test_hdf5_empty_dataset(tmp_path):
    path = tmp_path / "empty.h5"
    with h5py.File(path, "w") as f:
        f["data"] = np.zeros((0, 4))
    source = HDF5Source(path)
    assert source.n_samples == 0 and list(source.blocks()) == []


# -- as_source with paths and h5py objects -------------------------------------------------------

def test_as_source_paths_and_h5py_objects(h5file, dense, csr, tmp_path):
    by_default = as_source(str(h5file))
    assert isinstance(by_default, HDF5Source) and by_default.dataset == "/data"
    assert as_source(pathlib.Path(h5file)).dataset == "/data"
    assert as_source(f"{h5file}:/nested/X32").dataset == "/nested/X32"
    assert as_source((h5file, "X")).kind == "csr"
    assert as_source(str(h5file), block_rows=10).block_rows == 10
    with h5py.File(h5file, "r") as f:
        assert as_source(f["data"]).dataset == "/data"
        from_group = as_source(f["X"])
        assert from_group.kind == "csr"
        assert as_source(f).dataset == "/data"
    assert (collect(from_group.blocks()) != csr).nnz == 0  # reopened by path
    root = tmp_path / "root.h5"
    with h5py.File(root, "w") as f:
        write_csr(f, csr)  # the root group itself is the CSR matrix (h5sparse style)
    assert as_source(str(root)).dataset == "/"
    assert split_path_spec("a.h5:/x/y") == ("a.h5", "/x/y")
    assert split_path_spec("C:\\data.h5") == ("C:\\data.h5", None)


# -- HDF5: errors --------------------------------------------------------------------------------

def test_hdf5_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="HDF5 file not found: '.*missing.h5'"):
        HDF5Source(tmp_path / "missing.h5")
    with pytest.raises(FileNotFoundError, match="missing.h5"):
        as_source(f"{tmp_path / 'missing.h5'}:/data")
    text = tmp_path / "text.h5"
    text.write_text("not hdf5")
    with pytest.raises(OSError, match="is not an HDF5 file"):
        HDF5Source(text)


def test_hdf5_missing_dataset_lists_what_is_there(h5file, tmp_path):
    with pytest.raises(DatasetNotFoundError, match="no dataset or group named 'nope'.*'/X' "
                                                    "\\(CSR group 1000x50\\).*'/data'"):
        HDF5Source(h5file, "nope")
    with pytest.raises(KeyError):
        as_source(f"{h5file}:/nope")
    with pytest.raises(ValueError, match="nope"):
        as_source((h5file, "nope"))
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["counts"] = np.ones((3, 2))
        f["labels"] = np.arange(3)
    with pytest.raises(DatasetNotFoundError, match="no dataset or group named 'data' \\(the "
                                                    "default\\).*'/counts' \\(dataset 3x2"):
        as_source(str(other))


@pytest.fixture
def bad_file(tmp_path, csr):
    path = tmp_path / "bad.h5"
    with h5py.File(path, "w") as f:
        f["vector"] = np.ones(10)
        f["cube"] = np.ones((4, 3, 2))
        f["scalar"] = 1.0
        f["strings"] = np.array([[b"a", b"b"]])
        f["complex"] = np.ones((3, 2)) + 1j
        f["no_columns"] = np.ones((3, 0))
        f["nan"] = np.where(np.arange(200)[:, None] == 150, np.nan, np.ones((200, 3)))
        write_csr(f.create_group("no_shape"), csr, shape_attr=None)
        write_csr(f.create_group("h5sparse"), csr, shape_attr="h5sparse_shape")
        group = f.create_group("no_indptr")
        group["data"], group["indices"] = csr.data, csr.indices
        group.attrs["shape"] = csr.shape
        for name, edit in {
            "bad_shape": lambda g: g.attrs.__setitem__("shape", [1, 2, 3]),
            "short_indptr": lambda g: g.attrs.__setitem__("shape", (N_SAMPLES + 5, N_FEATURES)),
            "small_width": lambda g: g.attrs.__setitem__("shape", (N_SAMPLES, 10)),
        }.items():
            group = f.create_group(name)
            write_csr(group, csr)
            edit(group)
        indptr = csr.indptr.copy()
        indptr[10], indptr[11] = indptr[11], indptr[10] - 1
        for name, fields in {
            "not_monotone": dict(indptr=indptr),
            "bad_last": dict(indptr=np.append(csr.indptr[:-1], csr.nnz - 1)),
            "bad_first": dict(indptr=csr.indptr + 1),
            "float_indices": dict(indices=csr.indices.astype(np.float64)),
            "nan_data": dict(data=np.where(np.arange(csr.nnz) == 7, np.nan, csr.data)),
        }.items():
            group = f.create_group(name)
            arrays = {**dict(data=csr.data, indices=csr.indices, indptr=csr.indptr), **fields}
            for key, value in arrays.items():
                group[key] = value
            group.attrs["shape"] = csr.shape
        csc = f.create_group("csc")
        write_csr(csc, csr)
        csc.attrs["encoding-type"] = "csc_matrix"
    return path


@pytest.mark.parametrize("name, match", [
    ("vector", "expected a 2-D dataset of shape \\(n_samples, n_features\\) with samples as "
               "rows, found 1-D shape \\(10,\\). Store one feature as shape"),
    ("cube", "found 3-D shape \\(4, 3, 2\\). Flatten every sample to one row"),
    ("scalar", "found 0-D"),
    ("strings", "expected numeric data, found dtype \\|S1. Store the data as float32 or float64"),
    ("complex", "expected real numbers, found complex dtype complex128"),
    ("no_columns", "0 features"),
    ("no_shape", "no 'shape' attribute; expected \\(n_samples, n_features\\).*"
                 "group.attrs\\['shape'\\]"),
    ("bad_shape", "'shape' attribute must be two ints >= 0 .* found \\[1, 2, 3\\]"),
    ("no_indptr", "needs the datasets 'data', 'indices' and 'indptr'.*missing \\['indptr'\\], "
                  "found \\['data', 'indices'\\]"),
    ("short_indptr", "'indptr' has 1001 entries, expected n_samples \\+ 1 = 1006"),
    ("not_monotone", "'indptr' must be non-decreasing, but indptr\\[11\\]"),
    ("bad_last", "indptr\\[-1\\] = \\d+ must equal the number of stored values"),
    ("bad_first", "'indptr' must start at 0, found 1"),
    ("float_indices", "'indices' must hold integers, found dtype float64"),
    ("csc", "CSC matrix .* row blocks need CSR"),
])
def test_hdf5_bad_layouts(bad_file, name, match):
    with pytest.raises(ValueError, match=match):
        HDF5Source(bad_file, name)


def test_hdf5_errors_at_read_name_the_block(bad_file):
    with pytest.raises(ValueError, match="bad.h5:/nan' rows 128:192: the data contain NaN"):
        list(HDF5Source(bad_file, "nan", block_rows=64).blocks())
    with pytest.raises(ValueError, match="nan_data' rows 0:100: the data contain NaN"):
        list(HDF5Source(bad_file, "nan_data", block_rows=100).blocks())
    with pytest.raises(ValueError, match="column indices must lie in \\[0, 10\\)"):
        list(HDF5Source(bad_file, "small_width").blocks())
    assert HDF5Source(bad_file, "h5sparse").n_features == N_FEATURES  # h5sparse_shape is read


def test_bad_parameters(h5file, dense):
    with pytest.raises(ValueError, match="block_rows must be an int >= 1 or None, got 0"):
        HDF5Source(h5file, block_rows=0)
    with pytest.raises(ValueError, match="random_state must be None, an int >= 0"):
        HDF5Source(h5file, shuffle=True, random_state=-1)
    with pytest.raises(ValueError, match="dtype must be None, np.float32 or np.float64"):
        HDF5Source(h5file, dtype=np.int32)
    with pytest.raises(ValueError, match="dtype must be None, np.float32 or np.float64"):
        HDF5Source(h5file, dtype="no such type")
    with pytest.raises(ValueError, match="prefetch must be a bool or an int >= 0"):
        HDF5Source(h5file, prefetch=-1)
    with pytest.raises(ValueError, match="start must be an int >= 0, got -1"):
        ArraySource(dense).blocks(start=-1)
    with pytest.raises(ValueError, match="depth must be an int >= 1, got 0"):
        Prefetch(ArraySource(dense), depth=0)


# -- prefetching ---------------------------------------------------------------------------------

def test_prefetch_yields_identical_blocks(h5file, dense, csr):
    for name in ("data", "X"):
        plain = HDF5Source(h5file, name, block_rows=70, shuffle=True, random_state=2)
        ahead = HDF5Source(h5file, name, block_rows=70, shuffle=True, random_state=2,
                           prefetch=True)
        wrapped = Prefetch(HDF5Source(h5file, name, block_rows=70, shuffle=True,
                                      random_state=2), depth=3)
        expected = as_dense(collect(plain.blocks(start=33, epoch=1)))
        assert np.array_equal(as_dense(collect(ahead.blocks(start=33, epoch=1))), expected)
        assert np.array_equal(as_dense(collect(wrapped.blocks(start=33, epoch=1))), expected)
        assert wrapped.n_samples == N_SAMPLES and wrapped.block_rows == 70
    streamed = Prefetch(IterableSource([dense[:300], dense[300:]]), depth=1)
    assert streamed.n_features is None  # learnt from the first block
    assert np.array_equal(collect(streamed.blocks()), dense)
    assert streamed.n_features == N_FEATURES and streamed.dtype == np.float64


class StreamBroke(RuntimeError):
    pass


def test_prefetch_propagates_exceptions(dense):
    def blocks():
        yield dense[:10]
        yield dense[10:20]
        raise StreamBroke("sensor 3 went away")

    seen = []
    with pytest.raises(StreamBroke, match="sensor 3 went away"):
        for block in Prefetch(IterableSource(blocks())).blocks():
            seen.append(block)
    assert len(seen) == 2
    with pytest.raises(ValueError, match="block 1: expected 50 features"):
        list(Prefetch(IterableSource([dense[:5], dense[:5, :3]])).blocks())


def wait_for_threads(count, seconds=5.0):
    deadline = time.monotonic() + seconds
    while threading.active_count() > count and time.monotonic() < deadline:
        time.sleep(0.01)
    return threading.active_count()


def test_prefetch_stops_its_thread_when_the_consumer_stops(h5file, dense):
    before = threading.active_count()
    closed = []

    def endless():
        try:
            while True:
                yield dense[:10]
        finally:
            closed.append(True)  # the reader closed the underlying generator

    for _ in range(3):
        for index, _block in enumerate(Prefetch(IterableSource(endless())).blocks()):
            if index == 5:
                break
    assert threading.active_count() == before  # joined when the generator was closed
    assert closed == [True, True, True]
    blocks = HDF5Source(h5file, "data", block_rows=10, prefetch=4).blocks()
    next(blocks)
    assert threading.active_count() == before + 1
    blocks.close()
    assert wait_for_threads(before) == before
    unstarted = Prefetch(ArraySource(dense)).blocks()
    assert threading.active_count() == before  # nothing runs before the first block is asked
    del unstarted


def test_prefetch_bounds_read_ahead(dense):
    taken = []

    def counted():
        for s in range(0, 200, 10):
            taken.append(s)
            yield dense[s:s + 10]

    def settle(expected):
        deadline = time.monotonic() + 5.0
        while len(taken) < expected and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.05)  # time to overshoot, if it could
        return len(taken)

    blocks = prefetch_blocks(counted(), depth=2)
    next(blocks)
    assert settle(3) == 3  # the caller's block and two read ahead
    next(blocks)
    assert settle(4) == 4
    blocks.close()


# -- the estimator reads sources -----------------------------------------------------------------

def test_fit_reads_an_hdf5_source_like_the_array(tmp_path):
    from streamnmf import AND

    rng = np.random.default_rng(4)
    X = rng.dirichlet(np.full(4, 0.3), size=400) @ rng.random((4, 30))
    path = tmp_path / "fit.h5"
    with h5py.File(path, "w") as f:
        f["data"] = X
    params = dict(n_components=4, n_stages=4, random_state=0)
    in_memory = AND(**params).fit(ArraySource(X, block_rows=128))
    from_file = AND(**params).fit(HDF5Source(path, block_rows=128, prefetch=True))
    np.testing.assert_allclose(from_file.components_, in_memory.components_, rtol=1e-10,
                               atol=1e-12)
