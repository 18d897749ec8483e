"""Data sets written to and read from HDF5 files, block by block."""

import json
import numbers
import os

import h5py
import numpy as np

from ..io.atomic import write_atomic
from ._random import DATASET_NAMES, _check_int
from .streams import Dataset, DatasetStream


HDF5_FORMAT = "streamnmf-dataset"
HDF5_FORMAT_VERSION = 1

# Target bytes of one HDF5 chunk (the unit HDF5 reads, compresses and caches) and of one block
# generated in memory while writing.
_CHUNK_BYTES = 1 << 20
_WRITE_BLOCK_BYTES = 1 << 24
_COMPRESSIONS = (None, "gzip", "lzf")


def _chunk_rows(n_rows, row_bytes):
    """Rows of a (rows, full width) HDF5 chunk of about 1 MiB (at least 1, at most n_rows)."""
    return int(max(1, min(n_rows, round(_CHUNK_BYTES / max(1, row_bytes)))))


def _check_compression(compression):
    if isinstance(compression, numbers.Integral) and not isinstance(compression, bool):
        if not 0 <= compression <= 9:
            raise ValueError(f"A gzip compression level must be in 0..9, got {compression}.")
        return "gzip", int(compression)
    if compression not in _COMPRESSIONS:
        raise ValueError(
            f"compression must be None, 'gzip', 'lzf' or a gzip level 0..9, got "
            f"{compression!r}."
        )
    return compression, None


def _resolve_stream(source, n_samples, n_components, n_features, noise, weight_params,
                    random_state, dtype):
    if isinstance(source, DatasetStream):
        given = {
            "n_samples": n_samples, "n_components": n_components, "n_features": n_features,
            "noise": noise, "weight_params": weight_params, "random_state": random_state,
            "dtype": dtype,
        }
        clash = sorted(key for key, value in given.items() if value is not None)
        if clash:
            raise ValueError(
                f"{clash} are fixed by the stream passed as source; leave them out, or pass "
                f"the data set's name instead of a stream."
            )
        return source
    if not isinstance(source, str):
        raise ValueError(
            f"source must be a data set name (one of {list(DATASET_NAMES)}) or a DatasetStream "
            f"(e.g. from iter_dataset or iter_purification_data), got "
            f"{type(source).__name__}."
        )
    return DatasetStream(
        source,
        5000 if n_samples is None else n_samples,
        100 if n_components is None else n_components,
        1000 if n_features is None else n_features,
        noise=noise, weight_params=weight_params, random_state=random_state,
        dtype=np.float64 if dtype is None else dtype,
    )


def _plain_params(params):
    """The JSON-representable part of a parameter dict (arrays summarised by their shape)."""
    out = {}
    for key, value in params.items():
        if isinstance(value, np.ndarray):
            if value.ndim == 1 and value.size <= 1000:
                out[key] = value.tolist()
            else:
                out[key] = f"<array of shape {value.shape}>"
        elif isinstance(value, (np.integer, np.floating)):
            out[key] = value.item()
        elif isinstance(value, tuple):
            out[key] = list(value)
        else:
            out[key] = value
    return out


