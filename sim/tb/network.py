"""cocotb testbench of a whole network (``hw.cores.network_core.NetworkCore`` with ``probe=True``).

Reads a :class:`sim.tb.files.NetworkStimulus` (written by :func:`sim.simulate.prepare`; its
folder is the run folder). Per cycle, on one falling-edge trigger: one read of the probe vector
(every layer's transfers of the coming edge, :mod:`hw.cores.network_core`), the input
:class:`~sim.tb.kit.Driver` and the output :class:`~sim.tb.kit.Sink` under their pause
generators (``valid``/``ready`` of the stimulus, seeded by ``COCOTB_RANDOM_SEED``; the output's
from the stimulus's ``ready_seed`` when it has one: ``hw.model.network_model.OutputReady``, the
pattern the network model reproduces). After the run
every layer's beats are decoded into a hardware :class:`ir.Trace` (spikes, cumulative busy
flags, steps, cycle stamps) saved as ``hardware.npz``, and the per-inference facts (first input
cycle, done cycle, counters read the cycle after done) as a :class:`~sim.tb.files.NetworkResult`
in ``inferences.npz``. The :class:`~sim.tb.kit.Watchdog` ends the simulator when its caller is
gone; the stimulus's ``progress`` file gets the number of finished inferences.

Two ways to run, with equal results cycle for cycle (tests/sim/test_harness.py):

* **Free-running** (no pauses: ``valid`` and ``ready`` both 1, the default): the toplevel is the
  harness of :mod:`sim.harness`, which streams the input words from a file and writes every beat
  with its cycle; the testbench only wakes every :data:`sim.harness.CHUNK` cycles to count the
  finished inferences. The per-cycle loop above is then Verilog, not Python.
* **Per cycle** (pause generators): the loop described above, one ``await`` per cycle.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from pathlib import Path

import cocotb
import numpy as np
from cocotb.triggers import Timer
from cocotb.utils import get_sim_time

from spikezip.hw.model.events import BeatFormat, EventFormat
from spikezip.hw.model.network_model import OutputReady
from spikezip.ir import Trace
from spikezip.ir._io import atomic_write_text
from spikezip.sim.harness import BEATS_FILE, CHUNK, FACTS_FILE, WORDS_FILE
from spikezip.sim.tb import kit
from spikezip.sim.tb.files import NetworkResult, NetworkStimulus, stimulus_path


def _words(value: int, n: int) -> list[int]:
    """The ``n`` 32-bit counters of the counters vector."""
    return [(value >> (32 * c)) & 0xFFFFFFFF for c in range(n)]


def probe_beats(stim: NetworkStimulus, rec: list[int]) -> list[list[tuple[int, int]]]:
    """Per core, the ``(cycle, payload)`` beats in the recorded probe vectors (``fire`` of the
    last core above the probe)."""
    probe, depth = stim.probe, stim.depth
    fires = [probe.bit(f"fire{k}") for k in range(depth - 1)] + [1 << probe.width]
    beats: list[list[tuple[int, int]]] = [[] for _ in range(depth)]
    any_fire = sum(fires)
    for cycle, p in enumerate(rec):
        if p & any_fire:
            for k in range(depth):
                if p & fires[k]:
                    beats[k].append((cycle, probe.get(p, f"beat{k}")))
    return beats


def file_beats(path: Path, depth: int, end: int) -> list[list[tuple[int, int]]]:
    """Per core, the ``(cycle, payload)`` beats the harness wrote (cycles before ``end``)."""
    text = path.read_bytes()
    flat = np.fromstring(text, dtype=np.int64, sep=" ")  # no per-token objects: ~8 B a number
    lines = text.count(b"\n")
    if flat.size != 3 * lines:
        raise RuntimeError(f"{path}: {flat.size} numbers on {lines} lines (3 each)")
    flat = flat.reshape(-1, 3)
    flat = flat[flat[:, 0] < end]
    flat = flat[np.argsort(flat[:, 1], kind="stable")]  # per core, in cycle order
    bounds = np.searchsorted(flat[:, 1], np.arange(depth + 1))
    return [
        list(zip(flat[a:b, 0].tolist(), flat[a:b, 2].tolist(), strict=True))
        for a, b in itertools.pairwise(bounds)
    ]


def expand_wide(
    beats: list[tuple[int, int]], fmt: EventFormat, width: int
) -> list[tuple[int, int]]:
    """A core's wide beats (up to ``width`` events each, ``hw.model.events.BeatFormat``) as
    one ``fmt`` payload per event or marker, each with its beat's cycle."""
    if width == 1:
        return beats
    wide, out = BeatFormat(fmt, width), []
    for cycle, word in beats:
        marker, evs, busy = wide.unpack(word)
        if marker:
            out.append((cycle, fmt.pack(marker=True, busy=busy)))
        out.extend((cycle, fmt.pack(marker=False, index=i, value=v)) for i, v in evs)
    return out


