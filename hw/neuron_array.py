"""ST-BIF neuron array: ``lanes`` parallel lanes of the integer update of spec §2.4.

The ``n_out`` neurons of a layer are stored as ``words = ceil(n_out / lanes)`` words of ``lanes``
neurons each (lane ``k`` of word ``c`` is neuron ``c·lanes + k``; the lanes past ``n_out`` of the
last word are padding that holds ``U = 0`` and never fires). Each word holds the membranes ``U``
(signed, the exact width of :meth:`ir.Layer.widths`, never saturating) and tracers ``A``.

The array is a two-stage read-modify-write pipeline over the words, one word operation per cycle:

* stage 0: the command arrives; the word's state (and per-neuron constants) are read;
* stage 1: the lanes update the word and write it back; fired words leave on ``o``.

A command's read sees the write of the command just before it (the state store is transparent,
see :class:`StateStore`), so any sequence of commands — the same word back to back included —
runs without bubbles and gives the result of executing them one after another.

Trade-off: the state lives in registers when there are few words (no memory block, a small read
multiplexer) and in a memory with a transparent synchronous read port otherwise; see
:class:`Storage`. Both behave identically, cycle for cycle.
"""

from __future__ import annotations

from enum import StrEnum

import numpy as np
from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.cycle_model import LayerTiming
from hw.layouts import Op, command_layout, spike_word_layout, state_layout
from ir.network import Layer, LayerWidths

__all__ = [
    "NeuronArray",
    "NeuronArrayTop",
    "NeuronLanes",
    "StateStore",
    "Storage",
    "default_storage",
]

#: Largest number of words kept in registers by default.
REGISTER_WORDS_MAX = 4


class Storage(StrEnum):
    """Where a layer's membranes and tracers live."""

    #: one register per word, a read multiplexer, forwarding of the write in flight
    REGISTERS = "registers"
    #: a ``lib.memory.Memory`` with a synchronous read port transparent for its write port
    MEMORY = "memory"


def default_storage(words: int) -> Storage:
    """Registers up to :data:`REGISTER_WORDS_MAX` words, a memory beyond."""
    return Storage.REGISTERS if words <= REGISTER_WORDS_MAX else Storage.MEMORY


def check_storage(storage: Storage | str | None, words: int) -> Storage:
    """``storage`` as a :class:`Storage` (``None`` picks :func:`default_storage`)."""
    if storage is None:
        return default_storage(words)
    try:
        return Storage(storage)
    except ValueError:
        valid = ", ".join(repr(s.value) for s in Storage)
        raise ValueError(f"storage must be one of {valid} or None, not {storage!r}") from None


class StateStore(wiring.Component):
    """``depth`` words with a transparent synchronous read port and a write port.

    Latency 1: ``rdata`` in cycle ``x + 1`` is word ``raddr`` of cycle ``x`` *after* the write of
    cycle ``x`` (when ``wen`` and ``waddr == raddr``, the written data is forwarded).
    Throughput: one read and one write per cycle. The words start at ``init`` (registers: also
    on reset; memory: at power-on only).

    Parameters
    ----------
    shape : shape-castable
        Shape of a word.
    depth : int
        Number of words (≥ 1).
    init : sequence
        Initial value of every word (constant-castable to ``shape``).
    storage : Storage
        Registers or memory.

    Members
    -------
    raddr : In(range(depth))
    rdata : Out(shape)
    waddr : In(range(depth))
    wen : In(1)
    wdata : In(shape)
    """

    def __init__(self, *, shape, depth: int, init, storage: Storage) -> None:
        if not isinstance(depth, int) or depth < 1:
            raise ValueError(f"depth must be a positive integer, not {depth!r}")
        init = list(init)
        if len(init) != depth:
            raise ValueError(f"init must hold {depth} words, not {len(init)}")
        self._shape, self._depth, self._init = shape, depth, init
        self._storage = Storage(storage)
        addr = unsigned(max(0, (depth - 1).bit_length()))
        super().__init__(
            {
                "raddr": In(addr),
                "rdata": Out(shape),
                "waddr": In(addr),
                "wen": In(1),
                "wdata": In(shape),
            }
        )

    @property
    def depth(self) -> int:
        return self._depth

    @property
    def storage(self) -> Storage:
        return self._storage

    def elaborate(self, platform):
        m = Module()
        if self._storage is Storage.MEMORY:
            m.submodules.mem = mem = memory.Memory(
                shape=self._shape, depth=self._depth, init=self._init
            )
            wp = mem.write_port()
            rp = mem.read_port(transparent_for=(wp,))
            m.d.comb += [
                wp.addr.eq(self.waddr),
                wp.en.eq(self.wen),
                wp.data.eq(self.wdata),
                rp.addr.eq(self.raddr),
                self.rdata.eq(rp.data),
            ]
            return m
        regs = [
            Signal(self._shape, init=value, name=f"word{k}") for k, value in enumerate(self._init)
        ]
        rdata = Signal(self._shape, init=self._init[0], name="rdata_reg")
        m.d.comb += self.rdata.eq(rdata)
        for k, reg in enumerate(regs):
            with m.If(self.wen & (self.waddr == k)):
                m.d.sync += reg.eq(self.wdata)
        with m.If(self.wen & (self.waddr == self.raddr)):
            m.d.sync += rdata.eq(self.wdata)  # forward the write in flight
        with m.Else():
            with m.Switch(self.raddr):
                for k, reg in enumerate(regs):
                    with m.Case(k):
                        m.d.sync += rdata.eq(reg)
        return m


