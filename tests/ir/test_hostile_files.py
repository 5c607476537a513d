"""Hostile and damaged files, traces that must not be compared: one error naming the problem.

Every corrupt file is built by hand (flipped compressed bytes, truncation, a zip bomb, deep JSON,
values that would wrap when cast); each case asserts the exception type and that the message
names the path and the field. No case may raise anything but :class:`FormatError`,
:class:`~ir.compare.TraceMismatchError` or (for in-memory objects) ``ValueError``/``TypeError``.
"""

from __future__ import annotations

import io
import json
import struct
import warnings
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

from spikezip.ir import FormatError, Layer, Network, Trace
from spikezip.ir._io import MAX_META_DEPTH, read_array, read_npz, write_npz
from spikezip.ir.compare import TraceMismatchError, first_divergence
from spikezip.ir.files import load_network, network_kind
from spikezip.ir.network import VALUE_MAX
from spikezip.ir.trace import DIGEST_BYTES, sample_digests
from spikezip.ir.transformer import VisionTransformer

from .test_transformer import vit


# -- fixtures and file builders ----------------------------------------------------------------
def small_net(**kw) -> Network:
    args = dict(
        layers=(
            Layer(weight=[[1, 2], [-1, 1]], bias=[0, 1], threshold=4, neg_bound=-8, pos_bound=7),
            Layer(weight=[[1, -1]], bias=[0], threshold=2, neg_bound=-8, pos_bound=7),
        ),
        n_inputs=2,
        encoding="analog",
        input_bounds=(-20, 20),
    )
    args.update(kw)
    return Network(**args)


def make_trace(batch=2, n_steps=4, widths=(3, 2), **kw) -> Trace:
    rng = np.random.default_rng(1)
    args = dict(
        network_digest="ab" * 32,
        spikes=tuple(rng.integers(-1, 2, (batch, n_steps, n)).astype(np.int8) for n in widths),
        busy=np.ones((batch, n_steps, len(widths)), dtype=bool),
        steps=np.full(batch, n_steps),
        capped=np.zeros(batch, dtype=bool),
        membranes=tuple(rng.integers(-50, 50, (batch, n_steps, n)) for n in widths),
    )
    args.update(kw)
    return Trace(**args)


def npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def raw_zip(members: list[tuple[str, bytes, int, int, int]]) -> bytes:
    """A zip archive from ``(name, stored data, declared size, crc, method)``, sizes as given."""
    out, central = bytearray(), bytearray()
    for name, data, size, crc, method in members:
        offset = len(out)
        nm = name.encode()
        out += struct.pack(
            "<4s5H3L2H", b"PK\x03\x04", 20, 0, method, 0, 0x21, crc, len(data), size, len(nm), 0
        )
        out += nm + data
        central += struct.pack(
            "<4s6H3L5H2L",
            b"PK\x01\x02",
            20,
            20,
            0,
            method,
            0,
            0x21,
            crc,
            len(data),
            size,
            len(nm),
            0,
            0,
            0,
            0,
            0,
            offset,
        )
        central += nm
    n = len(members)
    eocd = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, n, n, len(central), len(out), 0)
    return bytes(out + central + eocd)


def deflated(data: bytes) -> bytes:
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush()


def member(name: str, payload: bytes) -> tuple[str, bytes, int, int, int]:
    return (name, deflated(payload), len(payload), zlib.crc32(payload), zipfile.ZIP_DEFLATED)


def meta_member(meta: object) -> tuple[str, bytes, int, int, int]:
    text = meta if isinstance(meta, bytes) else json.dumps(meta).encode()
    return member("__meta__.npy", npy_bytes(np.frombuffer(text, dtype=np.uint8)))


def zeros_bomb(name: str, header: bytes, size: int) -> tuple[str, bytes, int, int, int]:
    """A member that really inflates to ``size`` bytes (``header`` then zeros) from ~1/1000."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    body = bytearray(c.compress(header) + c.flush(zlib.Z_FULL_FLUSH))
    mib = 1 << 20
    remaining = size - len(header)
    chunk = c.compress(bytes(mib)) + c.flush(zlib.Z_FULL_FLUSH)  # byte-aligned, history-free
    body += chunk * (remaining // mib)
    body += c.compress(bytes(remaining % mib)) + c.flush()
    return (name, bytes(body), size, 0, zipfile.ZIP_DEFLATED)


def npy_header(shape: tuple[int, ...], dtype: str = "<i8") -> bytes:
    """The bytes np.save writes before the data of an array of ``shape``."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": dtype, "fortran_order": False, "shape": shape}
    )
    return buf.getvalue()


def trace_file(tmp_path: Path, **kw) -> Path:
    path = tmp_path / "g.npz"
    make_trace(**kw).save(path)
    return path


def rewrite(src: Path, dst: Path, *, recorded: bool = True, meta_change=None, **arrays) -> Path:
    """``src`` with some arrays replaced (or removed with None); the metadata's array record is
    rewritten to match (``recorded``) or left out, as in files from before it existed."""
    meta, old = read_npz(src, kind=json.loads(_meta_text(src))["kind"])
    for name, value in arrays.items():
        name = name.replace("__", ".")
        if value is None:
            old.pop(name)
        else:
            old[name] = np.asarray(value)
    if recorded:
        record = {k: {"dtype": v.dtype.str, "shape": list(v.shape)} for k, v in old.items()}
        meta = {**meta, "__arrays__": record}
    if meta_change:
        meta_change(meta)
    text = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    np.savez_compressed(dst, __meta__=text, **old)
    return dst


def _meta_text(path: Path) -> str:
    with zipfile.ZipFile(path) as z, z.open("__meta__.npy") as f:
        return np.lib.format.read_array(f).tobytes().decode()


