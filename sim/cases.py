"""Test cases for the cocotb testbenches: Verilog, golden trace and stimulus files on disk.

This is the pytest side (it imports torch through :mod:`sw.reference` and amaranth through
:mod:`hw`); the simulator side (:mod:`sim.tb`) reads the typed files it writes
(:mod:`sim.tb.files`) with numpy and :mod:`ir` only. A case's :meth:`~LayerCoreCase.env` sets
the run's knobs in its stimulus file and returns the testbench's one environment variable.

Files of a layer-core case (:func:`layer_core_case`), in its directory:

* ``<toplevel>.v`` — the generated Verilog;
* ``golden.npz`` — the reference :class:`ir.Trace` of the whole network (``record_state=True``);
* ``stimulus.npz`` — a :class:`sim.tb.files.LayerCoreStimulus`: the input payloads (every
  inference back to back), the expected output payloads with their sample, step and neuron
  (``-1`` for markers), the model's cycle of each (:func:`hw.model.cycle_model.schedule`), the
  formats and the probe's state layout;
* ``hardware.npz`` — written by the testbench: the hardware trace (the golden trace with the
  simulated layer replaced by what the RTL emitted, with cycle stamps).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from spikezip.hw.model import cycle_model, events
from spikezip.ir import Network, Trace
from spikezip.sim.tb.files import (
    STIMULUS_ENV,
    AddStimulus,
    BitLayout,
    ConvCoreStimulus,
    LayerCoreStimulus,
    LayerNormStimulus,
    MaxPoolStimulus,
    NeuronArrayStimulus,
    ProductStimulus,
    Record,
    ResidualStimulus,
    SoftmaxStimulus,
)

STIMULUS = "stimulus.npz"  #: a case's stimulus file, in its directory


def _knobs(directory: Path, cls: type[Record], **knobs) -> dict[str, str]:
    """Set ``knobs`` in the case's stimulus file; the testbench's environment."""
    path = directory / STIMULUS
    stim = cls.load(path)
    if any(getattr(stim, k) != v for k, v in knobs.items()):
        replace(stim, **knobs).save(path)
    return {STIMULUS_ENV: str(path.resolve())}


__all__ = [
    "LayerCoreCase",
    "LayerNormCase",
    "NeuronArrayCase",
    "ProductCase",
    "ResidualCase",
    "SoftmaxCase",
    "StreamCase",
    "layer_core_case",
    "layer_norm_case",
    "neuron_array_case",
    "product_case",
    "residual_case",
    "softmax_case",
]


@dataclass(frozen=True)
class LayerCoreCase:
    """Files and facts of one layer-core simulation."""

    directory: Path
    verilog: Path
    toplevel: str
    golden: Trace
    layer: int
    schedule: list[cycle_model.InferenceSchedule]
    timing: cycle_model.LayerTiming

    @property
    def hardware_trace(self) -> Path:
        return self.directory / "hardware.npz"

    def env(
        self, *, ready: float = 1.0, valid: float = 1.0, check_cycles: bool | None = None
    ) -> dict[str, str]:
        """Set the knobs in the stimulus file; return the testbench's ``extra_env``.

        Cycles are checked by default when nothing stalls.
        """
        if check_cycles is None:
            check_cycles = ready == 1.0 and valid == 1.0
        return _knobs(
            self.directory,
            LayerCoreStimulus,
            ready=float(ready),
            valid=float(valid),
            check_cycles=bool(check_cycles),
        )


def _golden(network: Network, inputs: np.ndarray, trace: Trace | None) -> Trace:
    if trace is not None:
        return trace
    from spikezip.sw.reference import simulate  # torch: pytest side only

    return simulate(network, inputs, record_state=True)


def layer_core_case(
    directory: Path,
    network: Network,
    inputs: np.ndarray,
    layer: int,
    *,
    lanes: int,
    storage: str | None = None,
    pipeline: cycle_model.Pipeline | int = 1,
    backend: str = "proc",
    trace: Trace | None = None,
    toplevel: str = "layer_core",
) -> LayerCoreCase:
    """Write the Verilog, golden trace and stimulus of ``network.layers[layer]`` on ``inputs``.

    ``lanes``, ``storage`` and ``pipeline`` are the :class:`hw.cores.layer_core.LayerCore`'s; the
    expected cycles come from the core's own :class:`hw.model.cycle_model.LayerTiming`.
    """
    from spikezip.hw.cores.layer_core import LayerCore
    from spikezip.hw.flow.verilog import generate

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    golden = _golden(network, inputs, trace)
    core = LayerCore.for_network(
        network, layer, lanes=lanes, storage=storage, pipeline=pipeline, probe=True
    )
    verilog = directory / f"{toplevel}.v"
    verilog.write_text(generate(core, toplevel, backend=backend))
    golden.save(directory / "golden.npz")

    ins = events.input_steps(network, inputs, golden, layer)
    outs = events.output_steps(golden, layer)
    fin, fout = core.input_format, core.output_format
    sched = cycle_model.schedule(core.timing, ins, outs)
    state = core.probe.signature.members["state"].shape
    in_words = [w for inf in ins for step in inf for w in step.words(fin)]
    out_words, out_sample, out_step, out_neuron, out_cycle = [], [], [], [], []
    for b, (inf, timing) in enumerate(zip(outs, sched, strict=True)):
        for t, (step, st) in enumerate(zip(inf, timing.steps, strict=True)):
            out_words += step.words(fout)
            out_neuron += [*step.indices.tolist(), -1]
            out_cycle += [*st.event_cycles, st.marker_cycle]
            out_sample += [b] * (step.n_events + 1)
            out_step += [t] * (step.n_events + 1)
    LayerCoreStimulus(
        layer=layer,
        lanes=core.lanes,
        words=core.words,
        in_format=fin,
        out_format=fout,
        membrane_width=core.widths.membrane,
        tracer_width=core.widths.tracer,
        state=BitLayout.of(state),
        in_words=np.array(in_words, dtype=np.uint64),
        out_words=np.array(out_words, dtype=np.uint64),
        out_sample=np.array(out_sample, dtype=np.int64),
        out_step=np.array(out_step, dtype=np.int64),
        out_neuron=np.array(out_neuron, dtype=np.int64),
        out_cycle=np.array(out_cycle, dtype=np.int64),
    ).save(directory / STIMULUS)
    return LayerCoreCase(directory, verilog, toplevel, golden, layer, sched, core.timing)


@dataclass(frozen=True)
class NeuronArrayCase:
    """Files of one neuron-array simulation."""

    directory: Path
    verilog: Path
    toplevel: str
    golden: Trace
    layer: int

    def env(self, *, valid: float = 1.0) -> dict[str, str]:
        """Set ``valid`` in the stimulus file; return the testbench's ``extra_env``."""
        return _knobs(self.directory, NeuronArrayStimulus, valid=float(valid))


