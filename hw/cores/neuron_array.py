"""ST-BIF neuron array: ``lanes`` parallel lanes of the integer update of spec §2.4.

The ``n_out`` neurons of a layer are stored as ``words = ceil(n_out / lanes)`` words of ``lanes``
neurons each (lane ``k`` of word ``c`` is neuron ``c·lanes + k``; the lanes past ``n_out`` of the
last word are padding that holds ``U = 0`` and never fires). Each word holds the membranes ``U``
(signed, the exact width of :meth:`ir.Layer.widths`, never saturating) and tracers ``A``.

The array is a read-modify-write pipeline over the words, one word operation per cycle, whose
register stages are switches of :class:`hw.model.cycle_model.Pipeline`:

* stage 0: the command arrives; the word's state (:class:`StateStore`) and its constants
  (:class:`WordConstants`) are read;
* stage 1: :class:`Operands` registers the command. Without ``registered_read`` (preset 0)
  :class:`Update` (the lanes, :class:`NeuronLanes`) updates the word from the store's output and
  writes it back in this stage;
* with ``registered_read`` (presets 1–3), stage 2: the operands are registered and the update
  runs here (and in stage 3 with ``registered_sums``: the sums, then the choice among them); the
  result register writes back a cycle later and is forwarded into the operands while in flight.

A command's read sees the writes of the commands before it that are at least ``min_distance``
cycles ahead (the store is transparent and the results in flight are forwarded), so any sequence
of commands that keeps that distance gives the result of executing them one after another — with
presets 0 and 1 the same word back to back included, without bubbles.

Trade-off: the state lives in registers when there are few words (no memory block, a small read
multiplexer) and in a memory with a transparent synchronous read port otherwise; see
:class:`Storage`. Both behave identically, cycle for cycle.
"""

from __future__ import annotations

import numpy as np
from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from spikezip.hw.cores.layouts import Op, command_layout, spike_word_layout, state_layout
from spikezip.hw.model.cycle_model import READ_LATENCY, LayerTiming, Pipeline, check_timing
from spikezip.hw.model.design import Storage
from spikezip.hw.model.design import check_storage as _check_storage
from spikezip.hw.model.events import spike_value_width
from spikezip.ir.network import Layer, LayerWidths, signed_width

__all__ = [
    "DriveOffsets",
    "Forward",
    "NeuronArray",
    "NeuronArrayTop",
    "NeuronLanes",
    "Operands",
    "StateStore",
    "Storage",
    "StoreWrite",
    "Update",
    "WordConstants",
    "default_storage",
]

#: Largest number of words kept in registers by default.
REGISTER_WORDS_MAX = 4


def default_storage(words: int) -> Storage:
    """Registers up to :data:`REGISTER_WORDS_MAX` words, a memory beyond."""
    return Storage.REGISTERS if words <= REGISTER_WORDS_MAX else Storage.MEMORY


def check_storage(storage: Storage | str | None, words: int | None = None) -> Storage | None:
    """``storage`` as a :class:`Storage`; ``None`` picks :func:`default_storage` of ``words``
    (and stays ``None`` without ``words``)."""
    checked = _check_storage(storage)
    return default_storage(words) if checked is None and words is not None else checked


def _addr_shape(depth: int):
    return unsigned(max(0, (depth - 1).bit_length()))


class StoreWrite(wiring.Signature):
    """The write port of a :class:`StateStore` (``en``: write ``data`` to word ``addr``).

    Members
    -------
    addr : Out(range(depth))
    en : Out(1)
    data : Out(shape)
    """

    def __init__(self, *, shape, depth: int) -> None:
        super().__init__({"addr": Out(_addr_shape(depth)), "en": Out(1), "data": Out(shape)})


