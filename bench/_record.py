"""Shared helper for benchmarks: print a table and record results as JSON under build/bench/."""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

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
    fd, tmp = tempfile.mkstemp(dir=OUT, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(payload, f, indent=2)
    os.replace(tmp, path)
    return path
