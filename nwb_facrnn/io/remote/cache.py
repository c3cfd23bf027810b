"""The on-disk cache of fixed-size blocks of remote files, shared by processes, size-bounded."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from ...atomic import PARTIAL_PREFIX, write_file
from ...errors import OptionError

#: Environment variable naming the block cache directory (overrides the platform default).
CACHE_DIR_ENV = "NWB_FACRNN_CACHE_DIR"
#: Temporary block files older than this (seconds) were left by a killed process.
_STALE_TMP_SECONDS = 3600.0
#: Ending of the temporary block files that versions before the shared atomic writes made.
_LEGACY_TMP_SUFFIX = ".tmp"


def _is_temporary(name: str) -> bool:
    """A temporary block file: :func:`~nwb_facrnn.atomic.write_file`'s, or an older one."""
    return name.startswith(PARTIAL_PREFIX) or name.endswith(_LEGACY_TMP_SUFFIX)


def _is_block(name: str) -> bool:
    return name.endswith(".blk") and not name.startswith(PARTIAL_PREFIX)


def default_cache_dir() -> Path:
    """The default :class:`BlockCache` directory.

    Returns
    -------
    Path
        ``$NWB_FACRNN_CACHE_DIR`` if set and not empty, else the platform's user cache
        directory for ``nwb-facrnn`` (``~/.cache/nwb-facrnn`` on Linux) plus ``/http``.
    """
    env = os.environ.get(CACHE_DIR_ENV, "").strip()
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("nwb-facrnn")) / "http"


_SAFE_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+=-]{0,159}")


def _key_dirname(key: str) -> str:
    """The directory name of a cache key: the key itself if safe, else its sha256."""
    if _SAFE_KEY.fullmatch(key):
        return key
    return "h-" + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def url_cache_key(url: str) -> str:
    """A cache key for a URL: sha256 of the URL without query string and fragment.

    The query of a signed URL (S3 ``X-Amz-...``) changes with every signature while the
    object does not, so it is left out.

    Parameters
    ----------
    url : str

    Returns
    -------
    str
        64 hexadecimal digits.
    """
    parts = urlsplit(url)
    bare = urlunsplit((parts.scheme.lower(), parts.netloc.lower(), parts.path, "", ""))
    return hashlib.sha256(bare.encode()).hexdigest()


