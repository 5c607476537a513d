"""The exact cycle model of a **site graph**: cores joined by FIFOs and broadcasts (pure Python).

The network tops built from mapped layer cores and stream cores — the ViT's
(``hw.cores.vit_core.ViTCore``, :mod:`hw.model.vit_model`) and the CNN's
(``hw.cores.cnn_core.CnnCore``, :mod:`hw.model.cnn_model`) — are graphs of cores whose streams
pass through ``SyncFIFOBuffered`` FIFOs, a combinational ``Broadcast`` first where a stream has
several consumers (a beat leaves when every consumer's FIFO took it, each FIFO taking it as soon
as it has room). This module composes the cores' own models (each takes the cycle every input
beat is valid at its ports and, per output beat, the first cycle the FIFOs it feeds have room;
each gives a :class:`hw.model.cycle_model.CoreRun`) into the top's model.

A beat written into a FIFO in cycle ``w`` is valid at its far end in ``w + 2``
(:data:`~hw.model.cycle_model.FIFO_LATENCY`: the memory, then the output register), ``w + 1``
in a one-entry FIFO (a single register).

**Backpressure.** A FIFO of ``d ≥ 2`` entries moves beat ``k`` from its memory to its output
register in ``max(w_k + 1, taken_{k−1})`` and has room for beat ``k`` once beat ``k − d + 1``
moved; a one-entry FIFO once beat ``k − 1`` was taken (:data:`hw.model.fifo_model.SYNC_FIFO`).
Room depends on the consumer's progress on earlier beats, which depends on its own FIFOs
downstream, so :func:`solve` runs the composition in **passes**: every core in execution order,
each with the room its FIFOs had in the pass before (none in the first: the schedule with FIFOs
that never fill). Every cycle only grows from pass to pass; the first pass that changes no
FIFO's room is a consistent schedule, the RTL's. A pass reuses what did not change: a core's
run whose arrivals and room are the last pass's (:meth:`GraphModel.run`), a link's beats whose
producer's run and room are (:meth:`GraphModel.link`), and what no FIFO changes
(:meth:`GraphModel.once`). How each core waits for room is its own model's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from spikezip.hw.model import cycle_model as cm
from spikezip.hw.model.cycle_model import CoreRun
from spikezip.hw.model.fifo_model import SYNC_FIFO, FifoCheck

__all__ = [
    "CoreLoad",
    "FifoCheck",
    "GraphModel",
    "GraphSchedule",
    "fifo_latency",
    "link_names",
    "site_core_model",
    "solve",
]


def fifo_latency(depth: int) -> int:
    """Cycles from a beat written into an empty FIFO of ``depth`` entries to the cycle it is
    valid at the FIFO's output: :data:`~hw.model.cycle_model.FIFO_LATENCY`, 1 for one entry
    (``SyncFIFOBuffered`` is then a single register; :data:`hw.model.fifo_model.SYNC_FIFO`)."""
    return SYNC_FIFO.latency_of(depth)


def link_names(name: str, consumers: int) -> list[str]:
    """The FIFOs of a link named ``name`` to ``consumers`` consumers, as the tops name them
    (``name_fifo``, or ``name_fifo0 …`` behind a broadcast; dots become ``_``)."""
    name = name.replace(".", "_")
    return [f"{name}_fifo{k}" for k in range(consumers)] if consumers > 1 else [f"{name}_fifo"]


@dataclass(frozen=True)
class CoreLoad:
    """Cycles and lane use of one core over a run (:attr:`GraphSchedule.loads`)."""

    #: the site's name, or a key of :attr:`GraphSchedule.cores`
    name: str
    #: ``linear``, ``direct``, ``conv``, ``product``, ``residual``, ``layernorm``, ``softmax``, …
    kind: str
    lanes: int  #: lanes of the accumulate phase (0 for cores without one)
    work: int  #: cycles of work (passes, scans, clears, beats read), waits for input excluded
    accumulate: int  #: cycles of the accumulate phases (waits for input included)
    ops: int  #: useful lane operations in the accumulate phases
    cycles: int  #: cycles of the whole run

    @property
    def busy_fraction(self) -> float:
        """``work / cycles``."""
        return self.work / self.cycles if self.cycles else 0.0

    @property
    def accumulate_utilization(self) -> float:
        """``ops / (lanes · accumulate)``: the accumulate phases' delivered lane fraction."""
        return self.ops / (self.lanes * self.accumulate) if self.lanes and self.accumulate else 0.0


