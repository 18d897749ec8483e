"""streamnmf: streaming non-negative matrix factorization with provable recovery.

Estimators: :class:`AND` (Li & Liang, ICML 2017). Modules: ``metrics`` (the papers' recovery
error), ``datasets`` (the papers' semi-synthetic data), ``schedules`` (stage thresholds),
``sources`` (row-block streams).
"""

__version__ = "0.1.0"

from ._and import AND  # noqa: E402
from . import schedules, sources  # noqa: E402

__all__ = ["AND", "schedules", "sources", "__version__"]
