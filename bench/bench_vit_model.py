"""The digits ViT's cycles from the exact model of the whole top (``hw.model.vit_model``), and
which core sets the pace.

    python bench/bench_vit_model.py [--images N] [--lanes P] [--pipeline D]
                                    [--layer-norm-units U] [--fifo-depth F] [--chain]
                                    [--graded [--max-level K]] [--compare-streaming]

Loads the cached default :class:`sw.vit.model.VitConfig` model, runs the reference on the first
``N`` digits test images (default 3) and models ``ViTCore`` running them back to back (lanes
``P``, default 8; pipeline preset 1; product lanes = tokens; FIFOs one step deep unless
``--fifo-depth``): total cycles, each image's latency, the model's passes and time, the FIFOs
that made their producers wait, and per core its busy cycles per image, busy fraction and (site
cores and products) accumulate-phase lane utilization. ``--chain``: also the first image's step-0
wavefront, the critical-path view of the latency — per core in the order its step-0 marker
leaves, the cycle it took its first input, emitted its first event and its marker, and what it
added to the chain. ``--graded``: every site graded ST-BIF (K unbounded, or ``--max-level K``;
docs/graded.md), recorded as ``vit_model_graded.json`` (``vit_model_graded_kK.json``).
``--compare-streaming``: the same images with plain cores, with streaming site cores only, with
streaming LayerNorms too, and as built (the residual stages streaming too), each with the cycle
its head's step-0 marker leaves. Records ``build/bench/vit_model.json``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _record import record

from spikezip.hw.model.vit_model import vit_schedule
from spikezip.sw import digits
from spikezip.sw.vit import model as vit
from spikezip.sw.vit.convert import to_transformer
from spikezip.sw.vit.reference import run


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=3)
    ap.add_argument("--lanes", type=int, default=8)
    ap.add_argument("--pipeline", type=int, default=1, choices=(0, 1, 2, 3))
    ap.add_argument("--layer-norm-units", type=int, default=None)
    ap.add_argument("--fifo-depth", type=int, default=None)
    ap.add_argument("--chain", action="store_true", help="print the step-0 wavefront (image 0)")
    ap.add_argument("--graded", action="store_true", help="graded ST-BIF sites (issue 14)")
    ap.add_argument("--max-level", type=int, default=None, help="graded: the largest level K")
    ap.add_argument(
        "--compare-streaming",
        action="store_true",
        help="also model the top with plain cores and each streaming kind switched on in turn",
    )
    args = ap.parse_args()
    if args.max_level is not None and not args.graded:
        ap.error("--max-level applies to --graded only")
    net = to_transformer(vit.load_or_train(vit.VitConfig()), name="digits-vit")
    if args.graded:
        net = net.with_neuron("graded", args.max_level)
    x = digits.load().x_test[: args.images]
    trace = run(net, x).trace
    t0 = time.perf_counter()
    sched = vit_schedule(
        net,
        x,
        trace,
        lanes=args.lanes,
        pipeline=args.pipeline,
        fifo_depth=args.fifo_depth,
        layer_norm_units=args.layer_norm_units,
    )
    model_s = time.perf_counter() - t0
    n = len(x)
    loads = sorted(sched.loads, key=lambda ld: -ld.work)
    neuron = "ST-BIF"
    if args.graded:
        neuron = "graded, K = " + ("∞" if args.max_level is None else str(args.max_level))
    print(
        f"digits ViT ({net.digest()[:12]}; {neuron}), {n} images back to back, lanes {args.lanes}, "
        f"pipeline {args.pipeline}, LayerNorm units {args.layer_norm_units or 'default'}"
    )
    print(
        f"  total {sched.total_cycles:,} cycles ({sched.total_cycles / n:,.0f} per image); "
        f"latency per image {', '.join(f'{v:,}' for v in sched.latency.tolist())}"
    )
    print(f"  steps {trace.steps.tolist()}; model {model_s:.1f} s, {sched.passes} passes")
    waited = [f for f in sched.fifos if f.waited]
    print(
        f"  FIFOs that made their producer wait: {len(waited)} of {len(sched.fifos)}; deepest "
        f"needed without backpressure {max(f.need for f in sched.fifos):,} entries"
    )
    print()
    print(f"  {'core':28s} {'kind':9s} {'busy/image':>10s} {'busy':>6s} {'acc. util':>9s}")
    for ld in loads:
        util = f"{ld.accumulate_utilization:9.3f}" if ld.kind in ("linear", "product") else ""
        print(f"  {ld.name:28s} {ld.kind:9s} {ld.work / n:10,.0f} {ld.busy_fraction:6.3f} {util}")
    top = loads[0]
    print(f"\n  pace-setter: {top.name} ({top.kind}), {top.work / n:,.0f} busy cycles per image")
    chain = step0_chain(sched)
    if args.chain:
        print("\n  step-0 wavefront of image 0 (cycles from reset; 'adds': marker after the one")
        print("  before it in this order; 'own': marker after the core's first input)")
        print(f"  {'core':28s} {'in':>7s} {'first out':>9s} {'events':>6s} {'marker':>7s} "
              f"{'adds':>6s} {'own':>6s}")  # fmt: skip
        prev = 0
        for row in chain:
            print(
                f"  {row['core']:28s} {row['first_in']:7d} {row['first_out']:9d} "
                f"{row['events']:6d} {row['marker']:7d} {row['marker'] - prev:6d} "
                f"{row['marker'] - row['first_in']:6d}"
            )
            prev = row["marker"]
    results = {
        "digest": net.digest(),
        "neuron": neuron,
        "images": n,
        "lanes": args.lanes,
        "pipeline": args.pipeline,
        "layer_norm_units": args.layer_norm_units,
        "fifo_depth": args.fifo_depth,
        "total_cycles": sched.total_cycles,
        "latency": sched.latency.tolist(),
        "first_input": sched.first_input.tolist(),
        "passes": sched.passes,
        "model_s": round(model_s, 1),
        "fifos_waited": {f.name: f.waited for f in waited},
        "step0_chain": chain,
        "loads": [
            {
                "core": ld.name,
                "kind": ld.kind,
                "busy_per_image": round(ld.work / n),
                "busy_fraction": round(ld.busy_fraction, 4),
                "accumulate_utilization": round(ld.accumulate_utilization, 4),
            }
            for ld in loads
        ],
    }
    name = "vit_model"
    if args.graded:
        name += "_graded" + ("" if args.max_level is None else f"_k{args.max_level}")
    if args.compare_streaming:
        results["streaming"] = compare_streaming(net, x, trace, args, sched)
    print(f"recorded {record(name, results)}")
    return 0


def compare_streaming(net, x, trace, args, sched) -> list[dict]:
    """The same run with every core plain (a core emits a step after its marker), with only the
    site cores streaming (``vit_sites.STREAMING_KINDS``), with the LayerNorms too
    (``STREAM_LAYER_NORM``) and as built (the residual stages too, ``STREAM_RESIDUAL``: the
    design's choices, switched off here for the comparison); prints and returns the rows."""
    from spikezip.hw.model import vit_sites

    n = len(x)
    kinds, ln = vit_sites.STREAMING_KINDS, vit_sites.STREAM_LAYER_NORM
    res = vit_sites.STREAM_RESIDUAL
    rows = []
    try:
        for label, k, s_ln, s_res in (
            ("plain cores", frozenset(), False, False),
            ("streaming site cores", kinds, False, False),
            ("+ streaming LayerNorms", kinds, ln, False),
            ("+ streaming residual stages (the design)", kinds, ln, res),
        ):
            vit_sites.STREAMING_KINDS, vit_sites.STREAM_LAYER_NORM = k, s_ln
            vit_sites.STREAM_RESIDUAL = s_res
            t0 = time.perf_counter()
            got = sched if (k, s_ln, s_res) == (kinds, ln, res) else vit_schedule(
                net, x, trace, lanes=args.lanes, pipeline=args.pipeline,
                fifo_depth=args.fifo_depth, layer_norm_units=args.layer_norm_units,
            )  # fmt: skip
            chain = step0_chain(got)
            rows.append(
                {
                    "cores": label,
                    "total_cycles": got.total_cycles,
                    "cycles_per_image": round(got.total_cycles / n),
                    "latency_first": int(got.latency[0]),
                    "latency_mean": round(float(got.latency.mean())),
                    "head_step0_marker": next(r["marker"] for r in chain if r["core"] == "head"),
                    "model_s": round(time.perf_counter() - t0, 1),
                }
            )
    finally:
        vit_sites.STREAMING_KINDS, vit_sites.STREAM_LAYER_NORM = kinds, ln
        vit_sites.STREAM_RESIDUAL = res
    print(
        f"\n  {'cores':42s} {'per image':>9s} {'latency 1st':>11s} {'mean latency':>12s} "
        f"{'head step 0':>11s}"
    )
    for r in rows:
        print(
            f"  {r['cores']:42s} {r['cycles_per_image']:9,} {r['latency_first']:11,} "
            f"{r['latency_mean']:12,} {r['head_step0_marker']:11,}"
        )
    return rows


def step0_chain(sched) -> list[dict]:
    """Every core's step 0 of the first inference, in the order its marker leaves: the cycle it
    took its first input beat, offered its first event (-1: none) and sent its marker."""
    rows = []
    for name, core in list(sched.sites.items()) + list(sched.cores.items()):
        events, marker = core.beats[0][0]
        rows.append(
            {
                "core": name,
                "first_in": min((t[0] for t in core.taken if t), default=-1),
                "first_out": min(events) if events else -1,
                "events": len(events),
                "marker": marker,
            }
        )
    return sorted(rows, key=lambda r: r["marker"])


if __name__ == "__main__":
    raise SystemExit(main())
