"""ECP5 netlist pass: move fabric registers into the block RAMs' and multipliers' own registers.

Yosys maps every memory to a ``DP16KD`` with ``REGMODE = NOREG`` and every multiplier to a
``MULT18X18D`` without registers, and nextpnr packs no fabric flip-flop into either. An unregistered
``DP16KD`` read has a 5.8 ns clock-to-output and an unregistered ``MULT18X18D`` 3.9 ns of logic, so
neither can run at 200 MHz whatever registers surround it. The RTL already has the registers
(:mod:`hw.cores.accumulator`, ``dsp_registers``: presets 2 and 3); this pass moves them into the
blocks, on the synthesised JSON netlist, before place and route — what instantiating the primitives
with ``REGMODE = "OUTREG"`` and ``REG_INPUTA_CLK``/``REG_INPUTB_CLK``/``REG_OUTPUT_CLK = "CLK0"``
would give. Cycle behaviour is unchanged: a register moves, none is added or removed.

A flip-flop moves only when it is a plain register — no reset (``LSR`` constant, as Amaranth's
``reset_less`` signals give), the same clock as the block, and either no enable or an enable
shared by every flip-flop that moves into the block (a core frozen by one stall signal): the
block's registers then take that enable (``OCEA``/``OCEB`` of the RAM, ``CE0`` of the
multiplier; an inverted one through a new ``LUT4`` inverter), which updates them exactly when
the flip-flops would have updated — and:

* block RAM output: its ``DI`` is a ``DO`` bit of the RAM and nothing else reads that bit; all
  read ``DO`` bits of the RAM must qualify, or the RAM is left alone;
* multiplier inputs: every ``A`` and every ``B`` bit is the ``Q`` of such a flip-flop (constants
  allowed) — both operands or neither, since nextpnr times a multiplier with one registered
  input as unregistered; the multiplier then reads the flip-flops' ``DI`` through its input
  registers, and a flip-flop nobody else reads is removed;
* multiplier output: every read ``P`` bit feeds only the ``DI`` of such a flip-flop.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

__all__ = ["PackReport", "pack_registers"]


@dataclass(frozen=True)
class PackReport:
    """What :func:`pack_registers` moved."""

    bram_outputs: int  #: block RAMs given their output register
    dsp_inputs: int  #: multiplier operands (A or B) given their input register
    dsp_outputs: int  #: multipliers given their output register
    flip_flops: int  #: fabric flip-flops removed


def _ff_enable(cell: dict[str, Any]) -> Any:
    """A ``TRELLIS_FF`` without reset: its enable — ``"1"`` when it has none, else ``("CE",
    bit)`` or ``("INV", bit)`` (enabled while the bit is low); ``None`` for any other cell (a
    reset, an inverted clock)."""
    if cell["type"] != "TRELLIS_FF":
        return None
    conn, par = cell["connections"], cell["parameters"]
    lsr = conn.get("LSR", ["0"])[0] == "0" or par.get("LSRMUX") == "0"
    if not lsr or par.get("CLKMUX", "CLK") != "CLK":
        return None
    ce, mux = conn.get("CE", ["1"])[0], par.get("CEMUX", "CE")
    if ce == "1" or mux == "1":
        return "1"
    if mux in ("CE", "INV") and not isinstance(ce, str):
        return (mux, ce)
    return None


def _plain_ff(cell: dict[str, Any]) -> bool:
    """A ``TRELLIS_FF`` without reset (with or without an enable)."""
    return _ff_enable(cell) is not None


def _one_enable(ffs: Any, cells: dict[str, dict[str, Any]]) -> Any:
    """The enable shared by every flip-flop named in ``ffs``, or ``None`` when they differ."""
    enables = {str(_ff_enable(cells[f])) for f in ffs}
    if len(enables) != 1:
        return None
    return _ff_enable(cells[next(iter(ffs))])


def pack_registers(netlist: dict[str, Any], top: str) -> PackReport:
    """Move plain registers into the ``DP16KD`` and ``MULT18X18D`` cells of ``top`` (in place)."""
    module = netlist["modules"][top]
    cells: dict[str, dict[str, Any]] = module["cells"]
    readers: dict[Any, list[tuple[str, str]]] = defaultdict(list)  # bit → (cell, port) reading it
    driver: dict[Any, tuple[str, str]] = {}  # bit → (cell, port) driving it
    for name, cell in cells.items():
        dirs = cell.get("port_directions", {})
        for port, bits in cell["connections"].items():
            for bit in bits:
                if isinstance(bit, str):
                    continue
                if dirs.get(port) == "output":
                    driver[bit] = (name, port)
                else:
                    readers[bit].append((name, port))
    for port in module.get("ports", {}).values():
        if port["direction"] != "input":
            for bit in port["bits"]:
                readers[bit].append(("<port>", ""))
    removed: set[str] = set()
    brams = dsp_in = dsp_out = 0
    used = [b for c in cells.values() for bits in c["connections"].values() for b in bits]
    used += [b for p in module.get("ports", {}).values() for b in p["bits"]]
    used += [b for n in module.get("netnames", {}).values() for b in n["bits"]]
    next_bit = [max((b for b in used if isinstance(b, int)), default=1) + 1]
    inverted: dict[Any, int] = {}

    def enable_net(enable) -> Any:
        """The net that is high when ``enable`` (of :func:`_ff_enable`) lets a register load:
        ``"1"``, the ``CE`` bit, or a new inverter (``LUT4``) of an ``INV`` enable's bit."""
        if enable == "1":
            return "1"
        mux, bit = enable
        if mux == "CE":
            return bit
        if bit not in inverted:
            inverted[bit] = next_bit[0]
            next_bit[0] += 1
            cells[f"$pack_enable_inverter{len(inverted)}"] = {
                "type": "LUT4",
                "parameters": {"INIT": "0101010101010101"},  # Z = ~A
                "attributes": {},
                "port_directions": {"A": "input", "B": "input", "C": "input", "D": "input",
                                    "Z": "output"},
                "connections": {"A": [bit], "B": ["0"], "C": ["0"], "D": ["0"],
                                "Z": [inverted[bit]]},
            }  # fmt: skip
        return inverted[bit]

    def sole_ff(bit, clock) -> str | None:
        """The plain flip-flop on ``clock`` that is the only reader of ``bit``."""
        r = readers.get(bit, [])
        if len(r) != 1 or r[0][1] != "DI" or r[0][0] in removed:
            return None
        ff = cells[r[0][0]]
        return r[0][0] if _plain_ff(ff) and ff["connections"]["CLK"] == [clock] else None

    for name, cell in list(cells.items()):
        conn = cell["connections"]
        if cell["type"] == "DP16KD":
            par = cell["parameters"]
            if par.get("REGMODE_A", "NOREG") != "NOREG" or par.get("REGMODE_B", "NOREG") != "NOREG":
                continue
            clocks = {conn.get("CLKA", ["0"])[0], conn.get("CLKB", ["0"])[0]} - {"0", "1"}
            if len(clocks) != 1:
                continue
            clock = clocks.pop()
            outs = {p: b[0] for p, b in conn.items() if p.startswith("DO") and b[0] in readers}
            ffs = {p: sole_ff(bit, clock) for p, bit in outs.items()}
            if not outs or None in ffs.values():
                continue
            enable = _one_enable(ffs.values(), cells)
            if enable is None:
                continue
            for port, ff in ffs.items():
                conn[port] = cells[ff]["connections"]["Q"]
                driver[conn[port][0]] = (name, port)
                removed.add(ff)
            par["REGMODE_A"] = par["REGMODE_B"] = "OUTREG"
            # the output registers update when the flip-flops did (every cycle without enable)
            conn["OCEA"] = conn["OCEB"] = [enable_net(enable)]
            brams += 1
        elif cell["type"] == "MULT18X18D":
            par = cell["parameters"]
            clock = None
            # both operands from plain registers on one clock, or neither (nextpnr times a
            # multiplier with one registered input as if neither were)
            operands = {}
            for operand in ("A", "B"):
                if par.get(f"REG_INPUT{operand}_CLK", "NONE") != "NONE":
                    break
                bits = [conn[f"{operand}{k}"][0] for k in range(18)]
                ffs = {}
                for bit in bits:
                    if isinstance(bit, str):
                        continue
                    src = driver.get(bit)
                    if src is None or src[1] != "Q" or not _plain_ff(cells[src[0]]):
                        break
                    ffs[bit] = src[0]
                else:
                    operands[operand] = (bits, ffs)
            ff_clocks = {
                cells[f]["connections"]["CLK"][0]
                for _, ffs in operands.values()
                for f in ffs.values()
            }
            in_ffs = [f for _, ffs in operands.values() for f in ffs.values()]
            enable = _one_enable(in_ffs, cells) if in_ffs else None
            if len(operands) == 2 and len(ff_clocks) == 1 and enable is not None:
                clock = ff_clocks.pop()
                for operand, (bits, ffs) in operands.items():
                    for k, bit in enumerate(bits):
                        if not isinstance(bit, str):
                            conn[f"{operand}{k}"] = cells[ffs[bit]]["connections"]["DI"]
                    for bit, ff in ffs.items():
                        readers[bit] = [r for r in readers[bit] if r[0] != name]
                        if not readers[bit]:
                            removed.add(ff)
                    par[f"REG_INPUT{operand}_CLK"] = "CLK0"
                    dsp_in += 1
            if par.get("REG_OUTPUT_CLK", "NONE") == "NONE":
                outs = {p: b[0] for p, b in conn.items() if p.startswith("P") and b[0] in readers}
                out_clock = clock
                if out_clock is None and outs:
                    first = readers[next(iter(outs.values()))][0][0]
                    out_clock = cells[first]["connections"].get("CLK", [None])[0]
                ffs = {p: sole_ff(bit, out_clock) for p, bit in outs.items()}
                out_enable = None
                if outs and None not in ffs.values():
                    out_enable = _one_enable(ffs.values(), cells)
                if out_enable is not None and (clock is None or str(out_enable) == str(enable)):
                    enable = out_enable
                    for port, ff in ffs.items():
                        conn[port] = cells[ff]["connections"]["Q"]
                        driver[conn[port][0]] = (name, port)
                        removed.add(ff)
                    par["REG_OUTPUT_CLK"] = "CLK0"
                    clock = out_clock
                    dsp_out += 1
            if clock is not None:  # the registers update when the flip-flops did
                conn["CLK0"], conn["CE0"], conn["RST0"] = [clock], [enable_net(enable)], ["0"]
                for port in ("CLK0", "CE0", "RST0"):
                    cell.setdefault("port_directions", {})[port] = "input"
    for ff in removed:
        del cells[ff]
    return PackReport(brams, dsp_in, dsp_out, len(removed))


