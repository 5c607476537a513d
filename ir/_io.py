"""Atomic, pickle-free ``.npz`` files holding JSON metadata and integer arrays, and atomic writes.

:func:`atomic_write` is the one way the project writes a file: a temporary file beside the
target (so the rename is atomic on one file system), mode ``0666 & ~umask`` like any file the
user creates, renamed over the target only after it is complete; on any error or interrupt the
temporary file is removed and the target is untouched.

Reading trusts nothing in the file: :func:`read_npz` (and :func:`read_array`, for inputs files)
checks every size before it decompresses anything — the metadata record's, each array's against
the dtype and shape the metadata records (:func:`write_npz` writes that record), the ``.npy``
header's against its member — and turns every problem (damaged compressed data, truncation, a
zip bomb, JSON nested 200,000 deep, pickled objects) into one :class:`~ir.errors.FormatError`
that names the path as the caller gave it and what is wrong.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
import re
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np

from spikezip.ir.errors import FormatError

META_KEY = "__meta__"
#: Metadata key recording every array's dtype and shape (added by :func:`write_npz`).
ARRAYS_KEY = "__arrays__"


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
    """Write ``meta`` (JSON) and ``arrays`` to ``path`` atomically (temp file + rename).

    The metadata also records each array's dtype and shape (key ``__arrays__``), so that
    :func:`read_npz` bounds what it decompresses before it decompresses it. Arrays must be of
    integer or bool dtype.
    """
    path = Path(path)
    if META_KEY in arrays:
        raise ValueError(f"array name {META_KEY!r} is reserved")
    if ARRAYS_KEY in meta:
        raise ValueError(f"metadata key {ARRAYS_KEY!r} is reserved")
    payload = {}
    record = {}
    for name, value in arrays.items():
        arr = np.asarray(value)
        if arr.dtype.kind not in _ARRAY_KINDS:
            raise ValueError(f"array {name!r} must be of integer or bool dtype, not {arr.dtype}")
        payload[name] = arr
        record[name] = {"dtype": arr.dtype.str, "shape": list(arr.shape)}
    text = json.dumps({**meta, ARRAYS_KEY: record}, sort_keys=True)
    payload = {META_KEY: np.frombuffer(text.encode(), dtype=np.uint8), **payload}
    with atomic_write(path) as f:
        np.savez_compressed(f, **payload)


# -- reading: every size is checked before anything is decompressed --------------------------------
#: Largest metadata record read (the JSON; the arrays are stored beside it).
MAX_META_BYTES = 4 << 20
#: Deepest nesting of lists and objects in the metadata JSON.
MAX_META_DEPTH = 64
#: Largest total of decompressed array data read from one file (and default ``max_bytes``).
MAX_DATA_BYTES = 2 << 30
#: Largest ``.npy`` header (numpy's own default limit).
MAX_HEADER_BYTES = 10_000
#: Most members of one archive.
MAX_MEMBERS = 100_000
#: Deflate cannot expand data more than ~1032-fold; a member declaring more is corrupt.
MAX_DEFLATE_RATIO = 1100
_ARRAY_KINDS = "biu"  # what write_npz writes
#: What read_npz reads: floats too, so that the validators of the IR objects name a float's
#: field, value and place (no float is ever cast to an integer unchecked).
_READ_KINDS = "biuf"
_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
_READ_CHUNK = 16 << 20


class _Bad(Exception):
    """A problem inside a file; the caller prefixes the path and the file kind."""


def _plural_bytes(n: int) -> str:
    if n < 1 << 20:
        return f"{n} bytes"
    return f"{n / (1 << 20):.1f} MiB" if n < 1 << 30 else f"{n / (1 << 30):.1f} GiB"


def _parse_npy_header(f: IO[bytes]) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """Read a ``.npy`` header; return ``(shape, fortran_order, dtype, header bytes)``."""
    magic = f.read(8)
    if len(magic) < 8 or magic[:6] != _NPY_MAGIC:
        raise _Bad("is not a .npy array (bad magic string)")
    version = (magic[6], magic[7])
    if version == (1, 0):
        size_bytes, parse = 2, np.lib.format.read_array_header_1_0
    elif version == (2, 0):
        size_bytes, parse = 4, np.lib.format.read_array_header_2_0
    else:
        raise _Bad(f"has unsupported .npy format version {version[0]}.{version[1]}")
    raw = f.read(size_bytes)
    if len(raw) < size_bytes:
        raise _Bad("has a truncated .npy header")
    length = int.from_bytes(raw, "little")
    if length > MAX_HEADER_BYTES:
        raise _Bad(f"has a .npy header of {length} bytes (at most {MAX_HEADER_BYTES} are read)")
    header = f.read(length)
    if len(header) < length:
        raise _Bad("has a truncated .npy header")
    try:
        shape, fortran, dtype = parse(io.BytesIO(raw + header), max_header_size=MAX_HEADER_BYTES)
    except (ValueError, TypeError, SyntaxError, RecursionError, MemoryError) as e:
        raise _Bad(f"has an invalid .npy header ({str(e).splitlines()[0]})") from None
    if any(n < 0 for n in shape):
        raise _Bad(f"has an invalid .npy header (negative shape {shape})")
    return tuple(shape), bool(fortran), dtype, 8 + size_bytes + length


_KIND_NAMES = {"biu": "bool or integer", "biuf": "bool, integer or float", "u": "unsigned"}


def _check_dtype(dtype: np.dtype, kinds: str) -> None:
    if dtype.kind not in kinds or dtype.hasobject or dtype.fields is not None or dtype.shape:
        raise _Bad(f"is an array of {dtype}; only {_KIND_NAMES[kinds]} arrays are allowed")


def _read_data(
    f: IO[bytes], shape: tuple[int, ...], fortran: bool, dtype: np.dtype, nbytes: int
) -> np.ndarray:
    """Read exactly ``nbytes`` of array data and check that the stream ends there."""
    buf = bytearray(nbytes)
    view = memoryview(buf)
    done = 0
    while done < nbytes:
        chunk = f.read(min(_READ_CHUNK, nbytes - done))
        if not chunk:
            raise _Bad(f"is truncated ({done} of {nbytes} bytes of data)")
        view[done : done + len(chunk)] = chunk
        done += len(chunk)
    if f.read(1):
        raise _Bad("has trailing data after the array")
    arr = np.frombuffer(buf, dtype=dtype)
    arr = arr.reshape(shape[::-1]).T if fortran else arr.reshape(shape)
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    return arr


def _npy_bytes(shape: tuple[int, ...], dtype: np.dtype) -> int:
    return math.prod(shape) * dtype.itemsize


def _read_member(
    z: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    *,
    label: str,
    kinds: str,
    declared: tuple[np.dtype, tuple[int, ...]] | None,
) -> np.ndarray:
    """Read one ``.npy`` member; every problem is a :class:`_Bad` starting with ``label``."""
    try:
        with z.open(info) as f:
            shape, fortran, dtype, header = _parse_npy_header(f)
            _check_dtype(dtype, kinds)
            if declared is not None and (dtype, shape) != declared:
                raise _Declared(
                    f"{info.filename[:-4]} must have shape {declared[1]} and dtype "
                    f"{declared[0]} as the metadata records, not shape {shape} and dtype {dtype}"
                )
            nbytes = _npy_bytes(shape, dtype)
            if header + nbytes != info.file_size:
                raise _Bad(
                    f"is {_plural_bytes(info.file_size)} long, its header declares "
                    f"{dtype.str} {list(shape)} ({_plural_bytes(header + nbytes)} with the header)"
                )
            return _read_data(f, shape, fortran, dtype, nbytes)
    except _Declared as e:
        raise _Bad(str(e)) from None
    except _Bad as e:
        raise _Bad(f"{label} {e}") from None
    except zlib.error as e:
        raise _Bad(f"{label}: damaged compressed data ({e})") from None
    except (zipfile.BadZipFile, EOFError) as e:
        raise _Bad(f"{label}: truncated or damaged ({e})") from None


class _Declared(_Bad):
    """An array that differs from the dtype and shape its metadata records."""


def _members(z: zipfile.ZipFile, max_bytes: int) -> dict[str, zipfile.ZipInfo]:
    """The ``.npy`` members by array name; sizes and methods checked, nothing decompressed."""
    infos = z.infolist()
    if len(infos) > MAX_MEMBERS:
        raise _Bad(f"holds {len(infos)} members (at most {MAX_MEMBERS})")
    out: dict[str, zipfile.ZipInfo] = {}
    total = 0
    for info in infos:
        if not info.filename.endswith(".npy"):
            raise _Bad(f"holds member {info.filename!r}, not a .npy array")
        name = info.filename[: -len(".npy")]
        if name in out:
            raise _Bad(f"holds member {info.filename!r} twice")
        if info.flag_bits & 0x1:
            raise _Bad(f"member {name!r} is encrypted")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise _Bad(f"member {name!r} uses compression method {info.compress_type}")
        if info.compress_type == zipfile.ZIP_STORED and info.compress_size != info.file_size:
            raise _Bad(f"member {name!r} is stored with inconsistent sizes")
        if info.file_size > MAX_DEFLATE_RATIO * info.compress_size + (1 << 20):
            raise _Bad(
                f"member {name!r} declares {_plural_bytes(info.file_size)} from "
                f"{_plural_bytes(info.compress_size)} of compressed data (a zip bomb or corrupt)"
            )
        total += info.file_size
        if total > max_bytes:
            raise _Bad(
                f"would decompress to more than {_plural_bytes(max_bytes)}: member {name!r} "
                f"declares {_plural_bytes(info.file_size)}"
            )
        out[name] = info
    return out


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number JSON allows")


def _json_depth(value: Any) -> int:
    """Nesting depth of a parsed JSON value, computed without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, depth)
            if depth <= MAX_META_DEPTH:
                children = item.values() if isinstance(item, dict) else item
                stack.extend((c, depth + 1) for c in children)
    return deepest


