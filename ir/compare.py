"""Exact comparison of two traces that names the first divergence.

"First" means: the lowest sample index, then the earliest time step, then the lowest layer (layers
run in order within a step), then the field (spike before membrane before tracer before busy),
then the lowest neuron. A run that differs only in its length is reported as a ``steps``
divergence at the first step where one trace stopped and the other did not. A sample that hit
its step cap (``capped``) has no values past its last recorded step, so nothing is compared
there: only its run length.

Traces that cannot be compared raise :class:`TraceMismatchError`: different networks, batch
sizes, depths or widths, no samples at all, or — when both traces record input digests
(:func:`ir.trace.sample_digests`) — different inputs for some sample.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from spikezip.ir.trace import Trace

__all__ = ["Divergence", "TraceMismatchError", "first_divergence"]

_FIELDS = ("spikes", "membranes", "tracers", "busy")


class TraceMismatchError(ValueError):
    """Two traces cannot be compared (different networks, inputs, batch sizes or depths)."""


@dataclass(frozen=True)
class Divergence:
    """The first place where ``actual`` differs from ``expected``."""

    sample: int
    layer: int
    layer_name: str
    neuron: int | None  #: None for per-layer fields (busy, steps)
    step: int
    field: str  #: "spikes", "membranes", "tracers", "busy" or "steps"
    expected: int
    actual: int
    cycle: int | None  #: the hardware cycle of that event or step, when a trace has cycle stamps
    context: str  #: a few steps of expected vs actual around the divergence
    #: the neuron's coordinates in its layer's shape (``token 3, channel 5``), when known
    coordinates: str = ""

    def __str__(self) -> str:
        where = f"sample {self.sample}, layer {self.layer} ({self.layer_name})"
        if self.neuron is not None:
            where += f", neuron {self.neuron}"
            where += f" ({self.coordinates})" if self.coordinates else ""
        where += f", time step {self.step}"
        where += f", cycle {self.cycle}" if self.cycle is not None else ", cycle n/a"
        if self.field == "steps":
            head = (
                f"first divergence in run length: {where}: expected {self.expected} steps, "
                f"actual {self.actual}"
            )
        elif self.field == "busy":
            head = (
                f"first divergence in busy: {where}: expected {self.expected}, actual {self.actual}"
            )
        else:
            head = (
                f"first divergence in {self.field}: {where}: expected {self.expected:+d}, "
                f"actual {self.actual:+d}"
            )
        return head + "\n" + self.context


def _padded(arr: np.ndarray, n_steps: int) -> np.ndarray:
    """Pad axis 1 to ``n_steps`` by repeating the last step (state) — callers zero spikes."""
    if arr.shape[1] >= n_steps:
        return arr[:, :n_steps]
    pad = np.repeat(arr[:, -1:], n_steps - arr.shape[1], axis=1)
    return np.concatenate([arr, pad], axis=1)


def _field_arrays(trace: Trace, field: str, n_steps: int) -> list[np.ndarray] | None:
    if field == "busy":
        busy = _padded(trace.busy, n_steps).copy()
        busy[:, trace.n_steps :] = False
        return [busy[:, :, k : k + 1] for k in range(trace.depth)]
    arrays = getattr(trace, field)
    if arrays is None:
        return None
    out = []
    for a in arrays:
        a = _padded(a.astype(np.int64), n_steps).copy()
        if field == "spikes":
            a[:, trace.n_steps :] = 0
        out.append(a)
    return out


def _cycle(trace: Trace, layer: int, sample: int, step: int, neuron: int | None) -> int | None:
    if trace.spike_cycles is not None and neuron is not None and step < trace.n_steps:
        c = int(trace.spike_cycles[layer][sample, step, neuron])
        if c >= 0:
            return c
    if trace.step_cycles is not None and step < trace.n_steps:
        return int(trace.step_cycles[layer][sample, step])
    return None


def _run(trace: Trace, sample: int) -> str:
    steps = int(trace.steps[sample])
    return f"run {steps} steps, capped" if trace.capped[sample] else f"run {steps} steps"


def _known(trace: Trace, sample: int) -> int:
    """Steps whose values are known: all for a finished run, the recorded ones when capped."""
    return int(trace.steps[sample]) if trace.capped[sample] else np.iinfo(np.int64).max


def _context(
    exp: np.ndarray,
    act: np.ndarray,
    step: int,
    expected: Trace,
    actual: Trace,
    sample: int,
    label: str,
    *,
    flag: bool = False,
) -> str:
    """A few steps of ``exp`` and ``act`` (padded to the same length) around ``step``.

    Flags print as 0/1, values with their sign; steps past a capped run print as ``-``.
    """
    lo, hi = max(0, step - 3), min(len(exp), step + 4)
    cols = range(lo, hi)

    def row(values: np.ndarray, known: int) -> str:
        cells = []
        for t in cols:
            if t >= known:
                cells.append(f"{'-':>4}")
            elif flag:
                cells.append(f"{int(values[t]):>4d}")
            else:
                cells.append(f"{int(values[t]):>+4d}")
        return " ".join(cells)

    rows = [
        "  step     " + " ".join(f"{t:>4d}" for t in cols),
        "  expected "
        + row(exp, _known(expected, sample))
        + f"   ({label}; {_run(expected, sample)})",
        "  actual   " + row(act, _known(actual, sample)) + f"   ({_run(actual, sample)})",
        "           " + " ".join(" ^^^" if t == step else "    " for t in cols),
    ]
    return "\n".join(r.rstrip() for r in rows)


def first_divergence(
    expected: Trace,
    actual: Trace,
    *,
    fields: tuple[str, ...] | None = None,
    describe: Callable[[int, int], str] | None = None,
) -> Divergence | None:
    """Compare two traces exactly; return the first :class:`Divergence` or ``None``.

    ``fields`` defaults to every per-step field recorded in both traces. ``describe(layer,
    neuron)`` names a neuron's coordinates in its layer (a ViT site's token and channel,
    :meth:`ir.transformer.VisionTransformer.describe_neuron`). Raises
    :class:`TraceMismatchError` when the traces are of different networks or shapes.
    """
    if expected.network_digest != actual.network_digest:
        raise TraceMismatchError(
            f"traces come from different networks (digest {expected.network_digest[:12]}… vs "
            f"{actual.network_digest[:12]}…)"
        )
    if expected.batch != actual.batch:
        raise TraceMismatchError(f"batch sizes differ: {expected.batch} vs {actual.batch}")
    if expected.batch == 0:
        raise TraceMismatchError("no samples to compare: both traces hold 0 samples")
    if expected.depth != actual.depth:
        raise TraceMismatchError(f"layer counts differ: {expected.depth} vs {actual.depth}")
    for k in range(expected.depth):
        if expected.spikes[k].shape[2] != actual.spikes[k].shape[2]:
            raise TraceMismatchError(
                f"layer {k} widths differ: {expected.spikes[k].shape[2]} vs "
                f"{actual.spikes[k].shape[2]} neurons"
            )
    _check_inputs(expected, actual)
    if fields is None:
        fields = tuple(
            f
            for f in _FIELDS
            if f in ("spikes", "busy")
            or (getattr(expected, f) is not None and getattr(actual, f) is not None)
        )
    n_steps = max(expected.n_steps, actual.n_steps)
    batch, depth = expected.batch, expected.depth
    # mism[b, t, layer, field] : any neuron differs
    per_field: list[tuple[str, list[np.ndarray], list[np.ndarray]]] = []
    mism = np.zeros((batch, n_steps, depth, len(fields)), dtype=bool)
    t_axis = np.arange(n_steps)[None, :]
    valid = t_axis < np.maximum(expected.steps, actual.steps)[:, None]
    for trace in (expected, actual):  # nothing is known past a capped run's last step
        valid &= ~trace.capped[:, None] | (t_axis < trace.steps[:, None])
    for f_idx, name in enumerate(fields):
        e, a = _field_arrays(expected, name, n_steps), _field_arrays(actual, name, n_steps)
        if e is None or a is None:
            raise TraceMismatchError(f"field {name!r} is not recorded in both traces")
        per_field.append((name, e, a))
        for k in range(depth):
            mism[:, :, k, f_idx] = (e[k] != a[k]).any(axis=2) & valid
    steps_differ = expected.steps != actual.steps
    bad_samples = np.flatnonzero(mism.any(axis=(1, 2, 3)) | steps_differ)
    if bad_samples.size == 0:
        return None
    b = int(bad_samples[0])
    hits = np.argwhere(mism[b])
    if hits.size == 0:  # same per-step values, different run length
        t = int(min(expected.steps[b], actual.steps[b]))
        busy_e = _field_arrays(expected, "busy", n_steps)[-1][b, :, 0]
        busy_a = _field_arrays(actual, "busy", n_steps)[-1][b, :, 0]
        ctx = _context(
            busy_e,
            busy_a,
            min(t, n_steps - 1),
            expected,
            actual,
            b,
            "busy flag of the last layer",
            flag=True,
        )
        return Divergence(
            sample=b,
            layer=depth - 1,
            layer_name=expected.layer_names[-1],
            neuron=None,
            step=t,
            field="steps",
            expected=int(expected.steps[b]),
            actual=int(actual.steps[b]),
            cycle=_cycle(actual, depth - 1, b, min(t, actual.n_steps - 1), None),
            context=ctx,
        )
    t, k, f_idx = (int(x) for x in hits[0])  # argwhere is lexicographic: step, layer, field
    name, e, a = per_field[f_idx]
    n = int(np.flatnonzero(e[k][b, t] != a[k][b, t])[0])
    neuron = None if name == "busy" else n
    label = f"{name} of neuron {n}" if neuron is not None else "busy flag"
    return Divergence(
        sample=b,
        layer=k,
        layer_name=expected.layer_names[k],
        neuron=neuron,
        step=t,
        field=name,
        expected=int(e[k][b, t, n]),
        actual=int(a[k][b, t, n]),
        cycle=_cycle(actual, k, b, t, neuron)
        if actual.step_cycles is not None or actual.spike_cycles is not None
        else _cycle(expected, k, b, t, neuron),
        context=_context(
            e[k][b, :, n], a[k][b, :, n], t, expected, actual, b, label, flag=name == "busy"
        ),
        coordinates=describe(k, n) if describe is not None and neuron is not None else "",
    )


def _check_inputs(expected: Trace, actual: Trace) -> None:
    """Raise :class:`TraceMismatchError` when both traces record input digests that differ."""
    if expected.input_digests is None or actual.input_digests is None:
        return
    differ = (expected.input_digests != actual.input_digests).any(axis=1)
    if differ.any():
        k = int(np.flatnonzero(differ)[0])
        e, a = expected.input_digests[k].tobytes().hex(), actual.input_digests[k].tobytes().hex()
        others = int(differ.sum()) - 1
        more = f" (and {others} more samples)" if others else ""
        raise TraceMismatchError(
            f"different inputs: sample {k} has input digest {e[:12]}… in the expected trace "
            f"and {a[:12]}… in the actual one{more}; the traces are of different input batches "
            "(or of the same inputs in a different order)"
        )
