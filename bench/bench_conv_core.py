"""Convolution-core benchmark on the digits CNN's conv layers: cycles and accumulate-phase
utilization from the exact cycle model (docs/cnn.md §11; the Amaranth and cocotb tests check it
cycle for cycle).

Loads (or trains into the cache) the default digits CNN (``sw.cnn.model``), converts it, runs the
reference on test images back to back and, per conv site, lane count and pipeline preset,
schedules its conv core (``hw.model.conv_sites`` + ``hw.model.cycle_model.timed``) with the input
always valid. Accumulate-phase utilization is as for the layer core (docs/performance.md): lane
operations delivered over ``lanes`` per cycle of the accumulate phases ``[a_t, x_t)``. Records
``build/bench/conv_core.json``.

    python bench/bench_conv_core.py [--images 100]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _record import record

from spikezip.hw.model import cycle_model
from spikezip.hw.model.conv_sites import conv_spec, conv_streams
from spikezip.ir.cnn import Conv2d
from spikezip.sw import digits
from spikezip.sw.cnn import model as cnn
from spikezip.sw.cnn.convert import to_convnet
from spikezip.sw.cnn.reference import simulate


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=100)
    args = ap.parse_args()
    net = to_convnet(cnn.load_or_train(cnn.CnnConfig()), name="digits-cnn")
    x = digits.load().x_test[: args.images]
    trace = simulate(net, x)
    rows = []
    print(
        f"{'site':6} {'lanes':>5} {'span':>4} {'W':>4} {'preset':>6} {'cycles/inf':>10} "
        f"{'passes/inf':>10} {'acc. util':>9}"
    )
    for k, op in enumerate(net.layers):
        if not isinstance(op, Conv2d):
            continue
        ins, outs = conv_streams(net, x, trace, k)
        for lanes in (1, 4, 8, 16):
            for preset in (1, 3):
                spec = conv_spec(net, k, lanes=lanes)
                timing = cycle_model.LayerTiming(n_out=spec.n_out, lanes=lanes, pipeline=preset)
                run = cycle_model.timed(timing, ins, outs, input_map=spec.input_map)
                util = run.ops / max(1, run.accumulate * lanes)
                passes = run.ops // (spec.input_map.span * lanes)
                row = {
                    "site": op.name,
                    "lanes": lanes,
                    "span": spec.input_map.span,
                    "words": timing.words,
                    "pipeline": preset,
                    "cycles_per_inference": (run.end_cycle + 1) / len(x),
                    "passes_per_inference": passes / len(x),
                    "accumulate_cycles": run.accumulate,
                    "lane_ops": run.ops,
                    "accumulate_phase_utilization": util,
                }
                rows.append(row)
                print(
                    f"{op.name:6} {lanes:5} {row['span']:4} {row['words']:4} {preset:6} "
                    f"{row['cycles_per_inference']:10.1f} {row['passes_per_inference']:10.1f} "
                    f"{util:9.4f}"
                )
    worst = min(r["accumulate_phase_utilization"] for r in rows)
    print(f"lowest accumulate-phase utilization: {worst:.4f}")
    path = record(
        "conv_core", {"images": len(x), "rows": rows, "lowest": float(np.round(worst, 6))}
    )
    print(f"recorded {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