def layer_drives(network: Network, inputs: np.ndarray, golden: Trace, layer: int) -> np.ndarray:
    """Per-step synaptic drive ``Σ_j w_ij·s_j(t)`` of a layer (bias excluded), ``[B, T, n_out]``."""
    x = network.check_inputs(inputs)
    batch, steps = golden.batch, golden.n_steps
    if layer > 0:
        pre = golden.spikes[layer - 1].astype(np.int64)
    else:
        pre = np.zeros((batch, steps, network.n_inputs), dtype=np.int64)
        if network.encoding.value == "analog":
            pre[:, 0] = x
        else:
            n = min(steps, x.shape[1])
            pre[:, :n] = x[:, :n]
    return pre @ network.layers[layer].weight.T


def neuron_array_case(
    directory: Path,
    network: Network,
    inputs: np.ndarray,
    layer: int,
    *,
    lanes: int,
    storage: str | None = None,
    pipeline: cycle_model.Pipeline | int = 1,
    backend: str = "proc",
    trace: Trace | None = None,
    toplevel: str = "neuron_array",
) -> NeuronArrayCase:
    """Write the Verilog, golden trace and per-step drives for the standalone neuron array.

    ``stimulus.npz`` (a :class:`sim.tb.files.NeuronArrayStimulus`) holds
    ``drive [B, T, words·lanes]`` (padding lanes 0), the formats, the
    array's ``latency`` (command to fired word) and ``min_distance`` (cycles between two commands
    on the same word), both from :class:`hw.model.cycle_model.LayerTiming` as the layer core uses
    them, and the expected ``busy [B, T]`` (any non-zero drive or spike in the step).
    """
    from spikezip.hw.cores.layouts import Op
    from spikezip.hw.cores.neuron_array import NeuronArrayTop
    from spikezip.hw.flow.verilog import generate

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    golden = _golden(network, inputs, trace)
    lay, widths = network.layers[layer], network.widths[layer]
    timing = cycle_model.LayerTiming(n_out=lay.n_out, lanes=lanes, pipeline=pipeline)
    top = NeuronArrayTop(layer=lay, widths=widths, timing=timing, storage=storage)
    verilog = directory / f"{toplevel}.v"
    verilog.write_text(generate(top, toplevel, backend=backend))
    golden.save(directory / "golden.npz")
    drive = layer_drives(network, inputs, golden, layer)
    arr = top.array
    padded = np.zeros((*drive.shape[:2], arr.words * arr.lanes), dtype=np.int64)
    padded[:, :, : lay.n_out] = drive
    busy = (drive != 0).any(axis=2) | (golden.spikes[layer] != 0).any(axis=2)
    NeuronArrayStimulus(
        layer=layer,
        lanes=arr.lanes,
        words=arr.words,
        latency=timing.array_latency,
        min_distance=timing.min_distance,
        drive_width=widths.drive,
        membrane_width=widths.membrane,
        tracer_width=widths.tracer,
        op_init=Op.INIT.value,
        op_fire=Op.FIRE.value,
        cmd=BitLayout.of(arr.i.payload.shape()),
        fired=BitLayout.of(arr.o.payload.shape()),
        state=BitLayout.of(arr.state_layout),
        drive=padded,
        busy=busy,
    ).save(directory / STIMULUS)
    return NeuronArrayCase(directory, verilog, toplevel, golden, layer)


