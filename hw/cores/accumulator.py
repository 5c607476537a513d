"""Synaptic datapath: turns word operations into per-lane drives ``value × W[lanes, index]``.

The weights of a layer live in one ``lib.memory.Memory`` initialised at generation time. A memory
word holds the ``lanes`` weights of one input ``j`` to one word ``c`` of output neurons
(``W[c·lanes + k, j]`` in lane ``k``, zero in padding lanes), at address ``j·words + c``; the depth
is ``n_in · words``. An input event therefore costs ``words = ceil(n_out / lanes)`` operations,
one per cycle, and the ``lanes`` synaptic operations of each are done in parallel.

Only the first layer of an analog-encoded network multiplies (``value × w``, one multiplier per
lane); every other layer sees spikes ``value ∈ {-1, +1}`` and adds or subtracts the weight, or
graded spikes ``±2^k`` and adds or subtracts the weight shifted by ``k``.
"""

from __future__ import annotations

import numpy as np
from amaranth.hdl import Array, Module, Mux, Signal, Value, signed
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from spikezip.hw.cores.layouts import Op, command_layout, op_layout
from spikezip.hw.cores.stages import Delay
from spikezip.hw.model.cycle_model import (
    SUM_LATENCY,
    WEIGHT_READ_LATENCY,
    LayerTiming,
    check_timing,
)
from spikezip.hw.model.input_map import InputMap
from spikezip.ir.network import Layer, LayerWidths

__all__ = [
    "WEIGHT_BANK_DEPTH",
    "Accumulator",
    "Products",
    "WeightPort",
    "WeightRead",
    "weight_words",
]


#: words per weight bank (``banked_weights``): a DP16KD is 512 words deep at 36 bits
WEIGHT_BANK_DEPTH = 512