def _read_meta(z: zipfile.ZipFile, members: dict[str, zipfile.ZipInfo]) -> dict[str, Any]:
    info = members.get(META_KEY)
    if info is None:
        raise _Bad("no metadata record")
    if info.file_size > MAX_META_BYTES + MAX_HEADER_BYTES:
        raise _Bad(
            f"metadata record of {_plural_bytes(info.file_size)} (at most "
            f"{_plural_bytes(MAX_META_BYTES)})"
        )
    raw = _read_member(z, info, label="metadata record", kinds="u", declared=None)
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise _Bad(f"metadata record is {raw.dtype} {list(raw.shape)}, not uint8 text")
    try:
        meta = json.loads(raw.tobytes().decode(), parse_constant=_reject_constant)
    except RecursionError:
        raise _Bad(f"corrupt metadata (nested deeper than {MAX_META_DEPTH} levels)") from None
    except (UnicodeDecodeError, ValueError) as e:
        raise _Bad(f"corrupt metadata ({e})") from None
    if _json_depth(meta) > MAX_META_DEPTH:
        raise _Bad(f"corrupt metadata (nested deeper than {MAX_META_DEPTH} levels)")
    if not isinstance(meta, dict):
        raise _Bad(f"corrupt metadata (a JSON {type(meta).__name__}, not an object)")
    return meta