def data_offset(raw: bytes, info: zipfile.ZipInfo) -> int:
    nlen, elen = struct.unpack("<2H", raw[info.header_offset + 26 : info.header_offset + 30])
    return info.header_offset + 30 + nlen + elen


LOADERS = {
    "trace": Trace.load,
    "network": Network.load,
    "load_network": load_network,
    "transformer": VisionTransformer.load,
}


def good_file(kind: str, tmp_path: Path) -> Path:
    path = tmp_path / f"good-{kind}.npz"
    if kind == "trace":
        make_trace().save(path)
    elif kind in ("network", "load_network"):
        small_net().save(path)
    else:
        vit().save(path)
    return path


def assert_names(err: pytest.ExceptionInfo, *parts: str) -> None:
    text = str(err.value)
    assert "\n" not in text and "Traceback" not in text
    for part in parts:
        assert part in text, f"{part!r} not in {text!r}"


# -- 1. damaged compressed data, truncated archives ---------------------------------------------
@pytest.mark.parametrize("kind", sorted(LOADERS))
@pytest.mark.parametrize("which", ["__meta__.npy", "last"])
def test_flipped_bytes_in_compressed_stream(tmp_path, kind, which):
    good = good_file(kind, tmp_path)
    raw = bytearray(good.read_bytes())
    with zipfile.ZipFile(good) as z:
        infos = z.infolist()
    info = next(i for i in infos if i.filename == which) if which != "last" else infos[-1]
    start = data_offset(bytes(raw), info)
    for k in range(start + 2, start + max(info.compress_size - 2, 3), 7):
        raw[k] ^= 0x5A
    bad = tmp_path / "damaged.npz"
    bad.write_bytes(bytes(raw))
    with pytest.raises(FormatError) as err:
        LOADERS[kind](bad)
    assert_names(err, str(bad))
    assert any(w in str(err.value) for w in ("damaged", "truncated", "invalid", "corrupt"))


@pytest.mark.parametrize("kind", sorted(LOADERS))
@pytest.mark.parametrize("keep", [0, 3, 30, 0.5, -40, -1])
def test_truncated_archive(tmp_path, kind, keep):
    good = good_file(kind, tmp_path)
    raw = good.read_bytes()
    cut = int(len(raw) * keep) if isinstance(keep, float) else keep
    bad = tmp_path / "cut.npz"
    bad.write_bytes(raw[:cut])
    with pytest.raises(FormatError) as err:
        LOADERS[kind](bad)
    assert_names(err, str(bad), "not a valid")


def test_missing_file_and_directory_are_named(tmp_path):
    with pytest.raises(FormatError, match="no such file") as err:
        Trace.load(tmp_path / "nope.npz")
    assert_names(err, str(tmp_path / "nope.npz"))
    with pytest.raises(FormatError, match="not a regular file"):
        Network.load(tmp_path)


