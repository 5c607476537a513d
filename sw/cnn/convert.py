"""Float CNN QANN → integer :class:`ir.cnn.ConvNet` (spec §2.4, Option B; docs/cnn.md §2).

BatchNorm is folded into the convolution before anything is rounded (eval statistics)::

    W' = W·γ/√(σ² + ε),   b' = (b − μ)·γ/√(σ² + ε) + β

then every site is converted as :func:`sw.convert.to_network` converts a linear layer — per output
channel the largest power-of-two Θ keeping every weight in ``weight_bits`` signed bits::

    w = round(W'·s_in·Θ/s),   B = round(b'·Θ/s)

The residual merge ``Q_add(s_4·a_4 + s_2·a_2)`` becomes an :class:`ir.cnn.Add` with one Θ and
multipliers ``m_c = round(s_c·Θ/s_add)`` (the largest power-of-two Θ keeping them in
``weight_bits`` bits); max-pool of codes times one scale is max-pool of the codes (no rounding).
The integer network is the golden model; :func:`agreement` measures how closely the float QANN
follows it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from spikezip.ir import Layer
from spikezip.ir.cnn import Add, Conv2d, ConvNet, Flatten, MaxPool2d, SumPool2d
from spikezip.ir.network import check_neuron
from spikezip.sw.cnn.model import SITES, QannCNN
from spikezip.sw.convert import _round, _thresholds
from spikezip.sw.quant import MyQuan

__all__ = [
    "Agreement",
    "agreement",
    "avg_pool",
    "fold_batchnorm",
    "sequential_to_convnet",
    "to_convnet",
]


def fold_batchnorm(
    conv: torch.nn.Conv2d, bn: torch.nn.BatchNorm2d | None
) -> tuple[np.ndarray, np.ndarray]:
    """``(W', b')`` as float64 arrays: ``conv`` followed by ``bn`` in eval mode, folded."""
    w = conv.weight.detach().to(torch.float64).cpu().numpy()
    b = (
        np.zeros(w.shape[0])
        if conv.bias is None
        else conv.bias.detach().to(torch.float64).cpu().numpy()
    )
    if bn is None:
        return w, b
    var = bn.running_var.detach().to(torch.float64).cpu().numpy()
    mean = bn.running_mean.detach().to(torch.float64).cpu().numpy()
    gamma = np.ones_like(var) if bn.weight is None else bn.weight.detach().to(torch.float64).numpy()
    beta = np.zeros_like(var) if bn.bias is None else bn.bias.detach().to(torch.float64).numpy()
    k = gamma / np.sqrt(var + bn.eps)
    return w * k[:, None, None, None], (b - mean) * k + beta


def _scale(q: MyQuan, name: str) -> float:
    s = float(q.scale.detach())
    if not (math.isfinite(s) and s > 0):
        raise ValueError(f"the quantizer of {name!r} has scale s = {s!r}; it must be > 0")
    return s


def _site(
    ratio: np.ndarray, bias: np.ndarray, s: float, *, name: str, **kw: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Θ per row of ``ratio`` (weights per unit of Θ), the rounded weights and biases."""
    rows = ratio.reshape(ratio.shape[0], -1)
    if not (np.all(np.isfinite(rows)) and np.all(np.isfinite(bias))):
        raise ValueError(f"{name}: non-finite weights or biases")
    theta = _thresholds(rows, **kw)
    if (theta < 1).any():
        raise ValueError(
            f"{name}: a weight needs more than weight_bits={kw['weight_bits']} signed bits even "
            "at threshold 1; raise weight_bits"
        )
    shape = (-1,) + (1,) * (ratio.ndim - 1)
    w = _round(ratio * theta.reshape(shape).astype(np.float64))
    b = _round(bias * theta.astype(np.float64) / s)
    return theta, w, b