class NeuronLanes(wiring.Component):
    """``lanes`` combinational ST-BIF lanes (spec §2.4) applying one :class:`Op` to a word.

    Per lane, with ``U1 = U + drive``:

    * ``INTEGRATE``: ``U' = U1``, ``A' = A``, no spike;
    * ``FIRE``: ``s = +1`` if ``U1 ≥ Θ and A < p``, ``-1`` if ``U1 < 0 and A > n`` (strict),
      else 0; ``A' = A + s``; ``U' = U1 - s·Θ``;
    * ``INIT``: ``U' = initial``, ``A' = 0``, no spike.

    Latency 0 (combinational). ``active`` is 1 when a lane spikes or has a non-zero drive.

    Parameters
    ----------
    layer : ir.Layer
        Gives the tracer bounds ``n``, ``p``.
    widths : ir.network.LayerWidths
        Membrane, tracer, drive and threshold widths.
    lanes : int
    drive_width : int, optional
        Signed bits of a drive; ``widths.drive`` by default.

    Members
    -------
    op : In(Op)
    membranes, tracers, drive, thresholds, initial : In(ArrayLayout(..., lanes))
    spikes, next_membranes, next_tracers : Out(ArrayLayout(..., lanes))
    active : Out(1)
    """

    def __init__(
        self, *, layer: Layer, widths: LayerWidths, lanes: int, drive_width: int | None = None
    ) -> None:
        self._layer, self._widths = layer, widths
        self._timing = LayerTiming(n_out=layer.n_out, lanes=lanes)
        m_, t_ = signed(widths.membrane), signed(widths.tracer)
        drive_width = widths.drive if drive_width is None else drive_width

        def arr(shape):
            return data.ArrayLayout(shape, lanes)

        super().__init__(
            {
                "op": In(Op),
                "membranes": In(arr(m_)),
                "tracers": In(arr(t_)),
                "drive": In(arr(signed(drive_width))),
                "thresholds": In(arr(unsigned(widths.threshold))),
                "initial": In(arr(m_)),
                "spikes": Out(arr(signed(2))),
                "next_membranes": Out(arr(m_)),
                "next_tracers": Out(arr(t_)),
                "active": Out(1),
            }
        )

    @property
    def layer(self) -> Layer:
        return self._layer

    @property
    def lanes(self) -> int:
        return self._timing.lanes

    def elaborate(self, platform):
        m = Module()
        n, p = self._layer.neg_bound, self._layer.pos_bound
        fire = self.op == Op.FIRE
        init = self.op == Op.INIT
        active = []
        for k in range(self.lanes):
            u, a, theta = self.membranes[k], self.tracers[k], self.thresholds[k]
            d = self.drive[k]
            # Three sums of U in parallel, each one carry chain after the state read: the drive
            # and threshold are registers, so d ± Θ settle while the state is read.
            u1 = Signal(signed(self._widths.membrane), name=f"u1_{k}")
            d_minus = Signal.like(d - theta, name=f"d_minus{k}")
            d_plus = Signal.like(d + theta, name=f"d_plus{k}")
            u1_minus = Signal.like(u + d_minus, name=f"u1_minus{k}")  # U1 - Θ, exact width
            u1_plus = Signal.like(u + d_plus, name=f"u1_plus{k}")
            pos = Signal(name=f"pos{k}")
            neg = Signal(name=f"neg{k}")
            m.d.comb += [
                d_minus.eq(d - theta),
                d_plus.eq(d + theta),
                u1.eq(u + d),
                u1_minus.eq(u + d_minus),
                u1_plus.eq(u + d_plus),
                # U1 ≥ Θ ⇔ U1 - Θ ≥ 0 (U1 never overflows its width: exact widths)
                pos.eq(fire & ~u1_minus[-1] & (a < p)),
                neg.eq(fire & u1[-1] & (a > n)),
                self.spikes[k].eq(Mux(neg, -1, pos)),
                self.next_membranes[k].eq(
                    Mux(init, self.initial[k], Mux(pos, u1_minus, Mux(neg, u1_plus, u1)))
                ),
                self.next_tracers[k].eq(Mux(init, 0, Mux(pos, a + 1, Mux(neg, a - 1, a)))),
            ]
            active += [pos, neg, self.drive[k] != 0]
        m.d.comb += self.active.eq(_any(active))
        return m


