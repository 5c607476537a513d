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
from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from spikezip.hw.cores.layouts import Op, command_layout, spike_word_layout, state_layout
from spikezip.hw.model.cycle_model import LayerTiming
from spikezip.ir.network import Layer, LayerWidths

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
    """``lanes`` combinational ST-BIF lanes (spec §2.4) updating one word.

    Per lane, with ``U1 = U + drive``:

    * ``fire = 0``: ``U' = U1``, ``A' = A``, no spike (``INTEGRATE``; ``INIT`` is the same with
      the initial membrane as ``U``, ``A = 0`` and no drive);
    * ``fire = 1``: ``s = +1`` if ``U1 ≥ Θ and A < p``, ``-1`` if ``U1 < 0 and A > n`` (strict),
      else 0; ``A' = A + s``; ``U' = U1 - s·Θ``.

    The threshold enters only through ``drive_minus = drive - Θ`` and ``drive_plus = drive + Θ``,
    which the neuron array computes from registers while the state is read: the three sums
    ``U + drive``, ``U + (drive - Θ)``, ``U + (drive + Θ)`` run in parallel, one carry chain
    each, and the sign bits choose among them.

    Latency 0 (combinational), or 1 with ``registered``: the three sums, the tracer and its
    bound checks are registered between the carry chains and the choice among the sums.

    Parameters
    ----------
    layer : ir.Layer
        Gives the tracer bounds ``n``, ``p``.
    widths : ir.network.LayerWidths
        Membrane, tracer, drive and threshold widths.
    lanes : int
    drive_width : int, optional
        Signed bits of a drive; ``widths.drive`` by default.
    registered : bool
        Latency 1 instead of 0.
    flags : bool
        The tracer bound checks ``A < p`` and ``A > n`` come in with the state (``below_p``,
        ``above_n``, one bit per lane) and leave updated with it (``next_below_p``,
        ``next_above_n``), so that no comparison follows the choice of the operand.

    Members
    -------
    fire : In(1)
    membranes, tracers, drive, drive_minus, drive_plus : In(ArrayLayout(..., lanes))
    spikes, next_membranes, next_tracers : Out(ArrayLayout(..., lanes))
    """

    def __init__(
        self,
        *,
        layer: Layer,
        widths: LayerWidths,
        lanes: int,
        drive_width: int | None = None,
        registered: bool = False,
        flags: bool = False,
    ) -> None:
        self._layer, self._widths = layer, widths
        self._timing = LayerTiming(n_out=layer.n_out, lanes=lanes)
        self._registered, self._flags = bool(registered), bool(flags)
        m_, t_ = signed(widths.membrane), signed(widths.tracer)
        drive_width = widths.drive if drive_width is None else drive_width
        d_ = signed(drive_width)
        minus, plus = offset_shapes(layer, widths, drive_width)

        def arr(shape):
            return data.ArrayLayout(shape, lanes)

        super().__init__(
            {
                "fire": In(1),
                "membranes": In(arr(m_)),
                "tracers": In(arr(t_)),
                "drive": In(arr(d_)),
                "drive_minus": In(arr(minus)),
                "drive_plus": In(arr(plus)),
                "spikes": Out(arr(signed(2))),
                "next_membranes": Out(arr(m_)),
                "next_tracers": Out(arr(t_)),
                **(
                    {
                        "below_p": In(lanes),
                        "above_n": In(lanes),
                        "next_below_p": Out(lanes),
                        "next_above_n": Out(lanes),
                    }
                    if flags
                    else {}
                ),
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
        m_ = signed(self._widths.membrane)
        stage = m.d.sync if self._registered else m.d.comb  # between the sums and the choice
        fire = Signal(name="fire_s")
        stage += fire.eq(self.fire)
        for k in range(self.lanes):
            u, a_in = self.membranes[k], self.tracers[k]
            u1 = Signal(m_, name=f"u1_{k}")
            # U1 - Θ at its natural width: its sign decides the positive spike
            u1_minus = Signal.like(u + self.drive_minus[k], name=f"u1_minus{k}")
            u1_plus = Signal(m_, name=f"u1_plus{k}")  # used only when U1 + Θ is the result
            a = Signal.like(a_in, name=f"a{k}")
            a_plus = Signal.like(a_in + 1, name=f"a_plus{k}")
            a_minus = Signal.like(a_in - 1, name=f"a_minus{k}")
            below_p = Signal(name=f"below_p{k}")
            above_n = Signal(name=f"above_n{k}")
            # A' < p and A' > n for A' = A + 1, A - 1
            bounds = [Signal(name=f"{nm}{k}") for nm in ("bp_up", "bp_down", "an_up", "an_down")]
            stage += [
                a_plus.eq(a_in + 1),
                a_minus.eq(a_in - 1),
                bounds[0].eq(a_in < p - 1),
                bounds[1].eq(a_in < p + 1),
                bounds[2].eq(a_in > n - 1),
                bounds[3].eq(a_in > n + 1),
            ]
            stage += [
                u1.eq(u + self.drive[k]),
                u1_minus.eq(u + self.drive_minus[k]),
                u1_plus.eq(u + self.drive_plus[k]),
                a.eq(a_in),
                below_p.eq(self.below_p[k] if self._flags else a_in < p),
                above_n.eq(self.above_n[k] if self._flags else a_in > n),
            ]
            pos = Signal(name=f"pos{k}")
            neg = Signal(name=f"neg{k}")
            m.d.comb += [
                # U1 ≥ Θ ⇔ U1 - Θ ≥ 0 (U1 never overflows its width: exact widths)
                pos.eq(fire & ~u1_minus[-1] & below_p),
                neg.eq(fire & u1[-1] & above_n),
                self.spikes[k].eq(Mux(neg, -1, pos)),
                self.next_membranes[k].eq(Mux(pos, u1_minus, Mux(neg, u1_plus, u1))),
                self.next_tracers[k].eq(Mux(pos, a_plus, Mux(neg, a_minus, a))),
            ]
            if self._flags:  # A' < p and A' > n, from A (registered with pipeline 2)
                m.d.comb += [
                    self.next_below_p[k].eq(Mux(pos, bounds[0], Mux(neg, bounds[1], below_p))),
                    self.next_above_n[k].eq(Mux(pos, bounds[2], Mux(neg, bounds[3], above_n))),
                ]
        return m


def offset_shapes(layer: Layer, widths: LayerWidths, drive_width: int):
    """Natural shapes of ``drive - Θ`` and ``drive + Θ`` (no bit a copy of another)."""
    d = Signal(signed(drive_width))
    if layer.per_neuron_threshold:
        theta = Signal(unsigned(widths.threshold))
    else:
        theta = Const(layer.threshold)
    return (d - theta).shape(), (d + theta).shape()


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

    Latency ``L = timing.array_latency`` (1, 2, 3, 3 for pipeline 0–3): a ``FIRE`` command in
    cycle ``x`` leaves on ``o`` (spikes) and ``state`` (the updated membranes and tracers) in
    cycle ``x + L``. Throughput: one word per cycle, no bubbles; two commands on the same word
    must be ``timing.min_distance`` cycles apart (1 for pipelines 0 and 1, so back to back is
    fine; 2 and 3 for pipelines 2 and 3 — the sequencer pads its passes).

    ``o.payload.busy`` is the step's busy flag so far, spikes aside: the OR, over the ``FIRE``
    commands since the last one with ``last`` set (this one included), of their ``busy`` bit and
    a non-zero drive. The step's busy flag is that OR any spike of the step's words (the
    receiver sees them: keeping the OR over the lanes' spikes out of this stage keeps it off the
    update path).

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
        pipeline: int = 1,
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
        self._timing = LayerTiming(n_out=layer.n_out, lanes=lanes, pipeline=pipeline)
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
    def pipeline(self) -> int:
        """Extra register stages of the read-modify-write
        (:class:`hw.model.cycle_model.LayerTiming`)."""
        return self._timing.pipeline

    @property
    def latency(self) -> int:
        """Cycles from a command on ``i`` to its result on ``o`` (``timing.array_latency``)."""
        return self._timing.array_latency

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
        layer, words, lanes_n = self._layer, self.words, self.lanes
        initial = self.padded(layer.initial_membranes + layer.bias, 0)
        thresholds = self.padded(layer.thresholds, 1)
        flags = self.pipeline >= 1  # the tracer bound checks live in the store
        zero_below_p, zero_above_n = int(0 < layer.pos_bound), int(0 > layer.neg_bound)
        word_layout = self.state_layout
        init_flags = {}
        if flags:
            word_layout = data.StructLayout(
                {
                    **{name: f.shape for name, f in self.state_layout},
                    "below_p": lanes_n,
                    "above_n": lanes_n,
                }
            )
            init_flags = {
                "below_p": (1 << lanes_n) - 1 if zero_below_p else 0,
                "above_n": (1 << lanes_n) - 1 if zero_above_n else 0,
            }
        m.submodules.store = store = StateStore(
            shape=word_layout,
            depth=words,
            init=[
                {"membranes": row.tolist(), "tracers": [0] * lanes_n, **init_flags}
                for row in initial
            ],
            storage=self._storage,
        )
        m.submodules.lanes = lanes = NeuronLanes(
            layer=layer,
            widths=self._widths,
            lanes=lanes_n,
            drive_width=self._drive_width,
            registered=self.pipeline >= 2,
            flags=flags,
        )
        # stage 0: the command arrives; the word's state and constants are read
        cmd = Signal(self.i.payload.shape(), name="cmd")
        cmd_valid = Signal(name="cmd_valid")
        m.d.sync += [cmd.eq(self.i.payload), cmd_valid.eq(self.i.valid)]
        m.d.comb += store.raddr.eq(self.i.payload.word)
        consts = {"initial": initial}
        if layer.per_neuron_threshold:
            consts["thresholds"] = thresholds
        const = self._constants(m, consts)
        # stage 1: operands of the update. INIT updates the initial state with no drive (the
        # accumulator sends INIT with a zero drive); the threshold enters as drive ∓ Θ.
        init = cmd.op == Op.INIT
        drive = cmd.drive
        driven = Signal(name="driven")  # a non-zero drive in the word
        lane_driven = Cat(cmd.drive[k] != 0 for k in range(lanes_n))
        m.d.comb += driven.eq(lane_driven.any())
        drive_minus = Signal(lanes.drive_minus.shape(), name="drive_minus")
        drive_plus = Signal(lanes.drive_plus.shape(), name="drive_plus")
        initial_state = Signal(word_layout, name="initial_state")
        m.d.comb += initial_state.membranes.eq(const["initial"])
        if flags:
            m.d.comb += initial_state.below_p.eq(init_flags["below_p"])
            m.d.comb += initial_state.above_n.eq(init_flags["above_n"])
        if self.pipeline != 1:  # (pipeline 1 computes them a stage later)
            for k in range(lanes_n):
                theta = const["thresholds"][k] if layer.per_neuron_threshold else layer.threshold
                m.d.comb += [
                    drive_minus[k].eq(cmd.drive[k] - theta),
                    drive_plus[k].eq(cmd.drive[k] + theta),
                ]
        if self.pipeline == 0:
            # update in stage 1 from the store's output, write back at once
            op, op_valid, op_driven = cmd, cmd_valid, driven
            state = Signal(self.state_layout, name="operand")
            m.d.comb += state.eq(Mux(init, initial_state, store.rdata))
            m.d.comb += [
                lanes.drive.eq(drive),
                lanes.drive_minus.eq(drive_minus),
                lanes.drive_plus.eq(drive_plus),
                store.waddr.eq(cmd.word),
                store.wen.eq(cmd_valid),
                store.wdata.membranes.eq(lanes.next_membranes),
                store.wdata.tracers.eq(lanes.next_tracers),
            ]
        else:
            # Stage 1 registers the operands. The update takes stage 2 (pipeline 1) or stages 2
            # and 3 (pipeline 2: the sums, then the choice) and ends in the result register,
            # which the next stage writes back. The store's output misses the results still in
            # flight: the one in the result register is forwarded into the operand register,
            # the one being computed in the last update stage (the command just ahead, or two
            # ahead for pipeline 2) from the result register when the update starts.
            # the command without its drive (which went into the operands)
            control = data.StructLayout({"op": Op, "word": cmd.word.shape(), "last": 1, "busy": 1})

            def control_of(c):
                return [c.op, c.word, c.last, c.busy]

            a_op = Signal(control, name="op_a")  # the command in the first update stage
            a_valid = Signal(name="op_a_valid")
            a_driven = Signal(lanes_n, name="op_a_driven")  # per lane (the OR comes later)
            m.d.sync += [a_op.eq(Cat(*control_of(cmd))), a_valid.eq(cmd_valid)]
            m.d.sync += a_driven.eq(lane_driven)
            if self.pipeline == 1:
                op, op_valid, op_driven = a_op, a_valid, a_driven.any()
            else:  # the command in the last update stage
                op = Signal(control, name="op")
                op_valid = Signal(name="op_valid")
                op_driven = Signal(name="op_driven")
                m.d.sync += [op.eq(a_op), op_valid.eq(a_valid), op_driven.eq(a_driven.any())]
            result = Signal(word_layout, name="result")
            result_word = Signal.like(cmd.word, name="result_word")
            result_valid = Signal(name="result_valid")
            operand = Signal(word_layout, name="operand_reg")
            ahead = Signal(name="forward_ahead")  # operand = the result register
            m.d.sync += lanes.drive.eq(drive)
            if self.pipeline == 1:  # d ± Θ from the registered drive (registering d ± Θ
                # themselves lets Yosys alias their sign bits into a combinational knot)
                theta = thresholds_reg = None
                if layer.per_neuron_threshold:
                    thresholds_reg = Signal.like(const["thresholds"], name="thresholds_reg")
                    m.d.sync += thresholds_reg.eq(const["thresholds"])
                for k in range(lanes_n):
                    theta = thresholds_reg[k] if layer.per_neuron_threshold else layer.threshold
                    m.d.comb += [
                        lanes.drive_minus[k].eq(lanes.drive[k] - theta),
                        lanes.drive_plus[k].eq(lanes.drive[k] + theta),
                    ]
            else:
                m.d.sync += [lanes.drive_minus.eq(drive_minus), lanes.drive_plus.eq(drive_plus)]
            m.d.sync += [
                ahead.eq(op_valid & (op.word == cmd.word) & ~init),
                result.membranes.eq(lanes.next_membranes),
                result.tracers.eq(lanes.next_tracers),
                result.below_p.eq(lanes.next_below_p),
                result.above_n.eq(lanes.next_above_n),
                result_word.eq(op.word),
                result_valid.eq(op_valid),
            ]
            # the operand register's selects, from registers: decided a cycle ahead, when the
            # command arrives (the result register then holds what the last update stage
            # computes now)
            in_result = Signal(name="in_result")
            init1 = Signal(name="init1")
            m.d.sync += [
                in_result.eq(op_valid & (op.word == self.i.payload.word)),
                init1.eq(self.i.payload.op == Op.INIT),
            ]
            m.d.sync += operand.eq(Mux(init1, initial_state, Mux(in_result, result, store.rdata)))
            state = Signal(word_layout, name="operand")
            if self.pipeline == 3:  # same-word operations three apart: nothing to forward here
                m.d.comb += state.eq(operand)
            else:
                m.d.comb += state.eq(Mux(ahead, result, operand))
            m.d.comb += [lanes.below_p.eq(state.below_p), lanes.above_n.eq(state.above_n)]
            m.d.comb += [
                store.waddr.eq(result_word),
                store.wen.eq(result_valid),
                store.wdata.eq(result),
            ]
            m.d.comb += lanes.fire.eq(a_op.op == Op.FIRE)
        # the update (stage 1 or 2) and the fired word
        if self.pipeline == 0:
            m.d.comb += lanes.fire.eq(op.op == Op.FIRE)
        sticky = Signal(name="busy_sticky")
        m.d.comb += [
            lanes.membranes.eq(state.membranes),
            lanes.tracers.eq(state.tracers),
            self.o.valid.eq(op_valid & (op.op == Op.FIRE)),
            self.o.payload.word.eq(op.word),
            self.o.payload.last.eq(op.last),
            self.o.payload.busy.eq(sticky | op.busy | op_driven),
            self.o.payload.spikes.eq(lanes.spikes),
            self.state.membranes.eq(lanes.next_membranes),
            self.state.tracers.eq(lanes.next_tracers),
        ]
        with m.If(self.o.valid):
            m.d.sync += sticky.eq(~op.last & self.o.payload.busy)
        return m

    def _constants(self, m: Module, consts: dict[str, np.ndarray]):
        """Per-word constants, read in stage 0 like the state (a ROM, or constants if 1 word)."""
        shapes = {
            "initial": signed(self._widths.membrane),
            "thresholds": unsigned(self._widths.threshold),
        }
        layout = data.StructLayout(
            {name: data.ArrayLayout(shapes[name], self.lanes) for name in consts}
        )
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
