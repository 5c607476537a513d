"""A whole network in RTL: layer cores chained through stream FIFOs.

Architecture::

    i ─▶ LayerCore 0 ─▶ FIFO ─▶ LayerCore 1 ─▶ FIFO ─▶ … ─▶ LayerCore D-1 ─▶ o
                                                                         └──▶ done

Every layer core follows the step protocol of :mod:`hw.cores.layer_core`: it reads its input events
until an end-of-step marker, fires, emits its spikes and its own marker, and, once its upstream
is idle for good (a marker with ``busy = 0``), keeps stepping on its own until it is idle too,
then re-initialises for the next inference. Layers are therefore decoupled: layer ``l`` may work
on step ``t + 1`` (or on the next inference) while layer ``l + 1`` still integrates step ``t``;
the FIFOs (one step of spikes deep by default) take up the slack, so the throughput is what the
step-wise dependency allows. With ``buffered_input`` (pipeline presets 2 and 3) a FIFO also stores,
with each beat, the receiving core's first weight row ``index · W`` (``LayerCore`` ``row_input``),
computed from the sender's output register before the block RAM instead of behind it.

``done`` is high for one cycle when the last layer's marker with ``busy = 0`` leaves on ``o``: the
first step in which no layer was busy, the hardware form of SpikeZIP's termination rule. The next
inference's input events may follow on ``i`` at once, without reset or re-generation.

Counters (32 bits, wrapping, cumulative since reset) per layer — ``events`` (input events
consumed), ``spikes`` (output events; a wide beat counts its events), ``steps`` (output
markers), ``stalls`` (cycles the output was offered but not taken) — and for the network
``cycles`` and ``inferences`` are readable at any time; a host takes differences between two
reads. Read after the last ``done`` of a batch they give the batch's totals. Read at each
``done`` they give per-inference figures for the last layer
only: earlier layers may already be working on the next inference.

The ``probe`` output (optional) packs, from the least significant bit, per layer but the last one
bit "an output beat is transferred this cycle" and that beat's payload; for the last layer its
``o.valid`` and payload; then ``i.ready``. None of these bits depends combinationally on ``i.valid``
or ``o.ready`` (the layer cores' ``i.ready`` and ``o.valid`` depend on registers only), so a
testbench reads the whole vector once per cycle, before driving ``i`` and ``o.ready``, and knows
every transfer of the coming clock edge: spikes of every layer with cycle stamps.
"""

from __future__ import annotations

from collections.abc import Sequence

from amaranth.hdl import Cat, Module, Shape, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from spikezip.hw.cores.fifo import RegisteredFIFO
from spikezip.hw.cores.layer_core import LayerCore, event_layout
from spikezip.hw.model.cycle_model import Pipeline
from spikezip.hw.model.design import DesignParams, resolve_lanes
from spikezip.hw.model.events import EventFormat
from spikezip.hw.model.network_model import layer_timing
from spikezip.ir.network import Network

__all__ = ["COUNTERS", "NetworkCore", "probe_layout", "resolve_lanes", "stream_counters"]

#: Per-layer counters, in the order of the ``counters`` port.
COUNTERS = ("events", "spikes", "steps", "stalls")
COUNTER_WIDTH = 32


