"""Differential LayerNorm core: one LayerNorm site of a spiking ViT, event-driven and exact.

Architecture (one engine, one token at a time)::

    i ─▶ StepSequencer ─┬─ events ─▶ StateStore (X += v: one event per cycle)   ChangedTokens
                        │            (X, G_{t−1}, gain and bias ROMs)            (mask, first)
                        ├─ stats pass: X ─▶ Moments (S, ΣX², W = D·ΣX² − S² + E)
                        └─ elements: Z = D·X_i − S, a = c_i·Z ─▶ RoundingBank ─▶ G = B + r
                                     (``units`` × Rounding, round robin) └─▶ o: (index, G − G_{t−1})

Protocol, schedule and the cycle model: :mod:`hw.model.layer_norm_model` (every delay is a
block's ``latency``, defined once there). The rounding unit needs no divider and no multiplier in
its loop: it finds ``r = ⌊|a|/√W⌋`` bit by bit from the top with the square root recurrence on
``a²/W`` (one adder decides a bit), then adds 1 exactly when ``4a² ≥ (2r + 1)²·W`` — the
definition :func:`ir.transformer.layer_norm_exact`, ties included.

The unit takes ``bits + 5`` cycles per result, so a token's elements go through ``units`` of them
(:class:`RoundingBank`): element ``i`` is read as soon as the previous one was and unit
``i mod units`` is free, and the results leave in ascending order. ``units = 1`` is the serial
schedule (``dim·element_cycles`` cycles per token's element pass, ``element_cycles = bits +
13``); ``units ≥ element_cycles`` reads one element per cycle at ``units`` times the unit's
area (its loop registers and adders; the ``a²`` squarer is one, shared).

Timing (ECP5, issue 13's 150 MHz): every block RAM and multiplier has plain registers around it
(``hw.flow.ecp5`` moves them inside), the ``X`` updates in flight are forwarded instead of read
back through a transparent port, the rounding loop is one adder per register with operands a
register selects, and the sums of a result are formed per unit before the in-order retire.

``i.ready`` and ``o.valid`` depend on registers only; backpressure on ``o`` stalls the engine at
the element (or marker) whose beat cannot leave, idle input cycles stall the accumulate phase;
neither changes a value.
"""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.hdl import signed as _signed
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from spikezip.hw.cores.layouts import event_layout
from spikezip.hw.model import layer_norm_model as lnm
from spikezip.hw.model.events import EventFormat
from spikezip.ir.transformer.sites import LayerNorm
from spikezip.ir.transformer.vit import VisionTransformer

_streams = stream  # (``LayerNormCore``'s ``stream`` argument shadows the module)

__all__ = [
    "ChangedTokens",
    "LayerNormCore",
    "Moments",
    "Rounding",
    "RoundingBank",
    "Squarer",
    "StateStore",
    "StepSequencer",
    "w_constants",
]


class Squarer(wiring.Component):
    """``x²`` in two registered stages: the limb products ``lo²``, ``hi·lo``, ``hi²`` (each one
    ``MULT18X18D`` for ``width ≤ 36``, its input and output registers plain, so
    ``hw.flow.ecp5`` moves them into the block), then ``Cat(lo², hi²) + 2·hi·lo·2^k`` — one add.

    Latency: :data:`~hw.model.layer_norm_model.SQUARE_LATENCY` (``square`` in cycle ``c + 2`` is
    the square of ``x`` in cycle ``c``). Throughput: one per cycle. ``x`` should come from a
    register (it is the multipliers' input register). ``signed``: ``x`` is two's complement
    (``hi`` is signed, ``lo`` unsigned).

    Members
    -------
    x : In(unsigned(width) or signed(width)); square : Out(unsigned(2·width))
    """

    def __init__(self, *, width: int, signed: bool = False) -> None:
        if not isinstance(width, int) or isinstance(width, bool) or width < 1:
            raise ValueError(f"width must be a positive integer, not {width!r}")
        self._width, self._signed = width, bool(signed)
        shape = _signed(width) if self._signed else unsigned(width)
        super().__init__({"x": In(shape), "square": Out(unsigned(2 * width))})

    @property
    def latency(self) -> int:
        return lnm.SQUARE_LATENCY

    def elaborate(self, platform):
        m = Module()
        w = self._width
        k = (w + 1) // 2
        if w == 1:  # x² = |x|, two registered bits (a constant top register bit would give
            # Yosys conflicting init values on the exported Verilog)
            bit, late = Signal(reset_less=True), Signal(reset_less=True)
            m.d.sync += [bit.eq(self.x[0]), late.eq(bit)]
            m.d.comb += self.square.eq(late)
            return m
        out = Signal(2 * w, reset_less=True)
        m.d.comb += self.square.eq(out)
        lo, hi = self.x[:k], self.x[k:]
        if self._signed:
            hi = hi.as_signed()
        ll = Signal(2 * k, reset_less=True)
        hl = Signal(_signed(w + 1) if self._signed else unsigned(w), reset_less=True)
        hh = Signal(2 * (w - k), reset_less=True)
        m.d.sync += [ll.eq(lo * lo), hl.eq(hi * lo), hh.eq(hi * hi)]
        m.d.sync += out.eq(Cat(ll, hh) + (hl << (k + 1)))
        return m


