"""Convolutional ST-BIF networks in hardware units (docs/cnn.md).

A :class:`ConvNet` is a directed acyclic graph of layers over an analog image
``[channels, height, width]`` (one integer per pixel, injected at t = 0):

* :class:`Conv2d` — a 2-D convolution (kernel, stride, zero padding, channels) and its ST-BIF
  neurons: per output neuron ``(c, y, x)`` the drive is ``Σ w[c, c', ky, kx]·s[c', y·sy − py + ky,
  x·sx − px + kx]`` over the taps that fall inside the input (padding contributes nothing);
* :class:`SumPool2d` — a linear pooling layer (one integer ``weight`` times the window sum) and its
  neurons; ``AvgPool2d`` converts to it (the ``1/k²`` goes into ``weight``/Θ);
* :class:`MaxPool2d` — a **differential operator**: it keeps the cumulative input ``X_t`` and
  emits ``max(X_t) − max(X_{t−1})`` per window, which is a ±1 spike or nothing when its input
  spikes are ±1 (docs/cnn.md §3; its tracer is then ``max(X_t)``, no neuron needed); a graded
  max-pool re-encodes the differences with a graded neuron of Θ = 1;
* :class:`Flatten` — ``[C, H, W] → [C·H·W]`` in C order (no neurons, not a trace layer);
* :class:`ir.Layer` — a fully-connected layer on a flat input;
* :class:`Add` — the residual merge: the drive is ``Σ_c m_c·s_c(t)`` over its sources, one integer
  multiplier per source (the ViT's residual stream generalised), and its ST-BIF neurons.

Every layer but :class:`Flatten` is a **site**: one layer of a trace, its neurons flattened in C
order (``channel, y, x``). For an event-driven core, an input event is ``(c, y, x, value)``; a
convolution adds ``value·w[:, c, ky, kx]`` to the membranes of the output window it reaches
(:meth:`Conv2d.reach`), a pool adds ``value·weight`` to one channel's windows.

Widths are exact: every cumulative drive is bounded per output neuron by the taps it actually
reaches (a border neuron of a padded convolution reaches fewer inputs), from the weights and the
tracer ranges (spec §2.5).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any

import numpy as np

from spikezip.ir._io import content_digest, read_npz, write_npz
from spikezip.ir.errors import FormatError
from spikezip.ir.files import CNN_KIND
from spikezip.ir.network import (
    MAX_WIDTH,
    VALUE_MAX,
    VALUE_MIN,
    Layer,
    LayerWidths,
    Network,
    NeuronFacts,
    _int_array,
    _is_int,
    check_neuron,
    check_value,
    neuron_fields,
    neuron_json,
    neuron_kind_from,
    settle_steps,
    signed_width,
    spike_magnitude,
    unsigned_width,
)

__all__ = [
    "CNN_KIND",
    "Add",
    "CnnSite",
    "Conv2d",
    "ConvNet",
    "Flatten",
    "MaxPool2d",
    "SumPool2d",
    "window_reach",
]

FORMAT_VERSION = 1
#: Largest kernel, stride, padding and image side accepted (a sanity bound for files).
MAX_SPATIAL = 1 << 16
#: Most neurons of one site (and pixels of the image): bounds what a hostile file can allocate.
MAX_NEURONS = 1 << 24


# -- helpers ----------------------------------------------------------------------------------
def _pair(obj: Any, field: str, *, lo: int, default: tuple[int, int] | None = None) -> None:
    """Normalise ``obj.field`` (an int or a pair of ints, each in ``[lo, MAX_SPATIAL]``) to a
    pair; None becomes ``default``."""
    value = getattr(obj, field)
    if value is None and default is not None:
        value = default
    if _is_int(value):
        value = (value, value)
    pair = tuple(value) if isinstance(value, (tuple, list)) else ()
    if len(pair) != 2 or not all(_is_int(v) for v in pair):
        raise TypeError(f"{field} must be an integer or a pair of integers, not {value!r}")
    for v in pair:
        if not lo <= v <= MAX_SPATIAL:
            raise ValueError(f"{field} must lie in [{lo}, {MAX_SPATIAL}], not {v}")
    object.__setattr__(obj, field, (int(pair[0]), int(pair[1])))


def _name(obj: Any) -> None:
    if not isinstance(obj.name, str):
        raise TypeError(f"name must be a string, not {obj.name!r}")


def _thresholds(threshold: int | np.ndarray, channels: int) -> np.ndarray:
    out = np.broadcast_to(np.asarray(threshold, dtype=np.int64), (channels,)).copy()
    out.setflags(write=False)
    return out


def window_reach(size: int, kernel: int, stride: int, padding: int) -> np.ndarray:
    """``bool [out, kernel]``: output position ``o`` reaches input ``o·stride − padding + k``
    with kernel tap ``k`` inside ``[0, size)`` (one spatial axis). ``out`` is
    ``(size + 2·padding − kernel) // stride + 1`` (at least 1, checked by the caller)."""
    out = (size + 2 * padding - kernel) // stride + 1
    pos = np.arange(out)[:, None] * stride - padding + np.arange(kernel)[None, :]
    return (pos >= 0) & (pos < size)


def _out_size(op: Any, shape: tuple[int, ...], padding: tuple[int, int]) -> tuple[int, int]:
    """Output ``(H', W')`` of a windowed op on ``shape = (C, H, W)``, or a ValueError."""
    _, h, w = shape
    (kh, kw), (sy, sx), (py, px) = op.kernel, op.stride, padding
    if kh > h + 2 * py or kw > w + 2 * px:
        pad = f", padding {py}×{px}" if py or px else ""
        raise ValueError(
            f"kernel {kh}×{kw} is larger than the padded input {h + 2 * py}×{w + 2 * px} "
            f"(input {h}×{w}{pad})"
        )
    out = (h + 2 * py - kh) // sy + 1, (w + 2 * px - kw) // sx + 1
    if out[0] * kh > MAX_NEURONS or out[1] * kw > MAX_NEURONS:
        raise ValueError(
            f"kernel {kh}×{kw} over {out[0]}×{out[1]} output positions exceeds {MAX_NEURONS} "
            "taps along one axis"
        )
    return out


