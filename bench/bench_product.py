"""Spike-product core (``hw.cores.product``) on the trained digits ViT: lanes, cycles, resources.

Loads (or trains into the cache) the default digits ViT (``sw.vit.model``), runs the reference
(``sw.vit.reference.simulate``) on test images and, per block, product (``scores`` = ``multi``,
``context`` = ``multi1``) and lane count, computes the exact schedule of the core
(``hw.model.product_model``; the tests check it cycle for cycle): cycles, accumulate-phase
cycles and lane utilization. Then synthesises block 0's two cores for ECP5-25k in the 4-pin
harness and places and routes them (``hw.flow.synth.place_and_route``): LUT4, FF, BRAM, DSP,
fmax (per nextpnr seed, and the median of the seeds). Prints tables and writes
``build/bench/product.json`` (``product_graded.json`` with ``--graded``: every site graded
ST-BIF, docs/graded.md).

    python bench/bench_product.py [--images 100] [--lanes 1,6,9,17] [--pnr-lanes 17] [--no-pnr]
                                  [--no-schedule] [--kinds scores,context] [--seeds 1,2,3]
                                  [--graded [--max-level K]]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _record import record

from spikezip.hw.model.product_model import ProductGeometry, product_summary, trace_inferences


def digits_vit(graded: bool = False, max_level: int | None = None):
    from spikezip.sw import digits
    from spikezip.sw.vit import model as vit
    from spikezip.sw.vit.convert import to_transformer

    net = to_transformer(vit.load_or_train(vit.VitConfig()), name="digits-vit")
    if graded:
        net = net.with_neuron("graded", max_level)
    return net, digits.load()


def inferences(net, trace, block: int, kind: str, geo: ProductGeometry):
    names = net.site_names
    a, b = ("q", "k") if kind == "scores" else ("attn", "v")
    kx, ky = (names.index(f"blocks.{block}.{s}") for s in (a, b))
    n = trace.n_steps
    return trace_inferences(
        geo,
        trace.spikes[kx].reshape(trace.batch, n, -1),
        trace.spikes[ky].reshape(trace.batch, n, -1),
        trace.busy[:, :, kx],
        trace.busy[:, :, ky],
        trace.steps,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=100)
    ap.add_argument("--lanes", default="1,4,6,8,9,16,17")
    ap.add_argument("--pnr-lanes", default="17")
    ap.add_argument("--no-pnr", action="store_true")
    ap.add_argument("--no-schedule", action="store_true", help="place and route only")
    ap.add_argument("--kinds", default="scores,context", help="products placed and routed")
    ap.add_argument("--seeds", default="1", help="nextpnr seeds (the median is reported)")
    ap.add_argument("--graded", action="store_true", help="graded ST-BIF sites (issue 14)")
    ap.add_argument("--max-level", type=int, default=None, help="graded: the largest level K")
    args = ap.parse_args()
    if args.max_level is not None and not args.graded:
        ap.error("--max-level applies to --graded only")
    from spikezip.sw.vit.reference import simulate

    net, data = digits_vit(args.graded, args.max_level)
    x = data.x_test[: args.images]
    trace = None if args.no_schedule else simulate(net, x)
    rows = []
    for block in range(len(net.blocks) if trace is not None else 0):
        for kind in ("scores", "context"):
            for lanes in (int(v) for v in args.lanes.split(",")):
                geo = ProductGeometry.for_block(net, block, kind, lanes=lanes)
                s = product_summary(geo, inferences(net, trace, block, kind, geo))
                rows.append({"block": block, "kind": kind, "lanes": lanes, **s})
                print(
                    f"blocks.{block} {kind:7s} P={lanes:2d}: {s['cycles'] / len(x):8.0f} "
                    f"cycles/image, accumulate {s['accumulate_cycles'] / len(x):7.0f}, "
                    f"lanes busy {100 * s['lane_utilization']:5.1f} % of word operations, "
                    f"{100 * s['accumulate_utilization']:5.1f} % of the accumulate phase",
                    flush=True,
                )
    results = {"images": len(x), "schedule": rows, "pnr": []}
    if not args.no_pnr:
        from spikezip.hw.cores.product import SpikeProduct
        from spikezip.hw.flow.synth import place_and_route_seeds

        seeds = [int(v) for v in args.seeds.split(",")]
        for kind in args.kinds.split(","):
            for lanes in (int(v) for v in args.pnr_lanes.split(",")):
                geo = ProductGeometry.for_block(net, 0, kind, lanes=lanes)
                fmax = []
                t0 = time.perf_counter()
                runs = place_and_route_seeds(SpikeProduct(geo=geo), target="ecp5", seeds=seeds)
                for seed, r in zip(seeds, runs, strict=True):
                    row = {
                        "kind": kind,
                        "lanes": lanes,
                        "seed": seed,
                        "fmax_mhz": round(r.fmax_mhz, 1),
                        "resources": dict(r.synth.total),
                        "utilization": r.utilization,
                        "critical_path": r.critical_path_text,
                        "synth_seconds": round(r.synth.seconds, 1),
                        "pnr_seconds": round(r.seconds, 1),
                    }
                    results["pnr"].append(row)
                    fmax.append(r.fmax_mhz)
                    print(f"blocks.0 {kind} P={lanes} seed {seed}: {row}", flush=True)
                print(f"  ({time.perf_counter() - t0:.0f} s)", flush=True)
                med = round(statistics.median(fmax), 1)
                results.setdefault("pnr_median", []).append(
                    {"kind": kind, "lanes": lanes, "seeds": seeds, "fmax_mhz": med}
                )
                print(f"blocks.0 {kind} P={lanes}: fmax median {med} MHz of seeds {seeds} "
                      f"({', '.join(f'{f:.1f}' for f in fmax)})", flush=True)  # fmt: skip
    print(record("product_graded" if args.graded else "product", results))


if __name__ == "__main__":
    main()