class BlockCache:
    """On-disk cache of fixed-size blocks of remote files, bounded in total size.

    Layout: ``<directory>/<key>/<block index>.blk``, where ``key`` names one remote file (a
    sha256 of its URL, or a caller-given key such as a DANDI asset id and digest; a key that
    is not a safe file name is replaced by its sha256).  A block is written to a temporary
    file in the same folder and renamed into place (:func:`~nwb_facrnn.atomic.write_file`,
    without a lock: a block's bytes never change), so a process killed mid-write never
    leaves a partial block under its final name, and a block whose size is not the expected
    one (a crash on a filesystem that reorders metadata, a truncated copy) is deleted and
    treated as absent.  Several processes may share one directory: reads of a block being
    replaced see the old or the new file, both complete.

    Once the blocks on disk exceed ``max_bytes``, the least recently used ones (by
    modification time, which :meth:`get` refreshes) are removed until 90% of ``max_bytes``
    remain.  Each process counts its own writes against one scan of the directory, so with
    several writers the bound holds to within what the others wrote since that scan.

    Parameters
    ----------
    directory : path, optional
        Cache directory, created on first write; default :func:`default_cache_dir`.
    max_bytes : int
        Bound on the total size of the cached blocks (bytes); default 20 GiB.
    """

    def __init__(
        self, directory: str | os.PathLike | None = None, max_bytes: int = 20 * 2**30
    ) -> None:
        if int(max_bytes) < 0:
            raise OptionError(f"max_bytes must be >= 0, got {max_bytes}")
        self.directory = Path(directory) if directory is not None else default_cache_dir()
        self.max_bytes = int(max_bytes)
        self._lock = threading.Lock()
        self._estimate: int | None = None  # bytes on disk at the last scan + writes since
        self._last_ns = 0

    def __repr__(self) -> str:
        return f"BlockCache({str(self.directory)!r}, max_bytes={self.max_bytes})"

    def _path(self, key: str, index: int) -> Path:
        if int(index) < 0:
            raise ValueError(f"block index must be >= 0, got {index}")
        return self.directory / _key_dirname(key) / f"{int(index)}.blk"

    def _now_ns(self) -> int:
        """Strictly increasing wall-clock nanoseconds: the LRU order of this process's uses."""
        with self._lock:
            self._last_ns = max(time.time_ns(), self._last_ns + 1)
            return self._last_ns

    def get(self, key: str, index: int, size: int) -> bytes | None:
        """The cached block, or None if absent or not ``size`` bytes long (then deleted).

        Parameters
        ----------
        key : str
            The remote file's cache key.
        index : int
            Block number (block ``i`` starts at byte ``i * block_size``).
        size : int
            Expected length of the block (bytes).

        Returns
        -------
        bytes or None
        """
        path = self._path(key, index)
        try:
            with open(path, "rb") as f:
                st = os.fstat(f.fileno())
                data = f.read(size + 1) if st.st_size == size else None
        except OSError:  # absent, evicted meanwhile, unreadable: a miss
            return None
        if data is None or len(data) != size:
            with contextlib.suppress(OSError):
                if os.stat(path).st_ino == st.st_ino:  # not replaced by a good one meanwhile
                    path.unlink()
            return None
        now = self._now_ns()
        with contextlib.suppress(OSError):  # a read-only shared cache still serves hits
            os.utime(path, ns=(now, now))
        return data

    def put(self, key: str, index: int, data: bytes) -> None:
        """Store a block (atomically: temporary file, then rename), then evict if over bound.

        Parameters
        ----------
        key : str
            The remote file's cache key.
        index : int
            Block number.
        data : bytes
            The block's bytes.

        Raises
        ------
        OSError
            The directory cannot be written (full disk, permissions).
        """
        path = self._path(key, index)
        try:
            write_file(path, data, mtime_ns=self._now_ns())
        except FileNotFoundError:  # another process removed the key folder: once more
            write_file(path, data, mtime_ns=self._now_ns())
        with self._lock:
            if self._estimate is None:
                self._estimate = sum(size for _, size, _ in self._scan())
            else:
                self._estimate += len(data)
            if self._estimate > self.max_bytes:
                self._evict()

    def _scan(self) -> list[tuple[int, int, str]]:
        """``(mtime_ns, size, path)`` of every block; removes stale temporaries on the way."""
        blocks: list[tuple[int, int, str]] = []
        stale = time.time() - _STALE_TMP_SECONDS
        try:
            top = os.scandir(self.directory)
        except OSError:
            return blocks
        with top:
            for keydir in top:
                if not keydir.is_dir(follow_symlinks=False):
                    continue
                try:
                    entries = os.scandir(keydir.path)
                except OSError:
                    continue
                with entries:
                    for e in entries:
                        try:
                            if _is_block(e.name):
                                st = e.stat(follow_symlinks=False)
                                blocks.append((st.st_mtime_ns, st.st_size, e.path))
                            elif _is_temporary(e.name):
                                if e.stat(follow_symlinks=False).st_mtime < stale:
                                    os.unlink(e.path)
                        except OSError:  # removed by another process meanwhile
                            continue
        return blocks

    def _evict(self) -> None:
        """Remove least recently used blocks until 90% of ``max_bytes`` remain (lock held)."""
        blocks = sorted(self._scan())
        total = sum(size for _, size, _ in blocks)
        target = self.max_bytes - self.max_bytes // 10
        folders = set()
        for _, size, path in blocks:
            if total <= target:
                break
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            total -= size
            folders.add(os.path.dirname(path))
        for folder in folders:
            with contextlib.suppress(OSError):  # only if empty
                os.rmdir(folder)
        self._estimate = total

    def size(self) -> int:
        """Bytes of all cached blocks on disk (all keys).

        Returns
        -------
        int
            Total size (bytes).
        """
        return sum(size for _, size, _ in self._scan())

    def clear(self, key: str | None = None) -> None:
        """Remove the cached blocks of one key, or of all keys.

        Only block and temporary files (and the folders they leave empty) are removed, so a
        cache directory pointed at a folder holding other files leaves those alone.

        Parameters
        ----------
        key : str, optional
            The remote file's cache key; None clears the whole cache.
        """
        if key is not None:
            folders = [self.directory / _key_dirname(key)]
        else:
            try:
                folders = [p for p in self.directory.iterdir() if p.is_dir()]
            except OSError:
                folders = []
        for folder in folders:
            with contextlib.suppress(OSError):
                for p in folder.iterdir():
                    if _is_block(p.name) or _is_temporary(p.name):
                        with contextlib.suppress(OSError):
                            p.unlink()
                folder.rmdir()
        with self._lock:
            self._estimate = None
