"""Throughput of the bit-exact integer reference on the digits model.

Prints images/s for batches of 1,000 images (the digits test set tiled), with and without state
recording, and the step statistics; target ≥ 10,000 images/s on a 2-core machine.

    python bench/bench_reference.py [--repeats 5] [--batch 1000]

The reference runs torch single-threaded (sw.reference.single_thread).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _record import record

from spikezip.sw import digits, qann
from spikezip.sw.convert import to_network
from spikezip.sw.reference import integer_qann, simulate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batch", type=int, default=1000)
    args = ap.parse_args()
    network = to_network(qann.load_or_train(qann.QannConfig()), name="digits")
    data = digits.load()
    reps = -(-args.batch // len(data.x_test))
    x = np.tile(data.x_test, (reps, 1))[: args.batch]
    simulate(network, x[:50])  # warm-up
    results = {
        "batch": args.batch,
        "threads": args.threads,
        "layers": [f"{layer.n_in}x{layer.n_out}" for layer in network.layers],
    }
    for label, state in (("spikes", False), ("spikes+state", True)):
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            trace = simulate(network, x, record_state=state)
            times.append(time.perf_counter() - t0)
        best, median = min(times), float(np.median(times))
        results[label] = {
            "images_per_s_best": round(args.batch / best),
            "images_per_s_median": round(args.batch / median),
            "seconds_median": round(median, 4),
        }
        print(
            f"reference ({label:<12}) batch {args.batch}: {args.batch / median:>9,.0f} images/s "
            f"median, {args.batch / best:>9,.0f} best ({args.repeats} runs)"
        )
    t0 = time.perf_counter()
    integer_qann(network, x)
    results["integer_qann_images_per_s"] = round(args.batch / (time.perf_counter() - t0))
    results["steps_mean"] = float(trace.steps.mean())
    results["steps_max"] = int(trace.steps.max())
    print(f"steps per image: mean {trace.steps.mean():.2f}, max {trace.steps.max()}")
    print(f"integer QANN: {results['integer_qann_images_per_s']:,} images/s")
    print(f"recorded in {record('reference', results)}")


if __name__ == "__main__":
    main()