def hardware_trace(stim: NetworkStimulus, beats: list[list[tuple[int, int]]], source: str) -> Trace:
    """Decode every core's beats into the hardware trace."""
    if stim.emit_widths:
        beats = [
            expand_wide(b, f, w)
            for b, f, w in zip(beats, stim.formats, stim.emit_widths, strict=True)
        ]
    batch = stim.samples
    decoded = [kit.decode_stream(b, f, batch) for b, f in zip(beats, stim.formats, strict=True)]
    n_steps = max([len(s) for layer in decoded for s in layer] + [1])
    layers = [kit.stream_arrays(d, n, n_steps) for d, n in zip(decoded, stim.n_out, strict=True)]
    last = decoded[-1]
    return Trace(
        network_digest=stim.digest,
        spikes=tuple(a["spikes"] for a in layers),
        # cumulative in layer order: a chain's markers already are; a ViT site's marker flags
        # only the sites it depends on (docs/transformer.md, "ViT network top")
        busy=np.logical_or.accumulate(np.stack([a["busy"] for a in layers], axis=2), axis=2),
        steps=np.maximum(layers[-1]["steps"], 1),
        capped=np.array([not s or s[-1].step.busy for s in last], dtype=bool),
        step_cycles=tuple(a["step_cycles"] for a in layers),
        spike_cycles=tuple(a["spike_cycles"] for a in layers),
        layer_names=stim.layer_names,
        source=source,
    )


@dataclass
class _Run:
    """What either loop found: the facts of :class:`~sim.tb.files.NetworkResult` and the beats."""

    beats: list[list[tuple[int, int]]]
    first_in: list[int]
    done_at: list[int]
    counters: list[int]
    final_counters: int
    cycles: int


