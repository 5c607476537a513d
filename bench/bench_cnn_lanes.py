"""Lanes per site of the digits CNN: per-core accumulate-phase utilization, cycles per image and
block RAMs from the exact model (docs/performance.md, "Session 17: balanced lanes").

Loads (or trains into the cache) the default digits CNN (``sw.cnn.model``), converts it, and for
each lane vector (one value per site: conv1, conv2, conv3, conv4, add, pool, fc) models the
whole ``CnnCore`` (``hw.model.cnn_model.cnn_schedule``, the default FIFO plan): the first
``--images`` test images back to back (cycles per image, every core's ``CoreLoad``, the conv
cores' ops-weighted utilization as ``spikezip report`` gives it) and each alone (mean and max),
plus the DP16KD estimate of the elaborated design (``hw.flow.memories``). ``balanced`` and
``balanced=N`` rows are ``spikezip report --lanes balanced[=N]``'s choice
(``hw.model.cnn_model.balanced`` on the same images). Records ``build/bench/cnn_lanes.json``.

    nice -n 10 python bench/bench_cnn_lanes.py [--images 20] [--lanes 8,8,16,16,8,1,8 ...]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _record import record

from spikezip.hw.cores.cnn_core import CnnCore
from spikezip.hw.flow.memories import memories
from spikezip.hw.model.cnn_model import balanced, cnn_schedule
from spikezip.hw.model.design import DesignParams
from spikezip.sw import digits
from spikezip.sw.cnn import model as cnn
from spikezip.sw.cnn.convert import to_convnet
from spikezip.sw.cnn.reference import simulate

#: session 16's plain lanes 8, its hand-balanced 8,8,16,16,8,1,8, fewer lanes where the work is
#: small, the balanced choices, and faster points (conv3 and conv4 at 32)
DEFAULT = (
    "8",
    "8,8,16,16,8,1,8",
    "4,8,16,16,4,1,8",
    "4,8,16,16,4,1,2",
    "balanced",
    "balanced=64",
    "8,8,32,16,8,1,8",
    "8,16,32,32,8,1,8",
)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=20)
    ap.add_argument("--lanes", nargs="*", default=list(DEFAULT), help="lane vectors to model")
    args = ap.parse_args()
    net = to_convnet(cnn.load_or_train(cnn.CnnConfig()), name="digits-cnn")
    x = digits.load().x_test[: args.images]
    trace = simulate(net, x)
    rows = []
    for text in args.lanes:
        t0 = time.perf_counter()
        name, _, budget = text.partition("=")
        if name == "balanced":
            lanes = balanced(net, x, trace, budget=int(budget) if budget else None)
        else:
            values = tuple(int(v) for v in text.split(","))
            lanes = values[0] if len(values) == 1 else values
        params = DesignParams.of(net, lanes=lanes, pipeline=1)
        run = cnn_schedule(net, x, trace, params)
        alone = [
            int(cnn_schedule(net, x[b : b + 1], trace.select([b]), params).latency[0])
            for b in range(len(x))
        ]
        conv = [ld for ld in run.loads if ld.kind == "conv"]
        util = sum(ld.ops for ld in conv) / sum(ld.lanes * ld.accumulate for ld in conv)
        row = {
            "given": text,
            "lanes": list(params.lanes),
            "back_to_back_cycles": run.total_cycles / len(x),
            "alone_mean": float(np.mean(alone)),
            "alone_max": max(alone),
            "conv_utilization": util,
            "per_core": {
                ld.name: round(ld.accumulate_utilization, 4) for ld in run.loads if ld.lanes
            },
            "busy": {ld.name: round(ld.busy_fraction, 4) for ld in run.loads},
            "dp16kd": sum(m.dp16kd for m in memories(CnnCore(net=net, params=params))),
            "seconds": round(time.perf_counter() - t0, 1),
        }
        rows.append(row)
        per = " ".join(f"{k} {v:.1%}" for k, v in row["per_core"].items())
        print(
            f"{text:>17} → {','.join(map(str, params.lanes)):>18}: back to back "
            f"{row['back_to_back_cycles']:8.0f}, alone {row['alone_mean']:8.0f} mean "
            f"{row['alone_max']:6} max, conv {util:.1%} ({per}), {row['dp16kd']} DP16KD",
            flush=True,
        )
    path = record("cnn_lanes", {"images": len(x), "rows": rows})
    print(f"recorded {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
