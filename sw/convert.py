"""QANN → integer network: the only place where floats become integers (spec §2.4, Option B).

A QANN is a chain of ``Linear → MyQuan`` stages. Stage ``l`` has float weights ``W``, bias ``b``
and quantizer scale ``s_l``; its input is the previous stage's codes ``a_{l-1}`` times ``s_{l-1}``
(for the first stage, the integer pixels times the model's ``input_scale``). Exactly::

    a_l = clamp(floor((W · s_{l-1} · a_{l-1} + b) / s_l + 0.5), n, p)

The integer network replaces this with (``H = floor(Θ/2)``, spec §2.4)::

    a_l = clamp(floor((w · a_{l-1} + B + H) / Θ), n, p)
    w = round(W · s_{l-1} · Θ / s_l),   B = round(b · Θ / s_l)

with ``round(x) = floor(x + 0.5)``. The threshold Θ sets the precision: the larger Θ, the finer
the integer weights approximate ``W · s_{l-1} / s_l``. :func:`to_network` picks, per output neuron
(or per layer), the **largest** Θ for which every weight still fits in ``weight_bits`` signed
bits — by default a power of two, so that dividing by Θ is a shift in hardware.

The integer network is the golden model; the float QANN only approximates it (weights and biases are
rounded). :func:`agreement` measures how closely.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from spikezip.ir import Encoding, Layer, Network
from spikezip.ir.network import check_neuron
from spikezip.sw.quant import MyQuan

__all__ = ["Agreement", "agreement", "evaluate_float", "to_network"]

#: Modules that may follow a quantizer and are the identity there.
_PASS_THROUGH = (torch.nn.Identity, torch.nn.Dropout)


@dataclass(frozen=True)
class _Stage:
    name: str
    linear: torch.nn.Linear
    quant: MyQuan
    after: tuple[torch.nn.Module, ...]


def _stages(model: Any) -> list[_Stage]:
    """The model's leaf modules, in registration order, grouped as ``Linear, MyQuan, [ReLU]``."""
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, not {type(model).__name__}")
    leaves = [
        (n, m)
        for n, m in list(model.named_modules())[1:]  # the root itself is never a stage
        if not any(True for _ in m.children())
    ]
    stages: list[_Stage] = []
    i = 0
    while i < len(leaves):
        name, mod = leaves[i]
        if isinstance(mod, _PASS_THROUGH):
            i += 1
            continue
        if not isinstance(mod, torch.nn.Linear):
            raise TypeError(
                f"model module {name!r} is a {type(mod).__name__}; expected a torch.nn.Linear "
                "(a QANN is a chain of Linear → MyQuan stages)"
            )
        if i + 1 >= len(leaves) or not isinstance(leaves[i + 1][1], MyQuan):
            got = type(leaves[i + 1][1]).__name__ if i + 1 < len(leaves) else "nothing"
            raise TypeError(
                f"model module {name!r} (Linear) must be followed by a MyQuan, not {got}"
            )
        quant = leaves[i + 1][1]
        i += 2
        after = []
        while i < len(leaves) and isinstance(leaves[i][1], (torch.nn.ReLU, *_PASS_THROUGH)):
            if isinstance(leaves[i][1], torch.nn.ReLU) and quant.symmetric:
                raise TypeError(
                    f"model module {leaves[i][0]!r} is a ReLU after the symmetric quantizer "
                    f"{leaves[i - 1][0]!r}; an ST-BIF neuron cannot reproduce it (use an "
                    "asymmetric quantizer, which is already ReLU-like)"
                )
            after.append(leaves[i][1])
            i += 1
        stages.append(_Stage(name=name, linear=mod, quant=quant, after=tuple(after)))
    if not stages:
        raise ValueError("model holds no Linear → MyQuan stage")
    for k in range(1, len(stages)):
        prev, cur = stages[k - 1].linear, stages[k].linear
        if cur.in_features != prev.out_features:
            raise ValueError(
                f"model module {stages[k].name!r} has {cur.in_features} inputs but "
                f"{stages[k - 1].name!r} has {prev.out_features} outputs"
            )
    return stages


