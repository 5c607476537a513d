"""cocotb testbench of the standalone ST-BIF neuron array
(``hw.cores.neuron_array.NeuronArrayTop``).

Reads a :class:`sim.tb.files.NeuronArrayStimulus` and ``golden.npz`` beside it (written by
:func:`sim.cases.neuron_array_case`). Per inference the testbench sends one ``INIT`` per word,
then for every recorded time step one ``FIRE`` per word carrying that step's drive (the last with
``last`` set); two commands on the same word are at least ``min_distance`` cycles apart, and a
command is offered in a cycle with probability ``valid``. Every fired word must come out exactly
``latency`` cycles after its command (the cycle model's ``array_latency``), with the golden
spikes, membranes and tracers of its neurons; on the last word of a step, its busy flag OR any
spike of the step's words must be the step's busy flag (the array's flag leaves the spikes to
the receiver). A mismatch fails with :func:`ir.compare.first_divergence` of the hardware trace
(saved as ``hardware.npz``) against the golden one.
"""

from __future__ import annotations

import cocotb
import numpy as np

from spikezip.ir import Trace
from spikezip.ir.compare import first_divergence
from spikezip.sim.tb import kit
from spikezip.sim.tb.files import NeuronArrayStimulus, bits, stimulus_path


def commands(s: NeuronArrayStimulus) -> list[tuple[int, int, int, int]]:
    """``(payload, sample, step, word)`` of every command (step ``-1``: ``INIT``)."""
    cmd, mask = s.cmd.fields, (1 << s.drive_width) - 1

    def pack(op: int, w: int, lanes) -> int:
        drive = sum((int(v) & mask) << (j * s.drive_width) for j, v in enumerate(lanes))
        return (
            (op << cmd["op"][0])
            | (w << cmd["word"][0])
            | (int(w == s.words - 1) << cmd["last"][0])
            | (drive << cmd["drive"][0])
        )

    out = []
    for b in range(s.drive.shape[0]):
        out += [(pack(s.op_init, w, ()), b, -1, w) for w in range(s.words)]
        for t in range(s.drive.shape[1]):
            for w in range(s.words):
                lanes = s.drive[b, t, w * s.lanes : (w + 1) * s.lanes]
                out.append((pack(s.op_fire, w, lanes), b, t, w))
    return out


def check(s: NeuronArrayStimulus, golden: Trace, fires, fired) -> Trace:
    """The hardware trace of the fired words; raise on a latency, word number or busy error."""
    k, n = s.layer, golden.spikes[s.layer].shape[2]
    spikes = np.zeros_like(golden.spikes[k])
    membranes = np.zeros_like(golden.membranes[k])
    tracers = np.zeros_like(golden.tracers[k])
    step_cycles = np.full(golden.busy.shape[:2], -1, dtype=np.int64)
    if len(fired) != len(fires):
        raise AssertionError(f"{len(fired)} fired words, expected {len(fires)}")
    word_bits = (s.words - 1).bit_length()
    spike_bits = s.fired.fields["spikes"][1] // s.lanes  # 2 (±1), or graded ±2^k
    for (cycle, word, state), (sent, b, t, w) in zip(fired, fires, strict=True):
        if cycle != sent + s.latency:
            raise AssertionError(
                f"sample {b}, step {t}, word {w}: sent in cycle {sent}, fired in cycle "
                f"{cycle} (latency must be {s.latency})"
            )
        if word_bits and bits(word, s.fired.fields["word"][0], word_bits) != w:
            raise AssertionError(f"sample {b}, step {t}: fired word number differs from {w}")
        for lane in range(min(s.lanes, n - w * s.lanes)):
            i = w * s.lanes + lane
            spikes[b, t, i] = s.fired.element(word, "spikes", lane, spike_bits)
            membranes[b, t, i] = s.state.element(state, "membranes", lane, s.membrane_width)
            tracers[b, t, i] = s.state.element(state, "tracers", lane, s.tracer_width)
        if w == s.words - 1:  # the words of a step come in order: all decoded by now
            step_cycles[b, t] = cycle
            busy = bool(s.fired.get(word, "busy")) or bool(spikes[b, t].any())
            if busy != bool(s.busy[b, t]):
                raise AssertionError(
                    f"sample {b}, layer {k}, time step {t}, cycle {cycle}: busy flag "
                    f"expected {int(s.busy[b, t])}, actual {int(busy)}"
                )
    arrays = {"spikes": spikes, "membranes": membranes, "tracers": tracers}
    return kit.with_layer(golden, k, f"rtl:{cocotb.SIM_NAME}", step_cycles=step_cycles, **arrays)


@cocotb.test()
async def matches_golden_trace(dut) -> None:
    """Spikes, membranes, tracers and busy flags of every step equal the golden trace."""
    path = stimulus_path()
    s = NeuronArrayStimulus.load(path)
    golden = Trace.load(path.parent / "golden.npz")
    cmds = commands(s)
    edge = await kit.start(dut, {"cmd_valid": 0, "cmd": 0})
    driver = kit.Driver(dut.cmd_valid, dut.cmd, [c[0] for c in cmds], kit.pauses(s.valid))
    fired_valid, fired, state = dut.fired_valid, dut.fired, dut.state
    last_sent = [-s.min_distance] * s.words  # per word, the cycle of its last command
    sent: list[int] = []  # cycle of each command
    out: list[tuple[int, int, int]] = []  # (cycle, fired payload, state)
    cycle = 0
    while not driver.done or cycle <= sent[-1] + s.latency + 1:
        w = cmds[driver.sent][3] if not driver.done else 0
        if driver.step(True, hold=cycle - last_sent[w] < s.min_distance):
            sent.append(cycle)
            last_sent[w] = cycle
        if fired_valid.value:
            out.append((cycle, int(fired.value), int(state.value)))
        await edge
        cycle += 1

    fires = [(c, b, t, w) for c, (_, b, t, w) in zip(sent, cmds, strict=True) if t >= 0]
    hw = check(s, golden, fires, out)
    hw.save(path.parent / "hardware.npz")
    div = first_divergence(golden, hw)
    if div is not None:
        raise AssertionError(str(div))
    dut._log.info("%d commands, %d fired words", len(cmds), len(out))
