"""Checks on the CLI's input and output paths, made before any work starts.

Every message names the option and the path as the user typed it (``-o nodir/x.npz: …``). The
rules, for a hostile but fair user:

* an input must be an existing regular file (not a directory, device or FIFO);
* an output file must not resolve to any input (``trace net.npz in.npy -o net.npz`` would turn
  the network into a trace), must not be an existing non-regular file (``-o /dev/null`` as root
  would replace the device), and its directory must exist;
* an output directory must not be an existing file, and none of the files the command writes
  into it may be one of the inputs.

Outputs themselves are written atomically (:func:`ir._io.atomic_write`), so nothing half-written
is left behind by an error or an interrupt.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Sequence
from pathlib import Path

__all__ = ["CliError", "input_file", "output_dir", "output_file"]


class CliError(Exception):
    """A user-facing error: printed as one line, exit code 2."""


def _same(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def input_file(path: str | os.PathLike, what: str) -> Path:
    """``path`` as an existing, readable regular file; ``what`` names it in the message."""
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise CliError(f"{what} {path}: no such file") from None
    except OSError as e:
        raise CliError(f"{what} {path}: {e.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        raise CliError(f"{what} {path}: is a directory, not a file")
    if not stat.S_ISREG(st.st_mode):
        raise CliError(f"{what} {path}: not a regular file")
    if not os.access(p, os.R_OK):
        raise CliError(f"{what} {path}: not readable")
    return p


def _not_an_input(path: Path, shown: str, option: str, inputs: Iterable[tuple[str, Path]]) -> None:
    for what, source in inputs:
        if path.exists() and _same(path, source):
            raise CliError(
                f"{option} {shown}: is the input {what} ({source}); write the output elsewhere"
            )
        if not path.exists() and os.path.realpath(path) == os.path.realpath(source):
            raise CliError(f"{option} {shown}: is the input {what}; write the output elsewhere")


def output_file(
    path: str | os.PathLike, option: str, inputs: Sequence[tuple[str, Path]] = ()
) -> Path:
    """Check an output file path before any work: see the module docstring."""
    shown = str(path)
    p = Path(path)
    if shown == "" or shown.endswith(os.sep):
        raise CliError(f"{option} {shown!r}: a file name is needed")
    _not_an_input(p, shown, option, inputs)
    if p.is_symlink() or p.exists():
        try:
            st = p.stat()
        except OSError as e:
            raise CliError(f"{option} {shown}: {e.strerror}") from None
        if stat.S_ISDIR(st.st_mode):
            raise CliError(f"{option} {shown}: is a directory; name a file")
        if not stat.S_ISREG(st.st_mode):
            raise CliError(
                f"{option} {shown}: exists and is not a regular file (a device, FIFO or "
                "socket); refusing to replace it"
            )
    parent = p.parent
    if not parent.is_dir():
        what = "is not a directory" if parent.exists() else "does not exist"
        raise CliError(f"{option} {shown}: directory {parent} {what}")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise CliError(f"{option} {shown}: directory {parent} is not writable")
    return p


def output_dir(
    path: str | os.PathLike,
    option: str,
    writes: Iterable[str],
    inputs: Sequence[tuple[str, Path]] = (),
) -> Path:
    """Check an output directory (created later) and the files ``writes`` that go into it."""
    shown = str(path)
    p = Path(path)
    if shown == "":
        raise CliError(f"{option} '': a directory name is needed")
    for what, source in inputs:
        if p.exists() and _same(p, source):
            raise CliError(f"{option} {shown}: is the input {what}; name a directory")
    if p.exists() and not p.is_dir():
        raise CliError(f"{option} {shown}: exists and is not a directory")
    # the closest existing ancestor must be a writable directory
    probe = p
    while not probe.exists():
        if probe.is_symlink():
            raise CliError(f"{option} {shown}: {probe} is a dangling link")
        probe = probe.parent
    if not probe.is_dir():
        raise CliError(f"{option} {shown}: {probe} is not a directory")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise CliError(f"{option} {shown}: {probe} is not writable")
    if p.is_dir():
        for name in writes:
            output_file(p / name, option, inputs)
    return p