def _expected_beats(
    fout: events.EventFormat, outputs: list[list[events.Step]], cycles: list[list[tuple]]
) -> dict[str, np.ndarray]:
    """The expected output of a stream core as :class:`sim.tb.files.StreamStimulus` arrays:
    ``outputs`` per inference and step, ``cycles`` per inference and step ``(event cycles,
    marker cycle)`` from the core's model."""
    words, sample, step_no, index, cycle = [], [], [], [], []
    for b, (inf, timing) in enumerate(zip(outputs, cycles, strict=True)):
        for t, (step, (ev, marker)) in enumerate(zip(inf, timing, strict=True)):
            words += step.words(fout)
            index += [*step.indices.tolist(), -1]
            cycle += [*ev, marker]
            sample += [b] * (step.n_events + 1)
            step_no += [t] * (step.n_events + 1)
    return {
        "out_words": np.array(words, dtype=np.uint64),
        "out_sample": np.array(sample, dtype=np.int64),
        "out_step": np.array(step_no, dtype=np.int64),
        "out_index": np.array(index, dtype=np.int64),
        "out_cycle": np.array(cycle, dtype=np.int64),
    }


# -- the differential LayerNorm core -------------------------------------------------------------
@dataclass(frozen=True)
class StreamCase:
    """Files and facts of one simulation of a core on the stream protocol (one testbench of
    :func:`sim.tb.kit.single_stream` or :mod:`sim.tb.residual`): its Verilog, top module, the
    model's schedule, its stimulus record type and its testbench module."""

    directory: Path
    verilog: Path
    toplevel: str
    schedule: list
    stimulus: type
    testbench: str

    def env(
        self, *, ready: float = 1.0, valid: float = 1.0, check_cycles: bool | None = None
    ) -> dict[str, str]:
        """Set the knobs in the stimulus file; return the testbench's ``extra_env`` (cycles are
        checked by default when nothing stalls)."""
        if check_cycles is None:
            check_cycles = ready == 1.0 and valid == 1.0
        return _knobs(
            self.directory,
            self.stimulus,
            ready=float(ready),
            valid=float(valid),
            check_cycles=bool(check_cycles),
        )

    def run(self, sim: str, build_dir: Path, *, seed: int = 1, **knobs) -> None:
        """Build (once per ``build_dir``) and run the testbench with ``knobs`` (:meth:`env`)."""
        from spikezip.sim.runner import run_cocotb

        run_cocotb(
            sim=sim,
            sources=[self.verilog],
            toplevel=self.toplevel,
            test_module=self.testbench,
            build_dir=build_dir,
            extra_env=self.env(**knobs),
            seed=seed,
        )


#: the cases of the ViT cores (one type: :class:`StreamCase`)
LayerNormCase = ProductCase = ResidualCase = SoftmaxCase = StreamCase