def test_the_path_is_named_as_given(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("sub").mkdir()
    Path("sub/x.npz").write_bytes(b"PK\x03\x04 garbage")
    with pytest.raises(FormatError) as err:
        Trace.load("./sub//x.npz")
    assert str(err.value).startswith("./sub//x.npz: ")


# -- 2. zip bombs and sizes checked before anything is decompressed ------------------------------
def test_zip_bomb_without_array_record_is_refused_before_inflating(tmp_path):
    # a 3 MB file that inflates to 3.2 GB (the case); no array record (an old file)
    size = 3200 << 20
    meta = {"kind": "spikezip-trace", "version": 1, "depth": 1}
    bomb = zeros_bomb("layer0.spikes.npy", npy_header((size - 128,), "|i1"), size)
    path = tmp_path / "bomb.npz"
    path.write_bytes(raw_zip([meta_member(meta), bomb]))
    assert path.stat().st_size < 5 << 20
    with pytest.raises(FormatError) as err:
        Trace.load(path)
    assert_names(err, str(path), "layer0.spikes", "more than")


def test_zip_bomb_with_a_consistent_record_is_refused_by_the_total_cap(tmp_path):
    size = 3200 << 20
    shape = (size - 128,)
    meta = {
        "kind": "spikezip-network",
        "version": 1,
        "__arrays__": {"layer0.weight": {"dtype": "|i1", "shape": list(shape)}},
    }
    path = tmp_path / "bomb.npz"
    path.write_bytes(
        raw_zip(
            [meta_member(meta), zeros_bomb("layer0.weight.npy", npy_header(shape, "|i1"), size)]
        )
    )
    with pytest.raises(FormatError) as err:
        load_network(path)
    assert_names(err, str(path), "layer0.weight", "more than")


def test_member_larger_than_its_record_is_refused_before_reading(tmp_path):
    good = good_file("network", tmp_path)
    meta = json.loads(_meta_text(good))
    big = np.zeros(1 << 20, dtype=np.int64)  # 8 MiB of zeros, the record says 2 values
    members = [meta_member(meta)]
    with np.load(good) as z:
        for name in z.files:
            if name != "__meta__":
                arr = big if name == "layer0.bias" else z[name]
                members.append(member(f"{name}.npy", npy_bytes(arr)))
    path = tmp_path / "big.npz"
    path.write_bytes(raw_zip(members))
    with pytest.raises(FormatError) as err:
        Network.load(path)
    assert_names(err, str(path), "layer0.bias", "its metadata allows <i8 [2]")


def test_legacy_file_total_cap(tmp_path):
    meta = {"kind": "spikezip-trace", "version": 1}
    path = tmp_path / "legacy.npz"
    path.write_bytes(
        raw_zip([meta_member(meta), member("busy.npy", npy_bytes(np.zeros(1 << 20, bool)))])
    )
    with pytest.raises(FormatError) as err:
        read_npz(path, kind="spikezip-trace", max_bytes=1 << 19)
    assert_names(err, str(path), "busy", "more than")


def test_declared_size_beyond_what_deflate_can_produce(tmp_path):
    meta = {"kind": "spikezip-trace", "version": 1}
    payload = npy_bytes(np.zeros(8, dtype=np.int8))
    name, data, _, crc, method = member("busy.npy", payload)
    path = tmp_path / "lie.npz"
    path.write_bytes(raw_zip([meta_member(meta), (name, data, 1 << 30, crc, method)]))
    with pytest.raises(FormatError) as err:
        Trace.load(path)
    assert_names(err, str(path), "busy", "zip bomb or corrupt")


@pytest.mark.parametrize(
    ("shape", "record", "message"),
    [
        ((10**12,), [10**12], "its header declares"),  # the header lies about the member's size
        ((3,), [3], "its header declares"),
        ((2, 2), [2], r"capped must have shape \(2,\) and dtype bool as the metadata records"),
    ],
)
def test_npy_header_must_match_the_member_and_the_record(tmp_path, shape, record, message):
    # the member holds 4 bool values; its .npy header (and the record) claim another shape
    good = good_file("trace", tmp_path)
    meta = json.loads(_meta_text(good))
    meta["__arrays__"]["capped"] = {"dtype": "|b1", "shape": record}
    payload = npy_header(shape, "|b1") + bytes(4)
    members = [meta_member(meta), member("capped.npy", payload)]
    with np.load(good) as z:
        members += [
            member(f"{n}.npy", npy_bytes(z[n])) for n in z.files if n not in ("__meta__", "capped")
        ]
    path = tmp_path / "hdr.npz"
    path.write_bytes(raw_zip(members))
    with pytest.raises(FormatError, match=message) as err:
        Trace.load(path)
    assert_names(err, str(path), "capped")


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda m: [m, member("notes.txt", b"hello")], "not a .npy array"),
        (lambda m: [m, member("busy.npy", b"x"), member("busy.npy", b"x")], "twice"),
        (
            lambda m: [m, ("busy.npy", b"x", 1, 0, zipfile.ZIP_BZIP2)],
            "compression method 12",
        ),
        (lambda m: [m, ("busy.npy", b"xy", 1, 0, zipfile.ZIP_STORED)], "inconsistent sizes"),
        (lambda m: [m, member("busy.npy", b"\x93NUMPY\x09\x00")], "format version 9.0"),
        (lambda m: [m, member("busy.npy", b"\x93NUMPY\x01\x00\xff\xff")], "header of 65535"),
        (lambda m: [m, member("busy.npy", b"not numpy")], "bad magic"),
        (
            lambda m: [m, member("busy.npy", npy_header((2,), "|O") + b"\x80\x04junk")],
            "array of object",
        ),
        (
            lambda m: [m, member("busy.npy", npy_bytes(np.array(["a", "b"])))],
            "<U1; only bool, integer or float arrays",
        ),
        (
            lambda m: [m, member("busy.npy", npy_bytes(np.zeros(3, complex)))],
            "complex128; only bool, integer or float arrays",
        ),
        (lambda m: [m, member("busy.npy", npy_bytes(np.zeros(3, bool)) + b"x")], "header"),
        (lambda m: [member("busy.npy", npy_bytes(np.zeros(3, bool)))], "no metadata record"),
    ],
)
def test_malformed_members(tmp_path, build, message):
    path = tmp_path / "m.npz"
    path.write_bytes(raw_zip(build(meta_member({"kind": "spikezip-trace", "version": 1}))))
    with pytest.raises(FormatError, match=message) as err:
        Trace.load(path)
    assert_names(err, str(path))


def test_encrypted_member(tmp_path):
    raw = bytearray(raw_zip([meta_member({"kind": "spikezip-trace", "version": 1})]))
    cd = raw.index(b"PK\x01\x02")
    raw[cd + 8] |= 1  # general purpose flag, bit 0: encrypted
    path = tmp_path / "enc.npz"
    path.write_bytes(bytes(raw))
    with pytest.raises(FormatError, match="encrypted") as err:
        Trace.load(path)
    assert_names(err, str(path))


def test_crc_mismatch(tmp_path):
    payload = npy_bytes(np.zeros(3, bool))
    name, data, size, crc, method = member("busy.npy", payload)
    path = tmp_path / "crc.npz"
    path.write_bytes(
        raw_zip(
            [
                meta_member({"kind": "spikezip-trace", "version": 1}),
                (name, data, size, crc ^ 1, method),
            ]
        )
    )
    with pytest.raises(FormatError, match="CRC") as err:
        Trace.load(path)
    assert_names(err, str(path), "busy")


# -- 3. the metadata record ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param(b"[" * 200_000 + b"]" * 200_000, "nested deeper", id="list-200000-deep"),
        pytest.param(
            b'{"a":' * 200_000 + b"1" + b"}" * 200_000, "nested deeper", id="object-200000-deep"
        ),
        pytest.param(
            b'{"kind": "spikezip-trace", "x": '
            + b"[" * (MAX_META_DEPTH + 5)
            + b"0"
            + b"]" * (MAX_META_DEPTH + 5)
            + b"}",
            "nested deeper",
            id="under-the-recursion-limit",
        ),
        pytest.param(b"\xff\xfe not utf-8", "corrupt metadata", id="not-utf8"),
        pytest.param(b"{not json", "corrupt metadata", id="not-json"),
        pytest.param(b'{"kind": "spikezip-trace", "x": NaN}', "corrupt metadata", id="nan"),
        pytest.param(b"[1, 2]", "not an object", id="a-list"),
        pytest.param(
            b'{"kind": "spikezip-trace", "n": 1' + b"0" * 5000 + b"}",
            "corrupt metadata",
            id="5000-digit-integer",
        ),
    ],
)
def test_hostile_metadata(tmp_path, text, message):
    path = tmp_path / "meta.npz"
    path.write_bytes(raw_zip([meta_member(text)]))
    for load in (Trace.load, Network.load, load_network):
        with pytest.raises(FormatError, match=message) as err:
            load(path)
        assert_names(err, str(path))
    assert network_kind(path) is None