class StateStore(wiring.Component):
    """``depth`` words with a transparent synchronous read port and a write port.

    Latency 1 (:data:`hw.model.cycle_model.READ_LATENCY`): ``rdata`` in cycle ``x + 1`` is word
    ``raddr`` of cycle ``x`` *after* the write of cycle ``x`` (when ``write.en`` and
    ``write.addr == raddr``, the written data is forwarded). Throughput: one read and one write
    per cycle. The words start at ``init`` (registers: also on reset; memory: at power-on only).

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
    transparent : bool
        ``False``: ``rdata`` is word ``raddr`` *before* the write of cycle ``x`` (no write-address
        compare in front of the read; :attr:`hw.model.cycle_model.Pipeline.bypassed_store`, where
        :class:`Operands` forwards that write instead).

    Members
    -------
    raddr : In(range(depth))
    rdata : Out(shape)
    write : In(StoreWrite(shape=shape, depth=depth))
    """

    def __init__(
        self, *, shape, depth: int, init, storage: Storage, transparent: bool = True
    ) -> None:
        if not isinstance(depth, int) or depth < 1:
            raise ValueError(f"depth must be a positive integer, not {depth!r}")
        init = list(init)
        if len(init) != depth:
            raise ValueError(f"init must hold {depth} words, not {len(init)}")
        self._shape, self._depth, self._init = shape, depth, init
        self._storage = Storage(storage)
        self._transparent = bool(transparent)
        super().__init__(
            {
                "raddr": In(_addr_shape(depth)),
                "rdata": Out(shape),
                "write": In(StoreWrite(shape=shape, depth=depth)),
            }
        )

    @property
    def depth(self) -> int:
        return self._depth

    @property
    def storage(self) -> Storage:
        return self._storage

    @property
    def latency(self) -> int:
        return READ_LATENCY

    def elaborate(self, platform):
        m = Module()
        write = self.write
        if self._storage is Storage.MEMORY:
            m.submodules.mem = mem = memory.Memory(
                shape=self._shape, depth=self._depth, init=self._init
            )
            wp = mem.write_port()
            rp = mem.read_port(transparent_for=(wp,) if self._transparent else ())
            m.d.comb += [
                wp.addr.eq(write.addr),
                wp.en.eq(write.en),
                wp.data.eq(write.data),
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
            with m.If(write.en & (write.addr == k)):
                m.d.sync += reg.eq(write.data)
        if not self._transparent:
            with m.Switch(self.raddr):
                for k, reg in enumerate(regs):
                    with m.Case(k):
                        m.d.sync += rdata.eq(reg)
            return m
        with m.If(write.en & (write.addr == self.raddr)):
            m.d.sync += rdata.eq(write.data)  # forward the write in flight
        with m.Else():
            with m.Switch(self.raddr):
                for k, reg in enumerate(regs):
                    with m.Case(k):
                        m.d.sync += rdata.eq(reg)
        return m


class NeuronLanes(wiring.Component):
    """``lanes`` ST-BIF lanes (spec §2.4) updating one word.

    Per lane, with ``U1 = U + drive``:

    * ``fire = 0``: ``U' = U1``, ``A' = A``, no spike (``INTEGRATE``; ``INIT`` is the same with
      the initial membrane as ``U``, ``A = 0`` and no drive);
    * ``fire = 1``: ``s = +1`` if ``U1 ≥ Θ and A < p``, ``-1`` if ``U1 < 0 and A > n`` (strict),
      else 0; ``A' = A + s``; ``U' = U1 - s·Θ``.

    The threshold enters only through ``drive_minus = drive - Θ`` and ``drive_plus = drive + Θ``
    (:class:`DriveOffsets`): the three sums ``U + drive``, ``U + (drive - Θ)``,
    ``U + (drive + Θ)`` run in parallel, one carry chain each, and the sign bits choose among
    them.

    Latency ``pipeline.update_latency``: 0 (combinational), or 1 with ``registered_sums`` (the
    three sums, the tracer and its bound checks are registered between the carry chains and the
    choice among the sums). Throughput one word per cycle.

    Parameters
    ----------
    layer : ir.Layer
        Gives the tracer bounds ``n``, ``p``.
    widths : ir.network.LayerWidths
        Membrane, tracer, drive and threshold widths.
    lanes : int
    pipeline : hw.model.cycle_model.Pipeline
        Reads ``registered_sums`` and ``bound_flags``: the tracer bound checks ``A < p`` and
        ``A > n`` come in with the state (``below_p``, ``above_n``, one bit per lane) and leave
        updated with it (``next_below_p``, ``next_above_n``), so that no comparison follows the
        choice of the operand.
    drive_width : int, optional
        Signed bits of a drive; ``widths.drive`` by default.
    membrane_copy : bool
        Graded lanes with ``registered_sums``: half of the level tests read ``membranes_copy``,
        a copy of the membranes from a second operand register (each register then drives half
        the carry chains).

    Members
    -------
    fire : In(1)
    membranes, tracers, drive, drive_minus, drive_plus : In(ArrayLayout(..., lanes))
    drive_levels : In(level_layout)
        Graded lanes only: the offsets of the levels above 0.
    thresholds : In(ArrayLayout(unsigned(widths.threshold), lanes))
        Graded lanes with ``registered_sums`` and per-neuron thresholds only
        (:func:`uses_level_code`): each lane's Θ.
    membranes_copy : In(ArrayLayout(..., lanes))
        Only with ``membrane_copy``: equal to ``membranes``.
    spikes, next_membranes, next_tracers : Out(ArrayLayout(..., lanes))
    below_p, above_n : In(lanes), next_below_p, next_above_n : Out(lanes)
        Only with ``bound_flags``.
    """

    def __init__(
        self,
        *,
        layer: Layer,
        widths: LayerWidths,
        lanes: int,
        pipeline: Pipeline,
        drive_width: int | None = None,
        membrane_copy: bool = False,
    ) -> None:
        if not _is_count(lanes):
            raise ValueError(f"lanes must be a positive integer (1 or more), not {lanes!r}")
        if not isinstance(pipeline, Pipeline):
            raise TypeError(f"pipeline must be a hw.model.cycle_model.Pipeline, not {pipeline!r}")
        if membrane_copy and not uses_membrane_copy(pipeline, layer):
            raise ValueError("membrane_copy needs graded lanes with registered_sums")
        self._layer, self._widths, self._lanes, self._pipeline = layer, widths, lanes, pipeline
        self._copy = bool(membrane_copy)
        m_, t_ = signed(widths.membrane), signed(widths.tracer)
        drive_width = widths.drive if drive_width is None else drive_width
        minus, plus = offset_shapes(layer, widths, drive_width)

        def arr(shape):
            return data.ArrayLayout(shape, lanes)

        flags = {"below_p": In(lanes), "above_n": In(lanes)}
        flags |= {"next_below_p": Out(lanes), "next_above_n": Out(lanes)}
        coded = uses_level_code(pipeline, layer)
        graded = level_layout(layer, widths, drive_width, lanes, results=not coded)
        thresholds = {}
        if coded and layer.per_neuron_threshold:
            thresholds = {"thresholds": In(arr(unsigned(widths.threshold)))}
        super().__init__(
            {
                "fire": In(1),
                "membranes": In(arr(m_)),
                **({"membranes_copy": In(arr(m_))} if membrane_copy else {}),
                "tracers": In(arr(t_)),
                "drive": In(arr(signed(drive_width))),
                "drive_minus": In(arr(minus)),
                "drive_plus": In(arr(plus)),
                **({} if graded is None else {"drive_levels": In(graded)}),
                **thresholds,
                "spikes": Out(arr(signed(spike_value_width(layer.spike_max)))),
                "next_membranes": Out(arr(m_)),
                "next_tracers": Out(arr(t_)),
                **(flags if uses_bound_flags(pipeline, layer) else {}),
            }
        )

    @property
    def layer(self) -> Layer:
        return self._layer

    @property
    def lanes(self) -> int:
        return self._lanes

    @property
    def latency(self) -> int:
        return self._pipeline.update_latency

    def elaborate(self, platform):
        if levels(self._layer) > 1:
            return self._elaborate_graded()
        m = Module()
        n, p = self._layer.neg_bound, self._layer.pos_bound
        m_, flags = signed(self._widths.membrane), self._pipeline.bound_flags
        # between the sums and the choice
        stage = m.d.sync if self._pipeline.registered_sums else m.d.comb
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
                below_p.eq(self.below_p[k] if flags else a_in < p),
                above_n.eq(self.above_n[k] if flags else a_in > n),
            ]
            pos = Signal(name=f"pos{k}")
            neg = Signal(name=f"neg{k}")
            # U1 ≥ Θ ⇔ U1 - Θ ≥ 0 (U1 never overflows its width: exact widths)
            if self._pipeline.registered_sums:  # fire and the bounds registered per lane
                may_pos, may_neg = Signal(name=f"may_pos{k}"), Signal(name=f"may_neg{k}")
                stage += [  # (fire_s alone would fan out to every lane)
                    may_pos.eq(self.fire & (self.below_p[k] if flags else a_in < p)),
                    may_neg.eq(self.fire & (self.above_n[k] if flags else a_in > n)),
                ]
                m.d.comb += [pos.eq(may_pos & ~u1_minus[-1]), neg.eq(may_neg & u1[-1])]
            else:
                m.d.comb += [
                    pos.eq(fire & ~u1_minus[-1] & below_p),
                    neg.eq(fire & u1[-1] & above_n),
                ]
            m.d.comb += [
                self.spikes[k].eq(Mux(neg, -1, pos)),
                self.next_membranes[k].eq(Mux(pos, u1_minus, Mux(neg, u1_plus, u1))),
                self.next_tracers[k].eq(Mux(pos, a_plus, Mux(neg, a_minus, a))),
            ]
            if flags:  # A' < p and A' > n, from A (registered with registered_sums)
                m.d.comb += [
                    self.next_below_p[k].eq(Mux(pos, bounds[0], Mux(neg, bounds[1], below_p))),
                    self.next_above_n[k].eq(Mux(pos, bounds[2], Mux(neg, bounds[3], above_n))),
                ]
        return m

    def _elaborate_graded(self) -> Module:
        """Graded lanes (docs/graded.md §10): with ``U1 = U + drive`` and ``J`` levels, level ``j``
        is open upwards when ``U1 − Θ·2^j ≥ 0`` and ``A ≤ p − 2^j``, downwards when
        ``U1 + Θ·(2^j − 1) < 0`` and ``A ≥ n + 2^j``; both tests are monotone in ``j``, so the
        spike is ``±2^j`` for the highest open level ``L``, and the new membrane is
        ``U1 ∓ Θ·2^L``. No divider and no multiplier: the tests are the signs of parallel sums
        ``U + (drive − Θ·2^j)`` and ``U + (drive + Θ·(2^j − 1))`` (offsets precomputed by
        :class:`DriveOffsets`), the tracer's tests comparisons with constants.

        With ``registered_sums`` (:func:`uses_level_code`, :meth:`_elaborate_level_code`) only
        ``U1`` and the tests are computed before the register, and one sum after it makes the
        result; without it (pipelines 0, 1) every result ``U1 ∓ Θ·2^j`` is a sum of its own
        beside the tests (``3J − 1`` sums) and a priority chain of multiplexers, selected
        straight from the sums' signs, picks the highest open level."""
        if self._pipeline.registered_sums:
            return self._elaborate_level_code()
        m = Module()
        layer, lanes, J = self._layer, self.lanes, levels(self._layer)
        n, p = layer.neg_bound, layer.pos_bound
        m_ = signed(self._widths.membrane)
        fire = self.fire
        offsets = self.drive_levels
        for k in range(lanes):
            u, a = self.membranes[k], self.tracers[k]
            minus = {0: self.drive_minus[k]} | {j: offsets[f"minus{j}"][k] for j in range(1, J)}
            plus = {0: self.drive_plus[k]} | {j: offsets[f"plus{j}"][k] for j in range(1, J)}
            below = {j: offsets[f"below{j}"][k] for j in range(2, J)}
            # U1 − Θ·2^j (test and result of +2^j) and U1 + Θ·2^j (result of −2^j; its sign for
            # j = 0 is the test of −2), at natural widths; U1 + Θ·(2^j − 1) for j ≥ 2 (tests)
            u1 = Signal(m_, name=f"u1_{k}")
            up = [Signal.like(u + minus[j], name=f"u_minus{j}_{k}") for j in range(J)]
            down = [Signal.like(u + plus[j], name=f"u_plus{j}_{k}") for j in range(J)]
            test = {j: Signal.like(u + below[j], name=f"u_below{j}_{k}") for j in range(2, J)}
            m.d.comb += [u1.eq(u + self.drive[k])]
            m.d.comb += [up[j].eq(u + minus[j]) for j in range(J)]
            m.d.comb += [down[j].eq(u + plus[j]) for j in range(J)]
            m.d.comb += [test[j].eq(u + below[j]) for j in range(2, J)]
            negative = [u1[-1], down[0][-1]] + [test[j][-1] for j in range(2, J)]
            # a priority chain of multiplexers maps smaller than a one-hot AND-OR here and is no
            # slower (measured, docs/performance.md "Graded ST-BIF (issue 14), RTL")
            pos = [fire & ~up[j][-1] & (a <= p - (1 << j)) for j in range(J)]
            neg = [fire & negative[j] & (a >= n + (1 << j)) for j in range(J)]
            spike, membrane, tracer = 0, u1, a
            for j in range(J):  # the highest open level wins (pos and neg exclude each other)
                chosen = pos[j] | neg[j]
                spike = Mux(chosen, Mux(pos[j], 1 << j, -(1 << j)), spike)
                # (a chosen sum fits the membrane)
                membrane = Mux(chosen, Mux(pos[j], up[j], down[j]), membrane)
                tracer = Mux(chosen, Mux(pos[j], a + (1 << j), a - (1 << j)), tracer)
            m.d.comb += [
                self.spikes[k].eq(spike),
                self.next_membranes[k].eq(membrane),
                self.next_tracers[k].eq(tracer),
            ]
        return m

    def _elaborate_level_code(self) -> Module:
        """Graded lanes with ``registered_sums``: the level is decided before the register, the
        result computed after it by one sum.

        Before the register (one LUT after the carry chains, as ST-BIF's sums): ``U1``, the
        ``2J − 1`` tests' signs (the ``J`` upward ones from ``U + (drive − Θ·2^j)``, the downward
        ones ``U1 < 0``, ``U + (drive + Θ) < 0`` and ``U + (drive + Θ·(2^j − 1)) < 0``), and
        per level the open flag ``t_j = up_j ∧ go_up_j ∨ down_j ∧ go_down_j``: a thermometer
        code (up and down exclude each other: ``U1 ≥ 0`` or not), so the level ``L`` is its
        highest set bit. ``go_up_j = fire ∧ A ≤ p − 2^j`` and ``go_down_j = fire ∧ A ≥ n + 2^j``
        come from registers alone (the tracer's tests as tables, :func:`_test`), so each code
        bit is one LUT of two chains' signs and two flags. Only the code reads ``U1``'s sign
        before the register.

        After the register: ``U' = U1 ∓ Θ·2^L`` (``U1`` when no level is open) as one carry
        chain, ``U1 + (M XOR −q) + q`` with ``M = Θ·2^L`` chosen by a multiplexer tree on the
        code's bits among ``0`` and ``Θ << j``, and ``q = U1 ≥ 0`` (a spike can only be positive
        then) both the XOR mask and the carry-in; ``s = ±2^L`` chosen by the same trees among
        constants and ``A' = A + s``. ``2J`` carry chains before the register (``U1`` and the
        tests; only ``U1``, Θ, the tracer and the code registered) and one after it, instead of
        ``3J − 1`` registered sums and a ``2J + 1``-way multiplexer of membranes."""
        m = Module()
        layer, lanes, J = self._layer, self.lanes, levels(self._layer)
        n, p = layer.neg_bound, layer.pos_bound
        m_, t_w = signed(self._widths.membrane), self._widths.threshold
        fire = self.fire
        offsets = self.drive_levels
        for k in range(lanes):
            u, a_in = self.membranes[k], self.tracers[k]
            u2 = self.membranes_copy[k] if self._copy else u
            minus = {0: self.drive_minus[k]} | {j: offsets[f"minus{j}"][k] for j in range(1, J)}
            below = {1: self.drive_plus[k]} | {j: offsets[f"below{j}"][k] for j in range(2, J)}
            # U1, then the tests; the later half of them read the membranes' copy (fan-out)
            operands = [self.drive[k]] + [minus[j] for j in range(J)]
            operands += [below[j] for j in range(1, J)]
            half = (len(operands) + 1) // 2
            sums = [
                Signal.like((u if i < half else u2) + x, name=f"t{i}c_{k}")
                for i, x in enumerate(operands)
            ]
            m.d.comb += [sums[i].eq((u if i < half else u2) + x) for i, x in enumerate(operands)]
            u1 = Signal(m_, name=f"u1c_{k}")
            m.d.comb += u1.eq(sums[0])
            up = [~sums[1 + j][-1] for j in range(J)]  # U1 ≥ Θ·2^j
            down = [u1[-1]] + [sums[J + j][-1] for j in range(1, J)]  # ⌈−U1/Θ⌉ ≥ 2^j
            # registered: U1, the tracer, the thermometer code and Θ (nothing that reads U1's
            # sign but the code: it no longer picks ±Θ before the register)
            u1_s = Signal(m_, name=f"u1_{k}")
            a = Signal.like(a_in, name=f"a{k}")
            code = Signal(J, name=f"open{k}")
            m.d.sync += [u1_s.eq(u1), a.eq(a_in)]
            if layer.per_neuron_threshold:
                theta = Signal(unsigned(t_w), name=f"theta{k}")
                m.d.sync += theta.eq(self.thresholds[k])
            else:
                theta = Const(layer.threshold, unsigned(t_w))
            # fire ∧ room per level and direction, from registers only: each code bit is then
            # one LUT4 of two chains' signs and these two flags (fire and the tracer's tests
            # mapped after the chains were a second LUT level on the critical path)
            go_up = Signal(J, name=f"go_up{k}")
            go_down = Signal(J, name=f"go_down{k}")
            for j in range(J):
                m.d.comb += [
                    go_up[j].eq(fire & _test(a_in, lambda a, j=j: a <= p - (1 << j))),
                    go_down[j].eq(fire & _test(a_in, lambda a, j=j: a >= n + (1 << j))),
                ]
                m.d.sync += code[j].eq((up[j] & go_up[j]) | (down[j] & go_down[j]))
            # after the register: U' = U1 ∓ Θ·2^L (U1 when no level is open) as one carry chain,
            # U1 + (M XOR −p) + p with M = Θ·2^L and p = U1 ≥ 0 (a spike can only be positive
            # then): the carry-in p as the low bit of both operands. Modulo 2^width, which is
            # exact: U1 and U' both fit the membrane.
            magnitude = _highest(code, [Const(0, 1)] + [theta << j for j in range(J)])
            positive = ~u1_s[-1]
            width = self._widths.membrane
            flipped = Signal(width, name=f"flipped{k}")
            m.d.comb += flipped.eq(magnitude ^ positive.replicate(width))
            total = Cat(positive, u1_s.as_unsigned()) + Cat(positive, flipped)
            # the spike from constants chosen by the code (no sum after the code), the tracer
            # A + s one short sum (A ± 2^j for every level and a choice map to more LUTs)
            negative = u1_s[-1]
            spike_w = signed(spike_value_width(layer.spike_max))
            spike_up = [Const(0, spike_w)] + [Const(1 << j, spike_w) for j in range(J)]
            spike_down = [Const(0, spike_w)] + [Const(-(1 << j), spike_w) for j in range(J)]
            spike = Signal(spike_w, name=f"spike{k}")
            m.d.comb += [
                spike.eq(Mux(negative, _highest(code, spike_down), _highest(code, spike_up))),
                self.spikes[k].eq(spike),
                self.next_membranes[k].eq(total[1 : width + 1]),
                self.next_tracers[k].eq(a + spike),
            ]
        return m