def to_convnet(
    model: QannCNN,
    *,
    weight_bits: int = 8,
    max_threshold: int = 1 << 16,
    name: str = "",
    neuron: str = "stbif",
    max_level: int | None = None,
) -> ConvNet:
    """Convert the trained digits CNN QANN (:class:`sw.cnn.model.QannCNN`) to integers.

    Sites (trace layers): :data:`sw.cnn.model.SITES`. Θ are powers of two (a shift), per output
    channel for the convolutions, per neuron for ``fc``, one for the residual merge.
    ``neuron``/``max_level``: as :func:`sw.convert.to_network`, for every site (the max-pool
    too: a graded max-pool re-encodes its differences, docs/cnn.md §3).
    """
    if not isinstance(model, QannCNN):
        raise TypeError(f"model must be a QannCNN, not {type(model).__name__}")
    if isinstance(weight_bits, bool) or not isinstance(weight_bits, int):
        raise TypeError(f"weight_bits must be an integer, not {weight_bits!r}")
    if not 2 <= weight_bits <= 32:
        raise ValueError(f"weight_bits must lie in [2, 32], not {weight_bits!r}")
    check_neuron(neuron, max_level)
    kw = dict(weight_bits=weight_bits, power_of_two=True, max_threshold=max_threshold)
    kind = dict(neuron=neuron, max_level=max_level)
    scales = {}
    layers = []
    prev = model.input_scale
    for site, conv, bn, q in (
        ("conv1", model.conv1, model.bn1, model.q1),
        ("conv2", model.conv2, model.bn2, model.q2),
        ("conv3", model.conv3, model.bn3, model.q3),
        ("conv4", model.conv4, model.bn4, model.q4),
    ):
        s = scales[site] = _scale(q, site)
        w, b = fold_batchnorm(conv, bn)
        theta, wi, bi = _site(w * (prev / s), b, s, name=site, **kw)
        layers.append(
            Conv2d(
                weight=wi,
                bias=bi,
                threshold=theta,
                neg_bound=q.neg_bound,
                pos_bound=q.pos_bound,
                stride=conv.stride,
                padding=conv.padding,
                name=site,
                **kind,
            )
        )
        prev = s
    s_add = _scale(model.q_add, "add")
    ratio = np.array([[scales["conv4"] / s_add, scales["conv2"] / s_add]])
    theta, m, _ = _site(ratio, np.zeros(1), s_add, name="add", **kw)
    layers.append(
        Add(
            multipliers=tuple(int(v) for v in m[0]),
            threshold=int(theta[0]),
            neg_bound=model.q_add.neg_bound,
            pos_bound=model.q_add.pos_bound,
            name="add",
            **kind,
        )
    )
    layers += [
        MaxPool2d(kernel=model.pool.kernel_size, name="pool", **kind),
        Flatten(name="flatten"),
    ]
    s_out = _scale(model.q_out, "fc")
    w = model.fc.weight.detach().to(torch.float64).numpy()
    b = model.fc.bias.detach().to(torch.float64).numpy()
    theta, wi, bi = _site(w * (s_add / s_out), b, s_out, name="fc", **kw)
    layers.append(
        Layer(
            weight=wi,
            bias=bi,
            threshold=theta,
            neg_bound=model.q_out.neg_bound,
            pos_bound=model.q_out.pos_bound,
            name="fc",
            **kind,
        )
    )
    return ConvNet(
        input_shape=(1, 8, 8),
        input_bounds=model.input_bounds,
        layers=tuple(layers),
        sources=((-1,), (0,), (1,), (2,), (3, 1), (4,), (5,), (6,)),
        name=name,
    )


@dataclass(frozen=True, kw_only=True)
class Agreement:
    """Float QANN vs integer QANN on a batch: per site the fraction of equal codes, of samples
    with all codes equal, the largest ``|Δ|``; and the fraction of equal predictions."""

    sites: tuple[str, ...]
    neurons: tuple[float, ...]
    samples: tuple[float, ...]
    max_difference: tuple[int, ...]
    prediction: float

    def __str__(self) -> str:
        per = ", ".join(
            f"{s} {n:.4f}/{a:.4f}/{d}"
            for s, n, a, d in zip(
                self.sites, self.neurons, self.samples, self.max_difference, strict=True
            )
        )
        return f"prediction {self.prediction:.4f}; per site neurons/samples/max|Δ|: {per}"