def test_metadata_record_size_is_capped(tmp_path):
    text = json.dumps({"kind": "spikezip-trace", "pad": "x" * (5 << 20)}).encode()
    path = tmp_path / "huge-meta.npz"
    path.write_bytes(raw_zip([meta_member(text)]))
    with pytest.raises(FormatError, match="metadata record of") as err:
        Trace.load(path)
    assert_names(err, str(path))


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ([], "is not an object"),
        ({"busy": {"dtype": "<c16", "shape": [2]}}, "not a bool, integer or float dtype"),
        ({"busy": {"dtype": "|O", "shape": [2]}}, "not a bool, integer or float dtype"),
        ({"busy": {"dtype": "|b1", "shape": [-1]}}, "not a list of sizes"),
        ({"busy": {"dtype": "|b1", "shape": [2.5]}}, "not a list of sizes"),
        ({"busy": {"dtype": "|b1"}}, "must be"),
    ],
)
def test_malformed_array_record(tmp_path, record, message):
    good = good_file("trace", tmp_path)

    def change(meta):
        meta["__arrays__"] = record

    path = rewrite(good, tmp_path / "rec.npz", recorded=False, meta_change=change)
    with pytest.raises(FormatError, match=message) as err:
        Trace.load(path)
    assert_names(err, str(path))


def test_record_and_members_must_agree(tmp_path):
    good = good_file("trace", tmp_path)

    def drop(meta):
        meta["__arrays__"].pop("busy")

    path = rewrite(good, tmp_path / "a.npz", meta_change=drop)
    with pytest.raises(FormatError, match="holds the array 'busy' its metadata does not declare"):
        Trace.load(path)

    def add(meta):
        meta["__arrays__"]["ghost"] = {"dtype": "|b1", "shape": [1]}

    path = rewrite(good, tmp_path / "b.npz", meta_change=add)
    with pytest.raises(FormatError, match="lacks the array 'ghost'"):
        Trace.load(path)


# -- 4. trace values checked before they are cast ------------------------------------------------
SPIKE_CASES = [
    (np.int64, 257, "layer0.spikes holds 257 at [0, 3, 2]; spikes must be 0 or ±2^k"),
    # a power of two beyond the largest graded spike 2^61 (graded ST-BIF, docs/graded.md)
    (np.int64, 2**62, f"layer0.spikes holds {2**62} at [0, 3, 2]; spikes must be 0 or ±2^k"),
    (np.int16, -3, "layer0.spikes holds -3 at [0, 3, 2]"),
    (np.uint64, 2**64 - 1, "layer0.spikes holds 18446744073709551615 at [0, 3, 2]"),
]


@pytest.mark.parametrize(("dtype", "value", "message"), SPIKE_CASES)
@pytest.mark.parametrize("recorded", [True, False])
def test_spike_values_are_checked_before_the_cast(tmp_path, dtype, value, message, recorded):
    good = trace_file(tmp_path)
    spikes = Trace.load(good).spikes[0]
    spikes = (np.abs(spikes) if np.dtype(dtype).kind == "u" else spikes).astype(dtype)
    spikes[0, 3, 2] = value
    path = rewrite(good, tmp_path / "bad.npz", recorded=recorded, layer0__spikes=spikes)
    with pytest.raises(FormatError) as err:
        Trace.load(path)
    assert_names(err, f"{path}: invalid trace: {message}")


@pytest.mark.parametrize(
    ("change", "parts"),
    [
        (dict(steps=np.array([4.7, 4])), ["steps must hold integers, not float64 (4.7 at [0])"]),
        (
            dict(layer0__spikes=np.full((2, 4, 3), 0.9)),
            ["layer0.spikes must hold integers, not float64 (0.9 at [0, 0, 0])"],
        ),
        (dict(busy=np.full((2, 4, 2), 7)), ["busy holds 7 at [0, 0, 0]; busy must be 0 or 1"]),
        (dict(capped=np.array([0, 2])), ["capped holds 2 at [1]; capped must be 0 or 1"]),
        (dict(steps=np.array([0, 4])), ["steps holds 0 at [0]; steps must lie in [1, 4]"]),
        (dict(steps=np.array([5, 4])), ["steps holds 5 at [0]; steps must lie in [1, 4]"]),
        (dict(steps=np.array([True, True])), ["steps must hold integers, not bool"]),
        (dict(steps=np.array([4])), ["steps must have shape (2,)"]),
        (
            dict(layer0__membranes=np.full((2, 4, 3), 2**64 - 1, dtype=np.uint64)),
            ["layer0.membranes holds 18446744073709551615 at [0, 0, 0]"],
        ),
        (
            dict(layer1__membranes=np.zeros((2, 4, 2), bool)),
            ["layer1.membranes must hold integers"],
        ),
        (dict(layer1__membranes=None), ["missing 'layer1.membranes'"]),
        (dict(layer0__membranes=np.zeros((2, 4, 4), int)), ["layer0.membranes must have shape"]),
        (
            dict(
                layer0__step_cycles=np.full((2, 4), -2), layer1__step_cycles=np.zeros((2, 4), int)
            ),
            ["layer0.step_cycles holds -2 at [0, 0]"],
        ),
        (dict(layer2__spikes=np.zeros((2, 4, 1), np.int8)), ["unexpected array 'layer2.spikes'"]),
        (dict(layer1__spikes=np.zeros((2, 3, 2), np.int8)), ["layer1.spikes has batch×steps"]),
        (dict(input_digests=np.zeros((2, 5), np.uint8)), ["input_digests must have shape (2, 32)"]),
        (dict(input_digests=np.full((2, 32), 300)), ["input_digests holds 300 at [0, 0]"]),
    ],
)
def test_trace_file_values(tmp_path, change, parts):
    good = trace_file(tmp_path)
    path = rewrite(good, tmp_path / "bad.npz", recorded=False, **change)
    with pytest.raises(FormatError) as err:
        Trace.load(path)
    assert_names(err, str(path), *parts)