def _check_size(shape: tuple[int, ...], what: str) -> None:
    size = int(np.prod(shape, dtype=object))
    if size > MAX_NEURONS:
        raise ValueError(
            f"{what} {list(shape)} holds {size} neurons; at most {MAX_NEURONS} are supported"
        )


def _tap_sum(my: np.ndarray, mx: np.ndarray, per_tap: np.ndarray) -> np.ndarray:
    """``[C, H', W']``: Σ over reached taps ``(ky, kx)`` of ``per_tap[c, ky, kx]`` (exact; works
    for object arrays too)."""
    dtype = per_tap.dtype
    # S[c] = my · P[c] · mxᵀ: the reach masks select the taps row by row and column by column
    return np.matmul(np.matmul(my.astype(dtype), per_tap), mx.T.astype(dtype))


def _widths(
    *,
    s_min: np.ndarray,
    s_max: np.ndarray,
    d_min: np.ndarray,
    d_max: np.ndarray,
    bias: np.ndarray,
    thresholds: np.ndarray,
    neg_bound: int,
    pos_bound: int,
    lo: int,
    hi: int,
    weight_lo: int,
    weight_hi: int,
) -> LayerWidths:
    """LayerWidths from per-neuron ``[C, …]`` cumulative (s) and per-step (d) drive bounds."""
    shape = (-1,) + (1,) * (s_min.ndim - 1)
    thr = thresholds.astype(s_min.dtype).reshape(shape)
    b = bias.astype(s_min.dtype).reshape(shape)
    h = thr // 2
    u_lo = h + s_min + b - pos_bound * thr
    u_hi = h + s_max + b - neg_bound * thr
    mem_lo, mem_hi = int(u_lo.min()), int(u_hi.max())
    return LayerWidths(
        input_lo=lo,
        input_hi=hi,
        drive_lo=int(d_min.min()),
        drive_hi=int(d_max.max()),
        membrane_lo=mem_lo,
        membrane_hi=mem_hi,
        drive=signed_width(int(d_min.min()), int(d_max.max())),
        membrane=signed_width(min(mem_lo, 0), max(mem_hi, int(thresholds.max()))),
        tracer=signed_width(neg_bound, pos_bound),
        weight=signed_width(weight_lo, weight_hi),
        bias=signed_width(int(bias.min()), int(bias.max())),
        threshold=unsigned_width(int(thresholds.max())),
    )


def _exact(*arrays: np.ndarray, bound: int) -> tuple[np.ndarray, ...]:
    """The arrays as int64, or as exact Python integers when ``bound`` could overflow int64."""
    dtype = object if bound >= 2**62 else np.int64
    return tuple(np.asarray(a).astype(dtype) for a in arrays)


