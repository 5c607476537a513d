"""Typed stimulus and result files of the cocotb testbenches, and the one environment variable.

The parent process (:func:`sim.simulate.prepare`, :mod:`sim.cases`) writes one record per run
with :meth:`~Record.save`; the testbench finds it through :data:`STIMULUS_ENV` (its folder is the
run folder: results go beside it) and reads it with :meth:`~Record.load`. Every file is a
:func:`ir._io.write_npz` archive with a ``kind`` and a ``version``: JSON metadata for scalars,
formats and bit layouts, integer arrays for the rest. Pure Python and numpy: imported on both
sides.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from spikezip.hw.model.events import EventFormat
from spikezip.ir._io import read_npz, write_npz
from spikezip.ir.errors import FormatError

__all__ = [
    "CALLER_PID_ENV",
    "STIMULUS_ENV",
    "AddStimulus",
    "BitLayout",
    "ConvCoreStimulus",
    "LayerCoreStimulus",
    "LayerNormStimulus",
    "MaxPoolStimulus",
    "NetworkResult",
    "NetworkStimulus",
    "NeuronArrayStimulus",
    "ProductStimulus",
    "Record",
    "ResidualStimulus",
    "SoftmaxStimulus",
    "StreamStimulus",
    "bits",
    "stimulus_path",
]

#: The one variable the parent sets for a testbench: the path of its stimulus file.
STIMULUS_ENV = "SPIKEZIP_TB_STIMULUS"
#: The process that asked for the run (set by :func:`sim.simulate.simulate`): the testbench
#: ends itself when it is gone (:class:`sim.tb.kit.Watchdog`).
CALLER_PID_ENV = "NETWORK_SIM_PARENT_PID"


def stimulus_path() -> Path:
    """The stimulus file named by :data:`STIMULUS_ENV` (in the simulator process)."""
    try:
        return Path(os.environ[STIMULUS_ENV])
    except KeyError:
        raise RuntimeError(f"{STIMULUS_ENV} is not set: run the testbench through sim.*") from None


@dataclass(frozen=True)
class BitLayout:
    """Named bit fields of one vector: ``name → (offset, width)``, offsets from the LSB.

    Serialised as the generator's manifest writes a probe layout (``[{field, offset, width}]``):
    :meth:`to_json` and :meth:`from_json` are the one serialisation, for the manifest, the
    stimulus files and the testbenches.
    """

    fields: Mapping[str, tuple[int, int]]

    @classmethod
    def from_json(cls, records: Iterable[Mapping[str, Any]]) -> BitLayout:
        return cls({str(r["field"]): (int(r["offset"]), int(r["width"])) for r in records})

    def to_json(self) -> list[dict[str, Any]]:
        return [{"field": k, "offset": o, "width": w} for k, (o, w) in self.fields.items()]

    @classmethod
    def of(cls, members: Iterable[tuple[str, Any]]) -> BitLayout:
        """From ``(name, member)`` pairs with ``offset`` and ``width`` (an Amaranth layout)."""
        return cls({str(name): (int(m.offset), int(m.width)) for name, m in members})

    @property
    def width(self) -> int:
        return max((o + w for o, w in self.fields.values()), default=0)

    def bit(self, name: str) -> int:
        """The mask of the lowest bit of field ``name``."""
        return 1 << self.fields[name][0]

    def get(self, word: int, name: str, *, signed: bool = False) -> int:
        """Field ``name`` of ``word``."""
        offset, width = self.fields[name]
        return bits(word, offset, width, signed=signed)

    def element(self, word: int, name: str, j: int, width: int, *, signed: bool = True) -> int:
        """Element ``j`` (of ``width`` bits) of the array field ``name`` of ``word``."""
        return bits(word, self.fields[name][0] + j * width, width, signed=signed)


def bits(word: int, offset: int, width: int, *, signed: bool = False) -> int:
    """``width`` bits of ``word`` from ``offset`` (two's complement when ``signed``)."""
    v = (word >> offset) & ((1 << width) - 1)
    return v - (1 << width) if signed and width and v >> (width - 1) else v


def _encode(value: Any) -> Any:
    if isinstance(value, EventFormat):
        return {"index_width": value.index_width, "value_width": value.value_width}
    if isinstance(value, BitLayout):
        return value.to_json()
    if isinstance(value, tuple | list):
        return [_encode(v) for v in value]
    return value


@dataclass(frozen=True, kw_only=True)
class Record:
    """A typed file: arrays (numpy fields) and JSON metadata (the rest), with kind and version.

    Subclasses set :attr:`KIND` and :attr:`VERSION` and name in :attr:`DECODE` how a metadata
    field is rebuilt (formats, layouts, tuples); every ``np.ndarray`` field is an array.
    """

    KIND: ClassVar[str]
    VERSION: ClassVar[int] = 1
    DECODE: ClassVar[Mapping[str, Any]] = {}

    def save(self, path: str | os.PathLike) -> Path:
        meta: dict[str, Any] = {"kind": self.KIND, "version": self.VERSION}
        arrays = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, np.ndarray):
                arrays[f.name] = value
            else:
                meta[f.name] = _encode(value)
        write_npz(path, meta, arrays)
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike):
        meta, arrays = read_npz(path, kind=cls.KIND)
        version = meta.get("version")
        if type(version) is not int or version != cls.VERSION:
            raise FormatError(
                f"{os.fspath(path)}: unsupported {cls.KIND} version {version!r} "
                f"(this code reads version {cls.VERSION})"
            )
        values = {}
        for f in dataclasses.fields(cls):
            if f.name in arrays:
                values[f.name] = arrays[f.name]
            elif f.name in meta:
                decode = cls.DECODE.get(f.name)
                values[f.name] = decode(meta[f.name]) if decode else meta[f.name]
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise FormatError(f"{os.fspath(path)}: {cls.KIND} file lacks {f.name!r}")
        try:
            return cls(**values)
        except (TypeError, ValueError, KeyError) as e:
            raise FormatError(f"{os.fspath(path)}: invalid {cls.KIND} file ({e})") from None