#: Widest tracer whose tests against constants are tables (LUTs) rather than comparisons.
TABLE_WIDTH_MAX = 6


def _test(value, predicate):
    """``predicate`` of the signed ``value`` as a table of constants indexed by its bits (LUTs
    alone) when ``value`` is at most :data:`TABLE_WIDTH_MAX` bits wide: Yosys maps a comparison
    with a constant to a carry chain, whose routing in and out costs more than the LUT of a
    narrow tracer's test (docs/performance.md, "Graded fmax and LUTs, session 16")."""
    width = len(value)
    if width > TABLE_WIDTH_MAX:
        return predicate(value)
    table = 0
    for raw in range(1 << width):
        if predicate(raw - ((raw >> (width - 1)) << width)):  # the signed value of the bits
            table |= 1 << raw
    return Const(table, 1 << width).bit_select(value.as_unsigned(), 1)


def _highest(code, values):
    """``values[i + 1]`` for the highest set bit ``i`` of the thermometer code ``code`` (bit ``i``
    set implies every bit below it set), ``values[0]`` when none is: a balanced tree of
    multiplexers, each selected by one code bit (no one-hot decoding); the upper half of a range
    splits first, so that ``values[0]`` meets bit 0 in the tree's last level."""

    def pick(lo, hi):
        if hi - lo == 1:
            return values[lo]
        mid = (lo + hi + 1) // 2
        return Mux(code[mid - 1], pick(mid, hi), pick(lo, mid))

    return pick(0, len(values))


