"""Row blocks from an HDF5 file: a dense 2-D dataset or a CSR group, read block by block.

Layout the reader expects (and :func:`write_dense` / :func:`write_csr` in the tests write):

* dense: a 2-D numeric dataset of shape (n_samples, n_features), samples as rows. Reads are
  fastest uncompressed, stored contiguous or chunked by whole rows (a few hundred rows x all
  features); the default block height is a multiple of the chunk height so no chunk is read
  twice.
* CSR: a group holding the 1-D datasets ``data`` (n_stored,), ``indices`` (n_stored,) and
  ``indptr`` (n_samples + 1,) and the attribute ``shape = (n_samples, n_features)``: the
  convention of anndata (``encoding-type = "csr_matrix"``) and h5sparse (``h5sparse_shape``).
  ``indptr`` is validated once and kept in memory (8 bytes a row); a block reads
  ``indptr[s:e + 1]`` and the matching slices of ``data`` and ``indices``. Rows are expected in
  canonical form (column indices sorted, no duplicates), as scipy and anndata write them; the
  reader checks only what is cheap (the whole ``indptr`` once, the column bounds per block).

float32 and float64 data are read as they are; other numeric types (integers, booleans,
float16) are converted to float64 while reading, unless ``dtype`` asks for float32.

The source holds only the path, the dataset name and the layout; the file is opened read-only
at the first :meth:`HDF5Source.blocks` call and dropped when the source is pickled, so the
source can be sent to other processes (Dask workers) that open the file themselves.

Where the bytes of a block lie in one piece in the file (uncompressed data, stored contiguous or
in chunks of whole rows that follow one another, in the machine's byte order and the requested
type), the block is not copied at all: it is a view of a private memory map of that piece of
the file (``mmap.ACCESS_COPY``: the pages come straight from the operating system's file cache,
and writing to the block changes neither the file nor other blocks). Reading a block from the
cache then costs a few page faults instead of a copy through HDF5, which leaves the cores to
the kernels (on two cores a stagewise pass from the page cache took 0.97-1.19x the in-memory
compute, against 1.16-1.41x copying, in two runs). Every other block is read with ``read_direct``.
``memory_map=False`` turns this off. As with any memory map, a file truncated in place while
a block of it is in use ends the process (SIGBUS); replacing the file (write a new one,
rename it over) is safe.
"""

import mmap
import numbers
import os
import threading

import h5py
import numpy as np
import scipy.sparse as sp

from .sources import (
    _BLOCK_BYTES, FLOAT_DTYPES, RING_BUFFERS, Source, _check_block_rows, _check_finite,
    _check_position, _check_seed, block_order, default_block_rows, default_csr_block_rows,
    pass_ranges, prefetch_blocks,
)

__all__ = ["HDF5Source", "DatasetNotFoundError", "split_path_spec"]

#: name read when a path names no dataset
DEFAULT_DATASET = "data"

_INT32_MAX = np.iinfo(np.int32).max


class DatasetNotFoundError(KeyError, ValueError):
    """The HDF5 file has no dataset or group of the requested name (the message lists those
    it has). A ``KeyError`` like h5py's own, and a ``ValueError`` like the other input errors."""

    def __str__(self):  # KeyError would print the repr of the message
        return str(self.args[0]) if self.args else ""


def split_path_spec(spec):
    """Split ``"file.h5:/group/name"`` into ``(path, name)``; a plain path gives ``(path, None)``.

    A string naming an existing file is a plain path even if it contains a colon; a one-letter
    head (``"C:..."``) is a Windows drive, not a file name.

    Parameters
    ----------
    spec : str or os.PathLike

    Returns
    -------
    path : str
    name : str or None
    """
    text = os.fspath(spec)
    if not isinstance(spec, str) or os.path.exists(text):
        return text, None
    head, colon, tail = text.rpartition(":")
    if colon and len(head) > 1 and tail:
        return head, tail
    return text, None