def _formats(v):
    return tuple(EventFormat(**d) for d in v)


def _ints(v):
    return tuple(int(x) for x in v)


def _strs(v):
    return tuple(str(x) for x in v)


def _format(d):
    return EventFormat(**d)


@dataclass(frozen=True, kw_only=True)
class NetworkStimulus(Record):
    """Input of :mod:`sim.tb.network`: every inference's input payloads back to back."""

    KIND: ClassVar[str] = "spikezip-stimulus-network"
    DECODE: ClassVar[Mapping[str, Any]] = {
        "formats": _formats,
        "probe": BitLayout.from_json,
        "n_out": _ints,
        "layer_names": _strs,
        "emit_widths": _ints,
    }

    words: np.ndarray  #: input payloads, every inference back to back
    sample_starts: np.ndarray  #: index in ``words`` of each inference's first payload
    n_out: tuple[int, ...]  #: neurons per layer
    layer_names: tuple[str, ...]
    formats: tuple[EventFormat, ...]  #: output event format per layer
    probe: BitLayout  #: the probe vector (manifest ``probe``)
    digest: str  #: the network's digest
    max_cycles: int  #: the run stops here at the latest
    valid: float = 1.0  #: probability that an input beat is offered in a cycle
    ready: float = 1.0  #: probability that the output is accepted in a cycle
    #: ``≥ 0``: the output's pauses are those of ``hw.model.network_model.OutputReady(ready,
    #: ready_seed)``, which the network model reproduces; ``-1``: cocotb's random numbers
    ready_seed: int = -1
    simulator: str = ""  #: name for the trace's ``source`` (default: cocotb's)
    progress: str = ""  #: file the testbench rewrites with the finished inferences ("": none)
    per_cycle: bool = False  #: one ``await`` per cycle even without pauses (not the harness)
    #: events per output beat of every layer (``()``: one each; wide beats,
    #: ``hw.model.events.BeatFormat``, are expanded before decoding)
    emit_widths: tuple[int, ...] = ()

    @property
    def samples(self) -> int:
        return len(self.sample_starts)

    @property
    def depth(self) -> int:
        return len(self.n_out)


@dataclass(frozen=True, kw_only=True)
class NetworkResult(Record):
    """Per-inference cycle facts written by :mod:`sim.tb.network` beside ``hardware.npz``."""

    KIND: ClassVar[str] = "spikezip-result-network"

    first_input: np.ndarray  #: [B] cycle the first input beat of each inference was accepted
    done: np.ndarray  #: [B] cycle of each inference's final marker
    counters: np.ndarray  #: [B, 4·D] counters read the cycle after each done
    final_counters: np.ndarray  #: [4·D] counters at the end of the run
    total_cycles: int
    wall_seconds: float
    edge0_ns: float


@dataclass(frozen=True, kw_only=True)
class LayerCoreStimulus(Record):
    """Input of :mod:`sim.tb.layer_core`: payloads in, expected payloads out with their cycles.

    The golden trace is ``golden.npz`` beside the file.
    """

    KIND: ClassVar[str] = "spikezip-stimulus-layer-core"
    DECODE: ClassVar[Mapping[str, Any]] = {
        "in_format": _format,
        "out_format": _format,
        "state": BitLayout.from_json,
    }

    layer: int
    lanes: int
    words: int  #: neuron words (lanes per word)
    in_format: EventFormat
    out_format: EventFormat
    membrane_width: int
    tracer_width: int
    state: BitLayout  #: the probe's ``state`` vector (fields ``membranes``, ``tracers``)
    in_words: np.ndarray
    out_words: np.ndarray
    out_sample: np.ndarray
    out_step: np.ndarray
    out_neuron: np.ndarray  #: ``-1`` for markers
    out_cycle: np.ndarray  #: the cycle model's cycle of each output beat
    valid: float = 1.0
    ready: float = 1.0
    check_cycles: bool = False


