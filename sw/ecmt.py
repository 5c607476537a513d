"""ECMT's multi-threshold conversion on the integer QANN: issue 14's baseline (docs/graded.md §11).

ECMT (Huang et al., "Towards High-performance Spiking Transformers from ANN to SNN Conversion",
ACM MM 2024, arXiv:2502.21193) converts an ANN with two pieces, both reproduced here exactly, in
integers, on the *same* integer QANN our SNNs convert (:class:`ir.Network`):

* the **Expectation Compensation Module** (ECM) wraps every nonlinearity ``f``: with ``Y_t`` the
  running sum of its input over the steps so far, its cumulative output after ``t`` steps is
  ``t · f(Y_t / t)`` (it emits the difference each step). Here ``f`` is the QANN's own quantizer,
  so the cumulative output in code units is

      c_t = t · clamp(⌊(Y_t/t + H)/Θ⌋, n, p) = t · clamp(⌊(Y_t + t·H) / (t·Θ)⌋, n, p)

  — one integer floor division, no fraction (:func:`ecm_code`);
* the **multi-threshold (MT) neuron** sits in front of every linear layer: membrane ``v`` from 0,
  ``v += x``; it fires the largest level ``θ·2^j`` (``j < N``, ``N`` the number of levels) with
  ``v ≥ θ·2^j − θ/2``, or ``−θ·2^j`` with ``v ≤ −θ·2^j + θ/2``, at most one spike per step, and
  resets by subtraction (:func:`mt_step`; the halves are kept exact by doubling: ``2v ≥
  θ·(2^(j+1) − 1)``).

The run (:func:`simulate`): the analog input and the **full bias** enter every step (rate coding
of a fixed input) for a **fixed** number of steps ``T``; per layer: linear → ECM(quantizer) → MT
neuron (base ``θ = Θ`` of the neuron, spikes ``±2^j`` in code units) → the next layer's weights.
The last layer has no MT neuron (nothing linear follows it; ECMT reads its head's output out
directly): the prediction is the arg-max of its cumulative ECM output ``c_T`` — the average
output times ``T`` (first index on ties, as :meth:`ir.Trace.predictions`).

It matches the QANN only **in expectation**: an MT neuron fires at most ``2^(N−1)`` per step and
carries its residual membrane into later steps, so a layer's average input after ``t`` steps is
the QANN's code minus ``residual / t``, and a quantizer downstream can round that to another
code. Exact at no finite ``T`` in general; as ``T`` grows the error shrinks as ``1/T``
(docs/graded.md §11 states and the tests check when the averages reach the QANN).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from spikezip.ir import Encoding, Layer, Network
from spikezip.ir.transformer import VisionTransformer
from spikezip.sw.reference import _floor_pow2, _LayerOps, integer_qann, single_thread

__all__ = [
    "INT64_LIMIT",
    "MAX_LEVELS",
    "MAX_STEPS",
    "EcmtRun",
    "Row",
    "check_level_count",
    "check_levels",
    "check_steps",
    "compare",
    "default_levels",
    "ecm_code",
    "format_table",
    "mt_step",
    "simulate",
]

#: Most levels an MT neuron may have (spikes up to 2^(N−1) stay far inside int64).
MAX_LEVELS = 32
#: Most time steps a run may take.
MAX_STEPS = 1 << 16
#: Every running sum and intermediate of a run must stay below this magnitude (int64 with room).
INT64_LIMIT = 1 << 62


def check_int64(bound: int, what: str) -> None:
    """A ValueError when ``bound`` (a proven magnitude bound, a Python int) reaches
    :data:`INT64_LIMIT`: the run would not be exact in int64."""
    if bound >= INT64_LIMIT:
        raise ValueError(
            f"{what} can reach {bound}, beyond the exact int64 range (2^62): fewer steps or "
            "smaller values"
        )


def mt_step(
    drive: torch.Tensor,
    membrane: torch.Tensor,
    *,
    threshold: torch.Tensor | int,
    levels: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One step of ECMT's multi-threshold neuron, in integers.

    ``v = membrane + drive``; fire ``s = +2^j`` for the largest ``j < levels`` with
    ``v ≥ θ·2^j − θ/2`` (i.e. ``2v ≥ θ·(2^(j+1) − 1)``), else ``s = −2^j`` for the largest ``j``
    with ``v ≤ −θ·2^j + θ/2``, else 0; then ``v −= s·θ``. Returns ``(spikes, membrane)``: the
    spikes in units of ``θ`` (the emitted value is ``s·θ``), int64, broadcast.
    """
    v = membrane + drive
    up = torch.div(2 * v + threshold, threshold, rounding_mode="floor")  # ≥ 2^(j+1) ⇔ fires +2^j
    down = torch.div(threshold - 2 * v, threshold, rounding_mode="floor")
    pos, neg = up >= 2, down >= 2  # v ≥ θ/2, v ≤ −θ/2: never both
    m = _floor_pow2(torch.where(pos, up, torch.where(neg, down, 0))) >> 1
    m = m.clamp(max=1 << (levels - 1))
    s = torch.where(neg, -m, m)
    return s, v - s * threshold


