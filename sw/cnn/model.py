"""A small float CNN QANN for the 8×8 digits, its deterministic QAT, and a training cache.

Architecture (Q⁺: ``MyQuan`` asymmetric, the ReLU; Q: symmetric; BN: BatchNorm, folded into the
convolution before conversion)::

    image 1×8×8 ─ conv1 3×3 ─ BN ─ Q⁺ ─▶ c1×8×8 ─ conv2 3×3 stride 2 ─ BN ─ Q⁺ ─▶ c2×4×4 ─┬─ (skip)
        ┌──────────────────────────────────────────────────────────────────────────────┘
        ├─ conv3 3×3 ─ BN ─ Q⁺ ─▶ c3×4×4 ─ conv4 3×3 ─ BN ─ Q ─▶ c2×4×4 ─┐
        └───────────────────────────────────────────────────────────────(+)─ Q⁺ (add)
    ─ max-pool 2×2 ─▶ c2×2×2 ─ flatten ─ fc ─ Q ─▶ 10 codes; the class is their arg-max (first
    index on ties)

The channels ``(c1, c2, c3)`` are a knob (:attr:`CnnConfig.channels`): the residual add fixes
conv4's output channels to conv2's ``c2``; conv3's ``c3`` may differ (docs/cnn.md §14: channel
counts chosen so that lanes dividing them balance the conv cores' work).

Every convolution pads by 1. The residual merge has its own quantizer (``add``): in the SNN it is an
:class:`ir.cnn.Add` site whose drive is ``m_conv4·s_conv4 + m_conv2·s_conv2``. Max-pool of
non-negative codes times one scale is the max-pool of the codes, so it needs no quantizer
(:class:`ir.cnn.MaxPool2d`, a differential operator in the SNN).

Training is quantization-aware from the first step: cross-entropy on the quantized logits, AdamW
(weight decay on the conv/linear weights only), one-cycle learning rate, random ±``shift``-pixel
translations of the training images (zero fill). Determinism and the cache follow
:mod:`sw.qann`: one seed, single-thread deterministic torch, the global RNG untouched;
``$SPIKEZIP_CACHE/cnn-<key>.pt`` written atomically, the key hashing the configuration, the
torch version and :data:`CACHE_VERSION`.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spikezip.sw import cache, digits
from spikezip.sw.qann import _deterministic
from spikezip.sw.quant import MyQuan, bounds

__all__ = [
    "CACHE_VERSION",
    "MAX_CHANNELS",
    "SITES",
    "CnnConfig",
    "QannCNN",
    "accuracy",
    "build",
    "cache_key",
    "cache_path",
    "check_channels",
    "load_or_train",
    "train",
]

#: Bump when training code changes in a way that should invalidate cached models.
CACHE_VERSION = 1
#: Side of the digits images.
IMAGE_SIDE = 8
#: Largest channel count of a convolution (:attr:`CnnConfig.channels`).
MAX_CHANNELS = 512
#: The sites of the converted network, in execution order (the trace layers).
SITES = ("conv1", "conv2", "conv3", "conv4", "add", "pool", "fc")


@dataclass(frozen=True, kw_only=True)
class CnnConfig:
    """Hyper-parameters of the digits CNN and its training.

    Parameters
    ----------
    channels : (int, int) or (int, int, int)
        Output channels ``(c1, c2)`` of conv1 and of conv2 … conv4, or ``(c1, c2, c3)`` with
        conv3's own ``c3`` (conv4's are conv2's: the residual add). Each in
        ``1..``:data:`MAX_CHANNELS`. Kept as a pair when ``c3 == c2`` (one cache key per
        network); :attr:`conv_channels` gives all three. Default ``(12, 24, 36)``: chosen for
        the hardware (docs/cnn.md §14; sessions 14–17 used ``(16, 32)``).
    levels : int
        Levels ``L`` of every quantizer (even).
    epochs, batch_size, learning_rate, weight_decay : training
    shift : int
        Largest random translation (pixels) of a training image; 0 for none.
    seed : int
        Seed of the initial weights, the batch order and the translations.
    test_size, split_seed : the digits split (:func:`sw.digits.load`)
    """

    channels: tuple[int, ...] = (12, 24, 36)
    levels: int = 16
    epochs: int = 30
    batch_size: int = 64
    learning_rate: float = 4e-3
    weight_decay: float = 1e-4
    shift: int = 1
    seed: int = 0
    test_size: float = digits.TEST_SIZE
    split_seed: int = digits.RANDOM_STATE

    def __post_init__(self) -> None:
        object.__setattr__(self, "channels", check_channels(self.channels))
        bounds(self.levels, True)
        for field in ("epochs", "batch_size"):
            v = getattr(self, field)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{field} must be a positive integer, not {v!r}")
        if isinstance(self.shift, bool) or not isinstance(self.shift, int) or self.shift < 0:
            raise ValueError(f"shift must be an integer ≥ 0, not {self.shift!r}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be positive, not {self.learning_rate!r}")
        if not self.weight_decay >= 0:
            raise ValueError(f"weight_decay must be ≥ 0, not {self.weight_decay!r}")

    @property
    def conv_channels(self) -> tuple[int, int, int]:
        """``(c1, c2, c3)``: the output channels of conv1, conv2 (and conv4), conv3."""
        return _triple(self.channels)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["channels"] = list(self.channels)
        return d


def check_channels(channels: Any) -> tuple[int, ...]:
    """``channels`` (:attr:`CnnConfig.channels`) checked: 2 or 3 integers in
    ``1..``:data:`MAX_CHANNELS`; a triple whose ``c3`` equals ``c2`` becomes the pair. A
    ValueError (TypeError for a non-sequence) names the field and the range."""
    if not isinstance(channels, (tuple, list)):
        raise TypeError(f"channels must be 2 or 3 integers (c1, c2[, c3]), not {channels!r}")
    ch = tuple(channels)
    if len(ch) not in (2, 3) or not all(
        isinstance(c, (int, np.integer)) and not isinstance(c, bool) for c in ch
    ):
        raise ValueError(f"channels must be 2 or 3 integers (c1, c2[, c3]), not {channels!r}")
    ch = tuple(int(c) for c in ch)
    for name, c in zip(("c1", "c2", "c3"), ch, strict=False):
        if not 1 <= c <= MAX_CHANNELS:
            raise ValueError(f"channels {name} must lie in 1..{MAX_CHANNELS}, not {c}")
    return ch[:2] if len(ch) == 3 and ch[2] == ch[1] else ch


def _triple(channels: tuple[int, ...]) -> tuple[int, int, int]:
    c1, c2, *rest = channels
    return (c1, c2, rest[0] if rest else c2)


def _conv(c_in: int, c_out: int, stride: int = 1) -> torch.nn.Conv2d:
    return torch.nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)


class QannCNN(torch.nn.Module):
    """The float digits CNN QANN (module docstring).

    Parameters
    ----------
    channels : (int, int) or (int, int, int)
        :attr:`CnnConfig.channels`.
    levels : int
    input_scale : float
        Float value of one integer pixel step.
    input_bounds : tuple of int
    """

    def __init__(
        self,
        *,
        channels: tuple[int, ...] = (12, 24, 36),
        levels: int = 16,
        input_scale: float = digits.INPUT_SCALE,
        input_bounds: tuple[int, int] = digits.INPUT_BOUNDS,
    ) -> None:
        super().__init__()
        c1, c2, c3 = _triple(check_channels(channels))
        self.conv1, self.bn1, self.q1 = (
            _conv(1, c1),
            torch.nn.BatchNorm2d(c1),
            MyQuan(levels, symmetric=False),
        )
        self.conv2, self.bn2, self.q2 = (
            _conv(c1, c2, 2),
            torch.nn.BatchNorm2d(c2),
            MyQuan(levels, symmetric=False),
        )
        self.conv3, self.bn3, self.q3 = (
            _conv(c2, c3),
            torch.nn.BatchNorm2d(c3),
            MyQuan(levels, symmetric=False),
        )
        self.conv4, self.bn4, self.q4 = (
            _conv(c3, c2),
            torch.nn.BatchNorm2d(c2),
            MyQuan(levels, symmetric=True),
        )
        self.q_add = MyQuan(levels, symmetric=False)
        self.pool = torch.nn.MaxPool2d(2)
        side = IMAGE_SIDE // 2 // 2
        self.fc = torch.nn.Linear(c2 * side * side, digits.N_CLASSES)
        self.q_out = MyQuan(levels, symmetric=True)
        self.input_scale = float(input_scale)
        self.input_bounds = (int(input_bounds[0]), int(input_bounds[1]))

    def stages(self, x: torch.Tensor) -> list[tuple[torch.Tensor, MyQuan | None]]:
        """Per site (:data:`SITES`): ``(pre-quantizer value, quantizer)``; the pool's quantizer
        is None (its value is already quantized)."""
        x = x.reshape(x.shape[0], 1, IMAGE_SIDE, IMAGE_SIDE)
        out = []
        z1 = self.bn1(self.conv1(x))
        h1 = self.q1(z1)
        z2 = self.bn2(self.conv2(h1))
        h2 = self.q2(z2)
        z3 = self.bn3(self.conv3(h2))
        h3 = self.q3(z3)
        z4 = self.bn4(self.conv4(h3))
        h4 = self.q4(z4)
        za = h4 + h2
        ha = self.q_add(za)
        hp = self.pool(ha)
        zf = self.fc(hp.flatten(1))
        out = [(z1, self.q1), (z2, self.q2), (z3, self.q3), (z4, self.q4), (za, self.q_add)]
        out += [(hp, None), (zf, self.q_out)]
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Float forward on ``pixels · input_scale`` ``[B, 64]``; the quantized logits."""
        z, q = self.stages(x)[-1]
        return q(z)

    @torch.no_grad()
    def codes(self, pixels: np.ndarray) -> list[np.ndarray]:
        """Integer codes per site (:data:`SITES`) of integer pixels ``[B, 64]``, in eval mode;
        the pool's are the add site's codes max-pooled."""
        was = self.training
        self.eval()
        try:
            st = self.stages(digits.to_float(pixels))
        finally:
            self.train(was)
        out = []
        for k, (z, q) in enumerate(st):
            if q is None:
                c = torch.nn.functional.max_pool2d(torch.from_numpy(out[k - 1]).double(), 2)
                out.append(c.to(torch.int64).numpy())
            else:
                out.append(q.codes(z).numpy())
        return out


