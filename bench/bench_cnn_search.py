"""``--lanes balanced[=N]``'s search (``hw.model.cnn_search.search_design``) on the digits CNN:
what it chooses, by which numbers, how many exact model runs and how long (docs/performance.md,
"Session 18: balanced lanes that find the 95 % design").

For each ``--channels`` configuration (default: the default digits CNN) and each ``--budget``
(default: the search's own, the lanes of ``--lanes 8``) the search on the first ``--images`` test
images back to back; beside it, for comparison, session 18's hand design (lanes
6,3,12,12,4,1,5 and three FIFOs) when it fits the channels. Records
``build/bench/cnn_search.json``.

    nice -n 10 python bench/bench_cnn_search.py [--channels 12,24,36 8,24,48] [--budget 64]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _record import record

from spikezip.hw.model.cnn_model import cnn_schedule
from spikezip.hw.model.cnn_search import conv_utilization, search_design
from spikezip.hw.model.design import DesignParams
from spikezip.sw import digits
from spikezip.sw.cnn import model as cnn
from spikezip.sw.cnn.convert import to_convnet
from spikezip.sw.cnn.reference import simulate

#: session 18's hand design of the default (12, 24, 36) CNN (docs/cnn.md §14)
HAND = ((6, 3, 12, 12, 4, 1, 5), (("conv2_fifo0", 256), ("conv2_fifo1", 512), ("conv3_fifo", 512)))


def _channels(text: str) -> tuple[int, ...]:
    return cnn.CnnConfig(channels=tuple(int(v) for v in text.split(","))).channels


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=20)
    ap.add_argument("--channels", nargs="*", type=_channels, default=[cnn.CnnConfig().channels])
    ap.add_argument("--budget", nargs="*", type=int, default=[None])
    args = ap.parse_args()
    x = digits.load().x_test[: args.images]
    rows = []
    for channels in args.channels:
        net = to_convnet(cnn.load_or_train(cnn.CnnConfig(channels=channels)), name="digits-cnn")
        trace = simulate(net, x)
        for budget in args.budget:
            t0 = time.perf_counter()
            found = search_design(net, x, trace, budget=budget)
            seconds = time.perf_counter() - t0
            row = {
                "channels": list(cnn.CnnConfig(channels=channels).conv_channels),
                "budget": budget,
                "lanes": list(found.lanes),
                "lane_total": found.lane_total,
                "fifo_depths": dict(found.fifo_depths),
                "cycles_per_image": found.cycles,
                "conv_utilization": found.utilization,
                "search_cycles": found.search_cycles,
                "search_utilization": found.search_utilization,
                "runs": found.runs,
                "candidates": found.candidates,
                "seconds": round(seconds, 1),
            }
            print(f"{channels} budget {budget}: {found.summary()}, {seconds:.1f} s", flush=True)
            try:
                params = DesignParams.of(net, lanes=HAND[0], fifo_depths=HAND[1])
            except ValueError:
                params = None
            if params is not None:
                run = cnn_schedule(net, x, trace, params)
                row["hand"] = {
                    "cycles_per_image": run.total_cycles / len(x),
                    "conv_utilization": conv_utilization(run),
                }
                print(
                    f"  hand 6,3,12,12,4,1,5: {run.total_cycles / len(x):,.0f} cycles, "
                    f"{100 * conv_utilization(run):.1f} %",
                    flush=True,
                )
            rows.append(row)
    path = record("cnn_search", {"images": len(x), "rows": rows})
    print(f"recorded {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