def _scale(stage: _Stage) -> float:
    s = float(stage.quant.scale.detach())
    if not (math.isfinite(s) and s > 0):
        raise ValueError(f"the quantizer after {stage.name!r} has scale s = {s!r}; it must be > 0")
    return s


def _input_scale(model: Any, input_scale: float | None) -> float:
    if input_scale is None:
        input_scale = getattr(model, "input_scale", None)
        if input_scale is None:
            raise ValueError("input_scale must be given (the model has no input_scale attribute)")
    if isinstance(input_scale, bool) or not isinstance(input_scale, (int, float)):
        raise TypeError(f"input_scale must be a positive number, not {input_scale!r}")
    if not (math.isfinite(input_scale) and input_scale > 0):
        raise ValueError(f"input_scale must be a positive number, not {input_scale!r}")
    return float(input_scale)


def _round(x: np.ndarray) -> np.ndarray:
    """Round half up (the quantizer's convention), float64 → int64."""
    return np.floor(x + 0.5).astype(np.int64)


def _largest(
    fits: Callable[[np.ndarray], np.ndarray], candidates: np.ndarray, n: int
) -> np.ndarray:
    """Per row, the largest of the increasing ``candidates`` that ``fits`` (monotone), else -1."""
    lo = np.full(n, -1, dtype=np.int64)  # index of a candidate known to fit (-1: none yet)
    hi = np.full(n, len(candidates), dtype=np.int64)  # index known not to fit
    while True:
        open_ = hi - lo > 1
        if not open_.any():
            return np.where(lo >= 0, candidates[np.maximum(lo, 0)], -1)
        mid = (lo + hi) // 2
        ok = fits(candidates[np.minimum(mid, len(candidates) - 1)])
        lo = np.where(open_ & ok, mid, lo)
        hi = np.where(open_ & ~ok, mid, hi)


def _thresholds(
    ratio: np.ndarray, *, weight_bits: int, power_of_two: bool, max_threshold: int
) -> np.ndarray:
    """Largest Θ per row with ``round(ratio · Θ)`` inside ``weight_bits`` signed bits."""
    w_lo, w_hi = -(1 << (weight_bits - 1)), (1 << (weight_bits - 1)) - 1
    if power_of_two:
        candidates = 1 << np.arange(max_threshold.bit_length(), dtype=np.int64)
    else:
        candidates = np.arange(1, max_threshold + 1, dtype=np.int64)
    candidates = candidates[candidates <= max_threshold]
    r_max, r_min = ratio.max(axis=1), ratio.min(axis=1)

    def fits(theta: np.ndarray) -> np.ndarray:
        t = theta.astype(np.float64)
        return (_round(r_max * t) <= w_hi) & (_round(r_min * t) >= w_lo)

    return _largest(fits, candidates, ratio.shape[0])


