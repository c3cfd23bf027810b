"""Writing files and Zarr stores so that no reader ever sees a half-written one.

This is the one place the package writes a file or folder atomically: NWB results, saved
models, sweep rows and summaries, report figures, DANDI cache blocks and the data-parallel
fit's result all go through :func:`atomic_destination`, :func:`write_file` or
:func:`write_files`.

Every write goes to a temporary sibling of the destination, ``.partial-<pid>-<random>-<name>``,
which replaces the destination in one atomic step once complete.  Writers of one destination
take turns through an exclusive lock (``flock`` on ``.<name>.lock`` beside it), so two writers
never lose each other's work and the temporaries found while holding the lock are leftovers of
killed writers, safe to remove.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from .errors import OutputExistsError, OutputPermissionError

#: Temporary files and stores being written start with this; a killed writer may leave one.
PARTIAL_PREFIX = ".partial-"
#: A Zarr store moved aside during a non-atomic replace (platforms without an exchange call).
OLD_PREFIX = ".old-"


@contextlib.contextmanager
def destination_lock(path: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive lock on writing ``path`` (blocks while another writer holds it).

    The lock is ``flock`` on ``.<name>.lock`` in the same folder, which works across processes
    of one machine (containers included) and on network filesystems that support locking.
    Where ``fcntl`` does not exist (Windows) writers are not serialized.
    """
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    lock = dest.with_name(f".{dest.name}.lock")
    try:
        fd = os.open(lock, os.O_RDONLY | os.O_CREAT, 0o666)  # flock needs no write access
    except PermissionError:
        raise OutputPermissionError(
            f"cannot write in {dest.parent}: it is read-only for this user (writing {dest.name} "
            "needs a temporary file and a lock file beside it)"
        ) from None
    try:
        with contextlib.suppress(OSError):  # others writing here share the lock (umask aside)
            os.fchmod(fd, 0o666)
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def recover(dest: Path) -> list[Path]:
    """Clean up after writers of ``dest`` that were killed; call while holding its lock.

    Removes their temporaries (no live writer has one while we hold the lock) and finishes an
    interrupted non-atomic Zarr replace: the old store is put back if ``dest`` is missing, and
    removed if the new one is in place.  Returns the removed paths.
    """
    name = re.escape(dest.name)
    partial = re.compile(rf"{re.escape(PARTIAL_PREFIX)}\d+-[0-9a-f]{{8}}-{name}")
    moved = re.compile(rf"{re.escape(OLD_PREFIX)}[0-9a-f]{{8}}-{name}")
    removed = []
    for p in sorted(dest.parent.glob(f"{PARTIAL_PREFIX}*")):
        if partial.fullmatch(p.name):
            _remove(p)
            removed.append(p)
    for old in sorted(p for p in dest.parent.glob(f"{OLD_PREFIX}*") if moved.fullmatch(p.name)):
        if not dest.exists():
            os.replace(old, dest)
        else:
            _remove(old)
            removed.append(old)
    return removed


@contextlib.contextmanager
def atomic_destination(
    path: str | os.PathLike, overwrite: bool = False, locked: bool = False
) -> Iterator[Path]:
    """Yield a temporary sibling of ``path``; move it into place only if the block succeeds.

    Works for files and for directories (Zarr stores).  On error the temporary is removed
    and an existing ``path`` is left untouched; the move itself is atomic (see
    :func:`replace_atomically`), so a process killed at any moment leaves ``path`` either as
    it was or complete.

    Parameters
    ----------
    path : path
    overwrite : bool
        Replace an existing ``path``; otherwise it raises ``FileExistsError``.
    locked : bool
        The caller already holds :func:`destination_lock` (and ran :func:`recover`), as one
        must around a read-modify-write of ``path``; otherwise both happen here.
    """
    dest = Path(path)
    if not locked:
        with destination_lock(dest):
            recover(dest)
            with atomic_destination(dest, overwrite, locked=True) as tmp:
                yield tmp
        return
    if dest.exists() and not overwrite:
        raise OutputExistsError(f"{dest} exists; pass overwrite=True to replace it")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary(dest)
    try:
        yield tmp
        if dest.exists() and tmp.exists():
            shutil.copymode(dest, tmp)  # a replaced file keeps its permissions
        replace_atomically(tmp, dest)
    finally:
        _remove(tmp)