def agreement(model: QannCNN, net: ConvNet, pixels: np.ndarray) -> Agreement:
    """Compare the float QANN's codes with the integer QANN's activations, site by site."""
    from spikezip.sw.cnn.reference import integer_qann

    fl = [c.reshape(c.shape[0], -1) for c in model.codes(pixels)]
    it = [a.reshape(a.shape[0], -1) for a in integer_qann(net, pixels)]
    eq = [f == i for f, i in zip(fl, it, strict=True)]
    return Agreement(
        sites=SITES,
        neurons=tuple(float(e.mean()) for e in eq),
        samples=tuple(float(e.all(axis=1).mean()) for e in eq),
        max_difference=tuple(int(np.abs(f - i).max()) for f, i in zip(fl, it, strict=True)),
        prediction=float(np.mean(np.argmax(fl[-1], axis=1) == np.argmax(it[-1], axis=1))),
    )


def avg_pool(
    kernel: int | tuple[int, int],
    *,
    in_scale: float,
    out_scale: float,
    neg_bound: int,
    pos_bound: int,
    stride: int | tuple[int, int] | None = None,
    weight_bits: int = 8,
    max_threshold: int = 1 << 16,
    name: str = "",
) -> SumPool2d:
    """``AvgPool2d`` of codes with scale ``in_scale`` followed by a quantizer of scale
    ``out_scale`` and bounds ``[n, p]``, as a :class:`ir.cnn.SumPool2d`.

    The float site is ``clamp(floor(mean(a)·s_in/s_out + 0.5), n, p)``; the integer one
    ``clamp(floor((w·Σ a + H)/Θ), n, p)`` with ``w = round(s_in·Θ/(kh·kw·s_out))`` and Θ the largest
    power of two keeping ``w`` in ``weight_bits`` signed bits.
    """
    for field, v in (("in_scale", in_scale), ("out_scale", out_scale)):
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
            raise ValueError(f"{field} must be a positive number, not {v!r}")
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    ratio = np.array([[in_scale / (kh * kw * out_scale)]])
    kw_ = dict(weight_bits=weight_bits, power_of_two=True, max_threshold=max_threshold)
    theta, w, _ = _site(ratio, np.zeros(1), out_scale, name=name or "avg_pool", **kw_)
    return SumPool2d(
        kernel=(kh, kw),
        stride=stride,
        weight=int(w[0, 0]),
        threshold=int(theta[0]),
        neg_bound=neg_bound,
        pos_bound=pos_bound,
        name=name,
    )


# -- chains: a conv front end as an nn.Sequential ------------------------------------------------
_PASS = (torch.nn.Identity, torch.nn.Dropout)


