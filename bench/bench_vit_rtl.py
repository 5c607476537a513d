"""The spiking digits ViT in RTL: bit-exactness, cycles and simulation speed (and, optionally,
resources and fmax on ECP5).

Generates ``ViTCore`` for the cached digits ViT (``--lanes``, ``--pipeline``), simulates N test
images back to back in Verilator, compares the hardware trace with the reference's, and prints
cycles per image (back to back and latency), seconds per image in Verilator (amortised, build
excluded and included), and the fraction bit-exact. ``--synth`` adds Yosys ``synth_ecp5``
resources of the whole design; ``--pnr`` adds nextpnr on the ECP5-85k (fmax; slow).

``--threads 1,2 --repeats R``: the same images on Verilator models of each thread count (each
built once, its own build), then R more timed runs per count, interleaved (1, 2, 1, 2, …) so
that the machine's noise falls on both alike; prints each count's median cycles/s and the ratio
to the first count, measured in this one run. Default: the thread count ``simulate`` picks.

    python bench/bench_vit_rtl.py [--images 20] [--lanes 8] [--pipeline 1] [--synth] [--pnr]
                                  [--threads 1,2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _record import record

from spikezip.hw.cores.vit_core import ViTCore
from spikezip.ir.compare import first_divergence
from spikezip.sim.simulate import design, simulate
from spikezip.sw import digits
from spikezip.sw.vit import model as vit_model
from spikezip.sw.vit.convert import to_transformer
from spikezip.sw.vit.reference import run as reference


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=20)
    ap.add_argument("--lanes", type=int, default=8)
    ap.add_argument("--pipeline", type=int, default=1)
    ap.add_argument("--root", default=None, help="design folder root (default: a temporary one)")
    ap.add_argument("--synth", action="store_true", help="Yosys synth_ecp5 resources")
    ap.add_argument("--pnr", action="store_true", help="nextpnr on the ECP5-85k (fmax)")
    ap.add_argument("--threads", default=None, help="Verilator thread counts, e.g. 1,2")
    ap.add_argument("--repeats", type=int, default=0, help="timed runs per count after the first")
    args = ap.parse_args()
    counts = [int(c) for c in args.threads.split(",")] if args.threads else [None]
    vit = to_transformer(vit_model.load_or_train(vit_model.VitConfig()), name="digits-vit")
    x = digits.load().x_test[: args.images]
    root = Path(args.root or tempfile.mkdtemp(prefix="bench-vit-rtl-"))
    res: dict = {"lanes": args.lanes, "pipeline": args.pipeline, "images": args.images}
    t0 = time.perf_counter()
    d = design(vit, root, lanes=args.lanes, pipeline=args.pipeline)
    res["generate_seconds"] = round(time.perf_counter() - t0, 1)
    golden = reference(vit, x).trace
    runs: dict = {}
    for c in counts:
        t0 = time.perf_counter()
        hw = simulate(vit, x, sim="verilator", design_dir=d, threads=c)
        runs[hw.threads] = {"wall_seconds_incl_build": round(time.perf_counter() - t0, 1)}
        runs[hw.threads]["cycles_per_second"] = [round(hw.cycles_per_second)]
        div = first_divergence(golden, hw.trace)
        if div is not None:
            break
    for _ in range(args.repeats if div is None else 0):
        for c in runs:
            again = simulate(vit, x, sim="verilator", design_dir=d, threads=c)
            assert first_divergence(golden, again.trace) is None
            runs[c]["cycles_per_second"].append(round(again.cycles_per_second))
    first = None
    for r in runs.values():
        r["median_cycles_per_second"] = round(statistics.median(r["cycles_per_second"]))
        r["median_seconds_per_image"] = round(
            hw.total_cycles / r["median_cycles_per_second"] / args.images, 3
        )
        first = first or r["median_cycles_per_second"]
        r["ratio_to_first"] = round(r["median_cycles_per_second"] / first, 2)
    res |= {
        "bit_exact": div is None,
        "first_divergence": None if div is None else str(div).splitlines()[0],
        "inferences_done": len(hw.done),
        "threads": runs,
        "sim_seconds": round(hw.sim_seconds, 1),
        "seconds_per_image": round(hw.sim_seconds / args.images, 3),
        "cycles": hw.total_cycles,
        "cycles_per_second": round(hw.cycles_per_second),
        "cycles_per_image_back_to_back": round(hw.total_cycles / args.images, 1),
        "latency_mean_cycles": round(float(hw.latency.mean()), 1),
        "latency_max_cycles": int(hw.latency.max()),
        "latency_first_image_cycles": int(hw.latency[0]),
        "steps_mean": round(float(golden.steps.mean()), 2),
    }
    for name, lat in (("latency_us_at_100MHz", 100.0), ("latency_us_at_150MHz", 150.0)):
        res[name] = round(float(hw.latency.mean()) / lat, 1)
    if args.synth or args.pnr:
        from spikezip.hw.flow.synth import place_and_route, synthesize
        from spikezip.hw.flow.verilog import generate

        top = ViTCore(vit=vit, lanes=args.lanes, pipeline=args.pipeline)
        if args.synth:
            s = synthesize(generate(top, "vit"), "vit", target="ecp5")
            res["synth_ecp5"] = {"seconds": round(s.seconds, 1), **s.total}
        if args.pnr:
            p = place_and_route(
                ViTCore(vit=vit, lanes=args.lanes, pipeline=args.pipeline),
                target="ecp5",
                freq_mhz=100.0,
                device_args=["--85k", "--package", "CABGA381"],
            )
            path = p.critical_path
            res["pnr_ecp5_85k"] = {
                "fmax_mhz": round(p.fmax_mhz, 1),
                "critical_path": f"{path[0].get('from')} -> {path[-1].get('to')}" if path else "",
                "utilization": p.utilization,
                "seconds": round(p.seconds, 1),
            }
    for k, v in res.items():
        print(f"{k:32} {v}")
    record("vit_rtl", res)


if __name__ == "__main__":
    main()