def layer_norm_case(
    directory: Path,
    core,
    inputs: list[list[events.Step]],
    outputs: list[list[events.Step]] | None = None,
    *,
    name: str = "layer_norm",
    backend: str = "proc",
    toplevel: str = "layer_norm",
) -> LayerNormCase:
    """Write the Verilog and stimulus of a :class:`hw.cores.layer_norm.LayerNormCore` fed with
    ``inputs`` (per inference, the increment steps); ``outputs`` default to
    :func:`hw.model.layer_norm_model.golden_outputs` (give the reference's recorded drives to
    test against those). The expected cycles come from the core's own geometry."""
    from spikezip.hw.flow.verilog import generate
    from spikezip.hw.model import layer_norm_model as lnm

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    norm = core.norm
    if outputs is None:
        outputs = lnm.golden_outputs(norm.gain, norm.bias, norm.eps, core.geometry.tokens, inputs)
    verilog = directory / f"{toplevel}.v"
    verilog.write_text(generate(core, toplevel, backend=backend))
    fin, fout = core.input_format, core.output_format
    sched = lnm.schedule(core.geometry, inputs, outputs)
    in_words = [w for inf in inputs for step in inf for w in step.words(fin)]
    LayerNormStimulus(
        name=name,
        in_format=fin,
        out_format=fout,
        in_words=np.array(in_words, dtype=np.uint64),
        **_expected_beats(
            fout, outputs, [[(st.event_cycles, st.marker_cycle) for st in inf] for inf in sched]
        ),
    ).save(directory / STIMULUS)
    return StreamCase(
        directory, verilog, toplevel, sched, LayerNormStimulus, "spikezip.sim.tb.layer_norm"
    )


# -- the residual-stream stage -------------------------------------------------------------------
def residual_case(
    directory: Path,
    core,
    base: list[list[events.Step]] | None,
    spikes: list[list[events.Step]],
    outputs: list[list[events.Step]],
    *,
    name: str = "residual",
    toplevel: str = "residual",
) -> ResidualCase:
    """Write the Verilog and stimulus of a :class:`hw.cores.residual.ResidualCore` fed with
    ``base`` (or ``None``) and ``spikes``, expecting ``outputs`` in the cycles of
    :func:`hw.model.residual_model.schedule`."""
    from spikezip.hw.flow.verilog import generate
    from spikezip.hw.model import residual_model as rm

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    verilog = directory / f"{toplevel}.v"
    verilog.write_text(generate(core, toplevel))
    sched = rm.schedule(core.geometry, base, spikes, outputs)
    fout = core.output_format
    has_base = base is not None
    base_words = (
        [w for inf in base for s in inf for w in s.words(core.base_format)] if has_base else []
    )
    ResidualStimulus(
        name=name,
        in_format=core.spike_format,
        out_format=fout,
        in_words=np.array(
            [w for inf in spikes for s in inf for w in s.words(core.spike_format)], dtype=np.uint64
        ),
        **_expected_beats(fout, outputs, sched),
        has_base=has_base,
        base_format=core.base_format if has_base else events.EventFormat(1, 2),
        base_words=np.array(base_words, dtype=np.uint64),
    ).save(directory / STIMULUS)
    return StreamCase(
        directory, verilog, toplevel, sched, ResidualStimulus, "spikezip.sim.tb.residual"
    )


# -- the convolution core (docs/cnn.md §11) -----------------------------------------------------
def _cnn_case_start(directory, net, inputs: np.ndarray, trace: Trace | None):
    """A CNN core case's folder (made) and golden trace (default: ``sw.cnn.reference``'s)."""
    if trace is None:
        from spikezip.sw.cnn.reference import simulate

        trace = simulate(net, inputs)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    return directory, trace


