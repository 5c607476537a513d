"""Tier 1: the testbench kit's pure parts and the typed stimulus files, no simulator."""

from pathlib import Path

import numpy as np
import pytest

from spikezip.hw.model.events import EventFormat, output_format, output_steps
from spikezip.ir._io import read_npz, write_npz
from spikezip.ir.errors import FormatError
from spikezip.sim.tb import kit
from spikezip.sim.tb.files import (
    BitLayout,
    LayerCoreStimulus,
    NetworkResult,
    NetworkStimulus,
    bits,
)
from spikezip.sw.reference import simulate
from tests.hw.layer_configs import network


def _network_stimulus() -> NetworkStimulus:
    return NetworkStimulus(
        words=np.array([1, 2, 2**62 - 1], dtype=np.int64),
        sample_starts=np.array([0, 2], dtype=np.int64),
        n_out=(5, 3),
        layer_names=("a", "b"),
        formats=(EventFormat(3, 2), EventFormat(2, 2)),
        probe=BitLayout({"in_ready": (0, 1), "beat1": (1, 6)}),
        digest="abc",
        max_cycles=1000,
        ready=0.5,
        ready_seed=11,
        progress="/tmp/p",
    )


def test_network_stimulus_round_trip(tmp_path: Path) -> None:
    stim = _network_stimulus()
    back = NetworkStimulus.load(stim.save(tmp_path / "s.npz"))
    assert back.formats == stim.formats and back.probe == stim.probe
    assert (back.n_out, back.layer_names, back.samples, back.depth) == ((5, 3), ("a", "b"), 2, 2)
    assert (back.valid, back.ready, back.progress, back.max_cycles) == (1.0, 0.5, "/tmp/p", 1000)
    assert back.ready_seed == 11
    np.testing.assert_array_equal(back.words, stim.words)


def test_result_round_trip_keeps_floats_in_metadata(tmp_path: Path) -> None:
    res = NetworkResult(
        first_input=np.arange(2),
        done=np.arange(2) + 5,
        counters=np.zeros((2, 8), dtype=np.int64),
        final_counters=np.zeros(8, dtype=np.int64),
        total_cycles=7,
        wall_seconds=0.25,
        edge0_ns=25.0,
    )
    back = NetworkResult.load(res.save(tmp_path / "r.npz"))
    assert (back.total_cycles, back.wall_seconds, back.edge0_ns) == (7, 0.25, 25.0)
    assert back.counters.shape == (2, 8)


def test_wrong_kind_is_refused(tmp_path: Path) -> None:
    path = _network_stimulus().save(tmp_path / "s.npz")
    with pytest.raises(FormatError, match="expected a spikezip-stimulus-layer-core file"):
        LayerCoreStimulus.load(path)


def test_wrong_version_is_refused(tmp_path: Path) -> None:
    path = _network_stimulus().save(tmp_path / "s.npz")
    meta, arrays = read_npz(path, kind=NetworkStimulus.KIND)
    write_npz(path, {**meta, "version": 99}, arrays)
    with pytest.raises(FormatError, match="unsupported spikezip-stimulus-network version 99"):
        NetworkStimulus.load(path)


def test_missing_field_is_named(tmp_path: Path) -> None:
    path = _network_stimulus().save(tmp_path / "s.npz")
    meta, arrays = read_npz(path, kind=NetworkStimulus.KIND)
    del meta["digest"]
    write_npz(path, meta, arrays)
    with pytest.raises(FormatError, match="lacks 'digest'"):
        NetworkStimulus.load(path)


def test_bit_layout_reads_the_manifest_records() -> None:
    records = [{"field": "a", "offset": 0, "width": 3}, {"field": "b", "offset": 3, "width": 4}]
    layout = BitLayout.from_json(records)
    assert layout.to_json() == records and layout.width == 7
    word = 0b1011_101
    assert layout.get(word, "a") == 0b101 and layout.get(word, "b", signed=True) == -5
    assert layout.element(word, "b", 1, 2) == -2 and bits(word, 3, 4) == 0b1011


@pytest.mark.parametrize("encoding", ["analog", "spike"])
def test_decode_is_the_inverse_of_the_golden_event_lists(encoding: str) -> None:
    net, x = network(encoding)
    golden = simulate(net, x)
    for k in range(net.depth):
        fmt, steps = output_format(net, k), output_steps(golden, k)
        beats = [w for inf in steps for s in inf for w in s.words(fmt)]
        decoded = kit.decode_stream(list(enumerate(beats)), fmt, golden.batch)
        assert [len(inf) for inf in decoded] == [len(inf) for inf in steps]
        for want, got in zip(steps, decoded, strict=True):
            for p, q in zip(want, got, strict=True):
                np.testing.assert_array_equal(q.step.indices, p.indices)
                np.testing.assert_array_equal(q.step.values, p.values)
                assert q.step.busy == p.busy and q.cycle > q.event_cycles.max(initial=-1)
        arrays = kit.stream_arrays(decoded, golden.spikes[k].shape[2], golden.n_steps)
        t_l = np.array([len(inf) for inf in steps])
        assert (arrays["steps"] == t_l).all()
        for b in range(golden.batch):
            t = t_l[b]
            np.testing.assert_array_equal(arrays["spikes"][b, :t], golden.spikes[k][b, :t])
            np.testing.assert_array_equal(arrays["busy"][b, :t], golden.busy[b, :t, k])


def test_with_layer_replaces_one_layer_only() -> None:
    net, x = network("spike")
    golden = simulate(net, x, record_state=True)
    spikes = np.zeros_like(golden.spikes[1])
    hw = kit.with_layer(golden, 1, "rtl:test", spikes=spikes)
    assert np.array_equal(hw.spikes[1], spikes) and np.array_equal(hw.spikes[0], golden.spikes[0])
    assert all((c == -1).all() for c in hw.step_cycles) and hw.source == "rtl:test"
    assert np.array_equal(hw.membranes[1], golden.membranes[1])
