"""The inter-layer FIFO depth of the digits MLP: block RAM and LUTs against cycles per image.

For each depth from 1 (the smallest ``RegisteredFIFO`` takes) up to the report's default (the
smallest power of two no inference fills alone), and the depth with which no FIFO fills back to
back: cycles per image from the exact network model (:mod:`hw.model.network_model`, exact at any
depth): back to back over ``--images`` test images (mean and max of the intervals between
consecutive ``done``), and one image at a time from reset (what ``spikezip report`` shows); the
cycles the producer waited for room; and the FIFO's resources from one ECP5 synthesis of the
whole network with the FIFO kept as its own module. ``--rtl`` depths are also simulated on
Verilator, back to back, and their cycles compared with the model's (they must be equal).

    python bench/bench_fifo_depth.py [--images 100] [--lanes 8] [--rtl 1,DEFAULT]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _record import record

from spikezip.hw.cores.network_core import NetworkCore
from spikezip.hw.flow.synth import synthesize
from spikezip.hw.flow.verilog import generate
from spikezip.hw.model.design import DesignParams
from spikezip.hw.model.network_model import network_schedule
from spikezip.report import Resources, model_latency
from spikezip.sim.simulate import design, simulate
from spikezip.sw import digits, qann
from spikezip.sw.convert import to_network
from spikezip.sw.reference import simulate as reference


def _fifo_resources(network, params: DesignParams) -> tuple[Resources, Resources, float]:
    """ECP5 synthesis of the whole network: the FIFOs (summed) and the total."""
    top = NetworkCore(network=network, params=params)
    fifos = [f"spikezip_net.fifo{k}" for k in range(network.depth - 1)]
    t0 = time.perf_counter()
    r = synthesize(generate(top, "spikezip_net"), "spikezip_net", target="ecp5", keep=fifos)
    seconds = time.perf_counter() - t0
    parts = [Resources.from_json(r.modules[n]) for n in fifos]
    summed = Resources(
        **{f: sum(getattr(p, f) for p in parts) for f in ("lut", "carry", "ff", "bram", "lutram")}
    )
    return summed, Resources.from_json(r.total), seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=100)
    ap.add_argument("--lanes", type=int, default=8)
    ap.add_argument(
        "--rtl",
        default="1,default",
        help="depths to simulate on Verilator as well (comma-separated; 'default', 'none')",
    )
    ap.add_argument("--no-synth", action="store_true", help="cycles only")
    args = ap.parse_args()
    network = to_network(qann.load_or_train(qann.QannConfig()), name="digits")
    x = digits.load().x_test[: args.images]
    trace = reference(network, x)
    base = DesignParams.of(network, lanes=args.lanes)
    alone = model_latency(network, x, trace, base)
    default = alone.fifo_depth
    b2b = network_schedule(network, x, trace, lanes=args.lanes, fifo_depth=default)
    b2b_need = max(b2b.fifo_peak)
    depths = [1 << k for k in range(default.bit_length()) if 1 << k <= default]
    if b2b_need > default:
        depths.append(1 << (b2b_need - 1).bit_length())
    rtl = set()
    for item in args.rtl.split(","):
        if item == "default":
            rtl.add(default)
        elif item != "none":
            rtl.add(int(item))
    print(
        f"digits {network.n_inputs}-{'-'.join(str(layer.n_out) for layer in network.layers)}, "
        f"P={args.lanes}, pipeline 1, {len(x)} test images; the report's default depth {default} "
        f"(no inference fills it alone: need {alone.fifo_peak}); back to back need {b2b_need}"
    )
    print(
        "depth | b2b cycles/image mean / max | alone mean / max | producer waited | passes | "
        "FIFO LUT4 / FF / BRAM / LUTRAM | total LUT4 / BRAM | RTL"
    )
    rows = []
    root = Path(tempfile.mkdtemp(prefix="bench-fifo-depth-"))
    for depth in depths:
        params = DesignParams.of(network, lanes=args.lanes, fifo_depth=depth)
        t0 = time.perf_counter()
        s = network_schedule(network, x, trace, params)
        model_seconds = time.perf_counter() - t0
        interval = np.diff(np.concatenate([[-1], s.done]))
        lat = model_latency(network, x, trace, base, fifo_depth=depth)
        row = {
            "depth": depth,
            "b2b_cycles_per_image_mean": round(s.total_cycles / len(x), 1),
            "b2b_cycles_per_image_max": int(interval.max()),
            "alone_cycles_mean": lat.cycles_mean,
            "alone_cycles_max": lat.cycles_max,
            "producer_waited_cycles": sum(f.waited for f in s.fifos),
            "passes": s.passes,
            "model_seconds": round(model_seconds, 2),
        }
        if not args.no_synth:
            fifo, total, secs = _fifo_resources(network, params)
            row |= {
                "fifo_lut4": fifo.lut4("ecp5"),
                "fifo_ff": fifo.ff,
                "fifo_bram": fifo.bram,
                "fifo_lutram": fifo.lutram,
                "total_lut4": total.lut4("ecp5"),
                "total_bram": total.bram,
                "synth_seconds": round(secs, 1),
            }
        if depth in rtl:
            run = simulate(network, x, sim="verilator", design_dir=design(network, root, params))
            row["rtl_total_cycles"] = run.total_cycles
            row["rtl_equals_model"] = bool(
                np.array_equal(run.done, s.done) and np.array_equal(run.first_input, s.first_input)
            )
            if not row["rtl_equals_model"]:
                raise SystemExit(f"depth {depth}: the RTL's done cycles differ from the model's")
        rows.append(row)
        res = (
            f"{row['fifo_lut4']} / {row['fifo_ff']} / {row['fifo_bram']} / {row['fifo_lutram']} | "
            f"{row['total_lut4']} / {row['total_bram']}"
            if "fifo_lut4" in row
            else "- | -"
        )
        check = ("= model" if row["rtl_equals_model"] else "DIFFERS") if depth in rtl else "-"
        print(
            f"{depth} | {row['b2b_cycles_per_image_mean']} / {row['b2b_cycles_per_image_max']} | "
            f"{row['alone_cycles_mean']:.1f} / {row['alone_cycles_max']} | "
            f"{row['producer_waited_cycles']} | {row['passes']} | {res} | {check}",
            flush=True,
        )
    path = record(
        "bench_fifo_depth",
        {
            "network": "digits",
            "lanes": args.lanes,
            "images": len(x),
            "default_depth": default,
            "alone_need": alone.fifo_peak,
            "back_to_back_need": b2b_need,
            "rows": rows,
        },
    )
    print(f"recorded {path}")


if __name__ == "__main__":
    main()
