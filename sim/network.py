"""Simulate a generated network design on a batch of inputs and return its hardware trace.

Parent-process side of :mod:`sim.tb_network`: generates the design once per (network, lanes,
pipeline, backend) into a build directory named after them, writes the stimulus, runs the
cocotb testbench on Verilator or Icarus (one build reused for every batch), and reads back the
hardware :class:`ir.Trace` and the per-inference cycle facts. No torch here: the golden trace is
the caller's business.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hw.cycle_model import LayerTiming
from hw.events import EventFormat, input_steps
from hw.generate import MANIFEST, generator_fingerprint, write_design
from ir import Network, Trace
from sim.runner import SIMULATORS, SimulationError, run_cocotb

__all__ = ["Design", "HardwareRun", "design", "prepare", "simulate"]

TESTBENCH = "sim.tb_network"


@dataclass(frozen=True)
class Design:
    """A generated design on disk and its manifest."""

    directory: Path
    manifest: dict

    @property
    def verilog(self) -> Path:
        return self.directory / self.manifest["verilog"]

    @property
    def toplevel(self) -> str:
        return self.manifest["toplevel"]


def _lanes_key(lanes: int | Sequence[int]) -> str:
    return "p" + ("-".join(map(str, lanes)) if not isinstance(lanes, int) else str(lanes))


def design(
    network: Network,
    root: str | Path,
    *,
    lanes: int | Sequence[int] = 8,
    backend: str = "proc",
    fifo_depth: int | None = None,
    pipeline: int = 1,
) -> Design:
    """The design of ``network`` under ``root``; generated unless an identical one is there.

    The directory is named after the network digest, lanes, pipeline depth and backend; a design
    found there is reused only if its manifest records the same network, generator, lanes,
    pipeline depth, backend and FIFO depth (``None``: any).
    """
    LayerTiming(n_out=1, lanes=1, pipeline=pipeline)  # its error names the valid depths
    name = f"{network.digest()[:16]}-{_lanes_key(lanes)}-d{pipeline}-{backend}"
    directory = Path(root) / name
    manifest_path = directory / MANIFEST
    if manifest_path.is_file():
        try:
            manifest = json.loads(manifest_path.read_text())
            params = manifest["parameters"]
            want = [lanes] * network.depth if isinstance(lanes, int) else list(lanes)
            if (
                manifest["network"]["digest"] == network.digest()
                and manifest.get("generator") == generator_fingerprint()
                and params["lanes"] == want
                and params["backend"] == backend
                and params["pipeline"] == pipeline
                and (fifo_depth is None or set(params["fifo_depths"]) == {fifo_depth})
                and params["probe"]
                and (directory / manifest["verilog"]).is_file()
            ):
                return Design(directory, manifest)
        except (ValueError, KeyError, TypeError):
            pass  # regenerate a damaged design directory
    manifest = write_design(
        network,
        directory,
        lanes=lanes,
        backend=backend,
        fifo_depth=fifo_depth,
        probe=True,
        pipeline=pipeline,
    )
    return Design(directory, manifest)


def _max_cycles(network: Network, d: Design, x: np.ndarray, slack: float) -> int:
    steps = network.step_bound(x.shape[1] if x.ndim == 3 else 1)
    per_step = sum(  # cycles_per_event: a pass over the words (W, padded by deep pipelines)
        (layer["n_in"] + 2) * layer["cycles_per_event"] + layer["n_out"] + 16
        for layer in d.manifest["layers"]
    )
    init = sum(layer["init_cycles"] + 16 for layer in d.manifest["layers"])
    return int((steps * per_step + init) * x.shape[0] * slack) + 1000


def prepare(
    network: Network, inputs: np.ndarray, d: Design, run_dir: Path, *, slack: float = 2.0
) -> Path:
    """Write ``stimulus.npz`` for :mod:`sim.tb_network` into ``run_dir``."""
    x = network.check_inputs(inputs)
    if d.manifest["network"]["digest"] != network.digest():
        raise ValueError("design was generated from another network (digest mismatch)")
    layers = d.manifest["layers"]
    fmt = EventFormat(**layers[0]["input_format"])
    words, starts = [], []
    for steps in input_steps(network, x, None, 0):
        starts.append(len(words))
        for step in steps:
            words.extend(step.words(fmt))
    if fmt.width > 62:
        raise ValueError(f"input payload of {fmt.width} bits does not fit the stimulus file")
    run_dir.mkdir(parents=True, exist_ok=True)
    probe = {f["field"]: [f["offset"], f["width"]] for f in d.manifest["probe"]}
    path = run_dir / "stimulus.npz"
    np.savez(
        path,
        in_words=np.array(words, dtype=np.int64),
        sample_starts=np.array(starts, dtype=np.int64),
        samples=np.array(x.shape[0]),
        depth=np.array(network.depth),
        n_out=np.array([layer["n_out"] for layer in layers]),
        layer_names=np.array([network.layer_name(k) for k in range(network.depth)]),
        probe_layout=np.array(json.dumps(probe)),
        formats=np.array(json.dumps([layer["output_format"] for layer in layers])),
        digest=np.array(network.digest()),
        max_cycles=np.array(_max_cycles(network, d, x, slack)),
    )
    return path


@dataclass(frozen=True)
class HardwareRun:
    """What one simulation produced."""

    trace: Trace  #: the hardware trace (spikes, busy, steps, cycle stamps)
    first_input: np.ndarray  #: [B] cycle the first input beat of each inference was accepted
    done: np.ndarray  #: [B] cycle ``done`` was high for each inference
    counters: np.ndarray  #: [B, D, 4] counter readings at each done (events, spikes, steps, stalls)
    final_counters: np.ndarray  #: [D, 4] readings at the end of the run (the batch's totals)
    total_cycles: int
    sim_seconds: float  #: wall time of the simulated cycles (the testbench loop)
    run_seconds: float  #: wall time of the whole simulator run (start-up included)
    simulator: str
    waves: Path | None = None  #: the waveform file, when requested
    edge0_ns: float = 0.0  #: simulation time of the clock edge ending cycle 0 (period 10 ns)

    @property
    def latency(self) -> np.ndarray:
        """Cycles from each inference's first input beat to its ``done``, inclusive."""
        return self.done - self.first_input + 1

    @property
    def interval(self) -> np.ndarray:
        """Cycles between consecutive ``done`` (the first: from cycle 0)."""
        return np.diff(np.concatenate([[-1], self.done]))

    @property
    def per_inference_counters(self) -> np.ndarray:
        """[B, D, 4] increments between readings at consecutive ``done``.

        Exact per inference for the last layer only (earlier layers may already be working on
        the next inference when ``done`` is high).
        """
        prev = np.concatenate([np.zeros_like(self.counters[:1]), self.counters[:-1]])
        return (self.counters - prev) % (1 << 32)

    @property
    def cycles_per_second(self) -> float:
        return self.total_cycles / self.sim_seconds if self.sim_seconds else 0.0


