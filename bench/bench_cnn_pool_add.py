"""Max-pool and residual merge cores on the digits CNN: cycles per step and per image from the
exact cycle models (docs/cnn.md §11; the Amaranth and cocotb tests check them cycle for cycle),
and with ``--pnr`` each core's place and route on ECP5 (one nextpnr seed).

Loads (or trains into the cache) the default digits CNN (``sw.cnn.model``), converts it, runs the
reference on test images back to back and models the ``pool`` site's max-pool core
(``hw.model.pool_model``) and the ``add`` site's merge core (``hw.model.add_model``; lanes 1, 4,
8, 16, pipeline presets 1 and 3) with every input always valid and the output always ready.
Records ``build/bench/cnn_pool_add.json``.

    nice -n 10 python bench/bench_cnn_pool_add.py [--images 100] [--pnr]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _record import record

from spikezip.hw.model import add_model as am
from spikezip.hw.model import pool_model as pm
from spikezip.hw.model.cycle_model import LayerTiming
from spikezip.ir.cnn import Add, MaxPool2d
from spikezip.sw import digits
from spikezip.sw.cnn import model as cnn
from spikezip.sw.cnn.convert import to_convnet
from spikezip.sw.cnn.reference import simulate


def _pnr(core) -> dict:
    from spikezip.hw.flow.synth import place_and_route

    r = place_and_route(core, seed=1)
    return {
        "fmax_mhz": round(r.fmax_mhz, 1),
        "resources": r.synth.total,
        "utilization": r.utilization,
        "critical_path": r.critical_path_text,
        "seconds": round(r.seconds, 1),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=100)
    ap.add_argument("--pnr", action="store_true", help="place and route each core (slow)")
    args = ap.parse_args()
    net = to_convnet(cnn.load_or_train(cnn.CnnConfig()), name="digits-cnn")
    x = digits.load().x_test[: args.images]
    trace = simulate(net, x)
    out: dict = {"images": len(x)}
    pool = next(k for k, op in enumerate(net.layers) if isinstance(op, MaxPool2d))
    add = next(k for k, op in enumerate(net.layers) if isinstance(op, Add))

    geo = pm.pool_geometry(net, pool)
    ins, outs = pm.pool_streams(net, x, trace, pool)
    run = pm.timed(geo, ins, outs)
    steps = sum(len(inf) for inf in outs)
    out["pool"] = {
        "windows": geo.windows,
        "taps": geo.taps,
        "sweep_cycles": geo.sweep_cycles,
        "clear_cycles": geo.clear_cycles,
        "steps_per_image": steps / len(x),
        "cycles_per_image": (run.end_cycle + 1) / len(x),
        "cycles_per_step": (run.end_cycle + 1) / steps,
    }
    print(
        f"pool: {geo.windows} windows × {geo.taps} taps, sweep {geo.sweep_cycles} cycles, clear "
        f"{geo.clear_cycles}; {steps / len(x):.2f} steps/image, "
        f"{out['pool']['cycles_per_image']:.1f} cycles/image, "
        f"{out['pool']['cycles_per_step']:.1f} cycles/step"
    )
    sources, merged, outs = am.add_streams(net, x, trace, add)
    events = sum(s.n_events for inf in merged for s in inf) / len(x)
    steps = sum(len(inf) for inf in outs)
    rows = []
    for lanes in (1, 4, 8, 16):
        for preset in (1, 3):
            spec = am.add_spec(net, add, lanes=lanes)
            timing = LayerTiming(n_out=spec.n_out, lanes=lanes, pipeline=preset)
            run = am.timed(timing, spec.input_map, sources, outs)
            row = {
                "lanes": lanes,
                "pipeline": preset,
                "words": timing.words,
                "cycles_per_image": (run.end_cycle + 1) / len(x),
                "cycles_per_step": (run.end_cycle + 1) / steps,
            }
            rows.append(row)
            print(
                f"add: lanes {lanes:2} preset {preset}: W {timing.words:3}, "
                f"{row['cycles_per_image']:8.1f} cycles/image, {row['cycles_per_step']:6.1f}/step"
            )
    out["add"] = {"input_events_per_image": events, "steps_per_image": steps / len(x), "rows": rows}
    print(f"add: {events:.1f} input events/image, {steps / len(x):.2f} steps/image")
    if args.pnr:
        from spikezip.hw.cores.add import AddCore
        from spikezip.hw.cores.max_pool import MaxPoolCore

        out["pool"]["pnr"] = p = _pnr(MaxPoolCore(geo))
        print(f"pool: {p['fmax_mhz']} MHz, {p['resources']}, {p['critical_path']}")
        for lanes, preset in ((8, 1),):
            core = AddCore(
                site=am.add_spec(net, add, lanes=lanes),
                formats=am.source_formats(net, add),
                pipeline=preset,
            )
            out["add"][f"pnr_lanes{lanes}_p{preset}"] = p = _pnr(core)
            print(f"add lanes {lanes} preset {preset}: {p['fmax_mhz']} MHz, {p['resources']}, "
                  f"{p['critical_path']}")  # fmt: skip
    path = record("cnn_pool_add", out)
    print(f"recorded {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