def to_network(
    model: torch.nn.Module,
    *,
    weight_bits: int = 8,
    per_neuron_threshold: bool = True,
    power_of_two: bool = True,
    max_threshold: int = 1 << 16,
    input_scale: float | None = None,
    input_bounds: tuple[int, int] | None = None,
    name: str = "",
    neuron: str = "stbif",
    max_level: int | None = None,
) -> Network:
    """Convert a trained QANN into an integer ST-BIF network (spec §2.4, Option B).

    Parameters
    ----------
    model : torch.nn.Module
        A chain of ``Linear → MyQuan`` stages: its leaf modules, in registration order, must be
        ``Linear, MyQuan`` pairs, optionally followed by ``ReLU`` (after an asymmetric quantizer
        only, where it is the identity), ``Identity`` or ``Dropout`` (identity in eval).
    weight_bits : int
        Signed width of every integer weight, 2…32: ``w`` in ``[-2^(b-1), 2^(b-1) - 1]``.
    per_neuron_threshold : bool
        One Θ per output neuron (default), or one per layer (the smallest neuron's).
    power_of_two : bool
        Restrict Θ to powers of two (default), so the division is a shift; otherwise any integer.
    max_threshold : int
        Upper limit of Θ (reached by neurons whose weights are all 0 or tiny).
    input_scale : float, optional
        Float value of one integer input step (``s_0``); default ``model.input_scale``.
    input_bounds : tuple of int, optional
        Range of the integer (analog) inputs; default ``model.input_bounds``.
    name : str
        The network's name.
    neuron : str
        ``"stbif"`` (default) or ``"graded"`` (spikes ±2^k, docs/graded.md): the same integer
        network, whose converged tracers are the same.
    max_level : int, optional
        Graded only: the largest level K (``|s| ≤ 2^K``); None for unbounded.

    Returns
    -------
    ir.Network
        Analog encoding; one layer per stage, named after the stage's ``Linear``; tracer bounds
        ``(n, p)`` from the stage's quantizer.

    Raises
    ------
    TypeError, ValueError
        Naming the offending argument or model module: wrong module sequence, non-positive
        scale, non-finite weights, or weights that do not fit ``weight_bits`` even at Θ = 1.
    """
    if isinstance(weight_bits, bool) or not isinstance(weight_bits, int):
        raise TypeError(f"weight_bits must be an integer, not {weight_bits!r}")
    if not 2 <= weight_bits <= 32:
        raise ValueError(f"weight_bits must lie in [2, 32], not {weight_bits!r}")
    if not isinstance(per_neuron_threshold, bool):
        raise TypeError(f"per_neuron_threshold must be a bool, not {per_neuron_threshold!r}")
    if not isinstance(power_of_two, bool):
        raise TypeError(f"power_of_two must be a bool, not {power_of_two!r}")
    if isinstance(max_threshold, bool) or not isinstance(max_threshold, int) or max_threshold < 1:
        raise ValueError(f"max_threshold must be a positive integer, not {max_threshold!r}")
    if not isinstance(name, str):
        raise TypeError(f"name must be a string, not {name!r}")
    check_neuron(neuron, max_level)
    stages = _stages(model)
    prev_scale = _input_scale(model, input_scale)
    if input_bounds is None:
        input_bounds = getattr(model, "input_bounds", None)
        if input_bounds is None:
            raise ValueError("input_bounds must be given (the model has no input_bounds attribute)")
    layers = []
    for k, st in enumerate(stages):
        scale = _scale(st)
        weight = st.linear.weight.detach().to(torch.float64).cpu().numpy()
        bias = (
            np.zeros(weight.shape[0])
            if st.linear.bias is None
            else st.linear.bias.detach().to(torch.float64).cpu().numpy()
        )
        for field, arr in (("weight", weight), ("bias", bias)):
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"model module {st.name!r} has a non-finite {field}")
        ratio = weight * (prev_scale / scale)  # integer weight per unit of Θ
        theta = _thresholds(
            ratio, weight_bits=weight_bits, power_of_two=power_of_two, max_threshold=max_threshold
        )
        if (theta < 1).any():
            i = int(np.argmin(theta))
            need = float(np.abs(ratio[i]).max())
            raise ValueError(
                f"layer {k} (model module {st.name!r}), neuron {i}: a weight of "
                f"{need:.4g} threshold units needs more than weight_bits={weight_bits} signed "
                "bits even at threshold 1; raise weight_bits"
            )
        if not per_neuron_threshold:
            theta = np.full_like(theta, theta.min())
        w = _round(ratio * theta[:, None].astype(np.float64))
        b = _round(bias * theta.astype(np.float64) / scale)
        layers.append(
            Layer(
                weight=w,
                bias=b,
                threshold=theta if per_neuron_threshold else int(theta[0]),
                neg_bound=st.quant.neg_bound,
                pos_bound=st.quant.pos_bound,
                name=st.name,
                neuron=neuron,
                max_level=max_level,
            )
        )
        prev_scale = scale
    return Network(
        layers=tuple(layers),
        n_inputs=stages[0].linear.in_features,
        encoding=Encoding.ANALOG,
        input_bounds=tuple(input_bounds),
        name=name,
    )


def _pixels(inputs: Any, n_inputs: int) -> np.ndarray:
    if isinstance(inputs, torch.Tensor):
        inputs = inputs.detach().cpu().numpy()
    arr = np.asarray(inputs)
    if arr.dtype == np.bool_ or arr.dtype.kind not in "iu":
        raise TypeError(f"inputs must be integers, not an array of {arr.dtype}")
    if arr.ndim != 2 or arr.shape[1] != n_inputs:
        raise ValueError(f"inputs must have shape [batch, {n_inputs}], not {list(arr.shape)}")
    return arr


