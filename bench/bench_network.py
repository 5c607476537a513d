"""Whole-network RTL verification speed on the digits model (cocotb, one build per simulator).

For each simulator: generate (cached), build, simulate N test images back to back, compare with
the golden trace; print seconds per image (amortised, start-up included), simulated cycles/s and
cycles per inference. Target: ≤ 1 s per image in Verilator.

    python bench/bench_network.py [--images 450] [--icarus-images 20] [--lanes 8]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _record import record

from spikezip.ir.compare import first_divergence
from spikezip.sim.simulate import design, simulate
from spikezip.sw import digits, qann
from spikezip.sw.convert import to_network
from spikezip.sw.reference import simulate as reference


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=450)
    ap.add_argument("--icarus-images", type=int, default=20)
    ap.add_argument("--lanes", type=int, default=8)
    args = ap.parse_args()
    network = to_network(qann.load_or_train(qann.QannConfig()), name="digits")
    data = digits.load()
    root = Path(tempfile.mkdtemp(prefix="bench-network-"))
    results: dict = {"lanes": args.lanes, "network": "64-64-10 digits"}
    try:
        t0 = time.perf_counter()
        d = design(network, root, lanes=args.lanes)
        results["generate_seconds"] = round(time.perf_counter() - t0, 2)
        for sim, n in (("verilator", args.images), ("icarus", args.icarus_images)):
            x = data.x_test[:n]
            golden = reference(network, x)
            t0 = time.perf_counter()
            run = simulate(network, x, sim=sim, design_dir=d)
            wall = time.perf_counter() - t0
            exact = first_divergence(golden, run.trace) is None
            row = {
                "images": n,
                "bit_exact": exact,
                "wall_seconds": round(wall, 2),
                "seconds_per_image": round(wall / n, 4),
                "sim_seconds": round(run.sim_seconds, 2),
                "cycles": run.total_cycles,
                "cycles_per_second": round(run.cycles_per_second),
                "cycles_per_inference_back_to_back": round(run.total_cycles / n, 1),
                "latency_mean": round(float(run.latency.mean()), 1),
                "latency_max": int(run.latency.max()),
            }
            results[sim] = row
            print(
                f"{sim:<9} {n:>4} images: {wall:6.1f} s wall (build + run) = "
                f"{wall / n:.3f} s/image; {run.cycles_per_second:>9,.0f} cycles/s; "
                f"{run.total_cycles / n:.0f} cycles/inference back to back, latency "
                f"{run.latency.mean():.0f} mean / {run.latency.max()} max; "
                f"bit-exact: {exact}"
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"recorded in {record('network', results)}")


if __name__ == "__main__":
    main()
