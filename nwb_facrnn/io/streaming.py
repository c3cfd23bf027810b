"""Open a remote NWB (HDF5) file for reading, streaming only the bytes h5py asks for.

The bytes come through :class:`~nwb_facrnn.io.remote.HTTPRangeFile`: ranged GETs of 1 MiB
blocks, retried with backoff, kept in a size-bounded on-disk block cache so a second read of
the same asset fetches nothing already fetched.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..atomic import write_file
from .dandi import RemoteSourceError, resolve
from .errors import NWBReadError

Cache = bool | str | os.PathLike


def retry_policy():
    """The retry policy of remote reads; ``NWB_FACRNN_HTTP_TIMEOUT`` (seconds without an
    answer before a request fails) and ``NWB_FACRNN_HTTP_RETRIES`` (attempts) override it.

    Raises
    ------
    OptionError
        One of the variables has a value that is not a number > 0 (a whole number >= 1).
    """
    from .remote import RetryPolicy
    from .remote.transport import attempts_from_env, timeout_from_env

    policy = RetryPolicy()
    timeout = timeout_from_env()
    attempts = attempts_from_env()
    if timeout is not None:
        policy.timeout = (timeout, timeout)
    if attempts is not None:
        policy.attempts = attempts
    return policy


def block_cache(cache: Cache):
    """The block cache for ``cache``: True = the default directory, a path, False = none."""
    from .remote import BlockCache

    if cache is False or cache is None:
        return None
    if cache is True:
        return BlockCache()
    return BlockCache(Path(cache))


@contextlib.contextmanager
def open_remote(
    source: str, dandi_api_url: str | None = None, cache: Cache = True
) -> Iterator[tuple[Any, str, dict[str, Any]]]:
    """Yield ``(nwbfile, name, details)`` for a ``DANDI:`` ID or an HTTP(S) URL.

    ``details`` holds ``url``, ``size``, ``dandi`` (dandiset, version, path, asset id, digest)
    and ``stats`` (a live :class:`~nwb_facrnn.io.remote.TransferStats`).
    """
    import h5py

    from .remote import HTTPRangeFile, RemoteReadError, TransferStats

    asset = resolve(source, dandi_api_url)
    stats = TransferStats()
    with contextlib.ExitStack() as stack:
        try:
            raw = stack.enter_context(
                HTTPRangeFile(
                    asset.url,
                    size=asset.size,
                    cache=block_cache(cache),
                    cache_key=asset.cache_key,
                    stats=stats,
                    headers=asset.headers,
                    retry=retry_policy(),
                )
            )
            h5 = stack.enter_context(h5py.File(raw, "r"))
            if "nwb_version" not in h5.attrs:
                raise RemoteSourceError(
                    asset.name, "/", "an HDF5 file without the nwb_version attribute: not NWB"
                )
            io = stack.enter_context(_reader(h5, asset.name))
        except (NWBReadError, RemoteReadError):
            raise
        except OSError as err:
            raise RemoteSourceError(
                asset.name, "/", f"cannot be read as HDF5 ({type(err).__name__}: {err})"
            ) from None
        nwbfile = _read(io, asset.name)
        details = {
            "url": asset.url,
            "size": raw.size,
            "dandi": asset.dandi,
            "stats": stats,
            "io": io,
        }
        yield nwbfile, asset.name, details


def _reader(h5, name: str):
    """An ``NWBHDF5IO`` on the open remote ``h5`` whose ``read()`` handles warnings and the
    version attribute as local reads do (:func:`~nwb_facrnn.io.backend.open_io`): each
    distinct library warning shown once, on one line naming ``name``."""
    from pynwb import NWBHDF5IO

    from .backend import _compact_read_warnings, own_version_check

    io = NWBHDF5IO(file=h5, mode="r", load_namespaces=True)
    return _compact_read_warnings(own_version_check(io), name)


def _read(io, name: str):
    """``io.read()``; what pynwb, hdmf or h5py raise for a file they cannot read becomes one
    line naming the remote file and the object (as for local files, see
    :func:`~nwb_facrnn.io.reader.open_nwbfile`)."""
    from .read_errors import describe_read_error
    from .remote import RemoteReadError

    try:
        return io.read()
    except (NWBReadError, RemoteReadError):
        raise
    except Exception as err:  # anything pynwb/hdmf/h5py raise for a broken file
        remote = _chained(err, RemoteReadError)
        if remote is not None:  # the transfer failed under h5py: say so, not "broken file"
            raise remote from None
        if isinstance(err, OSError):
            raise RemoteSourceError(
                name, "/", f"cannot be read as HDF5 ({type(err).__name__}: {err})"
            ) from None
        where, why = describe_read_error(err)
        raise RemoteSourceError(name, where, f"cannot be read as NWB ({why})") from None


def _chained(err: BaseException, kind: type) -> BaseException | None:
    """The first exception of type ``kind`` in ``err``'s chain (causes and contexts)."""
    seen: set[int] = set()
    e: BaseException | None = err
    while e is not None and id(e) not in seen:
        if isinstance(e, kind):
            return e
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return None


