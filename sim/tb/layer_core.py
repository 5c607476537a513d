"""cocotb testbench of a layer core (``hw.cores.layer_core.LayerCore`` with ``probe=True``).

Runs in the simulator process: imports numpy, :mod:`ir` and the pure-Python :mod:`hw.model.events`
only (no torch, no amaranth). The case directory (``LAYER_CORE_DIR``, written by
:func:`sim.cases.layer_core_case`) holds the stimulus and the golden trace.

The ``TB`` drives every inference's input payloads back to back, accepts the output, and records
each output beat and each probed word with its cycle (cycle 0 is the first cycle after reset).
Knobs: ``LAYER_CORE_VALID`` / ``LAYER_CORE_READY`` — probability that the input is offered /
the output accepted in a cycle (random, seeded by cocotb's ``COCOTB_RANDOM_SEED``);
``LAYER_CORE_CHECK_CYCLES`` — compare every output beat's cycle with the cycle model.

At the end the scoreboard builds the hardware trace (the golden trace with this layer replaced
by what the RTL did: spikes, busy flags, membranes and tracers from the probe, cycle stamps),
saves it as ``hardware.npz`` and fails with :func:`ir.compare.first_divergence` — sample, layer,
neuron, time step, cycle, expected, actual — or with the first cycle-model mismatch.

Speed habits: one ``await`` per cycle on a ``FallingEdge`` trigger built once; the payloads are
pre-packed integers written whole; the probe vector is read as one integer and unpacked after the
run.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge

from spikezip.hw.model.events import EventFormat
from spikezip.ir import Trace
from spikezip.ir.compare import first_divergence


def _field(word: int, offset: int, width: int, signed: bool) -> int:
    v = (word >> offset) & ((1 << width) - 1)
    return v - (1 << width) if signed and v >> (width - 1) else v


class TB:
    """Clock, reset, input driver, output monitor and probe recorder of one layer core."""

    def __init__(self, dut) -> None:
        self.dut = dut
        directory = Path(os.environ["LAYER_CORE_DIR"])
        self.directory = directory
        with np.load(directory / "stimulus.npz") as f:
            self.stim = {k: f[k] for k in f.files}
        self.golden = Trace.load(directory / "golden.npz")
        self.valid_p = float(os.environ.get("LAYER_CORE_VALID", "1"))
        self.ready_p = float(os.environ.get("LAYER_CORE_READY", "1"))
        self.check_cycles = os.environ.get("LAYER_CORE_CHECK_CYCLES", "0") == "1"
        s = self.stim
        self.layer = int(s["layer"])
        self.out_fmt = EventFormat(int(s["out_index_width"]), int(s["out_value_width"]))
        self.outputs: list[tuple[int, int]] = []  # (cycle, payload)
        self.probes: list[tuple[int, int, int]] = []  # (cycle, word, state)
        self.cycles = 0

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

    async def run(self) -> None:
        """Drive and monitor until every expected beat is out (or a generous cycle limit)."""
        dut, edge = self.dut, self.edge
        words = [int(w) for w in self.stim["in_words"]]
        n_in, n_out = len(words), len(self.stim["out_words"])
        expected_end = int(self.stim["out_cycle"].max()) if n_out else 0
        slack = 1.0 / (min(self.valid_p, self.ready_p) or 1.0)
        limit = int((expected_end + 100) * 4 * slack) + 1000
        valid_p, ready_p = self.valid_p, self.ready_p
        always = valid_p >= 1.0 and ready_p >= 1.0
        rnd = random.random
        outputs, probes = self.outputs, self.probes
        i_valid, i_payload, i_ready = dut.i__valid, dut.i__payload, dut.i__ready
        o_valid, o_payload, o_ready = dut.o__valid, dut.o__payload, dut.o__ready
        p_valid, p_word, p_state = dut.probe__valid, dut.probe__word, dut.probe__state
        ptr, offered, cycle = 0, -1, 0
        while len(outputs) < n_out and cycle < limit:
            valid = ptr < n_in and (always or rnd() < valid_p)
            ready = always or rnd() < ready_p
            i_valid.value = valid
            if valid and offered != ptr:
                i_payload.value = words[ptr]
                offered = ptr
            o_ready.value = ready
            if valid and i_ready.value:
                ptr += 1
            if ready and o_valid.value:
                outputs.append((cycle, int(o_payload.value)))
            if p_valid.value:
                probes.append((cycle, int(p_word.value), int(p_state.value)))
            await edge
            cycle += 1
        self.cycles = cycle

    # -- scoreboard -------------------------------------------------------------------------
    def hardware_trace(self) -> Trace:
        """The golden trace with this layer's spikes, busy, state and cycles from the RTL."""
        g, k, s = self.golden, self.layer, self.stim
        batch, steps, n = g.batch, g.n_steps, g.spikes[k].shape[2]
        lanes, words = int(s["lanes"]), int(s["words"])
        mw, tw = int(s["membrane_width"]), int(s["tracer_width"])
        m_off, t_off = int(s["probe_membranes_offset"]), int(s["probe_tracers_offset"])
        spikes = np.zeros((batch, steps, n), dtype=np.int8)
        spike_cycles = np.full((batch, steps, n), -1, dtype=np.int64)
        busy = np.zeros((batch, steps), dtype=bool)
        step_cycles = np.full((batch, steps), -1, dtype=np.int64)
        ran = np.zeros(batch, dtype=np.int64)  # steps emitted per sample
        fmt, b, t = self.out_fmt, 0, 0
        for cycle, word in self.outputs:
            if b >= batch:
                break
            marker, index, value, flag = fmt.unpack(word)
            if t < steps and not marker and index < n:
                spikes[b, t, index] = value
                spike_cycles[b, t, index] = cycle
            elif t < steps and marker:
                busy[b, t], step_cycles[b, t] = flag, cycle
            if marker:
                t += 1
                ran[b] = t
                if not flag:
                    b, t = b + 1, 0
        # the probe: `words` fired words per emitted step, in order
        membranes = np.zeros((batch, steps, n), dtype=np.int64)
        tracers = np.zeros((batch, steps, n), dtype=np.int64)
        sweeps = [(bb, tt) for bb in range(batch) for tt in range(min(int(ran[bb]), steps))]
        for j, (_cycle, word, state) in enumerate(self.probes):
            if j // words >= len(sweeps):
                break
            bb, tt = sweeps[j // words]
            for lane in range(lanes):
                neuron = word * lanes + lane
                if neuron < n:
                    membranes[bb, tt, neuron] = _field(state, m_off + lane * mw, mw, True)
                    tracers[bb, tt, neuron] = _field(state, t_off + lane * tw, tw, True)
        for bb in range(batch):  # after its last step a layer is at a fixed point
            last = int(min(ran[bb], steps))
            if 0 < last < steps:
                membranes[bb, last:] = membranes[bb, last - 1]
                tracers[bb, last:] = tracers[bb, last - 1]

        def put(arrs, value):
            return tuple(value if j == k else a for j, a in enumerate(arrs))

        all_busy = np.array(g.busy)
        all_busy[:, :, k] = busy
        minus = [np.full((batch, steps), -1, dtype=np.int64) for _ in range(g.depth)]
        minus_n = [np.full(a.shape, -1, dtype=np.int64) for a in g.spikes]
        return Trace(
            network_digest=g.network_digest,
            spikes=put(g.spikes, spikes),
            busy=all_busy,
            steps=g.steps,
            capped=g.capped,
            membranes=put(g.membranes, membranes),
            tracers=put(g.tracers, tracers),
            step_cycles=put(minus, step_cycles),
            spike_cycles=put(minus_n, spike_cycles),
            layer_names=g.layer_names,
            source=f"rtl:{cocotb.SIM_NAME}",
        )

    def check(self) -> None:
        """Fail with the first divergence from the golden trace, then from the cycle model."""
        hw = self.hardware_trace()
        hw.save(self.directory / "hardware.npz")
        div = first_divergence(self.golden, hw)
        if div is not None:
            raise AssertionError(f"{div}\n(simulated {self.cycles} cycles)")
        s, got = self.stim, self.outputs
        if len(got) != len(s["out_words"]):
            raise AssertionError(
                f"layer {self.layer}: {len(got)} output beats, expected {len(s['out_words'])} "
                f"(simulated {self.cycles} cycles)"
            )
        for j, ((_cycle, word), exp) in enumerate(zip(got, s["out_words"], strict=True)):
            if word != int(exp):
                raise AssertionError(
                    f"layer {self.layer}: output beat {j}: expected payload "
                    f"{self.out_fmt.unpack(int(exp))}, actual {self.out_fmt.unpack(word)}"
                )
        if not self.check_cycles:
            return
        for j, (cycle, _word) in enumerate(got):
            if cycle != int(s["out_cycle"][j]):
                neuron = int(s["out_neuron"][j])
                what = f"neuron {neuron}" if neuron >= 0 else "end-of-step marker"
                raise AssertionError(
                    f"cycle model mismatch: sample {int(s['out_sample'][j])}, layer "
                    f"{self.layer}, {what}, time step {int(s['out_step'][j])}: expected cycle "
                    f"{int(s['out_cycle'][j])}, actual {cycle}"
                )


@cocotb.test()
async def matches_golden_trace(dut) -> None:
    """Every output event, marker, membrane and tracer equals the golden trace (and the cycle
    model, when enabled)."""
    tb = TB(dut)
    await tb.reset()
    await tb.run()
    tb.check()
    dut._log.info(
        "%d output beats in %d cycles, %d probed words", len(tb.outputs), tb.cycles, len(tb.probes)
    )
