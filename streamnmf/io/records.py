"""The file records of a fit: checkpoint and model formats, verified reads, output checks.

Files are written by :func:`~streamnmf.io.atomic.write_atomic` with a checksum over every
array and attribute; :func:`read_verified` checks format, checksum and version, so that a
truncated or corrupted file is detected instead of silently resuming from garbage. Before a
fit does any work, :func:`check_checkpoint_target` refuses a checkpoint path whose writes
would replace a file the fit did not write (the input data, another file, another fit's
checkpoint).
"""

import json
import os

import h5py
import numpy as np

from .atomic import check_folder_writable, checksum
from .state import CHECKPOINT_FORMAT, MODEL_FORMAT, Record, migrate


class CheckpointError(RuntimeError):
    """A checkpoint or model file cannot be used (damaged, other format, other data)."""


def peek_format(path):
    """The ``format`` attribute of an HDF5 file, without verifying its checksum.

    Returns
    -------
    str or None
        The attribute (``"streamnmf-checkpoint"``, ``"streamnmf-model"``, ...), ``""`` for an
        HDF5 file without one, None for a file that cannot be read as HDF5.
    """
    try:
        with h5py.File(path, "r") as f:
            found = f.attrs.get("format", "")
            return found.decode() if isinstance(found, bytes) else str(found)
    except (OSError, KeyError, ValueError):
        return None


def peek_attrs(path):
    """The root attributes of an HDF5 file (``*_json`` decoded), without the checksum check.

    Returns None when the file cannot be read as HDF5.
    """
    try:
        with h5py.File(path, "r") as f:
            return decode_attrs(f.attrs)
    except (OSError, KeyError, ValueError):
        return None


def decode_attrs(raw):
    """Attributes as plain values, ``<name>_json`` decoded into ``<name>``."""
    attrs = {}
    for key, value in raw.items():
        if key.endswith("_json"):
            attrs[key[:-5]] = json.loads(value)
        else:
            attrs[key] = value.item() if isinstance(value, np.generic) else value
    return attrs


def describe_file(path):
    """A few words on what the existing file ``path`` is, for error messages."""
    found = peek_format(path)
    if found is None:
        return "a file that is not HDF5"
    if found == CHECKPOINT_FORMAT:
        return "a streamnmf checkpoint"
    if found == MODEL_FORMAT:
        return "a streamnmf model file"
    return "an HDF5 file that is not a streamnmf checkpoint"


