"""Layer-core benchmark on the digits network: cycles, utilization, simulator speed.

Trains (or loads from the cache) the default digits QANN (``sw.qann``), converts it to the integer
network (``sw.convert``), runs the golden reference on test images and, for each layer and lane
count, computes the exact schedule of the layer core (``hw.model.cycle_model``; the cocotb tests
check it cycle for cycle). Then it measures cocotb's simulated cycles per second on Verilator and
Icarus, and the build times. Prints a table and writes everything to
``build/bench_layer_core.json``.

    python bench/bench_layer_core.py [--images 100] [--sim-images 100] [--no-sim]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from spikezip.hw.model import cycle_model, events  # noqa: E402
from spikezip.ir import Network  # noqa: E402

LANES = {0: (1, 4, 8, 16, 32, 64), 1: (1, 2, 5, 10)}
SIM_RUNS = (("verilator", 0, 16), ("verilator", 1, 10), ("icarus", 0, 16), ("icarus", 1, 10))


def digits_network() -> tuple[Network, object]:
    from spikezip.sw import convert, digits, qann

    return convert.to_network(qann.load_or_train()), digits.load()


def schedule_table(net: Network, x, trace) -> list[dict]:
    rows = []
    for k, layer in enumerate(net.layers):
        ins, outs = events.input_steps(net, x, trace, k), events.output_steps(trace, k)
        for lanes in LANES.get(k, (1, layer.n_out)):
            timing = cycle_model.LayerTiming(n_out=layer.n_out, lanes=lanes)
            s = cycle_model.summary(timing, cycle_model.schedule(timing, ins, outs))
            rows.append(
                {
                    "layer": k,
                    "n_in": layer.n_in,
                    "n_out": layer.n_out,
                    "lanes": lanes,
                    "words": timing.words,
                    "lane_occupancy": timing.lane_utilization,
                    **asdict(s),
                }
            )
    return rows


def simulate_speed(net: Network, x, images: int, workdir: Path) -> list[dict]:
    """Wall time of cocotb runs (build excluded) for ``images`` and 1 image: cycles/s."""
    from spikezip.sim.cases import layer_core_case
    from spikezip.sim.runner import run_cocotb

    rows = []
    for sim, k, lanes in SIM_RUNS:
        n = images if sim == "verilator" else max(1, images // 4)
        out = {"simulator": sim, "layer": k, "lanes": lanes, "images": n}
        for label, count in (("small", 1), ("large", n)):
            d = workdir / f"{sim}-{k}-{lanes}-{label}"
            case = layer_core_case(d, net, x[:count], k, lanes=lanes)
            build = workdir / f"{sim}-{k}-{lanes}-build"
            env = {"MAKEFLAGS": "OBJCACHE="} if sim == "verilator" and label == "small" else {}
            saved = {key: os.environ.get(key) for key in env}
            os.environ.update(env)
            try:
                started = time.perf_counter()
                run_cocotb(
                    sim=sim,
                    sources=[case.verilog],
                    toplevel=case.toplevel,
                    test_module="spikezip.sim.tb.layer_core",
                    build_dir=build,
                    extra_env=case.env(),
                    always=label == "small",
                )
                first = time.perf_counter() - started
                started = time.perf_counter()
                run_cocotb(
                    sim=sim,
                    sources=[case.verilog],
                    toplevel=case.toplevel,
                    test_module="spikezip.sim.tb.layer_core",
                    build_dir=build,
                    extra_env=case.env(),
                )
                run = time.perf_counter() - started
            finally:
                for key, value in saved.items():
                    if value is None:
                        os.environ.pop(key, None)
                    else:
                        os.environ[key] = value
            out[f"{label}_cycles"] = case.schedule[-1].end_cycle + 1
            out[f"{label}_run_s"] = run
            if label == "small":
                out["build_s"] = first - run  # cold build (no ccache) plus one run, minus a run
        out["cycles_per_s"] = out["large_cycles"] / out["large_run_s"]
        out["marginal_cycles_per_s"] = (out["large_cycles"] - out["small_cycles"]) / max(
            1e-9, out["large_run_s"] - out["small_run_s"]
        )
        rows.append(out)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100, help="test images for the model")
    parser.add_argument("--sim-images", type=int, default=100, help="images per Verilator run")
    parser.add_argument("--no-sim", action="store_true", help="skip the cocotb measurements")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "bench_layer_core.json")
    args = parser.parse_args()

    from spikezip.sw.reference import simulate

    net, data = digits_network()
    x = data.x_test[: args.images]
    trace = simulate(net, x)
    rows = schedule_table(net, x, trace)
    print(
        f"digits network {[(ly.n_in, ly.n_out) for ly in net.layers]}, {len(x)} test images, "
        f"{float(trace.steps.mean()):.1f} steps per inference on average"
    )
    head = (
        f"{'layer':>5} {'P':>3} {'W':>3} {'cyc/inf':>8} {'cyc/step':>8} {'acc-phase':>9} "
        f"{'fed-step':>8} {'overall':>7} {'stall':>6} {'self-run':>8}"
    )
    print(head)
    for r in rows:
        print(
            f"{r['layer']:>5} {r['lanes']:>3} {r['words']:>3} {r['cycles_per_inference']:>8.1f} "
            f"{r['cycles_per_step']:>8.1f} {r['accumulate_phase_utilization']:>9.3f} "
            f"{r['fed_step_utilization']:>8.3f} {r['utilization']:>7.3f} "
            f"{r['stall_cycles']:>6} {r['self_running_steps']:>8}"
        )
    result = {
        "network": [{"n_in": layer.n_in, "n_out": layer.n_out} for layer in net.layers],
        "images": len(x),
        "mean_steps": float(trace.steps.mean()),
        "schedule": rows,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
    }
    if not args.no_sim:
        with tempfile.TemporaryDirectory(prefix="bench_layer_core_") as tmp:
            speed = simulate_speed(net, x, args.sim_images, Path(tmp))
        print(
            f"{'simulator':>9} {'layer':>5} {'P':>3} {'images':>6} {'cycles':>7} {'run s':>6} "
            f"{'cyc/s':>7} {'marg cyc/s':>10} {'build s':>7}"
        )
        for r in speed:
            print(
                f"{r['simulator']:>9} {r['layer']:>5} {r['lanes']:>3} {r['images']:>6} "
                f"{r['large_cycles']:>7} {r['large_run_s']:>6.2f} {r['cycles_per_s']:>7.0f} "
                f"{r['marginal_cycles_per_s']:>10.0f} {r['build_s']:>7.2f}"
            )
        result["simulators"] = speed
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
