"""The design manifest as typed records (plain Python: the simulator process reads it too).

:func:`hw.flow.generate.write_design` builds a :class:`Manifest` and writes it as
``manifest.json``; :meth:`Manifest.load` reads one back and names the first field that is
missing or of the wrong type (``ValueError``), so that readers never index three levels into a
dict. The JSON layout is documented field by field below; ``kind`` and ``version`` say what the
file is.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from spikezip.hw.model.design import DesignParams
from spikezip.hw.model.events import EventFormat
from spikezip.ir._io import atomic_write_text

__all__ = [
    "MANIFEST",
    "MANIFEST_KIND",
    "MANIFEST_VERSION",
    "LayerEntry",
    "Manifest",
    "NetworkEntry",
    "PortEntry",
    "ProbeField",
    "WeightImage",
]

MANIFEST = "manifest.json"  #: its file name inside a design folder
MANIFEST_KIND = "spikezip-design"
MANIFEST_VERSION = 2  #: 2: the design parameters as a record (``design``), typed readers


def _need(d: Any, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if not isinstance(d, dict) or key not in d:
        raise ValueError(f"manifest: {where}{key} is missing")
    value = d[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _tuple(kind)):
        raise ValueError(f"manifest: {where}{key} has the wrong type ({type(value).__name__})")
    return value


def _tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _record(cls: type, d: Any, where: str, **convert: Any) -> Any:
    """``cls(**d)`` with every field present; ``convert`` maps field names to readers."""
    if not isinstance(d, dict):
        raise ValueError(f"manifest: {where.rstrip('.')} is not an object")
    values = {}
    for f in fields(cls):
        if f.name not in d:
            raise ValueError(f"manifest: {where}{f.name} is missing")
        value = d[f.name]
        values[f.name] = convert[f.name](value) if f.name in convert else value
    try:
        return cls(**values)
    except (TypeError, ValueError) as e:
        raise ValueError(f"manifest: {where.rstrip('.')}: {e}") from None


@dataclass(frozen=True)
class NetworkEntry:
    """The network a design was generated from."""

    name: str
    digest: str  #: :meth:`ir.Network.digest`
    encoding: str  #: ``analog`` or ``spikes`` (:class:`ir.network.Encoding`)
    n_inputs: int
    input_bounds: tuple[int, int]


@dataclass(frozen=True)
class WeightImage:
    """One layer's weight memory image: ``file`` (hex), ``depth`` words of ``word_width`` bits."""

    file: str
    depth: int
    word_width: int


@dataclass(frozen=True)
class LayerEntry:
    """One layer core: geometry, derived widths, timing and event formats."""

    name: str
    n_in: int
    n_out: int
    lanes: int
    words: int
    analog: bool
    storage: str  #: ``registers`` or ``memory`` (:class:`hw.model.design.Storage`)
    pipeline: int | None  #: preset depth of its pipeline, ``None`` for another one
    bounds: tuple[int, int]  #: tracer bounds ``(n, p)``
    widths: dict[str, int]  #: ``hw.cores.layer_core.LayerWidths`` as a dict
    cycles_per_event: int
    sweep_cycles: int
    init_cycles: int
    input_format: EventFormat
    output_format: EventFormat
    weights: WeightImage


@dataclass(frozen=True)
class PortEntry:
    """A port of the top-level module."""

    name: str
    direction: str  #: ``in`` or ``out``
    width: int
    note: str = ""


@dataclass(frozen=True)
class ProbeField:
    """A field of the ``probe`` output: ``width`` bits from bit ``offset``."""

    field: str
    offset: int
    width: int


