"""A tiny float ViT-ReLU QANN for the digits, its deterministic QAT, and a training cache.

The quantizers sit exactly where SpikeZIP-TF's ``myquan_replace`` puts them (spec §3.2), one level
``L`` everywhere::

    patches ─ embed ─ Q ─┐                    (Q: MyQuan sym, Q⁺: MyQuan asym)
    [cls; ·] + pos ──────┴─▶ x
    block:  x ─ LN ─ Q ─ qkv ─ Q_q, Q_k, Q_v ─ softmax((q·d^-½)·kᵀ) ─ Q⁺ ─ ·v ─ Q
              ─ proj ─ Q ─(+x)─▶ x
            x ─ LN ─ Q ─ fc1 ─ Q⁺ ─ ReLU ─ fc2 ─ Q ─(+x)─▶ x
    x ─ LN ─ Q ─ [class token] ─ head ─ Q ─▶ logits (codes)

* The MLP's asymmetric quantizer is the ReLU (SpikeZIP's ViT-ReLU: the ``ReLU`` after it is the
  identity; GELU is not convertible, spec §8.5).
* The logits also pass through a symmetric quantizer, as in the digits MLP (:mod:`sw.qann`), so
  the head is an ST-BIF site like every other; the class is the arg-max of its codes.
* LayerNorms use ε = 1e-6 (timm's ViT); the conversion carries the same ε into the integer model,
  so the SNN and the QANN cannot disagree about it (spec §8.4).

Site names (:attr:`QannViT.site_names`) are those of :class:`ir.transformer.VisionTransformer`:
``embed``, ``blocks.{b}.norm1`` … ``blocks.{b}.fc2``, ``norm``, ``head``.

Training is quantization-aware from the first step (``MyQuan`` initialises its scale on the first
batch): cross-entropy on the quantized logits, AdamW (weight decay on the linear weights only),
one-cycle learning rate. Determinism and the cache follow :mod:`sw.qann`: one seed, single-thread
deterministic torch, the global RNG untouched; ``$SPIKEZIP_CACHE/vit-<key>.pt`` written atomically,
the key hashing the configuration, the torch version and :data:`CACHE_VERSION`.
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
    "IMAGE_SIDE",
    "QannViT",
    "VitConfig",
    "accuracy",
    "build",
    "cache_key",
    "cache_path",
    "load_or_train",
    "patch_index",
    "train",
]

#: Bump when training code changes in a way that should invalidate cached models.
CACHE_VERSION = 2
#: The digits are 8×8 images.
IMAGE_SIDE = 8


def _positive_int(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{field} must be a positive integer, not {value!r}")
    return int(value)


def _number(value: Any, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{field} must be a number, not {value!r}")
    return float(value)


@dataclass(frozen=True, kw_only=True)
class VitConfig:
    """Hyper-parameters of the digits ViT QANN and its training.

    Parameters
    ----------
    patch : int
        Side of the square patches; divides 8 (2 gives 16 patches of 4 pixels).
    dim : int
        Channels of the residual stream.
    heads : int
        Attention heads; divides ``dim``.
    depth : int
        Blocks.
    hidden : int
        Hidden width of the MLPs.
    levels : int
        Levels ``L`` of every quantizer (even: the symmetric ones need it).
    eps : float
        LayerNorm ε.
    epochs, batch_size : int
        Passes over the training set; mini-batch size.
    learning_rate : float
        Peak AdamW learning rate (one-cycle schedule, 10 % warm-up).
    weight_decay : float
        Decoupled weight decay on the linear weights only.
    seed : int
        Seed of the initial weights and of the batch order.
    test_size, split_seed : float, int
        The digits split (:func:`sw.digits.load`).
    """

    patch: int = 2
    dim: int = 32
    heads: int = 2
    depth: int = 2
    hidden: int = 64
    levels: int = 16
    eps: float = 1e-6
    epochs: int = 40
    batch_size: int = 64
    learning_rate: float = 3e-3
    weight_decay: float = 0.05
    seed: int = 0
    test_size: float = digits.TEST_SIZE
    split_seed: int = digits.RANDOM_STATE

    def __post_init__(self) -> None:
        for field in ("patch", "dim", "heads", "depth", "hidden", "epochs", "batch_size"):
            object.__setattr__(self, field, _positive_int(getattr(self, field), field))
        if IMAGE_SIDE % self.patch:
            raise ValueError(f"patch must divide {IMAGE_SIDE}, not {self.patch!r}")
        if self.dim % self.heads:
            raise ValueError(f"heads must divide dim={self.dim}, not {self.heads!r}")
        bounds(self.levels, True)
        for field in ("eps", "learning_rate", "weight_decay", "test_size"):
            _number(getattr(self, field), field)
        if not self.eps > 0:
            raise ValueError(f"eps must be positive, not {self.eps!r}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be positive, not {self.learning_rate!r}")
        if not self.weight_decay >= 0:
            raise ValueError(f"weight_decay must be ≥ 0, not {self.weight_decay!r}")
        for field in ("seed", "split_seed"):
            if isinstance(getattr(self, field), bool) or not isinstance(getattr(self, field), int):
                raise TypeError(f"{field} must be an integer, not {getattr(self, field)!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return asdict(self)


def patch_index(patch: int, side: int = IMAGE_SIDE) -> np.ndarray:
    """Pixel indices ``[patches, patch²]`` of row-major square patches of a row-major image."""
    g = side // patch
    img = np.arange(side * side).reshape(side, side)
    return np.stack(
        [
            img[i * patch : (i + 1) * patch, j * patch : (j + 1) * patch].ravel()
            for i in range(g)
            for j in range(g)
        ]
    ).astype(np.int64)


Record = list[torch.Tensor] | None


def _quant(q: MyQuan, z: torch.Tensor, record: Record) -> torch.Tensor:
    if record is not None:
        record.append(q.codes(z).reshape(z.shape[0], -1))
    return q(z)


class QannBlock(torch.nn.Module):
    """One ViT-ReLU block with SpikeZIP-TF's quantizers (module docstring)."""

    def __init__(self, *, dim: int, heads: int, hidden: int, levels: int, eps: float) -> None:
        super().__init__()
        self.heads = heads
        self.head_dim = dim // heads
        self.norm1 = torch.nn.LayerNorm(dim, eps=eps)
        self.q_norm1 = MyQuan(levels, symmetric=True)
        self.qkv = torch.nn.Linear(dim, 3 * dim)
        self.q_q = MyQuan(levels, symmetric=True)
        self.q_k = MyQuan(levels, symmetric=True)
        self.q_v = MyQuan(levels, symmetric=True)
        self.q_attn = MyQuan(levels, symmetric=False)
        self.q_context = MyQuan(levels, symmetric=True)
        self.proj = torch.nn.Linear(dim, dim)
        self.q_proj = MyQuan(levels, symmetric=True)
        self.norm2 = torch.nn.LayerNorm(dim, eps=eps)
        self.q_norm2 = MyQuan(levels, symmetric=True)
        self.fc1 = torch.nn.Linear(dim, hidden)
        self.q_fc1 = MyQuan(levels, symmetric=False)
        self.act = torch.nn.ReLU()
        self.fc2 = torch.nn.Linear(hidden, dim)
        self.q_fc2 = MyQuan(levels, symmetric=True)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        return x.reshape(b, n, self.heads, self.head_dim).transpose(1, 2)

    def forward(self, x: torch.Tensor, record: Record = None) -> torch.Tensor:
        b, n, d = x.shape
        h = _quant(self.q_norm1, self.norm1(x), record)
        q, k, v = self.qkv(h).chunk(3, dim=-1)
        q = self._split(_quant(self.q_q, q, record))
        k = self._split(_quant(self.q_k, k, record))
        v = self._split(_quant(self.q_v, v, record))
        scores = (q * self.head_dim**-0.5) @ k.transpose(-1, -2)
        attn = _quant(self.q_attn, scores.softmax(dim=-1), record)
        ctx = (attn @ v).transpose(1, 2).reshape(b, n, d)
        ctx = _quant(self.q_context, ctx, record)
        x = x + _quant(self.q_proj, self.proj(ctx), record)
        h = _quant(self.q_norm2, self.norm2(x), record)
        h = self.act(_quant(self.q_fc1, self.fc1(h), record))
        return x + _quant(self.q_fc2, self.fc2(h), record)


