"""The design parameters record (``hw.model.design``) and the typed manifest
(``hw.flow.manifest``): validated once, named errors, JSON round trips."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from amaranth.hdl import Fragment

from spikezip.hw.cores.network_core import NetworkCore
from spikezip.hw.flow.generate import write_design
from spikezip.hw.flow.manifest import MANIFEST, Manifest
from spikezip.hw.model.cycle_model import PIPELINES, Pipeline
from spikezip.hw.model.design import DEFAULT_LANES, DesignParams, Storage
from tests.sim.test_network import random_network


@pytest.fixture(scope="module")
def net():
    return random_network(4, depth=3, max_width=6)


def test_of_resolves_every_knob_once(net):
    widths = [layer.n_out for layer in net.layers]
    p = DesignParams.of(net, lanes=max(widths), pipeline=3, storage="memory", fifo_depth=9)
    assert p.lanes == tuple(widths)  # one value, capped per layer
    assert p.pipeline == Pipeline.preset(3) and p.depth == 3
    assert p.storage is Storage.MEMORY and p.fifo_depth == 9
    default = DesignParams.of(net)
    assert default.lanes == tuple(min(DEFAULT_LANES, max(widths), w) for w in widths)
    assert default.depth == 1 and default.storage is None and default.fifo_depth is None


@pytest.mark.parametrize(
    ("knobs", "error", "message"),
    [
        ({"lanes": 0}, ValueError, r"lanes must lie in 1\.\.\d+ \(the widest layer"),
        ({"lanes": (1, 1)}, ValueError, "lanes must hold 3 values"),
        ({"lanes": (1, 1, 99)}, ValueError, r"lanes\[2\] of layer .* must lie in 1\.\.\d+"),
        ({"lanes": True}, TypeError, "lanes must be an integer"),
        ({"pipeline": 4}, ValueError, "pipeline must be one of 0, 1, 2, 3, not 4"),
        ({"storage": "flash"}, ValueError, "storage must be one of 'registers', 'memory'"),
        ({"fifo_depth": 0}, ValueError, "fifo_depth must be a positive integer, not 0"),
        ({"fifo_depths": {"a_fifo": 0}}, ValueError, r"fifo_depths\['a_fifo'\] must be a pos"),
        ({"fifo_depths": 5}, ValueError, "fifo_depths must map FIFO names to depths, not 5"),
        ({"fifo_depths": {"": 3}}, ValueError, "a FIFO name must be a non-empty string"),
        ({"fifo_depths": {"a_fifo": 3}}, ValueError, "an MLP's FIFOs take fifo_depth"),
        ({"product_lanes": 4}, ValueError, "product_lanes sets a ViT's cores; an MLP has none"),
        ({"layer_norm_units": 2}, ValueError, "layer_norm_units sets a ViT's cores; an MLP has"),
    ],
)
def test_bad_knobs_name_the_field(net, knobs, error, message):
    with pytest.raises(error, match=message):
        DesignParams.of(net, **knobs)


def test_coerce_takes_a_record_or_knobs_not_both(net):
    p = DesignParams.of(net, lanes=2)
    assert DesignParams.coerce(net, p) is p
    assert DesignParams.coerce(net, None, lanes=2, pipeline=None) == p
    with pytest.raises(TypeError, match="give params or lanes, not both"):
        DesignParams.coerce(net, p, lanes=2)
    with pytest.raises(TypeError, match="params must be a DesignParams"):
        DesignParams.coerce(net, 2)
    other = random_network(5, depth=2, max_width=6)
    with pytest.raises(ValueError, match="lanes must hold 2 values"):
        DesignParams.coerce(other, p)  # a record for another network is refused


def test_key_and_json(net):
    p = DesignParams.of(net, lanes=2)
    assert p.key == "p2-d1"
    assert DesignParams.of(net, lanes=(1, 2, 1), pipeline=3).key == "p1-2-1-d3"
    odd = replace(p, pipeline=replace(Pipeline.preset(2), min_distance=3, dsp_registers=False))
    assert odd.depth is None and odd.key != p.key and "m3" in odd.key
    full = DesignParams.of(net, lanes=2, storage="registers", fifo_depth=7)
    assert full.key == "p2-d1-registers-f7"
    named = replace(p, fifo_depths={"b_fifo": 3, "a_fifo": 9})  # a ViT's FIFOs, by name
    assert named.fifo_depths == (("a_fifo", 9), ("b_fifo", 3))
    assert named.fifo_depth_of("b_fifo", 7) == 3 and named.fifo_depth_of("c_fifo", 7) == 7
    assert named.key.startswith("p2-d1-F") and named.key != replace(named, fifo_depths={}).key
    sized = replace(p, product_lanes=4, layer_norm_units=8)  # a ViT's size knobs
    assert sized.key == "p2-d1-x4-n8"
    old = {k: v for k, v in p.to_json().items() if k not in ("product_lanes", "layer_norm_units")}
    assert DesignParams.from_json(old) == p  # a manifest written before the knobs existed
    for q in (p, odd, full, named, sized):
        assert DesignParams.from_json(json.loads(json.dumps(q.to_json()))) == q
    for name, bad in (("product_lanes", 0), ("layer_norm_units", True), ("product_lanes", 2.5)):
        with pytest.raises(ValueError, match=f"{name} must be a positive integer, not {bad!r}"):
            replace(p, **{name: bad})
    with pytest.raises(ValueError, match="not version"):
        DesignParams.from_json({"version": 99})
    assert {DesignParams.of(net, lanes=d, pipeline=d).depth for d in PIPELINES if d} == {1, 2, 3}


def test_network_core_takes_the_record(net):
    p = DesignParams.of(net, lanes=2, pipeline=2, fifo_depth=5)
    core = NetworkCore(network=net, params=p)
    assert core.params is p and core.lanes == p.lanes and core.pipeline == 2
    assert set(core.fifo_depths()) == {5}
    loose = NetworkCore(network=net, lanes=2, pipeline=2, fifo_depth=5)
    assert loose.params == p
    for c in (core, loose):
        Fragment.get(c, None)  # elaborated: a component built and never used warns
    with pytest.raises(TypeError, match="not both"):
        NetworkCore(network=net, params=p, pipeline=1)


def test_manifest_round_trip_and_named_errors(net, tmp_path):
    m = write_design(net, tmp_path, lanes=2, pipeline=3)
    assert isinstance(m, Manifest) and m.design == DesignParams.of(net, lanes=2, pipeline=3)
    assert Manifest.load(tmp_path) == m
    raw = json.loads((tmp_path / MANIFEST).read_text())
    assert raw["parameters"]["lanes"] == list(m.lanes) and raw["version"] == 2
    for mutate, message in [
        (lambda d: d.pop("toplevel"), "toplevel is missing"),
        (lambda d: d["layers"][1].pop("words"), r"layers\[1\]\.words is missing"),
        (
            lambda d: d["network"].update(n_inputs=None) or d["network"].pop("digest"),
            "network.digest is missing",
        ),
        (lambda d: d.update(version=1), "version 1, this generator reads 2"),
        (lambda d: d["design"].update(lanes=[0]), "lanes must be positive"),
        (lambda d: d["parameters"].update(probe="yes"), "parameters.probe has the wrong type"),
    ]:
        d = json.loads(json.dumps(raw))
        mutate(d)
        (tmp_path / MANIFEST).write_text(json.dumps(d))
        with pytest.raises(ValueError, match=message):
            Manifest.load(tmp_path)
    (tmp_path / MANIFEST).write_text("{")
    with pytest.raises(ValueError, match="manifest: not JSON"):
        Manifest.load(tmp_path)
