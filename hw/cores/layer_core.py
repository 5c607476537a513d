"""Layer core: one fully-connected ST-BIF layer as an event-driven, ``lanes``-wide datapath.

Architecture (one word operation per cycle flows left to right)::

    i ─▶ Sequencer ──ops──▶ Accumulator ──commands──▶ NeuronArray ──words──▶ SpikeEmitter ─▶ o
         (input reg,        (weight memory,          (membranes,             (2-bank spike
          step FSM)          × or ± per lane)         tracers, P lanes)       queue, serialiser)
             ▲                                                                   │
             └──────────────── sweep done + busy, marker sent ◀──────────────────┘

Protocol (the contract with the other layers and with the golden trace, :mod:`hw.model.events`):

* The stream payload is :func:`event_layout`: ``marker``, ``index``, ``value`` (signed), ``busy``.
* Membranes start at ``H + B`` (bias once) after reset and at the start of every inference;
  tracers at 0.
* A step: every input event ``(j, v)`` of the step adds ``v·W[:, j]`` to the membranes (``W``
  cycles per event, ``W = ceil(n_out / lanes)``), until the input marker; then a sweep updates all
  neurons and the core emits ``(i, ±1)`` for every spike in ascending ``i``, then its own marker
  with ``busy`` = input marker's busy OR any spike this step OR (step 0 and any bias ≠ 0), which is
  ``trace.busy[b, t, layer]`` of the reference.
* An input marker with ``busy = 0`` means the input is idle for good: the core finishes that step
  and, while its own marker is busy, runs further steps on its own (consuming nothing) until it
  emits a marker with ``busy = 0``. Then it re-initialises and reads the next inference.
* ``valid``/``ready`` are respected on both sides: idle input cycles are fine, and backpressure on
  ``o`` stalls the core once a third step's sweep is due (the emitter buffers two steps).
  ``i.ready`` and ``o.valid`` depend on registers only, never combinationally on the other side.

Timing (no backpressure, input always valid): :mod:`hw.model.cycle_model` gives the exact cycle of
every output event and marker. An input event costs one pass over the ``W`` words (``timing.slots``
cycles: ``W``, padded to ``min_distance`` — 2 or 3 with the pipeline presets 2 and 3 — when ``W`` is
smaller) with no bubbles, also back to back on the same word (the neuron array forwards its
read-modify-write); a step costs one pass more for its sweep, the input marker sharing the sweep's
first cycle; the spikes of a step leave while the next steps accumulate and sweep. The core's
accumulate phase so does up to ``lanes`` synaptic operations per cycle; the overheads are one sweep
per step, one pass of re-initialisation per inference, and the pipeline latency
(``timing.SPIKE_DELAY``, ``MARKER_DELAY``, ``RESULT_DELAY``) where a step waits for the one before.

Wide beats (``emit_width``/``input_width`` ``k > 1``, issue 16 §3): ``o`` carries up to ``k``
spikes of one fired word per beat (:func:`hw.cores.layouts.beat_layout`; a word with ``n`` spikes
costs ``ceil(n / k)`` beats, the marker its own), and a core taking such beats on ``i`` reads ``k``
weight rows per slot and adds their products, so the beat's events share one pass (or, with
``serial_input``, an unpacker hands them on one pass each). The cycle model follows both
(:attr:`hw.model.cycle_model.LayerTiming.emit_width`, ``input_width``).

The register stages are the switches of one :class:`hw.model.cycle_model.Pipeline` (presets 0–3);
the core builds one :class:`hw.model.cycle_model.LayerTiming` from it and hands it to every block.
Each block reports its ``latency``, and the timing's delays are their sums:

=============================  =========  =========  =========  =========
latency (cycles)               preset 0   preset 1   preset 2   preset 3
=============================  =========  =========  =========  =========
Sequencer (input register)     1          1          1          1
Accumulator                    2          2          5          5
NeuronArray                    1          2          3          3
SpikeEmitter                   7          7          7          7
SPIKE_DELAY = MARKER_DELAY     10         11         15         15
RESULT_DELAY                   6          7          11         11
=============================  =========  =========  =========  =========
"""

from __future__ import annotations