def ecm_code(
    total: torch.Tensor,
    t: int,
    *,
    threshold: torch.Tensor,
    half: torch.Tensor,
    neg_bound: int,
    pos_bound: int,
) -> torch.Tensor:
    """ECM's cumulative output after ``t`` steps, in code units: ``t · q(total / t)`` with ``q``
    the QANN quantizer ``clamp(⌊(z + H)/Θ⌋, n, p)`` — ``t · clamp(⌊(total + t·H)/(t·Θ)⌋, n, p)``,
    exact."""
    q = torch.div(total + t * half, t * threshold, rounding_mode="floor")
    return t * q.clamp(neg_bound, pos_bound)


def default_levels(layer: Layer) -> int:
    """ECMT's level count ``N`` for a layer: the fewest levels whose top ``2^(N−1)`` reaches the
    largest code magnitude ``max(p, −n)``, so a constant code is carried with a bounded residual
    (L = 16 unsigned: N = 5, top 16; signed −8..7: N = 4, top 8)."""
    top = max(layer.pos_bound, -layer.neg_bound, 1)
    return (top - 1).bit_length() + 1


def check_steps(steps: int) -> int:
    """``steps`` validated: an integer in ``[1, MAX_STEPS]``."""
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)):
        raise TypeError(f"steps must be an integer, not {type(steps).__name__}")
    if not 1 <= steps <= MAX_STEPS:
        raise ValueError(f"steps must lie in [1, {MAX_STEPS}], not {steps}")
    return int(steps)


def check_levels(levels: int | None, network: Network) -> tuple[int, ...]:
    """Levels per layer: :func:`default_levels` when None, else ``levels`` in
    ``[1, MAX_LEVELS]`` for every layer."""
    if check_level_count(levels) is None:
        return tuple(default_levels(layer) for layer in network.layers)
    return (int(levels),) * network.depth


def check_level_count(levels: int | None) -> int | None:
    """``levels`` validated: None, or an integer in ``[1, MAX_LEVELS]``."""
    if levels is None:
        return None
    if isinstance(levels, bool) or not isinstance(levels, (int, np.integer)):
        raise TypeError(f"levels must be an integer, not {type(levels).__name__}")
    if not 1 <= levels <= MAX_LEVELS:
        raise ValueError(f"levels must lie in [1, {MAX_LEVELS}], not {levels}")
    return int(levels)


@dataclass(frozen=True)
class EcmtRun:
    """An ECMT run of a batch for ``steps`` steps.

    ``spikes[k]`` (``int64 [B, T, n_k]``, k < depth − 1): layer k's MT spikes in code units
    (0 or ±2^j); ``outputs[k]`` (``int64 [B, n_k]``): layer k's cumulative ECM output ``c_T``
    (the average output is ``c_T / T``); ``levels``: N per layer (the last has no MT neuron).
    """

    steps: int
    levels: tuple[int, ...]
    spikes: tuple[np.ndarray, ...]
    outputs: tuple[np.ndarray, ...]

    def predictions(self) -> np.ndarray:
        """Arg-max of the last layer's summed output (first index on ties)."""
        return np.argmax(self.outputs[-1], axis=1)

    def events(self) -> np.ndarray:
        """Non-zero MT spikes per sample (an MT spike ±2^j is one event, as a graded spike)."""
        batch = self.outputs[0].shape[0]
        return sum(
            ((s != 0).sum(axis=(1, 2)) for s in self.spikes), np.zeros(batch, dtype=np.int64)
        )