def stream_counters(m: Module, k: int, inp, out) -> list[Signal]:
    """The :data:`COUNTERS` of core ``k`` with input stream ``inp`` and output stream ``out``:
    input events taken, output events and markers sent, cycles the output waited.

    ``events`` counts one cycle late: a core's ``i.ready`` comes out of its sequencer's logic,
    and ``valid & ready`` straight into the enable of 32 flip-flops was the whole network's
    critical path; registered first, it is not. (A core takes its last event of an inference at
    least two cycles before its final marker, so a reading the cycle after ``done`` is the same.)
    The output side's handshakes are registers and a FIFO's ``~full``: counted as they happen."""
    regs = {n: Signal(COUNTER_WIDTH, name=f"{n}{k}") for n in COUNTERS}
    fire_in, fire_out = inp.valid & inp.ready, out.valid & out.ready
    took = Signal(name=f"took_event{k}")
    m.d.sync += took.eq(fire_in & ~inp.payload.marker)
    wide_in, wide_out = _has_count(inp), _has_count(out)
    if wide_in:  # a wide beat's events (the count registered with ``took``)
        took_count = Signal.like(inp.payload.count, name=f"took_count{k}")
        m.d.sync += took_count.eq(inp.payload.count)
    for name, cond in (
        ("events", took),
        ("spikes", fire_out & ~out.payload.marker),
        ("steps", fire_out & out.payload.marker),
        ("stalls", out.valid & ~out.ready),
    ):
        step = 1
        if name == "events" and wide_in:
            step = took_count
        elif name == "spikes" and wide_out:
            step = out.payload.count
        with m.If(cond):
            m.d.sync += regs[name].eq(regs[name] + step)
    return [regs[n] for n in COUNTERS]


def _has_count(port) -> bool:
    """The stream carries wide beats (a ``count`` of events per beat)."""
    return "count" in port.payload.shape().members


def probe_layout(formats: Sequence[EventFormat | int]) -> list[tuple[str, int, int]]:
    """``(name, offset, width)`` of every field of the probe vector (see the module docstring);
    ``formats``: each core's output format, or the bits of its output beat (a wide beat's)."""
    fields, offset = [], 0
    for k, fmt in enumerate(formats):
        width = fmt if isinstance(fmt, int) else fmt.width
        fields.append((f"fire{k}" if k < len(formats) - 1 else "out_valid", offset, 1))
        fields.append((f"beat{k}", offset + 1, width))
        offset += 1 + width
    fields.append(("in_ready", offset, 1))
    return fields


