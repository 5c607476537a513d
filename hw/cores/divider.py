"""Exact unsigned division: a pipelined restoring divider, one quotient bit per stage.

``q = ⌊x / d⌋`` for ``x < d·2^quotient_width`` (so the quotient fits ``quotient_width`` bits).
Stage ``k`` (``k = 0 … quotient_width − 1``) shifts the next dividend bit into the partial
remainder ``r`` and subtracts ``d`` when ``r ≥ d`` (one comparison and one subtraction of
``divisor_width + 1`` bits); the remainder enters as ``x >> quotient_width``, which is below ``d``
by the precondition. Each stage is one register, so a division leaves ``quotient_width`` cycles
after it enters and a new one may enter every cycle. A ``tag`` travels with each division.

Cost: ``quotient_width`` stages of ``divisor_width + 1``-bit subtractors and about
``2·divisor_width + quotient_width + tag`` flip-flops each. ``en`` low freezes every stage (the
stall of the core around it).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Shape, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from spikezip.hw.model.softmax_model import divider_latency

__all__ = ["Divider", "divider_latency"]


def _width(name: str, value: object, lo: int = 1) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= 62:
        raise ValueError(f"{name} must be an integer in [{lo}, 62], not {value!r}")
    return value


class Divider(wiring.Component):
    """Pipelined exact unsigned divider (see the module docstring).

    Latency :attr:`latency` ``= quotient_width`` cycles (the quotient is valid on ``o`` that many
    enabled cycles after the operands were valid on ``i``); throughput one division per cycle.

    Parameters
    ----------
    dividend_width, divisor_width, quotient_width : int
        Unsigned widths (1…62); the caller guarantees ``1 ≤ d`` and ``x < d·2^quotient_width``.
    tag_shape : shape-castable
        Payload carried alongside (default ``unsigned(1)``).

    Members
    -------
    en : In(1, init=1)
        Advance the pipeline (0: hold every stage).
    i : In(stream.Signature(StructLayout{dividend, divisor, tag}, always_ready=True))
    o : Out(stream.Signature(StructLayout{quotient, tag}, always_ready=True))
    """

    def __init__(
        self, *, dividend_width: int, divisor_width: int, quotient_width: int, tag_shape=1
    ) -> None:
        self._xw = _width("dividend_width", dividend_width)
        self._dw = _width("divisor_width", divisor_width)
        self._qw = _width("quotient_width", quotient_width)
        self._tag = Shape.cast(tag_shape) if not isinstance(tag_shape, data.Layout) else tag_shape
        i = data.StructLayout(
            {"dividend": unsigned(self._xw), "divisor": unsigned(self._dw), "tag": self._tag}
        )
        o = data.StructLayout({"quotient": unsigned(self._qw), "tag": self._tag})
        super().__init__(
            {
                "en": In(1, init=1),
                "i": In(stream.Signature(i, always_ready=True)),
                "o": Out(stream.Signature(o, always_ready=True)),
            }
        )

    @property
    def latency(self) -> int:
        return divider_latency(self._qw)

    @property
    def quotient_width(self) -> int:
        return self._qw

    def elaborate(self, platform):
        m = Module()
        qw, dw = self._qw, self._dw
        low_w = qw  # dividend bits still to shift in
        wide = Signal(unsigned(self._xw + qw))
        m.d.comb += wide.eq(self.i.payload.dividend)
        valid = self.i.valid
        rem = Signal(unsigned(dw))
        m.d.comb += rem.eq(wide[qw:])  # < d by the precondition
        low, quo = wide[:qw], Signal(unsigned(qw))
        divisor, tag = self.i.payload.divisor, self.i.payload.tag
        for k in range(qw):
            shifted = Cat(low[low_w - 1 - k], rem)  # (r << 1) | next bit, dw + 1 bits
            ge = shifted >= divisor
            nrem = Signal(unsigned(dw), name=f"rem{k}")
            nquo = Signal(unsigned(qw), name=f"quo{k}")
            nlow = Signal(unsigned(qw), name=f"low{k}")
            ndiv = Signal(unsigned(dw), name=f"div{k}")
            ntag = Signal(self._tag, name=f"tag{k}")
            nvalid = Signal(name=f"valid{k}")
            with m.If(self.en):
                m.d.sync += [
                    nrem.eq(Mux(ge, shifted - divisor, shifted)),
                    nquo.eq(Cat(ge, quo)),
                    nlow.eq(low),
                    ndiv.eq(divisor),
                    ntag.eq(tag),
                    nvalid.eq(valid),
                ]
            rem, quo, low, divisor, tag, valid = nrem, nquo, nlow, ndiv, ntag, nvalid
        m.d.comb += [
            self.o.valid.eq(valid),
            self.o.payload.quotient.eq(quo),
            self.o.payload.tag.eq(tag),
        ]
        return m
