"""HDF5 persistence without pickle: atomic writes, checksums, checkpoints and model files.

Every file is written to a temporary file in the target's directory, flushed and fsync'ed,
then renamed over the target (``os.replace`` is atomic on POSIX and Windows), so a reader sees
either the old file or the new one, never a half-written one. A SHA-256 checksum over every
array and attribute is stored in the root attribute ``checksum`` and verified on reading, so a
truncated or corrupted file is detected instead of silently resuming from garbage.

Checkpoints keep one older generation next to them (``<path>.prev``): if the newest is damaged
(a disk error, a copy cut short), the previous good one is still there. The newest file never
disappears while a new generation is written (see ``_keep_previous``).
"""

import hashlib
import json
import os
import re
import shutil
import tempfile
import uuid

import h5py
import numpy as np

CHECKPOINT_FORMAT = "streamnmf-checkpoint"
MODEL_FORMAT = "streamnmf-model"
FORMAT_VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint or model file cannot be used (damaged, other format, other data)."""


def new_file_mode():
    """The mode ``open()`` gives a new file: ``0o666`` less the process's umask."""
    return 0o666 & ~_umask()


def _umask():
    """The process's file-creation mask (read without changing it where /proc tells it)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere: set and restore at once
    os.umask(mask)
    return mask


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
            return _decoded_attrs(f)
    except (OSError, KeyError, ValueError):
        return None


def _decoded_attrs(f):
    attrs = {}
    for key, value in f.attrs.items():
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


def check_folder_writable(path, what="output file"):
    """Raise a clear error when no file can be created in the folder of ``path``."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(
            f"{what} {path!r}: the folder {directory!r} does not exist; create it first or "
            "choose another path."
        )
    try:  # a real probe: permission bits, ACLs, read-only mounts and quotas all answer it
        fd, probe = tempfile.mkstemp(prefix=".streamnmf-probe-", dir=directory)
    except OSError as exc:
        raise PermissionError(
            f"{what} {path!r}: cannot create files in {directory!r} ({exc.strerror}); "
            "choose a folder you can write to."
        ) from None
    os.close(fd)
    os.remove(probe)


def _attr_bytes(value):
    if isinstance(value, (str, bytes)):
        return value.encode() if isinstance(value, str) else value
    return np.asarray(value).tobytes()


def _checksum(group):
    """SHA-256 over the names, arrays and attributes of a whole file (sorted, deterministic)."""
    digest = hashlib.sha256()

    def visit(name, obj):
        digest.update(name.encode())
        for key in sorted(obj.attrs):
            if key == "checksum":
                continue
            digest.update(key.encode())
            digest.update(_attr_bytes(obj.attrs[key]))
        if isinstance(obj, h5py.Dataset):
            digest.update(np.ascontiguousarray(obj[()]).tobytes())

    visit("/", group)
    group.visititems(visit)
    return digest.hexdigest()


def _fsync_dir(directory):
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # not possible on every platform (Windows); the rename is still atomic
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _keep_previous(path):
    """Give the current content of ``path`` the name ``<path>.prev`` while ``path`` stays.

    A second name (a hard link, or a copy where the file system has none) is made under a
    temporary name and renamed over the old ``.prev``. Renaming ``path`` itself would leave no
    file at ``path`` until the new one is renamed in: a reader (a resume, a monitoring script,
    the kill test) could find it missing.
    """
    link = f"{path}.prev.{uuid.uuid4().hex[:12]}.tmp"
    try:
        try:
            os.link(path, link)
        except OSError:  # no hard links here (FAT, some network file systems)
            shutil.copy2(path, link)
        os.replace(link, path + ".prev")
    except BaseException:
        if os.path.exists(link):
            os.remove(link)
        raise