def _describe(obj):
    """A short description of a dataset or CSR group for the listings in error messages."""
    if isinstance(obj, h5py.Dataset):
        return f"dataset {'x'.join(map(str, obj.shape)) or 'scalar'} {obj.dtype}"
    if not _looks_csr(obj):
        return "group"
    shape = obj.attrs.get("shape", obj.attrs.get("h5sparse_shape"))
    if shape is not None:
        shape = "x".join(str(int(v)) for v in np.ravel(shape))
    return f"CSR group {shape or '(no shape)'}"


def _candidates(file, limit=20):
    """Names of the 2-D datasets and CSR-like groups in a file, for error messages."""
    found = []

    def visit(name, obj):
        if len(found) > limit:
            return True  # stop the walk
        if isinstance(obj, h5py.Dataset) and obj.ndim == 2:
            found.append(f"'/{name}' ({_describe(obj)})")
        elif isinstance(obj, h5py.Group) and {"data", "indices", "indptr"} <= set(obj.keys()):
            found.append(f"'/{name}' ({_describe(obj)})")
        return None

    if _looks_csr(file):
        found.append(f"'/' ({_describe(file)})")
    file.visititems(visit)
    if not found:  # nothing readable: list what is there at the top
        found = [f"'/{name}' ({_describe(file[name])})" for name in list(file.keys())[:limit]]
    more = ", ..." if len(found) > limit else ""
    return (", ".join(found[:limit]) + more) or "nothing"


def _looks_csr(group):
    return isinstance(group, h5py.Group) and {"data", "indices", "indptr"} <= set(group.keys())