def _any(bits):
    out = 0
    for b in bits:
        out = out | b
    return out


class NeuronArray(wiring.Component):
    """The ``n_out`` ST-BIF neurons of a layer, updated ``lanes`` at a time.

    Every cycle it takes one word command on ``i`` (``INTEGRATE``: ``U += drive``; ``FIRE``: the
    full step update ``U += drive`` then fire; ``INIT``: ``U = H + B``, ``A = 0``) for word
    ``word`` (neurons ``word·lanes …``). Standalone, a time step is one ``FIRE`` command per word
    carrying that step's drive (``Σ w·s``, bias excluded: the bias is in ``H + B``), in any order;
    a run starts with one ``INIT`` per word.

    Latency 1: a ``FIRE`` command in cycle ``x`` leaves on ``o`` (spikes) and ``state`` (the
    updated membranes and tracers) in cycle ``x + 1``. Throughput: one word per cycle, no
    bubbles, also for back-to-back commands on the same word.

    ``o.payload.busy`` is the step's busy flag so far: the OR, over the ``FIRE`` commands since
    the last one with ``last`` set (this one included), of their ``busy`` bit, a non-zero drive
    and any spike.

    Parameters
    ----------
    layer : ir.Layer
    widths : ir.network.LayerWidths
        The layer's exact widths (``network.widths[k]``).
    lanes : int
        Neurons updated per cycle (≥ 1).
    drive_width : int, optional
        Signed bits of a command's drive: ``widths.drive`` (a whole step's drive) by default;
        the layer core gives the width of one event's product instead.
    storage : Storage or str, optional
        Default :func:`default_storage` of the word count.

    Members
    -------
    i : In(stream.Signature(command_layout, always_ready=True))
    o : Out(stream.Signature(spike_word_layout, always_ready=True))
    state : Out(state_layout)
        Membranes and tracers of ``o``'s word after the update (valid with ``o.valid``).
    """

    def __init__(
        self,
        *,
        layer: Layer,
        widths: LayerWidths,
        lanes: int,
        storage: Storage | str | None = None,
        drive_width: int | None = None,
    ) -> None:
        if not isinstance(layer, Layer):
            raise TypeError(f"layer must be an ir.Layer, not {type(layer).__name__}")
        if not isinstance(widths, LayerWidths):
            raise TypeError(f"widths must be an ir.network.LayerWidths, not {widths!r}")
        if drive_width is None:
            drive_width = widths.drive
        if not isinstance(drive_width, int) or drive_width < 1:
            raise ValueError(f"drive_width must be a positive integer, not {drive_width!r}")
        self._drive_width = drive_width
        self._layer, self._widths = layer, widths
        self._timing = LayerTiming(n_out=layer.n_out, lanes=lanes)
        self._storage = check_storage(storage, self._timing.words)
        words = self._timing.words
        super().__init__(
            {
                "i": In(
                    stream.Signature(
                        command_layout(words=words, lanes=lanes, drive_width=drive_width),
                        always_ready=True,
                    )
                ),
                "o": Out(
                    stream.Signature(spike_word_layout(words=words, lanes=lanes), always_ready=True)
                ),
                "state": Out(self.state_layout),
            }
        )

    # -- facts ---------------------------------------------------------------------------------
    @property
    def layer(self) -> Layer:
        return self._layer

    @property
    def widths(self) -> LayerWidths:
        return self._widths

    @property
    def lanes(self) -> int:
        return self._timing.lanes

    @property
    def words(self) -> int:
        return self._timing.words

    @property
    def storage(self) -> Storage:
        return self._storage

    @property
    def drive_width(self) -> int:
        return self._drive_width

    @property
    def latency(self) -> int:
        """Cycles from a command on ``i`` to its result on ``o``."""
        return 1

    @property
    def state_layout(self) -> data.StructLayout:
        return state_layout(
            lanes=self.lanes,
            membrane_width=self._widths.membrane,
            tracer_width=self._widths.tracer,
        )

    def padded(self, values: np.ndarray, fill: int) -> np.ndarray:
        """Per-neuron ``values`` as ``[words, lanes]``, padding lanes set to ``fill``."""
        out = np.full(self.words * self.lanes, fill, dtype=np.int64)
        out[: self._layer.n_out] = values
        return out.reshape(self.words, self.lanes)

    def elaborate(self, platform):
        m = Module()
        layer, words = self._layer, self.words
        initial = self.padded(layer.initial_membranes + layer.bias, 0)
        thresholds = self.padded(layer.thresholds, 1)
        m.submodules.store = store = StateStore(
            shape=self.state_layout,
            depth=words,
            init=[{"membranes": row.tolist(), "tracers": [0] * self.lanes} for row in initial],
            storage=self._storage,
        )
        m.submodules.lanes = lanes = NeuronLanes(
            layer=layer, widths=self._widths, lanes=self.lanes, drive_width=self._drive_width
        )
        # stage 0: read the word's state and constants
        cmd = Signal(self.i.payload.shape(), name="cmd")
        cmd_valid = Signal(name="cmd_valid")
        m.d.sync += [cmd.eq(self.i.payload), cmd_valid.eq(self.i.valid)]
        m.d.comb += store.raddr.eq(self.i.payload.word)
        consts = {"initial": initial}
        if layer.per_neuron_threshold:
            consts["thresholds"] = thresholds
        const = self._constants(m, consts, lanes)
        if layer.per_neuron_threshold:
            thr = const["thresholds"]
        else:  # one threshold for the layer: a constant
            thr = lanes.thresholds.shape().const([layer.threshold] * self.lanes)
        # stage 1: update, write back, emit
        sticky = Signal(name="busy_sticky")
        m.d.comb += [
            lanes.op.eq(cmd.op),
            lanes.membranes.eq(store.rdata.membranes),
            lanes.tracers.eq(store.rdata.tracers),
            lanes.drive.eq(cmd.drive),
            lanes.thresholds.eq(thr),
            lanes.initial.eq(const["initial"]),
            store.waddr.eq(cmd.word),
            store.wen.eq(cmd_valid),
            store.wdata.membranes.eq(lanes.next_membranes),
            store.wdata.tracers.eq(lanes.next_tracers),
            self.o.valid.eq(cmd_valid & (cmd.op == Op.FIRE)),
            self.o.payload.word.eq(cmd.word),
            self.o.payload.last.eq(cmd.last),
            self.o.payload.busy.eq(sticky | cmd.busy | lanes.active),
            self.o.payload.spikes.eq(lanes.spikes),
            self.state.membranes.eq(lanes.next_membranes),
            self.state.tracers.eq(lanes.next_tracers),
        ]
        with m.If(self.o.valid):
            m.d.sync += sticky.eq(~cmd.last & self.o.payload.busy)
        return m

    def _constants(self, m: Module, consts: dict[str, np.ndarray], lanes: NeuronLanes):
        """Per-word constants, read in stage 0 like the state (a ROM, or constants if 1 word)."""
        layout = data.StructLayout({name: getattr(lanes, name).shape() for name in consts})
        rows = [{name: v[w].tolist() for name, v in consts.items()} for w in range(self.words)]
        if self.words == 1:
            return layout.const(rows[0])
        m.submodules.constants = rom = memory.Memory(shape=layout, depth=self.words, init=rows)
        rp = rom.read_port()
        m.d.comb += rp.addr.eq(self.i.payload.word)
        return rp.data


