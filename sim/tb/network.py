"""cocotb testbench of a whole network (``hw.cores.network_core.NetworkCore`` with ``probe=True``).

Runs in the simulator process with numpy and :mod:`ir` only (no torch, no amaranth). The run
directory (``NETWORK_SIM_DIR``, written by :func:`sim.simulate.prepare`) holds ``stimulus.npz``:
the input payloads of every inference back to back, the probe layout and the event formats.

Per cycle, on one falling-edge trigger built once: one read of the probe vector (every layer's
transfers of the coming edge, :mod:`hw.cores.network_core`), one write of ``i.valid``/``i.payload``
when they change, one of ``o.ready`` under random backpressure. After the run the recorded probe
words are decoded into a hardware :class:`ir.Trace` (spikes, cumulative busy flags from the markers,
steps, cycle stamps; cycle 0 is the first cycle after reset) and per-inference facts (first input
cycle, done cycle, counters read at done), saved as ``hardware.npz`` and ``inferences.npz``.

Knobs (environment): ``NETWORK_SIM_VALID`` / ``NETWORK_SIM_READY`` — probability that an input
beat is offered / the output accepted in a cycle (seeded by ``COCOTB_RANDOM_SEED``);
``NETWORK_SIM_PROGRESS`` — a file the testbench rewrites with the number of finished inferences;
``NETWORK_SIM_PARENT_PID`` — the process that asked for the run: every
:data:`WATCH_CYCLES` cycles the testbench checks that it, and the worker process of
:func:`sim.runner.run_cocotb_isolated` (``SPIKEZIP_SIM_WORKER_PID``), are still there, and ends
the simulator at once if not: nobody would read the results (the worker's process-group kill is
the first line of defence, this the second).
"""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge
from cocotb.utils import get_sim_time

from spikezip.ir import Trace

WATCH_CYCLES = 2048  #: cycles between two checks that the requesting process is alive


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


def _orphaned(watched: list[int]) -> bool:
    """Whether any of the ``watched`` processes is gone."""
    return not all(_alive(pid) for pid in watched)


class Layout:
    """Field offsets of the probe vector and the event formats, from ``stimulus.npz``."""

    def __init__(self, stim: dict[str, np.ndarray]) -> None:
        self.depth = int(stim["depth"])
        self.fields = json.loads(str(stim["probe_layout"]))  # {name: [offset, width]}
        self.formats = json.loads(str(stim["formats"]))  # per layer {index_width, value_width}
        self.n_out = [int(n) for n in stim["n_out"]]
        self.names = [str(n) for n in stim["layer_names"]]
        self.width = sum(w for _, w in self.fields.values())

    def bit(self, name: str) -> int:
        return 1 << self.fields[name][0]

    def unpack(self, k: int, beat: int) -> tuple[int, int, int, int]:
        """``(marker, index, value, busy)`` of a layer-``k`` payload (fields from the LSB)."""
        iw, vw = self.formats[k]["index_width"], self.formats[k]["value_width"]
        marker = beat & 1
        index = (beat >> 1) & ((1 << iw) - 1)
        value = (beat >> (1 + iw)) & ((1 << vw) - 1)
        if value >> (vw - 1):
            value -= 1 << vw
        busy = (beat >> (1 + iw + vw)) & 1
        return marker, index, value, busy


