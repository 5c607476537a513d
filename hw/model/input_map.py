"""How a mapped layer core's input events reach its neurons (pure Python; no Amaranth).

A plain layer core (:mod:`hw.cores.layer_core`) adds column ``j`` of one weight matrix to all its
``W`` words for an input event ``j``. The transformer's sites need two other shapes, both served
by the same core with an :class:`InputMap` — a table, one entry per input index, that the
sequencer reads together with the event:

* **token-wise linear** (:meth:`InputMap.tokens`; embed, q, k, v, proj, fc1, fc2, head): the
  input index is ``token·d_in + c`` and the neurons are ``token·d_out + o``; one ``d_out × d_in``
  weight matrix serves every token. An event is a pass over the ``span = d_out / lanes`` words of
  its token (``base = token·span``), reading weight row ``c``. Events of tokens the site does not
  read (the head reads the class token only) are dropped: consumed in one cycle, no pass.
* **direct** (:meth:`InputMap.direct`; the LayerNorm, attn and context sites, whose drive is
  computed elsewhere): event ``(i, value)`` adds ``gain·value`` to neuron ``i`` only — a pass of
  one word (``base = i // lanes``) whose weight word is ``gain`` in lane ``i mod lanes`` and 0
  elsewhere (row ``i mod lanes`` of a ``lanes``-row table).

Neuron ``i`` is lane ``i mod lanes`` of word ``i // lanes`` in both, as in the plain core (token
maps need ``lanes`` to divide ``d_out``), so the spikes leave with their own index.

Cost: a kept event occupies ``max(span, min_distance)`` slots (the pass, padded as the plain
core's), a dropped one 1 cycle (:meth:`event_cycles`); a sweep or re-initialisation
:meth:`sweep_extra` idle slots more than the plain core's (both used by
:func:`hw.model.cycle_model.schedule`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from spikezip.ir.network import signed_width

__all__ = ["InputMap"]


def _pos_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name} must be a positive integer, not {value!r}")
    return int(value)


@dataclass(frozen=True, eq=False)
class InputMap:
    """Per input index: its weight ``row``, the first neuron word ``base`` of its pass and whether
    it is ``kept``; the weight table ``[rows·span, lanes]`` (row ``r`` at words ``r·span …``).

    Build with :meth:`tokens` or :meth:`direct`.
    """

    kind: str
    span: int
    lanes: int
    rows: np.ndarray
    bases: np.ndarray
    kept: np.ndarray
    table: np.ndarray
    #: sweep the words below an event's pass before the pass (:meth:`streaming`)
    stream: bool = False

    def streaming(self, stream: bool = True) -> InputMap:
        """This map with ``stream`` set: the core sweeps the words below a kept event's pass
        (``[p, base)``, ``p`` the first word not swept yet in the step) before the pass, so
        that a token's spikes leave as soon as the next token's input begins instead of after
        the step's marker. Exact only for inputs whose kept events come in ascending ``base``
        within a step; the cycle model raises ``ValueError`` on an input out of that order
        (:data:`hw.model.vit_sites.STREAMING_KINDS`: the sites whose producers send so)."""
        return dataclasses.replace(self, stream=bool(stream))

    @property
    def n_in(self) -> int:
        """Input indices the map covers."""
        return int(self.rows.shape[0])

    @property
    def n_rows(self) -> int:
        return int(self.table.shape[0]) // self.span

    @property
    def weight_width(self) -> int:
        """Signed bits of the table's entries."""
        return signed_width(min(int(self.table.min()), 0), max(int(self.table.max()), 0))

    # -- builders --------------------------------------------------------------------------------
    @classmethod
    def tokens(
        cls, weight: np.ndarray, *, tokens: int, lanes: int, read_tokens: int | None = None
    ) -> InputMap:
        """Token-wise ``weight [d_out, d_in]`` over ``tokens`` tokens; only the first
        ``read_tokens`` (default all) are read, the others' events dropped, and the site has
        ``read_tokens·d_out`` neurons."""
        w = np.asarray(weight, dtype=np.int64)
        if w.ndim != 2 or 0 in w.shape:
            raise ValueError(f"weight must be a non-empty [d_out, d_in] matrix, not {w.shape}")
        tokens, lanes = _pos_int("tokens", tokens), _pos_int("lanes", lanes)
        read = tokens if read_tokens is None else _pos_int("read_tokens", read_tokens)
        if read > tokens:
            raise ValueError(f"read_tokens must be in [1, {tokens}], not {read}")
        d_out, d_in = w.shape
        if read > 1 and d_out % lanes:
            raise ValueError(
                f"lanes must divide the site's {d_out} channels per token "
                f"(one of {[p for p in range(1, d_out + 1) if d_out % p == 0]}), not {lanes}"
            )
        span = -(-d_out // lanes)
        token, channel = np.divmod(np.arange(tokens * d_in), d_in)
        padded = np.zeros((span * lanes, d_in), dtype=np.int64)
        padded[:d_out] = w
        table = padded.reshape(span, lanes, d_in).transpose(2, 0, 1).reshape(-1, lanes)
        return cls(
            kind="tokens",
            span=span,
            lanes=lanes,
            rows=channel,
            bases=np.where(token < read, token, 0) * span,
            kept=token < read,
            table=table,
        )

    @classmethod
    def direct(cls, n: int, *, lanes: int, gain: int = 1) -> InputMap:
        """Event ``(i, v)`` adds ``gain·v`` to neuron ``i`` of ``n``."""
        n, lanes = _pos_int("n", n), _pos_int("lanes", lanes)
        if isinstance(gain, bool) or not isinstance(gain, int | np.integer):
            raise ValueError(f"gain must be an integer, not {gain!r}")
        base, lane = np.divmod(np.arange(n), lanes)
        return cls(
            kind="direct",
            span=1,
            lanes=lanes,
            rows=lane,
            bases=base,
            kept=np.ones(n, dtype=bool),
            table=np.eye(lanes, dtype=np.int64) * int(gain),
        )

    # -- cost --------------------------------------------------------------------------------------
    def event_slots(self, min_distance: int) -> int:
        """Slots of a kept event's pass: ``max(span, min_distance)``."""
        return max(self.span, min_distance)

    def sweep_extra(self, min_distance: int) -> int:
        """Idle slots a sweep (or re-initialisation) pass takes beyond the plain core's
        ``max(W, min_distance)``: ``max(0, min_distance − span)``. An event's pass may start on a
        high word right after the sweep updated it; with passes shorter than ``min_distance`` the
        two operations on that word would otherwise be too close."""
        return max(0, min_distance - self.span)

    def event_cycles(self, indices: np.ndarray, min_distance: int) -> np.ndarray:
        """Cycles each input event occupies the sequencer: the pass if kept, else 1."""
        idx = np.asarray(indices, dtype=np.int64)
        return np.where(self.kept[idx], self.event_slots(min_distance), 1)
