"""Atomic, pickle-free ``.npz`` files holding JSON metadata and integer arrays, and atomic writes.

:func:`atomic_write` is the one way the project writes a file: a temporary file beside the
target (so the rename is atomic on one file system), mode ``0666 & ~umask`` like any file the
user creates, renamed over the target only after it is complete; on any error or interrupt the
temporary file is removed and the target is untouched.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np

from ir.errors import FormatError

META_KEY = "__meta__"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file beside ``path``; rename it to ``path`` when the block ends cleanly.

    The file gets the permissions a plain ``open(path, "w")`` would give (``0666 & ~umask``),
    not ``mkstemp``'s ``0600``. On an exception (``KeyboardInterrupt`` included) the temporary
    file is removed and ``path`` keeps its old content.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"mode must be 'w' or 'wb', not {mode!r}")
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_write`)."""
    with atomic_write(path, "w") as f:
        f.write(text)


def write_npz(path: str | os.PathLike, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    """Write ``meta`` (JSON) and ``arrays`` to ``path`` atomically (temp file + rename)."""
    path = Path(path)
    if META_KEY in arrays:
        raise ValueError(f"array name {META_KEY!r} is reserved")
    payload = {META_KEY: np.frombuffer(json.dumps(meta, sort_keys=True).encode(), dtype=np.uint8)}
    payload.update(arrays)
    with atomic_write(path) as f:
        np.savez_compressed(f, **payload)


def read_npz(path: str | os.PathLike, *, kind: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read a file written by :func:`write_npz`; raise :class:`FormatError` naming the problem."""
    path = Path(path)
    if not path.is_file():
        raise FormatError(f"{path}: no such file")
    try:
        with open(path, "rb") as f:
            z = np.load(f, allow_pickle=False)
            if not isinstance(z, np.lib.npyio.NpzFile):
                raise FormatError(f"{path}: not a valid {kind} file (a bare array, not an archive)")
            with z:
                arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise FormatError(f"{path}: not a valid {kind} file ({e})") from None
    if META_KEY not in arrays:
        raise FormatError(f"{path}: not a {kind} file (no metadata record)")
    try:
        meta = json.loads(arrays.pop(META_KEY).tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise FormatError(f"{path}: corrupt metadata ({e})") from None
    if not isinstance(meta, dict) or meta.get("kind") != kind:
        found = meta.get("kind") if isinstance(meta, dict) else None
        raise FormatError(f"{path}: expected a {kind} file, found kind {found!r}")
    return meta, arrays