def weight_words(layer: Layer, lanes: int) -> np.ndarray:
    """Weight memory contents ``int64 [n_in · W, lanes]``: ``W[c·lanes + k, j]`` at ``j·W + c``."""
    words = -(-layer.n_out // lanes)
    padded = np.zeros((words * lanes, layer.n_in), dtype=np.int64)
    padded[: layer.n_out] = layer.weight
    # [words, lanes, n_in] -> [n_in, words, lanes]
    return padded.reshape(words, lanes, layer.n_in).transpose(2, 0, 1).reshape(-1, lanes)


class WeightPort(wiring.Signature):
    """A weight memory's read port as its user sees it: ``address`` out, ``data`` back in.

    ``data`` is the word at the ``address`` of :data:`WEIGHT_READ_LATENCY` cycles before.

    Members
    -------
    address : Out(range(max(2, depth)))
    data : In(shape)
    """

    def __init__(self, *, shape, depth: int) -> None:
        super().__init__({"address": Out(range(max(2, depth))), "data": In(shape)})


class WeightRead(wiring.Component):
    """The weight memory, read one word per cycle into a register.

    Latency 2 (:data:`hw.model.cycle_model.WEIGHT_READ_LATENCY`): ``data`` in cycle ``x + 2`` is the
    word at ``address`` of cycle ``x`` (the synchronous read, then a register with no reset and
    no enable, which the ECP5 flow moves into the block RAM's output register). With
    ``bank_depth``, a memory deeper than that is split into banks of ``bank_depth`` words, each
    read into its own register, and the bank chosen after them: one memory would put Yosys's
    multiplexer between the block RAMs and the register. Throughput one read per cycle.

    Parameters
    ----------
    shape : shape-castable
        A memory word.
    rows : list
        The memory contents (constant-castable to ``shape``), at least one.
    bank_depth : int or None
        Words per bank (a power of two), or ``None`` for one memory.

    Members
    -------
    address : In(range(max(2, len(rows))))
    data : Out(shape)
    """

    def __init__(self, *, shape, rows: list, bank_depth: int | None = None) -> None:
        self._shape, self._rows, self._bank_depth = shape, list(rows), bank_depth
        super().__init__({"address": In(range(max(2, len(self._rows)))), "data": Out(shape)})

    @property
    def latency(self) -> int:
        return WEIGHT_READ_LATENCY

    @property
    def banks(self) -> int:
        """Banks of the memory (1 without ``bank_depth``)."""
        return 1 if self._bank_depth is None else -(-len(self._rows) // self._bank_depth)

    def elaborate(self, platform):
        m = Module()
        shape, rows, banks = self._shape, self._rows, self.banks
        if banks == 1:
            m.submodules.weights = mem = memory.Memory(shape=shape, depth=len(rows), init=rows)
            rp = mem.read_port()
            m.d.comb += rp.addr.eq(self.address)
            # no reset and no enable: the ECP5 flow moves it into the block RAM's output register
            weight_word = Signal(shape, name="weight_word", reset_less=True)
            m.d.sync += weight_word.eq(rp.data)
            m.d.comb += self.data.eq(weight_word)
            return m
        depth = self._bank_depth
        low = (depth - 1).bit_length()
        bank_words = []
        select = [Signal(range(banks), name=f"bank{k}") for k in (1, 2)]
        m.d.sync += [select[0].eq(self.address[low:]), select[1].eq(select[0])]
        for b in range(banks):
            part = rows[b * depth : (b + 1) * depth]
            m.submodules[f"weights{b}"] = bank = memory.Memory(
                shape=shape, depth=len(part), init=part
            )
            rp = bank.read_port()
            m.d.comb += rp.addr.eq(self.address[:low])
            word = Signal(shape, name=f"bank_word{b}", reset_less=True)
            m.d.sync += word.eq(rp.data)
            bank_words.append(word)
        # (padded to a power of two with the last bank: no out-of-range constant, which Yosys
        # would turn into a reset of the register that follows)
        pad = (1 << (banks - 1).bit_length()) - banks
        m.d.comb += self.data.eq(Array(bank_words + bank_words[-1:] * pad)[select[1]])
        return m


class Products(wiring.Component):
    """Per lane the drive of one input event: ``value × w`` (analog) or ``±w`` (spikes).

    With spikes, ``value ∈ {-1, 0, +1}`` adds, skips or subtracts the weight; graded spikes
    (``value_width = v > 2``: ``value = ±2^k``, ``k < v − 1``) add or subtract ``w << k``, a
    shift chosen by the value's one-hot magnitude: no multiplier. Latency 0
    (combinational), or 2 with ``registered``: the multiplier's input registers (``value``,
    and the weights with ``analog``; with spikes, ``w XOR s`` for ``s = value < 0``, graded
    spikes ``(w << k) XOR s``: the shift before the register, only ``+ s`` after it) and output
    register, with no reset and no enable (the ECP5 flow moves them into the DSP block,
    :mod:`hw.flow.ecp5`). Throughput one word per cycle.

    Parameters
    ----------
    analog : bool
        Multiply; otherwise add or subtract.
    lanes : int
    value_width, weight_width : int
        Signed widths of the operands.
    registered : bool
        Latency 2 instead of 0 (:attr:`hw.model.cycle_model.Pipeline.dsp_registers`).

    Members
    -------
    value : In(signed(value_width))
    weights : In(ArrayLayout(signed(weight_width), lanes))
    products : Out(ArrayLayout(signed(drive_width), lanes))
        At the natural width of ``value × w`` (or ``±w``): no output bit a copy of another.
    """

    def __init__(
        self, *, analog: bool, lanes: int, value_width: int, weight_width: int, registered: bool
    ) -> None:
        self._analog, self._registered = bool(analog), bool(registered)
        self._lanes = lanes
        #: spike levels: |value| ∈ {2^0 … 2^(levels − 1)} (1 for ST-BIF spikes)
        self._levels = 0 if analog else value_width - 1
        # analog: value × w; spikes: ±(w << k), k < levels
        width = value_width + weight_width if analog else weight_width + value_width - 1
        super().__init__(
            {
                "value": In(signed(value_width)),
                "weights": In(data.ArrayLayout(signed(weight_width), lanes)),
                "products": Out(data.ArrayLayout(signed(width), lanes)),
            }
        )

    @property
    def latency(self) -> int:
        return 2 * self._registered

    def elaborate(self, platform):
        m = Module()
        value, weights = self.value, self.weights
        if self._registered:  # the multiplier's input registers
            value = Signal.like(self.value, name="mul_value", reset_less=True)
            m.d.sync += value.eq(self.value)
            if self._analog:
                weights = Signal.like(self.weights, name="mul_weight", reset_less=True)
                m.d.sync += weights.eq(self.weights)
        for k in range(self._lanes):
            w = weights[k]
            if self._analog:
                product = value * w
            elif self._levels > 1 and self._registered:
                product = self._shifted_registered(m, k)
            elif self._levels > 1:
                product = self._shifted(self._signed(m, k, w, value), value)
            else:
                product = Mux(value == 0, 0, self._signed(m, k, w, value))
            if self._registered:  # the multiplier's output register
                registered = Signal.like(product, name=f"product{k}", reset_less=True)
                m.d.sync += registered.eq(product)
                product = registered
            m.d.comb += self.products[k].eq(product)
        return m

    def _signed(self, m: Module, k: int, w, value):
        """``±w`` by the sign of ``value``; with ``registered``, ``(w XOR s) + s`` for
        ``s = value < 0``, the XOR in the input register."""
        if not self._registered:
            return Mux(value < 0, -w, w)
        flipped = Signal.like(w, name=f"flipped{k}", reset_less=True)
        m.d.sync += flipped.eq(Mux(self.value < 0, ~self.weights[k], self.weights[k]))
        return flipped + (value < 0)

    def _shifted_registered(self, m: Module, k: int):
        """``±(w << j)`` with ``registered``: the input register takes ``(w << j) XOR s`` (the
        shift chosen by the magnitude's one-hot bits, ``s = value < 0`` spread over every bit, so
        that the low bits are ones for a negative value) and the product is that ``+ s``: the
        carry chain alone between the input and output registers."""
        value, w = self.value, self.weights[k]
        negative = value < 0
        shifted = 0
        for j in range(self._levels):
            lower = value[:j].any() if j else 0
            term = Mux(negative, ~(w << j), w << j)
            shifted = shifted | Mux(value[j] & ~lower, term, 0)
        width = self.products[k].shape().width
        flipped = Signal(signed(width), name=f"flipped{k}", reset_less=True)
        sign = Signal(name=f"negative{k}", reset_less=True)
        m.d.sync += [flipped.eq(shifted), sign.eq(negative)]
        return flipped + sign

    def _shifted(self, signed_w, value):
        """``±(w << j)`` for a graded spike ``value = ±2^j`` (0 for 0), from ``signed_w = ±w``:
        the shift chosen by the magnitude's one-hot bits (an AND-OR, no shifter)."""
        # |value|'s bit j is set for ±2^j: 2^j has it; −2^j = …1 10…0 has bit j set and nothing
        # below, so "bit j and no lower bit" picks the level for both signs
        product = 0
        for j in range(self._levels):
            lower = value[:j].any() if j else 0
            product = product | Mux(value[j] & ~lower, signed_w << j, 0)
        return product


class Accumulator(wiring.Component):
    """Weight look-up and multiply (or sign) stage between the sequencer and the neuron array.

    For an ``INTEGRATE`` operation on word ``c`` with ``(index, value)`` it outputs the command
    with drive ``value × W[c·lanes + k, index]`` in lane ``k``; ``FIRE`` and ``INIT`` operations
    pass with a zero drive.

    Latency ``timing.accumulator_latency``: the address stage (1 with ``registered_address``,
    else 0), :class:`WeightRead` (2) and :class:`Products` (2 with ``dsp_registers``, else 0)
    — 2 for pipeline presets 0 and 1, 5 for 2 and 3. Throughput one word operation per cycle.

    Parameters
    ----------
    layer : ir.Layer
    widths : ir.network.LayerWidths
        The layer's exact widths (weight width).
    analog : bool
        The layer takes analog input values (multiplies); otherwise ±1 spikes (adds).
    timing : hw.model.cycle_model.LayerTiming
        The core's geometry and pipeline (``timing.n_out == layer.n_out``).
    index_width, value_width : int
        Widths of the input events (:func:`hw.model.events.input_format`).
    bank_depth : int
        With ``banked_weights``, a weight memory deeper than this is split into banks of this
        many words (a power of two; default :data:`WEIGHT_BANK_DEPTH`, one 36-bit-wide ECP5
        block RAM; :class:`WeightRead`).
    external : tuple of int or None
        ``(weight_width, weight_depth)``: no weight ROM; the weights come from a memory outside
        (``layer`` and ``widths`` then ``None``) through the ``weights`` port, with the latency
        of :class:`WeightRead` (the spike-product core's writable tracer memories); the
        operation's ``index`` is then the first word of its row (the address is
        ``index + word``: the product core's decode table holds ``g·words``).

    Members
    -------
    i : In(stream.Signature(op_layout, always_ready=True))
    o : Out(stream.Signature(command_layout, always_ready=True))
    weights : Out(WeightPort)
        Only with ``external``: ``address`` out, ``data`` in, ``WEIGHT_READ_LATENCY`` apart.
    """

    def __init__(
        self,
        *,
        layer: Layer,
        widths: LayerWidths,
        analog: bool,
        timing: LayerTiming,
        index_width: int,
        value_width: int,
        bank_depth: int = WEIGHT_BANK_DEPTH,
        external: tuple[int, int] | None = None,
        input_map: InputMap | None = None,
    ) -> None:
        if not isinstance(bank_depth, int) or bank_depth < 2 or bank_depth & (bank_depth - 1):
            raise ValueError(f"bank_depth must be a power of two ≥ 2, not {bank_depth!r}")
        check_timing(timing, None if external or input_map else layer.n_out)
        self._bank_depth, self._external, self._map = bank_depth, external, input_map
        self._layer, self._widths, self._analog = layer, widths, bool(analog)
        self._timing = timing
        self._value_width = value_width
        #: events of one wide input beat in one pass: k weight rows, products, their sum
        self._width = timing.input_width if timing.shares_passes else 1
        if self._width > 1 and (external or input_map is not None):
            raise ValueError("only a plain layer core takes wide input beats")
        if external:
            self._weight_width = external[0]
        elif input_map is not None:
            self._weight_width = input_map.weight_width
        else:
            self._weight_width = widths.weight
        words, lanes = timing.words, timing.lanes
        if input_map is not None:
            index_width = max(1, (input_map.n_rows - 1).bit_length())
        span = None if input_map is None else input_map.span
        members = {}
        if external:
            members["weights"] = Out(
                WeightPort(shape=data.ArrayLayout(signed(external[0]), lanes), depth=external[1])
            )
        super().__init__(
            members
            | {
                "i": In(
                    stream.Signature(
                        op_layout(
                            words=words,
                            index_width=index_width,
                            value_width=value_width,
                            span=span,
                            first_row=not external,
                            width=self._width,
                        ),
                        always_ready=True,
                    )
                ),
                "o": Out(
                    stream.Signature(
                        command_layout(words=words, lanes=lanes, drive_width=self.drive_width),
                        always_ready=True,
                    )
                ),
            }
        )

    @property
    def layer(self) -> Layer:
        return self._layer

    @property
    def lanes(self) -> int:
        return self._timing.lanes

    @property
    def words(self) -> int:
        return self._timing.words

    @property
    def latency(self) -> int:
        """Cycles from a word operation on ``i`` to its command on ``o``."""
        return self._timing.accumulator_latency

    @property
    def drive_width(self) -> int:
        """Signed bits of one event's drive: the natural width of ``value × w`` (or ``±w``).

        Exactly the width of the product, so that no output bit is a copy of another (Yosys
        would alias such bits, and Icarus simulates an output port aliased to itself ~100×
        slower).
        """
        extra = (self._width - 1).bit_length()  # the sum of a wide beat's k products
        if self._analog:
            return self._value_width + self._weight_width + extra
        return self._weight_width + self._value_width - 1 + extra  # ±(w << k), k < width − 1

    @property
    def weight_depth(self) -> int:
        """Words of the weight memory: ``n_in · words``."""
        if self._external:
            return self._external[1]
        if self._map is not None:
            return int(self._map.table.shape[0])
        return self._layer.n_in * self.words

    def weight_words(self) -> np.ndarray:
        """The weight memory contents, ``int64 [n_in · words, lanes]`` (a mapped core's: the
        map's table)."""
        if self._map is not None:
            return self._map.table
        return weight_words(self._layer, self.lanes)

    def elaborate(self, platform):
        if self._width > 1:
            return self._elaborate_wide()
        m = Module()
        p, ops = self._timing.pipeline, self.i.payload.shape()
        shape = data.ArrayLayout(signed(self._weight_width), self.lanes)
        m.submodules.address_stage = address = Delay(ops, cycles=p.address_latency, name="op0")
        # the weight row, computed before the address stage: with ``registered_address`` the
        # block RAM's address is a register (no multiply-add between op0 and the memory)
        depth = max(2, self.weight_depth)
        m.submodules.row_stage = row = Delay(range(depth), cycles=p.address_latency, name="row0")
        if self._external:
            weights = self.weights
        else:
            m.submodules.weight_read = weights = WeightRead(
                shape=shape,
                rows=[row.tolist() for row in self.weight_words()],
                bank_depth=self._bank_depth if p.banked_weights else None,
            )
        m.submodules.read = read = Delay(ops, cycles=WEIGHT_READ_LATENCY, name="op")
        m.submodules.product = products = Products(
            analog=self._analog,
            lanes=self.lanes,
            value_width=self._value_width,
            weight_width=self._weight_width,
            registered=p.dsp_registers,
        )
        # the operation without index and value (which went into the address and operands)
        control = data.StructLayout({"op": Op, "word": ops["word"].shape, "last": 1, "busy": 1})
        m.submodules.control = ctrl = Delay(control, cycles=products.latency, name="op_mul")
        wiring.connect(m, wiring.flipped(self.i), address.i)
        wiring.connect(m, address.o, read.i)
        op = self.i.payload
        if self._external:  # (the spike products': ``index`` is the tracer row's first word)
            m.d.comb += row.i.payload.eq(op.index + op.word)
        elif self._map is None:  # the sequencer's first row: one addition, no multiplication
            m.d.comb += row.i.payload.eq(op.first + op.word)
        else:
            m.d.comb += row.i.payload.eq(op.first + op.offset)
        m.d.comb += [row.i.valid.eq(self.i.valid), weights.address.eq(row.o.payload)]
        op = read.o.payload
        m.d.comb += [products.value.eq(op.value), products.weights.eq(weights.data)]
        integrate = self._control(m, ctrl, op, read.o.valid)
        for k in range(self.lanes):
            m.d.comb += self.o.payload.drive[k].eq(Mux(integrate, products.products[k], 0))
        return m

    _CONTROL = ("op", "word", "last", "busy")

    def _control(self, m: Module, ctrl, op, valid) -> Value:
        """The operation's control fields through ``ctrl`` (a :class:`Delay` as long as the
        products' path) to ``o``; returns "the operation leaving now integrates"."""
        m.d.comb += ctrl.i.valid.eq(valid)
        m.d.comb += [ctrl.i.payload[name].eq(op[name]) for name in self._CONTROL]
        out = ctrl.o.payload
        m.d.comb += self.o.valid.eq(ctrl.o.valid)
        m.d.comb += [self.o.payload[name].eq(out[name]) for name in self._CONTROL]
        return out.op == Op.INTEGRATE

    def _elaborate_wide(self):
        """The events of a wide beat in one pass: per slot ``j`` its own copy of the weight
        memory read at ``first[j] + word`` and its products, the drive their sum per lane (an
        unused slot has value 0: no drive). The products are registered before the sum (the
        weight memory's output, the product and an adder tree in one cycle were the critical
        path): one cycle more than one event's path (:data:`hw.model.cycle_model.SUM_LATENCY`)."""
        m = Module()
        p, ops, k = self._timing.pipeline, self.i.payload.shape(), self._width
        shape = data.ArrayLayout(signed(self._weight_width), self.lanes)
        m.submodules.address_stage = address = Delay(ops, cycles=p.address_latency, name="op0")
        m.submodules.read = read = Delay(ops, cycles=WEIGHT_READ_LATENCY, name="op")
        wiring.connect(m, wiring.flipped(self.i), address.i)
        wiring.connect(m, address.o, read.i)
        depth = max(2, self.weight_depth)
        rows = [row.tolist() for row in self.weight_words()]
        products = []
        for j in range(k):
            row = Delay(range(depth), cycles=p.address_latency, name=f"row0_{j}")
            weights = WeightRead(
                shape=shape, rows=rows, bank_depth=self._bank_depth if p.banked_weights else None
            )
            product = Products(
                analog=self._analog,
                lanes=self.lanes,
                value_width=self._value_width,
                weight_width=self._weight_width,
                registered=p.dsp_registers,
            )
            m.submodules[f"row_stage{j}"] = row
            m.submodules[f"weight_read{j}"] = weights
            m.submodules[f"product{j}"] = product
            m.d.comb += [
                row.i.payload.eq(self.i.payload.first[j] + self.i.payload.word),
                row.i.valid.eq(self.i.valid),
                weights.address.eq(row.o.payload),
                product.value.eq(read.o.payload.value[j]),
                product.weights.eq(weights.data),
            ]
            products.append(product)
        control = data.StructLayout({"op": Op, "word": ops["word"].shape, "last": 1, "busy": 1})
        m.submodules.control = ctrl = Delay(
            control, cycles=products[0].latency + SUM_LATENCY, name="op_mul"
        )
        op = read.o.payload
        integrate = self._control(m, ctrl, op, read.o.valid)
        for lane in range(self.lanes):
            terms = []
            for j, pr in enumerate(products):  # the products registered before their sum
                term = Signal.like(pr.products[lane], name=f"term{j}_{lane}", reset_less=True)
                m.d.sync += term.eq(pr.products[lane])
                terms.append(term)
            while len(terms) > 1:  # a balanced tree of adders
                pairs = [terms[i] + terms[i + 1] for i in range(0, len(terms) - 1, 2)]
                terms = pairs + terms[len(terms) - len(terms) % 2 :]
            m.d.comb += self.o.payload.drive[lane].eq(Mux(integrate, terms[0], 0))
        return m
