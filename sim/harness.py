"""The simulation harness: a Verilog wrapper that streams the stimulus and records the beats.

:func:`harness_verilog` writes, from a design's manifest, a module :data:`HARNESS` that wraps
the generated top (same ports, so a testbench addresses it as it would the top) and adds a
**recorder**: with its input ``h_auto`` high it drives the input stream itself from the file
:data:`WORDS_FILE` (one hexadecimal payload per line, read with ``$fscanf``), holds ``o.ready``
high, and appends to :data:`BEATS_FILE` one line ``cycle core payload`` (decimal) for every beat
that leaves a core (the probe's ``fire`` bits, and ``o`` for the last core), and to
:data:`FACTS_FILE` one line per accepted input beat (``I cycle``), per final marker of the last
core (``D cycle``) and the cycle after it (``C cycle counters``, hexadecimal), and the
counters in the cycle ``h_limit`` (``L cycle counters``: where a run cut by its cycle limit
reads them). Both files are in
the simulator's working directory (the run folder). The cycle count ``h_cycle`` is 0 in the
first cycle after reset, as :mod:`sim.tb.kit` counts.

Everything is sampled at the rising edge that ends a cycle (pre-edge values, as the testbench's
falling-edge read sees them), so the records equal what a per-cycle Python loop records — cycle
for cycle — but the simulator runs free: the testbench wakes once per :data:`CHUNK` cycles
instead of once per cycle (docs/performance.md, "Simulation speed"). With ``h_auto`` low the
harness is transparent and the testbench drives and reads every port (the pause-generator runs).

``h_finals`` counts final markers (inferences done); ``h_flush`` high for a cycle flushes the
files.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from spikezip.hw.model.events import EventFormat
from spikezip.ir._io import atomic_write_text

__all__ = [
    "BEATS_FILE",
    "CHUNK",
    "FACTS_FILE",
    "HARNESS",
    "HARNESS_FILES",
    "THREADS_MIN_VERILOG",
    "VERILATOR_ARGS",
    "WORDS_FILE",
    "harness_verilog",
    "usable_cpus",
    "verilator_args",
    "verilator_threads",
    "write_harness",
]

HARNESS = "spikezip_harness"  #: module name of the harness (the simulation's toplevel)
WORDS_FILE = "spikezip_words.hex"
BEATS_FILE = "spikezip_beats.txt"
FACTS_FILE = "spikezip_facts.txt"
HARNESS_FILES = (WORDS_FILE, BEATS_FILE, FACTS_FILE)  #: what a run writes in its folder
CHUNK = 1024  #: cycles the testbench lets the simulator run between two looks
#: Verilator build arguments of a harness build: only the harness's ports (marked
#: :data:`PUBLIC`) are visible to cocotb, so Verilator optimises the design inside it freely
#: (cocotb's runner marks every signal public otherwise: the digits ViT then simulated 5.6×
#: slower, 1.8k instead of 10k cycles/s, and took 1.9× longer to build)
VERILATOR_ARGS = ("--no-public-flat-rw",)
PUBLIC = "/*verilator public_flat_rw*/"
#: Verilog at least this large (bytes) simulates on two Verilator threads by default. Measured
#: (docs/performance.md, "Verilator threads"): the digits ViT (7.5 MB) runs 2.9× faster on two
#: threads (10.7k → 30.9k cycles/s), the digits MLP (0.17 MB) 2× slower (250k → 125k):
#: the threads' synchronisation per cycle only pays on a large model.
THREADS_MIN_VERILOG = 2_000_000
MAX_AUTO_THREADS = 2  #: the most threads chosen by default (the largest count measured)
#: spins of a waiting model thread before it yields the CPU (:func:`verilator_args`)
SPINS_BEFORE_YIELD = 100


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def verilator_threads(verilog: Path, threads: int | None = None) -> int:
    """Threads of the Verilator model of ``verilog``: ``threads`` if given (checked), else
    ``min(2, usable CPUs)`` for Verilog of :data:`THREADS_MIN_VERILOG` bytes or more and 1 for
    smaller designs.

    A model built for more threads than the process may use does not start (Verilator aborts:
    "VerilatedContext has 1 threads but model … was Verilated with --threads 2"), so more than
    :func:`usable_cpus` is refused here.
    """
    cpus = usable_cpus()
    if threads is None:
        return min(MAX_AUTO_THREADS, cpus) if verilog.stat().st_size >= THREADS_MIN_VERILOG else 1
    if isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= cpus:
        raise ValueError(
            f"threads must be an integer from 1 to {cpus} (the CPUs this process may use), "
            f"not {threads!r}"
        )
    return threads


def verilator_args(threads: int = 1) -> tuple[str, ...]:
    """Verilator build arguments of a harness build on ``threads`` threads.

    With more than one thread the model's threads spin only :data:`SPINS_BEFORE_YIELD` times
    (Verilator's default: 50,000) while waiting for each other before they yield the CPU.
    Measured on the digits ViT, 2 cores (docs/performance.md, "Verilator threads"): with the
    default, one other busy process made two threads take over 9.5 minutes for 5 images that
    one thread ran in 22 s (a waiting thread spins away the time slice its partner needs); with
    100 spins the same run took 29 s, and an idle machine runs as fast as with 50,000.
    """
    if threads <= 1:
        return VERILATOR_ARGS
    spins = f"-DVL_LOCK_SPINS={SPINS_BEFORE_YIELD}"
    return (*VERILATOR_ARGS, "-CFLAGS", spins, "--threads", str(threads))


def _decl(width: int) -> str:
    return f"[{width - 1}:0] " if width > 1 else ""


def harness_verilog(
    toplevel: str,
    ports: Sequence[tuple[str, str, int]],
    probe: Sequence[tuple[str, int, int]],
    last_format: EventFormat,
) -> str:
    """The harness's Verilog around ``toplevel``.

    ``ports`` are the top's ``(name, "in"|"out", width)``, ``probe`` the fields of its ``probe``
    vector ``(name, offset, width)`` (:func:`hw.cores.network_core.probe_layout`),
    ``last_format`` the last core's output event format (its final marker: marker set, busy
    clear).
    """
    names = {p[0]: p for p in ports}
    for need in (
        "clk",
        "rst",
        "i__valid",
        "i__payload",
        "i__ready",
        "o__valid",
        "o__ready",
        "counters",
        "probe",
    ):
        if need not in names:
            raise ValueError(f"the top {toplevel!r} has no port {need!r}; regenerate the design")
    fields = {name: (offset, width) for name, offset, width in probe}
    beats = sorted(int(n[4:]) for n in fields if n.startswith("beat"))
    if beats != list(range(len(beats))) or not beats:
        raise ValueError("the probe layout has no beat fields 0..n-1")
    last = len(beats) - 1
    w_in = names["i__payload"][2]
    w_out = names["o__payload"][2]
    mask = last_format.pack(marker=True, busy=True)
    final = last_format.pack(marker=True)
    lines = [
        f"// Generated by spikezip.sim.harness around {toplevel}: do not edit.",
        "`timescale 1ns/1ps",
        f"module {HARNESS} (",
    ]
    decl = [
        f"  {'input' if direction == 'in' else 'output'} wire {_decl(width)}{name}"
        for name, direction, width in ports
    ]
    decl += [
        "  input wire h_auto",
        "  input wire h_flush",
        "  input wire [63:0] h_limit",
        "  output reg [31:0] h_finals",
        "  output reg [63:0] h_cycle",
    ]
    decl = [f"{d} {PUBLIC}" for d in decl]
    lines.append(",\n".join(decl))
    lines += [
        ");",
        f"  reg {_decl(w_in)}w_word;",
        f"  reg {_decl(w_in)}w_next;",
        "  reg w_have, opened, after_final;",
        "  integer fd_in, fd_beats, fd_facts, n_read;",
        "  wire dut_i_valid = h_auto ? w_have : i__valid;",
        f"  wire {_decl(w_in)}dut_i_payload = h_auto ? w_word : i__payload;",
        "  wire dut_o_ready = h_auto ? 1'b1 : o__ready;",
        "  initial begin",
        "    w_word = 0; w_next = 0; w_have = 0; opened = 0; after_final = 0;",
        "    h_finals = 0; h_cycle = 0; fd_in = 0; fd_beats = 0; fd_facts = 0; n_read = 0;",
        "  end",
    ]
    conns = []
    for name, _direction, _ in ports:
        inner = {
            "i__valid": "dut_i_valid",
            "i__payload": "dut_i_payload",
            "o__ready": "dut_o_ready",
        }.get(name, name)
        conns.append(f"    .{name}({inner})")
    lines += [f"  {toplevel} dut (", ",\n".join(conns), "  );"]
    lines += [
        "  always @(posedge clk) begin",
        "    if (rst) h_cycle <= 0; else h_cycle <= h_cycle + 1;",
        "    if (h_auto && !opened) begin",
        f'      fd_in = $fopen("{WORDS_FILE}", "r");',
        f'      fd_beats = $fopen("{BEATS_FILE}", "w");',
        f'      fd_facts = $fopen("{FACTS_FILE}", "w");',
        "      opened <= 1;",
        '      n_read = (fd_in != 0) ? $fscanf(fd_in, "%h\\n", w_next) : 0;',
        "      w_have <= (n_read == 1);",
        "      w_word <= w_next;",
        "    end",
        "    if (h_auto && opened && !rst) begin",
        "      if (w_have && i__ready) begin",
        '        $fwrite(fd_facts, "I %0d\\n", h_cycle);',
        '        n_read = $fscanf(fd_in, "%h\\n", w_next);',
        "        w_have <= (n_read == 1);",
        "        w_word <= w_next;",
        "      end",
        "      if (h_cycle == h_limit)",
        '        $fwrite(fd_facts, "L %0d %h\\n", h_cycle, counters);',
        "      if (after_final) begin",
        '        $fwrite(fd_facts, "C %0d %h\\n", h_cycle, counters);',
        "        after_final <= 0;",
        "      end",
    ]
    for k in range(last):
        fo, _ = fields[f"fire{k}"]
        bo, bw = fields[f"beat{k}"]
        lines.append(
            f'      if (probe[{fo}]) $fwrite(fd_beats, "%0d {k} %0d\\n", h_cycle, '
            f"probe[{bo + bw - 1}:{bo}]);"
        )
    lines += [
        "      if (o__valid) begin",
        f'        $fwrite(fd_beats, "%0d {last} %0d\\n", h_cycle, o__payload);',
        f"        if ((o__payload & {w_out}'d{mask}) == {w_out}'d{final}) begin",
        "          h_finals <= h_finals + 1;",
        '          $fwrite(fd_facts, "D %0d\\n", h_cycle);',
        "          after_final <= 1;",
        "        end",
        "      end",
        "    end",
        "    if (h_flush && opened) begin",
        "      $fflush(fd_beats);",
        "      $fflush(fd_facts);",
        "    end",
        "  end",
        "endmodule",
        "",
    ]
    return "\n".join(lines)


def write_harness(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` unless it already holds it (a rewrite would make Icarus, which
    compares file dates, rebuild); atomic."""
    try:
        if path.read_text() == text:
            return path
    except OSError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, text)
    return path
