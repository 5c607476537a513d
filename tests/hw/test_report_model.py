"""The report's latency is the composed cycle model that tests/sim/test_network_model.py checks
against the RTL (same function, same FIFO rule), and the sweep's Pareto front."""

from __future__ import annotations

import numpy as np

from spikezip.hw.model.network_model import network_schedule
from spikezip.report import model_latency, pareto
from spikezip.sw.reference import simulate


def test_report_latency_is_the_checked_model(digits_network, digits_data):
    x = digits_data.x_test[:5]
    trace = simulate(digits_network, x)
    lat = model_latency(digits_network, x, trace, lanes=8)
    per = [
        network_schedule(digits_network, x[b : b + 1], trace.select([b]), lanes=8) for b in range(5)
    ]
    assert lat.cycles_max == max(int(s.latency[0]) for s in per)
    assert np.isclose(lat.cycles_mean, np.mean([s.latency[0] for s in per]))
    for b in range(5):  # at the report's FIFO depth, the model is exact (no FIFO fills)
        s = network_schedule(
            digits_network, x[b : b + 1], trace.select([b]), lanes=8, fifo_depth=lat.fifo_depth
        )
        assert s.exact


def test_pareto():
    assert pareto([(1, 5), (2, 2), (3, 3), (5, 1), (2, 2)]) == [0, 1, 3, 4]


def test_report_latency_uses_the_pipeline_depth(digits_network, digits_data):
    """``model_latency(pipeline=…)`` is the composed model at that depth, which differs by depth."""
    x = digits_data.x_test[:3]
    trace = simulate(digits_network, x)
    means = {}
    for depth in (0, 1, 2):
        lat = model_latency(digits_network, x, trace, lanes=16, pipeline=depth)
        per = [
            network_schedule(
                digits_network, x[b : b + 1], trace.select([b]), lanes=16, pipeline=depth
            )
            for b in range(len(x))
        ]
        assert lat.cycles_max == max(int(s.latency[0]) for s in per)
        means[depth] = lat.cycles_mean
    assert means[0] < means[1] < means[2]  # every stage adds latency


def test_report_latency_at_a_fifo_depth(digits_network, digits_data):
    """``model_latency(fifo_depth=N)`` (``--fifo-depth``) is the model at N, which fills below
    the default depth (and costs cycles at depth 1); the default is the smallest power of two
    ≥ ``n_out + 2`` that no inference fills (every FIFO's need)."""
    x = digits_data.x_test[:4]
    trace = simulate(digits_network, x)
    default = model_latency(digits_network, x, trace, lanes=8)
    assert default.fifo_depth >= default.fifo_peak > default.fifo_depth // 2
    for depth in (1, 8, default.fifo_depth):
        lat = model_latency(digits_network, x, trace, lanes=8, fifo_depth=depth)
        per = [
            network_schedule(
                digits_network, x[b : b + 1], trace.select([b]), lanes=8, fifo_depth=depth
            )
            for b in range(len(x))
        ]
        assert lat.fifo_depth == depth and lat.fifo_peak == default.fifo_peak
        assert lat.cycles_max == max(int(s.latency[0]) for s in per)
        assert any(s.backpressure for s in per) == (depth < default.fifo_peak)
        assert lat.cycles_mean >= default.cycles_mean
        whole = network_schedule(digits_network, x, trace, lanes=8, fifo_depth=depth)
        assert lat.back_to_back_cycles == whole.total_cycles / len(x)
        if depth == 1:  # the one-entry FIFO costs cycles, alone and more so back to back
            assert lat.cycles_mean > default.cycles_mean
            assert lat.back_to_back_cycles - default.back_to_back_cycles > 10 * (
                lat.cycles_mean - default.cycles_mean
            )
    assert lat == default
