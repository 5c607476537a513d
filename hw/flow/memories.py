"""The memories of an elaborated design and the ECP5 block RAMs they take, without synthesis.

:func:`memories` elaborates a component (Amaranth only, a few seconds for the whole digits CNN)
and lists every ``lib.memory.Memory`` with its width, depth, whether it is written (a RAM) and
whether a read port is synchronous. :func:`dp16kd` estimates the DP16KD block RAMs Yosys's
``synth_ecp5`` maps it to, with the rule that matches every memory of the digits CNN
(``tests/hw/test_memories.py`` checks it against Yosys's own mapping, slow):

* only a memory with a synchronous read port can be a block RAM;
* a memory built with ``attrs={"ram_style": "distributed"}`` (kept in the Verilog,
  :mod:`hw.flow.verilog`) goes to LUT-RAM whatever its size (the spike products' tracers and
  banks, ``hw.cores.product.LUT_RAM``);
* a RAM goes to LUT-RAM while it needs at most 32 ``TRELLIS_DPR16X4`` cells
  (``⌈w/4⌉·⌈d/16⌉``), else to block RAM; a ROM to logic up to 128 entries, else to block RAM;
* a block RAM memory takes ``⌈w/W⌉·⌈d/D⌉`` DP16KD in the cheapest of the configurations
  :data:`DP16KD_MODES` (W × D: 36 × 512 as ``PDPW16KD``, 18 × 1,024, 9 × 2,048, … as ``DP16KD``)
  — at most 36 bits per cycle per block RAM, so a wide shallow memory (a layer core's
  membranes: ``lanes`` states per word) costs its width, not its bits, and a narrow deep one
  (a 16-bit × 544 LayerNorm store) fits one block RAM at 18 × 1,024.

Widths are the elaborated ones; Yosys may drop constant or unread bits first, so the estimate is
an upper bound where that happens (not on the digits CNN at up to 8 lanes). On the whole digits
ViT (lanes 4, product lanes 4, LayerNorm units 4, pipeline 3, skip FIFOs of 510: session 13's
fitting configuration) it gives 178 DP16KD against Yosys's 163 (session 17): a site core's 88-bit
membrane store is 3 here and 2 there; and with 16 or 32 lanes Yosys puts a CNN's wide membrane
stores in LUT-RAM — an estimate, not Yosys's count, outside the CNN at 8 lanes.
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth.hdl import Fragment, Shape
from amaranth.hdl._mem import MemoryInstance
from amaranth.lib import wiring

__all__ = ["MemoryUse", "dp16kd", "memories"]

#: a RAM needing more ``TRELLIS_DPR16X4`` cells than this goes to block RAM
LUTRAM_CELLS_MAX = 32
#: a ROM deeper than this goes to block RAM
ROM_LOGIC_DEPTH_MAX = 128
#: (data bits, entries) of a DP16KD's configurations: 36 bits wide as ``PDPW16KD``, 18 bits and
#: narrower as a dual-port ``DP16KD``
DP16KD_MODES = ((36, 512), (18, 1024), (9, 2048), (4, 4096), (2, 8192), (1, 16384))


@dataclass(frozen=True)
class MemoryUse:
    """One memory of a design: its hierarchical name (submodule names joined by dots)."""

    name: str
    width: int
    depth: int
    written: bool  #: a RAM (a write port), else a ROM
    sync_read: bool  #: some read port is synchronous
    #: the memory's ``ram_style`` attribute (``"distributed"``: LUT-RAM), ``None`` without one
    style: str | None = None

    @property
    def bits(self) -> int:
        return self.width * self.depth

    @property
    def dp16kd(self) -> int:
        """DP16KD block RAMs Yosys maps this memory to (the module's rule), 0 for LUT-RAM or
        logic."""
        return dp16kd(self)


def dp16kd(mem: MemoryUse) -> int:
    """The estimate of the module docstring."""
    if not mem.sync_read or mem.style == "distributed":
        return 0
    if mem.written:
        cells = -(-mem.width // 4) * -(-mem.depth // 16)
        if cells <= LUTRAM_CELLS_MAX:
            return 0
    elif mem.depth <= ROM_LOGIC_DEPTH_MAX:
        return 0
    return min(-(-mem.width // w) * -(-mem.depth // d) for w, d in DP16KD_MODES)


def memories(component: wiring.Component) -> list[MemoryUse]:
    """Every memory of ``component`` once elaborated, in elaboration order."""
    out: list[MemoryUse] = []

    def walk(fragment, path: tuple[str, ...]) -> None:
        for sub, name, _ in fragment.subfragments:
            here = (*path, name if isinstance(name, str) else "?")
            if isinstance(sub, MemoryInstance):
                data = sub._data
                out.append(
                    MemoryUse(
                        name=".".join(here),
                        width=Shape.cast(data.shape).width,
                        depth=int(data.depth),
                        written=bool(sub._write_ports),
                        sync_read=any(p._domain != "comb" for p in sub._read_ports),
                        style=sub._attrs.get("ram_style"),
                    )
                )
            else:
                walk(sub, here)

    walk(Fragment.get(component, None), ())
    return out
