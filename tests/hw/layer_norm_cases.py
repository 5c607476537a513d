"""Stimulus for the LayerNorm core's tests (tiers 2 and 3): random sites and stream increments,
tie-heavy sites, and an Amaranth-simulator driver."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from spikezip.hw.model import layer_norm_model as lnm
from spikezip.hw.model.events import Step
from spikezip.ir.transformer.sites import LayerNorm
from tests.hw.stream_bench import drive_stream


def norm_site(gain, bias, eps: int) -> LayerNorm:
    return LayerNorm(gain=gain, bias=bias, eps=eps, threshold=8, neg_bound=-8, pos_bound=7)


def _step(inc: np.ndarray, busy: bool) -> Step:
    idx = np.flatnonzero(inc)
    return Step(idx.astype(np.int64), inc[idx].astype(np.int64), busy)


def streams_to_steps(streams: list[np.ndarray]) -> list[Step]:
    """One inference whose accumulated stream is ``streams[t]`` after step ``t`` (the last step
    has busy 0)."""
    last = np.zeros_like(streams[0])
    out = []
    for t, x in enumerate(streams):
        out.append(_step((x - last).reshape(-1), t < len(streams) - 1))
        last = x
    return out


def random_inference(rng: np.random.Generator, tokens: int, dim: int, bound: int, steps: int):
    """Streams within ``[-bound, bound]`` (extremes included), each step changing a random
    subset of entries; the last step may be empty (the usual idle step) or not."""
    x = np.zeros((tokens, dim), dtype=np.int64)
    streams = []
    for t in range(steps):
        pick = rng.random((tokens, dim)) < rng.choice([0.1, 0.4, 1.0])
        values = rng.choice([-bound, bound, 0, 1, -1, *rng.integers(-bound, bound + 1, 4)], x.shape)
        if t == steps - 1 and rng.random() < 0.5:
            pick[:] = False
        x = np.where(pick, values, x)
        streams.append(x.copy())
    return streams_to_steps(streams)


@st.composite
def random_cases(draw, *, max_tokens: int = 3, max_dim: int = 5):
    """``(norm, tokens, bound, inputs)`` of a random site."""
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    tokens = draw(st.integers(1, max_tokens))
    dim = draw(st.integers(1, max_dim))
    bound = draw(st.sampled_from([1, 7, 100, 5000]))
    gmax = draw(st.sampled_from([0, 1, 16, 1024]))
    bmax = draw(st.sampled_from([0, 8, 2000]))
    eps = draw(st.sampled_from([1, 3, 100, 10_000]))
    norm = norm_site(rng.integers(-gmax, gmax + 1, dim), rng.integers(-bmax, bmax + 1, dim), eps)
    inputs = [
        random_inference(rng, tokens, dim, bound, int(rng.integers(1, 4)))
        for _ in range(draw(st.integers(1, 2)))
    ]
    return norm, tokens, bound, inputs


@st.composite
def tie_cases(draw, *, max_tokens: int = 3):
    """Sites and streams where every channel of every token is an exact tie.

    A token takes two values ``u`` and ``v = u ± δ`` on two channels each (``dim = 4``), so
    ``|Z_i| = 2δ`` and ``V = 4δ²``; with gains ``±c``, ``c = (2n + 1)·q`` and
    ``E = 4δ²(4q² − 1)``, ``W = (4qδ)²`` and ``|a|/√W = (2n + 1)/2``: rounding half away from
    zero gives ``n + 1``. Permuting or shifting a token keeps the ties.
    """
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    delta = draw(st.integers(1, 20))
    q, n = draw(st.integers(1, 4)), draw(st.integers(0, 6))
    c = (2 * n + 1) * q
    gain = [c * int(s) for s in rng.choice([-1, 1], 4)]
    norm = norm_site(gain, rng.integers(-5, 6, 4), 4 * delta**2 * (4 * q * q - 1))
    tokens = draw(st.integers(1, max_tokens))
    bound = 30 + delta

    def token() -> np.ndarray:
        u = int(rng.integers(-30, 31 - delta))
        return rng.permutation([u, u, u + delta, u + delta])

    streams = []
    for _ in range(int(rng.integers(1, 4))):
        x = np.array([token() for _ in range(tokens)])
        if streams:  # keep some tokens unchanged
            keep = rng.random(tokens) < 0.4
            x[keep] = streams[-1][keep]
        streams.append(x)
    return norm, tokens, bound, [streams_to_steps(streams)]


def simulate(core, inputs, outputs, *, valid: float = 1.0, ready: float = 1.0, seed: int = 0):
    """Run ``core`` in Amaranth's simulator on ``inputs``; return the output beats as
    ``(cycle, payload)`` and the expected payloads and model cycles."""

    fin, fout = core.input_format, core.output_format
    words = [w for inf in inputs for s in inf for w in s.words(fin)]
    expected = [w for inf in outputs for s in inf for w in s.words(fout)]
    sched = lnm.schedule(core.geometry, inputs, outputs)
    cycles = [c for inf in sched for s in inf for c in [*s.event_cycles, s.marker_cycle]]
    limit = int((max(cycles) + 50) * 3 / min(valid, ready)) + 100
    got = drive_stream(
        core, words, len(expected), limit=limit, seed=seed, valid_p=valid, ready_p=ready
    )
    return got, expected, cycles