def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def uses_bound_flags(pipeline: Pipeline, layer: Layer) -> bool:
    """The stored tracer bound flags of ``bound_flags``: ST-BIF only (graded lanes compare the
    tracer with their levels' constants)."""
    return pipeline.bound_flags and levels(layer) == 1


def uses_level_code(pipeline: Pipeline, layer: Layer) -> bool:
    """Graded lanes with ``registered_sums``: the level registered as a thermometer code, the
    result computed after the register by one sum (``NeuronLanes._elaborate_level_code``); the
    lanes then take each lane's Θ (``thresholds``, per-neuron thresholds) and no ``plus{j}``
    offsets."""
    return pipeline.registered_sums and levels(layer) > 1


def uses_membrane_copy(pipeline: Pipeline, layer: Layer) -> bool:
    """Graded lanes with ``registered_sums`` read a second copy of the membranes (the operand
    register's fan-out into the ``2J`` carry chains of ``U1`` and the level tests, halved)."""
    return uses_level_code(pipeline, layer)


def levels(layer: Layer) -> int:
    """Spike levels ``J`` of a layer's neurons: ``|s| ∈ {2^0 … 2^(J−1)}`` (1 for ST-BIF)."""
    return layer.spike_max.bit_length()


def _theta(layer: Layer, widths: LayerWidths):
    if layer.per_neuron_threshold:
        return Signal(unsigned(widths.threshold))
    return Const(layer.threshold)


def offset_shapes(layer: Layer, widths: LayerWidths, drive_width: int):
    """Natural shapes of ``drive - Θ`` and ``drive + Θ`` (no bit a copy of another)."""
    d, theta = Signal(signed(drive_width)), _theta(layer, widths)
    return (d - theta).shape(), (d + theta).shape()


def level_layout(
    layer: Layer, widths: LayerWidths, drive_width: int, lanes: int, *, results: bool = True
):
    """The graded offsets of the levels above 0, per lane (``None`` with one level):
    ``minus{j} = drive − Θ·2^j`` and (with ``results``: the lanes compute every result as a sum
    of its own) ``plus{j} = drive + Θ·2^j`` for ``1 ≤ j < J``, and
    ``below{j} = drive + Θ·(2^j − 1)`` for ``2 ≤ j < J`` (the test of a negative level ``j``:
    ``⌈−U1/Θ⌉ ≥ 2^j ⇔ U1 + Θ·(2^j − 1) < 0``).

    Each is exactly as wide as the range of its operands' bits needs (not Amaranth's shape of
    the expression, whose top bit can be a copy of the next: Yosys would alias the two bits of
    the one port vector, a combinational loop to Verilator)."""
    d_lo, d_hi = -(1 << (drive_width - 1)), (1 << (drive_width - 1)) - 1
    if layer.per_neuron_threshold:
        t_lo, t_hi = 0, (1 << widths.threshold) - 1
    else:
        t_lo = t_hi = int(layer.threshold)
    fields = {}
    for j in range(1, levels(layer)):
        ranges = {f"minus{j}": (d_lo - (t_hi << j), d_hi - (t_lo << j))}
        if results:
            ranges[f"plus{j}"] = (d_lo + (t_lo << j), d_hi + (t_hi << j))
        if j >= 2:
            ranges[f"below{j}"] = (d_lo + t_lo * ((1 << j) - 1), d_hi + t_hi * ((1 << j) - 1))
        for name, (lo, hi) in ranges.items():
            fields[name] = data.ArrayLayout(signed(signed_width(lo, hi)), lanes)
    return data.StructLayout(fields) if fields else None


def multiples_layout(layer: Layer, widths: LayerWidths, lanes: int):
    """Per-neuron thresholds of a graded layer with more than two levels: ``x{j} = Θ·(2^j − 1)``
    per lane for ``2 ≤ j < J`` (else ``None``), stored in the threshold ROM
    (:class:`WordConstants`) so that ``below{j}`` is one adder."""
    if not layer.per_neuron_threshold or levels(layer) <= 2:
        return None
    return data.StructLayout(
        {
            f"x{j}": data.ArrayLayout(unsigned(widths.threshold + j), lanes)
            for j in range(2, levels(layer))
        }
    )


def _level_offsets(layer: Layer, drive, theta, j: int, multiple=None, results=True) -> dict:
    out = {f"minus{j}": drive - (theta << j)}
    if results:
        out[f"plus{j}"] = drive + (theta << j)
    if j >= 2:  # Θ·(2^j − 1): a constant, or given (per-neuron thresholds)
        out[f"below{j}"] = drive + (theta * ((1 << j) - 1) if multiple is None else multiple)
    return out


