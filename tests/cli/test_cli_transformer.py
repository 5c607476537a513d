"""``spikezip trace`` and ``compare`` on a transformer network file (dispatch on its kind)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from spikezip.cli import main
from spikezip.ir import Trace
from spikezip.ir.transformer import VisionTransformer
from spikezip.sw.vit.reference import integer_qann, simulate
from tests.sw.test_vit_reference import one_block_vit


@pytest.fixture
def files(tmp_path):
    vit = one_block_vit()
    vit.save(tmp_path / "vit.npz")
    np.save(tmp_path / "x.npy", np.array([[16, 3], [0, 0], [5, 9]]))
    return tmp_path


def run(*argv):
    return main([str(a) for a in argv])


def test_trace_of_a_transformer_then_compare(files, capsys):
    vit = VisionTransformer.load(files / "vit.npz")
    assert run("trace", files / "vit.npz", files / "x.npy", "-o", files / "g.npz", "--state") == 0
    out = capsys.readouterr().out
    assert f"3 samples, {len(vit.sites)} layers" in out and "energy/sample" in out
    tr = Trace.load(files / "g.npz")
    assert tr.layer_names == vit.site_names and tr.membranes is not None
    assert tr.network_digest == vit.digest()
    x = np.load(files / "x.npy")
    want = simulate(vit, x, record_state=True)
    for k in range(tr.depth):
        np.testing.assert_array_equal(tr.spikes[k], want.spikes[k])
        np.testing.assert_array_equal(tr.counts(k), integer_qann(vit, x).codes[k])
    assert run("compare", files / "g.npz", files / "g.npz", "--network", files / "vit.npz") == 0
    assert "identical: 3 samples" in capsys.readouterr().out


def test_compare_names_the_site_of_the_first_divergence(files, capsys):
    run("trace", files / "vit.npz", files / "x.npy", "-o", files / "g.npz")
    tr = Trace.load(files / "g.npz")
    k = tr.layer_names.index("blocks.0.attn")
    spikes = [s.copy() for s in tr.spikes]
    b, t, n = np.argwhere(spikes[k] != 0)[0]
    spikes[k][b, t, n] = 0
    Trace(
        network_digest=tr.network_digest,
        spikes=tuple(spikes),
        busy=tr.busy,
        steps=tr.steps,
        capped=tr.capped,
        layer_names=tr.layer_names,
    ).save(files / "hw.npz")
    capsys.readouterr()
    assert run("compare", files / "g.npz", files / "hw.npz") == 1
    out = capsys.readouterr().out
    assert f"sample {b}, layer {k} (blocks.0.attn), neuron {n}, time step {t}" in out


def test_transformer_errors_are_one_line(files, capsys):
    np.save(files / "wrong.npy", np.zeros((2, 3), dtype=int))
    assert run("trace", files / "vit.npz", files / "wrong.npy", "-o", files / "o.npz") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and r"shape [batch, 2]" in err
    assert (
        run("trace", files / "vit.npz", files / "x.npy", "-o", files / "o.npz", "--max-steps", "2")
        == 0
    )
    err = capsys.readouterr().err
    assert err.startswith("warning: ") and "max_steps=2" in err  # the cap is never silent


def test_report_of_a_transformer_is_its_latency(files, capsys):
    """``report --no-synth`` of a ViT: each image's latency alone and the images back to back
    from the exact ViT model, µs and images/s at ``--fmax``, lane utilization, SOPs, energy."""
    import json

    from spikezip.hw.model.vit_model import vit_schedule
    from spikezip.report import ViTReport
    from spikezip.sw.vit.energy import count_ops

    out = files / "rep"
    argv = ["report", files / "vit.npz", "--inputs", files / "x.npy", "--lanes", "2"]
    assert run(*argv, "--no-synth", "--fmax", "125", "-o", out) == 0
    printed = capsys.readouterr()
    assert "resources and fmax: not evaluated (--no-synth)" in printed.out
    assert "at 125 MHz (given, not measured)" in printed.out
    report = ViTReport.from_json(json.loads((out / "report.json").read_text()))
    assert ViTReport.from_json(report.to_json()) == report
    vit, x = VisionTransformer.load(files / "vit.npz"), np.load(files / "x.npy")
    tr = simulate(vit, x)
    lat = [
        int(vit_schedule(vit, x[b : b + 1], tr.select([b]), lanes=2).latency[0])
        for b in range(len(x))
    ]
    assert (report.latency.cycles_max, report.latency.cycles_min) == (max(lat), min(lat))
    assert report.latency.cycles_mean == pytest.approx(np.mean(lat))
    assert report.latency.us_max == pytest.approx(max(lat) / 125)
    whole = vit_schedule(vit, x, tr, lanes=2)
    assert report.back_to_back_cycles == pytest.approx(whole.total_cycles / 3)
    assert report.images_per_second == pytest.approx(125e6 * 3 / whole.total_cycles)
    linear = [ld for ld in whole.loads if ld.kind == "linear"]
    assert report.utilization["linear"] == pytest.approx(
        sum(ld.ops for ld in linear) / sum(ld.lanes * ld.accumulate for ld in linear)
    )
    assert report.back_to_back_samples == 3  # (3 samples: all of them)
    # --back-to-back N: the first N samples back to back (a ViT's default 3), the rest alone
    assert run(*argv, "--no-synth", "--back-to-back", "2", "-o", files / "rep2") == 0
    assert "back to back" in capsys.readouterr().out
    two = ViTReport.from_json(json.loads((files / "rep2" / "report.json").read_text()))
    first = vit_schedule(vit, x[:2], tr.select([0, 1]), lanes=2)
    assert two.back_to_back_samples == 2
    assert two.back_to_back_cycles == pytest.approx(first.total_cycles / 2)
    assert two.latency == dataclasses.replace(report.latency, us_mean=None, us_max=None)
    for bad in ("0", "-1", "x"):
        assert run(*argv, "--no-synth", "--back-to-back", bad, "-o", files / "rep3") == 2
        err = capsys.readouterr().err
        assert "--back-to-back" in err and err.count("\n") == 1, err
    assert not (files / "rep3").exists()
    assert report.utilization["linear lowest"] <= report.utilization["linear"] <= 1
    ops = count_ops(vit, tr, x)
    assert report.sops_per_image == pytest.approx(ops.sops.mean())
    assert report.energy_nj_per_image == pytest.approx(ops.energy_pj.mean() / 1000)
    assert report.point.label == "P=2" and report.samples == 3 and report.sites == len(vit.sites)
    assert report.synthesis is None and report.pnr is None and report.fifo_depths == {}
    assert run(*argv, "--fmax", "nan", "-o", out) == 2
    assert "--fmax must be a clock in MHz" in capsys.readouterr().err
    assert run(*argv, "--fmax", "100", "-o", out) == 2  # fmax comes from place and route
    assert "--fmax is the clock of a report without place and route" in capsys.readouterr().err


def test_report_and_sweep_take_fifo_depths_by_name(files, capsys):
    """``--fifo-depths NAME=N,…`` sets single FIFOs of a ViT: the report's latency is the exact
    model's with those FIFOs; bad forms, unknown names and an MLP get one line and exit 2."""
    import json

    from spikezip.hw.model.vit_model import vit_schedule
    from spikezip.hw.model.vit_sites import fifo_names
    from spikezip.report import ViTReport

    vit, x = VisionTransformer.load(files / "vit.npz"), np.load(files / "x.npy")
    names = fifo_names(vit)
    depths = {names[0]: 1, names[-1]: 2}
    text = ",".join(f"{n}={d}" for n, d in depths.items())
    argv = ["report", files / "vit.npz", "--inputs", files / "x.npy", "--no-synth"]
    assert run(*argv, "--fifo-depths", text, "-o", files / "rep") == 0
    capsys.readouterr()
    report = ViTReport.from_json(json.loads((files / "rep" / "report.json").read_text()))
    assert report.fifo_depths == depths
    tr = simulate(vit, x)
    want = vit_schedule(vit, x, tr, lanes=8, fifo_depths=depths).total_cycles / 3
    assert report.back_to_back_cycles == pytest.approx(want)
    for bad, message in [
        ("nope_fifo=3", "--fifo-depths: names no FIFO of this ViT: nope_fifo"),
        (f"{names[0]}=0", "--fifo-depths must be NAME=N[,NAME=N…]"),
        (f"{names[0]}=2,{names[0]}=3", "each FIFO once"),
        ("=4", "--fifo-depths must be"),
    ]:
        assert run(*argv, "--fifo-depths", bad, "-o", files / "rep2") == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    # --fifo-depth is an MLP's (every inter-layer FIFO); a ViT's FIFOs go by name
    sweep = ["sweep", files / "vit.npz", "--inputs", files / "x.npy", "--no-synth", "-q"]
    for cmd in (argv, ["generate", files / "vit.npz"], sweep):
        assert run(*cmd, "--fifo-depth", "4", "-o", files / "rep3") == 2
        err = capsys.readouterr().err
        assert "--fifo-depth sets an MLP's inter-layer FIFOs; a ViT's FIFOs take" in err, err
        assert err.count("\n") == 1
    sweep = ["sweep", files / "vit.npz", "--inputs", files / "x.npy", "--no-synth", "-q"]
    assert run(*sweep, "--lanes", "1,2", "--fifo-depths", text, "-o", files / "sw") == 0
    record = json.loads((files / "sw" / "sweep.json").read_text())
    results = [ViTReport.from_json(r) for r in record["results"]]
    assert [r.point.label for r in results] == ["P=1", "P=2"]
    assert all(r.fifo_depths == depths for r in results)
    assert (files / "sw" / "sweep.png").stat().st_size > 0
    for r in results:
        lanes = int(r.point.lanes)
        sched = vit_schedule(vit, x, tr, lanes=lanes, fifo_depths=depths)
        assert r.back_to_back_cycles == pytest.approx(sched.total_cycles / 3)


