"""The library's one configuration: settings of the machinery below the estimators.

The estimators' parameters say what is fitted; these say how the machine does it (which LP
solver, how large a Dask task) and leave the fitted model unchanged up to round-off. They are
read when a fit starts (the Dask settings when it plans a stage), in the thread that runs it,
as scikit-learn's ``set_config`` / ``config_context`` are.
"""

import threading
from contextlib import contextmanager
from numbers import Integral

__all__ = ["get_config", "set_config", "config_context"]

#: LP solvers of the min-inf inverse
LP_SOLVERS = ("auto", "simplex", "highspy", "scipy")

_DEFAULTS = {
    # Purification's min-inf inverse: "simplex" ("auto"), the built-in dual simplex that runs
    # every row's programme at once (streamnmf._simplex); "highspy" and "scipy" run HiGHS' dual
    # simplex per row (highspy hot-started from the previous stage's bases). Every solution is
    # polished on its support, so the solvers agree bit for bit where the optimum is unique.
    "lp_solver": "auto",
    # Bytes of data one Dask map task reads (consecutive blocks grouped up to this); see
    # docs/distributed.md. The grouping fixes the summation order of a stage's statistics, so
    # another value changes the result at round-off, and a resumed fit should keep it.
    "dask_task_bytes": 64 << 20,
    # Raise glibc's mmap and trim thresholds in Dask nanny workers (their HDF5 reads otherwise
    # fault every page of every chunk buffer); False leaves malloc alone.
    "dask_malloc_tuning": True,
}

_global = dict(_DEFAULTS)
_local = threading.local()


def _current():
    if not hasattr(_local, "config"):
        _local.config = dict(_global)
    return _local.config


def get_config():
    """The current settings, as a new dict.

    Returns
    -------
    dict
        ``lp_solver`` : {"auto", "simplex", "highspy", "scipy"}
            Solver of Purification's min-inf inverse (``inverse="min-inf"``) and of
            :func:`streamnmf.linalg.min_inf_inverse`; ``"auto"`` is ``"simplex"``, the
            built-in dual simplex that solves every row at once (rows it cannot finish go
            to HiGHS). ``"highspy"`` (``streamnmf[lp]``) and ``"scipy"``
            (``scipy.optimize.linprog``) solve one row at a time with HiGHS.
        ``dask_task_bytes`` : int
            Bytes of data a Dask map task reads, default 64 MiB. Larger values mean fewer
            tasks for very long passes (see docs/distributed.md).
        ``dask_malloc_tuning`` : bool
            Whether Dask workers raise glibc's mmap and trim thresholds, default True.
    """
    return dict(_current())


def _checked(settings):
    unknown = sorted(set(settings) - set(_DEFAULTS))
    if unknown:
        raise TypeError(f"unknown streamnmf setting(s) {', '.join(map(repr, unknown))}; "
                        f"known: {', '.join(_DEFAULTS)}.")
    if "lp_solver" in settings and settings["lp_solver"] not in LP_SOLVERS:
        raise ValueError(f"lp_solver must be one of {LP_SOLVERS}, got "
                         f"{settings['lp_solver']!r}.")
    task_bytes = settings.get("dask_task_bytes", 1)
    if isinstance(task_bytes, bool) or not isinstance(task_bytes, Integral) or task_bytes < 1:
        raise ValueError(f"dask_task_bytes must be an int >= 1 (bytes), got {task_bytes!r}.")
    if not isinstance(settings.get("dask_malloc_tuning", True), bool):
        raise ValueError("dask_malloc_tuning must be True or False, got "
                         f"{settings['dask_malloc_tuning']!r}.")
    return settings


def set_config(**settings):
    """Change settings for the rest of the process (and this thread's current ones).

    Parameters
    ----------
    **settings
        Any keys of :func:`get_config`; the others stay as they are.

    Raises
    ------
    TypeError
        An unknown setting.
    ValueError
        A value of the wrong kind; nothing is changed.

    Examples
    --------
    >>> import streamnmf
    >>> streamnmf.set_config(lp_solver="scipy")
    >>> streamnmf.get_config()["lp_solver"]
    'scipy'
    >>> streamnmf.set_config(lp_solver="auto")
    """
    _checked(settings)
    _global.update(settings)
    _current().update(settings)


@contextmanager
def config_context(**settings):
    """Settings for a ``with`` block, in this thread; the previous ones come back after it.

    Parameters
    ----------
    **settings
        Any keys of :func:`get_config`.

    Examples
    --------
    >>> import streamnmf
    >>> with streamnmf.config_context(dask_task_bytes=256 << 20):
    ...     streamnmf.get_config()["dask_task_bytes"] == 256 << 20
    True
    """
    _checked(settings)
    config = _current()
    saved = dict(config)
    config.update(settings)
    try:
        yield
    finally:
        config.clear()
        config.update(saved)
