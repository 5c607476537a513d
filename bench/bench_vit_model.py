"""The digits ViT's cycles from the exact model of the whole top (``hw.model.vit_model``), and
which core sets the pace.

    python bench/bench_vit_model.py [--images N] [--lanes P] [--pipeline D]
                                    [--layer-norm-units U] [--fifo-depth F]

Loads the cached default :class:`sw.vit.model.VitConfig` model, runs the reference on the first
``N`` digits test images (default 3) and models ``ViTCore`` running them back to back (lanes
``P``, default 8; pipeline preset 1; product lanes = tokens; FIFOs one step deep unless
``--fifo-depth``): total cycles, each image's latency, the model's passes and time, the FIFOs
that made their producers wait, and per core its busy cycles per image, busy fraction and (site
cores and products) accumulate-phase lane utilization. Records ``build/bench/vit_model.json``.
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
    args = ap.parse_args()
    net = to_transformer(vit.load_or_train(vit.VitConfig()), name="digits-vit")
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
    print(
        f"digits ViT ({net.digest()[:12]}), {n} images back to back, lanes {args.lanes}, "
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
    results = {
        "digest": net.digest(),
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
    print(f"recorded {record('vit_model', results)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