class DriveOffsets(wiring.Component):
    """``drive - Θ`` and ``drive + Θ`` per lane: the threshold's share of the update's sums.

    Latency 0 (combinational), or 1 with ``registered``. Throughput one word per cycle.

    Parameters
    ----------
    layer : ir.Layer
        Its threshold (a constant) unless it has one per neuron (then ``thresholds``).
    widths : ir.network.LayerWidths
    lanes, drive_width : int
    registered : bool
    results : bool
        Also the offsets of the results of the levels above 0 (``plus{j}``,
        :func:`level_layout`); not for :func:`uses_level_code` lanes.

    Members
    -------
    drive : In(ArrayLayout(signed(drive_width), lanes))
    thresholds : In(ArrayLayout(unsigned(widths.threshold), lanes))
        Only with per-neuron thresholds.
    multiples : In(multiples_layout)
        Graded, per-neuron thresholds, more than two levels: ``Θ·(2^j − 1)`` per lane.
    minus, plus : Out(ArrayLayout(..., lanes))
        At their natural widths (:func:`offset_shapes`).
    levels : Out(level_layout)
        Graded neurons with more than one level only: the offsets of the levels above 0
        (:func:`level_layout`).
    """

    def __init__(
        self,
        *,
        layer: Layer,
        widths: LayerWidths,
        lanes: int,
        drive_width: int,
        registered: bool,
        results: bool = True,
    ) -> None:
        self._layer, self._lanes, self._registered = layer, lanes, bool(registered)
        self._results = bool(results)
        minus, plus = offset_shapes(layer, widths, drive_width)
        members = {"drive": In(data.ArrayLayout(signed(drive_width), lanes))}
        if layer.per_neuron_threshold:
            members["thresholds"] = In(data.ArrayLayout(unsigned(widths.threshold), lanes))
        multiples = multiples_layout(layer, widths, lanes)
        if multiples is not None:
            members["multiples"] = In(multiples)
        members |= {"minus": Out(data.ArrayLayout(minus, lanes))}
        members |= {"plus": Out(data.ArrayLayout(plus, lanes))}
        graded = level_layout(layer, widths, drive_width, lanes, results=self._results)
        if graded is not None:
            members["levels"] = Out(graded)
        super().__init__(members)

    @property
    def latency(self) -> int:
        return int(self._registered)

    def elaborate(self, platform):
        m = Module()
        stage = m.d.sync if self._registered else m.d.comb
        for k in range(self._lanes):
            per_neuron = self._layer.per_neuron_threshold
            theta = self.thresholds[k] if per_neuron else self._layer.threshold
            stage += [
                self.minus[k].eq(self.drive[k] - theta),
                self.plus[k].eq(self.drive[k] + theta),
            ]
            for j in range(1, levels(self._layer)):
                multiple = None
                if per_neuron and j >= 2:
                    multiple = self.multiples[f"x{j}"][k]
                offsets = _level_offsets(
                    self._layer, self.drive[k], theta, j, multiple, self._results
                )
                for name, value in offsets.items():
                    stage += self.levels[name][k].eq(value)
        return m


