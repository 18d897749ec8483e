"""The semi-synthetic data sets of the AND paper (section 7), reproducible and streamable.

Every data set is ``data = weights @ components + noise``: in the paper's column layout
``Y = A* X + N`` with ``Y`` (m x N), ``A*`` (m x n) and ``X`` (n x N). The library stores samples
and components as ROWS (scikit-learn layout), so

* ``data`` is ``Y.T``, shape (n_samples, n_features)          (paper: N samples, m words),
* ``components`` is ``A*.T``, shape (n_components, n_features) (paper: n or D topics),
* ``weights`` is ``X.T``, shape (n_samples, n_components).

Data sets (``make_dataset(name)``):

========== ======================================= ============================= ==========
name       components                              weights (one row per sample)  noise
========== ======================================= ============================= ==========
"dir"      :func:`make_topic_components`           Dirichlet(5/n)                0
"ctm-ref"  :func:`make_topic_components`           the reference code's "CTM"    0
"ctm"      :func:`make_topic_components`           logistic normal (a real CTM)  0
"neg"      i.i.d. U[-0.5, 0.5) (signed)            the reference code's "CTM"    0
"noise"    :func:`make_topic_components`           the reference code's "CTM"    0.01
"binary"   :func:`make_topic_components`           Bernoulli(3/n) in {0, 1}      0
========== ======================================= ============================= ==========

The Purification paper's model (``y = A* x + nu`` under (A1), (A2) or (A2'), with adversarial
or unbiased bounded noise) is :func:`make_purification_data` / :func:`iter_purification_data`.
Any of these streams can be written to an HDF5 file block by block, dense or CSR, with
:func:`write_hdf5`; :func:`load_hdf5_truth` reads back the ground truth.

Randomness. ``random_state`` seeds one :class:`numpy.random.SeedSequence`; the components, the
CTM prior, the weights and the noise each come from their own child sequence, and the samples
are generated in fixed chunks of ``CHUNK_SIZE`` rows, each chunk from its own child. So the
data for a seed do not depend on how they are read: any block size, any order, any subset of
rows (:meth:`DatasetStream.get_block`) give the same numbers, and a smaller ``n_samples`` gives
a prefix of a larger one. Changing ``noise`` rescales the same noise draw.
"""

from .files import load_hdf5, load_hdf5_truth, write_hdf5
from .purification import (
    PURIFICATION_NOISE, PURIFICATION_WEIGHTS, PurificationStream, iter_purification_data,
    make_purification_data,
)
from ._random import CHUNK_SIZE, DATASET_NAMES, WEIGHT_KINDS
from .streams import Dataset, DatasetStream, iter_dataset, make_dataset, make_init
from .topics import make_topic_components, make_weights

__all__ = [
    "Dataset",
    "DatasetStream",
    "DATASET_NAMES",
    "WEIGHT_KINDS",
    "CHUNK_SIZE",
    "make_topic_components",
    "make_weights",
    "make_dataset",
    "iter_dataset",
    "make_init",
    "PURIFICATION_WEIGHTS",
    "PURIFICATION_NOISE",
    "PurificationStream",
    "make_purification_data",
    "iter_purification_data",
    "write_hdf5",
    "load_hdf5_truth",
    "load_hdf5",
]