import numpy as np
from amaranth.hdl import Module, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from spikezip.hw.cores.accumulator import WEIGHT_BANK_DEPTH, Accumulator, weight_words
from spikezip.hw.cores.emitter import SpikeEmitter
from spikezip.hw.cores.layouts import event_layout, op_layout, state_layout, stream_layout
from spikezip.hw.cores.neuron_array import NeuronArray, Storage, check_storage
from spikezip.hw.cores.sequencer import Sequencer, first_row
from spikezip.hw.cores.unpacker import Unpacker
from spikezip.hw.model.cycle_model import LayerTiming, Pipeline
from spikezip.hw.model.events import EventFormat, layer_formats
from spikezip.hw.model.input_map import InputMap
from spikezip.hw.model.vit_sites import SiteSpec
from spikezip.ir.network import Encoding, Layer, LayerWidths, Network

__all__ = ["LayerCore", "ProbeSignature", "event_layout"]


class ProbeSignature(wiring.Signature):
    """One fired word per cycle: ``valid``, its number ``word``, its ``state`` after the update.

    Members
    -------
    valid : Out(1)
    word : Out(unsigned(max(1, ceil(log2(words)))))
    state : Out(state_layout)
    """

    def __init__(self, *, words: int, lanes: int, membrane_width: int, tracer_width: int):
        super().__init__(
            {
                "valid": Out(1),
                "word": Out(unsigned(max(1, (words - 1).bit_length()))),  # no 0-bit ports
                "state": Out(
                    state_layout(
                        lanes=lanes, membrane_width=membrane_width, tracer_width=tracer_width
                    )
                ),
            }
        )


def _layout(fmt: EventFormat, width: int = 1) -> data.StructLayout:
    return stream_layout(fmt.index_width, fmt.value_width, width)