def replace_atomically(new: Path, dest: Path) -> None:
    """Move ``new`` to ``dest`` in one atomic step, replacing ``dest`` if it exists.

    A file (HDF5) replaces a file with ``rename``.  A directory (Zarr store) cannot be renamed
    over a non-empty directory, so the two are exchanged atomically (Linux ``renameat2`` with
    ``RENAME_EXCHANGE``, macOS ``renamex_np`` with ``RENAME_SWAP``) and the old one, now at
    ``new``, is removed.  Where the filesystem cannot exchange, the old store is moved aside
    first; a crash between the two renames leaves it under a ``.old-`` name, which
    :func:`recover` puts back or removes on the next write.
    """
    _fsync(new)
    if not (dest.exists() and dest.is_dir()):
        os.replace(new, dest)
    elif _exchange(new, dest):
        _remove(new)  # the old store
    else:
        old = dest.with_name(f"{OLD_PREFIX}{uuid.uuid4().hex[:8]}-{dest.name}")
        os.replace(dest, old)
        try:
            os.replace(new, dest)
        except BaseException:
            os.replace(old, dest)  # put the old store back
            raise
        _remove(old)
    _fsync(dest.parent)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths; False where the platform or filesystem cannot."""
    import ctypes
    import ctypes.util
    import sys

    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return False
    try:
        libc = ctypes.CDLL(libc_name, use_errno=True)
        if sys.platform.startswith("linux"):
            at_fdcwd, rename_exchange = -100, 2
            fn = libc.renameat2
            args = (at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
        elif sys.platform == "darwin":
            fn, args = libc.renamex_np, (os.fsencode(a), os.fsencode(b), 0x2)  # RENAME_SWAP
        else:
            return False
    except AttributeError:  # an old C library without the call
        return False
    if fn(*args) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False  # the filesystem cannot exchange: fall back
    raise OSError(err, f"cannot replace {b} with {a}: {os.strerror(err)}")


def _fsync(path: Path) -> None:
    """Flush a file, or a directory entry, to disk (best effort)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _remove(p: Path) -> None:
    if p.is_symlink() or p.is_file():
        p.unlink()
    elif p.is_dir():
        shutil.rmtree(p, ignore_errors=True)


def write_file(
    path: str | os.PathLike,
    data: bytes | str | Callable[[Path], None],
    *,
    lock: bool = False,
    mtime_ns: int | None = None,
) -> Path:
    """Write one file atomically: a temporary sibling, flushed to disk, renamed over ``path``.

    Parameters
    ----------
    path : path
        The destination (its folder is created).  An existing file is replaced and keeps
        its permissions.
    data : bytes, str or callable
        The content (``str`` is written as UTF-8), or ``writer(tmp_path)`` that writes the
        temporary file itself (e.g. ``np.savez``, ``torch.save``).
    lock : bool
        Take :func:`destination_lock` and :func:`recover` first: for files that several
        processes may write.  Without it (one writer per file) no lock file is made.
    mtime_ns : int, optional
        Set the file's access and modification times (ns) before it is moved into place.

    Returns
    -------
    pathlib.Path
    """
    dest = Path(path)
    if lock:
        with destination_lock(dest):
            recover(dest)
            return write_file(dest, data, mtime_ns=mtime_ns)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary(dest)
    try:
        if callable(data):
            data(tmp)
        else:
            raw = data.encode() if isinstance(data, str) else bytes(data)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies
            with os.fdopen(fd, "wb") as fh:
                fh.write(raw)
        if dest.exists():
            shutil.copymode(dest, tmp)
        if mtime_ns is not None:
            os.utime(tmp, ns=(mtime_ns, mtime_ns))
        replace_atomically(tmp, dest)
    finally:
        _remove(tmp)
    return dest


def write_files(files: Mapping[Path, bytes]) -> None:
    """Write every file or none (a set of files that belong together, e.g. a report).

    Temporaries first, then each moved into place; on a failure the files already replaced
    get their old content back and new ones are removed.  One lock (on the last file) is
    held for the whole set.
    """
    files = {Path(p): d for p, d in files.items()}
    if not files:
        return
    with destination_lock(next(reversed(files))):
        for dest in files:
            recover(dest)
        temps: dict[Path, Path] = {}
        try:
            for dest, data in files.items():
                temps[dest] = tmp = _temporary(dest)
                tmp.write_bytes(data)
                if dest.exists():
                    shutil.copymode(dest, tmp)
            _move_all(temps)
        finally:
            for tmp in temps.values():
                _remove(tmp)


def _temporary(dest: Path) -> Path:
    """A new temporary sibling of ``dest`` (a name :func:`recover` knows)."""
    return dest.with_name(f"{PARTIAL_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}-{dest.name}")


def _move_all(temps: dict[Path, Path]) -> None:
    backups: dict[Path, Path] = {}
    done: list[Path] = []
    try:
        for dest, tmp in temps.items():
            if dest.exists():
                backup = dest.with_name(f"{OLD_PREFIX}{uuid.uuid4().hex[:8]}-{dest.name}")
                try:
                    os.link(dest, backup)
                except OSError:  # no hard links here
                    shutil.copy2(dest, backup)
                backups[dest] = backup
            replace_atomically(tmp, dest)
            done.append(dest)
    except BaseException:
        for dest in reversed(done):
            if dest in backups:
                os.replace(backups.pop(dest), dest)
            else:
                dest.unlink(missing_ok=True)
        raise
    finally:
        for backup in backups.values():
            backup.unlink(missing_ok=True)
