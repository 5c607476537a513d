"""Shared helper for benchmarks: print a table and record results as JSON under build/bench/."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any

from spikezip.ir._io import atomic_write_text

OUT = Path(__file__).resolve().parent.parent / "build" / "bench"


def record(name: str, results: dict[str, Any]) -> Path:
    """Write ``results`` (plus machine facts) to ``build/bench/<name>.json`` atomically."""
    OUT.mkdir(parents=True, exist_ok=True)
    payload = {
        "benchmark": name,
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
        **results,
    }
    path = OUT / f"{name}.json"
    atomic_write_text(path, json.dumps(payload, indent=2))
    return path
