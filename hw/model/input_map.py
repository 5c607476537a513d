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
* **merge** (:meth:`InputMap.merge`; a ``ConvNet``'s residual ``Add``): the direct map of
  several sources, each with its own gain, the source number above the index bits.
* **convolution** (:meth:`InputMap.conv`; docs/cnn.md §11): event ``(c', y, x)`` is a *list* of
  passes, one per target ``(oy, ox, ky, kx)`` of ``Conv2d.targets``: over the ``span = c_out /
  lanes`` words of output position ``(oy, ox)`` (neurons in HWC order) with weight row
  ``(ky·kw + kx)·c_in + c'`` (tap-major). Events no window reaches are dropped.
* **depthwise** (:meth:`InputMap.depthwise`; a sum-pool): as a convolution, but a pass is the
  one word of channel ``c'`` at ``(oy, ox)``, its weight in lane ``c' mod lanes`` only.

Neuron ``i`` is lane ``i mod lanes`` of word ``i // lanes`` in both, as in the plain core (token
maps need ``lanes`` to divide ``d_out``), so the spikes leave with their own index.

The sequencer stores a map as :class:`DecoderTables` (:meth:`InputMap.decoder_tables`): a
decoder per index (or split into two small tables) and the later passes as lists shared between
indices — one per input position for a convolution (docs/cnn.md §11).

Streaming (:meth:`InputMap.streaming`): before a kept event the core sweeps the words below
:attr:`InputMap.sweep_bounds` (the lowest pass of that or any later index), so its spikes leave
before the step's marker; a token map's bound is its base, a convolution's lags the input by
the kernel's reach (docs/cnn.md §11).

Cost: a kept event occupies ``passes·span`` slots, its last pass padded to ``min_distance`` as
the plain core's, a dropped one 1 cycle (:meth:`event_cycles`); a sweep or re-initialisation
:meth:`sweep_extra` idle slots more than the plain core's (both used by
:func:`hw.model.cycle_model.schedule`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

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

    Build with :meth:`tokens`, :meth:`direct`, :meth:`merge` or :meth:`conv`. A map whose
    events may have more than one pass (:attr:`multi`) also lists every pass: ``counts[j]``
    passes for index ``j`` (0: dropped), their rows and bases ``pass_rows``/``pass_bases``
    concatenated in index order (``rows``/``bases`` are each index's first pass).
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
    counts: np.ndarray | None = None
    pass_rows: np.ndarray | None = None
    pass_bases: np.ndarray | None = None
    #: per input index, a row offset its later passes share with other indices' (a convolution:
    #: the channel ``c'``, so every channel of a position reads one list; :meth:`decoder_tables`)
    offsets: np.ndarray | None = None

    @property
    def multi(self) -> bool:
        """Some event has more than one pass (the sequencer needs its pass ROM)."""
        return self.counts is not None and bool((self.counts > 1).any())

    @property
    def pass_counts(self) -> np.ndarray:
        """Passes per input index, ``int64 [n_in]`` (0: dropped)."""
        if self.counts is None:
            return self.kept.astype(np.int64)
        return self.counts

    def passes(self, index: int) -> list[tuple[int, int]]:
        """``(row, base)`` of every pass of input index ``index``, in issue order."""
        if self.counts is None:
            return [(int(self.rows[index]), int(self.bases[index]))] if self.kept[index] else []
        start = int(self.counts[:index].sum())
        stop = start + int(self.counts[index])
        return list(
            zip(
                self.pass_rows[start:stop].tolist(),
                self.pass_bases[start:stop].tolist(),
                strict=True,
            )
        )

    def streaming(self, stream: bool = True) -> InputMap:
        """This map with ``stream`` set: before a kept event ``j`` the core sweeps the words
        ``[p, sweep_bounds[j])`` (``p`` the first word not swept yet in the step), so that a
        word's spikes leave as soon as the last input that can reach it has passed instead of
        after the step's marker. Exact for inputs whose events come in ascending index within a
        step (no later index has a pass below :attr:`sweep_bounds`); the cycle model raises
        ``ValueError`` on an input out of that order (:data:`hw.model.vit_sites.STREAMING_KINDS`,
        :func:`hw.model.conv_sites.streams`: the sites whose producers send so). A merge cannot
        stream (its sources' passes cover the same words: no word is complete before the last
        source)."""
        if stream and self.kind == "merge":
            raise ValueError("a merge map cannot stream (its sources cover the same words)")
        return dataclasses.replace(self, stream=bool(stream))

    @property
    def lowest(self) -> np.ndarray:
        """Per input index, the lowest base of its passes (``int64 [n_in]``; 0 if dropped)."""
        if self.counts is None or not self.multi:
            return np.where(self.kept, self.bases, 0)
        starts = np.concatenate([[0], np.cumsum(self.counts)[:-1]]).astype(np.int64)
        low = np.zeros(self.n_in, dtype=np.int64)
        kept = np.flatnonzero(self.counts > 0)
        low[kept] = np.minimum.reduceat(self.pass_bases, starts[kept])
        return low

    @property
    def sweep_bounds(self) -> np.ndarray:
        """Per input index ``j``, the words a streaming core may sweep before event ``j``
        (``[0, sweep_bounds[j])``): the lowest base of any pass of an index ``≥ j`` — every word
        below it is complete once the indices ``< j`` have arrived (docs/cnn.md §11). ``int64
        [n_in]``; 0 for a dropped index (it sweeps nothing). A token or direct map: its bases
        (ascending); a convolution: the output row above the window rows still to come."""
        low = np.where(self.kept, self.lowest, np.iinfo(np.int64).max)
        suffix = np.minimum.accumulate(low[::-1])[::-1]
        return np.where(self.kept, suffix, 0)

    @property
    def sweep_is_base(self) -> bool:
        """Every index's sweep bound is its first pass's base (a token or direct map): a
        streaming sequencer compares ``base`` and its decoder needs no ``sweep`` field."""
        return bool(np.array_equal(self.sweep_bounds, np.where(self.kept, self.bases, 0)))

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

    @classmethod
    def merge(cls, n: int, gains, *, lanes: int) -> InputMap:
        """A residual merge of ``len(gains)`` sources of ``n`` neurons each (docs/cnn.md §11):
        event ``(s·stride + i, v)`` of source ``s`` adds ``gains[s]·v`` to neuron ``i``, with
        ``stride = 2^⌈log2 n⌉`` (:meth:`merge_stride`: the source number sits above the index
        bits, so a merger concatenates it). A one-word pass (``base = i // lanes``) whose
        weight word is ``gains[s]`` in lane ``i mod lanes`` (row ``s·lanes + i mod lanes``);
        the indices ``i ≥ n`` of the stride's gap are dropped (no source sends them)."""
        n, lanes = _pos_int("n", n), _pos_int("lanes", lanes)
        if isinstance(gains, (str, bytes)) or not hasattr(gains, "__iter__"):
            raise ValueError(f"gains must be a sequence of integers, not {gains!r}")
        gains = list(gains)
        if len(gains) < 1:
            raise ValueError("gains must hold at least one entry")
        for k, v in enumerate(gains):
            if isinstance(v, bool) or not isinstance(v, int | np.integer):
                raise ValueError(f"gains[{k}] must be an integer, not {v!r}")
        stride = cls.merge_stride(n)
        source, i = np.divmod(np.arange(len(gains) * stride), stride)
        kept = i < n
        eye = np.eye(lanes, dtype=np.int64)
        return cls(
            kind="merge",
            span=1,
            lanes=lanes,
            rows=np.where(kept, source * lanes + i % lanes, 0),
            bases=np.where(kept, i // lanes, 0),
            kept=kept,
            table=np.concatenate([eye * int(g) for g in gains]),
        )

    @staticmethod
    def merge_stride(n: int) -> int:
        """Index distance between two sources of a merge map: ``2^⌈log2 n⌉``, at least 2 (a
        source's index has at least one bit)."""
        return 1 << max(1, (int(n) - 1).bit_length())

    @classmethod
    def conv(
        cls, conv: Any, shape: tuple[int, int, int], *, lanes: int, order: str = "hwc"
    ) -> InputMap:
        """The passes of ``conv`` (an ``ir.cnn.Conv2d``) on an input of ``shape = (C, H, W)``;
        input index ``j`` is ``(c', y, x)`` in ``order``: ``"chw"`` (C order: the analog image)
        or ``"hwc"`` (``(y·W + x)·C + c'``: another core's output). Output neuron ``(c, oy, ox)``
        is ``(oy·W' + ox)·c_out + c``; ``lanes`` must divide ``c_out``."""
        lanes = _pos_int("lanes", lanes)
        if order not in ("chw", "hwc"):
            raise ValueError(f"order must be 'chw' or 'hwc', not {order!r}")
        c_in, h, w = (int(v) for v in shape)
        c_out, (kh, kw) = conv.c_out, conv.kernel
        wo = conv.output_shape(shape)[2]
        if c_out % lanes:
            raise ValueError(
                f"lanes must divide the site's {c_out} output channels "
                f"(one of {[p for p in range(1, c_out + 1) if c_out % p == 0]}), not {lanes}"
            )
        span = c_out // lanes
        # per (y, x): the targets' (oy, ox, ky, kx), the same for every input channel
        at = {(y, x): conv.targets(shape, y, x) for y in range(h) for x in range(w)}
        counts, rows, bases, first_rows, first_bases = [], [], [], [], []
        for j in range(c_in * h * w):
            if order == "chw":
                c, rest = divmod(j, h * w)
                y, x = divmod(rest, w)
            else:
                rest, c = divmod(j, c_in)
                y, x = divmod(rest, w)
            targets = at[(y, x)]
            counts.append(len(targets))
            r = [(ky * kw + kx) * c_in + c for _, _, ky, kx in targets]
            b = [(oy * wo + ox) * span for oy, ox, _, _ in targets]
            rows += r
            bases += b
            first_rows.append(r[0] if r else 0)
            first_bases.append(b[0] if b else 0)
        weight = np.asarray(conv.weight, dtype=np.int64)  # [c_out, c_in, kh, kw]
        # tap-major rows (``(ky·kw + kx)·c_in + c'``): a pass's first weight word is
        # ``tap·c_in·span + c'·span``, the channel's part below the tap's when ``c_in·span`` is a
        # power of two, so the sequencer ORs the two (:meth:`decoder_tables`)
        table = weight.transpose(2, 3, 1, 0).reshape(kh * kw * c_in * span, lanes)
        counts_a = np.asarray(counts, dtype=np.int64)
        if order == "chw":
            channel = np.arange(c_in * h * w) // (h * w)
        else:
            channel = np.arange(c_in * h * w) % c_in
        return cls(
            kind="conv",
            span=span,
            lanes=lanes,
            rows=np.asarray(first_rows, dtype=np.int64),
            bases=np.asarray(first_bases, dtype=np.int64),
            kept=counts_a > 0,
            table=table,
            counts=counts_a,
            pass_rows=np.asarray(rows, dtype=np.int64),
            pass_bases=np.asarray(bases, dtype=np.int64),
            offsets=np.where(counts_a > 0, channel, 0),
        )

    @classmethod
    def depthwise(
        cls, pool: Any, shape: tuple[int, int, int], *, lanes: int, weight: int
    ) -> InputMap:
        """A window map that keeps the channel (a sum-pool, ``ir.cnn.SumPool2d``; docs/cnn.md
        §11): event ``(c, y, x)`` (input index ``(y·W + x)·C + c``, HWC) adds ``weight·value``
        to output ``(c, oy, ox)`` of every window ``(oy, ox)`` of ``pool.targets`` — one pass
        of **one word** per target, the word of neuron ``(oy·W' + ox)·C + c`` (HWC), whose
        weight word is ``weight`` in lane ``c mod lanes`` (row ``c mod lanes`` of a
        ``lanes``-row table, as :meth:`direct`); ``lanes`` must divide ``C``."""
        lanes = _pos_int("lanes", lanes)
        if isinstance(weight, bool) or not isinstance(weight, int | np.integer):
            raise ValueError(f"weight must be an integer, not {weight!r}")
        c_in, h, w = (int(v) for v in shape)
        if c_in % lanes:
            raise ValueError(
                f"lanes must divide the site's {c_in} channels "
                f"(one of {[p for p in range(1, c_in + 1) if c_in % p == 0]}), not {lanes}"
            )
        wo = pool.output_shape(shape)[2]
        span = c_in // lanes  # words per output position
        at = {(y, x): pool.targets(shape, y, x) for y in range(h) for x in range(w)}
        counts, rows, bases = [], [], []
        for j in range(c_in * h * w):
            rest, c = divmod(j, c_in)
            y, x = divmod(rest, w)
            targets = at[(y, x)]
            counts.append(len(targets))
            rows += [c % lanes] * len(targets)
            bases += [(oy * wo + ox) * span + c // lanes for oy, ox, _, _ in targets]
        counts_a = np.asarray(counts, dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(counts_a)[:-1]])
        rows_a, bases_a = np.asarray(rows, dtype=np.int64), np.asarray(bases, dtype=np.int64)
        kept = counts_a > 0
        pick = np.minimum(starts, max(rows_a.size - 1, 0))
        return cls(
            kind="depthwise",
            span=1,
            lanes=lanes,
            rows=np.where(kept, rows_a[pick] if rows_a.size else 0, 0),
            bases=np.where(kept, bases_a[pick] if bases_a.size else 0, 0),
            kept=kept,
            table=np.eye(lanes, dtype=np.int64) * int(weight),
            counts=counts_a,
            pass_rows=rows_a,
            pass_bases=bases_a,
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
        """Cycles each input event occupies the sequencer: ``passes·span`` slots and the idle
        slots that pad its *last* pass to ``min_distance`` (``passes·span + max(0, min_distance −
        span)``; one pass: :meth:`event_slots`), or 1 if dropped. The passes of one event are on
        distinct words (distinct output positions), so only the next event or sweep needs the
        distance."""
        idx = np.asarray(indices, dtype=np.int64)
        n = self.pass_counts[idx]
        pad = self.event_slots(min_distance) - self.span
        return np.where(n > 0, n * self.span + pad, 1)

    def consumed_after(self, indices: np.ndarray, min_distance: int) -> np.ndarray:
        """Cycles from an event's first slot to the slot that consumes it: the last word of its
        last pass, ``passes·span − 1``, or 0 if dropped."""
        idx = np.asarray(indices, dtype=np.int64)
        n = self.pass_counts[idx]
        return np.where(n > 0, n * self.span - 1, 0)

    # -- the sequencer's tables --------------------------------------------------------------------
    def decoder_tables(self) -> DecoderTables:
        """The sequencer's decoder and pass ROM for this map (:class:`DecoderTables`)."""
        return DecoderTables.of(self)


#: the largest table a split decoder reads as logic (entries of either half; :class:`DecoderTables`)
SPLIT_MAX = 256


@dataclass(frozen=True, eq=False)
class DecoderTables:
    """What a mapped core's sequencer stores of an :class:`InputMap` (docs/cnn.md §11).

    **Decoder**, per input index ``j``, read with the input register: the first pass's weight
    word ``first`` (``row·span``) and neuron word ``base``, ``kept``, ``single``/``pair`` (one or
    two passes), ``second`` (the pass ROM address of its second pass) and ``chan`` (the weight
    word offset its later passes add to the pass ROM's: the map's ``offsets·span``).

    **Pass ROM**, the second and later passes as *lists shared between indices*: an index's list
    is its later passes' ``(first − chan, base)`` with ``next_last`` (the pass after it is the
    last), and indices with equal lists (a convolution: every channel of an input position) read
    one copy. Depth ``Σ`` over distinct lists instead of ``Σ_j (passes_j − 1)``; a later pass's
    weight word is ``pass_first ⊕ chan``, ``⊕`` an OR where the bits never overlap
    (``pass_or``: a convolution with ``c_in·span`` a power of two), else an addition.

    **Split decoder** (``split = b``): when every field but ``first`` and ``chan`` depends on
    ``j >> b`` alone and ``first = hi_first[j >> b] ⊕ lo_first[j mod 2^b]`` (``split_or``),
    ``chan = lo_chan[j mod 2^b]`` — a convolution in HWC order with ``c_in`` a power of two
    (position × channel), a merge with ``lanes`` a power of two — the decoder is two tables of
    at most :data:`SPLIT_MAX` entries (logic) instead of one of ``n_in`` (a block RAM).
    """

    n_in: int
    counts: np.ndarray
    first: np.ndarray
    base: np.ndarray
    chan: np.ndarray
    second: np.ndarray
    pass_first: np.ndarray
    pass_base: np.ndarray
    pass_next_last: np.ndarray
    pass_or: bool
    split: int | None = None
    hi: dict[str, np.ndarray] | None = None
    lo: dict[str, np.ndarray] | None = None
    split_or: bool = True
    #: a streaming map whose sweep bound is not its first pass's base (a convolution): per index
    #: :attr:`InputMap.sweep_bounds`, a decoder field; else ``None`` (the bound is ``base``)
    sweep: np.ndarray | None = None

    @property
    def kept(self) -> np.ndarray:
        return self.counts > 0

    @property
    def depth(self) -> int:
        """Entries of the pass ROM (0: no index has a second pass)."""
        return int(self.pass_first.size)

    @classmethod
    def of(cls, imap: InputMap) -> DecoderTables:
        n, span = imap.n_in, imap.span
        counts = imap.pass_counts
        offsets = np.zeros(n, dtype=np.int64) if imap.offsets is None else imap.offsets
        chan = np.where(counts > 0, offsets * span, 0)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        first = np.where(counts > 0, imap.rows * span, 0)
        base = np.where(counts > 0, imap.bases, 0)
        second = np.zeros(n, dtype=np.int64)
        lists: dict[tuple, int] = {}
        p_first: list[int] = []
        p_base: list[int] = []
        p_last: list[int] = []
        pass_or = True
        for j in np.flatnonzero(counts > 1):
            s, t = int(starts[j]), int(counts[j])
            rows, bases = imap.pass_rows[s + 1 : s + t], imap.pass_bases[s + 1 : s + t]
            resid = tuple(
                (int(r) * span - int(chan[j]), int(b)) for r, b in zip(rows, bases, strict=True)
            )
            pass_or &= all(int(chan[j]) & f == 0 and f >= 0 for f, _ in resid)
            if resid not in lists:
                lists[resid] = len(p_first)
                for q, (f, b) in enumerate(resid, start=2):
                    p_first.append(f)
                    p_base.append(b)
                    p_last.append(int(q + 1 == t))
            second[j] = lists[resid]
        tables = cls(
            n_in=n,
            counts=counts,
            first=first,
            base=base,
            chan=chan,
            second=second,
            pass_first=np.asarray(p_first, dtype=np.int64),
            pass_base=np.asarray(p_base, dtype=np.int64),
            pass_next_last=np.asarray(p_last, dtype=np.int64),
            pass_or=pass_or,
        )
        if imap.stream and not imap.sweep_is_base:
            tables = dataclasses.replace(tables, sweep=imap.sweep_bounds)
        return tables._split()

    def index_fields(self) -> dict[str, np.ndarray]:
        """Per index, the decoder fields other than ``first`` and ``chan``: ``base``, ``kept``,
        (with a pass ROM) ``single``, ``pair``, ``second`` and (streaming, :attr:`sweep`)
        ``sweep`` (a split reads them from its high table)."""
        c = self.counts
        fields = {"base": self.base, "kept": (c > 0).astype(np.int64)}
        if self.sweep is not None:
            fields["sweep"] = self.sweep
        if self.depth:
            fields |= {
                "single": (c <= 1).astype(np.int64),
                "pair": (c == 2).astype(np.int64),
                "second": self.second,
            }
        return fields

    def _split(self) -> DecoderTables:
        """Self with the smallest split decoder that is exact, if one is smaller than the
        per-index table and both halves have at most :data:`SPLIT_MAX` entries."""
        bits = max(1, (self.n_in - 1).bit_length())
        best = None
        for b in range(1, bits):
            n_hi, n_lo = 1 << (bits - b), 1 << b
            if n_hi > SPLIT_MAX or n_lo > SPLIT_MAX or n_hi + n_lo >= self.n_in:
                continue
            found = self._factor(b, n_hi, n_lo)
            if found is not None and (best is None or n_hi + n_lo < best[0]):
                best = (n_hi + n_lo, b, *found)
        if best is None:
            return self
        _, b, hi, lo, split_or = best
        return dataclasses.replace(self, split=b, hi=hi, lo=lo, split_or=split_or)

    def _factor(self, b: int, n_hi: int, n_lo: int):
        j = np.arange(self.n_in)
        h, lo_j = j >> b, j & (n_lo - 1)
        kept = self.counts > 0
        hi: dict[str, np.ndarray] = {}
        for name, values in self.index_fields().items():
            table = np.zeros(n_hi, dtype=np.int64)
            # kept must be a function of the high part; the others where kept
            where = np.ones_like(kept) if name == "kept" else kept
            table[h[where]] = values[where]
            if not np.array_equal(table[h[where]], values[where]):
                return None
            hi[name] = table
        lo_chan = np.zeros(n_lo, dtype=np.int64)
        lo_chan[lo_j[kept]] = self.chan[kept]
        if not np.array_equal(lo_chan[lo_j[kept]], self.chan[kept]):
            return None
        # first = hi_first ⊕ lo_first: lo_first from a high block whose every index is kept
        full = [
            k
            for k in np.unique(h[kept])
            if (k + 1) * n_lo <= self.n_in and kept[k * n_lo : (k + 1) * n_lo].all()
        ]
        if not full:
            return None
        ref = self.first[full[0] * n_lo : (full[0] + 1) * n_lo]
        lo_first = ref - ref[0]
        hi_first = np.zeros(n_hi, dtype=np.int64)
        hi_first[h[kept]] = self.first[kept] - lo_first[lo_j[kept]]
        if (lo_first < 0).any() or (hi_first < 0).any():
            return None
        if not np.array_equal(hi_first[h[kept]] + lo_first[lo_j[kept]], self.first[kept]):
            return None
        hi["first"] = hi_first
        split_or = not (hi_first[h[kept]] & lo_first[lo_j[kept]]).any()
        return hi, {"first": lo_first, "chan": lo_chan}, bool(split_or)