class NetworkCore(wiring.Component):
    """All layers of ``network`` chained through FIFOs (see the module docstring).

    Latency: per layer as in :class:`hw.cores.layer_core.LayerCore`, plus
    :data:`hw.model.cycle_model.REGISTERED_FIFO_LATENCY` (3) cycles per FIFO
    (:class:`hw.cores.fifo.RegisteredFIFO`: its output is the block RAM's register).
    Throughput: one input event per ``timing.slots`` cycles into the first layer
    (``W_0 = ceil(n_1 / lanes_0)``, or ``min_distance`` if more: 2 and 3 with the presets 2 and 3,
    :attr:`hw.model.cycle_model.LayerTiming.slots`); layers overlap across steps and inferences.

    Every parameter is checked before the component exists (in ``__new__``), so a rejected one
    leaves no unused design behind.

    Parameters
    ----------
    network : ir.Network
    params : hw.model.design.DesignParams, optional
        Lanes per layer, pipeline, storage and FIFO depth, validated once
        (:class:`hw.model.design.DesignParams`); or give them as the keywords below, which
        :meth:`DesignParams.coerce <hw.model.design.DesignParams.coerce>` turns into one (not
        both).
    lanes : int or sequence of int, optional
        Lanes per layer (one value for all, capped per layer, or one per layer); default 8
        capped at the widest layer.
    fifo_depth : int or None
        Entries of each inter-layer FIFO; default ``n_out + 2`` of the producing layer (a whole
        step of spikes and its marker).
    storage : hw.model.design.Storage, str or None
        Where every layer keeps membranes and tracers (default: by size, per layer).
    pipeline : hw.model.cycle_model.Pipeline or int, optional
        The register stages of every layer core, or a preset's depth (one of
        :data:`hw.model.cycle_model.PIPELINES`, default 1; see
        :class:`hw.model.cycle_model.Pipeline`).
    probe : bool
        Add the ``probe`` output for testbenches (a wide beat's whole payload per core).
    emit_width : int, optional
        Spikes per beat between the layers (:attr:`DesignParams.emit_width
        <hw.model.design.DesignParams.emit_width>`, default 1); the network's ``i`` and ``o``
        carry one event per beat at any width.
    serial_input : bool
        With ``emit_width > 1``: the receiving cores take a beat's events one pass each
        (through an unpacker) instead of in one shared pass — the slower alternative, kept for
        the comparison (``bench/bench_emit_width.py``).

    Members
    -------
    i : In(stream.Signature(event_layout(input format of layer 0)))
    o : Out(stream.Signature(event_layout(output format of the last layer)))
    done : Out(1)
    cycles, inferences : Out(32)
    counters : Out(32 · 4 · depth), per layer ``events, spikes, steps, stalls``
    probe : Out(probe_width), only with ``probe=True``
    """

    def __new__(
        cls,
        *,
        network: Network,
        params: DesignParams | None = None,
        lanes: int | Sequence[int] | None = None,
        fifo_depth: int | None = None,
        storage: str | None = None,
        pipeline: Pipeline | int | None = None,
        probe: bool = False,
        emit_width: int | None = None,
        serial_input: bool = False,
    ) -> NetworkCore:
        # Every parameter is checked before the object exists: Amaranth warns about a component
        # created but never elaborated, which a rejected one would otherwise be.
        if not isinstance(network, Network):
            raise TypeError(f"network must be an ir.Network, not {type(network).__name__}")
        checked = DesignParams.coerce(
            network,
            params,
            lanes=lanes,
            fifo_depth=fifo_depth,
            storage=storage,
            pipeline=pipeline,
            emit_width=emit_width,
        )
        self = super().__new__(cls, src_loc_at=1)
        self._params, self._serial = checked, bool(serial_input)
        return self

    def __init__(self, *, network: Network, probe: bool = False, **_: object) -> None:
        # (the parameters were checked by __new__ into self._params)
        self._network, self._probe = network, bool(probe)
        params = self._params
        self._cores = [
            LayerCore.for_network(
                network,
                k,
                lanes=params.lanes[k],
                storage=params.storage,
                pipeline=params.pipeline,
                row_input=self._row_input(k),
                **self._widths_of(k),
            )
            for k in range(network.depth)
        ]
        members = {
            "i": In(stream.Signature(event_layout(*self._widths(self.input_format)))),
            "o": Out(stream.Signature(event_layout(*self._widths(self.output_format)))),
            "done": Out(1),
            "cycles": Out(COUNTER_WIDTH),
            "inferences": Out(COUNTER_WIDTH),
            "counters": Out(COUNTER_WIDTH * len(COUNTERS) * network.depth),
        }
        if self._probe:
            members["probe"] = Out(self.probe_width)
        super().__init__(members)

    def _widths_of(self, k: int) -> dict[str, int]:
        """Layer ``k``'s ``emit_width`` and ``input_width`` when ``params.emit_width > 1``
        (:func:`hw.model.network_model.layer_timing`: wide beats between the layers only); no
        keyword at 1, so that the default builds today's cores."""
        width = self._params.emit_width
        if width == 1:
            return {}
        timing = layer_timing(self._network, self._params, k, serial=self._serial)
        return {
            "emit_width": timing.emit_width,
            "input_width": timing.input_width,
            "input_lanes": timing.input_lanes,
            "serial_input": timing.serial_input,
        }

    def _row_input(self, k: int) -> bool:
        """Layer ``k`` (after a FIFO) takes its beats' first weight rows from the FIFO, which
        stores them with the beats (:class:`LayerCore` ``row_input``): with the two-entry input
        buffer (``buffered_input``) and one event per beat."""
        one = self._widths_of(k).get("input_width", 1) == 1
        return k >= 1 and self._params.pipeline.buffered_input and one

    @staticmethod
    def _widths(fmt: EventFormat) -> tuple[int, int]:
        return fmt.index_width, fmt.value_width

    # -- facts ---------------------------------------------------------------------------------
    @property
    def network(self) -> Network:
        return self._network

    @property
    def params(self) -> DesignParams:
        """The design's knobs, as validated (:class:`hw.model.design.DesignParams`)."""
        return self._params

    @property
    def lanes(self) -> tuple[int, ...]:
        return self._params.lanes

    @property
    def pipeline(self) -> int | None:
        """The preset depth of every layer core's pipeline (0–3), ``None`` for another one
        (:attr:`LayerCore.pipeline <hw.cores.layer_core.LayerCore.pipeline>`)."""
        return self._params.depth

    @property
    def cores(self) -> tuple[LayerCore, ...]:
        """The layer cores (their timing, widths and formats)."""
        return tuple(self._cores)

    @property
    def input_format(self) -> EventFormat:
        return self._cores[0].input_format

    @property
    def output_format(self) -> EventFormat:
        return self._cores[-1].output_format

    @property
    def formats(self) -> tuple[EventFormat, ...]:
        """Output event format of every layer."""
        return tuple(c.output_format for c in self._cores)

    def fifo_depths(self) -> tuple[int, ...]:
        """Depth of the FIFO after each layer but the last."""
        return tuple(self._params.fifo_depth or c.layer.n_out + 2 for c in self._cores[:-1])

    @property
    def beat_widths(self) -> tuple[int, ...]:
        """Bits of every core's output beat (its event format's, or a wide beat's)."""
        return tuple(Shape.cast(c.o.payload.shape()).width for c in self._cores)

    @property
    def emit_widths(self) -> tuple[int, ...]:
        """Events per output beat of every core."""
        return tuple(c.emit_width for c in self._cores)

    @property
    def probe_width(self) -> int:
        _, offset, width = probe_layout(self.beat_widths)[-1]
        return offset + width

    # -- RTL -----------------------------------------------------------------------------------
    def elaborate(self, platform):
        m = Module()
        cores = self._cores
        for k, core in enumerate(cores):
            m.submodules[f"layer{k}"] = core
        wiring.connect(m, wiring.flipped(self.i), cores[0].i)
        # presets 2 and 3: the FIFO's "not empty" a register (hw.cores.fifo)
        fast = {"registered_empty": True} if self._params.pipeline.buffered_input else {}
        for k, depth in enumerate(self.fifo_depths()):
            width = Shape.cast(cores[k].o.payload.shape()).width
            nxt = cores[k + 1]
            if not nxt.row_input:
                m.submodules[f"fifo{k}"] = q = RegisteredFIFO(width=width, depth=depth, **fast)
                wiring.connect(m, cores[k].o, q.w_stream)
                wiring.connect(m, q.r_stream, nxt.i)
                continue
            # the receiver's first weight row stored with each beat, computed from the sender's
            # output register (no carry chain behind the FIFO's block RAM)
            row_width = Shape.cast(nxt.row_shape).width
            m.submodules[f"fifo{k}"] = q = RegisteredFIFO(
                width=width + row_width, depth=depth, **fast
            )
            out = cores[k].o
            row = Signal(nxt.row_shape, name=f"row{k + 1}")
            m.d.comb += row.eq(nxt.row_of(out.payload.index))
            m.d.comb += [
                q.w_stream.valid.eq(out.valid),
                out.ready.eq(q.w_stream.ready),
                q.w_stream.payload.eq(Cat(out.payload.as_value(), row)),
                nxt.i.valid.eq(q.r_stream.valid),
                q.r_stream.ready.eq(nxt.i.ready),
                nxt.i.payload.eq(q.r_stream.payload[:width]),
                nxt.row.eq(q.r_stream.payload[width:]),
            ]
        wiring.connect(m, cores[-1].o, wiring.flipped(self.o))

        last = self.o
        m.d.comb += self.done.eq(last.valid & last.ready & last.payload.marker & ~last.payload.busy)
        m.d.sync += self.cycles.eq(self.cycles + 1)
        with m.If(self.done):
            m.d.sync += self.inferences.eq(self.inferences + 1)

        counters, probe = [], []
        for k, core in enumerate(cores):
            out = core.o
            counters.extend(stream_counters(m, k, core.i, out))
            fire_out = out.valid & out.ready
            probe.extend([fire_out if k < len(cores) - 1 else out.valid, out.payload.as_value()])
        m.d.comb += self.counters.eq(Cat(*counters))
        if self._probe:
            probe.append(self.i.ready)
            m.d.comb += self.probe.eq(Cat(*probe))
        return m