class QannViT(torch.nn.Module):
    """The digits ViT-ReLU QANN (module docstring).

    Parameters
    ----------
    config : VitConfig
        Shape and levels (the training fields are ignored here).
    input_scale : float
        Float value of one integer pixel step (the converter's ``s_0``).
    input_bounds : tuple of int
        Range of the integer pixels.
    """

    def __init__(
        self,
        config: VitConfig,
        *,
        input_scale: float = digits.INPUT_SCALE,
        input_bounds: tuple[int, int] = digits.INPUT_BOUNDS,
    ) -> None:
        super().__init__()
        c = config
        self.config = c
        idx = patch_index(c.patch)
        self.register_buffer("patch_index", torch.from_numpy(idx), persistent=False)
        n_patches, size = idx.shape
        self.embed = torch.nn.Linear(size, c.dim)
        self.q_embed = MyQuan(c.levels, symmetric=True)
        self.cls_token = torch.nn.Parameter(torch.zeros(1, 1, c.dim))
        self.pos_embed = torch.nn.Parameter(torch.randn(1, n_patches + 1, c.dim) * 0.02)
        self.blocks = torch.nn.ModuleList(
            QannBlock(dim=c.dim, heads=c.heads, hidden=c.hidden, levels=c.levels, eps=c.eps)
            for _ in range(c.depth)
        )
        self.norm = torch.nn.LayerNorm(c.dim, eps=c.eps)
        self.q_norm = MyQuan(c.levels, symmetric=True)
        self.head = torch.nn.Linear(c.dim, digits.N_CLASSES)
        self.q_head = MyQuan(c.levels, symmetric=True)
        self.n_inputs = IMAGE_SIDE * IMAGE_SIDE
        self.input_scale = float(input_scale)
        self.input_bounds = (int(input_bounds[0]), int(input_bounds[1]))

    @property
    def site_names(self) -> tuple[str, ...]:
        """Quantizer sites in execution order (as :class:`ir.transformer.VisionTransformer`)."""
        roles = ("norm1", "q", "k", "v", "attn", "context", "proj", "norm2", "fc1", "fc2")
        inner = tuple(f"blocks.{b}.{r}" for b in range(len(self.blocks)) for r in roles)
        return ("embed", *inner, "norm", "head")

    def forward(self, x: torch.Tensor, record: Record = None) -> torch.Tensor:
        """Float forward on ``pixels · input_scale`` ``[batch, 64]``; the quantized logits.

        With ``record`` (a list), every quantizer appends its integer codes ``[batch, size]`` in
        site order.
        """
        e = _quant(self.q_embed, self.embed(x[:, self.patch_index]), record)
        t = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), e], dim=1) + self.pos_embed
        for blk in self.blocks:
            t = blk(t, record)
        h = _quant(self.q_norm, self.norm(t), record)
        return _quant(self.q_head, self.head(h[:, 0]), record)

    @torch.no_grad()
    def codes(self, pixels: np.ndarray | torch.Tensor) -> list[np.ndarray]:
        """Every site's integer codes ``int64 [batch, size]`` on integer pixels (eval mode)."""
        was = self.training
        self.eval()
        record: list[torch.Tensor] = []
        try:
            if isinstance(pixels, torch.Tensor):
                pixels = pixels.detach().cpu().numpy()
            x = np.asarray(pixels)
            if x.dtype == np.bool_ or x.dtype.kind not in "iu":
                raise TypeError(f"pixels must be an integer array, not an array of {x.dtype}")
            self(torch.from_numpy(x.astype(np.float64) * self.input_scale).float(), record)
        finally:
            self.train(was)
        return [r.numpy() for r in record]