@dataclass(frozen=True)
class GraphSchedule:
    """The modelled cycles of a run of inferences through a site-graph top."""

    #: per site (execution order), its core's run: ``beats[b][t] = (event cycles, marker)``
    sites: dict[str, CoreRun]
    #: every other core's run, by the top's name for it
    cores: dict[str, CoreRun]
    first_input: np.ndarray  #: [B] cycle the first input beat of each inference is accepted
    done: np.ndarray  #: [B] cycle ``done`` pulses (the last site's last marker)
    fifos: tuple[FifoCheck, ...]  #: every FIFO, named as in the top
    loads: tuple[CoreLoad, ...]  #: every core's cycles and lane use
    passes: int = 1  #: passes of the composition until the backpressure settled

    @property
    def exact(self) -> bool:
        """The composition settled (:func:`solve`): the RTL's exact schedule."""
        return True

    @property
    def backpressure(self) -> bool:
        """Some FIFO filled up and made its producer wait."""
        return not all(f.ok for f in self.fifos)

    @property
    def latency(self) -> np.ndarray:
        """Cycles from each inference's first input beat to its ``done``, inclusive."""
        return self.done - self.first_input + 1

    @property
    def total_cycles(self) -> int:
        return int(self.done[-1]) + 1 if self.done.size else 0

    def site_steps(self, name: str, sample: int) -> tuple[tuple[tuple[int, ...], int], ...]:
        """Per step of site ``name`` in inference ``sample``: its spikes' cycles and its
        marker's."""
        if name not in self.sites:
            raise ValueError(f"name must be one of the sites {list(self.sites)}, not {name!r}")
        return self.sites[name].beats[sample]


