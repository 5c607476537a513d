"""The testbench kit: clock and reset, stream driver and sink, beat decoding, trace assembly.

Shared by every cocotb testbench of the project (:mod:`sim.tb.network`, :mod:`sim.tb.layer_core`,
:mod:`sim.tb.neuron_array`), in the manner of cocotbext-axi's ``AxiStreamSource``/``Sink`` with
``set_pause_generator``, but shaped for speed: a testbench runs **one** loop with one ``await``
of the :class:`FallingEdge` trigger :func:`start` returns, and calls :meth:`Driver.step` and
:meth:`Sink.step` once per cycle (whole-vector reads and writes, nothing decoded in the loop).
After the run :func:`decode_stream` turns the recorded beats back into the golden event lists of
:mod:`hw.model.events` (its exact inverse, through :meth:`EventFormat.unpack`), and
:func:`stream_arrays` / :func:`with_layer` assemble them into an :class:`ir.Trace` with cycle
stamps. Cycle 0 is the first cycle after reset.

Runs in the simulator process: numpy, cocotb, :mod:`ir` and :mod:`hw.model` only.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge

from spikezip.hw.model.events import EventFormat, Step
from spikezip.ir import Trace
from spikezip.sim.runner import WORKER_PID_ENV
from spikezip.sim.tb.files import CALLER_PID_ENV, stimulus_path

__all__ = [
    "Driver",
    "Sink",
    "StreamStep",
    "Watchdog",
    "decode_stream",
    "pauses",
    "start",
    "stream_arrays",
    "with_layer",
]

PERIOD_NS = 10  #: clock period


async def start(dut, idle: Mapping[str, int], *, cycles: int = 2) -> FallingEdge:
    """Start the clock, hold ``rst`` for ``cycles`` cycles with the ``idle`` inputs; return the
    falling-edge trigger to await once per cycle (the first cycle after reset starts now)."""
    Clock(dut.clk, PERIOD_NS, unit="ns", impl="gpi").start()
    edge = FallingEdge(dut.clk)
    for name, value in idle.items():
        getattr(dut, name).value = value
    dut.rst.value = 1
    for _ in range(cycles):
        await edge
    dut.rst.value = 0
    return edge


def pauses(probability: float, rnd=random.random) -> Iterator[bool] | None:
    """A pause generator: ``True`` (pause) in a cycle with ``1 - probability``; ``None`` (never
    pause) for ``probability >= 1``. Seeded by cocotb's ``COCOTB_RANDOM_SEED``."""
    if probability >= 1.0:
        return None

    def gen() -> Iterator[bool]:
        while True:
            yield rnd() >= probability

    return gen()


class Driver:
    """Offers ``words`` in order on a ``valid``/``payload`` stream, pausing as ``pause`` says.

    Call :meth:`step` once per cycle with the sink's ``ready`` of that cycle (``hold``: offer
    nothing, for sinks without ``ready`` that must not see a beat yet); it returns whether a
    beat transfers at the coming edge. :attr:`sent` counts transferred words.
    """

    __slots__ = ("_offered", "_shown", "pause", "payload", "sent", "valid", "words")

    def __init__(self, valid, payload, words: Sequence[int], pause: Iterator[bool] | None):
        self.valid, self.payload, self.pause = valid, payload, pause
        self.words = [int(w) for w in words]
        self.sent, self._offered, self._shown = 0, -1, False

    @property
    def done(self) -> bool:
        return self.sent >= len(self.words)

    def step(self, ready, hold: bool = False) -> bool:
        ptr = self.sent
        valid = ptr < len(self.words) and not hold and (self.pause is None or not next(self.pause))
        if valid and self._offered != ptr:
            self.payload.value = self.words[ptr]
            self._offered = ptr
        if valid != self._shown:
            self.valid.value = valid
            self._shown = valid
        if valid and ready:
            self.sent = ptr + 1
            return True
        return False


class Sink:
    """Drives ``ready`` of a stream, pausing as ``pause`` says; records accepted beats.

    :meth:`step` takes the stream's ``valid`` of the cycle and returns whether a beat transfers
    at the coming edge; with a ``payload`` handle, :attr:`beats` records ``(cycle, payload)``
    of every transferred beat (read as one integer, decoded after the run).
    """

    __slots__ = ("_shown", "beats", "pause", "payload", "ready")

    def __init__(self, ready, pause: Iterator[bool] | None, payload=None):
        self.ready, self.payload, self.pause = ready, payload, pause
        self.beats: list[tuple[int, int]] = []
        ready.value = 1
        self._shown = True

    def step(self, valid, cycle: int = 0) -> bool:
        ready = self.pause is None or not next(self.pause)
        if ready != self._shown:
            self.ready.value = ready
            self._shown = ready
        if ready and valid:
            if self.payload is not None:
                self.beats.append((cycle, int(self.payload.value)))
            return True
        return False