@pytest.mark.parametrize(
    ("change", "parts"),
    [
        (lambda m: m.update(depth=4.7), ["depth must be a positive integer, not 4.7"]),
        (lambda m: m.update(depth=True), ["depth must be a positive integer"]),
        (lambda m: m.update(depth=3), ["missing 'layer2.spikes'"]),
        (lambda m: m.update(depth=1), ["unexpected array 'layer1."]),
        (lambda m: m.update(version=True), ["unsupported trace format version True"]),
        (lambda m: m.update(network_digest=7), ["network_digest must be a non-empty string"]),
        (lambda m: m.update(layer_names="ab"), ["layer_names must be a list"]),
        (lambda m: m.update(layer_names=[1, 2]), ["layer_names[0] must be a string"]),
        (lambda m: m.update(source=None), ["source must be a string"]),
        (lambda m: m.pop("network_digest"), ["missing 'network_digest'"]),
    ],
)
def test_trace_file_metadata(tmp_path, change, parts):
    good = trace_file(tmp_path)
    path = rewrite(good, tmp_path / "bad.npz", meta_change=change)
    with pytest.raises(FormatError) as err:
        Trace.load(path)
    assert_names(err, str(path), *parts)


@pytest.mark.parametrize(
    ("kw", "error", "message"),
    [
        (dict(steps=np.array([4.7, 4])), ValueError, "steps must hold integers, not float64"),
        (dict(steps=np.array([4, 0.5])), ValueError, r"\(0.5 at \[1\]\)"),
        (dict(busy=np.full((2, 4, 2), 7)), ValueError, r"busy holds 7 at \[0, 0, 0\]"),
        (dict(busy=np.full((2, 4, 2), 1.0)), ValueError, "busy must hold integers, not float64"),
        (dict(capped=np.array([0.0, 1.0])), ValueError, "capped must hold integers"),
        (
            dict(spikes=(np.full((2, 4, 3), 0.9), np.zeros((2, 4, 2), np.int8))),
            ValueError,
            r"layer0.spikes must hold integers, not float64 \(0.9 at \[0, 0, 0\]\)",
        ),
        (
            dict(spikes=(np.zeros((2, 4, 3), np.int8), np.full((2, 4, 2), 257))),
            ValueError,
            r"layer1.spikes holds 257 at \[0, 0, 0\]",
        ),
        (
            dict(spikes=(np.zeros((2, 4, 3), np.int8), np.full((2, 4, 2), np.nan))),
            ValueError,
            r"layer1.spikes must hold integers, not float64 \(nan at",
        ),
        (
            dict(membranes=(np.zeros((2, 4, 3), complex), np.zeros((2, 4, 2), int))),
            ValueError,
            "layer0.membranes must hold integers, not complex128",
        ),
        (
            dict(membranes=(np.zeros((2, 4, 3), object), np.zeros((2, 4, 2), int))),
            ValueError,
            "layer0.membranes must hold integers, not object",
        ),
        (
            dict(spike_cycles=(np.full((2, 4, 3), -5), np.zeros((2, 4, 2), int))),
            ValueError,
            r"layer0.spike_cycles holds -5 at \[0, 0, 0\]; spike_cycles must be integers in \[-1,",
        ),
        (dict(spikes=np.zeros((2, 4, 3), np.int8)), TypeError, "spikes must be a sequence"),
        (dict(layer_names=("a", 3)), TypeError, r"layer_names\[1\] must be a string"),
        (dict(input_digests=np.zeros((2, 31), np.uint8)), ValueError, r"shape \(2, 32\)"),
    ],
)
def test_trace_values_are_checked_before_the_cast(kw, error, message):
    with pytest.raises(error, match=message):
        make_trace(**kw)


def test_bool_and_small_integer_dtypes_are_accepted():
    tr = make_trace(
        busy=np.ones((2, 4, 2), dtype=np.uint8),
        capped=np.array([0, 1], dtype=np.int64),
        steps=np.array([4, 3], dtype=np.uint16),
        spikes=(np.ones((2, 4, 3), dtype=bool), np.zeros((2, 4, 2), dtype=np.int64)),
    )
    assert tr.busy.dtype == bool and tr.capped.tolist() == [False, True]
    assert tr.spikes[0].dtype == np.int8 and tr.steps.dtype == np.int64


