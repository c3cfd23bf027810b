"""Helpers shared by the tests."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest


def tree_sha256(path: Path) -> str:
    """sha256 of a file, or of every file of a directory (Zarr store) with its relative path."""
    path = Path(path)
    h = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        h.update((f.name if f == path else f.relative_to(path).as_posix()).encode())
        h.update(f.read_bytes())
    return h.hexdigest()


@pytest.fixture
def sha256():
    """``sha256(path)``: the content hash of a file or a Zarr store."""
    return tree_sha256