def test_size_knobs_reach_the_report_and_the_design(files, capsys):
    """``--product-lanes`` and ``--layer-norm-units``: the report's cycles are the exact model's
    of that smaller design, ``generate`` builds it (its manifest says so), an MLP refuses them."""
    import json

    from spikezip.hw.model.vit_model import vit_schedule
    from spikezip.report import ViTReport

    vit, x = VisionTransformer.load(files / "vit.npz"), np.load(files / "x.npy")
    knobs = ["--product-lanes", "1", "--layer-norm-units", "1"]
    argv = ["report", files / "vit.npz", "--inputs", files / "x.npy", "--no-synth", *knobs]
    assert run(*argv, "-o", files / "rep") == 0
    assert "product lanes 1, LayerNorm units 1" in capsys.readouterr().out
    report = ViTReport.from_json(json.loads((files / "rep" / "report.json").read_text()))
    assert (report.product_lanes, report.layer_norm_units) == (1, 1)
    tr = simulate(vit, x)
    small = vit_schedule(vit, x, tr, lanes=8, product_lanes=1, layer_norm_units=1)
    assert report.back_to_back_cycles == pytest.approx(small.total_cycles / 3)
    assert small.total_cycles > vit_schedule(vit, x, tr, lanes=8).total_cycles
    assert run("generate", files / "vit.npz", "-o", files / "g", *knobs) == 0
    capsys.readouterr()
    manifest = json.loads((files / "g" / "manifest.json").read_text())
    assert manifest["design"]["product_lanes"] == 1
    assert manifest["design"]["layer_norm_units"] == 1
    net = files / "mlp.npz"
    from tests.sim.test_network import random_network

    random_network(3, depth=2, max_width=4).save(net)
    for option in ("--product-lanes", "--layer-norm-units"):
        assert run("generate", net, "-o", files / "g2", option, "2") == 2
        err = capsys.readouterr().err
        assert f"{option} sets a ViT's cores; an MLP has none" in err and err.count("\n") == 1
    assert run(*argv[:4], "--product-lanes", "0") == 2
    assert "--product-lanes must be an integer ≥ 1, not '0'" in capsys.readouterr().err