# -- layers -----------------------------------------------------------------------------------
class _Window:
    """Geometry of a windowed layer (``kernel``, ``stride``, ``padding``; ``output_shape``)."""

    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, int, int]:
        raise NotImplementedError

    def reach(self, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        """``(my [H', kh], mx [W', kw])``: which kernel taps of each output row/column fall
        inside an input of ``shape = (C, H, W)`` (:func:`window_reach`)."""
        self.output_shape(shape)
        (kh, kw), (sy, sx), (py, px) = self.kernel, self.stride, self.padding
        return window_reach(shape[1], kh, sy, py), window_reach(shape[2], kw, sx, px)

    def targets(self, shape: tuple[int, ...], y: int, x: int) -> list[tuple[int, int, int, int]]:
        """What an input event at ``(·, y, x)`` reaches: every ``(oy, ox, ky, kx)`` with
        ``oy·sy − py + ky = y`` and ``ox·sx − px + kx = x`` inside the output, in row-major
        order of ``(oy, ox)``: the output window an event-driven core updates, and the kernel
        tap it uses there."""
        my, mx = self.reach(shape)
        if not (0 <= y < shape[1] and 0 <= x < shape[2]):
            raise ValueError(f"({y}, {x}) lies outside the {shape[1]}×{shape[2]} input")
        (sy, sx), (py, px) = self.stride, self.padding
        rows = [(o, k) for o, k in np.argwhere(my) if o * sy - py + k == y]
        cols = [(o, k) for o, k in np.argwhere(mx) if o * sx - px + k == x]
        return [(int(oy), int(ox), int(ky), int(kx)) for oy, ky in rows for ox, kx in cols]

    def _fan(self, shape: tuple[int, ...]) -> np.ndarray:
        """``int64 [H, W]``: windows (output positions) one input position lies in."""
        my, mx = self.reach(shape)
        (sy, sx), (py, px) = self.stride, self.padding
        fy = np.zeros(shape[1], dtype=np.int64)
        fx = np.zeros(shape[2], dtype=np.int64)
        for o, k in np.argwhere(my):
            fy[o * sy - py + k] += 1
        for o, k in np.argwhere(mx):
            fx[o * sx - px + k] += 1
        return np.outer(fy, fx)


class _Neurons(NeuronFacts):
    """Facts shared by the layers with ST-BIF neurons."""

    @property
    def levels(self) -> int:
        """Number of quantization levels ``p - n + 1``."""
        return self.pos_bound - self.neg_bound + 1


@dataclass(frozen=True, kw_only=True, eq=False)
class Conv2d(_Neurons, _Window):
    """A 2-D convolution with zero padding and its ST-BIF neurons (one per output element).

    Parameters
    ----------
    weight : integer array ``[c_out, c_in, kh, kw]``
    bias : integer array ``[c_out]``, injected once at t = 0
    threshold : int ≥ 1, or integer array ``[c_out]`` (per output channel)
    neg_bound, pos_bound : tracer bounds ``n ≤ 0 ≤ p``
    stride : int or ``(sy, sx)``, each ≥ 1
    padding : int or ``(py, px)``, each in ``[0, k − 1]`` (zeros: a padded tap adds nothing)
    name, neuron, max_level : as :class:`ir.Layer`
    """

    weight: np.ndarray
    bias: np.ndarray
    threshold: int | np.ndarray
    neg_bound: int
    pos_bound: int
    stride: int | tuple[int, int] = 1
    padding: int | tuple[int, int] = 0
    name: str = ""
    neuron: str = "stbif"
    max_level: int | None = None

    def __post_init__(self) -> None:
        weight = _int_array(self.weight, field="weight", ndim=4)
        if min(weight.shape) < 1:
            raise ValueError(
                "weight must have shape [c_out, c_in, kh, kw] with every size ≥ 1, not "
                f"{weight.shape}"
            )
        if max(weight.shape[2:]) > MAX_SPATIAL:
            raise ValueError(f"kernel must be at most {MAX_SPATIAL} wide, not {weight.shape[2:]}")
        object.__setattr__(self, "weight", weight)
        bias = _int_array(self.bias, field="bias", ndim=1)
        if bias.shape != (weight.shape[0],):
            raise ValueError(
                f"bias must have shape ({weight.shape[0]},) to match weight, not {bias.shape}"
            )
        object.__setattr__(self, "bias", bias)
        _pair(self, "stride", lo=1)
        _pair(self, "padding", lo=0)
        for axis, (p, k) in enumerate(zip(self.padding, self.kernel, strict=True)):
            if p > k - 1:
                raise ValueError(
                    f"padding must lie in [0, {k - 1}] (kernel {self.kernel[0]}×"
                    f"{self.kernel[1]}) along {'yx'[axis]}, not {p}"
                )
        neuron_fields(self, weight.shape[0], unit="channel")

    kind = "conv2d"

    @property
    def c_out(self) -> int:
        return int(self.weight.shape[0])

    @property
    def c_in(self) -> int:
        return int(self.weight.shape[1])

    @property
    def kernel(self) -> tuple[int, int]:
        return int(self.weight.shape[2]), int(self.weight.shape[3])

    @property
    def per_channel_threshold(self) -> bool:
        return isinstance(self.threshold, np.ndarray)

    @cached_property
    def thresholds(self) -> np.ndarray:
        """Θ per output channel, ``int64 [c_out]``."""
        return _thresholds(self.threshold, self.c_out)

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, int, int]:
        """``(c_out, H', W')`` for an input ``(c_in, H, W)``; a ValueError naming the problem."""
        if len(shape) != 3:
            raise ValueError(f"needs a [channels, height, width] input, not shape {list(shape)}")
        if shape[0] != self.c_in:
            raise ValueError(f"has {self.c_in} input channels but its input has {shape[0]}")
        return (self.c_out, *_out_size(self, shape, self.padding))

    def fan_in(self, shape: tuple[int, ...]) -> np.ndarray:
        """``int64 [H', W']``: inputs each output neuron actually reaches (edges included)."""
        my, mx = self.reach(shape)
        return self.c_in * np.outer(my.sum(axis=1), mx.sum(axis=1)).astype(np.int64)

    def fan_out(self, shape: tuple[int, ...]) -> np.ndarray:
        """``int64 [H, W]``: output neurons (positions × ``c_out``) one input element reaches."""
        return self.c_out * self._fan(shape)

    def widths(
        self, shape: tuple[int, ...], input_lo: int, input_hi: int, *, analog: bool, spike_max: int
    ) -> LayerWidths:
        """Exact ranges and widths for a cumulative input in ``[input_lo, input_hi]`` on an input
        of ``shape``; every output neuron's bound uses only the taps it reaches."""
        lo, hi = min(int(input_lo), 0), max(int(input_hi), 0)
        my, mx = self.reach(shape)
        bound = (
            int(np.abs(self.weight).max()) * max(-lo, hi, 1) * self.weight[0].size * int(spike_max)
            + int(np.abs(self.bias).max())
            + (self.levels + 1) * int(self.thresholds.max())
        )
        w, thr = _exact(self.weight, self.thresholds, bound=bound)
        pos = np.maximum(w * lo, w * hi).sum(axis=1)  # [c_out, kh, kw]: Σ over input channels
        neg = np.minimum(w * lo, w * hi).sum(axis=1)
        s_max, s_min = _tap_sum(my, mx, pos), _tap_sum(my, mx, neg)
        if analog:
            d_min, d_max = s_min, s_max
        else:
            absw = _tap_sum(my, mx, np.abs(w).sum(axis=1)) * int(spike_max)
            d_min, d_max = -absw, absw
        return _widths(
            s_min=s_min,
            s_max=s_max,
            d_min=d_min,
            d_max=d_max,
            bias=_exact(self.bias, bound=bound)[0],
            thresholds=thr,
            neg_bound=self.neg_bound,
            pos_bound=self.pos_bound,
            lo=lo,
            hi=hi,
            weight_lo=int(self.weight.min()),
            weight_hi=int(self.weight.max()),
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return {
            "op": self.kind,
            "weight": self.weight.tolist(),
            "bias": self.bias.tolist(),
            "threshold": self.thresholds.tolist() if self.per_channel_threshold else self.threshold,
            "neg_bound": self.neg_bound,
            "pos_bound": self.pos_bound,
            "stride": list(self.stride),
            "padding": list(self.padding),
            "name": self.name,
            **neuron_json(self),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Conv2d:
        return cls(
            weight=d["weight"],
            bias=d["bias"],
            threshold=d["threshold"],
            neg_bound=d["neg_bound"],
            pos_bound=d["pos_bound"],
            stride=d["stride"],
            padding=d["padding"],
            name=d.get("name", ""),
            **neuron_kind_from(d),
        )


@dataclass(frozen=True, kw_only=True, eq=False)
class SumPool2d(_Neurons, _Window):
    """Sum pooling (no padding) times one integer ``weight``, and its ST-BIF neurons.

    The drive of output ``(c, y, x)`` is ``weight · Σ`` of its input window in channel ``c``.
    ``AvgPool2d`` is this layer with ``weight/Θ ≈ s_in/(kh·kw·s_out)`` (the converter's job).

    Parameters
    ----------
    kernel : int or ``(kh, kw)``, each ≥ 1
    stride : int or ``(sy, sx)``, each ≥ 1; default the kernel (non-overlapping windows)
    weight : int
    threshold : int ≥ 1, or integer array ``[channels]``
    neg_bound, pos_bound, name, neuron, max_level : as :class:`ir.Layer`
    """

    kernel: int | tuple[int, int]
    weight: int
    threshold: int | np.ndarray
    neg_bound: int
    pos_bound: int
    stride: int | tuple[int, int] | None = None
    name: str = ""
    neuron: str = "stbif"
    max_level: int | None = None

    def __post_init__(self) -> None:
        _pair(self, "kernel", lo=1)
        _pair(self, "stride", lo=1, default=self.kernel)
        if not _is_int(self.weight):
            raise TypeError(f"weight must be an integer, not {self.weight!r}")
        object.__setattr__(self, "weight", check_value(self.weight, "weight"))
        neuron_fields(self, "any", unit="channel")

    kind = "sumpool2d"
    padding = (0, 0)

    @property
    def per_channel_threshold(self) -> bool:
        return isinstance(self.threshold, np.ndarray)

    def thresholds_for(self, channels: int) -> np.ndarray:
        return _thresholds(self.threshold, channels)

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, int, int]:
        if len(shape) != 3:
            raise ValueError(f"needs a [channels, height, width] input, not shape {list(shape)}")
        if self.per_channel_threshold and self.threshold.shape != (shape[0],):
            raise ValueError(
                f"threshold must be an integer or have shape ({shape[0]},) (the input's "
                f"channels), not {self.threshold.shape}"
            )
        return (shape[0], *_out_size(self, shape, (0, 0)))

    def fan_out(self, shape: tuple[int, ...]) -> np.ndarray:
        """``int64 [H, W]``: windows (output neurons) one input element reaches."""
        return self._fan(shape)

    def widths(
        self, shape: tuple[int, ...], input_lo: int, input_hi: int, *, spike_max: int
    ) -> LayerWidths:
        lo, hi = min(int(input_lo), 0), max(int(input_hi), 0)
        taps = self.kernel[0] * self.kernel[1]
        thr = self.thresholds_for(shape[0])
        m = self.weight
        bound = abs(m) * max(-lo, hi, 1) * taps * int(spike_max) + (self.levels + 1) * int(
            thr.max()
        )
        (thr_x,) = _exact(thr, bound=bound)
        s = np.array([min(m * lo, m * hi) * taps, max(m * lo, m * hi) * taps], dtype=thr_x.dtype)
        d = abs(m) * taps * int(spike_max)
        return _widths(
            s_min=np.full(shape[0], s[0], dtype=thr_x.dtype),
            s_max=np.full(shape[0], s[1], dtype=thr_x.dtype),
            d_min=np.array([-d], dtype=thr_x.dtype),
            d_max=np.array([d], dtype=thr_x.dtype),
            bias=np.zeros(shape[0], dtype=thr_x.dtype),
            thresholds=thr_x,
            neg_bound=self.neg_bound,
            pos_bound=self.pos_bound,
            lo=lo,
            hi=hi,
            weight_lo=m,
            weight_hi=m,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "op": self.kind,
            "kernel": list(self.kernel),
            "stride": list(self.stride),
            "weight": self.weight,
            "threshold": self.threshold.tolist() if self.per_channel_threshold else self.threshold,
            "neg_bound": self.neg_bound,
            "pos_bound": self.pos_bound,
            "name": self.name,
            **neuron_json(self),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SumPool2d:
        return cls(
            kernel=d["kernel"],
            stride=d["stride"],
            weight=d["weight"],
            threshold=d["threshold"],
            neg_bound=d["neg_bound"],
            pos_bound=d["pos_bound"],
            name=d.get("name", ""),
            **neuron_kind_from(d),
        )


@dataclass(frozen=True, kw_only=True, eq=False)
class MaxPool2d(_Window):
    """Max pooling as a differential operator (docs/cnn.md §3); with ``padding``, the maximum
    over the window's elements inside the input (PyTorch's ``-inf`` padding).

    It keeps the cumulative input ``X_t`` (the tracers of its source) and drives, per window,
    ``max(X_t) − max(X_{t−1})`` (``max(X_{−1}) := 0``) into a neuron of ``Θ = 1`` whose tracer
    bounds are its source's. An ``"stbif"`` max-pool needs ±1 input spikes: its drive is then a
    ±1 spike already, the neuron passes it through unchanged (docs/cnn.md Lemma MP2) and its
    tracer is ``max(X_t)`` at every step — no neuron is needed in hardware. A ``"graded"``
    max-pool takes any source: its graded neuron re-encodes the differences into ±2^k spikes.

    Parameters
    ----------
    kernel : int or ``(kh, kw)``, each ≥ 1
    stride : int or ``(sy, sx)``, each ≥ 1; default the kernel
    padding : int or ``(py, px)``, each in ``[0, k // 2]`` (as PyTorch: every window then holds
        an element of the input); padded taps are not in the maximum
    name : str
    neuron, max_level : ``"stbif"`` (default) or ``"graded"`` and its largest level K
    """

    kernel: int | tuple[int, int]
    stride: int | tuple[int, int] | None = None
    name: str = ""
    neuron: str = "stbif"
    max_level: int | None = None
    padding: int | tuple[int, int] = 0

    def __post_init__(self) -> None:
        _pair(self, "kernel", lo=1)
        _pair(self, "stride", lo=1, default=self.kernel)
        _pair(self, "padding", lo=0)
        for axis, (p, k) in enumerate(zip(self.padding, self.kernel, strict=True)):
            if p > k // 2:
                raise ValueError(
                    f"padding must lie in [0, {k // 2}] (half the kernel {self.kernel[0]}×"
                    f"{self.kernel[1]}) along {'yx'[axis]}, not {p}"
                )
        _name(self)
        check_neuron(self.neuron, self.max_level)
        if self.max_level is not None:
            object.__setattr__(self, "max_level", int(self.max_level))

    kind = "maxpool2d"
    threshold = 1

    def spike_max_for(self, neg_bound: int, pos_bound: int) -> int:
        """Largest ``|s|`` it fires for a source with tracer bounds ``[n, p]``."""
        return spike_magnitude(self.neuron, self.max_level, neg_bound, pos_bound)

    def settle_for(self, neg_bound: int, pos_bound: int) -> int:
        """Steps it may still spike after its source's last spike: 0 for ST-BIF (no lag), else
        the graded neuron's settle steps for a span ``p − n``."""
        if self.neuron == "stbif":
            return 0
        return settle_steps(self.neuron, self.max_level, pos_bound - neg_bound)

    def widths(self, neg_bound: int, pos_bound: int, spike_max: int) -> LayerWidths:
        """Its neuron's widths: drive ``±spike_max`` (its source's), membrane
        ``U = max(X) − A ∈ [n − p, p − n]``, tracer ``[n, p]``, Θ = 1."""
        span = pos_bound - neg_bound
        return LayerWidths(
            input_lo=neg_bound,
            input_hi=pos_bound,
            drive_lo=-spike_max,
            drive_hi=spike_max,
            membrane_lo=-span,
            membrane_hi=span,
            drive=signed_width(-spike_max, spike_max),
            membrane=signed_width(-span, span),
            tracer=signed_width(neg_bound, pos_bound),
            weight=1,
            bias=1,
            threshold=1,
        )

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, int, int]:
        if len(shape) != 3:
            raise ValueError(f"needs a [channels, height, width] input, not shape {list(shape)}")
        return (shape[0], *_out_size(self, shape, self.padding))

    def fan_out(self, shape: tuple[int, ...]) -> np.ndarray:
        """``int64 [H, W]``: windows one input element belongs to (max updates per event)."""
        return self._fan(shape)

    def to_dict(self) -> dict[str, Any]:
        pad = {"padding": list(self.padding)} if any(self.padding) else {}
        return {
            "op": self.kind,
            "kernel": list(self.kernel),
            "stride": list(self.stride),
            **pad,
            "name": self.name,
            **neuron_json(self),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MaxPool2d:
        return cls(
            kernel=d["kernel"],
            stride=d["stride"],
            padding=d.get("padding", 0),
            name=d.get("name", ""),
            **neuron_kind_from(d),
        )


@dataclass(frozen=True, kw_only=True, eq=False)
class Flatten:
    """``[C, H, W] → [C·H·W]`` in C order; no neurons, not a trace layer."""

    name: str = ""

    def __post_init__(self) -> None:
        _name(self)

    kind = "flatten"

    def to_dict(self) -> dict[str, Any]:
        return {"op": self.kind, "name": self.name}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Flatten:
        return cls(name=d.get("name", ""))


@dataclass(frozen=True, kw_only=True, eq=False)
class Add(_Neurons):
    """The residual merge: drive ``Σ_c multipliers[c]·s_c(t)`` over its sources (same shape),
    and its ST-BIF neurons. Its cumulative drive is the integer stream ``Σ_c m_c·A_c``.

    Parameters
    ----------
    multipliers : sequence of int, one per source (``ConvNet.sources``), at least two
    threshold : int ≥ 1, or integer array ``[channels]``
    neg_bound, pos_bound, name, neuron, max_level : as :class:`ir.Layer`
    """

    multipliers: tuple[int, ...]
    threshold: int | np.ndarray
    neg_bound: int
    pos_bound: int
    name: str = ""
    neuron: str = "stbif"
    max_level: int | None = None

    def __post_init__(self) -> None:
        m = self.multipliers
        if isinstance(m, (str, bytes, np.ndarray)) or not hasattr(m, "__iter__"):
            raise TypeError(f"multipliers must be a sequence of integers, not {m!r}")
        m = tuple(m)
        if len(m) < 2:
            raise ValueError(f"multipliers must hold at least two entries, not {len(m)}")
        for k, v in enumerate(m):
            if not _is_int(v):
                raise TypeError(f"multipliers[{k}] must be an integer, not {v!r}")
            check_value(v, f"multipliers[{k}]")
        object.__setattr__(self, "multipliers", tuple(int(v) for v in m))
        neuron_fields(self, "any", unit="channel")

    kind = "add"

    @property
    def per_channel_threshold(self) -> bool:
        return isinstance(self.threshold, np.ndarray)

    def thresholds_for(self, channels: int) -> np.ndarray:
        return _thresholds(self.threshold, channels)

    def widths(self, channels: int, ranges: list[tuple[int, int, int]]) -> LayerWidths:
        """``ranges``: per source ``(lo, hi, spike_max)`` of its tracer and spikes."""
        thr = self.thresholds_for(channels)
        bound = sum(
            abs(m) * max(-lo, hi, 1) * sm
            for m, (lo, hi, sm) in zip(self.multipliers, ranges, strict=True)
        )
        bound += (self.levels + 1) * int(thr.max())
        (thr_x,) = _exact(thr, bound=bound)
        s_lo = sum(
            min(m * lo, m * hi) for m, (lo, hi, _) in zip(self.multipliers, ranges, strict=True)
        )
        s_hi = sum(
            max(m * lo, m * hi) for m, (lo, hi, _) in zip(self.multipliers, ranges, strict=True)
        )
        d = sum(abs(m) * sm for m, (_, _, sm) in zip(self.multipliers, ranges, strict=True))
        full = np.full(channels, 0, dtype=thr_x.dtype)
        return _widths(
            s_min=full + s_lo,
            s_max=full + s_hi,
            d_min=np.array([-d], dtype=thr_x.dtype),
            d_max=np.array([d], dtype=thr_x.dtype),
            bias=full,
            thresholds=thr_x,
            neg_bound=self.neg_bound,
            pos_bound=self.pos_bound,
            lo=min(min(r[0] for r in ranges), 0),
            hi=max(max(r[1] for r in ranges), 0),
            weight_lo=min(self.multipliers),
            weight_hi=max(self.multipliers),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "op": self.kind,
            "multipliers": list(self.multipliers),
            "threshold": self.threshold.tolist() if self.per_channel_threshold else self.threshold,
            "neg_bound": self.neg_bound,
            "pos_bound": self.pos_bound,
            "name": self.name,
            **neuron_json(self),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Add:
        return cls(
            multipliers=d["multipliers"],
            threshold=d["threshold"],
            neg_bound=d["neg_bound"],
            pos_bound=d["pos_bound"],
            name=d.get("name", ""),
            **neuron_kind_from(d),
        )


def _linear_to_dict(layer: Layer) -> dict[str, Any]:
    return {"op": "linear", **layer.to_dict()}


_OPS: dict[str, Any] = {
    "conv2d": Conv2d,
    "sumpool2d": SumPool2d,
    "maxpool2d": MaxPool2d,
    "flatten": Flatten,
    "add": Add,
    "linear": Layer,
}
_KINDS = (Conv2d, SumPool2d, MaxPool2d, Flatten, Add, Layer)


def _kind(op: Any) -> str:
    return "linear" if isinstance(op, Layer) else op.kind


def _op_from_dict(d: Any) -> Any:
    if not isinstance(d, dict):
        raise ValueError(f"must be an object, not {d!r}")
    kind = d.get("op")
    if kind not in _OPS:
        valid = ", ".join(repr(k) for k in _OPS)
        raise ValueError(f"op must be one of {valid}, not {kind!r}")
    body = {k: v for k, v in d.items() if k != "op"}
    try:
        return _OPS[kind].from_dict(body)
    except KeyError as e:
        raise ValueError(f"{kind} description lacks field {e.args[0]!r}") from None


# -- the network ------------------------------------------------------------------------------
@dataclass(frozen=True)
class CnnSite:
    """One trace layer: ``layer`` indexes ``ConvNet.layers``; ``shape`` is its neuron array
    (``(C, H, W)`` or ``(n,)``, flattened in C order in traces); ``op`` the IR object."""

    name: str
    layer: int
    shape: tuple[int, ...]
    op: Any

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    @property
    def kind(self) -> str:
        return _kind(self.op)


@dataclass(frozen=True)
class _Out:
    """What a layer's output looks like to its readers."""

    shape: tuple[int, ...]
    lo: int  #: range of the cumulative value (tracer, or the analog pixel)
    hi: int
    spike_max: int
    analog: bool  #: the analog image (possibly flattened)
    tau: int  #: last step at which it can change (docs/cnn.md §5)


@dataclass(frozen=True, kw_only=True, eq=False)
class ConvNet:
    """A convolutional ST-BIF network over an analog image (see the module docstring).

    Parameters
    ----------
    input_shape : ``(channels, height, width)``
    input_bounds : ``(lo, hi)`` of every pixel
    layers : sequence of :class:`Conv2d`, :class:`SumPool2d`, :class:`MaxPool2d`,
        :class:`Flatten`, :class:`Add`, :class:`ir.Layer`, in execution order
    sources : optional; per layer a tuple of the layer indices it reads (``-1``: the image),
        each earlier than the layer. Default: each layer reads the previous one. An :class:`Add`
        reads as many sources as it has multipliers; every other layer reads one. Only
        :class:`Conv2d` and :class:`ir.Layer` (after a :class:`Flatten`) may read the image.
    name : optional label
    """

    input_shape: tuple[int, int, int]
    input_bounds: tuple[int, int]
    layers: tuple[Any, ...]
    sources: tuple[tuple[int, ...], ...] | None = None
    name: str = ""

    def __post_init__(self) -> None:
        shape = tuple(self.input_shape) if isinstance(self.input_shape, (tuple, list)) else ()
        if len(shape) != 3 or not all(_is_int(v) for v in shape):
            raise TypeError(
                f"input_shape must be (channels, height, width) integers, not {self.input_shape!r}"
            )
        if min(shape) < 1 or max(shape) > MAX_SPATIAL:
            raise ValueError(f"input_shape sizes must lie in [1, {MAX_SPATIAL}], not {shape}")
        object.__setattr__(self, "input_shape", tuple(int(v) for v in shape))
        _check_size(self.input_shape, "input_shape")
        bounds = tuple(self.input_bounds) if hasattr(self.input_bounds, "__iter__") else ()
        if len(bounds) != 2 or not all(_is_int(b) for b in bounds):
            raise TypeError(f"input_bounds must be a pair of integers, not {self.input_bounds!r}")
        lo, hi = int(bounds[0]), int(bounds[1])
        if lo > hi:
            raise ValueError(f"input_bounds must satisfy lo ≤ hi, not ({lo}, {hi})")
        if lo < VALUE_MIN or hi > VALUE_MAX:
            raise ValueError(
                f"input_bounds must lie in [{VALUE_MIN}, {VALUE_MAX}] (the {MAX_WIDTH}-bit "
                f"datapath), not ({lo}, {hi})"
            )
        object.__setattr__(self, "input_bounds", (lo, hi))
        if not isinstance(self.name, str):
            raise TypeError(f"name must be a string, not {self.name!r}")
        if isinstance(self.layers, _KINDS) or not hasattr(self.layers, "__iter__"):
            raise TypeError(
                f"layers must be a sequence of layers, not {type(self.layers).__name__}"
            )
        layers = tuple(self.layers)
        if not layers:
            raise ValueError("layers must hold at least one layer")
        for k, op in enumerate(layers):
            if not isinstance(op, _KINDS):
                raise TypeError(
                    f"layers[{k}] must be a Conv2d, SumPool2d, MaxPool2d, Flatten, Add or Layer, "
                    f"not {type(op).__name__}"
                )
        object.__setattr__(self, "layers", layers)
        object.__setattr__(self, "sources", self._check_sources(layers))
        outs: list[_Out] = []
        widths: list[LayerWidths | None] = []
        for k, op in enumerate(layers):
            try:
                out, width = self._walk(
                    op, [outs[i] if i >= 0 else self._image for i in self.sources[k]]
                )
            except ValueError as e:
                raise ValueError(f"layers[{k}] ({self._label(k)}): {e}") from None
            if width is not None and max(width.membrane, width.drive) > MAX_WIDTH:
                raise ValueError(
                    f"layers[{k}] ({self._label(k)}) needs a {width.membrane}-bit membrane and a "
                    f"{width.drive}-bit drive for its weights and input range; at most "
                    f"{MAX_WIDTH} bits are supported"
                )
            outs.append(out)
            widths.append(width)
        if isinstance(layers[-1], Flatten):
            raise ValueError(
                f"layers[{len(layers) - 1}]: the last layer must be a site, not flatten"
            )
        object.__setattr__(self, "_outs", tuple(outs))
        object.__setattr__(self, "_widths", tuple(widths))

    def _label(self, k: int) -> str:
        op = self.layers[k]
        return f"{_kind(op)} {op.name!r}" if op.name else _kind(op)

    @property
    def _image(self) -> _Out:
        lo, hi = self.input_bounds
        return _Out(self.input_shape, lo, hi, 0, True, 0)

    def _check_sources(self, layers: tuple[Any, ...]) -> tuple[tuple[int, ...], ...]:
        if self.sources is None:
            for k, op in enumerate(layers):
                if isinstance(op, Add):
                    raise ValueError(
                        f"layers[{k}] (add) needs sources: give ConvNet.sources for every layer"
                    )
            return tuple((k - 1,) for k in range(len(layers)))
        src = self.sources
        if isinstance(src, (str, bytes)) or not hasattr(src, "__iter__"):
            raise TypeError(f"sources must be a sequence of index tuples, not {src!r}")
        src = tuple(src)
        if len(src) != len(layers):
            raise ValueError(
                f"sources must hold one entry per layer ({len(layers)}), not {len(src)}"
            )
        out = []
        for k, (op, s) in enumerate(zip(layers, src, strict=True)):
            if _is_int(s):
                s = (s,)
            if isinstance(s, (str, bytes)) or not hasattr(s, "__iter__"):
                raise TypeError(f"sources[{k}] must be a sequence of layer indices, not {s!r}")
            s = tuple(s)
            for i in s:
                if not _is_int(i) or not -1 <= i < k:
                    raise ValueError(
                        f"sources[{k}] must hold layer indices in [-1, {k - 1}] (-1: the image; "
                        f"earlier layers only), not {i!r}"
                    )
            want = len(op.multipliers) if isinstance(op, Add) else 1
            if len(s) != want:
                raise ValueError(
                    f"sources[{k}] must name {want} layer(s) for layers[{k}] ({_kind(op)}), "
                    f"not {len(s)}"
                )
            if len(set(s)) != len(s):
                raise ValueError(f"sources[{k}] names a layer twice: {list(s)}")
            out.append(tuple(int(i) for i in s))
        return tuple(out)

    def _walk(self, op: Any, ins: list[_Out]) -> tuple[_Out, LayerWidths | None]:
        src = ins[0]
        analog_ok = isinstance(op, (Conv2d, Layer, Flatten))
        for i in ins:
            if i.analog and not analog_ok:
                raise ValueError(
                    "reads the analog image; only conv2d and linear layers (MACs at t = 0) can"
                )
        if isinstance(op, Flatten):
            return replace(src, shape=(int(np.prod(src.shape)),)), None
        if isinstance(op, MaxPool2d):
            if op.neuron == "stbif" and src.spike_max != 1:
                raise ValueError(
                    "an ST-BIF max-pool needs ±1 input spikes for its differences "
                    f"max(X_t) − max(X_t−1) to be spikes; its source fires up to "
                    f"±{src.spike_max} (make the max-pool graded)"
                )
            shape = op.output_shape(src.shape)
            out = _Out(
                shape,
                src.lo,
                src.hi,
                op.spike_max_for(src.lo, src.hi),
                False,
                src.tau + op.settle_for(src.lo, src.hi),
            )
            return out, op.widths(src.lo, src.hi, src.spike_max)
        if isinstance(op, Add):
            shapes = {i.shape for i in ins}
            if len(shapes) != 1:
                raise ValueError(
                    f"its sources have different shapes {[list(i.shape) for i in ins]}"
                )
            if op.per_channel_threshold and op.threshold.shape != (src.shape[0],):
                raise ValueError(
                    f"threshold must be an integer or have shape ({src.shape[0]},) (the "
                    f"channels), not {op.threshold.shape}"
                )
            width = op.widths(src.shape[0], [(i.lo, i.hi, i.spike_max) for i in ins])
            tau = max(i.tau for i in ins) + op.settle_steps
            return _Out(src.shape, op.neg_bound, op.pos_bound, op.spike_max, False, tau), width
        if isinstance(op, Layer):
            if len(src.shape) != 1:
                raise ValueError(
                    "a linear layer needs a flat input (add a Flatten), not shape "
                    f"{list(src.shape)}"
                )
            if op.n_in != src.shape[0]:
                raise ValueError(f"has {op.n_in} inputs but its input has {src.shape[0]}")
            width = op.widths(src.lo, src.hi, analog=src.analog, spike_max=max(src.spike_max, 1))
            shape: tuple[int, ...] = (op.n_out,)
        elif isinstance(op, Conv2d):
            shape = op.output_shape(src.shape)
            _check_size(shape, "its output")
            width = op.widths(
                src.shape, src.lo, src.hi, analog=src.analog, spike_max=max(src.spike_max, 1)
            )
        else:  # SumPool2d
            shape = op.output_shape(src.shape)
            _check_size(shape, "its output")
            width = op.widths(src.shape, src.lo, src.hi, spike_max=src.spike_max)
        tau = src.tau + op.settle_steps
        return _Out(shape, op.neg_bound, op.pos_bound, op.spike_max, False, tau), width

    # -- facts -----------------------------------------------------------------------------------
    @property
    def n_inputs(self) -> int:
        return int(np.prod(self.input_shape))

    def output_shape(self, k: int) -> tuple[int, ...]:
        """The output shape of ``layers[k]`` (``-1``: the image)."""
        return self.input_shape if k < 0 else self._outs[k].shape

    def input_shape_of(self, k: int) -> tuple[int, ...]:
        """The shape ``layers[k]`` reads (its first source's output)."""
        return self.output_shape(self.sources[k][0])

    @cached_property
    def sites(self) -> tuple[CnnSite, ...]:
        """Every layer but the Flattens, in execution order: the layers of a trace."""
        return tuple(
            CnnSite(op.name or f"layer{k}", k, self._outs[k].shape, op)
            for k, op in enumerate(self.layers)
            if not isinstance(op, Flatten)
        )

    @property
    def site_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.sites)

    @property
    def depth(self) -> int:
        """Trace layers (sites)."""
        return len(self.sites)

    @property
    def n_outputs(self) -> int:
        return self.sites[-1].size

    @property
    def widths(self) -> tuple[LayerWidths | None, ...]:
        """Exact widths per layer (None for Flatten)."""
        return tuple(self._widths)

    def spike_max(self, k: int) -> int:
        """Largest ``|s|`` ``layers[k]`` emits (0 for the image's Flatten)."""
        return self._outs[k].spike_max

    def source_range(self, k: int) -> tuple[int, int]:
        """``(lo, hi)`` of the cumulative value ``layers[k]`` reads (its first source's)."""
        i = self.sources[k][0]
        out = self._image if i < 0 else self._outs[i]
        return out.lo, out.hi

    def reads_image(self, k: int) -> bool:
        """``layers[k]`` reads the analog image (directly or through a Flatten)."""
        i = self.sources[k][0]
        return i < 0 or self._outs[i].analog

    def step_bound(self) -> int:
        """Steps within which a run provably reaches its first idle step: ``max τ + 2`` with
        ``τ(site) = max τ(sources) + settle_steps`` (0 for an ST-BIF max-pool), τ(image) = 0
        (docs/cnn.md §5)."""
        return max(o.tau for o in self._outs) + 2

    def describe_neuron(self, site: int, neuron: int) -> str:
        """Coordinates of flat ``neuron`` of trace layer ``site``: ``channel 3, y 1, x 0`` or
        ``neuron 7``."""
        shape = self.sites[site].shape
        idx = np.unravel_index(int(neuron), shape)
        axes = ("channel", "y", "x") if len(shape) == 3 else ("neuron",)
        return ", ".join(f"{a} {int(i)}" for a, i in zip(axes, idx, strict=True))

    def with_neuron(self, neuron: str = "graded", max_level: int | None = None) -> ConvNet:
        """The same network with every site's neuron kind set (max-pools included)."""

        def kind(op: Any) -> Any:
            if isinstance(op, Flatten):
                return op
            return replace(op, neuron=neuron, max_level=max_level)

        return replace(self, layers=tuple(kind(op) for op in self.layers))

    # -- inputs ----------------------------------------------------------------------------------
    def check_inputs(self, inputs: Any) -> np.ndarray:
        """Validate a batch ``[batch, C·H·W]`` of integer pixels (C order) within
        ``input_bounds`` (the checks and messages of :meth:`ir.Network.check_inputs`)."""
        return self._input_network.check_inputs(inputs)

    @cached_property
    def _input_network(self) -> Network:
        stub = Layer(
            weight=np.zeros((1, self.n_inputs), dtype=np.int64),
            bias=[0],
            threshold=1,
            neg_bound=0,
            pos_bound=1,
        )
        return Network(
            layers=(stub,),
            n_inputs=self.n_inputs,
            encoding="analog",
            input_bounds=self.input_bounds,
        )

    # -- serialisation ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (arrays as nested lists)."""
        return {
            "name": self.name,
            "input_shape": list(self.input_shape),
            "input_bounds": list(self.input_bounds),
            "layers": [
                _linear_to_dict(op) if isinstance(op, Layer) else op.to_dict() for op in self.layers
            ],
            "sources": [list(s) for s in self.sources],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ConvNet:
        try:
            layers = d["layers"]
            if not isinstance(layers, list):
                raise ValueError(f"layers must be a list, not {layers!r}")
            ops = []
            for k, x in enumerate(layers):
                try:
                    ops.append(_op_from_dict(x))
                except (TypeError, ValueError) as e:
                    raise ValueError(f"layers[{k}]: {e}") from None
            sources = d.get("sources")
            return cls(
                input_shape=d["input_shape"],
                input_bounds=d["input_bounds"],
                layers=tuple(ops),
                sources=None if sources is None else tuple(sources),
                name=d.get("name", ""),
            )
        except KeyError as e:
            raise ValueError(f"cnn description lacks field {e.args[0]!r}") from None

    _ARRAY_FIELDS = ("weight", "bias", "threshold")

    def _split(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """(metadata JSON, arrays): weights, biases and per-channel thresholds become arrays."""
        d = self.to_dict()
        arrays: dict[str, np.ndarray] = {}
        for k, layer in enumerate(d["layers"]):
            for f in self._ARRAY_FIELDS:
                if isinstance(layer.get(f), list):
                    key = f"layers.{k}.{f}"
                    arrays[key] = np.asarray(getattr(self.layers[k], f), dtype=np.int64)
                    layer[f] = {"array": key}
        return d, arrays

    def digest(self) -> str:
        """Stable SHA-256 (hex) of the canonical content: metadata JSON and little-endian arrays."""
        return content_digest(*self._split(), kind=CNN_KIND)

    def save(self, path: str | os.PathLike) -> None:
        """Write one ``.npz`` file (JSON metadata + int64 arrays), atomically."""
        meta, arrays = self._split()
        write_npz(path, {"kind": CNN_KIND, "version": FORMAT_VERSION, "network": meta}, arrays)

    @classmethod
    def load(cls, path: str | os.PathLike) -> ConvNet:
        """Read a file written by :meth:`save`; :class:`FormatError` names what is wrong."""
        meta, arrays = read_npz(path, kind=CNN_KIND)
        name = os.fspath(path)
        version = meta.get("version")
        if type(version) is not int or version != FORMAT_VERSION:
            raise FormatError(f"{name}: unsupported cnn format version {version!r}")
        used: set[str] = set()
        try:
            net = meta["network"]
            if not isinstance(net, dict):
                raise ValueError(f"network must be an object, not {net!r}")
            layers = net["layers"]
            if not isinstance(layers, list):
                raise ValueError(f"layers must be a list, not {layers!r}")
            for k, layer in enumerate(layers):
                if not isinstance(layer, dict):
                    raise ValueError(f"layers[{k}] must be an object, not {layer!r}")
                for f in cls._ARRAY_FIELDS:
                    ref = layer.get(f)
                    if isinstance(ref, dict):
                        key = ref.get("array") if set(ref) == {"array"} else None
                        if not isinstance(key, str):
                            raise ValueError(f"layers[{k}].{f}: bad array reference {ref!r}")
                        if key not in arrays:
                            raise KeyError(key)
                        used.add(key)
                        layer[f] = arrays[key]
            extra = sorted(set(arrays) - used)
            if extra:
                raise ValueError(f"unexpected array {extra[0]!r}")
            return cls.from_dict(net)
        except KeyError as e:
            raise FormatError(f"{name}: corrupt cnn file (missing {e.args[0]!r})") from None
        except (TypeError, ValueError, AttributeError) as e:
            raise FormatError(f"{name}: invalid cnn: {e}") from None