def evaluate_float(
    model: torch.nn.Module,
    inputs: np.ndarray | torch.Tensor,
    *,
    input_scale: float | None = None,
) -> list[np.ndarray]:
    """The float QANN's integer codes per stage, ``int64 [batch, n_out]`` each.

    Runs the model's own float arithmetic (in eval mode, restored afterwards) on
    ``inputs · input_scale`` and records each quantizer's ``clamp(floor(x/s + 0.5), n, p)``.

    Parameters
    ----------
    model : torch.nn.Module
        As for :func:`to_network`.
    inputs : array of int
        Integer inputs ``[batch, n_inputs]`` (for the digits: pixels 0..16).
    input_scale : float, optional
        Default ``model.input_scale``.
    """
    stages = _stages(model)
    scale = _input_scale(model, input_scale)
    x_int = _pixels(inputs, stages[0].linear.in_features)
    dtype = stages[0].linear.weight.dtype
    h = torch.from_numpy(x_int.astype(np.float64) * scale).to(dtype)
    was_training = model.training
    model.eval()
    out = []
    try:
        with torch.no_grad():
            for st in stages:
                z = st.linear(h)
                out.append(st.quant.codes(z).numpy())
                h = st.quant(z)
                for mod in st.after:
                    h = mod(h)
    finally:
        model.train(was_training)
    return out


@dataclass(frozen=True, kw_only=True)
class Agreement:
    """How closely the float QANN matches the integer QANN on a batch.

    Attributes
    ----------
    neurons : tuple of float
        Per layer, the fraction of (sample, neuron) codes that are equal.
    samples : tuple of float
        Per layer, the fraction of samples whose codes are all equal in that layer.
    max_difference : tuple of int
        Per layer, the largest ``|float code - integer code|``.
    prediction : float
        Fraction of samples with the same predicted class (arg-max of the last layer's codes,
        first index on ties).
    """

    neurons: tuple[float, ...]
    samples: tuple[float, ...]
    max_difference: tuple[int, ...]
    prediction: float

    def __str__(self) -> str:
        layers = ", ".join(
            f"{n:.4f}/{s:.4f}/{d}"
            for n, s, d in zip(self.neurons, self.samples, self.max_difference, strict=True)
        )
        return f"prediction {self.prediction:.4f}; per layer neurons/samples/max|Δ|: {layers}"


def agreement(
    model: torch.nn.Module,
    network: Network,
    inputs: np.ndarray | torch.Tensor,
    *,
    input_scale: float | None = None,
) -> Agreement:
    """Compare the float QANN's codes with the integer QANN's activations (end to end).

    Parameters
    ----------
    model : torch.nn.Module
        The float QANN (as for :func:`to_network`).
    network : ir.Network
        Its conversion.
    inputs : array of int
        Integer inputs ``[batch, n_inputs]`` within ``network.input_bounds``.
    input_scale : float, optional
        Default ``model.input_scale``.

    Returns
    -------
    Agreement
    """
    from spikezip.sw.reference import integer_qann

    if not isinstance(network, Network):
        raise TypeError(f"network must be an ir.Network, not {type(network).__name__}")
    float_codes = evaluate_float(model, inputs, input_scale=input_scale)
    int_codes = integer_qann(network, _pixels(inputs, network.n_inputs))
    if len(float_codes) != len(int_codes):
        raise ValueError(
            f"model has {len(float_codes)} stages but network has {len(int_codes)} layers"
        )
    for k, (f, i) in enumerate(zip(float_codes, int_codes, strict=True)):
        if f.shape != i.shape:
            raise ValueError(f"layer {k}: model gives shape {f.shape}, network {i.shape}")
    eq = [f == i for f, i in zip(float_codes, int_codes, strict=True)]
    return Agreement(
        neurons=tuple(float(e.mean()) for e in eq),
        samples=tuple(float(e.all(axis=1).mean()) for e in eq),
        max_difference=tuple(
            int(np.abs(f - i).max()) for f, i in zip(float_codes, int_codes, strict=True)
        ),
        prediction=float(
            np.mean(np.argmax(float_codes[-1], axis=1) == np.argmax(int_codes[-1], axis=1))
        ),
    )
