"""streamnmf: streaming non-negative matrix factorization with provable recovery.

Estimators: :class:`AND` (Li & Liang, ICML 2017) and :class:`Purification` (Li, Liang &
Risteski, NeurIPS 2016). Modules: ``metrics`` (the papers' recovery
error), ``datasets`` (the papers' semi-synthetic data), ``schedules`` (stage thresholds),
``sources`` (row-block streams).
"""

__version__ = "0.1.0"

from ._and import AND  # noqa: E402
from ._base import StreamingNMFBase  # noqa: E402
from ._purification import Purification  # noqa: E402
from . import datasets, metrics, schedules, sources  # noqa: E402
from .hdf5 import HDF5Source  # noqa: E402

#: estimator classes by name, for model files
ESTIMATORS = {"AND": AND, "Purification": Purification}


def load(path):
    """Load a model file written by ``estimator.save`` or ``streamnmf fit --out``.

    Parameters
    ----------
    path : str or PathLike

    Returns
    -------
    AND or Purification
        The fitted estimator of the class that saved it.
    """
    return StreamingNMFBase.load(path)


__all__ = ["AND", "Purification", "HDF5Source", "load", "datasets", "metrics", "schedules", "sources", "__version__"]