class NeuronArrayTop(wiring.Component):
    """A :class:`NeuronArray` with ports only, as a top-level design for simulation.

    Amaranth 0.5 cannot turn the constant ``ready`` of an ``always_ready`` stream into a port, so
    this wrapper exposes the same members with plain signals: ``cmd_ready`` is always 1 and the
    array never waits for its output.

    Parameters
    ----------
    Those of :class:`NeuronArray`.

    Members
    -------
    cmd_valid : In(1)
    cmd : In(command_layout)
    cmd_ready : Out(1)
        Always 1.
    fired_valid : Out(1)
    fired : Out(spike_word_layout)
    state : Out(state_layout)
    """

    def __init__(self, **kwargs) -> None:
        self._array = NeuronArray(**kwargs)
        a = self._array
        super().__init__(
            {
                "cmd_valid": In(1),
                "cmd": In(a.i.payload.shape()),
                "cmd_ready": Out(1),
                "fired_valid": Out(1),
                "fired": Out(a.o.payload.shape()),
                "state": Out(a.state_layout),
            }
        )

    @property
    def array(self) -> NeuronArray:
        return self._array

    def elaborate(self, platform):
        m = Module()
        m.submodules.array = a = self._array
        m.d.comb += [
            a.i.valid.eq(self.cmd_valid),
            a.i.payload.eq(self.cmd),
            self.cmd_ready.eq(1),
            self.fired_valid.eq(a.o.valid),
            self.fired.eq(a.o.payload),
            self.state.eq(a.state),
        ]
        return m