@dataclass(frozen=True, kw_only=True)
class NeuronArrayStimulus(Record):
    """Input of :mod:`sim.tb.neuron_array`: the per-step drives of one layer.

    The golden trace is ``golden.npz`` beside the file.
    """

    KIND: ClassVar[str] = "spikezip-stimulus-neuron-array"
    DECODE: ClassVar[Mapping[str, Any]] = {
        "cmd": BitLayout.from_json,
        "fired": BitLayout.from_json,
        "state": BitLayout.from_json,
    }

    layer: int
    lanes: int
    words: int
    latency: int  #: command to fired word, cycles
    min_distance: int  #: cycles between two commands on one word
    drive_width: int
    membrane_width: int
    tracer_width: int
    op_init: int
    op_fire: int
    cmd: BitLayout
    fired: BitLayout
    state: BitLayout
    drive: np.ndarray  #: [B, T, words·lanes]
    busy: np.ndarray  #: [B, T] expected busy flags
    valid: float = 1.0


@dataclass(frozen=True, kw_only=True)
class StreamStimulus(Record):
    """Input of a testbench of a core on the stream protocol (:func:`sim.tb.kit.run_streams`,
    :func:`sim.tb.kit.check_beats`): payloads in (every inference back to back), expected payloads
    out with their inference, step, index (``-1`` for markers) and model cycle. Each core's
    stimulus is a subclass with its own ``KIND``."""

    KIND: ClassVar[str] = "spikezip-stimulus-stream"
    DECODE: ClassVar[Mapping[str, Any]] = {"in_format": _format, "out_format": _format}

    name: str  #: the core or site, as error messages name it
    in_format: EventFormat
    out_format: EventFormat
    in_words: np.ndarray
    out_words: np.ndarray
    out_sample: np.ndarray
    out_step: np.ndarray
    out_index: np.ndarray  #: ``-1`` for markers
    out_cycle: np.ndarray  #: the cycle model's cycle of each output beat
    valid: float = 1.0
    ready: float = 1.0
    check_cycles: bool = False


@dataclass(frozen=True, kw_only=True)
class LayerNormStimulus(StreamStimulus):
    """Input of :mod:`sim.tb.layer_norm` (``name``: the LayerNorm site)."""

    KIND: ClassVar[str] = "spikezip-stimulus-layer-norm"


@dataclass(frozen=True, kw_only=True)
class ConvCoreStimulus(StreamStimulus):
    """Input of :mod:`sim.tb.conv_core` (``name``: the conv site): output indices in the core's
    HWC order (:mod:`hw.model.conv_sites`)."""

    KIND: ClassVar[str] = "spikezip-stimulus-conv-core"


@dataclass(frozen=True, kw_only=True)
class MaxPoolStimulus(StreamStimulus):
    """Input of :mod:`sim.tb.max_pool` (``name``: the max-pool site): indices in HWC order
    (:mod:`hw.model.pool_model`)."""

    KIND: ClassVar[str] = "spikezip-stimulus-max-pool"


@dataclass(frozen=True, kw_only=True)
class AddStimulus(StreamStimulus):
    """Input of :mod:`sim.tb.add_core` (``name``: the merge site): ``in_words`` every source's
    payloads, source after source, ``in_counts`` how many each (``in_format`` is source 0's)."""

    KIND: ClassVar[str] = "spikezip-stimulus-add"

    in_counts: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.int64))

    def source_words(self) -> list[np.ndarray]:
        """Each source's payloads."""
        ends = np.cumsum(self.in_counts)
        return [self.in_words[e - c : e] for c, e in zip(self.in_counts, ends, strict=True)]


@dataclass(frozen=True, kw_only=True)
class SoftmaxStimulus(StreamStimulus):
    """Input of :mod:`sim.tb.softmax`."""

    KIND: ClassVar[str] = "spikezip-stimulus-softmax"


@dataclass(frozen=True, kw_only=True)
class ResidualStimulus(StreamStimulus):
    """Input of :mod:`sim.tb.residual`: as :class:`LayerNormStimulus` (``in_words`` the spike
    input ``b``), plus the base input ``a``'s payloads (``has_base``)."""

    KIND: ClassVar[str] = "spikezip-stimulus-residual"
    DECODE: ClassVar[Mapping[str, Any]] = {
        "in_format": _format,
        "out_format": _format,
        "base_format": _format,
    }

    has_base: bool = False
    base_format: EventFormat = dataclasses.field(default_factory=lambda: EventFormat(1, 2))
    base_words: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.uint64))


@dataclass(frozen=True, kw_only=True)
class ProductStimulus(Record):
    """Input of :mod:`sim.tb.product`: the X and Y payloads in, the expected payloads out and
    the model's cycle of each (:func:`hw.model.product_model.product_schedule`)."""

    KIND: ClassVar[str] = "spikezip-stimulus-product"
    DECODE: ClassVar[Mapping[str, Any]] = {"out_format": _format}

    product: str  #: ``scores`` or ``context``
    out_format: EventFormat
    x_words: np.ndarray
    y_words: np.ndarray
    out_words: np.ndarray
    out_cycle: np.ndarray
    valid: float = 1.0
    ready: float = 1.0
    check_cycles: bool = False
