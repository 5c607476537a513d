"""Exact timing of the two stream FIFOs between cores, for the composed models with backpressure.

No amaranth import. A composed model (:mod:`hw.model.network_model` for the MLP's chain,
:mod:`hw.model.vit_model` for the ViT's graph) knows, per FIFO, the cycle each beat was
**written** (``w_k``: its producer's output handshake) and **taken** (``t_k``: its consumer's input
handshake) in the pass before; from them a FIFO's model gives, per beat, the first cycle it has
**room** for it (the producer's ``ready``: beat ``k`` offered in ``c`` is written in
``max(c, room_k)``), the cycle it is **valid** at the far end at the earliest (``w_k`` plus the
FIFO's latency; the consumer's model adds ``t_{k−1} + 1`` itself), and its **need**: the fewest
entries with which, fed and read at the same cycles, it would never refuse a beat.

Two kinds, one :class:`FifoTiming` each:

* :data:`SYNC_FIFO`, ``amaranth.lib.fifo.SyncFIFOBuffered`` (the ViT top): the inner memory of
  ``depth − 1`` entries, then the output register; beat ``k`` moves into the output register in
  ``max(w_k + 1, t_{k−1})``; latency 2 (:data:`~hw.model.cycle_model.FIFO_LATENCY`), 1 for one
  entry (a single register, room once the beat before was taken).
* :data:`REGISTERED_FIFO`, ``hw.cores.fifo.RegisteredFIFO`` (the MLP's inter-layer FIFOs): a
  memory of ``depth`` entries, its read register ``v1``, the output register ``v2`` and the skid
  register behind it. Beat ``k`` is **fetched** from the memory (into ``v1``) in
  ``f_k = max(w_k + 1, a_{k−1})`` and moves into ``v2`` in ``a_k = max(f_k + 1, a_{k−1} + 1,
  t_{k−2} + 1)``: ``v2`` takes the next beat unless it holds one and the skid register holds the
  one before (which it does until that beat is taken, in ``t_{k−2}``); since
  ``a_{k−2} ≤ f_{k−1}``, ``f_k = max(w_k + 1, f_{k−1} + 1, t_{k−3} + 1)``. Beat ``k`` is valid on
  ``r`` from ``max(a_k + 1, t_{k−1} + 1) = max(w_k + 3, t_{k−1} + 1)``
  (:data:`~hw.model.cycle_model.REGISTERED_FIFO_LATENCY`; a beat is taken at the earliest 2
  cycles after its fetch, and one beat per cycle). ``w.ready`` is ``level < depth`` (``level``:
  written and not fetched, seen the cycle after), so the memory has room for beat ``k`` from
  ``f_{k−depth} + 1`` on. Any ``depth ≥ 1`` works: the FIFO then holds up to ``depth + 3``
  beats (memory, ``v1``, ``v2``, skid).

tests/hw/test_fifo.py checks both formulas against the FIFOs in Amaranth's simulator under random
writes and reads.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spikezip.hw.model.cycle_model import FIFO_LATENCY, REGISTERED_FIFO_LATENCY

__all__ = ["REGISTERED_FIFO", "SYNC_FIFO", "FifoCheck", "FifoTiming", "registered_fetches"]


@dataclass(frozen=True)
class FifoCheck:
    """How full one FIFO ran (:func:`hw.model.vit_model.vit_schedule`,
    :func:`hw.model.network_model.network_schedule`)."""

    #: the FIFO's name in its top (``"blocks_0_q_fifo"`` in ``ViTCore``, ``"fifo0"`` in
    #: ``NetworkCore``)
    name: str
    depth: int
    #: the fewest entries with which it would never be full, every FIFO being that deep: its
    #: occupancy in the schedule without backpressure (:meth:`FifoTiming.need`)
    need: int
    #: cycles its producer's beats waited for room in it, summed
    waited: int = 0

    @property
    def ok(self) -> bool:
        """It never refused a beat: no backpressure from it."""
        return self.waited == 0


def _ints(a) -> np.ndarray:
    return np.asarray(a, dtype=np.int64).reshape(-1)


def _previous(a: np.ndarray, shift: int) -> np.ndarray:
    """``a[k − shift]`` per ``k``, ``−1`` (long ago) where ``k < shift``."""
    out = np.full_like(a, -1)
    if shift < a.size:
        out[shift:] = a[: a.size - shift]
    return out


def registered_fetches(writes, taken) -> np.ndarray:
    """The cycle each beat of a ``RegisteredFIFO`` leaves its memory (into the read register):
    ``f_k = max(w_k + 1, f_{k−1} + 1, t_{k−3} + 1)``, a running maximum."""
    w, t = _ints(writes), _ints(taken)
    k = np.arange(w.size, dtype=np.int64)
    own = np.maximum(w + 1, _previous(t, 3) + 1) - k
    return np.maximum.accumulate(own) + k if w.size else w


def _sync_room(writes: np.ndarray, taken: np.ndarray, depth: int) -> np.ndarray:
    room = np.zeros_like(writes)
    if depth == 1:
        room[1:] = taken[:-1] + 1
        return room
    moved = np.maximum(writes + 1, _previous(taken, 1))
    room[depth - 1 :] = moved[: max(0, writes.size - depth + 1)] + 1
    return room


def _sync_need(offered: np.ndarray, taken: np.ndarray, depth: int) -> int:
    if depth == 1 and np.all(taken[:-1] < offered[1:]):
        return 1
    moved = np.maximum(offered + 1, _previous(taken, 1))
    inner = np.arange(offered.size) - np.searchsorted(moved, offered, side="left")
    return int(inner.max()) + 2 if inner.size else 2


def _registered_room(writes: np.ndarray, taken: np.ndarray, depth: int) -> np.ndarray:
    room = np.zeros_like(writes)
    fetched = registered_fetches(writes, taken)
    room[depth:] = fetched[: max(0, writes.size - depth)] + 1
    return room


def _registered_need(offered: np.ndarray, taken: np.ndarray) -> int:
    # beat k is refused with d entries unless d − 1 of the k beats before it were fetched
    fetched = registered_fetches(offered, taken)
    waiting = np.arange(offered.size) - np.searchsorted(fetched, offered, side="left")
    return int(waiting.max()) + 1 if waiting.size else 1


@dataclass(frozen=True)
class FifoTiming:
    """The exact timing of one kind of FIFO (see the module docstring)."""

    name: str
    #: cycles from a beat written into an empty FIFO to the cycle it is valid at its output
    latency: int
    #: the latency of a one-entry FIFO, when it differs
    latency_one: int

    def latency_of(self, depth: int) -> int:
        """Cycles from a write into an empty FIFO of ``depth`` entries to valid at its output."""
        return self.latency_one if depth == 1 else self.latency

    def room(self, writes, taken, depth: int) -> np.ndarray:
        """Per beat, the first cycle the FIFO of ``depth`` entries has room for it, when its beats
        were written in ``writes`` and taken in ``taken`` (both in stream order)."""
        w, t = _ints(writes), _ints(taken)
        if w.size != t.size:
            raise ValueError(f"{self.name}: {w.size} beats written but {t.size} taken")
        if self is REGISTERED_FIFO:
            return _registered_room(w, t, depth)
        return _sync_room(w, t, depth)

    def need(self, offered, taken, depth: int) -> int:
        """The fewest entries with which the FIFO, its beats offered in ``offered`` and taken in
        ``taken`` by a FIFO of ``depth`` entries that refused none, never refuses one (a
        ``SyncFIFOBuffered``: ≥ 2, or 1 when one entry of ``depth`` 1 never does, its latency
        being another)."""
        o, t = _ints(offered), _ints(taken)
        if o.size != t.size:
            raise ValueError(f"{self.name}: {o.size} beats offered but {t.size} taken")
        if self is REGISTERED_FIFO:
            return _registered_need(o, t)
        return _sync_need(o, t, depth)

    def producer_ready(self, taken, depth: int) -> _Room:
        """The FIFO's ``w.ready`` as its producer's model asks for it (the ``ready`` function of
        :func:`hw.model.cycle_model.schedule`): called once per beat, in stream order, with the
        cycle the beat is offered, it returns the cycle the beat is written, its room computed
        from the beats written before it in this very run and the consumer's ``taken`` cycles
        (from the pass before). So a producer filling the FIFO settles in one pass; only the
        consumer's progress needs passes (:mod:`hw.model.network_model`)."""
        return _Room(self is REGISTERED_FIFO, _ints(taken).tolist(), depth)