class _Layout:
    """What a source knows about its dataset: kind, shape, types; CSR: ``indptr`` and sizes."""

    def __init__(self, obj, label):
        if isinstance(obj, h5py.Dataset):
            self._dense(obj, label)
        elif isinstance(obj, h5py.Group):
            self._csr(obj, label)
        else:
            raise ValueError(f"{label}: expected a dataset or a group, found {type(obj).__name__}.")

    def _dense(self, dset, label):
        self.kind = "dense"
        if dset.ndim != 2:
            hint = {
                0: "Store the data as a 2-D array.",
                1: "Store one feature as shape (n_samples, 1) or one sample as (1, n_features), "
                   "or point to the 2-D dataset (or the CSR group, not its 'data' array).",
            }.get(dset.ndim, "Flatten every sample to one row when writing the file, e.g. "
                             "images of shape (n, h, w) as (n, h * w).")
            raise ValueError(
                f"{label}: expected a 2-D dataset of shape (n_samples, n_features) with samples "
                f"as rows, found {dset.ndim}-D shape {dset.shape}. {hint}"
            )
        self.stored_dtype = _check_numeric(dset.dtype, label)
        self.n_samples, self.n_features = (int(v) for v in dset.shape)
        _check_width(self.n_features, label)
        self.chunk_rows = int(dset.chunks[0]) if dset.chunks is not None else None
        self.nnz = None

    def _csr(self, group, label):
        self.kind = "csr"
        encoding = _attr_text(group.attrs.get("encoding-type", group.attrs.get(
            "h5sparse_format", "")))
        if "csc" in encoding:
            raise ValueError(
                f"{label}: the group holds a CSC matrix (encoding {encoding!r}); row blocks need "
                "CSR. Convert it when writing, e.g. write X.tocsr() (samples as rows)."
            )
        members = set(group.keys())
        missing = [name for name in ("data", "indices", "indptr") if name not in members]
        if missing:
            raise ValueError(
                f"{label}: a CSR group needs the datasets 'data', 'indices' and 'indptr' (the "
                f"anndata/h5sparse layout); missing {missing}, found {sorted(members) or 'none'}. "
                "Point to a dense 2-D dataset or to a complete CSR group."
            )
        for name in ("data", "indices", "indptr"):
            member = group[name]
            if not isinstance(member, h5py.Dataset) or member.ndim != 1:
                raise ValueError(
                    f"{label}: '{name}' of a CSR group must be a 1-D dataset, found "
                    f"{_describe(member) if isinstance(member, h5py.Dataset) else 'a group'}."
                )
        data, indices, indptr_ds = group["data"], group["indices"], group["indptr"]
        self.stored_dtype = _check_numeric(data.dtype, f"{label}/data")
        for name, ds in (("indices", indices), ("indptr", indptr_ds)):
            if ds.dtype.kind not in "iu":
                raise ValueError(
                    f"{label}: '{name}' must hold integers, found dtype {ds.dtype}. Write the "
                    "CSR arrays of a scipy.sparse.csr_matrix unchanged."
                )
        shape = group.attrs.get("shape", group.attrs.get("h5sparse_shape"))
        if shape is None:
            raise ValueError(
                f"{label}: the CSR group has no 'shape' attribute; expected (n_samples, "
                f"n_features) as anndata and h5sparse write it. Add it with "
                f"group.attrs['shape'] = (n_samples, n_features)."
            )
        shape = np.asarray(shape).ravel()
        if shape.size != 2 or shape.dtype.kind not in "iuf" or np.any(shape < 0) or np.any(
            shape != np.round(shape)
        ):
            raise ValueError(
                f"{label}: the 'shape' attribute must be two ints >= 0 (n_samples, n_features), "
                f"found {shape.tolist()}."
            )
        self.n_samples, self.n_features = (int(v) for v in shape)
        _check_width(self.n_features, label)
        self.nnz = int(data.shape[0])
        if indices.shape[0] != self.nnz:
            raise ValueError(
                f"{label}: 'indices' has {indices.shape[0]} entries and 'data' {self.nnz}; "
                "they must have one entry per stored value each."
            )
        if indptr_ds.shape[0] != self.n_samples + 1:
            raise ValueError(
                f"{label}: 'indptr' has {indptr_ds.shape[0]} entries, expected n_samples + 1 = "
                f"{self.n_samples + 1} for the 'shape' attribute {tuple(shape.tolist())}. The "
                "shape attribute or indptr is wrong."
            )
        indptr = indptr_ds[()].astype(np.int64)
        if indptr[0] != 0:
            raise ValueError(f"{label}: 'indptr' must start at 0, found {indptr[0]}.")
        steps = np.diff(indptr)
        if steps.size and steps.min() < 0:
            row = int(np.argmax(steps < 0))
            raise ValueError(
                f"{label}: 'indptr' must be non-decreasing, but indptr[{row + 1}] = "
                f"{indptr[row + 1]} < indptr[{row}] = {indptr[row]}. The group is corrupt or "
                "not a CSR matrix."
            )
        if indptr[-1] != self.nnz:
            raise ValueError(
                f"{label}: indptr[-1] = {indptr[-1]} must equal the number of stored values, "
                f"len(data) = {self.nnz}."
            )
        self.indptr = indptr
        self.chunk_rows = None


def _check_width(n_features, label):
    if n_features == 0:
        raise ValueError(f"{label}: the data have 0 features (columns); nothing to factorize.")


def _as_dtype(dtype):
    try:
        return np.dtype(dtype)
    except TypeError:
        return None


def _attr_text(value):
    return value.decode() if isinstance(value, bytes) else str(value)


def _check_numeric(dtype, label):
    if dtype.kind in "fiub" and dtype.fields is None:
        return np.dtype(dtype)
    if dtype.kind == "c":
        raise ValueError(
            f"{label}: expected real numbers, found complex dtype {dtype}. Store the real part "
            "(or real and imaginary parts as separate features)."
        )
    raise ValueError(
        f"{label}: expected numeric data, found dtype {dtype}. Store the data as float32 or "
        "float64 (integers are converted to float64 on reading)."
    )


