"""streamnmf: streaming non-negative matrix factorization with provable recovery.

Estimators: :class:`AND` (Li & Liang, ICML 2017) and :class:`Purification` (Li, Liang &
Risteski, NeurIPS 2016). Modules: ``metrics`` (the papers' recovery
error), ``datasets`` (the papers' semi-synthetic data), ``schedules`` (stage thresholds),
``io`` (row-block sources, HDF5 files).
"""

__version__ = "0.1.0"

from ._and import AND  # noqa: E402
from ._base import StreamingNMFBase  # noqa: E402
from ._purification import Purification  # noqa: E402
from . import datasets, io, metrics, schedules  # noqa: E402
from ._config import config_context, get_config, set_config  # noqa: E402
from ._warmup import warmup  # noqa: E402
from .io import HDF5Source  # noqa: E402
from .io.records import CheckpointError  # noqa: E402

#: estimator classes by name, for model files
ESTIMATORS = {"AND": AND, "Purification": Purification}


def local_cluster(n_workers=None, **kwargs):
    """A Dask ``LocalCluster`` for fitting on this machine (needs ``streamnmf[dask]``).

    One single-threaded worker process per core by default, with dask's housekeeping slowed
    so that it takes less of the cores the tasks need; see ``streamnmf._dask.local_cluster``
    for the parameters. ``Client(local_cluster())`` is then passed as ``client=``.
    """
    from ._dask import local_cluster as make  # here: `import streamnmf` leaves _dask unloaded

    return make(n_workers, **kwargs)


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


__all__ = ["AND", "Purification", "HDF5Source", "CheckpointError", "load", "local_cluster",
           "get_config", "set_config", "config_context", "warmup", "datasets", "io", "metrics",
           "schedules", "__version__"]
