"""Bit-exact integer reference of ViT-ReLU ST-BIF networks (spec §3; docs/transformer.md).

* :func:`layer_norm`, :func:`softmax` — the integer non-linear functions, batched (their Python
  definitions are :func:`ir.transformer.layer_norm_exact` / :func:`~ir.transformer.softmax_exact`);
* :func:`integer_qann` — the integer QANN: every site's code, drive and the non-spike totals;
* :func:`run` / :func:`simulate` — the SNN with SpikeZIP-TF's semantics: layer-serial with zero
  delay inside a step; biases, the class token and the position embedding injected at t = 0;
  the analog image at t = 0; LayerNorm and softmax as differential operators
  (``emit g(X_t) − g(X_{t−1})``, ``g(X_{−1}) := 0``); the attention products as ``multi`` and
  ``multi1`` on spikes and tracers; per-sample dynamic termination at the first idle step; a
  ``max_steps`` cap (default: the proven bound) that is recorded and warned about when hit.

Every SNN quantity is an integer, and every ST-BIF site is :func:`sw.reference.stbif_step` (or
:func:`~sw.reference.graded_step` for a graded site: spikes ±2^k; the products ``multi`` and
``multi1`` telescope for any integer spike values, docs/graded.md §5). Each
site's cumulative drive converges to the integer QANN's drive of that site, so its tracer
converges to the QANN's code (docs/transformer.md proves it).

Busy flags are cumulative in execution order, as in :func:`sw.reference.simulate`: site ``l`` is
busy in step ``t`` when the input (t = 0) or any site ``≤ l`` had a non-zero drive or spiked. A
step in which no site had a drive and none spiked leaves every state unchanged and repeats itself
(a fixed point), so the run stops after it; the step count includes it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from spikezip.ir import Layer, Trace
from spikezip.ir.trace import sample_digests
from spikezip.ir.transformer import Site, SiteKind, VisionTransformer
from spikezip.sw.attention import multi, multi1
from spikezip.sw.reference import (
    StepCapWarning,
    TraceRecorder,
    _LayerOps,
    check_max_steps,
    neuron_step,
    single_thread,
)

__all__ = [
    "Activations",
    "SnnRun",
    "StepCapWarning",
    "integer_qann",
    "layer_norm",
    "run",
    "simulate",
    "softmax",
]

#: Relative distance to a rounding tie below which :func:`layer_norm` re-checks in exact integers
#: (the float64 fast path errs by at most 2^-51 relative).
_TIE_TOLERANCE = 2.0**-40


# -- integer non-linear functions ---------------------------------------------------------------
def layer_norm(
    stream: torch.Tensor, gain: torch.Tensor, bias: torch.Tensor, eps: int
) -> torch.Tensor:
    """Integer LayerNorm over the last axis (:func:`ir.transformer.layer_norm_exact`, batched).

    ``G_i = bias_i + sgn(a_i)·floor(|a_i|/√W + ½)`` with ``a_i = gain_i·(D·R_i − ΣR)`` and
    ``W = D·ΣR² − (ΣR)² + eps``. The rounding is computed in float64 and is exact: the float
    result is within 2^-51 (relative) of the true one, so only values within 2^-40 of a tie
    (``k + ½``) can round differently; those are recomputed in Python integers with ``isqrt``.

    Parameters
    ----------
    stream : torch.Tensor
        ``int64 [..., D]``, the cumulative residual stream.
    gain, bias : torch.Tensor
        ``int64 [D]``.
    eps : int
        ≥ 1.

    Returns
    -------
    torch.Tensor
        ``int64 [..., D]``.
    """
    d = stream.shape[-1]
    s = stream.sum(dim=-1, keepdim=True)
    v = d * (stream * stream).sum(dim=-1, keepdim=True) - s * s
    w = v + eps
    a = (d * stream - s) * gain
    m = a.abs()
    y = m.to(torch.float64) / torch.sqrt(w.to(torch.float64))
    r = torch.floor(y + 0.5)
    near = ((y - torch.floor(y)) - 0.5).abs() <= torch.clamp(y, min=1.0) * _TIE_TOLERANCE
    r = r.to(torch.int64)
    if bool(near.any()):
        idx = near.nonzero(as_tuple=True)
        exact = []
        for mi, wi in zip(m[idx].tolist(), w.expand_as(m)[idx].tolist(), strict=True):
            n = math.isqrt(mi * mi // wi)
            exact.append(n + 1 if 4 * mi * mi >= (2 * n + 1) ** 2 * wi else n)
        r[idx] = torch.tensor(exact, dtype=torch.int64)
    return bias + torch.sign(a) * r


def softmax(scores: torch.Tensor, table: torch.Tensor, numerator: int) -> torch.Tensor:
    """Integer softmax over the last axis (:func:`ir.transformer.softmax_exact`, batched).

    ``E_j = table[max P − P_j]`` (0 beyond the table), ``G_j = floor((E_j·N + ⌊Σ/2⌋)/Σ)``.

    Parameters
    ----------
    scores : torch.Tensor
        ``int64 [..., n]``.
    table : torch.Tensor
        ``int64 [K]``, ``table[0] ≥ 1``.
    numerator : int
        ``N ≥ 1``.
    """
    ext = torch.cat([table, torch.zeros(1, dtype=torch.int64)])
    gap = (scores.amax(dim=-1, keepdim=True) - scores).clamp(max=table.shape[0])
    e = ext[gap]
    total = e.sum(dim=-1, keepdim=True)
    return torch.div(e * numerator + total // 2, total, rounding_mode="floor")


# -- prepared operators --------------------------------------------------------------------------
def _tensor(arr: np.ndarray) -> torch.Tensor:
    """A writable ``int64`` tensor copy of a (possibly read-only) IR array."""
    return torch.from_numpy(np.array(arr, dtype=np.int64))


def _exact_dtype(bound: int) -> torch.dtype:
    """A matmul dtype in which every partial sum up to ``bound`` in magnitude is exact."""
    if bound < 2**24:
        return torch.float32
    if bound < 2**53:
        return torch.float64
    return torch.int64


def _exact(fn: Any, *args: torch.Tensor, bound: int) -> torch.Tensor:
    """``fn(*args)`` of integer tensors, computed exactly in the cheapest sufficient dtype."""
    dtype = _exact_dtype(bound)
    if dtype == torch.int64:
        return fn(*args)
    return fn(*(a.to(dtype) for a in args)).to(torch.int64)


@dataclass(frozen=True)
class _Quant:
    """Neuron parameters of one site, broadcastable over ``[batch, *shape]``."""

    threshold: torch.Tensor
    initial: torch.Tensor
    neg_bound: int
    pos_bound: int
    neuron: str = "stbif"
    max_level: int | None = None

    @classmethod
    def of(cls, site: Site) -> _Quant:
        op = site.op
        channels = site.shape[-1]
        if site.kind is SiteKind.SOFTMAX:
            thr = np.asarray([op.threshold], dtype=np.int64)
        elif site.kind is SiteKind.CONTEXT:
            thr = op.thresholds_for(channels)
        else:
            thr = np.asarray(op.thresholds, dtype=np.int64)
        t = _tensor(thr)
        return cls(
            threshold=t,
            initial=t // 2,
            neg_bound=op.neg_bound,
            pos_bound=op.pos_bound,
            neuron=op.neuron,
            max_level=op.max_level,
        )

    def code(self, drive: torch.Tensor) -> torch.Tensor:
        """The integer QANN's quantizer: ``clamp(floor((drive + H)/Θ), n, p)``."""
        q = torch.div(drive + self.initial, self.threshold, rounding_mode="floor")
        return q.clamp(self.neg_bound, self.pos_bound)


