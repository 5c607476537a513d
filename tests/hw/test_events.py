"""Tier 1: the event-stream format and the golden event lists (``hw.model.events``), no
simulator."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from spikezip.hw.model.events import (
    EventFormat,
    input_format,
    input_steps,
    output_format,
    output_steps,
)
from spikezip.ir import Layer, Network
from spikezip.sw.reference import simulate


def _net(encoding="analog", bias=0, bounds=(0, 16)) -> Network:
    layer = Layer(
        weight=np.array([[1, 2, 0], [-1, 0, 3]]),
        bias=np.array([bias, 0]),
        threshold=4,
        neg_bound=0,
        pos_bound=15,
    )
    return Network(layers=(layer,), n_inputs=3, encoding=encoding, input_bounds=bounds)


@given(
    index_width=st.integers(1, 20),
    value_width=st.integers(2, 20),
    data=st.data(),
)
def test_pack_unpack_round_trip(index_width: int, value_width: int, data) -> None:
    fmt = EventFormat(index_width, value_width)
    marker = data.draw(st.booleans())
    index = data.draw(st.integers(0, (1 << index_width) - 1))
    value = data.draw(st.integers(-(1 << (value_width - 1)), (1 << (value_width - 1)) - 1))
    busy = data.draw(st.booleans())
    word = fmt.pack(marker=marker, index=index, value=value, busy=busy)
    assert 0 <= word < 1 << fmt.width
    assert fmt.unpack(word) == (marker, index, value, busy)


def test_format_matches_amaranth_layout() -> None:
    from spikezip.hw.cores.layouts import event_layout

    fmt = EventFormat(5, 7)
    layout = event_layout(5, 7)
    assert layout.size == fmt.width
    for name, field in layout:
        assert field.offset == fmt.offsets[name], name
        assert field.width == fmt.widths[name], name


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"index_width": 0, "value_width": 2}, "index_width must be a positive integer, not 0"),
        ({"index_width": 3, "value_width": 1}, "value_width must be an integer ≥ 2, not 1"),
    ],
)
def test_format_validation(kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        EventFormat(**kwargs)


def test_pack_rejects_out_of_range() -> None:
    fmt = EventFormat(3, 2)
    with pytest.raises(ValueError, match="index 8 does not fit in 3 unsigned bits"):
        fmt.pack(marker=False, index=8, value=1)
    with pytest.raises(ValueError, match="value 2 does not fit in 2 signed bits"):
        fmt.pack(marker=False, index=1, value=2)


def test_formats_of_a_network() -> None:
    net = _net(bounds=(-300, 16))
    assert input_format(net, 0) == EventFormat(2, 10)  # [-300, 16] needs 10 signed bits
    assert output_format(net, 0) == EventFormat(1, 2)
    spikes = _net("spike", bounds=(-2, 2))
    assert input_format(spikes, 0) == EventFormat(2, 2)


def test_analog_input_events() -> None:
    net = _net()
    x = np.array([[3, 0, 16], [0, 0, 0]])
    steps = input_steps(net, x, simulate(net, x), 0)
    (s0, s1), (z0,) = steps
    assert s0.indices.tolist() == [0, 2] and s0.values.tolist() == [3, 16] and s0.busy
    assert s1.n_events == 0 and not s1.busy  # "idle for good" follows a busy analog step
    assert z0.n_events == 0 and not z0.busy  # all-zero input: one idle step


def test_spike_input_events() -> None:
    net = _net("spike", bounds=(-2, 2))
    x = np.zeros((2, 3, 3), dtype=np.int64)
    x[0, 0] = [1, 0, -1]
    x[0, 2] = [0, 1, 0]  # busy last step: an idle step is appended
    x[1, 0] = [1, 1, 1]  # idle last step ends the input
    a, b = input_steps(net, x, simulate(net, x), 0)
    assert [s.busy for s in a] == [True, True, True, False]
    assert a[0].indices.tolist() == [0, 2] and a[0].values.tolist() == [1, -1]
    assert a[1].n_events == 0 and a[2].indices.tolist() == [1]
    assert [s.busy for s in b] == [True, True, False]


def test_output_events_follow_trace_busy() -> None:
    """Spec §7 vector 8: a bias-only layer is busy at t = 0 although its input is idle."""
    layer = Layer(
        weight=np.zeros((1, 1), dtype=np.int64),
        bias=np.array([6]),
        threshold=4,
        neg_bound=0,
        pos_bound=15,
    )
    net = Network(layers=(layer,), n_inputs=1, encoding="analog", input_bounds=(0, 1))
    x = np.zeros((1, 1), dtype=np.int64)
    trace = simulate(net, x)
    (inp,) = input_steps(net, x, trace, 0)
    (out,) = output_steps(trace, 0)
    assert [s.busy for s in inp] == [False]
    assert [(s.indices.tolist(), s.values.tolist(), s.busy) for s in out] == [
        ([0], [1], True),
        ([0], [1], True),
        ([], [], False),
    ]


def test_step_words() -> None:
    net = _net()
    x = np.array([[3, 0, 16]])
    (steps,) = input_steps(net, x, simulate(net, x), 0)
    fmt = input_format(net, 0)
    assert [fmt.unpack(w) for w in steps[0].words(fmt)] == [
        (False, 0, 3, False),
        (False, 2, 16, False),
        (True, 0, 0, True),
    ]
