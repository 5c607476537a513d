"""cocotb testbench of a whole network (``hw.cores.network_core.NetworkCore`` with ``probe=True``).

Reads a :class:`sim.tb.files.NetworkStimulus` (written by :func:`sim.simulate.prepare`; its
folder is the run folder). Per cycle, on one falling-edge trigger: one read of the probe vector
(every layer's transfers of the coming edge, :mod:`hw.cores.network_core`), the input
:class:`~sim.tb.kit.Driver` and the output :class:`~sim.tb.kit.Sink` under their pause
generators (``valid``/``ready`` of the stimulus, seeded by ``COCOTB_RANDOM_SEED``). After the run
every layer's beats are decoded into a hardware :class:`ir.Trace` (spikes, cumulative busy
flags, steps, cycle stamps) saved as ``hardware.npz``, and the per-inference facts (first input
cycle, done cycle, counters read the cycle after done) as a :class:`~sim.tb.files.NetworkResult`
in ``inferences.npz``. The :class:`~sim.tb.kit.Watchdog` ends the simulator when its caller is
gone; the stimulus's ``progress`` file gets the number of finished inferences.
"""

from __future__ import annotations

import time
from pathlib import Path

import cocotb
import numpy as np
from cocotb.utils import get_sim_time

from spikezip.ir import Trace
from spikezip.ir._io import atomic_write_text
from spikezip.sim.tb import kit
from spikezip.sim.tb.files import NetworkResult, NetworkStimulus, stimulus_path


def _words(value: int, n: int) -> list[int]:
    """The ``n`` 32-bit counters of the counters vector."""
    return [(value >> (32 * c)) & 0xFFFFFFFF for c in range(n)]


def hardware_trace(stim: NetworkStimulus, rec: list[int], source: str) -> Trace:
    """Decode the recorded probe vectors (``fire`` of the last layer above the probe)."""
    probe, depth, batch = stim.probe, stim.depth, stim.samples
    fires = [probe.bit(f"fire{k}") for k in range(depth - 1)] + [1 << probe.width]
    beats: list[list[tuple[int, int]]] = [[] for _ in range(depth)]
    any_fire = sum(fires)
    for cycle, p in enumerate(rec):
        if p & any_fire:
            for k in range(depth):
                if p & fires[k]:
                    beats[k].append((cycle, probe.get(p, f"beat{k}")))
    decoded = [kit.decode_stream(b, fmt, batch) for b, fmt in zip(beats, stim.formats, strict=True)]
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


@cocotb.test()
async def run_network(dut):
    """Drive every inference; record every layer's transfers; write the hardware trace."""
    path = stimulus_path()
    stim = NetworkStimulus.load(path)
    probe, fmt = stim.probe, stim.formats[-1]
    edge = await kit.start(dut, {"i__valid": 0, "i__payload": 0, "o__ready": 0})
    driver = kit.Driver(dut.i__valid, dut.i__payload, stim.words, kit.pauses(stim.valid))
    sink = kit.Sink(dut.o__ready, kit.pauses(stim.ready))
    progress = Path(stim.progress) if stim.progress else None
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
    t0 = time.perf_counter()
    edge0_ns = get_sim_time("ns") + kit.PERIOD_NS / 2  # the rising edge that ends cycle 0
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
    wall = time.perf_counter() - t0
    if progress is not None:
        atomic_write_text(progress, str(done))

    source = f"rtl:{stim.simulator or cocotb.SIM_NAME}"
    hardware_trace(stim, rec, source).save(path.parent / "hardware.npz")
    n, width = len(done_at), 4 * stim.depth
    NetworkResult(
        first_input=np.array(first_in[:n], dtype=np.int64),
        done=np.array(done_at, dtype=np.int64),
        counters=np.array([_words(v, width) for v in counters[:n]], dtype=np.int64).reshape(
            n, width
        ),
        final_counters=np.array(_words(int(sig_counters.value), width), dtype=np.int64),
        total_cycles=cycle,
        wall_seconds=wall,
        edge0_ns=float(edge0_ns),
    ).save(path.parent / "inferences.npz")
    if done < stim.samples:
        raise AssertionError(
            f"only {done} of {stim.samples} inferences finished within {stim.max_cycles} cycles "
            "(hardware trace saved; compare it for the first divergence)"
        )