def write_hdf5(path, source, n_samples=None, n_components=None, n_features=None, *,
               noise=None, weight_params=None, dataset="data", sparse=False, block_size=None,
               compression=None, with_weights=False, overwrite=False, random_state=None,
               dtype=None):
    """Write a generated data set to an HDF5 file, block by block.

    Memory stays bounded by one block of ``block_size`` rows (dense, plus its CSR form when
    ``sparse``), whatever ``n_samples``: a 1e7 x 1000 data set (80 GB) is written with about
    16 MiB of data in memory. The file is written atomically: into a temporary file in the
    target's directory, flushed, fsync'ed and renamed (``os.replace``), so the path holds either
    nothing (or its old content) or the complete file; the temporary file is removed on any
    error, including KeyboardInterrupt.

    Layout (``N = n_samples``, ``m = n_features``, ``n = n_components``):

    * dense (``sparse=False``): dataset ``<dataset>`` of shape (N, m), samples as rows, stored
      contiguous (compressed: chunked by whole rows with about 1 MiB per chunk).
    * CSR (``sparse=True``): group ``<dataset>`` holding ``data`` (nnz values), ``indices``
      (nnz column indices, int32 unless m needs int64) and ``indptr`` (N + 1, int64), with group
      attributes ``shape = (N, m)``, ``encoding-type = "csr_matrix"``,
      ``encoding-version = "0.1.0"`` (the anndata convention) and ``h5sparse_format = "csr"``,
      ``h5sparse_shape`` (h5sparse). Exact zeros are dropped; ``data`` and ``indices`` grow per
      block. Worth it when most entries are exactly 0, e.g. binary or (A2') weights with
      components that have exact zeros.
    * ``components``: (n, m), the ground truth ``A*.T``, float64 as generated.
    * ``weights``: (N, n), dense, only with ``with_weights=True`` (as big as N x n).
    * root attributes: ``format = "streamnmf-dataset"``, ``format_version``, ``name``,
      ``data_path`` (= ``dataset``), ``layout`` ("dense" or "csr"), ``n_samples``,
      ``n_features``, ``n_components``, ``noise``, ``weight_kind``, ``weight_params_json``,
      ``streamnmf_version``, ``dtype``; ``noise_kind`` for Purification streams;
      ``random_state`` when the seed was an int; ``seed_entropy`` (decimal string) whenever
      ``random_state=int(seed_entropy)`` regenerates the same data.

    Parameters
    ----------
    path : str or PathLike
        The file to create. Its directory must exist.
    source : str or DatasetStream
        A data set name of :func:`make_dataset` (then ``n_samples`` ... ``dtype`` are as there,
        with its defaults when None), or a stream from :func:`iter_dataset` or
        :func:`iter_purification_data` (then those parameters must be left None).
    n_samples, n_components, n_features : int or None
        As in :func:`make_dataset`; None means its default (5000, 100, 1000).
    noise : float or None, default=None
        As in :func:`make_dataset`.
    weight_params : dict or None, default=None
        As in :func:`make_dataset`.
    dataset : str, default="data"
        Name of the data's dataset (dense) or group (CSR); not "components" or "weights".
    sparse : bool, default=False
        Write CSR instead of a dense array.
    block_size : int or None, default=None
        Rows generated and written at a time; None: about 16 MiB of dense rows, a whole number
        of HDF5 chunks.
    compression : None, "gzip", "lzf" or int, default=None
        HDF5 compression filter of every dataset; an int is a gzip level 0..9.
    with_weights : bool, default=False
        Also store the true weights.
    overwrite : bool, default=False
        Replace an existing file. Without it an existing ``path`` raises FileExistsError.
    random_state : None, int, SeedSequence or numpy Generator, default=None
        As in :func:`make_dataset`.
    dtype : {np.float64, np.float32} or None, default=None
        Type of the stored data and weights; None: float64 (or the stream's dtype).

    Returns
    -------
    path : str
        The path written.

    Raises
    ------
    FileExistsError
        ``path`` exists and ``overwrite`` is False.
    FileNotFoundError
        The directory of ``path`` does not exist.
    ValueError
        Bad parameters (see :func:`make_dataset`), or parameters given with a stream.

    Examples
    --------
    >>> write_hdf5("dir.h5", "dir", 10**6, random_state=0)              # doctest: +SKIP
    >>> stream = iter_purification_data(10**5, 20, 200, random_state=1)   # doctest: +SKIP
    >>> write_hdf5("pur.h5", stream, sparse=True, with_weights=True)     # doctest: +SKIP
    """
    from .. import __version__

    path = os.fspath(path)
    stream = _resolve_stream(source, n_samples, n_components, n_features, noise,
                             weight_params, random_state, dtype)
    if not isinstance(dataset, str) or not dataset.strip("/") or dataset.strip("/") in (
            "components", "weights"):
        raise ValueError(
            f"dataset must be a non-empty name other than 'components' and 'weights' (those "
            f"hold the truth), got {dataset!r}."
        )
    dataset = dataset.strip("/")
    compression, compression_opts = _check_compression(compression)
    n, m, k = stream.n_samples, stream.n_features, stream.n_components
    itemsize = stream.dtype.itemsize
    rows_per_chunk = _chunk_rows(n, m * itemsize)
    if block_size is None:
        chunks_per_block = max(1, _WRITE_BLOCK_BYTES // (rows_per_chunk * m * itemsize))
        block_size = min(n, chunks_per_block * rows_per_chunk)
    block_size = _check_int("block_size", block_size)
    if os.path.isdir(path):
        raise ValueError(f"{path!r} is a directory; give the path of the file to create.")
    if os.path.lexists(path) and not overwrite:
        raise FileExistsError(f"{path!r} already exists; pass overwrite=True to replace it.")
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(
            f"The directory {directory!r} of {path!r} does not exist; create it first."
        )

    def fill(f):
        filters = {"compression": compression, "compression_opts": compression_opts}
        attrs = f.attrs
        attrs["format"] = HDF5_FORMAT
        attrs["format_version"] = HDF5_FORMAT_VERSION
        attrs["name"] = stream.name
        attrs["data_path"] = dataset
        attrs["layout"] = "csr" if sparse else "dense"
        attrs["n_samples"] = n
        attrs["n_features"] = m
        attrs["n_components"] = k
        attrs["noise"] = float(stream.noise)
        attrs["weight_kind"] = stream.weight_kind
        attrs["weight_params_json"] = json.dumps(_plain_params(stream.weight_params))
        attrs["streamnmf_version"] = __version__
        attrs["dtype"] = stream.dtype.name
        if getattr(stream, "noise_kind", None) is not None:
            attrs["noise_kind"] = stream.noise_kind
        if stream.random_state is not None:
            attrs["random_state"] = stream.random_state
        seed = stream._seed
        if not tuple(seed.spawn_key) and isinstance(seed.entropy, numbers.Integral):
            attrs["seed_entropy"] = str(int(seed.entropy))
        f.create_dataset("components", data=stream._components, **filters)

        weights_ds = None
        if with_weights:
            weights_ds = f.create_dataset(
                "weights", shape=(n, k), dtype=stream.dtype,
                chunks=(_chunk_rows(n, k * itemsize), k), **filters)
        if sparse:
            group = f.create_group(dataset)
            for key, value in (("shape", np.array([n, m], dtype=np.int64)),
                               ("encoding-type", "csr_matrix"),
                               ("encoding-version", "0.1.0"),
                               ("h5sparse_format", "csr"),
                               ("h5sparse_shape", np.array([n, m], dtype=np.int64))):
                group.attrs[key] = value
            index_dtype = np.int32 if m <= np.iinfo(np.int32).max else np.int64
            values_ds = group.create_dataset(
                "data", shape=(0,), maxshape=(None,), dtype=stream.dtype,
                chunks=(max(1, _CHUNK_BYTES // itemsize),), **filters)
            indices_ds = group.create_dataset(
                "indices", shape=(0,), maxshape=(None,), dtype=index_dtype,
                chunks=(max(1, _CHUNK_BYTES // np.dtype(index_dtype).itemsize),),
                **filters)
            indptr_ds = group.create_dataset(
                "indptr", shape=(n + 1,), dtype=np.int64,
                chunks=(min(n + 1, _CHUNK_BYTES // 8),), **filters)
            indptr_ds[0] = 0
            nnz = 0
        else:
            # uncompressed: one contiguous extent, so every block a reader takes is one
            # piece of the file (HDF5Source maps it instead of copying it)
            data_ds = f.create_dataset(
                dataset, shape=(n, m), dtype=stream.dtype,
                chunks=(rows_per_chunk, m) if compression else None, **filters)

        for start in range(0, n, block_size):
            stop = min(start + block_size, n)
            block, weights = stream.get_block(start, stop)
            if weights_ds is not None:
                weights_ds[start:stop] = weights
            del weights
            if sparse:
                # Flat positions of the non-zeros, row-major: one index array, not two.
                flat = np.flatnonzero(block)
                counts = np.count_nonzero(block, axis=1)
                values = block.ravel()[flat]
                cols = flat % m
                del flat
                grown = nnz + values.size
                values_ds.resize((grown,))
                indices_ds.resize((grown,))
                values_ds[nnz:grown] = values
                indices_ds[nnz:grown] = cols.astype(index_dtype, copy=False)
                indptr_ds[start + 1:stop + 1] = nnz + np.cumsum(counts, dtype=np.int64)
                nnz = grown
            else:
                data_ds[start:stop] = block
            del block

    # A chunk cache that holds a few chunks, so that writes that straddle chunks do not re-read
    # them from disk; no checksum: it would read the whole data set back.
    write_atomic(path, fill, overwrite=overwrite, with_checksum=False,
                 rdcc_nbytes=8 * _CHUNK_BYTES)
    return path


def _open_dataset_file(path):
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"No such file: {path!r}.")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise ValueError(f"{path!r} cannot be read as HDF5 ({exc}).") from exc
    if "components" not in f:
        f.close()
        raise ValueError(
            f"{path!r} has no 'components' dataset; it was not written by "
            f"streamnmf.datasets.write_hdf5 (root attribute format={HDF5_FORMAT!r})."
        )
    return f


def load_hdf5_truth(path):
    """The ground-truth components stored by :func:`write_hdf5`.

    Parameters
    ----------
    path : str or PathLike
        A file written by :func:`write_hdf5`.

    Returns
    -------
    components : ndarray of shape (n_components, n_features)
        The truth as rows (``A*.T``), float64.

    Raises
    ------
    FileNotFoundError
        No such file.
    ValueError
        Not HDF5, or no ``components`` dataset in it.
    """
    with _open_dataset_file(path) as f:
        components = f["components"][()]
    if components.ndim != 2:
        raise ValueError(
            f"'components' in {os.fspath(path)!r} has shape {components.shape}; expected "
            f"(n_components, n_features)."
        )
    return components


def load_hdf5(path):
    """Read a whole file written by :func:`write_hdf5` into memory (for small data sets).

    Large files should be read block by block instead (for example with h5py slicing of the
    dense dataset, or of ``indptr`` and then ``data``/``indices`` for CSR).

    Parameters
    ----------
    path : str or PathLike
        A file written by :func:`write_hdf5`.

    Returns
    -------
    dataset : Dataset
        ``data``: ndarray of shape (n_samples, n_features), or a ``scipy.sparse.csr_matrix`` for
        the CSR layout; ``components``: ndarray of shape (n_components, n_features);
        ``weights``: ndarray of shape (n_samples, n_components), or None when not stored.
    attrs : dict
        The root attributes (``weight_params_json`` decoded into ``weight_params``).
    """
    import scipy.sparse as sp

    with _open_dataset_file(path) as f:
        attrs = {key: (value.item() if isinstance(value, np.generic) else value)
                 for key, value in f.attrs.items()}
        if "weight_params_json" in attrs:
            attrs["weight_params"] = json.loads(attrs.pop("weight_params_json"))
        name = attrs.get("data_path", "data")
        if name not in f:
            raise ValueError(f"{os.fspath(path)!r} has no data at {name!r}.")
        node = f[name]
        if attrs.get("layout") == "csr" or not hasattr(node, "shape"):
            shape = tuple(int(v) for v in node.attrs["shape"])
            data = sp.csr_matrix(
                (node["data"][()], node["indices"][()], node["indptr"][()]), shape=shape)
        else:
            data = node[()]
        components = f["components"][()]
        weights = f["weights"][()] if "weights" in f else None
    return Dataset(data, components, weights), attrs