class GraphModel:
    """The cores' runs, the streams between them and their FIFOs, built in execution order by a
    top's composition; run again (:func:`solve`) until no FIFO's backpressure changes.

    ``fifo_depth(name)``: the entries of the FIFO ``name``.
    """

    def __init__(self, fifo_depth: Callable[[str], int]) -> None:
        self.fifo_depth = fifo_depth
        self.streams: dict[str, Any] = {}  # every core's output steps (fixed)
        #: per FIFO, the first cycle each beat may be written (from the last pass)
        self.fifo_ready: dict[str, np.ndarray] = {}
        self.producer_fifos: dict[str, list[str]] = {}
        self.memo: dict[str, tuple] = {}
        #: per FIFO, (producer's run, room, writes, arrivals) of its last :meth:`link`
        self.link_memo: dict[str, tuple] = {}
        self.depths: dict[str, int] = {}
        self.static: dict[Any, Any] = {}
        self.reset()

    def once(self, key: Any, make: Callable[[], Any]) -> Any:
        """``make()``, made in the first pass and kept for the passes after it (what a pass
        needs that no FIFO changes: geometries, a stream's events)."""
        if key not in self.static:
            self.static[key] = make()
        return self.static[key]

    def run(self, core: str, arrivals: Any, model: Any, *args: Any) -> None:
        """``core``'s run: ``model(*args, arrivals, ready)``, reused from the pass before when
        its arrivals and backpressure did not change (a core's model is a function of them)."""
        ready = self.ready(core)
        memo = self.memo.get(core)
        if memo is not None and memo[0] == arrivals and memo[1] == ready:
            self.runs[core] = memo[2]
        else:
            self.runs[core] = run = model(*args, arrivals, ready)
            self.memo[core] = (arrivals, ready, run)

    @staticmethod
    def _room(fifo: str, writes: np.ndarray, taken, depth: int) -> np.ndarray:
        taken = np.asarray(taken, dtype=np.int64)
        if taken.size != writes.size:  # (a model's bug, not the user's)
            raise AssertionError(f"{fifo}: {writes.size} beats written, {taken.size} taken")
        return SYNC_FIFO.room(writes, taken, depth)

    def reset(self) -> None:
        """Start a pass."""
        self.runs: dict[str, CoreRun] = {}
        self.loads: list[tuple[str, str, int]] = []  # (core, kind, lanes)
        self.links: list[tuple[str, str, str, int, int, np.ndarray]] = []

    def ready(self, core: str) -> list[int] | None:
        """Per output beat of ``core``, the first cycle every FIFO it feeds has room for it."""
        fifos = self.producer_fifos.get(core)
        if not fifos:
            return None
        return np.max([self.fifo_ready[f] for f in fifos], axis=0).tolist()

    def link(self, producer: str, consumers: list[tuple[str, int]], name: str):
        """The FIFOs from ``producer`` to each ``(consumer, port)`` (through a broadcast when
        there are several): per consumer, per inference and step, the cycle each beat is valid
        at the FIFO's output."""
        run = self.runs[producer]
        offered = None
        out = []
        for fifo, (core, port) in zip(link_names(name, len(consumers)), consumers, strict=True):
            depth = self.depths.get(fifo)
            if depth is None:
                self.depths[fifo] = depth = self.fifo_depth(fifo)
            room = self.fifo_ready.get(fifo)
            last = self.link_memo.get(fifo)
            if last is not None and last[0] is run and last[1] is room:
                writes, arr = last[2], last[3]  # the same beats as last time
            else:
                if offered is None:
                    offered = np.asarray(run.offered, dtype=np.int64)
                writes = offered
                if room is not None:  # the beat waits for room in this FIFO only
                    writes = np.maximum(offered, room)
                else:
                    self.fifo_ready[fifo] = room = np.zeros_like(offered)
                    self.producer_fifos.setdefault(producer, []).append(fifo)
                it = iter((writes + fifo_latency(depth)).tolist())
                arr = [[[next(it) for _ in ev] + [next(it)] for ev, _ in inf] for inf in run.beats]
                self.link_memo[fifo] = (run, room, writes, arr)
            self.links.append((fifo, producer, core, port, depth, writes))
            out.append(arr)
        return out

    def settle(self) -> bool:
        """Each FIFO's room from this pass's cycles; whether any changed."""
        changed = False
        for fifo, _, core, port, depth, writes in self.links:
            room = self._room(fifo, writes, self.runs[core].taken[port], depth)
            if not np.array_equal(room, self.fifo_ready[fifo]):
                self.fifo_ready[fifo], changed = room, True
        return changed

    def checks(self) -> tuple[FifoCheck, ...]:
        out = []
        for fifo, producer, core, port, depth, writes in self.links:
            offered = np.asarray(self.runs[producer].offered, dtype=np.int64)
            taken = np.asarray(self.runs[core].taken[port], dtype=np.int64)
            out.append(
                FifoCheck(
                    fifo,
                    depth,
                    SYNC_FIFO.need(offered, taken, depth),
                    int((writes - offered).sum()),
                )
            )
        return tuple(out)

    def schedule(
        self,
        site_names: list[str],
        first_taken: np.ndarray,
        passes: int,
        need: dict[str, int],
    ) -> GraphSchedule:
        """The settled composition as a :class:`GraphSchedule`: ``site_names`` in execution
        order (the last one's markers are ``done``), ``first_taken`` the cycle each inference's
        first input beat was accepted."""
        done = np.array([inf[-1][1] for inf in self.runs[site_names[-1]].beats], dtype=np.int64)
        end = int(done[-1]) + 1 if done.size else 0
        loads = tuple(
            CoreLoad(
                name=n,
                kind=k,
                lanes=p,
                work=self.runs[n].work,
                accumulate=self.runs[n].accumulate,
                ops=self.runs[n].ops,
                cycles=end,
            )
            for n, k, p in self.loads
        )
        sites = {n: self.runs[n] for n in site_names}
        fifos = []
        for f in self.checks():
            fifos.append(FifoCheck(f.name, f.depth, need[f.name], f.waited))
        return GraphSchedule(
            sites=sites,
            cores={n: r for n, r in self.runs.items() if n not in sites},
            first_input=np.asarray(first_taken, dtype=np.int64),
            done=done,
            fifos=tuple(fifos),
            loads=loads,
            passes=passes,
        )


def solve(graph: GraphModel, compose: Callable[[GraphModel], None], max_passes: int):
    """Run ``compose(graph)`` (one pass: every core's model in execution order) until the
    FIFOs' backpressure settles; returns ``(passes, need)``: the passes taken and, per FIFO, the
    entries it would need never to be full (from the first pass, without backpressure)."""
    if isinstance(max_passes, bool) or not isinstance(max_passes, int) or max_passes < 1:
        raise ValueError(f"max_passes must be a positive integer, not {max_passes!r}")
    need: dict[str, int] = {}
    for passes in range(1, max_passes + 1):
        graph.reset()
        compose(graph)
        if passes == 1:  # no backpressure yet: how deep each FIFO would have to be
            need = {f.name: f.need for f in graph.checks()}
        if not graph.settle():
            return passes, need
    raise RuntimeError(f"the FIFOs' backpressure did not settle in {max_passes} passes")


def site_core_model(timing, ins, outs, arrivals, ready, *, ops: int | None, imap: Any) -> CoreRun:
    """A mapped layer core's model in :meth:`GraphModel.run`'s argument order
    (:func:`hw.model.cycle_model.timed`; ``ops``: neurons one pass updates, None for the map's
    ``span·lanes``)."""
    return cm.timed(timing, ins, outs, arrivals, imap, ready, ops_per_event=ops)