def _declared(record: Any, names: set[str]) -> dict[str, tuple[np.dtype, tuple[int, ...]]]:
    """Validate the ``__arrays__`` record against the members present."""
    if not isinstance(record, dict):
        raise _Bad(f"corrupt metadata ({ARRAYS_KEY} is not an object)")
    out = {}
    for name, entry in record.items():
        where = f"corrupt metadata ({ARRAYS_KEY}[{name!r}]"
        if name == META_KEY or not isinstance(entry, dict) or set(entry) != {"dtype", "shape"}:
            raise _Bad(f"{where} must be {{'dtype': ..., 'shape': [...]}})")
        dtype, shape = entry["dtype"], entry["shape"]
        if not isinstance(dtype, str) or not re.fullmatch(r"[<>|=]?([biu][1248]|f[248])", dtype):
            raise _Bad(f"{where}: dtype {dtype!r} is not a bool, integer or float dtype)")
        if (
            not isinstance(shape, list)
            or len(shape) > 32
            or not all(type(n) is int and n >= 0 for n in shape)
        ):
            raise _Bad(f"{where}: shape {shape!r} is not a list of sizes)")
        out[name] = (np.dtype(dtype), tuple(shape))
    missing, extra = sorted(set(out) - names), sorted(names - set(out))
    if missing:
        raise _Bad(f"lacks the array {missing[0]!r} its metadata declares")
    if extra:
        raise _Bad(f"holds the array {extra[0]!r} its metadata does not declare")
    return out


