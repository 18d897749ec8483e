"""Data in and out: row-block sources, HDF5 files, atomic writes, checkpoint and model records.

Sources (:class:`Source` and its kinds) yield the row blocks a fit reads; :func:`as_source`
turns what a user passes to ``fit`` into one. :mod:`~streamnmf.io.atomic` writes every file
of the library atomically; :mod:`~streamnmf.io.records` holds the checkpoint and model file
schemas.
"""

from .hdf5 import DatasetNotFoundError, HDF5Source
from .inputs import as_source, input_files
from .sources import ArraySource, IterableSource, Prefetch, Source, check_block

__all__ = ["Source", "ArraySource", "IterableSource", "Prefetch", "HDF5Source",
           "DatasetNotFoundError", "as_source", "input_files", "check_block"]
