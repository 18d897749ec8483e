"""Files written atomically, and checks that a path may be written, before any work.

Every file is written to a temporary file in the target's folder, flushed and fsync'ed, then
renamed over the target (``os.replace`` is atomic on POSIX and Windows), so a reader sees
either the old file or the new one, never a half-written one. Without ``overwrite`` the new
file is published by a hard link, which fails if the path appeared meanwhile: nobody's file is
replaced. A SHA-256 checksum over every array and attribute can be stored in the root
attribute ``checksum`` (:func:`checksum`), so that a truncated or corrupted file is detected
on reading.

Checkpoints keep one older generation next to them (``<path>.prev``): if the newest is damaged
(a disk error, a copy cut short), the previous good one is still there. The newest file never
disappears while a new generation is written (see ``_keep_previous``).
"""

import hashlib
import os
import re
import shutil
import tempfile
import uuid

import h5py
import numpy as np

__all__ = ["write_atomic", "checksum", "check_folder_writable",
           "remove_stray_temporaries", "new_file_mode", "publish"]


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


def checksum(group):
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
    previous = path + ".prev"
    if os.path.exists(previous) and os.path.samefile(path, previous):
        # a write killed after this step left both names on one file; renaming a link over
        # another link of the same file does nothing (POSIX) and would leave the link behind
        return
    link = f"{path}.prev.{uuid.uuid4().hex[:12]}.tmp"
    try:
        try:
            os.link(path, link)
        except OSError:  # no hard links here (FAT, some network file systems)
            shutil.copy2(path, link)
        os.replace(link, previous)
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


def write_atomic(path, fill, keep_previous=False, overwrite=True, with_checksum=True,
                 **file_options):
    """Write an HDF5 file atomically.

    Parameters
    ----------
    path : str or PathLike
        Target file.
    fill : callable
        ``fill(h5file)`` writes the content into an open, empty ``h5py.File``.
    keep_previous : bool, default=False
        Keep the file being replaced as ``<path>.prev``.
    overwrite : bool, default=True
        Replace an existing ``path``. False: a file that appears at ``path`` while this one
        is written is left untouched and FileExistsError is raised.
    with_checksum : bool, default=True
        Store :func:`checksum` in the root attribute ``checksum`` (it reads every array
        back: leave it out for large data files).
    **file_options
        Passed to ``h5py.File`` (e.g. ``rdcc_nbytes``).
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
        with h5py.File(tmp, "w", **file_options) as f:
            fill(f)
            if with_checksum:
                f.attrs["checksum"] = checksum(f)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        if keep_previous and os.path.exists(path):
            _keep_previous(path)
        publish(tmp, path, overwrite)
        _fsync_dir(directory)
    except FileExistsError:
        _remove_quietly(tmp)
        raise
    except OSError as exc:
        _remove_quietly(tmp)
        raise _naming(exc, path) from exc
    except BaseException:
        _remove_quietly(tmp)
        raise


def publish(tmp, path, overwrite):
    """Move the finished ``tmp`` to ``path`` atomically; without ``overwrite``, never clobber."""
    if overwrite:
        os.replace(tmp, path)
        return
    # A hard link fails if ``path`` appeared meanwhile (another writer): no race between the
    # caller's check at the start and the rename. Without hard links: check, then rename.
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise FileExistsError(
            f"{path!r} was created by someone else while it was being written; it was left "
            "untouched. Pass overwrite=True to replace it."
        ) from None
    except OSError:
        if os.path.exists(path):
            raise FileExistsError(
                f"{path!r} already exists; pass overwrite=True to replace it.") from None
        os.replace(tmp, path)
        return
    os.remove(tmp)


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


