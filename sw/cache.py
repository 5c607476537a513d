"""On-disk cache of trained models: keyed by configuration and torch version, written atomically.

Used by :mod:`sw.qann` and :mod:`sw.vit.model`. A file that cannot be read (corrupt, another format,
a different key) is retrained and replaced: it is a cache, never the only copy of anything.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch

from spikezip.ir._io import atomic_write

__all__ = ["cache_dir", "cache_key", "cache_path", "load_or_train"]

M = TypeVar("M", bound=torch.nn.Module)


def cache_dir() -> Path:
    """``$SPIKEZIP_CACHE``, or ``~/.cache/spikezip-hw`` when unset or empty."""
    env = os.environ.get("SPIKEZIP_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "spikezip-hw"


def cache_key(kind: str, config: dict[str, Any], version: int) -> str:
    """Hex digest naming a trained model: kind, configuration, torch version, cache version."""
    blob = json.dumps(
        {
            "model": kind,
            "config": config,
            "torch": str(torch.__version__),
            "cache_version": version,
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def cache_path(kind: str, key: str, directory: str | os.PathLike | None = None) -> Path:
    """File that holds (or will hold) the model named ``key``."""
    base = cache_dir() if directory is None else Path(directory)
    return base / f"{kind}-{key}.pt"


def _load(path: Path, key: str, build: Callable[[], M]) -> M | None:
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        if blob.get("key") != key:
            return None
        with torch.random.fork_rng(devices=[]):
            model = build()
        model.load_state_dict(blob["state_dict"])
    except Exception:  # a cache: whatever cannot be read is retrained and replaced
        return None
    model.eval()
    return model


def load_or_train(
    *,
    kind: str,
    config: dict[str, Any],
    version: int,
    build: Callable[[], M],
    train: Callable[[], M],
    directory: str | os.PathLike | None = None,
) -> M:
    """The cached model of ``kind``/``config``, or ``train()`` it now and cache it atomically."""
    key = cache_key(kind, config, version)
    path = cache_path(kind, key, directory)
    if path.exists():
        model = _load(path, key, build)
        if model is not None:
            return model
    model = train()
    path.parent.mkdir(parents=True, exist_ok=True)
    blob = {
        "key": key,
        "config": json.dumps(config, sort_keys=True),
        "torch": str(torch.__version__),
        "state_dict": model.state_dict(),
    }
    with atomic_write(path) as f:
        torch.save(blob, f)
        f.flush()
        os.fsync(f.fileno())
    return model
