"""784-128-10 (the Spiker+ size) on ECP5-85k: latency per inference at the placed fmax.

The trained 128-hidden digits QANN widened to 28×28 inputs (``bench_codesign.widen``: timing
only, not an MNIST model), 50 upsampled test images. Latency from the exact network cycle model
(FIFOs sized so that none fills, where it equals the RTL); fmax from nextpnr-ecp5 on the
``--85k`` device (156 multipliers; the 25k has 28), default speed grade, 4-pin harness.
About 6 minutes per design point on 2 cores.

    python bench/bench_784.py [--lanes 32,16 64,16] [--samples 50]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _record import record
from bench_codesign import upsample, widen

from hw.network import NetworkCore
from hw.synth import place_and_route
from spikezip.report import model_latency
from sw import digits, qann
from sw.convert import to_network
from sw.reference import simulate

DEVICE = ["--85k", "--package", "CABGA381"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lanes", nargs="+", default=["32,16", "64,16"])
    ap.add_argument("--samples", type=int, default=50)
    args = ap.parse_args()
    big = widen(to_network(qann.load_or_train(qann.QannConfig(hidden=(128,))), name="d128"))
    x = upsample(digits.load().x_test[: args.samples])
    trace = simulate(big, x)
    rows = []
    for text in args.lanes:
        lanes = tuple(int(v) for v in text.split(","))
        lat = model_latency(big, x, trace, lanes)
        t0 = time.perf_counter()
        top = NetworkCore(network=big, lanes=lanes, fifo_depth=lat["fifo_depth"])
        r = place_and_route(top, target="ecp5", device_args=DEVICE)
        row = {
            "lanes": list(lanes),
            "device": "ECP5 85k CABGA381",
            "fmax_mhz": round(r.fmax_mhz, 1),
            "cycles_mean": lat["latency_cycles_mean"],
            "cycles_max": lat["latency_cycles_max"],
            "us_mean": round(lat["latency_cycles_mean"] / r.fmax_mhz, 1),
            "us_max": round(lat["latency_cycles_max"] / r.fmax_mhz, 1),
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
            f"P={lanes}: {row['fmax_mhz']} MHz, {row['us_mean']} µs mean / {row['us_max']} µs "
            f"max ({row['cycles_mean']:.0f} / {row['cycles_max']} cycles), "
            f"{row['utilization']}; limit: {row['critical_path']}",
            flush=True,
        )
    print(f"recorded in {record('mnist_size', {'samples': args.samples, 'designs': rows})}")


if __name__ == "__main__":
    main()