def conv_core_case(
    directory: Path,
    net,
    inputs: np.ndarray,
    layer: int,
    *,
    lanes: int,
    pipeline: cycle_model.Pipeline | int = 1,
    trace: Trace | None = None,
    toplevel: str = "conv_core",
) -> StreamCase:
    """Write the Verilog and stimulus of the conv core of ``net.layers[layer]`` (an
    ``ir.cnn.ConvNet``; :func:`hw.model.conv_sites.conv_spec`) fed with the reference's input of
    that site for ``inputs``, expecting the reference's spikes (``trace``, default
    ``sw.cnn.reference.simulate``) at the exact cycle model's cycles."""
    from spikezip.hw.cores.layer_core import LayerCore
    from spikezip.hw.flow.verilog import generate
    from spikezip.hw.model.conv_sites import conv_spec, conv_streams

    directory, trace = _cnn_case_start(directory, net, inputs, trace)
    spec = conv_spec(net, layer, lanes=lanes)
    core = LayerCore.for_site(spec, pipeline=pipeline)
    verilog = directory / f"{toplevel}.v"
    verilog.write_text(generate(core, toplevel))
    ins, outs = conv_streams(net, inputs, trace, layer)
    sched = cycle_model.schedule(core.timing, ins, outs, input_map=spec.input_map)
    fin, fout = core.input_format, core.output_format
    ConvCoreStimulus(
        name=spec.name,
        in_format=fin,
        out_format=fout,
        in_words=np.array([w for inf in ins for s in inf for w in s.words(fin)], dtype=np.uint64),
        **_expected_beats(
            fout, outs, [[(st.event_cycles, st.marker_cycle) for st in inf.steps] for inf in sched]
        ),
    ).save(directory / STIMULUS)
    return StreamCase(
        directory, verilog, toplevel, sched, ConvCoreStimulus, "spikezip.sim.tb.conv_core"
    )


# -- the differential softmax core (issue 12 §2) -----------------------------------------------
def softmax_case(
    directory: Path,
    params,
    inputs: list[list[events.Step]],
    outputs: list[list[events.Step]] | None = None,
    *,
    toplevel: str = "softmax",
) -> SoftmaxCase:
    """Write the Verilog and stimulus of a :class:`hw.cores.softmax.SoftmaxCore`.

    ``outputs`` (the golden steps, e.g. from the reference's recorded drives) default to the
    definition (:func:`hw.model.softmax_model.output_steps`); when given, they must agree with
    it, so a reference run and the definition are checked against each other on the way.
    """
    from spikezip.hw.cores.softmax import SoftmaxCore
    from spikezip.hw.flow.verilog import generate
    from spikezip.hw.model import softmax_model as sm

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    core = SoftmaxCore(params)
    sm.check_inputs(params, inputs)
    defined = sm.output_steps(params, inputs)
    if outputs is not None:
        fmt = params.output_format
        words = [[w for s in inf for w in s.words(fmt)] for inf in outputs]
        if words != [[w for s in inf for w in s.words(fmt)] for inf in defined]:
            raise ValueError("the golden outputs disagree with softmax_exact")
    outputs = defined
    verilog = directory / f"{toplevel}.v"
    verilog.write_text(generate(core, toplevel))
    sched = sm.schedule(core.timing, inputs, outputs)
    fin, fout = params.input_format, params.output_format
    in_words = [w for inf in inputs for step in inf for w in step.words(fin)]
    SoftmaxStimulus(
        name="softmax",
        in_format=fin,
        out_format=fout,
        in_words=np.array(in_words, dtype=np.uint64),
        **_expected_beats(
            fout,
            outputs,
            [[(st.event_cycles, st.marker_cycle) for st in inf.steps] for inf in sched],
        ),
    ).save(directory / STIMULUS)
    return StreamCase(
        directory, verilog, toplevel, sched, SoftmaxStimulus, "spikezip.sim.tb.softmax"
    )


# -- the spike-product core (issue 12 §1) -------------------------------------------------------
def product_case(
    directory: Path,
    geo,
    inferences: list,
    *,
    pipeline: cycle_model.Pipeline | int = 1,
    backend: str = "proc",
    toplevel: str = "product",
) -> StreamCase:
    """Write the Verilog and stimulus of a :class:`hw.cores.product.SpikeProduct` of ``geo``.

    ``inferences``: per inference ``(xs, ys)``, the X and Y inputs' steps, each input's last
    marker with busy 0 (:mod:`hw.model.product_model`; the lists may differ in length, e.g.
    :func:`~hw.model.product_model.trace_inferences` of a reference trace); the expected beats
    are the definition of ``ΔO`` at the model's cycles.
    """
    from spikezip.hw.cores.product import SpikeProduct
    from spikezip.hw.flow.verilog import generate
    from spikezip.hw.model.product_model import input_beats, output_words, product_schedule

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    core = SpikeProduct(geo=geo, pipeline=pipeline)
    verilog = directory / f"{toplevel}.v"
    verilog.write_text(generate(core, toplevel, backend=backend))
    iw = geo.index_widths
    fx, fy = (events.EventFormat(w, v) for w, v in zip(iw[:2], geo.spike_widths, strict=True))
    fout = events.EventFormat(iw[2], geo.value_width)

    def words(fmt, side):
        return [
            fmt.pack(marker=mk, index=i, value=v, busy=b)
            for inference in inferences
            for mk, i, v, b in input_beats(inference[side])
        ]

    beats = product_schedule(geo, inferences)
    ProductStimulus(
        product=geo.kind,
        out_format=fout,
        x_words=np.array(words(fx, 0), dtype=np.uint64),
        y_words=np.array(words(fy, 1), dtype=np.uint64),
        out_words=output_words(beats, fout),
        out_cycle=np.array([c for c, _ in beats], dtype=np.int64),
    ).save(directory / STIMULUS)
    return StreamCase(
        directory, verilog, toplevel, beats, ProductStimulus, "spikezip.sim.tb.product"
    )