def build(config: VitConfig) -> QannViT:
    """An untrained :class:`QannViT` shaped by ``config`` (uses torch's RNG)."""
    return QannViT(config)


def train(config: VitConfig | None = None) -> QannViT:
    """Train a ViT QANN on the digits training split from scratch (deterministic).

    Parameters
    ----------
    config : VitConfig, optional
        Hyper-parameters; the defaults if omitted.

    Returns
    -------
    QannViT
        The trained model, in eval mode.
    """
    config = VitConfig() if config is None else config
    if not isinstance(config, VitConfig):
        raise TypeError(f"config must be a VitConfig, not {type(config).__name__}")
    data = digits.load(test_size=config.test_size, random_state=config.split_seed)
    x = digits.to_float(data.x_train)
    y = torch.from_numpy(np.array(data.y_train))
    with _deterministic():
        torch.manual_seed(config.seed)
        model = build(config)
        gen = torch.Generator().manual_seed(config.seed)
        named = list(model.named_parameters())
        decay = [p for n, p in named if n.endswith(".weight") and p.ndim == 2]
        rest = [p for n, p in named if not (n.endswith(".weight") and p.ndim == 2)]
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
                loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
        model.eval()
    return model


def accuracy(model: QannViT, pixels: np.ndarray, labels: np.ndarray) -> float:
    """Float-QANN accuracy: arg-max of the head's codes (first index on ties) against ``labels``."""
    pred = np.argmax(model.codes(pixels)[-1], axis=1)
    return float(np.mean(pred == np.asarray(labels)))


# -- cache ------------------------------------------------------------------------------------
def cache_key(config: VitConfig) -> str:
    """Hex digest naming a trained model: configuration, torch version, :data:`CACHE_VERSION`."""
    return cache.cache_key("vit", config.to_dict(), CACHE_VERSION)


def cache_path(config: VitConfig, directory: str | os.PathLike | None = None) -> Path:
    """File that holds (or will hold) the model trained with ``config``."""
    return cache.cache_path("vit", cache_key(config), directory)


def load_or_train(
    config: VitConfig | None = None, *, directory: str | os.PathLike | None = None
) -> QannViT:
    """The model trained with ``config``, from the cache (:mod:`sw.cache`) or trained and cached.

    Parameters
    ----------
    config : VitConfig, optional
        Hyper-parameters; the defaults if omitted.
    directory : path, optional
        Cache directory; :func:`sw.cache.cache_dir` if omitted. Created when missing.

    Returns
    -------
    QannViT
        In eval mode.
    """
    config = VitConfig() if config is None else config
    if not isinstance(config, VitConfig):
        raise TypeError(f"config must be a VitConfig, not {type(config).__name__}")
    return cache.load_or_train(
        kind="vit",
        config=config.to_dict(),
        version=CACHE_VERSION,
        build=lambda: build(config),
        train=lambda: train(config),
        directory=directory,
    )
