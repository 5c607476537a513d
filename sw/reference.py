"""Bit-exact integer reference of ST-BIF networks (spec §2.4, §3.1, §3.8).

* :func:`stbif_step` — one integer ST-BIF update of a layer (pure function, state in and out);
  :func:`graded_step` — the graded ST-BIF update (spikes ±2^k, docs/graded.md);
  :func:`neuron_step` — either, by the layer's ``neuron`` kind.
* :func:`simulate` — whole-network simulation with SpikeZIP's semantics: layer-serial with zero
  delay inside a step, bias injected at t = 0 only, analog or spike input, dynamic termination at
  the first idle step, a ``max_steps`` cap that is recorded and warned about when hit.
* :func:`integer_qann` — the integer QANN the converged SNN must equal:
  ``a = clamp(floor((Σ w·a_prev + B + H) / Θ), n, p)`` per layer.

Exact arithmetic on CPU BLAS. Synaptic sums are integer dot products. When every partial sum of a
layer's dot product is provably below 2^24 (resp. 2^53) in magnitude — ``Σ_j |w_ij| · max|x|``,
read from the network's exact ranges — the dot product is done in float32 (resp. float64), where
every such integer and every intermediate sum is represented exactly; otherwise in int64. The
neuron update itself is always int64.

Busy flags (the Judger, §3.8, made per sample) are *cumulative*, exactly what a layer's end-of-step
marker carries in hardware: the input is busy in step ``t`` when it has a non-zero value then or
more input steps follow (spike input); layer ``l`` is busy when its upstream is busy, when it
spikes, or at t = 0 when it has a non-zero bias. The run stops after the first step in which the
last layer is not busy; the step count includes that idle step, so an all-zero input runs 1 step
(spec §7 vector 10). A layer whose upstream is not busy is at a fixed point from then on.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from spikezip.ir import Encoding, Layer, Network, Trace
from spikezip.ir.trace import sample_digests

__all__ = [
    "StepCapWarning",
    "TraceRecorder",
    "check_max_steps",
    "graded_step",
    "integer_qann",
    "neuron_step",
    "simulate",
    "single_thread",
    "stbif_step",
]


class StepCapWarning(RuntimeWarning):
    """Some samples had not reached an idle step when ``max_steps`` ran out."""


def stbif_step(
    drive: torch.Tensor,
    membrane: torch.Tensor,
    tracer: torch.Tensor,
    *,
    threshold: torch.Tensor,
    neg_bound: int,
    pos_bound: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One integer ST-BIF step: integrate ``drive``, fire at most once, reset by subtraction.

    Returns ``(spikes, membrane, tracer)``; spikes are +1 where ``U ≥ Θ and A < p``, -1 where
    ``U < 0 and A > n`` (strict), else 0. All tensors int64 and broadcastable.
    """
    u = membrane + drive
    pos = (u >= threshold) & (tracer < pos_bound)
    neg = (u < 0) & (tracer > neg_bound)
    s = pos.to(torch.int64) - neg.to(torch.int64)
    return s, u - s * threshold, tracer + s


def _floor_pow2(x: torch.Tensor) -> torch.Tensor:
    """Largest power of two ``≤ x`` per element of a non-negative int64 tensor (0 for 0)."""
    for shift in (1, 2, 4, 8, 16, 32):
        x = x | (x >> shift)
    return x - (x >> 1)


