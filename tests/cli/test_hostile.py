"""The CLI under hostile but fair input (issue 10): one line, exit 2, nothing lost, nothing left.

Every case runs ``spikezip`` in a folder whose name has a space, with paths as a user types them
(relative to that folder), and checks:

* the exit code (2 for every refusal; 130 on interrupt);
* stderr is exactly one line, names the option or field and the path as typed, and holds no
  traceback;
* the file system afterwards: the inputs are byte-identical, no temporary file is left, and no
  output was created by a refused run.

The cases cover the classes of the issue: output paths (§3), traces that would wrap or were made
from other inputs (§4), one line for every failure (§5), knob bounds (§6) and paths with spaces
(§7). Concurrency and kills (§1, §2) are in ``tests/sim/test_concurrency.py``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from spikezip.cli import main
from spikezip.ir import Layer, Network, Trace
from tests.conftest import default_sigint

ROOT = Path(__file__).resolve().parents[2]


def _net(depth: int = 2, seed: int = 3) -> Network:
    rng = np.random.default_rng(seed)
    sizes = [4, 6, 3, 5][: depth + 1]
    layers = []
    for k in range(depth):
        layers.append(
            Layer(
                weight=rng.integers(-20, 21, (sizes[k + 1], sizes[k])),
                bias=rng.integers(-5, 6, sizes[k + 1]),
                threshold=9,
                neg_bound=-4 if k else 0,
                pos_bound=15,
                name=f"fc{k + 1}",
            )
        )
    return Network(layers=tuple(layers), n_inputs=4, encoding="analog", input_bounds=(0, 16))


@pytest.fixture(scope="module")
def proto(tmp_path_factory) -> Path:
    """Pristine files, copied into each case's folder: network, inputs, golden trace."""
    d = tmp_path_factory.mktemp("proto")
    _net().save(d / "net.npz")
    _net(3, seed=5).save(d / "net3.npz")
    x = np.random.default_rng(1).integers(0, 17, (5, 4))
    np.save(d / "x.npy", x)
    np.save(d / "x_swapped.npy", x[[1, 0, 2, 3, 4]])
    cwd = os.getcwd()
    os.chdir(d)
    try:
        assert main(["trace", "net.npz", "x.npy", "-o", "golden.npz", "--state"]) == 0
        assert main(["trace", "net.npz", "x_swapped.npy", "-o", "swapped.npz", "--state"]) == 0
        assert main(["trace", "net.npz", "x.npy", "-o", "capped.npz", "--max-steps", "3"]) == 0
    finally:
        os.chdir(cwd)
    return d


@pytest.fixture
def work(proto, tmp_path, monkeypatch) -> Path:
    d = tmp_path / "hostile dir"  # every case runs in a path with a space
    d.mkdir()
    for f in proto.iterdir():
        (d / f.name).write_bytes(f.read_bytes())
    monkeypatch.chdir(d)
    return d


def _snapshot(d: Path) -> dict[str, str]:
    out = {}
    for p in sorted(d.rglob("*")):
        if p.is_file() and not p.is_symlink():
            out[str(p.relative_to(d))] = hashlib.sha256(p.read_bytes()).hexdigest()
        elif p.is_dir():
            out[str(p.relative_to(d))] = "dir"
    return out


def _temp_files(d: Path) -> list[str]:
    return [str(p) for p in d.rglob("*") if p.name.endswith(".tmp") or ".tmp" in p.name]


# -- file builders (each writes a hostile file into the case folder) -----------------------------


def _trace_arrays(path: Path) -> tuple[dict, dict[str, np.ndarray]]:
    with np.load(path) as f:
        meta = json.loads(bytes(f["__meta__"]).decode())
        arrays = {k: f[k] for k in f.files if k != "__meta__"}
    return meta, arrays


def _rewrite(src: Path, dst: Path, edit: Callable[[dict, dict], None]) -> None:
    """Copy an npz written by ir._io, letting ``edit(meta, arrays)`` change it (no checks)."""
    meta, arrays = _trace_arrays(src)
    edit(meta, arrays)
    # a crafted file keeps its own dtype/shape record consistent, so the values are what is read
    meta["__arrays__"] = {
        k: {"dtype": a.dtype.str, "shape": list(a.shape)} for k, a in arrays.items()
    }
    payload = {"__meta__": np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), **arrays}
    with open(dst, "wb") as f:
        np.savez_compressed(f, **payload)


def _set(name: str, value: np.ndarray | Callable[[np.ndarray], np.ndarray]):
    def edit(meta: dict, arrays: dict) -> None:
        arrays[name] = value(arrays[name]) if callable(value) else value

    return edit


def _spike(value, dtype) -> Callable[[np.ndarray], np.ndarray]:
    def change(a: np.ndarray) -> np.ndarray:
        a = a.astype(dtype)
        a[0, 0, 0] = value
        return a

    return change


