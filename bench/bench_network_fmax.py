"""fmax of the whole digits network as ``spikezip report`` builds it (issue 16 §1).

The layer cores, the FIFOs between them (as deep as ``report`` makes them: the smallest power of
two ≥ ``n_out + 2`` that no inference of the samples fills, ``report.model_latency``) and the
4-pin harness, synthesised once with ``synth_ecp5`` and placed and routed on the ECP5-25k with
each nextpnr seed (``hw.flow.synth.place_and_route_seeds``). What a user sees from ``spikezip
report digits.npz --lanes … --pipeline …``, here as min / median / max over seeds, beside the
exact model's latency; ``--timing-weights`` places each design with several nextpnr placer
timing weights side by side. ``bench/bench_fmax.py`` prints the layer cores alone and then these
rows.

    python bench/bench_network_fmax.py [--lanes 8,4 8] [--pipeline 3] [--seeds 1,2,3]
                                       [--samples 50] [--timing-weights 10,30]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _record import record

from spikezip.hw.cores.network_core import NetworkCore
from spikezip.hw.flow.synth import TIMING_WEIGHT, place_and_route_seeds
from spikezip.report import DesignPoint, model_latency
from spikezip.sw import digits, qann
from spikezip.sw.convert import to_network
from spikezip.sw.reference import simulate


def _lanes(text: str) -> int | tuple[int, ...]:
    values = tuple(int(v) for v in text.split(","))
    return values[0] if len(values) == 1 else values


def network_rows(
    lanes: list[str],
    *,
    pipeline: int = 3,
    seeds: tuple[int, ...] = (1, 2, 3),
    samples: int = 50,
    time_limit_min: float = 20.0,
    timing_weights: tuple[int | None, ...] = (None,),
) -> list[dict]:
    """One row per lane configuration and placer timing weight (``None``: the flow's default),
    printed as it is measured: fmax over ``seeds`` beside the exact model's latency."""
    net = to_network(qann.load_or_train(qann.QannConfig()), name="digits")
    x = digits.load().x_test[:samples]
    trace = simulate(net, x)
    rows = []
    print(f"digits network, pipeline {pipeline}, ECP5-25k, seeds {list(seeds)}")
    print(
        "lanes | timing weight | FIFO depth | fmax MHz min / median / max (mean) | "
        "µs mean at the median | LUT4 | path"
    )
    for text in lanes:
        point = DesignPoint(lanes=_lanes(text), pipeline=pipeline)
        lat = model_latency(net, x, trace, point.params(net))
        for weight in timing_weights:
            core = NetworkCore(network=net, params=point.params(net, fifo_depth=lat.fifo_depth))
            t0 = time.perf_counter()
            placed = place_and_route_seeds(
                core,
                target="ecp5",
                seeds=seeds,
                time_limit=60 * time_limit_min,
                skip_stopped=True,
                timing_weight=weight,
            )
            weight = TIMING_WEIGHT if weight is None else weight
            stopped = [s for s, r in zip(seeds, placed, strict=True) if r is None]
            runs = [r for r in placed if r is not None]
            if not runs:
                print(f"{text} | {weight} | every seed stopped after {time_limit_min:g} min")
                continue
            f = [r.fmax_mhz for r in runs]
            worst = min(runs, key=lambda r: r.fmax_mhz)
            med = statistics.median(f)
            row = {
                "lanes": text,
                "pipeline": pipeline,
                "timing_weight": weight,
                "fifo_depth": lat.fifo_depth,
                "fmax": [round(v, 1) for v in f],
                "fmax_median": round(med, 1),
                "fmax_mean": round(statistics.mean(f), 1),
                "seeds_stopped": stopped,
                "time_limit_min": time_limit_min,
                "cycles_mean": lat.cycles_mean,
                "cycles_max": lat.cycles_max,
                "us_mean_at_median": round(lat.cycles_mean / med, 2),
                "us_max_at_median": round(lat.cycles_max / med, 2),
                "lut4": runs[0].synth.total.get("lut"),
                "worst_path": worst.critical_path_text,
                "seconds": round(time.perf_counter() - t0, 1),
            }
            rows.append(row)
            print(
                f"{text} | {weight} | {lat.fifo_depth} | {min(f):.1f} / {med:.1f} / "
                f"{max(f):.1f} ({row['fmax_mean']}) | {row['us_mean_at_median']} (max "
                f"{row['us_max_at_median']}) | {row['lut4']} | {worst.critical_path_text}"
                + (f" | seeds {stopped} stopped after {time_limit_min:g} min" if stopped else ""),
                flush=True,
            )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lanes", nargs="+", default=["8,4", "8"], help="lane configurations")
    ap.add_argument("--pipeline", type=int, default=3)
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--samples", type=int, default=50)
    ap.add_argument(
        "--timing-weights",
        default=None,
        help="nextpnr placer timing weights to place each design with, side by side "
        f"(e.g. 10,30; default: the flow's, {TIMING_WEIGHT})",
    )
    ap.add_argument(
        "--time-limit",
        type=float,
        default=20.0,
        help="minutes nextpnr may run per seed (a seed stopped there is listed, not measured)",
    )
    args = ap.parse_args()
    seeds = tuple(int(s) for s in args.seeds.split(","))
    weights = (
        (None,)
        if args.timing_weights is None
        else tuple(int(w) for w in args.timing_weights.split(","))
    )
    rows = network_rows(
        args.lanes,
        pipeline=args.pipeline,
        seeds=seeds,
        samples=args.samples,
        time_limit_min=args.time_limit,
        timing_weights=weights,
    )
    print("recorded", record("network_fmax", {"seeds": list(seeds), "rows": rows}))


if __name__ == "__main__":
    main()