def simulate(
    network: Network, inputs: np.ndarray | torch.Tensor, steps: int, *, levels: int | None = None
) -> EcmtRun:
    """Run ECMT (module docstring) on an analog ``[batch, n_inputs]`` batch for ``steps`` steps.

    ``levels``: ECMT's level count N for every MT neuron (default :func:`default_levels` per
    layer). Raises ValueError for a spike-encoded network (ECMT presents the analog input every
    step), bad ``steps``/``levels`` or inputs outside the network's bounds.
    """
    if network.encoding is not Encoding.ANALOG:
        raise ValueError(
            "ECMT takes analog input (the same input every step); the network's encoding is "
            f"{network.encoding.value!r}"
        )
    steps = check_steps(steps)
    levels_k = check_levels(levels, network)
    if isinstance(inputs, torch.Tensor):
        inputs = inputs.detach().cpu().numpy()
    x = torch.from_numpy(np.array(network.check_inputs(inputs)))
    with single_thread():
        return _run(network, x, steps, levels_k)


def _check_ranges(network: Network, steps: int, levels: tuple[int, ...]) -> None:
    """Every int64 quantity of a run is bounded (Python ints): the running sum Y + t·H ≤
    T·(Σ|w|·max|in| + |B| + H), the ECM's divisor T·Θ, and the MT membrane: |v| ≤
    Θ·(|c| + |S|) ≤ Θ·T·(max(p, −n) + 2^(N−1)), doubled in :func:`mt_step`."""
    lo, hi = network.input_bounds
    max_in = max(abs(lo), abs(hi))
    for k, (layer, n) in enumerate(zip(network.layers, levels, strict=True)):
        w = np.abs(layer.weight).astype(object).sum(axis=1)
        theta = int(layer.thresholds.max())
        drive = max(
            int(wi) * max_in + abs(int(b)) + int(h)
            for wi, b, h in zip(w, layer.bias, layer.initial_membranes, strict=True)
        )
        name = network.layer_name(k)
        check_int64(steps * max(drive, theta), f"{name}: ECMT's running input")
        if k < network.depth - 1:  # the last layer has no MT neuron
            top = max(layer.pos_bound, -layer.neg_bound) + (1 << (n - 1))
            check_int64(2 * theta * steps * top + theta, f"{name}: the MT membrane")
        max_in = 1 << (n - 1)


def _run(network: Network, x: torch.Tensor, steps: int, levels: tuple[int, ...]) -> EcmtRun:
    _check_ranges(network, steps, levels)
    lo, hi = network.input_bounds
    max_in = max(abs(lo), abs(hi))
    ops = []
    for layer, n in zip(network.layers, levels, strict=True):
        ops.append(_LayerOps.build(layer, max_in))
        max_in = 1 << (n - 1)  # the next layer's input: this layer's MT spikes
    batch, depth = x.shape[0], network.depth
    first = ops[0].synapses(x) + ops[0].bias  # the same drive every step
    totals = [torch.zeros(batch, op.bias.shape[0], dtype=torch.int64) for op in ops]
    codes = [torch.zeros_like(y) for y in totals]
    membranes = [torch.zeros_like(y) for y in totals[:-1]]
    spikes: list[list[torch.Tensor]] = [[] for _ in range(depth - 1)]
    for t in range(1, steps + 1):
        drive = first
        for k, op in enumerate(ops):
            if k:
                drive = op.synapses(spikes[k - 1][-1]) + op.bias
            totals[k] += drive
            code = ecm_code(
                totals[k],
                t,
                threshold=op.threshold,
                half=op.initial,
                neg_bound=op.neg_bound,
                pos_bound=op.pos_bound,
            )
            delta, codes[k] = code - codes[k], code
            if k < depth - 1:
                s, membranes[k] = mt_step(
                    delta * op.threshold, membranes[k], threshold=op.threshold, levels=levels[k]
                )
                spikes[k].append(s)
    return EcmtRun(
        steps=steps,
        levels=levels,
        spikes=tuple(torch.stack(s, dim=1).numpy() for s in spikes),
        outputs=tuple(c.numpy() for c in codes),
    )


