"""The whole ViT top (``hw.cores.vit_core.ViTCore``) in Amaranth's simulator (tier 2).

Random ViTs and images, random lanes, pipeline presets and FIFO depths (down to 1 entry: the
graph must not deadlock at any depth): every site's spikes, every step, equal the reference's;
the cumulative busy flags (the OR of the site cores' marker flags in execution order) equal the
reference's; every sample ends in the reference's step count; several inferences back to back.
"""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.sim import Simulator
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spikezip.hw.cores.layouts import event_layout
from spikezip.hw.cores.network_core import probe_layout
from spikezip.hw.cores.vit_core import Broadcast, ViTCore
from spikezip.hw.model.vit_sites import input_steps
from spikezip.sim.tb import kit
from spikezip.sw.vit.reference import run
from tests.sw.vit_strategies import images, transformers


def run_vit(core: ViTCore, x: np.ndarray, *, limit: int = 400_000):
    """Every sample back to back, input always valid, output always ready: per site its decoded
    steps per sample, the cycle every input beat was accepted, and the cycles ``done`` pulsed."""
    return run_graph(core, input_steps(core.vit, x), limit=limit)


def run_graph(core, samples: list, *, limit: int = 400_000):
    """:func:`run_vit` for any site-graph top (``hw.cores.site_graph.SiteGraph``) fed with
    ``samples``: per sample, the first site's input steps."""
    fmt_in = core.input_format
    words = [w for inf in samples for s in inf for w in s.words(fmt_in)]
    fields = {n: (o, w) for n, o, w in probe_layout(core.formats)}
    rec: list[int] = []
    accepted: list[int] = []
    done_at: list[int] = []
    batch = len(samples)

    async def bench(ctx):
        ptr, cycle = 0, 0
        ctx.set(core.o.ready, 1)
        while len(done_at) < batch and cycle < limit:
            ctx.set(core.i.valid, ptr < len(words))
            ctx.set(core.i.payload.as_value(), words[min(ptr, len(words) - 1)])
            rec.append(ctx.get(core.probe))
            if ptr < len(words) and ctx.get(core.i.ready):
                accepted.append(cycle)
                ptr += 1
            if ctx.get(core.done):
                done_at.append(cycle)
            await ctx.tick()
            cycle += 1

    sim = Simulator(core)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    n_sites = len(core.formats)
    out = []
    for k in range(n_sites):
        fo, _ = fields[f"fire{k}"] if k < n_sites - 1 else fields["out_valid"]
        bo, bw = fields[f"beat{k}"]
        beats = [(c, (p >> bo) & ((1 << bw) - 1)) for c, p in enumerate(rec) if (p >> fo) & 1]
        out.append(kit.decode_stream(beats, core.formats[k], batch))
    return out, accepted, done_at


def simulate_vit(core: ViTCore, x: np.ndarray, *, limit: int = 400_000) -> list[list]:
    """Run every sample back to back; per site, its decoded steps per sample."""
    return run_vit(core, x, limit=limit)[0]


def check_against_reference(core: ViTCore, x: np.ndarray) -> None:
    hw = simulate_vit(core, x)
    tr = run(core.vit, x).trace
    n_sites = len(core.vit.sites)
    for b in range(x.shape[0]):
        T = int(tr.steps[b])
        assert len(hw[-1][b]) == T, ("steps", b)
        busy = np.zeros((T, n_sites), dtype=bool)
        for k, site in enumerate(core.vit.sites):
            steps = hw[k][b]
            assert len(steps) <= T, (site.name, b)
            for t in range(T):
                ref = tr.spikes[k][b, t].reshape(-1)
                got = np.zeros_like(ref)
                if t < len(steps):
                    got[steps[t].step.indices] = steps[t].step.values
                    busy[t, k] = steps[t].step.busy
                assert np.array_equal(got, ref), (site.name, b, t)
        assert np.array_equal(np.logical_or.accumulate(busy, axis=1), tr.busy[b, :T]), b


