"""Lanes per site and channels of the digits CNN: per-core accumulate-phase utilization, cycles
per image and block RAMs from the exact model (docs/performance.md, "Session 17: balanced lanes"
and "Session 18: a hardware-aware CNN").

For each ``--channels`` configuration (``sw.cnn.model.CnnConfig.channels``; default the
default digits CNN) loads or trains the CNN into the cache, converts it, checks the integer QANN
accuracy and SNN == QANN on all 450 test images, and for each lane vector (one value per site:
conv1, conv2, conv3, conv4, add, pool, fc) models the whole ``CnnCore``
(``hw.model.cnn_model.cnn_schedule``): the first ``--images`` test images back to back (cycles
per image, every core's ``CoreLoad``, the conv cores' ops-weighted utilization as ``spikezip
report`` gives it) and, with ``--alone``, each alone (mean and max), plus the DP16KD estimate of
the elaborated design (``hw.flow.memories``). ``balanced`` and ``balanced=N`` rows are ``spikezip
report --lanes balanced[=N]``'s lanes (``hw.model.cnn_search``) under the ``--fifo`` plans (the
search's own FIFO plan is what ``report`` then prints).

FIFO plans (``--fifo``; ``--fifo-depths NAME=N,…`` adds one): ``default``
(``conv_sites.default_fifo_depths``), ``auto`` (each FIFO whose need — the model's
``FifoCheck.need`` with every FIFO 65,536 deep — is at most ``AUTO_MAX`` entries gets the power of
two ≥ its need; a FIFO that needs more feeds a core slower than its producer over the whole run
and keeps its default: it fills whatever its depth), or both.

``--search``: per configuration, the work of every site (lane-cycles, ``site_work``, at lanes 8
without backpressure), then every conv2/conv3/conv4 lane vector of divisors of their channels
whose predicted ops-weighted utilization ``Σ W / (T · Σ P)`` (``T = max W/P``, the bottleneck)
is at least ``--min-balance`` and whose ``T`` is at most ``--max-cycles`` per image; conv1, add
and fc take the fewest lanes (a divisor) with ``W/P ≤ T/2``. The ``--top`` with the fewest lanes
are modelled exactly. Records ``build/bench/cnn_lanes.json`` (``cnn_lanes_search.json`` with
``--search``).

    nice -n 10 python bench/bench_cnn_lanes.py [--images 20] [--lanes 8,8,16,16,8,1,8 ...]
    nice -n 10 python bench/bench_cnn_lanes.py --search --channels 16,32 12,24,36 8,24,48 \\
        --fifo both --top 1 --max-cycles 26000
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _record import record

from spikezip.hw.cores.cnn_core import CnnCore
from spikezip.hw.flow.memories import memories
from spikezip.hw.model import conv_sites
from spikezip.hw.model.cnn_model import cnn_schedule, site_work
from spikezip.hw.model.cnn_search import conv_utilization, search_design
from spikezip.hw.model.design import DesignParams
from spikezip.sw import digits
from spikezip.sw.cnn import model as cnn
from spikezip.sw.cnn.convert import to_convnet
from spikezip.sw.cnn.reference import integer_qann, simulate

#: session 16's plain lanes 8, its hand-balanced 8,8,16,16,8,1,8, fewer lanes where the work is
#: small, the balanced choices, and faster points (conv3 and conv4 at 32) — for (16, 32) channels;
#: session 18's recommended 6,3,12,12,4,1,5 for the default (12, 24, 36) (a vector that does not
#: divide a configuration's channels is skipped)
DEFAULT = (
    "8",
    "6,3,12,12,4,1,5",
    "8,8,16,16,8,1,8",
    "4,8,16,16,4,1,8",
    "4,8,16,16,4,1,2",
    "balanced",
    "balanced=64",
    "8,8,32,16,8,1,8",
    "8,16,32,32,8,1,8",
)
#: FIFOs deep enough that none fills (the work and the needs without backpressure)
DEEP = 1 << 16
#: the deepest FIFO the ``auto`` plan sets
AUTO_MAX = 1024


def _channels(text: str) -> tuple[int, ...]:
    return cnn.CnnConfig(channels=tuple(int(v) for v in text.split(","))).channels


def auto_fifos(net, x, trace, lanes) -> tuple[tuple[str, int], ...]:
    """The ``auto`` FIFO plan (module docstring) for ``lanes``."""
    run = cnn_schedule(net, x, trace, DesignParams.of(net, lanes=lanes, fifo_depth=DEEP))
    default = conv_sites.default_fifo_depths(net)
    out = []
    for f in run.fifos:
        if f.need <= AUTO_MAX:
            depth = max(default[f.name], 1 << max(f.need - 1, 0).bit_length())
            if depth != default[f.name]:
                out.append((f.name, depth))
    return tuple(out)


def model_row(net, x, trace, lanes, fifo_depths, *, alone: bool) -> dict:
    """One lane vector and FIFO plan: the exact model's numbers (module docstring)."""
    t0 = time.perf_counter()
    params = DesignParams.of(net, lanes=lanes, pipeline=1, fifo_depths=fifo_depths)
    run = cnn_schedule(net, x, trace, params)
    row = {
        "lanes": list(params.lanes),
        "lanes_total": sum(
            p for s, p in zip(net.sites, params.lanes, strict=True) if s.kind != "maxpool2d"
        ),
        "fifo_depths": dict(fifo_depths),
        "back_to_back_cycles": run.total_cycles / len(x),
        "conv_utilization": conv_utilization(run),
        "per_core": {ld.name: round(ld.accumulate_utilization, 4) for ld in run.loads if ld.lanes},
        "busy": {ld.name: round(ld.busy_fraction, 4) for ld in run.loads},
        "dp16kd": sum(m.dp16kd for m in memories(CnnCore(net=net, params=params))),
    }
    conv = [
        v for k, v in row["per_core"].items() if net.sites[net.site_names.index(k)].kind == "conv2d"
    ]
    row["lowest_conv"] = min(conv)
    if alone:
        lat = [
            int(cnn_schedule(net, x[b : b + 1], trace.select([b]), params).latency[0])
            for b in range(len(x))
        ]
        row["alone_mean"], row["alone_max"] = float(np.mean(lat)), max(lat)
    row["seconds"] = round(time.perf_counter() - t0, 1)
    return row


