"""``sim.network.design``: a cached design is reused only for the same parameters, pipeline depth
included (no simulator needed: it only generates Verilog)."""

from __future__ import annotations

import json
import shutil

import pytest

from hw.generate import MANIFEST
from sim.network import design
from tests.sim.test_network import random_network


def test_cached_design_of_another_pipeline_is_not_reused(tmp_path):
    net = random_network(1, depth=2, max_width=6)
    d1 = design(net, tmp_path, lanes=2, pipeline=1)
    stamp = d1.verilog.stat().st_mtime_ns
    assert design(net, tmp_path, lanes=2, pipeline=1).directory == d1.directory
    assert d1.verilog.stat().st_mtime_ns == stamp  # same parameters: reused, not regenerated

    d2 = design(net, tmp_path, lanes=2, pipeline=2)
    assert d2.directory != d1.directory
    assert d2.manifest["parameters"]["pipeline"] == 2
    assert [layer["pipeline"] for layer in d2.manifest["layers"]] == [2, 2]
    verilog2 = d2.verilog.read_text()
    assert verilog2 != d1.verilog.read_text()
    assert d1.verilog.stat().st_mtime_ns == stamp  # the pipeline-1 design is left alone

    # a pipeline-1 design where the pipeline-2 one belongs (its manifest says 1) is regenerated
    shutil.rmtree(d2.directory)
    shutil.copytree(d1.directory, d2.directory)
    again = design(net, tmp_path, lanes=2, pipeline=2)
    assert again.directory == d2.directory
    assert json.loads((d2.directory / MANIFEST).read_text())["parameters"]["pipeline"] == 2
    assert again.verilog.read_text() == verilog2

    with pytest.raises(ValueError, match="pipeline must be one of"):
        design(net, tmp_path, lanes=2, pipeline=-1)
