"""The exact cycle model of the whole ViT top (``hw.model.vit_model``) against the RTL.

Tier 1: parameter checks; the composition without backpressure equals each core's own model.
Tier 2: ``ViTCore`` in Amaranth's simulator on random ViTs, images, lanes, pipeline presets,
product lanes, LayerNorm units and FIFO depths (down to one entry, where every FIFO makes its
producer wait): every output beat of every site (spikes and markers), every inference's first
input beat and its ``done``, in the model's cycle. ``-m slow``: more and larger ViTs, and the
trained digits ViT on 3 images (the RTL's measured cycles).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spikezip.hw.cores.vit_core import ViTCore
from spikezip.hw.model import cycle_model
from spikezip.hw.model.vit_model import fifo_latency, vit_schedule
from spikezip.hw.model.vit_sites import input_steps
from spikezip.sw.vit.reference import run
from tests.hw.test_vit_core import run_vit
from tests.sw.vit_strategies import build_vit, images, transformers


def check_model(vit, x, **knobs) -> object:
    """The RTL's cycle stamps == the model's, beat for beat; returns the schedule."""
    core = ViTCore(vit=vit, probe=True, **knobs)
    hw, accepted, done_at = run_vit(core, x)
    model = vit_schedule(vit, x, run(vit, x).trace, **knobs)
    assert model.exact
    for k, site in enumerate(vit.sites):
        for b in range(x.shape[0]):
            got = [(tuple(int(c) for c in s.event_cycles), int(s.cycle)) for s in hw[k][b]]
            exp = list(model.site_steps(site.name, b))
            assert len(got) == len(exp), (site.name, b, "steps")
            for t, (g, e) in enumerate(zip(got, exp, strict=True)):
                assert g == e, (site.name, b, t, g, e)
    counts = [sum(s.n_events + 1 for s in inf) for inf in input_steps(vit, x)]
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(int)
    assert model.first_input.tolist() == [accepted[s] for s in starts]
    assert model.done.tolist() == done_at
    return model


# -- tier 1 ---------------------------------------------------------------------------------------


@settings(max_examples=1, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_parameters_are_checked(data) -> None:
    vit = data.draw(transformers(max_dim=4, max_tokens=3, max_depth=1))
    x = data.draw(images(vit, max_batch=2))
    trace = run(vit, x).trace
    with pytest.raises(TypeError, match="vit must be a VisionTransformer"):
        vit_schedule(None, x, trace)
    with pytest.raises(TypeError, match=r"trace must be an ir\.Trace"):
        vit_schedule(vit, x, None)
    with pytest.raises(ValueError, match="product_lanes must be a positive integer"):
        vit_schedule(vit, x, trace, product_lanes=0)
    with pytest.raises(ValueError, match="max_passes must be a positive integer"):
        vit_schedule(vit, x, trace, max_passes=0)
    with pytest.raises(ValueError, match="trace must hold the 3 inputs' samples"):
        vit_schedule(vit, np.concatenate([x, x, x])[:3], trace)
    with pytest.raises(ValueError, match="lanes must hold"):
        vit_schedule(vit, x, trace, lanes=(1, 2))
    other = build_vit(
        np.random.default_rng(5),
        patches=1,
        patch_size=1,
        n_inputs=1,
        dim=1,
        heads=1,
        hidden=1,
        depth=1,
    )
    with pytest.raises(ValueError, match="trace must come from this vit"):
        vit_schedule(other, np.zeros((x.shape[0], 1), dtype=np.int64), trace)
    sched = vit_schedule(vit, x, trace, fifo_depth=1 << 20)
    with pytest.raises(ValueError, match="name must be one of the sites"):
        sched.site_steps("nope", 0)
    assert not sched.backpressure and sched.passes == 1


def test_fifo_latency() -> None:
    """``SyncFIFOBuffered``: memory then output register, a single register at one entry."""
    assert fifo_latency(1) == 1
    assert fifo_latency(2) == fifo_latency(546) == cycle_model.FIFO_LATENCY == 2


@settings(max_examples=3, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_sites_without_backpressure_are_their_own_model(data) -> None:
    """With FIFOs that never fill, every site's beats are its layer model's
    (:func:`hw.model.cycle_model.schedule`) on its input as it arrives, and the loads add up."""
    vit = data.draw(transformers(max_dim=4, max_tokens=3, max_depth=1))
    x = data.draw(images(vit, max_batch=2))
    trace = run(vit, x).trace
    sched = vit_schedule(vit, x, trace, fifo_depth=1 << 20, lanes=data.draw(st.integers(1, 4)))
    assert sched.passes == 1 and all(f.waited == 0 for f in sched.fifos)
    assert all(f.need <= 1 << 20 for f in sched.fifos)
    first = sched.sites[vit.sites[0].name]
    assert sched.first_input[0] == 0 == first.taken[0][0]
    assert (sched.latency >= 1).all() and sched.total_cycles == sched.done[-1] + 1
    for load in sched.loads:
        assert 0 <= load.work and load.cycles == sched.total_cycles
        if load.kind in ("linear", "product"):
            assert 0.0 <= load.accumulate_utilization <= 1.0


# -- tier 2: against Amaranth's simulator ---------------------------------------------------------


def _knobs(data, max_lanes: int, depths) -> dict:
    return {
        "lanes": data.draw(st.integers(1, max_lanes)),
        "pipeline": data.draw(st.sampled_from([0, 1, 2, 3])),
        "fifo_depth": data.draw(st.sampled_from(depths)),
        "product_lanes": data.draw(st.one_of(st.none(), st.integers(1, 5))),
        "layer_norm_units": data.draw(st.one_of(st.none(), st.integers(1, 3))),
    }


@settings(max_examples=2, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_random_vits_cycle_exact(data) -> None:
    vit = data.draw(transformers(max_dim=4, max_tokens=3, max_depth=1))
    x = data.draw(images(vit, max_batch=2))
    check_model(vit, x, **_knobs(data, 4, [None, 1, 2, 3]))


@pytest.mark.slow
@settings(max_examples=24, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_random_vits_cycle_exact_more(data) -> None:
    vit = data.draw(transformers(max_dim=8, max_tokens=4, max_depth=2))
    x = data.draw(images(vit, max_batch=3))
    check_model(vit, x, **_knobs(data, 8, [None, 1, 2, 3, 5, 64]))


def test_one_entry_fifos_backpressure() -> None:
    """One-entry FIFOs everywhere: producers wait on them, and the model still has every cycle."""
    rng = np.random.default_rng(11)
    vit = build_vit(rng, patches=2, patch_size=2, n_inputs=4, dim=4, heads=2, hidden=3, depth=1)
    x = rng.integers(*vit.input_bounds, (1, vit.n_inputs), endpoint=True)  # (batches: random)
    model = check_model(vit, x, lanes=2, pipeline=1, fifo_depth=1)
    assert model.backpressure and model.passes > 1
    assert any(f.waited for f in model.fifos)


def test_small_configuration_cycle_exact() -> None:
    """The size knobs (``DesignParams.product_lanes``, ``layer_norm_units``) at their smallest:
    one rounding unit per LayerNorm, one product lane; the design is slower and still exact."""
    rng = np.random.default_rng(23)
    vit = build_vit(rng, patches=2, patch_size=2, n_inputs=4, dim=4, heads=2, hidden=3, depth=1)
    x = rng.integers(*vit.input_bounds, (1, vit.n_inputs), endpoint=True)
    full = check_model(vit, x, lanes=2, pipeline=1)
    small = check_model(vit, x, lanes=2, pipeline=1, product_lanes=1, layer_norm_units=1)
    assert small.total_cycles > full.total_cycles


@pytest.mark.slow
def test_digits_vit_three_images(monkeypatch) -> None:
    """The trained digits ViT, 3 test images back to back, lanes 8, pipeline 1, default FIFOs
    and products: the streaming site cores (``vit_sites.STREAMING_KINDS``), LayerNorms
    (``STREAM_LAYER_NORM``) and residual stages (``STREAM_RESIDUAL``) take the first image's
    latency down by at least a tenth against the plain cores (session 12: 68,993 → 55,625 on one
    machine's trained model; session 15, the stages too: 63,513 → 46,851; the model's cycles
    are the RTL's: tests/sim/test_vit.py compares them in Verilator), and the total too."""
    from spikezip.hw.model import vit_sites
    from spikezip.sw import digits
    from spikezip.sw.vit import model as vit_model
    from spikezip.sw.vit.convert import to_transformer

    vit = to_transformer(vit_model.load_or_train(vit_model.VitConfig()), name="digits-vit")
    x = digits.load().x_test[:3]
    golden = run(vit, x).trace
    streaming = vit_schedule(vit, x, golden, lanes=8, pipeline=1)
    monkeypatch.setattr(vit_sites, "STREAMING_KINDS", frozenset())  # every core plain
    monkeypatch.setattr(vit_sites, "STREAM_LAYER_NORM", False)
    monkeypatch.setattr(vit_sites, "STREAM_RESIDUAL", False)
    plain = vit_schedule(vit, x, golden, lanes=8, pipeline=1)
    assert streaming.exact and plain.exact
    assert int(streaming.latency[0]) < 0.9 * int(plain.latency[0])
    assert streaming.total_cycles < plain.total_cycles


def test_fifo_names_and_depths_agree() -> None:
    """``fifo_names`` is what ``ViTCore`` builds and what the model checks, with equal depths:
    the default plan (skip paths deep, the rest shallow) and single FIFOs set by name."""
    from amaranth.hdl import Fragment

    from spikezip.hw.model.vit_sites import SHALLOW_FIFO, default_fifo_depths, fifo_names

    rng = np.random.default_rng(5)
    vit = build_vit(rng, patches=2, patch_size=2, n_inputs=4, dim=4, heads=2, hidden=3, depth=2)
    x = rng.integers(*vit.input_bounds, (1, vit.n_inputs), endpoint=True)
    names = fifo_names(vit)
    plan = default_fifo_depths(vit)
    assert set(plan) == set(names) and len(set(names)) == len(names)
    deep = {n for n, d in plan.items() if d > SHALLOW_FIFO}
    assert {"stage_blocks_0_norm1_fifo1", "blocks_0_v_fifo", "blocks_1_scores_fifo"} <= deep
    assert "stage_norm_fifo" in deep and "blocks_0_q_fifo" not in deep
    for knobs in ({}, {"fifo_depths": {"blocks_0_q_fifo": 1, "blocks_1_v_fifo": 3}}):
        core = ViTCore(vit=vit, lanes=2, **knobs)
        Fragment.get(core, None)  # elaborate (4x cheaper than a conversion)
        assert core.built_fifo_names() == names
        expect = {**plan, **knobs.get("fifo_depths", {})}
        assert core.fifo_depths() == tuple(expect[n] for n in names)
    # the model, with the plan and the two set by name: the same depths under the same names
    model = vit_schedule(vit, x, run(vit, x).trace, core.params)
    assert {f.name: f.depth for f in model.fifos} == expect
    with pytest.raises(ValueError, match="fifo_depths names no FIFO of this ViT: nope_fifo"):
        ViTCore(vit=vit, lanes=2, fifo_depths={"nope_fifo": 4})


def test_mixed_fifo_depths_cycle_exact() -> None:
    """Single FIFOs set by name (one-entry on a path, deep elsewhere): still every cycle."""
    rng = np.random.default_rng(12)
    vit = build_vit(rng, patches=2, patch_size=2, n_inputs=4, dim=4, heads=2, hidden=3, depth=1)
    x = rng.integers(*vit.input_bounds, (2, vit.n_inputs), endpoint=True)
    mixed = {"blocks_0_k_fifo": 1, "blocks_0_scores_fifo": 2, "stage_blocks_0_norm1_fifo1": 1}
    check_model(vit, x, lanes=2, pipeline=1, fifo_depths=mixed)