def _heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """``[B, N, D] → [B, heads, N, D/heads]``."""
    b, n, d = x.shape
    return x.reshape(b, n, heads, d // heads).transpose(1, 2)


def _merge(x: torch.Tensor) -> torch.Tensor:
    """``[B, heads, N, dh] → [B, N, heads·dh]``."""
    b, h, n, dh = x.shape
    return x.transpose(1, 2).reshape(b, n, h * dh)


def _magnitude(op: Any) -> int:
    return max(-int(op.neg_bound), int(op.pos_bound))


# -- the integer QANN ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Activations:
    """The integer QANN on a batch.

    Attributes
    ----------
    codes : tuple of numpy.ndarray
        Per site (``VisionTransformer.sites`` order), ``int64 [batch, size]``, flattened.
    values : dict of str to numpy.ndarray
        Non-spike totals, unflattened ``[batch, *shape]``: ``"{site}.drive"`` (the cumulative
        input of every site's neuron: ``W·a + B``, ``G`` of a LayerNorm or softmax, ``w·C`` of a
        context), ``"{site}.stream"`` (the stream entering each LayerNorm) and
        ``"blocks.{b}.scores"`` (``a_q·a_kᵀ`` per head).
    """

    codes: tuple[np.ndarray, ...]
    values: dict[str, np.ndarray]

    def predictions(self) -> np.ndarray:
        """Arg-max of the head's codes (first index on ties)."""
        return np.argmax(self.codes[-1], axis=1)


def integer_qann(vit: VisionTransformer, inputs: np.ndarray | torch.Tensor) -> Activations:
    """The integer QANN's codes and non-spike totals (what the converged SNN must equal).

    Parameters
    ----------
    vit : ir.transformer.VisionTransformer
    inputs : array of int
        ``[batch, n_inputs]`` pixels within ``vit.input_bounds``.
    """
    with single_thread():
        return _integer_qann(vit, inputs)


def _integer_qann(vit: VisionTransformer, inputs: np.ndarray | torch.Tensor) -> Activations:
    if isinstance(inputs, torch.Tensor):
        inputs = inputs.detach().cpu().numpy()
    x = _tensor(vit.check_inputs(inputs))
    sites = {s.name: s for s in vit.sites}
    codes: dict[str, torch.Tensor] = {}
    values: dict[str, torch.Tensor] = {}

    def linear(name: str, a: torch.Tensor, max_in: int) -> torch.Tensor:
        layer: Layer = sites[name].op
        op = _LayerOps.build(layer, max_in)
        drive = op.synapses(a) + op.bias
        values[f"{name}.drive"] = drive
        codes[name] = _Quant.of(sites[name]).code(drive)
        return codes[name]

    def norm(name: str, stream: torch.Tensor) -> torch.Tensor:
        op = sites[name].op
        g = layer_norm(stream, _tensor(op.gain), _tensor(op.bias), op.eps)
        values[f"{name}.stream"] = stream
        values[f"{name}.drive"] = g
        codes[name] = _Quant.of(sites[name]).code(g)
        return codes[name]

    lo, hi = vit.input_bounds
    a_e = linear("embed", x[:, _tensor(vit.patch_index)], max(abs(lo), abs(hi)))
    pos = _tensor(vit.position)
    stream = pos.expand(x.shape[0], -1, -1).clone()
    stream[:, 1:] += vit.embed_residual * a_e
    for b, blk in enumerate(vit.blocks):
        p = f"blocks.{b}."
        n1 = norm(p + "norm1", stream)
        m1 = _magnitude(blk.norm1)
        q, k, v = (_heads(linear(p + f, n1, m1), blk.heads) for f in ("q", "k", "v"))
        scores = _exact(lambda a, c: a @ c.transpose(-1, -2), q, k, bound=vit.ranges.scores[b] + 1)
        values[p + "scores"] = scores
        sm = blk.softmax
        g = softmax(scores, _tensor(sm.table), sm.numerator)
        values[p + "attn.drive"] = g
        a = codes[p + "attn"] = _Quant.of(sites[p + "attn"]).code(g)
        c = blk.context.weight * _merge(_exact(torch.matmul, a, v, bound=vit.ranges.context[b] + 1))
        values[p + "context.drive"] = c
        ctx = codes[p + "context"] = _Quant.of(sites[p + "context"]).code(c)
        stream = stream + blk.attn_residual * linear(p + "proj", ctx, _magnitude(blk.context))
        n2 = norm(p + "norm2", stream)
        f1 = linear(p + "fc1", n2, _magnitude(blk.norm2))
        stream = stream + blk.mlp_residual * linear(p + "fc2", f1, _magnitude(blk.fc1))
    nf = norm("norm", stream)
    linear("head", nf[:, 0], _magnitude(vit.norm))
    batch = x.shape[0]
    return Activations(
        codes=tuple(codes[s.name].reshape(batch, -1).numpy() for s in vit.sites),
        values={k: v.numpy() for k, v in values.items()},
    )


# -- the SNN -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SnnRun:
    """A simulated batch: its trace and the final non-spike totals.

    Attributes
    ----------
    trace : ir.Trace
        Per-site spikes (sites as layers, ``layer_names`` = site names), busy flags, steps.
    totals : dict of str to numpy.ndarray
        The same keys as :attr:`Activations.values`: every site's summed drive, the final stream
        accumulated by each LayerNorm, the final scores ``Σ_t multi``.
    steps : list of dict of str to numpy.ndarray, or None
        With ``record_drives``: per step ``t``, ``"{site}.drive"`` (the drive every site integrated
        in step ``t``, ``int64 [batch, *shape]``, zeros included), ``"{norm}.increment"`` (the
        stream increment ``ΔR_t`` that LayerNorm site added to its accumulator, ``[batch, tokens,
        dim]``) and ``"blocks.{b}.scores_step"`` (``P_t − P_{t−1}``, ``[batch, heads, tokens,
        tokens]``): the stimulus and golden output of one core of the block, step by step.
    """

    trace: Trace
    totals: dict[str, np.ndarray]
    steps: list[dict[str, np.ndarray]] | None = None


class _State:
    """Membranes, tracers and summed drives of one site, ``int64 [batch, *shape]``."""

    def __init__(self, site: Site, batch: int) -> None:
        self.site = site
        self.quant = _Quant.of(site)
        shape = (batch, *site.shape)
        self.membrane = self.quant.initial.expand(shape).clone()
        self.tracer = torch.zeros(shape, dtype=torch.int64)
        self.drive_total = torch.zeros(shape, dtype=torch.int64)

    def step(self, drive: torch.Tensor | int) -> torch.Tensor:
        s, self.membrane, self.tracer = neuron_step(
            self.quant.neuron,
            drive,
            self.membrane,
            self.tracer,
            threshold=self.quant.threshold,
            neg_bound=self.quant.neg_bound,
            pos_bound=self.quant.pos_bound,
            max_level=self.quant.max_level,
        )
        self.drive_total = self.drive_total + drive
        return s


def _active(t: torch.Tensor) -> torch.Tensor:
    """Per sample: any non-zero element."""
    return (t.reshape(t.shape[0], -1) != 0).any(dim=1)


def run(
    vit: VisionTransformer,
    inputs: np.ndarray | torch.Tensor,
    *,
    max_steps: int | None = None,
    record_state: bool = False,
    record_drives: bool = False,
) -> SnnRun:
    """Run the integer SNN on a batch; return its trace and final totals.

    Parameters
    ----------
    vit : ir.transformer.VisionTransformer
    inputs : array of int
        ``[batch, n_inputs]`` pixels (analog, injected at t = 0).
    max_steps : int, optional
        Step cap; default :meth:`~ir.transformer.VisionTransformer.step_bound`, which provably
        suffices. Samples that hit a lower cap are marked ``capped`` and a
        :class:`~sw.reference.StepCapWarning` is issued.
    record_state : bool
        Also record every site's membranes and tracers after every step.
    record_drives : bool
        Also record every site's drive, each LayerNorm's stream increment and each block's score
        change per step (:attr:`SnnRun.steps`).
    """
    with single_thread():
        return _run(
            vit, inputs, max_steps=max_steps, record_state=record_state, record_drives=record_drives
        )


def _run(
    vit: VisionTransformer,
    inputs: np.ndarray | torch.Tensor,
    *,
    max_steps: int | None,
    record_state: bool,
    record_drives: bool = False,
) -> SnnRun:
    if isinstance(inputs, torch.Tensor):
        inputs = inputs.detach().cpu().numpy()
    checked = vit.check_inputs(inputs)
    x = _tensor(checked)
    batch = x.shape[0]
    bound = vit.step_bound()
    max_steps = check_max_steps(max_steps, bound)
    sim = _Simulator(vit, x, record_drives=record_drives)
    spike_max = max(s.op.spike_max for s in vit.sites)
    rec = TraceRecorder(len(vit.sites), batch, record_state=record_state, spike_max=spike_max)
    steps: list[dict[str, np.ndarray]] | None = [] if record_drives else None
    for t in range(max_steps):
        spikes, busy = sim.step(t)
        if steps is not None:
            steps.append(sim.recorded)
        flat = [s.reshape(batch, -1) for s in spikes]
        if record_state:
            mem = [st.membrane.reshape(batch, -1) for st in sim.states]
            tr = [st.tracer.reshape(batch, -1) for st in sim.states]
        else:
            mem = tr = None
        if rec.record(flat, busy, mem, tr):
            break
    trace = rec.trace(
        digest=vit.digest(),
        layer_names=vit.site_names,
        max_steps=max_steps,
        bound=bound,
        input_digests=sample_digests(checked),
        stacklevel=4,
    )
    return SnnRun(trace=trace, totals=sim.totals(), steps=steps)


def simulate(
    vit: VisionTransformer,
    inputs: np.ndarray | torch.Tensor,
    *,
    max_steps: int | None = None,
    record_state: bool = False,
) -> Trace:
    """:func:`run`'s trace only (same parameters): per-site spikes, busy flags and steps."""
    return run(vit, inputs, max_steps=max_steps, record_state=record_state).trace


class _Simulator:
    """The SNN's state and one step of it (layer-serial, zero delay)."""

    def __init__(self, vit: VisionTransformer, x: torch.Tensor, *, record_drives: bool = False):
        self.vit = vit
        self.record_drives = record_drives
        self.recorded: dict[str, np.ndarray] = {}
        batch = x.shape[0]
        self.x = x
        self.patches = x[:, _tensor(vit.patch_index)]
        self.states = [_State(s, batch) for s in vit.sites]
        self.by_name = {st.site.name: st for st in self.states}
        lo, hi = vit.input_bounds
        self.ops: dict[str, _LayerOps] = {}
        # a spike-fed layer's input is a spike of at most the largest |s| of any site
        spike_max = max(s.op.spike_max for s in vit.sites)
        for s in vit.sites:
            if s.kind is SiteKind.LINEAR:
                self.ops[s.name] = _LayerOps.build(
                    s.op, max(abs(lo), abs(hi)) if s.name == "embed" else spike_max
                )
        n, d = vit.tokens, vit.dim
        # differential operators: accumulated input and previous output
        self.stream: dict[str, torch.Tensor] = {}
        self.last: dict[str, torch.Tensor] = {}
        for s in vit.sites:
            if s.kind is SiteKind.LAYERNORM:
                self.stream[s.name] = torch.zeros(batch, n, d, dtype=torch.int64)
                self.last[s.name] = torch.zeros(batch, n, d, dtype=torch.int64)
        self.scores = [torch.zeros(batch, blk.heads, n, n, dtype=torch.int64) for blk in vit.blocks]
        self.last_attn = [torch.zeros_like(p) for p in self.scores]
        self.norm_params = {
            s.name: (_tensor(s.op.gain), _tensor(s.op.bias), s.op.eps)
            for s in vit.sites
            if s.kind is SiteKind.LAYERNORM
        }
        self.tables = [_tensor(blk.softmax.table) for blk in vit.blocks]

    def totals(self) -> dict[str, np.ndarray]:
        out = {f"{st.site.name}.drive": st.drive_total.numpy() for st in self.states}
        out.update({f"{k}.stream": v.numpy() for k, v in self.stream.items()})
        out.update({f"blocks.{b}.scores": p.numpy() for b, p in enumerate(self.scores)})
        return out

    def step(self, t: int) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Advance one step; return every site's spikes and the cumulative busy flags."""
        vit, batch = self.vit, self.x.shape[0]
        spikes: list[torch.Tensor] = []
        busy: list[torch.Tensor] = []
        upstream = _active(self.x) if t == 0 else torch.zeros(batch, dtype=torch.bool)
        rec = self.recorded = {}

        def fire(name: str, drive: torch.Tensor | int) -> torch.Tensor:
            nonlocal upstream
            state = self.by_name[name]
            s = state.step(drive)
            if self.record_drives:
                full = torch.zeros_like(state.membrane) + drive
                rec[f"{name}.drive"] = full.numpy()
            upstream = upstream | _active(s)
            if isinstance(drive, torch.Tensor):
                upstream = upstream | _active(drive.expand(state.membrane.shape))
            spikes.append(s)
            busy.append(upstream)
            return s

        def linear(name: str, s_in: torch.Tensor | None) -> torch.Tensor:
            op = self.ops[name]
            drive: torch.Tensor | int = 0
            if s_in is not None and bool((s_in != 0).any()):
                drive = op.synapses(s_in)
            if t == 0 and op.has_bias:
                drive = drive + op.bias
            return fire(name, drive)

        def norm(name: str, inc: torch.Tensor | None) -> torch.Tensor:
            if inc is None and t > 0:
                if self.record_drives:
                    rec[f"{name}.increment"] = torch.zeros_like(self.stream[name]).numpy()
                return fire(name, 0)
            if inc is not None:
                self.stream[name] += inc
            if self.record_drives:
                zero = torch.zeros_like(self.stream[name])
                rec[f"{name}.increment"] = (zero if inc is None else zero + inc).numpy()
            gain, bias, eps = self.norm_params[name]
            g = layer_norm(self.stream[name], gain, bias, eps)
            drive = g - self.last[name]
            self.last[name] = g
            return fire(name, drive)

        # the stream increment of this step, grown block by block (None: all zero)
        inc: torch.Tensor | None = None
        if t == 0:
            inc = _tensor(vit.position).expand(batch, -1, -1).clone()
        s_e = linear("embed", self.patches if t == 0 else None)
        if bool((s_e != 0).any()):
            if inc is None:
                inc = torch.zeros(batch, vit.tokens, vit.dim, dtype=torch.int64)
            inc[:, 1:] += vit.embed_residual * s_e
        for b, blk in enumerate(vit.blocks):
            p = f"blocks.{b}."
            s_n1 = norm(p + "norm1", inc)
            sq, sk, sv = (linear(p + f, s_n1) for f in ("q", "k", "v"))
            q, k, v = (_heads(s, blk.heads) for s in (sq, sk, sv))
            qa, ka, va = (_heads(self.by_name[p + f].tracer, blk.heads) for f in ("q", "k", "v"))
            step_scores = torch.zeros_like(self.scores[b])
            if bool((q != 0).any() or (k != 0).any()):
                step_scores = _exact(multi, q, k, qa, ka, bound=vit.ranges.score_step[b])
                self.scores[b] += step_scores
                g = softmax(self.scores[b], self.tables[b], blk.softmax.numerator)
                d_attn: torch.Tensor | int = g - self.last_attn[b]
                self.last_attn[b] = g
            elif t == 0:  # the first evaluation (scores all 0) is an injection
                g = softmax(self.scores[b], self.tables[b], blk.softmax.numerator)
                d_attn, self.last_attn[b] = g, g
            else:
                d_attn = 0
            if self.record_drives:
                rec[p + "scores_step"] = step_scores.numpy()
            sa = fire(p + "attn", d_attn)
            aa = self.by_name[p + "attn"].tracer
            d_ctx: torch.Tensor | int = 0
            if bool((sa != 0).any() or (v != 0).any()):
                o = _exact(multi1, sa, v, aa, va, bound=vit.ranges.context_step[b])
                d_ctx = blk.context.weight * _merge(o)
            s_c = fire(p + "context", d_ctx)
            s_p = linear(p + "proj", s_c)
            if bool((s_p != 0).any()):
                inc = (0 if inc is None else inc) + blk.attn_residual * s_p
            s_n2 = norm(p + "norm2", inc)
            s_f1 = linear(p + "fc1", s_n2)
            s_f2 = linear(p + "fc2", s_f1)
            if bool((s_f2 != 0).any()):
                inc = (0 if inc is None else inc) + blk.mlp_residual * s_f2
        s_n = norm("norm", inc)
        linear("head", s_n[:, 0])
        return spikes, torch.stack(busy, dim=1)