def candidates(net, work, *, min_balance: float, max_cycles: float, images: int, top: int):
    """The ``--search`` lane vectors (module docstring): ``(predicted, T per image, lanes)``."""
    names = list(net.site_names)
    k2, k3, k4 = (names.index(n) for n in ("conv2", "conv3", "conv4"))
    found = []
    choices = [conv_sites.lane_choices(net, k) for k in (k2, k3, k4)]
    for ps in itertools.product(*choices):
        w = [work[k] for k in (k2, k3, k4)]
        t = max(wk / p for wk, p in zip(w, ps, strict=True))
        pred = sum(w) / (t * sum(ps))
        if pred < min_balance or t / images > max_cycles:
            continue
        lanes = []
        for k, s in enumerate(net.sites):
            if k in (k2, k3, k4):
                lanes.append(ps[(k2, k3, k4).index(k)])
            elif s.kind == "maxpool2d":
                lanes.append(1)
            else:  # conv1, the merge, fc: off the critical path
                lanes.append(
                    next(p for p in conv_sites.lane_choices(net, k) if work[k] / p <= t / 2)
                )
        found.append((pred, t / images, tuple(lanes)))
    found.sort(key=lambda c: (sum(c[2]), c[1]))
    return found[:top]


def _print(label: str, row: dict) -> None:
    per = " ".join(f"{k} {v:.1%}" for k, v in row["per_core"].items())
    alone = (
        f", alone {row['alone_mean']:8.0f} mean {row['alone_max']:6} max"
        if "alone_mean" in row
        else ""
    )
    fifo = ",".join(f"{k}={v}" for k, v in row["fifo_depths"].items()) or "default"
    print(
        f"{label:>20} {','.join(map(str, row['lanes'])):>18} ({row['lanes_total']} lanes) "
        f"FIFOs {fifo}: back to back {row['back_to_back_cycles']:8.0f}{alone}, "
        f"conv {row['conv_utilization']:.1%} (lowest {row['lowest_conv']:.1%}; {per}), "
        f"{row['dp16kd']} DP16KD",
        flush=True,
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=20)
    ap.add_argument("--channels", nargs="*", type=_channels, default=[cnn.CnnConfig().channels])
    ap.add_argument("--lanes", nargs="*", default=None, help="lane vectors to model")
    ap.add_argument("--fifo", choices=("default", "auto", "both"), default="default")
    ap.add_argument(
        "--fifo-depths",
        default=None,
        metavar="NAME=N,…",
        help="also this FIFO plan (as spikezip's --fifo-depths)",
    )
    ap.add_argument("--alone", action="store_true", help="also each image alone")
    ap.add_argument("--search", action="store_true", help="lane vectors from the work (above)")
    ap.add_argument("--min-balance", type=float, default=0.95)
    ap.add_argument("--max-cycles", type=float, default=24_058.0, help="per image, predicted")
    ap.add_argument("--top", type=int, default=3)
    args = ap.parse_args()
    data = digits.load()
    x = data.x_test[: args.images]
    configs = []
    for channels in args.channels:
        t0 = time.perf_counter()
        net = to_convnet(cnn.load_or_train(cnn.CnnConfig(channels=channels)), name="digits-cnn")
        full = simulate(net, data.x_test)
        acts = integer_qann(net, data.x_test)
        n = len(data.x_test)
        same = all(np.array_equal(full.counts(k), acts[k].reshape(n, -1)) for k in range(net.depth))
        qann = float(np.mean(np.argmax(acts[-1].reshape(n, -1), axis=1) == data.y_test))
        trace = full.select(list(range(len(x))))
        deep = cnn_schedule(net, x, trace, DesignParams.of(net, lanes=8, fifo_depth=DEEP))
        work, _ = site_work(deep, net)
        conf = {
            "channels": list(cnn.CnnConfig(channels=channels).conv_channels),
            "qann_accuracy": qann,
            "snn_equals_qann": same,
            "work_at_lanes_8": dict(zip(net.site_names, work, strict=True)),
            "rows": [],
        }
        print(
            f"channels {','.join(map(str, conf['channels']))}: integer QANN {qann:.2%} "
            f"(450 images), SNN == QANN {'on every image' if same else 'NO'}, work "
            + " ".join(f"{k} {v / 1e6:.2f}M" for k, v in conf["work_at_lanes_8"].items())
            + f" ({time.perf_counter() - t0:.0f} s)",
            flush=True,
        )
        if args.search:
            found = candidates(
                net, work, min_balance=args.min_balance, max_cycles=args.max_cycles,
                images=len(x), top=args.top,
            )  # fmt: skip
            todo = [(f"predicted {p:.1%}", lanes) for p, _, lanes in found]
            if not found:
                print("  no lane vector predicted at the bounds", flush=True)
        else:
            todo = []
            for text in args.lanes or DEFAULT:
                name, _, budget = text.partition("=")
                if name == "balanced":
                    budget = int(budget) if budget else None
                    lanes = search_design(net, x, trace, budget=budget, fifo_plan=False).lanes
                else:
                    values = tuple(int(v) for v in text.split(","))
                    lanes = values[0] if len(values) == 1 else values
                todo.append((text, lanes))
        for label, lanes in todo:
            plans = {"default": [()], "auto": [None], "both": [(), None]}[args.fifo]
            if args.fifo_depths:
                items = (item.split("=") for item in args.fifo_depths.split(","))
                plans = [*plans, tuple((k.strip(), int(v)) for k, v in items)]
            try:
                DesignParams.of(net, lanes=lanes)
            except ValueError as e:  # a lane vector given for other channels
                print(f"{label:>20}: skipped ({e})", flush=True)
                continue
            for plan in plans:
                fifo = auto_fifos(net, x, trace, lanes) if plan is None else plan
                try:
                    DesignParams.of(net, lanes=lanes, fifo_depths=fifo)
                except ValueError as e:  # a FIFO plan below this network's skip floor
                    print(f"{label:>20}: FIFOs {dict(fifo)} skipped ({e})", flush=True)
                    continue
                row = model_row(net, x, trace, lanes, fifo, alone=args.alone)
                row["given"] = label
                conf["rows"].append(row)
                _print(label, row)
        configs.append(conf)
    name = "cnn_lanes_search" if args.search else "cnn_lanes"
    path = record(name, {"images": len(x), "configs": configs})
    print(f"recorded {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
