"""The differential LayerNorm core (issue 12 §3) on the trained digits ViT: resources, fmax and
cycles.

Per LayerNorm site: LUT4, CCU2C, FF, BRAM, DSP of the core alone (and of its residual-stream
stage, ``hw.cores.residual``) (``synth_ecp5`` via
``hw.flow.synth.synthesize``); fmax on ECP5-25k (CABGA381, the 4-pin harness, ``--freq 200``,
registers moved into block RAMs and multipliers, ``hw.flow.place_and_route``); the rounding
unit alone; and, from the exact cycle model on the reference's real stream increments of
``--images`` test images, the cycles per image (back to back) and per evaluated token.

    python bench/bench_layer_norm.py [--images 20] [--sites blocks.0.norm1,norm] [--seed 1]
        [--units U] [--device 25k] [--no-pnr] [--cache build/bench/vit-cache]

``--units``: rounding units per core (default: the ViT's, ``full_rate_units``); ``--device``:
the ECP5 size for place and route (``25k`` or ``85k``, CABGA381).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _record import record

from spikezip.hw.cores.layer_norm import LayerNormCore, Rounding
from spikezip.hw.cores.residual import ResidualCore
from spikezip.hw.flow.synth import place_and_route, synthesize
from spikezip.hw.flow.verilog import generate
from spikezip.hw.model import layer_norm_model as lnm
from spikezip.hw.model import residual_model as rm
from spikezip.sw import digits
from spikezip.sw.vit import model as vit
from spikezip.sw.vit.convert import to_transformer
from spikezip.sw.vit.reference import run


def _resources(component, top: str) -> dict[str, int]:
    r = synthesize(generate(component, top), top, target="ecp5")
    return {k: r.total[k] for k in ("lut", "carry", "ff", "bram", "dsp", "lutram")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=20)
    ap.add_argument("--sites", default="blocks.0.norm1,norm")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--units", type=int, default=None, help="rounding units (default: full rate)")
    ap.add_argument("--device", default="25k", choices=("25k", "45k", "85k"))
    ap.add_argument("--no-pnr", action="store_true", help="skip place and route (fmax)")
    ap.add_argument(
        "--cache",
        default=str(Path(__file__).resolve().parent.parent / "build" / "bench" / "vit-cache"),
        help="model cache directory (trained there deterministically when missing)",
    )
    args = ap.parse_args()
    model = vit.load_or_train(vit.VitConfig(), directory=args.cache)
    net = to_transformer(model, name="digits-vit")
    x = digits.load().x_test[: args.images]
    result = run(net, x, record_drives=True)
    out = {"images": args.images, "units": args.units, "device": args.device, "sites": {}}
    for name in args.sites.split(","):
        core = LayerNormCore.for_site(net, name, units=args.units)
        geo = core.geometry
        j = net.site_names.index(name)
        ins, outs = lnm.reference_steps(result.steps, result.trace.busy, j, name)
        sched = lnm.schedule(geo, ins, outs)
        ends = [inf[-1].marker_cycle for inf in sched]
        per_image = [b - a for a, b in zip([0, *ends[:-1]], ends, strict=True)]
        evaluated = sum(
            geo.tokens + sum(len(set((s.indices // geo.dim).tolist())) for s in inf[1:])
            for inf in ins
        )
        t0 = time.perf_counter()
        res = _resources(core, "layer_norm")
        rounding = Rounding(
            a_width=geo.numerator_width, w_width=geo.w_width, bits=geo.rounding_bits
        )
        rres = _resources(rounding, "rounding")
        row = {
            "tokens": geo.tokens,
            "dim": geo.dim,
            "stream_bound": geo.stream_bound,
            "units": geo.units,
            "rounding_bits": geo.rounding_bits,
            "rounding_latency": rounding.latency,
            "element_cycles": geo.element_cycles,
            "token_cycles": geo.token_cycles,
            "tokens_per_image": evaluated / len(ins),
            "cycles_per_image_mean": statistics.mean(per_image),
            "cycles_per_image_max": max(per_image),
            "resources": res,
            "rounding_resources": rres,
            "synth_seconds": round(time.perf_counter() - t0, 1),
        }
        stage = next(s for s in rm.stages(net) if s["name"] == name)
        residual = ResidualCore(geometry=rm.stage_geometry(net, stage), position=stage["position"])
        row["residual_stage"] = {
            "inputs": ("" if stage["base"] is None else stage["base"] + " + ") + stage["site"],
            "multiplier": stage["multiplier"],
            "resources": _resources(residual, "residual"),
        }
        if not args.no_pnr:
            dev = [f"--{args.device}", "--package", "CABGA381"]
            p = place_and_route(core, target="ecp5", seed=args.seed, device_args=dev)
            row["fmax_mhz"] = round(p.fmax_mhz, 1)
            row["critical_path"] = p.critical_path_text
            row["pnr_seconds"] = round(p.seconds, 1)
        out["sites"][name] = row
        print(name, row, flush=True)
    print("recorded", record("layer_norm", out))


if __name__ == "__main__":
    main()