class LayerCore(wiring.Component):
    """An event-driven ST-BIF (or graded ST-BIF) layer (see the module docstring for protocol
    and architecture).

    Latency: an input marker consumed in cycle ``x`` (one cycle after it was accepted on ``i``
    when the core was waiting for it) gives the output marker in cycle
    ``x + W - 1 + marker_delay`` at the earliest; the spikes of word ``c`` leave from
    ``x + c + spike_delay`` (the sums of the blocks' latencies, see the module docstring).
    Throughput: ``timing.slots`` cycles per input event and per sweep; one output event per
    cycle.

    Parameters
    ----------
    layer : ir.Layer
        The layer; weights, bias, thresholds and bounds are built into the RTL.
    input_bounds : tuple of int
        Range of the cumulative presynaptic value (``network.input_bounds`` for the first layer,
        ``(n, p)`` of the previous layer otherwise); with ``analog`` it gives the widths.
    analog : bool
        Analog input (first layer of an analog network): events carry integer values and the
        datapath multiplies. Otherwise events carry spikes (±1, or ±2^k from graded neurons) and
        the datapath adds (the weight shifted by k).
    lanes : int
        Neurons processed per cycle, ``P ≥ 1``.
    storage : Storage or str, optional
        Where membranes and tracers live; default by size
        (:func:`hw.cores.neuron_array.default_storage`).
    pipeline : hw.model.cycle_model.Pipeline or int
        The register stages, or a preset's depth (0–3, default 1; see
        :class:`hw.model.cycle_model.Pipeline`): deeper presets cost cycles of latency per step for
        a higher fmax, and presets 2 and 3 idle slots when ``W`` is below 2 or 3.
    weight_bank_depth : int
        Words per weight-memory bank with ``banked_weights``
        (:class:`hw.cores.accumulator.WeightRead`).
    probe : bool
        Add the ``probe`` output (membranes and tracers of each fired word) for testbenches.
    src_loc_at : int
        Stack frames between the caller and this constructor (Amaranth's convention).
    input_spike_max : int
        Largest ``|s|`` of an input spike: 1 for ST-BIF inputs, the producer's ``spike_max``
        (a power of two) for graded ones (:meth:`for_network` fills it in). Output spikes are
        ``±2^k`` when ``layer.neuron`` is graded (docs/graded.md).
    emit_width : int
        Spikes per output beat, ``k`` (default 1; :attr:`LayerTiming.emit_width
        <hw.model.cycle_model.LayerTiming.emit_width>`): above 1 ``o`` carries up to ``k``
        spikes of one fired word per beat (``hw.cores.layouts.beat_layout``).
    input_width : int
        Events per input beat (default 1): above 1 ``i`` is a ``beat_layout`` stream whose
        beat's events share one pass (``k`` weight reads and products per slot, their sum the
        drive), or with ``serial_input`` an :class:`hw.cores.unpacker.Unpacker` hands the
        sequencer one event per handshake, one pass each.
    input_lanes : int
        Lanes of the sending core (how its beats group the events; the cycle model's only).
    serial_input : bool
        See ``input_width``.
    row_input : bool
        The ``row`` input: the sender gives each input beat's first weight row
        (:meth:`row_of`), so that the core's two-entry input buffer loads it from the sender's
        register or memory with no carry chain in between
        (:class:`hw.cores.network_core.NetworkCore` stores it in the FIFO with the beat).
        Needs a pipeline with ``buffered_input`` and one event per beat, no input map; no cycle
        changes.

    Members
    -------
    i : In(stream.Signature(event_layout(input_format)))
    o : Out(stream.Signature(event_layout(output_format)))
    row : In(row_shape)
        Only with ``row_input=True``: ``row_of(i.payload.index)``, valid with ``i``.
    probe : Out(ProbeSignature)
        Only with ``probe=True``: valid for one cycle per fired word, in the cycle the word is
        updated (before its spikes leave on ``o``).
    """

    def __init__(
        self,
        *,
        layer: Layer,
        input_bounds: tuple[int, int],
        analog: bool,
        lanes: int,
        storage: Storage | str | None = None,
        pipeline: Pipeline | int = 1,
        weight_bank_depth: int = WEIGHT_BANK_DEPTH,
        probe: bool = False,
        src_loc_at: int = 0,
        site: SiteSpec | None = None,
        input_spike_max: int = 1,
        emit_width: int = 1,
        input_width: int = 1,
        input_lanes: int = 1,
        serial_input: bool = False,
        row_input: bool = False,
    ) -> None:
        self._site = site
        if not isinstance(layer, Layer):
            raise TypeError(f"layer must be an ir.Layer, not {type(layer).__name__}")
        bounds = tuple(input_bounds) if hasattr(input_bounds, "__iter__") else ()
        if len(bounds) != 2 or not all(isinstance(b, int) for b in bounds):
            raise TypeError(f"input_bounds must be a pair of integers, not {input_bounds!r}")
        if bounds[0] > bounds[1]:
            raise ValueError(f"input_bounds must satisfy lo ≤ hi, not {bounds!r}")
        for name, flag in (("analog", analog), ("probe", probe), ("row_input", row_input)):
            if not isinstance(flag, bool):
                raise TypeError(f"{name} must be a bool, not {flag!r}")
        self._layer, self._analog, self._probe = layer, analog, probe
        self._input_bounds = bounds
        self._timing = LayerTiming(
            n_out=layer.n_out,
            lanes=lanes,
            pipeline=pipeline,
            emit_width=emit_width,
            input_width=input_width,
            input_lanes=input_lanes,
            serial_input=serial_input,
        )
        if site is not None and (emit_width != 1 or input_width != 1):
            raise ValueError("a mapped (ViT or conv) core sends and takes one event per beat")
        if (
            not isinstance(weight_bank_depth, int)
            or weight_bank_depth < 2
            or weight_bank_depth & (weight_bank_depth - 1)
        ):
            raise ValueError(
                f"weight_bank_depth must be a power of two ≥ 2, not {weight_bank_depth!r}"
            )
        self._weight_bank_depth = weight_bank_depth
        if isinstance(input_spike_max, bool) or not isinstance(input_spike_max, int):
            raise TypeError(f"input_spike_max must be an integer, not {input_spike_max!r}")
        if input_spike_max < 1 or input_spike_max & (input_spike_max - 1):
            raise ValueError(f"input_spike_max must be a power of two ≥ 1, not {input_spike_max}")
        if site is None:
            self._widths = layer.widths(*bounds, analog=analog, spike_max=input_spike_max)
            self._formats = layer_formats(
                layer, self._widths, analog=analog, input_spike_max=input_spike_max
            )
        else:
            if site.input_map.lanes != lanes:
                raise ValueError(f"the site's map is for {site.input_map.lanes} lanes, not {lanes}")
            self._widths = site.widths
            self._formats = (site.input_format, site.output_format)
        self._storage = check_storage(storage, self._timing.words)
        self._row_input = row_input
        if row_input and self._timing.input_entries(self.input_map) != 2:
            raise ValueError(
                "row_input needs the two-entry input buffer (a pipeline with buffered_input, "
                "one event per beat, no input map)"
            )
        members = {
            "i": In(stream.Signature(_layout(self.input_format, self._timing.input_width))),
            "o": Out(stream.Signature(_layout(self.output_format, self._timing.emit_width))),
        }
        if row_input:  # the sender's first_row(index, W) of the beat on ``i``
            members["row"] = In(self.row_shape)
        if probe:
            members["probe"] = Out(
                ProbeSignature(
                    words=self.words,
                    lanes=self.lanes,
                    membrane_width=self._widths.membrane,
                    tracer_width=self._widths.tracer,
                )
            )
        super().__init__(members, src_loc_at=1 + src_loc_at)

    @classmethod
    def for_network(cls, network: Network, index: int, **kwargs) -> LayerCore:
        """The core of ``network.layers[index]`` (its input bounds and encoding filled in)."""
        if not isinstance(network, Network):
            raise TypeError(f"network must be an ir.Network, not {type(network).__name__}")
        if not isinstance(index, int) or not 0 <= index < network.depth:
            raise ValueError(f"index must be an integer in [0, {network.depth - 1}], not {index!r}")
        spike_max = 1  # the network's input spikes are ternary
        if index == 0:
            bounds = network.input_bounds
        else:
            prev = network.layers[index - 1]
            bounds, spike_max = (prev.neg_bound, prev.pos_bound), prev.spike_max
        analog = index == 0 and network.encoding is Encoding.ANALOG
        return cls(
            layer=network.layers[index],
            input_bounds=bounds,
            analog=analog,
            src_loc_at=1,
            input_spike_max=spike_max,
            **kwargs,
        )

    @classmethod
    def for_site(cls, site: SiteSpec, **kwargs) -> LayerCore:
        """The core of one transformer site (:func:`hw.model.vit_sites.site_spec`): its neurons,
        exact widths and formats, and its input map (``lanes`` must be the map's)."""
        if not isinstance(site, SiteSpec):
            raise TypeError(
                f"site must be a hw.model.vit_sites.SiteSpec, not {type(site).__name__}"
            )
        kwargs.setdefault("lanes", site.input_map.lanes)
        lo, hi = site.widths.input_lo, site.widths.input_hi
        return cls(
            layer=site.neurons,
            input_bounds=(lo, hi),
            analog=site.analog,
            site=site,
            src_loc_at=1,
            **kwargs,
        )

    # -- facts ---------------------------------------------------------------------------------
    @property
    def site(self) -> SiteSpec | None:
        """The transformer site of a mapped core, else ``None``."""
        return self._site

    @property
    def input_map(self) -> InputMap | None:
        return None if self._site is None else self._site.input_map

    @property
    def layer(self) -> Layer:
        return self._layer

    @property
    def input_bounds(self) -> tuple[int, int]:
        return self._input_bounds

    @property
    def analog(self) -> bool:
        return self._analog

    @property
    def widths(self) -> LayerWidths:
        """Exact widths of the layer (:meth:`ir.Layer.widths`)."""
        return self._widths

    @property
    def timing(self) -> LayerTiming:
        """Geometry and pipeline constants, shared with :mod:`hw.model.cycle_model`."""
        return self._timing

    @property
    def lanes(self) -> int:
        return self._timing.lanes

    @property
    def emit_width(self) -> int:
        """Spikes per output beat (:attr:`LayerTiming.emit_width
        <hw.model.cycle_model.LayerTiming.emit_width>`)."""
        return self._timing.emit_width

    @property
    def input_width(self) -> int:
        """Events per input beat."""
        return self._timing.input_width

    @property
    def words(self) -> int:
        """``W = ceil(n_out / lanes)``."""
        return self._timing.words

    @property
    def pipeline(self) -> int | None:
        """The depth of the preset the core's pipeline is (0–3), ``None`` for another one; the
        switches themselves are ``timing.pipeline``."""
        return self._timing.pipeline.depth

    @property
    def storage(self) -> Storage:
        return self._storage

    @property
    def input_format(self) -> EventFormat:
        return self._formats[0]

    @property
    def output_format(self) -> EventFormat:
        return self._formats[1]

    @property
    def cycles_per_event(self) -> int:
        """Cycles one input event occupies the datapath (``W``)."""
        return self._timing.cycles_per_event

    @property
    def sweep_cycles(self) -> int:
        """Cycles of a step's fire sweep (``W``)."""
        return self._timing.sweep_cycles

    @property
    def init_cycles(self) -> int:
        """Cycles of a re-initialisation (``W``)."""
        return self._timing.init_cycles

    @property
    def spike_delay(self) -> int:
        """Cycles from a word's sweep slot to the earliest cycle its first spike leaves."""
        return self._timing.SPIKE_DELAY

    @property
    def marker_delay(self) -> int:
        """Cycles from the last sweep slot to the earliest cycle the marker leaves."""
        return self._timing.MARKER_DELAY

    @property
    def result_delay(self) -> int:
        """Cycles from the last sweep slot to the earliest slot that depends on its busy flag."""
        return self._timing.RESULT_DELAY

    @property
    def row_input(self) -> bool:
        """The core takes each input beat's first weight row on ``row`` (``row_input``)."""
        return self._row_input

    @property
    def row_shape(self):
        """Shape of an input beat's first weight row (``index · W``, the ``row`` input)."""
        fmt = self.input_format
        return op_layout(
            words=self.words,
            index_width=fmt.index_width,
            value_width=fmt.value_width,
            first_row=True,
        ).members["first"]

    def row_of(self, index):
        """``index · W``, the first weight row of an event on ``index`` (what ``row`` takes)."""
        return first_row(index, self.words)

    @property
    def buffered_steps(self) -> int:
        """Steps whose spikes the emitter holds at once (a sweep waits while both are taken)."""
        return 2

    @property
    def n_in(self) -> int:
        """Input indices the core reads (a mapped core's: its map's)."""
        return self._layer.n_in if self._site is None else self._site.input_map.n_in

    def weight_table(self) -> np.ndarray:
        """The weight memory, ``int64 [depth, lanes]`` (address ``j·W + c``; a mapped core's:
        its map's table, address ``row·span + offset``)."""
        if self._site is not None:
            return self._site.input_map.table
        return weight_words(self._layer, self.lanes)

    @property
    def weight_bits(self) -> int:
        """Bits of the weight memory."""
        if self._site is not None:
            return self._site.input_map.table.size * self._widths.weight
        return self._layer.n_in * self.words * self.lanes * self._widths.weight

    def elaborate(self, platform):
        m = Module()
        layer, fmt, timing = self._layer, self.input_format, self._timing
        m.submodules.sequencer = seq = Sequencer(
            timing=timing,
            index_width=fmt.index_width,
            value_width=fmt.value_width,
            has_bias=bool(layer.bias.any()),
            input_map=self.input_map,
            row_input=self._row_input,
        )
        if self._row_input:
            m.d.comb += seq.row.eq(self.row)
        m.submodules.synapses = syn = Accumulator(
            layer=layer,
            widths=self._widths,
            analog=self._analog,
            timing=timing,
            index_width=fmt.index_width,
            value_width=fmt.value_width,
            bank_depth=self._weight_bank_depth,
            input_map=self.input_map,
        )
        m.submodules.neurons = neurons = NeuronArray(
            layer=layer,
            widths=self._widths,
            timing=timing,
            storage=self._storage,
            drive_width=syn.drive_width,
        )
        m.submodules.emitter = emitter = SpikeEmitter(
            timing=timing, value_width=self.output_format.value_width
        )
        if not timing.unpacks:
            wiring.connect(m, wiring.flipped(self.i), seq.i)
        else:
            m.submodules.unpacker = unpack = Unpacker(
                index_width=fmt.index_width, value_width=fmt.value_width, width=timing.input_width
            )
            wiring.connect(m, wiring.flipped(self.i), unpack.i)
            wiring.connect(m, unpack.o, seq.i)
        wiring.connect(m, seq.o, syn.i)
        wiring.connect(m, syn.o, neurons.i)
        wiring.connect(m, neurons.o, emitter.i)
        wiring.connect(m, emitter.o, wiring.flipped(self.o))
        wiring.connect(m, emitter.status, seq.status)
        if self._probe:
            m.d.comb += [
                self.probe.valid.eq(neurons.o.valid),
                self.probe.word.eq(neurons.o.payload.word),
                self.probe.state.eq(neurons.state),
            ]
        return m
