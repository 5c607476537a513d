"""``sim.simulate.design``: a cached design is reused only for the same parameters, pipeline depth
included; ``hw.flow.generate.write_design`` into a reused folder removes what the old design wrote
and the new one does not (no simulator needed: they only generate Verilog)."""

from __future__ import annotations

import json
import shutil

import pytest

from spikezip.hw.flow.generate import MANIFEST, Manifest, verify_design, write_design
from spikezip.sim.simulate import design
from tests.sim.test_network import random_network


def test_cached_design_of_another_pipeline_is_not_reused(tmp_path):
    net = random_network(1, depth=2, max_width=6)
    d1 = design(net, tmp_path, lanes=2, pipeline=1)
    stamp = d1.verilog.stat().st_mtime_ns
    assert design(net, tmp_path, lanes=2, pipeline=1).directory == d1.directory
    assert d1.verilog.stat().st_mtime_ns == stamp  # same parameters: reused, not regenerated

    d2 = design(net, tmp_path, lanes=2, pipeline=2)
    assert d2.directory != d1.directory
    assert d2.manifest.pipeline == 2
    assert [layer.pipeline for layer in d2.manifest.layers] == [2, 2]
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


def test_generate_into_a_reused_folder_removes_only_stale_design_files(tmp_path):
    deep = random_network(2, depth=3, max_width=5)
    shallow = random_network(3, depth=2, max_width=5)
    old = write_design(deep, tmp_path, lanes=1, toplevel="old_top")
    assert sorted(old.files) == [f"layer{k}.weights.hex" for k in range(3)] + ["old_top.v"]
    assert verify_design(tmp_path, old) is None
    (tmp_path / "notes.txt").write_text("mine")  # listed by no manifest: left alone
    (tmp_path / "layer9.weights.hex").write_text("also mine")
    new = write_design(shallow, tmp_path, lanes=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "layer0.weights.hex",
        "layer1.weights.hex",
        "layer9.weights.hex",
        MANIFEST,
        "notes.txt",
        "spikezip_net.v",
    ]
    assert verify_design(tmp_path, new) is None
    assert json.loads((tmp_path / MANIFEST).read_text())["files"] == new.files
    assert Manifest.load(tmp_path) == new  # the typed record survives its file

    # a manifest naming files outside the folder (or itself) removes nothing there
    outside = tmp_path.parent / f"{tmp_path.name}-outside.txt"
    outside.write_text("keep")
    hostile = dict(
        new.to_json(), files={f"../{outside.name}": "0", MANIFEST: "0"}, verilog="../x.v"
    )
    (tmp_path / MANIFEST).write_text(json.dumps(hostile))
    write_design(shallow, tmp_path, lanes=1)
    assert outside.read_text() == "keep"
    assert (tmp_path / MANIFEST).is_file()

    # a folder with files but no manifest is simply written into
    other = tmp_path.parent / f"{tmp_path.name}-plain"
    other.mkdir()
    (other / "layer5.weights.hex").write_text("x")
    write_design(shallow, other, lanes=1)
    assert (other / "layer5.weights.hex").read_text() == "x"