def build(config: CnnConfig) -> QannCNN:
    """An untrained :class:`QannCNN` shaped by ``config`` (uses torch's RNG)."""
    return QannCNN(channels=config.channels, levels=config.levels)


def _shifted(x: torch.Tensor, shift: int, gen: torch.Generator) -> torch.Tensor:
    """Each image ``[B, 64]`` translated by a random ``(dy, dx)`` in ``[-shift, shift]²``,
    zero-filled."""
    if shift == 0:
        return x
    b = x.shape[0]
    img = torch.nn.functional.pad(x.reshape(b, IMAGE_SIDE, IMAGE_SIDE), (shift,) * 4)
    d = torch.randint(0, 2 * shift + 1, (b, 2), generator=gen)
    out = torch.stack(
        [
            img[i, dy : dy + IMAGE_SIDE, dx : dx + IMAGE_SIDE]
            for i, (dy, dx) in enumerate(d.tolist())
        ]
    )
    return out.reshape(b, -1)


def train(config: CnnConfig | None = None) -> QannCNN:
    """Train the digits CNN QANN from scratch (deterministic on one machine)."""
    config = CnnConfig() if config is None else config
    if not isinstance(config, CnnConfig):
        raise TypeError(f"config must be a CnnConfig, not {type(config).__name__}")
    data = digits.load(test_size=config.test_size, random_state=config.split_seed)
    x = digits.to_float(data.x_train)
    y = torch.from_numpy(np.array(data.y_train))
    with _deterministic():
        torch.manual_seed(config.seed)
        model = build(config)
        gen = torch.Generator().manual_seed(config.seed)
        named = list(model.named_parameters())
        decay = [p for n, p in named if n.endswith(".weight") and p.ndim >= 2]
        rest = [p for n, p in named if not (n.endswith(".weight") and p.ndim >= 2)]
        opt = torch.optim.AdamW(
            [
                {"params": decay, "weight_decay": config.weight_decay},
                {"params": rest, "weight_decay": 0.0},
            ],
            lr=config.learning_rate,
        )
        n = x.shape[0]
        steps_per_epoch = math.ceil(n / config.batch_size)
        sched = torch.optim.lr_scheduler.OneCycleLR(
            opt,
            max_lr=config.learning_rate,
            total_steps=config.epochs * steps_per_epoch,
            pct_start=0.1,
        )
        model.train()
        for _ in range(config.epochs):
            perm = torch.randperm(n, generator=gen)
            for i in range(0, n, config.batch_size):
                idx = perm[i : i + config.batch_size]
                xb = _shifted(x[idx], config.shift, gen)
                loss = torch.nn.functional.cross_entropy(model(xb), y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
        model.eval()
    return model


def accuracy(model: QannCNN, pixels: np.ndarray, labels: np.ndarray) -> float:
    """Float-QANN accuracy: arg-max of the fc codes (first index on ties) against ``labels``."""
    pred = np.argmax(model.codes(pixels)[-1], axis=1)
    return float(np.mean(pred == np.asarray(labels)))


# -- cache ------------------------------------------------------------------------------------
def cache_key(config: CnnConfig) -> str:
    """Hex digest naming a trained model: configuration, torch version, :data:`CACHE_VERSION`."""
    return cache.cache_key("cnn", config.to_dict(), CACHE_VERSION)


def cache_path(config: CnnConfig, directory: str | os.PathLike | None = None) -> Path:
    """File that holds (or will hold) the model trained with ``config``."""
    return cache.cache_path("cnn", cache_key(config), directory)


def load_or_train(
    config: CnnConfig | None = None, *, directory: str | os.PathLike | None = None
) -> QannCNN:
    """The model trained with ``config``, from the cache (:mod:`sw.cache`) or trained and cached."""
    config = CnnConfig() if config is None else config
    if not isinstance(config, CnnConfig):
        raise TypeError(f"config must be a CnnConfig, not {type(config).__name__}")
    return cache.load_or_train(
        kind="cnn",
        config=config.to_dict(),
        version=CACHE_VERSION,
        build=lambda: build(config),
        train=lambda: train(config),
        directory=directory,
    )