@contextlib.contextmanager
def _zip(path: str | os.PathLike, invalid: str) -> Iterator[zipfile.ZipFile]:
    """Open an archive; turn every failure inside the block into one :class:`FormatError`.

    ``invalid`` is the phrase of the message, e.g. ``"not a valid spikezip-trace file"``.
    """
    name = os.fspath(path)
    if not os.path.exists(path):
        raise FormatError(f"{name}: no such file")
    if not os.path.isfile(path):
        raise FormatError(f"{name}: not a regular file")
    try:
        with open(path, "rb") as f:
            magic = f.read(8)
            if magic[:6] == _NPY_MAGIC:
                raise _Bad("a bare array, not an archive")
            if magic[:4] not in _ZIP_MAGIC:
                raise _Bad("not a zip archive")
            f.seek(0)
            with zipfile.ZipFile(f) as z:
                yield z
    except FormatError:
        raise
    except _Bad as e:
        raise FormatError(f"{name}: {invalid} ({e})") from None
    except zlib.error as e:
        raise FormatError(f"{name}: {invalid} (damaged compressed data: {e})") from None
    except (zipfile.BadZipFile, EOFError) as e:
        raise FormatError(f"{name}: {invalid} (truncated or damaged: {e})") from None
    except MemoryError:
        raise FormatError(f"{name}: {invalid} (too large to load)") from None
    except (OSError, ValueError, RuntimeError, NotImplementedError, OverflowError) as e:
        raise FormatError(f"{name}: {invalid} ({type(e).__name__}: {e})") from None


def read_npz(
    path: str | os.PathLike, *, kind: str, max_bytes: int = MAX_DATA_BYTES
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read a file written by :func:`write_npz`; raise :class:`FormatError` naming the problem.

    Nothing is decompressed before its size is known to be allowed: the metadata record is at
    most :data:`MAX_META_BYTES`; each array must match the dtype and shape the metadata records
    (files written before that record existed: at most ``max_bytes`` in all); each ``.npy``
    header must match its member's size. Arrays are bool, integer or float (the loaders'
    validators reject floats with the value and its place); never objects, no pickle.
    """
    with _zip(path, f"not a valid {kind} file") as z:
        members = _members(z, max_bytes)
        meta = _read_meta(z, members)
        if meta.get("kind") != kind:
            found = meta.get("kind")
            raise FormatError(f"{os.fspath(path)}: expected a {kind} file, found kind {found!r}")
        names = set(members) - {META_KEY}
        declared = _declared(meta.pop(ARRAYS_KEY), names) if ARRAYS_KEY in meta else None
        arrays = {}
        for name in sorted(names):
            info = members[name]
            want = declared[name] if declared is not None else None
            if want is not None and info.file_size > _npy_bytes(want[1], want[0]) + (
                MAX_HEADER_BYTES + 16
            ):
                raise _Bad(
                    f"member {name!r} declares {_plural_bytes(info.file_size)}, its metadata "
                    f"allows {want[0].str} {list(want[1])}"
                )
            arrays[name] = _read_member(
                z, info, label=f"array {name!r}", kinds=_READ_KINDS, declared=want
            )
    return meta, arrays


def read_npz_meta(path: str | os.PathLike) -> dict[str, Any]:
    """Only the metadata record of a :func:`write_npz` file, read with :func:`read_npz`'s bounds."""
    with _zip(path, "not a valid spikezip file") as z:
        return _read_meta(z, _members(z, MAX_DATA_BYTES))