class Rounding(wiring.Component):
    """``sgn(a)·⌊|a|/√W + ½⌋`` exactly, digit by digit: one adder per bit in the loop.

    The square root recurrence on ``a²/W``: with ``q`` the bits of ``r = ⌊|a|/√W⌋`` decided so
    far, ``R = ⌊a²/4^b⌋ − q²·W`` and ``Y = (4q + 1)·W``, the next bit is 1 exactly when
    ``T = 4R + (the next two bits of a²) − Y ≥ 0`` (then ``R ← T``, ``Y ← 2Y + 3W``, else
    ``R ← 4R + …``, ``Y ← 2Y − W``). One more step with two zero bits is the tie:
    ``4a² ≥ (2r + 1)²·W``, the definition :func:`ir.transformer.layer_norm_exact`. The loop
    keeps ``T`` itself (non-restoring) and ``2Y + W``, ``2Y + 3W`` of the previous ``Y``, so
    each step is three adders whose operands the sign of the kept ``T`` (a register) selects.

    Latency: ``bits + 6`` cycles from ``start`` to ``valid`` (:func:`rounding_latency`): the
    sign is latched, ``a²`` arrives :data:`~hw.model.layer_norm_model.SQUARE_LATENCY` cycles
    after ``start`` and is loaded into the unit's registers, then into the loop's, ``bits + 1``
    steps, then ``±(r + tie)``. Throughput: one
    result per ``latency`` cycles. ``valid`` falls with ``start`` and stays high with
    ``result`` until the next ``start``. ``w`` (and the constants) must be held from ``start``
    until ``valid``. Precondition: ``⌊|a|/√W⌋ < 2^bits``, ``W ≥ 1``.

    Parameters
    ----------
    a_width, w_width, bits : int
        Widths of ``|a|`` and ``W``, bits of ``r``.
    shared_square : bool
        No squarer and no constants of its own: ``a²`` is read from ``square``
        ``SQUARE_LATENCY`` cycles after ``start``, ``3W``, ``−W``, ``−3W`` from ``w3``,
        ``wn``, ``wn3`` from ``start + 4`` on (:class:`RoundingBank`'s one :class:`Squarer`
        and :func:`w_constants`).

    Members
    -------
    start : In(1)
    negative : In(1)
        ``a < 0``.
    magnitude : In(unsigned(a_width))
        ``|a|``, without ``shared_square``.
    w : In(unsigned(w_width))
    square : In(unsigned(2·a_width)); w3, wn, wn3 : In
        ``a²``, ``3W``, ``−W``, ``−3W`` (two's complement, ``w_width + bits + 4`` bits), only
        with ``shared_square``.
    valid : Out(1)
    result : Out(signed(bits + 2))
    """

    def __init__(
        self, *, a_width: int, w_width: int, bits: int, shared_square: bool = False
    ) -> None:
        for name, v in (("a_width", a_width), ("w_width", w_width), ("bits", bits)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be a positive integer, not {v!r}")
        self._aw, self._ww, self._bits = a_width, w_width, bits
        self._shared = bool(shared_square)
        tw = w_width + bits + 4
        if self._shared:
            operand = {
                "square": In(unsigned(2 * a_width)),
                "w3": In(w_width + 2),
                "wn": In(tw),
                "wn3": In(tw),
            }
        else:
            operand = {"magnitude": In(unsigned(a_width))}
        super().__init__(
            {
                "start": In(1),
                "negative": In(1),
                **operand,
                "w": In(unsigned(w_width)),
                "valid": Out(1),
                "result": Out(signed(bits + 2)),
            }
        )

    @property
    def latency(self) -> int:
        return lnm.rounding_latency(self._bits)

    def elaborate(self, platform):
        m = Module()
        aw, nb = self._aw, self._bits
        tw = self._ww + nb + 4  # T = 4R + pair − Y: |T| < 2^(nb+3)·W
        if self._shared:
            square, consts = self.square, (self.w, self.w3, self.wn, self.wn3)
        else:
            m.submodules.squarer = sq = Squarer(width=aw)
            m.d.comb += sq.x.eq(self.magnitude)
            square, consts = sq.square, w_constants(m, self.w, tw)
        w, w3, wn, wn3 = consts
        # non-restoring: S = the last T (R = S, or S + Y when T was negative), P = 2Y + W and
        # Q = 2Y + 3W of the previous Y; the next T = 4S + pair + (S ≥ 0 ? −Q : P),
        # P ← 2·(S ≥ 0 ? Q : P) + (S ≥ 0 ? W : −3W), Q ← … + (S ≥ 0 ? 3W : −W): every update
        # is one adder whose operands are chosen by a register bit (no logic after an adder)
        neg = Signal()
        t, p, q_ = Signal(signed(tw)), Signal(tw), Signal(tw)
        low = Signal(2 * nb)  # the bits of a² not yet shifted in, top first
        high = Signal(max(1, 2 * aw - 2 * nb))  # a² >> 2·bits: the first R (< W)
        bits, count = Signal(nb + 1), Signal(range(max(nb + 1, lnm.SQUARE_LATENCY)))
        load, step = Signal(), Signal()  # registers: INIT and STEP (FSM state, a cycle early)
        d = ~t[-1] | load  # the previous decision (INIT: the operands below are forced)
        pq = Mux(load, 0, Mux(d, q_, p) << 1)
        a_op = Mux(load, high[:tw], Cat(low[2 * nb - 2 :], t))
        b_op = Mux(load, 0, Mux(d, ~q_, p))
        with m.If(load | step):
            m.d.sync += t.eq((Cat(Const(1, 1), a_op) + Cat(d & ~load, b_op))[1:])
            m.d.sync += p.eq(pq + Mux(load | d, w, wn3))
            m.d.sync += q_.eq(pq + Mux(load, w, Mux(d, w3, wn)))
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += count.eq(lnm.SQUARE_LATENCY - 1)
                    m.next = "WAIT"
            with m.State("WAIT"):
                m.d.sync += count.eq(count - 1)
                with m.If(count == 1):
                    m.next = "LOAD"
            with m.State("LOAD"):  # a² into the unit's own registers, then into the adders
                m.d.sync += [low.eq(square), high.eq(square >> (2 * nb)), load.eq(1)]
                m.next = "INIT"
            with m.State("INIT"):
                m.d.sync += [count.eq(nb), load.eq(0), step.eq(1)]
                m.next = "STEP"
            with m.State("STEP"):
                m.d.sync += [bits.eq(Cat(d, bits)), low.eq(low << 2), count.eq(count - 1)]
                with m.If(count == 0):
                    m.d.sync += step.eq(0)
                    m.next = "OUT"
            with m.State("OUT"):  # bits: r (and one bit above it), the tie in the sign of T
                # ±(r + tie) = (neg ? ~r : r) + (tie XOR neg), one adder (carry in below bit 0)
                r_ext = Cat(bits[:nb], Const(0, 2))
                signed_r = Mux(neg, ~r_ext, r_ext)
                total = (Cat(Const(1, 1), signed_r) + Cat(~t[-1] ^ neg, Const(0, nb + 2)))[1:]
                m.d.sync += [self.result.eq(total[: nb + 2]), self.valid.eq(1)]
                m.next = "IDLE"
        with m.If(self.start):  # only while IDLE (the sequencer waits for ``valid``)
            m.d.sync += [self.valid.eq(0), neg.eq(self.negative)]
        return m


def w_constants(m: Module, w, width: int) -> tuple:
    """``W``, ``3W``, ``−W``, ``−3W`` (``width`` bits, two's complement) for :class:`Rounding`:
    ``W`` as given, the others in plain registers (valid one, one and two cycles after ``W``;
    the unit reads them from its first step, ``SQUARE_LATENCY + 2`` cycles after ``start``)."""
    w3 = Signal(len(w) + 2, name="w_3", reset_less=True)
    wn, wn3 = (Signal(width, name=n, reset_less=True) for n in ("w_neg", "w_3_neg"))
    m.d.sync += [w3.eq(w + (w << 1)), wn.eq(-w), wn3.eq(-w3)]  # one adder each
    return w, w3, wn, wn3


class RoundingBank(wiring.Component):
    """``units`` rounding units behind one in-order interface: element ``k`` (the ``k``-th
    reserved) goes to unit ``k mod units``, results come back in the order reserved.

    * ``reserve`` claims the next unit (only while ``ready``: it holds no element; a unit freed by
      ``take`` is ready in the next cycle — ``ready`` depends on registers only);
    * ``start`` starts the earliest reserved unit not yet started, with ``numerator`` (``a``),
      ``negative`` (its sign; any value when ``a = 0``), ``w``, and ``bias`` and ``ref``
      (carried along);
    * ``valid``: the oldest element's result ``q`` is ready, with ``total = bias + q``,
      ``diff = q − ref`` and ``differs = (q ≠ ref)`` (formed per unit, registered); ``take``
      retires it and frees its unit.

    Latency: ``bits + 7`` cycles from ``start`` to ``valid`` (:func:`bank_latency`: the
    :class:`Rounding` unit, then its sums). Throughput: one start per cycle while units are
    free; each unit holds its element from ``reserve`` to ``take``. Resources: ``units`` copies
    of :class:`Rounding` without their squarers, and one :class:`Squarer` for all: the unit
    started in cycle ``c`` takes ``a²`` in ``c + 2`` (at most one start per cycle, so the
    square is always its own; ``numerator`` should come from a register: it is the squarer's
    multipliers' input register).

    Members
    -------
    reserve, start, take : In(1)
    negative : In(1); numerator : In(signed(a_width)); w : In(unsigned(w_width))
    load_w : In(1), idle : Out(1) (``hold_w``: ``W`` is taken in when ``load_w`` is high — with a
    token's first start — and held for every unit after it, so the next token's statistics
    may change ``w`` while this one rounds; ``idle``: no unit holds an element, from registers)
    bias : In(signed(bias_width)); ref : In(signed(ref_width))
    ready, valid, differs : Out(1); total, diff : Out(signed)
    """

    def __init__(
        self,
        *,
        units: int,
        a_width: int,
        w_width: int,
        bits: int,
        bias_width: int,
        ref_width: int,
        hold_w: bool = False,
    ):
        if not isinstance(units, int) or isinstance(units, bool) or units < 1:
            raise ValueError(f"units must be a positive integer, not {units!r}")
        self._units, self._args = units, {"a_width": a_width, "w_width": w_width, "bits": bits}
        self._hold_w = bool(hold_w)
        held = {"load_w": In(1), "idle": Out(1)} if self._hold_w else {}
        super().__init__(
            {
                **held,
                "reserve": In(1),
                "start": In(1),
                "take": In(1),
                "negative": In(1),
                "numerator": In(signed(a_width)),
                "w": In(unsigned(w_width)),
                "bias": In(signed(bias_width)),
                "ref": In(signed(ref_width)),
                "ready": Out(1),
                "valid": Out(1),
                "total": Out(signed(max(bias_width, bits + 2) + 1)),
                "diff": Out(signed(max(ref_width, bits + 2) + 1)),
                "differs": Out(1),
            }
        )

    @property
    def units(self) -> int:
        return self._units

    @property
    def latency(self) -> int:
        return lnm.bank_latency(self._args["bits"])

    def elaborate(self, platform):
        m = Module()
        n = self._units
        held, armed = Signal(n), Signal(n)  # reserved / started, until taken
        m.submodules.squarer = squarer = Squarer(width=self._args["a_width"], signed=True)
        m.d.comb += squarer.x.eq(self.numerator)
        tw = self._args["w_width"] + self._args["bits"] + 4
        w = self.w
        if self._hold_w:  # W held from ``load_w`` (a token's first start) to the next one
            w = Signal.like(self.w, name="w_held", reset_less=True)
            with m.If(self.load_w):
                m.d.sync += w.eq(self.w)
            m.d.comb += self.idle.eq(~held.any())
        _, w3, wn, wn3 = w_constants(m, w, tw)  # W is the same for every unit in flight
        ptr = {k: Signal(range(n), name=f"{k}_ptr") for k in ("reserve", "start", "take")}
        for k, p in ptr.items():
            with m.If(getattr(self, k)):
                m.d.sync += p.eq(Mux(p == n - 1, 0, p + 1))
        one = Const(1, n)
        took = Mux(self.take, one << ptr["take"], 0)
        m.d.sync += held.eq((held | Mux(self.reserve, one << ptr["reserve"], 0)) & ~took)
        m.d.sync += armed.eq((armed | Mux(self.start, one << ptr["start"], 0)) & ~took)
        m.d.comb += self.ready.eq(~held.bit_select(ptr["reserve"], 1))
        plain = {"reset_less": True}
        for j in range(n):
            m.submodules[f"unit{j}"] = unit = Rounding(**self._args, shared_square=True)
            m.d.comb += [unit.square.eq(squarer.square), unit.w3.eq(w3), unit.wn.eq(wn)]
            m.d.comb += unit.wn3.eq(wn3)
            bias = Signal.like(self.bias, name=f"bias{j}")
            ref = Signal.like(self.ref, name=f"ref{j}")
            go = self.start & (ptr["start"] == j)
            m.d.comb += [unit.start.eq(go), unit.negative.eq(self.negative), unit.w.eq(w)]
            with m.If(go):
                m.d.sync += [bias.eq(self.bias), ref.eq(self.ref)]
            # one cycle after the unit's result: its sums, and valid until taken
            ok = Signal(name=f"ok{j}")
            total = Signal.like(self.total, name=f"total{j}", **plain)
            diff = Signal.like(self.diff, name=f"diff{j}", **plain)
            differs = Signal(name=f"differs{j}", **plain)
            q = unit.result
            m.d.sync += [ok.eq(unit.valid & armed[j] & ~took[j]), total.eq(bias + q)]
            m.d.sync += [diff.eq(q - ref), differs.eq(q != ref)]
            with m.If(ptr["take"] == j):
                m.d.comb += [self.valid.eq(ok), self.total.eq(total), self.diff.eq(diff)]
                m.d.comb += self.differs.eq(differs)
        return m


class Moments(wiring.Component):
    """``S = Σ x`` and ``W = D·Σ x² − S² + E`` over the ``x`` of one token.

    Latency: ``W`` and ``S`` hold the sums of every ``x`` given up to cycle ``c`` from cycle
    ``c + MOMENTS_LATENCY`` and ``c + MOMENTS_SUM_LATENCY`` on
    (:mod:`hw.model.layer_norm_model`). ``clear`` empties the sums (no ``x`` may be in flight).

    Members
    -------
    clear, valid : In(1)
    x : In(signed(stream_width))
    total : Out(signed(sum_width))
        ``S``.
    w : Out(unsigned(w_width))
    """

    def __init__(self, *, geometry: lnm.LayerNormGeometry) -> None:
        g = self._geo = geometry
        super().__init__(
            {
                "clear": In(1),
                "valid": In(1),
                "x": In(signed(g.stream_width)),
                "total": Out(signed(g.sum_width)),
                "w": Out(unsigned(g.w_width)),
            }
        )

    @property
    def latency(self) -> int:
        return lnm.MOMENTS_LATENCY

    def elaborate(self, platform):
        m = Module()
        g = self._geo
        plain = {"reset_less": True}
        x1, x2 = Signal(signed(g.stream_width), **plain), Signal(signed(g.stream_width), **plain)
        v1, v2, sq = Signal(), Signal(), Signal(2 * g.stream_width, **plain)
        q = Signal(g.square_sum_width)
        # plain registers around the multipliers (hw.flow.ecp5 moves them into the DSPs): x
        # before and x² after the squarer; a copy of S before the S² Squarer; D·Σx² + E
        m.d.sync += [x1.eq(self.x), v1.eq(self.valid), x2.eq(x1), sq.eq(x1 * x1), v2.eq(v1)]
        with m.If(self.clear):
            m.d.sync += [self.total.eq(0), q.eq(0)]
        with m.Elif(v2):
            m.d.sync += [self.total.eq(self.total + x2), q.eq(q + sq)]
        m.submodules.s2 = s2 = Squarer(width=g.sum_width, signed=True)
        copy = Signal(signed(g.sum_width), **plain)
        scaled = Signal(g.w_width + 1, **plain)  # D·Σx² + E ≤ D²·bound² + E
        m.d.sync += [copy.eq(self.total), scaled.eq(g.dim * q + g.eps)]
        m.d.comb += s2.x.eq(copy)
        m.d.sync += self.w.eq(scaled - s2.square)
        return m


class StateStore(wiring.Component):
    """The accumulated stream ``X``, the previous output ``G``, and the gain and bias ROMs.

    * ``ev_valid``: ``X[ev_index] += ev_value`` (read in this cycle, added two cycles later,
      written in the third; one event per cycle, on any entries: a read sees every earlier
      event, the three whose writes are still in flight through forwarding registers);
    * ``addr``/``channel``: read ``x``, ``g_prev``, ``gain``, ``bias``: valid three cycles
      later (:data:`~hw.model.layer_norm_model.READ_LATENCY`; ``ev_valid`` takes the ``X``
      port); every memory has a plain output register (``hw.flow.ecp5`` moves it into the block
      RAM), so no logic follows a block RAM's read directly, and ``x`` is registered again
      after the forwarding;
    * ``g_we``: ``G[g_addr] = g_data``; ``clear``: ``X[addr] = G[addr] = 0``.

    Members
    -------
    ev_valid : In(1); ev_index : In(index); ev_value : In(signed(increment_width))
    addr : In(index); channel : In(channel); clear, g_we : In(1); g_addr, g_data : In
    x, g_prev, gain, bias : Out
    """

    def __init__(self, *, norm: LayerNorm, geometry: lnm.LayerNormGeometry) -> None:
        self._norm, g = norm, geometry
        self._geo = g
        gw = max(2, (int(abs(norm.gain).max())).bit_length() + 1)
        bw = max(2, (int(abs(norm.bias).max())).bit_length() + 1)
        super().__init__(
            {
                "ev_valid": In(1),
                "ev_index": In(g.index_width),
                "ev_value": In(signed(g.increment_width)),
                "addr": In(g.index_width),
                "channel": In(g.channel_width),
                "clear": In(1),
                "g_we": In(1),
                "g_addr": In(g.index_width),
                "g_data": In(signed(g.output_width)),
                "x": Out(signed(g.stream_width)),
                "g_prev": Out(signed(g.output_width)),
                "gain": Out(signed(gw)),
                "bias": Out(signed(bw)),
            }
        )

    @property
    def latency(self) -> int:
        return lnm.READ_LATENCY

    def elaborate(self, platform):
        m = Module()
        g, n = self._geo, self._norm
        # no read ever needs the value written in its own cycle (the X reads forward the writes
        # in flight; a G entry is read long before its write): ``_nocollide`` names
        # (hw.flow.synth.NOCOLLIDE), so Yosys adds no read-first logic between the block RAM
        # and its output register
        xmem = memory.Memory(shape=signed(g.stream_width), depth=g.entries, init=[])
        gmem = memory.Memory(shape=signed(g.output_width), depth=g.entries, init=[])
        m.submodules.xmem_nocollide, m.submodules.gmem_nocollide = xmem, gmem
        m.submodules.gain = gain = memory.Memory(
            shape=self.gain.shape(), depth=g.dim, init=[int(v) for v in n.gain]
        )
        m.submodules.bias = bias = memory.Memory(
            shape=self.bias.shape(), depth=g.dim, init=[int(v) for v in n.bias]
        )
        xw, gwp = xmem.write_port(), gmem.write_port()
        xr, gr = xmem.read_port(), gmem.read_port()
        cr, br = gain.read_port(), bias.read_port()
        # read-out registers (plain: hw.flow.ecp5 moves them into the DP16KD output registers)
        reads = (("x", None, xr), ("g", self.g_prev, gr), ("gain", self.gain, cr),
                 ("bias", self.bias, br))  # fmt: skip
        for name, port, rp in reads:
            reg = Signal.like(rp.data, name=f"{name}_q", reset_less=True)
            m.d.sync += reg.eq(rp.data)
            if port is None:
                xq = reg
            else:  # one more register: aligned with x (registered after the forwarding)
                late = Signal.like(rp.data, name=f"{name}_r", reset_less=True)
                m.d.sync += late.eq(reg)
                m.d.comb += port.eq(late)
        # the accumulate pipeline: event k is read in k, added in k + 2 (``p[1]``), written in
        # k + 3 (``p[2]``, its sum in ``h[0]``); a read in c misses the writes of events c − 3 ..
        # c − 1, whose sums are in ``h`` in c + 2: ``hit`` (registered in c + 1) forwards them
        p = [
            SimpleNamespace(
                v=Signal(name=f"p{j}_valid"), i=Signal(g.index_width, name=f"p{j}_index")
            )
            for j in range(4)
        ]
        val = [Signal(signed(g.increment_width), name=f"p{j}_value") for j in range(2)]
        h = [Signal(signed(g.stream_width), name=f"h{j}", reset_less=True) for j in range(3)]
        hit = [Signal(name=f"hit{j}") for j in range(3)]
        raddr = Signal(g.index_width)
        rd = Mux(self.ev_valid, self.ev_index, self.addr)
        m.d.sync += [p[0].v.eq(self.ev_valid), p[0].i.eq(self.ev_index), val[0].eq(self.ev_value)]
        m.d.sync += [val[1].eq(val[0]), raddr.eq(rd)]
        for j in range(1, 4):
            m.d.sync += [p[j].v.eq(p[j - 1].v), p[j].i.eq(p[j - 1].i)]
        for j in range(3):
            m.d.sync += hit[j].eq(p[j + 1].v & (p[j + 1].i == raddr))
        x = Signal(signed(g.stream_width))
        m.d.comb += x.eq(Mux(hit[0], h[0], Mux(hit[1], h[1], Mux(hit[2], h[2], xq))))
        m.d.sync += [h[0].eq(x + val[1]), h[1].eq(h[0]), h[2].eq(h[1])]
        m.d.comb += [
            xr.addr.eq(rd),
            gr.addr.eq(self.addr),
            cr.addr.eq(self.channel),
            br.addr.eq(self.channel),
            xw.addr.eq(Mux(self.clear, self.addr, p[2].i)),
            xw.data.eq(Mux(self.clear, 0, h[0])),
            xw.en.eq(self.clear | p[2].v),
            gwp.addr.eq(Mux(self.clear, self.addr, self.g_addr)),
            gwp.data.eq(Mux(self.clear, 0, self.g_data)),
            gwp.en.eq(self.clear | self.g_we),
        ]
        xr_ = Signal.like(x, name="x_r", reset_less=True)
        m.d.sync += xr_.eq(x)
        m.d.comb += self.x.eq(xr_)
        return m


class ChangedTokens(wiring.Component):
    """The per-token "changed" mask and its lowest set token.

    ``mark`` sets the token of flat index ``index`` (``token = index·mult >> shift``, exact for
    every index, checked at construction), ``set_all`` every token, ``drop`` token ``token``;
    the effect is visible in the next cycle (latency 1). ``any``/``first`` are combinational.

    ``pipelined`` (the LayerNorm core's): ``mark`` is registered first (visible two cycles
    later) and ``drop`` drops the lowest set token (``mask & (mask − 1)``; no ``token``
    member), so no priority encoder lies in the mask's loop.

    ``geometry.stream`` (pipelined only): ``later`` is high while a set token lies below the
    token of the last index marked (visible with the mask, two cycles after the mark), i.e. a
    changed token whose input is complete when the input comes in ascending token order;
    ``forget`` (the step's end) empties that record.

    Members
    -------
    mark, set_all, drop : In(1); index : In(index_width); token : In(range(tokens))
    any : Out(1); first : Out(range(tokens)); later : Out(1), forget : In(1) (streaming)
    """

    def __init__(self, *, geometry: lnm.LayerNormGeometry, pipelined: bool = False) -> None:
        g = self._geo = geometry
        self._pipelined = bool(pipelined)
        if g.stream and not self._pipelined:
            raise ValueError("a streaming geometry needs pipelined=True")
        shift = g.index_width + g.channel_width + 1
        self._mult = -(-(1 << shift) // g.dim)
        self._shift = shift
        if any((i * self._mult) >> shift != i // g.dim for i in range(g.entries)):
            raise AssertionError("token-of-index reciprocal is not exact")  # pragma: no cover
        token = {} if self._pipelined else {"token": In(range(g.tokens))}
        if g.stream:
            token |= {"later": Out(1), "forget": In(1)}
        super().__init__(
            {
                "mark": In(1),
                "set_all": In(1),
                "drop": In(1),
                "index": In(g.index_width),
                **token,
                "any": Out(1),
                "first": Out(range(g.tokens)),
            }
        )

    @property
    def latency(self) -> int:
        return 1

    def elaborate(self, platform):
        m = Module()
        n = self._geo.tokens
        mask = Signal(n)
        of, marked = Signal(range(n)), Signal()
        token = (self.index * self._mult) >> self._shift
        if self._pipelined:
            m.d.sync += [of.eq(token), marked.eq(self.mark)]
            nxt = Mux(self.drop, mask & (mask - 1), mask)
        else:
            m.d.comb += [of.eq(token), marked.eq(self.mark)]
            nxt = mask & ~Mux(self.drop, Const(1, n) << self.token, 0)
        with m.If(self.set_all):
            m.d.sync += mask.eq((1 << n) - 1)
        with m.Else():
            m.d.sync += mask.eq(nxt | Mux(marked, Const(1, n) << of, 0))
        m.d.comb += self.any.eq(mask.any())
        if self._geo.stream:  # tokens below the last one marked (a thermometer of ``of``)
            below = Signal(n, name="below")
            with m.If(self.forget):
                m.d.sync += below.eq(0)
            with m.Elif(marked):
                m.d.sync += below.eq(Cat(*(of > k for k in range(n))))
            m.d.comb += self.later.eq((mask & below).any())
        for k in reversed(range(n)):  # the lowest set bit wins
            with m.If(mask[k]):
                m.d.comb += self.first.eq(k)
        return m


class StepSequencer(wiring.Component):
    """The step schedule of :mod:`hw.model.layer_norm_model`: clear, accumulate, then per changed
    token a statistics pass and its elements through the rounding bank (read when the element's
    unit is free, retired in ascending order).

    Latency: per evaluated token ``geometry.token_cycles``; a drive leaves one cycle after its
    element's rounding result, the marker one cycle after the last scan. ``i.ready`` is high in
    the accumulate phase only; ``o`` is a register (``o.valid`` depends on registers only).

    Members
    -------
    i : In(stream.Signature(event_layout(input format)))
    o : Out(stream.Signature(event_layout(output format)))
    the control of :class:`StateStore`, :class:`ChangedTokens`, :class:`Moments`,
    :class:`RoundingBank` (``Out``, ``r_`` and the bank's member name) and their results
    (``In``); ``g_addr``: the retired element's index.
    """

    def __init__(self, *, geometry: lnm.LayerNormGeometry, gain_width: int, bias_width: int):
        g = self._geo = geometry
        fin = EventFormat(g.index_width, g.increment_width)
        fout = EventFormat(g.index_width, g.drive_width)
        super().__init__(
            {
                "i": In(stream.Signature(event_layout(fin.index_width, fin.value_width))),
                "o": Out(stream.Signature(event_layout(fout.index_width, fout.value_width))),
                "ev_valid": Out(1),
                "ev_value": Out(signed(g.increment_width)),
                "addr": Out(g.index_width),
                "channel": Out(g.channel_width),
                "clear": Out(1),
                "g_we": Out(1),
                "g_data": Out(signed(g.output_width)),
                "set_all": Out(1),
                "drop": Out(1),
                "g_addr": Out(g.index_width),
                "m_clear": Out(1),
                "m_valid": Out(1),
                "r_reserve": Out(1),
                "r_start": Out(1),
                "r_take": Out(1),
                "r_negative": Out(1),
                "r_numerator": Out(signed(g.numerator_width)),
                "r_bias": Out(signed(bias_width)),
                "r_ref": Out(signed(g.ref_width)),
                "x": In(signed(g.stream_width)),
                "g_prev": In(signed(g.output_width)),
                "gain": In(signed(gain_width)),
                "bias": In(signed(bias_width)),
                "any": In(1),
                "first": In(range(g.tokens)),
                **({"later": In(1), "forget": Out(1)} if g.stream else {}),
                "total": In(signed(g.sum_width)),
                "r_idle": In(1),
                "r_load_w": Out(1),
                "r_ready": In(1),
                "r_valid": In(1),
                "r_total": In(signed(max(bias_width, g.rounding_bits + 2) + 1)),
                "r_diff": In(signed(max(g.ref_width, g.rounding_bits + 2) + 1)),
                "r_differs": In(1),
            }
        )

    def elaborate(self, platform):
        m = Module()
        g, d, o = self._geo, self._geo.dim, self.o
        r = SimpleNamespace(
            k=Signal(range(g.entries), name="k"),
            ch=Signal(range(d), name="ch"),
            out=Signal(range(d), name="out"),
            base=Signal(g.index_width, name="base"),
            busy_in=Signal(name="busy_in"),
            drove=Signal(name="drove"),
            early=Signal(name="early"),
            rbase=Signal(g.index_width, name="retire_base"),
            first=Signal(name="first_fetch"),
            rd=Signal(name="rd"),
            issuing=Signal(name="issuing"),
            fetch=Signal(name="fetch"),
            cnt=Signal(range(g.stats_wait + 1), name="cnt"),
            drive=Signal(signed(g.drive_width), name="drive"),
            free=~o.valid | o.ready,
        )
        m.d.comb += [self.g_data.eq(self.r_total), r.drive.eq(self.r_diff)]
        m.d.comb += [self.addr.eq(r.base + r.ch), self.channel.eq(r.ch)]
        # reads (``rd``: statistics, ``fetch``: elements) and their data, READ_LATENCY apart
        rl = lnm.READ_LATENCY
        rd_line, fetch_line = Signal(rl, name="rd_line"), Signal(rl, name="fetch_line")
        first_line = Signal(rl, name="first_line")  # the token's first element
        m.d.sync += [rd_line.eq(Cat(r.rd, rd_line)), fetch_line.eq(Cat(r.fetch, fetch_line))]
        m.d.sync += first_line.eq(Cat(r.fetch & r.first, first_line))
        fetched = fetch_line[rl - 1]
        m.d.comb += [self.g_addr.eq(r.rbase + r.out), self.m_valid.eq(rd_line[rl - 1])]
        self._centre(m, fetched, first_line[rl - 1])
        with m.If(o.valid & o.ready):
            m.d.sync += o.valid.eq(0)
        self._retire(m, r)
        with m.FSM():
            self._step_states(m, r)
            self._token_states(m, r)
        return m

    def _retire(self, m: Module, r: SimpleNamespace) -> None:
        """Retire the oldest element in ascending channel order, in any state (the next token's
        statistics pass overlaps this token's rounding): write G, emit a non-zero drive."""
        d, o = self._geo.dim, self.o
        with m.If(self.r_valid & (~self.r_differs | r.free)):
            m.d.comb += [self.r_take.eq(1), self.g_we.eq(1)]
            with m.If(self.r_differs):
                m.d.sync += [o.valid.eq(1), o.payload.marker.eq(0), o.payload.busy.eq(0)]
                m.d.sync += r.drove.eq(1)
                m.d.sync += [o.payload.index.eq(self.g_addr), o.payload.value.eq(r.drive)]
            m.d.sync += r.out.eq(Mux(r.out == d - 1, 0, r.out + 1))

    def _centre(self, m: Module, fetched, fetched_first) -> None:
        """The element pipeline from its data (``fetched``) to its start, CENTRE_LATENCY
        registers: ``Z = D·X_i − S`` and ``c_i``; the two halves of ``a = c_i·Z`` (signed
        multipliers, ``Z`` split into a signed high and an unsigned low part); their sum ``a``,
        the bank's operand. Plain registers (the multipliers' input and output registers,
        ``hw.flow.ecp5``)."""
        g = self._geo
        plain = {"reset_less": True}
        z = Signal(signed(g.z_width), name="z", **plain)  # |Z| ≤ z_bound
        c = Signal.like(self.gain, name="c", **plain)
        m.d.sync += [z.eq(g.dim * self.x - self.total), c.eq(self.gain)]
        k = (g.z_width + 1) // 2 if g.z_width > 17 else g.z_width
        lo = Signal(signed(len(c) + k + (k < g.z_width)), name="a_lo", **plain)
        hi = Signal(signed(len(c) + g.z_width - k), name="a_hi", **plain)
        if k < g.z_width:
            m.d.sync += [lo.eq(c * z[:k]), hi.eq(c * z[k:].as_signed())]
        else:  # one multiplier
            m.d.sync += lo.eq(c * z)
        a = Signal.like(self.r_numerator, name="a", **plain)
        m.d.sync += a.eq(lo + (hi << k))
        m.d.comb += self.r_numerator.eq(a)
        go, neg = Signal(lnm.CENTRE_LATENCY), Signal(lnm.CENTRE_LATENCY - 1)
        # the bank's operands besides a: B_i and G_{t−1} − B_i (the drive is q − that)
        tag = [Signal(len(self.r_bias) + len(self.r_ref), name=f"tag{j}", **plain)
               for j in range(lnm.CENTRE_LATENCY)]  # fmt: skip
        m.d.sync += [go.eq(Cat(fetched, go)), neg.eq(Cat((z < 0) ^ (c < 0), neg))]
        first = Signal(lnm.CENTRE_LATENCY, name="first_go")  # the token's first start: its W
        m.d.sync += first.eq(Cat(fetched_first, first))
        m.d.comb += self.r_load_w.eq(first[-1])
        m.d.sync += tag[0].eq(Cat(self.bias, self.g_prev - self.bias))
        m.d.sync += [tag[j].eq(tag[j - 1]) for j in range(1, len(tag))]
        m.d.comb += [self.r_start.eq(go[-1]), self.r_negative.eq(neg[-1])]
        bw = len(self.r_bias)
        m.d.comb += [self.r_bias.eq(tag[-1][:bw]), self.r_ref.eq(tag[-1][bw:])]

    def _step_states(self, m: Module, r: SimpleNamespace) -> None:
        """Clear after an inference, accumulate the step's events, scan for changed tokens and
        close the step with its marker."""
        g, o = self._geo, self.o
        with m.State("CLEAR"):
            m.d.comb += [self.clear.eq(1), self.addr.eq(r.k), self.set_all.eq(1)]
            if g.stream:
                m.d.comb += self.forget.eq(1)
            m.d.sync += r.k.eq(r.k + 1)
            with m.If(r.k == g.entries - 1):
                m.d.sync += r.k.eq(0)
                m.next = "ACCUMULATE"
        with m.State("ACCUMULATE"):
            m.d.comb += [self.addr.eq(self.i.payload.index)]
            m.d.comb += self.ev_value.eq(self.i.payload.value)
            if g.stream:  # a changed token below the last one marked is complete: evaluate it
                m.d.comb += self.forget.eq(self.i.ready & self.i.valid & self.i.payload.marker)
                with m.If(self.later):  # (this cycle is its SCAN)
                    m.d.comb += [self.drop.eq(1), self.m_clear.eq(1)]
                    m.d.sync += [r.base.eq(self.first * g.dim), r.ch.eq(0), r.early.eq(1)]
                    m.next = "STATS"
                ready = ~self.later
            else:
                ready = 1
            m.d.comb += self.i.ready.eq(ready)
            with m.If(ready & self.i.valid & self.i.payload.marker):
                m.d.sync += r.busy_in.eq(self.i.payload.busy)
                m.next = "SCAN"
            with m.Elif(ready & self.i.valid):
                m.d.comb += self.ev_valid.eq(1)
        with m.State("SCAN"):
            with m.If(self.any):
                m.d.comb += [self.drop.eq(1), self.m_clear.eq(1)]
                m.d.sync += [r.base.eq(self.first * g.dim), r.ch.eq(0)]
                m.next = "STATS"
            with m.Elif(r.free & self.r_idle):  # (every element retired)
                busy = r.busy_in | r.drove
                m.d.sync += [o.valid.eq(1), o.payload.marker.eq(1), o.payload.busy.eq(busy)]
                m.d.sync += [o.payload.index.eq(0), o.payload.value.eq(0), r.drove.eq(0)]
                with m.If(~busy):
                    m.next = "CLEAR"
                with m.Elif(r.busy_in):
                    m.next = "ACCUMULATE"

    def _token_states(self, m: Module, r: SimpleNamespace) -> None:
        """One changed token: its moments, then per channel the centred value, the rounding
        and the drive (emitted by :meth:`_retire`)."""
        g, d = self._geo, self._geo.dim
        with m.State("STATS"):
            m.d.comb += r.rd.eq(1)
            m.d.sync += [r.ch.eq(r.ch + 1), r.cnt.eq(0)]
            with m.If(r.ch == d - 1):
                m.d.sync += r.ch.eq(0)
                m.next = "WAIT"
        with m.State("WAIT"):  # W; then the bank empty (its units share one W)
            with m.If(r.cnt != g.stats_wait - 1):
                m.d.sync += r.cnt.eq(r.cnt + 1)
            with m.Elif(self.r_idle):
                m.d.sync += [r.issuing.eq(1), r.out.eq(0), r.rbase.eq(r.base), r.first.eq(1)]
                m.next = "ELEMENTS"
        with m.State("ELEMENTS"):  # read the next element when its unit is free
            with m.If(r.issuing & self.r_ready):
                m.d.comb += self.r_reserve.eq(1)
                m.d.comb += r.fetch.eq(1)
                m.d.sync += [r.ch.eq(r.ch + 1), r.first.eq(0), r.cnt.eq(0)]
                with m.If(r.ch == d - 1):  # the last read: ``token_gap`` cycles to the next SCAN
                    m.d.sync += [r.ch.eq(0), r.issuing.eq(0)]
                    m.next = "GAP"
        with m.State("GAP"):  # (the last element's data still reads S; it rounds on)
            m.d.sync += r.cnt.eq(r.cnt + 1)
            with m.If(r.cnt == g.token_gap - 2):
                if g.stream:  # an early token goes back to its step's input
                    m.d.sync += r.early.eq(0)
                    m.next = "SCAN"
                    with m.If(r.early):
                        m.next = "ACCUMULATE"
                else:
                    m.next = "SCAN"


class LayerNormCore(wiring.Component):
    """A differential LayerNorm site (see the module docstring and
    :mod:`hw.model.layer_norm_model` for protocol, schedule and cycle model).

    Latency: per step, one cycle per input event, then ``geometry.token_cycles`` per changed
    token (every token in step 0), the marker one cycle after. Throughput while a token is
    evaluated: ``units`` drives per ``max(geometry.element_cycles, units)`` cycles.

    Parameters
    ----------
    norm : ir.transformer.LayerNorm
        The site: gains, biases and ε are built into the RTL (ROMs).
    tokens : int
        Tokens per inference (``≥ 1``).
    stream_bound : int
        ``max |X|`` of the accumulated stream (``VisionTransformer.ranges.stream``).
    units : int or None
        Rounding units (``≥ 1``; one ``a²`` multiplier shared by all). ``None``:
        ``geometry.full_rate_units``, the fewest that read one element per cycle.
    src_loc_at : int
        Stack frames between the caller and this constructor (Amaranth's convention).

    Members
    -------
    i : In(stream.Signature(event_layout(input_format)))
        Stream increments ``(token·dim + channel, ΔR)`` and markers.
    o : Out(stream.Signature(event_layout(output_format)))
        Drives ``(token·dim + channel, G_t − G_{t−1})`` and markers.
    """

    def __init__(
        self,
        *,
        norm: LayerNorm,
        tokens: int,
        stream_bound: int,
        units: int | None = None,
        stream: bool = False,
        src_loc_at: int = 0,
    ) -> None:
        if not isinstance(norm, LayerNorm):
            raise TypeError(f"norm must be an ir.transformer.LayerNorm, not {type(norm).__name__}")
        self._norm = norm
        geo = lnm.LayerNormGeometry(
            tokens=tokens,
            dim=norm.dim,
            stream_bound=stream_bound,
            gain_bound=int(abs(norm.gain).max()),
            bias_bound=int(abs(norm.bias).max()),
            eps=int(norm.eps),
            stream=stream,
        )
        units = geo.full_rate_units if units is None else units
        self._geo = dataclasses.replace(geo, units=units)
        fin, fout = self.input_format, self.output_format
        super().__init__(
            {
                "i": In(_streams.Signature(event_layout(fin.index_width, fin.value_width))),
                "o": Out(_streams.Signature(event_layout(fout.index_width, fout.value_width))),
            },
            src_loc_at=1 + src_loc_at,
        )

    @classmethod
    def for_site(
        cls, vit: VisionTransformer, name: str, *, units: int | None = None, stream: bool = False
    ) -> LayerNormCore:
        """The core of LayerNorm site ``name`` of ``vit`` (its stream bound from ``vit.ranges``;
        ``units`` and ``stream`` as in the constructor)."""
        if not isinstance(vit, VisionTransformer):
            raise TypeError(f"vit must be a VisionTransformer, not {type(vit).__name__}")
        norms = [s for s in vit.sites if isinstance(s.op, LayerNorm)]
        names = [s.name for s in norms]
        if name not in names:
            raise ValueError(f"name must be one of the LayerNorm sites {names}, not {name!r}")
        j = names.index(name)
        bound = vit.ranges.stream[j]
        return cls(
            norm=norms[j].op,
            tokens=vit.tokens,
            stream_bound=bound,
            units=units,
            stream=stream,
            src_loc_at=1,
        )

    @property
    def norm(self) -> LayerNorm:
        return self._norm

    @property
    def geometry(self) -> lnm.LayerNormGeometry:
        """Sizes, widths and cycle constants (shared with the cycle model)."""
        return self._geo

    @property
    def input_format(self) -> EventFormat:
        return EventFormat(self._geo.index_width, self._geo.increment_width)

    @property
    def output_format(self) -> EventFormat:
        return EventFormat(self._geo.index_width, self._geo.drive_width)

    def elaborate(self, platform):
        m = Module()
        g = self._geo
        m.submodules.store = store = StateStore(norm=self._norm, geometry=g)
        m.submodules.changed = changed = ChangedTokens(geometry=g, pipelined=True)
        m.submodules.moments = moments = Moments(geometry=g)
        m.submodules.rounding = rnd = RoundingBank(
            units=g.units,
            a_width=g.numerator_width,
            w_width=g.w_width,
            bits=g.rounding_bits,
            bias_width=len(store.bias),
            ref_width=g.ref_width,
            hold_w=True,
        )
        m.submodules.sequencer = seq = StepSequencer(
            geometry=g, gain_width=len(store.gain), bias_width=len(store.bias)
        )
        wiring.connect(m, wiring.flipped(self.i), seq.i)
        wiring.connect(m, seq.o, wiring.flipped(self.o))
        m.d.comb += [
            store.ev_valid.eq(seq.ev_valid),
            store.ev_index.eq(seq.addr),
            store.ev_value.eq(seq.ev_value),
            store.addr.eq(seq.addr),
            store.channel.eq(seq.channel),
            store.clear.eq(seq.clear),
            store.g_we.eq(seq.g_we),
            store.g_addr.eq(seq.g_addr),
            store.g_data.eq(seq.g_data),
            changed.mark.eq(seq.ev_valid),
            changed.index.eq(seq.addr),
            changed.set_all.eq(seq.set_all),
            changed.drop.eq(seq.drop),
            moments.clear.eq(seq.m_clear),
            moments.valid.eq(seq.m_valid),
            moments.x.eq(store.x),
            rnd.reserve.eq(seq.r_reserve),
            rnd.start.eq(seq.r_start),
            rnd.take.eq(seq.r_take),
            rnd.negative.eq(seq.r_negative),
            rnd.numerator.eq(seq.r_numerator),
            rnd.w.eq(moments.w),
            rnd.bias.eq(seq.r_bias),
            rnd.ref.eq(seq.r_ref),
            seq.x.eq(store.x),
            seq.g_prev.eq(store.g_prev),
            seq.gain.eq(store.gain),
            seq.bias.eq(store.bias),
            seq.any.eq(changed.any),
            seq.first.eq(changed.first),
            seq.total.eq(moments.total),
            seq.r_ready.eq(rnd.ready),
            seq.r_idle.eq(rnd.idle),
            rnd.load_w.eq(seq.r_load_w),
            seq.r_valid.eq(rnd.valid),
            seq.r_total.eq(rnd.total),
            seq.r_diff.eq(rnd.diff),
            seq.r_differs.eq(rnd.differs),
        ]
        if g.stream:
            m.d.comb += [seq.later.eq(changed.later), changed.forget.eq(seq.forget)]
        return m
