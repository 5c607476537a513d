"""784-128-10 (the Spiker+ size) on ECP5: latency per inference at the placed fmax.

The trained 128-hidden digits QANN widened to 28×28 inputs (``bench_codesign.widen``: timing
only, not an MNIST model), 50 upsampled test images. Latency from the exact network cycle model
(FIFOs sized so that none fills, where it equals the RTL); fmax from nextpnr-ecp5 on the
``--85k`` device (156 multipliers) or the ``--25k`` (28), default speed grade, 4-pin harness,
at a pipeline depth (``hw.model.cycle_model.LayerTiming``). About 6 minutes per design point on 2
cores.

    python bench/bench_784.py [--lanes 32,16 64,16] [--samples 50] [--device 85k|25k]
                              [--pipeline 1]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _record import record
from bench_codesign import upsample, widen

from spikezip.hw.cores.network_core import NetworkCore
from spikezip.hw.flow.synth import place_and_route
from spikezip.report import model_latency
from spikezip.sw import digits, qann
from spikezip.sw.convert import to_network
from spikezip.sw.reference import simulate

DEVICES = {"85k": ["--85k", "--package", "CABGA381"], "25k": ["--25k", "--package", "CABGA381"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lanes", nargs="+", default=["32,16", "64,16"])
    ap.add_argument("--samples", type=int, default=50)
    ap.add_argument("--device", choices=sorted(DEVICES), default="85k")
    ap.add_argument("--pipeline", type=int, default=1)
    ap.add_argument("--time-limit", type=float, default=60.0, help="nextpnr CPU minutes per point")
    ap.add_argument("--seed", type=int, default=1, help="nextpnr seed")
    args = ap.parse_args()
    big = widen(to_network(qann.load_or_train(qann.QannConfig(hidden=(128,))), name="d128"))
    x = upsample(digits.load().x_test[: args.samples])
    trace = simulate(big, x)
    rows = []
    for text in args.lanes:
        lanes = tuple(int(v) for v in text.split(","))
        lat = model_latency(big, x, trace, lanes=lanes, pipeline=args.pipeline)
        t0 = time.perf_counter()
        top = NetworkCore(
            network=big, lanes=lanes, fifo_depth=lat.fifo_depth, pipeline=args.pipeline
        )
        r = place_and_route(
            top,
            target="ecp5",
            device_args=DEVICES[args.device],
            time_limit=60 * args.time_limit,
            seed=args.seed,
        )
        row = {
            "lanes": list(lanes),
            "pipeline": args.pipeline,
            "seed": args.seed,
            "abc9": r.abc9,
            "device": f"ECP5 {args.device} CABGA381",
            "fmax_mhz": round(r.fmax_mhz, 1),
            "cycles_mean": lat.cycles_mean,
            "cycles_max": lat.cycles_max,
            "us_mean": round(lat.cycles_mean / r.fmax_mhz, 1),
            "us_max": round(lat.cycles_max / r.fmax_mhz, 1),
            "utilization": {
                k: v["used"]
                for k, v in r.utilization.items()
                if k in ("TRELLIS_COMB", "TRELLIS_FF", "DP16KD", "MULT18X18D")
            },
            "critical_path": r.critical_path_text,
            "seconds": round(time.perf_counter() - t0),
        }
        rows.append(row)
        print(
            f"P={lanes} d{args.pipeline}: {row['fmax_mhz']} MHz, {row['us_mean']} µs mean / "
            f"{row['us_max']} µs max ({row['cycles_mean']:.0f} / {row['cycles_max']} cycles), "
            f"{row['utilization']}; limit: {row['critical_path']}",
            flush=True,
        )
    name = f"mnist_size_{args.device}_d{args.pipeline}" + (
        f"_s{args.seed}" if args.seed != 1 else ""
    )
    print(f"recorded in {record(name, {'samples': args.samples, 'designs': rows})}")


if __name__ == "__main__":
    main()