def _corrupt_deflate(src: Path, dst: Path) -> None:
    """Flip bytes inside a compressed member, keeping the zip directory intact."""
    data = bytearray(src.read_bytes())
    with zipfile.ZipFile(src) as z:
        info = max(z.infolist(), key=lambda i: i.compress_size)
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    for i in range(start + 4, start + min(info.compress_size, 40)):
        data[i] ^= 0x5A
    dst.write_bytes(bytes(data))


def _truncate(src: Path, dst: Path, keep: float = 0.6) -> None:
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * keep)])


def _deep_meta(dst: Path) -> None:
    depth = 200_000
    text = "[" * depth + "]" * depth
    with open(dst, "wb") as f:
        np.savez(f, __meta__=np.frombuffer(text.encode(), dtype=np.uint8))


def _bomb(dst: Path, declared_small: Path) -> None:
    """A small file that inflates to 256 MB in one member the metadata does not declare so."""
    meta, arrays = _trace_arrays(declared_small)
    payload = {"__meta__": np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), **arrays}
    with zipfile.ZipFile(dst, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name, arr in payload.items():
            if name == "steps":
                continue
            with z.open(f"{name}.npy", "w") as f:
                np.lib.format.write_array(f, arr)
        header = {"descr": "<i8", "fortran_order": False, "shape": (1 << 25,)}
        with z.open("steps.npy", "w", force_zip64=True) as f:
            np.lib.format.write_array_header_1_0(f, header)
            block = bytes(1 << 20)
            for _ in range(256):
                f.write(block)


def _huge_int_network(field: str, value: int) -> Callable[[Path], None]:
    def build(d: Path) -> None:
        def edit(meta: dict, arrays: dict) -> None:
            if field == "threshold":
                meta["layers"][0]["threshold"] = value
            else:
                meta["input_bounds"] = [-value, value]

        _rewrite(d / "net.npz", d / "bad_net.npz", edit)

    return build


# -- the cases ------------------------------------------------------------------------------------


def _setup_links(d: Path) -> None:
    (d / "link.npz").symlink_to(d / "net.npz")
    os.link(d / "x.npy", d / "hard.npy")
    (d / "sub").mkdir()
    os.mkfifo(d / "fifo")
    (d / "afile").write_text("not a directory\n")


NOOP = None

# (id, setup(d) or None, argv, exit code, stderr must match, files the run may create)
# fmt: off
CASES: list[tuple[str, Callable | None, list[str], int, str, tuple[str, ...]]] = [
    # §3 output paths: refused before any work, inputs untouched
    ("out-is-network", NOOP, ["trace", "net.npz", "x.npy", "-o", "net.npz"], 2,
     r"-o net\.npz: is the input NETWORK", ()),
    ("out-is-inputs", NOOP, ["trace", "net.npz", "x.npy", "-o", "x.npy"], 2,
     r"-o x\.npy: is the input INPUTS", ()),
    ("out-is-network-respelled", _setup_links, ["trace", "net.npz", "x.npy", "-o",
     "sub/../net.npz"], 2, r"-o sub/\.\./net\.npz: is the input NETWORK", ()),
    ("out-symlink-to-network", _setup_links, ["trace", "net.npz", "x.npy", "-o", "link.npz"], 2,
     r"-o link\.npz: is the input NETWORK", ()),
    ("out-hardlink-to-inputs", _setup_links, ["trace", "net.npz", "x.npy", "-o", "hard.npy"], 2,
     r"-o hard\.npy: is the input INPUTS", ()),
    ("simulate-out-is-inputs", NOOP, ["simulate", "net.npz", "x.npy", "-o", "x.npy", "-q"], 2,
     r"-o x\.npy: is the input INPUTS", ()),
    ("simulate-out-is-network", NOOP, ["simulate", "net.npz", "x.npy", "-o", "net.npz", "-q"], 2,
     r"-o net\.npz: is the input NETWORK", ()),
    ("out-dev-null", NOOP, ["trace", "net.npz", "x.npy", "-o", "/dev/null"], 2,
     r"-o /dev/null: exists and is not a regular file", ()),
    ("out-fifo", _setup_links, ["trace", "net.npz", "x.npy", "-o", "fifo"], 2,
     r"-o fifo: exists and is not a regular file", ()),
    ("out-is-directory", _setup_links, ["trace", "net.npz", "x.npy", "-o", "sub"], 2,
     r"-o sub: is a directory", ()),
    ("out-missing-dir", NOOP, ["trace", "net.npz", "x.npy", "-o", "nodir/x.npz"], 2,
     r"-o nodir/x\.npz: directory nodir does not exist", ()),
    ("out-under-a-file", _setup_links, ["trace", "net.npz", "x.npy", "-o", "afile/x.npz"], 2,
     r"-o afile/x\.npz: directory afile is not a directory", ()),
    ("out-empty", NOOP, ["trace", "net.npz", "x.npy", "-o", ""], 2,
     r"-o '': a file name is needed", ()),
    ("simulate-out-missing-dir", NOOP,
     ["simulate", "net.npz", "x.npy", "-o", "nodir/h.npz", "-q"], 2,
     r"-o nodir/h\.npz: directory nodir does not exist", ()),
    ("generate-out-is-file", NOOP, ["generate", "net.npz", "-o", "x.npy"], 2,
     r"-o x\.npy: exists and is not a directory", ()),
    ("generate-out-is-network", NOOP, ["generate", "net.npz", "-o", "net.npz"], 2,
     r"-o net\.npz: is the input NETWORK", ()),
    ("generate-would-overwrite-network", lambda d: (d / "sub").mkdir() or (
        d / "sub" / "manifest.json").write_bytes((d / "net.npz").read_bytes()),
     ["generate", "sub/manifest.json", "-o", "sub"], 2,
     r"-o sub/manifest\.json: is the input NETWORK", ()),
    ("report-out-is-file", NOOP, ["report", "net.npz", "--inputs", "x.npy", "-o", "x.npy"], 2,
     r"-o x\.npy: is the input --inputs; name a directory", ()),
    ("sweep-out-is-file", NOOP, ["sweep", "net.npz", "--inputs", "x.npy", "-o", "golden.npz"], 2,
     r"-o golden\.npz: exists and is not a directory", ()),
    ("digits-out-is-file", NOOP, ["digits", "-o", "x.npy"], 2,
     r"-o x\.npy: exists and is not a directory", ()),
    ("digits-channels-zero", NOOP, ["digits", "--model", "cnn", "--channels", "0,32"], 2,
     r"--channels must be C1,C2 or C1,C2,C3 \(conv1, conv2 and conv4, conv3\) in 1\.\.512, "
     r"not '0,32'", ()),
    ("digits-channels-four", NOOP, ["digits", "--model", "cnn", "--channels", "8,8,8,8"], 2,
     r"--channels must be C1,C2 or C1,C2,C3 .* in 1\.\.512, not '8,8,8,8'", ()),
    ("digits-channels-big", NOOP, ["digits", "--model", "cnn", "--channels", "8,513"], 2,
     r"--channels must be .* in 1\.\.512, not '8,513'", ()),
    ("digits-channels-mlp", NOOP, ["digits", "--channels", "8,16", "-o", "d"], 2,
     r"--channels applies to the CNN only: add --model cnn", ()),
    ("build-dir-is-file", NOOP,
     ["simulate", "net.npz", "x.npy", "-o", "h.npz", "--build-dir", "x.npy", "-q"], 2,
     r"--build-dir x\.npy: is the input INPUTS; name a directory", ()),
    ("top-not-identifier", NOOP, ["generate", "net.npz", "-o", "g", "--top", "1st"], 2,
     r"--top must be a Verilog identifier", ()),
    ("top-keyword", NOOP, ["generate", "net.npz", "-o", "g", "--top", "module"], 2,
     r"--top must be a Verilog identifier", ()),
    ("top-space", NOOP, ["generate", "net.npz", "-o", "g", "--top", "my net"], 2,
     r"--top must be a Verilog identifier", ()),
    # inputs that are not files
    ("network-missing", NOOP, ["trace", "nope.npz", "x.npy", "-o", "t.npz"], 2,
     r"NETWORK nope\.npz: no such file", ()),
    ("network-is-dir", _setup_links, ["trace", "sub", "x.npy", "-o", "t.npz"], 2,
     r"NETWORK sub: is a directory", ()),
    ("network-is-fifo", _setup_links, ["info", "fifo"], 2, r"NETWORK fifo: not a regular file",
     ()),
    ("inputs-missing", NOOP, ["trace", "net.npz", "nope.npy", "-o", "t.npz"], 2,
     r"INPUTS nope\.npy: no such file", ()),
    ("report-inputs-missing", NOOP, ["report", "net.npz", "--inputs", "nope.npy"], 2,
     r"--inputs nope\.npy: no such file", ()),
    ("compare-golden-missing", NOOP, ["compare", "nope.npz", "golden.npz"], 2,
     r"GOLDEN nope\.npz: no such file", ()),
    ("compare-actual-dir", _setup_links, ["compare", "golden.npz", "sub"], 2,
     r"ACTUAL sub: is a directory", ()),
    # §4 traces: check before cast, know the inputs
    ("spike-257", lambda d: _rewrite(d / "golden.npz", d / "bad.npz",
                                     _set("layer0.spikes", _spike(257, np.int64))),
     ["compare", "golden.npz", "bad.npz"], 2, r"bad\.npz.*layer0\.spikes.*257", ()),
    ("spike-2^62", lambda d: _rewrite(d / "golden.npz", d / "bad.npz",
                                      _set("layer1.spikes", _spike(2**62, np.int64))),
     ["compare", "golden.npz", "bad.npz"], 2, rf"bad\.npz.*layer1\.spikes.*{2**62}", ()),
    ("spike-float", lambda d: _rewrite(d / "golden.npz", d / "bad.npz",
                                       _set("layer0.spikes", _spike(0.9, np.float64))),
     ["compare", "golden.npz", "bad.npz"], 2, r"bad\.npz.*layer0\.spikes", ()),
    ("spike-minus3", lambda d: _rewrite(d / "golden.npz", d / "bad.npz",
                                        _set("layer0.spikes", _spike(-3, np.int8))),
     ["compare", "bad.npz", "golden.npz"], 2, r"bad\.npz.*layer0\.spikes.*-3", ()),
    ("steps-float", lambda d: _rewrite(d / "golden.npz", d / "bad.npz",
                                       _set("steps", lambda a: a.astype(float) - 0.3)),
     ["compare", "golden.npz", "bad.npz"], 2, r"bad\.npz.*steps", ()),
    ("steps-zero", lambda d: _rewrite(d / "golden.npz", d / "bad.npz",
                                      _set("steps", lambda a: a * 0)),
     ["compare", "golden.npz", "bad.npz"], 2, r"bad\.npz.*steps", ()),
    ("busy-7", lambda d: _rewrite(d / "golden.npz", d / "bad.npz",
                                  _set("busy", lambda a: a.astype(np.int64) * 7)),
     ["compare", "golden.npz", "bad.npz"], 2, r"bad\.npz.*busy.*7", ()),
    ("capped-2", lambda d: _rewrite(d / "golden.npz", d / "bad.npz",
                                    _set("capped", lambda a: a.astype(np.int64) + 2)),
     ["compare", "golden.npz", "bad.npz"], 2, r"bad\.npz.*capped", ()),
    ("busy-wrong-shape", lambda d: _rewrite(d / "golden.npz", d / "bad.npz",
                                            _set("busy", lambda a: a[:, :, :1])),
     ["compare", "golden.npz", "bad.npz"], 2, r"bad\.npz.*busy.*shape", ()),
    ("tracer-float", lambda d: _rewrite(d / "golden.npz", d / "bad.npz",
                                        _set("layer0.tracers", lambda a: a.astype(float))),
     ["compare", "golden.npz", "bad.npz"], 2, r"bad\.npz.*layer0\.tracers", ()),
    ("missing-layer-array", lambda d: _rewrite(d / "golden.npz", d / "bad.npz",
                                               lambda m, a: a.pop("layer1.spikes")),
     ["compare", "golden.npz", "bad.npz"], 2, r"bad\.npz.*layer1\.spikes", ()),
    ("swapped-inputs", NOOP, ["compare", "golden.npz", "swapped.npz"], 2,
     r"different inputs.*sample 0", ()),
    ("zero-samples", lambda d: (Trace.load(d / "golden.npz").select(slice(0, 0)).save(
        d / "empty.npz")), ["compare", "empty.npz", "empty.npz"], 2, r"no samples", ()),
    ("other-network", lambda d: _net(seed=9).save(d / "other.npz"),
     ["compare", "golden.npz", "golden.npz", "--network", "other.npz"], 2,
     r"golden\.npz: trace is of another network", ()),
    ("network-as-trace", NOOP, ["compare", "net.npz", "golden.npz"], 2,
     r"net\.npz: expected a spikezip-trace file", ()),
    ("trace-as-network", NOOP, ["info", "golden.npz"], 2,
     r"golden\.npz: expected a spikezip-network file", ()),
    ("inputs-as-trace", NOOP, ["compare", "x.npy", "golden.npz"], 2, r"x\.npy", ()),
    # §5 one line for every failure
    ("network-deflate-damaged", lambda d: _corrupt_deflate(d / "net.npz", d / "bad.npz"),
     ["info", "bad.npz"], 2, r"bad\.npz", ()),
    ("trace-deflate-damaged", lambda d: _corrupt_deflate(d / "golden.npz", d / "bad.npz"),
     ["compare", "golden.npz", "bad.npz"], 2, r"bad\.npz", ()),
    ("inputs-deflate-damaged", lambda d: (np.savez_compressed(d / "xi.npz", inputs=np.load(
        d / "x.npy")), _corrupt_deflate(d / "xi.npz", d / "bad.npz")),
     ["trace", "net.npz", "bad.npz", "-o", "t.npz"], 2, r"INPUTS bad\.npz", ()),
    ("network-truncated", lambda d: _truncate(d / "net.npz", d / "bad.npz"),
     ["trace", "bad.npz", "x.npy", "-o", "t.npz"], 2, r"bad\.npz", ()),
    ("trace-truncated", lambda d: _truncate(d / "golden.npz", d / "bad.npz"),
     ["compare", "bad.npz", "golden.npz"], 2, r"bad\.npz", ()),
    ("inputs-npz-truncated", lambda d: (np.savez_compressed(d / "xi.npz", inputs=np.load(
        d / "x.npy")), _truncate(d / "xi.npz", d / "bad.npz")),
     ["trace", "net.npz", "bad.npz", "-o", "t.npz"], 2, r"INPUTS bad\.npz", ()),
    ("inputs-npy-truncated", lambda d: _truncate(d / "x.npy", d / "bad.npy", 0.9),
     ["trace", "net.npz", "bad.npy", "-o", "t.npz"], 2, r"INPUTS bad\.npy", ()),
    ("inputs-text-file", lambda d: (d / "bad.npy").write_text("1,2,3,4\n"),
     ["trace", "net.npz", "bad.npy", "-o", "t.npz"], 2, r"INPUTS bad\.npy", ()),
    ("inputs-empty-file", lambda d: (d / "bad.npy").write_bytes(b""),
     ["trace", "net.npz", "bad.npy", "-o", "t.npz"], 2, r"INPUTS bad\.npy", ()),
    ("inputs-pickled-object", lambda d: np.save(d / "bad.npy", np.array([{}], dtype=object)),
     ["trace", "net.npz", "bad.npy", "-o", "t.npz"], 2, r"INPUTS bad\.npy", ()),
    ("inputs-nan", lambda d: np.save(d / "bad.npy", np.full((2, 4), np.nan)),
     ["trace", "net.npz", "bad.npy", "-o", "t.npz"], 2, r"INPUTS bad\.npy: inputs must be integ",
     ()),
    ("inputs-fraction", lambda d: np.save(d / "bad.npy", np.full((2, 4), 0.5)),
     ["trace", "net.npz", "bad.npy", "-o", "t.npz"], 2, r"INPUTS bad\.npy: inputs must be integ",
     ()),
    ("inputs-strings", lambda d: np.save(d / "bad.npy", np.array([["a"] * 4])),
     ["trace", "net.npz", "bad.npy", "-o", "t.npz"], 2, r"INPUTS bad\.npy: .*<U1; only bool",
     ()),
    ("inputs-out-of-bounds", lambda d: np.save(d / "bad.npy", np.full((2, 4), 1 << 62)),
     ["trace", "net.npz", "bad.npy", "-o", "t.npz"], 2, r"INPUTS bad\.npy: inputs\[0, 0\].*"
     r"outside input_bounds", ()),
    ("inputs-wrong-shape", lambda d: np.save(d / "bad.npy", np.zeros((2, 7), dtype=int)),
     ["simulate", "net.npz", "bad.npy", "-o", "h.npz", "-q"], 2,
     r"INPUTS bad\.npy: inputs must have shape \[batch, 4\]", ()),
    ("inputs-empty-batch", lambda d: np.save(d / "bad.npy", np.zeros((0, 4), dtype=int)),
     ["trace", "net.npz", "bad.npy", "-o", "t.npz"], 2, r"INPUTS bad\.npy: inputs must have shape",
     ()),
    ("inputs-npz-ambiguous", lambda d: np.savez(d / "bad.npz", a=np.zeros(1), b=np.zeros(1)),
     ["trace", "net.npz", "bad.npz", "-o", "t.npz"], 2, r"INPUTS bad\.npz: holds arrays", ()),
    ("meta-deep", lambda d: _deep_meta(d / "bad.npz"), ["info", "bad.npz"], 2, r"bad\.npz", ()),
    ("trace-bomb", lambda d: _bomb(d / "bad.npz", d / "golden.npz"),
     ["compare", "golden.npz", "bad.npz"], 2, r"bad\.npz", ()),
    ("threshold-2e70", _huge_int_network("threshold", 1 << 70),
     ["trace", "bad_net.npz", "x.npy", "-o", "t.npz"], 2, r"bad_net\.npz.*threshold", ()),
    ("input-bounds-2e80", _huge_int_network("input_bounds", 1 << 80),
     ["info", "bad_net.npz"], 2, r"bad_net\.npz.*input_bounds", ()),
    ("max-steps-0", NOOP, ["trace", "net.npz", "x.npy", "-o", "t.npz", "--max-steps", "0"], 2,
     r"--max-steps must be an integer ≥ 1, not '0'", ()),
    ("max-steps-negative", NOOP,
     ["trace", "net.npz", "x.npy", "-o", "t.npz", "--max-steps", "-5"], 2,
     r"--max-steps must be an integer ≥ 1, not '-5'", ()),
    ("max-steps-float", NOOP,
     ["trace", "net.npz", "x.npy", "-o", "t.npz", "--max-steps", "2.5"], 2,
     r"--max-steps must be an integer", ()),
    ("sweep-jobs-negative", NOOP, ["sweep", "net.npz", "--inputs", "x.npy", "-j", "-1"], 2,
     r"--jobs must be an integer in 1\.\.256, not '-1'", ()),
    ("sweep-jobs-zero", NOOP, ["sweep", "net.npz", "--inputs", "x.npy", "-j", "0"], 2,
     r"--jobs must be an integer in 1\.\.256", ()),
    ("pnr-time-limit-zero", NOOP,
     ["report", "net.npz", "--inputs", "x.npy", "--pnr-time-limit", "0"], 2,
     r"--pnr-time-limit must be minutes in \(0, 10000\], not '0'", ()),
    ("pnr-time-limit-nan", NOOP,
     ["sweep", "net.npz", "--inputs", "x.npy", "--pnr-time-limit", "nan"], 2,
     r"--pnr-time-limit must be minutes", ()),
    ("timing-weight-zero", NOOP,
     ["report", "net.npz", "--inputs", "x.npy", "--timing-weight", "0"], 2,
     r"--timing-weight must be an integer in 1\.\.1000, not '0'", ()),
    ("timing-weight-large", NOOP,
     ["sweep", "net.npz", "--inputs", "x.npy", "--timing-weight", "1001"], 2,
     r"--timing-weight must be an integer in 1\.\.1000, not '1001'", ()),
    ("pnr-seed-zero", NOOP, ["report", "net.npz", "--inputs", "x.npy", "--pnr-seed", "0"], 2,
     r"--pnr-seed must be an integer in 1\.\.2147483647, not '0'", ()),
    ("samples-zero", NOOP, ["report", "net.npz", "--inputs", "x.npy", "--samples", "0"], 2,
     r"--samples must be an integer ≥ 1", ()),
    ("valid-zero", NOOP, ["simulate", "net.npz", "x.npy", "-o", "h.npz", "--valid", "0"], 2,
     r"--valid must be a probability in \(0, 1\], not '0'", ()),
    ("valid-nan", NOOP, ["simulate", "net.npz", "x.npy", "-o", "h.npz", "--valid", "nan"], 2,
     r"--valid must be a probability", ()),
    ("ready-above-one", NOOP, ["simulate", "net.npz", "x.npy", "-o", "h.npz", "--ready", "1.5"],
     2, r"--ready must be a probability", ()),
    ("seed-negative", NOOP, ["simulate", "net.npz", "x.npy", "-o", "h.npz", "--seed", "-1"], 2,
     r"--seed must be an integer in 0\.\.4294967295", ()),
    ("seed-huge", NOOP, ["simulate", "net.npz", "x.npy", "-o", "h.npz", "--seed", str(1 << 40)],
     2, r"--seed must be an integer in 0\.\.4294967295", ()),
    ("sim-unknown", NOOP, ["simulate", "net.npz", "x.npy", "-o", "h.npz", "--sim", "vcs"], 2,
     r"--sim invalid choice: 'vcs'", ()),
    ("threads-4096", NOOP, ["simulate", "net.npz", "x.npy", "-o", "h.npz", "--threads", "4096"],
     2, r"--threads 4096: threads must be an integer from 1 to \d+ \(the CPUs this process", ()),
    ("threads-zero", NOOP, ["simulate", "net.npz", "x.npy", "-o", "h.npz", "--threads", "0"], 2,
     r"--threads must be an integer ≥ 1, not '0'", ()),
    ("threads-icarus", NOOP,
     ["simulate", "net.npz", "x.npy", "-o", "h.npz", "--sim", "icarus", "--threads", "1"], 2,
     r"--threads applies to --sim verilator only, not to icarus", ()),
    ("unknown-command", NOOP, ["synthesise", "net.npz"], 2, r"invalid choice: 'synthesise'", ()),
    ("missing-output", NOOP, ["trace", "net.npz", "x.npy"], 2,
     r"the following arguments are required: -o/--output", ()),
    # §6 knob bounds: before anything is built
    ("lanes-999", NOOP, ["generate", "net.npz", "-o", "g", "--lanes", "999"], 2,
     r"--lanes 999: lanes must lie in 1\.\.6", ()),
    ("lanes-1e20", NOOP,
     ["generate", "net.npz", "-o", "g", "--lanes", "100000000000000000000"], 2,
     r"--lanes must be P or P0,P1,… with each value in 1\.\.65536", ()),
    ("fifo-depth-zero", NOOP, ["generate", "net.npz", "-o", "g", "--fifo-depth", "0"], 2,
     r"--fifo-depth must be an integer in 1\.\.1048576, not '0'", ()),
    ("fifo-depth-huge", NOOP,
     ["simulate", "net.npz", "x.npy", "-o", "h.npz", "--fifo-depth", str(1 << 21)], 2,
     r"--fifo-depth must be an integer in 1\.\.1048576", ()),
    ("fifo-depth-text", NOOP, ["report", "net.npz", "-o", "r", "--fifo-depth", "deep"], 2,
     r"--fifo-depth must be an integer in 1\.\.1048576, not 'deep'", ()),
    ("fifo-depth-sweep-negative", NOOP, ["sweep", "net.npz", "-o", "s", "--fifo-depth", "-4"], 2,
     r"--fifo-depth must be an integer in 1\.\.1048576, not '-4'", ()),
    ("lanes-per-layer-too-many", NOOP, ["generate", "net.npz", "-o", "g", "--lanes", "7,3"], 2,
     r"--lanes 7,3: lanes\[0\] of layer fc1 must lie in 1\.\.6", ()),
    ("lanes-second-layer", NOOP, ["generate", "net.npz", "-o", "g", "--lanes", "6,4"], 2,
     r"--lanes 6,4: lanes\[1\] of layer fc2 must lie in 1\.\.3", ()),
    ("lanes-count", NOOP, ["generate", "net.npz", "-o", "g", "--lanes", "2,2,2"], 2,
     r"--lanes 2,2,2: lanes must hold 2 values", ()),
    ("lanes-zero", NOOP, ["generate", "net.npz", "-o", "g", "--lanes", "0"], 2,
     r"--lanes must be P or P0,P1", ()),
    ("lanes-negative", NOOP, ["generate", "net.npz", "-o", "g", "--lanes", "-4"], 2,
     r"--lanes", ()),
    ("lanes-trailing-comma", NOOP, ["generate", "net.npz", "-o", "g", "--lanes", "4,"], 2,
     r"--lanes must be P or P0,P1", ()),
    ("lanes-word", NOOP, ["generate", "net.npz", "-o", "g", "--lanes", "eight"], 2,
     r"--lanes must be P or P0,P1", ()),
    ("simulate-lanes-999", NOOP,
     ["simulate", "net.npz", "x.npy", "-o", "h.npz", "--lanes", "999", "-q"], 2,
     r"--lanes 999: lanes must lie in 1\.\.6", ()),
    ("report-lanes-999", NOOP, ["report", "net.npz", "--inputs", "x.npy", "--lanes", "999"], 2,
     r"--lanes 999: lanes must lie in 1\.\.6", ()),
    ("pipeline-4", NOOP, ["generate", "net.npz", "-o", "g", "--pipeline", "4"], 2,
     r"--pipeline must be one of 0, 1, 2, 3, not '4'", ()),
    ("pipeline-word", NOOP, ["simulate", "net.npz", "x.npy", "-o", "h.npz", "--pipeline", "deep"],
     2, r"--pipeline must be one of 0, 1, 2, 3, not 'deep'", ()),
    ("sweep-pipeline-list", NOOP,
     ["sweep", "net.npz", "--inputs", "x.npy", "--pipeline", "1,9"], 2,
     r"--pipeline must be one of 0, 1, 2, 3, not '9'", ()),
    ("sweep-storage", NOOP, ["sweep", "net.npz", "--inputs", "x.npy", "--storage", "flash"], 2,
     r"--storage must be one of auto, registers, memory, not 'flash'", ()),
    ("emit-width-9", NOOP, ["report", "net.npz", "--emit-width", "9"], 2,
     r"--emit-width must be an integer in 1\.\.8, not '9'", ()),
    ("emit-width-0", NOOP, ["generate", "net.npz", "-o", "g", "--emit-width", "0"], 2,
     r"--emit-width must be an integer in 1\.\.8, not '0'", ()),
    ("sweep-emit-width-list", NOOP,
     ["sweep", "net.npz", "--inputs", "x.npy", "--emit-width", "1,wide"], 2,
     r"--emit-width must be an integer in 1\.\.8, not 'wide'", ()),
]
# fmt: on


@pytest.mark.parametrize(
    ("setup", "argv", "code", "pattern", "creates"),
    [pytest.param(*c[1:], id=c[0]) for c in CASES],
)
def test_hostile(work, capsys, setup, argv, code, pattern, creates):
    if setup is not None:
        setup(work)
    before = _snapshot(work)
    started = time.perf_counter()
    assert main(list(argv)) == code
    elapsed = time.perf_counter() - started
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err and re.search(pattern, lines[0]), lines[0]
    after = _snapshot(work)
    assert {k: v for k, v in after.items() if k not in creates} == before, "files changed"
    assert not _temp_files(work)
    assert elapsed < 20, f"a refusal took {elapsed:.1f} s: not checked before the work"


def test_case_count():
    assert len(CASES) >= 80


# -- cases that succeed, with the file system checked --------------------------------------------


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_outputs_respect_the_umask(work, capsys, umask):
    old = os.umask(umask)
    try:
        assert main(["trace", "net.npz", "x.npy", "-o", "t.npz"]) == 0
        assert main(["generate", "net.npz", "-o", "g", "--lanes", "2"]) == 0
    finally:
        os.umask(old)
    for p in [work / "t.npz", *(work / "g").iterdir()]:
        assert stat.S_IMODE(p.stat().st_mode) == 0o666 & ~umask, p


def test_regenerate_removes_stale_files(work, capsys):
    assert main(["generate", "net3.npz", "-o", "g", "--lanes", "2"]) == 0
    assert (work / "g" / "layer2.weights.hex").is_file()
    (work / "g" / "notes.txt").write_text("mine\n")  # not the generator's: kept
    assert main(["generate", "net.npz", "-o", "g", "--lanes", "2"]) == 0
    names = sorted(p.name for p in (work / "g").iterdir())
    assert names == [
        "layer0.weights.hex",
        "layer1.weights.hex",
        "manifest.json",
        "notes.txt",
        "spikezip_net.v",
    ]


def test_output_replaced_atomically_on_interrupt(work, capsys, monkeypatch):
    """Ctrl-C while the trace is being written: exit 130, old file intact, no temp file."""
    assert main(["trace", "net.npz", "x.npy", "-o", "t.npz"]) == 0
    old = (work / "t.npz").read_bytes()

    def interrupted(*args, **kwargs):
        args[0].write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez_compressed", interrupted)
    capsys.readouterr()
    assert main(["trace", "net.npz", "x.npy", "-o", "t.npz"]) == 130
    assert capsys.readouterr().err == "spikezip: interrupted\n"
    assert (work / "t.npz").read_bytes() == old
    assert not _temp_files(work)


def test_sweep_lanes_above_the_widest_layer_are_clamped_with_a_warning(work, capsys, monkeypatch):
    seen = []

    def fake_sweep(path, x, points, **kw):
        seen.extend(points)
        raise KeyboardInterrupt  # stop before any synthesis

    monkeypatch.setattr("spikezip.report.sweep", fake_sweep)
    assert main(["sweep", "net.npz", "--inputs", "x.npy", "--lanes", "2,8,64", "-q"]) == 130
    err = capsys.readouterr().err
    assert "--lanes 2,8,64: values above the widest layer's 6 neurons are run as 6" in err
    assert [p.lanes for p in seen] == [2, 6]


def test_capped_trace_context_shows_the_recorded_busy_flags(work, capsys):
    assert main(["compare", "golden.npz", "capped.npz"]) == 1
    out = capsys.readouterr().out
    capped = Trace.load(work / "capped.npz")
    row = next(line for line in out.splitlines() if line.lstrip().startswith("actual"))
    shown = row.split()[1 : 1 + capped.n_steps]
    assert shown == [str(int(v)) for v in capped.busy[0, : len(shown), -1]], out


# -- real processes: debug switch, interrupts ---------------------------------------------------


def _cli(*argv: str, cwd: Path, env: dict | None = None, **kw) -> subprocess.Popen:
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.Popen(
        [sys.executable, "-m", "spikezip.cli", *argv],
        cwd=cwd,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


@pytest.mark.parametrize(("value", "traceback"), [("0", False), ("", False), ("1", True)])
def test_debug_switch_only_when_true(work, value, traceback):
    p = _cli("info", "missing.npz", cwd=work, env={"SPIKEZIP_DEBUG": value})
    _, err = p.communicate(timeout=60)
    assert p.returncode == (1 if traceback else 2)
    assert ("Traceback" in err) is traceback
    if not traceback:
        assert err == "spikezip: error: NETWORK missing.npz: no such file\n"


def test_sigint_in_trace_exits_130_with_one_line_and_no_temp_files(work, tmp_path):
    """SIGINT while the reference runs: one line, exit 130, no output and no temporary file.

    The reference is wrapped so that it says when it has started (a file outside the case
    folder) and keeps computing until interrupted: the signal lands inside the real work on
    any machine, however fast (a fixed sleep raced the whole run on a fast CI machine).
    """
    ready = tmp_path / "reference started"
    wrapper = (
        "import pathlib, sys\n"
        "import spikezip.sw.reference as ref\n"
        "real = ref.simulate\n"
        "def simulate(*a, **k):\n"
        f"    pathlib.Path({str(ready)!r}).touch()\n"
        "    while True:\n"
        "        real(*a, **k)\n"
        "ref.simulate = simulate\n"
        "from spikezip.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    x = np.random.default_rng(0).integers(0, 17, (20_000, 4))
    np.save(work / "big.npy", x)
    before = _snapshot(work)
    p = subprocess.Popen(
        [sys.executable, "-c", wrapper, "trace", "net.npz", "big.npy", "-o", "t.npz"],
        cwd=work,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=default_sigint,  # also when the suite runs as a background job
    )
    try:
        deadline = time.monotonic() + 120
        while not ready.exists() and p.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ready.exists(), "the reference never started"
        time.sleep(0.2)  # inside the torch loop, not at its first line
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert p.returncode == 130, err
    assert err == "spikezip: interrupted\n"
    assert _snapshot(work) == before and not _temp_files(work)