def sequential_to_convnet(
    model: torch.nn.Module,
    *,
    input_shape: tuple[int, int, int],
    input_scale: float,
    input_bounds: tuple[int, int],
    weight_bits: int = 8,
    max_threshold: int = 1 << 16,
    name: str = "",
    neuron: str = "stbif",
    max_level: int | None = None,
) -> ConvNet:
    """Convert a chain of quantized stages (its leaf modules in registration order) to a
    :class:`ir.cnn.ConvNet`:

    * ``Conv2d [BatchNorm2d] MyQuan`` → :class:`ir.cnn.Conv2d` (BN folded, zero padding only);
    * ``Linear MyQuan`` → :class:`ir.Layer`;
    * ``AvgPool2d MyQuan`` → :class:`ir.cnn.SumPool2d` (:func:`avg_pool`);
    * ``MaxPool2d`` → :class:`ir.cnn.MaxPool2d` (padding ≤ k/2 as PyTorch's, dilation 1);
    * ``Flatten`` → :class:`ir.cnn.Flatten`;

    ``ReLU`` after an asymmetric quantizer, ``Identity`` and ``Dropout`` are the identity and
    skipped. Every unsupported module or option is a ``TypeError``/``ValueError`` naming it.
    ``input_scale`` is the float value of one integer input step (the digits: 1/16).
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, not {type(model).__name__}")
    check_neuron(neuron, max_level)
    if not (
        isinstance(input_scale, (int, float)) and math.isfinite(input_scale) and input_scale > 0
    ):
        raise ValueError(f"input_scale must be a positive number, not {input_scale!r}")
    kw = dict(weight_bits=weight_bits, power_of_two=True, max_threshold=max_threshold)
    kind = dict(neuron=neuron, max_level=max_level)
    leaves = [
        (n, m)
        for n, m in list(model.named_modules())[1:]
        if not any(True for _ in m.children()) and not isinstance(m, _PASS)
    ]
    layers: list[Any] = []
    scale, i = float(input_scale), 0

    def take(types: tuple[type, ...]) -> tuple[str, Any] | None:
        nonlocal i
        if i < len(leaves) and isinstance(leaves[i][1], types):
            i += 1
            return leaves[i - 1]
        return None

    def quant(after: str) -> MyQuan:
        q = take((MyQuan,))
        if q is None:
            got = type(leaves[i][1]).__name__ if i < len(leaves) else "nothing"
            raise TypeError(f"model module {after!r} must be followed by a MyQuan, not {got}")
        relu = take((torch.nn.ReLU,))
        if relu is not None and q[1].symmetric:
            raise TypeError(
                f"model module {relu[0]!r} is a ReLU after the symmetric quantizer {q[0]!r}; an "
                "ST-BIF neuron cannot reproduce it (use an asymmetric quantizer)"
            )
        return q[1]

    while i < len(leaves):
        n, m = leaves[i]
        i += 1
        if isinstance(m, torch.nn.Conv2d):
            if m.groups != 1 or tuple(m.dilation) != (1, 1) or m.padding_mode != "zeros":
                raise ValueError(
                    f"model module {n!r}: groups, dilation and non-zero padding modes "
                    "are not supported"
                )
            if isinstance(m.padding, str):
                raise ValueError(f"model module {n!r}: give padding as integers, not {m.padding!r}")
            bn = take((torch.nn.BatchNorm2d,))
            q = quant(n)
            s = _scale(q, n)
            w, b = fold_batchnorm(m, None if bn is None else bn[1])
            theta, wi, bi = _site(w * (scale / s), b, s, name=n, **kw)
            layers.append(
                Conv2d(
                    weight=wi,
                    bias=bi,
                    threshold=theta,
                    neg_bound=q.neg_bound,
                    pos_bound=q.pos_bound,
                    stride=tuple(m.stride),
                    padding=tuple(m.padding),
                    name=n,
                    **kind,
                )
            )
        elif isinstance(m, torch.nn.Linear):
            q = quant(n)
            s = _scale(q, n)
            w = m.weight.detach().to(torch.float64).numpy()
            b = np.zeros(w.shape[0]) if m.bias is None else m.bias.detach().double().numpy()
            theta, wi, bi = _site(w * (scale / s), b, s, name=n, **kw)
            layers.append(
                Layer(
                    weight=wi,
                    bias=bi,
                    threshold=theta,
                    neg_bound=q.neg_bound,
                    pos_bound=q.pos_bound,
                    name=n,
                    **kind,
                )
            )
        elif isinstance(m, torch.nn.AvgPool2d):
            if m.padding not in (0, (0, 0)) or m.ceil_mode or m.divisor_override is not None:
                raise ValueError(
                    f"model module {n!r}: padding, ceil_mode and divisor_override are not supported"
                )
            q = quant(n)
            s = _scale(q, n)
            layers.append(
                avg_pool(
                    m.kernel_size,
                    stride=m.stride,
                    in_scale=scale,
                    out_scale=s,
                    neg_bound=q.neg_bound,
                    pos_bound=q.pos_bound,
                    name=n,
                    weight_bits=weight_bits,
                    max_threshold=max_threshold,
                )
            )
            if neuron != "stbif":
                layers[-1] = replace(layers[-1], **kind)
        elif isinstance(m, torch.nn.MaxPool2d):
            if m.dilation not in (1, (1, 1)) or m.ceil_mode:
                raise ValueError(f"model module {n!r}: dilation and ceil_mode are not supported")
            layers.append(
                MaxPool2d(kernel=m.kernel_size, stride=m.stride, padding=m.padding, name=n, **kind)
            )
            continue
        elif isinstance(m, torch.nn.Flatten):
            layers.append(Flatten(name=n))
            continue
        else:
            raise TypeError(
                f"model module {n!r} is a {type(m).__name__}; expected Conv2d, BatchNorm2d, "
                "Linear, AvgPool2d, MaxPool2d, Flatten or MyQuan in a chain"
            )
        scale = s
    if not layers:
        raise ValueError("model holds no convertible stage")
    return ConvNet(
        input_shape=tuple(input_shape),
        input_bounds=tuple(input_bounds),
        layers=tuple(layers),
        name=name,
    )