def download_asset(
    source: str, dandi_api_url: str | None = None, cache: Cache = True, progress: bool = True
) -> tuple[Path, dict[str, Any]]:
    """Download a whole remote asset into the cache, verified against its DANDI digest.

    The file goes to ``<cache>/assets/<asset id>-<digest>.nwb`` (a temporary sibling renamed
    into place when complete); a ``.verified`` file beside it records the digest that was
    checked, so the next call reuses it without fetching anything.  With ``cache=False`` the
    default cache directory is used all the same (a download needs a place).

    Returns
    -------
    (pathlib.Path, dict)
        The local file and its details (``url``, ``size``, ``dandi``, ``stats``, ``local_path``).

    Raises
    ------
    RemoteSourceError
        The downloaded bytes do not match the asset's digest (the file is removed).
    """
    from .remote import TransferStats, default_cache_dir, download

    asset = resolve(source, dandi_api_url)
    root = Path(cache) if isinstance(cache, str | os.PathLike) else default_cache_dir()
    dest = root / "assets" / f"{asset.cache_key}.nwb"
    marker = dest.with_name(dest.name + ".verified")
    algorithm, expected = _expected_digest(asset.dandi.get("digest") or {})
    stats = TransferStats()
    details = {"url": asset.url, "size": asset.size, "dandi": asset.dandi, "stats": stats}
    verified = marker.is_file() and marker.read_text().strip() == f"{algorithm}:{expected}"
    if expected and dest.is_file() and verified:  # no digest (a plain URL): fetch again
        return dest, {**details, "local_path": str(dest)}
    download(
        asset.url,
        dest,
        size=asset.size,
        retry=retry_policy(),
        progress=progress,
        stats=stats,
        headers=asset.headers,
    )
    if expected:
        got = _digest(dest, algorithm)
        if got != expected:
            dest.unlink(missing_ok=True)
            raise RemoteSourceError(
                asset.name,
                "/",
                f"the download does not match the asset's {algorithm} digest (expected "
                f"{expected}, got {got}); it was removed, try again",
            )
    write_file(marker, f"{algorithm}:{expected}\n")
    return dest, {**details, "local_path": str(dest)}


def _expected_digest(digest: dict[str, str]) -> tuple[str, str]:
    for key in ("dandi:sha2-256", "dandi:dandi-etag"):
        if digest.get(key):
            return key, str(digest[key])
    return "none", ""


def _digest(path: Path, algorithm: str) -> str:
    if algorithm == "dandi:sha2-256":
        import hashlib

        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 22), b""):
                h.update(chunk)
        return h.hexdigest()
    from dandischema.digests.dandietag import DandiETag

    return DandiETag.from_file(path).as_str()