async def _per_cycle(dut, stim: NetworkStimulus, edge, progress: Path | None) -> _Run:
    """One ``await`` per cycle: the driver and the sink under their pause generators."""
    probe, fmt = stim.probe, stim.formats[-1]
    driver = kit.Driver(dut.i__valid, dut.i__payload, stim.words, kit.pauses(stim.valid))
    pauses = kit.pauses(stim.ready)
    if stim.ready_seed >= 0 and pauses is not None:  # the network model's OutputReady
        pauses = OutputReady(stim.ready, stim.ready_seed).pauses()
    sink = kit.Sink(dut.o__ready, pauses)
    watchdog = kit.Watchdog("tb.network")
    ready_bit, valid_bit = probe.bit("in_ready"), probe.bit("out_valid")
    beat_off = probe.fields[f"beat{stim.depth - 1}"][0]
    final_mask = fmt.pack(marker=True, busy=True) << beat_off
    final_val = fmt.pack(marker=True) << beat_off
    fire_shift, starts = probe.width, set(stim.sample_starts.tolist())
    sig_probe, sig_counters = dut.probe, dut.counters
    rec: list[int] = []
    first_in, done_at, counters = [], [], []
    done, cycle, read_counters = 0, 0, False
    report_every = max(1, stim.samples // 100)
    while done < stim.samples and cycle < stim.max_cycles:
        if read_counters:  # the cycle after done: counters include the final marker
            counters.append(int(sig_counters.value))
            read_counters = False
        p = int(sig_probe.value)
        if driver.step(p & ready_bit) and driver.sent - 1 in starts:
            first_in.append(cycle)
        fire_last = sink.step(p & valid_bit)
        if fire_last and p & final_mask == final_val:
            done += 1
            done_at.append(cycle)
            read_counters = True
            if progress is not None and done % report_every == 0:
                atomic_write_text(progress, str(done))
        rec.append(p | (fire_last << fire_shift))
        await edge
        cycle += 1
        if not cycle % watchdog.every:
            watchdog.check()
    if read_counters:
        counters.append(int(sig_counters.value))
    final = int(sig_counters.value)
    return _Run(probe_beats(stim, rec), first_in, done_at, counters, final, cycle)


async def _free_running(dut, stim: NetworkStimulus, progress: Path | None) -> _Run:
    """The harness streams and records (:mod:`sim.harness`); wake every ``CHUNK`` cycles."""
    watchdog = kit.Watchdog("tb.network")
    chunk = Timer(CHUNK * kit.PERIOD_NS, unit="ns")
    one = Timer(kit.PERIOD_NS, unit="ns")
    finals, cycle, shown = 0, 0, -1
    while finals < stim.samples and cycle <= stim.max_cycles:
        await chunk
        finals, cycle = int(dut.h_finals.value), int(dut.h_cycle.value)
        watchdog.check()
        if progress is not None and finals != shown:
            atomic_write_text(progress, str(min(finals, stim.samples)))
            shown = finals
    for _ in range(2):  # the counters line of the cycle after the last final marker
        await one
    final = int(dut.counters.value)
    dut.h_flush.value = 1
    await one
    dut.h_flush.value = 0
    await one
    facts = {"I": [], "D": [], "C": [], "L": []}
    for line in Path(FACTS_FILE).read_text().splitlines():
        kind, *rest = line.split()
        facts[kind].append(rest)
    # the per-cycle loop's bounds: the cycle limit, or the cycle after the last final marker
    done_at = [int(c) for (c,) in facts["D"] if int(c) < stim.max_cycles][: stim.samples]
    end = done_at[-1] + 1 if len(done_at) == stim.samples else stim.max_cycles
    accepted = [int(c) for (c,) in facts["I"] if int(c) < end]
    first_in = [accepted[s] for s in stim.sample_starts.tolist() if s < len(accepted)]
    counters = [int(v, 16) for c, v in facts["C"] if int(c) <= end][: len(done_at)]
    if len(done_at) == stim.samples:
        final = counters[-1] if counters else final
    elif facts["L"]:
        final = int(facts["L"][0][1], 16)
    beats = file_beats(Path(BEATS_FILE), stim.depth, end)
    return _Run(beats, first_in, done_at, counters, final, end)


@cocotb.test()
async def run_network(dut):
    """Drive every inference; record every layer's transfers; write the hardware trace."""
    path = stimulus_path()
    stim = NetworkStimulus.load(path)
    free = not stim.per_cycle and stim.valid >= 1.0 and stim.ready >= 1.0 and hasattr(dut, "h_auto")
    if free:
        if Path.cwd().resolve() != path.parent.resolve():
            raise RuntimeError(f"the simulator runs in {Path.cwd()}, not in {path.parent}")
        Path(WORDS_FILE).write_text("".join(f"{int(w):x}\n" for w in stim.words))
    idle = {"i__valid": 0, "i__payload": 0, "o__ready": 0}
    if hasattr(dut, "h_auto"):
        idle |= {"h_auto": int(free), "h_flush": 0, "h_limit": stim.max_cycles}
    edge = await kit.start(dut, idle)
    progress = Path(stim.progress) if stim.progress else None
    t0 = time.perf_counter()
    edge0_ns = get_sim_time("ns") + kit.PERIOD_NS / 2  # the rising edge that ends cycle 0
    if free:
        run = await _free_running(dut, stim, progress)
    else:
        run = await _per_cycle(dut, stim, edge, progress)
    wall = time.perf_counter() - t0
    if progress is not None:
        atomic_write_text(progress, str(len(run.done_at)))

    source = f"rtl:{stim.simulator or cocotb.SIM_NAME}"
    hardware_trace(stim, run.beats, source).save(path.parent / "hardware.npz")
    n, width = len(run.done_at), 4 * stim.depth
    NetworkResult(
        first_input=np.array(run.first_in[:n], dtype=np.int64),
        done=np.array(run.done_at, dtype=np.int64),
        counters=np.array([_words(v, width) for v in run.counters[:n]], dtype=np.int64).reshape(
            n, width
        ),
        final_counters=np.array(_words(run.final_counters, width), dtype=np.int64),
        total_cycles=run.cycles,
        wall_seconds=wall,
        edge0_ns=float(edge0_ns),
    ).save(path.parent / "inferences.npz")
    if n < stim.samples:
        raise AssertionError(
            f"only {n} of {stim.samples} inferences finished within {stim.max_cycles} cycles "
            "(hardware trace saved; compare it for the first divergence)"
        )
