"""Every package under ir/, hw/, sw/, sim/ installs as ``spikezip.*``: pyproject.toml lists it
(a subpackage missing from the list imports from a checkout with PYTHONPATH, not an install)."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_package_is_listed() -> None:
    setup = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    dirs = {name: Path(path) for name, path in setup["package-dir"].items()}
    assert set(setup["packages"]) == set(dirs)
    found = {"spikezip"}
    for top in ("ir", "hw", "sw", "sim"):
        for init in sorted((ROOT / top).rglob("__init__.py")):
            rel = init.parent.relative_to(ROOT)
            found.add("spikezip." + ".".join(rel.parts))
            assert dirs.get("spikezip." + ".".join(rel.parts)) == rel
    assert found == set(dirs)
