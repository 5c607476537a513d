"""Simulate a generated network design on a batch of inputs and return its hardware trace.

Parent-process side of :mod:`sim.tb.network`: generates the design once per (network, lanes,
pipeline, backend) into a build directory named after them, writes the stimulus, runs the
cocotb testbench on Verilator or Icarus (one build reused for every batch), and reads back the
hardware :class:`ir.Trace` and the per-inference cycle facts. No torch here: the golden trace is
the caller's business.

Concurrent runs on one build directory are safe, in threads or processes::

    <root>/<digest>-p<lanes>-d<pipeline>-<backend>/
        .lock                   # design lock: exclusive while (re)generating, shared while used
        manifest.json, *.v, *.hex   # the design, verified against the manifest's SHA-256 sums
        build/<sim>/, build/<sim>.lock  # the simulator build (:func:`sim.runner.run_cocotb`)
        runs/<sim>-XXXXXXXX/    # one private folder per simulation

A design is regenerated when a file differs from the sums its manifest records (truncated,
edited); the simulator build, when its model differs from the sum in its stamp. Each simulation
runs in its own folder under ``runs/``, removed once the results are read (kept when waves were
asked for, and after a failure whose message names the log in it). The simulator runs in a
process group that dies with the caller (:func:`sim.runner.run_cocotb_isolated`); the testbench
also stops by itself when the calling process is gone. A folder left by a run that was killed is
removed by the next run on the same design.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from spikezip.hw.flow.generate import generator_fingerprint, verify_design, write_design
from spikezip.hw.flow.manifest import Manifest
from spikezip.hw.model import conv_sites
from spikezip.hw.model.design import DesignParams
from spikezip.hw.model.events import input_steps
from spikezip.hw.model.vit_sites import input_steps as vit_input_steps
from spikezip.ir import Network, Trace
from spikezip.ir.cnn import ConvNet
from spikezip.ir.transformer import VisionTransformer
from spikezip.sim.harness import (
    HARNESS,
    HARNESS_FILES,
    harness_verilog,
    verilator_args,
    verilator_threads,
    write_harness,
)
from spikezip.sim.runner import (
    SIMULATORS,
    FileLock,
    SimulationError,
    _waves_from_env,
    run_cocotb_isolated,
)
from spikezip.sim.tb.files import (
    CALLER_PID_ENV,
    STIMULUS_ENV,
    BitLayout,
    NetworkResult,
    NetworkStimulus,
)

__all__ = [
    "Design",
    "HardwareRun",
    "design",
    "merge_runs",
    "prepare",
    "remove_dead_runs",
    "simulate",
]

TESTBENCH = "spikezip.sim.tb.network"
LOCK = ".lock"  #: the design lock, inside the design directory
RUNS = "runs"  #: the folder of the per-simulation run folders, inside the design directory
_ACTIVE = ".active"  #: locked by the process running in a run folder
STIMULUS = "stimulus.npz"  #: the testbench's input, inside the run folder


@dataclass(frozen=True)
class Design:
    """A generated design on disk and its manifest."""

    directory: Path
    manifest: Manifest

    @property
    def verilog(self) -> Path:
        return self.directory / self.manifest.verilog

    @property
    def toplevel(self) -> str:
        return self.manifest.toplevel

    @property
    def params(self) -> DesignParams:
        return self.manifest.design


def design(
    network: Network,
    root: str | Path,
    params: DesignParams | None = None,
    *,
    lanes: int | Sequence[int] | None = None,
    pipeline: int | None = None,
    fifo_depth: int | None = None,
    storage: str | None = None,
    backend: str = "proc",
    emit_width: int | None = None,
) -> Design:
    """The design of ``network`` under ``root``; generated unless an identical one is there.

    ``params`` are the design's knobs (:class:`hw.model.design.DesignParams`), or give them as
    keywords (not both). The directory is named after the network digest, the parameters'
    :attr:`~hw.model.design.DesignParams.key` and the backend; a design found there is reused
    only if its manifest records the same network, generator, parameters and backend, and every
    file it lists still has the SHA-256 sum recorded. Safe against concurrent calls (a lock
    file in the directory).
    """
    params = DesignParams.coerce(
        network,
        params,
        lanes=lanes,
        pipeline=pipeline,
        fifo_depth=fifo_depth,
        storage=storage,
        emit_width=emit_width,
    )
    with _locked_design(network, root, params, backend=backend) as d:
        return d


def _design_directory(
    network: Network, root: str | Path, params: DesignParams, backend: str
) -> Path:
    return Path(root) / f"{network.digest()[:16]}-{params.key}-{backend}"


def remove_dead_runs(
    network: Network, root: str | Path, params: DesignParams, *, backend: str = "proc"
) -> None:
    """Remove the run folders of the design ``params`` of ``network`` under ``root`` whose
    process is gone (a sharded simulation calls it once its local workers were ended; the next
    run on the design would do it too)."""
    runs = _design_directory(network, root, params, backend) / RUNS
    if runs.is_dir():
        _sweep(runs)


@contextlib.contextmanager
def _locked_design(
    network: Network, root: str | Path, params: DesignParams, *, backend: str
) -> Iterator[Design]:
    """:func:`design`, holding its lock shared until the block ends."""
    directory = _design_directory(network, root, params, backend)
    directory.mkdir(parents=True, exist_ok=True)

    def reusable() -> Design | None:
        try:
            manifest = Manifest.load(directory)
        except (OSError, ValueError):
            return None  # regenerate a damaged (or older) design directory
        if (
            manifest.network.digest == network.digest()
            and manifest.generator == generator_fingerprint()
            and manifest.design == params
            and manifest.backend == backend
            and manifest.probe
            and verify_design(directory, manifest) is None
        ):
            return Design(directory, manifest)
        return None

    with FileLock(directory / LOCK) as lock:
        lock.shared()
        d = reusable()
        if d is None:
            lock.exclusive()
            d = reusable()  # another process may have generated it while we waited
            if d is None:
                manifest = write_design(network, directory, params, backend=backend, probe=True)
                d = Design(directory, manifest)
            lock.shared()  # nobody regenerates it while we use it: it is valid now
        yield d


def _max_cycles(
    network: Network | VisionTransformer, d: Design, x: np.ndarray, slack: float
) -> int:
    per_step = sum(  # cycles_per_event: a pass over the words (W, padded by deep pipelines)
        (layer.n_in + 2) * layer.cycles_per_event + layer.n_out + 16 for layer in d.manifest.layers
    )
    if isinstance(network, ConvNet):
        steps = network.step_bound()
        # a conv event is one pass per window it reaches (up to kh·kw), not one
        per_step += sum(
            int(spec.input_map.event_cycles(np.arange(spec.input_map.n_in), 3).sum())
            if hasattr(spec, "input_map")
            else spec.sweep_cycles + spec.clear_cycles + 16  # a max-pool
            for spec in conv_sites.site_specs(network, d.params.lanes).values()
        )
    elif isinstance(network, VisionTransformer):
        steps = network.step_bound()
        # the LayerNorm cores (≤ 64 cycles per entry), the softmax and product read-outs
        per_step += 64 * network.tokens * network.dim * (2 * network.depth + 1)
        per_step += sum(16 * b.heads * network.tokens**2 for b in network.blocks)
    else:
        steps = network.step_bound(x.shape[1] if x.ndim == 3 else 1)
    init = sum(layer.init_cycles + 16 for layer in d.manifest.layers)
    return int((steps * per_step + init) * x.shape[0] * slack) + 1000


def _emit_widths(network, d: Design) -> tuple[int, ...]:
    """Events per output beat of every core of the design (``()``: one each)."""
    params = d.params
    if isinstance(network, VisionTransformer) or params.emit_width == 1:
        return ()
    from spikezip.hw.model.network_model import layer_timing

    wide = max(f.width for f in d.manifest.probe_layout if f.field.startswith("beat"))
    if wide > 62:
        raise ValueError(
            f"emit_width {params.emit_width}: a beat of {wide} bits does not fit the "
            "simulation's beat records (62 bits); use a smaller emit width"
        )

    return tuple(layer_timing(network, params, k).emit_width for k in range(network.depth))


def prepare(
    network: Network,
    inputs: np.ndarray,
    d: Design,
    run_dir: Path,
    *,
    slack: float = 2.0,
    valid: float = 1.0,
    ready: float = 1.0,
    simulator: str = "",
    progress: Path | None = None,
    per_cycle: bool = False,
    ready_seed: int = -1,
) -> Path:
    """Write the :class:`sim.tb.files.NetworkStimulus` of :mod:`sim.tb.network` into ``run_dir``.

    Returns its path (what :data:`sim.tb.files.STIMULUS_ENV` names for the testbench).
    """
    x = network.check_inputs(inputs)
    if d.manifest.network.digest != network.digest():
        raise ValueError("design was generated from another network (digest mismatch)")
    layers = d.manifest.layers
    fmt = layers[0].input_format
    words, starts = [], []
    if isinstance(network, VisionTransformer):
        samples, names = vit_input_steps(network, x), network.site_names
    elif isinstance(network, ConvNet):
        samples, names = conv_sites.input_steps(network, x), network.site_names
    else:
        samples = input_steps(network, x, None, 0)
        names = tuple(network.layer_name(k) for k in range(network.depth))
    for steps in samples:
        starts.append(len(words))
        for step in steps:
            words.extend(step.words(fmt))
    if fmt.width > 62:
        raise ValueError(f"input payload of {fmt.width} bits does not fit the stimulus file")
    run_dir.mkdir(parents=True, exist_ok=True)
    return NetworkStimulus(
        words=np.array(words, dtype=np.int64),
        sample_starts=np.array(starts, dtype=np.int64),
        n_out=tuple(layer.n_out for layer in layers),
        layer_names=names,
        formats=tuple(layer.output_format for layer in layers),
        emit_widths=_emit_widths(network, d),
        probe=BitLayout.from_json([asdict(f) for f in d.manifest.probe_layout]),
        digest=network.digest(),
        max_cycles=_max_cycles(network, d, x, slack),
        valid=float(valid),
        ready=float(ready),
        ready_seed=int(ready_seed),
        simulator=simulator,
        progress=str(progress.resolve()) if progress is not None else "",
        per_cycle=bool(per_cycle),
    ).save(run_dir / STIMULUS)


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
    waves: Path | None = None  #: the waveform file, when requested (in :attr:`run_dir`)
    edge0_ns: float = 0.0  #: simulation time of the clock edge ending cycle 0 (period 10 ns)
    run_dir: Path | None = None  #: the run folder, if it was kept (waves, or the caller's)
    threads: int = 1  #: threads of the Verilator model (1 on Icarus)

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


def merge_runs(runs: Sequence[HardwareRun], *, run_seconds: float | None = None) -> HardwareRun:
    """The runs of consecutive chunks of one batch (shards) as one run, in the given order.

    Spikes, busy flags, steps and ``capped`` are those of one run on the whole batch, bit for
    bit (an inference's spikes do not depend on its neighbours; :meth:`ir.Trace.concat`).
    Cycle stamps cannot be: each shard ran from its own reset, so the first inference of a
    shard starts on an empty pipeline where one back-to-back run would have overlapped it with
    the previous inference. They are **re-based** instead: every cycle of shard ``k`` (cycle
    stamps, ``first_input``, ``done``) is shifted by the ``total_cycles`` of the shards before
    it, as if the shards had run one after another with a reset in between; counter readings
    likewise add the earlier shards' final readings (modulo 2^32). So the first shard's stamps
    equal one run's, stamps increase across shards, and :attr:`HardwareRun.latency` of each
    inference is what its shard measured. ``sim_seconds`` is summed (simulator time);
    ``run_seconds`` is the given wall time, else the longest shard's.
    """
    runs = list(runs)
    if not runs:
        raise ValueError("merge_runs needs at least one run")
    wrap = 1 << 32
    offsets = [int(o) for o in np.cumsum([0] + [r.total_cycles for r in runs[:-1]])]
    readings = [np.zeros_like(runs[0].final_counters)] + [r.final_counters for r in runs]
    counts = np.cumsum(np.stack(readings), axis=0)  # [shards + 1, D, 4]

    def shifted(a: np.ndarray, offset: int) -> np.ndarray:
        return np.where(a >= 0, a + offset, a)

    traces = []
    for r, offset in zip(runs, offsets, strict=True):
        t = r.trace
        if t.step_cycles is not None:
            t = replace(
                t,
                step_cycles=tuple(shifted(a, offset) for a in t.step_cycles),
                spike_cycles=None
                if t.spike_cycles is None
                else tuple(shifted(a, offset) for a in t.spike_cycles),
            )
        traces.append(t)
    first = runs[0]
    return HardwareRun(
        trace=Trace.concat(traces),
        first_input=np.concatenate([r.first_input + o for r, o in zip(runs, offsets, strict=True)]),
        done=np.concatenate([r.done + o for r, o in zip(runs, offsets, strict=True)]),
        counters=np.concatenate(
            [(r.counters + c) % wrap for r, c in zip(runs, counts[:-1], strict=True)]
        ),
        final_counters=counts[-1] % wrap,
        total_cycles=int(sum(r.total_cycles for r in runs)),
        sim_seconds=float(sum(r.sim_seconds for r in runs)),
        run_seconds=float(max(r.run_seconds for r in runs) if run_seconds is None else run_seconds),
        simulator=first.simulator,
        edge0_ns=first.edge0_ns,
        threads=first.threads,
    )


def simulate(
    network: Network,
    inputs: np.ndarray,
    params: DesignParams | None = None,
    *,
    sim: str = "verilator",
    lanes: int | Sequence[int] | None = None,
    root: str | Path = "build/designs",
    backend: str = "proc",
    waves: bool = False,
    valid: float = 1.0,
    ready: float = 1.0,
    seed: int | None = None,
    run_dir: str | Path | None = None,
    on_progress: Callable[[int], None] | None = None,
    design_dir: Design | None = None,
    pipeline: int | None = None,
    per_cycle: bool = False,
    threads: int | None = None,
) -> HardwareRun:
    """Simulate ``inputs`` on the RTL of ``network``; return the hardware trace and cycle facts.

    The design is :func:`design` of ``params`` (or ``lanes`` and ``pipeline``: not both) and
    ``backend`` under ``root``, or
    ``design_dir`` when given (used as it is: its own parameters apply, its files are not
    checked against the manifest, so a deliberately edited design can be simulated).

    The simulation runs in ``run_dir`` if given (the caller keeps it; do not share one between
    concurrent runs), else in a new folder under the design's ``runs/``, removed when the
    results are read, unless waves were asked for (``waves`` or the ``WAVES`` environment
    variable): it is then kept, and :attr:`HardwareRun.waves` names the waveform file in it.
    Safe to call concurrently, from threads or processes, on one ``root``.

    Without pauses (``valid`` and ``ready`` 1) the harness of :mod:`sim.harness` streams and
    records in the simulator and the testbench wakes once per :data:`sim.harness.CHUNK` cycles;
    ``per_cycle`` forces the one-``await``-per-cycle loop instead (same results, cycle for cycle;
    for tests of the harness). With ``seed`` the output's pauses (``ready`` < 1) of an MLP are
    ``hw.model.network_model.OutputReady(ready, seed)``'s, so ``network_schedule(…,
    out_ready=OutputReady(ready, seed))`` models the run cycle for cycle.

    ``threads``: Verilator only, the threads of the simulated model (1 to the CPUs this process
    may use); by default 2 for a large design and 1 for a small one
    (:func:`sim.harness.verilator_threads`: the digits ViT runs 2.9× faster on two threads, the
    digits MLP 2× slower). Results are the same on any count; a change rebuilds the model.

    A run that does not finish every inference still returns (and saves) the trace of what the
    hardware did, with unfinished samples marked ``capped``: compare it to find where it went
    wrong. Any other testbench failure raises :class:`sim.runner.SimulationError` (its run
    folder is kept: the message names the log in it); a failed build raises
    :class:`sim.runner.BuildError`. On ``KeyboardInterrupt`` (or any exception from
    ``on_progress``) the simulator's process group is killed and the run folder removed before
    the exception propagates; if the calling process is killed, the simulator dies with it.
    """
    if sim not in SIMULATORS:
        raise ValueError(f"sim must be one of {', '.join(SIMULATORS)}, not {sim!r}")
    for name, p in (("valid", valid), ("ready", ready)):
        if not 0.0 < p <= 1.0:
            raise ValueError(f"{name} must be a probability in (0, 1], not {p!r}")
    if threads is not None:
        if sim != "verilator":
            raise ValueError(f"threads applies to Verilator only, not to {sim}")
        verilator_threads(Path(), threads)  # checked before anything is built
    waves = _waves_from_env(waves)
    with contextlib.ExitStack() as stack:
        if design_dir is not None:
            d = design_dir
            stack.enter_context(FileLock(d.directory / LOCK)).shared()
        else:
            params = DesignParams.coerce(network, params, lanes=lanes, pipeline=pipeline)
            d = stack.enter_context(_locked_design(network, root, params, backend=backend))

        def run_in(folder: Path) -> HardwareRun:
            return _run(network, inputs, d, folder, sim, waves, valid, ready, seed, on_progress,
                        per_cycle, threads)  # fmt: skip

        if run_dir is not None:
            run_dir = Path(run_dir)
            run_dir.mkdir(parents=True, exist_ok=True)
            for stale in (STIMULUS, "hardware.npz", "inferences.npz", "progress", *HARNESS_FILES):
                (run_dir / stale).unlink(missing_ok=True)
            return run_in(run_dir)
        runs = d.directory / RUNS
        runs.mkdir(exist_ok=True)
        _sweep(runs)
        own = Path(tempfile.mkdtemp(prefix=f"{sim}-", dir=runs))
        umask = os.umask(0o022)
        os.umask(umask)
        own.chmod(0o777 & ~umask)  # mkdtemp's 0700 would outlive the run when it is kept
        keep = False
        try:
            with _claim(own):
                try:
                    run = run_in(own)
                    keep = waves
                except SimulationError:
                    keep = True  # its message names the simulator log in the run folder
                    raise
                finally:
                    _release(own, keep)  # while .active is still locked: no sweep races it
        finally:
            if not keep:
                shutil.rmtree(own, ignore_errors=True)  # also when claiming it failed
        return run if keep else replace(run, run_dir=None)


@contextlib.contextmanager
def _claim(run_dir: Path) -> Iterator[None]:
    """Hold ``run_dir/.active`` locked while the block runs (:func:`_sweep` spares the folder)."""
    fresh = run_dir / f"{_ACTIVE}-new"
    fd = os.open(fresh, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.replace(fresh, run_dir / _ACTIVE)  # visible only once locked
        yield
    finally:
        os.close(fd)


def _release(run_dir: Path, keep: bool) -> None:
    """Remove a run folder, or keep it and mark it finished (no longer swept)."""
    if keep:
        (run_dir / _ACTIVE).unlink(missing_ok=True)
    else:
        shutil.rmtree(run_dir, ignore_errors=True)


def _sweep(runs: Path) -> None:
    """Remove run folders whose process is gone (killed before it could clean up)."""
    for folder in runs.iterdir():
        try:
            fd = os.open(folder / _ACTIVE, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            continue  # finished and kept, or not claimed yet
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if os.fstat(fd).st_nlink:  # still named .active: its owner died
                shutil.rmtree(folder, ignore_errors=True)
        except BlockingIOError:
            pass  # running
        finally:
            os.close(fd)


def _run(
    network: Network,
    inputs: np.ndarray,
    d: Design,
    run_dir: Path,
    sim: str,
    waves: bool,
    valid: float,
    ready: float,
    seed: int | None,
    on_progress: Callable[[int], None] | None,
    per_cycle: bool = False,
    threads: int | None = None,
) -> HardwareRun:
    progress = run_dir / "progress"
    stimulus = prepare(
        network,
        inputs,
        d,
        run_dir,
        valid=valid,
        ready=ready,
        simulator=sim,
        progress=progress,
        per_cycle=per_cycle,
        # a seeded run's output pauses are OutputReady(ready, seed)'s: the network model's too
        ready_seed=-1 if seed is None else seed,
    )
    env = {
        STIMULUS_ENV: str(stimulus.resolve()),
        CALLER_PID_ENV: str(os.getpid()),  # the testbench ends itself when this one is gone
    }
    last = -1

    def poll() -> None:
        nonlocal last
        try:
            done = int(progress.read_text() or 0)
        except (OSError, ValueError):
            done = 0
        if done != last:
            on_progress(done)
            last = done

    threads = verilator_threads(d.verilog, threads) if sim == "verilator" else 1
    t0 = time.perf_counter()
    error: SimulationError | None = None
    harness = write_harness(
        d.directory / "build" / "harness.v",
        harness_verilog(
            d.toplevel,
            [(p.name, p.direction, p.width) for p in d.manifest.ports],
            [(f.field, f.offset, f.width) for f in d.manifest.probe_layout],
            d.manifest.layers[-1].output_format,
        ),
    )
    try:
        run_cocotb_isolated(
            poll=poll if on_progress is not None else None,
            sim=sim,
            sources=[d.verilog, harness],
            toplevel=HARNESS,
            build_args=verilator_args(threads) if sim == "verilator" else (),
            test_module=TESTBENCH,
            # one build per thread count: runs on different counts never rebuild each other's
            build_dir=d.directory / "build" / (f"threads{threads}" if threads > 1 else ""),
            test_dir=run_dir,
            extra_env=env,
            waves=waves,
            seed=seed,
        )
    except SimulationError as e:
        error = e
    run_seconds = time.perf_counter() - t0
    hw_path = run_dir / "hardware.npz"
    if error is not None and not hw_path.is_file():
        raise error
    trace = Trace.load(hw_path)
    if isinstance(network, ConvNet):
        trace = c_order(network, trace)
    facts = NetworkResult.load(run_dir / "inferences.npz")
    if on_progress is not None:
        on_progress(len(facts.done))
    depth = len(d.manifest.layers)
    return HardwareRun(
        trace=trace,
        first_input=facts.first_input,
        done=facts.done,
        counters=facts.counters.reshape(-1, depth, 4),
        final_counters=facts.final_counters.reshape(depth, 4),
        total_cycles=facts.total_cycles,
        sim_seconds=facts.wall_seconds,
        run_seconds=run_seconds,
        simulator=sim,
        waves=_wave_file(run_dir) if waves else None,
        edge0_ns=facts.edge0_ns,
        run_dir=run_dir,
        threads=threads,
    )


def c_order(net: ConvNet, trace: Trace) -> Trace:
    """A CNN's hardware trace with every site's neurons in C order (its cores emit HWC:
    :func:`hw.model.conv_sites.core_order`), as the reference's."""

    def reorder(arrays):
        if arrays is None:
            return None
        out = []
        for k, a in enumerate(arrays):
            c = np.empty_like(a)
            c[..., conv_sites.core_order(net, k)] = a
            out.append(c)
        return tuple(out)

    return replace(trace, spikes=reorder(trace.spikes), spike_cycles=reorder(trace.spike_cycles))


def _wave_file(run_dir: Path) -> Path | None:
    found = [p for ext in ("fst", "vcd") for p in run_dir.glob(f"*.{ext}")]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None