def test_report_of_a_vit_that_does_not_fit_keeps_its_resources(files, capsys, monkeypatch):
    """nextpnr failing to place (the digits ViT on the 85k: block RAMs) is a result, not a
    crash: the report keeps the synthesis's counts and names the cell type that did not fit."""
    import json

    from spikezip.hw.flow import synth as flow
    from spikezip.report import ViTReport

    counts = {"lut": 900, "carry": 10, "ff": 700, "bram": 300, "dsp": 4, "lutram": 0}
    site = {"lut": 500, "carry": 5, "ff": 400, "bram": 200, "dsp": 1, "lutram": 0}

    def no_fit(component, **kw):
        from amaranth.hdl import Fragment

        Fragment.get(component, None)  # it elaborates (no UnusedElaboratable warning at exit)
        assert kw["device_args"][0] == "--85k" and "harness.dut.*" in kw["keep"]
        result = flow.SynthResult(
            target="ecp5",
            top="harness",
            total=counts,
            modules={"harness.dut": counts, "harness.dut.site_embed": site},
            cells={},
            seconds=1.0,
            stat={},
        )
        raise flow.PlaceRouteError(messages[0], synth=result, device="85k")

    messages = [
        "nextpnr-ecp5 failed (exit 125): ERROR: Unable to place cell 'dut.x', no BELs "
        "remaining to implement cell type 'DP16KD'"
    ]

    monkeypatch.setattr(flow, "place_and_route", no_fit)
    monkeypatch.setattr("spikezip.cli._tools_check", lambda target: None)
    out = files / "rep"
    argv = ["report", files / "vit.npz", "--inputs", files / "x.npy", "-q", "-o", out]
    assert run(*argv) == 0
    printed = capsys.readouterr().out
    assert "does not fit the ecp5 85k: more DP16KD than the device has" in printed
    report = ViTReport.from_json(json.loads((out / "report.json").read_text()))
    assert report.pnr is None and report.synthesis.total.bram == 300
    assert report.synthesis.cores["site_embed"].bram == 200
    assert report.synthesis.kinds["other"].bram == 100  # the top's own, beyond its cores
    assert report.fmax_mhz is None and report.latency.us_mean is None
    # a nextpnr that failed otherwise (here: stopped by a signal) is not called a misfit
    messages[0] = "nextpnr-ecp5 failed (exit -15): "
    assert run(*argv[:-1], files / "rep2") == 0
    printed = capsys.readouterr().out
    assert "place and route: failed on the ecp5 85k: nextpnr-ecp5 failed (exit -15)" in printed
    assert "does not fit" not in printed
