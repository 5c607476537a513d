"""Synaptic datapath: turns word operations into per-lane drives ``value × W[lanes, index]``.

The weights of a layer live in one ``lib.memory.Memory`` initialised at generation time. A memory
word holds the ``lanes`` weights of one input ``j`` to one word ``c`` of output neurons
(``W[c·lanes + k, j]`` in lane ``k``, zero in padding lanes), at address ``j·words + c``; the depth
is ``n_in · words``. An input event therefore costs ``words = ceil(n_out / lanes)`` operations,
one per cycle, and the ``lanes`` synaptic operations of each are done in parallel.

Only the first layer of an analog-encoded network multiplies (``value × w``, one multiplier per
lane); every other layer sees ``value ∈ {-1, +1}`` and adds or subtracts the weight.
"""

from __future__ import annotations

import numpy as np
from amaranth.hdl import Array, Cat, Module, Mux, Signal, signed
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from spikezip.hw.cores.layouts import Op, command_layout, op_layout
from spikezip.hw.model.cycle_model import LayerTiming
from spikezip.ir.network import Layer, LayerWidths

__all__ = ["WEIGHT_BANK_DEPTH", "Accumulator", "weight_words"]


#: words per weight bank (pipelines 2 and 3): a DP16KD is 512 words deep at 36 bits
WEIGHT_BANK_DEPTH = 512