def remove_stray_temporaries(path):
    """Remove the temporary files that a writer of ``path`` killed mid-write left next to it.

    Only the names this module makes for ``path`` match: ``<name>.<8 characters>.tmp``
    (``tempfile.mkstemp`` in :func:`write_atomic`) and ``<name>.prev.<12 hex digits>.tmp``
    (:func:`_keep_previous`); another file's temporaries never do, even when its name starts
    with ``<name>``.

    Returns
    -------
    list of str
        The files removed.
    """
    path = os.path.abspath(os.fspath(path))
    directory, name = os.path.split(path)
    stray = re.compile(re.escape(name) + r"\.([a-z0-9_]{8}|prev\.[0-9a-f]{12})\.tmp")
    removed = []
    try:
        entries = os.listdir(directory)
    except OSError:
        return removed
    for entry in entries:
        if stray.fullmatch(entry):
            try:
                os.remove(os.path.join(directory, entry))
                removed.append(os.path.join(directory, entry))
            except OSError:  # gone already, or not ours to remove: leave it
                pass
    return removed


def write_atomic(path, fill, keep_previous=False):
    """Write an HDF5 file atomically.

    Parameters
    ----------
    path : str or PathLike
        Target file.
    fill : callable
        ``fill(h5file)`` writes the content into an open, empty ``h5py.File``.
    keep_previous : bool
        Keep the file being replaced as ``<path>.prev``.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp",
                                   dir=directory)
    except OSError as exc:
        raise _naming(exc, path) from exc
    os.close(fd)
    try:
        # mkstemp makes the file 0600; the file takes the mode a plain open() would give it
        # (the umask's), or keeps the mode of the file it replaces
        try:
            mode = os.stat(path).st_mode & 0o7777
        except OSError:
            mode = new_file_mode()
        os.chmod(tmp, mode)
        with h5py.File(tmp, "w") as f:
            fill(f)
            f.attrs["checksum"] = _checksum(f)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        if keep_previous and os.path.exists(path):
            _keep_previous(path)
        os.replace(tmp, path)
        _fsync_dir(directory)
    except OSError as exc:
        _remove_quietly(tmp)
        raise _naming(exc, path) from exc
    except BaseException:
        _remove_quietly(tmp)
        raise


def _remove_quietly(path):
    try:
        os.remove(path)
    except OSError:
        pass


def _naming(exc, path):
    """The OSError ``exc`` reworded to name the user's ``path``, not a temporary file."""
    detail = exc.strerror or str(exc)
    message = f"Cannot write {os.fspath(path)!r}: {detail}."
    if isinstance(exc, OSError) and exc.errno is not None:
        try:
            return type(exc)(exc.errno, message)
        except TypeError:
            pass
    return OSError(message)


def read_verified(path, expected_format):
    """Open ``path``, check its format and checksum, and return its content as plain objects.

    Returns
    -------
    attrs : dict
        Root attributes (JSON strings decoded where named ``*_json``).
    arrays : dict
        Every dataset, by its path inside the file (e.g. ``"history/alpha"``).

    Raises
    ------
    FileNotFoundError
        No such file.
    CheckpointError
        Not an HDF5 file of this format, or the checksum does not match.
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
            if stored != _checksum(f):
                raise CheckpointError(
                    f"{path!r} is corrupted: its checksum does not match its content."
                )
            attrs = _decoded_attrs(f)
            arrays = {}
            f.visititems(
                lambda name, obj: arrays.__setitem__(name, obj[()])
                if isinstance(obj, h5py.Dataset) else None
            )
    except CheckpointError:
        raise
    except (OSError, KeyError, ValueError) as exc:  # truncated or not HDF5 at all
        raise CheckpointError(f"{path!r} cannot be read as HDF5 ({exc}); it is damaged.") from exc
    version = attrs.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{path!r} has format version {version}, this streamnmf reads version "
            f"{FORMAT_VERSION}. Refit, or use the streamnmf version that wrote it."
        )
    return attrs, arrays


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


def write_arrays(group, arrays):
    """Write a dict ``name -> array`` (names may contain ``/``) into an h5py group."""
    for name, value in arrays.items():
        group.create_dataset(name, data=np.asarray(value))
