"""Verilog generation for the project's components (byte-reproducible: ``emit_src=False``).

Two back ends:

* ``"proc"`` (default) — RTLIL from :func:`amaranth.back.rtlil.convert`, then Amaranth's built-in
  Yosys runs ``proc`` (multiplexers instead of processes), ``wreduce``, ``memory_collect`` and
  ``opt_clean`` before ``write_verilog -noattr``: continuous assignments and one clocked process
  per register.
* ``"amaranth"`` — :func:`amaranth.back.verilog.convert`: processes stay ``always @*`` blocks
  (``proc -nomux``).

Measured on the digits network's first layer core (64 neurons, 16 lanes, Icarus 11, realistic
stimulus, no cocotb): ``"amaranth"`` ~460 cycles/s, ``proc`` without ``wreduce`` ~1,100,
``"proc"`` ~10,000. Two effects:

* Icarus re-evaluates a whole vector on any change of it, so an ``assign`` whose left and right
  sides are bits of the same wide port (Yosys's form of "these output bits are copies of that
  bit", e.g. a sign extension at a port) costs ~100× — keep port widths equal to the natural
  width of what drives them (``tests/hw/verilog_checks.py`` checks for such statements);
* Icarus does not run an ``always @*`` block at time 0 until one of its inputs changes, so with
  ``"amaranth"`` a combinational output can keep its initial value for the first cycles (seen as a
  one-cycle late first handshake of a layer core with one word); ``"proc"`` has no such blocks.
  Verilator and Amaranth's simulator agree with ``"proc"`` on Icarus cycle for cycle.
"""

from __future__ import annotations

from amaranth.back import rtlil, verilog
from amaranth.lib import wiring

__all__ = ["BACKENDS", "LINT_WAIVERS", "generate"]

BACKENDS = ("proc", "amaranth")

#: Verilator ``-Wall`` warnings the ``"proc"`` output of this project's designs needs waived on top
#: of the ones every Amaranth design needs (``sim.runner.AMARANTH_LINT_WAIVERS``), with the reason.
LINT_WAIVERS = {
    "CASEOVERLAP": (
        "Yosys writes each $pmux cell that `proc` builds from a `switch` (m.Switch / m.FSM) as a "
        "function holding `casez (s) // synopsys parallel_case` with one `?`-pattern per select "
        "bit; the select is one-hot by construction (mutually exclusive case values), so the "
        "patterns that overlap are never taken together."
    ),
    "UNDRIVEN": (
        "Amaranth drives every signal it emits (one nothing assigns is its reset value), so an "
        "undriven wire in the `proc` output is one whose driver `opt_clean` removed because "
        "nothing reads it: lib.fifo.SyncFIFOBuffered's `level`, `r_level` and `w_level`, which "
        "neither the emitter's queue nor the FIFOs between layer cores use."
    ),
}


def generate(component: wiring.Component, name: str, *, backend: str = "proc") -> str:
    """Verilog text of ``component`` with top module ``name``.

    Parameters
    ----------
    component : wiring.Component
        The top-level component; its signature gives the ports (``member__sub`` names).
    name : str
        Top module name.
    backend : str
        One of :data:`BACKENDS`.
    """
    if backend not in BACKENDS:
        valid = ", ".join(map(repr, BACKENDS))
        raise ValueError(f"backend must be one of {valid}, not {backend!r}")
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"name must be a Verilog identifier, not {name!r}")
    if backend == "amaranth":
        return verilog.convert(component, name=name, emit_src=False)
    from amaranth._toolchain.yosys import find_yosys  # the converter's own Yosys

    text = rtlil.convert(component, name=name, emit_src=False)
    yosys = find_yosys(lambda ver: ver >= (0, 40))
    script = "\n".join(
        [
            f"read_rtlil <<rtlil\n{text}\nrtlil",
            "proc",
            "wreduce",
            "memory_collect",
            "opt_clean",
            "write_verilog -noattr",
        ]
    )
    return yosys.run(["-q", "-"], script, ignore_warnings=True)