def read_array(
    path: str | os.PathLike, *, max_bytes: int = MAX_DATA_BYTES, name: str = "inputs"
) -> np.ndarray:
    """One numeric array from a ``.npy`` file or a ``.npz`` archive; no pickle, bounded size.

    An archive must hold an array called ``name`` or exactly one array. The array (bool,
    integer or float dtype) may hold at most ``max_bytes`` bytes of data; any corruption, a
    truncated or oversized file raises one :class:`FormatError` naming ``path`` and the problem.
    """
    label = os.fspath(path)
    invalid = "not a .npy/.npz array file"
    if not os.path.exists(path):
        raise FormatError(f"{label}: no such file")
    if not os.path.isfile(path):
        raise FormatError(f"{label}: not a regular file")
    try:
        with open(path, "rb") as f:
            magic = f.read(8)
            f.seek(0)
            if magic[:6] == _NPY_MAGIC:
                return _read_npy_file(f, os.fstat(f.fileno()).st_size, max_bytes)
    except _Bad as e:
        raise FormatError(f"{label}: {invalid} (the array {e})") from None
    except MemoryError:
        raise FormatError(f"{label}: {invalid} (too large to load)") from None
    except (OSError, ValueError, EOFError) as e:
        raise FormatError(f"{label}: {invalid} ({type(e).__name__}: {e})") from None
    with _zip(path, invalid) as z:
        members = _members_unbounded(z)
        if name in members:
            key = name
        elif len(members) == 1:
            key = next(iter(members))
        else:
            raise FormatError(
                f"{label}: holds arrays {sorted(members)}; name the input array {name!r}"
            )
        info = members[key]
        if info.file_size > max_bytes + MAX_HEADER_BYTES + 16:
            raise _Bad(
                f"array {key!r} declares {_plural_bytes(info.file_size)}, more than the "
                f"{_plural_bytes(max_bytes)} allowed"
            )
        return _read_member(z, info, label=f"array {key!r}", kinds="biuf", declared=None)


def _members_unbounded(z: zipfile.ZipFile) -> dict[str, zipfile.ZipInfo]:
    """Members by name with the per-member checks only (one member is read, not all)."""
    return _members(z, max_bytes=1 << 62)


def _read_npy_file(f: IO[bytes], size: int, max_bytes: int) -> np.ndarray:
    shape, fortran, dtype, header = _parse_npy_header(f)
    _check_dtype(dtype, "biuf")
    nbytes = _npy_bytes(shape, dtype)
    if nbytes > max_bytes:
        raise _Bad(
            f"is {dtype.str} {list(shape)}: {_plural_bytes(nbytes)}, more than the "
            f"{_plural_bytes(max_bytes)} allowed"
        )
    if header + nbytes != size:
        raise _Bad(
            f"is {dtype.str} {list(shape)} ({_plural_bytes(header + nbytes)} with the header) "
            f"but the file is {_plural_bytes(size)} long"
        )
    return _read_data(f, shape, fortran, dtype, nbytes)


def content_digest(meta: dict[str, Any], arrays: dict[str, np.ndarray], kind: str = "") -> str:
    """Stable SHA-256 (hex) of a file's canonical content: ``kind`` (a ViT's or CNN's; empty for
    an MLP, whose digests predate the kinds), the metadata as sorted compact JSON, then every
    array by name with its shape, as little-endian int64."""
    h = hashlib.sha256()
    h.update(kind.encode())
    h.update(json.dumps(meta, sort_keys=True, separators=(",", ":")).encode())
    for key, arr in sorted(arrays.items()):
        h.update(f"{key}:{arr.shape}".encode())
        h.update(np.ascontiguousarray(arr, dtype="<i8").tobytes())
    return h.hexdigest()