# -- the max-pool and residual merge cores (docs/cnn.md §12) -------------------------------------
def max_pool_case(
    directory: Path,
    net,
    inputs: np.ndarray,
    layer: int,
    *,
    trace: Trace | None = None,
    toplevel: str = "max_pool",
) -> StreamCase:
    """Write the Verilog and stimulus of the max-pool core of ``net.layers[layer]`` (an
    ``ir.cnn.MaxPool2d``; :func:`hw.model.pool_model.pool_geometry`) fed with the reference's
    spikes of its source for ``inputs``, expecting the reference's spikes (``trace``, default
    ``sw.cnn.reference.simulate``) at the exact cycle model's cycles."""
    from spikezip.hw.cores.max_pool import MaxPoolCore
    from spikezip.hw.flow.verilog import generate
    from spikezip.hw.model import pool_model as pm

    directory, trace = _cnn_case_start(directory, net, inputs, trace)
    geo = pm.pool_geometry(net, layer)
    core = MaxPoolCore(geo)
    verilog = directory / f"{toplevel}.v"
    verilog.write_text(generate(core, toplevel))
    ins, outs = pm.pool_streams(net, inputs, trace, layer)
    sched = pm.schedule(geo, ins, outs)
    fin, fout = geo.input_format, geo.output_format
    MaxPoolStimulus(
        name=net.sites[[s.layer for s in net.sites].index(layer)].name,
        in_format=fin,
        out_format=fout,
        in_words=np.array([w for inf in ins for s in inf for w in s.words(fin)], dtype=np.uint64),
        **_expected_beats(fout, outs, sched),
    ).save(directory / STIMULUS)
    return StreamCase(
        directory, verilog, toplevel, sched, MaxPoolStimulus, "spikezip.sim.tb.max_pool"
    )


def add_case(
    directory: Path,
    net,
    inputs: np.ndarray,
    layer: int,
    *,
    lanes: int,
    pipeline: cycle_model.Pipeline | int = 1,
    trace: Trace | None = None,
    toplevel: str = "add_core",
) -> StreamCase:
    """Write the Verilog and stimulus of the merge core of ``net.layers[layer]`` (an
    ``ir.cnn.Add``; :func:`hw.model.add_model.add_spec`) fed with the reference's spikes of
    each source for ``inputs``, expecting the reference's spikes (``trace``, default
    ``sw.cnn.reference.simulate``) at the exact cycle model's cycles."""
    from spikezip.hw.cores.add import AddCore
    from spikezip.hw.flow.verilog import generate
    from spikezip.hw.model import add_model as am

    directory, trace = _cnn_case_start(directory, net, inputs, trace)
    spec = am.add_spec(net, layer, lanes=lanes)
    fmts = am.source_formats(net, layer)
    core = AddCore(site=spec, formats=fmts, pipeline=pipeline)
    verilog = directory / f"{toplevel}.v"
    verilog.write_text(generate(core, toplevel))
    sources, _, outs = am.add_streams(net, inputs, trace, layer)
    run = am.timed(core.timing, spec.input_map, sources, outs)
    sched = [[(list(ev), mk) for ev, mk in inf] for inf in run.beats]
    fout = core.output_format
    per = [
        [w for inf in src for s in inf for w in s.words(f)]
        for src, f in zip(sources, fmts, strict=True)
    ]
    AddStimulus(
        name=spec.name,
        in_format=fmts[0],
        out_format=fout,
        in_words=np.array([w for p in per for w in p], dtype=np.uint64),
        in_counts=np.array([len(p) for p in per], dtype=np.int64),
        **_expected_beats(fout, outs, sched),
    ).save(directory / STIMULUS)
    return StreamCase(directory, verilog, toplevel, sched, AddStimulus, "spikezip.sim.tb.add_core")