def replicate_registers(netlist: dict[str, Any], top: str, fanout: int = 24) -> int:
    """Copy every flip-flop read by more than ``fanout`` cell inputs, each copy feeding at most
    ``fanout`` of them (in place); return the number of copies added.

    nextpnr does no register replication, and a select read by a few hundred membrane bits costs
    ~2 ns of routing. The copies have the flip-flop's inputs and parameters, so the design is
    the same cycle for cycle.
    """
    module = netlist["modules"][top]
    cells: dict[str, dict[str, Any]] = module["cells"]
    readers: dict[Any, list[tuple[str, str, int]]] = defaultdict(list)
    top_ports = {b for p in module.get("ports", {}).values() for b in p["bits"]}
    used = set(top_ports)
    for name, cell in cells.items():
        dirs = cell.get("port_directions", {})
        for port, bits in cell["connections"].items():
            for k, bit in enumerate(bits):
                if isinstance(bit, str):
                    continue
                used.add(bit)
                if dirs.get(port) != "output":
                    readers[bit].append((name, port, k))
    for net in module.get("netnames", {}).values():
        used.update(b for b in net["bits"] if not isinstance(b, str))
    next_bit = max((b for b in used if isinstance(b, int)), default=1) + 1
    added = 0
    for name, cell in list(cells.items()):
        if cell["type"] != "TRELLIS_FF":
            continue
        q = cell["connections"]["Q"][0]
        sinks = readers.get(q, [])
        if len(sinks) <= fanout or q in top_ports:
            continue
        for chunk in range(1, -(-len(sinks) // fanout)):
            copy = {
                "type": cell["type"],
                "parameters": dict(cell["parameters"]),
                "attributes": dict(cell.get("attributes", {})),
                "port_directions": dict(cell.get("port_directions", {})),
                "connections": {p: list(b) for p, b in cell["connections"].items()},
            }
            copy["connections"]["Q"] = [next_bit]
            for sink, port, k in sinks[chunk * fanout : (chunk + 1) * fanout]:
                cells[sink]["connections"][port][k] = next_bit
            cells[f"{name}$replica{chunk}"] = copy
            next_bit += 1
            added += 1
    return added