# -- 5. network and transformer files: integer fields within the datapath ------------------------
@pytest.mark.parametrize(
    ("change", "parts"),
    [
        (
            lambda m: m["layers"][0].update(threshold=2**70),
            ["threshold must lie in [1, 2305843009213693951]", str(2**70)],
        ),
        (lambda m: m["layers"][0].update(threshold=4.7), ["threshold must be an integer"]),
        (lambda m: m["layers"][0].update(threshold=True), ["threshold"]),
        (lambda m: m["layers"][1].update(neg_bound=-(2**80)), ["neg_bound must lie in"]),
        (lambda m: m["layers"][1].update(pos_bound=2**63), ["pos_bound must lie in"]),
        (
            lambda m: m.update(input_bounds=[-(2**80), 2**80]),
            ["input_bounds must lie in [-2305843009213693952, 2305843009213693951]"],
        ),
        (lambda m: m.update(input_bounds=[-1.5, 2]), ["input_bounds must be a pair of integers"]),
        (lambda m: m.update(n_inputs=2.0), ["n_inputs must be a positive integer"]),
        (lambda m: m.update(layers={"a": 1}), ["layers must be a list"]),
        (lambda m: m.update(layers=[7]), ["layers[0] must be an object"]),
        (
            lambda m: m["layers"][0].update(per_neuron_threshold="yes"),
            ["per_neuron_threshold must be true or false"],
        ),
        (lambda m: m["layers"][0].update(n_in=3), ["layers[0].n_in is 3"]),
        (lambda m: m.update(version=1.0), ["unsupported network format version 1.0"]),
        (lambda m: m.update(encoding=3), ["encoding must be one of"]),
    ],
)
def test_network_file_metadata(tmp_path, change, parts):
    good = good_file("network", tmp_path)
    path = rewrite(good, tmp_path / "bad.npz", meta_change=change)
    for load in (Network.load, load_network):
        with pytest.raises(FormatError) as err:
            load(path)
        assert_names(err, str(path), *parts)


@pytest.mark.parametrize(
    ("change", "parts"),
    [
        (
            dict(layer0__weight=np.array([[1, 2], [-(2**63), 1]])),
            ["weight holds -9223372036854775808 at [1, 0]"],
        ),
        (
            dict(layer0__bias=np.array([0, 2**64 - 1], dtype=np.uint64)),
            ["bias holds 18446744073709551615 at [1]; values must lie in"],
        ),
        (
            dict(layer0__weight=np.array([[1, 2], [3, 4]], dtype=bool)),
            ["weight must be an integer"],
        ),
        (dict(layer0__bias=np.array([0, 1, 2])), [r"bias must have shape (2,)"]),
        (dict(layer0__bias=None), ["missing 'layer0.bias'"]),
        (dict(layer5__weight=np.zeros((1, 1), int)), ["unexpected array 'layer5.weight'"]),
    ],
)
@pytest.mark.parametrize("recorded", [True, False])
def test_network_file_arrays(tmp_path, change, parts, recorded):
    good = good_file("network", tmp_path)
    path = rewrite(good, tmp_path / "bad.npz", recorded=recorded, **change)
    with pytest.raises(FormatError) as err:
        Network.load(path)
    assert_names(err, str(path), *parts)


def test_network_float_array_is_named_with_its_layer(tmp_path):
    good = good_file("network", tmp_path)
    path = rewrite(good, tmp_path / "f.npz", recorded=False, layer0__weight=np.full((2, 2), 0.9))
    with pytest.raises(FormatError) as err:
        Network.load(path)
    assert_names(err, str(path), "layers[0]: weight must be an integer array", "float64")


@pytest.mark.parametrize(
    ("kw", "error", "message"),
    [
        (dict(threshold=2**70), ValueError, r"threshold must lie in \[1, 2305843009213693951\]"),
        (
            dict(threshold=[2**70, 1]),
            ValueError,
            r"threshold holds 1180591620717411303424 at \[0\]",
        ),
        (dict(threshold=np.array([1, -3])), ValueError, r"positive integer, not -3 \(neuron 1\)"),
        (
            dict(weight=[[2**63, 1], [1, 1]]),
            ValueError,
            r"weight holds 9223372036854775808 at \[0, 0\]",
        ),
        (dict(weight=[[-(2**63), 1], [1, 1]]), ValueError, r"weight holds -9223372036854775808"),
        (dict(weight=[[1, "a"], [1, 1]]), TypeError, "weight must be an integer array"),
        (dict(bias=[0, 2**62]), ValueError, r"bias holds 4611686018427387904 at \[1\]"),
        (dict(neg_bound=-(2**70)), ValueError, "neg_bound must lie in"),
    ],
)
def test_layer_integer_ranges(kw, error, message):
    args = dict(weight=[[1, 2], [3, 4]], bias=[0, 0], threshold=4, neg_bound=-8, pos_bound=7)
    args.update(kw)
    with pytest.raises(error, match=message):
        Layer(**args)


def test_network_input_bounds_range():
    with pytest.raises(ValueError, match=r"input_bounds must lie in \[-2305843009213693952, "):
        small_net(input_bounds=(-(2**80), 2**80))
    with pytest.raises(ValueError, match=r"needs a 6[0-9]-bit membrane"):
        small_net(input_bounds=(-VALUE_MAX, VALUE_MAX))  # in range; the widths then refuse it


def test_from_dict_does_not_cast():
    d = small_net().to_dict()
    d["layers"][0]["weight"] = [[0.9, 1], [1, 1]]
    with pytest.raises(TypeError, match="weight must be an integer array, not an array of float64"):
        Network.from_dict(d)
    d = small_net().to_dict()
    d["layers"][0]["threshold"] = [4.7, 4]
    with pytest.raises(TypeError, match="threshold must be an integer array"):
        Network.from_dict(d)