def _period(rows: np.ndarray) -> int:
    """The smallest ``p`` with ``rows[w] == rows[w mod p]`` for every ``w``."""
    words = len(rows)
    for p in range(1, words // 2 + 1):
        if np.array_equal(rows[p:], rows[:-p]):
            return p
    return words


class WordConstants(wiring.Component):
    """Per-word constants, read like the state: the initial word and the thresholds.

    Latency 1 (:data:`hw.model.cycle_model.READ_LATENCY`): the outputs in cycle ``x + 1`` are those
    of ``word`` in cycle ``x`` (a ROM; constants when there is one word).

    Parameters
    ----------
    word_layout : data.StructLayout
        A stored word (:meth:`NeuronArray.word_layout`).
    membranes : numpy.ndarray
        ``[words, lanes]`` initial membranes ``H + B``.
    flags : dict
        Initial bound flags (``below_p``, ``above_n``) of every word, if stored.
    thresholds : numpy.ndarray or None
        ``[words, lanes]`` per-neuron thresholds, or ``None`` for one threshold.
    threshold_width : int

    Members
    -------
    word : In(range(words))
    initial : Out(word_layout)
        ``U = H + B``, ``A = 0`` and the bound flags of ``A = 0``.
    thresholds : Out(ArrayLayout(unsigned(threshold_width), lanes))
        Only with per-neuron thresholds.
    """

    def __init__(
        self,
        *,
        word_layout,
        membranes,
        flags,
        thresholds,
        threshold_width: int,
        multiples: data.StructLayout | None = None,
    ) -> None:
        words, lanes = membranes.shape
        self._flags = dict(flags)
        rows = {"initial": membranes}
        shapes = {"initial": word_layout["membranes"].shape}
        members = {"word": In(_addr_shape(words)), "initial": Out(word_layout)}
        if thresholds is not None:
            rows["thresholds"] = thresholds
            shapes["thresholds"] = data.ArrayLayout(unsigned(threshold_width), lanes)
            members["thresholds"] = Out(shapes["thresholds"])
        if multiples is not None:  # graded: Θ·(2^j − 1) per neuron, stored beside Θ
            for name, field in multiples:
                j = int(name[1:])
                rows[name] = thresholds * ((1 << j) - 1)
                shapes[name] = field.shape
            members["multiples"] = Out(multiples)
        self._multiples = multiples
        self._layout = data.StructLayout(shapes)
        self._rows = [{name: v[w].tolist() for name, v in rows.items()} for w in range(words)]
        self._period = _period(
            np.concatenate([np.asarray(v).reshape(words, -1) for v in rows.values()], axis=1)
        )
        super().__init__(members)

    @property
    def latency(self) -> int:
        return READ_LATENCY

    @property
    def period(self) -> int:
        """The ROM's rows: the smallest ``p`` with row ``w`` == row ``w mod p`` for every word (a
        ViT site's neurons repeat their thresholds and bias per token: ``p`` = words per token)."""
        return self._period

    def elaborate(self, platform):
        m = Module()
        p = self._period
        if p == 1:
            read = self._layout.const(self._rows[0])
        else:
            rom = memory.Memory(shape=self._layout, depth=p, init=self._rows[:p])
            m.submodules.rom = rom
            rp = rom.read_port()
            if p == len(self._rows):
                m.d.comb += rp.addr.eq(self.word)
            elif p & (p - 1) == 0:  # word mod p: the low bits
                m.d.comb += rp.addr.eq(self.word[: p.bit_length() - 1])
            else:  # word mod p from a table (logic: words × log2 p bits)
                rows = len(self._rows)
                mod = memory.Memory(shape=range(p), depth=rows, init=[w % p for w in range(rows)])
                m.submodules.row_of_word = mod
                mp = mod.read_port(domain="comb")
                m.d.comb += [mp.addr.eq(self.word), rp.addr.eq(mp.data)]
            read = rp.data
        m.d.comb += self.initial.membranes.eq(read.initial)
        m.d.comb += [self.initial[name].eq(value) for name, value in self._flags.items()]
        if "thresholds" in self._layout.members:
            m.d.comb += self.thresholds.eq(read.thresholds)
        if self._multiples is not None:
            m.d.comb += [self.multiples[name].eq(read[name]) for name, _ in self._multiples]
        return m


def _control_layout(words: int) -> data.StructLayout:
    """A word operation without its drive."""
    return data.StructLayout({"op": Op, "word": _addr_shape(words), "last": 1, "busy": 1})


_CONTROL = ("op", "word", "last", "busy")


def operands_layout(
    *,
    words: int,
    lanes: int,
    word_layout,
    drive_width: int,
    offsets,
    levels=None,
    copy=False,
    thresholds=None,
) -> data.StructLayout:
    """Everything the update of one word takes: the operation, its drive and the word's state
    (and the graded levels' offsets, :func:`level_layout`, when ``levels`` is given; with
    ``copy``, a second copy of the membranes, :func:`uses_membrane_copy`; the word's per-neuron
    thresholds when ``thresholds``, their layout, is given: :func:`uses_level_code`)."""
    minus, plus = offsets
    copies = {"membranes_copy": word_layout["membranes"].shape} if copy else {}
    if thresholds is not None:
        copies["thresholds"] = thresholds
    return data.StructLayout(
        {
            **{name: f.shape for name, f in _control_layout(words)},
            "driven": unsigned(lanes),  # per lane, a non-zero drive
            "drive": data.ArrayLayout(signed(drive_width), lanes),
            "drive_minus": data.ArrayLayout(minus, lanes),
            "drive_plus": data.ArrayLayout(plus, lanes),
            **({} if levels is None else {"drive_levels": levels}),
            "state": word_layout,
            **copies,
        }
    )


class Forward(wiring.Signature):
    """The results in flight, from the update back to the operands (``registered_read``).

    Members
    -------
    valid, word : Out(1), Out(range(words))
        The operation in the update's last stage (its result is computed in this cycle).
    result : Out(word_layout)
        The result register: the result of the operation that was there a cycle earlier.
    """

    def __init__(self, *, words: int, word_layout) -> None:
        super().__init__(
            {"valid": Out(1), "word": Out(_addr_shape(words)), "result": Out(word_layout)}
        )


class Operands(wiring.Component):
    """Stages 0 and 1 of the read-modify-write: the operands of each command's update.

    A command on ``i`` in cycle ``x`` (stage 0) is registered; the parent reads its word from
    the store and the constants meanwhile, so ``stored``, ``initial`` and ``thresholds`` belong
    to it in ``x + 1`` (stage 1). Without ``registered_read`` the operands go to the update in
    stage 1: the stored word (the initial one for ``INIT``) and ``drive ∓ Θ``. With it they are
    registered (stage 2): the operand register takes the stored word, the initial one, or the
    result register when the operation that last wrote the word is still in flight
    (``forward``); with ``forwarding``, the result register also replaces the operand register
    in stage 2 for an operation one ahead on the same word. Graded lanes with ``registered_sums``
    (:func:`uses_membrane_copy`) also get ``membranes_copy``, the membranes from a second operand
    register beside the first (no reset, so that synthesis keeps it).

    Latency ``pipeline.operand_latency`` (1, or 2 with ``registered_read``); throughput one
    command per cycle.

    Members
    -------
    i : In(stream.Signature(command_layout, always_ready=True))
    stored, initial : In(word_layout)
        The command's word from the store and its initial value, a cycle after ``i``.
    thresholds : In(ArrayLayout(unsigned(widths.threshold), lanes))
        Its per-neuron thresholds, a cycle after ``i`` (only with per-neuron thresholds).
    forward : In(Forward)
        Only with ``registered_read``.
    written : In(StoreWrite)
        The store's write port (only with ``bypassed_store``: the store is not transparent, so the
        word it writes in the cycle of a command's read is taken from a copy of it, one cycle
        later, chosen by a register decided when the command arrives).
    o : Out(stream.Signature(operands_layout, always_ready=True))
    """

    def __init__(
        self,
        *,
        layer: Layer,
        widths: LayerWidths,
        timing: LayerTiming,
        drive_width: int,
        word_layout,
    ) -> None:
        self._layer, self._widths, self._timing = layer, widths, timing
        self._drive_width, self._word_layout = drive_width, word_layout
        words, lanes = timing.words, timing.lanes
        command = command_layout(words=words, lanes=lanes, drive_width=drive_width)
        offsets = offset_shapes(layer, widths, drive_width)
        coded = uses_level_code(timing.pipeline, layer)
        theta_layout = data.ArrayLayout(unsigned(widths.threshold), lanes)
        layout = operands_layout(
            words=words,
            lanes=lanes,
            word_layout=word_layout,
            drive_width=drive_width,
            offsets=offsets,
            levels=level_layout(layer, widths, drive_width, lanes, results=not coded),
            copy=uses_membrane_copy(timing.pipeline, layer),
            thresholds=theta_layout if coded and layer.per_neuron_threshold else None,
        )
        members = {
            "i": In(stream.Signature(command, always_ready=True)),
            "stored": In(word_layout),
            "initial": In(word_layout),
        }
        if layer.per_neuron_threshold:
            members["thresholds"] = In(data.ArrayLayout(unsigned(widths.threshold), lanes))
        multiples = multiples_layout(layer, widths, lanes)
        if multiples is not None:
            members["multiples"] = In(multiples)
        if timing.pipeline.registered_read:
            members["forward"] = In(Forward(words=words, word_layout=word_layout))
        if timing.pipeline.bypassed_store:
            members["written"] = In(StoreWrite(shape=word_layout, depth=words))
        members["o"] = Out(stream.Signature(layout, always_ready=True))
        super().__init__(members)

    @property
    def latency(self) -> int:
        return self._timing.pipeline.operand_latency

    def elaborate(self, platform):
        m = Module()
        p, lanes, o = self._timing.pipeline, self._timing.lanes, self.o.payload
        # stage 1: the command, registered
        cmd = Signal(self.i.payload.shape(), name="cmd")
        cmd_valid = Signal(name="cmd_valid")
        m.d.sync += [cmd.eq(self.i.payload), cmd_valid.eq(self.i.valid)]
        driven = Cat(cmd.drive[k] != 0 for k in range(lanes))
        m.submodules.offsets = offsets = DriveOffsets(
            layer=self._layer,
            widths=self._widths,
            lanes=lanes,
            drive_width=self._drive_width,
            registered=p.registered_offsets,
            results=not uses_level_code(p, self._layer),
        )
        m.d.comb += [o.drive_minus.eq(offsets.minus), o.drive_plus.eq(offsets.plus)]
        if "levels" in offsets.signature.members:
            m.d.comb += o.drive_levels.eq(offsets.levels)
        thresholds = self.thresholds if self._layer.per_neuron_threshold else None
        multiples = self.multiples if "multiples" in self.signature.members else None
        if not p.registered_read:  # the update in stage 1, from the store's output
            m.d.comb += [self.o.valid.eq(cmd_valid), o.driven.eq(driven), o.drive.eq(cmd.drive)]
            m.d.comb += [o[name].eq(cmd[name]) for name in _CONTROL]
            m.d.comb += o.state.eq(Mux(cmd.op == Op.INIT, self.initial, self.stored))
            _feed(m, offsets, cmd.drive, thresholds, multiples)
            return m
        # stage 2: the operands, registered
        control = Signal(_control_layout(self._timing.words), name="op_a")
        valid, a_driven = Signal(name="op_a_valid"), Signal(lanes, name="op_a_driven")
        drive = Signal.like(cmd.drive, name="drive")
        m.d.sync += [control[name].eq(cmd[name]) for name in _CONTROL]
        m.d.sync += [valid.eq(cmd_valid), a_driven.eq(driven), drive.eq(cmd.drive)]
        m.d.comb += [self.o.valid.eq(valid), o.driven.eq(a_driven), o.drive.eq(drive)]
        m.d.comb += [o[name].eq(control[name]) for name in _CONTROL]
        if p.registered_offsets:  # d ± Θ computed in stage 1, registered
            _feed(m, offsets, cmd.drive, thresholds, multiples)
        else:  # from the registered drive (registering d ± Θ themselves lets Yosys alias their
            # sign bits into a combinational knot)
            if multiples is not None:  # Θ·(2^j − 1) from the ROM, registered with Θ
                registered_multiples = Signal.like(multiples, name="multiples_reg")
                m.d.sync += registered_multiples.eq(multiples)
                multiples = registered_multiples
            if thresholds is not None:
                registered = Signal.like(thresholds, name="thresholds_reg")
                m.d.sync += registered.eq(thresholds)
                thresholds = registered
            _feed(m, offsets, drive, thresholds, multiples)
        # the operand register's selects, from registers: decided a cycle ahead, when the
        # command arrives (the result register then holds what the update computes now)
        fwd, nxt = self.forward, self.i.payload
        ahead = Signal(name="forward_ahead")  # the operand is the result register
        in_result, init1 = Signal(name="in_result"), Signal(name="init1")
        m.d.sync += [
            ahead.eq(fwd.valid & (fwd.word == cmd.word) & (cmd.op != Op.INIT)),
            in_result.eq(fwd.valid & (fwd.word == nxt.word)),
            init1.eq(nxt.op == Op.INIT),
        ]
        stored = self.stored
        if p.bypassed_store:  # the word the store writes while the command's word is read
            written = Signal(self._word_layout, name="written")
            in_written = Signal(name="in_written")
            w = self.written
            m.d.sync += [written.eq(w.data), in_written.eq(w.en & (w.addr == nxt.word))]
            stored = Signal(self._word_layout, name="stored_or_written")
            m.d.comb += stored.eq(Mux(in_written, written, self.stored))
        operand = Signal(self._word_layout, name="operand_reg")
        m.d.sync += operand.eq(Mux(init1, self.initial, Mux(in_result, fwd.result, stored)))
        if uses_membrane_copy(p, self._layer):  # no reset: not merged with the operand register
            copy = Signal.like(operand.membranes, name="operand_copy", reset_less=True)
            membranes = [v.membranes for v in (self.initial, fwd.result, stored)]
            chosen = Mux(init1, membranes[0], Mux(in_result, membranes[1], membranes[2]))
            m.d.sync += copy.eq(chosen)
            m.d.comb += o.membranes_copy.eq(
                Mux(ahead, fwd.result.membranes, copy) if p.forwarding else copy
            )
        m.d.comb += o.state.eq(Mux(ahead, fwd.result, operand) if p.forwarding else operand)
        if "thresholds" in o.shape().members:  # Θ of the operand register's word, for the lanes
            theta = Signal.like(self.thresholds, name="thresholds_a")
            m.d.sync += theta.eq(self.thresholds)
            m.d.comb += o.thresholds.eq(theta)
        return m


def _feed(m: Module, offsets: DriveOffsets, drive, thresholds, multiples=None) -> None:
    m.d.comb += offsets.drive.eq(drive)
    if thresholds is not None:
        m.d.comb += offsets.thresholds.eq(thresholds)
    if multiples is not None:
        m.d.comb += offsets.multiples.eq(multiples)


class Update(wiring.Component):
    """The update of one word per cycle by the lanes, its write-back and the fired word.

    Latency ``pipeline.update_latency`` (:class:`NeuronLanes`: 0, or 1 with
    ``registered_sums``): operands on ``i`` in cycle ``x`` give ``o`` and ``state`` in
    ``x + latency``. The result is written back in that cycle (without ``registered_read``) or a
    cycle later from the result register, which ``forward`` hands back to the operands.
    Throughput one word per cycle.

    ``o.payload.busy`` is the step's busy flag so far, spikes aside: the OR, over the ``FIRE``
    operations since the last one with ``last`` set (this one included), of their ``busy`` bit
    and a non-zero drive.

    Members
    -------
    i : In(stream.Signature(operands_layout, always_ready=True))
    o : Out(stream.Signature(spike_word_layout, always_ready=True))
    state : Out(state_layout)
    write : Out(StoreWrite)
    forward : Out(Forward)
        Only with ``registered_read``.
    """

    def __init__(
        self,
        *,
        layer: Layer,
        widths: LayerWidths,
        timing: LayerTiming,
        drive_width: int,
        word_layout,
        operands: data.StructLayout,
    ) -> None:
        self._layer, self._widths, self._timing = layer, widths, timing
        self._drive_width, self._word_layout = drive_width, word_layout
        words, lanes = timing.words, timing.lanes
        members = {
            "i": In(stream.Signature(operands, always_ready=True)),
            "o": Out(
                stream.Signature(
                    spike_word_layout(
                        words=words, lanes=lanes, value_width=spike_value_width(layer.spike_max)
                    ),
                    always_ready=True,
                )
            ),
            "state": Out(
                state_layout(
                    lanes=lanes, membrane_width=widths.membrane, tracer_width=widths.tracer
                )
            ),
            "write": Out(StoreWrite(shape=word_layout, depth=words)),
        }
        if timing.pipeline.registered_read:
            members["forward"] = Out(Forward(words=words, word_layout=word_layout))
        super().__init__(members)

    @property
    def latency(self) -> int:
        return self._timing.pipeline.update_latency

    def elaborate(self, platform):
        m = Module()
        p, ops, o = self._timing.pipeline, self.i.payload, self.o.payload
        m.submodules.lanes = lanes = NeuronLanes(
            layer=self._layer,
            widths=self._widths,
            lanes=self._timing.lanes,
            pipeline=p,
            drive_width=self._drive_width,
            membrane_copy=uses_membrane_copy(p, self._layer),
        )
        m.d.comb += lanes.fire.eq(ops.op == Op.FIRE)
        if uses_membrane_copy(p, self._layer):
            m.d.comb += lanes.membranes_copy.eq(ops.membranes_copy)
        m.d.comb += [lanes.membranes.eq(ops.state.membranes), lanes.tracers.eq(ops.state.tracers)]
        m.d.comb += [lanes.drive.eq(ops.drive), lanes.drive_minus.eq(ops.drive_minus)]
        m.d.comb += lanes.drive_plus.eq(ops.drive_plus)
        if uses_bound_flags(p, self._layer):
            m.d.comb += [lanes.below_p.eq(ops.state.below_p), lanes.above_n.eq(ops.state.above_n)]
        if "drive_levels" in ops.shape().members:
            m.d.comb += lanes.drive_levels.eq(ops.drive_levels)
        if "thresholds" in ops.shape().members:
            m.d.comb += lanes.thresholds.eq(ops.thresholds)
        # the operation at the lanes' output (a cycle later with registered sums)
        op = Signal(_control_layout(self._timing.words), name="op")
        op_valid, op_driven = Signal(name="op_valid"), Signal(name="op_driven")
        stage = m.d.sync if p.registered_sums else m.d.comb
        stage += [op[name].eq(ops[name]) for name in _CONTROL]
        stage += [op_valid.eq(self.i.valid), op_driven.eq(ops.driven.any())]
        updated = Signal(self._word_layout, name="updated")
        m.d.comb += [
            updated.membranes.eq(lanes.next_membranes),
            updated.tracers.eq(lanes.next_tracers),
        ]
        if uses_bound_flags(p, self._layer):
            m.d.comb += [
                updated.below_p.eq(lanes.next_below_p),
                updated.above_n.eq(lanes.next_above_n),
            ]
        # the fired word, with the step's busy flag so far
        sticky = Signal(name="busy_sticky")
        m.d.comb += [
            self.o.valid.eq(op_valid & (op.op == Op.FIRE)),
            o.word.eq(op.word),
            o.last.eq(op.last),
            o.busy.eq(sticky | op.busy | op_driven),
            o.spikes.eq(lanes.spikes),
            self.state.membranes.eq(lanes.next_membranes),
            self.state.tracers.eq(lanes.next_tracers),
        ]
        with m.If(self.o.valid):
            m.d.sync += sticky.eq(~op.last & o.busy)
        write = self.write
        if not p.registered_read:  # written back at once
            m.d.comb += [write.addr.eq(op.word), write.en.eq(op_valid), write.data.eq(updated)]
            return m
        result = Signal(self._word_layout, name="result")
        result_word, result_valid = (
            Signal.like(op.word, name="result_word"),
            Signal(name="result_valid"),
        )
        m.d.sync += [result.eq(updated), result_word.eq(op.word), result_valid.eq(op_valid)]
        m.d.comb += [write.addr.eq(result_word), write.en.eq(result_valid), write.data.eq(result)]
        fwd = self.forward
        m.d.comb += [fwd.valid.eq(op_valid), fwd.word.eq(op.word), fwd.result.eq(result)]
        return m


class NeuronArray(wiring.Component):
    """The ``n_out`` ST-BIF neurons of a layer, updated ``lanes`` at a time.

    Every cycle it takes one word command on ``i`` (``INTEGRATE``: ``U += drive``; ``FIRE``: the
    full step update ``U += drive`` then fire; ``INIT``: ``U = H + B``, ``A = 0``) for word
    ``word`` (neurons ``word·lanes …``). Standalone, a time step is one ``FIRE`` command per word
    carrying that step's drive (``Σ w·s``, bias excluded: the bias is in ``H + B``), in any order;
    a run starts with one ``INIT`` per word.

    Blocks: :class:`StateStore` and :class:`WordConstants` read in stage 0, :class:`Operands`
    (stage 1, and 2 with ``registered_read``), :class:`Update` (:class:`NeuronLanes` and the
    write-back). Latency ``timing.array_latency``, the sum of :class:`Operands`' and
    :class:`Update`'s (1, 2, 3, 3 for the presets 0–3): a ``FIRE`` command in cycle ``x`` leaves
    on ``o`` (spikes) and ``state`` (the updated membranes and tracers) in cycle ``x + L``.
    Throughput: one word per cycle, no bubbles; two commands on the same word must be
    ``timing.min_distance`` cycles apart (1 for presets 0 and 1, so back to back is fine; 2 and
    3 for presets 2 and 3 — the sequencer pads its passes).

    ``o.payload.busy`` is the step's busy flag so far, spikes aside (:class:`Update`). The
    step's busy flag is that OR any spike of the step's words (the receiver sees them: keeping
    the OR over the lanes' spikes out of this stage keeps it off the update path).

    Parameters
    ----------
    layer : ir.Layer
    widths : ir.network.LayerWidths
        The layer's exact widths (``network.widths[k]``).
    timing : hw.model.cycle_model.LayerTiming
        Lanes and pipeline (``timing.n_out == layer.n_out``), the layer core's.
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
        timing: LayerTiming,
        storage: Storage | str | None = None,
        drive_width: int | None = None,
    ) -> None:
        if not isinstance(layer, Layer):
            raise TypeError(f"layer must be an ir.Layer, not {type(layer).__name__}")
        if not isinstance(widths, LayerWidths):
            raise TypeError(f"widths must be an ir.network.LayerWidths, not {widths!r}")
        check_timing(timing, layer.n_out)
        if drive_width is None:
            drive_width = widths.drive
        if not _is_count(drive_width):
            raise ValueError(f"drive_width must be a positive integer, not {drive_width!r}")
        self._drive_width = drive_width
        self._layer, self._widths, self._timing = layer, widths, timing
        self._storage = check_storage(storage, timing.words)
        words, lanes = timing.words, timing.lanes
        super().__init__(
            {
                "i": In(
                    stream.Signature(
                        command_layout(words=words, lanes=lanes, drive_width=drive_width),
                        always_ready=True,
                    )
                ),
                "o": Out(
                    stream.Signature(
                        spike_word_layout(
                            words=words, lanes=lanes, value_width=spike_value_width(layer.spike_max)
                        ),
                        always_ready=True,
                    )
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
    def timing(self) -> LayerTiming:
        return self._timing

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
    def pipeline(self) -> Pipeline:
        """The register stages (:class:`hw.model.cycle_model.Pipeline`)."""
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

    @property
    def word_layout(self) -> data.StructLayout:
        """A stored word: :attr:`state_layout`, with ``bound_flags`` also one bit per lane for
        ``A < p`` (``below_p``) and ``A > n`` (``above_n``)."""
        fields = {name: f.shape for name, f in self.state_layout}
        if uses_bound_flags(self.pipeline, self._layer):
            fields |= {"below_p": self.lanes, "above_n": self.lanes}
        return data.StructLayout(fields)

    def padded(self, values: np.ndarray, fill: int) -> np.ndarray:
        """Per-neuron ``values`` as ``[words, lanes]``, padding lanes set to ``fill``."""
        out = np.full(self.words * self.lanes, fill, dtype=np.int64)
        out[: self._layer.n_out] = values
        return out.reshape(self.words, self.lanes)

    def elaborate(self, platform):
        m = Module()
        layer, lanes, word_layout = self._layer, self.lanes, self.word_layout
        membranes = self.padded(layer.initial_membranes + layer.bias, 0)
        flags = {}
        if uses_bound_flags(self.pipeline, layer):  # A < p and A > n of A = 0, in every lane
            ones = (1 << lanes) - 1
            flags = {
                "below_p": ones * (0 < layer.pos_bound),
                "above_n": ones * (0 > layer.neg_bound),
            }
        m.submodules.constants = consts = WordConstants(
            word_layout=word_layout,
            membranes=membranes,
            flags=flags,
            thresholds=self.padded(layer.thresholds, 1) if layer.per_neuron_threshold else None,
            threshold_width=self._widths.threshold,
            multiples=multiples_layout(layer, self._widths, lanes),
        )
        m.submodules.store = store = StateStore(
            shape=word_layout,
            depth=self.words,
            init=[
                {"membranes": row.tolist(), "tracers": [0] * lanes, **flags} for row in membranes
            ],
            storage=self._storage,
            transparent=not self.pipeline.bypassed_store,
        )
        args = dict(
            layer=layer,
            widths=self._widths,
            timing=self._timing,
            drive_width=self._drive_width,
            word_layout=word_layout,
        )
        m.submodules.operands = operands = Operands(**args)
        m.submodules.update = update = Update(**args, operands=operands.o.payload.shape())
        # stage 0: the command's word is read from the store and the constants
        m.d.comb += [store.raddr.eq(self.i.payload.word), consts.word.eq(self.i.payload.word)]
        wiring.connect(m, wiring.flipped(self.i), operands.i)
        m.d.comb += [operands.stored.eq(store.rdata), operands.initial.eq(consts.initial)]
        if layer.per_neuron_threshold:
            m.d.comb += operands.thresholds.eq(consts.thresholds)
        if "multiples" in operands.signature.members:
            m.d.comb += operands.multiples.eq(consts.multiples)
        wiring.connect(m, operands.o, update.i)
        wiring.connect(m, update.write, store.write)
        if self.pipeline.bypassed_store:
            w = operands.written
            m.d.comb += [w.en.eq(store.write.en), w.addr.eq(store.write.addr)]
            m.d.comb += w.data.eq(store.write.data)
        if self.pipeline.registered_read:
            wiring.connect(m, update.forward, operands.forward)
        wiring.connect(m, update.o, wiring.flipped(self.o))
        m.d.comb += self.state.eq(update.state)
        return m


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