def graded_step(
    drive: torch.Tensor,
    membrane: torch.Tensor,
    tracer: torch.Tensor,
    *,
    threshold: torch.Tensor,
    neg_bound: int,
    pos_bound: int,
    max_level: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One integer graded ST-BIF step (docs/graded.md §1): integrate ``drive``, fire one graded
    spike, reset by subtraction.

    Where ``U ≥ Θ and A < p``: ``s = +m``, ``m`` the largest power of two ``≤ min(⌊U/Θ⌋, p − A)``;
    where ``U < 0 and A > n``: ``s = −m``, ``m`` the largest power of two
    ``≤ min(⌈−U/Θ⌉, A − n)``; else 0. ``m ≤ 2^max_level`` too when ``max_level`` is given. Then
    ``A += s``, ``U −= s·Θ``. Returns ``(spikes, membrane, tracer)``, int64, broadcast.
    """
    u = membrane + drive
    pos = (u >= threshold) & (tracer < pos_bound)
    neg = (u < 0) & (tracer > neg_bound)
    q = torch.div(u, threshold, rounding_mode="floor")  # ⌈−U/Θ⌉ = −⌊U/Θ⌋
    room = torch.where(
        pos, torch.minimum(q, pos_bound - tracer), torch.minimum(-q, tracer - neg_bound)
    )
    m = _floor_pow2(torch.where(pos | neg, room, 0))
    if max_level is not None:
        m = m.clamp(max=1 << max_level)
    s = torch.where(pos, m, -m)
    return s, u - s * threshold, tracer + s


def neuron_step(
    neuron: str,
    drive: torch.Tensor,
    membrane: torch.Tensor,
    tracer: torch.Tensor,
    *,
    threshold: torch.Tensor,
    neg_bound: int,
    pos_bound: int,
    max_level: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`stbif_step` or :func:`graded_step` by ``neuron`` (``"stbif"`` or ``"graded"``)."""
    if neuron == "graded":
        return graded_step(
            drive,
            membrane,
            tracer,
            threshold=threshold,
            neg_bound=neg_bound,
            pos_bound=pos_bound,
            max_level=max_level,
        )
    return stbif_step(
        drive, membrane, tracer, threshold=threshold, neg_bound=neg_bound, pos_bound=pos_bound
    )


@dataclass(frozen=True)
class _LayerOps:
    """Per-layer tensors prepared once per simulation."""

    weight_t: torch.Tensor  # [n_in, n_out] in the exact matmul dtype
    bias: torch.Tensor  # int64 [n_out]
    threshold: torch.Tensor  # int64 [n_out]
    initial: torch.Tensor  # int64 [n_out]
    neg_bound: int
    pos_bound: int
    has_bias: bool
    neuron: str = "stbif"
    max_level: int | None = None

    @classmethod
    def build(cls, layer: Layer, max_abs_input: int) -> _LayerOps:
        bound = int(np.abs(layer.weight).sum(axis=1).max()) * max(int(max_abs_input), 1)
        if bound < 2**24:
            dtype = torch.float32
        elif bound < 2**53:
            dtype = torch.float64
        else:
            dtype = torch.int64
        return cls(
            weight_t=torch.from_numpy(layer.weight.T.copy()).to(dtype),
            bias=torch.from_numpy(layer.bias.copy()),
            threshold=torch.from_numpy(layer.thresholds.copy()),
            initial=torch.from_numpy(layer.initial_membranes.copy()),
            neg_bound=layer.neg_bound,
            pos_bound=layer.pos_bound,
            has_bias=bool(layer.bias.any()),
            neuron=layer.neuron,
            max_level=layer.max_level,
        )

    def step(
        self, drive: torch.Tensor | int, membrane: torch.Tensor, tracer: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """This layer's neuron update (:func:`neuron_step`)."""
        return neuron_step(
            self.neuron,
            drive,
            membrane,
            tracer,
            threshold=self.threshold,
            neg_bound=self.neg_bound,
            pos_bound=self.pos_bound,
            max_level=self.max_level,
        )

    def synapses(self, x: torch.Tensor) -> torch.Tensor:
        """Exact ``x @ W.T`` as int64 (see the module docstring)."""
        if self.weight_t.dtype == torch.int64:
            return x @ self.weight_t
        return (x.to(self.weight_t.dtype) @ self.weight_t).to(torch.int64)


def _prepare(network: Network) -> list[_LayerOps]:
    lo, hi = network.input_bounds
    max_in = max(abs(lo), abs(hi)) if network.encoding is Encoding.ANALOG else 1
    ops = []
    for layer in network.layers:
        ops.append(_LayerOps.build(layer, max_in))
        max_in = layer.spike_max  # the next layer's input: this layer's spikes
    return ops


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """Run torch single-threaded (restored afterwards).

    The reference's tensors are small; torch's intra-op threads then only cost synchronisation,
    and on a loaded machine (parallel test workers, simulators, synthesis) spinning threads slow
    every small kernel down by orders of magnitude (measured: 338 vs 35,367 images/s).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class TraceRecorder:
    """Per-step recording, per-sample termination and the step cap, shared by the references.

    Call :meth:`record` once per step with every layer's (or site's) spikes ``[B, n]`` and the
    cumulative busy flags ``[B, D]``; it returns True once every sample has had its first step
    in which the last layer was idle. Spikes are stored as int8 when ``spike_max`` (the largest
    ``|s|``) fits it (ST-BIF; graded up to 64), else int64. :meth:`trace` builds the
    :class:`~ir.Trace`, marks samples still running as ``capped`` and warns
    (:class:`StepCapWarning`); it records the digests of the inputs
    (:func:`ir.trace.sample_digests`) it is given.
    """

    def __init__(self, depth: int, batch: int, *, record_state: bool, spike_max: int = 1) -> None:
        self.record_state = record_state
        self.spike_dtype = torch.int8 if spike_max <= 64 else torch.int64
        self.spikes: list[list[torch.Tensor]] = [[] for _ in range(depth)]
        self.membranes: list[list[torch.Tensor]] = [[] for _ in range(depth)]
        self.tracers: list[list[torch.Tensor]] = [[] for _ in range(depth)]
        self.busy: list[torch.Tensor] = []
        self.steps = torch.zeros(batch, dtype=torch.int64)
        self.active = torch.ones(batch, dtype=torch.bool)
        self.t = 0

    def record(
        self,
        spikes: list[torch.Tensor],
        busy: torch.Tensor,
        membranes: list[torch.Tensor] | None = None,
        tracers: list[torch.Tensor] | None = None,
    ) -> bool:
        for k, s in enumerate(spikes):
            self.spikes[k].append(s.to(self.spike_dtype))
            if self.record_state:
                self.membranes[k].append(membranes[k].clone())
                self.tracers[k].append(tracers[k].clone())
        self.busy.append(busy)
        finished = ~busy[:, -1] & self.active
        self.t += 1
        self.steps[finished] = self.t
        self.active &= ~finished
        return not bool(self.active.any())

    def trace(
        self,
        *,
        digest: str,
        layer_names: tuple[str, ...],
        max_steps: int,
        bound: int,
        input_digests: np.ndarray | None = None,
        stacklevel: int = 3,
    ) -> Trace:
        capped = self.active.clone()
        self.steps[capped] = max_steps
        if bool(capped.any()):
            warnings.warn(
                f"{int(capped.sum())} of {len(capped)} samples had not reached an idle step "
                f"after max_steps={max_steps} (the proven bound for this network is {bound}); "
                "their results are not converged",
                StepCapWarning,
                stacklevel=stacklevel,
            )

        def stack(rec: list[list[torch.Tensor]]) -> tuple[np.ndarray, ...]:
            return tuple(torch.stack(r, dim=1).numpy() for r in rec)

        return Trace(
            network_digest=digest,
            spikes=stack(self.spikes),
            busy=torch.stack(self.busy, dim=1).numpy(),
            steps=self.steps.numpy(),
            capped=capped.numpy(),
            membranes=stack(self.membranes) if self.record_state else None,
            tracers=stack(self.tracers) if self.record_state else None,
            layer_names=layer_names,
            source="reference",
            input_digests=input_digests,
        )


def check_max_steps(max_steps: int | None, bound: int) -> int:
    """``max_steps`` validated, or the proven ``bound`` when None."""
    if max_steps is None:
        return bound
    if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
        raise ValueError(f"max_steps must be a positive integer, not {max_steps!r}")
    return max_steps


def simulate(
    network: Network,
    inputs: np.ndarray | torch.Tensor,
    *,
    max_steps: int | None = None,
    record_state: bool = False,
) -> Trace:
    """Run the integer SNN on a batch; return its :class:`~ir.Trace`.

    Parameters
    ----------
    network : the integer network description
    inputs : analog ``[batch, n_inputs]`` or spike ``[batch, steps, n_inputs]`` integers
        (validated by :meth:`ir.Network.check_inputs`)
    max_steps : step cap; default :meth:`ir.Network.step_bound`, which provably suffices, so the
        cap is only hit when set lower. Samples that hit it are marked ``capped`` in the trace and
        a :class:`StepCapWarning` is issued.
    record_state : also record membranes and tracers after every step

    The trace records each sample's input digest (:func:`ir.trace.sample_digests`).
    """
    with single_thread():
        return _simulate(network, inputs, max_steps=max_steps, record_state=record_state)


def _simulate(
    network: Network,
    inputs: np.ndarray | torch.Tensor,
    *,
    max_steps: int | None,
    record_state: bool,
) -> Trace:
    if isinstance(inputs, torch.Tensor):
        inputs = inputs.detach().cpu().numpy()
    x = network.check_inputs(inputs)
    batch = x.shape[0]
    spike_input = network.encoding is Encoding.SPIKE
    input_steps = x.shape[1] if spike_input else 1
    bound = network.step_bound(input_steps)
    max_steps = check_max_steps(max_steps, bound)
    ops = _prepare(network)
    xt = torch.from_numpy(np.array(x))
    membranes = [op.initial.expand(batch, -1) + op.bias for op in ops]  # bias injected at t = 0
    tracers = [torch.zeros_like(m) for m in membranes]
    spike_max = max(layer.spike_max for layer in network.layers)
    rec = TraceRecorder(len(ops), batch, record_state=record_state, spike_max=spike_max)
    zero_in = torch.zeros(batch, network.n_inputs, dtype=torch.int64)
    for t in range(max_steps):
        if spike_input:
            inp = xt[:, t] if t < input_steps else zero_in
        else:
            inp = xt if t == 0 else zero_in
        upstream = (inp != 0).any(dim=1)
        if spike_input and t < input_steps - 1:
            upstream = torch.ones_like(upstream)
        busy_t, spikes_t = [], []
        for k, op in enumerate(ops):
            drive = op.synapses(inp) if bool((inp != 0).any()) else 0
            s, membranes[k], tracers[k] = op.step(drive, membranes[k], tracers[k])
            upstream = upstream | (s != 0).any(dim=1)
            if t == 0 and op.has_bias:
                upstream = torch.ones_like(upstream)
            busy_t.append(upstream)
            spikes_t.append(s)
            inp = s
        if rec.record(spikes_t, torch.stack(busy_t, dim=1), membranes, tracers):
            break
    return rec.trace(
        digest=network.digest(),
        layer_names=tuple(network.layer_name(k) for k in range(network.depth)),
        max_steps=max_steps,
        bound=bound,
        input_digests=sample_digests(x),
        stacklevel=4,
    )


def integer_qann(network: Network, inputs: np.ndarray | torch.Tensor) -> list[np.ndarray]:
    """Integer-QANN activations per layer, ``int64 [batch, n_out]`` each.

    ``a = clamp(floor((Σ_j w_ij·a_j + B_i + H_i) / Θ_i), n, p)`` with floor toward -∞. The first
    layer sees the analog input, or the total of each spike-input train.
    """
    if isinstance(inputs, torch.Tensor):
        inputs = inputs.detach().cpu().numpy()
    x = network.check_inputs(inputs)
    a = torch.from_numpy(x.sum(axis=1) if network.encoding is Encoding.SPIKE else np.array(x))
    lo, hi = network.input_bounds
    max_in = max(abs(lo), abs(hi))
    out = []
    for layer in network.layers:
        op = _LayerOps.build(layer, max_in)
        acc = op.synapses(a) + op.bias + op.initial
        a = torch.div(acc, op.threshold, rounding_mode="floor").clamp(op.neg_bound, op.pos_bound)
        out.append(a.numpy())
        max_in = max(-layer.neg_bound, layer.pos_bound)
    return out