@pytest.mark.parametrize(
    ("change", "parts"),
    [
        (lambda n: n["norm"].update(eps=2**70), ["eps must lie in"]),
        (lambda n: n.update(input_bounds=[0, 2**80]), ["input_bounds must lie in"]),
        (lambda n: n.update(embed_residual=-(2**64)), ["embed_residual must lie in"]),
        (lambda n: n["blocks"][0].update(heads=2**65), ["heads must lie in"]),
        (lambda n: n["norm"].update(threshold=4.5), ["threshold must be an integer"]),
        (lambda n: n.update(position={"array": 7}), ["array reference 7 is not a name"]),
        (lambda n: n.update(position={"array": "nope"}), ["missing 'nope'"]),
        (lambda n: n.update(blocks="x"), ["invalid transformer"]),
    ],
)
def test_transformer_file_metadata(tmp_path, change, parts):
    good = good_file("transformer", tmp_path)
    path = rewrite(good, tmp_path / "bad.npz", meta_change=lambda m: change(m["network"]))
    for load in (VisionTransformer.load, load_network):
        with pytest.raises(FormatError) as err:
            load(path)
        assert_names(err, str(path), *parts)


@pytest.mark.parametrize(
    ("change", "parts"),
    [
        (dict(position=np.full((4, 4), 0.5)), ["position must be an integer array", "float64"]),
        (dict(position=np.full((4, 4), 2**63 - 1)), ["position holds 9223372036854775807"]),
        (dict(extra=np.zeros(1, int)), ["unexpected array 'extra'"]),
    ],
)
def test_transformer_file_arrays(tmp_path, change, parts):
    good = good_file("transformer", tmp_path)
    path = rewrite(good, tmp_path / "bad.npz", recorded=False, **change)
    with pytest.raises(FormatError) as err:
        VisionTransformer.load(path)
    assert_names(err, str(path), *parts)


def test_write_npz_records_arrays_and_refuses_floats(tmp_path):
    write_npz(tmp_path / "a.npz", {"kind": "k"}, {"x": np.arange(6).reshape(2, 3)})
    meta = json.loads(_meta_text(tmp_path / "a.npz"))
    assert meta["__arrays__"] == {"x": {"dtype": "<i8", "shape": [2, 3]}}
    back_meta, arrays = read_npz(tmp_path / "a.npz", kind="k")
    assert back_meta == {"kind": "k"} and arrays["x"].tolist() == [[0, 1, 2], [3, 4, 5]]
    arrays["x"][0, 0] = 9  # the arrays returned are the caller's
    with pytest.raises(ValueError, match="array 'f' must be of integer or bool dtype"):
        write_npz(tmp_path / "b.npz", {"kind": "k"}, {"f": np.zeros(2)})
    with pytest.raises(ValueError, match="'__arrays__' is reserved"):
        write_npz(tmp_path / "b.npz", {"kind": "k", "__arrays__": 1}, {})


# -- 6. read_array: inputs files ----------------------------------------------------------------
def test_read_array_round_trips(tmp_path):
    x = np.arange(12).reshape(3, 4)
    np.save(tmp_path / "x.npy", x)
    assert np.array_equal(read_array(tmp_path / "x.npy"), x)
    np.save(tmp_path / "f.npy", np.asfortranarray(x.astype(">i4")))
    got = read_array(tmp_path / "f.npy")
    assert np.array_equal(got, x) and got.dtype.isnative
    np.savez(tmp_path / "one.npz", anything=x)
    assert np.array_equal(read_array(tmp_path / "one.npz"), x)
    np.savez_compressed(tmp_path / "named.npz", inputs=x, labels=np.arange(3))
    assert np.array_equal(read_array(tmp_path / "named.npz"), x)
    np.save(tmp_path / "fl.npy", x.astype(float))
    assert read_array(tmp_path / "fl.npy").dtype == np.float64


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.write_bytes(b"\x93NUMPY garbage"), "not a .npy/.npz array file"),
        (lambda p: p.write_bytes(npy_bytes(np.arange(100))[:-8]), "the file is"),
        (lambda p: p.write_bytes(npy_bytes(np.arange(100)) + b"x"), "the file is"),
        (lambda p: p.write_bytes(npy_header((10**12,)) + bytes(64)), "more than"),
        (lambda p: p.write_bytes(npy_header((2,), "|O") + b"\x80\x04."), "array of object"),
        (lambda p: np.save(p, np.array(["a", "b"])), "<U1; only bool, integer or float"),
        (lambda p: np.save(p, np.zeros(2, complex)), "complex128"),
        (lambda p: p.write_bytes(b"hello"), "not a zip archive"),
        (lambda p: np.savez(p, a=np.zeros(2), b=np.zeros(2)), "name the input array 'inputs'"),
        (
            lambda p: p.write_bytes(
                raw_zip([zeros_bomb("inputs.npy", npy_header((400 << 17,)), 400 << 20)])
            ),
            "more than",
        ),
    ],
)
def test_read_array_errors(tmp_path, make, message):
    path = tmp_path / "in.npy"
    make(path)
    if not path.exists():  # np.savez appends .npz
        path = tmp_path / "in.npy.npz"
    with pytest.raises(FormatError, match=message) as err:
        read_array(path, max_bytes=64 << 20)
    assert_names(err, str(path))


def test_read_array_damaged_npz(tmp_path):
    np.savez_compressed(tmp_path / "x.npz", inputs=np.arange(10_000))
    raw = bytearray((tmp_path / "x.npz").read_bytes())
    with zipfile.ZipFile(tmp_path / "x.npz") as z:
        start = data_offset(bytes(raw), z.infolist()[0])
    for k in range(start + 20, start + 60):
        raw[k] ^= 0xFF
    (tmp_path / "x.npz").write_bytes(bytes(raw))
    with pytest.raises(FormatError, match="array 'inputs'") as err:
        read_array(tmp_path / "x.npz")
    assert_names(err, str(tmp_path / "x.npz"))
    with pytest.raises(FormatError, match="no such file"):
        read_array(tmp_path / "missing.npy")