# -- decoding and trace assembly (pure) ----------------------------------------------------------
@dataclass(frozen=True)
class StreamStep:
    """One decoded time step of a stream: the golden :class:`Step` and its cycle stamps."""

    step: Step
    cycle: int  #: cycle of the marker
    event_cycles: np.ndarray  #: cycle of each event, in stream order


def decode_stream(
    beats: Sequence[tuple[int, int]], fmt: EventFormat, batch: int
) -> list[list[StreamStep]]:
    """Per sample, the steps of a stream of ``(cycle, payload)`` beats.

    The inverse of the golden event lists: a sample's steps end with its first marker whose
    busy flag is clear (:func:`hw.model.events.output_steps`); beats after ``batch`` samples,
    and events after the last marker, are dropped.
    """
    out: list[list[StreamStep]] = [[] for _ in range(batch)]
    b, idx, val, cyc = 0, [], [], []
    for cycle, word in beats:
        if b >= batch:
            break
        marker, index, value, busy = fmt.unpack(word)
        if not marker:
            idx.append(index)
            val.append(value)
            cyc.append(cycle)
            continue
        step = Step(np.array(idx, dtype=np.int64), np.array(val, dtype=np.int64), busy)
        out[b].append(StreamStep(step, cycle, np.array(cyc, dtype=np.int64)))
        idx, val, cyc = [], [], []
        if not busy:
            b += 1
    return out


def stream_arrays(samples: list[list[StreamStep]], n: int, n_steps: int) -> dict[str, np.ndarray]:
    """Trace arrays of one layer from its decoded steps (steps beyond ``n_steps`` dropped).

    ``spikes`` and ``spike_cycles`` ``[B, T, n]`` (``-1``: no spike), ``busy`` and
    ``step_cycles`` ``[B, T]``, ``steps`` ``[B]`` (steps emitted per sample).
    """
    batch = len(samples)
    spikes = np.zeros((batch, n_steps, n), dtype=np.int64)  # (graded: ±2^k; the Trace narrows)
    spike_cycles = np.full((batch, n_steps, n), -1, dtype=np.int64)
    busy = np.zeros((batch, n_steps), dtype=bool)
    step_cycles = np.full((batch, n_steps), -1, dtype=np.int64)
    for b, sample in enumerate(samples):
        for t, s in enumerate(sample[:n_steps]):
            keep = s.step.indices < n
            i = s.step.indices[keep]
            spikes[b, t, i] = s.step.values[keep]
            spike_cycles[b, t, i] = s.event_cycles[keep]
            busy[b, t], step_cycles[b, t] = s.step.busy, s.cycle
    steps = np.array([len(s) for s in samples], dtype=np.int64)
    return {
        "spikes": spikes,
        "spike_cycles": spike_cycles,
        "busy": busy,
        "step_cycles": step_cycles,
        "steps": steps,
    }


def with_layer(golden: Trace, layer: int, source: str, **arrays: np.ndarray) -> Trace:
    """``golden`` with ``layer`` replaced by what the RTL did.

    ``arrays`` may hold that layer's ``spikes``, ``membranes``, ``tracers`` (``[B, T, n]``),
    ``busy``, ``step_cycles`` (``[B, T]``) and ``spike_cycles``; the other layers' cycle stamps
    are ``-1`` (not simulated).
    """
    shape2 = golden.busy.shape[:2]

    def put(name: str, layers, fill=None):
        mine = arrays.get(name)
        return tuple(
            mine if j == layer and mine is not None else (a if fill is None else fill(a))
            for j, a in enumerate(layers)
        )

    busy = np.array(golden.busy)
    if "busy" in arrays:
        busy[:, :, layer] = arrays["busy"]
    unstamped = [np.zeros(shape2)] * golden.depth
    extra = {}
    if "spike_cycles" in arrays:
        extra["spike_cycles"] = put(
            "spike_cycles", golden.spikes, lambda a: np.full(a.shape, -1, dtype=np.int64)
        )
    return Trace(
        network_digest=golden.network_digest,
        spikes=put("spikes", golden.spikes),
        busy=busy,
        steps=golden.steps,
        capped=golden.capped,
        membranes=put("membranes", golden.membranes),
        tracers=put("tracers", golden.tracers),
        step_cycles=put("step_cycles", unstamped, lambda a: np.full(shape2, -1, dtype=np.int64)),
        layer_names=golden.layer_names,
        source=source,
        **extra,
    )


