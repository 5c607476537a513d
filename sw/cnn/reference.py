"""Bit-exact integer reference of convolutional ST-BIF networks (docs/cnn.md).

* :func:`integer_qann` — the integer QANN every converged SNN must equal, per site:
  ``a = clamp(floor((D + H)/Θ), n, p)`` with ``D`` the conv / pool / linear / residual drive of
  the source codes (plus the bias), and ``a = max`` over the window for max-pool;
* :func:`simulate` — the SNN: every site one :func:`sw.reference.neuron_step` per step, layer-serial
  with zero delay inside a step, biases and the analog image at t = 0, max-pool as the
  differential operator ``max(X_t) − max(X_{t−1})`` driving a Θ = 1 neuron (transparent for
  ST-BIF), per-sample termination at the first idle
  step, the proven step bound as the default cap. Traces are :class:`ir.Trace` with one layer per
  site (neurons flattened in C order: channel, y, x).

Convolutions are im2col products: every tap a strided slice of the zero-padded input, stacked,
then one matrix product per layer. As in :mod:`sw.reference`, the product runs in float32 (resp.
float64) when every partial sum is provably below 2^24 (resp. 2^53) in magnitude — exact there in
any summation order — else in int64. Pools, max-pool and the residual merge are int64 throughout.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from spikezip.ir import Layer, Trace
from spikezip.ir.cnn import Add, Conv2d, ConvNet, Flatten, MaxPool2d, SumPool2d
from spikezip.ir.trace import sample_digests
from spikezip.sw.reference import (
    TraceRecorder,
    check_max_steps,
    neuron_step,
    single_thread,
)

__all__ = ["im2col", "integer_qann", "simulate"]


def im2col(
    x: torch.Tensor,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
) -> torch.Tensor:
    """``[B, C, kh·kw, H', W']``: tap ``(ky, kx)`` of output ``(y, x)`` is input
    ``(y·sy − py + ky, x·sx − px + kx)``, zero outside the input."""
    (kh, kw), (sy, sx), (py, px) = kernel, stride, padding
    if py or px:
        x = torch.nn.functional.pad(x, (px, px, py, py))
    ho = (x.shape[2] - kh) // sy + 1
    wo = (x.shape[3] - kw) // sx + 1
    cols = [
        x[:, :, ky : ky + sy * (ho - 1) + 1 : sy, kx : kx + sx * (wo - 1) + 1 : sx]
        for ky in range(kh)
        for kx in range(kw)
    ]
    return torch.stack(cols, dim=2)


def window_max(x: torch.Tensor, op: MaxPool2d) -> torch.Tensor:
    """``[B, C, H', W']``: the maximum of each window of ``op`` over the elements inside the
    input (a padded tap is below every element: PyTorch's ``-inf`` padding)."""
    py, px = op.padding
    if py or px:
        info = torch.finfo if x.is_floating_point() else torch.iinfo
        x = torch.nn.functional.pad(x, (px, px, py, py), value=info(x.dtype).min)
    return im2col(x, op.kernel, op.stride, (0, 0)).amax(dim=2)


def _dtype(bound: int) -> torch.dtype:
    if bound < 2**24:
        return torch.float32
    if bound < 2**53:
        return torch.float64
    return torch.int64


@dataclass
class _Op:
    """One layer prepared for a run: its IR object, its sources, exact-product tensors."""

    op: Any
    sources: tuple[int, ...]
    site: int  #: trace layer index, -1 for Flatten
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    matrix: torch.Tensor | None = None  #: conv [c_out, c_in·kh·kw] / linear [n_in, n_out]
    bias: torch.Tensor | None = None  #: int64, broadcast to the output
    threshold: torch.Tensor | None = None
    initial: torch.Tensor | None = None
    neg_bound: int = 0  #: tracer bounds (a max-pool's are its source's)
    pos_bound: int = 0

    def drive(self, x: torch.Tensor) -> torch.Tensor:
        """The synaptic drive of an input ``x`` (int64, ``[B, *in_shape]``), int64 out."""
        op, batch = self.op, x.shape[0]
        if isinstance(op, Conv2d):
            cols = im2col(x, op.kernel, op.stride, op.padding)
            cols = cols.reshape(batch, -1, self.out_shape[1] * self.out_shape[2])
            m = self.matrix
            y = m @ cols if m.dtype == torch.int64 else (m @ cols.to(m.dtype)).to(torch.int64)
            return y.reshape(batch, *self.out_shape)
        if isinstance(op, Layer):
            m = self.matrix
            if m.dtype == torch.int64:
                return x @ m
            return (x.to(m.dtype) @ m).to(torch.int64)
        if isinstance(op, SumPool2d):
            return im2col(x, op.kernel, op.stride, (0, 0)).sum(dim=2) * op.weight
        raise TypeError(type(op).__name__)

    def step(
        self, drive: torch.Tensor | int, membrane: torch.Tensor, tracer: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """This site's neuron update (:func:`sw.reference.neuron_step`)."""
        op = self.op
        return neuron_step(
            op.neuron,
            drive,
            membrane,
            tracer,
            threshold=self.threshold,
            neg_bound=self.neg_bound,
            pos_bound=self.pos_bound,
            max_level=op.max_level,
        )


def _prepare(net: ConvNet) -> list[_Op]:
    ops: list[_Op] = []
    site = 0
    for k, op in enumerate(net.layers):
        in_shape = net.input_shape_of(k)
        out_shape = net.output_shape(k)
        p = _Op(op, net.sources[k], -1 if isinstance(op, Flatten) else site, in_shape, out_shape)
        site += 0 if isinstance(op, Flatten) else 1
        lo, hi = net.source_range(k)
        src = net.sources[k][0]
        # the largest |input| of one product: a cumulative code (QANN), a spike (SNN; a graded
        # spike may exceed the tracer's magnitude, up to p − n), or a pixel
        max_in = max(abs(lo), abs(hi), 1, net.spike_max(src) if src >= 0 else 0)
        if isinstance(op, Conv2d):
            w = op.weight.reshape(op.c_out, -1)
            dtype = _dtype(int(np.abs(w).sum(axis=1).max()) * max_in)
            p.matrix = torch.from_numpy(w.copy()).to(dtype)
            thr = op.thresholds
        elif isinstance(op, Layer):
            dtype = _dtype(int(np.abs(op.weight).sum(axis=1).max()) * max_in)
            p.matrix = torch.from_numpy(op.weight.T.copy()).to(dtype)
            thr = op.thresholds
        elif isinstance(op, (SumPool2d, Add)):
            thr = op.thresholds_for(out_shape[0])
        elif isinstance(op, MaxPool2d):  # Θ = 1, the source's bounds (docs/cnn.md §3)
            thr = np.ones(out_shape[0], dtype=np.int64)
        else:
            ops.append(p)
            continue
        p.neg_bound, p.pos_bound = (
            net.source_range(k) if isinstance(op, MaxPool2d) else (op.neg_bound, op.pos_bound)
        )
        shape = (-1,) + (1,) * (len(out_shape) - 1)
        t = torch.from_numpy(np.array(thr)).reshape(shape)
        p.threshold = t.expand(out_shape).contiguous()
        p.initial = p.threshold // 2
        bias = getattr(op, "bias", None)
        b = np.zeros(out_shape[0], dtype=np.int64) if not isinstance(bias, np.ndarray) else bias
        p.bias = torch.from_numpy(np.array(b)).reshape(shape).expand(out_shape).contiguous()
        ops.append(p)
    return ops


def _images(net: ConvNet, inputs: Any) -> torch.Tensor:
    if isinstance(inputs, torch.Tensor):
        inputs = inputs.detach().cpu().numpy()
    x = net.check_inputs(inputs)
    return torch.from_numpy(np.array(x)).reshape(x.shape[0], *net.input_shape)


def integer_qann(net: ConvNet, inputs: np.ndarray | torch.Tensor) -> list[np.ndarray]:
    """Integer-QANN activations per site, ``int64 [batch, *site.shape]`` each.

    ``a = clamp(floor((D + B + H)/Θ), n, p)`` (floor toward −∞) with ``D`` the conv, linear or
    sum-pool drive of the source's codes, or ``Σ m_c·a_c`` for a residual merge; a max-pool's
    activation is the maximum of its window.
    """
    if not isinstance(net, ConvNet):
        raise TypeError(f"network must be an ir.cnn.ConvNet, not {type(net).__name__}")
    with single_thread():
        img = _images(net, inputs)
        acts: list[torch.Tensor] = []
        out = []

        def src(i: int) -> torch.Tensor:
            return img if i < 0 else acts[i]

        for p in _prepare(net):
            op, batch = p.op, img.shape[0]
            x = src(p.sources[0])
            if isinstance(op, Flatten):
                acts.append(x.reshape(batch, -1))
                continue
            if isinstance(op, MaxPool2d):
                a = window_max(x, op)
            else:
                if isinstance(op, Add):
                    d = sum(m * src(i) for m, i in zip(op.multipliers, p.sources, strict=True))
                else:
                    d = p.drive(x)
                acc = d + p.bias + p.initial
                a = torch.div(acc, p.threshold, rounding_mode="floor").clamp(
                    op.neg_bound, op.pos_bound
                )
            acts.append(a)
            out.append(a.numpy())
    return out


def simulate(
    net: ConvNet,
    inputs: np.ndarray | torch.Tensor,
    *,
    max_steps: int | None = None,
    record_state: bool = False,
) -> Trace:
    """Run the integer SNN of ``net`` on a batch of images ``[batch, C·H·W]``; its trace.

    ``max_steps`` defaults to :meth:`ir.cnn.ConvNet.step_bound` (proven sufficient); samples that
    hit a lower cap are marked ``capped`` and a :class:`sw.reference.StepCapWarning` is issued.
    ``record_state`` records membranes and tracers after every step (a max-pool's membrane is
    ``max(X_t) − A_t``: 0 for an ST-BIF max-pool, whose tracer is ``max(X_t)``). Busy flags are
    cumulative in site order (:mod:`sw.reference`).
    """
    if not isinstance(net, ConvNet):
        raise TypeError(f"network must be an ir.cnn.ConvNet, not {type(net).__name__}")
    with single_thread():
        return _simulate(net, inputs, max_steps=max_steps, record_state=record_state)


def _simulate(net: ConvNet, inputs: Any, *, max_steps: int | None, record_state: bool) -> Trace:
    img = _images(net, inputs)
    batch = img.shape[0]
    bound = net.step_bound()
    max_steps = check_max_steps(max_steps, bound)
    ops = _prepare(net)
    mem: dict[int, torch.Tensor] = {}
    acc: dict[int, torch.Tensor] = {}  # tracers
    cum: dict[int, torch.Tensor] = {}  # max-pool: the cumulative input X_t
    top: dict[int, torch.Tensor] = {}  # max-pool: max(X_t) per window
    has_bias = []
    for k, p in enumerate(ops):
        if p.site < 0:
            continue
        shape = (batch, *p.out_shape)
        if isinstance(p.op, MaxPool2d):
            cum[k] = torch.zeros(batch, *p.in_shape, dtype=torch.int64)
            top[k] = torch.zeros(shape, dtype=torch.int64)
        mem[k] = (p.initial + p.bias).expand(shape).clone()  # bias injected at t = 0
        acc[k] = torch.zeros(shape, dtype=torch.int64)
        has_bias.append(bool(p.bias.any()))
    spike_max = max(net.spike_max(s.layer) for s in net.sites)
    rec = TraceRecorder(net.depth, batch, record_state=record_state, spike_max=spike_max)
    zeros = torch.zeros(batch, dtype=torch.bool)
    for t in range(max_steps):
        out: dict[int, torch.Tensor | None] = {-1: img if t == 0 else None}
        upstream = (img.reshape(batch, -1) != 0).any(dim=1) if t == 0 else zeros
        spikes, busy, mems, tracers = [], [], [], []
        for k, p in enumerate(ops):
            op = p.op
            if isinstance(op, Flatten):
                x = out[p.sources[0]]
                out[k] = None if x is None else x.reshape(batch, -1)
                continue
            if isinstance(op, MaxPool2d):  # drive max(X_t) − max(X_{t−1}) into a Θ = 1 neuron
                x = out[p.sources[0]]
                drive = 0
                if x is not None and bool(x.any()):
                    cum[k] = cum[k] + x
                    new = window_max(cum[k], op)
                    drive, top[k] = new - top[k], new
                s, mem[k], acc[k] = p.step(drive, mem[k], acc[k])
            else:
                if isinstance(op, Add):
                    ins = [out[i] for i in p.sources]
                    drive = sum(
                        m * x for m, x in zip(op.multipliers, ins, strict=True) if x is not None
                    )
                else:
                    x = out[p.sources[0]]
                    drive = p.drive(x) if x is not None and bool(x.any()) else 0
                s, mem[k], acc[k] = p.step(drive, mem[k], acc[k])
            out[k] = s if bool(s.any()) else None
            upstream = upstream | (s != 0).reshape(batch, -1).any(dim=1)
            if t == 0 and has_bias[p.site]:
                upstream = torch.ones_like(upstream)
            busy.append(upstream)
            spikes.append(s.reshape(batch, -1))
            mems.append(mem[k].reshape(batch, -1))
            tracers.append(acc[k].reshape(batch, -1))
        if rec.record(spikes, torch.stack(busy, dim=1), mems, tracers):
            break
    return rec.trace(
        digest=net.digest(),
        layer_names=net.site_names,
        max_steps=max_steps,
        bound=bound,
        input_digests=sample_digests(net.check_inputs(img.reshape(batch, -1).numpy())),
        stacklevel=4,
    )