# -- 7. input digests -----------------------------------------------------------------------------
def test_sample_digests():
    x = np.array([[1, 2], [1, 2], [2, 1]])
    d = sample_digests(x)
    assert d.shape == (3, DIGEST_BYTES) and d.dtype == np.uint8
    assert (d[0] == d[1]).all() and (d[0] != d[2]).any()
    assert np.array_equal(sample_digests(x.astype(np.int8)), d)  # the values, not the dtype
    assert (sample_digests(x[:, :1])[0] != d[0]).any()
    # the sample's shape is covered: the same values in another layout differ
    assert (sample_digests(np.array([[[1], [2]]]))[0] != d[0]).any()
    with pytest.raises(ValueError, match="integer array"):
        sample_digests(np.zeros((2, 2)))


@pytest.fixture(scope="module")
def runs():
    from spikezip.sw.reference import simulate

    net = small_net()
    x = np.array([[5, -3], [17, 2], [0, 0]])
    return net, x, simulate(net, x)


def test_reference_records_input_digests(runs, tmp_path):
    net, x, tr = runs
    assert np.array_equal(tr.input_digests, sample_digests(net.check_inputs(x)))
    tr.save(tmp_path / "t.npz")
    back = Trace.load(tmp_path / "t.npz")
    assert np.array_equal(back.input_digests, tr.input_digests)
    assert np.array_equal(tr.select([2, 0]).input_digests, tr.input_digests[[2, 0]])


def test_vit_reference_records_input_digests():
    from spikezip.sw.vit.reference import simulate
    from tests.sw.test_vit_reference import one_block_vit

    v = one_block_vit()
    x = np.array([[0, 0], [16, 16]])
    tr = simulate(v, x)
    assert np.array_equal(tr.input_digests, sample_digests(v.check_inputs(x)))


def test_swapped_inputs_are_not_compared(runs):
    from spikezip.sw.reference import simulate

    net, x, tr = runs
    swapped = simulate(net, x[[1, 0, 2]])
    with pytest.raises(TraceMismatchError, match="different inputs: sample 0"):
        first_divergence(tr, swapped)
    other = simulate(net, np.array([[5, -3], [17, 2], [0, 1]]))
    with pytest.raises(TraceMismatchError, match="different inputs: sample 2"):
        first_divergence(tr, other)


def test_digests_on_one_side_only_compare_as_before(runs):
    _, _, tr = runs
    bare = Trace(
        network_digest=tr.network_digest,
        spikes=tr.spikes,
        busy=tr.busy,
        steps=tr.steps,
        capped=tr.capped,
        layer_names=tr.layer_names,
    )
    assert first_divergence(tr, bare) is None and first_divergence(bare, tr) is None


def test_empty_batches_are_not_identical(runs):
    _, _, tr = runs
    empty = tr.select([])
    assert empty.batch == 0
    with pytest.raises(TraceMismatchError, match="no samples to compare"):
        first_divergence(empty, empty)


# -- 8. the divergence display against a capped run -------------------------------------------
@pytest.fixture(scope="module")
def capped_pair():
    from spikezip.sw.reference import StepCapWarning, simulate

    net = Network(
        layers=(Layer(weight=[[1]], bias=[0], threshold=4, neg_bound=-8, pos_bound=7),),
        n_inputs=1,
        encoding="analog",
        input_bounds=(-100, 100),
    )
    x = np.array([[10]])
    full = simulate(net, x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StepCapWarning)
        cap = simulate(net, x, max_steps=3)
    return full, cap


def test_busy_row_against_a_capped_trace_shows_the_recorded_flags(capped_pair):
    full, cap = capped_pair
    assert full.steps[0] == 4 and cap.capped[0] and cap.busy[0, :, -1].all()
    for expected, actual in ((full, cap), (cap, full)):
        div = first_divergence(expected, actual)
        assert div.field == "steps"
        lines = str(div).splitlines()
        exp_row = next(ln for ln in lines if ln.startswith("  expected "))
        act_row = next(ln for ln in lines if ln.startswith("  actual "))
        capped_row, full_row = (act_row, exp_row) if actual is cap else (exp_row, act_row)
        assert capped_row.split()[1:5] == ["1", "1", "1", "-"]
        assert full_row.split()[1:5] == ["1", "1", "1", "0"]
        assert "+" not in exp_row and "+" not in act_row
        assert "capped" in capped_row


def test_no_spike_divergence_is_invented_past_a_capped_run():
    from spikezip.sw.reference import StepCapWarning, simulate

    net = small_net()
    x = np.array([[17, 9]])
    full = simulate(net, x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StepCapWarning)
        cap = simulate(net, x, max_steps=2)
    div = first_divergence(full, cap)
    assert (div.field, div.expected, div.actual, div.step) == ("steps", int(full.steps[0]), 2, 2)


def test_busy_divergence_prints_flags_as_0_and_1():
    tr = make_trace(batch=1, widths=(2,), membranes=None)
    busy = tr.busy.copy()
    busy[0, 2, 0] = False
    other = Trace(
        network_digest=tr.network_digest,
        spikes=tr.spikes,
        busy=busy,
        steps=tr.steps,
        capped=tr.capped,
    )
    div = first_divergence(tr, other)
    assert (div.field, div.step, div.expected, div.actual) == ("busy", 2, 1, 0)
    text = str(div)
    assert "expected 1, actual 0" in text and "+" not in text