# -- the calling process ------------------------------------------------------------------------
#: The caller of :func:`sim.simulate.simulate` and the worker of
#: :func:`sim.runner.run_cocotb_isolated`.
WATCHED_ENV = (CALLER_PID_ENV, WORKER_PID_ENV)


def _alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie (one that died, not yet reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, under another user
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return True  # no /proc: existence is all we can tell


class Watchdog:
    """Ends the simulator at once when a process of :data:`WATCHED_ENV` is gone (nobody would
    read the results); :meth:`check` every :attr:`every` cycles."""

    every = 2048

    def __init__(self, name: str) -> None:
        watched = (os.environ.get(v, "") for v in WATCHED_ENV)
        self.pids = [int(pid) for pid in watched if pid.isdigit()]
        self.name = name

    def check(self) -> None:
        if not all(_alive(pid) for pid in self.pids):
            print(f"{self.name}: one of processes {self.pids} is gone; ending", flush=True)
            os._exit(3)


# -- a core on the stream protocol: run it, then score its output --------------------------------
async def run_streams(edge, drivers, sink: Sink, o_valid, s, *, name: str) -> int:
    """Clock ``drivers`` (``(Driver, ready signal)`` pairs) and ``sink`` one await per cycle until
    every expected output beat of the stimulus ``s`` arrived (``s.out_words``, ``s.out_cycle``,
    ``s.valid``, ``s.ready``) or a limit generous for its pauses passed; return the cycles run."""
    n_out = len(s.out_words)
    end = int(s.out_cycle.max()) if n_out else 0
    limit = int((end + 100) * 4 / (min(s.valid, s.ready) or 1.0)) + 1000
    watchdog, cycle = Watchdog(name), 0
    while len(sink.beats) < n_out and cycle < limit:
        for driver, ready in drivers:
            driver.step(ready.value)
        sink.step(o_valid.value, cycle)
        await edge
        cycle += 1
        if cycle % watchdog.every == 0:
            watchdog.check()
    return cycle


def check_beats(s, got: list[tuple[int, int]], cycles: int, name: str) -> None:
    """The output payloads, then (``s.check_cycles``) their cycles, against the stimulus ``s``
    (``out_format``, ``out_words``, ``out_sample``, ``out_step``, ``out_index`` with ``-1`` for
    markers, ``out_cycle``); the first mismatch names sample, ``name``, index and time step."""
    fmt = s.out_format
    for j, ((cycle, word), exp) in enumerate(zip(got, s.out_words.tolist(), strict=False)):
        index = int(s.out_index[j])
        what = f"index {index}" if index >= 0 else "end-of-step marker"
        where = f"sample {int(s.out_sample[j])}, {name}, {what}, time step {int(s.out_step[j])}"
        if word != exp:
            raise AssertionError(
                f"first divergence: {where}, cycle {cycle}: expected {fmt.unpack(exp)}, "
                f"actual {fmt.unpack(word)}"
            )
        if s.check_cycles and cycle != s.out_cycle[j]:
            raise AssertionError(
                f"cycle model mismatch: {where}: expected cycle {int(s.out_cycle[j])}, "
                f"actual {cycle}"
            )
    if len(got) != len(s.out_words):
        raise AssertionError(
            f"{name}: {len(got)} output beats, expected {len(s.out_words)} "
            f"(simulated {cycles} cycles)"
        )


async def single_stream(dut, stimulus_type) -> None:
    """The whole testbench of a core with one input stream ``i`` and one output stream ``o``:
    load the stimulus (a :class:`sim.tb.files.StreamStimulus` subclass), reset, drive and collect
    one await per cycle, then score every payload and (``check_cycles``) every cycle."""
    s = stimulus_type.load(stimulus_path())
    dut._log.info("testbench %s", __file__)
    edge = await start(dut, {"i__valid": 0, "i__payload": 0, "o__ready": 0})
    driver = Driver(dut.i__valid, dut.i__payload, s.in_words, pauses(s.valid))
    sink = Sink(dut.o__ready, pauses(s.ready), dut.o__payload)
    cycle = await run_streams(edge, [(driver, dut.i__ready)], sink, dut.o__valid, s, name=s.name)
    check_beats(s, sink.beats, cycle, s.name)
    dut._log.info("%d output beats in %d cycles", len(s.out_words), cycle)