def weight_words(layer: Layer, lanes: int) -> np.ndarray:
    """Weight memory contents ``int64 [n_in · W, lanes]``: ``W[c·lanes + k, j]`` at ``j·W + c``."""
    words = -(-layer.n_out // lanes)
    padded = np.zeros((words * lanes, layer.n_in), dtype=np.int64)
    padded[: layer.n_out] = layer.weight
    # [words, lanes, n_in] -> [n_in, words, lanes]
    return padded.reshape(words, lanes, layer.n_in).transpose(2, 0, 1).reshape(-1, lanes)


class Accumulator(wiring.Component):
    """Weight look-up and multiply (or sign) stage between the sequencer and the neuron array.

    For an ``INTEGRATE`` operation on word ``c`` with ``(index, value)`` it outputs the command
    with drive ``value × W[c·lanes + k, index]`` in lane ``k``; ``FIRE`` and ``INIT`` operations
    pass with a zero drive.

    Latency 2 (the synchronous weight read, then a register on the weight word, so that the
    memory's output does not feed the multiplier or ``±`` in the same cycle). With pipeline 2,
    latency 5: the operation is registered before the weight address is computed, and the value
    and weight are registered again before the product (or ``±w``) and the product after it —
    the input and output registers of a DSP block, as the weight word register is the block
    RAM's output register (the ECP5 flow moves them there, :mod:`hw.flow.ecp5`). Those registers
    have no reset and no enable. Throughput one word operation per cycle.

    Parameters
    ----------
    layer : ir.Layer
    widths : ir.network.LayerWidths
        The layer's exact widths (weight width).
    analog : bool
        The layer takes analog input values (multiplies); otherwise ±1 spikes (adds).
    lanes : int
    index_width, value_width : int
        Widths of the input events (:func:`hw.model.events.input_format`).
    pipeline : int
        The layer core's pipeline depth (:class:`hw.model.cycle_model.LayerTiming`).
    bank_depth : int
        With pipeline 2 or 3, a weight memory deeper than this is split into banks of this many
        words (a power of two; default :data:`WEIGHT_BANK_DEPTH`, one 36-bit-wide ECP5 block
        RAM), each with its own output register, and the bank is chosen after them.

    Members
    -------
    i : In(stream.Signature(op_layout, always_ready=True))
    o : Out(stream.Signature(command_layout, always_ready=True))
    """

    def __init__(
        self,
        *,
        layer: Layer,
        widths: LayerWidths,
        analog: bool,
        lanes: int,
        index_width: int,
        value_width: int,
        pipeline: int = 1,
        bank_depth: int = WEIGHT_BANK_DEPTH,
    ) -> None:
        if not isinstance(bank_depth, int) or bank_depth < 2 or bank_depth & (bank_depth - 1):
            raise ValueError(f"bank_depth must be a power of two ≥ 2, not {bank_depth!r}")
        self._bank_depth = bank_depth
        self._layer, self._widths, self._analog = layer, widths, bool(analog)
        self._timing = LayerTiming(n_out=layer.n_out, lanes=lanes, pipeline=pipeline)
        self._value_width = value_width
        words = self._timing.words
        super().__init__(
            {
                "i": In(
                    stream.Signature(
                        op_layout(words=words, index_width=index_width, value_width=value_width),
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
        return self._timing.accumulator_latency

    @property
    def drive_width(self) -> int:
        """Signed bits of one event's drive: the natural width of ``value × w`` (or ``±w``).

        Exactly the width of the product, so that no output bit is a copy of another (Yosys
        would alias such bits, and Icarus simulates an output port aliased to itself ~100×
        slower).
        """
        if self._analog:
            return self._value_width + self._widths.weight
        return self._widths.weight + 1

    @property
    def weight_depth(self) -> int:
        """Words of the weight memory: ``n_in · words``."""
        return self._layer.n_in * self.words

    def weight_words(self) -> np.ndarray:
        """The weight memory contents, ``int64 [n_in · words, lanes]``."""
        return weight_words(self._layer, self.lanes)

    def elaborate(self, platform):
        m = Module()
        words = self.words
        shape = data.ArrayLayout(signed(self._widths.weight), self.lanes)
        rows = [row.tolist() for row in self.weight_words()]
        inp, inp_valid = self.i.payload, self.i.valid
        if self._timing.pipeline >= 2:  # the operation registered before the address
            inp = Signal(self.i.payload.shape(), name="op0")
            inp_valid = Signal(name="op0_valid")
            m.d.sync += [inp.eq(self.i.payload), inp_valid.eq(self.i.valid)]
        address = Signal(range(max(2, self.weight_depth)), name="weight_address")
        m.d.comb += address.eq(inp.index * words + inp.word)
        banks = -(-self.weight_depth // self._bank_depth)
        if self._timing.pipeline >= 2 and banks > 1:
            # Banks of bank_depth words, each read into its own register (a block RAM's output
            # register), then the bank chosen: a deep memory would otherwise put Yosys's
            # multiplexer between the block RAMs and that register.
            low = (self._bank_depth - 1).bit_length()
            bank_words = []
            select = [Signal(range(banks), name=f"bank{k}") for k in (1, 2)]
            m.d.sync += [select[0].eq(address[low:]), select[1].eq(select[0])]
            for b in range(banks):
                part = rows[b * self._bank_depth : (b + 1) * self._bank_depth]
                bank = memory.Memory(shape=shape, depth=len(part), init=part)
                m.submodules[f"weights{b}"] = bank
                rp = bank.read_port()
                m.d.comb += rp.addr.eq(address[:low])
                word = Signal(shape, name=f"bank_word{b}", reset_less=True)
                m.d.sync += word.eq(rp.data)
                bank_words.append(word)
            # (padded to a power of two with the last bank: no out-of-range constant, which
            # Yosys would turn into a reset of the register that follows)
            pad = (1 << (banks - 1).bit_length()) - banks
            weight_word = Signal(shape, name="weight_word")
            m.d.comb += weight_word.eq(Array(bank_words + bank_words[-1:] * pad)[select[1]])
        else:
            m.submodules.weights = mem = memory.Memory(shape=shape, depth=len(rows), init=rows)
            rp = mem.read_port()
            m.d.comb += rp.addr.eq(address)
            # no reset and no enable: the ECP5 flow moves it into the block RAM's output register
            weight_word = Signal(shape, name="weight_word", reset_less=True)
            m.d.sync += weight_word.eq(rp.data)
        # stage 1: the weight read; stage 2: the weight word registered
        op1 = Signal(self.i.payload.shape(), name="op1")
        op1_valid = Signal(name="op1_valid")
        op = Signal(self.i.payload.shape(), name="op")
        op_valid = Signal(name="op_valid")
        m.d.sync += [op1.eq(inp), op1_valid.eq(inp_valid)]
        m.d.sync += [op.eq(op1), op_valid.eq(op1_valid)]
        out, out_valid = op, op_valid
        weights, value = weight_word, op.value
        if self._timing.pipeline >= 2:  # the multiplier's input and output registers
            # the operation without index and value (which went into the address and operands)
            control = data.StructLayout({"op": Op, "word": op.word.shape(), "last": 1, "busy": 1})
            op3 = Signal(control, name="op3")
            op4 = Signal(control, name="op4")
            valid3, valid4 = Signal(name="op3_valid"), Signal(name="op4_valid")
            value = Signal.like(op.value, name="mul_value", reset_less=True)
            m.d.sync += [op3.eq(Cat(op.op, op.word, op.last, op.busy)), valid3.eq(op_valid)]
            m.d.sync += [value.eq(op.value), op4.eq(op3), valid4.eq(valid3)]
            if self._analog:  # the multiplier's second input register
                weights = Signal(weight_word.shape(), name="mul_weight", reset_less=True)
                m.d.sync += weights.eq(weight_word)
            out, out_valid = op4, valid4
        m.d.comb += [
            self.o.valid.eq(out_valid),
            self.o.payload.op.eq(out.op),
            self.o.payload.word.eq(out.word),
            self.o.payload.last.eq(out.last),
            self.o.payload.busy.eq(out.busy),
        ]
        integrate = out.op == Op.INTEGRATE
        for k in range(self.lanes):
            w = weights[k]
            if self._analog:
                product = value * w
            elif self._timing.pipeline >= 2:  # ±1 spikes: ±w = (w XOR s) + s, s = value < 0
                flipped = Signal.like(w, name=f"flipped{k}", reset_less=True)
                m.d.sync += flipped.eq(Mux(op.value < 0, ~weight_word[k], weight_word[k]))
                product = Mux(value == 0, 0, flipped + (value < 0))
            else:  # ±1 spikes: add or subtract
                product = Mux(value == 0, 0, Mux(value < 0, -w, w))
            if self._timing.pipeline >= 2:
                registered = Signal.like(product, name=f"product{k}", reset_less=True)
                m.d.sync += registered.eq(product)
                product = registered
            m.d.comb += self.o.payload.drive[k].eq(Mux(integrate, product, 0))
        return m
