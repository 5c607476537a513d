"""cocotb testbench of a layer core (``hw.cores.layer_core.LayerCore`` with ``probe=True``).

Reads a :class:`sim.tb.files.LayerCoreStimulus` and ``golden.npz`` beside it (written by
:func:`sim.cases.layer_core_case`). The input :class:`~sim.tb.kit.Driver` sends every inference's
payloads back to back, the output :class:`~sim.tb.kit.Sink` accepts and records the output beats,
and every probed word is recorded with its cycle (``valid``/``ready`` of the stimulus: pause
generators seeded by ``COCOTB_RANDOM_SEED``). The scoreboard then builds the hardware trace (the
golden trace with this layer replaced by what the RTL did), saves it as ``hardware.npz`` and
fails with :func:`ir.compare.first_divergence` — sample, layer, neuron, time step, cycle,
expected, actual — or with the first payload or cycle-model mismatch (``check_cycles``).
"""

from __future__ import annotations

import cocotb
import numpy as np

from spikezip.ir import Trace
from spikezip.ir.compare import first_divergence
from spikezip.sim.tb import kit
from spikezip.sim.tb.files import LayerCoreStimulus, stimulus_path


def probe_state(
    s: LayerCoreStimulus, probes: list[tuple[int, int, int]], ran: np.ndarray, shape
) -> dict[str, np.ndarray]:
    """Membranes and tracers ``[B, T, n]`` from the probe: ``words`` fired words per step."""
    batch, steps, n = shape
    membranes = np.zeros(shape, dtype=np.int64)
    tracers = np.zeros(shape, dtype=np.int64)
    sweeps = [(b, t) for b in range(batch) for t in range(min(int(ran[b]), steps))]
    for j, (_cycle, word, state) in enumerate(probes[: len(sweeps) * s.words]):
        b, t = sweeps[j // s.words]
        for lane in range(s.lanes):
            if (i := word * s.lanes + lane) < n:
                membranes[b, t, i] = s.state.element(state, "membranes", lane, s.membrane_width)
                tracers[b, t, i] = s.state.element(state, "tracers", lane, s.tracer_width)
    for b in range(batch):  # after its last step a layer is at a fixed point
        last = int(min(ran[b], steps))
        if 0 < last < steps:
            membranes[b, last:] = membranes[b, last - 1]
            tracers[b, last:] = tracers[b, last - 1]
    return {"membranes": membranes, "tracers": tracers}


def check_beats(s: LayerCoreStimulus, got: list[tuple[int, int]], cycles: int) -> None:
    """The output payloads, then (``check_cycles``) their cycles, against the stimulus."""
    if len(got) != len(s.out_words):
        raise AssertionError(
            f"layer {s.layer}: {len(got)} output beats, expected {len(s.out_words)} "
            f"(simulated {cycles} cycles)"
        )
    fmt = s.out_format
    for j, ((cycle, word), exp) in enumerate(zip(got, s.out_words.tolist(), strict=True)):
        if word != exp:
            raise AssertionError(
                f"layer {s.layer}: output beat {j}: expected payload {fmt.unpack(exp)}, "
                f"actual {fmt.unpack(word)}"
            )
        if s.check_cycles and cycle != s.out_cycle[j]:
            neuron = int(s.out_neuron[j])
            what = f"neuron {neuron}" if neuron >= 0 else "end-of-step marker"
            raise AssertionError(
                f"cycle model mismatch: sample {int(s.out_sample[j])}, layer {s.layer}, {what}, "
                f"time step {int(s.out_step[j])}: expected cycle {int(s.out_cycle[j])}, "
                f"actual {cycle}"
            )


@cocotb.test()
async def matches_golden_trace(dut) -> None:
    """Every output event, marker, membrane and tracer equals the golden trace (and the cycle
    model, when enabled)."""
    path = stimulus_path()
    s = LayerCoreStimulus.load(path)
    golden = Trace.load(path.parent / "golden.npz")
    edge = await kit.start(dut, {"i__valid": 0, "i__payload": 0, "o__ready": 0})
    driver = kit.Driver(dut.i__valid, dut.i__payload, s.in_words, kit.pauses(s.valid))
    sink = kit.Sink(dut.o__ready, kit.pauses(s.ready), dut.o__payload)
    i_ready, o_valid = dut.i__ready, dut.o__valid
    p_valid, p_word, p_state = dut.probe__valid, dut.probe__word, dut.probe__state
    n_out, probes = len(s.out_words), []
    expected_end = int(s.out_cycle.max()) if n_out else 0
    limit = int((expected_end + 100) * 4 / (min(s.valid, s.ready) or 1.0)) + 1000
    cycle = 0
    while len(sink.beats) < n_out and cycle < limit:
        driver.step(i_ready.value)
        sink.step(o_valid.value, cycle)
        if p_valid.value:
            probes.append((cycle, int(p_word.value), int(p_state.value)))
        await edge
        cycle += 1

    k, shape = s.layer, golden.spikes[s.layer].shape
    decoded = kit.decode_stream(sink.beats, s.out_format, golden.batch)
    out = kit.stream_arrays(decoded, shape[2], golden.n_steps)
    ran = np.minimum(out.pop("steps"), golden.n_steps)
    hw = kit.with_layer(
        golden, k, f"rtl:{cocotb.SIM_NAME}", **out, **probe_state(s, probes, ran, shape)
    )
    hw.save(path.parent / "hardware.npz")
    div = first_divergence(golden, hw)
    if div is not None:
        raise AssertionError(f"{div}\n(simulated {cycle} cycles)")
    check_beats(s, sink.beats, cycle)
    dut._log.info("%d output beats in %d cycles, %d probed words", n_out, cycle, len(probes))
