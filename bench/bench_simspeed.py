"""The same layer-core test on cocotb+Verilator, cocotb+Icarus and Amaranth's simulator.

Digits layer 1 (64→10 spikes, P = 10) driven with its golden input for N test images, no
backpressure; every run checks its output against the golden trace (cocotb: the testbench's
scoreboard; Amaranth: here). Wall time of the simulation only (cocotb builds excluded: each
design is built first, then timed on a second run). Prints cycles/s and the ratios, measured in
one run.

    python bench/bench_simspeed.py [--images 20] [--layer 1] [--lanes 10]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _record import record
from amaranth.sim import Simulator

from spikezip.hw.cores.layer_core import LayerCore
from spikezip.hw.model import events
from spikezip.sim.cases import layer_core_case
from spikezip.sim.runner import run_cocotb
from spikezip.sw import digits, qann
from spikezip.sw.convert import to_network
from spikezip.sw.reference import simulate


def amaranth_run(net, x, trace, k: int, lanes: int) -> tuple[int, float]:
    """Drive the core in Amaranth's simulator; return (cycles, seconds); check the output."""
    core = LayerCore.for_network(net, k, lanes=lanes)
    ins, outs = events.input_steps(net, x, trace, k), events.output_steps(trace, k)
    words = [w for inf in ins for s in inf for w in s.words(core.input_format)]
    expected = [w for inf in outs for s in inf for w in s.words(core.output_format)]
    got: list[int] = []
    cycles = [0]

    async def testbench(ctx):
        ptr, cycle = 0, 0
        ctx.set(core.o.ready, 1)
        while len(got) < len(expected) and cycle < 10**7:
            valid = ptr < len(words)
            ctx.set(core.i.valid, valid)
            ctx.set(core.i.payload.as_value(), words[min(ptr, len(words) - 1)])
            ptr += bool(valid and ctx.get(core.i.ready))
            if ctx.get(core.o.valid):
                got.append(ctx.get(core.o.payload.as_value()))
            await ctx.tick()
            cycle += 1
        cycles[0] = cycle

    sim = Simulator(core)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    t0 = time.perf_counter()
    sim.run()
    seconds = time.perf_counter() - t0
    if got != expected:
        raise AssertionError("Amaranth simulation differs from the golden output")
    return cycles[0], seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=20)
    ap.add_argument("--layer", type=int, default=1)
    ap.add_argument("--lanes", type=int, default=10)
    args = ap.parse_args()
    net = to_network(qann.load_or_train(qann.QannConfig()), name="digits")
    x = digits.load().x_test[: args.images]
    trace = simulate(net, x, record_state=True)
    work = Path(tempfile.mkdtemp(prefix="bench-simspeed-"))
    rows = {}
    try:
        case = layer_core_case(work / "case", net, x, args.layer, lanes=args.lanes, trace=trace)
        cycles = case.schedule[-1].end_cycle + 1
        for sim in ("verilator", "icarus"):
            kw = dict(
                sim=sim,
                sources=[case.verilog],
                toplevel=case.toplevel,
                test_module="spikezip.sim.tb.layer_core",
                build_dir=work / f"build-{sim}",
                extra_env=case.env(),
            )
            run_cocotb(**kw)  # build (and a first run)
            t0 = time.perf_counter()
            run_cocotb(**kw)
            rows[f"cocotb+{sim}"] = (cycles, time.perf_counter() - t0)
        rows["amaranth.sim"] = amaranth_run(net, x, trace, args.layer, args.lanes)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    base = rows["amaranth.sim"][0] / rows["amaranth.sim"][1]
    results = {"images": args.images, "layer": args.layer, "lanes": args.lanes, "runs": {}}
    print(f"layer {args.layer}, P = {args.lanes}, {args.images} images, model cycles {cycles}")
    for name, (n, seconds) in rows.items():
        rate = n / seconds
        results["runs"][name] = {
            "cycles": n,
            "seconds": round(seconds, 3),
            "cycles_per_s": round(rate),
            "vs_amaranth": round(rate / base, 2),
        }
        print(
            f"{name:<18} {n:>7} cycles {seconds:7.2f} s {rate:>10,.0f} cycles/s "
            f"{rate / base:6.2f}× Amaranth's simulator"
        )
    print(f"recorded in {record('simspeed', results)}")


if __name__ == "__main__":
    main()
