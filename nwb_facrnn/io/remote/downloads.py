"""Download a whole remote file, resuming dropped transfers, atomically at its destination."""

from __future__ import annotations

import os
from pathlib import Path

import requests

from ...atomic import atomic_destination
from .transport import RemoteReadError, RetryPolicy, TransferStats, Transport, new_session


def download(
    url: str,
    dest: str | os.PathLike,
    *,
    size: int | None = None,
    retry: RetryPolicy | None = None,
    progress: bool = True,
    session: requests.Session | None = None,
    stats: TransferStats | None = None,
    chunk_size: int = 1 << 20,
    headers: dict[str, str] | None = None,
) -> Path:
    """Download a whole file, resuming after dropped connections; atomic at ``dest``.

    The bytes go to a temporary sibling ``.partial-<pid>-<random>-<name>`` that replaces
    ``dest`` only once complete and of the expected size, so ``dest`` is never a partial
    file: on failure it is left as it was (absent or the previous file), and the temporary
    is removed (one left by a killed process is removed by the next download or write of
    ``dest``, see :mod:`nwb_facrnn.atomic`).  A dropped transfer resumes with a ``Range``
    request from the first missing byte; a try that delivered at least ``chunk_size`` bytes
    does not count against ``retry.attempts``.

    Parameters
    ----------
    url : str
        HTTP(S) URL (redirects are followed).
    dest : path
        Destination file (replaced if it exists; its folder is created).
    size : int, optional
        Expected size (bytes); checked against the server's.  None: the server's.
    retry : RetryPolicy, optional
        Timeouts and retries; default ``RetryPolicy()``.
    progress : bool
        Show a tqdm progress bar (bytes) on stderr.
    session : requests.Session, optional
        Session for the requests; by default one of its own.
    stats : TransferStats, optional
        Counters to add the traffic to.
    chunk_size : int
        Bytes read from the network and written at a time.
    headers : dict, optional
        Extra request headers (credentials are not sent to another host).

    Returns
    -------
    Path
        ``dest``.

    Raises
    ------
    RemoteReadError
        The download failed after the retries, or at once on an HTTP error such as 404, or
        the size received is not the expected one.
    """
    from tqdm.auto import tqdm

    dest = Path(dest)
    stats = stats if stats is not None else TransferStats()
    own_session = session is None
    transport = Transport(
        str(url),
        session or new_session(),
        retry if retry is not None else RetryPolicy(),
        stats,
        headers,
    )
    if size is not None:
        transport.total = int(size)
    try:
        with (
            atomic_destination(dest, overwrite=True) as tmp,
            open(tmp, "wb") as f,
            tqdm(
                total=size,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=dest.name,
                disable=not progress,
            ) as bar,
        ):

            def sink(chunk: bytes) -> None:
                f.write(chunk)
                bar.update(len(chunk))

            def restart() -> None:
                f.seek(0)
                f.truncate()
                bar.reset(total=transport.total)

            def on_total(total: int) -> None:
                bar.total = total
                bar.refresh()

            end = transport.get_range(
                0,
                transport.total,
                sink,
                what=f"downloading to {dest}",
                whole=True,
                on_restart=restart,
                on_total=on_total,
                chunk_size=int(chunk_size),
                progress_resets=int(chunk_size),
            )
            f.flush()
            written = f.tell()
            expected = transport.total
            if written != end or (expected is not None and written != expected):
                raise RemoteReadError(
                    transport.url,
                    f"downloading to {dest}: received {written} bytes, expected {expected}",
                )
    finally:
        if own_session:
            transport.session.close()
    return dest
