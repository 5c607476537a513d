"""Dask distributed: a sweep on 1 and 2 local workers, a simulation in 1 and 2 shards.

Runs the CLI as a user would and times each command (wall clock, the local cluster's start
included):

* ``spikezip sweep NET --lanes 1,2,4,8 --no-pnr -j 1`` and ``-j 2`` (ECP5 synthesis of 4 points);
* ``spikezip simulate NET X --sim icarus`` on the first ``--images`` inputs, once plain (one
  run, no Dask) and once with ``--shards 2`` (after a first run that builds the simulator, so
  both time the simulations only); the sharded trace's spikes are checked equal to the plain one's.

    python bench/bench_dask.py NET.npz INPUTS.npy [--images 40] [--samples 50]

NET is an MLP network file (the digits network: ``spikezip digits -o out``).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _record import record

from spikezip.ir import Trace


def timed(*argv: str) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "spikezip.cli", *argv], check=True)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("network")
    ap.add_argument("inputs")
    ap.add_argument("--images", type=int, default=40)
    ap.add_argument("--samples", type=int, default=50)
    args = ap.parse_args()
    out: dict = {"load_average_at_start": list(os.getloadavg())}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        x = tmp / "x.npy"
        np.save(x, np.load(args.inputs)[: args.images])
        sim = ["simulate", args.network, str(x), "--sim", "icarus", "-q"]
        sim += ["--build-dir", str(tmp / "designs")]
        timed(*sim, "-o", str(tmp / "warm.npz"))  # builds the design and the simulator
        out["simulate_1_run_s"] = round(timed(*sim, "-o", str(tmp / "one.npz")), 1)
        two = timed(*sim, "--shards", "2", "-o", str(tmp / "two.npz"))
        out["simulate_2_shards_s"] = round(two, 1)
        one, two = Trace.load(tmp / "one.npz"), Trace.load(tmp / "two.npz")
        assert all(np.array_equal(a, b) for a, b in zip(one.spikes, two.spikes, strict=True))
        sweep = ["sweep", args.network, "--inputs", args.inputs, "--samples", str(args.samples)]
        sweep += ["--lanes", "1,2,4,8", "--no-pnr", "-q"]
        for jobs in (1, 2):
            s = timed(*sweep, "-j", str(jobs), "-o", str(tmp / f"sweep{jobs}"))
            out[f"sweep_4_points_{jobs}_workers_s"] = round(s, 1)
    out["load_average_at_end"] = list(os.getloadavg())
    for k, v in out.items():
        print(f"{k:<32}{v}")
    print(f"wrote {record('dask', out)}")


if __name__ == "__main__":
    main()
