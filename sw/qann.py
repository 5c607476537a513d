"""A float quantized MLP (QANN) for the digits, its deterministic QAT, and a training cache.

Architecture (spec §3.2, an MLP version of the ViT's ``fc → MyQuan`` blocks)::

    pixels/16 ─ Linear ─ MyQuan(asym) ─ … ─ Linear ─ MyQuan(asym) ─ Linear ─ MyQuan(sym) ─▶ codes
                └─────── hidden layer ───┘             └─────── output layer ──────┘

* Hidden quantizers are asymmetric (``[0, L-1]``): they are the ReLU, so no ``nn.ReLU`` is needed
  (SpikeZIP replaces ``ReLU`` by ``Identity`` at conversion anyway, §3.2).
* The logits also pass through a (symmetric) quantizer, so the output layer becomes an ST-BIF layer
  like every other; the class is the arg-max of its integer codes, first index on ties.
* Training is quantization-aware from the first step: cross-entropy on the quantized logits
  ``code · s``, Adam, mini-batches, cosine learning-rate decay.

Determinism: one seed drives the initial weights and the batch order; training runs single-threaded
with ``torch.use_deterministic_algorithms(True)`` (both restored afterwards, and torch's global
random state is left untouched). The same torch build
on the same CPU type therefore gives the same weights bit for bit; other builds may differ in the
last float bits, which is why the cache key includes the torch version.

Cache: :func:`load_or_train` keeps the state dict in ``$SPIKEZIP_CACHE`` (default
``~/.cache/spikezip-hw``) as ``qann-<key>.pt``, the key hashing the configuration, the torch
version and :data:`CACHE_VERSION`. Files are written atomically (temporary file, then
``os.replace``), so concurrent test workers never read half a file; an unreadable file is
retrained and replaced.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spikezip.sw import cache, digits
from spikezip.sw.quant import MyQuan, bounds

__all__ = [
    "CACHE_VERSION",
    "QannConfig",
    "QannMLP",
    "accuracy",
    "build",
    "cache_dir",
    "cache_key",
    "cache_path",
    "load_or_train",
    "train",
]

#: Bump when training code changes in a way that should invalidate cached models.
CACHE_VERSION = 2


def _positive_int(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{field} must be a positive integer, not {value!r}")
    return int(value)


@dataclass(frozen=True, kw_only=True)
class QannConfig:
    """Hyper-parameters of the digits QANN and its training.

    Parameters
    ----------
    hidden : tuple of int
        Widths of the hidden layers (may be empty: a single quantized linear layer).
    levels : int
        Levels ``L`` of the hidden (asymmetric) quantizers: codes in ``[0, L-1]``.
    output_levels : int
        Levels of the output (symmetric) quantizer: codes in ``[(-L)//2, L//2 - 1]``; even.
    epochs : int
        Passes over the training set.
    batch_size : int
        Mini-batch size.
    learning_rate : float
        Peak Adam learning rate (cosine-decayed to 0 over the run).
    weight_decay : float
        Decoupled (AdamW) weight decay on the linear weights only.
    seed : int
        Seed of the initial weights and of the batch order.
    test_size, split_seed : float, int
        The digits split (:func:`sw.digits.load`).
    """

    hidden: tuple[int, ...] = (64,)
    levels: int = 16
    output_levels: int = 16
    epochs: int = 60
    batch_size: int = 64
    learning_rate: float = 3e-3
    weight_decay: float = 1e-4
    seed: int = 0
    test_size: float = digits.TEST_SIZE
    split_seed: int = digits.RANDOM_STATE

    def __post_init__(self) -> None:
        if isinstance(self.hidden, (str, bytes)) or not hasattr(self.hidden, "__iter__"):
            raise TypeError(f"hidden must be a sequence of integers, not {self.hidden!r}")
        hidden = tuple(self.hidden)
        for k, width in enumerate(hidden):
            _positive_int(width, f"hidden[{k}]")
        object.__setattr__(self, "hidden", tuple(int(w) for w in hidden))
        bounds(self.levels, False)
        bounds(self.output_levels, True)
        for field in ("epochs", "batch_size"):
            _positive_int(getattr(self, field), field)
        for field in ("learning_rate", "weight_decay", "test_size"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"{field} must be a number, not {value!r}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be positive, not {self.learning_rate!r}")
        if not self.weight_decay >= 0:
            raise ValueError(f"weight_decay must be ≥ 0, not {self.weight_decay!r}")
        for field in ("seed", "split_seed"):
            if isinstance(getattr(self, field), bool) or not isinstance(getattr(self, field), int):
                raise TypeError(f"{field} must be an integer, not {getattr(self, field)!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        return d


class QannMLP(torch.nn.Module):
    """``Linear → MyQuan`` blocks; hidden quantizers asymmetric, the output one symmetric.

    Parameters
    ----------
    n_inputs, n_outputs : int
        Input and output widths.
    hidden : tuple of int
        Hidden widths.
    levels, output_levels : int
        Quantizer levels of the hidden layers and of the output layer.
    input_scale : float
        Float value of one integer input step (the converter's ``s_0``).
    input_bounds : tuple of int
        Range of the integer inputs.

    Attributes
    ----------
    layers : torch.nn.Sequential
        ``Linear, MyQuan, Linear, MyQuan, …`` in execution order.
    """

    def __init__(
        self,
        *,
        n_inputs: int,
        n_outputs: int,
        hidden: tuple[int, ...] = (),
        levels: int = 16,
        output_levels: int = 16,
        input_scale: float = digits.INPUT_SCALE,
        input_bounds: tuple[int, int] = digits.INPUT_BOUNDS,
    ) -> None:
        super().__init__()
        widths = [n_inputs, *hidden, n_outputs]
        mods: list[torch.nn.Module] = []
        for k in range(len(widths) - 1):
            last = k == len(widths) - 2
            mods.append(torch.nn.Linear(widths[k], widths[k + 1]))
            mods.append(MyQuan(output_levels if last else levels, symmetric=last))
        self.layers = torch.nn.Sequential(*mods)
        self.input_scale = float(input_scale)
        self.input_bounds = (int(input_bounds[0]), int(input_bounds[1]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Float forward on ``pixels · input_scale``; returns the quantized logits ``code · s``."""
        return self.layers(x)


def build(config: QannConfig) -> QannMLP:
    """An untrained :class:`QannMLP` for the digits, shaped by ``config`` (uses torch's RNG)."""
    return QannMLP(
        n_inputs=digits.N_PIXELS,
        n_outputs=digits.N_CLASSES,
        hidden=config.hidden,
        levels=config.levels,
        output_levels=config.output_levels,
    )


@contextlib.contextmanager
def _deterministic() -> Iterator[None]:
    threads = torch.get_num_threads()
    was_det = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    try:
        with torch.random.fork_rng(devices=[]):
            yield
    finally:
        torch.use_deterministic_algorithms(was_det)
        torch.set_num_threads(threads)


def train(config: QannConfig | None = None) -> QannMLP:
    """Train a QANN on the digits training split from scratch (deterministic; a few seconds).

    Parameters
    ----------
    config : QannConfig, optional
        Hyper-parameters; the defaults if omitted.

    Returns
    -------
    QannMLP
        The trained model, in eval mode.
    """
    config = QannConfig() if config is None else config
    if not isinstance(config, QannConfig):
        raise TypeError(f"config must be a QannConfig, not {type(config).__name__}")
    data = digits.load(test_size=config.test_size, random_state=config.split_seed)
    x = digits.to_float(data.x_train)
    y = torch.from_numpy(np.array(data.y_train))
    with _deterministic():
        torch.manual_seed(config.seed)
        model = build(config)
        gen = torch.Generator().manual_seed(config.seed)
        weights = [p for n, p in model.named_parameters() if n.endswith(".weight")]
        others = [p for n, p in model.named_parameters() if not n.endswith(".weight")]
        opt = torch.optim.AdamW(
            [
                {"params": weights, "weight_decay": config.weight_decay},
                {"params": others, "weight_decay": 0.0},
            ],
            lr=config.learning_rate,
        )
        n = x.shape[0]
        steps_per_epoch = -(-n // config.batch_size)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(
            opt, T_max=config.epochs * steps_per_epoch
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


def accuracy(model: QannMLP, pixels: np.ndarray, labels: np.ndarray) -> float:
    """Float-QANN accuracy: arg-max of the output codes (first index on ties) against ``labels``."""
    from spikezip.sw.convert import evaluate_float

    pred = np.argmax(evaluate_float(model, pixels)[-1], axis=1)
    return float(np.mean(pred == np.asarray(labels)))


# -- cache ------------------------------------------------------------------------------------
def cache_dir() -> Path:
    """``$SPIKEZIP_CACHE``, or ``~/.cache/spikezip-hw`` when unset or empty."""
    return cache.cache_dir()


def cache_key(config: QannConfig) -> str:
    """Hex digest naming a trained model: configuration, torch version, :data:`CACHE_VERSION`."""
    return cache.cache_key("qann", config.to_dict(), CACHE_VERSION)


def cache_path(config: QannConfig, directory: str | os.PathLike | None = None) -> Path:
    """File that holds (or will hold) the model trained with ``config``."""
    return cache.cache_path("qann", cache_key(config), directory)


def load_or_train(
    config: QannConfig | None = None, *, directory: str | os.PathLike | None = None
) -> QannMLP:
    """The model trained with ``config``, from the cache (:mod:`sw.cache`) or trained and cached.

    Parameters
    ----------
    config : QannConfig, optional
        Hyper-parameters; the defaults if omitted.
    directory : path, optional
        Cache directory; :func:`sw.cache.cache_dir` if omitted. Created when missing.

    Returns
    -------
    QannMLP
        In eval mode.
    """
    config = QannConfig() if config is None else config
    if not isinstance(config, QannConfig):
        raise TypeError(f"config must be a QannConfig, not {type(config).__name__}")
    return cache.load_or_train(
        kind="qann",
        config=config.to_dict(),
        version=CACHE_VERSION,
        build=lambda: build(config),
        train=lambda: train(config),
        directory=directory,
    )
