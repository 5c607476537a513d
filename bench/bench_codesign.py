"""Co-design benchmark: resources, fmax, latency and energy of the digits network and of a
784-128-10 network on ECP5 (nextpnr, 25k, default speed grade), over lanes × storage × pipeline
depth (the layer core's own fmax per pipeline depth: ``bench_fmax.py``).

The 784-128-10 network is the trained digits QANN with a 128-neuron hidden layer whose first
layer is widened to 28×28 inputs (nearest-neighbour upsampling of the 8×8 images; each 8×8 weight
column copied to the 28×28 pixels that map to it, thresholds and biases scaled by the copies per
pixel, ≈12.25): the same activity per pixel as a trained model, for timing only.

    python bench/bench_codesign.py [--samples 50] [--jobs 2]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _record import record

from spikezip.hw.flow.synth import ToolError
from spikezip.ir import Layer, Network
from spikezip.report import DesignPoint, PointFailure, evaluate, plot_sweep, sweep
from spikezip.sw import digits, qann
from spikezip.sw.convert import to_network

MAP = (np.arange(28) * 8) // 28  # 28 → 8 nearest neighbour


def widen(net: Network) -> Network:
    first = net.layers[0]
    cols = (MAP[:, None] * 8 + MAP[None, :]).ravel()  # 784 → 64 pixel index
    copies = np.bincount(cols, minlength=64)
    scale = float(copies.mean())
    w = first.weight[:, cols]
    thr = np.maximum(1, np.round(np.asarray(first.threshold) * scale)).astype(np.int64)
    layer0 = Layer(
        weight=w,
        bias=np.round(first.bias * scale).astype(np.int64),
        threshold=thr,
        neg_bound=first.neg_bound,
        pos_bound=first.pos_bound,
        name="fc784",
    )
    return Network(
        layers=(layer0, *net.layers[1:]),
        n_inputs=784,
        encoding=net.encoding,
        input_bounds=net.input_bounds,
        name="784-128-10",
    )


def upsample(x: np.ndarray) -> np.ndarray:
    img = x.reshape(-1, 8, 8)
    return img[:, MAP][:, :, MAP].reshape(-1, 784)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=50)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument(
        "--time-limit",
        type=float,
        default=30.0,
        help="CPU minutes nextpnr may use per design point (a stopped point is recorded)",
    )
    ap.add_argument(
        "--part",
        choices=("all", "digits", "784"),
        default="all",
        help="the digits sweep, the 784-128-10 points, or both (default; `784` records "
        "build/bench/codesign_784.json, `digits` codesign_digits.json)",
    )
    args = ap.parse_args()
    data = digits.load()
    out: dict = {"samples": args.samples}
    x = data.x_test[: args.samples]
    limit = args.time_limit * 60
    if args.part != "784":
        digits_sweep(args, x, limit, out)
    if args.part != "digits":
        mnist_size(x, limit, out)
    name = "codesign" if args.part == "all" else f"codesign_{args.part}"
    print(f"recorded in {record(name, out)}")


def digits_sweep(args, x, limit: float, out: dict) -> None:
    """2. The digits network's sweep over lanes (synthesis + place and route + model), in
    parallel."""
    tmp = Path(tempfile.mkdtemp(prefix="bench-codesign-"))
    net = to_network(qann.load_or_train(qann.QannConfig()), name="digits")
    net.save(tmp / "digits.npz")

    points = [DesignPoint(lanes=p, pipeline=d) for d in (1, 3) for p in (1, 2, 4, 8, 16)]
    points += [DesignPoint(lanes=(8, 4), pipeline=3), DesignPoint(lanes=(16, 4), pipeline=3)]
    points += [DesignPoint(lanes=8, storage="memory"), DesignPoint(lanes=8, storage="registers")]
    t0 = time.perf_counter()
    res = sweep(
        tmp / "digits.npz", x, points, jobs=args.jobs, target="ecp5", pnr=True, pnr_time_limit=limit
    )
    # a failed point (nextpnr stopped at the limit, a misfit) is recorded, the rest still counts
    out["digits_failed"] = [
        {"design": r.point.label, "error": r.error} for r in res if isinstance(r, PointFailure)
    ]
    for f in out["digits_failed"]:
        print("failed:", f, flush=True)
    res = [r for r in res if not isinstance(r, PointFailure)]
    out["digits_sweep_seconds"] = round(time.perf_counter() - t0)
    plot = Path(__file__).resolve().parent.parent / "build" / "bench" / "codesign_sweep.png"
    plot.parent.mkdir(parents=True, exist_ok=True)  # a fresh clone has no build/bench yet
    front = plot_sweep(res, plot)
    out["digits_sweep"] = []
    for i, r in enumerate(res):
        row = {
            "design": r.point.label,
            "luts": r.luts,
            "total": asdict(r.resources.total),
            "layers": [asdict(layer) for layer in r.resources.layers],
            "fmax_mhz": r.pnr.fmax_mhz,
            "latency_cycles_mean": r.latency.cycles_mean,
            "latency_us_mean": round(r.latency.us_mean, 3),
            "latency_us_max": round(r.latency.us_max, 3),
            "gsops": round(r.sops_per_second / 1e9, 3),
            "pareto": i in front,
            "critical_path": r.pnr.critical_path,
            "fifo_depth": r.latency.fifo_depth,
        }
        out["digits_sweep"].append(row)
        print(row, flush=True)
    out["digits_energy"] = {
        k: getattr(res[0], k)
        for k in (
            "sops_per_inference",
            "energy_nj_per_inference",
            "ann_macs_per_inference",
            "ann_energy_nj_per_inference",
            "neurons",
            "synapses",
            "steps_mean",
        )
    }


def mnist_size(x, limit: float, out: dict) -> None:
    """3. The 784-128-10 network: three lane points, placed and routed where it fits the
    25k."""
    big = widen(to_network(qann.load_or_train(qann.QannConfig(hidden=(128,))), name="d128"))
    xb = upsample(x)
    for p in ((16, 10), (64, 10), (128, 10)):  # lanes ≤ the neuron count (10 outputs)
        t0 = time.perf_counter()
        try:  # place and route where it fits the 25k (28 MULT18X18D, 56 DP16KD)
            r = evaluate(
                big,
                xb,
                DesignPoint(lanes=p),
                target="ecp5",
                pnr=p == (16, 10),
                pnr_time_limit=limit,
            )
        except ToolError as e:
            print("784-128-10", p, "does not fit:", e, flush=True)
            out.setdefault("mnist_size", []).append({"lanes": p, "error": str(e)})
            continue
        row = {
            "lanes": p,
            "luts": r.luts,
            "total": asdict(r.resources.total),
            "latency_cycles_mean": r.latency.cycles_mean,
            "latency_cycles_max": r.latency.cycles_max,
            "seconds": round(time.perf_counter() - t0),
        }
        if r.pnr is not None:
            row.update(
                fmax_mhz=r.pnr.fmax_mhz,
                latency_us_mean=r.latency.us_mean,
                latency_us_max=r.latency.us_max,
                critical_path=r.pnr.critical_path,
                utilization={
                    k: v
                    for k, v in r.pnr.utilization.items()
                    if k in ("TRELLIS_COMB", "TRELLIS_FF", "DP16KD", "MULT18X18D")
                },
            )
        row["energy_nj"] = r.energy_nj_per_inference
        row["sops"] = r.sops_per_inference
        row["ann_energy_nj"] = r.ann_energy_nj_per_inference
        out.setdefault("mnist_size", []).append(row)
        print("784-128-10", row, flush=True)


if __name__ == "__main__":
    main()