class TB:
    def __init__(self, dut) -> None:
        self.dut = dut
        self.directory = Path(os.environ["NETWORK_SIM_DIR"])
        with np.load(self.directory / "stimulus.npz") as f:
            self.stim = {k: f[k] for k in f.files}
        self.layout = Layout(self.stim)
        self.valid_p = float(os.environ.get("NETWORK_SIM_VALID", "1"))
        self.ready_p = float(os.environ.get("NETWORK_SIM_READY", "1"))
        progress = os.environ.get("NETWORK_SIM_PROGRESS")
        self.progress = Path(progress) if progress else None
        self.samples = int(self.stim["samples"])
        self.max_cycles = int(self.stim["max_cycles"])
        # the process that asked for the run, and sim.runner.run_cocotb_isolated's worker
        watched = (
            os.environ.get(v, "") for v in ("NETWORK_SIM_PARENT_PID", "SPIKEZIP_SIM_WORKER_PID")
        )
        self.watched = [int(pid) for pid in watched if pid.isdigit()]

    def _stop_if_orphaned(self) -> None:
        if _orphaned(self.watched):
            print(f"tb_network: one of processes {self.watched} is gone; ending", flush=True)
            os._exit(3)

    async def reset(self) -> None:
        dut = self.dut
        Clock(dut.clk, 10, unit="ns", impl="gpi").start()
        self.edge = FallingEdge(dut.clk)
        dut.i__valid.value = 0
        dut.i__payload.value = 0
        dut.o__ready.value = 0
        dut.rst.value = 1
        await self.edge
        await self.edge
        dut.rst.value = 0

    def _report(self, done: int) -> None:
        if self.progress is not None:
            tmp = self.progress.with_suffix(".tmp")
            tmp.write_text(str(done))
            os.replace(tmp, self.progress)

    async def run(self) -> None:
        dut, edge, lay = self.dut, self.edge, self.layout
        words = [int(w) for w in self.stim["in_words"]]
        starts = set(int(s) for s in self.stim["sample_starts"])
        n_in = len(words)
        probe, i_valid, i_payload, o_ready = dut.probe, dut.i__valid, dut.i__payload, dut.o__ready
        ready_bit, valid_bit = lay.bit("in_ready"), lay.bit("out_valid")
        beat_off, beat_w = lay.fields[f"beat{lay.depth - 1}"]
        beat_mask = (1 << beat_w) - 1
        iw, vw = (lay.formats[-1][k] for k in ("index_width", "value_width"))
        final_mask, final_val = 1 | (1 << (1 + iw + vw)), 1  # marker = 1, busy = 0
        tb_shift = lay.width  # TB-driven bits appended above the probe: o.ready, accepted input
        always = self.valid_p >= 1.0 and self.ready_p >= 1.0
        rnd, valid_p, ready_p = random.random, self.valid_p, self.ready_p
        rec: list[int] = []
        first_in, done_at, counters = [], [], []
        ptr, offered, done, cycle, read_counters, prev_valid = 0, -1, 0, 0, False, False
        o_ready.value = 1
        ready = True
        report_every = max(1, self.samples // 100)
        t0 = time.perf_counter()
        self.edge0_ns = get_sim_time("ns") + 5  # the rising edge that ends cycle 0
        while done < self.samples and cycle < self.max_cycles:
            if read_counters:  # the cycle after done: counters include the final marker
                counters.append(int(dut.counters.value))
                read_counters = False
            p = int(probe.value)
            valid = ptr < n_in and (always or rnd() < valid_p)
            if valid and offered != ptr:
                i_payload.value = words[ptr]
                offered = ptr
            if valid != prev_valid:
                i_valid.value = valid
                prev_valid = valid
            if not always:
                ready = rnd() < ready_p
                o_ready.value = ready
            accepted = valid and p & ready_bit
            if accepted:
                if ptr in starts:
                    first_in.append(cycle)
                ptr += 1
            fire_last = ready and p & valid_bit
            if fire_last and ((p >> beat_off) & beat_mask) & final_mask == final_val:
                done += 1
                done_at.append(cycle)
                read_counters = True
                if done % report_every == 0:
                    self._report(done)
            rec.append(p | (bool(fire_last) << tb_shift))
            await edge
            cycle += 1
            if not cycle % WATCH_CYCLES:
                self._stop_if_orphaned()
        if read_counters:
            counters.append(int(dut.counters.value))
        self.cycles, self.rec = cycle, rec
        self.first_in, self.done_at, self.counter_reads = first_in, done_at, counters
        self.wall = time.perf_counter() - t0
        self._report(done)

    # -- decoding -------------------------------------------------------------------------------
    def beats(self) -> list[list[tuple[int, int]]]:
        """Per layer, ``(cycle, payload)`` of every transferred output beat."""
        lay, depth = self.layout, self.layout.depth
        fire_bits = [lay.bit(f"fire{k}") for k in range(depth - 1)] + [1 << lay.width]
        offs = [lay.fields[f"beat{k}"] for k in range(depth)]
        any_fire = 0
        for b in fire_bits:
            any_fire |= b
        out: list[list[tuple[int, int]]] = [[] for _ in range(depth)]
        for cycle, p in enumerate(self.rec):
            if p & any_fire:
                for k in range(depth):
                    if p & fire_bits[k]:
                        off, w = offs[k]
                        out[k].append((cycle, (p >> off) & ((1 << w) - 1)))
        return out

    def hardware_trace(self) -> Trace:
        lay, batch, depth = self.layout, self.samples, self.layout.depth
        per_layer = []  # per layer, per sample: list of (spike dict, busy, cycle, spike cycles)
        for k, beats in enumerate(self.beats()):
            samples: list[list[tuple]] = [[] for _ in range(batch)]
            b, events, cycles = 0, {}, {}
            for cycle, word in beats:
                if b >= batch:
                    break
                marker, index, value, busy = lay.unpack(k, word)
                if not marker:
                    events[index], cycles[index] = value, cycle
                    continue
                samples[b].append((events, busy, cycle, cycles))
                events, cycles = {}, {}
                if not busy:
                    b += 1
            per_layer.append(samples)
        last = per_layer[-1]
        steps = np.array([max(len(s), 1) for s in last], dtype=np.int64)
        capped = np.array([not s or s[-1][1] for s in last], dtype=bool)
        n_steps = max([len(s) for layer in per_layer for s in layer] + [1])
        spikes, spike_cycles, step_cycles = [], [], []
        busy = np.zeros((batch, n_steps, depth), dtype=bool)
        for k in range(depth):
            n = lay.n_out[k]
            sp = np.zeros((batch, n_steps, n), dtype=np.int8)
            sc = np.full((batch, n_steps, n), -1, dtype=np.int64)
            mc = np.full((batch, n_steps), -1, dtype=np.int64)
            for b, sample in enumerate(per_layer[k]):
                for t, (events, flag, cycle, cycles) in enumerate(sample):
                    for index, value in events.items():
                        if index < n:
                            sp[b, t, index] = value
                            sc[b, t, index] = cycles[index]
                    busy[b, t, k] = bool(flag)
                    mc[b, t] = cycle
            spikes.append(sp)
            spike_cycles.append(sc)
            step_cycles.append(mc)
        return Trace(
            network_digest=str(self.stim["digest"]),
            spikes=tuple(spikes),
            busy=busy,
            steps=steps,
            capped=capped,
            step_cycles=tuple(step_cycles),
            spike_cycles=tuple(spike_cycles),
            layer_names=tuple(lay.names),
            source=f"rtl:{os.environ.get('NETWORK_SIM_NAME', cocotb.SIM_NAME)}",
        )

    def save(self) -> None:
        self.hardware_trace().save(self.directory / "hardware.npz")
        n = len(self.done_at)
        counters = np.zeros((n, 4 * self.layout.depth), dtype=np.int64)
        for j, value in enumerate(self.counter_reads[:n]):
            for c in range(4 * self.layout.depth):
                counters[j, c] = (value >> (32 * c)) & 0xFFFFFFFF
        np.savez(
            self.directory / "inferences.npz",
            first_input=np.array(self.first_in[:n], dtype=np.int64),
            done=np.array(self.done_at, dtype=np.int64),
            counters=counters,
            total_cycles=np.array(self.cycles),
            wall_seconds=np.array(self.wall),
            edge0_ns=np.array(self.edge0_ns),
            final_counters=np.array(
                [
                    int(self.dut.counters.value) >> (32 * c) & 0xFFFFFFFF
                    for c in range(4 * self.layout.depth)
                ],
                dtype=np.int64,
            ),
        )


@cocotb.test()
async def run_network(dut):
    """Drive every inference; record every layer's transfers; write the hardware trace."""
    tb = TB(dut)
    await tb.reset()
    await tb.run()
    tb.save()
    if len(tb.done_at) < tb.samples:
        raise AssertionError(
            f"only {len(tb.done_at)} of {tb.samples} inferences finished within "
            f"{tb.max_cycles} cycles (hardware trace saved; compare it for the first divergence)"
        )
