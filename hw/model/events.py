"""Spike-event streams of a layer core, in plain Python: payload format and golden event lists.

No amaranth import: the cocotb testbenches (which run without amaranth and torch), the cycle model
and the benchmarks read this module; :func:`hw.cores.layer_core.event_layout` builds the Amaranth
payload from the same :data:`FIELDS`.

Payload of one stream beat (fields from the least significant bit up, as in a
``data.StructLayout``):

========  =========================  ==============================================
field     shape                      meaning
========  =========================  ==============================================
marker    1 bit                      1: end-of-step marker, 0: event
index     unsigned ``index_width``   presynaptic neuron (input) or neuron (output)
value     signed ``value_width``     ±1 (graded: ±2^k) for spikes, the input value for analog
busy      1 bit                      on markers: the cumulative busy flag of the step
========  =========================  ==============================================

The golden event lists follow the layer-core protocol (``hw.cores.layer_core``):

* a layer's **output** in step ``t`` is its spikes of that step as events ``(i, s)``
  (``s = ±1``, or ``±2^k`` for graded neurons) in ascending neuron order, then a marker
  carrying ``trace.busy[b, t, layer]``; a layer emits steps ``0 … t_l`` per inference,
  ``t_l`` being its first step with ``busy == 0``;
* the **input** of layer ``l > 0`` is the output of layer ``l - 1``;
* the input of layer 0 is, for **analog** encoding, step 0 with the events ``(j, x_j)`` of every
  non-zero ``x_j`` in ascending ``j`` and a marker busy ``any(x ≠ 0)``, then — if that was busy —
  step 1 with only a marker of busy 0; for **spike** encoding, each step ``t`` its ±1 events in
  ascending order and a marker busy ``any(x_t ≠ 0) or t < steps - 1``, until the first step whose
  marker is not busy (one all-zero step is appended when the last input step is busy).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spikezip.ir.network import Encoding, Layer, LayerWidths, Network, signed_width, unsigned_width
from spikezip.ir.trace import Trace

__all__ = [
    "FIELDS",
    "BeatFormat",
    "EventFormat",
    "Step",
    "input_format",
    "input_steps",
    "layer_formats",
    "output_format",
    "output_steps",
    "spike_value_width",
]

#: Payload fields from the least significant bit up; ``None`` widths come from the format.
FIELDS: tuple[str, ...] = ("marker", "index", "value", "busy")

#: Bits of an ST-BIF spike value (signed, ±1).
SPIKE_VALUE_WIDTH = 2


def spike_value_width(spike_max: int = 1) -> int:
    """Signed bits of a spike value ``±m``, ``m ≤ spike_max`` (a power of two): 2 for ST-BIF
    (``spike_max = 1``), ``K + 2`` for graded spikes ``±2^k, k ≤ K`` (``NeuronFacts.spike_max``)."""
    if isinstance(spike_max, bool) or not isinstance(spike_max, int) or spike_max < 1:
        raise ValueError(f"spike_max must be a positive integer, not {spike_max!r}")
    return max(SPIKE_VALUE_WIDTH, signed_width(-spike_max, spike_max))


@dataclass(frozen=True)
class EventFormat:
    """Bit format of one event-stream payload.

    Parameters
    ----------
    index_width : int
        Unsigned bits of ``index`` (at least 1).
    value_width : int
        Signed bits of ``value`` (at least 2).
    """

    index_width: int
    value_width: int

    def __post_init__(self) -> None:
        if not isinstance(self.index_width, int) or self.index_width < 1:
            raise ValueError(f"index_width must be a positive integer, not {self.index_width!r}")
        if not isinstance(self.value_width, int) or self.value_width < 2:
            raise ValueError(f"value_width must be an integer ≥ 2, not {self.value_width!r}")

    @property
    def widths(self) -> dict[str, int]:
        """Bits per field, in :data:`FIELDS` order."""
        return {"marker": 1, "index": self.index_width, "value": self.value_width, "busy": 1}

    @property
    def offsets(self) -> dict[str, int]:
        """Least significant bit of every field."""
        out, pos = {}, 0
        for name, width in self.widths.items():
            out[name] = pos
            pos += width
        return out

    @property
    def width(self) -> int:
        """Total payload bits."""
        return sum(self.widths.values())

    def pack(self, *, marker: bool, index: int = 0, value: int = 0, busy: bool = False) -> int:
        """The payload as an unsigned integer."""
        off, vw = self.offsets, self.value_width
        if not 0 <= index < 1 << self.index_width:
            raise ValueError(f"index {index} does not fit in {self.index_width} unsigned bits")
        if not -(1 << (vw - 1)) <= value < 1 << (vw - 1):
            raise ValueError(f"value {value} does not fit in {vw} signed bits")
        return (
            (int(bool(marker)) << off["marker"])
            | (int(index) << off["index"])
            | ((int(value) & ((1 << vw) - 1)) << off["value"])
            | (int(bool(busy)) << off["busy"])
        )

    def unpack(self, word: int) -> tuple[bool, int, int, bool]:
        """``(marker, index, value, busy)`` of a payload integer."""
        off, vw = self.offsets, self.value_width
        value = (word >> off["value"]) & ((1 << vw) - 1)
        if value >> (vw - 1):
            value -= 1 << vw
        return (
            bool((word >> off["marker"]) & 1),
            (word >> off["index"]) & ((1 << self.index_width) - 1),
            value,
            bool((word >> off["busy"]) & 1),
        )


def _index_width(n: int) -> int:
    return unsigned_width(n - 1)


def layer_formats(
    layer: Layer, widths: LayerWidths, *, analog: bool, input_spike_max: int = 1
) -> tuple[EventFormat, ...]:
    """``(input, output)`` event formats of a layer with exact widths ``widths``.

    Analog input values take the signed width of ``[widths.input_lo, widths.input_hi]`` (at
    least 2 bits); input spikes take :func:`spike_value_width` of ``input_spike_max`` (the
    producer's ``spike_max``), output spikes that of ``layer.spike_max``.
    """
    value_width = spike_value_width(input_spike_max)
    if analog:
        value_width = max(SPIKE_VALUE_WIDTH, signed_width(widths.input_lo, widths.input_hi))
    return (
        EventFormat(_index_width(layer.n_in), value_width),
        EventFormat(_index_width(layer.n_out), spike_value_width(layer.spike_max)),
    )


def _analog(network: Network, layer: int) -> bool:
    return layer == 0 and network.encoding is Encoding.ANALOG


def input_format(network: Network, layer: int) -> EventFormat:
    """Format of the events layer ``layer`` receives."""
    lay, widths = network.layers[layer], network.widths[layer]
    spike_max = network.layers[layer - 1].spike_max if layer > 0 else 1
    return layer_formats(lay, widths, analog=_analog(network, layer), input_spike_max=spike_max)[0]


def output_format(network: Network, layer: int) -> EventFormat:
    """Format of the events layer ``layer`` emits (the next layer's input)."""
    lay, widths = network.layers[layer], network.widths[layer]
    return layer_formats(lay, widths, analog=_analog(network, layer))[1]


@dataclass(frozen=True)
class Step:
    """One time step on an event stream: its events in stream order, then a marker.

    ``indices`` and ``values`` are ``int64`` arrays of equal length.
    """

    indices: np.ndarray
    values: np.ndarray
    busy: bool

    @property
    def n_events(self) -> int:
        return int(self.indices.size)

    def words(self, fmt: EventFormat) -> list[int]:
        """The step's payloads (events then marker) packed with ``fmt``."""
        out = [
            fmt.pack(marker=False, index=int(i), value=int(v))
            for i, v in zip(self.indices, self.values, strict=True)
        ]
        out.append(fmt.pack(marker=True, busy=self.busy))
        return out


@dataclass(frozen=True)
class BeatFormat:
    """Bit format of a wide beat: up to ``width = k ≥ 2`` events (``hw.cores.layouts.beat_layout``,
    a layer core's ``emit_width``). Fields from the least significant bit up: ``marker`` (1),
    ``busy`` (1), ``count`` (``k.bit_length()`` bits), ``k`` indices, ``k`` signed values; a
    marker beat has ``count = 0``, an event beat its events in slots ``0 … count-1`` and zeros in
    the others."""

    event: EventFormat
    width: int

    def __post_init__(self) -> None:
        if not isinstance(self.event, EventFormat):
            raise TypeError(f"event must be an EventFormat, not {self.event!r}")
        if isinstance(self.width, bool) or not isinstance(self.width, int) or self.width < 2:
            raise ValueError(f"a wide beat carries 2 or more events, not {self.width!r}")

    @property
    def count_width(self) -> int:
        return self.width.bit_length()

    @property
    def bits(self) -> int:
        """Total payload bits."""
        e = self.event
        return 2 + self.count_width + self.width * (e.index_width + e.value_width)

    def pack(
        self, *, marker: bool, events: tuple[tuple[int, int], ...] = (), busy: bool = False
    ) -> int:
        """The payload of a marker (``events`` empty) or of ``1 … k`` events ``(index, value)``."""
        e, k = self.event, self.width
        if marker and events:
            raise ValueError("a marker beat carries no events")
        if not marker and not 1 <= len(events) <= k:
            raise ValueError(f"an event beat carries 1..{k} events, not {len(events)}")
        word, pos = int(bool(marker)) | int(bool(busy) and marker) << 1, 2
        word |= len(events) << pos
        pos += self.count_width
        slots = list(events) + [(0, 0)] * (k - len(events))
        for index, _ in slots:
            word |= e.pack(marker=False, index=index) >> 1 << pos  # the index bits alone
            pos += e.index_width
        for _, value in slots:
            v = e.pack(marker=False, value=value) >> (1 + e.index_width)
            word |= (v & ((1 << e.value_width) - 1)) << pos
            pos += e.value_width
        return word

    def unpack(self, word: int) -> tuple[bool, tuple[tuple[int, int], ...], bool]:
        """``(marker, events, busy)`` of a payload integer (``events``: the ``count`` used
        slots)."""
        e, k = self.event, self.width
        marker, busy = bool(word & 1), bool(word >> 1 & 1)
        pos = 2
        count = word >> pos & ((1 << self.count_width) - 1)
        pos += self.count_width
        indices = [
            (word >> (pos + j * e.index_width)) & ((1 << e.index_width) - 1) for j in range(k)
        ]
        pos += k * e.index_width
        values = []
        for j in range(k):
            v = (word >> (pos + j * e.value_width)) & ((1 << e.value_width) - 1)
            values.append(v - (1 << e.value_width) if v >> (e.value_width - 1) else v)
        return marker, tuple(zip(indices[:count], values[:count], strict=True)), busy

    def beats(self, step: Step, lanes: int) -> list[tuple[tuple[int, int], ...] | None]:
        """The beats a layer core of ``lanes`` lanes sends for ``step``: per word
        (``index // lanes``) its spikes in chunks of ``k``, then the marker (``None``)."""
        out: list[tuple[tuple[int, int], ...] | None] = []
        idx, val = step.indices.tolist(), step.values.tolist()
        j = 0
        while j < len(idx):
            word, chunk = idx[j] // lanes, []
            while j < len(idx) and idx[j] // lanes == word and len(chunk) < self.width:
                chunk.append((idx[j], val[j]))
                j += 1
            out.append(tuple(chunk))
        out.append(None)
        return out

    def words(self, step: Step, lanes: int) -> list[int]:
        """:meth:`beats` packed."""
        return [
            self.pack(marker=True, busy=step.busy)
            if b is None
            else self.pack(marker=False, events=b)
            for b in self.beats(step, lanes)
        ]


def _step(row: np.ndarray, busy: bool) -> Step:
    idx = np.flatnonzero(row)
    return Step(indices=idx.astype(np.int64), values=row[idx].astype(np.int64), busy=bool(busy))


def output_steps(trace: Trace, layer: int) -> list[list[Step]]:
    """Per sample, the steps layer ``layer`` emits: ``0 … t_l`` (first step with busy 0)."""
    spikes, busy = trace.spikes[layer], trace.busy[:, :, layer]
    out = []
    for b in range(trace.batch):
        idle = np.flatnonzero(~busy[b])
        if idle.size == 0:
            raise ValueError(
                f"layer {layer} of sample {b} never reaches an idle step in the trace "
                f"({trace.n_steps} steps; capped run?)"
            )
        out.append([_step(spikes[b, t], busy[b, t]) for t in range(int(idle[0]) + 1)])
    return out


def input_steps(network: Network, inputs: np.ndarray, trace: Trace, layer: int) -> list[list[Step]]:
    """Per sample, the steps layer ``layer`` receives (see the module docstring)."""
    if layer > 0:
        return output_steps(trace, layer - 1)
    x = network.check_inputs(inputs)
    out = []
    for b in range(x.shape[0]):
        if network.encoding is Encoding.ANALOG:
            first = _step(x[b], bool(np.any(x[b])))
            steps = [first]
        else:
            n = x.shape[1]
            steps = [_step(x[b, t], bool(np.any(x[b, t])) or t < n - 1) for t in range(n)]
        if steps[-1].busy:
            steps.append(_step(np.zeros(network.layers[0].n_in, dtype=np.int64), False))
        out.append(steps)
    return out