class _Room:
    """:meth:`FifoTiming.producer_ready`: beat ``k`` offered in ``c`` is written in
    ``max(c, room_k)``, ``room_k`` as :meth:`FifoTiming.room` computes it from the writes so far."""

    def __init__(self, registered: bool, taken: list[int], depth: int) -> None:
        self.registered, self.taken, self.depth = registered, taken, depth
        self.moved: list[int] = []  # per beat written: its fetch (or move into ``v2``) cycle

    def _taken(self, j: int) -> int:
        return self.taken[j] if 0 <= j < len(self.taken) else -1

    def __call__(self, cycle: int) -> int:
        k, d, moved = len(self.moved), self.depth, self.moved
        if self.registered:
            w = max(cycle, moved[k - d] + 1) if k >= d else cycle
            moved.append(max(w + 1, moved[-1] + 1 if moved else -1, self._taken(k - 3) + 1))
        else:
            if d == 1:
                w = max(cycle, self._taken(k - 1) + 1) if k else cycle
            else:
                w = max(cycle, moved[k - d + 1] + 1) if k >= d - 1 else cycle
            moved.append(max(w + 1, self._taken(k - 1)))
        return w


#: ``amaranth.lib.fifo.SyncFIFOBuffered`` (the ViT top's FIFOs)
SYNC_FIFO = FifoTiming("SyncFIFOBuffered", FIFO_LATENCY, 1)
#: ``hw.cores.fifo.RegisteredFIFO`` (the MLP's inter-layer FIFOs)
REGISTERED_FIFO = FifoTiming("RegisteredFIFO", REGISTERED_FIFO_LATENCY, REGISTERED_FIFO_LATENCY)
