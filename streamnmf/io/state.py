"""Typed, versioned fit records: what a checkpoint (:class:`FitState`) and a model file
(:class:`ModelState`) hold, and how each is laid out in HDF5.

A state is written as plain arrays and attributes (never pickle) through a :class:`Record`,
the file's content as plain Python objects. Each format carries its own version. A file of
an older version is brought up to date by the migrations registered for its format, one
version at a time (``MIGRATIONS[format][v]`` turns a version-``v`` record into a
version-``v + 1`` one), so that a checkpoint written by an older streamnmf resumes in a newer
one; a file of a newer version is refused with a message that names both versions.

Checkpoint layout (version 3)::

    /                 attrs: format, format_version, library_version, estimator,
                             params_json, n_samples, n_features, n_components, dtype,
                             source_block_rows, source_shuffle_seed, epoch, offset,
                             stalled, best_change, early_stopped, nonnegative, recovering
    /loop             attrs: stage, samples_seen, seconds, alpha, [sgd_eta], [drift_pending],
                             [refining]
    /loop/components, /loop/stage_start, /loop/decoding_matrix
    /loop/schedule_state, /loop/rule_state, [/loop/drift_state]
    /loop/stats       attrs: count, nnz, sum_yy, code_max, v_min
    /loop/stats/S_zy, S_zz, sum_z, [sum_y]
    [/loop/sgd/gradient, touched, batch]
    /loop/history/<field>

Model layout (version 2): root attributes ``format``, ``format_version``,
``library_version``, ``estimator``, ``params_json``, ``alpha``, ``n_features_in``,
``n_stages``, ``samples_seen``, ``nonnegative``, ``reconstruction_err``; datasets
``components``, ``decoding_matrix`` and ``history/<field>``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import h5py
import numpy as np

CHECKPOINT_FORMAT = "streamnmf-checkpoint"
MODEL_FORMAT = "streamnmf-model"

__all__ = ["Record", "StatisticsState", "LoopState", "FitState", "ModelState",
           "CHECKPOINT_FORMAT", "MODEL_FORMAT", "VERSIONS", "MIGRATIONS", "migrate"]


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes):
        return value.decode()
    return value


@dataclass
class Record:
    """An HDF5 file's content as plain objects.

    Attributes
    ----------
    attrs : dict
        Root attributes.
    group_attrs : dict
        ``group path -> {name: value}`` for every group that has attributes.
    arrays : dict
        ``dataset path -> ndarray`` (paths may contain ``/``).
    """

    attrs: dict = field(default_factory=dict)
    group_attrs: dict = field(default_factory=dict)
    arrays: dict = field(default_factory=dict)

    @property
    def format(self):
        return self.attrs.get("format")

    @property
    def version(self):
        return self.attrs.get("format_version")

    @classmethod
    def read(cls, f):
        """Everything in an open h5py file or group."""
        record = cls(attrs={k: _plain(v) for k, v in f.attrs.items()})

        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                record.arrays[name] = obj[()]
            elif len(obj.attrs):
                record.group_attrs[name] = {k: _plain(v) for k, v in obj.attrs.items()}

        f.visititems(visit)
        return record

    def write(self, f):
        """Write into an open, empty h5py file (the checksum is the writer's business)."""
        f.attrs.update(self.attrs)
        for name, value in self.arrays.items():
            f.create_dataset(name, data=np.asarray(value))
        for name, attrs in self.group_attrs.items():
            f.require_group(name).attrs.update(attrs)


@dataclass
class StatisticsState:
    """A stage's sufficient statistics so far (see ``_engine.StageStats``)."""

    S_zy: np.ndarray  # (n_components, n_features)
    S_zz: np.ndarray  # (n_components, n_components)
    sum_z: np.ndarray  # (n_components,)
    sum_y: np.ndarray | None  # (n_features,), for rules that need it
    count: int
    nnz: int
    sum_yy: float
    code_max: float
    v_min: float


@dataclass
class LoopState:
    """Everything the stage loop needs to continue exactly where it was.

    ``components`` (n_components, n_features) is the working matrix, ``stage_start`` the
    matrix the current stage began with, ``decoding_matrix`` (n_features, n_components) the
    stage's fixed decoder. ``schedule_state``, ``rule_state`` and ``drift_state`` are the
    flat arrays those objects' ``state()`` methods return. The ``sgd_*`` arrays (per-sample
    rules only) are the pending averaged gradient, the components it touches and the
    averaging counters. ``history`` maps each history field to its per-stage values.
    ``refining``: a float32 loop that decodes in float64 (its decoding matrix is float64).
    """

    stage: int
    samples_seen: int
    seconds: float
    alpha: float
    sgd_eta: float | None
    components: np.ndarray
    stage_start: np.ndarray
    decoding_matrix: np.ndarray
    stats: StatisticsState
    schedule_state: np.ndarray
    rule_state: np.ndarray
    history: dict
    drift_state: np.ndarray | None = None
    drift_pending: bool = False
    refining: bool = False
    sgd_gradient: np.ndarray | None = None
    sgd_touched: np.ndarray | None = None
    sgd_batch: np.ndarray | None = None

    def _fill(self, record, prefix="loop"):
        attrs = dict(stage=int(self.stage), samples_seen=int(self.samples_seen),
                     seconds=float(self.seconds), alpha=float(self.alpha))
        if self.sgd_eta is not None:
            attrs["sgd_eta"] = float(self.sgd_eta)
        if self.drift_state is not None:
            attrs["drift_pending"] = bool(self.drift_pending)
        if self.refining:
            attrs["refining"] = True
        record.group_attrs[prefix] = attrs
        stats = self.stats
        record.group_attrs[f"{prefix}/stats"] = dict(
            count=int(stats.count), nnz=int(stats.nnz), sum_yy=float(stats.sum_yy),
            code_max=float(stats.code_max), v_min=float(stats.v_min))
        arrays = {
            "components": self.components, "stage_start": self.stage_start,
            "decoding_matrix": self.decoding_matrix, "schedule_state": self.schedule_state,
            "rule_state": self.rule_state, "drift_state": self.drift_state,
            "stats/S_zy": stats.S_zy, "stats/S_zz": stats.S_zz, "stats/sum_z": stats.sum_z,
            "stats/sum_y": stats.sum_y, "sgd/gradient": self.sgd_gradient,
            "sgd/touched": self.sgd_touched, "sgd/batch": self.sgd_batch,
        }
        arrays.update({f"history/{k}": np.asarray(v, dtype=np.float64)
                       for k, v in self.history.items()})
        record.arrays.update({f"{prefix}/{k}": v for k, v in arrays.items() if v is not None})

    @classmethod
    def _from(cls, record, prefix="loop"):
        attrs = record.group_attrs[prefix]
        stats_attrs = record.group_attrs[f"{prefix}/stats"]

        def array(name):
            return record.arrays.get(f"{prefix}/{name}")

        history_prefix = f"{prefix}/history/"
        stats = StatisticsState(
            S_zy=array("stats/S_zy"), S_zz=array("stats/S_zz"), sum_z=array("stats/sum_z"),
            sum_y=array("stats/sum_y"), count=int(stats_attrs["count"]),
            nnz=int(stats_attrs["nnz"]), sum_yy=float(stats_attrs["sum_yy"]),
            code_max=float(stats_attrs["code_max"]), v_min=float(stats_attrs["v_min"]))
        eta = attrs.get("sgd_eta")
        return cls(
            stage=int(attrs["stage"]), samples_seen=int(attrs["samples_seen"]),
            seconds=float(attrs["seconds"]), alpha=float(attrs["alpha"]),
            sgd_eta=None if eta is None else float(eta),
            components=array("components"), stage_start=array("stage_start"),
            decoding_matrix=array("decoding_matrix"), stats=stats,
            schedule_state=array("schedule_state"), rule_state=array("rule_state"),
            history={k[len(history_prefix):]: v for k, v in record.arrays.items()
                     if k.startswith(history_prefix)},
            drift_state=array("drift_state"),
            drift_pending=bool(attrs.get("drift_pending", False)),
            refining=bool(attrs.get("refining", False)),
            sgd_gradient=array("sgd/gradient"), sgd_touched=array("sgd/touched"),
            sgd_batch=array("sgd/batch"),
        )


@dataclass
class FitState:
    """A checkpoint: where a fit is, what it was fitted on and with, and its loop's state.

    ``n_samples`` is -1 for a stream of unknown length; ``source_block_rows`` and
    ``source_shuffle_seed`` say how the source was read (-1: not a file source, not
    shuffled), so that a resume reads the rows in the same order. ``epoch`` and ``offset``
    are the position in the source; ``stalled``, ``best_change``, ``early_stopped`` the
    early-stopping state; ``nonnegative`` the components mode decided at the start;
    ``recovering`` whether the last stage was undone after a divergence.
    """

    estimator: str
    params: dict
    library_version: str
    n_samples: int
    n_features: int
    n_components: int
    dtype: str
    source_block_rows: int
    source_shuffle_seed: int
    epoch: int
    offset: int
    stalled: int
    best_change: float
    early_stopped: bool
    nonnegative: bool
    recovering: bool
    loop: LoopState

    FORMAT = CHECKPOINT_FORMAT

    def to_record(self):
        record = Record(attrs=dict(
            format=self.FORMAT, format_version=VERSIONS[self.FORMAT],
            library_version=self.library_version, estimator=self.estimator,
            params_json=json.dumps(self.params), n_samples=int(self.n_samples),
            n_features=int(self.n_features), n_components=int(self.n_components),
            dtype=str(self.dtype), source_block_rows=int(self.source_block_rows),
            source_shuffle_seed=int(self.source_shuffle_seed), epoch=int(self.epoch),
            offset=int(self.offset), stalled=int(self.stalled),
            best_change=float(self.best_change), early_stopped=bool(self.early_stopped),
            nonnegative=bool(self.nonnegative), recovering=bool(self.recovering),
        ))
        self.loop._fill(record)
        return record

    @classmethod
    def from_record(cls, record):
        """Build from a record of any known version (migrated first)."""
        record = migrate(record)
        a = record.attrs
        return cls(
            estimator=a["estimator"], params=json.loads(a["params_json"]),
            library_version=a.get("library_version", "?"), n_samples=int(a["n_samples"]),
            n_features=int(a["n_features"]), n_components=int(a["n_components"]),
            dtype=a["dtype"], source_block_rows=int(a["source_block_rows"]),
            source_shuffle_seed=int(a["source_shuffle_seed"]), epoch=int(a["epoch"]),
            offset=int(a["offset"]), stalled=int(a["stalled"]),
            best_change=float(a["best_change"]), early_stopped=bool(a["early_stopped"]),
            nonnegative=bool(a.get("nonnegative", False)),
            recovering=bool(a.get("recovering", False)), loop=LoopState._from(record),
        )

    def to_hdf5(self, f):
        """Write into an open, empty h5py file."""
        self.to_record().write(f)

    @classmethod
    def from_hdf5(cls, f):
        """Read from an open h5py file (no checksum check: see ``records.read_verified``)."""
        return cls.from_record(Record.read(f))


@dataclass
class ModelState:
    """A fitted model: components, decoding matrix, history and the fitted attributes."""

    estimator: str
    params: dict
    library_version: str
    components: np.ndarray  # (n_components, n_features)
    decoding_matrix: np.ndarray  # (n_features, n_components)
    history: dict
    alpha: float
    n_features_in: int
    n_stages: int
    samples_seen: int
    nonnegative: bool
    reconstruction_err: float

    FORMAT = MODEL_FORMAT

    def to_record(self):
        record = Record(attrs=dict(
            format=self.FORMAT, format_version=VERSIONS[self.FORMAT],
            library_version=self.library_version, estimator=self.estimator,
            params_json=json.dumps(self.params), alpha=float(self.alpha),
            n_features_in=int(self.n_features_in), n_stages=int(self.n_stages),
            samples_seen=int(self.samples_seen), nonnegative=bool(self.nonnegative),
            reconstruction_err=float(self.reconstruction_err),
        ))
        record.arrays.update(components=self.components, decoding_matrix=self.decoding_matrix)
        record.arrays.update({f"history/{k}": np.asarray(v) for k, v in self.history.items()})
        return record

    @classmethod
    def from_record(cls, record):
        record = migrate(record)
        a = record.attrs
        return cls(
            estimator=a["estimator"], params=json.loads(a["params_json"]),
            library_version=a.get("library_version", "?"),
            components=record.arrays["components"],
            decoding_matrix=record.arrays["decoding_matrix"],
            history={k[len("history/"):]: v for k, v in record.arrays.items()
                     if k.startswith("history/")},
            alpha=float(a["alpha"]), n_features_in=int(a["n_features_in"]),
            n_stages=int(a["n_stages"]), samples_seen=int(a["samples_seen"]),
            nonnegative=bool(a.get("nonnegative", False)),
            reconstruction_err=float(a.get("reconstruction_err", np.nan)),
        )

    def to_hdf5(self, f):
        self.to_record().write(f)

    @classmethod
    def from_hdf5(cls, f):
        return cls.from_record(Record.read(f))


# -- versions and migrations --------------------------------------------------------------------
#: Purification's parameters under their names of version 1, before the estimators shared
#: one vocabulary
_PURIFICATION_RENAMED = {"alpha": "thresholds", "eta": "learning_rate", "n_iter": "n_stages",
                         "batch_size": "stage_length"}


def _rename_params(attrs):
    """Version-1 attributes with Purification's parameters under their current names."""
    attrs = dict(attrs)
    if attrs.get("estimator") == "Purification" and "params_json" in attrs:
        params = json.loads(attrs["params_json"])
        attrs["params_json"] = json.dumps(
            {_PURIFICATION_RENAMED.get(k, k): v for k, v in params.items()})
    return attrs


def _checkpoint_1_to_2(record):
    """Version 1 kept the loop's scalars as root attributes ``loop_<name>`` (``sgd_eta`` -1
    for "not set yet") and its arrays at the root, under the engine's short names, and
    Purification's parameters under their old names."""
    attrs = _rename_params(record.attrs)
    loop = {k[5:]: attrs.pop(k) for k in list(attrs) if k.startswith("loop_")}
    stats = {k[6:]: loop.pop(k) for k in list(loop) if k.startswith("stats_")}
    if loop.get("sgd_eta", -1.0) < 0:
        loop.pop("sgd_eta", None)
    renamed = {"C": "components", "C_start": "stage_start", "D": "decoding_matrix",
               "sgd/G": "sgd/gradient"}
    arrays = {f"loop/{renamed.get(k, k)}": v for k, v in record.arrays.items()}
    attrs["format_version"] = 2
    return Record(attrs=attrs, group_attrs={"loop": loop, "loop/stats": stats}, arrays=arrays)


def _checkpoint_2_to_3(record):
    """Version 2 had no float64 finish: its loops decode in their own dtype (``refining``
    absent means False). The version changed so that a reader of version 2, which would cast
    a refining loop's float64 decoding matrix to float32, refuses the file instead."""
    attrs = dict(record.attrs)
    attrs["format_version"] = 3
    return Record(attrs=attrs, group_attrs=record.group_attrs, arrays=record.arrays)


def _model_1_to_2(record):
    """Version 1 kept Purification's parameters under their old names."""
    attrs = _rename_params(record.attrs)
    attrs["format_version"] = 2
    return Record(attrs=attrs, group_attrs=record.group_attrs, arrays=record.arrays)


#: the version each format is written in
VERSIONS = {CHECKPOINT_FORMAT: 3, MODEL_FORMAT: 2}
#: ``MIGRATIONS[format][v]``: a function turning a version-``v`` record into version ``v + 1``
MIGRATIONS = {CHECKPOINT_FORMAT: {1: _checkpoint_1_to_2, 2: _checkpoint_2_to_3},
              MODEL_FORMAT: {1: _model_1_to_2}}


def migrate(record):
    """Bring a record of an older version of its format up to the current one.

    Raises
    ------
    ValueError
        The record's format is unknown, or its version is newer than this streamnmf writes,
        or no migration leads from it.
    """
    fmt, version = record.format, record.version
    if fmt not in VERSIONS:
        raise ValueError(f"unknown format {fmt!r} (known: {', '.join(sorted(VERSIONS))}).")
    current = VERSIONS[fmt]
    if not isinstance(version, int) or version > current:
        raise ValueError(
            f"format version {version!r}, but this streamnmf reads {fmt} files up to version "
            f"{current}. Use the streamnmf version that wrote it (library version "
            f"{record.attrs.get('library_version', '?')}), or refit."
        )
    while version < current:
        step = MIGRATIONS[fmt].get(version)
        if step is None:
            raise ValueError(f"{fmt} version {version} can no longer be read; refit.")
        record = step(record)
        version = record.version
    return record