def simulate(
    network: Network,
    inputs: np.ndarray,
    *,
    sim: str = "verilator",
    lanes: int | Sequence[int] = 8,
    root: str | Path = "build/designs",
    backend: str = "proc",
    waves: bool = False,
    valid: float = 1.0,
    ready: float = 1.0,
    seed: int | None = None,
    run_dir: str | Path | None = None,
    on_progress: Callable[[int], None] | None = None,
    design_dir: Design | None = None,
    pipeline: int = 1,
) -> HardwareRun:
    """Simulate ``inputs`` on the RTL of ``network``; return the hardware trace and cycle facts.

    The design is :func:`design` of ``lanes``, ``backend`` and ``pipeline`` under ``root``, or
    ``design_dir`` when given (its own parameters then apply).

    A run that does not finish every inference still returns (and saves) the trace of what the
    hardware did, with unfinished samples marked ``capped``: compare it to find where it went
    wrong. Any other testbench failure raises :class:`sim.runner.SimulationError`.
    """
    if sim not in SIMULATORS:
        raise ValueError(f"sim must be one of {', '.join(SIMULATORS)}, not {sim!r}")
    for name, p in (("valid", valid), ("ready", ready)):
        if not 0.0 < p <= 1.0:
            raise ValueError(f"{name} must be a probability in (0, 1], not {p!r}")
    d = design_dir or design(network, root, lanes=lanes, backend=backend, pipeline=pipeline)
    run_dir = Path(run_dir) if run_dir is not None else d.directory / f"run-{sim}"
    prepare(network, inputs, d, run_dir)
    for stale in ("hardware.npz", "inferences.npz", "progress"):
        (run_dir / stale).unlink(missing_ok=True)
    env = {
        "NETWORK_SIM_DIR": str(run_dir.resolve()),
        "NETWORK_SIM_NAME": sim,
        "NETWORK_SIM_VALID": repr(float(valid)),
        "NETWORK_SIM_READY": repr(float(ready)),
        "NETWORK_SIM_PROGRESS": str((run_dir / "progress").resolve()),
    }
    error: list[BaseException] = []

    def target() -> None:
        try:
            run_cocotb(
                sim=sim,
                sources=[d.verilog],
                toplevel=d.toplevel,
                test_module=TESTBENCH,
                build_dir=d.directory / "build",
                extra_env=env,
                waves=waves,
                seed=seed,
            )
        except BaseException as e:  # re-raised in the caller's thread
            error.append(e)

    t0 = time.perf_counter()
    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    last = -1
    while worker.is_alive():
        worker.join(0.2)
        if on_progress is not None:
            try:
                done = int((run_dir / "progress").read_text() or 0)
            except (OSError, ValueError):
                done = 0
            if done != last:
                on_progress(done)
                last = done
    run_seconds = time.perf_counter() - t0
    hw_path = run_dir / "hardware.npz"
    if error and not (isinstance(error[0], SimulationError) and hw_path.is_file()):
        raise error[0]
    trace = Trace.load(hw_path)
    with np.load(run_dir / "inferences.npz") as f:
        facts = {k: f[k] for k in f.files}
    if on_progress is not None:
        on_progress(len(facts["done"]))
    depth = network.depth
    return HardwareRun(
        trace=trace,
        first_input=facts["first_input"],
        done=facts["done"],
        counters=facts["counters"].reshape(-1, depth, 4),
        final_counters=facts["final_counters"].reshape(depth, 4),
        total_cycles=int(facts["total_cycles"]),
        sim_seconds=float(facts["wall_seconds"]),
        run_seconds=run_seconds,
        simulator=sim,
        waves=_wave_file(d.directory / "build", sim) if waves else None,
        edge0_ns=float(facts["edge0_ns"]),
    )


def _wave_file(build: Path, sim: str) -> Path | None:
    found = [p for ext in ("fst", "vcd") for p in build.glob(f"{sim}*/**/*.{ext}")]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None
