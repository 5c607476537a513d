"""Generic pipeline blocks shared by the layer core's datapath."""

from __future__ import annotations

from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["Delay"]


class Delay(wiring.Component):
    """An ``always_ready`` stream delayed by ``cycles`` registers (0: a wire).

    Latency ``cycles``; throughput one beat per cycle. Control travels with it alongside a
    datapath of the same latency. The registers are named ``<name>`` and ``<name>_valid`` (one
    cycle), or ``<name><k>`` and ``<name><k>_valid`` for ``k = 1 … cycles``.

    Parameters
    ----------
    shape : shape-castable
        The payload.
    cycles : int
        Registers (≥ 0).
    name : str
        Prefix of the registers' names.

    Members
    -------
    i : In(stream.Signature(shape, always_ready=True))
    o : Out(stream.Signature(shape, always_ready=True))
    """

    def __init__(self, shape, *, cycles: int, name: str = "stage") -> None:
        if not isinstance(cycles, int) or cycles < 0:
            raise ValueError(f"cycles must be a non-negative integer, not {cycles!r}")
        self._shape, self._cycles, self._name = shape, cycles, name
        sig = stream.Signature(shape, always_ready=True)
        super().__init__({"i": In(sig), "o": Out(sig)})

    @property
    def latency(self) -> int:
        return self._cycles

    def elaborate(self, platform):
        m = Module()
        valid, payload = self.i.valid, self.i.payload
        for k in range(1, self._cycles + 1):
            name = self._name if self._cycles == 1 else f"{self._name}{k}"
            reg_valid = Signal(name=f"{name}_valid")
            reg = Signal(self._shape, name=name)
            m.d.sync += [reg_valid.eq(valid), reg.eq(payload)]
            valid, payload = reg_valid, reg
        m.d.comb += [self.o.valid.eq(valid), self.o.payload.eq(payload)]
        return m
