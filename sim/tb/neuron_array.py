"""cocotb testbench of the standalone ST-BIF neuron array
(``hw.cores.neuron_array.NeuronArrayTop``).

Runs in the simulator process with numpy and :mod:`ir` only. The case directory
(``NEURON_ARRAY_DIR``, written by :func:`sim.cases.neuron_array_case`) holds the golden trace and
the per-step drives of one layer.

Per inference the testbench sends one ``INIT`` per word, then for every recorded time step one
``FIRE`` per word carrying that step's drive (the last with ``last`` set); two commands on the same
word are at least ``min_distance`` cycles apart (2 with pipeline 2, 3 with pipeline 3: with fewer
words some cycles are idle). Every fired word must come out exactly ``latency`` cycles after its
command (the cycle model's ``array_latency``), with the golden spikes, membranes and tracers of its
neurons; on the last word of a step, its busy flag OR any spike of the step's words must be the
step's busy flag (any non-zero drive or spike: the array's flag leaves the spikes to the
receiver).
``NEURON_ARRAY_VALID`` is the probability that a command is offered in a cycle.

A mismatch fails with :func:`ir.compare.first_divergence` of the hardware trace (saved as
``hardware.npz``) against the golden one.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge

from spikezip.ir import Trace
from spikezip.ir.compare import first_divergence


def _pack(values, width: int) -> int:
    out, mask = 0, (1 << width) - 1
    for k, v in enumerate(values):
        out |= (int(v) & mask) << (k * width)
    return out


def _field(word: int, offset: int, width: int, signed: bool) -> int:
    v = (word >> offset) & ((1 << width) - 1)
    return v - (1 << width) if signed and v >> (width - 1) else v


class TB:
    """Clock, reset, command driver and result monitor of one neuron array."""

    def __init__(self, dut) -> None:
        self.dut = dut
        self.directory = Path(os.environ["NEURON_ARRAY_DIR"])
        with np.load(self.directory / "stimulus.npz") as f:
            self.s = {k: f[k] for k in f.files}
        self.golden = Trace.load(self.directory / "golden.npz")
        self.valid_p = float(os.environ.get("NEURON_ARRAY_VALID", "1"))
        s = self.s
        self.lanes, self.words = int(s["lanes"]), int(s["words"])
        self.latency, self.min_distance = int(s["latency"]), int(s["min_distance"])
        self.commands: list[tuple[int, int, int, int]] = []  # (payload, sample, step, word)
        drive = s["drive"]
        batch, steps = drive.shape[:2]
        for b in range(batch):
            for w in range(self.words):
                self.commands.append((self._cmd(int(s["op_init"]), w, 0), b, -1, w))
            for t in range(steps):
                for w in range(self.words):
                    lanes = drive[b, t, w * self.lanes : (w + 1) * self.lanes]
                    self.commands.append((self._cmd(int(s["op_fire"]), w, lanes), b, t, w))
        self.sent: list[int] = []  # cycle of each command
        self.fired: list[tuple[int, int, int]] = []  # (cycle, fired payload, state)

    def _cmd(self, op: int, word: int, lanes) -> int:
        s = self.s
        drive = 0 if isinstance(lanes, int) else _pack(lanes, int(s["drive_width"]))
        return (
            (op << int(s["cmd_op_offset"]))
            | (word << int(s["cmd_word_offset"]))
            | (int(word == self.words - 1) << int(s["cmd_last_offset"]))
            | (drive << int(s["cmd_drive_offset"]))
        )

    async def run(self) -> None:
        dut = self.dut
        Clock(dut.clk, 10, unit="ns", impl="gpi").start()
        edge = FallingEdge(dut.clk)
        dut.cmd_valid.value = 0
        dut.cmd.value = 0
        dut.rst.value = 1
        await edge
        await edge
        dut.rst.value = 0
        cmd_valid, cmd, fired_valid, fired, state = (
            dut.cmd_valid,
            dut.cmd,
            dut.fired_valid,
            dut.fired,
            dut.state,
        )
        n, ptr, cycle, rnd, p = len(self.commands), 0, 0, random.random, self.valid_p
        last_sent = [-self.min_distance] * self.words  # per word, the cycle of its last command
        while ptr < n or cycle <= self.sent[-1] + self.latency + 1:
            valid = ptr < n and (p >= 1.0 or rnd() < p)
            if valid:
                w = self.commands[ptr][3]
                valid = cycle - last_sent[w] >= self.min_distance
            cmd_valid.value = valid
            if valid:
                cmd.value = self.commands[ptr][0]
                self.sent.append(cycle)
                last_sent[w] = cycle
                ptr += 1
            if fired_valid.value:
                self.fired.append((cycle, int(fired.value), int(state.value)))
            await edge
            cycle += 1

    def check(self) -> None:
        s, g = self.s, self.golden
        k, lanes = int(s["layer"]), self.lanes
        n = g.spikes[k].shape[2]
        mw, tw = int(s["membrane_width"]), int(s["tracer_width"])
        spikes = np.zeros_like(g.spikes[k])
        membranes = np.zeros_like(g.membranes[k])
        tracers = np.zeros_like(g.tracers[k])
        step_cycles = np.full(g.busy.shape[:2], -1, dtype=np.int64)
        fires = [
            (c, b, t, w) for c, (_, b, t, w) in zip(self.sent, self.commands, strict=True) if t >= 0
        ]
        if len(self.fired) != len(fires):
            raise AssertionError(f"{len(self.fired)} fired words, expected {len(fires)}")
        for (cycle, word, state), (sent, b, t, w) in zip(self.fired, fires, strict=True):
            if cycle != sent + self.latency:
                raise AssertionError(
                    f"sample {b}, step {t}, word {w}: sent in cycle {sent}, fired in cycle "
                    f"{cycle} (latency must be {self.latency})"
                )
            word_bits = (self.words - 1).bit_length()
            if word_bits and _field(word, int(s["fired_word_offset"]), word_bits, False) != w:
                raise AssertionError(f"sample {b}, step {t}: fired word number differs from {w}")
            for lane in range(lanes):
                i = w * lanes + lane
                if i >= n:
                    continue
                spikes[b, t, i] = _field(word, int(s["fired_spikes_offset"]) + 2 * lane, 2, True)
                membranes[b, t, i] = _field(
                    state, int(s["state_membranes_offset"]) + lane * mw, mw, True
                )
                tracers[b, t, i] = _field(
                    state, int(s["state_tracers_offset"]) + lane * tw, tw, True
                )
            if w == self.words - 1:
                step_cycles[b, t] = cycle
                # the array's busy flag leaves out the spikes (the receiver ORs them in): the
                # step's busy flag is it OR any spike of the step's words (all decoded by now,
                # the words of a step come in order)
                fired_busy = bool(_field(word, int(s["fired_busy_offset"]), 1, False))
                busy = fired_busy or bool(spikes[b, t].any())
                if busy != bool(s["busy"][b, t]):
                    raise AssertionError(
                        f"sample {b}, layer {k}, time step {t}, cycle {cycle}: busy flag "
                        f"expected {int(s['busy'][b, t])}, actual {int(busy)}"
                    )

        def put(arrs, value):
            return tuple(value if j == k else a for j, a in enumerate(arrs))

        minus = [np.full(g.busy.shape[:2], -1, dtype=np.int64) for _ in range(g.depth)]
        hw = Trace(
            network_digest=g.network_digest,
            spikes=put(g.spikes, spikes),
            busy=g.busy,
            steps=g.steps,
            capped=g.capped,
            membranes=put(g.membranes, membranes),
            tracers=put(g.tracers, tracers),
            step_cycles=put(minus, step_cycles),
            layer_names=g.layer_names,
            source=f"rtl:{cocotb.SIM_NAME}",
        )
        hw.save(self.directory / "hardware.npz")
        div = first_divergence(g, hw)
        if div is not None:
            raise AssertionError(str(div))


@cocotb.test()
async def matches_golden_trace(dut) -> None:
    """Spikes, membranes, tracers and busy flags of every step equal the golden trace."""
    tb = TB(dut)
    await tb.run()
    tb.check()
    dut._log.info("%d commands, %d fired words", len(tb.commands), len(tb.fired))