@dataclass(frozen=True, kw_only=True)
class Manifest:
    """What :func:`hw.flow.generate.write_design` wrote into a design folder, and how."""

    toplevel: str
    verilog: str  #: the Verilog file's name in the folder
    network: NetworkEntry
    design: DesignParams  #: the knobs the design was generated with
    fifo_depths: tuple[int, ...]  #: entries of each inter-layer FIFO, as built
    backend: str  #: ``proc`` or ``rtlil`` (:func:`hw.flow.verilog.generate`)
    probe: bool  #: the ``probe`` output is present
    ports: tuple[PortEntry, ...]
    layers: tuple[LayerEntry, ...]
    counters: tuple[str, ...]  #: per-layer counter names, in the order of the ``counters`` port
    counter_width: int
    probe_layout: tuple[ProbeField, ...]  #: empty without ``probe``
    tools: dict[str, str]  #: distribution versions
    generator: str  #: :func:`hw.flow.generate.generator_fingerprint`
    files: dict[str, str]  #: file name -> SHA-256 of its content

    @property
    def lanes(self) -> tuple[int, ...]:
        return self.design.lanes

    @property
    def pipeline(self) -> int | None:
        return self.design.depth

    # -- JSON ----------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        """The ``manifest.json`` object (keys sorted when written)."""
        return {
            "kind": MANIFEST_KIND,
            "version": MANIFEST_VERSION,
            "toplevel": self.toplevel,
            "verilog": self.verilog,
            "network": asdict(self.network) | {"input_bounds": list(self.network.input_bounds)},
            "design": self.design.to_json(),
            "parameters": {  # the flat summary a human reads first
                "lanes": list(self.design.lanes),
                "fifo_depths": list(self.fifo_depths),
                "pipeline": self.design.depth,
                "backend": self.backend,
                "probe": self.probe,
            },
            "ports": [_port_json(p) for p in self.ports],
            "layers": [_layer_json(layer) for layer in self.layers],
            "counters": {"per_layer": list(self.counters), "width": self.counter_width},
            "probe": [asdict(f) for f in self.probe_layout],
            "tools": dict(self.tools),
            "generator": self.generator,
            "files": dict(sorted(self.files.items())),
        }

    @classmethod
    def from_json(cls, d: Any) -> Manifest:
        """Inverse of :meth:`to_json`; a ``ValueError`` names the first bad field."""
        if not isinstance(d, dict) or d.get("kind") != MANIFEST_KIND:
            raise ValueError(f"manifest: not a {MANIFEST_KIND} file")
        if d.get("version") != MANIFEST_VERSION:
            raise ValueError(
                f"manifest: version {d.get('version')!r}, this generator reads {MANIFEST_VERSION}"
            )
        params = _need(d, "parameters", dict, "")
        counters = _need(d, "counters", dict, "")
        try:
            design = DesignParams.from_json(_need(d, "design", dict, ""))
        except ValueError as e:
            raise ValueError(f"manifest: {e}") from None
        return cls(
            toplevel=_need(d, "toplevel", str, ""),
            verilog=_need(d, "verilog", str, ""),
            network=_record(
                NetworkEntry, d.get("network"), "network.", input_bounds=_pair("input_bounds")
            ),
            design=design,
            fifo_depths=tuple(_need(params, "fifo_depths", list, "parameters.")),
            backend=_need(params, "backend", str, "parameters."),
            probe=_need(params, "probe", bool, "parameters."),
            ports=tuple(
                _record(PortEntry, p | {"note": p.get("note", "")}, f"ports[{k}].")
                if isinstance(p, dict)
                else _record(PortEntry, p, f"ports[{k}].")
                for k, p in enumerate(_need(d, "ports", list, ""))
            ),
            layers=tuple(
                _layer_from(layer, k) for k, layer in enumerate(_need(d, "layers", list, ""))
            ),
            counters=tuple(_need(counters, "per_layer", list, "counters.")),
            counter_width=_need(counters, "width", int, "counters."),
            probe_layout=tuple(
                _record(ProbeField, f, f"probe[{k}].")
                for k, f in enumerate(_need(d, "probe", list, ""))
            ),
            tools=_need(d, "tools", dict, ""),
            generator=_need(d, "generator", str, ""),
            files=_need(d, "files", dict, ""),
        )

    def save(self, directory: str | os.PathLike) -> Path:
        """Write ``manifest.json`` into ``directory`` atomically; return its path."""
        path = Path(directory) / MANIFEST
        atomic_write_text(path, json.dumps(self.to_json(), indent=2, sort_keys=True) + "\n")
        return path

    @classmethod
    def load(cls, directory: str | os.PathLike) -> Manifest:
        """Read ``manifest.json`` from ``directory`` (``OSError``, or ``ValueError`` naming the
        field)."""
        try:
            d = json.loads((Path(directory) / MANIFEST).read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"manifest: not JSON ({e.msg} at line {e.lineno})") from None
        return cls.from_json(d)


def _pair(name: str):
    def read(value: Any) -> tuple[int, int]:
        if not isinstance(value, list) or len(value) != 2:
            raise ValueError(f"manifest: {name} must be a pair")
        return (value[0], value[1])

    return read


def _format(value: Any) -> EventFormat:
    if not isinstance(value, dict):
        raise ValueError("manifest: an event format is not an object")
    return EventFormat(**value)


def _layer_from(d: Any, k: int) -> LayerEntry:
    return _record(
        LayerEntry,
        d,
        f"layers[{k}].",
        bounds=_pair(f"layers[{k}].bounds"),
        input_format=_format,
        output_format=_format,
        weights=lambda w: _record(WeightImage, w, f"layers[{k}].weights."),
    )


def _layer_json(layer: LayerEntry) -> dict[str, Any]:
    out = asdict(layer)
    out["bounds"] = list(layer.bounds)
    return out


def _port_json(port: PortEntry) -> dict[str, Any]:
    out = asdict(port)
    if not port.note:
        del out["note"]
    return out
