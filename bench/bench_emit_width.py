"""Emitter bandwidth (issue 16 §3): up to ``k`` spikes per beat, side by side with ``k = 1``.

On the digits network (the default QANN, ``sw.qann``; test images back to back), from the exact
cycle models (the Amaranth tests check them against the RTL beat for beat,
``tests/hw/test_emit_width.py``):

* layer 0 alone (analog, input always valid) at ``P`` lanes and ``k`` spikes per beat: cycles per
  inference and overall utilization, with the bound no emitter can pass — the accumulate slots
  over accumulate + sweep + re-initialisation slots (every step sweeps ``W`` words);
* the whole network back to back (``hw.model.network_model``, FIFOs the smallest power of two
  none fills), cycles per inference per lanes, pipeline and ``k``, the receiving core
  taking a beat's events in one shared pass (the design) or one pass each (``serial``).

With ``--pnr``: layer 0's core (``P = 8``, pipeline 1) at each ``k`` (``--pnr-layers 0,1``: also
layer 1 taking the beats, one pass each), synthesised and placed and routed on the ECP5-25k
(one seed each, one at a time): LUT4s and fmax.

    python bench/bench_emit_width.py [--images 100] [--widths 1,2,4] [--pnr [--pnr-layers 0,1]]
                                     [--no-model]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _record import record

from spikezip.hw.model import cycle_model, events
from spikezip.hw.model.design import DesignParams
from spikezip.hw.model.network_model import network_schedule

NETWORK_POINTS = ((8, 1), ((8, 10), 1), ((16, 8), 1), (8, 3), ((8, 4), 3))


def digits():
    from spikezip.sw import convert, digits, qann

    return convert.to_network(qann.load_or_train()), digits.load()


def layer0_rows(net, x, trace, widths, lanes_list=(8, 16)) -> list[dict]:
    ins, outs = events.input_steps(net, x, trace, 0), events.output_steps(trace, 0)
    rows = []
    for lanes in lanes_list:
        for k in widths:
            timing = cycle_model.LayerTiming(n_out=net.layers[0].n_out, lanes=lanes, emit_width=k)
            s = cycle_model.summary(timing, cycle_model.schedule(timing, ins, outs))
            passes = (s.steps + s.inferences) * timing.slots  # sweeps and re-initialisations
            bound = s.accumulate_cycles / (s.accumulate_cycles + passes) * timing.lane_utilization
            rows.append(
                {
                    "lanes": lanes,
                    "k": k,
                    "cycles_per_inference": round(s.cycles_per_inference, 1),
                    "utilization": round(s.utilization, 3),
                    "bound": round(bound, 3),
                }
            )
    return rows


def _exact(net, x, trace, lanes, depth, k, serial):
    """The network schedule with the smallest power-of-two FIFOs no inference fills."""
    params = DesignParams.of(net, lanes=lanes, pipeline=depth, emit_width=k, fifo_depth=1 << 20)
    sched = network_schedule(net, x, trace, params, serial_input=serial)
    need = max(f.need for f in sched.fifos)
    fifo = 1 << max(0, (need - 1).bit_length())
    params = DesignParams.of(net, lanes=lanes, pipeline=depth, emit_width=k, fifo_depth=fifo)
    sched = network_schedule(net, x, trace, params, serial_input=serial)
    assert not sched.backpressure
    return params, sched


def network_rows(net, x, trace, widths) -> list[dict]:
    rows = []
    for lanes, depth in NETWORK_POINTS:
        for k in widths:
            for serial in (False, True) if k > 1 else (False,):
                params, sched = _exact(net, x, trace, lanes, depth, k, serial)
                rows.append(
                    {
                        "lanes": list(params.lanes),
                        "pipeline": depth,
                        "k": k,
                        "receive": "serial" if serial else "one pass" if k > 1 else "-",
                        "fifo_depth": params.fifo_depth,
                        "cycles_per_inference": round(sched.total_cycles / len(x), 1),
                    }
                )
    return rows


def pnr_rows(net, widths, layers=(0,)) -> list[dict]:
    """Layer 0 sends ``k`` spikes per beat; layer 1 takes them, a beat in one pass (its input
    from 8 lanes), both at 8 lanes and pipeline 1: LUT4s and fmax, one seed."""
    from spikezip.hw.cores.layer_core import LayerCore
    from spikezip.hw.flow.synth import ToolError, place_and_route

    rows = []
    for layer in layers:
        for k in widths:
            t0 = time.perf_counter()
            knobs = {"emit_width": k} if layer == 0 else {"input_width": k, "input_lanes": 8}
            core = LayerCore.for_network(net, layer, lanes=8, pipeline=1, **knobs)
            try:
                r = place_and_route(core, target="ecp5", seed=1)
            except ToolError as e:
                rows.append({"layer": layer, "k": k, "error": str(e).splitlines()[0]})
                continue
            rows.append(_pnr_row(layer, k, r, t0))
            print(rows[-1], flush=True)
    return rows


def _pnr_row(layer, k, r, t0) -> dict:
    return {
        "layer": layer,
        "k": k,
        "lut4": r.synth.total.get("lut"),
        "ff": r.synth.total.get("ff"),
        "bram": r.synth.total.get("bram"),
        "fmax_mhz": round(r.fmax_mhz, 1),
        "critical_path": r.critical_path_text.splitlines()[0] if r.critical_path_text else "",
        "seconds": round(time.perf_counter() - t0, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=100)
    ap.add_argument("--widths", default="1,2,4", help="spikes per beat to compare (first: 1)")
    ap.add_argument("--pnr", action="store_true", help="also LUT4s and fmax of layer 0 per k")
    ap.add_argument("--pnr-layers", default="0", help="layers to place and route (0, 1 or 0,1)")
    ap.add_argument("--no-model", action="store_true", help="skip the cycle tables")
    args = ap.parse_args()
    widths = [int(w) for w in args.widths.split(",")]
    from spikezip.sw.reference import simulate

    net, data = digits()
    x = data.x_test[: args.images]
    trace = simulate(net, x)
    print(f"digits {[(ly.n_in, ly.n_out) for ly in net.layers]}, {len(x)} images back to back")
    layers = tuple(int(v) for v in args.pnr_layers.split(","))
    if args.no_model:
        pnr = pnr_rows(net, widths, layers)
        print(f"wrote {record('bench_emit_width_pnr', {'layer_pnr': pnr})}")
        return
    layer0 = layer0_rows(net, x, trace, widths)
    print(f"{'layer 0: P':>10} {'k':>2} {'cyc/inf':>8} {'overall':>7} {'bound':>6}")
    for r in layer0:
        print(
            f"{r['lanes']:>10} {r['k']:>2} {r['cycles_per_inference']:>8} "
            f"{r['utilization']:>7.3f} {r['bound']:>6.3f}"
        )
    network = network_rows(net, x, trace, widths)
    print(
        f"{'network: lanes':>16} {'d':>2} {'k':>2} {'receive':>8} {'fifo':>5} {'cyc/inf':>8} "
        f"{'vs k=1':>6}"
    )
    base = {}
    for r in network:
        key = (tuple(r["lanes"]), r["pipeline"])
        base.setdefault(key, r["cycles_per_inference"])
        r["speedup"] = round(base[key] / r["cycles_per_inference"], 2)
        print(
            f"{','.join(map(str, r['lanes'])):>16} {r['pipeline']:>2} {r['k']:>2} "
            f"{r['receive']:>8} {r['fifo_depth']:>5} {r['cycles_per_inference']:>8} "
            f"{r['speedup']:>6.2f}"
        )
    pnr = pnr_rows(net, widths, layers) if args.pnr else []
    path = record(
        "bench_emit_width",
        {"images": len(x), "layer0": layer0, "network": network, "layer_pnr": pnr},
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