@dataclass(frozen=True)
class Row:
    """One row of the baseline table (:func:`compare`)."""

    name: str
    accuracy: float | None  #: None without labels
    agreement: float  #: fraction of samples whose prediction is the integer QANN's
    steps_mean: float | None  #: None for the QANN
    steps_max: int | None
    events_mean: float | None  #: non-zero spikes per inference (None for the QANN)


def compare(
    network: Network | VisionTransformer,
    inputs: np.ndarray,
    labels: np.ndarray | None,
    steps: tuple[int, ...],
    *,
    levels: int | None = None,
    max_level: int | None = None,
    chunk: int = 150,
) -> list[Row]:
    """The baseline table: ECMT at each of ``steps``, our ST-BIF and graded SNNs (exact, run to
    their idle step; graded with ``max_level`` K) and the integer QANN, on ``network``'s weights
    (its own neuron kind is ignored) and ``inputs``; accuracy against ``labels`` when given.

    ``network`` is an MLP (:func:`simulate`) or a ViT (:func:`sw.vit.ecmt.simulate`); the runs
    take ``chunk`` samples at a time (it bounds the memory, not the result).
    """
    if isinstance(network, VisionTransformer):
        from spikezip.sw.vit import reference as ref
        from spikezip.sw.vit.ecmt import simulate as run_ecmt
        from spikezip.sw.vit.energy import count_ops

        def qann(x):
            return ref.integer_qann(network, x).predictions()
    else:
        from spikezip.sw import reference as ref
        from spikezip.sw.energy import count_ops

        run_ecmt = simulate

        def qann(x):
            return np.argmax(integer_qann(network, x)[-1], axis=1)

    x = network.check_inputs(inputs)
    parts = [x[lo : lo + chunk] for lo in range(0, len(x), chunk)]
    truth = np.concatenate([qann(xc) for xc in parts])

    def row(name, preds, steps_mean, steps_max, events) -> Row:
        acc = None if labels is None else float((preds == labels).mean())
        return Row(name, acc, float((preds == truth).mean()), steps_mean, steps_max, events)

    rows = []
    for t in steps:
        runs = [run_ecmt(network, xc, t, levels=levels) for xc in parts]
        preds = np.concatenate([r.predictions() for r in runs])
        events = float(np.concatenate([r.events() for r in runs]).mean())
        rows.append(row(f"ECMT T={t}", preds, float(t), t, events))
    for name, net in (
        ("ST-BIF (exact)", network.with_neuron("stbif")),
        (
            f"graded K={'∞' if max_level is None else max_level} (exact)",
            network.with_neuron("graded", max_level),
        ),
    ):
        preds, steps_all, events = [], [], []
        for xc in parts:
            trace = ref.simulate(net, xc)
            preds.append(trace.predictions())
            steps_all.append(trace.steps)
            events.append(count_ops(net, trace, xc).summary()["events_mean"] * len(xc))
        steps_all = np.concatenate(steps_all)
        rows.append(
            row(
                name,
                np.concatenate(preds),
                float(steps_all.mean()),
                int(steps_all.max()),
                sum(events) / len(x),
            )
        )
    rows.append(row("integer QANN", truth, None, None, None))
    return rows


def format_table(rows: list[Row]) -> str:
    """``rows`` as a plain-text table (accuracy and agreement in %)."""

    def pct(v: float | None) -> str:
        return "—" if v is None else f"{100 * v:.2f} %"

    lines = [
        f"{'model':<22}{'accuracy':>10}{'== QANN':>10}{'steps mean':>12}{'max':>6}{'events':>10}"
    ]
    for r in rows:
        steps = "—" if r.steps_mean is None else f"{r.steps_mean:.2f}"
        smax = "—" if r.steps_max is None else str(r.steps_max)
        events = "—" if r.events_mean is None else f"{r.events_mean:.1f}"
        lines.append(
            f"{r.name:<22}{pct(r.accuracy):>10}{pct(r.agreement):>10}{steps:>12}{smax:>6}"
            f"{events:>10}"
        )
    return "\n".join(lines)