@settings(max_examples=1, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_random_vits_equal_the_reference(data) -> None:
    vit = data.draw(transformers(max_dim=4, max_tokens=3, max_depth=1))
    x = data.draw(images(vit, max_batch=2))
    core = ViTCore(
        vit=vit,
        lanes=data.draw(st.integers(1, 4)),
        pipeline=data.draw(st.sampled_from([0, 1, 2, 3])),
        fifo_depth=data.draw(st.sampled_from([None, 1, 2])),
        probe=True,
    )
    check_against_reference(core, x)


@pytest.mark.slow
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_random_vits_equal_the_reference_more(data) -> None:
    vit = data.draw(transformers(max_dim=8, max_tokens=5, max_depth=2))
    x = data.draw(images(vit, max_batch=3))
    core = ViTCore(
        vit=vit,
        lanes=data.draw(st.integers(1, 8)),
        pipeline=data.draw(st.sampled_from([0, 1, 2, 3])),
        fifo_depth=data.draw(st.sampled_from([None, 1, 2, 5])),
        product_lanes=data.draw(st.integers(1, 5)),
        probe=True,
    )
    check_against_reference(core, x)


#: tiny graded ViTs (build_vit seed, K): between them every spike consumer sees spikes > 1 — the
#: residual stages (embed, proj, fc2), both products (q·kᵀ, attn·v) and the linear sites
GRADED = [(28, None), (11, 1)]


@pytest.mark.parametrize(("seed", "max_level"), GRADED)
def test_graded_vit_equals_the_reference_and_the_model(seed, max_level) -> None:
    """A graded ViT (every site graded ST-BIF, docs/graded.md) in RTL: every site's spikes
    (±2^k), every step, equal the reference's, the busy flags and step counts too, and every
    beat of every site, every first input beat and ``done`` is in the exact model's cycle."""
    from spikezip.hw.model.vit_model import vit_schedule
    from tests.sw.vit_strategies import build_vit

    rng = np.random.default_rng(seed)
    plain = build_vit(rng, patches=3, patch_size=2, n_inputs=6, dim=4, heads=2, hidden=4, depth=1)
    vit = plain.with_neuron("graded", max_level)
    lo, hi = vit.input_bounds
    x = np.random.default_rng(0).integers(lo, hi + 1, (3, vit.n_inputs))
    golden = run(vit, x).trace
    assert golden.steps.max() < run(plain, x).trace.steps.min()
    knobs = {"lanes": 2, "pipeline": 1}
    core = ViTCore(vit=vit, probe=True, **knobs)
    hw, accepted, done_at = run_vit(core, x)
    n_sites = len(vit.sites)
    model = vit_schedule(vit, x, golden, **knobs)
    assert model.exact
    for b in range(x.shape[0]):
        T = int(golden.steps[b])
        assert len(hw[-1][b]) == T, ("steps", b)
        busy = np.zeros((T, n_sites), dtype=bool)
        for k, site in enumerate(vit.sites):
            steps = hw[k][b]
            for t in range(T):
                ref = golden.spikes[k][b, t].reshape(-1)
                got = np.zeros(ref.shape, dtype=np.int64)
                if t < len(steps):
                    got[steps[t].step.indices] = steps[t].step.values
                    busy[t, k] = steps[t].step.busy
                assert np.array_equal(got, ref), (site.name, b, t)
            cycles = [(tuple(int(c) for c in s.event_cycles), int(s.cycle)) for s in steps]
            assert cycles == list(model.site_steps(site.name, b)), (site.name, b)
        assert np.array_equal(np.logical_or.accumulate(busy, axis=1), golden.busy[b, :T]), b
    counts = [sum(s.n_events + 1 for s in inf) for inf in input_steps(vit, x)]
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(int)
    assert model.first_input.tolist() == [accepted[s] for s in starts]
    assert model.done.tolist() == done_at


def test_graded_vits_cover_every_spike_consumer() -> None:
    """The :data:`GRADED` ViTs' spikes > 1 reach the residual stages, both products and linear
    sites (so the RTL test above exercises each consumer's shift)."""
    from tests.sw.vit_strategies import build_vit

    seen = set()
    for seed, max_level in GRADED:
        rng = np.random.default_rng(seed)
        plain = build_vit(rng, patches=3, patch_size=2, n_inputs=6, dim=4, heads=2, hidden=4,
                          depth=1)  # fmt: skip
        vit = plain.with_neuron("graded", max_level)
        lo, hi = vit.input_bounds
        x = np.random.default_rng(0).integers(lo, hi + 1, (3, vit.n_inputs))
        tr = run(vit, x).trace
        seen |= {s.name.rsplit(".", 1)[-1] for k, s in enumerate(vit.sites)
                 if np.abs(tr.spikes[k]).max() > 1}  # fmt: skip
    # residual b: embed, proj, fc2; products: q, k, attn, v; linear sites: norm1, context, fc1
    assert {"embed", "proj", "fc2", "q", "k", "attn", "v", "norm1", "context", "fc1"} <= seen


def test_broadcast_waits_for_every_consumer() -> None:
    """A beat leaves only when both consumers took it; each gets every beat once, in order."""
    fork = Broadcast(event_layout(4, 2), 2)
    beats = list(range(1, 9))
    got = [[], []]
    rng = np.random.default_rng(1)

    async def bench(ctx):
        ptr = 0
        for _ in range(200):
            ctx.set(fork.i.valid, ptr < len(beats))
            ctx.set(fork.i.payload.as_value(), beats[min(ptr, len(beats) - 1)] << 1)
            readies = [bool(rng.random() < 0.4), bool(rng.random() < 0.7)]
            for k, r in enumerate(readies):
                port = getattr(fork, f"o{k}")
                ctx.set(port.ready, r)
                if r and ctx.get(port.valid):
                    got[k].append(ctx.get(port.payload.as_value()) >> 1)
            ptr += bool(ptr < len(beats) and ctx.get(fork.i.ready))
            await ctx.tick()

    sim = Simulator(fork)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert got == [beats, beats]


@settings(max_examples=1, deadline=None)
@given(transformers(max_dim=4, max_tokens=3, max_depth=1))
def test_parameters_are_checked_first(vit) -> None:
    with pytest.raises(TypeError, match="vit must be a VisionTransformer"):
        ViTCore(vit=None)
    with pytest.raises(ValueError, match="product_lanes must be a positive integer"):
        ViTCore(vit=vit, product_lanes=0)
    with pytest.raises(ValueError, match="lanes must hold"):
        ViTCore(vit=vit, lanes=(1, 2))
