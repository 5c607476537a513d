"""Payload layouts shared by the blocks of a layer core.

* :func:`event_layout` — a spike-event stream beat (event or end-of-step marker), the contract
  between layer cores; bit order from :data:`hw.model.events.FIELDS`.
* :func:`op_layout` — one word operation from the sequencer to the synapse datapath.
* :func:`command_layout` — one word operation with its drive, into the neuron array.
* :func:`spike_word_layout` / :func:`state_layout` — a fired word out of the neuron array.
"""

from __future__ import annotations

from amaranth.hdl import signed, unsigned
from amaranth.lib import data, enum

from spikezip.hw.model.events import FIELDS, SPIKE_VALUE_WIDTH, EventFormat

__all__ = [
    "Op",
    "beat_layout",
    "command_layout",
    "event_layout",
    "op_layout",
    "spike_word_layout",
    "state_layout",
    "stream_layout",
]


class Op(enum.Enum, shape=2):
    """Operation on one word of ``lanes`` neurons."""

    #: ``U += drive``
    INTEGRATE = 0
    #: ``U += drive``, then fire: ``s``, ``A += s``, ``U -= s·Θ``
    FIRE = 1
    #: ``U = H + B``, ``A = 0``
    INIT = 2


def event_layout(index_width: int, value_width: int) -> data.StructLayout:
    """Payload of a spike-event stream: ``marker``, ``index``, ``value`` (signed), ``busy``.

    ``marker = 1`` closes a time step and carries the step's cumulative ``busy`` flag; ``index``
    and ``value`` are meaningful on events (``marker = 0``) only.
    """
    fmt = EventFormat(index_width, value_width)  # validates the widths
    shapes = {
        "marker": unsigned(1),
        "index": unsigned(fmt.index_width),
        "value": signed(fmt.value_width),
        "busy": unsigned(1),
    }
    return data.StructLayout({name: shapes[name] for name in FIELDS})


def beat_layout(index_width: int, value_width: int, width: int) -> data.StructLayout:
    """Payload of a wide spike-event stream (``width = k > 1`` events per beat, a layer core's
    ``emit_width``): ``marker``, ``busy``, ``count`` and ``k`` slots of ``index`` and ``value``.

    A beat is either a marker (``marker = 1``, ``count = 0``, the step's ``busy``) or ``count``
    events (1 … ``k``) in slots ``0 … count-1``, in stream order; unused slots are 0.
    """
    fmt = EventFormat(index_width, value_width)  # validates the widths
    if not isinstance(width, int) or width < 2:
        raise ValueError(f"a wide beat carries 2 or more events, not {width!r}")
    return data.StructLayout(
        {
            "marker": unsigned(1),
            "busy": unsigned(1),
            "count": unsigned(width.bit_length()),
            "index": data.ArrayLayout(unsigned(fmt.index_width), width),
            "value": data.ArrayLayout(signed(fmt.value_width), width),
        }
    )


def stream_layout(index_width: int, value_width: int, width: int) -> data.StructLayout:
    """:func:`event_layout` for one event per beat, else :func:`beat_layout`."""
    if width == 1:
        return event_layout(index_width, value_width)
    return beat_layout(index_width, value_width, width)


def _word_shape(words: int) -> unsigned:
    return unsigned(max(0, (words - 1).bit_length()))


def op_layout(
    *,
    words: int,
    index_width: int,
    value_width: int,
    span: int | None = None,
    first_row: bool = False,
    width: int = 1,
) -> data.StructLayout:
    """A word operation before the weight look-up: ``value × W[word lanes, index]``.

    With ``span`` (a mapped core, :mod:`hw.model.input_map`) it also carries ``offset``, the
    word's place in its event's pass (``index`` is then the weight row): the weight word is
    ``index·span + offset`` while ``word`` is the neuron word.

    With ``first_row`` it also carries ``first``: ``index·words`` (``index·span`` when mapped),
    the weight word of the pass's first word, from a register of the sequencer, so the weight
    address is one addition (``first + word``, or ``first + offset``) and no multiplication.

    With ``width = k > 1`` (the events of a wide input beat in one pass) ``index``, ``value``
    and ``first`` are arrays of ``k`` (an unused slot has value 0).
    """
    fields = {
        "op": Op,
        "word": _word_shape(words),
        "last": unsigned(1),
        "busy": unsigned(1),
        "index": unsigned(index_width),
        "value": signed(value_width),
    }
    if span is not None:
        fields["offset"] = _word_shape(span)
    if first_row:
        fields["first"] = unsigned(max(1, ((1 << index_width) * (span or words) - 1).bit_length()))
    if width > 1:  # the events of a wide beat, one pass for all (unused slots: value 0)
        for name in ("index", "value", "first"):
            if name in fields:
                fields[name] = data.ArrayLayout(fields[name], width)
    return data.StructLayout(fields)


def command_layout(*, words: int, lanes: int, drive_width: int) -> data.StructLayout:
    """A word operation with one drive per lane, as the neuron array takes it."""
    return data.StructLayout(
        {
            "op": Op,
            "word": _word_shape(words),
            "last": unsigned(1),
            "busy": unsigned(1),
            "drive": data.ArrayLayout(signed(drive_width), lanes),
        }
    )


def spike_word_layout(
    *, words: int, lanes: int, value_width: int = SPIKE_VALUE_WIDTH
) -> data.StructLayout:
    """The spikes of one fired word, lane ``k`` being neuron ``word · lanes + k`` (signed
    ``value_width`` bits: ±1, or ±2^k for graded neurons)."""
    return data.StructLayout(
        {
            "word": _word_shape(words),
            "last": unsigned(1),
            "busy": unsigned(1),
            "spikes": data.ArrayLayout(signed(value_width), lanes),
        }
    )


def state_layout(*, lanes: int, membrane_width: int, tracer_width: int) -> data.StructLayout:
    """Membranes and tracers of one word."""
    return data.StructLayout(
        {
            "membranes": data.ArrayLayout(signed(membrane_width), lanes),
            "tracers": data.ArrayLayout(signed(tracer_width), lanes),
        }
    )