def check_output_path(path, overwrite=False, flag="overwrite=True", what="output file"):
    """Check, before any work, that a file can be written at ``path``.

    Parameters
    ----------
    path : str or PathLike
    overwrite : bool
        Whether an existing file may be replaced.
    flag : str
        How the caller says "overwrite" (``"overwrite=True"`` in Python, ``"--overwrite"`` on
        the command line), for the message.
    what : str
        What the file is, for the message.

    Raises
    ------
    FileExistsError
        ``path`` exists and ``overwrite`` is False.
    IsADirectoryError, FileNotFoundError, PermissionError
        ``path`` is a folder, its folder does not exist, or nothing can be created there.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        raise IsADirectoryError(f"{what} {path!r} is a folder; give a file name in it instead.")
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(
            f"{what} {path!r} exists ({describe_file(path)}); add {flag} to replace it, or "
            "choose another name."
        )
    check_folder_writable(path, what)


def checkpoint_mismatch(attrs, identity):
    """``"name: checkpoint X, now Y"`` for every recorded value that differs."""
    params = attrs.get("params", {})
    differ = []
    for key, expected in identity.items():
        if expected is None:
            continue
        found = params.get(key[6:]) if key.startswith("param ") else attrs.get(key)
        if found != expected:
            differ.append(f"{key.removeprefix('param ')}: checkpoint {found!r}, "
                          f"now {expected!r}")
    return differ

def mismatch_message(path, differ):
    return (
        f"The checkpoint {path!r} was written for other data or parameters "
        f"({'; '.join(differ)}). Resume with the same data, read the same way "
        "(block_rows; a shuffled source needs the same random_state), and the same "
        "parameters, or use another checkpoint path to start a new fit."
    )

def check_checkpoint_target(checkpoint, inputs, identity, resume, overwrite,
                            flags=("resume=True", "overwrite=True")):
    """Refuse, before any work, a checkpoint path whose writes would replace a file this
    fit did not write.

    Parameters
    ----------
    checkpoint : str or PathLike
        The checkpoint path.
    inputs : list of str
        Files the fit reads (the checkpoint may never be one of them).
    identity : dict
        From the estimator's ``_identity``: a checkpoint of this fit records the same values.
    resume, overwrite : bool
        What ``fit`` was told: continue the checkpoint, or start afresh over it.
    flags : (str, str)
        How the caller spells resume and overwrite, for the messages.
    """
    resume_flag, overwrite_flag = flags
    path = os.path.abspath(os.fspath(checkpoint))
    previous = path + ".prev"
    for target in (path, previous):
        for data in inputs:
            if os.path.exists(target) and os.path.samefile(target, data):
                raise ValueError(
                    f"checkpoint {os.fspath(checkpoint)!r}: {target!r} is the input "
                    "data file, and writing the checkpoint would replace your data. Choose "
                    "another checkpoint path (for example 'fit.ckpt.h5')."
                )
    check_folder_writable(path, "checkpoint")
    # a checkpoint's newest generation may be damaged (that is what .prev is for): it
    # counts as this fit's when the previous generation is
    states = {}
    for target in (path, previous):
        if not os.path.exists(target):
            continue
        if os.path.isdir(target):
            raise IsADirectoryError(
                f"checkpoint {target!r} is a folder; give a file name instead.")
        attrs = peek_attrs(target)
        if attrs is None or attrs.get("format") != CHECKPOINT_FORMAT:
            states[target] = ("foreign", attrs)
        else:
            differ = checkpoint_mismatch(attrs, identity)
            states[target] = ("other fit", differ) if differ else ("this fit", attrs)
    if not states:
        return
    ours = [t for t, (kind, _) in states.items() if kind == "this fit"]
    for target, (kind, detail) in states.items():
        if kind == "foreign" and detail is None and target == path and resume and not ours:
            raise CheckpointError(
                f"{target!r} cannot be read as HDF5: it is a damaged checkpoint, or not a "
                f"checkpoint at all, and there is no previous checkpoint ({previous!r}) to "
                "fall back on. Nothing was changed: if it is a damaged checkpoint, delete "
                "it to start afresh; otherwise choose another checkpoint path."
            )
        if kind == "foreign" and not (detail is None and ours and target == path):
            raise FileExistsError(
                f"checkpoint {target!r} exists and is {describe_file(target)}: a fit "
                "never replaces a file it did not write. Choose another checkpoint path, "
                "or move that file away."
            )
        if kind == "other fit":
            if resume:
                raise CheckpointError(mismatch_message(target, detail))
            raise FileExistsError(
                f"checkpoint {target!r} belongs to another fit ({'; '.join(detail)}). "
                "Choose another checkpoint path, or delete that file (and its .prev) to "
                "reuse the path."
            )
    if not (resume or overwrite):
        at = f", at stage {peek_stage(ours[0])}"
        raise FileExistsError(
            f"checkpoint {os.fspath(checkpoint)!r} exists (a checkpoint of this "
            f"fit{at}). Pass {resume_flag} to continue it, or {overwrite_flag} to start "
            "afresh and replace it."
        )


def read_verified(path, expected_format):
    """Open ``path``, check its format and checksum, and return its content, migrated to
    the current version of its format.

    Returns
    -------
    Record
        Build a :class:`~streamnmf.io.state.FitState` or
        :class:`~streamnmf.io.state.ModelState` from it.

    Raises
    ------
    FileNotFoundError
        No such file.
    CheckpointError
        Not an HDF5 file of this format, the checksum does not match, or a format version
        this streamnmf cannot read.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"No such file: {path!r}.")
    try:
        with h5py.File(path, "r") as f:
            found = f.attrs.get("format")
            if found != expected_format:
                raise CheckpointError(
                    f"{path!r} is not a {expected_format} file (format attribute: {found!r})."
                )
            stored = f.attrs.get("checksum")
            if stored != checksum(f):
                raise CheckpointError(
                    f"{path!r} is corrupted: its checksum does not match its content."
                )
            record = Record.read(f)
    except CheckpointError:
        raise
    except (OSError, KeyError, ValueError) as exc:  # truncated or not HDF5 at all
        raise CheckpointError(f"{path!r} cannot be read as HDF5 ({exc}); it is damaged.") from exc
    try:
        return migrate(record)
    except ValueError as exc:
        raise CheckpointError(f"{path!r}: {exc}") from exc


def peek_stage(path):
    """Stages done by the checkpoint at ``path`` (0 when it cannot be read), unverified."""
    try:
        with h5py.File(path, "r") as f:
            if "loop" in f:
                return int(f["loop"].attrs.get("stage", 0))
            return int(f.attrs.get("loop_stage", 0))  # format version 1
    except (OSError, KeyError, ValueError):
        return 0


def plain_params(params):
    """The estimator parameters as JSON values.

    Numbers, strings, None and lists of numbers are kept; anything else (an init array, a
    schedule object, a callback) becomes ``{"repr": text}``, which identifies it in a
    comparison but is not restored when a model is loaded.
    """
    out = {}
    for key, value in params.items():
        if value is None or isinstance(value, (bool, int, float, str)):
            out[key] = value
        elif isinstance(value, (np.integer, np.floating)):
            out[key] = value.item()
        elif isinstance(value, np.ndarray):
            out[key] = {"repr": f"<array of shape {value.shape}, {value.dtype}>"}
        elif isinstance(value, os.PathLike):
            out[key] = os.fspath(value)
        elif isinstance(value, (list, tuple)) and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value
        ):
            out[key] = [float(v) for v in value]
        else:
            out[key] = {"repr": repr(value)}
    return out