class _FileMap:
    """Rows of an uncompressed HDF5 dataset as views of a private memory map of the file.

    Knows where every stored chunk (or the one contiguous extent) of the dataset starts in the
    file; :meth:`rows` maps rows ``[lo, hi)`` when their bytes lie in one piece (one chunk, or
    chunks that follow one another without gaps). Built by :meth:`of`, which returns None for
    a dataset the file's bytes cannot stand for directly.

    Parameters
    ----------
    fd : int
        Read-only descriptor of the file (mmap duplicates it; closing it later is safe).
    offsets : ndarray of int64, shape (n_chunks,)
        File offset of each chunk's first byte, -1 where a chunk is not stored.
    chunk_rows : int
        Rows per chunk (the dataset's rows for a contiguous dataset).
    row_shape : tuple of int
        Shape of one row (``(n_features,)`` or ``()`` for a 1-D dataset).
    dtype : numpy dtype
    """

    def __init__(self, fd, offsets, chunk_rows, row_shape, dtype):
        self.fd, self.offsets, self.chunk_rows = fd, offsets, chunk_rows
        self.row_shape, self.dtype = tuple(row_shape), np.dtype(dtype)
        self.row_bytes = int(np.prod(self.row_shape, dtype=np.int64)) * self.dtype.itemsize

    @classmethod
    def of(cls, dset, fd, dtype):
        """The map of ``dset`` read as ``dtype``, or None if its stored bytes are not that.

        Parameters
        ----------
        dset : h5py.Dataset
        fd : int
        dtype : numpy dtype

        Returns
        -------
        _FileMap or None
        """
        plist = dset.id.get_create_plist()
        layout = plist.get_layout()
        if (dset.dtype != dtype or not dset.dtype.isnative or plist.get_nfilters()
                or dset.file.driver != "sec2" or dset.external or dset.is_virtual
                or dset.size == 0 or layout not in (h5py.h5d.CONTIGUOUS, h5py.h5d.CHUNKED)):
            return None
        n_rows = dset.shape[0]
        if layout == h5py.h5d.CONTIGUOUS:
            start = dset.id.get_offset()
            if start is None:  # never written: no storage
                return None
            chunk_rows, offsets = n_rows, np.array([start], dtype=np.int64)
        else:
            if tuple(dset.chunks[1:]) != tuple(dset.shape[1:]):
                return None  # a chunk holds parts of rows: a row's bytes are scattered
            chunk_rows = int(dset.chunks[0])
            offsets = np.full(-(-n_rows // chunk_rows), -1, dtype=np.int64)
            for row, start in _stored_chunks(dset):
                offsets[row // chunk_rows] = start
        # (h5py's offsets count from the start of the file, a user block included)
        file_map = cls(fd, offsets, chunk_rows, dset.shape[1:], dtype)
        # the bytes must be the values: compare one row read both ways
        first = int(np.argmax(offsets >= 0)) * chunk_rows
        view = file_map.rows(first, first + 1) if offsets.max() >= 0 else None
        if view is None or view.tobytes() != dset[first:first + 1].tobytes():
            return None
        return file_map

    def rows(self, lo, hi):
        """Rows ``[lo, hi)`` (``hi > lo``) as a writable view of the file, or None if their
        bytes are not in one piece.

        Returns
        -------
        ndarray of shape (hi - lo,) + row_shape, or None
        """
        chunk_rows, row_bytes = self.chunk_rows, self.row_bytes
        first, last = lo // chunk_rows, (hi - 1) // chunk_rows
        offsets = self.offsets[first:last + 1]
        if offsets.min() < 0 or np.any(np.diff(offsets) != chunk_rows * row_bytes):
            return None
        start = int(offsets[0]) + (lo - first * chunk_rows) * row_bytes
        size = (hi - lo) * row_bytes
        base = start - start % mmap.ALLOCATIONGRANULARITY  # mmap offsets must be aligned
        pages = mmap.mmap(self.fd, size + start - base, access=mmap.ACCESS_COPY, offset=base)
        # the array keeps the map alive; the map is unmapped when the last view is dropped
        values = np.frombuffer(pages, dtype=self.dtype, count=size // self.dtype.itemsize,
                               offset=start - base)
        return values.reshape((hi - lo,) + self.row_shape)


def _stored_chunks(dset):
    """``(first row, file offset)`` of every stored chunk of a dataset chunked by rows."""
    found = []
    try:  # one call for all chunks (HDF5 >= 1.12.3 / 1.14)
        dset.id.chunk_iter(lambda info: found.append((info.chunk_offset[0], info.byte_offset)))
    except (AttributeError, NotImplementedError):
        for index in range(dset.id.get_num_chunks()):
            info = dset.id.get_chunk_info(index)
            found.append((info.chunk_offset[0], info.byte_offset))
    return found


class HDF5Source(Source):
    """Row blocks of a dense 2-D dataset or a CSR group of an HDF5 file.

    Blocks are mapped from the file where their bytes lie in one piece (module docstring),
    otherwise read with ``read_direct`` into a ring of reused buffers: memory stays at a few
    blocks (plus ``indptr`` for CSR) whatever the file size: 3 buffers, ``3 + prefetch`` when
    reading ahead. **A yielded block is valid until two more blocks have been taken from the
    same iterator** (asking for the third may overwrite it); copy it to keep it longer.

    Parameters
    ----------
    path : str or os.PathLike
        The HDF5 file; opened read-only.
    dataset : str, optional
        Name of a 2-D dataset (samples as rows) or of a CSR group. None: the root if it is a
        CSR group, else ``"data"``.
    block_rows : int, optional
        Rows per block. Default: about 16 MiB of dense rows, rounded to a multiple of the
        dataset's chunk height; for CSR about 16 MiB of stored values, at most 16384 rows.
    shuffle : bool, default=False
        Visit the blocks of every pass in a new order, drawn from
        ``np.random.default_rng([seed, epoch])`` (rows inside a block keep their order: reads
        stay sequential).
    random_state : int, numpy Generator or None
        Seed of the block orders; None draws one (kept, so all passes of this source and of
        its pickled copies agree).
    dtype : {None, float32, float64}
        Type of the blocks. None: float32 data stay float32, everything else becomes float64.
    prefetch : bool or int, default=False
        Read the next blocks in a background thread while the caller computes (see
        :class:`~streamnmf.io.Prefetch`); an int is the number of blocks read ahead,
        True is 2.
    memory_map : bool, default=True
        Hand out blocks whose bytes lie in one piece of the file as views of a private memory
        map instead of copies (module docstring); False reads every block with
        ``read_direct``. The values are the same either way.

    Attributes
    ----------
    n_samples, n_features : int
    dtype : numpy dtype
    block_rows : int
    kind : {"dense", "csr"}
    nnz : int or None
        Stored values of a CSR group.
    seed : int or None
        The seed of the block orders (resolved from ``random_state``); None without shuffling.

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    DatasetNotFoundError (a KeyError and a ValueError)
        No dataset or group of that name; the message lists the candidates in the file.
    ValueError
        Not 2-D, not numeric, or an incomplete or inconsistent CSR group.
    """

    def __init__(self, path, dataset=None, block_rows=None, shuffle=False, random_state=None,
                 dtype=None, prefetch=False, memory_map=True):
        given = os.fspath(path)
        self.path = os.path.abspath(given)  # workers may run in another directory
        if not os.path.exists(self.path):
            where = "" if os.path.isabs(given) else f" (a relative path: looked in {os.getcwd()})"
            raise FileNotFoundError(
                f"HDF5 file not found: '{given}'{where}. Check the path; a dataset inside the "
                "file is selected with 'file.h5:/name' or HDF5Source(path, dataset)."
            )
        self.block_rows = _check_block_rows(block_rows)
        self.shuffle = bool(shuffle)
        self.random_state = random_state
        self.seed = _check_seed(random_state) if self.shuffle else None
        if isinstance(prefetch, bool):
            prefetch = 2 if prefetch else 0
        if not isinstance(prefetch, numbers.Integral) or prefetch < 0:
            raise ValueError(f"prefetch must be a bool or an int >= 0, got {prefetch!r}.")
        self.prefetch = int(prefetch)
        self.memory_map = bool(memory_map)
        if dtype is not None and _as_dtype(dtype) not in FLOAT_DTYPES:
            raise ValueError(f"dtype must be None, np.float32 or np.float64, got {dtype!r}.")
        self._n_buffers = RING_BUFFERS
        self._lock = threading.Lock()
        self._file = None
        self._arrays = None  # the open h5py datasets read from: (dense,) or (data, indices)
        self._maps = None  # a _FileMap or None per array
        self._fd = None  # descriptor the maps are made from
        with self._open_file() as file:
            self.dataset = self._resolve_name(file, dataset)
            self._layout = _Layout(file[self.dataset], self._label())
        layout = self._layout
        self.kind = layout.kind
        self.n_samples, self.n_features, self.nnz = layout.n_samples, layout.n_features, layout.nnz
        if dtype is not None:
            self.dtype = np.dtype(dtype)
        elif layout.stored_dtype == np.float32:
            self.dtype = np.dtype(np.float32)
        else:
            self.dtype = np.dtype(np.float64)
        if self.block_rows is None:
            self.block_rows = self._default_block_rows()
        self._set_sizes()

    @classmethod
    def from_h5py(cls, obj, **options):
        """A source reading the file and name of an open ``h5py.Dataset``, ``Group`` or ``File``.

        The file is reopened read-only by path, so the object's file must exist on disk and
        hold what was written (flush it first).
        """
        name = obj.name if not isinstance(obj, h5py.File) else None
        return cls(obj.file.filename, name, **options)

    # -- layout ------------------------------------------------------------------------------
    def _label(self):
        return f"HDF5 '{self.path}:{self.dataset}'"

    def _open_file(self):
        if not os.path.exists(self.path):
            raise FileNotFoundError(
                f"HDF5 file not found: '{self.path}' (it was there when the source was created)."
            )
        if not os.path.isfile(self.path) or not h5py.is_hdf5(self.path):
            raise OSError(
                f"'{self.path}' is not an HDF5 file (no HDF5 signature). Sources read HDF5 "
                "files; write the data with h5py first."
            )
        return h5py.File(self.path, "r")

    def _resolve_name(self, file, dataset):
        if dataset is None:
            if _looks_csr(file):
                return "/"
            if DEFAULT_DATASET in file:
                return file[DEFAULT_DATASET].name
            raise DatasetNotFoundError(
                f"'{self.path}' has no dataset or group named '{DEFAULT_DATASET}' (the default) "
                f"and its root is not a CSR group; it holds {_candidates(file)}. Name one with "
                "'file.h5:/name' or HDF5Source(path, dataset='/name')."
            )
        name = str(dataset)
        if name not in file:
            raise DatasetNotFoundError(
                f"'{self.path}' has no dataset or group named '{name}'; it holds "
                f"{_candidates(file)}. Name one with 'file.h5:/name' or "
                "HDF5Source(path, dataset='/name')."
            )
        return file[name].name

    def _default_block_rows(self):
        layout = self._layout
        if layout.kind == "dense":
            rows = default_block_rows(layout.n_features, self.dtype.itemsize)
            chunk = layout.chunk_rows
            # whole chunks per block: a chunk split between two blocks is read (and decoded,
            # if compressed) twice
            if chunk and chunk * layout.n_features * self.dtype.itemsize <= 8 * _BLOCK_BYTES:
                rows = max(chunk, rows - rows % chunk)
            return int(rows)
        index_bytes = 4 if layout.n_features <= _INT32_MAX else 8
        return default_csr_block_rows(layout.n_samples, layout.nnz, self.dtype.itemsize,
                                      index_bytes)

    def _index_dtype(self, nnz):
        # int32 when it fits: scipy would otherwise copy int64 arrays down to int32. Block
        # indptr holds offsets inside the block, so a file with more than 2**31 stored values
        # still gets int32 blocks.
        fits = self.n_features <= _INT32_MAX and nnz <= _INT32_MAX
        return np.dtype(np.int32) if fits else np.dtype(np.int64)

    def _set_sizes(self):
        """Buffer sizes: rows of the tallest block and, for CSR, stored values of the fullest."""
        self._buffer_rows = max(0, min(self.block_rows, self.n_samples))
        self._max_block_nnz = 0
        if self.kind == "csr" and self.n_samples:
            bounds = self._layout.indptr[:: self.block_rows]
            bounds = np.append(bounds, self._layout.indptr[-1]) if (
                self.n_samples % self.block_rows) else bounds
            self._max_block_nnz = int(np.diff(bounds).max()) if bounds.size > 1 else 0

    # -- file handle ---------------------------------------------------------------------------
    def _ensure_open(self):
        """Open the file (read-only) once; after unpickling, check it still holds the same."""
        with self._lock:
            if self._file is not None and self._file.id.valid:
                return
            file = self._open_file()
            try:
                if self.dataset not in file:
                    raise DatasetNotFoundError(
                        f"'{self.path}' no longer holds '{self.dataset}'; it holds "
                        f"{_candidates(file)}. The file changed since the source was created."
                    )
                obj = file[self.dataset]
                is_dense = isinstance(obj, h5py.Dataset)
                layout = self._layout
                if is_dense == (self.kind == "dense"):
                    if self.kind == "csr" and layout.indptr is None:
                        layout = _Layout(obj, self._label())  # indptr is not pickled: reread it
                    shape = obj.shape if is_dense else (layout.n_samples, layout.n_features)
                if is_dense != (self.kind == "dense") or layout.nnz != self.nnz or (
                    shape != (self.n_samples, self.n_features)
                ):
                    raise ValueError(
                        f"{self._label()}: the file changed since the source was created "
                        f"(expected a {self.kind} matrix {self.n_samples}x{self.n_features})."
                    )
            except BaseException:
                file.close()
                raise
            self._layout = layout
            if self.kind == "dense":
                self._arrays, dtypes = (obj,), (self.dtype,)
            else:
                self._arrays = (obj["data"], obj["indices"])
                dtypes = (self.dtype, self._index_dtype(self.nnz))
            self._maps = (None,) * len(self._arrays)
            if self.memory_map:
                self._map_arrays(dtypes)
            self._file = file

    def _map_arrays(self, dtypes):
        """Prepare the memory maps; a file system that cannot map leaves plain reads."""
        if self._fd is not None:  # a handle h5py invalidated without close()
            os.close(self._fd)
            self._fd = None
        try:
            self._fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
            self._maps = tuple(_FileMap.of(array, self._fd, dtype)
                               for array, dtype in zip(self._arrays, dtypes))
        except (OSError, ValueError):
            self._maps = (None,) * len(self._arrays)
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def close(self):
        """Close the file; a later :meth:`blocks` call opens it again."""
        with self._lock:
            if self._file is not None:
                self._file.close()
            if self._fd is not None:
                os.close(self._fd)  # maps still alive keep their own duplicate
            self._file = self._fd = None
            self._arrays = self._maps = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def __getstate__(self):
        # h5py handles and locks cannot be pickled; indptr is reread where the copy opens
        state = self.__dict__.copy()
        state.update(_file=None, _arrays=None, _maps=None, _fd=None, _lock=None)
        if self.kind == "csr":
            layout = _Layout.__new__(_Layout)
            layout.__dict__.update(self._layout.__dict__, indptr=None)
            state["_layout"] = layout
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def __repr__(self):
        return (f"HDF5Source({self.path!r}, {self.dataset!r}, kind={self.kind!r}, "
                f"shape=({self.n_samples}, {self.n_features}), dtype={self.dtype}, "
                f"block_rows={self.block_rows})")

    # -- reading -----------------------------------------------------------------------------
    def reserve_buffers(self, n_buffers):
        self._n_buffers = max(self._n_buffers, int(n_buffers))

    def blocks(self, start=0, epoch=0):
        """Yield the row blocks of one pass (see :meth:`Source.blocks`).

        Yields
        ------
        block : {ndarray, csr_matrix} of shape (n_rows, n_features)
            C-contiguous dense rows, or CSR with int32 (int64 if needed) indices; valid until
            two more blocks have been taken.
        """
        start, epoch = _check_position(start, epoch)
        # blocks read ahead are alive too: ``prefetch`` more buffers keep the "valid while two
        # more are taken" rule
        blocks = self._read_pass(start, epoch, self._n_buffers + self.prefetch)
        return prefetch_blocks(blocks, self.prefetch) if self.prefetch else blocks

    def _read_pass(self, start, epoch, n_buffers):
        self._ensure_open()
        n_blocks = -(-self.n_samples // self.block_rows)
        order = block_order(n_blocks, epoch, self.seed) if self.shuffle else None
        ring = [None] * n_buffers  # allocated as the ring first reaches each slot
        slot = 0
        for row_start, row_stop in pass_ranges(self.n_samples, self.block_rows, order, start):
            if ring[slot] is None:
                ring[slot] = self._new_buffers(self._buffer_rows, self._max_block_nnz)
            yield self._read_into(ring[slot], row_start, row_stop)
            slot = (slot + 1) % n_buffers

    def read(self, row_start, row_stop):
        """Rows ``[row_start, row_stop)`` as a new block (not a ring buffer).

        Parameters
        ----------
        row_start, row_stop : int

        Returns
        -------
        block : {ndarray, csr_matrix} of shape (row_stop - row_start, n_features)
        """
        row_start, row_stop = (int(v) for v in (row_start, row_stop))
        if not 0 <= row_start <= row_stop <= self.n_samples:
            raise ValueError(
                f"rows [{row_start}, {row_stop}) are outside [0, {self.n_samples}) of "
                f"{self._label()}."
            )
        self._ensure_open()
        nnz = 0
        if self.kind == "csr":
            nnz = int(self._layout.indptr[row_stop] - self._layout.indptr[row_start])
        return self._read_into(self._new_buffers(row_stop - row_start, nnz), row_start, row_stop)

    def _new_buffers(self, n_rows, nnz):
        if self.kind == "dense":
            return np.empty((n_rows, self.n_features), dtype=self.dtype)
        index_dtype = self._index_dtype(nnz)
        return (np.empty(nnz, dtype=self.dtype), np.empty(nnz, dtype=index_dtype),
                np.empty(n_rows + 1, dtype=index_dtype))

    def _rows(self, which, lo, hi, buffer):
        """Rows ``[lo, hi)`` of array ``which``: a view of the file where mapped, else read
        into ``buffer``."""
        file_map = self._maps[which]
        if hi > lo and file_map is not None and file_map.dtype == buffer.dtype:
            try:
                view = file_map.rows(lo, hi)
            except OSError:  # e.g. out of map slots: read this block instead
                view = None
            if view is not None:
                return view
        if hi > lo:
            self._arrays[which].read_direct(buffer, np.s_[lo:hi], np.s_[0:hi - lo])
        return buffer[:hi - lo]

    def _read_into(self, buffers, row_start, row_stop):
        n_rows = row_stop - row_start
        where = f"{self._label()} rows {row_start}:{row_stop}"
        if self.kind == "dense":
            block = self._rows(0, row_start, row_stop, buffers)
            _check_finite(block, where)
            return block
        data_buffer, indices_buffer, indptr_buffer = buffers
        indptr = self._layout.indptr
        lo, hi = int(indptr[row_start]), int(indptr[row_stop])
        nnz = hi - lo
        data = self._rows(0, lo, hi, data_buffer)
        indices = self._rows(1, lo, hi, indices_buffer)
        if nnz:
            low, high = indices.min(), indices.max()
            if low < 0 or high >= self.n_features:
                raise ValueError(
                    f"{where}: column indices must lie in [0, {self.n_features}) (shape "
                    f"attribute), found {low if low < 0 else high}. The CSR group is corrupt or "
                    "its shape attribute is too small."
                )
        np.subtract(indptr[row_start:row_stop + 1], lo, out=indptr_buffer[:n_rows + 1],
                    casting="unsafe")
        block = sp.csr_matrix((data, indices, indptr_buffer[:n_rows + 1]),
                              shape=(n_rows, self.n_features), copy=False)
        _check_finite(block, where)
        return block
